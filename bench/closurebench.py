"""Issue 8's figures: seven Debian programs rewritten with their whole closure
by ``vectool --mode=retro``, against the stock programs, side by side.

curl, git, sqlite3, jq, python3, cmake and gdb are rewritten by the command
a user runs (``bin/vectool --mode=retro --seed SEED``): all seven into one
output directory (``shared``, one DIR/lib for all, as a user would keep it),
and each alone into its own (``alone``: no other program's conflicts).  As
installed over /usr/bin, cmake and gdb find their data in ../share beside
their executable, so each DIR/share links to /usr/share, as the closure
tests do.  Every variant runs as shipped and with LD_BIND_NOW=1:

- behaviour: each workload (--version, error paths, a little real work)
  gives stock's stdout, stderr and exit status, or the benchmark stops;
  so does every measured run that can be checked;
- symbol lookups: LD_DEBUG=statistics's start-up "number of relocations"
  and exit "final number" (which counts what the program dlopens later,
  outside the closure: curl's SASL plugins), and the lookups of the vDSO
  among them (ld.so's vDSO set-up and the IFUNC resolvers of time() and
  gettimeofday(), which no file holds);
- callgrind instructions of --version, and ld.so's own share of them;
- CPU and wall time, minor faults of --version by the method of
  ../shared/tools/startup-compare (its functions, imported by path, in a
  small process of their own: see Pairs; at least PAIRS_MIN interleaved
  pairs, the median of per-pair ratios and its quartiles);
- mmap + mprotect calls (startup-compare's strace -f -c);
- peak RSS, from a small static launcher: a child forked from Python keeps
  Python's RSS as its peak (about 10 MiB), which hides most programs';
- Private_Dirty of a process waiting (python3 sleeping, the others reading
  an idle pipe), from /proc/PID/smaps_rollup;
- libc off its base: a library linked at libc's base is preloaded (as
  tests/test_closure_programs.py does), so every object's fix-up runs; the
  behaviour again, instructions, and CPU against stock with the same
  preload;
- the floor: the same CPU and fault method on a static ``int main(){return
  0;}`` and on /usr/bin/true, what a run costs before any linking.

report.py judges the issue's targets from the record; :func:`report_lines`
prints it.
"""

import importlib.machinery
import importlib.util
import json
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import textwrap
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from builds import ROOT, BenchError, run, tool

PROGRAMS = ("curl", "git", "sqlite3", "jq", "python3", "cmake", "gdb")
SEED = 8
PAIRS_MIN = 100                 # interleaved pairs per CPU comparison (the issue: >= 100),
PAIRS_MAX = 1000                #   more for quick programs, up to this many, so that each
PAIR_BUDGET_S = 4.0             #   comparison takes about this long (the median's noise
                                #   falls as 1/sqrt(pairs); a 3 ms program's IQR is ~20%)
DIRTY_RUNS = 5                  # waiting processes per program, side and mode
RSS_RUNS = 60                   # launcher runs per program, side and mode
MODES = {"shipped": {}, "bind_now": {"LD_BIND_NOW": "1"}}
WORKERS = max(1, min(2, os.cpu_count() or 1))
STARTUP_COMPARE = ROOT.parent / "shared" / "tools" / "startup-compare"
REQUIRED_TOOLS = ("valgrind", "strace", "gcc")
BLOCKED = "libc.so.6"           # the library pushed off its base
TIMEOUT_S = 120
#: the variable that makes a program load nothing outside its closure at run time
#: (curl: libsasl2 dlopens its plugins from SASL_PATH), for figures apart, not judged
WITHOUT_PLUGINS = {"curl": "SASL_PATH"}

DATA = {"hello.txt": "hello, world\n",
        "doc.json": '{"a": {"b": [1, 2, 3]}, "name": "retro"}\n',
        "script.cmake": 'set(w alpha beta)\nlist(REVERSE w)\nmath(EXPR n "6 * 7")\n'
                        'message(STATUS "${w} ${n}")\n'}

#: program -> the workloads compared with stock (the first is --version)
WORKLOADS = {
    "curl": (["--version"], ["--bogus-option"], ["-sS", "file://{data}/hello.txt"],
             ["-sS", "file:///nonexistent/file"]),
    "git": (["--version"], ["bogus"], ["hash-object", "{data}/hello.txt"]),
    "sqlite3": (["--version"], ["-bogus"], [":memory:", "select 6 * 7, sqlite_version();"],
                [":memory:", "select * from nope;"]),
    "jq": (["--version"], ["--bogus"], [".a.b | map(. * 10)", "{data}/doc.json"],
           ["-n", 'error("boom")']),
    "python3": (["--version"], ["--bogus"], ["-c", "1/0"],
                ["-c", "import json, ssl, zlib; print(json.dumps([ssl.OPENSSL_VERSION, "
                       "zlib.crc32(b'x')]))"]),
    "cmake": (["--version"], ["--bogus"], ["-P", "{data}/script.cmake"],
              ["-E", "echo", "hello"], ["-E", "bogus"]),
    "gdb": (["--version"], ["-nx", "-batch", "-ex", "print 1 + 2"],
            ["-nx", "-batch", "-ex", "bogus-command"]),
}

#: program -> (arguments that make it wait, how it is ended: "eof" on its
#: standard input, or "kill")
WAITING = {"curl": (["-K", "-"], "eof"), "git": (["hash-object", "--stdin"], "eof"),
           "sqlite3": ([":memory:"], "eof"), "jq": (["."], "eof"),
           "python3": (["-c", "import time; time.sleep(600)"], "kill"),
           "cmake": (["-P", "/dev/stdin"], "eof"), "gdb": (["-nx", "-q"], "eof")}
