"""A vectool group at start-up (issue 4's benchmark).

A generated group of ``LIBS`` shared libraries, ``libg0.so`` ..
``libg4.so``: each exports ``FUNCTIONS`` functions and holds two static
tables, ``FUNCTION_POINTERS`` pointers to its own (static) functions and
``STRING_POINTERS`` pointers to its own strings, so every library carries
about 2000 ``R_X86_64_RELATIVE`` relocations; every third function of
``libg<i>`` calls one of ``libg<i-1>``, so the libraries import from each
other.  A program calls every exported function once, chaining the
results, and prints one number, computed independently here in Python.

The same objects are linked several ways:

* stock: ``gcc -shared`` for each library, the program linked normally
  (non-PIE, and PIE);
* vectool: ``vectool --mode=lib --addrfile=addrs --rpathdir=rp gcc -shared
  -Wl,-soname=libgN.so -o libgN.so gN.o libg<N-1>.so`` in dependency order,
  then ``vectool --mode=prog --rpathdir=rp gcc -no-pie -o prog prog.o
  libg*.so`` (and a PIE program against the same libraries); the same with
  ``--near`` (bases within 1 GiB of the non-PIE program: its slots bind as
  ``jmp rel32``); and with ``--no-relvec`` (fixed bases and vectors, every
  relocation kept), which tells relvec's share from the vectors'.

Checked before anything is measured: every build prints the expected
number (plain, under LD_DEBUG, under callgrind, while it dumps its smaps);
every vectool library is loaded at its link address (``LD_DEBUG=files``
``base: 0x0``, plain and under valgrind) and its ``p_vaddr`` is its
addrfile base; the program's slot of ``g0_f0`` is bound, in the running
process, to a jump to ``g0_f0``'s link address; and with a preloaded
library squatting ``libg0.so``'s range, ``libg0.so`` loads elsewhere and
the program still prints the same (relvec's routine did its work).

Measured per build: ld.so's symbol lookups (``LD_DEBUG=statistics``
"number of relocations" at start-up, "final number" at exit, lazy and under
``LD_BIND_NOW=1``) and its "number of relative relocations"; the
relocations in the files (``readelf -r``); ld.so's start-up cycles ("total
startup time in dynamic loader", ``STARTUP_RUNS`` runs each, the builds
taking turns); callgrind's instructions of a whole run (lazy and
``LD_BIND_NOW=1``); private dirty memory, read by the program itself from
``/proc/self/smaps_rollup`` (and ``/proc/self/smaps``, for where it is) at
the start and at the end of ``main``, into the file ``$EV_SMAPS_OUT``, so
its stdout stays the same.
"""

import os
import re
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from builds import BenchError, CFLAGS, check_call_lands_in, clean_env, run, tool
from elfvector import addrfile
from elfvector.elfimage import PT_LOAD, ElfImage
from elfvector.measure import read_image
from elfvector.relvec import TABLE_SECTION, relr_decode
from probes import _decode_slot

LIBS = 5
FUNCTIONS = 300                 # exported by each library
FUNCTION_POINTERS = 1500        # static table of pointers to the library's static functions
STRING_POINTERS = 500           # static table of pointers to its strings
HELPERS = 100                   # static functions the first table points to
CALLS_BELOW_EVERY = 3           # g<i>_f<j> calls into libg<i-1> when j % 3 == 0
STARTUP_RUNS = 15
DIRTY_RUNS = 5
UINT = 0xFFFFFFFF
CALLGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")
WORKERS = max(1, min(2, os.cpu_count() or 1))
SLOTS = ".elfvector.slots"
PEEKED = "g0_f0"                # the function whose program slot is read in the process


def soname(i):
    return f"libg{i}.so"


# -- the generated sources, and what they print -------------------------------

def _below(j):
    """The function of the library below that g<i>_f<j> calls (when it calls one)."""
    return (j * 7) % FUNCTIONS


