"""Pre-bound slots (issue 9).

vectool writes a group's non-PIE programs and libraries with their slots
already bound for the libraries' fixed bases.  At start-up each binder
checks, per vector, that the importer and the table are where they were
bound and that the table carries the seal it was bound against: then it
writes nothing.  When a library is not at its base (a preloaded library
took its place, two libraries were given one base) or was rebuilt at its
base with its functions moved, the slots of that vector are bound anew,
and the program behaves as the stock build of the same sources.
"""

import re

import pytest

from conftest import run
from elfvector.elfimage import ElfImage, read_elf_file
from elfvector.arch.x86_64 import (BIND_IFUNC, NOT_BOUND, SEAL_SIZE, SLOT_SIZE,
                                   import_layout, table_seal)
from test_vectool import Group, load_address

MAIN = r"""
#include <stdio.h>
#include "foo.h"
int bar_poly(int x);
void bar_greet(void);

int main(int argc, char **argv)
{
    int (*add)(int, int) = foo_add;             /* pointer equality */
    bar_greet();
    foo_hello(argc > 1 ? argv[1] : "world");
    printf("add %d mul %d twice %d poly %d\n", foo_add(2, 3), foo_mul(4, 5), foo_twice(21),
           bar_poly(3));
    printf("sum %ld len %zu name %s hypot2 %.2f\n", foo_sum(3, 1L, 2L, 3L), foo_len("vector"),
           foo_name(), foo_hypot2(3.0, 4.0));
    printf("same &foo_add: %s\n", add == foo_self() ? "yes" : "NO");
    return foo_add(0, 7);
}
"""

BAZ = "int baz_triple(int x) { return 3 * x; }\n"
BAZ_MAIN = r"""
#include <stdio.h>
#include "foo.h"
int baz_triple(int x);
int main(void)
{
    printf("triple %d add %d len %zu\n", baz_triple(14), foo_add(40, 2), foo_len("abc"));
    return baz_triple(1);
}
"""


def slot_opcodes(path):
    """The first byte of every slot in ``path``'s file: e8 unbound, e9 or ff bound."""
    image = ElfImage(read_elf_file(str(path)), str(path))
    _, section = image.section(".elfvector.slots")
    data = image.bytes_at(section.offset, section.size)
    return {data[i] for i in range(0, len(data), SLOT_SIZE)}


def table_and_seal(path, vector):
    """(address, seal) of ``vector``'s export table in the library at
    ``path``; the seal must be the table's (:func:`table_seal`)."""
    image = ElfImage(read_elf_file(str(path)), str(path))
    (table,) = [s for s, name in zip(image.dynsyms(), image.symbol_names())
                if name == vector and s.defined]
    seal = image.read(table.value - SEAL_SIZE, SEAL_SIZE)
    assert seal == table_seal(image.read(table.value, table.size))
    return table.value, seal


def slot_page_writes(build, program, *args, env):
    """(the run, {"copy": mremaps, "in place": mprotects to read+write}): the
    binder writes the slot pages of an object that binds slots once, either
    way (nothing else in these programs makes pages writable)."""
    trace = build.path / "strace.out"
    result = build.run("strace", "-f", "-qq", "-e", "trace=mremap,mprotect", "-o", trace,
                       program, *args, env=env)
    text = trace.read_text()
    return result, {"copy": len(re.findall(r"\bmremap\(", text)),
                    "in place": len(re.findall(r"\bmprotect\([^)]*, PROT_READ\|PROT_WRITE\)",
                                               text))}


def mremaps(build, program, *args, env):
    """(the run, how many objects wrote their slot pages, either way)."""
    result, writes = slot_page_writes(build, program, *args, env=env)
    return result, sum(writes.values())


def same(got, stock):
    assert (got.returncode, got.stdout, got.stderr) == \
        (stock.returncode, stock.stdout, stock.stderr)


