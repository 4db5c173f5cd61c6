"""The ELF core: every command that reads an ELF file refuses the same
malformed files, each with one line ``prog: FILE: reason``, quickly, within
1 GB, leaving the file as it was; and names that are not UTF-8 stay bytes.

A small library and a PIE are built with gcc, then mutated one field at a
time into each malformed form; the offsets come from readelf and the ELF
header, not from the code under test.
"""

import os
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import BIN, run
from elfvector import measure
from elfvector.elffile import ElfFile

LIBRARY = """\
#include <string.h>
int t_add(int a, int b) { return a + b; }
int t_mul(int a, int b) { return a * b; }
size_t t_len(const char *s) { return strlen(s); }
"""
PROGRAM = """\
#include <stdio.h>
int t_add(int, int);
int t_mul(int, int);
int main(void) { printf("%d\\n", t_add(2, t_mul(3, 4))); return 0; }
"""
VSCRIPT = "T1 { global: t_*; local: *; };\n"
VEC = "__V_libt_so_1\nt_add@@T1\nt_mul@@T1\n"
TIME_LIMIT = 10                 # seconds, per command and input
MEMORY_LIMIT = 1 << 30          # bytes of address space

DT_NULL, DT_NEEDED, DT_PLTRELSZ, DT_HASH, DT_STRTAB, DT_SYMTAB = 0, 1, 2, 4, 5, 6
DT_RELA, DT_RELASZ, DT_RELAENT, DT_STRSZ, DT_SYMENT, DT_DEBUG, DT_JMPREL = 7, 8, 9, 10, 11, 21, 23
DT_VERSYM, DT_VERDEFNUM, DT_VERNEEDNUM = 0x6FFFFFF0, 0x6FFFFFFD, 0x6FFFFFFF
PT_LOAD, PT_DYNAMIC = 1, 2