#: system calls a waiting process sits in: read (of the pipe), poll, select,
#: nanosleep, clock_nanosleep, pselect6, ppoll
WAIT_SYSCALLS = {0, 7, 23, 35, 230, 270, 271}

LAUNCHER_C = r"""/* launcher RUNS PROGRAM ARG...: run PROGRAM RUNS times (stdio on /dev/null,
   the environment inherited); per run print its peak RSS (KiB), minor faults and
   exit status.  Static and small, so that a child's peak RSS, which starts at
   its parent's, is the program's own. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int runs = argc > 2 ? atoi(argv[1]) : 0;
    for (int i = 0; i < runs; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            int fd = open("/dev/null", O_RDWR);
            dup2(fd, 0), dup2(fd, 1), dup2(fd, 2);
            execv(argv[2], argv + 2);
            _exit(127);
        }
        int status;
        struct rusage ru;
        if (pid < 0 || wait4(pid, &status, 0, &ru) < 0)
            return 1;
        printf("%ld %ld %d\n", ru.ru_maxrss, ru.ru_minflt,
               WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    }
    return runs > 0 ? 0 : 2;
}
"""
EMPTY_C = "int main(void) { return 0; }\n"

#: startup-compare's main() loop, pairs only: 3 warm-up pairs, then the pairs in
#: alternating order, as many as fit the budget (by the warm-up's wall time)
#: within the bounds; one JSON job a line in, the pairs' runs a line out.
PAIR_WORKER = r"""
import importlib.machinery, importlib.util, json, sys, time
loader = importlib.machinery.SourceFileLoader("startup_compare", sys.argv[1])
sc = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
loader.exec_module(sc)
for line in sys.stdin:
    job = json.loads(line)
    stock, new, env_s, env_n = job["stock"], job["new"], job["env_stock"], job["env_new"]
    t0 = time.perf_counter()
    for _ in range(3):
        sc.run_once(stock, env_s), sc.run_once(new, env_n)
    per_pair = (time.perf_counter() - t0) / 3
    pairs = int(min(job["max"], max(job["min"], job["budget_s"] / per_pair)))
    runs = []
    for i in range(pairs):
        if i % 2 == 0:
            s, n = sc.run_once(stock, env_s), sc.run_once(new, env_n)
        else:
            n, s = sc.run_once(new, env_n), sc.run_once(stock, env_s)
        runs.append((s, n))
    print(json.dumps(runs), flush=True)
"""


def load_startup_compare():
    """../shared/tools/startup-compare as a module (it has no .py suffix)."""
    if not STARTUP_COMPARE.is_file():
        raise BenchError(f"{STARTUP_COMPARE} is missing: the issue's CPU method is its own")
    loader = importlib.machinery.SourceFileLoader("startup_compare", str(STARTUP_COMPARE))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


class Setup:
    """Where everything is: the rewritten directories, the helpers, the data."""

    def __init__(self, work):
        self.work = work
        self.shared = work / "shared"
        self.data = work / "data"
        self.home = work / "home"
        self.launcher = work / "launcher"
        self.empty = work / "empty"
        self.blocker = work / "blocker.so"

    def alone(self, program):
        return self.work / "alone" / program

    def executable(self, program, variant):
        """The file a variant runs: stock, shared or alone (moved: shared)."""
        if variant.startswith("stock"):
            return Path("/usr/bin") / program
        top = self.alone(program) if variant == "alone" else self.shared
        return top / "bin" / program

    def env(self, mode, variant=None, **extra):
        """A fixed environment, no LD_* of ours; the blocker preloaded for a moved variant."""
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.home), "LANG": "C.UTF-8",
               "LC_ALL": "C.UTF-8", "TZ": "UTC", "GIT_CONFIG_NOSYSTEM": "1",
               **MODES[mode], **extra}
        if variant in ("moved", "stock_moved"):
            env["LD_PRELOAD"] = str(self.blocker)
        return env


# -- rewriting ---------------------------------------------------------------------------

def rewrite(outdir, programs):
    """``vectool --mode=retro`` into ``outdir``: its --json report, wall and CPU seconds."""
    outdir.mkdir(parents=True)
    report = outdir.parent / f"{outdir.name}.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    tool("vectool", "--mode=retro", f"--addrfile={outdir.parent / (outdir.name + '.addrs')}",
         f"--outdir={outdir}", f"--seed={SEED}", f"--json={report}",
         *[f"/usr/bin/{p}" for p in programs], cwd=outdir.parent)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    (outdir / "share").symlink_to("/usr/share")
    result = json.loads(report.read_text())
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return result, round(wall, 2), round(cpu, 2)


def summary_of(report, wall, cpu):
    """What the record keeps of a retro run: its programs' lookups, sizes and time."""
    objects = report["objects"]
    return {"wall_s": wall, "cpu_s": cpu, "objects": len(objects),
            "loads_added": sum(o["loads_after"] - o["loads_before"] for o in objects),
            "notes": [n for o in objects for n in o["notes"]],
            "programs": {os.path.basename(p): v for p, v in report["programs"].items()}}


