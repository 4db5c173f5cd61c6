"""Run-time behaviour of vectored programs and libraries.

Every test builds its programs and libraries with gcc at test time, runs the
vectored build and the same sources linked the usual way, and requires the
same stdout, stderr and exit status, then checks the property it is about.

The C sources are testdata/rt_*.  Besides stdout/stderr, the programs report
the state of an object's import-vector slots (rt_probe.h: 'U' all unbound,
'B' all bound, '-' no slots) to the file named by $RT_PROBE, so that what is
observed about the slots never makes the two builds' outputs differ.
"""

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

VLIB = "librtv.so.1"


# -- building ---------------------------------------------------------------

@pytest.fixture
def vlib(build):
    """librtv.so.1 with an export vector, and the stock one: (vec, stock dir)."""
    vec = build.expvec("rt_vlib.c", VLIB)
    stock = build.stock_lib("rt_vlib.c", VLIB)
    return vec, stock


def plain_lib(build, source, soname, deps=(), cflags=()):
    """A library linked the usual way, into the build directory and stock/."""
    stem = Path(source).stem
    for directory in (".", "stock"):
        (build.path / directory).mkdir(exist_ok=True)
        obj = f"{directory}/{stem}.o"
        build.gcc("-fPIC", "-O2", *cflags, "-c", build.src(source), "-o", obj)
        build.gcc("-shared", f"-Wl,-soname={soname}", "-o", f"{directory}/{soname}", obj,
                  "-Wl,--no-as-needed", *[f"{directory}/{d}" for d in deps], *cflags)


def impvec_lib(build, source, soname, deps, vecs):
    """A shared library whose own calls go through an import vector
    (impvec --link on its -shared link), and the same library linked the
    usual way in stock/.  Returns the generated assembly."""
    stem = Path(source).stem
    obj = f"{stem}.pic.o"
    build.gcc("-fPIC", "-O2", "-c", build.src(source), "-o", obj)
    build.tool("impvec", "--link", "--asm", f"{soname}.s", "", *vecs,
               "gcc", "-shared", f"-Wl,-soname={soname}", "-o", soname, obj,
               "-Wl,--no-as-needed", *deps, "-pthread")
    (build.path / "stock").mkdir(exist_ok=True)
    build.gcc("-fPIC", "-O2", "-c", build.src(source), "-o", f"stock/{stem}.o")
    build.gcc("-shared", f"-Wl,-soname={soname}", "-o", f"stock/{soname}", f"stock/{stem}.o",
              "-Wl,--no-as-needed", *[f"stock/{d}" for d in deps], "-pthread")
    return (build.path / f"{soname}.s").read_text()


# -- running ----------------------------------------------------------------

def assert_same_behaviour(build, program, stock_dir, args=(), env=None, stock_program=None,
                          returncode=0):
    """Run the vectored ``program`` (libraries from the build directory) and
    its stock twin (libraries from ``stock_dir``); they must print the same
    and exit the same, with ``returncode``.  Returns (vectored run, vectored
    probe lines, stock probe lines)."""
    runs, probes = {}, {}
    stock_program = stock_program or f"{program}.stock"
    for kind, prog, libdir in (("vectored", program, None), ("stock", stock_program, stock_dir)):
        probe = build.path / f"{Path(prog).name}.{kind}.probe"
        probe.unlink(missing_ok=True)
        runs[kind] = build.run(prog, *args, env=dict(env or {}, RT_PROBE=str(probe)),
                               libdir=libdir)
        probes[kind] = probe.read_text().splitlines() if probe.exists() else []
    vectored, stock = runs["vectored"], runs["stock"]
    assert stock.returncode == returncode, f"the stock build failed:\n{stock.stderr}"
    # (exit status, stdout, stderr): a crash shows as a negative status.
    assert (vectored.returncode, vectored.stdout, vectored.stderr) == \
        (stock.returncode, stock.stdout, stock.stderr)
    return vectored, probes["vectored"], probes["stock"]


# -- what librtv computes (rt_vlib.c), to check the outputs themselves -------

def many(a, b, c, d, e, f, g, h, x, i, y):
    return (a + 10 * b + 100 * c + 1000 * d + 10000 * e + 100000 * f + 1000000 * g
            + 10000000 * h + 100000000 * i + int(x * 10000000000) + int(y * 1000000000000))