# -- the inputs -------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """libt.so.1 (versioned, DT_HASH and DT_GNU_HASH, a run path), a PIE
    using it, and a .vec for it."""
    d = tmp_path_factory.mktemp("elfcore")
    (d / "t.c").write_text(LIBRARY)
    (d / "m.c").write_text(PROGRAM)
    (d / "t.map").write_text(VSCRIPT)
    (d / "t.vec").write_text(VEC)
    run(["gcc", "-fPIC", "-shared", "-O2", "-Wl,-soname=libt.so.1", "-Wl,--hash-style=both",
         "-Wl,--version-script=t.map", "-Wl,-rpath,/x/lib", "-o", "libt.so.1", "t.c"], d)
    run(["gcc", "-pie", "-fPIE", "-O2", "-o", "prog", "m.c", "-L.", "-l:libt.so.1",
         "-Wl,-rpath,/x/lib"], d)
    return d


class Layout:
    """Where a built file keeps each part: from readelf and the headers."""

    def __init__(self, path):
        self.data = path.read_bytes()
        self.sections, self.index = {}, {}     # name -> (addr, offset, size), name -> index
        for line in run(["readelf", "-SW", path], cwd=".").stdout.splitlines():
            fields = line.replace("[ ", "[").split()
            if len(fields) > 5 and fields[0].startswith("[") and fields[1].startswith("."):
                self.index[fields[1]] = int(fields[0].strip("[]"))
                self.sections[fields[1]] = (int(fields[3], 16), int(fields[4], 16),
                                            int(fields[5], 16))
        (self.phoff, self.shoff, _, _, self.phentsize, self.phnum, self.shentsize,
         self.shnum, self.shstrndx) = struct.unpack_from("<QQIHHHHHH", self.data, 0x20)

    def offset(self, section):
        return self.sections[section][1]

    def dynamic(self, tag):
        """File offset of the first .dynamic entry with ``tag``."""
        start = self.offset(".dynamic")
        for at in range(start, start + self.sections[".dynamic"][2], 16):
            if struct.unpack_from("<q", self.data, at)[0] == tag:
                return at
        raise AssertionError(f"no dynamic entry {tag:#x}")

    def phdr(self, ptype, last=False):
        """File offset of the first (or last) program header of ``ptype``."""
        found = [self.phoff + i * 56 for i in range(self.phnum)
                 if struct.unpack_from("<I", self.data, self.phoff + i * 56)[0] == ptype]
        return found[-1 if last else 0]

    def symbol(self, name):
        """File offset of the .dynsym entry called ``name``."""
        strtab, symtab = self.offset(".dynstr"), self.offset(".dynsym")
        for i in range(self.sections[".dynsym"][2] // 24):
            at = symtab + 24 * i
            st_name = struct.unpack_from("<I", self.data, at)[0]
            end = self.data.index(b"\0", strtab + st_name)
            if self.data[strtab + st_name:end] == name.encode():
                return at, i
        raise AssertionError(f"{name} not in .dynsym")


def put(data, offset, fmt, value):
    struct.pack_into("<" + fmt, data, offset, value)


def dyn_value(layout, data, tag, value):
    put(data, layout.dynamic(tag) + 8, "Q", value)


def dyn_tag(layout, data, tag, new_tag):
    put(data, layout.dynamic(tag), "q", new_tag)


def without_dt_null(layout, data):
    start, size = layout.offset(".dynamic"), layout.sections[".dynamic"][2]
    for at in range(start, start + size, 16):
        if struct.unpack_from("<q", data, at)[0] == DT_NULL:
            put(data, at, "q", DT_DEBUG)


def first_jump_slot_symbol(layout, data, index):
    at = layout.offset(".rela.plt")
    info = struct.unpack_from("<Q", data, at + 8)[0]
    put(data, at + 8, "Q", (index << 32) | (info & 0xFFFFFFFF))


def symbol_field(name, offset, fmt, value):
    def mutate(layout, data):
        at, _ = layout.symbol(name)
        put(data, at + offset, fmt, value)
    return mutate


def versym_of(name, value):
    def mutate(layout, data):
        _, index = layout.symbol(name)
        put(data, layout.offset(".gnu.version") + 2 * index, "H", value)
    return mutate


def at_section(section, delta, fmt, value):
    def mutate(layout, data):
        put(data, layout.offset(section) + delta, fmt, value)
    return mutate


def header(offset, fmt, value):
    return lambda layout, data: put(data, offset, fmt, value)


def section_header(section, delta, fmt, value):
    return lambda layout, data: put(data, layout.shoff + 64 * layout.index[section] + delta,
                                    fmt, value)


# (name, mutation, words the reason must hold); mutations change the bytes
# in place, or return new bytes
MALFORMED = [
    ("truncated by one byte", lambda l, d: bytes(d[:-1]), "truncated ELF file"),
    ("truncated to 3000 bytes", lambda l, d: bytes(d[:3000]), "truncated ELF file"),
    ("empty", lambda l, d: b"", "not an ELF file"),
    ("bad class", header(4, "B", 9), "bad ELF class 9"),
    ("32-bit class", header(4, "B", 1), "32-bit ELF (x86-64): not supported yet"),
    ("big-endian", lambda l, d: (put(d, 5, "B", 2), d.__setitem__(slice(18, 20), b"\0\x15")),
     "64-bit big-endian ELF (PowerPC64): not supported yet"),
    ("risc-v", header(18, "H", 243), "64-bit ELF (RISC-V): not supported yet"),
    ("i386 in ELF64", header(18, "H", 3), "64-bit ELF (i386): not supported yet"),
    ("relocatable object", header(16, "H", 1), "relocatable object file"),
    ("bad e_version", header(20, "I", 7), "bad ELF version 7"),
    ("e_phoff past the end", header(0x20, "Q", 1 << 40), "program headers at"),
    ("e_phnum huge", header(0x38, "H", 0xFFFF), "65535 program headers"),
    ("e_phnum 0", header(0x38, "H", 0), "no program headers"),
    ("e_phentsize", header(0x36, "H", 32), "e_phentsize is 32"),
    ("e_phoff 0", header(0x20, "Q", 0), "e_phoff 0x0", "points into the ELF header"),
    ("e_shoff 0", header(0x28, "Q", 0), "e_shoff 0x0", "points into the ELF header"),
    ("e_shoff past the end", header(0x28, "Q", 1 << 40), "section headers at"),
    ("e_shentsize", header(0x3A, "H", 40), "e_shentsize is 40"),
    ("e_shstrndx", lambda l, d: put(d, 0x3E, "H", l.shnum + 3), "e_shstrndx"),
    ("section name offset", section_header(".gnu.hash", 0, "I", 0x7FFFFFFF),
     "name offset 0x7fffffff"),
    ("section alignment", section_header(".gnu.hash", 48, "Q", 3),
     "(.gnu.hash): alignment 0x3 is not a power of two"),
    (".dynsym past the end", section_header(".dynsym", 24, "Q", 1 << 40),
     "(.dynsym,", "runs past its end"),
    ("segment past the end", lambda l, d: put(d, l.phdr(PT_LOAD) + 32, "Q", 1 << 40),
     "runs past its end"),
    ("huge p_memsz", lambda l, d: put(d, l.phdr(PT_LOAD, last=True) + 40, "Q", 1 << 60),
     "47-bit address space"),
    ("p_memsz < p_filesz", lambda l, d: put(d, l.phdr(PT_LOAD) + 40, "Q", 1),
     "is less than p_filesz"),
    ("PT_DYNAMIC moved", lambda l, d: put(d, l.phdr(PT_DYNAMIC) + 8, "Q",
                                          struct.unpack_from("<Q", d, l.phdr(PT_DYNAMIC) + 8)[0]
                                          + 8), "PT_DYNAMIC"),
    ("no DT_NULL", without_dt_null, "no DT_NULL"),
    ("no DT_STRTAB", lambda l, d: dyn_tag(l, d, DT_STRTAB, DT_DEBUG), "no DT_STRTAB"),
    ("no DT_SYMTAB", lambda l, d: dyn_tag(l, d, DT_SYMTAB, DT_DEBUG), "no DT_SYMTAB"),
    ("DT_STRSZ huge", lambda l, d: dyn_value(l, d, DT_STRSZ, 1 << 40),
     "string table (DT_STRTAB)", "not in the file"),
    (".dynstr without its final NUL",
     lambda l, d: put(d, l.offset(".dynstr") + l.sections[".dynstr"][2] - 1, "B", ord("A")),
     "string table (DT_STRTAB", "does not end in a NUL byte"),
    ("DT_NEEDED past .dynstr", lambda l, d: dyn_value(l, d, DT_NEEDED, 1 << 20),
     "DT_NEEDED names offset 0x100000"),
    ("DT_RELASZ not a multiple of 24",
     lambda l, d: dyn_value(l, d, DT_RELASZ, l.sections[".rela.dyn"][2] + 1),
     "DT_RELASZ is", "not a multiple of 24"),
    ("DT_PLTRELSZ not a multiple of 24",
     lambda l, d: dyn_value(l, d, DT_PLTRELSZ, l.sections[".rela.plt"][2] - 4),
     "DT_PLTRELSZ is", "not a multiple of 24"),
    ("DT_RELAENT", lambda l, d: dyn_value(l, d, DT_RELAENT, 16), "DT_RELAENT is 16, not 24"),
    ("DT_SYMENT", lambda l, d: dyn_value(l, d, DT_SYMENT, 16), "DT_SYMENT is 16, not 24"),
    ("DT_RELA outside", lambda l, d: dyn_value(l, d, DT_RELA, 0x7FFFFF00),
     "relocations (DT_RELA)", "not in the file"),
    ("relocation symbol index", lambda l, d: first_jump_slot_symbol(l, d, 9999),
     "names symbol 9999, past the"),
    ("symbol name offset", symbol_field("t_add", 0, "I", 0x7FFFFFFF),
     "name offset 0x7fffffff"),
    ("symbol value", symbol_field("t_add", 8, "Q", 1 << 46), "(t_add)", "past its segments"),
    ("symbol size", symbol_field("t_add", 16, "Q", 1 << 62), "(t_add)", "past its segments"),
    ("undefined symbol size", symbol_field("strlen", 16, "Q", 1 << 62), "(strlen)",
     "past the address space"),
    ("gnu hash nbucket 0", at_section(".gnu.hash", 0, "I", 0), "GNU hash", "no buckets"),
    ("gnu hash nbucket huge", at_section(".gnu.hash", 0, "I", 0xFFFFFFFF), "GNU hash",
     "not in the file"),
    ("gnu hash symoffset 0", at_section(".gnu.hash", 4, "I", 0), "symoffset 0 is not within"),
    ("gnu hash symoffset huge", at_section(".gnu.hash", 4, "I", 0xFFFFFFF0),
     "symoffset 4294967280"),
    ("gnu hash bloom 0", at_section(".gnu.hash", 8, "I", 0), "bloom filter size 0"),
    ("gnu hash bloom 3", at_section(".gnu.hash", 8, "I", 3), "bloom filter size 3"),
    ("gnu hash bloom huge", at_section(".gnu.hash", 8, "I", 1 << 31), "GNU hash",
     "not in the file"),
    ("sysv hash nbucket 0", at_section(".hash", 0, "I", 0), "(DT_HASH) has no buckets"),
    ("sysv hash nchain huge", at_section(".hash", 4, "I", 0x7FFFFFFF), "(DT_HASH)",
     "not in the file"),
    ("unknown version index", versym_of("t_add", 99), "version index 99"),
    ("DT_VERSYM outside", lambda l, d: dyn_value(l, d, DT_VERSYM, 0x7FFFFF00),
     "symbol versions (DT_VERSYM)"),
    ("verdef version", at_section(".gnu.version_d", 0, "H", 2),
     "version definition (DT_VERDEF)", "has version 2"),
    ("no DT_VERDEFNUM", lambda l, d: dyn_tag(l, d, DT_VERDEFNUM, DT_DEBUG),
     "without its count"),
    ("verneed aux outside", at_section(".gnu.version_r", 8, "I", 0x7FFFFFF0),
     "version requirement (DT_VERNEED)", "not in the file"),
    ("verneed endless", lambda l, d: (dyn_value(l, d, DT_VERNEEDNUM, 1 << 40),
                                      put(d, l.offset(".gnu.version_r") + 12, "I", 16)),
     "version requirement (DT_VERNEED)"),
    ("verneed name", at_section(".gnu.version_r", 4, "I", 0x7FFFFFF0),
     "version requirement (DT_VERNEED) names offset"),
]

PROGRAM_MALFORMED = ["truncated by one byte", "relocation symbol index", "gnu hash symoffset 0",
                     ".dynstr without its final NUL",
                     "no DT_STRTAB", "no DT_SYMTAB", "DT_PLTRELSZ not a multiple of 24",
                     "unknown version index", "p_memsz < p_filesz"]


def commands(path, vec):
    """Every command that reads an ELF file, with ``path`` as that file."""
    return {"retrovec": [vec, path], "retroimp": ["", vec, path], "recovervec": [path],
            "vecstat": [path], "vectool": ["--mode=rpathrm", "--rpathdir=/x", path]}


def run_limited(prog, args, cwd):
    """``bin/prog args`` with stdin closed, at most 1 GB of address space,
    and TIME_LIMIT seconds; returns (CompletedProcess, seconds)."""
    argv = ["bash", "-c", f'ulimit -v {MEMORY_LIMIT // 1024}; exec "$@"', "limited",
            sys.executable, str(BIN / prog), *map(str, args)]
    start = time.monotonic()
    result = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, errors="replace", timeout=TIME_LIMIT)
    return result, time.monotonic() - start


def assert_refused_by_all(path, vec, words, cwd):
    """Each command: exit 1, one stderr line ``prog: PATH: reason`` holding
    ``words``, under TIME_LIMIT, and the file untouched."""
    before = Path(path).read_bytes() if Path(path).is_file() else None
    jobs = commands(path, vec)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = dict(zip(jobs, pool.map(lambda p: run_limited(p, jobs[p], cwd), jobs)))
    for prog, (result, seconds) in results.items():
        lines = result.stderr.splitlines()
        assert result.returncode == 1, (prog, result.returncode, result.stderr)
        assert len(lines) == 1, (prog, result.stderr)
        assert lines[0].startswith(f"{prog}: {path}: "), (prog, lines[0])
        assert "internal error" not in lines[0] and "Traceback" not in result.stderr
        for word in words:
            assert word in lines[0], (prog, lines[0], word)
        assert seconds < TIME_LIMIT, (prog, seconds)
    if before is not None:
        assert Path(path).read_bytes() == before


def mutated(built, source, name):
    mutation, *words = next(m[1:] for m in MALFORMED if m[0] == name)
    layout = Layout(built / source)
    data = bytearray(layout.data)
    out = mutation(layout, data)
    path = built / f"{source}.{name.replace(' ', '_')}"
    path.write_bytes(bytes(data) if out is None or not isinstance(out, bytes) else out)
    return path, words


def test_the_originals_are_accepted(built):
    """What the mutations start from passes the reader of every command:
    only what the command itself asks for is missing (a vector to recover,
    a library to add one to)."""
    refusals = {("libt.so.1", "recovervec"): "no export vector",
                ("prog", "recovervec"): "no export vector",
                ("prog", "retrovec"): "not a shared library (a position-independent executable)"}
    for source in ("libt.so.1", "prog"):
        copy = built / f"{source}.copy"             # rpathrm edits its file in place
        copy.write_bytes((built / source).read_bytes())
        for prog, args in commands(copy, built / "t.vec").items():
            result, _ = run_limited(prog, args, built)
            assert "internal error" not in result.stderr and "Traceback" not in result.stderr
            expected = refusals.get((source, prog))
            assert result.returncode == (1 if expected else 0), (prog, result.stderr)
            assert expected is None or expected in result.stderr, (prog, result.stderr)


@pytest.mark.parametrize("name", [m[0] for m in MALFORMED])
def test_malformed_library(built, name):
    path, words = mutated(built, "libt.so.1", name)
    assert_refused_by_all(path, built / "t.vec", words, built)


@pytest.mark.parametrize("name", PROGRAM_MALFORMED)
def test_malformed_program(built, name):
    path, words = mutated(built, "prog", name)
    assert_refused_by_all(path, built / "t.vec", words, built)


def test_special_files(built, tmp_path):
    """ELF inputs are regular files after following symbolic links: a FIFO
    never blocks a command, a directory or a device is named as such."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    os.symlink("loop2", tmp_path / "loop1")
    os.symlink("loop1", tmp_path / "loop2")
    os.symlink("fifo", tmp_path / "to_fifo")
    (tmp_path / "text").write_text("not ELF\n")
    cases = {"fifo": "not a regular file (a FIFO)", "to_fifo": "not a regular file (a FIFO)",
             "dir": "not a regular file (a directory)",
             "loop1": "cannot read: Too many levels of symbolic links",
             "missing": "cannot read: No such file or directory", "text": "not an ELF file"}
    for name, reason in cases.items():
        assert_refused_by_all(tmp_path / name, built / "t.vec", [reason], tmp_path)
    assert_refused_by_all(Path("/dev/null"), built / "t.vec",
                          ["not a regular file (a character device)"], tmp_path)