def rewrite_all(setup):
    """The shared directory, then each program alone (two at a time)."""
    report, wall, cpu = rewrite(setup.shared, PROGRAMS)
    with ThreadPoolExecutor(WORKERS) as pool:
        alone = list(pool.map(lambda p: rewrite(setup.alone(p), [p]), PROGRAMS))
    libc = next(o for o in report["objects"] if o["output"].endswith("/" + BLOCKED))
    files = {o[key] for r in [report] + [a[0] for a in alone] for o in r["objects"]
             for key in ("source", "output")}
    return ({"shared": summary_of(report, wall, cpu),
             "alone": {p: summary_of(*a) for p, a in zip(PROGRAMS, alone)}},
            libc["base"], sorted(files))


def evict(paths):
    """Drop these files' pages from the page cache (written back first), so that
    stock and rewritten files are read back alike, by the runs' own faults.  A
    file just written sits in the cache in large folios, which fault-around maps
    whole: fewer faults and more RSS than the same bytes read back (python3's
    peak RSS was 3456 KiB fresh, 2984 read back, stock about 2950).  Pages other
    processes map (the system's libc) stay: they are as hot as the system keeps
    them."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def build_helpers(setup, libc_base):
    """The launcher and the empty program (static), the blocker at libc's base."""
    for name, text in (("launcher", LAUNCHER_C), ("empty", EMPTY_C)):
        (setup.work / f"{name}.c").write_text(text)
        run(["gcc", "-O2", "-static", "-o", name, f"{name}.c"], setup.work)
    run(["gcc", "-O2", "-fPIC", "-shared", "-o", setup.blocker,
         ROOT / "testdata" / "retro" / "blocker.c", f"-Wl,-Ttext-segment={libc_base:#x}"],
        setup.work)
    for d in (setup.data, setup.home, setup.work / "no-plugins"):
        d.mkdir()
    for name, text in DATA.items():
        (setup.data / name).write_text(text)


# -- behaviour ---------------------------------------------------------------------------

def outcome(setup, program, variant, mode, args):
    """(stdout, stderr, exit status) of one run, argv[0] the program's name."""
    argv = [program] + [a.replace("{data}", str(setup.data)) for a in args]
    proc = subprocess.run(argv, executable=setup.executable(program, variant), cwd=setup.data,
                          env=setup.env(mode, variant), capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=TIMEOUT_S)
    return proc.stdout, proc.stderr, proc.returncode


def differs(what, stock, got):
    """A BenchError saying how a run differs from stock."""
    parts = [f"{name}: stock {a!r:.300} vs {b!r:.300}"
             for name, a, b in zip(("stdout", "stderr", "exit status"), stock, got) if a != b]
    return BenchError(f"{what} differs from stock: " + "; ".join(parts))


def check_behaviour(setup):
    """Every workload of every variant and mode gives stock's outcome; the runs compared."""
    runs = 0
    for program, workloads in WORKLOADS.items():
        for mode in MODES:
            for args in workloads:
                stock = outcome(setup, program, "stock", mode, args)
                for variant in ("shared", "alone", "moved"):
                    got = outcome(setup, program, variant, mode, args)
                    if got != stock:
                        raise differs(f"{variant} {program} {' '.join(args)} ({mode})", stock, got)
                    runs += 1
    return {"workloads": sum(len(w) for w in WORKLOADS.values()), "runs_compared": runs}


def load_bias(setup, program, variant):
    """How far from its link address ld.so put libc (LD_DEBUG=files's "base"; the
    file named by its soname, or by its path when it is needed by path)."""
    env = setup.env("shipped", variant, LD_DEBUG="files")
    err = subprocess.run([setup.executable(program, variant), "--version"], env=env,
                         capture_output=True, text=True, errors="replace").stderr
    found = re.search(rf"file=(?:\S*/)?{re.escape(BLOCKED)} \[0\];  generating link map\n"
                      r".*base: 0x([0-9a-f]+)", err)
    if found is None:
        raise BenchError(f"{variant} {program}: LD_DEBUG=files names no {BLOCKED}")
    return int(found.group(1), 16)


# -- lookups and instructions --------------------------------------------------------------

def ld_statistics(setup, program, variant, mode, stdout):
    """LD_DEBUG=statistics,bindings of --version: lookups at start-up and at exit,
    relative relocations, and the start-up lookups of the vDSO."""
    argv = [setup.executable(program, variant), "--version"]
    proc = subprocess.run(argv, env=setup.env(mode, variant, LD_DEBUG="statistics,bindings"),
                          capture_output=True, timeout=TIMEOUT_S)
    if proc.stdout != stdout:
        raise BenchError(f"{variant} {program} --version under LD_DEBUG ({mode}) printed "
                         f"{proc.stdout!r:.200}")
    return parse_statistics(proc.stderr.decode(errors="replace"))


def parse_statistics(err):
    """The figures of an LD_DEBUG=statistics,bindings log (see :func:`ld_statistics`)."""
    startup = re.search(r"^\s*\d+:\s+number of relocations:\s*(\d+)$", err, re.M)
    final = re.findall(r"final number of relocations:\s*(\d+)", err)
    relative = re.search(r"number of relative relocations:\s*(\d+)", err)
    if not (startup and final and relative):
        raise BenchError(f"no LD_DEBUG=statistics figures in:\n{err[-500:]}")
    vdso = len(re.findall(r"binding file linux-vdso\.so\.1 ", err[:startup.start()]))
    return {"startup": int(startup.group(1)), "final": int(final[-1]),
            "relative": int(relative.group(1)), "vdso": vdso}


