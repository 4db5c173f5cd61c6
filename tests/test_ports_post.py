"""i386 and AArch64, the post-link commands that write code (issue 10,
phase 2), on libraries and programs cross-built here in every PLT form.

* relvec settles a fixed-base library's relocations; its program prints
  what it prints with the stock library, with the library at its base and
  moved away by a blocker library (its fix-up routine then adds a load
  bias that ``LD_DEBUG=files`` shows is not 0);
* retrovec gives a vectored IFUNC a stub, which a program calls through
  the vector table, and recovervec reads the slot back as that IFUNC;
* retroimp binds programs' PLTs through a vector: i386 PIE (PIC PLT,
  ``jmp *off(%ebx)``) and non-PIE (``jmp *ADDR``), each also with
  ``-fcf-protection`` (``.plt.sec``); AArch64 PIE and non-PIE, each also
  BTI-marked (``-mbranch-protection=standard``, PAC in the functions; the
  non-PIE PLT entries then start with ``bti c``).

AArch64 programs run under qemu-aarch64, which enforces BTI on the pages
of a BTI-marked file (including the segments the commands append): a test
checks that a resolver stub without its ``bti c`` is a fault.  Debian 12's
cross C library starts programs through an ``_start`` without a landing
pad, so the BTI programs here bring their own (:data:`BTI_START`).
"""

import re
import shutil
import struct
from pathlib import Path

import pytest

from conftest import missing, require_programs, run, tool
from ports import CROSS_LIB, CROSS_MAIN, PORTS
from elfvector.arch import aarch64 as aarch64_code
from elfvector.elfimage import ElfImage
from elfvector.errors import UnsupportedElfError
from elfvector.patterns import PatternList
from elfvector.relvec import relvec

#: the link-time bases of the relvec libraries
BASES = {"i386": 0x50000000, "aarch64": 0x5000000000}

#: an AArch64 ``_start`` (glibc's, less its PLT-free details) with a landing
#: pad for ld.so's ``br`` to it: ``bti jc`` as its hint
BTI_START = """\t.text
\t.globl _start
\t.type _start, %function
_start:
\thint 38
\tmov x29, #0
\tmov x30, #0
\tmov x5, x0
\tldr x1, [sp]
\tadd x2, sp, #8
\tmov x6, sp
\tadrp x0, :got:main
\tldr x0, [x0, #:got_lo12:main]
\tmov x3, #0
\tmov x4, #0
\tbl __libc_start_main
\tbl abort
\t.section .note.GNU-stack,"",%progbits
"""
BTI_FLAGS = ["-mbranch-protection=standard", "-Wl,-z,force-bti"]


@pytest.fixture(params=["i386", "aarch64", "aarch64-bti"])
def flavour(request):
    """(port, BTI): both ports, and AArch64 with BTI-marked files."""
    name = request.param
    port = PORTS[name.split("-")[0]]
    require_programs(port.cross_gcc)
    if port.name == "aarch64" and shutil.which("qemu-aarch64") is None:
        missing("qemu-aarch64", "the Debian package qemu-user")
    return port, name.endswith("-bti")


def gcc(port, bti, *args, cwd):
    """The cross compiler; a BTI-marked output with ``bti``: a library then
    has no start files (Debian 12's have no BTI note), a program
    :data:`BTI_START`."""
    extra = []
    if bti:
        extra = BTI_FLAGS + ["-nostartfiles"]
        if "-shared" not in args:
            (Path(cwd) / "start.S").write_text(BTI_START)
            extra.append("start.S")
    run([port.cross_gcc, "-O2", *args, *extra], cwd=cwd)


def cross_argv(port, program, libdir, preload=None):
    """``program`` run with the cross toolchain's libc, ``libdir`` first,
    ``preload`` (a library) loaded before everything else."""
    if port.name == "i386":
        return ([Path(port.cross_root) / "lib/ld-linux.so.2"]
                + (["--preload", preload] if preload else [])
                + ["--library-path", f"{libdir}:{port.cross_root}/lib", program])
    return (["qemu-aarch64", "-L", port.cross_root, "-E", f"LD_LIBRARY_PATH={libdir}"]
            + (["-E", f"LD_PRELOAD={preload}"] if preload else []) + [program])


