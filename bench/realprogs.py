"""Debian's own programs rewritten (issue 3's benchmark), and the tools' own speed.

Each program of ``PROGRAMS`` (in /usr/bin) is rewritten as
tests/test_real_programs.py does: a .vec per library it imports functions
from (``vecstat --emit-vec LIB -o X.vec PROG``), each such library
retrovec'd, the program retroimp'd against them.  The test runs
``--emit-vec`` for every library of the closure and skips those that exit 1
with "no exported function of this library is used"; here one ``vecstat
PROG`` report names the libraries that can have a vector (the same ones),
which saves a command per other library.

Before and after run with LD_LIBRARY_PATH set to a directory of the same
libraries: unmodified copies for the stock program, the retrovec'd ones
for the rewritten program.  So both pay the same library search, and only
elfvector's changes differ.  The system's files are only read.

Measured per program, before and after: ld.so's symbol lookups at start-up
under LD_BIND_NOW=1 and its start-up time in cycles (both from
LD_DEBUG=statistics, the median of ``STARTUP_RUNS`` runs each, before and
after taking turns), callgrind's instructions for a whole ``--version``
run (as shipped: no LD_BIND_NOW), file sizes, vectored functions and
vectors.  Every run's output is compared with the system program's.
"""

import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from builds import ROOT, BenchError, clean_env, run, tool
from tooltimes import RUNS as TOOL_RUNS, best_of
from elfvector.ldso import Ldd

# program -> the argument that prints its version
PROGRAMS = {"sqlite3": "--version", "xz": "--version", "zstd": "-V", "jq": "--version",
            "curl": "--version", "git": "--version"}
LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6")
NOT_USED = "no exported function of this library is used"
STARTUP_RUNS = 15
RETROVEC_TARGET_S = 2.0        # retrovec of libc.so.6 with all its functions
RETROIMP_TARGET_S = 1.0        # retroimp of curl against the vectors of its libraries
CALLGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")
WORKERS = max(1, min(2, os.cpu_count() or 1))
SHT_NOBITS = 8


@dataclass
class RealProgram:
    name: str
    system: Path                    # /usr/bin/<name>, resolved
    work: Path
    libraries: list = field(default_factory=list)   # (soname, path) of the vectored ones
    vecs: list = field(default_factory=list)

    @property
    def argv(self):
        return [PROGRAMS[self.name]]

    @property
    def rewritten(self):
        return self.work / "bin" / self.name

    @property
    def stock_dir(self):
        return self.work / "stock"

    @property
    def lib_dir(self):
        return self.work / "lib"


def _run_checked(argv, env, what):
    """Run a measured program; a failure to start (ld.so, the binder) stops the benchmark."""
    proc = subprocess.run([str(a) for a in argv], capture_output=True, env=env)
    if proc.returncode == 127:
        raise BenchError(f"{what}: exit 127:\n{proc.stderr.decode(errors='replace').strip()}")
    return proc


def build(name, work):
    """vecstat, retrovec and retroimp for one program, in ``work``."""
    system = shutil.which(name, path="/usr/bin")
    if system is None:
        raise BenchError(f"/usr/bin/{name} is not installed (.ci/run installs it)")
    prog = RealProgram(name, Path(os.path.realpath(system)), work)
    for d in (work, prog.stock_dir, prog.lib_dir, prog.rewritten.parent):
        d.mkdir(parents=True)
    report = tool("vecstat", prog.system, cwd=work).stdout
    for label in (line for line in report.splitlines() if line and not line[0].isspace()):
        match = re.fullmatch(r"(\S+) \((.+)\)", label)
        if match is None:            # "unresolved"
            continue
        soname, path = match.groups()
        vec = work / f"{soname}.vec"
        proc = subprocess.run([*_tool_argv("vecstat"), "--emit-vec", path, "-o", vec, prog.system],
                              capture_output=True, text=True, cwd=work, env=clean_env())
        if proc.returncode == 1 and NOT_USED in proc.stderr:
            continue        # e.g. every function it uses is a default exclusion (malloc, ...)
        if proc.returncode != 0:
            raise BenchError(f"vecstat --emit-vec {path} {prog.system}: {proc.stderr.strip()}")
        tool("retrovec", "-o", prog.lib_dir / soname, vec, path, cwd=work)
        shutil.copy2(path, prog.stock_dir / soname)
        prog.libraries.append((soname, path))
        prog.vecs.append(vec)
    if not any(soname == "libc.so.6" for soname, _ in prog.libraries):
        raise BenchError(f"{name}: no vector for libc.so.6")
    tool("retroimp", "-o", prog.rewritten, "", *prog.vecs, prog.system, cwd=work,
         env=clean_env(prog.lib_dir))
    return prog


def _tool_argv(name):
    """``bin/<name>`` of this checkout with this Python, as builds.tool runs it."""
    return [sys.executable, str(ROOT / "bin" / name)]


def _relocations(path, pattern):
    out = run(["readelf", "-rW", path], Path(path).parent).stdout
    return len(re.findall(pattern, out))