def sumd(*values):
    return sum(v * 10 ** k for k, v in enumerate(values))


def a_compute(x):
    """librta's a_compute(x): (text, its length)."""
    text = (f"x={x} sumd={sumd(1.5, 2.25, 0.125, x):.3f} "
            f"many={many(x, 2, 3, 4, 5, 6, 7, 8, 0.5, 9, 0.25)} "
            f"pair={x + 3}/{x - 3}/{x * 3} add={x + 1} mul={x * 3} name=librtv.so.1")
    return text, len(text)


def a_count(n):
    return sum(i % 3 for i in range(n))


A_CTOR_RESULT = 42 * 1000 + 38 * 10 + 80 + 2      # v_pair(40, 2) and v_add(1, 1)


# -- 1. constructors ------------------------------------------------------------

def test_library_constructors_call_back_into_the_program(build, vlib):
    """librthook's constructor and the vectored librtv's own constructor call
    rt_prog_hook, which the program exports (-rdynamic) and which calls
    librtv through the program's slots, before main."""
    vec, stock = vlib
    plain_lib(build, "rt_hooklib.c", "librthook.so.1", deps=[VLIB])
    prog = build.program("rt_ctor_main.c", "ctor_main",
                         ["-Wl,--no-as-needed", "librthook.so.1", VLIB], [vec],
                         ldflags=["-rdynamic"])
    result, probe, stock_probe = assert_same_behaviour(build, prog, stock, returncode=3)
    hook = ("{}: add 42 mul 42 sumd {:.2f} many {} pair 13/5/36 name librtv.so.1"
            .format("{}", sumd(0.5, 0.25, 2.0), many(1, 2, 3, 4, 5, 6, 7, 8, 0.5, 9, 0.25)))
    lines = result.stdout.splitlines()
    for who in ("librtv ctor", "librthook ctor", "main"):
        text = hook.format(who)
        assert f"{text} ({len(text)} chars)" in lines
    # librtv is initialised before librthook, which depends on it.
    assert [line.split(":")[0] for line in lines[:3]] == \
        ["librtv ctor", "librthook ctor", "librthook ctor"]
    assert "librthook ctor: v_add(1, 2) = 3" in lines
    assert "through the pointer: 7" in lines
    assert f"calls {3 * 7 + 1 + 1}" in lines
    # The .preinit_array binder ran before every library constructor.
    assert sorted(probe) == sorted(f"hook from {who}: slots B"
                                   for who in ("librtv ctor", "librthook ctor", "main"))
    assert all(line.endswith("slots -") for line in stock_probe) and len(stock_probe) == 3


def test_slots_reached_before_the_binder_ran(build, vlib):
    """librta has an import vector bound from its .init_array.  librtearly,
    which librta depends on, is initialised first; its constructor calls
    librta, whose calls to librtv reach unbound slots and go through the lazy
    trampoline: a variadic call with doubles first, then stack arguments, a
    struct returned in memory, ..."""
    vec, stock = vlib
    plain_lib(build, "rt_early.c", "librtearly.so.1")
    asm = impvec_lib(build, "rt_alib.c", "librta.so.1", [VLIB, "librtearly.so.1"], [vec])
    assert ".init_array" in asm and '"v_sumd":' in asm
    prog = build.program("rt_alib_main.c", "alib_main", ["librta.so.1", VLIB], [vec])
    result, probe, stock_probe = assert_same_behaviour(build, prog, stock)
    early, early_len = a_compute(7)
    main, main_len = a_compute(11)
    calls = 7 + 1000 + 2 + 7 + 5000 + 1
    assert result.stdout.splitlines() == [
        f"early ctor: {early} ({early_len} chars)",
        f"early ctor: a_count(1000) = {a_count(1000)}",
        f"main: {main} ({main_len} chars)",
        f"main: a_count(5000) = {a_count(5000)}",
        f"main: librta ctor computed {A_CTOR_RESULT}",
        f"main: v_add(2, 40) = 42, v_calls {calls}",
    ]
    # The point of the test: librta's slots were unbound when librtearly's
    # constructor called through them, and bound by that call.
    assert "early ctor: before U after B" in probe
    assert "librta ctor: before B after B" in probe
    assert "main: program slots B librta slots B" in probe
    assert "early ctor: before - after -" in stock_probe


