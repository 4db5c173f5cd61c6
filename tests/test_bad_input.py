"""Bad input: one line naming the file the user gave and the reason, a
non-zero exit, no traceback, no file modified, nothing left behind."""

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BIN

COMMANDS = ("expvec", "impvec", "retrovec", "retroimp", "recovervec", "vecstat", "vectool")


def command_of(result):
    """The elfvector command ``result`` ran (its argv holds bin/NAME)."""
    return next(Path(a).name for a in result.args if Path(a).parent == BIN)


def assert_one_line_error(result, file, *words, status=1):
    """Exit ``status``, and stderr is one line ``prog: FILE: reason``.

    FILE is the file the user gave (``file``, or a path ending in
    ``/file``): never a temporary file, never "internal error".
    """
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip("\n").split("\n")
    assert len(lines) == 1, result.stderr
    line = lines[0]
    prog = command_of(result)
    assert re.match(rf"{prog}: (.*/)?{re.escape(file)}: ", line), (line, file)
    assert "internal error" not in line, line
    for word in words:
        assert word in line, (line, word)
    return line


def leftovers(directory):
    return [p.name for p in Path(directory).rglob("*") if p.name.startswith(".elfvector-")]


@pytest.fixture
def foo(build):
    return build.expvec("foo.c", "foo.so.5", vscript=build.src("foo.vscript"))


@pytest.fixture
def objects(build, foo):
    """foo.so.5 with its vector, testmain.o, and foo.o for the library links."""
    build.gcc("-c", build.src("testmain.c"), "-o", "testmain.o")
    build.gcc("-fPIC", "-c", build.src("foo.c"), "-o", "foo.o")
    build.gcc("-o", "testmain", "testmain.o", "foo.so.5")
    return build


# -- expvec -------------------------------------------------------------------

def test_expvec_bad_regex(build):
    build.gcc("-fPIC", "-c", build.src("foo.c"), "-o", "foo.o")
    result = build.tool("expvec", "foo_( ^bar", "", "", "gcc", "-shared", "-o", "foo.so",
                        "foo.o", check=False)
    assert_one_line_error(result, "incl", "foo_(")
    assert not (build.path / "foo.so").exists()


def test_expvec_missing_pattern_file(build):
    result = build.tool("expvec", "@nowhere.order", "", "", "gcc", "-shared", "-o", "x.so",
                        check=False)
    assert_one_line_error(result, "nowhere.order")


def test_expvec_failing_link_names_output(build):
    result = build.tool("expvec", ".", "", "", "gcc", "-shared", "-o", "foo.so",
                        "missing.o", check=False)
    assert_one_line_error(result, "foo.so", "trial link failed")


def test_expvec_link_output_not_elf(build):
    result = build.tool("expvec", ".", "", "", "bash", "-c", 'echo junk > "$2"', "--",
                        "-o", "foo.so", check=False)
    assert_one_line_error(result, "foo.so", "not an ELF file")


# -- impvec -------------------------------------------------------------------

def test_impvec_malformed_vec(objects):
    (objects.path / "bad.vec").write_text("hello\nworld\n")
    result = objects.tool("impvec", "", "bad.vec", "gcc", "-o", "prog", "testmain.o",
                          "foo.so.5", check=False)
    assert_one_line_error(result, "bad.vec", "not a .vec file")
    assert not (objects.path / "prog").exists()


@pytest.mark.parametrize("body,reason", [
    ("__V_foo_so_5\nfoo_add\nfoo_add\n", "appears twice"),
    ("__V_foo_so_5\nfoo add\n", "bad function name"),
    ("__V_foo-so\nfoo_add\n", "bad vector name"),
    ("__V_foo_so_5\n# nothing\n", "no slots"),
    ("__V_foo_so_5\n#@layouts 1 x\nfoo_add\n", "#@layouts"),
])
def test_impvec_vec_errors(objects, body, reason):
    (objects.path / "x.vec").write_text(body)
    result = objects.tool("impvec", "", "x.vec", "gcc", "-o", "prog", "testmain.o",
                          "foo.so.5", check=False)
    assert_one_line_error(result, "x.vec", reason)


