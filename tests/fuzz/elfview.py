"""Where things are in a well-formed little-endian ELF file: just enough to aim mutations.

The fuzzer must not lean on the code it tests, so this reads the few
structures it mutates with ``struct`` alone (layouts from the gABI,
``elf.h``): the ELF header, program and section headers, ``.dynamic``,
``.dynsym``/``.dynstr``, ``.gnu.hash`` and the RELA (or, in an i386 file,
REL) tables, in either class: ELF64 (x86-64, AArch64) or ELF32 (i386).
It is only ever given the baselines, which gcc and ld made, so it does
not defend against malformed input: that is the job of the code under
test.
"""

import struct
from dataclasses import dataclass

EHDR = {  # field: (offset, struct format)
    "e_type": (16, "<H"), "e_machine": (18, "<H"), "e_version": (20, "<I"),
    "e_entry": (24, "<Q"), "e_phoff": (32, "<Q"), "e_shoff": (40, "<Q"),
    "e_flags": (48, "<I"), "e_ehsize": (52, "<H"), "e_phentsize": (54, "<H"),
    "e_phnum": (56, "<H"), "e_shentsize": (58, "<H"), "e_shnum": (60, "<H"),
    "e_shstrndx": (62, "<H"),
}
PHDR = {"p_type": (0, "<I"), "p_flags": (4, "<I"), "p_offset": (8, "<Q"), "p_vaddr": (16, "<Q"),
        "p_paddr": (24, "<Q"), "p_filesz": (32, "<Q"), "p_memsz": (40, "<Q"),
        "p_align": (48, "<Q")}
SHDR = {"sh_name": (0, "<I"), "sh_type": (4, "<I"), "sh_flags": (8, "<Q"), "sh_addr": (16, "<Q"),
        "sh_offset": (24, "<Q"), "sh_size": (32, "<Q"), "sh_link": (40, "<I"),
        "sh_info": (44, "<I"), "sh_addralign": (48, "<Q"), "sh_entsize": (56, "<Q")}
SYM = {"st_name": (0, "<I"), "st_info": (4, "<B"), "st_other": (5, "<B"),
       "st_shndx": (6, "<H"), "st_value": (8, "<Q"), "st_size": (16, "<Q")}
RELA = {"r_offset": (0, "<Q"), "r_info": (8, "<Q"), "r_addend": (16, "<q")}
EHDR32 = {
    "e_type": (16, "<H"), "e_machine": (18, "<H"), "e_version": (20, "<I"),
    "e_entry": (24, "<I"), "e_phoff": (28, "<I"), "e_shoff": (32, "<I"),
    "e_flags": (36, "<I"), "e_ehsize": (40, "<H"), "e_phentsize": (42, "<H"),
    "e_phnum": (44, "<H"), "e_shentsize": (46, "<H"), "e_shnum": (48, "<H"),
    "e_shstrndx": (50, "<H"),
}
PHDR32 = {"p_type": (0, "<I"), "p_offset": (4, "<I"), "p_vaddr": (8, "<I"),
          "p_paddr": (12, "<I"), "p_filesz": (16, "<I"), "p_memsz": (20, "<I"),
          "p_flags": (24, "<I"), "p_align": (28, "<I")}
SHDR32 = {"sh_name": (0, "<I"), "sh_type": (4, "<I"), "sh_flags": (8, "<I"),
          "sh_addr": (12, "<I"), "sh_offset": (16, "<I"), "sh_size": (20, "<I"),
          "sh_link": (24, "<I"), "sh_info": (28, "<I"), "sh_addralign": (32, "<I"),
          "sh_entsize": (36, "<I")}
SYM32 = {"st_name": (0, "<I"), "st_value": (4, "<I"), "st_size": (8, "<I"),
         "st_info": (12, "<B"), "st_other": (13, "<B"), "st_shndx": (14, "<H")}
REL32 = {"r_offset": (0, "<I"), "r_info": (4, "<I")}
GNU_HASH = {"nbucket": (0, "<I"), "symoffset": (4, "<I"), "bloom_size": (8, "<I"),
            "bloom_shift": (12, "<I")}

PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE, PT_GNU_STACK, PT_GNU_RELRO = (
    1, 2, 3, 4, 0x6474E551, 0x6474E552)
DT_NAMES = {0: "DT_NULL", 1: "DT_NEEDED", 2: "DT_PLTRELSZ", 3: "DT_PLTGOT", 4: "DT_HASH",
            5: "DT_STRTAB", 6: "DT_SYMTAB", 7: "DT_RELA", 8: "DT_RELASZ", 9: "DT_RELAENT",
            10: "DT_STRSZ", 11: "DT_SYMENT", 14: "DT_SONAME", 20: "DT_PLTREL",
            17: "DT_REL", 18: "DT_RELSZ", 19: "DT_RELENT",
            23: "DT_JMPREL", 25: "DT_INIT_ARRAY", 27: "DT_INIT_ARRAYSZ", 29: "DT_RUNPATH",
            30: "DT_FLAGS", 0x6FFFFEF5: "DT_GNU_HASH", 0x6FFFFFF0: "DT_VERSYM",
            0x6FFFFFF9: "DT_RELACOUNT", 0x6FFFFFFA: "DT_RELCOUNT", 0x6FFFFFFB: "DT_FLAGS_1",
            0x6FFFFFFC: "DT_VERDEF",
            0x6FFFFFFD: "DT_VERDEFNUM", 0x6FFFFFFE: "DT_VERNEED", 0x6FFFFFFF: "DT_VERNEEDNUM"}
DT = {name: tag for tag, name in DT_NAMES.items()}
STT_FUNC = 2
EM_386, EM_X86_64, EM_AARCH64 = 3, 62, 183
#: R_*_COPY of each machine
COPY = {EM_386: 5, EM_X86_64: 5, EM_AARCH64: 1024}


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    header: int         # file offset of its section header
    offset: int
    size: int
    addr: int
    entsize: int