def outcome(port, program, libdir, preload=None, env=None):
    result = run(cross_argv(port, program, libdir, preload), cwd=Path(program).parent,
                 env=env, check=False)
    return result.returncode, result.stdout, result.stderr


def library_root(port, tmp_path):
    """A root (``retroimp --root``) with the port's ld.so and libc, and an
    empty ``vec`` directory for the vectored libraries: retroimp finds a
    program's libraries as its architecture's ld.so would."""
    root = tmp_path / "root"
    (root / "lib").mkdir(parents=True)
    (root / "vec").mkdir()
    for name in (Path(port.interp).name, "libc.so.6"):
        shutil.copy(Path(port.cross_root) / "lib" / name, root / "lib" / name)
    return root


def is_bti_marked(path):
    return "AArch64 feature: BTI" in run(["readelf", "-nW", path], cwd=".").stdout


def relocation_types(path):
    """{type name: count} of the dynamic relocations readelf lists."""
    counts = {}
    for line in run(["readelf", "-rW", path], cwd=".").stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and re.fullmatch(r"R_\w+", fields[2]):
            counts[fields[2]] = counts.get(fields[2], 0) + 1
    return counts


# -- relvec -------------------------------------------------------------------

RELVEC_LIB = r"""#include <string.h>
static int one(void) { return 1; }
static int two(void) { return 2; }
int three(void) { return 3; }
int (*table[])(void) = { one, two, three, one, two, three };
const char *names[] = { "one", "two", "three" };
static const char *seen[64];
int sum(void) { int s = 0; for (unsigned i = 0; i < 6; i++) s += table[i](); return s; }
const char *name(int i) { seen[i] = names[i % 3]; return seen[i]; }
unsigned long len(const char *s) { return strlen(s); }
int (*three_ptr)(void) = three;
"""
RELVEC_MAIN = r"""#include <stdio.h>
int sum(void); const char *name(int); unsigned long len(const char *);
extern int (*three_ptr)(void);
int main(void) {
    printf("%d %s %s %lu %d\n", sum(), name(1), name(5), len("elfvector"), three_ptr());
    return 0;
}
"""


def load_base(port, program, libdir, preload, soname):
    """The load bias ld.so reports for ``soname`` (``LD_DEBUG=files``)."""
    env = {"LD_DEBUG": "files"}
    argv = cross_argv(port, program, libdir, preload)
    if port.name == "aarch64":
        argv[1:1] = ["-E", "LD_DEBUG=files"]
    err = run(argv, cwd=Path(program).parent, env=env).stderr
    m = re.search(rf"file={re.escape(soname)} \[0\];  generating link map\n.*base: (0x[0-9a-f]+)",
                  err)
    return int(m.group(1), 16)


def test_relvec_of_a_cross_built_library(flavour, tmp_path):
    """A library linked at a fixed base loses its relative relocations (and
    the one to its own function ``three``), and its program prints what it
    prints with the stock library, at the base and moved away."""
    port, bti = flavour
    base = BASES[port.name]
    (tmp_path / "r.c").write_text(RELVEC_LIB)
    (tmp_path / "m.c").write_text(RELVEC_MAIN)
    (tmp_path / "b.c").write_text("int block_me = 1;\n")
    for d in ("based", "relvec"):
        (tmp_path / d).mkdir()
    gcc(port, bti, "-fPIC", "-shared", "-Wl,-soname=libr.so", f"-Wl,-Ttext-segment={base:#x}",
        "-o", "based/libr.so", "r.c", cwd=tmp_path)
    gcc(port, False, "-fPIC", "-shared", f"-Wl,-Ttext-segment={base:#x}", "-o", "libblock.so",
        "b.c", cwd=tmp_path)
    gcc(port, bti, "-o", "m", "m.c", "-Lbased", "-lr", cwd=tmp_path)
    based = tmp_path / "based/libr.so"
    assert is_bti_marked(based) == bti
    data, report = relvec(based.read_bytes(), str(based), PatternList(["^three$"]), None)
    (tmp_path / "relvec/libr.so").write_bytes(data)
    assert report.relative_settled >= 7 and report.symbol_settled == {"three": 3}
    relative = f"{port.relocation_prefix}RELATIVE"
    assert relative not in relocation_types(tmp_path / "relvec/libr.so")
    assert relocation_types(tmp_path / "relvec/libr.so")[f"{port.relocation_prefix}IRELATIVE"] == 1
    loads = [line.split() for line in run(["readelf", "-lW", tmp_path / "relvec/libr.so"],
                                          cwd=tmp_path).stdout.splitlines()
             if line.split()[:1] == ["LOAD"]]
    page = {"i386": 0x1000, "aarch64": 0x10000}[port.name]      # as the link editor's
    assert {int(f[-1], 16) for f in loads} == {page}
    assert all(int(f[1], 16) % page == int(f[2], 16) % page for f in loads)
    main, blocker = tmp_path / "m", tmp_path / "libblock.so"
    stock = outcome(port, main, tmp_path / "based")
    assert stock == (0, "12 two three 9 3\n", "")
    assert outcome(port, main, tmp_path / "relvec") == stock
    assert load_base(port, main, tmp_path / "relvec", None, "libr.so") == 0
    assert outcome(port, main, tmp_path / "relvec", blocker) == stock
    assert load_base(port, main, tmp_path / "relvec", blocker, "libr.so") != 0


