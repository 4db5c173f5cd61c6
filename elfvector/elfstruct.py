"""The little-endian ELF layouts: record formats, constants, entry classes.

ELF64 (x86-64, AArch64) and ELF32 (i386) files differ in the width of
their words and in the order of the fields of a program header and a
symbol; :class:`Layout` holds one class's record formats, and the module
constants (``EHDR``, ``PHDR``, ...) are ELF64's, as the x86-64 code paths
use them.  :class:`Machine` holds what the psABI of each architecture the
core reads says about relocations and the address space.  The names
follow ``<elf.h>``.  No I/O here: :mod:`elfvector.elfimage` reads a file
with these, :mod:`elfvector.elftables` its dynamic tables.
"""

import dataclasses
import struct
from dataclasses import dataclass

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
SHDR = struct.Struct("<IIQQQQIIQQ")
DYN = struct.Struct("<qQ")
SYM = struct.Struct("<IBBHQQ")
RELA = struct.Struct("<QQq")
VERDEF = struct.Struct("<HHHHIII")      # vd_version, vd_flags, vd_ndx, vd_cnt, vd_hash, vd_aux, vd_next
VERDAUX = struct.Struct("<II")          # vda_name, vda_next
VERNEED = struct.Struct("<HHIII")       # vn_version, vn_cnt, vn_file, vn_aux, vn_next
VERNAUX = struct.Struct("<IHHII")       # vna_hash, vna_flags, vna_other, vna_name, vna_next

ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
EV_CURRENT = 1
ET_REL, ET_EXEC, ET_DYN, ET_CORE = 1, 2, 3, 4
EM_386, EM_X86_64, EM_AARCH64 = 3, 62, 183
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_PHDR, PT_TLS = 1, 2, 3, 6, 7
PF_X, PF_W, PF_R = 1, 2, 4
SHT_PROGBITS, SHT_STRTAB, SHT_RELA, SHT_HASH, SHT_NOBITS, SHT_DYNSYM = 1, 3, 4, 5, 8, 11
SHT_GNU_HASH, SHT_GNU_VERDEF, SHT_GNU_VERNEED, SHT_GNU_VERSYM = (
    0x6FFFFFF6, 0x6FFFFFFD, 0x6FFFFFFE, 0x6FFFFFFF)
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR, SHF_TLS = 1, 2, 4, 0x400
SHN_UNDEF, SHN_LORESERVE, SHN_ABS, SHN_COMMON = 0, 0xFF00, 0xFFF1, 0xFFF2
STB_LOCAL, STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE = 0, 1, 2, 10
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4
STT_COMMON, STT_TLS, STT_GNU_IFUNC = 5, 6, 10
VER_NDX_GLOBAL, VER_HIDDEN = 1, 0x8000

DT_NULL, DT_NEEDED, DT_PLTRELSZ, DT_HASH, DT_STRTAB, DT_SYMTAB = 0, 1, 2, 4, 5, 6
DT_RELA, DT_RELASZ, DT_RELAENT, DT_STRSZ, DT_SYMENT, DT_SONAME = 7, 8, 9, 10, 11, 14
DT_RPATH, DT_REL, DT_RELSZ, DT_PLTREL, DT_TEXTREL, DT_JMPREL = 15, 17, 18, 20, 22, 23
DT_RELENT, DT_RUNPATH = 19, 29
DT_GNU_HASH, DT_VERSYM, DT_RELACOUNT, DT_RELCOUNT = 0x6FFFFEF5, 0x6FFFFFF0, 0x6FFFFFF9, 0x6FFFFFFA
DT_FLAGS_1 = 0x6FFFFFFB
DT_VERDEF, DT_VERDEFNUM, DT_VERNEED, DT_VERNEEDNUM = 0x6FFFFFFC, 0x6FFFFFFD, 0x6FFFFFFE, 0x6FFFFFFF
DT_CONFIG, DT_DEPAUDIT, DT_AUDIT = 0x6FFFFEFA, 0x6FFFFEFB, 0x6FFFFEFC
DT_AUXILIARY, DT_FILTER = 0x7FFFFFFD, 0x7FFFFFFF
DF_1_PIE = 0x08000000

#: dynamic entries whose value is an offset into .dynstr
STRING_TAGS = (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH, DT_AUXILIARY, DT_FILTER, DT_CONFIG,
               DT_DEPAUDIT, DT_AUDIT)

R_X86_64_NONE, R_X86_64_64, R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT = 0, 1, 6, 7
R_X86_64_RELATIVE, R_X86_64_IRELATIVE = 8, 37
R_X86_64_COPY, R_X86_64_TLSDESC = 5, 36
R_386_NONE, R_386_32, R_386_COPY, R_386_GLOB_DAT, R_386_JMP_SLOT = 0, 1, 5, 6, 7
R_386_RELATIVE, R_386_TLS_DESC, R_386_IRELATIVE = 8, 41, 42
R_AARCH64_NONE, R_AARCH64_ABS64, R_AARCH64_COPY, R_AARCH64_GLOB_DAT = 0, 257, 1024, 1025
R_AARCH64_JUMP_SLOT, R_AARCH64_RELATIVE, R_AARCH64_TLSDESC = 1026, 1027, 1031
R_AARCH64_IRELATIVE = 1032