def library_source(i):
    """``libg<i>.so``: static helpers, the two pointer tables, the exported functions."""
    lines = [f"static unsigned h{k}(unsigned x) {{ return x * {2 * k + 5}u + {i * 7 + k}u; }}"
             for k in range(HELPERS)]
    lines.append(f"static unsigned (*const fn_table[{FUNCTION_POINTERS}])(unsigned) = {{"
                 + ", ".join(f"h{k % HELPERS}" for k in range(FUNCTION_POINTERS)) + "};")
    lines.append(f"static const char *const str_table[{STRING_POINTERS}] = {{"
                 + ", ".join(f'"s{k}_{i}"' for k in range(STRING_POINTERS)) + "};")
    if i:
        lines += [f"unsigned g{i - 1}_f{_below(j)}(unsigned);"
                  for j in range(0, FUNCTIONS, CALLS_BELOW_EVERY)]
    for j in range(FUNCTIONS):
        body = [f"unsigned r = x * {2 * j + 3}u + {i * 1000 + j}u;"]
        if i and j % CALLS_BELOW_EVERY == 0:
            body.append(f"r += g{i - 1}_f{_below(j)}(r);")
        if j % 4 == 0:
            body.append(f"r ^= fn_table[(r >> 3) % {FUNCTION_POINTERS}u](r);")
        elif j % 4 == 1:
            body.append(f"r += (unsigned char)str_table[(r >> 5) % {STRING_POINTERS}u][1];")
        lines.append(f"unsigned g{i}_f{j}(unsigned x) {{ " + " ".join(body) + " return r; }")
    return "\n".join(lines) + "\n"


def _function(i, j, x):
    """What ``g<i>_f<j>(x)`` returns, computed as the C does."""
    r = (x * (2 * j + 3) + i * 1000 + j) & UINT
    if i and j % CALLS_BELOW_EVERY == 0:
        r = (r + _function(i - 1, _below(j), r)) & UINT
    if j % 4 == 0:
        k = ((r >> 3) % FUNCTION_POINTERS) % HELPERS
        r ^= (r * (2 * k + 5) + i * 7 + k) & UINT
    elif j % 4 == 1:
        r = (r + ord(f"s{(r >> 5) % STRING_POINTERS}_{i}"[1])) & UINT
    return r


def expected_output(argc=1):
    acc = argc
    for i in range(LIBS):
        for j in range(FUNCTIONS):
            acc = (acc * 31 + _function(i, j, acc)) & UINT
    return f"{acc}\n"


EXPECTED = expected_output()

PROGRAM_HEAD = r'''#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char __executable_start[];
static char buf[4096];

static void put(int fd, const char *s) { write(fd, s, strlen(s)); }

/* Append "@@ WHEN PATH" and the file PATH to OUT.  smaps_rollup first,
   before anything here has touched buf. */
static void dump(const char *out, const char *when, const char *path)
{
    int in = open(path, O_RDONLY), fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
    ssize_t n;
    if (in < 0 || fd < 0)
        exit(126);
    put(fd, "@@ "); put(fd, when); put(fd, " "); put(fd, path); put(fd, "\n");
    while ((n = read(in, buf, sizeof buf)) > 0)
        write(fd, buf, n);
    close(in);
    close(fd);
}

static void snapshot(const char *out, const char *when)
{
    dump(out, when, "/proc/self/smaps_rollup");
    dump(out, when, "/proc/self/smaps");
}

/* "@@ peek ADDRESS BYTES": 16 bytes at __executable_start + $EV_PEEK (hex). */
static void peek(const char *out, const char *offset)
{
    unsigned char *at;
    int fd, i;
    if (!offset)
        return;
    at = (unsigned char *)__executable_start + strtoul(offset, 0, 16);
    fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
    snprintf(buf, sizeof buf, "@@ peek %lx", (unsigned long)at);
    put(fd, buf);
    for (i = 0; i < 16; i++) {
        snprintf(buf, sizeof buf, " %02x", at[i]);
        put(fd, buf);
    }
    put(fd, "\n");
    close(fd);
}

'''


def program_source():
    lines = [PROGRAM_HEAD]
    lines += [f"unsigned g{i}_f{j}(unsigned);" for i in range(LIBS) for j in range(FUNCTIONS)]
    lines += ["", "int main(int argc, char **argv)", "{",
              '    const char *out = getenv("EV_SMAPS_OUT");',
              "    unsigned acc = (unsigned)argc;", "", "    (void)argv;",
              '    if (out)', '        snapshot(out, "start");']
    lines += [f"    acc = acc * 31u + g{i}_f{j}(acc);"
              for i in range(LIBS) for j in range(FUNCTIONS)]
    lines += ['    if (out) {', '        snapshot(out, "end");',
              '        peek(out, getenv("EV_PEEK"));', '    }',
              '    printf("%u\\n", acc);', "    return 0;", "}", ""]
    return "\n".join(lines)


# -- the builds ---------------------------------------------------------------