def test_bti_landing_pads_are_enforced(tmp_path):
    """The BTI tests above mean something: the relvec routine, called by
    ld.so with ``blr`` from a BTI-marked library, faults without its
    ``bti c`` (here replaced by a ``nop``)."""
    port = PORTS["aarch64"]
    require_programs(port.cross_gcc, "qemu-aarch64")
    (tmp_path / "r.c").write_text(RELVEC_LIB)
    (tmp_path / "m.c").write_text(RELVEC_MAIN)
    (tmp_path / "lib").mkdir()
    gcc(port, True, "-fPIC", "-shared", "-Wl,-soname=libr.so", "-o", "lib/libr.so", "r.c",
        cwd=tmp_path)
    gcc(port, True, "-o", "m", "m.c", "-Llib", "-lr", cwd=tmp_path)
    lib = tmp_path / "lib/libr.so"
    data, _ = relvec(lib.read_bytes(), str(lib), None, None)
    image = ElfImage(data, str(lib), "relvec")
    _, code = image.section(".elfvector.relvec.text")
    assert data[code.offset:code.offset + 4] == struct.pack("<I", 0xD503245F)     # bti c
    lib.write_bytes(data)
    assert outcome(port, tmp_path / "m", lib.parent)[1] == "12 two three 9 3\n"
    nop = data[:code.offset] + struct.pack("<I", 0xD503201F) + data[code.offset + 4:]
    lib.write_bytes(nop)
    returncode, stdout, _ = outcome(port, tmp_path / "m", lib.parent)
    assert returncode != 0 and stdout == ""


# -- retrovec: an IFUNC's slot --------------------------------------------------

IFUNC_LIB = r"""#include <string.h>
static int twice_sum(int x) { return x + x; }
static int twice_mul(int x) { return 2 * x; }
static int chosen;
static int (*pick(void))(int) { chosen = 1; return chosen ? twice_sum : twice_mul; }
int twice(int) __attribute__((ifunc("pick")));
int plus(int a, int b) { return a + b; }
unsigned long len(const char *s) { return strlen(s); }
int (*plus_ptr)(int, int) = plus;
"""
IFUNC_MAIN = r"""#include <stdio.h>
extern const int __V_libf_so[];
typedef int (*unary)(int);
typedef int (*binary)(int, int);
int main(void) {
    unary twice = (unary)((const char *)__V_libf_so + __V_libf_so[0]);
    binary plus = (binary)((const char *)__V_libf_so + __V_libf_so[1]);
    printf("%d %d\n", twice(21), plus(40, 2));
    return 0;
}
"""


