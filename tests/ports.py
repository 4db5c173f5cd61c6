"""What the tests of the i386 and AArch64 ports share: the two ports, a
sysroot of Debian's own packages of each (fetched with ``apt-get
download``, unpacked with ``dpkg-deb -x``, never installed, once per test
session), and a small library and program cross-built here.

A test module uses them with ``from ports import port, sysroot, ...``:
``port`` is parametrized over both architectures.
"""

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import missing, require_programs, run


@dataclass(frozen=True)
class Port:
    """One architecture: Debian's name for it, its multiarch directory, its
    ld.so, its cross compiler and how its programs run here."""

    name: str           # elfvector's
    debian: str         # dpkg's
    triplet: str
    interp: str
    relocation_prefix: str
    cross_gcc: str
    cross_root: str     # the cross toolchain's libc (libc6-dev-*-cross)

    def command(self, root, argv, libdirs):
        """``argv`` (a program of the sysroot ``root`` first) run with
        ``libdirs`` searched first, natively or under qemu."""
        path = ":".join(map(str, libdirs))
        if self.name == "i386":
            return [Path(root) / self.interp.lstrip("/"), "--library-path", path, *argv]
        return ["qemu-aarch64", "-L", root, "-E", f"LD_LIBRARY_PATH={path}", *argv]


I386 = Port("i386", "i386", "i386-linux-gnu", "/lib/ld-linux.so.2", "R_386_",
            "i686-linux-gnu-gcc", "/usr/i686-linux-gnu")
AARCH64 = Port("aarch64", "arm64", "aarch64-linux-gnu", "/lib/ld-linux-aarch64.so.1",
               "R_AARCH64_", "aarch64-linux-gnu-gcc", "/usr/aarch64-linux-gnu")
PORTS = {"i386": I386, "aarch64": AARCH64}

#: Debian's packages of the programs and of every library they load
PACKAGES = ("bzip2", "libbz2-1.0", "xz-utils", "liblzma5", "sqlite3", "libsqlite3-0",
            "libreadline8", "libtinfo6", "zlib1g", "libc6")
#: the programs, and the libraries (sonames) whose vectored copies they must work with
PROGRAMS = ("bin/bzip2", "usr/bin/xz", "usr/bin/sqlite3")
LIBRARIES = ("libbz2.so.1.0", "liblzma.so.5", "libsqlite3.so.0", "libreadline.so.8",
             "libtinfo.so.6", "libz.so.1", "libm.so.6", "libc.so.6")


@pytest.fixture(scope="module", params=sorted(PORTS))
def port(request):
    return PORTS[request.param]


def _download(port, directory):
    """``apt-get download`` the packages of ``port`` into ``directory``;
    skip (naming the fix) when apt has no index for that architecture."""
    require_programs("apt-get")
    names = [f"{p}:{port.debian}" for p in PACKAGES]
    result = subprocess.run(["apt-get", "download", *names], cwd=directory,
                            capture_output=True, text=True)
    if result.returncode != 0:
        if "Unable to locate package" in result.stderr or "Can't select" in result.stderr:
            missing(f"Debian's {port.debian} package index",
                    f"'dpkg --add-architecture {port.debian} && apt-get update'")
        raise AssertionError(f"apt-get download failed:\n{result.stderr}")


@pytest.fixture(scope="session")
def sysroot_of(tmp_path_factory):
    """A function giving the unpacked packages of a port: a sysroot with its
    own ld.so, downloaded once per test session."""
    roots = {}

    def unpacked(port):
        if port.name not in roots:
            roots[port.name] = _unpack(port, tmp_path_factory)
        return roots[port.name]
    return unpacked


@pytest.fixture(scope="module")
def sysroot(port, sysroot_of):
    """The unpacked packages of ``port``: a sysroot with its own ld.so."""
    return sysroot_of(port)


def _unpack(port, tmp_path_factory):
    require_programs("dpkg-deb")
    if port.name == "aarch64" and shutil.which("qemu-aarch64") is None:
        missing("qemu-aarch64", "the Debian package qemu-user")
    debs = tmp_path_factory.mktemp(f"debs-{port.name}")
    _download(port, debs)
    root = tmp_path_factory.mktemp(f"root-{port.name}")
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg-deb", "-x", deb, root], cwd=debs)
    return root


def libdirs(root, port):
    return [Path(root) / "lib" / port.triplet, Path(root) / "usr/lib" / port.triplet]


def library(root, port, soname):
    for d in libdirs(root, port):
        if (d / soname).exists():
            return d / soname
    raise AssertionError(f"{soname} is not in the {port.name} sysroot")


# -- a library cross-built here (unstripped: its .symtab must follow) -------------

CROSS_LIB = """#include <string.h>
int twice(int x) { return 2 * x; }
int plus(int a, int b) { return a + b; }
unsigned long len(const char *s) { return strlen(s); }
static int counter;
int next(void) { return ++counter; }
"""
CROSS_MAIN = """#include <stdio.h>
int twice(int); int plus(int, int); unsigned long len(const char *); int next(void);
int (*taken)(int) = twice;
int main(void) {
    int first = next(), second = next();
    printf("%d %d %lu %d %d %d\\n", twice(21), plus(40, 2), len("elfvector"), first, second,
           taken(4));
    return 0;
}
"""


def cross_run(port, program, libdir):
    """``program``, cross-built against the cross toolchain's libc, run with
    ``libdir`` searched first."""
    if port.name == "i386":
        return [Path(port.cross_root) / "lib/ld-linux.so.2", "--library-path",
                f"{libdir}:{port.cross_root}/lib", program]
    return ["qemu-aarch64", "-L", port.cross_root, "-E", f"LD_LIBRARY_PATH={libdir}", program]


def cross_build(port, tmp_path, rpath=None):
    """``libx.so`` and ``main`` built with the cross compiler in ``tmp_path``
    (``rpath``: a run path for both)."""
    require_programs(port.cross_gcc)
    if port.name == "aarch64" and shutil.which("qemu-aarch64") is None:
        missing("qemu-aarch64", "the Debian package qemu-user")
    (tmp_path / "x.c").write_text(CROSS_LIB)
    (tmp_path / "main.c").write_text(CROSS_MAIN)
    extra = [f"-Wl,-rpath,{rpath}"] if rpath else []
    libdir = tmp_path / "lib"
    libdir.mkdir()
    run([port.cross_gcc, "-O2", "-fPIC", "-shared", "-Wl,-soname=libx.so", "-o",
         libdir / "libx.so", "x.c", *extra], cwd=tmp_path)
    run([port.cross_gcc, "-O2", "-o", "main", "main.c", "-L", libdir, "-lx", *extra],
        cwd=tmp_path)
    return libdir / "libx.so", tmp_path / "main"