@dataclass
class GroupBuild:
    key: str
    title: str
    program: Path
    libdir: Path                    # LD_LIBRARY_PATH: the libraries (or rp/, links to them)
    pie: bool
    vectool: Optional[str] = None   # the group directory (addrfile, rp/) of a vectool build
    region: str = ""
    build_s: dict = field(default_factory=dict)

    @property
    def libraries(self):
        return [self.libdir / soname(i) for i in range(LIBS)]


def _library_link(i):
    """The link command of libg<i>.so (run in its group's directory)."""
    below = [soname(i - 1)] if i else []
    return ["gcc", "-shared", f"-Wl,-soname={soname(i)}", "-o", soname(i),
            f"../src/g{i}.o", *below]


def _program_link(pie, output):
    objects = ["../src/prog.pie.o"] if pie else ["-no-pie", "../src/prog.o"]
    return ["gcc", *objects, "-o", output, *(soname(i) for i in range(LIBS))]


def _compile(src):
    src.mkdir(parents=True)
    (src / "prog.c").write_text(program_source())
    jobs = [(f"g{i}.c", f"g{i}.o", ["-fPIC"]) for i in range(LIBS)]
    jobs += [("prog.c", "prog.o", ["-fno-pie"]), ("prog.c", "prog.pie.o", [])]
    for i in range(LIBS):
        (src / f"g{i}.c").write_text(library_source(i))
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda j: run(["gcc", *CFLAGS, *j[2], "-c", j[0], "-o", j[1]], src), jobs))


def _stock(work):
    d = work / "stock"
    d.mkdir()
    started = time.monotonic()
    for i in range(LIBS):
        run(_library_link(i), d)
    libs_s = time.monotonic() - started
    run(_program_link(False, "prog"), d)
    run(_program_link(True, "prog.pie"), d)
    return [GroupBuild("stock", "stock, non-PIE", d / "prog", d, False,
                       build_s={"libraries": round(libs_s, 2)}),
            GroupBuild("stock_pie", "stock, PIE", d / "prog.pie", d, True)]


def _vectool_group(work, name, flags, pies, title):
    """vectool lib mode for each library in dependency order, then prog mode."""
    d = work / name
    d.mkdir()
    common = ["--addrfile=addrs", "--rpathdir=rp", *flags]
    started = time.monotonic()
    for i in range(LIBS):
        tool("vectool", "--mode=lib", *common, *_library_link(i), cwd=d)
    libs_s = time.monotonic() - started
    out = []
    for pie in pies:
        program = "prog.pie" if pie else "prog"
        started = time.monotonic()
        tool("vectool", "--mode=prog", "--rpathdir=rp", *_program_link(pie, program), cwd=d)
        key = f"{name}_pie" if pie else name
        out.append(GroupBuild(key, f"{title}, {'PIE' if pie else 'non-PIE'}", d / program,
                              d / "rp", pie, vectool=str(d), region=name,
                              build_s={"libraries": round(libs_s, 2),
                                       "program": round(time.monotonic() - started, 2)}))
    return out


def build_all(work):
    """Every build of the group; vectool's groups two at a time (separate addrfiles)."""
    work.mkdir(parents=True)
    _compile(work / "src")
    groups = [("fixed", [], (False, True), "vectool"),
              ("near", ["--near"], (False,), "vectool --near"),
              ("norelvec", ["--no-relvec"], (False,), "vectool --no-relvec")]
    with ThreadPoolExecutor(WORKERS) as pool:
        vectool_builds = list(pool.map(lambda g: _vectool_group(work, *g), groups))
    result = _stock(work)
    for builds in vectool_builds:
        result += builds
    return result


# -- running ------------------------------------------------------------------

def _run(build, env=None, wrapper=(), what=""):
    """One run of ``build``'s program; a failure or a wrong output stops the benchmark."""
    full_env = dict(clean_env(build.libdir), **(env or {}))
    proc = run([*wrapper, build.program], build.program.parent, full_env)
    if proc.stdout != EXPECTED:
        raise BenchError(f"{build.title} ({build.program}){what} printed {proc.stdout!r}, "
                         f"expected {EXPECTED!r}")
    return proc