def callgrind(setup, program, variant, mode, stdout, plugins=True):
    """Callgrind's instructions of --version: the total and ld.so's own."""
    out = setup.work / "callgrind" / f"{program}.{variant}.{mode}.{plugins}"
    out.parent.mkdir(exist_ok=True)
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            setup.executable(program, variant), "--version"]
    extra = {} if plugins else {WITHOUT_PLUGINS[program]: str(setup.work / "no-plugins")}
    proc = subprocess.run(argv, env=setup.env(mode, variant, **extra), capture_output=True,
                          timeout=10 * TIMEOUT_S)
    collected = re.search(rb"Collected\s*:\s*(\d+)", proc.stderr)
    if proc.stdout != stdout or collected is None:
        raise BenchError(f"{variant} {program} --version under callgrind ({mode}): "
                         f"{proc.stdout[:200]!r} {proc.stderr[-300:]!r}")
    by_object = instructions_by_object(out.read_text(errors="surrogateescape"))
    total = int(collected.group(1))
    if sum(by_object.values()) != total:
        raise BenchError(f"{out}: objects' instructions add up to {sum(by_object.values())}, "
                         f"not {total}")
    ldso = sum(n for name, n in by_object.items()
               if os.path.basename(name).startswith("ld-linux"))
    out.unlink()
    return {"total": total, "ld.so": ldso}


def instructions_by_object(text):
    """Self instructions per object file of a callgrind profile (``ob=`` blocks;
    the cost line after ``calls=`` is the callee's inclusive cost, not the caller's)."""
    names, totals = {}, Counter()
    current, inclusive = None, False
    for line in text.splitlines():
        if line.startswith(("ob=", "cob=")):
            name = _compressed(line.split("=", 1)[1], names)
            current = name if line.startswith("ob=") else current
        elif line.startswith("calls="):
            inclusive = True
        elif line and (line[0].isdigit() or line[0] in "+-*"):
            if not inclusive:
                fields = line.split()
                totals[current] += int(fields[1]) if len(fields) > 1 else 0
            inclusive = False
    return totals


def _compressed(spec, names):
    """A callgrind name given as ``(id) name`` (defining it) or ``(id)``."""
    found = re.fullmatch(r"\((\d+)\)(?: (.*))?", spec.strip())
    if found is None:
        return spec.strip()
    if found.group(2) is not None:
        names[found.group(1)] = found.group(2)
    return names[found.group(1)]


# -- time, faults, memory ------------------------------------------------------------------

class Pairs:
    """startup-compare's paired runs (its ``run_once`` and its main()'s loop), in a
    Python process of their own that does nothing else (PAIR_WORKER).

    A child forked from a process pays for that process's size: the
    copy-on-write faults between fork and exec, and the old address space torn
    down at exec.  Forked from the benchmark's own Python (LIEF loaded, tens of
    MiB) an empty static program cost about 3.8 ms; from a process as small as
    startup-compare's, about 1.5 ms.  The comparisons are the tool's as it runs."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", PAIR_WORKER, str(STARTUP_COMPARE)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc):
        self.proc.stdin.close()
        self.proc.wait(timeout=TIMEOUT_S)

    def rss_kib(self):
        """The worker's resident size, the size every measured child is forked from."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def compare(self, stock, new, env_stock, env_new):
        """Medians of each side, the median and quartiles of the per-pair ratios
        new/stock (CPU and wall); every run must exit 0."""
        job = {"stock": [str(a) for a in stock], "new": [str(a) for a in new],
               "env_stock": env_stock, "env_new": env_new, "min": PAIRS_MIN, "max": PAIRS_MAX,
               "budget_s": PAIR_BUDGET_S}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"the pair worker ended without comparing {stock[0]} and {new[0]}")
        runs = json.loads(line)
        rs, rn = [s for s, _ in runs], [n for _, n in runs]
        failed = {r["status"] for r in rs + rn} - {0}
        if failed:
            raise BenchError(f"{stock[0]} / {new[0]}: exit status {failed} in the timed runs")
        ratio_cpu = [n["cpu"] / s["cpu"] for s, n in runs if s["cpu"] > 0]
        ratio_wall = [n["wall"] / s["wall"] for s, n in runs]
        return {"stock": _medians(rs), "new": _medians(rn), "cpu_ratio": _quartiles(ratio_cpu),
                "wall_ratio": _quartiles(ratio_wall), "pairs": len(runs)}


def _medians(runs):
    return {k: statistics.median(r[k] for r in runs) for k in ("cpu", "wall", "minflt", "rss_kib")}


def _quartiles(values):
    q1, median, q3 = statistics.quantiles(values, n=4)
    return {"median": round(statistics.median(values), 4), "q1": round(q1, 4),
            "q3": round(q3, 4)}


def launched(setup, argv, env, runs=RSS_RUNS):
    """Median peak RSS (KiB) and minor faults of ``argv`` from the static launcher."""
    out = run([setup.launcher, runs, *argv], setup.work, env).stdout
    rows = [tuple(map(int, line.split())) for line in out.splitlines()]
    if len(rows) != runs or any(status != 0 for _, _, status in rows):
        raise BenchError(f"launcher {' '.join(map(str, argv))}: {out!r:.300}")
    rss = [r[0] for r in rows]
    return {"rss_kib": statistics.median(rss), "rss_kib_range": [min(rss), max(rss)],
            "minflt": statistics.median(r[1] for r in rows)}


