"""Building the benchmark's programs, and running them.

Two experiments, each built from the same objects in several ways so that
only the linkage differs: the start-up program (a library of many
functions, a program calling each once) built five ways, and the call loop
(one library function called in a tight loop) built six ways.  The
elfvector commands run from this checkout (``bin/``) with this Python, so
the benchmark measures the working tree.
"""

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import gensrc
from elfvector.measure import section_containing

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
SONAME = "libbench.so"
STEP_SONAME = "libstep.so"       # the library of the function the loop calls
LOOP_SONAME = "libloop.so"       # the library the loop itself is in (the near variants)
CFLAGS = ["-O2", "-fno-lto"]
LAZY, NOW = "-Wl,-z,lazy", "-Wl,-z,now"


class BenchError(Exception):
    """The benchmark cannot go on: a build failed or a program misbehaved."""


@dataclass(frozen=True)
class Build:
    """One linked program and the directory its shared library is in."""

    key: str
    title: str
    program: Path
    libdir: Optional[Path] = None      # None: the library is linked into the program


def clean_env(libdir=None):
    """The environment programs and links run in.

    No inherited ``LD_*`` variable: ``LD_BIND_NOW`` would make the lazy
    build eager, ``LD_PRELOAD`` or ``LD_DEBUG`` would change what is
    counted.  ``LD_LIBRARY_PATH`` names the library of this build only.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    if libdir is not None:
        env["LD_LIBRARY_PATH"] = str(libdir)
    return env


def run(argv, cwd, env=None):
    """Run a build step; a failure is a BenchError showing its stderr."""
    argv = [str(a) for a in argv]
    proc = subprocess.run(argv, cwd=cwd, env=env or clean_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr.strip()}")
    return proc


def tool(name, *args, cwd, env=None):
    """Run ``bin/<name>`` of this checkout, as the README says, with this Python."""
    return run([sys.executable, ROOT / "bin" / name, *args], cwd, env)


def run_program(build, *args, wrapper=(), env=None):
    """Run ``build``'s program (under ``wrapper``, e.g. valgrind) in its clean environment."""
    full_env = dict(clean_env(build.libdir), **(env or {}))
    return run([*wrapper, build.program, *args], build.program.parent, full_env)


def link_libraries(work, pic_object, soname):
    """Link ``pic_object`` into ``soname`` twice: stock, and with expvec.

    Returns the two directories and the ``.vec`` file of the vectored one.
    """
    stock, vec = work / "stock", work / "vec"
    stock.mkdir()
    vec.mkdir()
    link = ["gcc", "-shared", f"-Wl,-soname={soname}"]
    run([*link, "-o", stock / soname, pic_object], work)
    vec_file = vec / f"{soname}.vec"
    tool("expvec", "--vec", vec_file, "--vec-object", f"{vec_file}.o", ".", "", "",
         *link, "-o", vec / soname, pic_object, cwd=work)
    return stock, vec, vec_file


def vector_name(vec_dir, soname):
    """The name of ``soname``'s export vector: the first line of its ``.vec`` file."""
    return (vec_dir / f"{soname}.vec").read_text().split("\n", 1)[0]


def link_vectored(work, vec_file, libdir, link_args):
    """``impvec --link`` around the link command ``link_args`` (which has -o)."""
    tool("impvec", "--link", "", vec_file, "gcc", *link_args, cwd=work, env=clean_env(libdir))


def compile_c(work, source, output, *flags):
    """Compile one C file with the benchmark's flags (-O2, and never LTO, which could inline)."""
    run(["gcc", *CFLAGS, *flags, "-c", source, "-o", output], work)