@pytest.fixture
def group(build):
    """foo.so.5 and libbar.so.1 (importing foo) at their bases, a non-PIE
    program importing both, and the stock build of the same sources."""
    group = Group(build)
    group.foo()
    group.bar()
    (build.path / "both.c").write_text(MAIN)
    build.gcc("-O2", "-fno-pie", "-c", "both.c", "-o", "both.o")
    build.tool("vectool", "--mode=prog", "--rpathdir=rp", "gcc", "-no-pie", "-o", "both",
               "both.o", "foo.so.5", "libbar.so.1")
    stock = build.path / "stock"
    stock.mkdir()
    build.gcc("-shared", "-Wl,-soname=foo.so.5", "-o", "stock/foo.so.5", "foo.o")
    build.gcc("-shared", "-Wl,-soname=libbar.so.1", "-o", "stock/libbar.so.1", "bar.o",
              "stock/foo.so.5")
    build.gcc("-no-pie", "-o", "both.stock", "both.o", "stock/foo.so.5", "stock/libbar.so.1")
    return group


def run_both(build, env=None):
    """The vectored program (under strace) and the stock one, in the same environment."""
    got, remapped = mremaps(build, "./both", "x", env=dict(env or {}, LD_LIBRARY_PATH="rp"))
    stock = build.run("./both.stock", "x", env=dict(env or {}, LD_LIBRARY_PATH="stock"))
    return got, stock, remapped


def test_files_hold_their_slots_bound(group, build):
    """The program's slots (far from the default region: jmp *word) and
    libbar's (near foo.so.5: jmp rel32) are bound in the files; so are a
    PIE program's, with the far form only, which holds wherever it loads.
    A library without a fixed base leaves its importers' slots unbound."""
    assert slot_opcodes(build.path / "both") == {0xFF}
    assert slot_opcodes(build.path / "libbar.so.1") == {0xE9}
    pie = group.prog("testmain.c", "testmain.pie", "foo.so.5", pie=True)
    assert slot_opcodes(pie) == {0xFF}
    got, remapped = mremaps(build, pie, "x", env={"LD_LIBRARY_PATH": "rp"})
    assert remapped == 0 and got.returncode == 7 and "same &foo_add: yes" in got.stdout
    (build.path / "movable").mkdir()
    build.expvec("foo.c", "foo.so.5", out="movable/foo.so.5", vec="movable/foo.so.5.vec")
    build.tool("vectool", "--mode=prog", "--rpathdir=movable", "gcc", "-o", "movable_main",
               "testmain.pie.o", "movable/foo.so.5")
    assert slot_opcodes(build.path / "movable_main") == {0xE8}


def test_at_their_bases_nothing_is_written(group, build):
    got, stock, remapped = run_both(build)
    same(got, stock)
    assert "same &foo_add: yes" in got.stdout and got.returncode == 7
    assert remapped == 0
    bases = group.bases()
    for soname in ("foo.so.5", "libbar.so.1"):
        assert load_address(build, "./both", soname) == 0, soname     # l_addr 0: at its base
    assert bases["foo.so.5"] != bases["libbar.so.1"]


def blocker(build, base):
    """A library to preload that ld.so maps at ``base``, before any other."""
    (build.path / "blocker.c").write_text("int blocker_fn(void) { return 1; }\n")
    build.gcc("-shared", "-fPIC", "-o", "blocker.so", "blocker.c", f"-Wl,-Ttext-segment={base:#x}")
    return {"LD_PRELOAD": str(build.path / "blocker.so")}


def test_a_preloaded_blocker_moves_a_library(group, build):
    """A preloaded library linked at foo.so.5's base takes its place: foo
    lands elsewhere, and the program and libbar bind their slots for it
    anew (one mremap each); libbar, at its base, keeps the program's slots
    for it."""
    env = blocker(build, group.bases()["foo.so.5"])
    got, stock, remapped = run_both(build, env)
    same(got, stock)
    assert remapped == 2
    assert load_address(build, "./both", "foo.so.5", env) != 0
    pie = group.prog("testmain.c", "testmain.pie", "foo.so.5", pie=True)
    at_base, _ = mremaps(build, pie, env={"LD_LIBRARY_PATH": "rp"})
    moved, remapped = mremaps(build, pie, env=dict(env, LD_LIBRARY_PATH="rp"))
    same(moved, at_base)
    assert remapped == 1 and moved.returncode == 7


