"""retrovec and retroimp on files built the usual way.

Every rewritten file is checked twice: structurally (readelf without
warnings, eu-elflint no worse than the input, still runs after strip and
objcopy) and by running it against the original's behaviour.
"""

import re
import shutil
from pathlib import Path

import pytest

from conftest import run
from test_seed_example import MODES

SLOTS = ["foo_add", "foo_mul", "foo_hello", "foo_name", "foo_sum", "foo_len", "foo_twice",
         "foo_self", "foo_hypot2"]


def write_vec(path, name, slots):
    path.write_text("\n".join([name] + slots) + "\n")
    return str(path)


@pytest.fixture
def vectored_foo(build):
    """foo.so.5 built normally (stock/), and retrovec'd into the build dir."""
    stock = build.stock_lib("foo.c", "foo.so.5")
    vec = write_vec(build.path / "foo.vec", "__V_foo_so_5", SLOTS)
    build.tool("retrovec", "-o", "foo.so.5", vec, stock / "foo.so.5")
    return vec, stock


def elflint(path):
    proc = run(["eu-elflint", "--gnu-ld", path], cwd=".", check=False)
    return sorted(set(proc.stdout.splitlines()) - {"No errors"})


def assert_sound(path, original):
    """readelf is silent, eu-elflint finds nothing new."""
    readelf = run(["readelf", "-a", "-W", path], cwd=".", check=False)
    assert readelf.returncode == 0
    assert "Warning" not in readelf.stderr and "Error" not in readelf.stderr, readelf.stderr
    new = [line for line in elflint(path) if line not in elflint(original)]
    assert not new, new


def lookups(build, program, libdir, bind_now):
    """Symbol lookups ld.so made over the whole run (LD_DEBUG=statistics)."""
    env = {"LD_DEBUG": "statistics", "LD_LIBRARY_PATH": str(libdir)}
    if bind_now:
        env["LD_BIND_NOW"] = "1"
    err = build.run(program, env=env).stderr
    return int(re.findall(r"final number of relocations:\s*(\d+)", err)[-1])


def jump_slots(build, path):
    relocs = run(["readelf", "-rW", path], build.path).stdout
    return len(re.findall(r"R_X86_64_JUMP_SLOT .* foo_", relocs))


def test_retrovec_library_serves_impvec_programs(build, vectored_foo):
    vec, stock = vectored_foo
    assert_sound(build.path / "foo.so.5", stock / "foo.so.5")
    prog = build.program("testmain.c", "testmain", ["foo.so.5"], [vec])
    assert same_as_stock(build, prog, str(prog) + ".stock", stock, ["x"]).returncode == 7


def test_retrovec_library_still_serves_old_programs_after_strip(build, vectored_foo):
    vec, stock = vectored_foo
    build.gcc("-o", "old", build.src("testmain.c"), "stock/foo.so.5")
    expected = build.run("./old", libdir=stock)
    for tool in (["strip", "-o", "s.so", "foo.so.5"], ["objcopy", "s.so", "o.so"]):
        run(tool, build.path)
    shutil.copy(build.path / "o.so", build.path / "foo.so.5")
    got = build.run("./old")
    assert (got.returncode, got.stdout, got.stderr) == \
        (expected.returncode, expected.stdout, expected.stderr)
    assert "__V_foo_so_5" in run(["readelf", "--dyn-syms", "-W", "foo.so.5"], build.path).stdout


def vers_library(build):
    return build.stock_lib("vers.c", "libvers.so.1",
                           ldflags=[f"-Wl,--version-script={build.src('vers.vscript')}"])


def same_as_stock(build, program, stock_program, stock_dir, args=(), env=None):
    """Run both; exit status, stdout and stderr must be equal.  Returns the run."""
    got = build.run(program, *args, env=env)
    expected = build.run(stock_program, *args, libdir=stock_dir, env=env)
    assert (got.returncode, got.stdout, got.stderr) == (
        expected.returncode, expected.stdout, expected.stderr)
    return got