def _load_bases(build, wrapper=(), env=None):
    """{soname: l_addr} of the group's libraries, from LD_DEBUG=files."""
    err = _run(build, dict(env or {}, LD_DEBUG="files"), wrapper, " under LD_DEBUG=files").stderr
    bases = {}
    for name, base in re.findall(r"file=(\S+) \[0\];\s+generating link map\n.*?base: (0x[0-9a-f]+)",
                                 err):
        if name.startswith("libg"):
            bases[name] = int(base, 16)
    if len(bases) != LIBS:
        raise BenchError(f"{build.program}: LD_DEBUG=files shows {sorted(bases)}, not libg0..")
    return bases


def _first_load(path):
    return min(p.vaddr for p in read_image(path).phdrs if p.type == PT_LOAD)


def check_bases(build):
    """A vectool build's libraries sit at their link addresses, which the addrfile gave them.

    Returns {soname: {"base": addrfile base, "l_addr": plain run, "l_addr_valgrind": ...}}.
    """
    assigned = {a.soname: a.base for a in addrfile.read(str(Path(build.vectool) / "addrs"))}
    plain = _load_bases(build)
    under_valgrind = _load_bases(build, ("valgrind", "--tool=none", "-q"))
    result = {}
    for i, lib in enumerate(build.libraries):
        name = soname(i)
        link_base = _first_load(lib)
        if assigned.get(name) != link_base:
            raise BenchError(f"{lib}: first PT_LOAD at {link_base:#x}, but the addrfile says "
                             f"{assigned.get(name, 0):#x}")
        if build.region == "near" and link_base >= addrfile.NEAR_REGION.top:
            raise BenchError(f"{lib}: --near base {link_base:#x} is not in the near region")
        if plain[name] or under_valgrind[name]:
            raise BenchError(f"{build.title}: {name} was not loaded at its base {link_base:#x} "
                             f"(l_addr {plain[name]:#x}, under valgrind "
                             f"{under_valgrind[name]:#x})")
        result[name] = {"base": f"{link_base:#x}", "l_addr": plain[name],
                        "l_addr_valgrind": under_valgrind[name]}
    return result


def stock_bases(build):
    return {name: f"{base:#x}" for name, base in _load_bases(build).items()}


def _statistics(build, bind_now):
    env = {"LD_DEBUG": "statistics"}
    if bind_now:
        env["LD_BIND_NOW"] = "1"
    err = _run(build, env, what=" under LD_DEBUG=statistics").stderr

    def number(label, unit=""):
        match = re.search(rf"^\s*\d+:\s+{label}: (\d+){unit}$", err, re.M)
        if match is None:
            raise BenchError(f"no '{label}' in LD_DEBUG=statistics of {build.program}")
        return int(match.group(1))

    return {"lookups": number("number of relocations"),
            "final": number("final number of relocations"),
            "relative": number("number of relative relocations"),
            "cycles": number("total startup time in dynamic loader", " cycles")}


def startup_statistics(builds):
    """LD_DEBUG=statistics, lazy and LD_BIND_NOW=1, STARTUP_RUNS each, the builds taking turns."""
    samples = {(b.key, now): [] for b in builds for now in (False, True)}
    for _ in range(STARTUP_RUNS):
        for b in builds:
            for now in (False, True):
                samples[(b.key, now)].append(_statistics(b, now))
    result = {}
    for b in builds:
        result[b.key] = {}
        for now in (False, True):
            runs = samples[(b.key, now)]
            cycles = [r["cycles"] for r in runs]
            result[b.key]["now" if now else "lazy"] = {
                "lookups": int(statistics.median(r["lookups"] for r in runs)),
                "lookups_seen": sorted({r["lookups"] for r in runs}),
                "final_lookups": int(statistics.median(r["final"] for r in runs)),
                "relative": int(statistics.median(r["relative"] for r in runs)),
                "cycles_median": int(statistics.median(cycles)),
                "cycles_min": min(cycles), "cycles_max": max(cycles), "cycles": cycles}
    return result


def instructions(build, bind_now):
    env = {"LD_BIND_NOW": "1"} if bind_now else {}
    proc = _run(build, env, CALLGRIND, " under callgrind")
    match = re.search(r"Collected : (\d+)", proc.stderr)
    if match is None:
        raise BenchError(f"no callgrind summary for {build.program}:\n{proc.stderr}")
    return int(match.group(1))


# -- relocations in the files -------------------------------------------------