def test_a_moved_importer_binds_its_near_slots_anew(group, build):
    """libbar's slots for foo.so.5 are jmp rel32 from libbar's base: when a
    preloaded library takes that base, libbar binds them anew, and the
    program its slots for libbar."""
    env = blocker(build, group.bases()["libbar.so.1"])
    got, stock, remapped = run_both(build, env)
    same(got, stock)
    assert remapped == 2
    assert load_address(build, "./both", "libbar.so.1", env) != 0
    assert load_address(build, "./both", "foo.so.5", env) == 0


def test_near_slots_follow_a_library_out_of_their_reach(build):
    """A --near group: the non-PIE program's slot for foo_add is jmp rel32
    to foo.so.5 at its low base.  A preloaded blocker takes that base and
    foo.so.5 loads among the mmaps, farther from the program than a rel32
    reaches: the binder writes the far form, its word (which every form
    holds) moved as far as the library."""
    group = Group(build, near=True)
    group.foo()
    prog = group.prog("near_main.c", "near_main", "foo.so.5")
    assert build.run(prog, env={"LD_LIBRARY_PATH": "rp"}).stdout == \
        "foo_add(2, 3) = 5, slot starts with e9\n"
    env = blocker(build, group.bases()["foo.so.5"])
    got = build.run(prog, env=dict(env, LD_LIBRARY_PATH="rp"))
    assert got.stdout == "foo_add(2, 3) = 5, slot starts with ff\n"
    foo = group.bases()["foo.so.5"] + load_address(build, prog, "foo.so.5", env)
    slot = symbol_values(prog)["foo_add"]
    assert abs(foo - slot) >= 1 << 31


def test_two_libraries_given_one_base(build):
    """Two addrfiles give foo.so.5 and libbaz.so.1 one base: one of them
    loads elsewhere, and the program binds that vector's slots anew."""
    group = Group(build)
    group.foo()
    (build.path / "baz.c").write_text(BAZ)
    build.gcc("-fPIC", "-O2", "-c", "baz.c", "-o", "baz.o")
    build.tool("vectool", "--mode=lib", "--addrfile=addrs2", "--rpathdir=rp", "gcc", "-shared",
               "-Wl,-soname=libbaz.so.1", "-o", "libbaz.so.1", "baz.o")
    base = group.bases()["foo.so.5"]
    assert re.match(rf"{base} libbaz\.so\.1", (build.path / "addrs2").read_text())
    (build.path / "bm.c").write_text(BAZ_MAIN)
    build.gcc("-O2", "-fno-pie", "-I", build.src(""), "-c", "bm.c", "-o", "bm.o")
    build.tool("vectool", "--mode=prog", "--rpathdir=rp", "gcc", "-no-pie", "-o", "bm", "bm.o",
               "foo.so.5", "libbaz.so.1")
    assert slot_opcodes(build.path / "bm") == {0xFF}
    stock = build.path / "stock"
    stock.mkdir()
    build.gcc("-shared", "-Wl,-soname=foo.so.5", "-o", "stock/foo.so.5", "foo.o")
    build.gcc("-shared", "-Wl,-soname=libbaz.so.1", "-o", "stock/libbaz.so.1", "baz.o")
    build.gcc("-no-pie", "-o", "bm.stock", "bm.o", "stock/foo.so.5", "stock/libbaz.so.1")
    got, remapped = mremaps(build, "./bm", env={"LD_LIBRARY_PATH": "rp"})
    same(got, build.run("./bm.stock", env={"LD_LIBRARY_PATH": "stock"}))
    assert got.stdout == "triple 42 add 42 len 3\n" and got.returncode == 3
    assert remapped == 1
    moved = [load_address(build, "./bm", s) != 0 for s in ("foo.so.5", "libbaz.so.1")]
    assert sorted(moved) == [False, True]


def test_a_rebuild_at_the_same_base_is_bound_anew(group, build):
    """foo.so.5 rebuilt with its functions moved but its table at the same
    address: only the seal tells.  The program and libbar, not relinked,
    bind their slots for it anew and behave as before."""
    old = table_and_seal(build.path / "foo.so.5", "__V_foo_so_5")
    (build.path / "foo_moved.c").write_text(
        "__attribute__((used)) static int pad(int x) { return x * 7 + 3; }\n"
        f'#include "{build.src("foo.c")}"\n')
    build.gcc("-fPIC", "-O2", "-c", "foo_moved.c", "-o", "foo_moved.o")
    group.foo(obj="foo_moved.o")
    new = table_and_seal(build.path / "foo.so.5", "__V_foo_so_5")
    assert new[0] == old[0] and new[1] != old[1]
    got, stock, remapped = run_both(build)
    same(got, stock)
    assert remapped == 2


