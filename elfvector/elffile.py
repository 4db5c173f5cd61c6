"""The ELF adapter: the one module that imports LIEF.

It answers the questions the operations ask of an ELF file (what does it
need, what does it define and import, which imports need a canonical
address) in plain Python values, and turns every way LIEF can fail into an
:class:`~elfvector.errors.ElfvectorError` naming the file.
"""

import os
from dataclasses import dataclass

import lief

from .errors import NotElfError, UnsupportedElfError

lief.logging.disable()

_TAG = lief.ELF.DynamicEntry.TAG
_SYMTYPE = lief.ELF.Symbol.TYPE
_MACHINES = {lief.ELF.ARCH.X86_64: "x86_64"}

# Relocations through which ld.so binds a call and nothing else.  Any other
# relocation naming a function takes its address, so the program needs the
# function's canonical address (pointer equality), not just a way to call it.
_CALL_ONLY_RELOCATIONS = {"X86_64_JUMP_SLOT"}


@dataclass(frozen=True)
class DynSymbol:
    """One ``.dynsym`` entry, flattened.

    ``version`` is the version name bound to the symbol (for an undefined
    symbol, the version the file requires); ``default`` is False for a
    hidden (``name@VER``) definition.
    """

    name: str
    version: str
    default: bool
    defined: bool
    kind: str          # "func", "ifunc", "object", "tls", "notype", ...
    binding: str       # "global", "weak", "local", "gnu_unique"
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
    """A read-only view of a dynamically linked ELF file."""

    def __init__(self, path, light=False):
        self.path = path
        self._binary = _parse(path, light)
        machine = self._binary.header.machine_type
        if machine not in _MACHINES:
            raise UnsupportedElfError(f"unsupported architecture {machine.name}", path)
        self.arch = _MACHINES[machine]
        self._symbols = None

    # -- identity -------------------------------------------------------
    @property
    def is_shared_object(self):
        """True for a DSO proper (ET_DYN that is not a PIE)."""
        return (self._binary.header.file_type == lief.ELF.Header.FILE_TYPE.DYN
                and not self.is_pie)

    @property
    def is_pie(self):
        b = self._binary
        if b.header.file_type != lief.ELF.Header.FILE_TYPE.DYN:
            return False
        flags1 = self._dynamic_value(_TAG.FLAGS_1) or 0
        return bool(flags1 & 0x08000000) or b.has_interpreter

    @property
    def is_dynamic(self):
        return any(e.tag == _TAG.NEEDED for e in self._binary.dynamic_entries) or \
            self._binary.has_interpreter

    @property
    def soname(self):
        for e in self._binary.dynamic_entries:
            if e.tag == _TAG.SONAME:
                return e.name
        return None

    @property
    def needed(self):
        return [e.name for e in self._binary.dynamic_entries if e.tag == _TAG.NEEDED]

    @property
    def runpath(self):
        """(DT_RPATH dirs, DT_RUNPATH dirs), ``$ORIGIN`` expanded."""
        origin = os.path.dirname(os.path.abspath(self.path))
        rpath, runpath = [], []
        for e in self._binary.dynamic_entries:
            if e.tag in (_TAG.RPATH, _TAG.RUNPATH):
                target = rpath if e.tag == _TAG.RPATH else runpath
                for d in e.paths:
                    target.append(d.replace("${ORIGIN}", origin).replace("$ORIGIN", origin))
        return rpath, runpath

    def _dynamic_value(self, tag):
        for e in self._binary.dynamic_entries:
            if e.tag == tag:
                return e.value
        return None

    # -- symbols --------------------------------------------------------
    @property
    def dynamic_symbols(self):
        if self._symbols is None:
            self._symbols = [_flatten(s) for s in self._binary.dynamic_symbols if s.name]
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
        PLT slot names it (GLOB_DAT, R_X86_64_64, ...), or when a non-PIE
        executable gave it a canonical PLT address (undefined with a
        non-zero ``st_value``).  Such functions need one canonical address
        shared with every other object.
        """
        names = {s.name for s in self.dynamic_symbols
                 if not s.defined and s.is_function and s.value}
        for reloc in self._binary.relocations:
            if reloc.has_symbol and reloc.symbol.name and \
                    reloc.type.name not in _CALL_ONLY_RELOCATIONS:
                names.add(reloc.symbol.name)
        return names

    # -- fast symbol lookups (an ElfFile(path, light=True) is parsed
    #    without relocations, .symtab and notes: about twice as fast, for
    #    callers that read only the dynamic section and .dynsym) ----------
    def imported_function_versions(self):
        """``{(name, version)}`` of the undefined functions (``version`` as
        required, or None): what ``nm -u -D`` lists, without flattening
        every symbol of a .dynsym that may also define thousands."""
        found = set()
        for s in self._binary.dynamic_symbols:
            if s.shndx == 0 and s.type in _FUNCTION_TYPES and s.name:
                version = None
                if s.has_version and s.symbol_version.has_auxiliary_version:
                    version = s.symbol_version.symbol_version_auxiliary.name
                found.add((s.name, version))
        return found

    def function_definitions(self, name):
        """The defined function symbols named ``name`` (every version).

        Indexes .dynsym by name on first use and flattens a name's symbols
        only when it is asked for: cheap on a library with 40000 symbols.
        """
        if "_function_index" not in self.__dict__:
            self._function_index, self._function_defs = {}, {}
            for s in self._binary.dynamic_symbols:
                if s.shndx != 0 and s.type in _FUNCTION_TYPES:
                    self._function_index.setdefault(s.name, []).append(s)
        if name not in self._function_defs:
            self._function_defs[name] = [_flatten(s) for s in self._function_index.get(name, ())]
        return self._function_defs[name]

    # -- raw contents (recovervec) ----------------------------------------
    def symbol_size(self, name):
        """``st_size`` of the defined dynamic symbol ``name``, or None."""
        for s in self._binary.dynamic_symbols:
            if s.name == name and s.shndx != 0:
                return s.size
        return None

    def read(self, address, size):
        """The ``size`` bytes at virtual address ``address``; fewer (or none)
        where the file holds no contents there."""
        return bytes(self._binary.get_content_from_virtual_address(address, size))

    def irelative_relocations(self):
        """``{address: addend}`` of the ``R_X86_64_IRELATIVE`` relocations:
        the GOT words ld.so fills by calling the resolver at ``addend``."""
        return {r.address: r.addend for r in self._binary.relocations
                if r.type.name == "X86_64_IRELATIVE"}


def _parse(path, light=False):
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise NotElfError(f"cannot read: {e.strerror}", path) from None
    if head[:4] != b"\x7fELF":
        raise NotElfError("not an ELF file", path)
    if len(head) < 64:
        raise NotElfError("truncated ELF file", path)
    if head[4] != 2:
        raise UnsupportedElfError("only 64-bit ELF files are supported", path)
    binary = lief.ELF.parse(path, _LIGHT_CONFIG) if light else lief.ELF.parse(path)
    if binary is None:
        raise NotElfError("malformed or truncated ELF file", path)
    if os.path.getsize(path) < _minimum_size(binary):
        raise NotElfError("truncated ELF file", path)
    return binary


def _minimum_size(binary):
    """Bytes the file must have for every section and segment it declares."""
    ends = [s.file_offset + s.size for s in binary.sections if s.type != lief.ELF.Section.TYPE.NOBITS]
    ends += [p.file_offset + p.physical_size for p in binary.segments]
    return max(ends, default=0)


_KIND = {
    _SYMTYPE.FUNC: "func", _SYMTYPE.GNU_IFUNC: "ifunc", _SYMTYPE.OBJECT: "object",
    _SYMTYPE.TLS: "tls", _SYMTYPE.NOTYPE: "notype",
}


def _flatten(sym):
    version, default = None, True
    if sym.has_version:
        sv = sym.symbol_version
        if sv.has_auxiliary_version:
            version = sv.symbol_version_auxiliary.name
            default = not (sv.value & 0x8000)
    return DynSymbol(
        name=sym.name,
        version=version,
        default=default,
        defined=sym.shndx != 0,
        kind=_KIND.get(sym.type, sym.type.name.lower()),
        binding=sym.binding.name.lower(),
        visibility=sym.visibility.name.lower(),
        value=sym.value,
    )


_FUNCTION_TYPES = (_SYMTYPE.FUNC, _SYMTYPE.GNU_IFUNC)

# ElfFile(path, light=True): what the dynamic section and .dynsym need.
_LIGHT_CONFIG = lief.ELF.ParserConfig()
_LIGHT_CONFIG.parse_relocations = False
_LIGHT_CONFIG.parse_symtab_symbols = False
_LIGHT_CONFIG.parse_notes = False
_LIGHT_CONFIG.parse_overlay = False
