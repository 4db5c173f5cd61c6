"""The valid files the fuzzer mutates, built once per sweep.

* ``libfz.so.1``: a small library (``fz_lib.c``) with a version script, a
  run path and calls through its own PLT, built with gcc;
* ``pie`` and ``nopie``: programs importing all of it (``fz_main.c``);
* ``vec/libfz.so.1``: the library vectored by ``bin/retrovec`` from
  ``libfz.vec``;
* ``libfz-latin1.so.1``: the library plus a function whose name is not
  UTF-8 (valid ELF: names are bytes);
* ``libc.so.6``: the system's, and ``libc.vec`` naming a few of its functions;
* ``i386/libfz.so.1`` and ``aarch64/libfz.so.1``: the library cross-built
  (gcc-i686-linux-gnu, gcc-aarch64-linux-gnu): ELF32 with REL relocations,
  and AArch64.

The run path ``/fuzz/rp:/fuzz/keep`` gives ``vectool --mode=rpathrm
--rpathdir=/fuzz/rp`` something to remove.
"""

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6")
SONAME = "libfz.so.1"
VECTOR = "__V_libfz_so_1"
RPATHDIR = "/fuzz/rp"
RUNPATH = f"-Wl,-rpath,{RPATHDIR}:/fuzz/keep"
FUNCTIONS = ("fz_add", "fz_mul", "fz_twice", "fz_len", "fz_hello", "fz_self")
LIBC_FUNCTIONS = ("puts", "strlen", "printf", "memcpy", "exit", "strcmp", "fopen", "qsort")

#: architecture -> its cross compiler (the Debian package is gcc-<compiler's prefix>)
CROSS = {"i386": "i686-linux-gnu-gcc", "aarch64": "aarch64-linux-gnu-gcc"}

# role -> the baseline file (relative to the baseline directory)
ELF_ROLES = {"lib": SONAME, "veclib": f"vec/{SONAME}", "latin1": "libfz-latin1.so.1",
             "pie": "pie", "nopie": "nopie", "libc": "libc.so.6",
             **{f"lib-{arch}": f"{arch}/{SONAME}" for arch in CROSS}}


class BaselineError(Exception):
    """A baseline could not be built: the fuzzer has nothing valid to start from."""


@dataclass(frozen=True)
class Baselines:
    directory: Path

    def path(self, name):
        return self.directory / name

    def elf(self, role):
        return self.directory / ELF_ROLES[role]

    def bytes(self, role):
        return self.elf(role).read_bytes()


def _run(argv, cwd):
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    if proc.returncode != 0:
        raise BaselineError(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n"
                            f"{proc.stderr}")
    return proc


def _libc_vec(directory):
    """``libc.vec``: each function of LIBC_FUNCTIONS at its default version."""
    syms = _run(["readelf", "--dyn-syms", "-W", LIBC], directory).stdout
    slots = []
    for name in LIBC_FUNCTIONS:
        match = re.search(rf"\s({re.escape(name)}@@[\w.]+)\s*$", syms, re.M)
        if not match:
            raise BaselineError(f"{LIBC} has no default version of {name}")
        slots.append(match.group(1))
    (directory / "libc.vec").write_text("\n".join(["__V_libc_so_6", *slots]) + "\n")


def build(directory):
    """Build every baseline into ``directory`` (created); returns Baselines."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    vscript = f"-Wl,--version-script={HERE / 'fz.vscript'}"
    library = ["gcc", "-shared", f"-Wl,-soname={SONAME}", vscript, RUNPATH]
    _run(["gcc", "-O2", "-fPIC", "-c", HERE / "fz_lib.c", "-o", "fz_lib.pic.o"], d)
    _run([*library, "-o", SONAME, "fz_lib.pic.o"], d)
    _run(["gcc", "-O2", "-fPIC", "-DFZ_LATIN1", "-c", HERE / "fz_lib.c", "-o", "latin1.pic.o"], d)
    _run([*library, "-o", "libfz-latin1.so.1", "latin1.pic.o"], d)
    _run(["gcc", "-O2", "-c", HERE / "fz_main.c", "-o", "fz_main.o"], d)
    _run(["gcc", "-o", "pie", "fz_main.o", SONAME, RUNPATH], d)
    _run(["gcc", "-no-pie", "-o", "nopie", "fz_main.o", SONAME, RUNPATH], d)
    (d / "libfz.vec").write_text("\n".join([VECTOR] + [f"{f}@@FZ_1" for f in FUNCTIONS]) + "\n")
    (d / "vec").mkdir(exist_ok=True)
    _run([sys.executable, ROOT / "bin" / "retrovec", "-o", f"vec/{SONAME}", "libfz.vec", SONAME], d)
    shutil.copy(d / "libfz.vec", d / "vec" / "libfz.vec")
    shutil.copy(LIBC, d / "libc.so.6")
    _libc_vec(d)
    for arch, compiler in CROSS.items():
        (d / arch).mkdir(exist_ok=True)
        _run([compiler, "-O2", "-fPIC", "-shared", f"-Wl,-soname={SONAME}", vscript, RUNPATH,
              "-o", f"{arch}/{SONAME}", HERE / "fz_lib.c"], d)
    return Baselines(d)