def test_retrovec_ifunc_slot(flavour, tmp_path):
    """A program calls the vectored IFUNC through its slot (the stub, then
    the word its IRELATIVE filled) and a function through the next."""
    port, bti = flavour
    (tmp_path / "f.c").write_text(IFUNC_LIB)
    (tmp_path / "m.c").write_text(IFUNC_MAIN)
    (tmp_path / "f.vec").write_text("__V_libf_so\ntwice\nplus\n")
    (tmp_path / "vec").mkdir()
    gcc(port, bti, "-fPIC", "-shared", "-Wl,-soname=libf.so", "-o", "libf.so", "f.c",
        cwd=tmp_path)
    tool("retrovec", "-o", "vec/libf.so", "f.vec", "libf.so", cwd=tmp_path)
    assert is_bti_marked(tmp_path / "vec/libf.so") == bti
    gcc(port, bti, "-o", "m", "m.c", "-Lvec", "-lf", cwd=tmp_path)
    assert outcome(port, tmp_path / "m", tmp_path / "vec") == (0, "42 42\n", "")
    out = tool("recovervec", "vec/libf.so", cwd=tmp_path).stdout
    assert [l for l in out.splitlines() if not l.startswith("#")] == \
        ["__V_libf_so", "twice", "plus"]


# -- retroimp of cross-built programs, every PLT form ----------------------------

#: (name, compiler flags, linker flags, what the PLT must hold)
I386_FORMS = [("pie", ["-fpie"], ["-pie"], b"\xff\xa3"),                 # jmp *off(%ebx)
              ("no-pie", ["-fno-pie"], ["-no-pie"], b"\xff\x25"),        # jmp *ADDR
              ("pie-cf", ["-fpie", "-fcf-protection"], ["-pie", "-Wl,-z,ibtplt"], b"\xff\xa3"),
              ("no-pie-cf", ["-fno-pie", "-fcf-protection"], ["-no-pie", "-Wl,-z,ibtplt"],
               b"\xff\x25")]
BTI_C = struct.pack("<I", 0xD503245F)
AARCH64_FORMS = [("pie", [], ["-pie"], None), ("no-pie", [], ["-no-pie"], None),
                 ("pie-bti", [], ["-pie"], None), ("no-pie-bti", [], ["-no-pie"], BTI_C)]
FORMS = [("i386",) + f for f in I386_FORMS] + [("aarch64",) + f for f in AARCH64_FORMS]
VECTORED = ("next", "twice", "plus", "len")


@pytest.mark.parametrize("arch,form,cflags,ldflags,plt_holds", FORMS,
                         ids=[f"{f[0]}-{f[1]}" for f in FORMS])
def test_retroimp_of_a_cross_built_program(arch, form, cflags, ldflags, plt_holds, tmp_path):
    """The program's JUMP_SLOTs of the vectored functions become IRELATIVEs
    of stubs of ours, and it prints what it prints with the stock library;
    against a library without the vector ld.so refuses to start it."""
    port, bti = PORTS[arch], form.endswith("bti")
    require_programs(port.cross_gcc)
    if arch == "aarch64" and shutil.which("qemu-aarch64") is None:
        missing("qemu-aarch64", "the Debian package qemu-user")
    (tmp_path / "x.c").write_text(CROSS_LIB)
    (tmp_path / "main.c").write_text(CROSS_MAIN)
    (tmp_path / "x.vec").write_text("__V_libx_so\n" + "\n".join(VECTORED) + "\n")
    (tmp_path / "lib").mkdir()
    root = library_root(port, tmp_path)
    gcc(port, bti, "-fPIC", "-shared", "-Wl,-soname=libx.so", "-o", "lib/libx.so", "x.c",
        *(["-fcf-protection"] if form.endswith("cf") else []), cwd=tmp_path)
    gcc(port, bti, *cflags, *ldflags, "-o", "main", "main.c", "-Llib", "-lx", cwd=tmp_path)
    main = tmp_path / "main"
    image = ElfImage(main.read_bytes(), str(main), "retroimp")
    assert image.is_pie == form.startswith("pie") and is_bti_marked(main) == bti
    if form.endswith("cf"):
        assert image.section(".plt.sec")[1] is not None
    if plt_holds:
        _, plt = image.section(".plt.sec" if form.endswith("cf") else ".plt")
        assert plt_holds in main.read_bytes()[plt.offset:plt.offset + plt.size]
    tool("retrovec", "-o", root / "vec/libx.so", "x.vec", "lib/libx.so", cwd=tmp_path)
    tool("retroimp", "--root", root, "-L", "/vec", "-o", "main.vec", "", "x.vec", "main",
         cwd=tmp_path)
    before, after = relocation_types(main), relocation_types(tmp_path / "main.vec")
    jump_slot, irelative = (f"{port.relocation_prefix}{t}" for t in ("JUMP_SLOT", "IRELATIVE"))
    # ``twice`` has its address taken (``taken``): a non-PIE program keeps its slot
    moved = after.get(irelative, 0)
    assert moved >= len(VECTORED) - 1 and before[jump_slot] - after.get(jump_slot, 0) == moved
    stock = outcome(port, main, tmp_path / "lib")
    assert stock == (0, "42 42 9 1 2 8\n", "")
    assert outcome(port, tmp_path / "main.vec", root / "vec") == stock
    refused = outcome(port, tmp_path / "main.vec", tmp_path / "lib")
    assert refused[0] != 0 and "__V_libx_so" in refused[2]


