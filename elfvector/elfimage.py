"""ELF64 little-endian structures, read and written with ``struct``.

The post-link commands change a linked file in place and by appending, so
they need byte-exact control that LIEF's builder does not give (its output
was rejected by ``eu-elflint`` and broken by a later ``strip``).  This
module is the raw view: headers, program and section headers, the dynamic
section, symbols, relocations, versions, hash tables.  Every access is
bounds-checked; a value that does not fit is an error, never truncated.
"""

import os
import stat
import struct
from dataclasses import dataclass, astuple

from .errors import NotElfError, UnsupportedElfError

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
SHDR = struct.Struct("<IIQQQQIIQQ")
DYN = struct.Struct("<qQ")
SYM = struct.Struct("<IBBHQQ")
RELA = struct.Struct("<QQq")

ET_EXEC, ET_DYN = 2, 3
EM_X86_64 = 62
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_PHDR = 1, 2, 3, 6
PF_X, PF_W, PF_R = 1, 2, 4
SHT_PROGBITS, SHT_STRTAB, SHT_NOBITS = 1, 3, 8
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4
SHN_UNDEF = 0
STB_GLOBAL, STB_WEAK = 1, 2
STT_OBJECT, STT_FUNC, STT_GNU_IFUNC = 1, 2, 10

DT_NULL, DT_NEEDED, DT_HASH, DT_STRTAB, DT_SYMTAB = 0, 1, 4, 5, 6
DT_RELA, DT_RELASZ, DT_RELAENT, DT_STRSZ, DT_SONAME = 7, 8, 9, 10, 14
DT_JMPREL, DT_PLTRELSZ = 23, 2
DT_GNU_HASH, DT_VERSYM, DT_VERDEF, DT_VERDEFNUM = 0x6FFFFEF5, 0x6FFFFFF0, 0x6FFFFFFC, 0x6FFFFFFD
DT_VERNEED, DT_VERNEEDNUM = 0x6FFFFFFE, 0x6FFFFFFF

R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT, R_X86_64_IRELATIVE = 6, 7, 37


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
        return PHDR.pack(*astuple(self))


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
        return SHDR.pack(*astuple(self))


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
        return SYM.pack(*astuple(self))


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


def _require_regular(st, path):
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(st.st_mode)), "a special file")
        raise NotElfError(f"not a regular file ({kind})", path)


def rela_info(sym, rtype):
    return (sym << 32) | rtype