#: the lowest address an x86-64 process cannot map (47-bit user space)
USER_SPACE_END = 1 << 47

#: e_machine values named in "not supported" messages
MACHINES = {2: "SPARC", 3: "i386", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64", 22: "s390",
            40: "ARM", 43: "SPARC V9", 62: "x86-64", 183: "AArch64", 243: "RISC-V",
            258: "LoongArch"}


@dataclass
class Phdr:
    type: int
    flags: int
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int
    align: int

    def pack(self, layout=None):
        """The record in ``layout``'s class (default: ELF64)."""
        return (layout or ELF64).pack_phdr(self)


@dataclass
class Shdr:
    name: int
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    addralign: int
    entsize: int

    def pack(self, layout=None):
        return (layout or ELF64).shdr.pack(*dataclasses.astuple(self))


@dataclass
class Sym:
    name: int
    info: int
    other: int
    shndx: int
    value: int
    size: int

    @property
    def bind(self):
        return self.info >> 4

    @property
    def type(self):
        return self.info & 0xF

    @property
    def defined(self):
        return self.shndx != SHN_UNDEF

    def pack(self, layout=None):
        return (layout or ELF64).pack_sym(self)


@dataclass
class Rela:
    """One relocation of an ELF64 file (``Elf64_Rela``)."""

    offset: int
    info: int
    addend: int

    @property
    def sym(self):
        return self.info >> 32

    @property
    def type(self):
        return self.info & 0xFFFFFFFF

    def renumbered(self, sym):
        """The same relocation against symbol index ``sym``."""
        return dataclasses.replace(self, info=(sym << 32) | self.type)

    def pack(self):
        return RELA.pack(self.offset, self.info, self.addend)


@dataclass
class Rela32(Rela):
    """One relocation of an ELF32 file: ``r_info`` is ``sym << 8 | type``.

    ``explicit`` False is an ``Elf32_Rel`` (i386's only kind): its addend
    is not in the entry but in the word it relocates, and was read from
    there (:meth:`Layout.relocation`), so that every consumer sees the
    value ld.so adds, whatever the table's kind.
    """

    explicit: bool = True

    @property
    def sym(self):
        return self.info >> 8

    @property
    def type(self):
        return self.info & 0xFF

    def renumbered(self, sym):
        return dataclasses.replace(self, info=(sym << 8) | self.type)

    def pack(self):
        if self.explicit:
            return ELF32.rela.pack(self.offset, self.info, self.addend)
        return ELF32.rel.pack(self.offset, self.info)


def rela_info(sym, rtype):
    """``r_info`` of an ELF64 relocation (:meth:`Layout.r_info` for either class)."""
    return (sym << 32) | rtype


@dataclass(frozen=True)
class Layout:
    """The record formats of one ELF class (gABI "ELF Header", "Program
    Header", "Symbol Table", "Relocation"), read into the same entry
    classes: an ELF32 program header or symbol has its fields in another
    order, which ``phdr_order``/``sym_order`` map to the dataclass's."""

    elfclass: int
    word: int                   #: bytes of an address (Elf_Addr, Elf_Off, d_val)
    ehdr: struct.Struct
    phdr: struct.Struct
    shdr: struct.Struct
    dyn: struct.Struct
    sym: struct.Struct
    rel: struct.Struct
    rela: struct.Struct
    phdr_order: tuple           #: the record's fields as indices of Phdr's
    sym_order: tuple            #: the record's fields as indices of Sym's
    sym_shift: int              #: r_info >> sym_shift is the symbol index

    @property
    def word_code(self):
        """The :mod:`array` code of a word of this class."""
        return "Q" if self.word == 8 else "I"

    def unpack_phdr(self, raw, offset=0):
        fields = self.phdr.unpack_from(raw, offset)
        ordered = [0] * len(fields)
        for at, index in enumerate(self.phdr_order):
            ordered[index] = fields[at]
        return Phdr(*ordered)

    def pack_phdr(self, p):
        fields = dataclasses.astuple(p)
        return self.phdr.pack(*(fields[i] for i in self.phdr_order))

    def iter_syms(self, raw):
        """The :class:`Sym` records of ``raw`` (a whole number of entries)."""
        order = self.sym_order
        if order == (0, 1, 2, 3, 4, 5):
            return [Sym(*fields) for fields in self.sym.iter_unpack(raw)]
        inverse = [order.index(i) for i in range(6)]
        return [Sym(*(fields[k] for k in inverse)) for fields in self.sym.iter_unpack(raw)]

    def pack_sym(self, s):
        fields = (s.name, s.info, s.other, s.shndx, s.value, s.size)
        return self.sym.pack(*(fields[i] for i in self.sym_order))

    def r_info(self, sym, rtype):
        return (sym << self.sym_shift) | rtype

    def relocation(self, offset, sym, rtype, addend, explicit=True):
        """A new relocation entry of this class (``explicit`` False: REL)."""
        info = self.r_info(sym, rtype)
        if self.elfclass == ELFCLASS64:
            return Rela(offset, info, addend)
        return Rela32(offset, info, addend, explicit)

    def entry_size(self, explicit):
        """Bytes of a RELA (``explicit``) or REL entry."""
        return (self.rela if explicit else self.rel).size