def build_startup(work, n):
    """The five builds of the start-up program, from the same objects.

    The library is compiled once with -fPIC for the shared builds and once
    as the toolchain's default (PIE) code for the archive, as a project
    would.  Builds 1, 4 and 5 use the same (lazy) link flags, so build 4 is
    build 1's link wrapped in impvec.
    """
    work.mkdir(parents=True)
    (work / "lib.c").write_text(gensrc.library_source(n))
    (work / "prog.c").write_text(gensrc.program_source(n))
    compile_c(work, "lib.c", "lib.pic.o", "-fPIC")
    compile_c(work, "lib.c", "lib.o")
    compile_c(work, "prog.c", "prog.o")
    compile_c(work, "prog.c", "prog.noplt.o", "-fno-plt")
    stock, vec, vec_file = link_libraries(work, "lib.pic.o", SONAME)
    run(["ar", "rcs", "libbench.a", "lib.o"], work)
    run(["gcc", LAZY, "-o", "prog.lazy", "prog.o", stock / SONAME], work)
    run(["gcc", NOW, "-o", "prog.now", "prog.o", stock / SONAME], work)
    run(["gcc", NOW, "-o", "prog.noplt", "prog.noplt.o", stock / SONAME], work)
    link_vectored(work, vec_file, vec, [LAZY, "-o", "prog.vec", "prog.o", vec / SONAME])
    run(["gcc", LAZY, "-o", "prog.static", "prog.o", "libbench.a"], work)
    return [
        Build("lazy", "stock lazy", work / "prog.lazy", stock),
        Build("now", "stock -z now", work / "prog.now", stock),
        Build("noplt", "-fno-plt -z now", work / "prog.noplt", stock),
        Build("vectored", "vectored", work / "prog.vec", vec),
        Build("static", "static library", work / "prog.static"),
    ]


def build_prebound(work, n):
    """Issue 9's start-up builds at ``n`` functions, from the same objects.

    A vectool group (libbench.so at its fixed base in ``rp``) and its
    program linked by ``vectool --mode=prog`` non-PIE and PIE, both with
    their slots pre-bound; the library without a fixed base (expvec) and
    the PIE program linked by ``impvec --link``, bound at start-up; and
    the static-library builds, non-PIE and PIE, each the limit of the
    vectored build of the same kind.
    """
    work.mkdir(parents=True)
    (work / "lib.c").write_text(gensrc.library_source(n))
    (work / "prog.c").write_text(gensrc.program_source(n))
    compile_c(work, "lib.c", "lib.pic.o", "-fPIC")
    compile_c(work, "lib.c", "lib.o")
    compile_c(work, "lib.c", "lib.nopie.o", "-fno-pie")
    compile_c(work, "prog.c", "prog.o")
    compile_c(work, "prog.c", "prog.nopie.o", "-fno-pie")
    run(["ar", "rcs", "libbench.a", "lib.o"], work)
    run(["ar", "rcs", "libbench.nopie.a", "lib.nopie.o"], work)
    run(["gcc", LAZY, "-o", "static.pie", "prog.o", "libbench.a"], work)
    run(["gcc", LAZY, "-no-pie", "-o", "static.nopie", "prog.nopie.o", "libbench.nopie.a"], work)
    group = ["--rpathdir=rp"]
    tool("vectool", "--mode=lib", "--addrfile=addrs", *group, "gcc", "-shared",
         f"-Wl,-soname={SONAME}", "-o", SONAME, "lib.pic.o", cwd=work)
    tool("vectool", "--mode=prog", *group, "gcc", LAZY, "-no-pie", "-o", "prebound.nopie",
         "prog.nopie.o", SONAME, cwd=work)
    tool("vectool", "--mode=prog", *group, "gcc", LAZY, "-o", "prebound.pie", "prog.o", SONAME,
         cwd=work)
    _, vec, vec_file = link_libraries(work, "lib.pic.o", SONAME)
    link_vectored(work, vec_file, vec, [LAZY, "-o", "unbound.pie", "prog.o", vec / SONAME])
    return [
        Build("static_nopie", "static library, non-PIE", work / "static.nopie"),
        Build("static_pie", "static library, PIE", work / "static.pie"),
        Build("prebound_nopie", "vectool group, non-PIE (pre-bound)", work / "prebound.nopie",
              work / "rp"),
        Build("prebound_pie", "vectool group, PIE (pre-bound)", work / "prebound.pie",
              work / "rp"),
        Build("unbound_pie", "expvec + impvec, PIE (bound at start-up)", work / "unbound.pie",
              vec),
    ]