class ElfView:
    """Read-only view of a baseline's structures, by file offset.

    The field tables (``EHDR``, ``PHDR``, ``SHDR``, ``SYM``, ``REL``), the
    entry sizes and ``word`` (the format of an address) are the file's
    class's; ``rela`` says whether its relocations carry addends (all but
    i386's) and ``sym_shift`` where r_info keeps the symbol index.
    """

    def __init__(self, data):
        self.data = bytes(data)
        self.is64 = self.data[4] == 2
        if self.is64:
            self.EHDR, self.PHDR, self.SHDR, self.SYM, self.REL = EHDR, PHDR, SHDR, SYM, RELA
            self.word, self.sym_size, self.dyn_size, self.sym_shift = "<Q", 24, 16, 32
        else:
            self.EHDR, self.PHDR, self.SHDR, self.SYM, self.REL = (EHDR32, PHDR32, SHDR32, SYM32,
                                                                  REL32)
            self.word, self.sym_size, self.dyn_size, self.sym_shift = "<I", 16, 8, 8
        self.GNU_HASH = GNU_HASH          # the same in both classes
        self.machine = self.read(18, "<H")
        self.rela = self.machine != EM_386
        self.rel_size = 3 * self.dyn_size // 2 if self.rela else self.dyn_size
        self.ehdr_size = 64 if self.is64 else 52
        self.phoff, self.phentsize, self.phnum = (self.ehdr(f) for f in
                                                  ("e_phoff", "e_phentsize", "e_phnum"))
        self.sections = self._sections()

    def rel_section(self, which):
        """The name of the relocation section ``which`` ("dyn" or "plt")."""
        return f".rela.{which}" if self.rela else f".rel.{which}"

    def read(self, offset, fmt):
        return struct.unpack_from(fmt, self.data, offset)[0]

    def ehdr(self, field):
        return self.read(*self.EHDR[field])

    def phdrs(self):
        """[(file offset of the header, p_type)] in order."""
        return [(self.phoff + i * self.phentsize,
                 self.read(self.phoff + i * self.phentsize, "<I")) for i in range(self.phnum)]

    def phdr_of_type(self, p_type):
        return next(off for off, t in self.phdrs() if t == p_type)

    def _sections(self):
        shoff, shentsize, shnum = (self.ehdr(f) for f in ("e_shoff", "e_shentsize", "e_shnum"))
        headers = [shoff + i * shentsize for i in range(shnum)]
        strtab = headers[self.ehdr("e_shstrndx")]
        names_at = self.read(strtab + self.SHDR["sh_offset"][0], self.SHDR["sh_offset"][1])
        result = {}
        for index, header in enumerate(headers):
            field = {f: self.read(header + off, fmt) for f, (off, fmt) in self.SHDR.items()}
            name = self.cstring(names_at + field["sh_name"])
            result[name] = Section(index, name, header, field["sh_offset"], field["sh_size"],
                                   field["sh_addr"], field["sh_entsize"])
        return result

    def cstring(self, offset):
        end = self.data.index(b"\0", offset)
        return self.data[offset:end].decode("latin-1")

    def dynamic(self):
        """[(file offset of the entry, d_tag, d_val)] up to and with DT_NULL."""
        sec = self.sections[".dynamic"]
        entries = []
        layout = "<qQ" if self.is64 else "<iI"
        for off in range(sec.offset, sec.offset + sec.size, self.dyn_size):
            tag, val = struct.unpack_from(layout, self.data, off)
            entries.append((off, tag, val))
            if tag == 0:
                break
        return entries

    def dyn_entry(self, tag):
        """File offset of the first ``.dynamic`` entry with ``tag``, or None."""
        return next((off for off, t, _ in self.dynamic() if t == tag), None)

    def symbols(self):
        """[(index, file offset of the entry, name, st_info, st_shndx)] of ``.dynsym``."""
        sym, names = self.sections[".dynsym"], self.sections[".dynstr"]
        result = []
        for index in range(sym.size // self.sym_size):
            off = sym.offset + self.sym_size * index
            name = self.cstring(names.offset + self.read(off, "<I"))
            result.append((index, off, name, self.read(off + self.SYM["st_info"][0], "<B"),
                           self.read(off + self.SYM["st_shndx"][0], "<H")))
        return result

    def symbol_field(self, entry, field):
        """The value of ``field`` (``st_value``, ``st_size``) of the symbol at ``entry``."""
        return self.read(entry + self.SYM[field][0], self.SYM[field][1])

    def symbol(self, name):
        return next(s for s in self.symbols() if s[2] == name)

    def function_symbols(self, defined):
        """Dynamic function symbols, defined ones or undefined ones."""
        return [s for s in self.symbols()
                if s[3] & 0xF == STT_FUNC and (s[4] != 0) == defined]

    def name_offset(self, symbol_entry):
        """File offset of the name of the ``.dynsym`` entry at ``symbol_entry``."""
        return self.sections[".dynstr"].offset + self.read(symbol_entry, "<I")

    def file_offset(self, addr):
        """The file offset of virtual address ``addr``, through the section holding it."""
        for sec in self.sections.values():
            if sec.addr and sec.addr <= addr < sec.addr + sec.size:
                return sec.offset + addr - sec.addr
        raise KeyError(hex(addr))

    def relocations(self, section):
        """[(file offset, symbol index, type)] of a RELA (REL) section."""
        sec = self.sections.get(section)
        if sec is None:
            return []
        result = []
        at, fmt = self.REL["r_info"]
        mask = (1 << self.sym_shift) - 1
        for off in range(sec.offset, sec.offset + sec.size, self.rel_size):
            info = self.read(off + at, fmt)
            result.append((off, info >> self.sym_shift, info & mask))
        return result


def patch(data, offset, fmt, value):
    """``data`` with ``value`` packed at ``offset`` (masked to the field's width)."""
    out = bytearray(data)
    size = struct.calcsize(fmt)
    if fmt[-1] in "bhilq":
        value = max(min(value, (1 << (8 * size - 1)) - 1), -(1 << (8 * size - 1)))
    else:
        value &= (1 << (8 * size)) - 1
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)
