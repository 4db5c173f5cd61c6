"""The questions the operations ask of an ELF file, in plain Python values.

What does it need, what does it define and import, at which versions,
which imports need a canonical address: answered from the project's own
reader (:class:`~elfvector.elfimage.ElfImage`, which checks the whole file
when it opens it), so a command pays no LIEF import and every command
accepts and refuses the same files.  Each file is read once; symbols are
flattened and indexed by name only when first asked for.

Names are ``str`` decoded with ``surrogateescape``: a name that is not
UTF-8 keeps its bytes (``name.encode("utf-8", "surrogateescape")``).
"""

import os
from typing import NamedTuple

from .elfimage import (DT_JMPREL, DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME, ET_DYN,
                       PT_INTERP, PT_LOAD, STT_FUNC, SHN_UNDEF, STT_GNU_IFUNC, VER_HIDDEN,
                       ElfImage, read_elf_file)

#: what an unknown type, binding or visibility value reads as
OTHER = "other"
_KINDS = {0: "notype", 1: "object", 2: "func", 3: "section", 4: "file", 5: "common",
          6: "tls", 10: "ifunc"}
_BINDINGS = {0: "local", 1: "global", 2: "weak", 10: "gnu_unique"}
_VISIBILITIES = ("default", "internal", "hidden", "protected")
_FUNCTION_TYPES = (STT_FUNC, STT_GNU_IFUNC)


class DynSymbol(NamedTuple):
    """One ``.dynsym`` entry, flattened.

    ``version`` is the version name bound to the symbol (for an undefined
    symbol, the version the file requires); ``default`` is False for a
    hidden (``name@VER``) definition.  Immutable, as a frozen dataclass
    would be, and built three times faster: impvec makes tens of thousands.
    """

    name: str
    version: str
    default: bool
    defined: bool
    kind: str          # "func", "ifunc", "object", "tls", "notype", ..., "other"
    binding: str       # "global", "weak", "local", "gnu_unique", "other"
    visibility: str    # "default", "protected", "hidden", "internal"
    value: int

    @property
    def is_function(self):
        return self.kind in ("func", "ifunc")

    @property
    def is_exported_function(self):
        return (self.defined and self.is_function and self.binding in ("global", "weak")
                and self.visibility in ("default", "protected"))