def waiting_dirty(setup, program, variant, mode):
    """Private_Dirty (kB) of the program waiting (WAITING), and how it ended."""
    args, end = WAITING[program]
    proc = subprocess.Popen([program, *args], executable=setup.executable(program, variant),
                            cwd=setup.data, env=setup.env(mode, variant), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        dirty = _when_waiting(proc)
    finally:
        if end == "kill" or proc.poll() is not None:
            proc.kill()
        out, err = proc.communicate(b"", timeout=TIMEOUT_S)
    return dirty, (out, err, proc.returncode)


def _when_waiting(proc, timeout_s=30.0):
    """The Private_Dirty of ``proc`` once it sits in a waiting system call and
    two samples 20 ms apart agree."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            sample = _wait_sample(proc.pid)
        except OSError:
            sample = None
        if proc.poll() is not None:
            raise BenchError(f"{proc.args[0]} {proc.args[1:]} exited {proc.returncode} "
                             f"instead of waiting")
        if sample is not None and sample == last:
            return sample[1]
        last = sample
        time.sleep(0.02)
    raise BenchError(f"{proc.args} did not settle into waiting in {timeout_s:g} s")


def _wait_sample(pid):
    """(the system call it waits in, Private_Dirty kB), or None if it is not waiting."""
    with open(f"/proc/{pid}/stat") as f:
        state = f.read().rsplit(")", 1)[1].split()[0]
    with open(f"/proc/{pid}/syscall") as f:
        call = f.read().split()
    if state != "S" or not call[0].isdigit() or int(call[0]) not in WAIT_SYSCALLS:
        return None
    if int(call[0]) == 0 and not os.readlink(f"/proc/{pid}/fd/{int(call[1], 16)}").startswith(
            "pipe:"):
        return None             # reading a file, not the idle pipe
    with open(f"/proc/{pid}/smaps_rollup") as f:
        dirty = sum(int(line.split()[1]) for line in f if line.startswith("Private_Dirty:"))
    return tuple(call[:2]), dirty


def private_dirty(setup, program, mode):
    """Medians of DIRTY_RUNS waiting processes, stock and shared taking turns;
    each pair must end alike."""
    values = {"stock": [], "shared": []}
    for i in range(DIRTY_RUNS):
        ended = {}
        for variant in (("stock", "shared") if i % 2 == 0 else ("shared", "stock")):
            dirty, ended[variant] = waiting_dirty(setup, program, variant, mode)
            values[variant].append(dirty)
        if ended["shared"] != ended["stock"]:
            raise differs(f"waiting {program} ({mode})", ended["stock"], ended["shared"])
    return {v: statistics.median(d) for v, d in values.items()}


# -- the parts ---------------------------------------------------------------------------

@contextmanager
def timing(record, name):
    started = time.monotonic()
    yield
    record[name] = round(time.monotonic() - started, 1)


def program_figures(setup, sc, program, stdout):
    """Everything but CPU time and Private_Dirty for one program, both modes."""
    figures = {"lookups": {}, "instructions": {}, "mmap_mprotect": {}, "launcher": {}}
    variants = ("stock", "shared", "alone", "moved", "stock_moved")
    for mode in MODES:
        figures["lookups"][mode] = {v: ld_statistics(setup, program, v, mode, stdout)
                                    for v in variants}
        figures["mmap_mprotect"][mode] = {
            v: sc.syscalls([str(setup.executable(program, v)), "--version"],
                           setup.env(mode, v)) for v in ("stock", "shared")}
        figures["launcher"][mode] = {
            v: launched(setup, [setup.executable(program, v), "--version"], setup.env(mode, v))
            for v in ("stock", "shared")}
    return figures


def instruction_jobs(setup, stdouts):
    """Callgrind of every program, variant and mode, two at a time (counts do not
    depend on the load).  Not with libc off its base: valgrind 3.19 aborts
    ("Assertion 'in_rx' failed") on any library linked at a non-zero address
    that loads elsewhere, a plain ``gcc -Wl,-Ttext-segment=`` library as well."""
    jobs = [(p, v, m, True) for p in PROGRAMS for m in MODES for v in ("stock", "shared", "alone")]
    jobs += [(p, v, "shipped", False) for p in WITHOUT_PLUGINS for v in ("stock", "shared")]
    with ThreadPoolExecutor(WORKERS) as pool:
        counts = pool.map(lambda j: callgrind(setup, *j[:3], stdouts[j[0]], j[3]), jobs)
        out = {}
        for (p, v, m, plugins), n in zip(jobs, counts):
            out.setdefault(p, {}).setdefault(m if plugins else "without_plugins", {})[v] = n
    return out


def cpu_comparisons(setup, pairs):
    """Shared against stock in both modes, and moved against stock with the blocker."""
    out = {}
    for program in PROGRAMS:
        argv = {v: [str(setup.executable(program, v)), "--version"]
                for v in ("stock", "shared")}
        out[program] = {mode: pairs.compare(argv["stock"], argv["shared"],
                                            setup.env(mode, "stock"), setup.env(mode, "shared"))
                        for mode in MODES}
        out[program]["moved"] = pairs.compare(argv["stock"], argv["shared"],
                                              setup.env("shipped", "stock_moved"),
                                              setup.env("shipped", "moved"))
    return out


def floor(setup, pairs):
    """The static empty program against /usr/bin/true, by startup-compare's method,
    the launcher's view, and their instructions."""
    static, true = [str(setup.empty)], ["/usr/bin/true"]
    env = setup.env("shipped")
    pair = pairs.compare(static, true, env, env)
    out = {"pairs": pair["pairs"], "parent_rss_kib": pairs.rss_kib()}
    for key, argv, side in (("static", static, "stock"), ("true", true, "new")):
        launcher = launched(setup, argv, env)
        proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                               *argv], env=env, capture_output=True, text=True)
        out[key] = dict(pair[side],
                        launcher_rss_kib=launcher["rss_kib"],
                        launcher_minflt=launcher["minflt"],
                        instructions=int(re.search(r"Collected\s*:\s*(\d+)",
                                                   proc.stderr).group(1)))
    return out