WX_MAPPINGS = r"""
/* How many mappings of this process are writable and executable at once. */
static int wx_mappings(void)
{
    char line[4096], perms[5];
    int count = 0;
    FILE *maps = fopen("/proc/self/maps", "r");
    while (fgets(line, sizeof line, maps))
        if (sscanf(line, "%*s %4s", perms) == 1 && perms[1] == 'w' && perms[2] == 'x')
            count++;
    fclose(maps);
    return count;
}
"""


def g_sources(build, count, early=False):
    """libg's source (``count`` functions g0, g1, ...) and gm.c, which calls
    each once and prints the sum and how many mappings are W+X; with
    ``early`` also g0(1) from an IFUNC resolver, while ld.so relocates gm.
    Returns gm's expected output."""
    names = [f"g{i}" for i in range(count)]
    (build.path / "g.c").write_text("".join(f"int {n}(int x) {{ return x * {i + 2} + {i}; }}\n"
                                            for i, n in enumerate(names)))
    calls = " + ".join(f"{n}({i + 1})" for i, n in enumerate(names))
    resolver = ("static int early;\nstatic int id_impl(int x) { return x; }\n"
                "static int (*resolve_id(void))(int) { early = g0(1); return id_impl; }\n"
                'int id(int x) __attribute__((ifunc("resolve_id")));\n') if early else \
        "static int early = -1;\nstatic int id(int x) { return x; }\n"
    (build.path / "gm.c").write_text(
        "#include <stdio.h>\n" + "".join(f"int {n}(int);\n" for n in names) + WX_MAPPINGS
        + resolver + f"int main(void) {{ int sum = {calls};\n"
        '  printf("%d early %d wx %d\\n", id(sum), early, wx_mappings()); return 0; }\n')
    total = sum((i + 1) * (i + 2) + i for i in range(count))
    return f"{total} early {2 if early else -1} wx 0\n"


def link_gm(build):
    """libg.so by expvec (no fixed base) and gm, a PIE program, by impvec."""
    vec = build.expvec(str(build.path / "g.c"), "libg.so")
    build.gcc("-O2", "-c", "gm.c", "-o", "gm.o")
    build.tool("impvec", "--link", "", vec, "gcc", "-o", "gm", "gm.o", "libg.so")
    return vec


def symbol_values(path):
    """{name: value} of the symbols ``nm`` lists in ``path``."""
    fields = (line.split() for line in run(["nm", path], cwd=".").stdout.splitlines())
    return {f[2]: int(f[0], 16) for f in fields if len(f) == 3}


@pytest.mark.parametrize("count", [1, 2, 3, 5, 16, 17, 35])
def test_slots_hold_their_targets_for_a_library_without_a_fixed_base(build, count):
    """libg.so has no fixed base: gm's slots stay unbound (call .Llazy), each
    holding in its word its function's address in libg.so as linked, and
    the record marks the vector not bound, with libg's table and seal.  At
    start-up the binder adds where libg.so loaded to every word (two
    instructions a slot, sixteen slots a turn after the odd ones), in
    place: gm is a program, bound before any thread can run."""
    expected = g_sources(build, count)
    link_gm(build)
    gm, lib = build.path / "gm", build.path / "libg.so"
    assert slot_opcodes(gm) == {0xE8}
    image = ElfImage(read_elf_file(str(gm)), str(gm))
    _, slots = image.section(".elfvector.slots")
    _, index = image.section(".elfvector.index")
    in_gm, in_lib = symbol_values(gm), symbol_values(lib)
    for i in range(count):
        word = image.read(in_gm[f"g{i}"] + 8, 8)
        assert int.from_bytes(word, "little") == in_lib[f"g{i}"]
    record, _ = import_layout(count, 1)
    entry = image.read(index.addr + record, 24)
    table, seal = table_and_seal(lib, "__V_libg_so")
    assert entry == bytes(8) + (table | NOT_BOUND).to_bytes(8, "little") + seal
    got, writes = slot_page_writes(build, "./gm", env={"LD_LIBRARY_PATH": str(build.path)})
    assert (got.returncode, got.stdout, sum(writes.values())) == (0, expected, 1)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_a_rebuilt_library_is_bound_from_its_table(build, count):
    """libg.so rebuilt with its functions moved, gm not relinked: the seal
    differs, so the words are not moved but every slot is bound from the
    table (two a turn, one alone for an odd count); each must reach its
    function."""
    expected = g_sources(build, count)
    vec = link_gm(build)
    old = table_and_seal(build.path / "libg.so", "__V_libg_so")
    (build.path / "g_moved.c").write_text(
        "__attribute__((used)) static int pad(int x) { return x * 7 + 3; }\n"
        + (build.path / "g.c").read_text())
    build.expvec(str(build.path / "g_moved.c"), "libg.so", vec="g_moved.vec")
    assert (build.path / "g_moved.vec").read_text() == (build.path / vec).read_text()
    assert table_and_seal(build.path / "libg.so", "__V_libg_so")[1] != old[1]
    got, writes = slot_page_writes(build, "./gm", env={"LD_LIBRARY_PATH": str(build.path)})
    assert (got.returncode, got.stdout, sum(writes.values())) == (0, expected, 1)


