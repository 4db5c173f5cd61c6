"""i386 and AArch64, issue 10's link-time path: expvec, impvec and
vectool --mode=lib|prog with the cross compilers (i686-linux-gnu-gcc,
aarch64-linux-gnu-gcc), the programs run natively through the cross
root's ld-linux.so.2 or under qemu-aarch64.

Every vectored program is run beside the same sources linked the usual
way against the stock libraries, and must give the same stdout, stderr
and exit status:

* the seed's example in every link mode (PIE and not, lazy and now,
  -fno-plt; BTI on AArch64), with impvec --link and with the seed's own
  command lines (stdout, fd 3, impvec > import.s);
* a vectool group (lib and prog modes);
* a library whose vector no longer matches is refused by ld.so at load;
* an IFUNC and versioned names; a constructor calling through unbound
  slots; threads;
* bad input is one line naming the user's file, never a scratch file;
* the AArch64 binder cleans and invalidates the caches and keeps
  PROT_BTI (qemu-user does not check either: the test reads the code);
  it binds a slot as ``bti c; b target`` when the library is within
  128 MiB, else through x16 (the program prints its own slot).
"""

import re
import struct
from pathlib import Path

import pytest

from conftest import TESTDATA, require_programs, run, tool
from ports import AARCH64, I386, cross_run, port  # noqa: F401 (fixture)
from test_seed_example import MODES as SEED_MODES


class PortBuild:
    """A scratch directory where the test sources are built for one port."""

    def __init__(self, port, path):
        require_programs(port.cross_gcc)
        if port.name == "aarch64":
            require_programs("qemu-aarch64")
        self.port, self.path = port, Path(path)
        (self.path / "stock").mkdir()

    def cc(self, *args):
        return run([self.port.cross_gcc, *args, "-I", TESTDATA], self.path)

    def tool(self, name, *args, check=True, fd3=None):
        return tool(name, *args, cwd=self.path, check=check, fd3=fd3)

    def run(self, program, libdir=None):
        libdir = libdir or self.path
        return run(cross_run(self.port, self.path / program, libdir), self.path, check=False)

    def obj(self, source, pic, cflags=(), directory="."):
        out = f"{directory}/{Path(source).stem}{'.pic' if pic else ''}.o"
        self.cc(*(["-fPIC"] if pic else []), "-O2", *cflags, "-c", TESTDATA / source, "-o", out)
        return out

    def expvec(self, source, soname, incl=".", vscript="", cflags=(), ldflags=()):
        """``source`` linked with expvec, and linked the usual way in stock/."""
        obj = self.obj(source, True, cflags)
        self.tool("expvec", "--vec", f"{soname}.vec", "--vec-object", f"{soname}.vec.o",
                  incl, "", vscript, self.port.cross_gcc, "-shared", f"-Wl,-soname={soname}",
                  "-o", soname, obj, *ldflags)
        stock = self.obj(source, True, cflags, "stock")
        script = [f"-Wl,--version-script={vscript}"] if vscript else []
        self.cc("-shared", f"-Wl,-soname={soname}", "-o", f"stock/{soname}", stock, *script,
                *ldflags)
        return f"{soname}.vec"

    def plain_lib(self, source, soname, deps=(), cflags=()):
        """A library linked the usual way, here and in stock/."""
        for directory in (".", "stock"):
            obj = self.obj(source, True, cflags, directory)
            self.cc("-shared", f"-Wl,-soname={soname}", "-o", f"{directory}/{soname}", obj,
                    "-Wl,--no-as-needed", *[f"{directory}/{d}" for d in deps], *cflags)

    def impvec_lib(self, source, soname, deps, vecs, cflags=(), ldflags=()):
        """A library whose calls go through an import vector, and stock/'s."""
        obj = self.obj(source, True, cflags)
        self.tool("impvec", "--link", "--asm", f"{soname}.s", "", *vecs, self.port.cross_gcc,
                  "-shared", f"-Wl,-soname={soname}", "-o", soname, obj, "-Wl,--no-as-needed",
                  *deps, *cflags, *ldflags)
        stock = self.obj(source, True, cflags, "stock")
        self.cc("-shared", f"-Wl,-soname={soname}", "-o", f"stock/{soname}", stock,
                "-Wl,--no-as-needed", *[f"stock/{d}" for d in deps], *cflags, *ldflags)
        return (self.path / f"{soname}.s").read_text()

    def program(self, source, output, libs, vecs, cflags=(), ldflags=()):
        """``output`` through impvec --link, ``output.stock`` the usual way
        against stock/'s libraries."""
        obj = self.obj(source, False, cflags)
        self.cc(*cflags, "-o", f"{output}.stock", obj, *[f"stock/{lib}" for lib in libs],
                *ldflags)
        self.tool("impvec", "--link", "--asm", f"{output}.s", "", *vecs, self.port.cross_gcc,
                  *cflags, "-o", output, obj, *libs, *ldflags)
        return output

    def same_as_stock(self, program):
        """Run ``program`` and ``program.stock``; both must behave alike."""
        got = self.run(program)
        expected = self.run(f"{program}.stock", self.path / "stock")
        assert (got.returncode, got.stdout, got.stderr) == \
            (expected.returncode, expected.stdout, expected.stderr)
        return got

    def relocations(self, path):
        """The names of the symbols ``path``'s dynamic relocations name."""
        text = run(["readelf", "-rW", self.path / path], self.path).stdout
        return [line.split()[4].split("@")[0] for line in text.splitlines()
                if self.port.relocation_prefix in line and len(line.split()) > 4
                and "RELATIVE" not in line]