def test_retrovec_ifunc_and_versions(build):
    stock = vers_library(build)
    vec = write_vec(build.path / "vers.vec", "__V_libvers_so_1",
                    ["sel@@V1", "ver@V1", "ver@@V2", "plain"])
    build.tool("retrovec", "-o", "libvers.so.1", vec, stock / "libvers.so.1")
    assert_sound(build.path / "libvers.so.1", stock / "libvers.so.1")
    prog = build.program("vers_main.c", "vers_main", ["libvers.so.1"], [vec])
    got = same_as_stock(build, prog, str(prog) + ".stock", stock)
    assert got.stdout == "sel 2001 ver 30 plain 5\n"
    old = build.program("vers_old.c", "vers_old", ["libvers.so.1"])
    build.tool("retroimp", "-o", "vers_old.vec", "", vec, old.name + ".stock")
    got = same_as_stock(build, "./vers_old.vec", "./vers_old.stock", stock)
    assert got.stdout == "old ver -3 sel 2002\n"
    # Both the IFUNC and the old version ver@V1 are bound through the vector.
    assert jump_slots_named(build, "vers_old.stock", "(sel|ver)@") == 2
    assert jump_slots_named(build, "vers_old.vec", "(sel|ver)@") == 0


def test_plain_names_mean_the_default_version(build):
    """The seed's .vec lists plain names: one means the library's default
    definition (ver@@V2 here).  retroimp binds an import of ver@V2 to its
    slot, keeps ver@V1 by name saying which version the slot holds, and a
    library whose default version of ver changed is refused at start."""
    stock = vers_library(build)
    vec = write_vec(build.path / "vers.vec", "__V_libvers_so_1", ["sel", "ver", "plain"])
    build.tool("retrovec", "-o", "libvers.so.1", vec, stock / "libvers.so.1")
    for source in ("vers_main", "vers_old"):
        build.gcc("-O2", "-o", source, build.src(f"{source}.c"), "stock/libvers.so.1")
    build.tool("retroimp", "-o", "vers_main.vec", "", vec, "vers_main")
    assert same_as_stock(build, "./vers_main.vec", "./vers_main", stock).stdout == \
        "sel 2001 ver 30 plain 5\n"
    assert jump_slots_named(build, "vers_main", "(sel|ver|plain)@") == 3
    assert jump_slots_named(build, "vers_main.vec", "(sel|ver|plain)@") == 0
    old = build.tool("retroimp", "-v", "-o", "vers_old.vec", "", vec, "vers_old")
    assert "retroimp: ver: kept by name (not in the vector at this version: asks for " \
           "ver@V1, the slot holds ver@@V2)\n" in old.stderr
    assert same_as_stock(build, "./vers_old.vec", "./vers_old", stock).stdout == \
        "old ver -3 sel 2002\n"
    assert jump_slots_named(build, "vers_old.vec", "ver@V1") == 1
    assert jump_slots_named(build, "vers_old.vec", "sel@") == 0
    # The next release makes ver@@V3 the default: the same plain .vec now
    # holds another function in slot 1, and the layout symbol says so.
    source = (build.path / "vers3.c")
    source.write_text(Path(build.src("vers.c")).read_text().replace(
        '__asm__(".symver ver_v2, ver@@V2");',
        '__asm__(".symver ver_v2, ver@V2");\nint ver_v3(int x) { return x * 1000; }\n'
        '__asm__(".symver ver_v3, ver@@V3");'))
    (build.path / "vers3.vscript").write_text(
        Path(build.src("vers.vscript")).read_text() + "V3 { global: ver; } V2;\n")
    new = build.stock_lib(str(source), "libvers.so.1", directory="v3",
                          ldflags=["-Wl,--version-script=vers3.vscript"])
    (new / "vec").mkdir()
    build.tool("retrovec", "-o", "v3/vec/libvers.so.1", vec, new / "libvers.so.1")
    refused = build.run("./vers_main.vec", libdir=new / "vec")
    assert (refused.returncode, refused.stdout) == (127, "")
    assert "undefined symbol: __V_libvers_so_1__3_" in refused.stderr