def test_impvec_missing_vec_file(build):
    result = build.tool("impvec", "", "gone.vec", "gcc", "-o", "t", "t.o", check=False)
    assert_one_line_error(result, "gone.vec", "no such file")


def test_impvec_bad_xclude_regex(build, foo):
    result = build.tool("impvec", "[", foo, "gcc", "-o", "t", "t.o", check=False)
    assert_one_line_error(result, "xclude")


def test_impvec_against_library_without_that_vector(objects):
    """A .vec that the library on disk does not carry is caught at build time."""
    (objects.path / "other.vec").write_text("__V_foo_so_5\nfoo_mul\nfoo_add\n")
    result = objects.tool("impvec", "", "other.vec", "gcc", "-o", "prog", "testmain.o",
                          "foo.so.5", check=False)
    assert_one_line_error(result, "foo.so.5", "does not export __V_foo_so_5__2_")


RAN = 'echo ran "$@" > ran.txt\n'


@pytest.mark.parametrize("name,body,mode,reason", [
    ("./bad.vec", "#!/bin/sh\n" + RAN, 0o755, "not a .vec file (does not start with __V_)"),
    ("bad.vec", RAN, 0o644, "not a .vec file (does not start with __V_)"),
    ("./notes.txt", "#!/bin/sh\n" + RAN, 0o644, "neither a .vec file nor a program to run"),
])
def test_impvec_never_runs_a_malformed_vec_as_the_linker(objects, foo, name, body, mode,
                                                         reason):
    """A word after the .vec files that is a broken .vec, or a file that is
    not a program, is an error naming it: never the start of the command."""
    path = objects.path / name
    path.write_text(body)
    path.chmod(mode)
    result = objects.tool("impvec", "--link", "", foo, name, "gcc", "-o", "prog",
                          "testmain.o", "foo.so.5", check=False)
    assert_one_line_error(result, name, reason)
    assert not (objects.path / "ran.txt").exists()
    result = objects.tool("impvec", "--link", "", foo, "LD_LIBRARY_PATH=.", name, "gcc",
                          "-o", "prog", "testmain.o", "foo.so.5", check=False)
    assert_one_line_error(result, name, reason)
    assert not (objects.path / "ran.txt").exists()


def test_final_output_keeps_mode_and_is_replaced_atomically(objects, foo):
    """Only the final link fails (an undefined function: the trial link runs
    with --noinhibit-exec and succeeds): the old output keeps its content
    and mode, as it would not if impvec linked into -o directly."""
    (objects.path / "undef.c").write_text("int nosuch(void);\n"
                                          "int call_nosuch(void) { return nosuch(); }\n")
    objects.gcc("-c", "undef.c", "-o", "undef.o")
    output = objects.path / "prog"
    output.write_text("previous\n")
    output.chmod(0o750)
    result = objects.tool("impvec", "--link", "", foo, "gcc", "-o", "prog", "testmain.o",
                          "undef.o", "foo.so.5", check=False)
    assert_one_line_error(result, "prog", "final link failed", "nosuch")
    assert output.read_text() == "previous\n"
    assert stat.S_IMODE(output.stat().st_mode) == 0o750
    assert not leftovers(objects.path)
    # The same link without the undefined function replaces it, mode kept.
    objects.tool("impvec", "--link", "", foo, "gcc", "-o", "prog", "testmain.o", "foo.so.5")
    assert output.read_bytes()[:4] == b"\x7fELF"
    assert stat.S_IMODE(output.stat().st_mode) == 0o750


# -- outputs ------------------------------------------------------------------