@pytest.mark.parametrize("mode", ["lazy", "now"])
def test_a_program_writes_its_slot_pages_in_place(build, mode):
    """gm has 403 slots, pages away from its binder (at the start of .text):
    the binder makes those pages read+write, moves the words and makes
    them read+exec again (no copy, no mremap, no mapping W+X afterwards).
    It runs first from gm's IFUNC resolver, which calls g0 while ld.so
    relocates gm: that call takes the lazy path and binds every slot."""
    expected = g_sources(build, 403, early=True)
    link_gm(build)
    env = {"LD_LIBRARY_PATH": str(build.path)} | ({"LD_BIND_NOW": "1"} if mode == "now" else {})
    got, writes = slot_page_writes(build, "./gm", env=env)
    assert (got.returncode, got.stdout) == (0, expected)
    assert writes == {"copy": 0, "in place": 1}


def needed(path):
    """DT_NEEDED of ``path``, in order."""
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^]]+)\]",
                      run(["readelf", "-dW", path], cwd=".").stdout)


def test_libc_is_needed_first_when_that_changes_no_binding(group, build):
    """foo.so.5 and libbar.so.1 define no name libc.so.6 does: vectool puts
    libc first in the program's search order (its lookups then skip them)."""
    assert needed(build.path / "both") == ["libc.so.6", "foo.so.5", "libbar.so.1"]
    assert needed(build.path / "both.stock") == ["foo.so.5", "libbar.so.1", "libc.so.6"]


def test_a_library_interposing_libc_stays_first(build):
    """libpw.so.1 defines puts: needed first, it interposes libc's puts for
    the whole process, as in the stock build, so libc stays after it."""
    group = Group(build)
    (build.path / "pw.c").write_text(
        "#include <stdio.h>\n"
        "int puts(const char *s) { return printf(\"pw: %s\\n\", s); }\n"
        "int pw_fn(int x) { return x + 1; }\n")
    (build.path / "pwm.c").write_text(
        "#include <stdio.h>\nint pw_fn(int);\n"
        "int main(void) { puts(\"hello\"); return pw_fn(4); }\n")
    build.gcc("-fPIC", "-O2", "-c", "pw.c", "-o", "pw.o")
    build.gcc("-O2", "-fno-pie", "-c", "pwm.c", "-o", "pwm.o")
    group.lib("gcc", "-shared", "-Wl,-soname=libpw.so.1", "-o", "libpw.so.1", "pw.o")
    build.tool("vectool", "--mode=prog", "--rpathdir=rp", "gcc", "-no-pie", "-o", "pwm", "pwm.o",
               "libpw.so.1")
    (build.path / "stock").mkdir()
    build.gcc("-shared", "-Wl,-soname=libpw.so.1", "-o", "stock/libpw.so.1", "pw.o")
    build.gcc("-no-pie", "-o", "pwm.stock", "pwm.o", "stock/libpw.so.1")
    assert needed(build.path / "pwm") == ["libpw.so.1", "libc.so.6"]
    got = build.run("./pwm", env={"LD_LIBRARY_PATH": "rp"})
    same(got, build.run("./pwm.stock", env={"LD_LIBRARY_PATH": "stock"}))
    assert (got.stdout, got.returncode) == ("pw: hello\n", 5)


