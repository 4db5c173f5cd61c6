"""The deterministic figures the docs quote, measured, so that docs, benchmark and code agree.

docs/design.md quotes the bytes a vector costs and the symbol lookups it
saves.  Those figures do not depend on timing: each test here measures one
with readelf and ``LD_DEBUG=statistics`` and requires the same number in
the docs and in the benchmark's record (bench/results/latest.json).  A
change of the formats, of the docs or of the record alone fails here.
The closure's figures (issue 8) are timings and counts of whole Debian
programs, which a test cannot measure: the docs must quote them as the
record holds them.
"""

import json
import re
import sys

import pytest

from conftest import ROOT, run

sys.path.insert(0, str(ROOT / "bench"))
import gensrc  # noqa: E402

DESIGN = (ROOT / "docs" / "design.md").read_text()
LATEST = json.loads((ROOT / "bench" / "results" / "latest.json").read_text())
STARTUP_FUNCTIONS = 3000
SEED_XCLUDE = "^free$ ^malloc$ ^calloc$ ^realloc$"


def quoted(pattern, what):
    """The numbers ``pattern`` captures in docs/design.md (whitespace-insensitive)."""
    text = " ".join(DESIGN.split())
    match = re.search(pattern, text)
    assert match, f"docs/design.md no longer quotes {what} ({pattern!r})"
    return [int(group.replace(",", "")) for group in match.groups()]


def symbols(path, dynamic=False):
    """[(value, size, type, section index, name)] from readelf -s (or --dyn-syms)."""
    text = run(["readelf", "--dyn-syms" if dynamic else "-s", "-W", path], cwd=".").stdout
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[0].endswith(":") and fields[6].isdigit():
            rows.append((int(fields[1], 16), int(fields[2], 0), fields[3], int(fields[6]),
                         fields[7]))
    return rows


def section_index(path, name):
    text = run(["readelf", "-SW", path], cwd=".").stdout
    match = re.search(rf"\[\s*(\d+)\]\s+{re.escape(name)}\s", text)
    assert match, f"{path} has no section {name}"
    return int(match.group(1))


def lookups(program, libdir, bind_now):
    """ld.so's symbol lookups: at start-up and for the whole run (LD_DEBUG=statistics)."""
    env = {"LD_DEBUG": "statistics", "LD_LIBRARY_PATH": str(libdir)}
    if bind_now:
        env["LD_BIND_NOW"] = "1"
    err = run([program], program.parent, env, check=False).stderr
    startup = re.findall(r"\d+:\s+number of relocations:\s*(\d+)", err)
    total = re.findall(r"final number of relocations:\s*(\d+)", err)
    assert startup and total, err
    return {"startup": int(startup[-1]), "total": int(total[-1])}


def symbol_relocations(path, prefix):
    text = run(["readelf", "-rW", path], cwd=".").stdout
    return [line for line in text.splitlines()
            if re.search(rf"R_X86_64_(JUMP_SLOT|GLOB_DAT)\s+\S+\s+{prefix}", line)]


@pytest.fixture
def seed(build):
    """The seed's example as the README builds it, and the same program linked the usual way."""
    vec = build.expvec("foo.c", "foo.so.5", incl="@" + build.src("foo.order"),
                       vscript=build.src("foo.vscript"))
    stock = build.stock_lib("foo.c", "foo.so.5")
    program = build.program("testmain.c", "testmain", ["foo.so.5"], [vec], xclude=SEED_XCLUDE)
    slots = [line for line in (build.path / vec).read_text().splitlines()
             if line.strip() and not line.startswith(("#", "__V_"))]
    return build, program, stock, slots


def test_slot_bytes_per_import(seed):
    """Every slot is one 16-byte symbol in .elfvector.slots, packed: the docs' figure."""
    build, program, _, _ = seed
    index = section_index(program, ".elfvector.slots")
    slots = {(value, size) for value, size, kind, shndx, _ in symbols(program)
             if shndx == index and kind == "FUNC"}
    sizes = {size for _, size in slots}
    assert len(sizes) == 1, sizes
    (size,) = sizes
    start = min(value for value, _ in slots)
    assert sorted(value for value, _ in slots) == [start + size * i for i in range(len(slots))]
    assert [size] == quoted(r"One (\d+)-byte slot per imported function", "the slot size")
    assert [size] == quoted(r"each import costs (\d+) bytes of slot", "bytes per import")
    recorded = LATEST["vectored_slots"]
    assert recorded["slot_bytes"] == size * recorded["slots"]