def _version_runs(prog):
    """(system, before, after) runs of ``--version``: stdout, stderr and status."""
    system = _run_checked([prog.system, *prog.argv], clean_env(), f"{prog.name}")
    before = _run_checked([prog.system, *prog.argv], clean_env(prog.stock_dir), f"{prog.name}")
    after = _run_checked([prog.rewritten, *prog.argv], clean_env(prog.lib_dir),
                         f"rewritten {prog.name}")
    return system, before, after


def check_outputs(prog):
    """Before and after print the same as the system's program; returns its stdout."""
    system, before, after = _version_runs(prog)
    key = lambda p: (p.returncode, p.stdout, p.stderr)      # noqa: E731
    if not key(system) == key(before) == key(after):
        raise BenchError(f"{prog.name} {' '.join(prog.argv)}: the outputs differ:\n"
                         f"  system: {key(system)!r}\n  before: {key(before)!r}\n"
                         f"  after:  {key(after)!r}")
    if system.returncode != 0 or not system.stdout:
        raise BenchError(f"{prog.name} {' '.join(prog.argv)} exited {system.returncode} "
                         f"printing {system.stdout!r}")
    return system.stdout


def _statistics(program, argv, env, stdout, what):
    """One LD_DEBUG=statistics LD_BIND_NOW=1 run: (lookups, relative, cycles)."""
    proc = _run_checked([program, *argv], dict(env, LD_DEBUG="statistics", LD_BIND_NOW="1"), what)
    if proc.stdout != stdout:
        raise BenchError(f"{what}: printed {proc.stdout!r} under LD_DEBUG, not {stdout!r}")
    err = proc.stderr.decode(errors="replace")

    def number(label, unit=""):
        match = re.search(rf"^\s*\d+:\s+{label}: (\d+){unit}$", err, re.M)
        if match is None:
            raise BenchError(f"no '{label}' in LD_DEBUG=statistics of {what}")
        return int(match.group(1))

    return (number("number of relocations"), number("number of relative relocations"),
            number("total startup time in dynamic loader", " cycles"))


def startup_statistics(prog, stdout):
    """Lookups and ld.so cycles, before and after taking turns, ``STARTUP_RUNS`` each."""
    samples = {"before": [], "after": []}
    for _ in range(STARTUP_RUNS):
        samples["before"].append(_statistics(prog.system, prog.argv, clean_env(prog.stock_dir),
                                             stdout, prog.name))
        samples["after"].append(_statistics(prog.rewritten, prog.argv, clean_env(prog.lib_dir),
                                            stdout, f"rewritten {prog.name}"))
    result = {}
    for side, runs in samples.items():
        cycles = [r[2] for r in runs]
        result[side] = {"lookups": int(statistics.median(r[0] for r in runs)),
                        "lookups_seen": sorted({r[0] for r in runs}),
                        "relative_relocations": runs[0][1],
                        "cycles_median": int(statistics.median(cycles)),
                        "cycles_min": min(cycles), "cycles_max": max(cycles),
                        "cycles": cycles}
    return result


def instructions(program, argv, env, stdout, what):
    """Callgrind's instruction count of one whole run (user space, as in probes.instructions)."""
    proc = _run_checked([*CALLGRIND, program, *argv], env, what)
    if proc.stdout != stdout:
        raise BenchError(f"{what}: printed {proc.stdout!r} under callgrind, not {stdout!r}")
    match = re.search(r"Collected : (\d+)", proc.stderr.decode(errors="replace"))
    if match is None:
        raise BenchError(f"no callgrind summary for {what}:\n{proc.stderr.decode()}")
    return int(match.group(1))


def unsectioned_bytes(path):
    """File bytes of an ELF64 file that neither a section, the ELF header nor a header
    table covers: alignment and page padding, holes, tables no section describes any more."""
    data = Path(path).read_bytes()
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    ehsize, phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHHH", data, 0x34)
    ranges = [(0, ehsize), (phoff, phoff + phentsize * phnum), (shoff, shoff + shentsize * shnum)]
    for i in range(shnum):
        _, kind, _, _, offset, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        if kind != SHT_NOBITS and size:
            ranges.append((offset, offset + size))
    covered = end = 0
    for start, stop in sorted(ranges):
        start = max(start, end)
        if stop > start:
            covered, end = covered + stop - start, stop
    return len(data) - covered


def _sizes(prog):
    def files(paths):
        return {"bytes": sum(os.path.getsize(p) for p in paths),
                "unsectioned": sum(unsectioned_bytes(p) for p in paths)}

    stock = [prog.stock_dir / soname for soname, _ in prog.libraries]
    vectored = [prog.lib_dir / soname for soname, _ in prog.libraries]
    return {"program": {"before": files([prog.system]), "after": files([prog.rewritten])},
            "libraries": {"before": files(stock), "after": files(vectored)}}


