"""``vectool --mode=retro`` on the seven programs of issue 8, end to end.

curl, git, sqlite3, jq, python3, cmake and gdb are rewritten into one
output directory (one DIR/lib shared by all, as a user would keep it),
within the issue's time budget; the oracle (--verify's) finds every word
ld.so relocates at start-up as ld.so gives it to the stock programs; then
a small workload of each, error paths included, must give the stock
program's stdout, stderr and exit status exactly, also when libc cannot
have its base.  Each program runs with the stock program's argv[0], as
it would once installed over it; cmake and gdb find their data relative
to their executable, so DIR/share is a link to /usr/share, as
/usr/bin/../share is for the installed program.
"""

import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import require_programs
from elfvector.closure.driver import RetroOptions, retro
from elfvector.closure.verify import verify
from test_closure_cli import blocker, load_bias, outcome
from test_ldso import PROGRAMS, debian_program

#: Issue 8: at most 5% of the stock lookups remain for these.
FIVE_PERCENT = {"curl", "cmake", "gdb"}
#: Issue 8: curl's closure in 10 s, gdb's in 30 s on 2 cores; here all seven
#: (78 objects) in gdb's budget, counted in CPU time (a busy machine's wall
#: clock says little).
CPU_SECONDS = 30

GIT_ENV = {"GIT_AUTHOR_NAME": "A U Thor", "GIT_AUTHOR_EMAIL": "author@example.com",
           "GIT_AUTHOR_DATE": "2024-01-02T03:04:05Z", "GIT_COMMITTER_NAME": "C O Mitter",
           "GIT_COMMITTER_EMAIL": "committer@example.com",
           "GIT_COMMITTER_DATE": "2024-01-02T03:04:05Z", "GIT_CONFIG_NOSYSTEM": "1"}

DATA = {
    "hello.txt": "hello, world\n",
    "doc.json": '{"a": {"b": [1, 2, 3]}, "name": "retro"}\n',
    "script.cmake": """\
set(words alpha beta gamma)
list(LENGTH words n)
list(REVERSE words)
string(TOUPPER "${words}" upper)
math(EXPR sum "6 * 7")
string(REGEX REPLACE "[aeiou]" "_" masked "${upper}")
file(READ "${CMAKE_CURRENT_LIST_DIR}/hello.txt" hello)
string(SHA256 digest "${hello}")
message(STATUS "${n} ${upper} ${sum} ${masked} ${digest}")
""",
    "fail.cmake": 'message(FATAL_ERROR "failing as asked")\n',
}

#: program -> cases; a case is a list of argument lists run in turn in one
#: fresh directory (holding a.txt); {data} is a directory with DATA.
WORKLOADS = {
    "curl": [[["--version"]], [["-h"]], [["--bogus-option"]],
             [["-sS", "file://{data}/hello.txt"]], [["-sS", "file:///nonexistent/file"]],
             [["-s", "-o", "copy.txt", "file://{data}/hello.txt"], ["-sS", "file:copy.txt"]]],
    "git": [[["--version"]], [["bogus"]], [["hash-object", "{data}/hello.txt"]],
            [["init", "-q", "."], ["add", "a.txt"], ["commit", "-q", "-m", "add a"],
             ["log", "--format=%H %an %s", "--stat"], ["status", "--short"],
             ["tag", "v1"], ["describe"], ["show", "--stat", "nope"]]],
    "sqlite3": [[["--version"]], [["-bogus"]],
                [["db.sqlite", "create table t(x); insert into t values (1), (2), (3);"],
                 ["db.sqlite", "select sum(x), group_concat(x) from t;"],
                 ["-json", "db.sqlite", "select x, x * x as square from t;"]],
                [[":memory:", "select * from nope;"]]],
    "jq": [[["--version"]], [["--bogus"]], [["-n", "[1, 2, 3] | add"]],
           [[".a.b | map(. * 10)", "{data}/doc.json"]], [["-r", ".name", "{data}/doc.json"]],
           [["-n", 'error("boom")']], [["-n", '"\\(6 * 7) \\("x" | ascii_upcase)"']]],
    "python3": [[["--version"]], [["--bogus"]], [["-c", "raise SystemExit(3)"]],
                [["-c", "1/0"]],
                [["-c", "import sys, json; print(json.dumps({'v': list(sys.version_info[:2])}))"]],
                [["-c", "import hashlib, sqlite3, ssl, zlib, ctypes, decimal; "
                        "print(hashlib.sha256(b'x').hexdigest(), sqlite3.sqlite_version, "
                        "ssl.OPENSSL_VERSION, zlib.crc32(b'x'), decimal.Decimal(1) / 7)"]],
                [["-I", "-m", "json.tool", "{data}/doc.json"]]],
    "cmake": [[["--version"]], [["--bogus"]], [["-P", "{data}/script.cmake"]],
              [["-P", "{data}/fail.cmake"]], [["-E", "echo", "hello"]], [["-E", "bogus"]],
              [["-E", "sha256sum", "{data}/hello.txt"]]],
    "gdb": [[["--version"]], [["-batch", "-ex", "print 1 + 2"]],
            [["-batch", "-ex", "python print(2 ** 10)"]], [["-batch", "-ex", "bogus-command"]]],
}
CASES = [(program, steps) for program in PROGRAMS for steps in WORKLOADS[program]]


