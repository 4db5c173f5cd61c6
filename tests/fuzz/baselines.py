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
  and AArch64; ``ARCH/pie`` the program cross-built against it;
* ``ARCH/root``: a sysroot for ``--root`` (the cross toolchain's ld.so, and
  its libc.so.6 and the library vectored by retrovec from ``ARCH/libc.vec``
  and ``libfz.vec``, in ``lib``; the program in ``bin``), where vecstat,
  retroimp and ``vectool --mode=retro`` find the libraries as ld.so would.

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
#: architecture -> (the cross toolchain's libc directory, the name of its ld.so)
CROSS_LIBC = {"i386": ("/usr/i686-linux-gnu/lib", "ld-linux.so.2"),
              "aarch64": ("/usr/aarch64-linux-gnu/lib", "ld-linux-aarch64.so.1")}

# role -> the baseline file (relative to the baseline directory)
ELF_ROLES = {"lib": SONAME, "veclib": f"vec/{SONAME}", "latin1": "libfz-latin1.so.1",
             "pie": "pie", "nopie": "nopie", "libc": "libc.so.6",
             **{f"lib-{arch}": f"{arch}/{SONAME}" for arch in CROSS},
             **{f"pie-{arch}": f"{arch}/pie" for arch in CROSS}}


def root_files(arch):
    """The files of ``arch``'s sysroot (relative to the baseline directory)."""
    lib = f"{arch}/root/lib"
    return (f"{lib}/{CROSS_LIBC[arch][1]}", f"{lib}/libc.so.6", f"{lib}/{SONAME}",
            f"{arch}/root/bin/pie")


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


def _libc_vec(directory, libc=LIBC, vec="libc.vec", functions=LIBC_FUNCTIONS):
    """``vec``: each function of ``functions`` at its default version in ``libc``."""
    syms = _run(["readelf", "--dyn-syms", "-W", libc], directory).stdout
    slots = []
    for name in functions:
        match = re.search(rf"\s({re.escape(name)}@@[\w.]+)\s*$", syms, re.M)
        if not match:
            raise BaselineError(f"{libc} has no default version of {name}")
        slots.append(match.group(1))
    (directory / vec).write_text("\n".join(["__V_libc_so_6", *slots]) + "\n")


def _cross(d, arch, compiler, library):
    """``arch``'s library and program, and its sysroot with both vectored (strlen and
    memcpy are IFUNCs in either libc)."""
    (d / arch / "root" / "lib").mkdir(parents=True, exist_ok=True)
    (d / arch / "root" / "bin").mkdir(exist_ok=True)
    _run([compiler, "-O2", "-fPIC", *library[1:], "-o", f"{arch}/{SONAME}",
          HERE / "fz_lib.c"], d)
    _run([compiler, "-O2", "-o", f"{arch}/pie", HERE / "fz_main.c", f"{arch}/{SONAME}",
          RUNPATH], d)
    libdir, ldso = CROSS_LIBC[arch]
    shutil.copy(Path(libdir) / ldso, d / arch / "root" / "lib" / ldso)
    _libc_vec(d, Path(libdir) / "libc.so.6", f"{arch}/libc.vec", ("printf", "strlen", "memcpy"))
    tool = [sys.executable, ROOT / "bin" / "retrovec", "-o"]
    _run([*tool, f"{arch}/root/lib/libc.so.6", f"{arch}/libc.vec", Path(libdir) / "libc.so.6"], d)
    _run([*tool, f"{arch}/root/lib/{SONAME}", "libfz.vec", f"{arch}/{SONAME}"], d)
    shutil.copy(d / arch / "pie", d / arch / "root" / "bin" / "pie")


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
        _cross(d, arch, compiler, library)
    return Baselines(d)