@pytest.fixture
def pb(port, tmp_path):
    return PortBuild(port, tmp_path)


def foo_vector(pb, cflags=(), ldflags=()):
    return pb.expvec("foo.c", "foo.so.5", "@" + str(TESTDATA / "foo.order"),
                     str(TESTDATA / "foo.vscript"), cflags, ldflags)


def assert_calls_through_the_vector(pb, program):
    names = pb.relocations(program)
    assert not [n for n in names if n.startswith("foo_") and n != "foo_counter"]
    assert any(n.startswith("__V_foo_so_5__9_") for n in names)


# -- the seed's example ---------------------------------------------------------------

#: x86-64's link modes but its IBT one (-fcf-protection): i386's is
#: test_i386_cf_protection, with the IBT PLT it needs; AArch64 has BTI instead
MODES = {mode: flags for mode, flags in SEED_MODES.items() if mode != "ibt"}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_seed_example_in_every_link_mode(pb, mode):
    cflags, ldflags = MODES[mode]
    vec = foo_vector(pb)
    prog = pb.program("testmain.c", "testmain", ["foo.so.5"], [vec], cflags, ldflags)
    result = pb.same_as_stock(prog)
    assert result.returncode == 7 and "same &foo_add: yes" in result.stdout
    assert "add 5 mul 20 twice 42" in result.stdout
    assert_calls_through_the_vector(pb, prog)


def test_seed_command_lines(pb):
    """The seed's forms: expvec to stdout and fd 3, impvec to stdout, the
    import vector assembled by the cross compiler, a plain link."""
    obj = pb.obj("foo.c", True)
    gcc = pb.port.cross_gcc
    out = pb.tool("expvec", "@" + str(TESTDATA / "foo.order"), "", str(TESTDATA / "foo.vscript"),
                  gcc, "-shared", "-Wl,-soname=foo.so.5", "-o", "foo.so.5", obj,
                  fd3=pb.path / "foo.vec.o")
    (pb.path / "foo.vec").write_text(out.stdout)
    assert (pb.path / "foo.vec.o").read_bytes()[:4] == b"\x7fELF"
    main = pb.obj("testmain.c", False)
    imp = pb.tool("impvec", "^free$ ^malloc$", "foo.vec", gcc, "-o", "testmain", main,
                  "foo.so.5")
    (pb.path / "foo_imp.s").write_text(imp.stdout)
    pb.cc("-c", "foo_imp.s")
    pb.cc("-o", "testmain", main, "foo_imp.o", "foo.so.5")
    pb.cc("-shared", "-Wl,-soname=foo.so.5", "-o", "stock/foo.so.5", obj)
    pb.cc("-o", "testmain.stock", main, "stock/foo.so.5")
    assert pb.same_as_stock("testmain").returncode == 7
    assert_calls_through_the_vector(pb, "testmain")


