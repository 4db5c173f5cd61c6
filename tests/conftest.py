"""Shared helpers: build test programs from testdata/ with gcc at test time,
run the elfvector commands as a user would (a subprocess per command, so the
seed's ``3> export.vec.o`` works), and run the results."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTDATA = ROOT / "testdata"
BIN = ROOT / "bin"


def run(argv, cwd, env=None, check=True, **kwargs):
    """Run ``argv`` in ``cwd``; on failure with ``check`` show its stderr."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=full_env,
                          capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


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
