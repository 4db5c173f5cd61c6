"""The dynamic tables of a linked ELF file, read and checked once.

ld.so trusts what ``.dynamic`` points at; elfvector cannot: a malformed
file must end in one clear error, and every command must accept or refuse
the same files.  So every table the commands use is checked here, when the
file is opened, before anything is allocated or walked by a size the file
states: ``.dynstr``, ``.dynsym`` and its count, the RELA or REL relocations,
the SysV and GNU hash tables, and the version tables (gABI "Dynamic Section",
"Symbol Versioning"; glibc ``elf/dl-lookup.c`` and ``elf/dl-version.c`` for
what ld.so itself relies on).  A table that does not fit the file, a count
that the file cannot hold, an index past a table, an entry size that is
not the one of the file's class: each is a
:class:`~elfvector.errors.NotElfError` that says which, naming the file.

The class's record formats come from the image (``image.layout``), and its
architecture's psABI facts (REL or RELA, the end of the address space)
from ``image.arch``: the checks are the same for every architecture.
"""

import sys
from array import array

from .elfstruct import (DT_GNU_HASH, DT_HASH, DT_JMPREL, DT_PLTREL, DT_PLTRELSZ, DT_REL,
                        DT_RELA, DT_RELAENT, DT_RELASZ, DT_RELENT, DT_RELSZ, DT_STRSZ,
                        DT_STRTAB, DT_SYMENT, DT_SYMTAB, DT_VERDEF, DT_VERDEFNUM, DT_VERNEED,
                        DT_VERNEEDNUM, DT_VERSYM, PT_LOAD, PT_TLS, SHN_LORESERVE,
                        STRING_TAGS, STT_TLS, VERDAUX, VERDEF, VERNAUX, VERNEED,
                        VER_HIDDEN, VER_NDX_GLOBAL, Rela)
from .errors import NotElfError, UnsupportedElfError

#: (address tag, size tag) of the relocation tables, with their names
RELOCATION_TABLES = {DT_RELA: (DT_RELASZ, "DT_RELA", "DT_RELASZ"),
                     DT_REL: (DT_RELSZ, "DT_REL", "DT_RELSZ"),
                     DT_JMPREL: (DT_PLTRELSZ, "DT_JMPREL", "DT_PLTRELSZ")}

_TAG_NAMES = {1: "DT_NEEDED", 14: "DT_SONAME", 15: "DT_RPATH", 29: "DT_RUNPATH",
              0x7FFFFFFD: "DT_AUXILIARY", 0x7FFFFFFF: "DT_FILTER", 0x6FFFFEFA: "DT_CONFIG",
              0x6FFFFEFB: "DT_DEPAUDIT", 0x6FFFFEFC: "DT_AUDIT"}


def words(raw, code):
    """``raw`` as an array of little-endian words (``code``: "H", "I", "Q")."""
    values = array(code, raw)
    if sys.byteorder != "little":
        values.byteswap()
    return values


