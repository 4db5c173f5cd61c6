"""One ELF file as ld.so sees it, parsed once per run (:class:`FileCache`)."""

import os
import struct
from dataclasses import dataclass, field

from ..elfimage import (DT_GNU_HASH, DT_HASH, DT_JMPREL, DT_NEEDED, DT_PLTRELSZ, DT_RELA,
                        DT_RELASZ, DT_RPATH, DT_RUNPATH, DT_SONAME, DT_SYMTAB, DT_VERDEF,
                        DT_VERDEFNUM, DT_VERNEED, DT_VERNEEDNUM, DT_VERSYM, ET_DYN, ET_EXEC,
                        PT_INTERP, SHN_ABS, SYM, ElfImage, read_elf_file)
from ..errors import UnsupportedElfError
from .symbols import (ALLOWED_TYPES, DF_1_NODEFLIB, DF_1_PIE, DF_SYMBOLIC, DT_AUXILIARY,
                      DT_FILTER, DT_FLAGS, DT_FLAGS_1, DT_PLTREL, DT_REL, DT_RELR, DT_RELRSZ,
                      DT_SYMBOLIC, STT_TLS, VER_FLG_BASE, VER_FLG_WEAK, Symbol,
                      Version, decode)


class ElfObject:
    """One ELF file as ld.so sees it: what ``_dl_map_object_from_fd``,
    ``get-dynamic-info.h``, ``_dl_setup_hash`` and ``_dl_check_map_versions``
    read from it.  Parsed once (see :class:`FileCache`)."""

    def __init__(self, data, path):
        self.path = path
        self.image = ElfImage(data, path)
        if self.image.dynamic is None:
            raise UnsupportedElfError("not dynamically linked (no PT_DYNAMIC)", path)
        self._dynstr = self.image.dynstr()
        last = {}
        for tag, value in self.image.dynamic:
            last[tag] = value           # get-dynamic-info.h: the last entry of a tag wins
        self.tags = last
        for tag in (DT_REL, DT_AUXILIARY, DT_FILTER):
            if tag in last:
                raise UnsupportedElfError(f"dynamic tag {tag:#x} (REL relocations or a "
                                          "filter) is not modelled", path)
        if DT_PLTREL in last and last[DT_PLTREL] != DT_RELA:
            raise UnsupportedElfError("DT_PLTREL is not DT_RELA", path)
        self.needed = [self.string(v) for v in self.image.dyn_all(DT_NEEDED)]
        self.soname = self._tag_string(DT_SONAME)
        self.rpath = self._tag_string(DT_RPATH)
        self.runpath = self._tag_string(DT_RUNPATH)
        flags, flags_1 = last.get(DT_FLAGS, 0), last.get(DT_FLAGS_1, 0)
        self.symbolic = DT_SYMBOLIC in last or bool(flags & DF_SYMBOLIC)
        self.nodeflib = bool(flags_1 & DF_1_NODEFLIB)
        self.is_executable = self.image.type == ET_EXEC
        self.is_pie = self.image.type == ET_DYN and bool(flags_1 & DF_1_PIE)
        self.interp = self._interp()
        self.base = min((p.vaddr for p in self.image.phdrs if p.type == 1), default=0)
        self.symbols = self._symbols()
        self.versions, self.defined_versions = self._versions()
        self.index = self._hash_index()
        self.rela_dyn, self.rela_plt = self._relocation_tables()
        self.relr = self._relr_addresses()

    def string(self, offset):
        if offset >= len(self._dynstr):
            raise UnsupportedElfError(f"bad .dynstr offset {offset}", self.path)
        end = self._dynstr.find(b"\0", offset)
        return decode(self._dynstr[offset:end if end >= 0 else None])

    def _tag_string(self, tag):
        return self.string(self.tags[tag]) if tag in self.tags else None

    def _interp(self):
        for p in self.image.phdrs:
            if p.type == PT_INTERP:
                raw = self.image.bytes_at(p.offset, p.filesz)
                return decode(raw.split(b"\0", 1)[0])
        return None

    def _symbols(self):
        count = self.image.dynsym_count()
        raw = self.image.read(self.tags[DT_SYMTAB], count * SYM.size)
        versym = self.image.versyms() if DT_VERSYM in self.tags else None
        strtab = self._dynstr
        out = []
        for i, (name, info, other, shndx, value, size) in enumerate(SYM.iter_unpack(raw)):
            end = strtab.find(b"\0", name)
            out.append(Symbol(i, decode(strtab[name:end if end >= 0 else None]), info, other,
                              shndx, value, size, versym[i] if versym else None))
        return out

    def _versions(self):
        """``l_versions``: index -> Version, from DT_VERDEF (not the base
        version, which "should not be available for matching") and
        DT_VERNEED; and the names this file defines (base included)."""
        versions, defined = {}, set()
        read = self.image.read
        addr = self.tags.get(DT_VERDEF)
        for _ in range(self.tags.get(DT_VERDEFNUM, 0) if addr else 0):
            _, flags, ndx, cnt, vhash, aux, nxt = struct.unpack("<HHHHIII", read(addr, 20))
            name = self.string(struct.unpack("<I", read(addr + aux, 4))[0]) if cnt else ""
            defined.add(name)
            if not flags & VER_FLG_BASE:
                versions[ndx & 0x7FFF] = Version(name, vhash)
            if not nxt:
                break
            addr += nxt
        addr = self.tags.get(DT_VERNEED)
        for _ in range(self.tags.get(DT_VERNEEDNUM, 0) if addr else 0):
            _, cnt, file_off, aux, nxt = struct.unpack("<HHIII", read(addr, 16))
            filename, a = self.string(file_off), addr + aux
            for _ in range(cnt):
                vhash, flags, other, name_off, anext = struct.unpack("<IHHII", read(a, 16))
                versions[other & 0x7FFF] = Version(self.string(name_off), vhash,
                                                   bool(other & 0x8000), filename,
                                                   bool(flags & VER_FLG_WEAK))
                if not anext:
                    break
                a += anext
            if not nxt:
                break
            addr += nxt
        return versions, defined

    def _hash_index(self):
        """Name -> the indices ld.so's hash walk meets, in chain order
        (``_dl_setup_hash``: DT_GNU_HASH if present, else DT_HASH).  Only
        what can ever match is kept (``check_match``'s first tests)."""
        chains = self._gnu_chains() if DT_GNU_HASH in self.tags else self._sysv_chains()
        index = {}
        symbols = self.symbols
        for i in chains:
            s = symbols[i]
            if (s.value == 0 and s.shndx != SHN_ABS and s.info & 0xF != STT_TLS) \
                    or s.info & 0xF not in ALLOWED_TYPES:
                continue
            index.setdefault(s.name, []).append(i)
        return {name: tuple(ids) for name, ids in index.items()}

    def _gnu_chains(self):
        addr = self.tags[DT_GNU_HASH]
        nbucket, symoffset, bloom_size, _ = struct.unpack("<IIII", self.image.read(addr, 16))
        buckets_at = addr + 16 + 8 * bloom_size
        buckets = struct.unpack(f"<{nbucket}I", self.image.read(buckets_at, 4 * nbucket))
        nsyms = len(self.symbols)
        if nsyms <= symoffset:
            return []
        chain = struct.unpack(f"<{nsyms - symoffset}I",
                              self.image.read(buckets_at + 4 * nbucket, 4 * (nsyms - symoffset)))
        order = []
        for start in buckets:
            i = start
            while start and symoffset <= i < nsyms:
                order.append(i)
                if chain[i - symoffset] & 1:
                    break
                i += 1
        return order

    def _sysv_chains(self):
        if DT_HASH not in self.tags:
            return []                   # l_nbuckets == 0: never searched
        addr = self.tags[DT_HASH]
        nbucket, nchain = struct.unpack("<II", self.image.read(addr, 8))
        table = struct.unpack(f"<{nbucket + nchain}I",
                              self.image.read(addr + 8, 4 * (nbucket + nchain)))
        buckets, chain = table[:nbucket], table[nbucket:]
        order = []
        for start in buckets:
            i, steps = start, 0
            while i and i < min(nchain, len(self.symbols)) and steps <= nchain:
                order.append(i)
                i, steps = chain[i], steps + 1
        return order

    def _relocation_tables(self):
        """The DT_RELA and DT_JMPREL tables as ``_ELF_DYNAMIC_DO_RELOC`` splits
        them: a DT_JMPREL table at the tail of DT_RELA's range is only
        DT_JMPREL's; without DT_PLTREL, DT_JMPREL is not processed."""
        rela_at, rela_size = self.tags.get(DT_RELA) or 0, self.tags.get(DT_RELASZ) or 0
        plt_at, plt_size = self.tags.get(DT_JMPREL) or 0, self.tags.get(DT_PLTRELSZ) or 0
        if DT_PLTREL not in self.tags:
            plt_at = plt_size = 0
        if plt_size and rela_at and rela_at + rela_size == plt_at + plt_size:
            rela_size -= plt_size
        return self._relocations(rela_at, rela_size), self._relocations(plt_at, plt_size)

    def _relr_addresses(self):
        """The words DT_RELR relocates (each by the load bias): an even
        entry is an address, an odd one a bitmap of the 63 words after
        the last address (psABI "RELR relative relocation format")."""
        addr, size = self.tags.get(DT_RELR), self.tags.get(DT_RELRSZ)
        if not addr or not size:
            return []
        words, base = [], 0
        for (entry,) in struct.iter_unpack("<Q", self.image.read(addr, size - size % 8)):
            if entry & 1 == 0:
                words.append(entry)
                base = entry + 8
                continue
            words.extend(base + 8 * i for i in range(63) if entry >> (i + 1) & 1)
            base += 63 * 8
        return words

    def _relocations(self, addr, size):
        """(r_offset, type, symbol index, r_addend) of each entry."""
        if not addr or size <= 0:
            return []
        raw = self.image.read(addr, size - size % 24)
        return [(off, info & 0xFFFFFFFF, info >> 32, addend)
                for off, info, addend in struct.iter_unpack("<QQq", raw)]

    def reference_version(self, sym_index):
        """The version a relocation against symbol ``sym_index`` asks for
        (``version`` in ``resolve_map``: none unless its hash is nonzero)."""
        versym = self.symbols[sym_index].versym
        if versym is None:
            return None
        version = self.versions.get(versym & 0x7FFF)
        return version if version is not None and version.hash else None