EARLY_IFUNC = r"""
#include <stdio.h>
int bar_poly(int x);
static int early;
static int triple_impl(int x) { return 3 * x; }
/* Runs while ld.so relocates this program, before any constructor. */
static int (*resolve_triple(void))(int) { early = bar_poly(3); return triple_impl; }
int triple(int x) __attribute__((ifunc("resolve_triple")));
int main(void)
{
    printf("early %d late %d triple %d\n", early, bar_poly(4), triple(early));
    return 0;
}
"""

OWN_IFUNC = r"""
#include <stdio.h>
#include "foo.h"
static int early;
static int triple_impl(int x) { return 3 * x; }
/* Runs while ld.so relocates this program: its IRELATIVE is for tab[0]. */
static int (*resolve_triple(void))(int) { early = foo_add(2, 3); return triple_impl; }
static int triple(int x) __attribute__((ifunc("resolve_triple")));
int (*const tab[])(int) = { triple };
int main(void)
{
    printf("early %d late %d triple %d\n", early, foo_add(4, 5), tab[0](early));
    return 0;
}
"""

EARLY_CONSTRUCTOR = r"""
#include <stdio.h>
int bar_poly(int x);
/* libearly.so is a dependency of libcb.so.1: its constructor runs before
   libcb's own (the .init_array binder among them) and calls back into it. */
__attribute__((constructor)) static void early(void) { printf("early %d\n", bar_poly(3)); }
"""


def early_env(build, group, mode):
    """foo.so.5 moved by a preloaded blocker, lazy or LD_BIND_NOW binding."""
    env = blocker(build, group.bases()["foo.so.5"])
    return dict(env, LD_BIND_NOW="1") if mode == "now" else env


@pytest.mark.parametrize("mode", ["lazy", "now"])
def test_an_ifunc_resolver_calls_a_prebound_slot_of_a_moved_library(group, build, mode):
    """The program's IFUNC resolver calls libbar while ld.so relocates the
    program (through its GOT, -fno-plt), before any constructor: libbar's
    pre-bound jmp rel32 slots for foo.so.5, which a blocker moved, must
    already be bound anew, as libbar's IRELATIVE binder does when ld.so
    relocates libbar (before the program, which needs it)."""
    (build.path / "ei.c").write_text(EARLY_IFUNC)
    build.gcc("-O2", "-fno-plt", "-o", "ei", "ei.c", "rp/libbar.so.1", "-Wl,-rpath-link=rp")
    build.gcc("-O2", "-fno-plt", "-o", "ei.stock", "ei.c", "stock/libbar.so.1",
              "-Wl,-rpath-link=stock")
    env = early_env(build, group, mode)
    got = build.run("./ei", env=dict(env, LD_LIBRARY_PATH="rp"))
    same(got, build.run("./ei.stock", env=dict(env, LD_LIBRARY_PATH="stock")))
    assert got.stdout == "early 15 late 24 triple 45\n"
    assert load_address(build, "./ei", "foo.so.5", env) != 0


