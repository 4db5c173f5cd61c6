"""``vectool --mode=retro`` as a user runs it, on small programs built here.

testdata/retro holds libdemo.so.1 (its own exported symbols called
through its PLT, data the programs copy, a __thread counter, qsort called
with the program's callback) and the programs using it: ``demo`` as a PIE
and as a non-PIE program, ``threads``, ``dlopen_main`` (dlopen of a
closure library and of one outside it), and ``shapes``, a C++ program and
library (vtables across objects, typeinfo, exceptions, copy relocations, an
STB_GNU_UNIQUE static local).  One retro run writes all five into one
output directory, with --verify; every output must then behave exactly as
the stock program does (stdout, stderr, exit status), also when a library
cannot have its base, and refuse what it must: another build of a library,
a preload that would interpose a pre-bound function.
"""

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BIN, TESTDATA, missing, require_programs, run
from elfvector import addrfile
from elfvector.closure.driver import RetroOptions, retro
from elfvector.closure.model import RELA_DYN, Settle
from elfvector.closure.verify import verify
from elfvector.elfimage import ElfImage

SRC = TESTDATA / "retro"
PROGRAMS = ("demo", "demo_nopie", "threads", "dlopen_main", "shapes")
DT_JMPREL = 23
CAPABILITY_V2 = bytes.fromhex("00000002" "00200000" "00000000" "00000000" "00000000")


# -- running things ----------------------------------------------------------------------

def clean_env(extra=None):
    """The environment programs run in: no LD_* of ours, no ELFVECTOR_*."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LD_", "ELFVECTOR_"))}
    env.update(extra or {})
    return env


def sh(argv, cwd, env=None, argv0=None):
    """Run ``argv`` (``argv0`` as its argv[0]) with standard input closed."""
    argv = [str(a) for a in argv]
    executable = argv[0]
    if argv0 is not None:
        argv = [argv0] + argv[1:]
    return subprocess.run(argv, executable=executable, cwd=cwd, env=clean_env(env),
                          capture_output=True, text=True, errors="surrogateescape",
                          stdin=subprocess.DEVNULL, timeout=120)


def outcome(proc):
    return proc.stdout, proc.stderr, proc.returncode


def vectool(*args, cwd, env=None):
    return sh([sys.executable, BIN / "vectool", *args], cwd, env)


def retro_cli(cwd, outdir, addrs, *args, env=None):
    return vectool("--mode=retro", f"--addrfile={addrs}", f"--outdir={outdir}", *args,
                   cwd=cwd, env=env)


def compile_c(d, *args, cxx=False):
    proc = sh(["g++" if cxx else "gcc", *args], d)
    assert proc.returncode == 0, proc.stderr


def build_lib(d, variant=1):
    compile_c(d, "-O2", "-g", "-fPIC", "-shared", "-Wl,-soname=libdemo.so.1",
              f"-DVARIANT={variant}", "-o", "libdemo.so.1", SRC / "demo_lib.c")


def build_demo(d, variant=1):
    """libdemo.so.1 and demo in ``d``, demo's run path ``d``."""
    d.mkdir(exist_ok=True)
    build_lib(d, variant)
    compile_c(d, "-O2", "-g", "-o", "demo", SRC / "demo_main.c", "-I", SRC, "./libdemo.so.1",
              f"-Wl,-rpath,{d}")


def build_all(d):
    """Every library and program of testdata/retro, each program with a run
    path to ``d`` (so the stock programs run as they are)."""
    require_programs("gcc", "g++", "gdb")
    build_lib(d)
    rpath = [f"-Wl,-rpath,{d}", "-I", SRC]
    compile_c(d, "-O2", "-g", "-o", "demo", SRC / "demo_main.c", "./libdemo.so.1", *rpath)
    compile_c(d, "-O2", "-g", "-fno-pie", "-no-pie", "-o", "demo_nopie", SRC / "demo_main.c",
              "./libdemo.so.1", *rpath)
    compile_c(d, "-O2", "-g", "-pthread", "-o", "threads", SRC / "threads_main.c",
              "./libdemo.so.1", *rpath)
    compile_c(d, "-O2", "-g", "-o", "dlopen_main", SRC / "dlopen_main.c", "./libdemo.so.1",
              *rpath)
    compile_c(d, "-O2", "-fPIC", "-shared", "-o", "outside.so", SRC / "outside.c", "-I", SRC,
              "./libdemo.so.1")
    for name in ("mallocwrap", "interpose"):
        compile_c(d, "-O2", "-fPIC", "-shared", "-o", f"{name}.so", SRC / f"{name}.c")
    compile_c(d, "-O2", "-fPIC", "-shared", "-Wl,-soname=libshapes.so.1", "-o",
              "libshapes.so.1", SRC / "shapes_lib.cc", cxx=True)
    compile_c(d, "-O2", "-o", "shapes", SRC / "shapes_main.cc", "./libshapes.so.1", *rpath,
              cxx=True)