def test_export_bytes_per_function(seed):
    """The export vector is 4 bytes per slot, in the library and in the docs."""
    build, _, _, slots = seed
    table = [size for _, size, _, _, name in symbols(build.path / "foo.so.5", dynamic=True)
             if name.split("@")[0] == "__V_foo_so_5"]
    assert table and table[0] % len(slots) == 0
    per_function = table[0] // len(slots)
    assert [per_function] == quoted(r"each export (\d+) bytes of table", "bytes per export")
    recorded = LATEST["library_linkage_bytes"]["vectored"]["export vector"]
    assert recorded == per_function * LATEST["functions"]


def test_seed_example_lookups_fall_by_vectored_functions_minus_vectors(seed):
    """The docs' rule, on the seed's testmain against the stock build (BIND_NOW: every lookup)."""
    build, program, stock, _ = seed
    quoted(r"symbol lookups fall by \(vectored functions - vectors\)", "the lookup rule")
    stock_program = program.with_name("testmain.stock")
    before = lookups(stock_program, stock, bind_now=True)["total"]
    after = lookups(program, build.path, bind_now=True)["total"]
    vectored = (len(symbol_relocations(stock_program, "foo_"))
                - len(symbol_relocations(program, "foo_")))
    vectors = len(symbol_relocations(program, "__V_"))
    assert vectored > 0 and vectors == 1
    assert before - after == vectored - vectors, (before, after, vectored, vectors)


def test_startup_lookups_as_documented_and_recorded(tmp_path):
    """The benchmark's program of 3000 imports: start-up lookups stock -z now and vectored."""
    (tmp_path / "lib.c").write_text(gensrc.library_source(STARTUP_FUNCTIONS))
    (tmp_path / "prog.c").write_text(gensrc.program_source(STARTUP_FUNCTIONS))
    for d in ("stock", "vec"):
        (tmp_path / d).mkdir()
    run(["gcc", "-O0", "-fPIC", "-c", "lib.c", "-o", "lib.o"], tmp_path)
    run(["gcc", "-O0", "-c", "prog.c", "-o", "prog.o"], tmp_path)
    link = ["gcc", "-shared", "-Wl,-soname=libbench.so"]
    run([*link, "-o", "stock/libbench.so", "lib.o"], tmp_path)
    run(["gcc", "-Wl,-z,now", "-o", "prog.now", "prog.o", "stock/libbench.so"], tmp_path)
    run([sys.executable, ROOT / "bin" / "expvec", "--vec", "lib.vec", "--vec-object",
         "lib.vec.o", ".", "", "", *link, "-o", "vec/libbench.so", "lib.o"], tmp_path)
    run([sys.executable, ROOT / "bin" / "impvec", "--link", "", "lib.vec", "gcc", "-o",
         "prog.vec", "prog.o", "vec/libbench.so"], tmp_path)
    expected = gensrc.expected_output(STARTUP_FUNCTIONS)
    now = lookups(tmp_path / "prog.now", tmp_path / "stock", bind_now=False)["startup"]
    vectored = lookups(tmp_path / "prog.vec", tmp_path / "vec", bind_now=False)["startup"]
    assert run([tmp_path / "prog.vec"], tmp_path, {"LD_LIBRARY_PATH": str(tmp_path / "vec")},
               ).stdout == expected
    assert quoted(r"with ([\d,]+) symbol lookups against ([\d,]+)", "start-up lookups") == [
        vectored, now]
    recorded = LATEST["builds"]
    assert (recorded["vectored"]["symbol_lookups"]["startup"],
            recorded["now"]["symbol_lookups"]["startup"]) == (vectored, now)
    assert LATEST["functions"] == STARTUP_FUNCTIONS


# -- the closure's figures (issue 8) ---------------------------------------------------------
#
# Timing cannot be measured in a test; what the docs quote of the closure
# benchmark must be the record's, so each table is rendered here from
# bench/results/latest.json and must appear in the docs line for line.

README = (ROOT / "README.md").read_text()
CLOSURE = LATEST["closure"]


def closure_table_readme():
    """README's rows: lookups, CPU ms and the median CPU ratio per program."""
    rows = []
    for program, figures in CLOSURE["programs"].items():
        lookups, cpu = figures["lookups"]["bind_now"], figures["cpu"]["shipped"]
        rows.append(f"| {program} | {lookups['stock']['startup']:,} -> "
                    f"{lookups['shared']['startup']:,} | {_ms(cpu, 'stock')} -> "
                    f"{_ms(cpu, 'new')} | {_ratio(cpu['cpu_ratio'])} |")
    return rows