def test_vectool_group(pb):
    """vectool --mode=lib for foo.so.5, then libbar.so.1, whose own calls
    into foo.so.5 go through an import vector (bound at start-up: slots
    are not pre-bound on the ports), each at its addrfile base, relvec
    applied; then --mode=prog, non-PIE and PIE."""
    gcc = pb.port.cross_gcc
    args = [f"--addrfile={pb.path / 'addrs'}", f"--rpathdir={pb.path / 'rp'}"]
    pb.tool("vectool", "--mode=lib", *args, gcc, "-shared", "-Wl,-soname=foo.so.5",
            f"-Wl,--version-script={TESTDATA / 'foo.vscript'}", "-o", "foo.so.5",
            pb.obj("foo.c", True))
    pb.tool("vectool", "--mode=lib", *args, gcc, "-shared", "-Wl,-soname=libbar.so.1",
            "-o", "libbar.so.1", pb.obj("bar.c", True), "foo.so.5")
    assert (pb.path / "rp/foo.so.5.vec").exists() and (pb.path / "rp/libbar.so.1.vec").exists()
    assert not [n for n in pb.relocations("libbar.so.1") if n.startswith("foo_")]
    pb.cc("-shared", "-Wl,-soname=foo.so.5", "-o", "stock/foo.so.5",
          pb.obj("foo.c", True, directory="stock"))
    pb.cc("-shared", "-Wl,-soname=libbar.so.1", "-o", "stock/libbar.so.1",
          pb.obj("bar.c", True, directory="stock"), "stock/foo.so.5")
    for name, flags in (("nopie", ["-no-pie"]), ("pie", [])):
        main = pb.obj("testmain.c", False, ["-fno-pie"] if flags else [])
        pb.tool("vectool", "--mode=prog", f"--rpathdir={pb.path / 'rp'}", gcc, *flags,
                "-o", name, main, "foo.so.5")
        pb.cc(*flags, "-o", f"{name}.stock", main, "stock/foo.so.5")
        assert pb.same_as_stock(name).returncode == 7
        assert_calls_through_the_vector(pb, name)
    main = pb.obj("bar_main.c", False, ["-fno-pie"])
    pb.tool("vectool", "--mode=prog", f"--rpathdir={pb.path / 'rp'}", gcc, "-no-pie",
            "-o", "bar_main", main, "libbar.so.1", "foo.so.5")
    pb.cc("-no-pie", "-o", "bar_main.stock", main, "stock/libbar.so.1", "stock/foo.so.5")
    result = pb.same_as_stock("bar_main")
    assert result.returncode == 3 and "bar_poly(3) = 15" in result.stdout
    bases = {}
    for lib in ("foo.so.5", "libbar.so.1"):
        loads = run(["readelf", "-lW", pb.path / lib], pb.path).stdout
        bases[lib] = int(re.search(r"LOAD\s+0x0+\s+(0x[0-9a-f]+)", loads).group(1), 16)
    assert bases["foo.so.5"] > bases["libbar.so.1"] > 0      # at their addrfile bases
    assert max(bases.values()) < 1 << 32 or pb.port.name != "i386"


def test_library_whose_vector_changed_is_refused_at_load(pb):
    """foo.so.5 rebuilt without foo_mul: its vector no longer holds the 9
    slots testmain was built against, ld.so refuses to start it."""
    vec = foo_vector(pb)
    prog = pb.program("testmain.c", "testmain", ["foo.so.5"], [vec])
    assert pb.run(prog).returncode == 7
    (pb.path / "new").mkdir()
    obj = pb.obj("foo.c", True, ["-DFOO_WITHOUT_MUL"])
    pb.tool("expvec", "--vec", "new/foo.so.5.vec", "--vec-object", "new/foo.vec.o",
            "@" + str(TESTDATA / "foo.order"), "", str(TESTDATA / "foo.vscript"),
            pb.port.cross_gcc, "-shared", "-Wl,-soname=foo.so.5", "-o", "new/foo.so.5", obj)
    result = pb.run(prog, pb.path / "new")
    assert result.returncode == 127 and result.stdout == ""
    assert re.search(r"symbol lookup error: .*undefined symbol: __V_foo_so_5__9_[0-9a-f]{8}",
                     result.stderr)