# -- values the reader does not know, and files without section headers -------

ODD_BUT_READABLE = [
    ("unknown symbol type", symbol_field("t_add", 4, "B", 0x1D)),         # GLOBAL, type 13
    ("unknown binding", symbol_field("t_add", 4, "B", 0x72)),             # binding 7, FUNC
    ("internal visibility", symbol_field("t_add", 5, "B", 1)),
    ("unknown relocation type", lambda l, d: put(d, l.offset(".rela.plt") + 8, "I", 99)),
]


@pytest.mark.parametrize("name,mutation", ODD_BUT_READABLE, ids=[m[0] for m in ODD_BUT_READABLE])
def test_unknown_values_read_as_other(built, name, mutation):
    """An unknown symbol type, binding or relocation type is "other", never a
    crash: each command succeeds or refuses with one line naming the file."""
    for source in ("libt.so.1", "prog"):
        layout = Layout(built / source)
        data = bytearray(layout.data)
        mutation(layout, data)
        path = built / f"{source}.odd"
        path.write_bytes(bytes(data))
        for prog, args in commands(path, built / "t.vec").items():
            result, _ = run_limited(prog, args, built)
            assert "internal error" not in result.stderr and "Traceback" not in result.stderr
            errors = [line for line in result.stderr.splitlines() if ": warning: " not in line]
            assert result.returncode in (0, 1) and len(errors) == result.returncode, \
                (prog, result.stderr)
            assert all(line.startswith(f"{prog}: {path}: ") for line in errors), errors


