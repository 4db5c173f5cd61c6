"""The elfvector benchmark (``make bench``): start-up cost, bytes, call cost.

Start-up: a generated library of 3000 functions and a program calling
each once, built five ways -- (1) stock lazy, (2) stock ``-z now``, (3)
``-fno-plt -z now``, (4) vectored (expvec + ``impvec --link``), (5) the
library's objects archived and linked into the program, the limit.  For
each: callgrind's instruction count of a whole run, ld.so's symbol lookups
(``LD_DEBUG=statistics``) and the program's linkage bytes; and the
library's linkage bytes stock and vectored.

Call cost: one library function called in a tight loop through a vectored
slot, through the PLT, and directly (linked into the caller), timed by
the program itself; the caller is the program (the slot is far from the
library: an absolute jump) or a shared library (near: ``jmp rel32``).  How
each slot was bound is read from inside the running process.

Real programs (issue 3): sqlite3, xz, zstd, jq, curl and git rewritten
with vecstat, retrovec and retroimp (see realprogs.py): symbol lookups,
ld.so start-up cycles, instructions and file sizes before and after, and
the tools' own wall time (retrovec of all of libc, retroimp of curl).

The tools at scale (issue 7, see tooltimes.py): expvec, impvec, retrovec
and retroimp at 1,000, 10,000 and 30,000 functions, every command's fixed
cost (--version to exit), and vecstat over all of /usr/bin.

A vectool group (issue 4, see vectoolbench.py): five libraries with
2000 relative relocations each, built with vectool (fixed bases, vectors,
relvec; also PIE, --near and --no-relvec) and stock from the same objects:
symbol lookups, relative relocations, ld.so start-up cycles, instructions
and private dirty memory at the start of main.

Whole closures (issue 8, see closurebench.py): curl, git, sqlite3, jq,
python3, cmake and gdb rewritten with ``vectool --mode=retro`` (all into one
DIR, and each alone) against stock, as shipped and with LD_BIND_NOW=1:
behaviour, symbol lookups, instructions, CPU time by
../shared/tools/startup-compare's method, mmap/mprotect, faults, peak RSS,
Private_Dirty, libc off its base, and the floor every run pays.

All builds must print the output computed independently in Python (the
real programs: what the system's program prints), or the benchmark stops
(exit 1).  The issues' targets are printed PASS, FAIL, or "open (issue N)"
for an issue not landed yet (report.OPEN_ISSUES), with their numbers.  The
exit status is 1 when the benchmark could not run or a target of a landed
issue was missed.  Results go to bench/results/bench-<date>.json and
latest.json, with the benchmark's own run time.
"""

import os
import shutil
import statistics
from contextlib import contextmanager
import sys
import time
from pathlib import Path

import builds
import closurebench
import gensrc
import portsbench
import probes
import realprogs
import report
import tooltimes
import vectoolbench

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
RESULTS = HERE / "results"
FUNCTIONS = 3000
LOOP_CALLS = 20_000_000
LOOP_REPS = 3
LOOP_ROUNDS = 15
PREBOUND_SIZES = (3000, 30000)
FEW_IMPORTS = 8
REQUIRED_TOOLS = ("gcc", "ar", "as", "objdump", "readelf", "valgrind", "strace")


def check_tools():
    """Stop at once, naming what is missing, rather than halfway through the builds."""
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        raise builds.BenchError(f"missing tools: {' '.join(missing)}")


def measure_startup(work):
    """Build the five programs, check their output, measure each."""
    expected = gensrc.expected_output(FUNCTIONS)
    startup = builds.build_startup(work, FUNCTIONS)
    probes.check_outputs(startup, expected)
    by_key = {b.key: b for b in startup}
    slots = probes.slot_accounting(by_key["vectored"], by_key["lazy"])
    if slots["slots"] != FUNCTIONS:
        raise builds.BenchError(f"the vectored program has {slots['slots']} slots, "
                                f"not {FUNCTIONS}: impvec kept some functions bound by name")
    linkage = probes.program_linkage(startup)
    return {
        "functions": FUNCTIONS,
        "output": expected.strip(),
        "builds": {b.key: {"title": b.title,
                           "instructions": probes.instructions(b, expected),
                           "symbol_lookups": probes.symbol_lookups(b, expected),
                           "linkage_bytes": linkage[b.key]} for b in startup},
        "vectored_slots": slots,
        "library_linkage_bytes": probes.library_linkage(
            by_key["lazy"].libdir / builds.SONAME, by_key["vectored"].libdir / builds.SONAME,
            builds.vector_name(by_key["vectored"].libdir, builds.SONAME)),
    }