def writing_commands(vec):
    """(command, output) -> argv for every command and every output it writes."""
    lib = ["gcc", "-shared", "-Wl,-soname=foo.so.5", "foo.o"]
    return {
        ("expvec", "-o"): lambda out: ["expvec", ".", "", "", *lib, "-o", out],
        ("expvec", "--vec"): lambda out: ["expvec", "--vec", out, ".", "", "", *lib,
                                          "-o", "lib.so"],
        ("expvec", "--vec-object"): lambda out: ["expvec", "--vec-object", out, ".", "", "",
                                                 *lib, "-o", "lib.so"],
        ("impvec", "-o"): lambda out: ["impvec", "--link", "", vec, "gcc", "-o", out,
                                       "testmain.o", "foo.so.5"],
        ("impvec", "--asm"): lambda out: ["impvec", "--asm", out, "", vec, "gcc", "-o",
                                          "prog", "testmain.o", "foo.so.5"],
        ("retrovec", "-o"): lambda out: ["retrovec", "-o", out, vec, "stock/foo.so.5"],
        ("retroimp", "-o"): lambda out: ["retroimp", "-o", out, "", vec, "testmain"],
        ("recovervec", "-o"): lambda out: ["recovervec", "-o", out, "foo.so.5"],
        ("vecstat", "-o"): lambda out: ["vecstat", "-o", out, "testmain"],
        ("vectool lib", "-o"): lambda out: ["vectool", "--mode=lib", "--addrfile=addrs",
                                            "--rpathdir=rp", *lib, "-o", out],
        ("vectool lib", "--addrfile"): lambda out: ["vectool", "--mode=lib",
                                                    f"--addrfile={out}", "--rpathdir=rp",
                                                    *lib, "-o", "lib.so"],
        ("vectool prog", "-o"): lambda out: ["vectool", "--mode=prog", "--rpathdir=rp",
                                             "gcc", "-o", out, "testmain.o", "foo.so.5"],
    }


OUTPUTS = sorted(writing_commands("x.vec"))


@pytest.mark.parametrize("kind", ["missing directory", "directory"])
@pytest.mark.parametrize("command,option", OUTPUTS)
def test_unwritable_output_is_named_and_checked_first(objects, foo, command, option, kind):
    """One line naming the output as given, exit 1, and no work done: no
    library, .vec or addrfile written, nothing left behind."""
    objects.stock_lib("foo.c", "foo.so.5")
    (objects.path / "rp").mkdir()
    (objects.path / "adir").mkdir()
    before = sorted(p.name for p in objects.path.iterdir())
    out = "nodir/out" if kind == "missing directory" else "adir"
    argv = writing_commands(foo)[command, option](out)
    result = objects.tool(*argv, check=False)
    reason = "no such directory nodir" if kind == "missing directory" else "directory"
    line = assert_one_line_error(result, out, reason)
    assert ".lock" not in line and ".elfvector-" not in line
    assert sorted(p.name for p in objects.path.iterdir()) == before
    assert not leftovers(objects.path) and not list((objects.path / "rp").iterdir())


def test_output_modes_are_kept_and_new_ones_follow_the_input(objects, foo):
    """A replaced output keeps its mode; a new ELF output takes its input's."""
    objects.stock_lib("foo.c", "foo.so.5")
    stock = objects.path / "stock" / "foo.so.5"
    stock.chmod(0o750)
    objects.tool("retrovec", "-o", "new.so", foo, stock)
    assert stat.S_IMODE((objects.path / "new.so").stat().st_mode) == 0o750
    (objects.path / "kept.vec").write_text("old\n")
    (objects.path / "kept.vec").chmod(0o600)
    objects.tool("recovervec", "-o", "kept.vec", "foo.so.5")
    assert (objects.path / "kept.vec").read_text().startswith("__V_foo_so_5\n")
    assert stat.S_IMODE((objects.path / "kept.vec").stat().st_mode) == 0o600


# -- file names, swapped and misplaced arguments ---------------------------------

def test_control_characters_in_a_file_name_are_escaped(objects, foo):
    odd = "a\nb\x1b.vec"
    (objects.path / odd).write_text("hello\n")
    result = objects.tool("impvec", "", odd, "gcc", "-o", "prog", "testmain.o", "foo.so.5",
                          check=False)
    assert_one_line_error(result, "a\\nb\\x1b.vec", "not a .vec file")
    result = objects.tool("retrovec", foo, "gone\nlib.so", check=False)
    assert_one_line_error(result, "gone\\nlib.so", "cannot read")


def test_options_after_the_files(objects, foo):
    objects.stock_lib("foo.c", "foo.so.5")
    objects.tool("retrovec", foo, "stock/foo.so.5", "-o", "vec.so")
    assert (objects.path / "vec.so").read_bytes()[:4] == b"\x7fELF"
    objects.tool("retroimp", "", foo, "testmain", "-o", "prog.vec", "-v")
    assert (objects.path / "prog.vec").read_bytes()[:4] == b"\x7fELF"
    assert objects.run("./prog.vec").returncode == objects.run("./testmain").returncode == 7


