"""elfvector.ldso and vecstat on i386 and AArch64, against those
architectures' own ld.so.

The programs and libraries are Debian's packages of each architecture,
unpacked into a sysroot (tests/ports.py).  The model reads that sysroot as
ld.so would in a chroot of it (``root``): i386's real ld.so runs natively,
the sysroot's ``ld-linux.so.2`` with the sysroot's library directories on
``--library-path`` (natively it would take this machine's ld.so.cache,
whose i386 entries name /lib32); AArch64's under ``qemu-aarch64 -L
SYSROOT``, where every file it opens is the sysroot's.  Each start runs
under ``LD_DEBUG=bindings,scopes,reloc,statistics`` and ``LD_BIND_NOW=1``,
and the model must predict all of it: the objects and their scopes, the
relocation order, every binding of every object (the library each import
binds to), the number of lookups and of lookups from ld.so's cache.  Names
are compared as paths inside the sysroot; the vDSO (``linux-gate.so.1``,
``linux-vdso.so.1``) is no file and is left out.

Targeted cases cross-built into a copy of the sysroot (interposition and
weak references, versions, COPY relocations and a non-PIE program's
canonical PLT entries, an IFUNC) pin the rules the three programs may not
exercise, with the psABI's own relocation types.

vecstat, given the sysroot (``--root``), attributes each import of bzip2,
xz and sqlite3 to the library ld.so binds it to, and says the same of the
programs with retrovec'd libraries.  A library of another ELF class or
machine earlier on the search path is skipped, as ld.so skips it, and an
ld.so.cache inside the root serves only the entries of the ld.so's ABI.
"""

import os
import re
import shutil
import struct
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from conftest import TESTDATA, missing, require_programs, run, tool
from ports import (I386, LIBRARIES, PROGRAMS, library, port, sysroot,  # noqa: F401 (fixtures)
                   sysroot_of)
from test_ldso import VDSO, LdsoReport, _parse_line, model_bindings
from test_vecstat import report as vecstat_groups
from test_vecstat import undefined_functions
from elfvector.ldso import DT_SYMBOLIC, FileCache, LdCache, LdsoConfig, LinkMap

VDSOS = (VDSO, "linux-gate.so.1")
DEBUG = "bindings:scopes:reloc:statistics"    # qemu's -E splits its value at commas
HOST_LIBZ = Path("/lib/x86_64-linux-gnu/libz.so.1")
EM_ARM = 40


# -- the real ld.so and the model, started the same way ----------------------------

def system_dirs(port):
    return [f"/lib/{port.triplet}", f"/usr/lib/{port.triplet}"]


def start(port, root, argv, library_path=(), emulated=None):
    """Start ``argv`` (a program of the sysroot ``root`` first) under the
    real ld.so of ``port`` and under the model, with ``library_path``
    (directories inside the root) as LD_LIBRARY_PATH; natively (i386) the
    root's system directories follow them.  ``emulated`` runs i386 under
    qemu-i386 too, where ld.so reads the root's ld.so.cache.
    Returns (LdsoReport with names inside the root, LinkMap)."""
    emulated = port.name == "aarch64" if emulated is None else emulated
    dirs = list(library_path)
    env = {"LD_DEBUG": DEBUG, "LD_BIND_NOW": "1"}
    if emulated:
        emulator = f"qemu-{port.name}"
        if shutil.which(emulator) is None:
            missing(emulator, "the Debian package qemu-user")
        env.update({"LD_LIBRARY_PATH": ":".join(dirs)} if dirs else {})
        command = [emulator, "-L", root, *[a for k, v in env.items() for a in ("-E", f"{k}={v}")],
                   *argv]
        env = {}
    else:
        dirs += system_dirs(port)
        command = [Path(root) / port.interp.lstrip("/"), "--library-path",
                   ":".join(f"{root}{d}" for d in dirs), *argv]
    report = ldso_report(command, env, root)
    linkmap = LinkMap(str(argv[0]), library_path=":".join(dirs) or None, root=str(root),
                      files=FileCache("vecstat"))
    return report, linkmap