def case_id(case):
    program, steps = case
    return f"{program} " + " ; ".join(" ".join(step) for step in steps)


@pytest.fixture(scope="module")
def rewritten(tmp_path_factory):
    """(work directory, RetroResult, CPU seconds of the run)."""
    paths = [debian_program(p) for p in PROGRAMS]
    require_programs("gdb", "gcc")
    d = tmp_path_factory.mktemp("programs")
    options = RetroOptions(outdir=str(d / "out"), addrfile=str(d / "addrs"))
    start = time.process_time()
    result = retro(paths, options)
    seconds = time.process_time() - start
    (d / "out" / "share").symlink_to("/usr/share")
    data = d / "data"
    data.mkdir()
    for name, text in DATA.items():
        (data / name).write_text(text)
    (d / "home").mkdir()
    return d, result, seconds


def test_the_closure_is_rewritten_in_time_and_verified(rewritten):
    d, result, seconds = rewritten
    assert seconds < CPU_SECONDS
    assert len(result.rows) > 70
    for row in result.rows:
        assert row.loads_after == row.loads_before, row.output
        assert not row.notes, (row.output, row.notes)
    verified = verify(result.closure, result.plan)
    assert [str(f) for f in verified.failures] == []
    assert verified.settled > 200000


@pytest.mark.parametrize("program", PROGRAMS)
def test_lookups_that_remain(rewritten, program):
    _, result, _ = rewritten
    stock, after, reasons = result.lookups[debian_program(program)]
    assert after < stock / 4, reasons
    if program in FIVE_PERCENT:
        assert after <= 0.05 * stock, (stock, after, reasons)


def environment(d):
    return {"PATH": "/usr/bin:/bin", "HOME": str(d / "home"), "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8", "TZ": "UTC", **GIT_ENV}


def run_steps(executable, argv0, steps, cwd, d, env=None):
    """The outcome of each step of a case, run in ``cwd`` (created, with a.txt)."""
    cwd.mkdir()
    (cwd / "a.txt").write_text("a\n")
    results = []
    for step in steps:
        argv = [argv0] + [arg.replace("{data}", str(d / "data")) for arg in step]
        proc = subprocess.run(argv, executable=str(executable), cwd=cwd,
                              env=dict(environment(d), **(env or {})), capture_output=True,
                              text=True, errors="surrogateescape", stdin=subprocess.DEVNULL,
                              timeout=120)
        results.append(outcome(proc))
    return results


@pytest.mark.parametrize("program, steps", CASES, ids=[case_id(c) for c in CASES])
def test_workload_like_stock(rewritten, program, steps, tmp_path):
    d, _, _ = rewritten
    stock = run_steps(debian_program(program), program, steps, tmp_path / "stock", d)
    output = run_steps(d / "out" / "bin" / program, program, steps, tmp_path / "output", d)
    assert output == stock


@pytest.mark.parametrize("program, steps", [
    ("jq", [[".a.b | add", "{data}/doc.json"]]),
    ("python3", [["-c", "import ssl; print(ssl.OPENSSL_VERSION)"]])])
def test_libc_off_its_base(rewritten, program, steps, tmp_path):
    """A preloaded library holds libc's base: libc lands elsewhere, every
    object's fix-up corrects its words, and nothing else changes."""
    d, result, _ = rewritten
    libc = next(row for row in result.rows if row.output.endswith("/libc.so.6"))
    blocked = {"LD_PRELOAD": str(blocker(tmp_path, libc.base))}
    output = d / "out" / "bin" / program
    assert load_bias(output, "libc.so.6") == 0
    assert load_bias(output, "libc.so.6", blocked) != 0
    stock = run_steps(debian_program(program), program, steps, tmp_path / "stock", d)
    moved = run_steps(output, program, steps, tmp_path / "output", d, blocked)
    assert moved == stock