class DynamicTables:
    """The checked dynamic tables of an :class:`~elfvector.elfimage.ElfImage`.

    ``strtab`` (bytes), ``symbols`` (:class:`Sym` list, index 0 the null
    symbol), ``versym`` (None, or one word per symbol), ``versions``
    (``(version index or None, .dynstr offset)`` of every name the version
    tables hold); relocations are parsed on demand from checked bytes.
    """

    def __init__(self, image):
        self.image = image
        self.path = image.path
        self.layout = image.layout
        for tag, name in ((DT_STRTAB, "DT_STRTAB"), (DT_STRSZ, "DT_STRSZ"),
                          (DT_SYMTAB, "DT_SYMTAB")):
            if image.dyn(tag) is None:
                raise self._bad(f"the dynamic section has no {name}")
        self.strtab = self._table("the string table (DT_STRTAB)", image.dyn(DT_STRTAB),
                                  image.dyn(DT_STRSZ))
        self._check_string_table()
        self._check_string_entries()
        self._check_entry_sizes()
        self.symbols = self._read_symbols(self._symbol_count())
        self._check_symbols()
        self._raw_relocations = {tag: self._read_relocations(tag) for tag in RELOCATION_TABLES}
        self._relocations = {}
        self._check_sysv_hash()
        self._check_gnu_hash()
        self.versions = self._read_versions()
        self.versym = self._read_versym()

    def _bad(self, reason):
        return NotElfError(reason, self.path)

    def _table(self, what, vaddr, size):
        """The ``size`` bytes of a table at ``vaddr``: all in one segment's file bytes."""
        if not self.image.in_file(vaddr, size):
            raise self._bad(f"{what}: {size} bytes at {vaddr:#x} are not in the file")
        return self.image.read(vaddr, size)

    # -- strings and entry sizes ------------------------------------------
    def _check_string_table(self):
        """The table ends in NUL (gABI "String Table"), so every name ends
        inside it: one that ran past DT_STRSZ would be hashed and compared
        as one string by us and as another by ld.so, which reads on."""
        if not self.strtab.endswith(b"\0"):
            raise self._bad(f"the string table (DT_STRTAB, {len(self.strtab)} bytes) does "
                            "not end in a NUL byte: its last name runs past DT_STRSZ")

    def _check_string_entries(self):
        for tag, value in self.image.dynamic:
            if tag in STRING_TAGS and value >= len(self.strtab):
                raise self._bad(f"{_TAG_NAMES[tag]} names offset {value:#x}, past the "
                                f"{len(self.strtab)}-byte string table")

    def _check_entry_sizes(self):
        """Entry sizes of the file's class, and relocations of the kind its
        psABI uses (ld.so applies only that kind: ``ELF_MACHINE_NO_REL`` on
        x86-64 and AArch64, ``ELF_MACHINE_NO_RELA`` on i386)."""
        image, layout, arch = self.image, self.layout, self.image.arch
        for tag, name, size in ((DT_SYMENT, "DT_SYMENT", layout.sym.size),
                                (DT_RELAENT, "DT_RELAENT", layout.rela.size),
                                (DT_RELENT, "DT_RELENT", layout.rel.size)):
            if image.dyn(tag) not in (None, size):
                raise self._bad(f"{name} is {image.dyn(tag)}, not {size}")
        wrong, kind, other = (DT_REL, "RELA", "REL") if arch.rela else (DT_RELA, "REL", "RELA")
        if image.dyn(wrong) is not None or image.dyn(RELOCATION_TABLES[wrong][0]):
            raise UnsupportedElfError(f"{other} relocations (DT_{other}): {arch.label} files "
                                      f"use {kind}", self.path)
        if image.dyn(DT_PLTREL) not in (None, DT_RELA if arch.rela else DT_REL):
            raise UnsupportedElfError(f"DT_PLTREL is {image.dyn(DT_PLTREL)}, not DT_{kind}",
                                      self.path)

    def string(self, offset):
        """The NUL-terminated name at ``offset`` of ``.dynstr``, bytes as they are
        (``surrogateescape``: any byte sequence round-trips)."""
        if offset >= len(self.strtab):
            raise self._bad(f"string offset {offset:#x} is past the "
                            f"{len(self.strtab)}-byte string table")
        return cstring(self.strtab, offset)

    def _shown(self, offset):
        """The name at ``offset`` for a message: one line, any byte escaped."""
        end = self.strtab.find(b"\0", offset)
        return repr(self.strtab[offset:end if end >= 0 else len(self.strtab)])[2:-1]

    # -- symbols ----------------------------------------------------------
    def _symbol_count(self):
        """Entries of .dynsym: its section header's, else DT_HASH's nchain,
        else the end of the last GNU hash chain (what ld.so can reach)."""
        image = self.image
        _, section = image.section(".dynsym")
        size = self.layout.sym.size
        if section is not None:
            if section.addr != image.dyn(DT_SYMTAB):
                raise self._bad(f"the .dynsym section is at {section.addr:#x}, DT_SYMTAB at "
                                f"{image.dyn(DT_SYMTAB):#x}")
            if section.size % size:
                raise self._bad(f"the .dynsym section's size {section.size} is not a "
                                f"multiple of {size}")
            return section.size // size
        if image.dyn(DT_HASH):
            return self._sysv_header()[1]
        if image.dyn(DT_GNU_HASH):
            return self.gnu_hash_count()
        raise self._bad("cannot size .dynsym (no section headers, no hash table)")

    def _read_symbols(self, count):
        raw = self._table(".dynsym (DT_SYMTAB)", self.image.dyn(DT_SYMTAB),
                          count * self.layout.sym.size)
        return self.layout.iter_syms(raw)

    def _check_symbols(self):
        """Names in .dynstr, section indices that exist, and defined
        addresses inside the segments (a TLS symbol's inside PT_TLS): what
        the commands compute with must stay in the address space."""
        image = self.image
        loads_end = max((p.vaddr + p.memsz for p in image.phdrs if p.type == PT_LOAD), default=0)
        tls_end = max((p.memsz for p in image.phdrs if p.type == PT_TLS), default=0)
        strsz, shnum = len(self.strtab), len(image.shdrs)
        for i, s in enumerate(self.symbols):
            if s.name >= strsz:
                raise self._bad(f"symbol {i}: name offset {s.name:#x} is past the "
                                f"{strsz}-byte string table")
            if s.shndx >= SHN_LORESERVE:
                continue
            if not s.defined:
                if s.value + s.size > image.arch.address_end:   # a PLT address, a copied size
                    raise self._bad(f"symbol {i} ({self._shown(s.name)}): value {s.value:#x} "
                                    f"size {s.size:#x} end past the address space")
                continue
            if shnum and s.shndx >= shnum:
                raise self._bad(f"symbol {i} ({self._shown(s.name)}): section index "
                                f"{s.shndx}, past the {shnum} sections")
            end = tls_end if s.type == STT_TLS else loads_end
            if s.value + s.size > end:
                raise self._bad(f"symbol {i} ({self._shown(s.name)}): value {s.value:#x} "
                                f"size {s.size:#x} end past its segments ({end:#x})")

    # -- relocations ------------------------------------------------------
    def explicit(self, tag):
        """True if the table at ``tag`` holds RELA entries, False for REL
        (DT_JMPREL's kind is DT_PLTREL's, which must be the psABI's)."""
        return tag == DT_RELA or (tag == DT_JMPREL and self.image.arch.rela)

    def _entry(self, tag):
        """(entry size, words per entry, C type name) of the table at ``tag``."""
        layout, explicit = self.layout, self.explicit(tag)
        size = layout.entry_size(explicit)
        return size, size // layout.word, \
            f"Elf{8 * layout.word}_{'Rela' if explicit else 'Rel'}"

    def _read_relocations(self, tag):
        """The checked bytes of one relocation table (b"" when the file has none)."""
        size_tag, name, size_name = RELOCATION_TABLES[tag]
        addr, size = self.image.dyn(tag), self.image.dyn(size_tag)
        if not size:
            return b""
        if addr is None:
            raise self._bad(f"{size_name} without {name}")
        entry, per, ctype = self._entry(tag)
        if size % entry:
            raise self._bad(f"{size_name} is {size}, not a multiple of {entry} "
                            f"(the size of an {ctype})")
        raw = self._table(f"the relocations ({name})", addr, size)
        infos = words(raw, self.layout.word_code)[1::per]
        top = max(infos, default=0) >> self.layout.sym_shift
        if top >= len(self.symbols):
            raise self._bad(f"a relocation in {name} names symbol {top}, past the "
                            f"{len(self.symbols)} symbols of .dynsym")
        self._check_types(name, raw, per)
        return raw

    def _check_types(self, name, raw, per):
        """Every relocation of a type the architecture's psABI defines: any
        other stops ld.so, and an x86-64 file relabelled AArch64 (or the
        reverse) has nothing but such types.  The types are read as the
        low half (ELF64) or low byte (ELF32) of each r_info, a C-speed
        slice: libraries have tens of thousands of relocations."""
        arch, word = self.image.arch, self.layout.word
        if word == 8:
            types = set(words(raw, "I")[2::2 * per])
        else:
            types = set(raw[word::word * per])
        unknown = types - arch.relocation_types
        if unknown:
            raise self._bad(f"a relocation in {name} has type {min(unknown)}, which is no "
                            f"{arch.label} relocation type")

    def relocations(self, tag):
        """The entries of the table at dynamic tag ``tag`` (:class:`Rela`,
        or :class:`Rela32` in an ELF32 file, a REL entry's addend read from
        the word it relocates)."""
        if tag not in self._relocations and self.layout.word == 8:
            self._relocations[tag] = [Rela(*fields) for fields in
                                      self.layout.rela.iter_unpack(self._raw_relocations[tag])]
        if tag not in self._relocations:
            offsets, infos, addends = self.relocation_fields(tag)
            explicit, make = self.explicit(tag), self.layout.relocation
            shift, mask = self.layout.sym_shift, (1 << self.layout.sym_shift) - 1
            self._relocations[tag] = [make(o, i >> shift, i & mask, a, explicit)
                                      for o, i, a in zip(offsets, infos, addends)]
        return list(self._relocations[tag])

    def relocation_fields(self, tag):
        """``(offsets, infos, addends)`` of a relocation table as arrays: cheap
        to scan when most entries are of no interest.  A REL table's addends
        are the words it relocates (0 where the file holds no bytes: a
        ``.bss`` word, which ld.so finds zero)."""
        code = self.layout.word_code
        raw = words(self._raw_relocations[tag], code)
        _, per, _ = self._entry(tag)
        offsets, infos = raw[0::per], raw[1::per]
        if self.explicit(tag):
            return offsets, infos, words(self._raw_relocations[tag], code.lower())[2::per]
        return offsets, infos, array(code.lower(), map(self._implicit_addend, offsets))

    def _implicit_addend(self, offset):
        """The signed word at ``offset``, a REL entry's addend (0 outside the file)."""
        size = self.layout.word
        if not self.image.in_file(offset, size):
            return 0
        return int.from_bytes(self.image.read(offset, size), "little", signed=True)

    # -- hash tables ------------------------------------------------------
    def _sysv_header(self):
        """``(nbucket, nchain)`` of DT_HASH, its whole table checked."""
        addr = self.image.dyn(DT_HASH)
        nbucket, nchain = words(self._table("the hash table (DT_HASH)", addr, 8), "I")
        if nbucket == 0:
            raise self._bad("the hash table (DT_HASH) has no buckets")
        self._table("the hash table (DT_HASH)", addr, 8 + 4 * (nbucket + nchain))
        return nbucket, nchain

    def _check_sysv_hash(self):
        if not self.image.dyn(DT_HASH):
            return
        _, nchain = self._sysv_header()
        if nchain != len(self.symbols):
            raise self._bad(f"the hash table (DT_HASH) chains {nchain} symbols, .dynsym "
                            f"has {len(self.symbols)}")

    def gnu_hash_header(self):
        """``(nbucket, symoffset, bloom_size, bloom_shift)``, the fixed part checked."""
        what = "the GNU hash table (DT_GNU_HASH)"
        addr = self.image.dyn(DT_GNU_HASH)
        nbucket, symoffset, bloom_size, shift = words(self._table(what, addr, 16), "I")
        if nbucket == 0:
            raise self._bad(f"{what} has no buckets")
        if bloom_size == 0 or bloom_size & (bloom_size - 1):
            raise self._bad(f"{what}: bloom filter size {bloom_size} is not a power of two")
        self._table(what, addr, 16 + self.layout.word * bloom_size + 4 * nbucket)
        return nbucket, symoffset, bloom_size, shift

    def _gnu_buckets(self):
        """The bucket words, and the address of the chains; the Bloom filter
        between them has one word of the file's class per entry."""
        nbucket, symoffset, bloom_size, _ = self.gnu_hash_header()
        at = self.image.dyn(DT_GNU_HASH) + 16 + self.layout.word * bloom_size
        return words(self.image.read(at, 4 * nbucket), "I"), at + 4 * nbucket

    def gnu_hash_count(self):
        """The symbol count a GNU hash table implies: one past the end of its
        last chain (the entry with bit 0 set), read no further than the file."""
        _, symoffset, _, _ = self.gnu_hash_header()
        buckets, chains_at = self._gnu_buckets()
        last = max(buckets, default=0)
        if last < symoffset:
            return symoffset
        start = chains_at + 4 * (last - symoffset)
        available = self.image.bytes_in_segment(start) // 4
        chain = words(self.image.read(start, 4 * available), "I")
        for k, value in enumerate(chain):
            if value & 1:
                return last + k + 1
        raise self._bad("the GNU hash table (DT_GNU_HASH): its last chain does not end "
                        "in the file")

    def _check_gnu_hash(self):
        """symoffset in 1..count (index 0 is the null symbol, never hashed),
        bucket starts in symoffset..count-1, and a chain word per hashed symbol."""
        if not self.image.dyn(DT_GNU_HASH):
            return
        what = "the GNU hash table (DT_GNU_HASH)"
        count = len(self.symbols)
        _, symoffset, _, _ = self.gnu_hash_header()
        if not 1 <= symoffset <= count:
            raise self._bad(f"{what}: symoffset {symoffset} is not within 1..{count} "
                            "(the .dynsym entries)")
        buckets, chains_at = self._gnu_buckets()
        used = [b for b in buckets if b]
        if used and (min(used) < symoffset or max(used) >= count):
            raise self._bad(f"{what}: a bucket starts at symbol "
                            f"{min(used) if min(used) < symoffset else max(used)}, "
                            f"outside {symoffset}..{count - 1}")
        self._table(what, chains_at, 4 * (count - symoffset))

    # -- versions ---------------------------------------------------------
    def _read_versions(self):
        """Every (index, name offset) of DT_VERDEF and DT_VERNEED, in file
        order; the walk is bounded by the file size whatever the counts say."""
        self._budget = len(self.image.data) // VERDAUX.size
        found = []
        image = self.image
        if image.dyn(DT_VERDEF):
            found += self._walk(DT_VERDEF, DT_VERDEFNUM, "DT_VERDEF", self._verdef)
        if image.dyn(DT_VERNEED):
            found += self._walk(DT_VERNEED, DT_VERNEEDNUM, "DT_VERNEED", self._verneed)
        return found

    def _walk(self, tag, count_tag, name, read_entry):
        count = self.image.dyn(count_tag)
        if count is None:
            raise self._bad(f"{name} without its count ({name}NUM)")
        addr, found = self.image.dyn(tag), []
        for _ in range(count):
            self._spend()
            step = read_entry(addr, found)
            if not step:
                break
            addr += step
        return found

    def _spend(self):
        self._budget -= 1
        if self._budget < 0:
            raise self._bad("the version tables hold more entries than the file can")

    def _verdef(self, addr, found):
        what = "a version definition (DT_VERDEF)"
        version, _, ndx, cnt, _, aux, nxt = VERDEF.unpack(self._table(what, addr, VERDEF.size))
        if version != 1:
            raise self._bad(f"{what} at {addr:#x} has version {version}, not 1")
        at = addr + aux
        for k in range(cnt):
            self._spend()
            name, anext = VERDAUX.unpack(self._table(what, at, VERDAUX.size))
            self._check_name(what, name)
            found.append((ndx if k == 0 else None, name))
            if not anext:
                break
            at += anext
        return nxt

    def _verneed(self, addr, found):
        what = "a version requirement (DT_VERNEED)"
        version, cnt, file_name, aux, nxt = VERNEED.unpack(self._table(what, addr, VERNEED.size))
        if version != 1:
            raise self._bad(f"{what} at {addr:#x} has version {version}, not 1")
        self._check_name(what, file_name)
        found.append((None, file_name))
        at = addr + aux
        for _ in range(cnt):
            self._spend()
            _, _, other, name, anext = VERNAUX.unpack(self._table(what, at, VERNAUX.size))
            self._check_name(what, name)
            found.append((other, name))
            if not anext:
                break
            at += anext
        return nxt

    def _check_name(self, what, offset):
        if offset >= len(self.strtab):
            raise self._bad(f"{what} names offset {offset:#x}, past the {len(self.strtab)}-byte "
                            "string table")

    def _read_versym(self):
        """One version index per symbol, each defined by the version tables
        (0 and 1 are "local" and "global": unversioned)."""
        addr = self.image.dyn(DT_VERSYM)
        if not addr:
            return None
        versym = words(self._table("the symbol versions (DT_VERSYM)", addr,
                                   2 * len(self.symbols)), "H")
        known = {ndx for ndx, _ in self.versions if ndx is not None}
        unknown = {v & ~VER_HIDDEN for v in set(versym)} - known - {0, VER_NDX_GLOBAL}
        if unknown:
            i = next(i for i, v in enumerate(versym) if v & ~VER_HIDDEN in unknown)
            raise self._bad(f"symbol {i}: version index {versym[i] & ~VER_HIDDEN} is in no "
                            "version table")
        return versym


def cstring(data, offset):
    """The NUL-terminated string at ``offset`` of ``data``, decoded so that
    any byte sequence round-trips (``surrogateescape``)."""
    end = data.find(b"\0", offset)
    if end < 0:
        end = len(data)
    return data[offset:end].decode("utf-8", "surrogateescape")