def _load_average():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(work):
    """The closure part of ``make bench``: the record report.py judges."""
    missing = [t for t in REQUIRED_TOOLS if subprocess.run(["which", t],
                                                           capture_output=True).returncode]
    absent = [p for p in PROGRAMS if not (Path("/usr/bin") / p).exists()]
    if missing or absent:
        raise BenchError(f"the closure part needs {' '.join(missing + absent)} "
                         "(.ci/run installs them)")
    sc = load_startup_compare()
    setup = Setup(work)
    work.mkdir(parents=True)
    parts = {}
    with timing(parts, "rewrite"):
        retro, libc_base, files = rewrite_all(setup)
        build_helpers(setup, libc_base)
        evict(files)
    with timing(parts, "behaviour"):
        behaviour = check_behaviour(setup)
        bias = {p: {v: load_bias(setup, p, v) for v in ("shared", "moved")} for p in PROGRAMS}
        for p, b in bias.items():
            if b["shared"] != 0 or b["moved"] == 0:
                raise BenchError(f"{p}: libc's load bias {b['shared']:#x} at its base and "
                                 f"{b['moved']:#x} blocked: the blocker did not move it")
        stdouts = {p: outcome(setup, p, "stock", "shipped", ["--version"])[0] for p in PROGRAMS}
    with timing(parts, "lookups, strace, launcher"):
        figures = {p: program_figures(setup, sc, p, stdouts[p]) for p in PROGRAMS}
    with timing(parts, "callgrind"):
        instructions = instruction_jobs(setup, stdouts)
    with timing(parts, "private_dirty"):
        dirty = {p: {m: private_dirty(setup, p, m) for m in MODES} for p in PROGRAMS}
    load = {"cpu_start": _load_average()}
    with Pairs() as pairs:
        with timing(parts, "cpu"):
            cpu = cpu_comparisons(setup, pairs)
        load["cpu_end"] = _load_average()
        with timing(parts, "floor"):
            floor_figures = floor(setup, pairs)
    programs = {p: dict(figures[p], instructions=instructions[p], cpu=cpu[p],
                        private_dirty_kb=dirty[p], waiting=WAITING[p][0],
                        libc_load_bias=f"{bias[p]['moved']:#x}",
                        workloads=[" ".join(w) for w in WORKLOADS[p]]) for p in PROGRAMS}
    return {"seed": SEED, "pairs": [PAIRS_MIN, PAIRS_MAX, PAIR_BUDGET_S], "load_average": load,
            "retro": retro, "behaviour": behaviour,
            "libc_base": f"{libc_base:#x}", "programs": programs, "floor": floor_figures,
            "part_wall_s": parts, "wall_s": round(sum(parts.values()), 1)}


# -- the printed report ----------------------------------------------------------------------

def report_lines(c):
    """The closure part of the printed report (report.py judges the targets)."""
    from report import CPU_LESS, TABLE_REASONS, _grouped_table   # report imports this module
    retro, shared = c["retro"], c["retro"]["shared"]
    alone = retro["alone"].values()
    lines = [f"closures (issue 8): vectool --mode=retro --seed {c['seed']} of "
             f"{' '.join(PROGRAMS)}",
             f"  into one DIR: {shared['objects']} objects in {shared['wall_s']:g} s wall / "
             f"{shared['cpu_s']:g} s CPU, {shared['loads_added']} PT_LOADs added; each alone: "
             f"{sum(a['wall_s'] for a in alone):.1f} s wall / {sum(a['cpu_s'] for a in alone):.1f}"
             " s CPU in all",
             f"  every workload ({c['behaviour']['workloads']}: --version, error paths, some work) "
             "gave stock's stdout, stderr and exit status:",
             f"  {c['behaviour']['runs_compared']} runs (shared DIR, alone, libc off its base; as "
             "shipped and LD_BIND_NOW=1)"]
    lines += _lookup_lines(c, _grouped_table, TABLE_REASONS)
    lines += _instruction_lines(c, _grouped_table)
    lines += _cpu_lines(c, _grouped_table)
    lines += _kernel_lines(c, _grouped_table)
    lines += _floor_lines(c, CPU_LESS)
    lines.append("closure part's run time: " + ", ".join(
        f"{name} {s:g} s" for name, s in c["part_wall_s"].items()) + f"; {c['wall_s']:g} s in all")
    return lines


def _pct(part, whole):
    return f"{part / whole:.1%}"