def blocker(d, base, name="blocker.so"):
    """A library linked at ``base`` with no symbol in common with anything:
    preloaded, it takes the base a rewritten library wants."""
    compile_c(d, "-O2", "-fPIC", "-shared", "-o", name, SRC / "blocker.c",
              f"-Wl,-Ttext-segment={base:#x}")
    return d / name


def manifest(outdir):
    return json.loads((outdir / "elfvector-retro.json").read_text())


def base_of(outdir, name):
    return next(o["base"] for o in manifest(outdir)["objects"]
                if Path(o["output"]).name == name)


def load_bias(program, soname, env=None):
    """How far from its link-time address ld.so put ``soname`` in a run of
    ``program`` (LD_DEBUG=files prints l_addr as "base"): 0 at its base."""
    err = sh([program], program.parent, dict(env or {}, LD_DEBUG="files")).stderr
    found = re.search(rf"file=(?:\S*/)?{re.escape(soname)} \[0\];  generating link map\n.*base: "
                      r"0x([0-9a-f]+)", err)
    return int(found.group(1), 16)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("retro")
    build_all(d)
    return d


@pytest.fixture(scope="module")
def closure(built):
    """The five programs rewritten into OUT by one run, with --verify, -v and --json."""
    out, addrs = built / "out", built / "addrs"
    proc = retro_cli(built, out, addrs, "-v", "--verify", "--json", built / "report.json",
                     *[built / p for p in PROGRAMS])
    return built, out, proc


def stock_and_output(d, out, program, args, env=None):
    return (outcome(sh([d / program, *args], d, env, argv0=program)),
            outcome(sh([out / "bin" / program, *args], d, env, argv0=program)))


# -- the outputs behave like the stock programs ----------------------------------------------

CASES = [
    ("demo", ["5", "3", "9"]), ("demo", []), ("demo", ["fail"]),
    ("demo_nopie", ["5", "3", "9"]), ("demo_nopie", ["fail"]),
    ("threads", []), ("threads", ["16"]), ("threads", ["99"]),
    ("dlopen_main", ["libdemo.so.1", "{d}/outside.so", "libnope.so"]),
    ("shapes", ["square", "triangle", "square"]), ("shapes", []),
]


@pytest.mark.parametrize("program, args", CASES, ids=[" ".join([p, *a]) for p, a in CASES])
def test_outputs_behave_like_stock(closure, program, args):
    d, out, proc = closure
    assert proc.returncode == 0, proc.stderr
    stock, output = stock_and_output(d, out, program, [a.format(d=d) for a in args])
    assert output == stock
    assert stock[2] in (0, 1, 2, 3)


def test_verify_is_clean_and_the_report_complete(closure):
    d, out, proc = closure
    # no progress (stderr is not a terminal); the one library built with -g is warned about
    assert proc.stderr == debug_warning(d / "libdemo.so.1", out)
    found = re.search(r"^verified: (\d+) words \((\d+) settled in the files\) hold ld.so's "
                      r"values in 5 programs$", proc.stdout, re.M)
    assert found and int(found.group(1)) > int(found.group(2)) > 5000, proc.stdout
    report = json.loads((d / "report.json").read_text())
    assert set(report["programs"]) == {str(d / p) for p in PROGRAMS}
    for program, figures in report["programs"].items():
        assert figures["lookups_after"] < figures["lookups_before"] / 2, program
        line = f"{program}: lookups at start-up {figures['lookups_before']} -> " \
               f"{figures['lookups_after']} ("
        assert line in proc.stdout
    outputs = {Path(o["output"]).relative_to(out).as_posix() for o in report["objects"]}
    assert {f"bin/{p}" for p in PROGRAMS} | {"lib/libdemo.so.1", "lib/libshapes.so.1",
                                             "lib/libc.so.6", "lib/libstdc++.so.6",
                                             "lib/ld-linux-x86-64.so.2"} <= outputs
    for row in report["objects"]:                # -v: one table line per object
        name = Path(row["output"]).relative_to(out).as_posix()
        assert re.search(rf"^{re.escape(name)} .* {row['lookups_before']} -> "
                         rf"{row['lookups_after']} .* {row['bytes_before']} -> "
                         rf"{row['bytes_after']}$", proc.stdout, re.M), name
        assert row["loads_after"] == row["loads_before"]
    libdemo = next(r for r in report["objects"] if r["output"].endswith("libdemo.so.1"))
    assert libdemo["relative_before"] > 0 == libdemo["relative_after"]


def test_outputs_are_self_contained(closure):
    """DT_RPATH and PT_INTERP point into OUT/lib, ld.so is a verbatim copy,
    and each output keeps its source's build-id and mode."""
    d, out, _ = closure
    lib = str(out / "lib")
    for entry in manifest(out)["objects"]:
        source, output = Path(entry["source"]), Path(entry["output"])
        if entry["kind"] == "ld.so":
            assert output.read_bytes() == source.read_bytes()
            continue
        dynamic = run(["readelf", "-dW", output], d).stdout
        assert f"(RPATH)              Library rpath: [{lib}]" in dynamic
        assert "RUNPATH" not in dynamic
        assert build_id(output) == build_id(source)
        assert output.stat().st_mode & 0o7777 == source.stat().st_mode & 0o777
    interp = run(["readelf", "-lW", out / "bin" / "demo"], d).stdout
    assert f"[Requesting program interpreter: {lib}/ld-linux-x86-64.so.2]" in interp