def test_library_ifunc_resolver_calls_a_vectored_function(build, vlib):
    """Earlier still: librtifunc's IFUNC resolver calls v_add while ld.so
    relocates librtifunc, before the program is relocated and long before
    its .preinit_array binder.  v_add stays bound by name in the program
    (a slot for it would have to be exported, and would capture the
    resolver's call before it can be bound); v_mul, which only the program
    calls, goes through a slot."""
    vec, stock = vlib
    plain_lib(build, "rt_ifunclib.c", "librtifunc.so.1", deps=[VLIB])
    prog = build.program("rt_ifunc_main.c", "ifunc_main", ["librtifunc.so.1", VLIB], [vec])
    result, probe, _ = assert_same_behaviour(build, prog, stock)
    assert result.stdout == "librtifunc: 242 sumd 3.00; v_add(1, 2) = 3 v_mul(6, 7) = 42\n"
    asm = (build.path / "ifunc_main.s").read_text()
    assert '"v_mul":' in asm and '"v_add":' not in asm
    assert probe == ["main: slots B"]


def test_binder_reached_before_the_program_is_relocated_exits_127(build, vlib):
    """The contract when a slot is called before ld.so relocated the program
    (from another library's IFUNC resolver, through a function the program
    exports): the binder cannot find the vector yet, so the program stops
    with exit status 127 and one line, never jumping anywhere."""
    vec, _ = vlib
    plain_lib(build, "rt_ifunchook.c", "librtifunchook.so.1")
    prog = build.program("rt_ifunchook_main.c", "hook_main", ["librtifunchook.so.1", VLIB],
                         [vec], ldflags=["-rdynamic"])
    assert '"v_mul":' in (build.path / "hook_main.s").read_text()
    result = build.run(prog)
    assert (result.returncode, result.stdout, result.stderr) == \
        (127, "", "elfvector: hook_main: cannot bind the import vector\n")


# -- 2. threads -----------------------------------------------------------------

def test_sixteen_threads_call_through_the_slots(build, vlib):
    """16 threads x 100000 calls from a program without constructors."""
    vec, stock = vlib
    prog = build.program("rt_threads_main.c", "threads_main", [VLIB], [vec],
                         cflags=["-pthread"])
    result, probe, stock_probe = assert_same_behaviour(build, prog, stock)
    product = 1
    for _ in range(100):
        product = product * 3 % 1000003
    lines = result.stdout.splitlines()
    assert lines[:16] == [f"thread {t}: sum 200000 product {product}" for t in range(16)]
    assert lines[16] == f"total {16 * 200000} products {16 * product} calls {16 * 100100}"
    # W^X: the bound slots are read+exec, and nothing is writable and
    # executable at once, in the vectored process as in the stock one.
    assert probe == ["main: slots B", "main: slot pages r-xp rwx 0"]
    assert stock_probe == ["main: slots -", "main: slot pages - rwx 0"]


def test_threads_race_to_bind_a_library_import_vector(build, vlib):
    """librtracer's constructor runs before librta's binder and releases 16
    threads at once into librta, whose slots are unbound: they race through
    the lazy trampoline, one binds, the others wait; 100000 calls each."""
    vec, stock = vlib
    plain_lib(build, "rt_racer.c", "librtracer.so.1", cflags=["-pthread"])
    impvec_lib(build, "rt_alib.c", "librta.so.1", [VLIB, "librtracer.so.1"], [vec])
    prog = build.program("rt_alib_main.c", "racer_main", ["librta.so.1", VLIB], [vec],
                         cflags=["-pthread"])
    result, probe, _ = assert_same_behaviour(build, prog, stock)
    total = 16 * a_count(100000) + sum(a_compute(t)[1] for t in range(16))
    lines = result.stdout.splitlines()
    assert lines[0] == f"racer ctor: 16 threads, total {total}"
    calls = 16 * (100000 + 7) + 2 + 7 + 5000 + 1
    assert lines[-1] == f"main: v_add(2, 40) = 42, v_calls {calls}"
    assert "racer ctor: before U after B" in probe
    assert "librta ctor: before B after B" in probe


# -- 3. pointer equality ------------------------------------------------------------