def test_ifunc_and_versioned_names(pb):
    """An IFUNC's slot leads to a veneer of ours whose word an IRELATIVE
    fills with the resolver's choice (ld's IPLT entry cannot serve: on
    i386 it jumps through the caller's %ebx, on AArch64 GNU ld will not
    point a PREL32 word at it).  ver@@V2 is bound through its slot;
    ver@V1, asked for by version, stays bound by name."""
    vscript = str(TESTDATA / "vers.vscript")
    vec = pb.expvec("vers.c", "libvers.so.1", vscript=vscript)
    assert [line for line in (pb.path / vec).read_text().splitlines()
            if not line.startswith("#")] == \
        ["__V_libvers_so_1", "plain@@V1", "sel@@V1", "ver@V1", "ver@@V2"]
    prog = pb.program("vers_main.c", "vers_main", ["libvers.so.1"], [vec])
    assert pb.same_as_stock(prog).stdout == "sel 2001 ver 30 plain 5\n"
    assert {"sel", "ver", "plain"} & set(pb.relocations(prog)) == set()
    old = pb.program("vers_old.c", "vers_old", ["libvers.so.1"], [vec])
    assert pb.same_as_stock(old).stdout == "old ver -3 sel 2002\n"
    assert "ver" in pb.relocations(old) and "sel" not in pb.relocations(old)


def test_i386_ifunc_slot_leads_to_a_veneer(tmp_path):
    """An i386 library's IFUNC is in its vector (expvec -v says its slot
    goes through a veneer, not that it is bound by name); the slot leads
    to retrovec's IFUNC stub to the byte, whose word is the library's own
    R_386_IRELATIVE; a program calls it through its slot and prints what
    the stock one prints; recovervec reads the vector back unchanged."""
    from elfvector.arch import i386
    from elfvector.elffile import ElfFile
    pb = PortBuild(I386, tmp_path)
    obj = pb.obj("vers.c", True)
    vscript = str(TESTDATA / "vers.vscript")
    notes = pb.tool("expvec", "-v", "--vec", "libvers.so.1.vec", ".", "", vscript,
                    I386.cross_gcc, "-shared", "-Wl,-soname=libvers.so.1", "-o",
                    "libvers.so.1", obj, fd3=tmp_path / "vec.o").stderr
    assert "sel@@V1: IFUNC, its slot goes through a veneer" in notes
    assert "left out" not in notes and "by name" not in notes
    lib = ElfFile(str(tmp_path / "libvers.so.1"), operation="recovervec")
    table = next(s.value for s in lib.dynamic_symbols if s.name == "__V_libvers_so_1")
    veneer = (table + struct.unpack("<i", lib.read(table + 4, 4))[0]) & 0xFFFFFFFF  # sel's
    code = lib.read(veneer, i386.IPLT_STUB_SIZE)
    word = i386.indirect_jump_target(code, veneer)
    assert code == i386.iplt_stub(veneer, word)
    assert word in lib.irelative_relocations()
    stock = pb.obj("vers.c", True, directory="stock")
    pb.cc("-shared", "-Wl,-soname=libvers.so.1", "-o", "stock/libvers.so.1", stock,
          f"-Wl,--version-script={vscript}")
    prog = pb.program("vers_main.c", "vers_main", ["libvers.so.1"], ["libvers.so.1.vec"])
    assert pb.same_as_stock(prog).stdout == "sel 2001 ver 30 plain 5\n"
    assert "sel" not in pb.relocations(prog)
    recovered = pb.tool("recovervec", "libvers.so.1").stdout
    assert recovered == (tmp_path / "libvers.so.1.vec").read_text()


def test_constructor_calls_through_unbound_slots(pb):
    """librtearly's constructor calls librta before librta's binder ran:
    its calls reach unbound slots and bind them through the lazy
    trampoline (a variadic call with doubles, stack arguments, a struct
    returned in memory)."""
    vec = pb.expvec("rt_vlib.c", "librtv.so.1")
    pb.plain_lib("rt_early.c", "librtearly.so.1")
    asm = pb.impvec_lib("rt_alib.c", "librta.so.1", ["librtv.so.1", "librtearly.so.1"], [vec],
                        ["-pthread"])
    assert ".init_array" in asm and '"v_sumd":' in asm
    prog = pb.program("rt_alib_main.c", "alib_main", ["librta.so.1", "librtv.so.1"], [vec])
    lines = pb.same_as_stock(prog).stdout.splitlines()
    assert lines[0].startswith("early ctor: ") and lines[-1].startswith("main: v_add(2, 40) = 42")


