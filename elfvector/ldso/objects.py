"""One ELF file as ld.so sees it, parsed once per run (:class:`FileCache`)."""

import functools
import os
import struct
from dataclasses import dataclass, field
from itertools import repeat

from ..elfimage import (DT_JMPREL, DT_NEEDED, DT_PLTRELSZ, DT_RPATH, DT_RUNPATH, DT_SONAME,
                        DT_VERDEF, DT_VERDEFNUM, DT_VERNEED, DT_VERNEEDNUM, DT_VERSYM, ET_DYN,
                        ET_EXEC, PT_INTERP, ElfImage, read_elf_file)
from ..elffile import ElfFile
from ..errors import UnsupportedElfError
from .hashtable import HashIndex
from .symbols import (DF_1_NODEFLIB, DF_1_PIE, DF_SYMBOLIC, DT_AUXILIARY, DT_FILTER, DT_FLAGS,
                      DT_FLAGS_1, DT_PLTREL, DT_RELR, DT_RELRSZ, DT_SYMBOLIC, SHN_UNDEF,
                      STT_FUNC, STT_GNU_IFUNC, VER_FLG_BASE, VER_FLG_WEAK, Symbol, Version,
                      decode)


class ElfObject:
    """One ELF file as ld.so sees it: what ``_dl_map_object_from_fd``,
    ``get-dynamic-info.h``, ``_dl_setup_hash`` and ``_dl_check_map_versions``
    read from it.  Parsed once (see :class:`FileCache`); ``image``, the
    file's :class:`ElfImage` if a command has already read it, saves
    parsing ``data`` again; else the file is read for ``operation`` (the
    :data:`elfvector.arch.SUPPORTED` entry that says which architectures
    are read; None: x86-64 only)."""

    def __init__(self, data, path, image=None, operation=None):
        self.path = path
        self.image = image or ElfImage(data, path, operation)
        if self.image.dynamic is None:
            raise UnsupportedElfError("not dynamically linked (no PT_DYNAMIC)", self.image.path)
        self._dynstr = self.image.dynstr()
        last = {}
        for tag, value in self.image.dynamic:
            last[tag] = value           # get-dynamic-info.h: the last entry of a tag wins
        self.tags = last
        for tag in (DT_AUXILIARY, DT_FILTER):
            if tag in last:
                raise UnsupportedElfError(f"dynamic tag {tag:#x} (a filter) is not modelled",
                                          self.image.path)
        self.machine = self.image.arch                  #: the elfstruct.Machine
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
        self._raw = self.image.dynsyms()                # elfstruct.Sym records
        self._versym = self.image.versyms() if DT_VERSYM in last else None
        self._one = {}                                  # index -> Symbol, as asked
        self._undefined = None
        self.versions, self.defined_versions = self._versions()
        self.index = HashIndex(self._raw, self._dynstr, last, self.image.read,
                               8 * self.image.layout.word)

    def string(self, offset):
        if offset >= len(self._dynstr):
            raise UnsupportedElfError(f"bad .dynstr offset {offset}", self.image.path)
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

    @functools.cached_property
    def symbols(self):
        """Every .dynsym entry, a :class:`Symbol` each (built when first
        asked: a big library has tens of thousands, of which a lookup reads
        a few, through :meth:`symbol`)."""
        names, versym = self.image.symbol_names(), self._versym or repeat(None)
        make = tuple.__new__
        return [make(Symbol, (i, names[i], s.info, s.other, s.shndx, s.value, s.size, v))
                for i, s, v in zip(range(len(self._raw)), self._raw, versym)]

    def symbol(self, i, name=None):
        """The :class:`Symbol` at index ``i`` of .dynsym; ``name`` is its
        name when the caller knows it (a lookup, which found it by name)."""
        sym = self._one.get(i)
        if sym is None:
            s = self._raw[i]
            sym = self._one[i] = tuple.__new__(Symbol, (
                i, self.string(s.name) if name is None else name, s.info, s.other, s.shndx,
                s.value, s.size, None if self._versym is None else self._versym[i]))
        return sym

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

    @functools.cached_property
    def rela_dyn(self):
        """(r_offset, type, symbol index, addend) of each entry of the
        dynamic relocation table (DT_RELA, or i386's DT_REL, whose addend
        is the word it relocates) that ld.so applies before DT_JMPREL's
        (read when first asked: only the start-up replay needs them)."""
        return self._relocation_tables()[0]

    @functools.cached_property
    def rela_plt(self):
        """The same of each DT_JMPREL entry."""
        return self._relocation_tables()[1]

    @functools.cached_property
    def relr(self):
        """The words DT_RELR relocates by the load bias."""
        return self._relr_addresses()

    def _relocation_tables(self):
        """The dynamic relocation table and DT_JMPREL as
        ``_ELF_DYNAMIC_DO_RELOC`` splits them: a DT_JMPREL table at the tail
        of the other's range is only DT_JMPREL's; without DT_PLTREL,
        DT_JMPREL is not processed."""
        addr_tag, size_tag, _ = self.image.dynamic_relocation_tags
        rel_at, rel_size = self.tags.get(addr_tag) or 0, self.tags.get(size_tag) or 0
        plt_at, plt_size = self.tags.get(DT_JMPREL) or 0, self.tags.get(DT_PLTRELSZ) or 0
        if DT_PLTREL not in self.tags:
            plt_at = plt_size = 0
        dyn = self._relocations(addr_tag) if rel_at and rel_size > 0 else []
        plt = self._relocations(DT_JMPREL) if plt_at and plt_size > 0 else []
        if plt and rel_at + rel_size == plt_at + plt_size:
            dyn = dyn[:max(0, len(dyn) - len(plt))]
        return dyn, plt

    def _relr_addresses(self):
        """The words DT_RELR relocates (each by the load bias): an even
        entry is an address, an odd one a bitmap of the words after the
        last address (63 in ELF64, 31 in ELF32: psABI "RELR relative
        relocation format")."""
        addr, size = self.tags.get(DT_RELR), self.tags.get(DT_RELRSZ)
        if not addr or not size:
            return []
        word = self.image.layout.word
        bits = 8 * word - 1
        words, base = [], 0
        for (entry,) in struct.iter_unpack("<Q" if word == 8 else "<I",
                                           self.image.read(addr, size - size % word)):
            if entry & 1 == 0:
                words.append(entry)
                base = entry + word
                continue
            words.extend(base + word * i for i in range(bits) if entry >> (i + 1) & 1)
            base += bits * word
        return words

    def _relocations(self, tag):
        """(r_offset, type, symbol index, addend) of each entry of the table
        at ``tag``, as the ELF core reads it."""
        offsets, infos, addends = self.image.tables.relocation_fields(tag)
        shift = self.image.layout.sym_shift
        mask = (1 << shift) - 1
        return [(off, info & mask, info >> shift, addend)
                for off, info, addend in zip(offsets, infos, addends)]

    @functools.cached_property
    def file(self):
        """The same file through :class:`~elfvector.elffile.ElfFile`'s
        questions (what it exports and imports, by name), without a second
        read."""
        return ElfFile.from_image(self.image)

    def undefined_names(self):
        """The names of the symbols this file leaves undefined."""
        if self._undefined is None:
            strtab = self._dynstr + b"\0"
            find = strtab.find
            self._undefined = frozenset(
                strtab[s.name:find(b"\0", s.name)].decode("utf-8", "surrogateescape")
                for s in self._raw[1:] if s.shndx == SHN_UNDEF)
        return self._undefined

    def reference_versions(self):
        """Version name -> the :class:`Version` a reference of this file
        asks for under that name (from DT_VERNEED)."""
        return {v.name: v for v in self.versions.values() if v.filename is not None and v.hash}

    def imported_functions(self):
        """(name, Version or None) of each undefined function (FUNC or
        IFUNC) this file asks ld.so for, with the version its references
        ask for: what ``nm -u -D`` lists."""
        strtab = self._dynstr + b"\0"
        find = strtab.find
        wanted = [(i, s.name) for i, s in enumerate(self._raw)
                  if i and s.shndx == SHN_UNDEF and s.info & 0xF in (STT_FUNC, STT_GNU_IFUNC)
                  and strtab[s.name] != 0]
        return [(strtab[start:find(b"\0", start)].decode("utf-8", "surrogateescape"),
                 self.reference_version(i)) for i, start in wanted]

    def version_of(self, sym):
        """(version name or None, whether it is the default version) of
        the definition ``sym``: ``name@@VER`` is the default, ``name@VER``
        (VERSYM_HIDDEN) is not, an unversioned one is."""
        version = self.versions.get(sym.versym & 0x7FFF) if sym.versym is not None else None
        return (None, True) if version is None else (version.name, not sym.versym & 0x8000)

    def reference_version(self, sym_index):
        """The version a relocation against symbol ``sym_index`` asks for
        (``version`` in ``resolve_map``: none unless its hash is nonzero)."""
        if self._versym is None:
            return None
        version = self.versions.get(self._versym[sym_index] & 0x7FFF)
        return version if version is not None and version.hash else None