def closure_table_design():
    """docs/design.md's rows: every figure of the shared DIR per program."""
    floor = CLOSURE["floor"]["static"]["cpu"]
    rows = ["| program | objects | lookups | RELATIVE | instructions | CPU ms "
            "| CPU ratio [quartiles] | above the floor | libc off its base | minor faults "
            "| Private_Dirty kB |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for program, f in CLOSURE["programs"].items():
        lookups, cpu = f["lookups"]["bind_now"], f["cpu"]["shipped"]
        instructions = f["instructions"]["shipped"]
        stock, new = cpu["stock"]["cpu"], cpu["new"]["cpu"]
        dirty = f["private_dirty_kb"]["shipped"]
        rows.append(
            f"| {program} | {CLOSURE['retro']['alone'][program]['objects']} "
            f"| {lookups['stock']['startup']:,} -> {lookups['shared']['startup']:,} "
            f"| {lookups['stock']['relative']:,} -> {lookups['shared']['relative']:,} "
            f"| {_change(instructions['stock']['total'], instructions['shared']['total'])} "
            f"| {_ms(cpu, 'stock')} -> {_ms(cpu, 'new')} | {_ratio(cpu['cpu_ratio'])} "
            f"| {1 - (new - floor) / (stock - floor):.0%} "
            f"| {f['cpu']['moved']['cpu_ratio']['median']:.3f} "
            f"| {cpu['stock']['minflt']:,.0f} -> {cpu['new']['minflt']:,.0f} "
            f"| {dirty['stock']:,} -> {dirty['shared']:,} |")
    return rows


def _ms(cpu, side):
    return f"{cpu[side]['cpu'] * 1e3:.2f}"


def _ratio(r):
    return f"{r['median']:.3f} [{r['q1']:.3f}-{r['q3']:.3f}]"


def _change(before, after):
    return f"{(after - before) / before:+.1%}"


def closure_figures():
    """{placeholder: text} of the figures the docs quote in their prose."""
    retro, floor = CLOSURE["retro"], CLOSURE["floor"]
    plugins = CLOSURE["programs"]["curl"]["instructions"]["without_plugins"]
    return {
        "WORKLOADS": f"{CLOSURE['behaviour']['workloads']}",
        "RUNS_COMPARED": f"{CLOSURE['behaviour']['runs_compared']}",
        "FLOOR_STATIC": f"{floor['static']['cpu'] * 1e3:.2f}",
        "FLOOR_TRUE": f"{floor['true']['cpu'] * 1e3:.2f}",
        "PARENT_RSS": f"{floor['parent_rss_kib']:,}",
        "SHARED_S": f"{retro['shared']['wall_s']:g}",
        "SHARED_OBJECTS": f"{retro['shared']['objects']}",
        "CURL_S": f"{retro['alone']['curl']['wall_s']:g}",
        "GDB_S": f"{retro['alone']['gdb']['wall_s']:g}",
        "SASL_CHANGE": _change(plugins["stock"]["total"], plugins["shared"]["total"]),
    }


def assert_rows_in(doc, name, rows):
    lines = doc.splitlines()
    missing = [row for row in rows if row not in lines]
    assert not missing, (f"{name} no longer quotes bench/results/latest.json; its table "
                         "should read:\n" + "\n".join(rows))


def test_readme_closure_table_is_the_record():
    assert_rows_in(README, "README.md", closure_table_readme())


def test_design_closure_table_is_the_record():
    assert_rows_in(DESIGN, "docs/design.md", closure_table_design())


@pytest.mark.parametrize("doc, name, patterns", [
    (README, "README.md", {
        "FLOOR_STATIC": r"`int main\(\)\{return 0;\}` measures ([\d.]+) ms of CPU",
        "FLOOR_TRUE": r"`/usr/bin/true` ([\d.]+) ms",
        "WORKLOADS": r"Every workload \((\d+) of them"}),
    (DESIGN, "docs/design.md", {
        "FLOOR_STATIC": r"`int main\(\)\{return 0;\}` measures ([\d.]+) ms of CPU",
        "FLOOR_TRUE": r"`/usr/bin/true` ([\d.]+) ms",
        "PARENT_RSS": r"small Python process \(of ([\d,]+) KiB\)",
        "WORKLOADS": r"Every workload \((\d+) of them",
        "RUNS_COMPARED": r"exit status in (\d+) runs",
        "SHARED_S": r"into one DIR took ([\d.]+) s",
        "SHARED_OBJECTS": r"took [\d.]+ s \((\d+) objects\)",
        "CURL_S": r"curl's closure alone ([\d.]+) s",
        "GDB_S": r"gdb's ([\d.]+) s",
        "SASL_CHANGE": r"its change is ([+-][\d.]+%)"}),
])
def test_closure_prose_figures_are_the_record(doc, name, patterns):
    text = " ".join(doc.split())
    expected = closure_figures()
    for key, pattern in patterns.items():
        match = re.search(pattern, text)
        assert match, f"{name} no longer quotes {key} ({pattern!r})"
        assert match.group(1) == expected[key], (name, key, match.group(1), expected[key])