def test_retroimp_resolver_stubs_keep_their_landing_pads(tmp_path):
    """In a BTI-marked program the resolver stubs, which ld.so calls with
    ``blr``, start with ``bti c``; without it the program faults."""
    port = PORTS["aarch64"]
    require_programs(port.cross_gcc, "qemu-aarch64")
    (tmp_path / "x.c").write_text(CROSS_LIB)
    (tmp_path / "main.c").write_text(CROSS_MAIN)
    (tmp_path / "x.vec").write_text("__V_libx_so\n" + "\n".join(VECTORED) + "\n")
    (tmp_path / "lib").mkdir()
    root = library_root(port, tmp_path)
    gcc(port, True, "-fPIC", "-shared", "-Wl,-soname=libx.so", "-o", "lib/libx.so", "x.c",
        cwd=tmp_path)
    gcc(port, True, "-o", "main", "main.c", "-Llib", "-lx", cwd=tmp_path)
    tool("retrovec", "-o", root / "vec/libx.so", "x.vec", "lib/libx.so", cwd=tmp_path)
    tool("retroimp", "--root", root, "-L", "/vec", "-o", "main.vec", "", "x.vec", "main",
         cwd=tmp_path)
    data = (tmp_path / "main.vec").read_bytes()
    _, stubs = ElfImage(data, "main.vec", "retroimp").section(".elfvector.resolvers")
    code = data[stubs.offset:stubs.offset + stubs.size]
    first_stub = -(-aarch64_code.RESOLVER_COMMON_SIZE // 16) * 16     # after the common tail
    assert code[first_stub:first_stub + 4] == BTI_C
    assert outcome(port, tmp_path / "main.vec", root / "vec")[1] == "42 42 9 1 2 8\n"
    broken = bytearray(data)
    at = stubs.offset + first_stub
    broken[at:at + 4] = struct.pack("<I", 0xD503201F)
    (tmp_path / "main.vec").write_bytes(bytes(broken))
    returncode, stdout, _ = outcome(port, tmp_path / "main.vec", root / "vec")
    assert returncode != 0 and stdout == ""


def test_relvec_refuses_words_out_of_adrp_reach(tmp_path):
    """An AArch64 library whose words are more than 4 GiB below the new
    segments (a 5 GiB ``.bss`` between them): the routine's ``adrp``
    cannot reach them, and relvec says so naming the library."""
    port = PORTS["aarch64"]
    require_programs(port.cross_gcc)
    (tmp_path / "big.c").write_text("static char big[5UL << 30];\nchar *bigp = big;\n"
                                    "char *get(int i) { return &big[i]; }\n")
    gcc(port, False, "-fPIC", "-shared", "-o", "libbig.so", "big.c", cwd=tmp_path)
    lib = tmp_path / "libbig.so"
    with pytest.raises(UnsupportedElfError) as refused:
        relvec(lib.read_bytes(), str(lib), None, None)
    assert re.fullmatch(rf"{re.escape(str(lib))}: the word at 0x[0-9a-f]+ is more than 4 GiB "
                        r"from the new segments: the fixup routine \(adrp\) cannot reach it",
                        str(refused.value))
