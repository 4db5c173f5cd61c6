"""A little-endian ELF file in memory: read, checked, bounds-checked.

The post-link commands change a linked file in place and by appending, so
they need byte-exact control that LIEF's builder does not give (its output
was rejected by ``eu-elflint`` and broken by a later ``strip``).  This
module is the raw view every command reads through: the ELF header, the
program and section headers, the dynamic section, and (through
:mod:`elfvector.elftables`) symbols, relocations, versions and hash tables.

Everything is checked once, when the file is opened, so that the commands
accept and refuse the same files: a field that does not fit the file is a
:class:`~elfvector.errors.NotElfError` saying which, never a
``struct.error`` later or an allocation sized by a number nobody checked.
Every access after that is bounds-checked too; a value that does not fit
is an error, never truncated.

An x86-64 or AArch64 file is ELF64, an i386 file ELF32 with REL
relocations: ``layout`` holds the record formats of the file's class and
``arch`` its psABI facts, so every check below holds for each.  Which
operations handle which architecture is :data:`elfvector.arch.SUPPORTED`;
a command names itself (``operation``) when it opens a file, and code that
does not is x86-64's.
"""

import os
import stat
import struct

from .elfstruct import *  # noqa: F401,F403  (the layout: callers import it from here)
from . import arch as arches
from .elfstruct import (DF_1_PIE, DT_FLAGS_1, DT_GNU_HASH, DT_NULL, DT_SONAME, EHDR,
                        ELFCLASS64, ELFDATA2LSB, ET_CORE, ET_DYN, ET_EXEC, ET_REL,
                        EV_CURRENT, KNOWN_MACHINES, LAYOUTS, MACHINES, PT_DYNAMIC, PT_INTERP,
                        PT_LOAD, SHF_ALLOC, SHF_TLS, SHT_NOBITS, SHT_STRTAB, VER_NDX_GLOBAL,
                        Shdr)
from .elftables import DynamicTables, cstring
from .errors import NotElfError, UnsupportedElfError

_TYPE_NAMES = {ET_REL: "a relocatable object file (.o), not a linked program or library",
               ET_CORE: "a core dump, not a program or library"}