@pytest.mark.parametrize("mode", sorted(MODES))
def test_retroimp_program(build, vectored_foo, mode):
    vec, stock = vectored_foo
    cflags, ldflags = MODES[mode]
    build.gcc("-O2", *cflags, "-c", build.src("testmain.c"), "-o", "testmain.o")
    build.gcc(*cflags, *ldflags, "-o", "testmain", "testmain.o", "stock/foo.so.5")
    build.tool("retroimp", "-o", "testmain.vec", "", vec, "testmain")
    assert_sound(build.path / "testmain.vec", build.path / "testmain")
    expected = build.run("./testmain", "y", libdir=stock)
    got = build.run("./testmain.vec", "y")
    assert (got.stdout, got.stderr, got.returncode) == (
        expected.stdout, expected.stderr, expected.returncode)
    assert "same &foo_add: yes" in got.stdout
    # Every vectored PLT entry loses its lookup; the vector costs one.
    vectored = jump_slots(build, "testmain") - jump_slots(build, "testmain.vec")
    assert vectored >= 1 if mode != "pie-noplt" else vectored == 0
    for bind_now in (False, True):
        before = lookups(build, "./testmain", stock, bind_now)
        after = lookups(build, "./testmain.vec", build.path, bind_now)
        assert before - after == (vectored - 1 if vectored else 0), (bind_now, before, after)


def test_retroimp_shared_library(build, vectored_foo):
    vec, stock = vectored_foo
    build.gcc("-fPIC", "-O2", "-c", build.src("bar.c"), "-o", "bar.o")
    build.gcc("-shared", "-Wl,-soname=libbar.so.1", "-o", "stock/libbar.so.1", "bar.o",
              "stock/foo.so.5")
    build.gcc("-o", "bar_main", build.src("bar_main.c"), "stock/libbar.so.1",
              "-Wl,-rpath-link,stock")
    expected = build.run("./bar_main", libdir=stock)
    build.tool("retroimp", "-o", "libbar.so.1", "", vec, "stock/libbar.so.1")
    assert_sound(build.path / "libbar.so.1", stock / "libbar.so.1")
    got = build.run("./bar_main")
    assert (got.returncode, got.stdout, got.stderr) == \
        (expected.returncode, expected.stdout, expected.stderr)
    assert jump_slots(build, "stock/libbar.so.1") == 5
    assert jump_slots(build, "libbar.so.1") == 0


def test_rewritten_files_survive_strip_and_objcopy(build, vectored_foo):
    vec, stock = vectored_foo
    build.gcc("-o", "testmain", build.src("testmain.c"), "stock/foo.so.5")
    build.tool("retroimp", "-o", "t.vec", "", vec, "testmain")
    run(["strip", "-o", "t.strip", "t.vec"], build.path)
    run(["objcopy", "t.strip", "t.copy"], build.path)
    expected = build.run("./testmain", libdir=stock)
    for name in ("t.strip", "t.copy"):
        got = build.run(f"./{name}")
        assert (got.returncode, got.stdout, got.stderr) == \
            (expected.returncode, expected.stdout, expected.stderr)


def test_twice_is_an_error_and_inputs_are_untouched(build, vectored_foo):
    vec, stock = vectored_foo
    build.gcc("-o", "testmain", build.src("testmain.c"), "stock/foo.so.5")
    original = (build.path / "testmain").read_bytes()
    build.tool("retroimp", "-o", "t.vec", "", vec, "testmain")
    assert (build.path / "testmain").read_bytes() == original
    again = build.tool("retroimp", "-o", "t2", "", vec, "t.vec", check=False)
    assert again.returncode == 1 and "already" in again.stderr
    assert not (build.path / "t2").exists()
    twice = build.tool("retrovec", "-o", "x.so", vec, "foo.so.5", check=False)
    assert twice.returncode == 1 and "already has an export vector" in twice.stderr


