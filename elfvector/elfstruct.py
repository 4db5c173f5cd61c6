"""The ELF64 little-endian layout: record formats, constants, entry classes.

Only what the x86-64 psABI files elfvector reads and writes contain; the
names follow ``<elf.h>``.  No I/O here: :mod:`elfvector.elfimage` reads a
file with these, :mod:`elfvector.elftables` its dynamic tables.
"""

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
EM_X86_64 = 62
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
DT_RUNPATH = 29
DT_GNU_HASH, DT_VERSYM, DT_RELACOUNT, DT_FLAGS_1 = 0x6FFFFEF5, 0x6FFFFFF0, 0x6FFFFFF9, 0x6FFFFFFB
DT_VERDEF, DT_VERDEFNUM, DT_VERNEED, DT_VERNEEDNUM = 0x6FFFFFFC, 0x6FFFFFFD, 0x6FFFFFFE, 0x6FFFFFFF
DT_CONFIG, DT_DEPAUDIT, DT_AUDIT = 0x6FFFFEFA, 0x6FFFFEFB, 0x6FFFFEFC
DT_AUXILIARY, DT_FILTER = 0x7FFFFFFD, 0x7FFFFFFF
DF_1_PIE = 0x08000000

#: dynamic entries whose value is an offset into .dynstr
STRING_TAGS = (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH, DT_AUXILIARY, DT_FILTER, DT_CONFIG,
               DT_DEPAUDIT, DT_AUDIT)

R_X86_64_NONE, R_X86_64_64, R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT = 0, 1, 6, 7
R_X86_64_RELATIVE, R_X86_64_IRELATIVE = 8, 37

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

    def pack(self):
        return PHDR.pack(self.type, self.flags, self.offset, self.vaddr, self.paddr, self.filesz,
                         self.memsz, self.align)


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

    def pack(self):
        return SHDR.pack(self.name, self.type, self.flags, self.addr, self.offset, self.size,
                         self.link, self.info, self.addralign, self.entsize)


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

    def pack(self):
        return SYM.pack(self.name, self.info, self.other, self.shndx, self.value, self.size)


@dataclass
class Rela:
    offset: int
    info: int
    addend: int

    @property
    def sym(self):
        return self.info >> 32

    @property
    def type(self):
        return self.info & 0xFFFFFFFF

    def pack(self):
        return RELA.pack(self.offset, self.info, self.addend)


def rela_info(sym, rtype):
    return (sym << 32) | rtype
