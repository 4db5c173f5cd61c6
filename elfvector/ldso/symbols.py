"""The ELF vocabulary ld.so's rules are written in: relocation classes,
symbol bindings, types and visibilities, versions, and the errors ld.so
reports when it would refuse to start a program."""

from typing import NamedTuple

from ..errors import ElfvectorError

# -- x86-64 relocations and ld.so's classes of them (sysdeps/*/dl-machine.h)

R_X86_64_NONE, R_X86_64_64, R_X86_64_COPY = 0, 1, 5
R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT, R_X86_64_RELATIVE = 6, 7, 8
R_X86_64_DTPMOD64, R_X86_64_DTPOFF64, R_X86_64_TPOFF64 = 16, 17, 18
R_X86_64_TLSDESC, R_X86_64_IRELATIVE = 36, 37
TLS_RELOCATIONS = frozenset({R_X86_64_DTPMOD64, R_X86_64_DTPOFF64, R_X86_64_TPOFF64,
                             R_X86_64_TLSDESC})

CLASS_NORMAL, CLASS_PLT, CLASS_COPY = 0, 1, 2       #: ELF_RTYPE_CLASS_*


def type_class(rtype, jump_slot=R_X86_64_JUMP_SLOT, copy=R_X86_64_COPY, tls=TLS_RELOCATIONS):
    """``elf_machine_type_class``: JUMP_SLOT and the TLS relocations are of
    PLT class (they never bind to an undefined symbol with a value), COPY
    is of COPY class (it never binds to the executable).  The types are
    x86-64's unless given (:meth:`.config.LdsoArch.type_class` gives each
    architecture's)."""
    if rtype == jump_slot or rtype in tls:
        return CLASS_PLT
    return CLASS_COPY if rtype == copy else CLASS_NORMAL


# -- symbols -------------------------------------------------------------------

STB_LOCAL, STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE = 0, 1, 2, 10
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_COMMON, STT_TLS, STT_GNU_IFUNC = 0, 1, 2, 5, 6, 10
STV_DEFAULT, STV_INTERNAL, STV_HIDDEN, STV_PROTECTED = 0, 1, 2, 3
SHN_UNDEF = 0
ALLOWED_TYPES = frozenset({STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_COMMON, STT_TLS,
                            STT_GNU_IFUNC})

DT_SYMBOLIC, DT_FLAGS, DT_FLAGS_1 = 16, 30, 0x6FFFFFFB
DT_REL, DT_PLTREL, DT_AUXILIARY, DT_FILTER = 17, 20, 0x7FFFFFFD, 0x7FFFFFFF
DT_RELRSZ, DT_RELR = 35, 36
DF_SYMBOLIC, DF_1_NODEFLIB, DF_1_PIE = 0x2, 0x800, 0x08000000
VER_FLG_BASE, VER_FLG_WEAK = 0x1, 0x2


class Symbol(NamedTuple):
    """One .dynsym entry; ``versym`` is its .gnu.version word (None without)."""

    index: int
    name: str
    info: int
    other: int
    shndx: int
    value: int
    size: int
    versym: int

    @property
    def bind(self):
        return self.info >> 4

    @property
    def type(self):
        return self.info & 0xF

    @property
    def visibility(self):
        return self.other & 3

    @property
    def defined(self):
        return self.shndx != SHN_UNDEF


class Version(NamedTuple):
    """A version as ld.so's ``struct r_found_version`` holds it: the name,
    the ELF hash stored in the file (vd_hash/vna_hash), whether a reference
    asks for a hidden version, and the file a reference expects it in."""

    name: str
    hash: int
    hidden: bool = False
    filename: str = None
    weak: bool = False          #: VER_FLG_WEAK: a missing version only warns

    @classmethod
    def named(cls, name):
        return cls(name, elf_hash(name))


def elf_hash(name):
    """The SysV ELF hash of ``name`` (``_dl_elf_hash``)."""
    h = 0
    for c in name.encode("utf-8", "surrogateescape"):
        h = ((h << 4) + c) & 0xFFFFFFFF
        h ^= (h >> 24) & 0xF0
        h &= 0x0FFFFFFF
    return h


def decode(raw):
    """A name or path read from a file: any byte sequence round-trips."""
    return raw.decode("utf-8", "surrogateescape")


class LoadError(ElfvectorError):
    """ld.so would refuse to start the program (a library it cannot find or
    load, a bad dynamic string token); ``path`` is the object that needs it."""