def ldso_report(command, env, root):
    """What LD_DEBUG printed up to the first constructor, each path as a
    path inside ``root``, the vDSO's lookups counted apart."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    full.update(env)
    proc = subprocess.run([str(a) for a in command], env=full, capture_output=True,
                          errors="surrogateescape", timeout=300, stdin=subprocess.DEVNULL)
    report = LdsoReport(returncode=proc.returncode, stdout=proc.stdout)
    prefix = re.escape(str(root))
    for line in proc.stderr.splitlines():
        line = re.sub(r"^\s*\d+:\s?", "", line)
        if line.startswith("calling init:") or line.startswith("initialize program:"):
            break
        _parse_line(report, re.sub(f"(^|[ =]){prefix}/", r"\1/", line))
    report.vdso_lookups += sum(len(report.bindings.pop(v, [])) for v in VDSOS)
    report.objects = [(o, scopes) for o, scopes in report.objects if o not in VDSOS]
    return report


def inside(root, name):
    """``name`` as a path inside ``root`` (a program is named by its host path)."""
    return name[len(str(root)):] if name.startswith(f"{root}/") else name


def assert_model_matches(port, root, argv, library_path=(), emulated=None, min_lookups=100):
    """Everything ld.so reports, predicted; returns the LinkMap and the report."""
    report, linkmap = start(port, root, argv, library_path, emulated)
    assert report.returncode == 0 and report.lookups is not None, (argv, report.returncode)
    startup = linkmap.startup()
    name = lambda o: inside(root, o.name)                       # noqa: E731
    assert report.objects == [(name(o), [[name(m) for m in scope] for scope in o.scope])
                              for o in linkmap.objects]
    assert report.relocated == [name(o) for o in linkmap.relocation_order()]
    predicted = {inside(root, requester): [(n, v, inside(root, d), k) for n, v, d, k in rows]
                 for requester, rows in model_bindings(startup).items()}
    assert set(predicted) == set(report.bindings)
    for requester, rows in predicted.items():
        assert rows == report.bindings[requester], requester
    assert startup.lookups == report.lookups - report.vdso_lookups
    assert startup.cache_hits == report.cache_hits
    assert startup.lookups > min_lookups
    return linkmap, report


def loaded(linkmap, root, soname):
    """The path inside the root ld.so loaded ``soname`` from."""
    return next(inside(root, o.name) for o in linkmap.objects if o.elf.soname == soname)


# -- the three programs -------------------------------------------------------------

@pytest.mark.parametrize("program", PROGRAMS)
def test_model_matches_ldso(port, sysroot, program):
    """Load order, scopes, relocation order and every binding of bzip2, xz
    and sqlite3, as ld.so reports them; every library from the sysroot."""
    linkmap, _ = assert_model_matches(port, sysroot, [Path(sysroot) / program, "--version"])
    assert loaded(linkmap, sysroot, "libc.so.6") == f"/lib/{port.triplet}/libc.so.6"
    assert linkmap.config.arch == port.name and linkmap.rtld.name == port.interp
    for obj in linkmap.objects[1:]:
        assert obj.path.startswith(f"{sysroot}/"), obj.path


def vecstat(root, *files, options=()):
    result = tool("vecstat", "--root", root, *options, *files, cwd=root)
    assert result.stderr == ""
    return result.stdout


def ldso_bound(report, program):
    """(name, version) -> the library ld.so bound the program's reference to."""
    return {(n, v): d for n, v, d, _ in report.bindings[program]}


def test_vecstat_attributes_each_import_where_ldso_binds_it(port, sysroot):
    """vecstat --root, one program at a time: every undefined function
    (readelf's list, versions included) under the library ld.so binds it
    to; then the three together, whose counts are the sums."""
    together = Counter()
    for program in PROGRAMS:
        path = Path(sysroot) / program
        report, _ = start(port, sysroot, [path, "--version"])
        bound = ldso_bound(report, f"/{program}")
        groups = vecstat_groups(vecstat(sysroot, path))
        listed = set()
        for header, counts in groups.items():
            soname, where = re.fullmatch(r"(\S+) \((\S+)\)", header).groups()
            assert Path(where).name == soname, header
            for entry, n in counts.items():
                name, _, version = entry.partition("@")
                assert n == 1 and bound[(name, version or None)] == where, (program, entry)
                listed.add(entry)
                together[(header, entry)] += 1
        assert listed == undefined_functions(path), program
    groups = vecstat_groups(vecstat(sysroot, *(Path(sysroot) / p for p in PROGRAMS)))
    assert Counter({(h, e): n for h, g in groups.items() for e, n in g.items()}) == together
    libc = groups[f"libc.so.6 (/lib/{port.triplet}/libc.so.6)"]
    assert next(iter(libc.values())) == 3                  # used by all three, listed first


def test_vecstat_describes_a_library(port, sysroot):
    """A library of the architecture is read, not refused (issue 10's
    "not a dynamically linked ELF file"): libbz2's imports, all libc's."""
    libbz2 = library(sysroot, port, "libbz2.so.1.0")
    groups = vecstat_groups(vecstat(sysroot, libbz2))
    assert list(groups) == [f"libc.so.6 (/lib/{port.triplet}/libc.so.6)"]
    assert set(groups[list(groups)[0]]) == undefined_functions(libbz2)