def test_without_section_headers(built):
    """e_shnum 0: nothing to read sections from.  Readers go by the dynamic
    section; a rewrite is refused (strip could not keep what it adds)."""
    data = bytearray((built / "libt.so.1").read_bytes())
    put(data, 0x3C, "H", 0)                                     # e_shnum
    path = built / "libt.noshdr"
    path.write_bytes(bytes(data))
    jobs = commands(path, built / "t.vec")
    result, _ = run_limited("retrovec", jobs["retrovec"], built)
    assert result.returncode == 1
    assert result.stderr == f"retrovec: {path}: no section headers: strip and objcopy " \
                            "could not keep what would be added\n"
    assert run_limited("vecstat", jobs["vecstat"], built)[0].stdout == \
        run_limited("vecstat", [built / "libt.so.1"], built)[0].stdout
    result, _ = run_limited("recovervec", jobs["recovervec"], built)
    assert result.stderr == f"recovervec: {path}: no export vector in this library " \
                            "(no __V_ symbol)\n"


def test_a_library_that_runs_is_no_pie(built):
    """libc.so.6 has an interpreter (it runs) and is a shared library; a PIE
    is not one (DF_1_PIE)."""
    libc = run(["gcc", "-print-file-name=libc.so.6"], built).stdout.strip()
    kinds = {name: (elf.is_pie, elf.is_shared_object) for name, elf in
             (("libc", ElfFile(libc)), ("libt", ElfFile(built / "libt.so.1")),
              ("prog", ElfFile(built / "prog")))}
    assert kinds == {"libc": (False, True), "libt": (False, True), "prog": (True, False)}