def _relocations(path):
    """{type: count} of ``path``'s dynamic relocations, by section."""
    out = run(["readelf", "-rW", path], Path(path).parent).stdout
    counts, section = {}, None
    for line in out.splitlines():
        match = re.match(r"Relocation section '(\S+)'", line)
        if match:
            section = match.group(1)
            continue
        match = re.match(r"[0-9a-f]{16}\s+[0-9a-f]{16}\s+R_X86_64_(\w+)", line)
        if match and section:
            key = f"{section} {match.group(1)}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def _relvec_words(path):
    """Words relvec's routine adjusts if the library moves (its RELR table), 0 if none."""
    image = ElfImage(Path(path).read_bytes(), str(path))
    _, shdr = image.section(TABLE_SECTION)
    if shdr is None:
        return 0
    raw = image.data[shdr.offset:shdr.offset + shdr.size]
    return len(relr_decode(int.from_bytes(raw[k:k + 8], "little") for k in range(0, len(raw), 8)))


def file_relocations(build):
    """Relocations in the program and the libraries: relative, with a symbol, IRELATIVE."""
    def summary(path):
        counts = _relocations(path)
        relative = sum(n for k, n in counts.items() if k.endswith(" RELATIVE"))
        irelative = sum(n for k, n in counts.items() if k.endswith(" IRELATIVE"))
        return {"relative": relative, "irelative": irelative,
                "symbol": sum(counts.values()) - relative - irelative,
                "relvec_words": _relvec_words(path), "bytes": os.path.getsize(path),
                "by_type": counts}

    libs = {soname(i): summary(lib) for i, lib in enumerate(build.libraries)}
    program = summary(build.program)
    total = {k: sum(s[k] for s in libs.values()) for k in ("relative", "irelative", "symbol",
                                                            "relvec_words", "bytes")}
    return {"program": program, "libraries": total, "per_library": libs}


# -- private dirty memory -----------------------------------------------------

def _parse_dump(text, program):
    """{when: {"rollup": kB, "libraries": kB, "slots": kB, "program": kB, "other": kB}}, peek."""
    result, peek = {}, None
    when = kind = current = None
    for line in text.splitlines():
        if line.startswith("@@ "):
            words = line.split()
            if words[1] == "peek":
                peek = (int(words[2], 16), bytes(int(b, 16) for b in words[3:]))
                continue
            when, kind = words[1], words[2].rsplit("/", 1)[-1]
            result.setdefault(when, {"rollup": 0, "libraries": 0, "slots": 0, "program": 0,
                                     "other": 0})
            current = None
            continue
        header = re.match(r"^[0-9a-f]+-[0-9a-f]+ (\S{4}) \S+ \S+ \S+\s*(.*)$", line)
        if header:
            perms, path = header.groups()
            name = path.rsplit("/", 1)[-1]
            if kind == "smaps_rollup":
                current = "rollup"
            elif re.fullmatch(r"libg\d+\.so", name):
                current = "libraries"
            elif path == str(program):
                current = "program"
            elif not path and perms.startswith("r-x"):
                current = "slots"           # the binder's slot pages: anonymous, r-x
            else:
                current = "other"
            continue
        match = re.match(r"^Private_Dirty:\s+(\d+) kB", line)
        if match and current:
            result[when][current] += int(match.group(1))
            if int(match.group(1)) and current in ("libraries", "program") \
                    and "x" in perms:
                raise BenchError(f"{program}: a file's r-x mapping ({path}) has dirty pages: "
                                 "page cache not written back, or text relocations")
    return result, peek