class FileCache:
    """Each file parsed once: by real path, and by (device, inode), which
    is how ld.so recognizes a file it has already loaded.  Files are read
    for ``operation``, the command asking (a key of
    :data:`elfvector.arch.SUPPORTED`: the architectures it handles are
    read, the others refused in its name; None: x86-64 only)."""

    def __init__(self, operation=None):
        self.operation = operation
        self._by_path = {}
        self._real = {}                 # path -> real path: files do not move during a run

    def get(self, path, image=None):
        """The ElfObject of the file at ``path`` (symbolic links followed);
        ``image`` is the file as a command has just read it (a file read
        anew, impvec's relinked trial, replaces what was known of it)."""
        real = self._real.get(path)
        if real is None:
            real = self._real[path] = os.path.realpath(path)
        obj = self._by_path.get(real)
        if obj is None or (image is not None and obj.image is not image):
            obj = ElfObject(image.data if image else read_elf_file(real), real, image,
                            self.operation)
            st = os.stat(real)
            obj.file_id = (st.st_dev, st.st_ino)
            self._by_path[real] = obj
        return obj

    def forget(self, path):
        """Parse the file at ``path`` again if asked again: a program among
        many (vecstat) need not stay in memory."""
        self._by_path.pop(os.path.realpath(path), None)
        self._real.pop(path, None)


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