class ElfFile:
    """A read-only view of a dynamically linked ELF file.

    ``arch`` is the architecture's name (``"x86_64"``, ``"i386"``,
    ``"aarch64"``: an :mod:`elfvector.arch` key); ``operation`` names the
    command reading the file (see :class:`ElfImage`: None, x86-64 only).
    ``light`` is accepted for compatibility: every part is parsed lazily now.
    """

    def __init__(self, path, light=False, operation=None):
        self.path = path
        self.image = ElfImage(read_elf_file(path), path, operation)
        self.arch = self.image.arch.name
        self._empty_caches()

    @classmethod
    def from_image(cls, image):
        """The view of an already read :class:`ElfImage` (no second read)."""
        elf = cls.__new__(cls)
        elf.path, elf.image, elf.arch = image.path, image, image.arch.name
        elf._empty_caches()
        return elf

    def _relocation_tables(self):
        """The dynamic tags of the file's relocation tables: the dynamic
        ones (DT_RELA, or DT_REL on i386) and the PLT's (DT_JMPREL)."""
        return (self.image.dynamic_relocation_tags[0], DT_JMPREL)

    def _empty_caches(self):
        """No symbol decoded yet: each is decoded once, on first use."""
        self._symbols = None
        self._by_name = None
        self._function_indices = None
        self._function_defs = {}
        self._flat = {}
        self._versions = {}

    # -- identity -------------------------------------------------------
    @property
    def is_shared_object(self):
        """True for a DSO proper (ET_DYN that is not a PIE)."""
        return self.image.type == ET_DYN and not self.is_pie

    @property
    def is_pie(self):
        """A position-independent executable (:attr:`ElfImage.is_pie`; libc.so.6,
        which has an interpreter, is not one)."""
        return self.image.is_pie

    @property
    def is_dynamic(self):
        return bool(self.image.dyn_all(DT_NEEDED)) or self._has_interpreter

    @property
    def _has_interpreter(self):
        return any(p.type == PT_INTERP for p in self.image.phdrs)

    @property
    def soname(self):
        offset = self.image.dyn(DT_SONAME)
        return None if offset is None else self.image.string(offset)

    @property
    def needed(self):
        return [self.image.string(v) for v in self.image.dyn_all(DT_NEEDED)]

    @property
    def runpath(self):
        """(DT_RPATH dirs, DT_RUNPATH dirs), ``$ORIGIN`` expanded.

        An empty string is no directory at all, while an empty entry of a
        list is the current directory (glibc ``decompose_rpath``,
        ``fillin_rpath``).
        """
        origin = os.path.dirname(os.path.abspath(self.path))
        found = {DT_RPATH: [], DT_RUNPATH: []}
        for tag, value in self.image.dynamic or []:
            if tag in found and self.image.string(value):
                for d in self.image.string(value).split(":"):
                    found[tag].append(d.replace("${ORIGIN}", origin).replace("$ORIGIN", origin))
        return found[DT_RPATH], found[DT_RUNPATH]

    # -- symbols --------------------------------------------------------
    def _flattened(self, indices):
        """The :class:`DynSymbol` of each ``.dynsym`` index of ``indices``,
        each decoded once (impvec asks for tens of thousands: the loop binds
        its lookups locally and decodes each version index once)."""
        image, flat = self.image, self._flat
        if not indices:
            return []
        symbols, versym = image.tables.symbols, image.tables.versym
        names = image.symbol_names()
        found = []
        for i in indices:
            sym = flat.get(i)
            if sym is None:
                s = symbols[i]
                info = s.info
                version, default = (None, True) if versym is None else self._version(versym[i])
                sym = flat[i] = DynSymbol(names[i], version, default, s.shndx != SHN_UNDEF,
                                          _KINDS.get(info & 0xF, OTHER),
                                          _BINDINGS.get(info >> 4, OTHER),
                                          _VISIBILITIES[s.other & 3], s.value)
            found.append(sym)
        return found

    def _version(self, versym):
        """(version name or None, is default) of a ``.gnu.version`` entry."""
        decoded = self._versions.get(versym)
        if decoded is None:
            version = self.image.version_names().get(versym & ~VER_HIDDEN)
            decoded = self._versions[versym] = (version,
                                                version is None or not versym & VER_HIDDEN)
        return decoded

    @property
    def dynamic_symbols(self):
        """Every named ``.dynsym`` entry, flattened, in table order."""
        if self._symbols is None:
            names = self.image.symbol_names() if self.image.tables else []
            self._symbols = self._flattened([i for i in range(1, len(names)) if names[i]])
        return self._symbols

    def exported_functions(self):
        return [s for s in self.dynamic_symbols if s.is_exported_function]

    def imported_functions(self):
        """Undefined function symbols this file asks ld.so for."""
        return [s for s in self.dynamic_symbols if not s.defined and s.is_function]

    def undefined_names(self):
        if "_undefined" not in self.__dict__:
            self._undefined = frozenset(s.name for s in self.dynamic_symbols if not s.defined)
        return self._undefined

    def defined_names(self):
        if "_defined" not in self.__dict__:
            self._defined = frozenset(s.name for s in self.dynamic_symbols if s.defined)
        return self._defined

    def address_taken_imports(self):
        """Names of imported functions whose address this file takes.

        A function is address-taken when a dynamic relocation other than a
        PLT slot names it (GLOB_DAT, R_X86_64_64, R_386_32, ...), or when a non-PIE
        executable gave it a canonical PLT address (undefined with a
        non-zero ``st_value``).  Such functions need one canonical address
        shared with every other object.
        """
        names = {s.name for s in self.dynamic_symbols
                 if not s.defined and s.is_function and s.value}
        if self.image.tables is None:
            return names
        symbol_names = self.image.symbol_names()
        shift, jump_slot = self.image.layout.sym_shift, self.image.arch.jump_slot
        mask = (1 << shift) - 1
        for tag in self._relocation_tables():
            _, infos, _ = self.image.tables.relocation_fields(tag)
            for info in infos:
                if info >> shift and info & mask != jump_slot:
                    name = symbol_names[info >> shift]
                    if name:
                        names.add(name)
        return names

    # -- lookups by name: one index, built on first use ----------------------
    def _named(self, name):
        """Indices of the .dynsym entries called ``name``."""
        if self._by_name is None:
            self._by_name = {}
            if self.image.tables is not None:
                for i, n in enumerate(self.image.symbol_names()):
                    self._by_name.setdefault(n, []).append(i)
        return self._by_name.get(name, ())

    def imported_function_versions(self):
        """``{(name, version)}`` of the undefined functions (``version`` as
        required, or None): what ``nm -u -D`` lists, without flattening
        every symbol of a .dynsym that may also define thousands."""
        image = self.image
        if image.tables is None:
            return set()
        names, versym = image.symbol_names(), image.tables.versym
        versions = image.version_names()
        found = set()
        for i, s in enumerate(image.tables.symbols):
            if i and not s.defined and s.type in _FUNCTION_TYPES and names[i]:
                found.add((names[i], None if versym is None
                           else versions.get(versym[i] & ~VER_HIDDEN)))
        return found

    def function_definitions(self, name):
        """The defined function symbols named ``name`` (every version).

        impvec asks this of every library for every import: one index of
        the defined functions by name, built on first use, answers it."""
        if self._function_indices is None:
            self._function_indices = self._index_functions()
        indices = self._function_indices.get(name)
        if indices is None:
            return []
        found = self._function_defs.get(name)
        if found is None:
            found = self._function_defs[name] = self._flattened(indices)
        return found

    def _index_functions(self):
        """``{name: [.dynsym index]}`` of the defined functions."""
        if self.image.tables is None:
            return {}
        names, index = self.image.symbol_names(), {}
        for i, s in enumerate(self.image.tables.symbols):
            if i and s.shndx != SHN_UNDEF and s.info & 0xF in _FUNCTION_TYPES:
                index.setdefault(names[i], []).append(i)
        return index

    # -- raw contents (recovervec) ----------------------------------------
    def symbol_size(self, name):
        """``st_size`` of the defined dynamic symbol ``name``, or None."""
        symbols = self.image.tables.symbols if self.image.tables else []
        return next((symbols[i].size for i in self._named(name) if i and symbols[i].defined),
                    None)

    def read(self, address, size):
        """The ``size`` bytes at virtual address ``address``; fewer (or none)
        where the file holds no contents there."""
        image = self.image
        for p in image.phdrs:
            if p.type == PT_LOAD and p.vaddr <= address < p.vaddr + p.filesz:
                start = p.offset + address - p.vaddr
                return image.data[start:start + min(size, p.vaddr + p.filesz - address)]
        return b""

    def irelative_relocations(self):
        """``{address: addend}`` of the IRELATIVE relocations (``R_X86_64_``,
        ``R_386_``, ``R_AARCH64_IRELATIVE``): the GOT words ld.so fills by
        calling the resolver at ``addend`` (a REL entry's: the word's)."""
        found = {}
        mask, irelative = (1 << self.image.layout.sym_shift) - 1, self.image.arch.irelative
        for tag in self._relocation_tables() if self.image.tables else ():
            offsets, infos, addends = self.image.tables.relocation_fields(tag)
            for offset, info, addend in zip(offsets, infos, addends):
                if info & mask == irelative:
                    found[offset] = addend
        return found