def build_id(path):
    text = run(["readelf", "-n", path], path.parent).stdout
    return re.search(r"Build ID: ([0-9a-f]+)", text).group(1)


# -- a library that is not at its base --------------------------------------------------------

@pytest.mark.parametrize("program", ["demo", "demo_nopie", "shapes"])
def test_a_library_off_its_base_behaves_the_same(closure, program):
    d, out, _ = closure
    soname = "libshapes.so.1" if program == "shapes" else "libdemo.so.1"
    blocked = {"LD_PRELOAD": str(blocker(d, base_of(out, soname), f"block-{soname}"))}
    assert load_bias(out / "bin" / program, soname) == 0
    assert load_bias(out / "bin" / program, soname, blocked) != 0
    args = ["square"] if program == "shapes" else ["4", "2"]
    assert stock_and_output(d, out, program, args, blocked)[1] == \
        stock_and_output(d, out, program, args)[0]


# -- preloads -------------------------------------------------------------------------------

def test_a_preloaded_malloc_still_interposes(closure):
    d, out, _ = closure
    env = {"LD_PRELOAD": str(d / "mallocwrap.so")}
    stock, output = stock_and_output(d, out, "shapes", ["square"], env)
    assert output == stock and "mallocwrap: malloc was interposed" in stock[1]


def test_a_preload_of_a_prebound_function_is_refused(closure):
    d, out, _ = closure
    env = {"LD_PRELOAD": str(d / "interpose.so")}
    _, output = stock_and_output(d, out, "demo", ["1"], env)
    assert output == ("", f"elfvector: demo: LD_PRELOAD'ed {d / 'interpose.so'} would "
                          "interpose pre-bound symbols (set ELFVECTOR_PRELOAD=ignore to run "
                          "anyway)\n", 127)
    stock, _ = stock_and_output(d, out, "demo", ["1"])
    _, ignored = stock_and_output(d, out, "demo", ["1"], dict(env, ELFVECTOR_PRELOAD="ignore"))
    assert ignored == stock


def test_excluded_names_stay_interposable(built, tmp_path):
    """--exclude keeps demo_twice a lookup: the same preload then interposes
    it as in the stock program; --keep-interposable keeps libdemo's own
    references too."""
    out = tmp_path / "out"
    proc = retro_cli(built, out, tmp_path / "addrs", "--exclude", "^demo_twice$",
                     "--keep-interposable", "--json", tmp_path / "r.json", built / "demo")
    assert proc.returncode == 0, proc.stderr
    env = {"LD_PRELOAD": str(built / "interpose.so")}
    stock, output = stock_and_output(built, out, "demo", ["1"], env)
    assert output == stock and "twice(21) = -21" in stock[0]
    rows = json.loads((tmp_path / "r.json").read_text())["objects"]
    libdemo = next(r for r in rows if r["output"].endswith("libdemo.so.1"))
    assert libdemo["remaining"].get("interposable", 0) > 0


def test_a_rerun_keeps_the_recorded_exclusions(built, tmp_path):
    """A rerun without --exclude and --keep-interposable redoes DIR as it
    was made (-v says so; nothing is written, the preload still
    interposes demo_twice); values given replace the recorded ones, and
    the same preload is then refused."""
    out, addrs = tmp_path / "out", tmp_path / "addrs"
    first = retro_cli(built, out, addrs, "--exclude", "^demo_twice$", "--keep-interposable",
                      built / "demo")
    assert first.returncode == 0, first.stderr
    recorded = manifest(out)["settings"]
    rerun = retro_cli(built, out, addrs, "-v")
    assert rerun.returncode == 0, rerun.stderr
    path = out / "elfvector-retro.json"
    assert rerun.stdout.startswith(f"vectool: --exclude='^demo_twice$' (as {path} records)\n"
                                   f"vectool: --keep-interposable (as {path} records)\n")
    assert "(0 written)" in rerun.stdout
    assert manifest(out)["settings"] == recorded
    env = {"LD_PRELOAD": str(built / "interpose.so")}
    stock, output = stock_and_output(built, out, "demo", ["1"], env)
    assert output == stock and "twice(21) = -21" in stock[0]
    replaced = retro_cli(built, out, addrs, "-v", "--exclude=", "--no-keep-interposable")
    assert replaced.returncode == 0, replaced.stderr
    assert replaced.stdout.startswith(
        "vectool: --exclude='' replaces the recorded --exclude='^demo_twice$'\n"
        "vectool: --no-keep-interposable replaces the recorded --keep-interposable\n")
    assert manifest(out)["settings"]["exclude"] == []
    assert manifest(out)["settings"]["keep_interposable"] is False
    assert stock_and_output(built, out, "demo", ["1"], env)[1][2] == 127


