"""Shared helpers: build test programs from testdata/ with gcc at test time,
run the elfvector commands as a user would (a subprocess per command, so the
seed's ``3> export.vec.o`` works), and run the results.

Every subprocess a test starts gets a timeout and a closed standard input
(``run`` here, and ``subprocess.run`` called directly, through the defaults
installed below): a program that spins or waits forever fails its test
instead of hanging the suite.  A test that needs a program the machine
lacks is skipped naming the Debian package that provides it; with
``ELFVECTOR_NO_SKIP=1`` (set by .ci/run, which installs everything) any skip
is a failure, so nothing is skipped on CI.
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTDATA = ROOT / "testdata"
BIN = ROOT / "bin"
TIMEOUT = 300          # seconds for one subprocess; the slowest command takes ~30
NO_SKIP = os.environ.get("ELFVECTOR_NO_SKIP") == "1"

# The Debian package of each program the tests (or the scripts they run) start.
PACKAGES = {
    "gcc": "gcc", "as": "binutils", "ld": "binutils", "ar": "binutils",
    "readelf": "binutils", "objdump": "binutils", "objcopy": "binutils", "nm": "binutils",
    "strip": "binutils",
    "eu-elflint": "elfutils", "eu-readelf": "elfutils", "valgrind": "valgrind", "gdb": "gdb",
    "strace": "strace", "make": "make", "sqlite3": "sqlite3", "xz": "xz-utils",
    "zstd": "zstd", "jq": "jq", "curl": "curl", "git": "git", "dpkg-source": "dpkg-dev",
    "dpkg-buildflags": "dpkg-dev", "dpkg-architecture": "dpkg-dev", "apt-get": "apt",
}


def missing(what, provider):
    """Skip the current test: ``what`` is missing and ``provider`` provides it."""
    pytest.skip(f"{what} is missing: {provider} provides it (sudo .ci/run installs "
                "everything the tests need)")


def require_programs(*names):
    """Skip unless every program of ``names`` is on PATH."""
    for name in names:
        if shutil.which(name) is None:
            missing(name, f"the Debian package {PACKAGES.get(name, name)}")


def _skip_if_not_installed(argv):
    program = str(argv[0]) if isinstance(argv, (list, tuple)) else str(argv).split()[0]
    if "/" not in program and program in PACKAGES and shutil.which(program) is None:
        require_programs(program)


_subprocess_run = subprocess.run


def _run_with_defaults(args, *more, **kwargs):
    """subprocess.run, with a timeout and no standard input unless given."""
    kwargs.setdefault("timeout", TIMEOUT)
    if "input" not in kwargs:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
    try:
        return _subprocess_run(args, *more, **kwargs)
    except FileNotFoundError:
        _skip_if_not_installed(args)
        raise


def pytest_configure(config):
    subprocess.run = _run_with_defaults


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With ELFVECTOR_NO_SKIP=1, a skipped test is a failed one."""
    outcome = yield
    _fail_if_skipped(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_if_skipped(outcome.get_result())


def _fail_if_skipped(report):
    if NO_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        reason = str(reason).removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"skipped, but ELFVECTOR_NO_SKIP=1 forbids skips: {reason}"


def run(argv, cwd, env=None, check=True, timeout=TIMEOUT, input=None):
    """Run ``argv`` in ``cwd``; on failure with ``check`` show its stderr.

    The program runs in a process group of its own, killed whole when it
    outlives ``timeout``.
    """
    argv = [str(a) for a in argv]
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=full_env, text=True,
                                stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except FileNotFoundError:
        _skip_if_not_installed(argv)
        raise
    with proc:
        try:
            stdout, stderr = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise AssertionError(f"{' '.join(argv)}: still running after {timeout} s") from None
    result = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def tool(name, *args, cwd, env=None, check=True, fd3=None):
    """Run ``bin/name`` with this Python; ``fd3`` is a path opened as fd 3."""
    argv = [sys.executable, BIN / name, *args]
    if fd3 is not None:    # as the seed writes it: ... 3> export.vec.o
        argv = ["bash", "-c", 'exec "$@" 3>"$0"', fd3, *argv]
    return run(argv, cwd, env, check)


def gcc(*args, cwd):
    return run(["gcc", *args], cwd)


class Build:
    """A scratch directory with the test sources at hand."""

    def __init__(self, path):
        self.path = Path(path)
        self.env = {"LD_LIBRARY_PATH": str(self.path)}

    def src(self, name):
        return str(TESTDATA / name)

    def gcc(self, *args):
        return gcc(*args, "-I", str(TESTDATA), cwd=self.path)

    def tool(self, name, *args, check=True, fd3=None, env=None):
        return tool(name, *args, cwd=self.path, env=dict(self.env, **(env or {})),
                    check=check, fd3=fd3)

    def run(self, *argv, env=None, check=False, libdir=None):
        e = dict(self.env, **(env or {}))
        if libdir is not None:
            e["LD_LIBRARY_PATH"] = str(libdir)
        return run(argv, self.path, e, check)

    def expvec(self, source, soname, incl=".", excl="''", vscript="", cflags=(),
               ldflags=(), out=None, rebuild=False, vec=None):
        """Compile ``source`` and link it with expvec; returns the .vec path."""
        out = out or soname
        obj = Path(source).stem + ".pic.o"
        self.gcc("-fPIC", "-O2", *cflags, "-c", self.src(source), "-o", obj)
        vec = vec or f"{soname}.vec"
        args = (["--rebuild"] if rebuild else []) + [
            incl, "" if excl == "''" else excl, vscript,
            "gcc", "-shared", f"-Wl,-soname={soname}", "-o", out, obj, *ldflags]
        self.tool("expvec", "--vec", vec, "--vec-object", f"{vec}.o", *args)
        return vec

    def stock_lib(self, source, soname, cflags=(), ldflags=(), directory="stock"):
        """The same library linked the usual way, in ``directory``."""
        d = self.path / directory
        d.mkdir(exist_ok=True)
        obj = f"{directory}/{Path(source).stem}.o"
        self.gcc("-fPIC", "-O2", *cflags, "-c", self.src(source), "-o", obj)
        self.gcc("-shared", f"-Wl,-soname={soname}", "-o", f"{directory}/{soname}", obj,
                 *ldflags)
        return d

    def program(self, source, output, libs, vecs=(), xclude="", cflags=(), ldflags=()):
        """Link ``source`` twice: ``output`` through impvec --link, and
        ``output.stock`` the usual way against the same libraries."""
        obj = Path(output).name + ".o"
        self.gcc("-O2", *cflags, "-c", self.src(source), "-o", obj)
        link = ["gcc", *cflags, "-o", output, obj, *libs, *ldflags]
        self.gcc(*cflags, "-o", output + ".stock", obj, *libs, *ldflags)
        if vecs:
            self.tool("impvec", "--link", "--asm", output + ".s", xclude, *vecs, *link)
        return self.path / output


@pytest.fixture
def build(tmp_path):
    return Build(tmp_path)


def symbol_relocations(path):
    """Dynamic relocations of ``path`` that name a symbol."""
    text = run(["readelf", "-rW", path], cwd=".").stdout
    return [line.split()[4] for line in text.splitlines()
            if "R_X86_64_" in line and "RELATIVE" not in line and len(line.split()) > 4]