@dataclass(frozen=True)
class Loop:
    """One build of the call loop, and where its call of ``ev_bench_step`` goes.

    ``caller`` is the file whose ``ev_loop_run`` makes the call (the
    program, or its ``libloop.so``), ``object`` the name ld.so loads it
    under ("" for the program), ``target`` the call instruction's target
    (relative to the caller's load base) and ``section`` the section it is in.
    """

    build: Build
    group: str              # "program" (far: 0x55... -> 0x7f...) or "library" (near)
    caller: Path
    object: str
    target: int
    section: str

    @property
    def is_slot(self):
        return self.section == ".elfvector.slots"


def build_loops(work):
    """The call loop linked in every layout; each is checked to call as its name says.

    The caller is the program (``loop.c`` + ``loop_body.c`` in one
    executable) or a shared library (``loop_body.c`` in ``libloop.so``,
    called by one program that every library variant shares: only the
    ``libloop.so`` in its LD_LIBRARY_PATH directory differs).  Each calls
    ``ev_bench_step`` (``libstep.so``) through a vectored slot, through
    the PLT, or directly (the function linked into the caller; in
    ``libloop.so`` with ``-Bsymbolic-functions``, since an exported
    function of the same library is otherwise called through the PLT).
    The slots: a PIE program's bound at start-up (expvec's libstep.so has
    no fixed base), a non-PIE program's pre-bound against a vectool group
    (far: jmp *word) and against a ``--near`` one (jmp rel32), a
    library's bound at start-up and a vectool group library's pre-bound.
    Default link flags: once bound, a PLT entry costs the same lazy or not.
    """
    work.mkdir(parents=True)
    compile_c(work, HERE / "loop.c", "loop.o")
    compile_c(work, HERE / "loop.c", "loop.nopie.o", "-fno-pie")
    # The timed loop starts a 64-byte line in every build, so that where the
    # link put it (which differs between builds) does not count as call cost.
    aligned = ("-falign-functions=64", "-falign-loops=64")
    compile_c(work, HERE / "loop_body.c", "loop_body.o", *aligned)
    compile_c(work, HERE / "loop_body.c", "loop_body.nopie.o", "-fno-pie", *aligned)
    compile_c(work, HERE / "loop_body.c", "loop_body.pic.o", "-fPIC", *aligned)
    compile_c(work, HERE / "loop_fn.c", "loop_fn.pic.o", "-fPIC")
    compile_c(work, HERE / "loop_fn.c", "loop_fn.o")
    stock, vec, vec_file = link_libraries(work, "loop_fn.pic.o", STEP_SONAME)
    groups = _vectool_loop_groups(work)
    # The caller is the program.
    link_vectored(work, vec_file, vec, ["-o", "loop.vec", "loop.o", "loop_body.o", vec / STEP_SONAME])
    run(["gcc", "-o", "loop.plt", "loop.o", "loop_body.o", stock / STEP_SONAME], work)
    run(["gcc", "-no-pie", "-o", "loop.plt_nopie", "loop.nopie.o", "loop_body.nopie.o",
         stock / STEP_SONAME], work)
    run(["gcc", "-o", "loop.direct", "loop.o", "loop_body.o", "loop_fn.o"], work)
    for name, rp in groups.items():
        tool("vectool", "--mode=prog", f"--rpathdir={rp}", "gcc", "-no-pie", "-o", f"loop.{name}",
             "loop.nopie.o", "loop_body.nopie.o", "-lstep", cwd=work)
    # The caller is libloop.so: one directory per variant, with its libstep.so.
    so = {name: work / f"lib-{name}" for name in ("vec", "plt", "direct")}
    for name, directory in so.items():
        directory.mkdir()
    shared = ["-shared", f"-Wl,-soname={LOOP_SONAME}"]
    link_vectored(work, vec_file, vec, [*shared, "-o", so["vec"] / LOOP_SONAME, "loop_body.pic.o",
                                        vec / STEP_SONAME])
    run(["gcc", *shared, "-o", so["plt"] / LOOP_SONAME, "loop_body.pic.o", stock / STEP_SONAME], work)
    run(["gcc", *shared, "-Wl,-Bsymbolic-functions", "-o", so["direct"] / LOOP_SONAME,
         "loop_body.pic.o", "loop_fn.pic.o"], work)
    rp = groups["prebound"]
    tool("vectool", "--mode=lib", f"--addrfile={rp}/addrs", f"--rpathdir={rp}", "gcc", *shared,
         "-o", f"{rp}/build/{LOOP_SONAME}", "loop_body.pic.o", "-lstep", cwd=work)
    so["prebound"] = work / rp
    (so["vec"] / STEP_SONAME).symlink_to(os.path.relpath(vec / STEP_SONAME, so["vec"]))
    (so["plt"] / STEP_SONAME).symlink_to(os.path.relpath(stock / STEP_SONAME, so["plt"]))
    run(["gcc", "-o", "loop.shared", "loop.o", so["direct"] / LOOP_SONAME], work)
    slots = ".elfvector.slots"
    program = [
        (Build("vectored", "vectored slot (bound at start-up)", work / "loop.vec", vec), slots),
        (Build("plt", "PLT (stock)", work / "loop.plt", stock), ".plt"),
        (Build("direct", "direct call", work / "loop.direct"), ".text"),
        (Build("prebound", "pre-bound slot, vectool group", work / "loop.prebound",
               work / groups["prebound"]), slots),
        (Build("prebound_near", "pre-bound slot, --near group", work / "loop.prebound_near",
               work / groups["prebound_near"]), slots),
        (Build("plt_nopie", "PLT (stock)", work / "loop.plt_nopie", stock), ".plt"),
    ]
    library = [
        (Build("lib_vectored", "vectored slot (bound at start-up)", work / "loop.shared",
               so["vec"]), slots),
        (Build("lib_prebound", "pre-bound slot, vectool group", work / "loop.shared",
               so["prebound"]), slots),
        (Build("lib_plt", "PLT (stock)", work / "loop.shared", so["plt"]), ".plt"),
        (Build("lib_direct", "direct call", work / "loop.shared", so["direct"]), ".text"),
    ]
    loops = [Loop(b, "program", b.program, "", check_call_lands_in(b.program, "ev_bench_step", s,
                                                                   caller="ev_loop_run"), s)
             for b, s in program]
    loops += [Loop(b, "library", b.libdir / LOOP_SONAME, LOOP_SONAME,
                   check_call_lands_in(b.libdir / LOOP_SONAME, "ev_bench_step", s,
                                       caller="ev_loop_run"), s)
              for b, s in library]
    return loops