# -- lazy binding of what stays a lookup ------------------------------------------------------

GONE_LIB = """
int present(void) { return 1; }
#ifndef WITHOUT_GONE
int gone(void) { return 2; }
#endif
"""
GONE_MAIN = """
#include <stdio.h>
int present(void);
int gone(void);
int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        printf("gone() = %d\\n", gone());
    printf("present() = %d\\n", present());
    return 0;
}
"""


def test_a_function_nothing_defines_stays_lazy(tmp_path):
    """A program linked against a build of libgone that had gone(), run
    with one that no longer has it: as shipped it runs until it calls
    gone(), which ld.so then reports.  The closure keeps that JUMP_SLOT a
    lazy lookup (in the output's own DT_JMPREL), so the output does the
    same, and, like the stock program, stops at start under LD_BIND_NOW."""
    (tmp_path / "lib.c").write_text(GONE_LIB)
    (tmp_path / "main.c").write_text(GONE_MAIN)
    lib = ["-O2", "-fPIC", "-shared", "-Wl,-soname=libgone.so.1", "-o", "libgone.so.1", "lib.c"]
    compile_c(tmp_path, *lib)
    compile_c(tmp_path, "-O2", "-Wl,-z,lazy", "-o", "main", "main.c", "./libgone.so.1",
              f"-Wl,-rpath,{tmp_path}")
    compile_c(tmp_path, *lib, "-DWITHOUT_GONE")
    out = tmp_path / "out"
    proc = retro_cli(tmp_path, out, tmp_path / "addrs", tmp_path / "main")
    assert proc.returncode == 0, proc.stderr
    assert "undefined 1" in proc.stdout
    image = ElfImage((out / "bin" / "main").read_bytes(), "main")
    names = image.symbol_names()
    assert [names[r.sym] for r in image.relas(DT_JMPREL, None)] == ["gone"]
    for args, env in [([], None), (["call"], None), ([], {"LD_BIND_NOW": "1"})]:
        stock, output = stock_and_output(tmp_path, out, "main", args, env)
        assert output == stock
        assert stock[2] == (127 if args or env else 0), stock
    assert stock[1] == "main: symbol lookup error: main: undefined symbol: gone\n"


# -- another build of a library, sources that change ---------------------------------------------

@pytest.fixture
def small(built, tmp_path):
    """demo and libdemo copied to SRC/, rewritten into OUT/: (SRC, OUT, ADDRS)."""
    src = tmp_path / "src"
    build_demo(src)
    out, addrs = tmp_path / "out", tmp_path / "addrs"
    proc = retro_cli(tmp_path, out, addrs, src / "demo")
    assert proc.returncode == 0, proc.stderr
    return src, out, addrs


def test_another_build_of_a_library_is_refused(small, tmp_path):
    src, out, _ = small
    other = tmp_path / "other"
    build_demo(other, variant=2)
    shutil.copy2(small[2], tmp_path / "addrs2")          # the same bases: only libdemo differs
    proc = retro_cli(tmp_path, tmp_path / "out2", tmp_path / "addrs2", other / "demo")
    assert proc.returncode == 0, proc.stderr
    shutil.copy2(tmp_path / "out2" / "lib" / "libdemo.so.1", out / "lib" / "libdemo.so.1")
    program = out / "bin" / "demo"
    proc = sh([program, "1"], tmp_path)
    check = next(o["check_symbol"] for o in manifest(out)["objects"]
                 if o["output"].endswith("/libdemo.so.1"))
    assert check.startswith("__elfvector_libdemo_so_1_")
    assert outcome(proc) == ("", f"{program}: symbol lookup error: {program}: undefined "
                                 f"symbol: {check}\n", 127)
    shutil.copy2(src / "libdemo.so.1", out / "lib" / "libdemo.so.1")     # the stock build
    assert sh([program, "1"], tmp_path).returncode == 127
    proc = vectool("--mode=retro", "--check", f"--outdir={out}", cwd=tmp_path)
    assert outcome(proc) == (f"{out / 'lib' / 'libdemo.so.1'}: output changed\n", "", 1)


def test_a_rerun_keeps_the_recorded_libdir(small, tmp_path):
    """A rerun without --libdir keeps the run path DIR was made for: the
    default DIR/lib is not noted, a --libdir given is taken (nothing is
    written) and one given again replaces it."""
    _, out, addrs = small
    rerun = retro_cli(tmp_path, out, addrs, "-v")
    assert rerun.returncode == 0 and "--libdir" not in rerun.stdout, rerun.stderr
    libdir, path = tmp_path / "installed", out / "elfvector-retro.json"
    first = retro_cli(tmp_path, out, addrs, f"--libdir={libdir}")
    assert first.returncode == 0, first.stderr
    rerun = retro_cli(tmp_path, out, addrs, "-v")
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.startswith(f"vectool: --libdir={libdir} (as {path} records)\n")
    assert "(0 written)" in rerun.stdout
    assert manifest(out)["settings"]["libdir"] == str(libdir)
    other = tmp_path / "elsewhere"
    again = retro_cli(tmp_path, out, addrs, "-v", f"--libdir={other}")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"vectool: --libdir={other} replaces the recorded "
                                   f"--libdir={libdir}\n")
    assert manifest(out)["settings"]["libdir"] == str(other)