ELF64 = Layout(ELFCLASS64, 8, EHDR, PHDR, SHDR, DYN, SYM, struct.Struct("<QQ"), RELA,
               (0, 1, 2, 3, 4, 5, 6, 7), (0, 1, 2, 3, 4, 5), 32)
ELF32 = Layout(ELFCLASS32, 4, struct.Struct("<16sHHIIIIIHHHHHH"), struct.Struct("<IIIIIIII"),
               struct.Struct("<IIIIIIIIII"), struct.Struct("<iI"), struct.Struct("<IIIBBH"),
               struct.Struct("<II"), struct.Struct("<IIi"),
               (0, 2, 3, 4, 5, 6, 1, 7), (0, 4, 5, 1, 2, 3), 8)
LAYOUTS = {ELFCLASS64: ELF64, ELFCLASS32: ELF32}


@dataclass(frozen=True)
class Machine:
    """What the core needs to know of one architecture's psABI: its ELF
    class, whether its dynamic relocations carry addends (RELA) or keep
    them in the relocated word (REL), the relocation types the commands
    look for, and where a process's address space ends (a segment or a
    symbol past it cannot be mapped, so is a malformed file).

    ``name`` is the architecture's name in the project (``elfvector.arch``
    modules, ``ElfFile.arch``); ``label`` the one messages use.
    ``relocation_types`` holds every type its psABI defines: a dynamic
    relocation of another type is one ld.so stops at ("unexpected reloc
    type"), and the sign of a file whose e_machine was changed.
    """

    number: int
    name: str
    label: str
    elfclass: int
    rela: bool
    address_end: int
    none: int
    word: int                   #: the absolute word relocation (R_X86_64_64, R_386_32, ...)
    copy: int
    glob_dat: int
    jump_slot: int
    relative: int
    irelative: int
    tlsdesc: int
    relocation_types: frozenset
    relocation_prefix: str = ""     #: of the types' names in <elf.h> and readelf ("R_386_")
    #: the largest page a kernel of the architecture may use (segments the
    #: commands add are aligned to it when the file's own are)
    max_page_size: int = 0x1000

    @property
    def layout(self):
        return LAYOUTS[self.elfclass]

    def relocation_table(self):
        """(address tag, size tag, entry size tag) of the dynamic relocations."""
        return (DT_RELA, DT_RELASZ, DT_RELAENT) if self.rela else (DT_REL, DT_RELSZ, DT_RELENT)


#: x86-64 psABI 1.0: R_X86_64_NONE (0) to R_X86_64_CODE_4_GOTPCRELX (43)
X86_64 = Machine(EM_X86_64, "x86_64", "x86-64", ELFCLASS64, True, USER_SPACE_END,
                 R_X86_64_NONE, R_X86_64_64, R_X86_64_COPY, R_X86_64_GLOB_DAT,
                 R_X86_64_JUMP_SLOT, R_X86_64_RELATIVE, R_X86_64_IRELATIVE, R_X86_64_TLSDESC,
                 frozenset(range(44)), "R_X86_64_")
#: a 32-bit process on a 64-bit kernel has the whole 4 GiB; i386 psABI:
#: R_386_NONE (0) to R_386_GOT32X (43)
I386 = Machine(EM_386, "i386", "i386", ELFCLASS32, False, 1 << 32,
               R_386_NONE, R_386_32, R_386_COPY, R_386_GLOB_DAT, R_386_JMP_SLOT,
               R_386_RELATIVE, R_386_IRELATIVE, R_386_TLS_DESC, frozenset(range(44)), "R_386_")
#: 48-bit virtual addresses, Linux's default on arm64; AArch64 ELF ABI:
#: R_AARCH64_NONE (0, or the withdrawn 256), the static types from 257,
#: the dynamic ones 1024 (COPY) to 1032 (IRELATIVE)
AARCH64 = Machine(EM_AARCH64, "aarch64", "AArch64", ELFCLASS64, True, 1 << 48,
                  R_AARCH64_NONE, R_AARCH64_ABS64, R_AARCH64_COPY, R_AARCH64_GLOB_DAT,
                  R_AARCH64_JUMP_SLOT, R_AARCH64_RELATIVE, R_AARCH64_IRELATIVE,
                  R_AARCH64_TLSDESC, frozenset({0, *range(256, 1024), *range(1024, 1033)}),
                  "R_AARCH64_", 0x10000)
#: the architectures the core reads, by e_machine
KNOWN_MACHINES = {m.number: m for m in (X86_64, I386, AARCH64)}