def test_a_root_without_the_dynamic_linker_is_an_error_naming_it(port, sysroot, tmp_path):
    """ldd runs the ld.so of the program's architecture: a root that lacks
    it is one line naming it, not the program, as unreadable."""
    bzip2 = Path(sysroot) / "bin/bzip2"
    result = tool("vecstat", "--root", tmp_path, bzip2, cwd=tmp_path, check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == f"vecstat: {bzip2}: its dynamic linker {port.interp} under " \
        f"{tmp_path}: cannot read: No such file or directory\n"


# -- retrovec'd libraries -------------------------------------------------------------

VECTORED = ("libbz2.so.1.0", "liblzma.so.5", "libz.so.1", "libc.so.6")


@pytest.fixture(scope="module")
def vectored_root(port, sysroot, tmp_path_factory):
    """A copy of the sysroot whose VECTORED libraries are retrovec'd, each
    with a vector of the functions vecstat says the programs use."""
    work = tmp_path_factory.mktemp(f"ldso-vectored-{port.name}")
    root = work / "root"
    shutil.copytree(sysroot, root, symlinks=True)
    programs = [Path(sysroot) / p for p in PROGRAMS]
    for soname in VECTORED:
        vec = work / f"{soname}.vec"
        users = programs + [library(sysroot, port, s) for s in LIBRARIES]
        vecstat(sysroot, *users, options=("--emit-vec", soname, "-o", vec))
        ifuncs = _ifuncs(library(sysroot, port, soname))   # no IFUNC slots here yet
        vec.write_text("".join(line + "\n" for line in vec.read_text().splitlines()
                               if line.split("@")[0] not in ifuncs))
        target = library(root, port, soname).resolve()
        target.unlink()
        tool("retrovec", "-o", target, vec, library(sysroot, port, soname), cwd=work)
    return root


def _ifuncs(path):
    """The names of the IFUNCs ``path`` defines, per readelf."""
    text = run(["readelf", "-W", "--dyn-syms", path], cwd=".").stdout
    return {line.split()[7].split("@")[0] for line in text.splitlines()
            if len(line.split()) >= 8 and line.split()[3] == "IFUNC"}


def test_vecstat_and_the_model_on_retrovecd_libraries(port, sysroot, vectored_root):
    """With the vectored libraries, vecstat says what it says with the
    originals, of the programs and of each library; ld.so loads and binds
    as the model says (a vectored library's tables read right)."""
    root = vectored_root
    for soname in VECTORED:
        assert b"__V_" in library(root, port, soname).read_bytes()
    programs = [Path(p) for p in PROGRAMS]
    assert vecstat(root, *(root / p for p in programs)) == \
        vecstat(sysroot, *(Path(sysroot) / p for p in programs))
    for soname in VECTORED:
        assert vecstat(root, library(root, port, soname)) == \
            vecstat(sysroot, library(sysroot, port, soname)), soname
    assert_model_matches(port, root, [root / "usr/bin/xz", "--version"])


# -- targeted cases, cross-built --------------------------------------------------------

@pytest.fixture(scope="module")
def workroot(port, sysroot, tmp_path_factory):
    """A copy of the sysroot the targeted cases are built into, each in a
    directory of its own, its programs finding their libraries through
    ``$ORIGIN`` (so natively and in the root alike)."""
    require_programs(port.cross_gcc)
    root = tmp_path_factory.mktemp(f"ldso-cases-{port.name}") / "root"
    shutil.copytree(sysroot, root, symlinks=True)
    return root


def cross(port, directory, *args):
    run([port.cross_gcc, "-O2", *args], cwd=directory)


def case(port, root, name, libraries, main, output, *flags):
    """Build ``libraries`` ((source, soname, extra flags)) and the program
    ``main`` into ROOT/cases/NAME; start it under ld.so and the model."""
    directory = root / "cases" / name
    directory.mkdir(parents=True)
    for source, soname, extra in libraries:
        cross(port, directory, "-fPIC", "-shared", f"-Wl,-soname={soname}", "-o", soname,
              TESTDATA / "ldso" / source, *extra)
    cross(port, directory, "-o", "main", TESTDATA / "ldso" / main, *flags, "-L.",
          *[f"-l:{soname}" for _, soname, _ in libraries], "-Wl,-rpath,$ORIGIN")
    linkmap, report = assert_model_matches(port, root, [directory / "main"], min_lookups=10)
    assert report.stdout == output
    return linkmap, linkmap.startup()


def bound(startup, requester, name):
    """(file name of the definer, Symbol) of the one binding of ``name``
    by the object whose name ends in ``requester``."""
    found = {(Path(b.definer.name).name if b.definer else None, b.symbol)
             for b in startup.bindings if b.name == name and b.table != "rtld"
             and b.requester.name.endswith(requester)}
    assert len(found) == 1, found
    return found.pop()


def test_interposition_and_weak_references(port, workroot):
    _, startup = case(port, workroot, "interpose",
                      [("first.c", "libfirst.so", ()), ("second.c", "libsecond.so", ())],
                      "interpose_main.c", "1 1 3 113 0 0\n")
    assert bound(startup, "libsecond.so", "twice")[0] == "libfirst.so"
    assert bound(startup, "libfirst.so", "hook")[0] == "main"
    assert bound(startup, "/main", "nowhere") == (None, None)


@pytest.mark.parametrize("variant, output, version", [("new", "2 20\n", "V2"),
                                                       ("old", "1 20\n", "V1")])
def test_versions(port, workroot, variant, output, version):
    _, startup = case(port, workroot, f"ver-{variant}",
                      [("ver.c", "libver.so.1",
                        (f"-Wl,--version-script={TESTDATA / 'ldso' / 'ver.vscript'}",))],
                      "ver_main.c", output, *(["-DOLD"] if variant == "old" else []))
    b = next(b for b in startup.bindings if b.name == "foo" and b.table != "rtld")
    assert b.version.name == version


@pytest.mark.parametrize("pie", ["-pie", "-no-pie"])
def test_copy_relocations_and_canonical_plt(port, workroot, pie):
    """A non-PIE program's COPY (R_386_COPY, R_AARCH64_COPY) binds to the
    library, the library's GLOB_DAT to the copy (a PIE program of these
    ports reads the data through its GOT: no copy); a non-PIE program's
    canonical PLT entry is what the library's address of libfunc binds
    to, never its JUMP_SLOT."""
    _, startup = case(port, workroot, f"data{pie}", [("data.c", "libdata.so", ())],
                      "data_main.c", "1 1 5 1 1\n", pie,
                      *(["-fno-pic"] if pie == "-no-pie" else []))
    copies = [(b.name, Path(b.definer.name).name) for b in startup.bindings
              if b.rtype == b.requester.elf.machine.copy]
    assert copies == ([("counter", "libdata.so")] if pie == "-no-pie" else [])
    assert bound(startup, "libdata.so", "counter")[0] == \
        ("main" if pie == "-no-pie" else "libdata.so")
    definer, symbol = bound(startup, "libdata.so", "libfunc")
    if pie == "-no-pie":
        assert definer == "main" and not symbol.defined and symbol.value
    else:
        assert definer == "libdata.so"


def patch_visibility(path, names, visibility):
    """Give the .dynsym entries ``names`` of ``path`` another visibility
    (st_other), as an older toolchain would have left them."""
    elf = FileCache("vecstat").get(str(path))
    layout = elf.image.layout
    other = 5 if layout.word == 8 else 13       # st_other in Elf64_Sym, Elf32_Sym
    data = bytearray(Path(path).read_bytes())
    table = elf.image.offset_of(elf.tags[6])    # DT_SYMTAB
    for sym in elf.symbols:
        if sym.name in names and sym.defined:
            data[table + layout.sym.size * sym.index + other] = visibility
    Path(path).write_bytes(bytes(data))


def patch_symbolic(path):
    """Turn the first spare DT_NULL of ``path`` into DT_SYMBOLIC."""
    elf = FileCache("vecstat").get(str(path))
    dyn = elf.image.layout.dyn
    data = bytearray(Path(path).read_bytes())
    at = elf.image.dynamic_offset + dyn.size * (len(elf.image.dynamic) - 1)
    assert dyn.unpack_from(data, at + dyn.size) == (0, 0), "no spare DT_NULL"
    dyn.pack_into(data, at, DT_SYMBOLIC, 0)
    Path(path).write_bytes(bytes(data))


@pytest.mark.parametrize("variant, output, to, kind",
                         [("stock", "2 1\n", "main", "normal"),
                          ("protected", "1 1\n", "libhook.so", "protected"),
                          ("symbolic", "1 1\n", "libhook.so", "normal")])
def test_protected_and_symbolic(port, workroot, variant, output, to, kind):
    """A library's reference to a function the program also defines
    (hook) binds to the program, unless the library's symbols are
    protected or it has DT_SYMBOLIC.  (The PIE program of these ports
    reads the library's value through its GOT, never a copy: both see the
    one value.)"""
    directory = workroot / "cases" / f"hook-{variant}"
    directory.mkdir(parents=True)
    cross(port, directory, "-fPIC", "-shared", "-Wl,-soname=libhook.so", "-o", "libhook.so",
          TESTDATA / "ldso/hook.c")
    cross(port, directory, "-o", "main", TESTDATA / "ldso/hook_main.c", "-L.", "-l:libhook.so",
          "-Wl,-rpath,$ORIGIN")
    if variant == "protected":
        patch_visibility(directory / "libhook.so", {"hook", "value"}, 3)    # STV_PROTECTED
    elif variant == "symbolic":
        patch_symbolic(directory / "libhook.so")
    linkmap, report = assert_model_matches(port, workroot, [directory / "main"], min_lookups=10)
    assert report.stdout == output
    startup = linkmap.startup()
    assert bound(startup, "libhook.so", "hook")[0] == to
    lines = report.bindings[f"/cases/hook-{variant}/libhook.so"]
    assert {k for name, _, _, k in lines if name in ("hook", "value")} == {kind}


def test_ifunc_called_and_taken(port, workroot):
    _, startup = case(port, workroot, "ifunc", [("ifunc.c", "libpick.so", ())],
                      "ifunc_main.c", "5 5 5\n", "-DADDRESS")
    assert bound(startup, "/main", "pick")[0] == "libpick.so"


# -- the search -------------------------------------------------------------------------

def test_other_class_and_machine_are_skipped(port, sysroot, sysroot_of, tmp_path):
    """Two libz.so.1 ahead of the sysroot's on LD_LIBRARY_PATH: one of the
    other ELF class, one of the program's class but another machine.
    ld.so skips both and goes on searching; so does the model."""
    root = tmp_path / "root"
    shutil.copytree(sysroot, root, symlinks=True)
    own = library(sysroot, port, "libz.so.1").read_bytes()
    if port.name == "i386":
        other_class = HOST_LIBZ.read_bytes()                        # ELFCLASS64, x86-64
        other_machine = bytearray(own)
        struct.pack_into("<H", other_machine, 18, EM_ARM)           # ELFCLASS32, ARM
    else:
        other_class = library(sysroot_of(I386), I386, "libz.so.1").read_bytes()   # i386
        other_machine = HOST_LIBZ.read_bytes()                      # ELFCLASS64, x86-64
    for directory, data in (("other-class", other_class), ("other-machine", other_machine)):
        (root / directory).mkdir()
        (root / directory / "libz.so.1").write_bytes(bytes(data))
    linkmap, _ = assert_model_matches(port, root, [root / "usr/bin/sqlite3", "--version"],
                                      ["/other-class", "/other-machine"])
    assert loaded(linkmap, root, "libz.so.1") == f"/lib/{port.triplet}/libz.so.1"


def test_cache_in_the_root_serves_its_abi_only(sysroot_of, tmp_path):
    """An ld.so.cache written into an i386 root by ldconfig -r, listing a
    libz.so.1 found nowhere else (/opt/z) and an x86-64 one (/opt/x64):
    i386's ld.so, run under qemu-i386 -L ROOT (which opens the root's
    cache), loads /opt/z's; so does the model, whose x86-64 ld.so would
    take the other."""
    sysroot = sysroot_of(I386)
    root = tmp_path / "root"
    shutil.copytree(sysroot, root, symlinks=True)
    for directory in ("opt/z", "opt/x64"):
        (root / directory).mkdir(parents=True)
    for path in (root / "lib" / I386.triplet).glob("libz.so.1*"):
        shutil.move(path, root / "opt/z" / path.name)
    shutil.copy(HOST_LIBZ, root / "opt/x64/libz.so.1")
    (root / "etc/ld.so.conf").write_text("/opt/x64\n/opt/z\n")
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    run([ldconfig, "-X", "-r", root], cwd=tmp_path)
    cache = LdCache.read(str(root / "etc/ld.so.cache"))
    assert sorted(p for n, p, _ in cache.names() if n == "libz.so.1") == \
        ["/opt/x64/libz.so.1", "/opt/z/libz.so.1"]
    i386 = LdsoConfig.for_arch("i386", str(root))
    assert i386.cache_flags == 0x0003 and LdsoConfig().cache_flags == 0x0303
    assert cache.lookup("libz.so.1", i386) == "/opt/z/libz.so.1"
    assert cache.lookup("libz.so.1", LdsoConfig()) == "/opt/x64/libz.so.1"
    linkmap, _ = assert_model_matches(I386, root, [root / "usr/bin/sqlite3", "--version"],
                                      emulated=True)
    assert loaded(linkmap, root, "libz.so.1") == "/opt/z/libz.so.1"