def read_elf_file(path):
    """The bytes of the ELF file at ``path``, which must be a regular file.

    ``stat`` (following symbolic links) comes first: opening a FIFO would
    block until a writer comes, and a device or a directory is no ELF file.
    The open itself does not block (``O_NONBLOCK``) and the descriptor is
    checked again, so a path swapped for a FIFO in between cannot hang us.
    """
    try:
        _require_regular(os.stat(path), path)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise NotElfError(f"cannot read: {e.strerror}", path) from None
    try:
        with open(fd, "rb", closefd=True) as f:
            _require_regular(os.fstat(f.fileno()), path)
            return f.read()
    except OSError as e:
        raise NotElfError(f"cannot read: {e.strerror}", path) from None


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def not_regular_reason(mode):
    """None for a regular file's ``st_mode``, else "not a regular file (a FIFO)"."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "a special file")
    return f"not a regular file ({kind})"


def _require_regular(st, path):
    reason = not_regular_reason(st.st_mode)
    if reason:
        raise NotElfError(reason, path)


def machine_of(data):
    """The :class:`~elfvector.elfstruct.Machine` of an ELF header (``e_ident``
    and ``e_machine``), or None if the core does not read that class,
    byte order and machine together."""
    if data[5] != ELFDATA2LSB:
        return None
    machine = KNOWN_MACHINES.get(int.from_bytes(data[18:20], "little"))
    return machine if machine is not None and machine.elfclass == data[4] else None


def describe_unsupported(data, operation=None):
    """Why an ELF header is not one ``operation`` handles (None: code that
    is x86-64's), or None if it is: "32-bit ELF (i386): not supported yet
    by vecstat (...)"."""
    bits = 64 if data[4] == ELFCLASS64 else 32
    order = "little" if data[5] == ELFDATA2LSB else "big"
    machine = int.from_bytes(data[18:20], order)
    endian = "" if order == "little" else "big-endian "
    prefix = f"{bits}-bit {endian}ELF ({MACHINES.get(machine, f'machine {machine}')})"
    known = machine_of(data)
    if known is None:
        return f"{prefix}: not supported yet"
    if arches.handles(operation, known.name):
        return None
    return f"{prefix}: not supported yet {arches.refusal(operation, known)}"


class ElfImage:
    """A whole little-endian executable or shared object in memory.

    ``operation`` names the command reading it (a key of
    :data:`elfvector.arch.SUPPORTED`); None stands for code that handles
    x86-64 files only.  ``layout`` is the file's class
    (:class:`~elfvector.elfstruct.Layout`), ``arch`` its architecture
    (:class:`~elfvector.elfstruct.Machine`).
    """

    def __init__(self, data, path, operation=None):
        self.data = data if isinstance(data, bytes) else bytes(data)
        self.path = path
        self._check_ident(operation)
        self.arch = machine_of(self.data)
        self.layout = LAYOUTS[self.arch.elfclass]
        (self.ident, self.type, self.machine, self.version, self.entry, self.phoff,
         self.shoff, self.flags, self.ehsize, self.phentsize, self.phnum, self.shentsize,
         self.shnum, self.shstrndx) = self.layout.ehdr.unpack_from(self.data)
        self._check_header()
        layout = self.layout
        self.phdrs = [layout.unpack_phdr(self.data, offset) for offset in
                      self._entries("program header", self.phoff, self.phnum, layout.phdr)]
        self.shdrs = [Shdr(*layout.shdr.unpack_from(self.data, offset)) for offset in
                      self._entries("section header", self.shoff, self.shnum, layout.shdr)]
        self._check_segments()
        self.section_names = self._read_section_names()
        self._check_sections()
        self.dynamic = self._read_dynamic()
        self.tables = DynamicTables(self) if self.dynamic is not None else None
        self._names = None
        self._version_names = None

    def _bad(self, reason):
        return NotElfError(reason, self.path)

    # -- the headers --------------------------------------------------------
    def _check_ident(self, operation):
        data = self.data
        if data[:4] != b"\x7fELF":
            raise self._bad("not an ELF file")
        if len(data) < 20:
            raise self._bad("truncated ELF file (the ELF header is incomplete)")
        if data[4] not in (1, 2) or data[5] not in (1, 2):
            raise self._bad(f"bad ELF class {data[4]} or data encoding {data[5]} (e_ident)")
        if data[6] != EV_CURRENT:
            raise self._bad(f"bad ELF version {data[6]} (e_ident[EI_VERSION])")
        reason = describe_unsupported(data, operation)
        if reason:
            raise UnsupportedElfError(reason, self.path)
        if len(data) < LAYOUTS[data[4]].ehdr.size:
            raise self._bad("truncated ELF file (the ELF header is incomplete)")

    def _check_header(self):
        if self.type not in (ET_EXEC, ET_DYN):
            what = _TYPE_NAMES.get(self.type, f"ELF type {self.type}")
            raise UnsupportedElfError(f"{what}: not an executable or shared object", self.path)
        if self.version != EV_CURRENT:
            raise self._bad(f"bad ELF version {self.version} (e_version)")
        layout = self.layout
        if self.phnum == 0:
            raise self._bad("no program headers (e_phnum is 0)")
        if self.phentsize != layout.phdr.size:
            raise self._bad(f"e_phentsize is {self.phentsize}, not {layout.phdr.size}")
        if self.phoff < layout.ehdr.size or (self.shnum and self.shoff < layout.ehdr.size):
            raise self._bad(f"e_phoff {self.phoff:#x} or e_shoff {self.shoff:#x} points into "
                            "the ELF header")
        if self.shnum and self.shentsize != layout.shdr.size:
            raise self._bad(f"e_shentsize is {self.shentsize}, not {layout.shdr.size}")

    def _entries(self, what, offset, count, record):
        """The offsets of ``count`` records of ``record`` at ``offset``, all
        inside the file."""
        if count and offset + count * record.size > len(self.data):
            raise self._bad(f"truncated ELF file: the {count} {what}s at {offset:#x} run "
                            f"past its end ({len(self.data)} bytes)")
        return [offset + i * record.size for i in range(count)]

    def _check_segments(self):
        """File bytes inside the file; PT_LOADs inside the user address
        space (47 bits on x86-64, 48 on AArch64, 32 on i386) with p_memsz
        >= p_filesz (as ld.so maps them)."""
        for i, p in enumerate(self.phdrs):
            if p.filesz and p.offset + p.filesz > len(self.data):
                raise self._bad(f"truncated ELF file: segment {i} ({p.filesz} bytes at "
                                f"{p.offset:#x}) runs past its end ({len(self.data)} bytes)")
            if p.type != PT_LOAD:
                continue
            if p.memsz < p.filesz:
                raise self._bad(f"segment {i}: p_memsz {p.memsz:#x} is less than p_filesz "
                                f"{p.filesz:#x}")
            if p.vaddr + p.memsz > self.arch.address_end:
                bits = self.arch.address_end.bit_length() - 1
                raise self._bad(f"segment {i}: {p.memsz:#x} bytes at {p.vaddr:#x} end past "
                                f"the {bits}-bit address space")
        if not any(p.type == PT_LOAD for p in self.phdrs):
            raise self._bad("no loadable segment (PT_LOAD)")

    # -- sections -----------------------------------------------------------
    def _read_section_names(self):
        if not self.shdrs:
            return []
        if not 0 < self.shstrndx < len(self.shdrs) or \
                self.shdrs[self.shstrndx].type != SHT_STRTAB:
            raise self._bad(f"e_shstrndx {self.shstrndx} is not a string table section "
                            f"({len(self.shdrs)} sections)")
        table = self.shdrs[self.shstrndx]
        names = self.data[table.offset:table.offset + table.size]
        if len(names) != table.size:
            raise self._bad("truncated ELF file: the section name table runs past its end")
        for i, s in enumerate(self.shdrs):
            if s.name >= max(table.size, 1):
                raise self._bad(f"section {i}: name offset {s.name:#x} is past the "
                                f"{table.size}-byte section name table")
        return [cstring(names, s.name) for s in self.shdrs]

    def _check_sections(self):
        for i, s in enumerate(self.shdrs):
            if s.type != SHT_NOBITS and s.size and s.offset + s.size > len(self.data):
                raise self._bad(f"truncated ELF file: section {i} ({self.section_names[i]}, "
                                f"{s.size} bytes at {s.offset:#x}) runs past its end")
            if s.addralign & (s.addralign - 1):
                raise self._bad(f"section {i} ({self.section_names[i]}): alignment "
                                f"{s.addralign:#x} is not a power of two")

    def section(self, name):
        """(index, Shdr) of the section called ``name``, or (None, None)."""
        for i, n in enumerate(self.section_names):
            if n == name:
                return i, self.shdrs[i]
        return None, None

    def section_at(self, vaddr):
        for i, s in enumerate(self.shdrs):
            if s.flags & SHF_ALLOC and s.addr == vaddr and s.size:
                return i, s
        return None, None

    def section_containing(self, vaddr):
        """(index, Shdr) of the allocated section whose bytes hold ``vaddr``,
        or (None, None).  ``.tbss`` holds none: its addresses are the
        template of each thread's block, which the sections after it reuse."""
        for i, s in enumerate(self.shdrs):
            if s.flags & SHF_ALLOC and s.addr <= vaddr < s.addr + s.size and \
                    not (s.flags & SHF_TLS and s.type == SHT_NOBITS):
                return i, s
        return None, None

    def static_symbols(self):
        """``[(name, Sym)]`` of ``.symtab`` (empty without one, as after
        ``strip``): local and hidden symbols, which ``.dynsym`` leaves out."""
        _, symtab = self.section(".symtab")
        if symtab is None or not 0 < symtab.link < len(self.shdrs):
            return []
        strtab = self.shdrs[symtab.link]
        strings = self.bytes_at(strtab.offset, strtab.size)
        size = self.layout.sym.size
        raw = self.bytes_at(symtab.offset, symtab.size - symtab.size % size)
        return [(cstring(strings, s.name) if s.name < len(strings) else "", s)
                for s in self.layout.iter_syms(raw)]

    # -- raw access -----------------------------------------------------------
    def bytes_at(self, offset, size):
        if offset < 0 or size < 0 or offset + size > len(self.data):
            raise NotElfError(f"truncated ELF file (needs bytes {offset:#x}+{size})", self.path)
        return self.data[offset:offset + size]

    def _load_at(self, vaddr, size):
        for p in self.phdrs:
            if p.type == PT_LOAD and p.vaddr <= vaddr and vaddr + size <= p.vaddr + p.filesz:
                return p
        return None

    def in_file(self, vaddr, size):
        """True if the ``size`` bytes at ``vaddr`` are file bytes of one PT_LOAD."""
        return self._load_at(vaddr, size) is not None

    def bytes_in_segment(self, vaddr):
        """How many file bytes the PT_LOAD holding ``vaddr`` has from there on (0: none)."""
        p = self._load_at(vaddr, 0)
        return 0 if p is None else p.vaddr + p.filesz - vaddr

    def offset_of(self, vaddr, size=1):
        """File offset of virtual address ``vaddr`` (inside a PT_LOAD's file bytes)."""
        p = self._load_at(vaddr, size)
        if p is None:
            raise NotElfError(f"address {vaddr:#x} is not in the file", self.path)
        return vaddr - p.vaddr + p.offset

    def read(self, vaddr, size):
        return self.bytes_at(self.offset_of(vaddr, size), size)

    # -- dynamic ----------------------------------------------------------------
    def _read_dynamic(self):
        """The entries of PT_DYNAMIC up to DT_NULL, read where ld.so reads
        them: at its address, which must be the file bytes at its offset."""
        dyn = [p for p in self.phdrs if p.type == PT_DYNAMIC]
        if not dyn:
            return None
        if len(dyn) > 1:
            raise self._bad(f"{len(dyn)} PT_DYNAMIC segments")
        p, record = dyn[0], self.layout.dyn
        if p.filesz < record.size or not self.in_file(p.vaddr, p.filesz) or \
                self.offset_of(p.vaddr, p.filesz) != p.offset:
            raise self._bad(f"PT_DYNAMIC ({p.filesz} bytes at {p.offset:#x}, address "
                            f"{p.vaddr:#x}) is not the file bytes of a loadable segment")
        entries = []
        for tag, value in record.iter_unpack(self.data[p.offset:p.offset + p.filesz
                                                       - p.filesz % record.size]):
            entries.append([tag, value])
            if tag == DT_NULL:
                break
        else:
            raise self._bad("the dynamic section has no DT_NULL entry at its end")
        self.dynamic_offset = p.offset
        self.dynamic_capacity = p.filesz // record.size
        return entries

    def dyn(self, tag):
        for t, v in self.dynamic or []:
            if t == tag:
                return v
        return None

    def dyn_all(self, tag):
        return [v for t, v in self.dynamic or [] if t == tag]

    @property
    def is_pie_or_dso(self):
        return self.type == ET_DYN

    @property
    def is_executable(self):
        return self.type == ET_EXEC or any(p.type == PT_INTERP for p in self.phdrs)

    @property
    def is_pie(self):
        """A position-independent executable: ET_DYN marked DF_1_PIE by the
        link editor or, from linkers older than that flag, with an
        interpreter and no DT_SONAME.  A library may have an interpreter
        too (libc.so.6 runs), but it has a soname."""
        if self.type != ET_DYN:
            return False
        if (self.dyn(DT_FLAGS_1) or 0) & DF_1_PIE:
            return True
        return any(p.type == PT_INTERP for p in self.phdrs) and self.dyn(DT_SONAME) is None

    # -- dynamic symbols (checked by DynamicTables) -----------------------------
    def _checked_tables(self):
        if self.tables is None:
            raise UnsupportedElfError("statically linked (no dynamic section)", self.path)
        return self.tables

    def dynstr(self):
        return self._checked_tables().strtab

    def string(self, offset):
        """The .dynstr name at ``offset``; any bytes round-trip (surrogateescape)."""
        return self._checked_tables().string(offset)

    def dynsym_count(self):
        return len(self._checked_tables().symbols)

    def dynsyms(self):
        return list(self._checked_tables().symbols)

    def symbol_names(self):
        """The name of every .dynsym entry, by index (decoded once)."""
        if self._names is None:
            tables = self._checked_tables()
            self._names = [tables.string(s.name) for s in tables.symbols]
        return self._names

    def versyms(self):
        versym = self._checked_tables().versym
        return None if versym is None else list(versym)

    def version_strings(self):
        """(version index or None, .dynstr offset) of every name the
        version tables hold: DT_VERDEF names, DT_VERNEED file names (index
        None) and their version names."""
        return iter(self._checked_tables().versions)

    def version_names(self):
        """Version index -> name, for the indices >= 2 that DT_VERDEF and
        DT_VERNEED define.  0 and 1 (the base definition, named after the
        file) mean unversioned, as in ld.so's ``check_match``."""
        if self._version_names is None:
            tables = self._checked_tables()
            self._version_names = {ndx: tables.string(off) for ndx, off in tables.versions
                                   if ndx is not None and ndx > VER_NDX_GLOBAL}
        return self._version_names

    def relas(self, addr_tag, size_tag):
        """The relocations of the table at ``addr_tag`` (DT_RELA, DT_REL or
        DT_JMPREL): :class:`Rela` entries, :class:`Rela32` in ELF32."""
        if self.tables is None:
            return []
        return self.tables.relocations(addr_tag)

    @property
    def dynamic_relocation_tags(self):
        """(address, size, entry size) tags of the file's dynamic relocation
        table: DT_RELA on x86-64 and AArch64, DT_REL on i386."""
        return self.arch.relocation_table()

    def dynamic_relocations(self):
        """The entries of ``.rela.dyn`` (``.rel.dyn`` on i386)."""
        addr_tag, size_tag, _ = self.dynamic_relocation_tags
        return self.relas(addr_tag, size_tag)


# -- hash tables ----------------------------------------------------------

def _name_bytes(name):
    return name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")


def gnu_hash(name):
    """The DT_GNU_HASH hash of a symbol name (its bytes, as ld.so hashes them)."""
    h = 5381
    for c in _name_bytes(name):
        h = (h * 33 + c) & 0xFFFFFFFF
    return h


def sysv_hash(name):
    """The DT_HASH (SysV ``elf_hash``) hash of a symbol name's bytes."""
    h = 0
    for c in _name_bytes(name):
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


def gnu_hash_header(image):
    """``(nbucket, symoffset, bloom_size, bloom_shift)`` of a checked .gnu.hash."""
    if image.tables is None or not image.dyn(DT_GNU_HASH):
        raise UnsupportedElfError("no .gnu.hash table (DT_GNU_HASH)", image.path)
    return image.tables.gnu_hash_header()


def gnu_hash_symbol_count(image):
    """Symbols covered by DT_GNU_HASH: one past the end of its last chain."""
    gnu_hash_header(image)
    return image.tables.gnu_hash_count()


def build_gnu_hash(names, symoffset, nbucket, bloom_size, bloom_shift, word_bits=64):
    """A .gnu.hash for symbols ``symoffset..`` whose ``names`` are already
    sorted by bucket (see :func:`gnu_bucket_order`); the Bloom filter's
    words are ``word_bits`` wide, the ELF class's (32 in an i386 file)."""
    hashes = [gnu_hash(n) for n in names]
    bloom = [0] * bloom_size
    for h in hashes:
        word = (h // word_bits) % bloom_size
        bloom[word] |= (1 << (h % word_bits)) | (1 << ((h >> bloom_shift) % word_bits))
    buckets = [0] * nbucket
    chains = []
    for i, h in enumerate(hashes):
        b = h % nbucket
        if not buckets[b]:
            buckets[b] = symoffset + i
        last_in_bucket = i + 1 == len(hashes) or hashes[i + 1] % nbucket != b
        chains.append((h & ~1) | (1 if last_in_bucket else 0))
    return (struct.pack("<IIII", nbucket, symoffset, bloom_size, bloom_shift)
            + struct.pack(f"<{bloom_size}{'Q' if word_bits == 64 else 'I'}", *bloom)
            + struct.pack(f"<{nbucket}I", *buckets)
            + struct.pack(f"<{len(chains)}I", *chains))


def build_sysv_hash(names, nbucket):
    """A DT_HASH table over all symbols (index 0 is the null symbol)."""
    buckets, chains = [0] * nbucket, [0] * len(names)
    for i in range(1, len(names)):
        b = sysv_hash(names[i]) % nbucket
        chains[i] = buckets[b]
        buckets[b] = i
    return struct.pack(f"<II{nbucket}I{len(names)}I", nbucket, len(names), *buckets, *chains)