def test_threads_call_through_the_slots(pb):
    """16 threads x 100000 calls through a program's slots."""
    vec = pb.expvec("rt_vlib.c", "librtv.so.1")
    prog = pb.program("rt_threads_main.c", "threads_main", ["librtv.so.1"], [vec], ["-pthread"])
    lines = pb.same_as_stock(prog).stdout.splitlines()
    assert lines[16].startswith(f"total {16 * 200000} ")


def test_binder_reached_before_the_program_is_relocated_exits_127(pb):
    """A slot called before ld.so relocated the program (from a library's
    IFUNC resolver, through a function the program exports): the binder
    finds the layout's GOT word still 0 and stops the program with exit
    127 and one line, never jumping anywhere."""
    vec = pb.expvec("rt_vlib.c", "librtv.so.1")
    pb.plain_lib("rt_ifunchook.c", "librtifunchook.so.1")
    prog = pb.program("rt_ifunchook_main.c", "hook_main", ["librtifunchook.so.1", "librtv.so.1"],
                      [vec], ldflags=["-rdynamic"])
    assert '"v_mul":' in (pb.path / "hook_main.s").read_text()
    result = pb.run(prog)
    assert (result.returncode, result.stdout, result.stderr) == \
        (127, "", "elfvector: hook_main: cannot bind the import vector\n")


def test_i386_cf_protection(tmp_path):
    """i386 code built with -fcf-protection (endbr32) and IBT PLTs
    (.plt.sec, -z ibtplt); the import vector carries no IBT mark, so the
    link editor leaves IBT off in the vectored program, which calls
    through its slots (Debian's crt files carry none either)."""
    pb = PortBuild(I386, tmp_path)
    vec = foo_vector(pb, ["-fcf-protection=full"], ["-Wl,-z,ibtplt"])
    prog = pb.program("testmain.c", "testmain", ["foo.so.5"], [vec], ["-fcf-protection=full"],
                      ["-Wl,-z,now", "-Wl,-z,ibtplt"])
    for program in (prog, "testmain.stock"):
        assert ".plt.sec" in run(["readelf", "-SW", pb.path / program], pb.path).stdout
    assert pb.same_as_stock(prog).returncode == 7
    assert_calls_through_the_vector(pb, prog)


# -- bad input ------------------------------------------------------------------------

def test_errors_are_one_line_naming_the_users_file(pb, tmp_path):
    gcc = pb.port.cross_gcc
    (pb.path / "t.c").write_text("int t(int x) { return x + 1; }\n")
    pb.cc("-fno-pic", "-c", "t.c", "-o", "t.o")     # no relocation: -nostdlib links it
    # the trial link fails: named as the output, never as expvec's trial.so
    failed = pb.tool("expvec", "--vec", "t.vec", ".", "", "", gcc, "-shared", "-nostdlib",
                     "-Wl,--oformat=binary", "-Wl,-soname=libt.so", "-o", "libt.so", "t.o",
                     check=False)
    assert failed.returncode == 1 and failed.stderr.count("\n") == 1
    assert failed.stderr.startswith("expvec: libt.so: ")
    assert "trial" not in failed.stderr.replace("trial link failed", "") and \
        "expvec-" not in failed.stderr
    # a cross compiler without its assembler: the error names what is missing
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / f"{pb.port.name}-nowhere-gcc"
    wrapper.write_text(f'#!/bin/sh\nexec {gcc} "$@"\n')
    wrapper.chmod(0o755)
    missing = pb.tool("expvec", "--vec", "t.vec", ".", "", "", str(wrapper), "-shared",
                      "-Wl,-soname=libt.so", "-o", "libt.so", "t.o", check=False)
    assert (missing.returncode, missing.stderr) == (
        1, f"expvec: libt.so: assembling the export vector needs {bindir}/{pb.port.name}-"
           f"nowhere-as (GNU as for {pb.port.name}), which is not on PATH\n")
    assert not (pb.path / "libt.so").exists()
    # a .vec whose layout the library does not export
    vec = foo_vector(pb)
    text = (pb.path / vec).read_text().replace("foo_mul\n", "")
    (pb.path / "wrong.vec").write_text(text)
    main = pb.obj("testmain.c", False)
    wrong = pb.tool("impvec", "--link", "", "wrong.vec", gcc, "-o", "testmain", main,
                    "foo.so.5", check=False)
    assert wrong.returncode == 1 and wrong.stderr.count("\n") == 1
    assert re.fullmatch(r"impvec: \S*foo\.so\.5: does not export __V_foo_so_5__8_\w+: .*\n",
                        wrong.stderr)
    assert "impvec-" not in wrong.stderr