def test_a_rerun_reads_the_recorded_exclude_file_again(small, tmp_path):
    """--exclude=@FILE given to vectool is recorded as FILE: a rerun without
    --exclude reads it again and takes the words it holds then."""
    src, out, addrs = small
    words = tmp_path / "keep.txt"
    words.write_text("^demo_twice$  # kept a lookup\n")
    proc = retro_cli(tmp_path, out, addrs, f"--exclude=@{words}", src / "demo")
    assert proc.returncode == 0, proc.stderr
    assert manifest(out)["settings"]["exclude_file"] == str(words)
    words.write_text("^demo_twice$\n^demo_add$\n")
    rerun = retro([], RetroOptions(outdir=str(out), addrfile=str(addrs)))
    assert rerun.settings == [f"--exclude=@{words} (as {out / 'elfvector-retro.json'} records)"]
    settings = manifest(out)["settings"]
    assert settings["exclude"] == ["^demo_twice$", "^demo_add$"]
    assert settings["exclude_file"] == str(words)


def test_check_and_rerun(small, tmp_path):
    """--check lists the outputs whose sources changed; rerunning without
    PROGRAM redoes the manifest's programs, writing only the files whose
    bytes change: the library and its importer, not libc or ld.so."""
    src, out, addrs = small
    check = ["--mode=retro", "--check", f"--outdir={out}"]
    assert outcome(vectool(*check, cwd=tmp_path)) == ("", "", 0)
    build_lib(src, variant=2)
    lib = out / "lib" / "libdemo.so.1"
    assert outcome(vectool(*check, cwd=tmp_path)) == \
        (f"{lib}: source {src / 'libdemo.so.1'} changed\n", "", 1)
    before = {p.name: p.stat().st_ino for p in (out / "lib").iterdir()}
    proc = retro_cli(tmp_path, out, addrs, "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    written = {Path(r["output"]).name for r in
               json.loads((tmp_path / "r.json").read_text())["objects"] if r["written"]}
    assert written == {"demo", "libdemo.so.1"}
    after = {p.name: p.stat().st_ino for p in (out / "lib").iterdir()}
    assert after["libc.so.6"] == before["libc.so.6"] and after[lib.name] != before[lib.name]
    assert outcome(vectool(*check, cwd=tmp_path)) == ("", "", 0)
    assert "variant 2" in sh([out / "bin" / "demo"], tmp_path).stdout


def test_later_runs_keep_earlier_programs(built, small, tmp_path):
    """The manifest's programs are redone with the new one, into one DIR/lib."""
    _, out, addrs = small
    proc = retro_cli(tmp_path, out, addrs, built / "shapes")
    assert proc.returncode == 0, proc.stderr
    assert [Path(p["source"]).name for p in manifest(out)["programs"]] == ["demo", "shapes"]
    assert "/demo: lookups at start-up" in proc.stdout
    for program in ("demo", "shapes"):
        assert sh([out / "bin" / program], tmp_path).returncode == 0


