"""Issue 10's start-up figures on i386 and AArch64: the 3,000-function
start-up program (bench/gensrc.py) cross-built stock and vectored.

Per architecture, builds from the same objects: stock lazy, stock
``-z now``, vectored (expvec + ``impvec --link``, lazy), a vectool group
(``--mode=lib`` then ``--mode=prog``, non-PIE) and the static archive.
Each is run and must print gensrc's expected number; then:

* i386 (run natively through the cross root's ld-linux.so.2): callgrind's
  instruction count of a whole run, and ld.so's symbol lookups at start-up
  and at exit (``LD_DEBUG=statistics``: a lazy build looks up the rest
  while it runs);
* AArch64 (run under ``qemu-aarch64 -L``): symbol lookups and relative
  relocations only.  Instruction counts were not measured: Debian's qemu
  7.2 ships no instruction-counting plugin.

``python bench/portsbench.py [N]`` prints a table and the JSON; ``measure(work,
n)`` returns the same dictionary for bench.py.
"""

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gensrc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
N = 3000
SONAME = "libbench.so.1"
PORTS = {
    "i386": {"gcc": "i686-linux-gnu-gcc", "root": "/usr/i686-linux-gnu"},
    "aarch64": {"gcc": "aarch64-linux-gnu-gcc", "root": "/usr/aarch64-linux-gnu"},
}
CALLGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")


class BenchError(Exception):
    pass


def run(argv, cwd, env=None):
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def tool(name, *args, cwd):
    return run([sys.executable, ROOT / "bin" / name, *args], cwd)


def build(arch, work, n):
    """The five builds of ``arch`` in ``work``: {name: (program, library dir)}."""
    gcc = PORTS[arch]["gcc"]
    work.mkdir(parents=True)
    (work / "lib.c").write_text(gensrc.library_source(n))
    (work / "prog.c").write_text(gensrc.program_source(n))
    for d in ("stock", "vec"):
        (work / d).mkdir()
    run([gcc, "-O2", "-fPIC", "-c", "lib.c", "-o", "lib.pic.o"], work)
    run([gcc, "-O2", "-c", "lib.c", "-o", "lib.o"], work)
    run([gcc, "-O2", "-c", "prog.c", "-o", "prog.o"], work)
    run([gcc, "-O2", "-fno-pie", "-c", "prog.c", "-o", "prog.nopie.o"], work)
    run([gcc, "-shared", f"-Wl,-soname={SONAME}", "-o", f"stock/{SONAME}", "lib.pic.o"], work)
    tool("expvec", "--vec", "vec/bench.vec", ".", "", "", gcc, "-shared",
         f"-Wl,-soname={SONAME}", "-o", f"vec/{SONAME}", "lib.pic.o", cwd=work)
    run([gcc, "-o", "prog.lazy", "prog.o", f"stock/{SONAME}"], work)
    run([gcc, "-Wl,-z,now", "-o", "prog.now", "prog.o", f"stock/{SONAME}"], work)
    tool("impvec", "--link", "", "vec/bench.vec", gcc, "-o", "prog.vec", "prog.o",
         f"vec/{SONAME}", cwd=work)
    group = ["--rpathdir=" + str(work / "rp")]
    tool("vectool", "--mode=lib", "--addrfile=" + str(work / "addrs"), *group, gcc, "-shared",
         f"-Wl,-soname={SONAME}", "-o", SONAME, "lib.pic.o", cwd=work)
    tool("vectool", "--mode=prog", *group, gcc, "-no-pie", "-o", "prog.group", "prog.nopie.o",
         SONAME, cwd=work)
    run(["ar", "rcs", "libbench.a", "lib.o"], work)
    run([gcc, "-o", "prog.static", "prog.o", "libbench.a"], work)
    return {"stock lazy": ("prog.lazy", "stock"), "stock -z now": ("prog.now", "stock"),
            "vectored": ("prog.vec", "vec"), "vectool group": ("prog.group", "rp"),
            "static library": ("prog.static", "stock")}


def command(arch, work, program, libdir, env=()):
    """``program`` run with ``libdir`` first: natively through the cross
    root's ld.so (i386) or under qemu-aarch64."""
    root = PORTS[arch]["root"]
    path = f"{work / libdir}:{root}/lib"
    if arch == "i386":
        return [f"{root}/lib/ld-linux.so.2", "--library-path", path, work / program], dict(env)
    return ["qemu-aarch64", "-L", root, "-E", f"LD_LIBRARY_PATH={path}",
            *[w for k, v in env for w in ("-E", f"{k}={v}")], work / program], {}


def lookups(arch, work, program, libdir, expected):
    """ld.so's symbol lookups at start-up and relative relocations."""
    argv, env = command(arch, work, program, libdir, [("LD_DEBUG", "statistics")])
    proc = run(argv, work, env={"PATH": "/usr/bin:/bin", **env})
    if proc.stdout != expected:
        raise BenchError(f"{arch} {program} printed {proc.stdout!r}, not {expected!r}")

    def number(label):
        match = re.search(rf"^\s*\d+:\s+{label}: (\d+)$", proc.stderr, re.M)
        if match is None:
            raise BenchError(f"no '{label}' in LD_DEBUG=statistics of {arch} {program}")
        return int(match.group(1))
    return {"lookups": number("number of relocations"),
            "total": number("final number of relocations"),
            "relative": number("number of relative relocations")}


def instructions(arch, work, program, libdir, expected):
    """callgrind's instruction count of a whole run (i386 only)."""
    argv, _ = command(arch, work, program, libdir)
    proc = run([*CALLGRIND, *argv], work)
    if proc.stdout != expected:
        raise BenchError(f"{arch} {program} under callgrind printed {proc.stdout!r}")
    match = re.search(r"Collected : (\d+)", proc.stderr)
    if match is None:
        raise BenchError(f"no callgrind summary for {arch} {program}:\n{proc.stderr}")
    return int(match.group(1))


def measure(work, n=N):
    """{arch: {build: figures}} at ``n`` functions, built under ``work``."""
    expected = gensrc.expected_output(n)
    results = {}
    for arch in PORTS:
        builds = build(arch, Path(work) / arch, n)
        figures = {}
        for name, (program, libdir) in builds.items():
            figures[name] = lookups(arch, Path(work) / arch, program, libdir, expected)
            if arch == "i386":
                figures[name]["instructions"] = instructions(arch, Path(work) / arch, program,
                                                             libdir, expected)
        results[arch] = {"functions": n, "builds": figures,
                         "instructions": "callgrind" if arch == "i386" else
                         "not measured (qemu 7.2 has no instruction-counting plugin)"}
    return results


def table(results):
    lines = [f"{'arch':8} {'build':16} {'lookups':>8} {'at exit':>8} {'relative':>9} "
             f"{'instructions':>13}"]
    for arch, result in results.items():
        for name, f in result["builds"].items():
            count = f"{f['instructions']:,}" if "instructions" in f else "not measured"
            lines.append(f"{arch:8} {name:16} {f['lookups']:>8} {f['total']:>8} "
                         f"{f['relative']:>9} {count:>13}")
    return "\n".join(lines)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else N
    with tempfile.TemporaryDirectory(prefix="bench-ports-") as work:
        results = measure(work, n)
    print(table(results))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