class FileCache:
    """Each file parsed once: by real path, and by (device, inode), which
    is how ld.so recognizes a file it has already loaded."""

    def __init__(self):
        self._by_path = {}
        self._by_id = {}

    def get(self, path):
        """The ElfObject of the file at ``path`` (symbolic links followed)."""
        real = os.path.realpath(path)
        obj = self._by_path.get(real)
        if obj is None:
            obj = ElfObject(read_elf_file(real), real)
            st = os.stat(real)
            obj.file_id = (st.st_dev, st.st_ino)
            self._by_path[real] = obj
        return obj



@dataclass(eq=False)
class MappedObject:
    """One ``struct link_map``: a file, the name ld.so gives it (``l_name``,
    what LD_DEBUG prints), the names DT_NEEDED entries match (``l_libname``),
    the object that loaded it (``l_loader``) and its symbol scopes."""

    elf: ElfObject
    name: str
    names: set
    loader: "MappedObject" = None
    origin: str = None
    is_main: bool = False
    is_rtld: bool = False
    deps: list = field(default_factory=list)     #: DT_NEEDED maps, in order
    scope: list = field(default_factory=list)    #: lists of MappedObject searched in turn

    @property
    def path(self):
        """The real path of the file."""
        return self.elf.path

    def __repr__(self):
        return f"<MappedObject {self.name}>"