def _vectool_loop_groups(work):
    """libstep.so built by vectool in two groups, the default region and
    ``--near``; {variant: the group's rpathdir, relative to ``work``}.
    Each group's files are in ``<rpathdir>/build``, its addrfile beside them."""
    groups = {"prebound": "rp", "prebound_near": "rp-near"}
    for name, rp in groups.items():
        (work / rp / "build").mkdir(parents=True)
        near = ["--near"] if name.endswith("near") else []
        tool("vectool", "--mode=lib", f"--addrfile={rp}/addrs", f"--rpathdir={rp}", *near, "gcc",
             "-shared", f"-Wl,-soname={STEP_SONAME}", "-o", f"{rp}/build/{STEP_SONAME}",
             "loop_fn.pic.o", cwd=work)
    return groups


def check_call_lands_in(program, function, section, caller="main"):
    """``caller``'s call of ``function`` in ``program`` (an executable or a
    library) must target ``section`` (or ``<section>.*``); returns the target.

    Guards the timing against measuring something else: a program impvec
    left unvectored, or a "direct" call that still goes through a PLT.
    """
    disassembly = run(["objdump", "-d", "--no-show-raw-insn", program], program.parent).stdout
    if f"<{caller}>:" not in disassembly:
        raise BenchError(f"{program}: no function {caller}")
    body = disassembly.split(f"<{caller}>:", 1)[1].split("\n\n", 1)[0]
    calls = re.findall(rf"call\s+([0-9a-f]+) <{re.escape(function)}(?:@plt)?>", body)
    if not calls:
        raise BenchError(f"{program}: {caller} does not call {function}")
    target = int(calls[0], 16)
    found = section_containing(program, target)
    if found is None or (found != section and not found.startswith(section + ".")):
        raise BenchError(f"{program}: {caller} calls {function} in {found}, not in {section}")
    return target