def test_vecstat_if_used_skips_an_unused_library_and_nothing_else(objects):
    """--if-used is quiet about a library of which the files use nothing
    (exit 0, no output written); every other error is still one."""
    (objects.path / "empty.c").write_text("int main(void) { return 0; }\n")
    objects.gcc("-o", "empty", "empty.c", "-Wl,--no-as-needed", "foo.so.5")
    skipped = objects.tool("vecstat", "--emit-vec", "foo.so.5", "--if-used", "-o", "e.vec",
                           "empty")
    assert (skipped.stdout, skipped.stderr) == ("", "")
    assert not (objects.path / "e.vec").exists()
    result = objects.tool("vecstat", "--emit-vec", "foo.so.5", "-o", "e.vec", "empty",
                          check=False)
    assert_one_line_error(result, "foo.so.5", "no exported function of this library is used")
    result = objects.tool("vecstat", "--emit-vec", "libnone.so.1", "--if-used", "-o", "e.vec",
                          "empty", check=False)
    assert_one_line_error(result, "libnone.so.1", "cannot find this library")
    used = objects.tool("vecstat", "--emit-vec", "foo.so.5", "--if-used", "testmain").stdout
    assert used.startswith("__V_foo_so_5\n# 9 slots of foo.so.5") and "\nfoo_add\n" in used


@pytest.mark.parametrize("argv,file,reason", [
    (["retrovec", "stock/foo.so.5", "foo.so.5.vec"], "stock/foo.so.5",
     "is an ELF file, not a .vec (usage: retrovec [OPTIONS] EXPORT.VEC FOO.SO)"),
    (["retrovec", "foo.so.5.vec", "foo.so.5.vec"], "foo.so.5.vec",
     "is a .vec file, not an ELF file (usage: retrovec [OPTIONS] EXPORT.VEC FOO.SO)"),
    (["retroimp", "", "testmain", "foo.so.5.vec"], "testmain",
     "is an ELF file, not a .vec (usage: retroimp [OPTIONS] XCLUDE EXPORT.VEC... A.ELF)"),
    (["retroimp", "", "foo.so.5.vec", "foo.so.5.vec"], "foo.so.5.vec",
     "is a .vec file, not an ELF file (usage: retroimp [OPTIONS] XCLUDE EXPORT.VEC... A.ELF)"),
    (["recovervec", "foo.so.5.vec"], "foo.so.5.vec",
     "is a .vec file, not an ELF file (usage: recovervec [OPTIONS] FOO.SO)"),
    (["impvec", "", "foo.so.5", "foo.so.5.vec", "gcc", "-o", "prog", "testmain.o"], "foo.so.5",
     "is an ELF file, not a .vec (usage: impvec [OPTIONS] XCLUDE EXPORT.VEC... "
     "LOADER_ARGS...)"),
    (["vectool", "--mode=rpathrm", "--rpathdir=rp", "foo.so.5.vec"], "foo.so.5.vec",
     "is a .vec file, not an ELF file (usage: vectool --mode=rpathrm --rpathdir=DIR FILE...)"),
])
def test_swapped_arguments_are_named(objects, argv, file, reason):
    objects.stock_lib("foo.c", "foo.so.5")
    result = objects.tool(*argv, check=False)
    line = assert_one_line_error(result, file)
    assert line == f"{argv[0]}: {file}: {reason}"


# -- usage errors ---------------------------------------------------------------

LOADER = ["gcc", "-shared", "-o", "x.so", "foo.o"]