def measure_prebound(work):
    """Issue 9's start-up builds at each of PREBOUND_SIZES: callgrind's
    instructions of every build, the pre-bound ones checked to bind
    nothing; and the import bytes of a program with FEW_IMPORTS imports."""
    result = {}
    for n in PREBOUND_SIZES:
        expected = gensrc.expected_output(n)
        group = builds.build_prebound(work / f"n{n}", n)
        probes.check_outputs(group, expected)
        for b in group:
            if b.key.startswith("prebound"):
                probes.check_prebound(b, expected)
        result[str(n)] = {b.key: probes.instructions(b, expected) for b in group}
    result["few_imports"] = measure_few_imports(work / "few")
    return result


def measure_few_imports(work):
    """A program importing FEW_IMPORTS functions, stock and vectored: the
    bytes its imports take, and the binder's code (the growth of .text)."""
    by_key = {b.key: b for b in builds.build_startup(work, FEW_IMPORTS)}
    probes.check_outputs(list(by_key.values()), gensrc.expected_output(FEW_IMPORTS))
    stock, vectored = by_key["lazy"], by_key["vectored"]
    return {"imports": FEW_IMPORTS, "stock_bytes": probes.import_bytes(stock),
            "vectored_bytes": probes.import_bytes(vectored),
            "binder_text_bytes": probes.text_bytes(vectored) - probes.text_bytes(stock)}


def measure_calls(work):
    """Build the call loops, check how their slots are bound, time them:
    the median of the rounds per build, and every round."""
    loops = builds.build_loops(work)
    binding = {loop.build.key: probes.slot_binding(
                   loop, (loop.build.libdir / builds.STEP_SONAME).resolve(), "ev_bench_step")
               for loop in loops if loop.is_slot}
    checksum = gensrc.expected_loop_checksum(LOOP_CALLS, LOOP_REPS)
    runs = probes.ns_per_call([loop.build for loop in loops], LOOP_CALLS, LOOP_REPS,
                              LOOP_ROUNDS, checksum)
    medians = {key: round(statistics.median(values), 4) for key, values in runs.items()}
    return dict(medians, calls=LOOP_CALLS, reps=LOOP_REPS, rounds=LOOP_ROUNDS, runs=runs,
                slot_binding=binding)


@contextmanager
def timing(parts, name):
    """Record the wall seconds of one part of the benchmark in ``parts``."""
    started = time.monotonic()
    yield
    parts[name] = round(time.monotonic() - started)


def main():
    started = time.monotonic()
    try:
        check_tools()
        shutil.rmtree(WORK, ignore_errors=True)
        results = report.machine_info()
        parts = results["part_wall_s"] = {}
        with timing(parts, "startup"):
            results.update(measure_startup(WORK / "startup"))
        with timing(parts, "prebound"):
            results["prebound"] = measure_prebound(WORK / "prebound")
        with timing(parts, "calls"):
            results["ns_per_call"] = measure_calls(WORK / "loop")
        with timing(parts, "real_programs"):
            results["real_programs"], programs = realprogs.measure(WORK / "real")
            results["tool_times"] = realprogs.tool_times(WORK / "tools", programs)
        with timing(parts, "tool_scaling"):
            results["tool_scaling"] = tooltimes.measure(WORK / "scaling")
        with timing(parts, "vectool_group"):
            results["vectool_group"] = vectoolbench.measure(WORK / "vectool")
        with timing(parts, "closure"):
            results["closure"] = closurebench.measure(WORK / "closure")
        with timing(parts, "ports"):
            results["ports"] = portsbench.measure(WORK / "ports", FUNCTIONS)
        results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    except (builds.BenchError, portsbench.BenchError) as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    results["targets"] = report.evaluate_targets(results)
    results["bench_wall_s"] = round(time.monotonic() - started)
    report.print_report(results)
    saved = report.save_results(results, RESULTS)
    print(f"results: {saved.relative_to(HERE.parent)} (and latest.json), "
          f"{results['bench_wall_s']} s: "
          + ", ".join(f"{name} {s} s" for name, s in results["part_wall_s"].items()))
    failed = report.missed(results["targets"])
    if failed:
        print(f"bench: {len(failed)} target(s) of landed issues missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