def _lookup_lines(c, table, table_reasons):
    rows, reasons = [], []
    for p, v in c["programs"].items():
        now, lazy = v["lookups"]["bind_now"], v["lookups"]["shipped"]
        stock, shared, alone = now["stock"], now["shared"], now["alone"]
        tool = c["retro"]["shared"]["programs"][p]
        rows.append([p, f"{stock['startup']:,}", f"{stock['final']:,}", f"{shared['startup']:,}",
                     f"{shared['final']:,}", _pct(shared["startup"], stock["startup"]),
                     f"{alone['startup']:,}", _pct(alone["startup"], stock["startup"]),
                     f"{tool['lookups_after']:,}", f"{shared['vdso']}",
                     f"{now['moved']['startup']:,}", f"{lazy['stock']['startup']:,}",
                     f"{lazy['shared']['startup']:,}",
                     f"{stock['relative']:,}", f"{shared['relative']:,}"])
        remaining = tool["remaining"]
        rule = {why: n for why, n in remaining.items() if why not in table_reasons}
        reasons.append(f"  {p}: " + ", ".join(f"{why} {n}" for why, n in remaining.items()
                                               if why in table_reasons)
                       + f"; issue's rules: {', '.join(f'{w} {n}' for w, n in rule.items())}"
                       + f"; vDSO {shared['vdso']}")
    groups = [("", ["program"]), ("stock", ["start-up", "final"]),
              ("shared DIR", ["start-up", "final", "of stock"]),
              ("alone", ["start-up", "of stock"]),
              ("", ["tool says", "vDSO", "libc moved"]),
              ("as shipped", ["stock", "shared"]), ("relative", ["stock", "shared"])]
    return (["symbol lookups, LD_BIND_NOW=1 LD_DEBUG=statistics: start-up 'number of relocations'"
             " (judged) and exit 'final number'"] + table(groups, rows) + [
        "final: also what the run dlopens outside the closure (curl: libsasl2's plugins, "
        "rewritten or not), so the start-up figure",
        "  is the closure's; tool says: the retro report's count for the shared DIR (the files' "
        "lookups); vDSO: lookups of",
        "  linux-vdso.so.1 at start-up (ld.so's set-up, the IFUNC resolvers of time() and "
        "gettimeofday()), in both stock and",
        "  rewritten, in no file: start-up = tool says + vDSO when the model is exact.  "
        "as shipped: start-up, no LD_BIND_NOW.",
        "what remains in the shared DIR (the retro report): the targets table's reasons; the "
        "issue's rules; the vDSO:"] + reasons)


def _instruction_lines(c, table):
    rows, notes = [], []
    for p, v in c["programs"].items():
        ship, now = v["instructions"]["shipped"], v["instructions"]["bind_now"]
        s = ship["stock"]["total"]
        rows.append([p, f"{s:,}", f"{ship['shared']['total']:,}",
                     _change(s, ship["shared"]["total"]), _change(s, ship["alone"]["total"]),
                     _pct(ship["stock"]["ld.so"], s),
                     _pct(ship["shared"]["ld.so"], ship["shared"]["total"]),
                     f"{now['stock']['total']:,}", f"{now['shared']['total']:,}",
                     _change(now["stock"]["total"], now["shared"]["total"]),
                     _change(now["stock"]["total"], now["alone"]["total"])])
    for p, variable in WITHOUT_PLUGINS.items():
        alone = c["programs"][p]["instructions"]["without_plugins"]
        b, a = alone["stock"]["total"], alone["shared"]["total"]
        notes.append(f"{p} with {variable}=an empty directory (it dlopens nothing outside its "
                     f"closure; the same output): stock {b:,}, shared {a:,} ({_change(b, a)})")
    groups = [("", ["program"]),
              ("as shipped", ["stock", "shared", "change", "alone"]),
              ("ld.so's share", ["stock", "shared"]),
              ("LD_BIND_NOW=1", ["stock", "shared", "change", "alone"])]
    return (["callgrind instructions of --version (whole run, user space)"] + table(groups, rows)
            + ["ld.so's share: instructions in ld-linux-x86-64.so.2's own code (as shipped).  "
               "Not with libc off its base: valgrind 3.19",
               "  aborts ('in_rx') on any library linked at a non-zero address that loads "
               "elsewhere (a plain -Ttext-segment library too)."] + notes)


def _change(before, after):
    return f"{(after - before) / before:+.1%}"


def _ratio(r):
    return f"{r['median']:.3f} [{r['q1']:.3f}-{r['q3']:.3f}]"


def _cpu_lines(c, table):
    rows = []
    for p, v in c["programs"].items():
        row = [p]
        for key in ("shipped", "bind_now"):
            t = v["cpu"][key]
            row += [f"{t['stock']['cpu'] * 1e3:.2f}", f"{t['new']['cpu'] * 1e3:.2f}",
                    _ratio(t["cpu_ratio"]), f"{t['wall_ratio']['median']:.3f}", f"{t['pairs']}"]
        moved = v["cpu"]["moved"]
        row += [_ratio(moved["cpu_ratio"]), f"{moved['wall_ratio']['median']:.3f}",
                f"{moved['pairs']}"]
        rows.append(row)
    columns = ["stock ms", "shared ms", "CPU ratio [q1-q3]", "wall", "pairs"]
    groups = [("", ["program"]), ("as shipped", columns), ("LD_BIND_NOW=1", list(columns)),
              ("libc off its base", ["CPU ratio [q1-q3]", "wall", "pairs"])]
    low, high, budget = c["pairs"]
    return ([f"CPU time of --version (user + system, wait4), ../shared/tools/startup-compare's "
             f"method: {low} to {high} interleaved pairs",
             f"  (about {budget:g} s a comparison) after 3 warm-up pairs, the order alternating; "
             "ms: medians; ratio: median of per-pair",
             "  ratios shared/stock and its quartiles; wall: the same for wall time.  Load average "
             f"{c['load_average']['cpu_start']} at the start, {c['load_average']['cpu_end']} at "
             "the end of these runs"]
            + table(groups, rows)
            + ["libc off its base: a library linked at libc's base preloaded in both (stock and "
               "shared), so only the fix-up differs."])