# -- AArch64: what qemu-user does not check --------------------------------------------

def objdump(path):
    return run(["aarch64-linux-gnu-objdump", "-d", path], ".").stdout


def test_aarch64_binder_flushes_the_caches(tmp_path):
    """The binder's cache maintenance and barriers (qemu-user needs none, a
    real core does): dc cvau over the written pages, dsb ish, then
    mprotect and mremap, then ic ivau over the slots' final address,
    dsb ish, isb, in that order, in the linked program.  Not BTI-marked,
    the pages are mapped read+exec without PROT_BTI."""
    require_programs("aarch64-linux-gnu-objdump")
    pb = PortBuild(AARCH64, tmp_path)
    vec = foo_vector(pb)
    prog = pb.program("testmain.c", "testmain", ["foo.so.5"], [vec])
    text = objdump(pb.path / prog)
    ops = [m.group(1) for m in re.finditer(r"\t(dc\tcvau|dsb\tish|ic\tivau|isb|svc)\b", text)]
    assert ops[ops.index("dc\tcvau"):] == \
        ["dc\tcvau", "dsb\tish", "svc", "svc", "ic\tivau", "dsb\tish", "isb", "svc", "svc"]
    asm = (pb.path / "testmain.s").read_text()
    assert "mov x2, #5\n\tmov x8, #226" in asm and "0xc0000000" not in asm


BTI_LIB = """#include "foo.h"
static int at_start;
__attribute__((constructor)) static void start(void) { at_start = foo_add(40, 2); }
int bti_run(void)
{
    int (*volatile add)(int, int) = foo_add;    /* an indirect call into an exported slot */
    return at_start * 1000 + add(3, 4) * 10 + foo_twice(1);
}
"""
BTI_MAIN = """#include <stdio.h>
int bti_run(void);
int main(void) { printf("bti %d\\n", bti_run()); return 0; }
"""


def test_aarch64_bti_marked_library(tmp_path):
    """Built for BTI (-mbranch-protection=standard; without crt files,
    which Debian's cross toolchain does not mark), foo.so.5 and a library
    calling it through an import vector stay BTI-marked; the binder
    (called from .init_array), the slots (one called through a pointer)
    are landing pads, and the rewritten slot pages keep PROT_BTI.
    qemu-aarch64 enforces BTI on a marked library's pages."""
    pb = PortBuild(AARCH64, tmp_path)
    gcc, bti = AARCH64.cross_gcc, ["-mbranch-protection=standard", "-fPIC", "-O2"]
    (pb.path / "bti.c").write_text(BTI_LIB)
    (pb.path / "main.c").write_text(BTI_MAIN)
    for directory in (".", "stock"):
        pb.cc(*bti, "-c", TESTDATA / "foo.c", "-o", f"{directory}/foo.o")
        pb.cc(*bti, "-c", "bti.c", "-o", f"{directory}/bti.o")
    pb.tool("expvec", "--vec", "foo.vec", "@" + str(TESTDATA / "foo.order"), "",
            str(TESTDATA / "foo.vscript"), gcc, "-shared", "-nostartfiles",
            "-Wl,-soname=foo.so.5", "-o", "foo.so.5", "foo.o")
    pb.tool("impvec", "--link", "--asm", "libbti.s", "", "foo.vec", gcc, "-shared",
            "-nostartfiles", "-Wl,-soname=libbti.so", "-o", "libbti.so", "bti.o", "foo.so.5")
    pb.cc("-shared", "-nostartfiles", "-Wl,-soname=foo.so.5", "-o", "stock/foo.so.5",
          "stock/foo.o")
    pb.cc("-shared", "-nostartfiles", "-Wl,-soname=libbti.so", "-o", "stock/libbti.so",
          "stock/bti.o", "stock/foo.so.5")
    for lib in ("foo.so.5", "libbti.so", "stock/libbti.so"):
        assert "AArch64 feature: BTI" in run(["readelf", "-n", pb.path / lib], ".").stdout
    asm = (pb.path / "libbti.s").read_text()
    assert '"foo_add":' in asm and "mov x2, #21\n\tmov x8, #226" in asm   # PROT_BTI|R|X
    pb.cc("-c", "main.c", "-o", "main.o")
    pb.cc("-o", "main", "main.o", "libbti.so", "-Wl,-rpath-link=.")
    pb.cc("-o", "main.stock", "main.o", "stock/libbti.so", "-Wl,-rpath-link=stock")
    assert pb.same_as_stock("main").stdout == f"bti {42 * 1000 + 70 + 2}\n"
    # foo_add's address is taken: its slot is exported, the function's
    # canonical address, which libbti's own GOT word names
    assert '\t.globl "foo_add"\n\t.type' in asm and '"foo_twice":' in asm
    assert {n for n in pb.relocations("libbti.so") if n.startswith("foo_")} == {"foo_add"}