class ElfImage:
    """A whole ELF64 little-endian file in memory."""

    def __init__(self, data, path):
        self.data = bytes(data)
        self.path = path
        if self.data[:4] != b"\x7fELF":
            raise NotElfError("not an ELF file", path)
        if len(self.data) < EHDR.size:
            raise NotElfError("truncated ELF file", path)
        if self.data[4] != 2 or self.data[5] != 1:
            raise UnsupportedElfError("only 64-bit little-endian ELF files are supported", path)
        (self.ident, self.type, self.machine, _, self.entry, self.phoff, self.shoff,
         self.flags, _, self.phentsize, self.phnum, self.shentsize, self.shnum,
         self.shstrndx) = EHDR.unpack_from(self.data)
        if self.machine != EM_X86_64:
            raise UnsupportedElfError(f"unsupported machine {self.machine} (x86-64 only)", path)
        if self.type not in (ET_EXEC, ET_DYN):
            raise UnsupportedElfError("not an executable or shared object", path)
        self.phdrs = [Phdr(*PHDR.unpack(self.bytes_at(self.phoff + i * PHDR.size, PHDR.size)))
                      for i in range(self.phnum)]
        self.shdrs = [Shdr(*SHDR.unpack(self.bytes_at(self.shoff + i * SHDR.size, SHDR.size)))
                      for i in range(self.shnum)] if self.shoff else []
        for p in self.phdrs:
            if p.type == PT_LOAD and p.offset + p.filesz > len(self.data):
                raise NotElfError("truncated ELF file (a segment runs past the end)", path)
        self.section_names = [self._section_name(s) for s in self.shdrs]
        self.dynamic = self._read_dynamic()

    # -- raw access -------------------------------------------------------
    def bytes_at(self, offset, size):
        if offset < 0 or size < 0 or offset + size > len(self.data):
            raise NotElfError(f"truncated ELF file (needs bytes {offset:#x}+{size})", self.path)
        return self.data[offset:offset + size]

    def offset_of(self, vaddr, size=1):
        """File offset of virtual address ``vaddr`` (inside a PT_LOAD's file bytes)."""
        for p in self.phdrs:
            if p.type == PT_LOAD and p.vaddr <= vaddr and vaddr + size <= p.vaddr + p.filesz:
                return vaddr - p.vaddr + p.offset
        raise NotElfError(f"address {vaddr:#x} is not in the file", self.path)

    def read(self, vaddr, size):
        return self.bytes_at(self.offset_of(vaddr, size), size)

    # -- sections ---------------------------------------------------------
    def _section_name(self, shdr):
        if not self.shdrs or self.shstrndx >= len(self.shdrs):
            return ""
        strtab = self.shdrs[self.shstrndx]
        return _cstring(self.data, strtab.offset + shdr.name)

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

    # -- dynamic ----------------------------------------------------------
    def _read_dynamic(self):
        dyn = [p for p in self.phdrs if p.type == PT_DYNAMIC]
        if not dyn:
            return None
        entries = []
        for i in range(dyn[0].filesz // DYN.size):
            tag, value = DYN.unpack(self.bytes_at(dyn[0].offset + i * DYN.size, DYN.size))
            entries.append([tag, value])
            if tag == DT_NULL:
                break
        self.dynamic_offset = dyn[0].offset
        self.dynamic_capacity = dyn[0].filesz // DYN.size
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

    # -- dynamic symbols --------------------------------------------------
    def dynstr(self):
        return self.read(self.dyn(DT_STRTAB), self.dyn(DT_STRSZ))

    def string(self, offset):
        table = self.dynstr()
        if offset >= len(table):
            raise NotElfError(f"bad .dynstr offset {offset}", self.path)
        return _cstring(table, offset)

    def dynsym_count(self):
        """Number of .dynsym entries: from the section header, else from the hash table."""
        _, sh = self.section(".dynsym")
        if sh is not None:
            return sh.size // SYM.size
        if self.dyn(DT_HASH):
            return struct.unpack("<II", self.read(self.dyn(DT_HASH), 8))[1]
        if self.dyn(DT_GNU_HASH):
            return gnu_hash_symbol_count(self)
        raise NotElfError("cannot size .dynsym (no section headers, no hash table)", self.path)

    def dynsyms(self):
        base, count = self.dyn(DT_SYMTAB), self.dynsym_count()
        raw = self.read(base, count * SYM.size)
        return [Sym(*SYM.unpack_from(raw, i * SYM.size)) for i in range(count)]

    def versyms(self):
        if not self.dyn(DT_VERSYM):
            return None
        count = self.dynsym_count()
        return list(struct.unpack(f"<{count}H", self.read(self.dyn(DT_VERSYM), 2 * count)))

    def version_strings(self):
        """(version index or None, .dynstr offset) of every name the
        version tables hold: DT_VERDEF names, DT_VERNEED file names (index
        None) and their version names."""
        if self.dyn(DT_VERDEF):
            addr = self.dyn(DT_VERDEF)
            for _ in range(self.dyn(DT_VERDEFNUM) or 0):
                _, _, ndx, cnt, _, aux, nxt = struct.unpack("<HHHHIII", self.read(addr, 20))
                a = addr + aux
                for k in range(cnt):
                    name_off, anext = struct.unpack("<II", self.read(a, 8))
                    yield (ndx if k == 0 else None), name_off
                    if not anext:
                        break
                    a += anext
                if not nxt:
                    break
                addr += nxt
        if self.dyn(DT_VERNEED):
            addr = self.dyn(DT_VERNEED)
            for _ in range(self.dyn(DT_VERNEEDNUM) or 0):
                _, cnt, file_off, aux, nxt = struct.unpack("<HHIII", self.read(addr, 16))
                yield None, file_off
                a = addr + aux
                for _ in range(cnt):
                    _, _, other, name_off, anext = struct.unpack("<IHHII", self.read(a, 16))
                    yield other, name_off
                    if not anext:
                        break
                    a += anext
                if not nxt:
                    break
                addr += nxt

    def version_names(self):
        """Version index -> name, from DT_VERDEF and DT_VERNEED."""
        return {ndx: self.string(off) for ndx, off in self.version_strings() if ndx is not None}

    def relas(self, addr_tag, size_tag):
        addr, size = self.dyn(addr_tag), self.dyn(size_tag)
        if not addr or not size:
            return []
        raw = self.read(addr, size)
        return [Rela(*RELA.unpack_from(raw, i)) for i in range(0, size, RELA.size)]


def _cstring(data, offset):
    end = data.find(b"\0", offset)
    if end < 0:
        end = len(data)
    return data[offset:end].decode("utf-8", "replace")


# -- hash tables ----------------------------------------------------------

def gnu_hash(name):
    h = 5381
    for c in name.encode():
        h = (h * 33 + c) & 0xFFFFFFFF
    return h


def sysv_hash(name):
    h = 0
    for c in name.encode():
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


def gnu_hash_header(image):
    return struct.unpack("<IIII", image.read(image.dyn(DT_GNU_HASH), 16))


def gnu_hash_symbol_count(image):
    """Symbols covered by DT_GNU_HASH: walk the last chain (no section headers)."""
    addr = image.dyn(DT_GNU_HASH)
    nbucket, symoffset, bloom_size, _ = gnu_hash_header(image)
    buckets_at = addr + 16 + 8 * bloom_size
    buckets = struct.unpack(f"<{nbucket}I", image.read(buckets_at, 4 * nbucket))
    last = max(buckets, default=0)
    if last < symoffset:
        return symoffset
    chain_at = buckets_at + 4 * nbucket
    while not struct.unpack("<I", image.read(chain_at + 4 * (last - symoffset), 4))[0] & 1:
        last += 1
    return last + 1


def build_gnu_hash(names, symoffset, nbucket, bloom_size, bloom_shift):
    """A .gnu.hash for symbols ``symoffset..`` whose ``names`` are already
    sorted by bucket (see :func:`gnu_bucket_order`)."""
    hashes = [gnu_hash(n) for n in names]
    bloom = [0] * bloom_size
    for h in hashes:
        word = (h // 64) % bloom_size
        bloom[word] |= (1 << (h % 64)) | (1 << ((h >> bloom_shift) % 64))
    buckets = [0] * nbucket
    chains = []
    for i, h in enumerate(hashes):
        b = h % nbucket
        if not buckets[b]:
            buckets[b] = symoffset + i
        last_in_bucket = i + 1 == len(hashes) or hashes[i + 1] % nbucket != b
        chains.append((h & ~1) | (1 if last_in_bucket else 0))
    return (struct.pack("<IIII", nbucket, symoffset, bloom_size, bloom_shift)
            + struct.pack(f"<{bloom_size}Q", *bloom)
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


# -- constants used by relvec and rpathrm ----------------------------------

R_X86_64_NONE, R_X86_64_64, R_X86_64_RELATIVE = 0, 1, 8
SHN_LORESERVE, SHN_ABS, SHN_COMMON = 0xFF00, 0xFFF1, 0xFFF2
DT_RPATH, DT_RUNPATH, DT_TEXTREL = 15, 29, 22
DT_RELACOUNT, DT_FLAGS_1, DF_1_PIE = 0x6FFFFFF9, 0x6FFFFFFB, 0x08000000
DT_CONFIG, DT_DEPAUDIT, DT_AUDIT = 0x6FFFFEFA, 0x6FFFFEFB, 0x6FFFFEFC
DT_AUXILIARY, DT_FILTER = 0x7FFFFFFD, 0x7FFFFFFF