@pytest.mark.parametrize("pie", [True, False], ids=["pie", "nopie"])
def test_address_of_a_vectored_function_is_the_librarys(build, vlib, pie):
    """&v_add taken by the program, in code and in static data, is the
    library's own &v_add, another library's, and dlsym's."""
    vec, stock = vlib
    plain_lib(build, "rt_addr_other.c", "librtother.so.1", deps=[VLIB])
    cflags, ldflags = ([], []) if pie else (["-fno-pie"], ["-no-pie"])
    prog = build.program("rt_addr_main.c", "addr_main", ["librtother.so.1", VLIB], [vec],
                         cflags=cflags, ldflags=ldflags)
    asm = (build.path / "addr_main.s").read_text()
    # v_mul is vectored with an exported slot (its canonical address); v_add,
    # which librtother imports too, stays bound by name.
    assert '"v_mul":' in asm and '"v_name":' in asm and '"v_add":' not in asm
    assert re.search(r'\.globl "v_mul"\n\t\.type', asm)        # exported: not .hidden
    result, probe, _ = assert_same_behaviour(build, prog, stock)
    assert result.stdout.splitlines() == [
        "code &v_add == library's &v_add: yes",
        "code &v_mul == library's &v_mul: yes",
        "data &v_add == library's &v_add: yes",
        "data &v_mul == library's &v_mul: yes",
        "code == data: yes",
        "other library's &v_add: yes",
        "dlsym(RTLD_DEFAULT) &v_add: yes",
        "calls: 5 20 13 72 21",
        "direct: 3 12 name librtv.so.1 calls 8",
    ]
    assert probe == ["main: slots B"]


# -- 4. LD_PRELOAD ----------------------------------------------------------------

def test_preloaded_malloc_wrapper_still_intercepts(build):
    """librtalloc defines malloc and its export vector holds it; the program
    calls malloc 100 times and ra_dup (which calls malloc in the library) 50
    times.  An LD_PRELOAD wrapper must see all 150 calls, as with the stock
    program: impvec keeps malloc bound by name."""
    vec = build.expvec("rt_alloc.c", "librtalloc.so.1")
    stock = build.stock_lib("rt_alloc.c", "librtalloc.so.1")
    assert "malloc" in (build.path / vec).read_text().split()
    build.gcc("-fPIC", "-O2", "-shared", "-o", "rt_mallocwrap.so", build.src("rt_mallocwrap.c"))
    prog = build.program("rt_malloc_main.c", "malloc_main", ["librtalloc.so.1"], [vec])
    asm = (build.path / "malloc_main.s").read_text()
    assert '"ra_dup":' in asm and not re.search(r'^"malloc":', asm, re.M)
    check = sum(range(100)) + sum(ord("vector"[i % 6]) for i in range(50))
    wrapper = {"LD_PRELOAD": str(build.path / "rt_mallocwrap.so")}
    result, _, _ = assert_same_behaviour(build, prog, stock, env=wrapper)
    assert result.stdout == f"check {check} served 150\n"
    assert result.stderr == "rt_mallocwrap: 150 calls of malloc(12345)\n"
    plain, _, _ = assert_same_behaviour(build, prog, stock)
    assert plain.stdout == f"check {check} served 150\n" and plain.stderr == ""


# -- 5. dlopen --------------------------------------------------------------------

def test_dlopen_vectored_libraries_from_a_stock_program(build, vlib):
    """A stock program dlopens librtv (export vector) and librta (import
    vector, bound from its .init_array at dlopen), unloads and reloads them,
    and dlopens librta from 16 threads at once."""
    vec, stock = vlib
    impvec_lib(build, "rt_alib.c", "librta.so.1", [VLIB], [vec])
    build.gcc("-O2", "-pthread", build.src("rt_dlopen_main.c"), "-o", "dlopen_main")
    prog = build.path / "dlopen_main"
    result, probe, stock_probe = assert_same_behaviour(build, prog, stock, stock_program=prog)
    expected = []
    for r in range(3):
        text, length = a_compute(r + 5)
        expected.append(f"round {r}: {text} ({length} chars) count {a_count(3000)} "
                        f"ctor {A_CTOR_RESULT}")
    expected += [
        "librtv: add 42 mul 42 sumd {:.3f} many {} pair 17/7/60 name librtv.so.1".format(
            sumd(0.5, 0.25, 4.0), many(1, 2, 3, 4, 5, 6, 7, 8, 0.25, 9, 0.5)),
        "librtv: dlsym's v_add is the library's own: yes",
        f"threads: total {sum(a_count(20000 + t) for t in range(16))}",
    ]
    assert result.stdout.splitlines() == expected
    assert [line for line in probe if line.startswith("round")] == \
        [f"round {r}: librta slots B" for r in range(3)]
    ctors = [line for line in probe if line.startswith("librta ctor")]
    assert len(ctors) >= 4          # three rounds, then at least one load by the threads
    assert all(re.fullmatch(r"librta ctor: before [UB] after B", line) for line in ctors)
    assert "librtv vector symbol: found" in probe
    assert "librtv vector symbol: missing" in stock_probe