def test_outputs_keep_the_mode_of_their_input(build):
    """A 0750 library or program gives a 0750 output, whatever the umask."""
    stock = build.stock_lib("foo.c", "foo.so.5")
    vec = write_vec(build.path / "foo.vec", "__V_foo_so_5", SLOTS)
    build.gcc("-o", "testmain", build.src("testmain.c"), "stock/foo.so.5")
    for path in (stock / "foo.so.5", build.path / "testmain"):
        path.chmod(0o750)
    build.tool("retrovec", "-o", "foo.so.5", vec, stock / "foo.so.5")
    build.tool("retroimp", "-o", "t.vec", "", vec, "testmain")
    assert [(build.path / n).stat().st_mode & 0o7777 for n in ("foo.so.5", "t.vec")] == \
        [0o750, 0o750]


def test_retroimp_against_unvectored_library_names_it(build):
    stock = build.stock_lib("foo.c", "foo.so.5")
    vec = write_vec(build.path / "foo.vec", "__V_foo_so_5", SLOTS)
    build.gcc("-o", "testmain", build.src("testmain.c"), "stock/foo.so.5")
    result = build.tool("retroimp", "-o", "t", "", vec, "testmain",
                        env={"LD_LIBRARY_PATH": str(stock)}, check=False)
    assert result.returncode == 1
    assert "foo.so.5" in result.stderr and "does not export __V_foo_so_5__9_" in result.stderr


@pytest.mark.parametrize("body,reason", [
    (b"not an elf file\n", "not an ELF file"),
    (b"\x7fELF\x02\x01\x01", "truncated"),
])
def test_bad_input_files(build, body, reason):
    (build.path / "bad").write_bytes(body)
    vec = write_vec(build.path / "foo.vec", "__V_foo_so_5", SLOTS)
    for cmd in (["retrovec", "-o", "out", vec, "bad"], ["retroimp", "-o", "out", "", vec, "bad"]):
        result = build.tool(*cmd, check=False)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and reason in result.stderr and "bad" in result.stderr
        assert not (build.path / "out").exists()


def test_static_program_and_wrong_architecture(build, vectored_foo):
    vec, _ = vectored_foo
    build.gcc("-static", "-o", "static", build.src("vers_main.c"), build.src("vers.c"))
    result = build.tool("retroimp", "-o", "out", "", vec, "static", check=False)
    assert result.returncode == 1 and "statically linked" in result.stderr
    arm = bytearray((build.path / "foo.so.5").read_bytes())
    arm[18:20] = (183).to_bytes(2, "little")          # e_machine = EM_AARCH64
    (build.path / "arm.so").write_bytes(arm)
    for cmd in (["retrovec", "-o", "out", vec, "arm.so"], ["retroimp", "-o", "out", "", vec, "arm.so"]):
        result = build.tool(*cmd, check=False)
        assert result.returncode == 1 and result.stderr.count("\n") == 1
        assert "arm.so: " in result.stderr and "AArch64" in result.stderr
    assert not (build.path / "out").exists()


def retro_library(build, source, soname):
    """``source`` built as ``stock/soname``; its vector (every function) and
    the retrovec'd library in the build directory.  Returns the .vec path."""
    stock = build.stock_lib(source, soname)
    vec = build.path / f"{soname}.vec"
    build.tool("vecstat", "--emit-vec", stock / soname, "--all", "-o", vec, stock / soname)
    build.tool("retrovec", "-o", soname, vec, stock / soname)
    return str(vec)