@pytest.mark.parametrize("argv", [
    ["expvec"], ["expvec", ".", ""], ["expvec", "--nope", ".", "", "", *LOADER],
    ["expvec", ".", "", "", "gcc", "-shared", "foo.o"],
    ["impvec"], ["impvec", ""], ["impvec", "--nope", "", "x.vec", *LOADER],
    ["impvec", "", "gcc", "-o", "prog"],
    ["retrovec"], ["retrovec", "x.vec"], ["retrovec", "--nope", "x.vec", "x.so"],
    ["retrovec", "x.vec", "x.so", "extra"],
    ["retroimp"], ["retroimp", ""], ["retroimp", "", "x.so"], ["retroimp", "--nope", "", "a", "b"],
    ["recovervec"], ["recovervec", "--nope", "x.so"], ["recovervec", "a.so", "b.so"],
    ["vecstat"], ["vecstat", "--nope", "x"], ["vecstat", "--all", "x"], ["vecstat", "--if-used", "x"],
    ["vectool"], ["vectool", "--rpathdir=rp", *LOADER], ["vectool", "--mode=lib", *LOADER],
    ["vectool", "--mode=lib", "--addrfile=a", "--rpathdir=rp"],
    ["vectool", "--mode=nope", "--rpathdir=rp", *LOADER],
    ["vectool", "--mode=prog", "--rpathdir=rp", "gcc", "main.o"],
])
def test_usage_errors_exit_2(build, argv):
    result = build.tool(*argv, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Error: " in result.stderr


@pytest.mark.parametrize("argv,option", [
    (["expvec", ".", "", "", *LOADER, "--vec", "x.vec"], "--vec"),
    (["expvec", ".", "", "", *LOADER, "--rebuild"], "--rebuild"),
    (["impvec", "", "foo.so.5.vec", *LOADER, "--link"], "--link"),
    (["impvec", "", "foo.so.5.vec", *LOADER, "--asm=x.s"], "--asm=x.s"),
    (["vectool", "--mode=lib", "--addrfile=a", "--rpathdir=rp", *LOADER, "--near"], "--near"),
    (["vectool", "--mode=prog", "--rpathdir=rp", *LOADER, "--exclexp", "x"], "--exclexp"),
])
def test_our_option_among_the_loader_arguments(build, foo, argv, option):
    """It would reach the linker: a usage error saying where options go."""
    result = build.tool(*argv, check=False)
    assert result.returncode == 2
    assert (f"Error: {option} is among the loader arguments: options go before the loader "
            "command") in result.stderr
    assert not (build.path / "x.so").exists()


def test_help_shows_the_argument_order_and_an_example(build):
    usage = {"expvec": "INCL EXCL VSCRIPT LOADER_ARGS...",
             "impvec": "XCLUDE EXPORT.VEC... LOADER_ARGS...",
             "retrovec": "EXPORT.VEC FOO.SO", "retroimp": "XCLUDE EXPORT.VEC... A.ELF",
             "recovervec": "FOO.SO", "vecstat": "FILE...", "vectool": "LOADER_ARGS...|FILE..."}
    for name in COMMANDS:
        text = build.tool(name, "--help").stdout
        assert text.startswith(f"Usage: {name} [OPTIONS] {usage[name]}\n"), text
        example = re.search(r"\n  Example[^\n]*:\n    (\S+)", text)
        assert example and example.group(1) in (name, "LD_LIBRARY_PATH=vec",
                                                "LD_LIBRARY_PATH=."), text
    vectool = re.sub(r"\s+", " ", build.tool("vectool", "--help").stdout)
    assert "one line 'ADDRESS SONAME' per library" in vectool
    for option in ("--exclexp", "--inclrel", "--exclrel"):
        assert re.search(rf"{option} REGEXES POSIX extended regular expressions", vectool)


# -- vectool --------------------------------------------------------------------

def vectool_lib(build, addrfile, *more, check=False):
    return build.tool("vectool", "--mode=lib", f"--addrfile={addrfile}", "--rpathdir=rp",
                      "gcc", "-shared", "-Wl,-soname=foo.so.5", "-o", "foo.so.5", "foo.o",
                      *more, check=check)


@pytest.mark.parametrize("setup,message", [
    (lambda d: os.mkfifo(d / "addrs"), "vectool: addrs: not a regular file (a FIFO)"),
    (lambda d: (d / "addrs").mkdir(), "vectool: addrs: not a regular file (a directory)"),
    (lambda d: ((d / "addrs").write_text("0x3ffe000000 libz.so.1\n"),
                (d / "addrs").chmod(0o444)),
     "vectool: addrs: is read-only (mode 0444): vectool adds a line for each new library; "
     "make it writable or use another addrfile"),
    (lambda d: (d / "addrs").write_text(f"{2 ** 70} libz.so.1\n"),
     f"vectool: addrs: line 1: {2 ** 70} is outside the x86-64 user address space "
     "(0x10000-0x7ffffffff000)"),
    (lambda d: (d / "addrs").write_text("0x3ffe000000 libz.so.1\n0x3ffe000800 libm.so.6\n"),
     "vectool: addrs: line 2: 0x3ffe000800 is not page-aligned"),
    (lambda d: (d / "addrs").write_text("0x3ffe000000 foo.so.5\n0x3ffe001000 libm.so.6\n"),
     "vectool: addrs: line 2: addresses must decrease"),
    (lambda d: (d / "addrs").write_text("0x3ffe001000 libm.so.6\n0x3ffe000000 foo.so.5\n"),
     "vectool: addrs: foo.so.5 no longer fits at 0x3ffe000000 ({span} bytes, 0x1000 "
     "available): delete its line '274844352512 foo.so.5' from this addrfile and rerun "
     "vectool, which gives it a new base below all others"),
])
def test_vectool_addrfile_errors_exactly(objects, setup, message):
    setup(objects.path)
    before = {p.name for p in objects.path.iterdir()}
    library = (objects.path / "foo.so.5").read_bytes()
    vec = (objects.path / "foo.so.5.vec").read_bytes()
    result = vectool_lib(objects, "addrs")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    span = re.search(r"\((0x[0-9a-f]+) bytes", result.stderr)
    assert result.stderr == message.format(span=span and span.group(1)) + "\n"
    assert {p.name for p in objects.path.iterdir()} - before <= {"rp", "addrs.lock"}
    assert not leftovers(objects.path) and not list((objects.path / "rp").glob("*"))
    assert (objects.path / "foo.so.5").read_bytes() == library
    assert (objects.path / "foo.so.5.vec").read_bytes() == vec


def test_vectool_keeps_the_addrfile_mode_and_symbolic_link(objects):
    (objects.path / "group").mkdir()
    target = objects.path / "group" / "addrs"
    target.write_text("# the group's bases\n")
    target.chmod(0o640)
    (objects.path / "addrs").symlink_to("group/addrs")
    vectool_lib(objects, "addrs", check=True)
    assert (objects.path / "addrs").is_symlink()
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    lines = target.read_text().splitlines()
    assert lines[0] == "# the group's bases" and lines[1].split()[1] == "foo.so.5"


# -- signals ----------------------------------------------------------------------

SLOW_LINKER = """#!/bin/sh
sleep 60 &
echo $! > "$PIDFILE"
wait
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("argv,prefix", [
    (["expvec", ".", "", "", "./slowld", "-shared", "-o", "x.so"], "expvec-"),
    (["impvec", "", "foo.so.5.vec", "./slowld", "-o", "prog", "testmain.o"], "impvec-"),
    (["vectool", "--mode=lib", "--addrfile=addrs", "--rpathdir=rp", "./slowld", "-shared",
      "-Wl,-soname=x.so.1", "-o", "x.so"], "vectool-"),
])
def test_a_signal_cleans_up(objects, argv, prefix, signum):
    """SIGTERM (and SIGHUP), like ^C, remove the temporary directory and stop
    the linker, and what it started, before exiting 128 + the signal."""
    (objects.path / "slowld").write_text(SLOW_LINKER)
    (objects.path / "slowld").chmod(0o755)
    tmp = objects.path / "tmp"
    tmp.mkdir()
    pidfile = objects.path / "sleep.pid"
    env = dict(os.environ, TMPDIR=str(tmp), PIDFILE=str(pidfile))
    proc = subprocess.Popen([sys.executable, BIN / argv[0], *argv[1:]], cwd=objects.path,
                            env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    assert [p.name for p in tmp.iterdir()][0].startswith(prefix)
    proc.send_signal(signum)
    assert proc.wait(timeout=30) == 128 + signum
    proc.stderr.close()
    assert not list(tmp.iterdir())
    sleeper = Path(f"/proc/{int(pidfile.read_text())}/stat")
    deadline = time.monotonic() + 10            # SIGKILL takes effect when next scheduled
    while not is_gone(sleeper):
        assert time.monotonic() < deadline, "the linker's child outlived the command"
        time.sleep(0.05)


def is_gone(proc_stat):
    try:
        return proc_stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