def test_sections_and_static_symbols_as_readelf_shows_them(built):
    """What the demo and the benchmark read (measure.py): each section's
    size by name, the section holding an address, the .symtab entries."""
    path = built / "libt.so.1"
    layout, image = Layout(path), measure.read_image(path)
    sizes = measure.linkage_bytes(path)
    for name, (addr, _, size) in layout.sections.items():
        if name in sizes:
            assert sizes[name] == size, name
        if addr and size and name not in (".tbss", ".comment"):
            assert [measure.section_containing(path, a) for a in (addr, addr + size - 1)] == \
                [name, name]
    shown = run(["readelf", "-sW", path], built).stdout.split("Symbol table '.symtab'")[1]
    rows = [line.split() for line in shown.splitlines()[2:] if line.strip()]
    assert [(name, sym.value, sym.size) for name, sym in image.static_symbols()] == \
        [(row[7] if len(row) > 7 else "", int(row[1], 16), int(row[2])) for row in rows]


# -- what a rewrite writes -------------------------------------------------------

SHT_DYNSYM, SHT_NOBITS, SHT_GNU_HASH = 11, 8, 0x6FFFFFF6


def test_moved_tables_get_their_own_section_type_and_entry_size(built):
    """retrovec moves .dynsym and .gnu.hash to a new segment; their section
    headers then say what the new tables are (SHT_DYNSYM with 24-byte
    entries, SHT_GNU_HASH with 0), whatever the input's said, so that
    eu-elflint finds nothing new in the output."""
    layout = Layout(built / "libt.so.1")
    data = bytearray(layout.data)
    section_header(".dynsym", 4, "I", SHT_NOBITS)(layout, data)
    section_header(".gnu.hash", 56, "Q", 7)(layout, data)
    (built / "libt.odd_headers").write_bytes(bytes(data))
    result, _ = run_limited("retrovec", ["-o", "libt.rewritten", "t.vec", "libt.odd_headers"],
                            built)
    assert result.returncode == 0, result.stderr
    out = Layout(built / "libt.rewritten")
    for name, sh_type, entsize in ((".dynsym", SHT_DYNSYM, 24), (".gnu.hash", SHT_GNU_HASH, 0)):
        at = out.shoff + 64 * out.index[name]
        assert struct.unpack_from("<I", out.data, at + 4)[0] == sh_type, name
        assert struct.unpack_from("<Q", out.data, at + 56)[0] == entsize, name
    lint = run(["eu-elflint", "--gnu-ld", "libt.rewritten"], built).stdout
    assert lint == "No errors\n"