# -- 6. many vectors ----------------------------------------------------------------

def test_forty_vectors(build):
    """A program importing from 40 libraries, each with its own vector: 280
    slots, so more than one page of them."""
    def make(n):
        source = build.path / f"rt_many_{n:02d}.c"
        source.write_text(f'#define RT_N {n}\n#include "rt_many_lib.c"\n')
        soname = f"librtm{n:02d}.so"
        return build.expvec(str(source), soname), build.stock_lib(str(source), soname), soname

    with ThreadPoolExecutor(max_workers=4) as pool:
        made = list(pool.map(make, range(40)))
    vecs = [vec for vec, _, _ in made]
    stock = made[0][1]
    prog = build.program("rt_many_main.c", "many_main", [soname for _, _, soname in made], vecs)
    asm = (build.path / "many_main.s").read_text()
    assert "280 slots from 40 vectors" in asm.splitlines()[0]      # two pages of slots
    result, probe, _ = assert_same_behaviour(build, prog, stock)
    total = sum(2 * n * 1000 + 2 * (n + 1) for n in range(40))
    assert result.stdout.splitlines() == [
        f"lib {n}: add {2 * n} scale {2 * (n + 1)} f {1000 ^ (3 * n)} {6 * n} {1.5 + n:.1f} "
        f"{ord('abcd'[n % 4]) + n} same yes" for n in range(40)] + [
            f"total {total}",
            "same &m_add_0: yes, same &m_add_39: yes",
            "through pointers: 100 139",
        ]
    assert probe == ["main: slots B"]


# -- 7. the program's own IFUNC resolver, .preinit_array and .init_array ----------

@pytest.mark.parametrize("mode", ["pie", "pie-now", "nopie"])
def test_vectored_calls_from_the_programs_preinit_and_init_arrays(build, vlib, mode):
    """Calls from the program's IFUNC resolver, .preinit_array and
    .init_array functions, all before main."""
    vec, stock = vlib
    cflags, ldflags = {"pie": ([], []), "pie-now": ([], ["-Wl,-z,now"]),
                       "nopie": (["-fno-pie"], ["-no-pie"])}[mode]
    prog = build.program("rt_preinit_main.c", "preinit_main", [VLIB], [vec],
                         cflags=cflags, ldflags=ldflags)
    result, probe, _ = assert_same_behaviour(build, prog, stock, args=["arg"], returncode=5)
    assert result.stdout.splitlines() == [
        "preinit: argc 2 many {} sumd {:.3f} pair 29/15/154 buf 'preinit 42 2.75 "
        "librtv.so.1'".format(many(1, 2, 3, 4, 5, 6, 7, 8, 0.5, 9, 0.25),
                              sumd(0.5, 1.5, 2.5, 3.5, 2)),
        "init: buf 'init_array 42 42 21.0'",
        "ifunc: picked 2 many {} sumd {:.3f} add 42".format(
            many(9, 8, 7, 6, 5, 4, 3, 2, 0.75, 1, 0.5), sumd(0.25, 0.5, 0.75)),
        "main: argc 2 add 3 calls 14",
    ]
    # ld.so runs the IFUNC resolver while relocating the program, before any
    # .preinit_array function: its calls reach unbound slots, and bind them.
    assert probe == ["ifunc resolver: before U after B",
                     "preinit: before B after B",
                     "init_array: before B after B",
                     "main: slot pages r-xp rwx 0"]