def write_back(build):
    """fsync the program and its libraries.

    A file written moments ago has dirty pages in the page cache, and smaps
    counts such a page as Private_Dirty in every process that maps it, even
    read-only: freshly linked files would add their whole text.
    """
    for path in [build.program, *build.libraries]:
        fd = os.open(os.path.realpath(path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def private_dirty(build, work, peek_offset=None):
    """Private_Dirty in kB at the start and the end of main, median of DIRTY_RUNS runs;
    and the last run's peek at the program's slot (when ``peek_offset`` is given)."""
    runs, peek = [], None
    for n in range(DIRTY_RUNS):
        out = work / f"smaps.{build.key}.{n}"
        if out.exists():
            out.unlink()
        env = {"EV_SMAPS_OUT": str(out)}
        if peek_offset is not None:
            env["EV_PEEK"] = f"{peek_offset:x}"
        _run(build, env, what=" while dumping its smaps")
        parsed, peek = _parse_dump(out.read_text(), build.program)
        if set(parsed) != {"start", "end"}:
            raise BenchError(f"{build.program}: incomplete smaps dump {out}")
        runs.append(parsed)
    result = {}
    for when in ("start", "end"):
        result[when] = {part: int(statistics.median(r[when][part] for r in runs))
                        for part in runs[0][when]}
        result[when]["rollup_seen"] = sorted({r[when]["rollup"] for r in runs})
        split = sum(v for k, v in result[when].items() if k not in ("rollup", "rollup_seen"))
        result[when]["smaps_total"] = split
    return result, peek


def _symbol_value(path, name):
    image = read_image(path)
    for symbols in (image.static_symbols(), zip(image.symbol_names(), image.dynsyms())):
        for sym_name, sym in symbols:
            if sym_name == name and sym.defined:
                return sym.value
    raise BenchError(f"{path}: no symbol {name}")


def slot_check(build, peek):
    """The program's slot of g0_f0, read in the process, must jump to g0_f0 at its link
    address (so libg0.so is at its base, and the slot is bound)."""
    address, code = peek
    encoding, target = _decode_slot(code, address)
    function = _symbol_value(build.libraries[0], PEEKED)
    if encoding is None or target != function:
        raise BenchError(f"{build.title}: the slot of {PEEKED} at {address:#x} "
                         f"({code.hex(' ')}) does not jump to {function:#x}")
    return {"slot": f"{address:#x}", "bytes": code.hex(" "), "encoding": encoding,
            "target": f"{target:#x}", "distance": target - address}


def moved_check(build, work):
    """relvec keeps a library correct away from its base: a preloaded library squats
    libg0.so's range, ld.so maps libg0.so elsewhere, the program must print the same."""
    base = _first_load(build.libraries[0])
    squat = work / "squat.so"
    (work / "squat.c").write_text("int ev_squat;\n")
    run(["gcc", "-shared", "-fPIC", f"-Wl,-Ttext-segment={base:#x}", "-o", squat, "squat.c"],
        work)
    moved = _load_bases(build, env={"LD_PRELOAD": str(squat)})[soname(0)]
    if moved == 0:
        raise BenchError(f"{squat} did not make {soname(0)} move")
    return {"library": soname(0), "l_addr": f"{moved:#x}", "output": "as expected"}


# -- all of it ----------------------------------------------------------------

def measure(work):
    started = time.monotonic()
    builds = build_all(work)
    built_s = time.monotonic() - started
    for b in builds:
        write_back(b)
        _run(b)
    results = {b.key: {"title": b.title, "pie": b.pie, "build_s": b.build_s} for b in builds}
    for b in builds:
        r = results[b.key]
        r["relocations_in_files"] = file_relocations(b)
        peek_offset = None
        if b.vectool:
            r["bases"] = check_bases(b)
            target = check_call_lands_in(b.program, PEEKED, SLOTS)
            peek_offset = target - _symbol_value(b.program, "__executable_start")
        else:
            r["bases"] = stock_bases(b)
        r["private_dirty_kB"], peek = private_dirty(b, work, peek_offset)
        if b.vectool:
            r["program_slot"] = slot_check(b, peek)
    fixed = next(b for b in builds if b.key == "fixed")
    results[fixed.key]["moved"] = moved_check(fixed, work)
    jobs = [(b, now) for b in builds for now in (False, True)]
    with ThreadPoolExecutor(WORKERS) as pool:
        counted = list(pool.map(lambda job: instructions(*job), jobs))
    for (b, now), n in zip(jobs, counted):
        results[b.key].setdefault("instructions", {})["now" if now else "lazy"] = n
    for key, stats in startup_statistics(builds).items():
        results[key]["ld_so"] = stats
    return {"libraries": LIBS, "functions_per_library": FUNCTIONS,
            "pointers_per_library": FUNCTION_POINTERS + STRING_POINTERS,
            "calls_below": len(range(0, FUNCTIONS, CALLS_BELOW_EVERY)),
            "output": EXPECTED.strip(), "startup_runs": STARTUP_RUNS, "dirty_runs": DIRTY_RUNS,
            "build_wall_s": round(built_s, 1),
            "measure_wall_s": round(time.monotonic() - started - built_s, 1),
            "builds": results}


if __name__ == "__main__":
    # Just this part: python bench/vectoolbench.py (from make's environment).
    import shutil

    import report

    here = Path(__file__).resolve().parent
    work = here / "work" / "vectool"
    shutil.rmtree(work, ignore_errors=True)
    try:
        group = measure(work)
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(1)
    print("\n".join(report.vectool_group_lines({"vectool_group": group})))