# -- names are bytes ----------------------------------------------------------

NOT_UTF8 = """\
int cafe(int x) __asm__("caf\\351");
int cafe(int x) { return x + 1; }
int other(int x) { return x * 2; }
"""
DLSYM = """\
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv)
{
    void *h = dlopen(argv[1], RTLD_NOW);
    int (*cafe)(int) = h ? (int (*)(int))dlsym(h, "caf\\351") : 0;
    int (*other)(int) = h ? (int (*)(int))dlsym(h, "other") : 0;
    if (!cafe || !other)
        return 1;
    printf("%d %d\\n", cafe(1), other(2));
    return 0;
}
"""
CALLER = """\
int cafe(int x) __asm__("caf\\351");
int other(int);
int main(int argc, char **argv) { return cafe(argc) + other(argc) - 4; }
"""


@pytest.mark.parametrize("slots", [[b"other"], [b"other", b"caf\xe9"]], ids=["other", "both"])
def test_names_that_are_not_utf8(tmp_path, slots):
    """A library exporting "caf\\351": retrovec keeps the name's bytes in
    .dynstr and hashes those bytes, so dlsym still finds it and eu-elflint
    sees a valid .gnu.hash; recovervec and vecstat print the bytes back to
    standard output, and a program bound through the vector runs."""
    for name, text in (("u.c", NOT_UTF8), ("dlsym.c", DLSYM), ("caller.c", CALLER)):
        (tmp_path / name).write_text(text)
    run(["gcc", "-fPIC", "-shared", "-Wl,-soname=libu.so.1", "-o", "libu.so.1", "u.c"], tmp_path)
    run(["gcc", "-o", "dlsym", "dlsym.c", "-ldl"], tmp_path)
    run(["gcc", "-o", "caller", "caller.c", "-L.", "-l:libu.so.1"], tmp_path)
    vec = b"__V_libu_so_1\n" + b"".join(s + b"\n" for s in slots)
    (tmp_path / "u.vec").write_bytes(vec)
    (tmp_path / "vec").mkdir()
    result, _ = run_limited("retrovec", ["-o", "vec/libu.so.1", "u.vec", "libu.so.1"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert run(["./dlsym", "./vec/libu.so.1"], tmp_path).stdout == "2 4\n"
    assert run(["eu-elflint", "--gnu-ld", "vec/libu.so.1"], tmp_path).stdout == "No errors\n"
    # Standard output as under an ordinary UTF-8 locale (en_US.UTF-8):
    # strict, so a name is written as its bytes or not at all.
    strict = dict(os.environ, PYTHONIOENCODING="utf-8:strict")
    recovered = subprocess.run([sys.executable, BIN / "recovervec", "vec/libu.so.1"],
                               cwd=tmp_path, capture_output=True, stdin=subprocess.DEVNULL,
                               env=strict)
    assert recovered.returncode == 0, recovered.stderr
    assert [line for line in recovered.stdout.splitlines() if not line.startswith(b"#")] == \
        vec.splitlines()
    stats = subprocess.run([sys.executable, BIN / "vecstat", "caller"], cwd=tmp_path,
                           capture_output=True, stdin=subprocess.DEVNULL,
                           env=dict(strict, LD_LIBRARY_PATH="vec"))
    assert stats.returncode == 0, stats.stderr
    assert b"      1 caf\xe9\n" in stats.stdout
    bound, _ = run_limited("retroimp", ["-o", "caller.vec", "", "u.vec", "caller"], tmp_path)
    assert bound.returncode == 0, bound.stderr
    assert run(["./caller.vec"], tmp_path, env={"LD_LIBRARY_PATH": "vec"}, check=False) \
        .returncode == 0


def test_an_empty_run_path_is_no_directory(built, tmp_path):
    """rpathrm leaves DT_RUNPATH "" when it removes every entry: ld.so then
    searches no directory for it (not the current one), and so do we."""
    for name in ("prog", "libt.so.1"):
        (tmp_path / name).write_bytes((built / name).read_bytes())
    (tmp_path / "prog").chmod(0o755)
    result, _ = run_limited("vectool", ["--mode=rpathrm", "--rpathdir=/x", "prog"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Library runpath: []" in run(["readelf", "-d", "prog"], tmp_path).stdout
    assert "libt.so.1 => not found" in run(["ldd", "./prog"], tmp_path, check=False).stdout
    result, _ = run_limited("vecstat", ["prog"], tmp_path)
    assert result.stderr == "vecstat: warning: cannot find libt.so.1; the functions only it " \
                            "defines are unresolved\n"
