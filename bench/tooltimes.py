"""The tools' own time (issue 7, item 9): how they scale, and what a run costs before any work.

Scaling: the generated library of ``n`` functions and the program calling
each (gensrc.py), for n in SIZES, through the four commands that handle
every function: expvec (the library's link, wrapped), impvec --link (the
program's link, wrapped), retrovec (the stock library) and retroimp (the
stock program).  Beside them the plain links they wrap, so that the
tools' own share shows.  Every vectored program must print what gensrc
computes, or the benchmark stops: a fast wrong tool is no result.  The
sources are compiled at -O0: the tools read symbols and relocations, which
do not depend on the optimization level, and 30,000 functions at -O2 take
minutes to compile.

Fixed cost: ``bin/<cmd> --version`` to exit, for every command.

vecstat over all of /usr/bin: the speed of the frequency report on a
whole distribution's programs (scripts and all, which it skips).

Every time is the best of RUNS runs of the whole command (Python start-up
included): CPU time (user + system, with the programs it runs), which the
targets judge, and wall time, which a loaded machine inflates.
"""

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import gensrc
from builds import ROOT, BenchError, clean_env, run

SIZES = (1000, 10000, 30000)
RUNS = 3
FIXED_RUNS = 5
COMMANDS = ("expvec", "impvec", "retrovec", "retroimp", "vecstat", "recovervec", "vectool")
SCALED = ("expvec", "impvec", "retrovec", "retroimp")
SONAME = "libbench.so"
TOOL_TARGET_S = 3.0          # each scaled command at the largest size
FIXED_COST_TARGET_S = 0.3    # --version to exit
LINEAR_RATIO_MAX = 4.0       # time(30,000) / time(10,000): 3 if linear, 9 if quadratic
VECSTAT_USR_BIN_TARGET_S = 15.0


def tool_argv(name, *args):
    """``bin/<name>`` of this checkout with this Python, as the README runs it."""
    return [sys.executable, str(ROOT / "bin" / name), *map(str, args)]


def timed(argv, env, cwd):
    """Wall seconds of one run of ``argv`` and the CPU seconds (user + system) it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env,
                          cwd=cwd, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def best_of(argv, env, cwd, runs=RUNS):
    """The best wall and CPU times of ``runs`` runs, and every run's.

    The verdicts use the CPU time (user + system, of the command and of the
    programs it waits for, such as the linker): it is what the command costs,
    whatever else the machine runs.  On an idle machine the two agree, these
    commands being sequential; on a loaded one the wall time is inflated by
    the wait for a core, which the record shows beside it.
    """
    times = [timed(argv, env, cwd) for _ in range(runs)]
    return {"best_cpu_s": round(min(cpu for _, cpu in times), 3),
            "best_wall_s": round(min(wall for wall, _ in times), 3),
            "cpu_s": [round(cpu, 3) for _, cpu in times],
            "wall_s": [round(wall, 3) for wall, _ in times]}


def _compile(work, n):
    """lib.o (PIC) and prog.o for ``n`` functions, the stock library and program."""
    work.mkdir(parents=True)
    (work / "lib.c").write_text(gensrc.library_source(n))
    (work / "prog.c").write_text(gensrc.program_source(n))
    jobs = [subprocess.Popen(["gcc", "-O0", *flags, "-c", src, "-o", obj], cwd=work)
            for src, obj, flags in (("lib.c", "lib.o", ["-fPIC"]), ("prog.c", "prog.o", []))]
    if any(job.wait() != 0 for job in jobs):
        raise BenchError(f"compiling the {n}-function sources failed")
    for d in ("stock", "vec", "retro"):
        (work / d).mkdir()


def _argv(n):
    """The commands timed at one size, and the plain links they wrap."""
    lib_link = ["gcc", "-shared", f"-Wl,-soname={SONAME}"]
    return {
        "link_library": [*lib_link, "-o", f"stock/{SONAME}", "lib.o"],
        "link_program": ["gcc", "-o", "prog.stock", "prog.o", f"stock/{SONAME}"],
        "expvec": tool_argv("expvec", "--vec", "lib.vec", "--vec-object", "lib.vec.o", ".", "",
                            "", *lib_link, "-o", f"vec/{SONAME}", "lib.o"),
        "impvec": tool_argv("impvec", "--link", "", "lib.vec", "gcc", "-o", "prog.vec", "prog.o",
                            f"vec/{SONAME}"),
        "retrovec": tool_argv("retrovec", "-o", f"retro/{SONAME}", "lib.vec", f"stock/{SONAME}"),
        "retroimp": tool_argv("retroimp", "-L", "retro", "-o", "prog.retro", "", "lib.vec",
                              "prog.stock"),
    }


def _check_programs(work, n):
    """Both vectored programs print what gensrc computes, on their vectored libraries."""
    expected = gensrc.expected_output(n)
    for program, libdir in (("prog.vec", "vec"), ("prog.retro", "retro")):
        proc = run([work / program], work, clean_env(work / libdir))
        if proc.stdout != expected:
            raise BenchError(f"{work / program} printed {proc.stdout.strip()}, "
                             f"not {expected.strip()}")


def _slots(vec):
    return sum(1 for line in vec.read_text().splitlines()
               if line.strip() and not line.startswith(("#", "__V_")))


def scaling(work):
    """Each command (and plain link) at each size: best wall time and its CPU time."""
    results = {}
    for n in SIZES:
        size_dir = work / str(n)
        _compile(size_dir, n)
        env = clean_env()
        sizes = {}
        for name, argv in _argv(n).items():    # in order: each step needs the one before
            sizes[name] = best_of(argv, env, size_dir)
        slots = _slots(size_dir / "lib.vec")
        if slots != n:
            raise BenchError(f"expvec put {slots} functions in the vector, not {n}")
        _check_programs(size_dir, n)
        results[str(n)] = sizes
    return results


def fixed_costs(work):
    """``bin/<cmd> --version`` to exit, best of FIXED_RUNS, for every command."""
    work.mkdir(parents=True, exist_ok=True)
    return {name: best_of(tool_argv(name, "--version"), clean_env(), work, FIXED_RUNS)
            for name in COMMANDS}


def vecstat_usr_bin(work):
    """vecstat over every file of /usr/bin (moved here from the tests: a timing, not a check)."""
    files = sorted(str(p) for p in Path("/usr/bin").iterdir())
    result = best_of(tool_argv("vecstat", "-o", work / "usr-bin.txt", *files), clean_env(), work)
    return dict(result, files=len(files))


def measure(work):
    work.mkdir(parents=True)
    return {"sizes": list(SIZES), "runs": RUNS, "scaling": scaling(work / "scaling"),
            "fixed_costs": fixed_costs(work), "vecstat_usr_bin": vecstat_usr_bin(work),
            "cpus": os.cpu_count()}