@pytest.mark.parametrize("mode", ["pie", "pie-now", "nopie"])
def test_retroimp_early_calls_from_ifunc_preinit_and_init(build, mode):
    """The program's IFUNC resolver, .preinit_array and .init_array call
    vectored functions before main; retroimp's bindings are in place by then."""
    vec = retro_library(build, "rt_vlib.c", "librtv.so.1")
    flags = {"pie": [], "pie-now": ["-Wl,-z,now"], "nopie": ["-fno-pie", "-no-pie"]}[mode]
    build.gcc("-O2", *flags, "-o", "pm", build.src("rt_preinit_main.c"), "stock/librtv.so.1",
              "-Wl,--no-as-needed")
    build.tool("retroimp", "-o", "pm.vec", "", vec, "pm")
    expected = build.run("./pm", "arg", libdir=build.path / "stock")
    got = build.run("./pm.vec", "arg")
    assert (got.stdout, got.stderr, got.returncode) == (
        expected.stdout, expected.stderr, expected.returncode)
    assert expected.returncode == 5 and "preinit: argc 2" in got.stdout
    assert jump_slots_named(build, "pm.vec", "v_") == 0


def test_retroimp_threads(build):
    vec = retro_library(build, "rt_vlib.c", "librtv.so.1")
    build.gcc("-O2", "-pthread", "-o", "tm", build.src("rt_threads_main.c"),
              "stock/librtv.so.1", "-Wl,--no-as-needed")
    build.tool("retroimp", "-o", "tm.vec", "", vec, "tm")
    probe = build.path / "probe"
    expected = build.run("./tm", libdir=build.path / "stock")
    got = build.run("./tm.vec", env={"RT_PROBE": str(probe)})
    assert (got.returncode, got.stdout, got.stderr) == \
        (expected.returncode, expected.stdout, expected.stderr)
    assert expected.returncode == 0 and "calls 1601600" in got.stdout
    assert jump_slots_named(build, "tm", "v_") == 3          # v_add, v_mul, v_calls
    assert jump_slots_named(build, "tm.vec", "v_") == 0
    assert probe.read_text().splitlines()[-1].endswith(" rwx 0")   # W^X held


def test_retroimp_keeps_interposable_functions_bound_by_name(build):
    """malloc and pthread_* are in the .vec files, yet stay bound by name
    (the default exclusions), so an LD_PRELOAD malloc wrapper still sees
    every call of the retroimp'd program, as of the stock one."""
    stock = build.stock_lib("rt_alloc.c", "librtalloc.so.1")
    vec = write_vec(build.path / "alloc.vec", "__V_librtalloc_so_1",
                    ["malloc", "ra_dup", "ra_served"])
    build.tool("retrovec", "-o", "librtalloc.so.1", vec, stock / "librtalloc.so.1")
    libc = write_vec(build.path / "libc.vec", "__V_libc_so_6",
                     ["pthread_create", "pthread_join", "printf", "free"])
    build.tool("retrovec", "-o", "libc.so.6", libc, "/lib/x86_64-linux-gnu/libc.so.6")
    build.gcc("-O2", "-pthread", "-o", "am", build.src("rt_malloc_main.c"),
              "stock/librtalloc.so.1", "-Wl,--no-as-needed")
    build.gcc("-fPIC", "-O2", "-shared", "-o", "wrap.so", build.src("rt_mallocwrap.c"))
    kept = build.tool("retroimp", "-v", "-o", "am.vec", "", vec, libc, "am").stderr
    assert "retroimp: malloc: kept by name (excluded)\n" in kept
    assert "retroimp: free: kept by name (excluded)\n" in kept
    assert jump_slots_named(build, "am.vec", r"(malloc|free)\b") == 2
    assert jump_slots_named(build, "am.vec", r"(ra_dup|ra_served|printf)\b") == 0
    wrapper = {"LD_PRELOAD": str(build.path / "wrap.so")}
    got = same_as_stock(build, "./am.vec", "./am", stock, env=wrapper)
    check = sum(range(100)) + sum(ord("vector"[i % 6]) for i in range(50))
    assert (got.stdout, got.stderr) == (f"check {check} served 150\n",
                                        "rt_mallocwrap: 150 calls of malloc(12345)\n")
    build.gcc("-O2", "-pthread", "-o", "tm", build.src("rt_threads_main.c"),
              build.src("rt_vlib.c"))
    kept = build.tool("retroimp", "-v", "-o", "tm.vec", "", libc, "tm").stderr
    assert "retroimp: pthread_create: kept by name (excluded)\n" in kept
    assert jump_slots_named(build, "tm.vec", "pthread_(create|join)@") == 2
    assert jump_slots_named(build, "tm.vec", "printf@") == 0
    assert same_as_stock(build, "./tm.vec", "./tm", "/nonexistent").returncode == 0