def _vec_slots(vec):
    lines = [line.split("#", 1)[0].strip() for line in vec.read_text().splitlines()[1:]]
    return sum(1 for line in lines if line)


def _closure_size(program):
    """How many libraries ld.so loads for ``program`` (ld-linux included)."""
    linkmap = Ldd().linkmap(str(program))
    return len(linkmap.objects) - 1 + (linkmap.rtld not in linkmap.objects)


def measure(work):
    """Build every program (two at a time), check, then measure; returns the results dict."""
    work.mkdir(parents=True)
    with ThreadPoolExecutor(WORKERS) as pool:
        progs = list(pool.map(lambda name: build(name, work / name), PROGRAMS))
    outputs = {p.name: check_outputs(p) for p in progs}
    # Instruction counts do not depend on the machine's load: two at a time.
    jobs = [(p, side) for p in progs for side in ("before", "after")]

    def count(job):
        p, side = job
        if side == "before":
            return instructions(p.system, p.argv, clean_env(p.stock_dir), outputs[p.name], p.name)
        return instructions(p.rewritten, p.argv, clean_env(p.lib_dir), outputs[p.name],
                            f"rewritten {p.name}")

    with ThreadPoolExecutor(WORKERS) as pool:
        counted = dict(zip(((p.name, side) for p, side in jobs), pool.map(count, jobs)))
    results = {}
    for p in progs:
        # Timing: one run at a time.
        startup = startup_statistics(p, outputs[p.name])
        jump_slots = (_relocations(p.system, "R_X86_64_JUMP_SLOT"),
                      _relocations(p.rewritten, "R_X86_64_JUMP_SLOT"))
        vectors = _relocations(p.rewritten, r"R_X86_64_GLOB_DAT\s.*__V_")
        results[p.name] = {
            "argv": p.argv,
            "output": outputs[p.name].decode(errors="replace").splitlines()[0],
            "libraries_loaded": _closure_size(p.system),
            "libraries_vectored": [soname for soname, _ in p.libraries],
            "vec_slots": sum(_vec_slots(v) for v in p.vecs),
            "jump_slots": {"before": jump_slots[0], "after": jump_slots[1]},
            "vectored_functions": jump_slots[0] - jump_slots[1],
            "vectors": vectors,
            "lookups": {side: startup[side]["lookups"] for side in ("before", "after")},
            "startup": startup,
            "instructions": {side: counted[(p.name, side)] for side in ("before", "after")},
            "bytes": _sizes(p),
        }
    return results, {p.name: p for p in progs}


def tool_times(work, progs):
    """retrovec of libc.so.6 with every function (and with vecstat's default exclusions),
    and retroimp of curl against its vectors; best of TOOL_RUNS each."""
    work.mkdir(parents=True)
    programs = [p.system for p in progs.values()]
    # Every function: what the target asks for (and the design's "all 2822 functions").
    vec = work / "libc.so.6.all.vec"
    tool("vecstat", "--emit-vec", LIBC, "--all", "--no-default-excludes", "-o", vec, *programs,
         cwd=work)
    retrovec = best_of([*_tool_argv("retrovec"), "-o", work / "libc.so.6", vec, LIBC],
                        clean_env(), work)
    # vecstat --all as it is (malloc, free, ..., pthread_* left out by default).
    vec_default = work / "libc.so.6.all-default.vec"
    tool("vecstat", "--emit-vec", LIBC, "--all", "-o", vec_default, *programs, cwd=work)
    retrovec_default = best_of([*_tool_argv("retrovec"), "-o", work / "libc.so.6.default",
                                 vec_default, LIBC], clean_env(), work)
    # The result must be a working libc: the system's curl runs on it unchanged.
    curl = progs["curl"]
    stock_run = _run_checked([curl.system, *curl.argv], clean_env(), "curl")
    on_it = _run_checked([curl.system, *curl.argv], clean_env(work), "curl on the retrovec'd libc")
    if (on_it.returncode, on_it.stdout) != (stock_run.returncode, stock_run.stdout):
        raise BenchError("curl --version prints something else on libc.so.6 retrovec'd --all")
    retroimp = best_of([*_tool_argv("retroimp"), "-o", work / "curl", "", *curl.vecs, curl.system],
                        clean_env(curl.lib_dir), work)
    return {
        "retrovec_libc_all": dict(retrovec, slots=_vec_slots(vec),
                                  target_s=RETROVEC_TARGET_S,
                                  bytes={"before": os.path.getsize(LIBC),
                                         "after": os.path.getsize(work / "libc.so.6")},
                                  unsectioned={"before": unsectioned_bytes(LIBC),
                                               "after": unsectioned_bytes(work / "libc.so.6")}),
        "retrovec_libc_all_default_excludes": dict(retrovec_default, slots=_vec_slots(vec_default)),
        "retroimp_curl": dict(retroimp, vectors=len(curl.vecs),
                              slots=sum(_vec_slots(v) for v in curl.vecs),
                              target_s=RETROIMP_TARGET_S),
        "runs": TOOL_RUNS,
    }