def unchanged(out):
    """A snapshot of DIR: every file's bytes."""
    return {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_an_output_given_as_program_is_refused(small, tmp_path):
    """DIR/bin/demo, or a copy of it elsewhere, is refused in one line
    naming the original when a manifest knows it (DIR's, or the one of the
    DIR the output lies in); nothing is written."""
    src, out, addrs = small
    output, copy = out / "bin" / "demo", tmp_path / "installed" / "demo"
    copy.parent.mkdir()
    shutil.copy2(output, copy)
    before = unchanged(out)
    refused = "is an output of vectool --mode=retro: give the original program"
    for program, outdir, original in [(output, out, f", {src / 'demo'}"),
                                      (copy, out, f", {src / 'demo'}"),
                                      (output, tmp_path / "out2", f", {src / 'demo'}"),
                                      (copy, tmp_path / "out2", "")]:
        proc = retro_cli(tmp_path, outdir, addrs, program)
        assert outcome(proc) == ("", f"vectool: {program}: {refused}{original}\n", 1)
    assert unchanged(out) == before
    assert not (tmp_path / "out2" / "elfvector-retro.json").exists()


def test_an_output_copied_over_its_original_is_refused(small, tmp_path):
    """The installed output replaced the recorded program: a rerun says so
    rather than rewrite an output."""
    src, out, addrs = small
    shutil.copy2(out / "bin" / "demo", src / "demo")
    proc = retro_cli(tmp_path, out, addrs)
    assert outcome(proc) == ("", f"vectool: {src / 'demo'}: is an output of vectool "
                                 "--mode=retro: it was copied over the original program it "
                                 "was made from: reinstall that (a program "
                                 f"{out / 'elfvector-retro.json'} records: remove it there to "
                                 "stop redoing it)\n", 1)


def test_a_program_retroimp_rewrote_is_refused(small, tmp_path):
    """retroimp's outputs carry its code section, .elfvector.resolvers."""
    src, _, addrs = small
    marker = tmp_path / "marker"
    marker.write_bytes(b"\xc3")
    run(["objcopy", "--add-section", f".elfvector.resolvers={marker}", src / "demo",
         tmp_path / "demo"], tmp_path)
    proc = retro_cli(tmp_path, tmp_path / "out2", addrs, tmp_path / "demo")
    assert outcome(proc) == ("", f"vectool: {tmp_path / 'demo'}: was rewritten by retroimp: "
                                 "give the original program\n", 1)


def test_a_recorded_program_that_is_gone(small, tmp_path):
    src, out, addrs = small
    (src / "demo").unlink()
    proc = retro_cli(tmp_path, out, addrs)
    assert outcome(proc) == ("", f"vectool: {src / 'demo'}: cannot read: No such file or "
                                 f"directory (a program {out / 'elfvector-retro.json'} records: "
                                 "remove it there to stop redoing it)\n", 1)


# -- bases ------------------------------------------------------------------------------------

def test_new_addrfiles_get_random_bases_unless_seeded(built, tmp_path):
    """Two new addrfiles start at different random tops (about 32,000
    2 MiB boundaries leave room for demo's closure: equal once in 30,000
    runs); --seed makes the choice repeatable."""
    def bases(name, *args):
        proc = retro_cli(tmp_path, tmp_path / f"out-{name}", tmp_path / name, *args,
                         built / "demo")
        assert proc.returncode == 0, proc.stderr
        found = addrfile.read(str(tmp_path / name))
        assert [a.soname for a in found] == ["libdemo.so.1", "libc.so.6"]
        return [a.base for a in found]
    first, second = bases("a"), bases("b")
    assert first != second
    assert bases("seeded", "--seed", "7") == bases("seeded-again", "--seed", "7") \
        != bases("other-seed", "--seed", "8")
    for base in first + second:
        assert base % (2 << 20) == 0
        assert addrfile.DEFAULT_REGION.bottom <= base < addrfile.DEFAULT_REGION.top


def test_no_fixed_bases(built, tmp_path):
    """Libraries stay where they are linked (ASLR places them) and each
    start corrects the settled words; --libdir is where they will be."""
    out, libdir = tmp_path / "out", tmp_path / "installed"
    args = ["--mode=retro", "--no-fixed-bases", f"--outdir={out}", f"--libdir={libdir}"]
    proc = vectool(*args, built / "demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert all(o["base"] is None for o in manifest(out)["objects"])
    proc = vectool(*args, "--verify", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr == f"vectool: {libdir / 'ld-linux-x86-64.so.2'}: --verify: not the " \
                          f"output {out / 'lib' / 'ld-linux-x86-64.so.2'}: install DIR/lib " \
                          "at --libdir first\n"
    shutil.copytree(out / "lib", libdir)
    proc = vectool(*args, "--verify", cwd=tmp_path)
    assert proc.returncode == 0 and "verified: " in proc.stdout, proc.stderr
    assert "(0 written)" in proc.stdout
    stock, output = stock_and_output(built, out, "demo", ["3", "1"])
    assert output == stock
    assert load_bias(out / "bin" / "demo", "libdemo.so.1") > 0x700000000000  # mmap's region


# -- the oracle -------------------------------------------------------------------------------

def test_verify_reports_a_wrong_word(built, tmp_path):
    """One settled word of libdemo changed behind the plan's back: the
    oracle names the file and the word, and nothing else."""
    options = RetroOptions(outdir=str(tmp_path / "out"), addrfile=str(tmp_path / "addrs"))
    result = retro([str(built / "demo")], options)
    plan = result.plan
    i, obj = next((i, o) for i, o in enumerate(plan.objects) if o.soname == "libdemo.so.1")
    elf = result.closure.objects[i]
    n = next(n for (table, n), d in sorted(obj.decisions.items())
             if table == RELA_DYN and isinstance(d, Settle) and d.target.obj != i)
    word = elf.rela_dyn[n][0] - obj.old_base + obj.new_base
    output = Path(obj.output)
    data = bytearray(output.read_bytes())
    at = ElfImage(bytes(data), obj.output).offset_of(word)
    data[at] ^= 0x10
    output.write_bytes(bytes(data))
    verified = verify(result.closure, plan)
    assert verified.settled > 1000 and len(verified.failures) == 1
    found = re.fullmatch(rf"{re.escape(str(output))}: word {word:#x} \(rela.dyn #{n}, "
                         r"Settle\) holds (0x[0-9a-f]+) where ld.so gives the stock program "
                         r"(0x[0-9a-f]+)", str(verified.failures[0]))
    assert found, verified.failures[0]
    assert int(found.group(1), 16) ^ int(found.group(2), 16) == 0x10


# -- debuggers --------------------------------------------------------------------------------

def frames(proc):
    """The function names of gdb's backtrace."""
    return [m.group(1) for m in re.finditer(r"^#\d+ +(?:0x[0-9a-f]+ in )?(\S+) \(",
                                            proc.stdout, re.M)]


def split_debug_info(path, debug_dir):
    """Debian's way: the debug info of ``path`` moved to
    DEBUG_DIR/.build-id/xx/yyyy.debug, where gdb looks it up by build-id."""
    build = build_id(path)
    target = debug_dir / ".build-id" / build[:2] / f"{build[2:]}.debug"
    target.parent.mkdir(parents=True)
    run(["objcopy", "--only-keep-debug", path, target], path.parent)
    run(["strip", "--strip-debug", path], path.parent)


def test_a_backtrace_names_the_functions(tmp_path):
    """A crash in the program's callback that libc's qsort calls for
    libdemo: gdb's backtrace through the rewritten libraries, with the
    debug files found by build-id as Debian installs them, is the stock
    program's, qsort and libdemo's demo_sort included (tail calls that gdb
    rebuilds from the call sites of the debug info)."""
    libc = build_id(Path("/lib/x86_64-linux-gnu/libc.so.6"))
    if not Path(f"/usr/lib/debug/.build-id/{libc[:2]}/{libc[2:]}.debug").exists():
        missing("libc's separate debug file", "the Debian package libc6-dbg")
    src = tmp_path / "src"
    build_demo(src)
    debug = tmp_path / "debug"
    split_debug_info(src / "libdemo.so.1", debug)
    proc = retro_cli(tmp_path, tmp_path / "out", tmp_path / "addrs", src / "demo")
    assert proc.returncode == 0, proc.stderr
    gdb = ["gdb", "-q", "-batch", "-nx", "-iex", "set debuginfod enabled off", "-iex",
           f"set debug-file-directory {debug}:/usr/lib/debug", "-ex", "run", "-ex", "bt",
           "--args"]
    stock = frames(sh([*gdb, src / "demo", "crash"], tmp_path))
    output = frames(sh([*gdb, tmp_path / "out" / "bin" / "demo", "crash"], tmp_path))
    assert output == stock
    assert stock[0] == "by_value" and stock[-2:] == ["demo_sort", "main"]
    assert any("qsort" in name for name in stock), stock


def debug_warning(library, out):
    """The warning for a library moved with DWARF in the file."""
    base = base_of(out, library.name)
    return (f"vectool: warning: {library}: its debug information (.debug_*) describes the "
            f"addresses before the move to {base:#x}, so gdb misplaces its functions and "
            f"lines in {out / 'lib' / library.name} (a separate debug file, found by "
            "build-id, would not)\n")


def test_debug_information_in_a_moved_file_is_warned_about(tmp_path):
    """Only a library that moves and holds DWARF: not the program (not
    moved, built with -g too), not a library whose DWARF went to a separate
    file, not under --no-fixed-bases; the run succeeds."""
    src = tmp_path / "src"
    build_demo(src)
    out = tmp_path / "out"
    proc = retro_cli(tmp_path, out, tmp_path / "addrs", src / "demo")
    assert (proc.returncode, proc.stderr) == (0, debug_warning(src / "libdemo.so.1", out))
    split_debug_info(src / "libdemo.so.1", tmp_path / "debug")
    proc = retro_cli(tmp_path, out, tmp_path / "addrs", src / "demo")
    assert (proc.returncode, proc.stderr) == (0, "")
    build_lib(src)
    proc = vectool("--mode=retro", "--no-fixed-bases", f"--outdir={tmp_path / 'out2'}",
                   src / "demo", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (0, "")


# -- what is refused ----------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["setuid", "setgid", "capabilities"])
def test_privileged_programs_are_refused(built, tmp_path, how):
    program = tmp_path / "demo"
    shutil.copy2(built / "demo", program)
    if how == "capabilities":
        if os.geteuid() != 0:
            pytest.skip("setting file capabilities needs root (.ci/run runs as root)")
        os.setxattr(program, "security.capability", CAPABILITY_V2)
    else:
        program.chmod(0o4755 if how == "setuid" else 0o2755)
    proc = retro_cli(tmp_path, tmp_path / "out", tmp_path / "addrs", program)
    what = "has file capabilities (security.capability)" if how == "capabilities" else \
        f"is {how}"
    assert outcome(proc) == ("", f"vectool: {program}: {what}: its outputs would load "
                                 "libraries through a run path, so it is not rewritten\n", 1)
    assert not (tmp_path / "out" / "bin" / "demo").exists()


ERRORS = [
    (["--outdir=OUT", "PROG"], 2, "--mode=retro needs --addrfile=FILE, or --no-fixed-bases"),
    (["--addrfile=A", "PROG"], 2, "--mode=retro needs --outdir=DIR"),
    (["--check", "--outdir=OUT", "PROG"], 2, "--check takes no PROGRAM"),
    (["--check", "--outdir=OUT", "--verify"], 2, "--check takes only --outdir, not --verify"),
    (["--addrfile=A", "--outdir=OUT", "--rpathdir=R", "PROG"], 2,
     "--rpathdir is not an option of --mode=retro"),
    (["--no-fixed-bases", "--seed", "3", "--outdir=OUT", "PROG"], 2,
     "--no-fixed-bases gives no base: --seed would not be used"),
    (["--addrfile=A", "--outdir=OUT", "--verify-args", "-x", "PROG"], 2,
     "--verify-args is for --verify"),
    (["--addrfile=A", "--outdir=OUT", "--exclude", "a(", "PROG"], 1,
     "vectool: --exclude: bad regular expression 'a('"),
    (["--addrfile=A", "--outdir=OUT", "NOPE"], 1, "vectool: {d}/NOPE: cannot read: No such file"),
    (["--addrfile=A", "--outdir=OUT", "{src}/demo.h"], 1, "vectool: {src}/demo.h: "),
    (["--addrfile=A", "--outdir=OUT"], 1,
     "vectool: {d}/OUT: no program given, and no earlier run recorded one"),
    (["--check", "--outdir=OUT"], 1, "vectool: {d}/OUT: no elfvector-retro.json"),
    (["--addrfile=A", "--outdir=OUT", "--json", "{d}/no/r.json", "PROG"], 1,
     "vectool: {d}/no/r.json: cannot write: no such directory {d}/no"),
    (["--addrfile=A", "--outdir=OUT", "{d}/OUT/bin/demo"], 1, "inside the output directory"),
]


@pytest.mark.parametrize("args, status, message", ERRORS, ids=[" ".join(a) for a, _, _ in ERRORS])
def test_usage_and_errors(tmp_path, args, status, message):
    (tmp_path / "OUT" / "bin").mkdir(parents=True)
    shutil.copy2("/bin/true", tmp_path / "OUT" / "bin" / "demo")
    proc = vectool("--mode=retro", *[a.format(d=tmp_path, src=SRC) for a in args],
                   cwd=tmp_path)
    assert proc.returncode == status, proc.stderr
    assert message.format(d=tmp_path, src=SRC) in proc.stderr
    if status == 1:
        assert proc.stderr.count("\n") == 1 and proc.stdout == ""
    assert not (tmp_path / "A").exists()


IMPORTED_BY = """
import runpy, sys
sys.argv = ["vectool", *sys.argv[1:]]
try:
    runpy.run_path(sys.argv.pop(1), run_name="__main__")
except SystemExit as e:
    status = e.code
print(status, sorted(m for m in sys.modules if m.startswith("elfvector.closure")))
"""


@pytest.mark.parametrize("args, imported", [
    (["--version"], "[]"),
    (["--mode=rpathrm", "--rpathdir=/nowhere", "{d}/true"], "[]"),
    (["--mode=retro", "--check", "--outdir={d}"], "['elfvector.closure', "),
], ids=["version", "rpathrm", "retro"])
def test_only_the_retro_mode_imports_the_closure(tmp_path, args, imported):
    """vectool imports the retro mode's options, not the closure modules
    behind them: --version and the other modes start without them."""
    shutil.copy2("/bin/true", tmp_path / "true")
    proc = sh([sys.executable, "-c", IMPORTED_BY, BIN / "vectool",
               *[a.format(d=tmp_path) for a in args]], tmp_path)
    status = 1 if args[0] == "--mode=retro" else 0      # --check: no manifest in DIR
    assert proc.stdout.splitlines()[-1].startswith(f"{status} {imported}"), proc.stderr


def test_options_of_retro_are_refused_elsewhere(tmp_path):
    proc = vectool("--mode=lib", "--addrfile=A", "--rpathdir=R", "--outdir=OUT", "gcc", "-o",
                   "x", cwd=tmp_path)
    assert proc.returncode == 2 and "--outdir is an option of --mode=retro" in proc.stderr


def test_progress_shows_on_a_terminal_only(built, small, tmp_path):
    """Rerun on a pseudo-terminal: the progress line rewrites itself, then
    is cleared."""
    _, out, addrs = small
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, BIN / "vectool", "--mode=retro",
                               f"--addrfile={addrs}", f"--outdir={out}"], env=clean_env(),
                              cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=slave, timeout=120)
        os.close(slave)
        slave = None
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)
    assert proc.returncode == 0
    assert b"\r\x1b[Kvectool: 1/4 libdemo.so.1" in shown
    assert shown.endswith(b"\r\x1b[K" + debug_warning(small[0] / "libdemo.so.1", out)
                          .replace("\n", "\r\n").encode())