def test_retroimp_forty_vectors(build):
    """No limit of 31 vectors: one program, 40 retrovec'd libraries."""
    from concurrent.futures import ThreadPoolExecutor

    def make(n):
        source = build.path / f"rt_many_{n:02d}.c"
        source.write_text(f'#define RT_N {n}\n#include "rt_many_lib.c"\n')
        return retro_library(build, str(source), f"librtm{n:02d}.so")

    with ThreadPoolExecutor(max_workers=4) as pool:
        vecs = list(pool.map(make, range(40)))
    libs = [f"stock/librtm{n:02d}.so" for n in range(40)]
    build.gcc("-O2", "-o", "many", build.src("rt_many_main.c"), *libs, "-Wl,--no-as-needed")
    build.tool("retroimp", "-o", "many.vec", "", *vecs, "many")
    expected = build.run("./many", libdir=build.path / "stock")
    got = build.run("./many.vec")
    assert (got.returncode, got.stdout, got.stderr) == \
        (expected.returncode, expected.stdout, expected.stderr)
    assert "same &m_add_39: yes" in got.stdout
    relocs = run(["readelf", "-rW", "many.vec"], build.path).stdout
    assert len(re.findall(r"R_X86_64_GLOB_DAT .* __V_librtm\d\d_so__", relocs)) == 40


def jump_slots_named(build, path, prefix):
    relocs = run(["readelf", "-rW", path], build.path).stdout
    return len(re.findall(rf"R_X86_64_JUMP_SLOT .* {prefix}", relocs))


BIG_BSS = """\
static char big[3UL << 30] __attribute__((used));
int big_f(int x) { return x + 1; }
"""


def test_retrovec_refuses_what_its_slots_cannot_serve(build):
    """A slot holds a 32-bit offset from the table, which follows every
    segment: a library whose .bss makes it span 3 GiB is refused with the
    reason, not packed into a wrong offset.  A PIE is no shared library."""
    (build.path / "big.c").write_text(BIG_BSS)
    build.gcc("-fPIC", "-shared", "-O2", "-Wl,-soname=libbig.so.1", "-o", "libbig.so.1", "big.c")
    big = write_vec(build.path / "big.vec", "__V_libbig_so_1", ["big_f"])
    result = build.tool("retrovec", "-o", "out.so", big, "libbig.so.1", check=False)
    assert result.returncode == 1 and result.stderr.startswith("retrovec: libbig.so.1: big_f at ")
    assert "3.0 GiB from the vector table" in result.stderr and result.stderr.count("\n") == 1
    (build.path / "pie.c").write_text("int pie_f(int x) { return x; }\n"
                                      "int main(void) { return 0; }\n")
    build.gcc("-pie", "-fPIE", "-rdynamic", "-o", "pie", "pie.c")
    vec = write_vec(build.path / "pie.vec", "__V_pie", ["pie_f"])
    result = build.tool("retrovec", "-o", "out.so", vec, "pie", check=False)
    assert (result.returncode, result.stderr) == \
        (1, "retrovec: pie: not a shared library (a position-independent executable)\n")
    assert not (build.path / "out.so").exists()