def _kernel_lines(c, table):
    rows = []
    for p, v in c["programs"].items():
        row = [p]
        for mode in MODES:
            row += [f"{v['mmap_mprotect'][mode]['stock']}->{v['mmap_mprotect'][mode]['shared']}",
                    f"{v['cpu'][mode]['stock']['minflt']:g}->{v['cpu'][mode]['new']['minflt']:g}",
                    f"{v['launcher'][mode]['stock']['rss_kib']:g}->"
                    f"{v['launcher'][mode]['shared']['rss_kib']:g}",
                    f"{v['private_dirty_kb'][mode]['stock']:g}->"
                    f"{v['private_dirty_kb'][mode]['shared']:g}"]
        rows.append(row)
    columns = ["mmap+mprotect", "minor faults", "peak RSS KiB", "Private_Dirty kB"]
    waits = "; ".join(f"{p} {shlex.join(v['waiting'])}" for p, v in c["programs"].items())
    def rss_range(v, side):
        return "-".join(f"{n:g}" for n in v["launcher"]["shipped"][side]["rss_kib_range"])
    spread = "; ".join(f"{p} {rss_range(v, 'stock')} / {rss_range(v, 'shared')}"
                       for p, v in c["programs"].items())
    return (["the kernel's work and memory, stock->shared DIR"]
            + table([("", ["program"]), ("as shipped", columns),
                     ("LD_BIND_NOW=1", list(columns))], rows)
            + ["mmap+mprotect: strace -f -c of --version (startup-compare's); minor faults: "
               "medians of the CPU runs (each child forked",
               "  from Python pays about 250 of its own, see the floor); peak RSS: median of "
               f"{RSS_RUNS} runs from a static launcher (a child of",
               "  Python would report Python's ~10 MiB); Private_Dirty: /proc/PID/smaps_rollup of "
               f"the process waiting, median of {DIRTY_RUNS}:",
               *_wrapped(waits),
               "peak RSS over the runs (ASLR moves stock's mappings; the rewritten libraries sit "
               "at their bases), min-max KiB, as shipped, stock / shared:",
               *_wrapped(spread)])


def _wrapped(text):
    return textwrap.wrap(text, 118, initial_indent="  ", subsequent_indent="  ")


def _floor_lines(c, cpu_less):
    f = c["floor"]
    static, true = f["static"], f["true"]
    lines = ["the floor: a static 'int main(){return 0;}' and /usr/bin/true by the same method "
             f"({f['pairs']} pairs, forked from a Python of {f['parent_rss_kib']:,} KiB)"]
    for name, t in (("static empty", static), ("/usr/bin/true", true)):
        lines.append(f"  {name:14} CPU {t['cpu'] * 1e3:.3f} ms, wall {t['wall'] * 1e3:.3f} ms, "
                     f"minor faults {t['minflt']:g} (from a static launcher "
                     f"{t['launcher_minflt']:g}), peak RSS {t['rss_kib']:g} KiB (launcher "
                     f"{t['launcher_rss_kib']:g}), {t['instructions']:,} instructions")
    lines.append("  per program, as shipped (ms: medians of the CPU runs above): what start-up "
                 "linking could remove at most, and what the rewrite removed")
    rows = [["program", "stock ms", "shared ms", "above floor", "ld.so instr.", "ld.so x above",
             "target", "removed", "above floor"]]
    for p, v in c["programs"].items():
        cpu = v["cpu"]["shipped"]
        stock, new, base = cpu["stock"]["cpu"], cpu["new"]["cpu"], static["cpu"]
        ins = v["instructions"]["shipped"]["stock"]
        ldso = ins["ld.so"] / ins["total"]
        above = 1 - base / stock
        rows.append([p, f"{stock * 1e3:.2f}", f"{new * 1e3:.2f}", f"{above:.0%}", f"{ldso:.0%}",
                     f"{ldso * above:.0%}", f"{cpu_less[p]:.0%}" if p in cpu_less else "-",
                     f"{1 - cpu['cpu_ratio']['median']:.0%}",
                     f"{1 - (new - base) / (stock - base):.0%}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["    " + "  ".join(f"{cell:{'<' if i == 0 else '>'}{w}}"
                                 for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines += ["  above floor: 1 - static empty / stock, the share of stock's CPU time any linking "
              "change could remove (the rest is fork",
              "  from Python, exec and exit); ld.so x above: that times ld.so's share of stock's "
              "instructions, what removing all of",
              "  ld.so's work would save if CPU followed instructions; target: the issue's CPU "
              "reduction; removed: 1 - the median ratio",
              "  (judged); above floor: 1 - (shared - floor) / (stock - floor), the same with "
              "the floor taken out of both (medians)."]
    return lines


def main():
    """The closure part alone (``python bench/closurebench.py``): printed with its
    targets and kept in bench/work/closure.json, not in bench/results."""
    import shutil
    import report
    work = Path(__file__).resolve().parent / "work" / "closure"
    shutil.rmtree(work, ignore_errors=True)
    try:
        record = measure(work)
    except BenchError as e:
        print(f"closurebench: {e}", file=sys.stderr)
        return 1
    (work.parent / "closure.json").write_text(json.dumps(record, indent=2) + "\n")
    targets = report.closure_targets(record)
    print("\n".join(report_lines(record) + report._targets({"targets": targets})))
    return 1 if report.missed(targets) else 0


if __name__ == "__main__":
    sys.exit(main())