SLOT_PROBE = """#include <dlfcn.h>
#include <stdio.h>
#include "foo.h"
/* foo_add's slot as the binder wrote it: its address, where foo.so.5
   defines foo_add, and the slot's first four instruction words */
int main(void)
{
    const unsigned *slot = (const unsigned *)(void *)foo_add;
    void *lib = dlopen("foo.so.5", RTLD_NOW | RTLD_NOLOAD);
    printf("%d %lx %lx %08x %08x %08x %08x\\n", foo_add(2, 3), (unsigned long)slot,
           (unsigned long)dlsym(lib, "foo_add"), slot[0], slot[1], slot[2], slot[3]);
    return 0;
}
"""


@pytest.mark.parametrize("base", [0x2000000, None], ids=["near", "far"])
def test_aarch64_slot_near_or_far(tmp_path, base):
    """A vectool group with a non-PIE program (its slots near 0x400000):
    foo.so.5 at an addrfile base of 32 MiB is within b's +-128 MiB, and
    the binder writes foo_add's slot as ``bti c; b foo_add``; at a base
    of the default region (0x3000000000 and up) it writes the far form
    through x16.  The program behaves as stock either way, and a probe
    prints its own slot as bound."""
    from elfvector.arch.aarch64 import link
    pb = PortBuild(AARCH64, tmp_path)
    gcc = AARCH64.cross_gcc
    (pb.path / "addrs").write_text(f"{base:#x} foo.so.5\n" if base else "")
    pb.tool("vectool", "--mode=lib", f"--addrfile={pb.path / 'addrs'}",
            f"--rpathdir={pb.path / 'rp'}", gcc, "-shared", "-Wl,-soname=foo.so.5",
            f"-Wl,--version-script={TESTDATA / 'foo.vscript'}", "-o", "foo.so.5",
            pb.obj("foo.c", True))
    pb.cc("-shared", "-Wl,-soname=foo.so.5", "-o", "stock/foo.so.5",
          pb.obj("foo.c", True, directory="stock"))
    (pb.path / "probe.c").write_text(SLOT_PROBE)
    for name, source in (("testmain", TESTDATA / "testmain.c"), ("probe", "probe.c")):
        pb.cc("-fno-pie", "-O2", "-c", source, "-o", f"{name}.o")
        pb.tool("vectool", "--mode=prog", f"--rpathdir={pb.path / 'rp'}", gcc, "-no-pie",
                "-o", name, f"{name}.o", "foo.so.5")
    pb.cc("-no-pie", "-o", "testmain.stock", "testmain.o", "stock/foo.so.5")
    assert pb.same_as_stock("testmain").returncode == 7
    assert_calls_through_the_vector(pb, "testmain")
    probe = pb.run("probe")
    assert probe.returncode == 0 and probe.stderr == ""
    result, slot, target, *words = probe.stdout.split()
    slot, target = int(slot, 16), int(target, 16)
    code = b"".join(int(word, 16).to_bytes(4, "little") for word in words)
    assert result == "5" and slot < 0x1000000
    if base:
        assert base <= target < base + 0x200000            # loaded at its base
        assert code == link.near_slot_code(slot, target)
        assert code[4:8] != link.FAR_SLOT_CODE[4:8]
    else:
        assert target >= 0x3000000000 and link.near_slot_code(slot, target) is None
        assert code == link.FAR_SLOT_CODE