@pytest.mark.parametrize("mode", ["lazy", "now"])
def test_a_dependency_constructor_calls_a_prebound_slot_of_a_moved_library(group, build, mode):
    """libearly.so, a dependency of libcb.so.1 (a vectool library importing
    foo.so.5), calls libcb from its constructor, before libcb's constructors:
    libcb's pre-bound slots for the moved foo.so.5 must already be bound anew."""
    (build.path / "early.c").write_text(EARLY_CONSTRUCTOR)
    for lib in ("rp/libearly.so", "stock/libearly.so"):
        build.gcc("-shared", "-fPIC", "-O2", "-Wl,-soname=libearly.so", "-o", lib, "early.c")
    group.lib("gcc", "-shared", "-Wl,-soname=libcb.so.1", "-o", "libcb.so.1", "bar.o",
              "foo.so.5", "-Wl,--no-as-needed", "rp/libearly.so")
    assert slot_opcodes(build.path / "libcb.so.1") == {0xE9}
    (build.path / "cbm.c").write_text(
        "#include <stdio.h>\nint bar_poly(int);\n"
        'int main(void) { printf("late %d\\n", bar_poly(4)); return 0; }\n')
    build.gcc("-O2", "-o", "cbm", "cbm.c", "rp/libcb.so.1", "-Wl,-rpath-link=rp")
    build.gcc("-shared", "-Wl,-soname=libcb.so.1", "-o", "stock/libcb.so.1", "bar.o",
              "stock/foo.so.5", "-Wl,--no-as-needed", "stock/libearly.so")
    build.gcc("-O2", "-o", "cbm.stock", "cbm.c", "stock/libcb.so.1", "-Wl,-rpath-link=stock")
    env = early_env(build, group, mode)
    got = build.run("./cbm", env=dict(env, LD_LIBRARY_PATH="rp"))
    same(got, build.run("./cbm.stock", env=dict(env, LD_LIBRARY_PATH="stock")))
    assert got.stdout == "early 15\nlate 24\n"
    assert load_address(build, "./cbm", "foo.so.5", env) != 0


@pytest.mark.parametrize("mode", ["lazy", "now"])
def test_the_binder_runs_before_the_programs_own_ifunc_resolvers(group, build, mode):
    """A PIE program whose constant table holds its own IFUNC, whose
    resolver calls foo_add through the program's pre-bound far slot while
    foo.so.5 is moved: the binder's IRELATIVE (its .preinit_array entry)
    comes before the table's in .rela.dyn, so the slot is bound anew first."""
    (build.path / "oi.c").write_text(OWN_IFUNC)
    build.gcc("-O2", "-c", "oi.c", "-o", "oi.o")
    build.tool("vectool", "--mode=prog", "--rpathdir=rp", "gcc", "-o", "oi", "oi.o", "foo.so.5")
    assert slot_opcodes(build.path / "oi") == {0xFF}
    irelatives = [r[1] for r in dynamic_relocations(build.path / "oi")
                  if r[0] == "R_X86_64_IRELATIVE"]
    assert len(irelatives) >= 2 and irelatives[0] == bind_resolver(build.path / "oi")
    env = early_env(build, group, mode)
    got = build.run("./oi", env=dict(env, LD_LIBRARY_PATH="rp"))
    assert (got.returncode, got.stdout) == (0, "early 5 late 9 triple 15\n")
    assert load_address(build, "./oi", "foo.so.5", env) != 0


def dynamic_relocations(path):
    """The dynamic relocations of ``path`` in the order ld.so applies them
    (``.rela.dyn``, then ``.rela.plt``) as (type, symbol name or addend)."""
    found = []
    for line in run(["readelf", "-rW", path], cwd=".").stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2].startswith("R_X86_64_"):
            found.append((fields[2], fields[4] if len(fields) > 4 else int(fields[3], 16)))
    return found


def bind_resolver(path):
    """The address of the binder's IFUNC resolver in ``path``."""
    (value,) = [int(line.split()[1], 16)
                for line in run(["readelf", "-sW", path], cwd=".").stdout.splitlines()
                if line.split()[-1:] == [BIND_IFUNC] and "IFUNC" in line.split()]
    return value


def test_the_binder_is_an_irelative_after_the_layout_glob_dats(group, build):
    """In every layout (non-PIE and PIE program, shared library) the import
    vector brings one IRELATIVE of the binder's resolver, which ld.so
    applies after the GLOB_DATs of the layout symbols (the binder reads them)."""
    pie = group.prog("testmain.c", "testmain.pie", "foo.so.5", pie=True)
    for path in (build.path / "both", pie, build.path / "libbar.so.1"):
        relocs = dynamic_relocations(path)
        binder = [i for i, r in enumerate(relocs)
                  if r == ("R_X86_64_IRELATIVE", bind_resolver(path))]
        layouts = [i for i, r in enumerate(relocs)
                   if r[0] == "R_X86_64_GLOB_DAT" and r[1].startswith("__V_")]
        assert len(binder) == 1 and layouts and max(layouts) < binder[0], (path, relocs)
