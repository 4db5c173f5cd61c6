"""elfvector.ldso against ld.so itself.

Each test starts a program under ``LD_DEBUG=bindings,scopes,reloc,statistics``
and ``LD_BIND_NOW=1`` and requires the model to predict everything ld.so
reports before the first constructor runs: every binding of every object, in
order (referencing object, name, version, defining object, "protected"); the
number of lookups and of lookups answered by the per-object cache; the
objects and the scopes of each; the order of relocation.  The seven real
programs of issue 8 come first, then small cases built with gcc, each about
one rule, with an assertion on the rule's own outcome besides the
comparison.  Only the vDSO's own bindings are left out: it is no file.
"""

import os
import re
import shutil
import struct
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import TESTDATA, gcc, missing, run
from elfvector.ldso import (DT_SYMBOLIC, FileCache, LdCache, LdsoConfig, LinkMap, LoadError,
                            Version, cache_libcmp, elf_hash)

PROGRAMS = ["curl", "git", "sqlite3", "jq", "python3", "cmake", "gdb"]
VDSO = "linux-vdso.so.1"
BINDING = re.compile(r"binding file (.*) \[0\] to (.*) \[0\]: (normal|protected) symbol "
                     r"`(.*)'(?: \[(.*)\])?$")


# -- what ld.so reports ------------------------------------------------------------

@dataclass
class LdsoReport:
    """What LD_DEBUG printed up to the first constructor."""

    bindings: dict = field(default_factory=lambda: defaultdict(list))
    objects: list = field(default_factory=list)      #: (object, [scope, ...]) in order
    relocated: list = field(default_factory=list)
    lookups: int = None
    cache_hits: int = None
    relative: int = None
    vdso_lookups: int = 0
    returncode: int = None
    stdout: str = ""


def ldso_report(argv, env=None, cwd=None):
    """Run ``argv`` as ld.so's debugging output describes it."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    full.update(env or {}, LD_DEBUG="bindings,scopes,reloc,statistics", LD_BIND_NOW="1")
    proc = subprocess.run([str(a) for a in argv], env=full, cwd=cwd, capture_output=True,
                          errors="surrogateescape", timeout=120, stdin=subprocess.DEVNULL)
    report = LdsoReport(returncode=proc.returncode, stdout=proc.stdout)
    for line in proc.stderr.splitlines():
        line = re.sub(r"^\s*\d+:\s?", "", line)
        if line.startswith("calling init:") or line.startswith("initialize program:"):
            break
        _parse_line(report, line)
    return report


def _parse_line(report, line):
    if m := BINDING.match(line):
        requester, definer, kind, name, version = m.groups()
        if requester == VDSO:
            report.vdso_lookups += 1
        else:
            report.bindings[requester].append((name, version, definer, kind))
    elif m := re.match(r"object=(.*) \[0\]$", line):
        report.objects.append((m.group(1), []))
    elif m := re.match(r" scope \d+: (.*)$", line):
        report.objects[-1][1].append(m.group(1).split())
    elif m := re.match(r"relocation processing: (\S+)", line):
        report.relocated.append(m.group(1))
    elif m := re.match(r"\s*number of relocations: (\d+)", line):
        report.lookups = int(m.group(1))
    elif m := re.match(r"\s*number of relocations from cache: (\d+)", line):
        report.cache_hits = int(m.group(1))
    elif m := re.match(r"\s*number of relative relocations: (\d+)", line):
        report.relative = int(m.group(1))


# -- what the model predicts ------------------------------------------------------

def model_bindings(startup):
    """The bindings LD_DEBUG would print: lookups made (not from the
    cache) that found a definition, per referencing object, in order."""
    out = defaultdict(list)
    for b in startup.bindings:
        if b.looked_up and not b.from_cache and b.definer is not None:
            out[b.requester.name].append((b.name, b.version.name if b.version else None,
                                          b.definer.name, "protected" if b.protected else
                                          "normal"))
    return out


def assert_model_matches(argv, env=None, cwd=None, files=None):
    """Start ``argv`` under ld.so and under the model; everything ld.so
    reports must be predicted.  Returns (LinkMap, Startup, LdsoReport)."""
    env = env or {}
    report = ldso_report(argv, env, cwd)
    assert report.lookups is not None, f"{argv[0]} did not start: exit {report.returncode}"
    linkmap = LinkMap(str(argv[0]), preload=env.get("LD_PRELOAD", ""),
                      library_path=env.get("LD_LIBRARY_PATH"), files=files)
    startup = linkmap.startup()
    objects = [(o, s) for o, s in report.objects if o != VDSO]
    assert objects == [(o.name, [[m.name for m in scope] for scope in o.scope])
                       for o in linkmap.objects]
    assert report.relocated == [o.name for o in linkmap.relocation_order()]
    predicted = model_bindings(startup)
    for requester in set(report.bindings) | set(predicted):
        assert predicted[requester] == report.bindings[requester], requester
    assert startup.lookups == report.lookups - report.vdso_lookups
    assert startup.cache_hits == report.cache_hits
    return linkmap, startup, report


# -- the seven programs -------------------------------------------------------------

@pytest.fixture(scope="module")
def files():
    """One FileCache for the module: each library is parsed once."""
    return FileCache()


def debian_program(name):
    """/usr/bin/``name``, the Debian program (not whatever PATH finds first)."""
    path = Path("/usr/bin") / name
    if not path.exists():
        missing(str(path), f"the Debian package {name}")
    return str(path)


@pytest.mark.parametrize("program", PROGRAMS)
def test_real_program_matches_ldso(program, files):
    path = debian_program(program)
    start = time.perf_counter()
    linkmap, startup, report = assert_model_matches([path, "--version"], files=files)
    assert time.perf_counter() - start < 30
    assert len(linkmap.objects) > 3 and startup.lookups > 300


def test_gdb_closure_resolves_in_seconds():
    """Issue 8: gdb's closure (about 58 objects) parsed and every start-up
    reference resolved in a few seconds, with a cold cache."""
    gdb = debian_program("gdb")
    start = time.perf_counter()
    linkmap = LinkMap(gdb)
    linkmap.startup()
    assert len(linkmap.objects) >= 50
    assert time.perf_counter() - start < 5


# -- small cases --------------------------------------------------------------------

def src(name):
    return str(TESTDATA / "ldso" / name)


def shared(tmp, source, soname, *flags, directory=".", deps=()):
    """``directory/soname`` built from ``source`` (``deps`` linked in)."""
    out = Path(tmp) / directory
    out.mkdir(parents=True, exist_ok=True)
    gcc("-fPIC", "-O2", "-shared", f"-Wl,-soname={soname}", "-o", str(out / soname),
        src(source), *flags, "-Wl,--no-as-needed", *deps, cwd=tmp)
    return out / soname


def program(tmp, source, output, *flags):
    gcc("-O2", "-o", output, src(source), *flags, cwd=tmp)
    return Path(tmp) / output


def binding(startup, requester, name):
    """The one relocation binding of ``name`` by the object named ``requester``
    (a suffix of its path)."""
    found = {(b.definer.name if b.definer else None, b.symbol)
             for b in startup.bindings if b.name == name and b.table != "rtld"
             and b.requester.name.endswith(requester)}
    assert len(found) == 1, found
    definer, symbol = found.pop()
    return (Path(definer).name if definer else None), symbol


@pytest.fixture
def interpose(tmp_path):
    shared(tmp_path, "first.c", "libfirst.so")
    shared(tmp_path, "second.c", "libsecond.so")
    return program(tmp_path, "interpose_main.c", "interpose", "-L.", "-lfirst", "-lsecond",
                   f"-Wl,-rpath,{tmp_path}")


def test_interposition_weak_first_and_weak_undefined(interpose):
    _, startup, report = assert_model_matches([interpose])
    assert report.stdout == "1 1 3 113 0 0\n"
    assert binding(startup, "libsecond.so", "twice")[0] == "libfirst.so"
    assert binding(startup, "libsecond.so", "weak_first")[0] == "libfirst.so"
    assert binding(startup, "interpose", "weak_first")[0] == "libfirst.so"
    assert binding(startup, "libfirst.so", "hook")[0] == "interpose"
    assert binding(startup, "libsecond.so", "hook")[0] == "interpose"
    assert binding(startup, "interpose", "nowhere") == (None, None)
    assert binding(startup, "interpose", "nowhere_data") == (None, None)


def test_preload_interposes(interpose, tmp_path):
    """libpre.so comes before libfirst.so; a preload that does not exist is
    ignored, as ld.so ignores it (with a message)."""
    pre = shared(tmp_path, "preload.c", "libpre.so")
    preload = f"{tmp_path}/nonexistent.so {pre}"
    _, startup, report = assert_model_matches([interpose], {"LD_PRELOAD": preload})
    assert report.stdout == "1 9 3 913 0 0\n"
    assert binding(startup, "libsecond.so", "twice")[0] == "libpre.so"


@pytest.fixture
def versioned(tmp_path):
    shared(tmp_path, "ver.c", "libver.so.1", f"-Wl,--version-script={src('ver.vscript')}",
           directory="lib")
    shared(tmp_path, "ver_plain.c", "libver.so.1", directory="plain")
    rpath = f"-Wl,-rpath,{tmp_path}/lib"
    return {"new": program(tmp_path, "ver_main.c", "ver_new", "-Llib", "-l:libver.so.1", rpath),
            "old": program(tmp_path, "ver_main.c", "ver_old", "-DOLD", "-Llib",
                           "-l:libver.so.1", rpath),
            "none": program(tmp_path, "ver_main.c", "ver_none", "-Lplain", "-l:libver.so.1",
                            rpath)}


@pytest.mark.parametrize("variant, output, version, versym",
                         [("new", "2 20\n", "V2", 3), ("old", "1 20\n", "V1", 2 | 0x8000),
                          ("none", "1 20\n", None, 2 | 0x8000)])
def test_versions(versioned, variant, output, version, versym):
    """foo@@V2 for the default link, foo@V1 when asked for; an unversioned
    reference takes the oldest (index 2, hidden), not the default as the
    static linker would."""
    _, startup, report = assert_model_matches([versioned[variant]])
    assert report.stdout == output
    b = next(b for b in startup.bindings if b.name == "foo" and b.table != "rtld")
    assert (b.version.name if b.version else None) == version
    assert b.symbol.versym == versym


@pytest.mark.parametrize("pie", ["-pie", "-no-pie"])
def test_copy_relocations_and_canonical_plt(tmp_path, pie):
    """The program's COPY binds to the library; the library's own GLOB_DAT
    to the copy; a non-PIE program's canonical PLT entry is what the
    library's GLOB_DAT of libfunc binds to, never its JUMP_SLOT."""
    shared(tmp_path, "data.c", "libdata.so")
    flags = ["-fno-pic"] if pie == "-no-pie" else []
    prog = program(tmp_path, "data_main.c", "data", pie, *flags, "-L.", "-ldata",
                   f"-Wl,-rpath,{tmp_path}")
    _, startup, report = assert_model_matches([prog])
    assert report.stdout == "1 1 5 1 1\n"
    copies = [b for b in startup.bindings if b.rtype == 5]
    assert [(b.name, Path(b.definer.name).name) for b in copies] == [("counter", "libdata.so")]
    assert binding(startup, "libdata.so", "counter")[0] == "data"
    canonical = binding(startup, "libdata.so", "libfunc")
    if pie == "-no-pie":
        assert canonical[0] == "data" and not canonical[1].defined and canonical[1].value
        assert binding(startup, "/data", "libfunc")[0] == "libdata.so"
    else:
        assert canonical[0] == "libdata.so"


def patch_dynsym_visibility(path, names, visibility):
    """Give the .dynsym entries ``names`` of ``path`` another visibility,
    as an older toolchain would have left them with relocations."""
    linkmap_files = FileCache()
    elf = linkmap_files.get(str(path))
    data = bytearray(Path(path).read_bytes())
    table = elf.image.offset_of(elf.tags[6])
    for sym in elf.symbols:
        if sym.name in names and sym.defined:
            data[table + 24 * sym.index + 5] = visibility
    Path(path).write_bytes(bytes(data))


def patch_symbolic(path):
    """Turn the first spare DT_NULL of ``path`` into DT_SYMBOLIC."""
    data = bytearray(Path(path).read_bytes())
    elf = FileCache().get(str(path))
    at = elf.image.dynamic_offset + 16 * len(elf.image.dynamic) - 16
    assert struct.unpack_from("<qQ", data, at + 16) == (0, 0), "no spare DT_NULL"
    struct.pack_into("<qQ", data, at, DT_SYMBOLIC, 0)
    Path(path).write_bytes(bytes(data))


@pytest.mark.parametrize("variant, output, hook_to, value_to, protected",
                         [("stock", "2 1\n", "hook", "hook", "normal"),
                          ("protected", "1 0\n", "libhook.so", "libhook.so", "protected"),
                          ("symbolic", "1 0\n", "libhook.so", "libhook.so", "normal")])
def test_protected_and_symbolic(tmp_path, variant, output, hook_to, value_to, protected):
    """A library's references to names the program defines (hook) and
    copies (value): to the program normally; to the library itself when
    the library's symbols are protected (a JUMP_SLOT of PLT class, and a
    GLOB_DAT whose second, PLT-class lookup finds the copy) or when it has
    DT_SYMBOLIC (it searches itself first)."""
    lib = shared(tmp_path, "hook.c", "libhook.so")
    prog = program(tmp_path, "hook_main.c", "hook", "-L.", "-lhook", f"-Wl,-rpath,{tmp_path}")
    if variant == "protected":
        patch_dynsym_visibility(lib, {"hook", "value"}, 3)
    elif variant == "symbolic":
        patch_symbolic(lib)
    linkmap, startup, report = assert_model_matches([prog])
    assert report.stdout == output
    assert binding(startup, "libhook.so", "hook")[0] == hook_to
    assert binding(startup, "libhook.so", "value")[0] == value_to
    lines = report.bindings[str(lib)]
    assert {kind for name, _, _, kind in lines if name in ("hook", "value")} == {protected}


# -- finding libraries --------------------------------------------------------------

@pytest.fixture
def paths(tmp_path):
    """libwho.so.1 in a/ and b/ (saying which), its dependency libdep.so.1
    in deps/ only, programs in bin/ with DT_RPATH or DT_RUNPATH."""
    shared(tmp_path, "dep.c", "libdep.so.1", directory="deps")
    for where in ("a", "b"):
        shared(tmp_path, "who.c", "libwho.so.1", f"-DWHO=\"{where}\"", directory=where,
               deps=[f"{tmp_path}/deps/libdep.so.1"])
    (tmp_path / "bin").mkdir()
    progs = {}
    for tags in ("disable", "enable"):
        progs[tags] = program(tmp_path, "who_main.c", f"bin/who_{tags}", "-La", "-l:libwho.so.1",
                              f"-Wl,--{tags}-new-dtags,-rpath,$ORIGIN/../a:$ORIGIN/../deps",
                              "-Wl,--allow-shlib-undefined")
    return tmp_path, progs


def loaded_from(linkmap, soname):
    return next(str(Path(o.name).parent) for o in linkmap.objects if o.name.endswith(soname))


def test_rpath_beats_library_path_and_serves_dependencies(paths):
    tmp, progs = paths
    linkmap, _, report = assert_model_matches([progs["disable"]],
                                              {"LD_LIBRARY_PATH": f"{tmp}/b"})
    assert report.stdout == "a\n"
    assert loaded_from(linkmap, "libwho.so.1") == f"{tmp}/bin/../a"
    assert loaded_from(linkmap, "libdep.so.1") == f"{tmp}/bin/../deps"


def test_library_path_beats_runpath(paths):
    tmp, progs = paths
    env = {"LD_LIBRARY_PATH": f"{tmp}/b:{tmp}/deps"}
    linkmap, _, report = assert_model_matches([progs["enable"]], env)
    assert report.stdout == "b\n"
    assert loaded_from(linkmap, "libwho.so.1") == f"{tmp}/b"


def test_runpath_does_not_serve_dependencies(paths):
    """libwho.so.1's own dependency is not searched in the program's
    DT_RUNPATH: ld.so fails, and so does the model."""
    tmp, progs = paths
    env = {"LD_LIBRARY_PATH": f"{tmp}/b"}
    report = ldso_report([progs["enable"]], env)
    assert report.returncode == 127 and report.lookups is None
    with pytest.raises(LoadError, match="libdep.so.1"):
        LinkMap(str(progs["enable"]), library_path=env["LD_LIBRARY_PATH"])


def test_runpath_of_a_library_hides_the_rpath_of_its_loaders(paths):
    """libwho.so.1 with a DT_RUNPATH: the program's DT_RPATH (which holds
    libdep.so.1) is not searched for libwho's dependency."""
    tmp, _ = paths
    for tags, where in (("enable", "c"), ("disable", "d")):
        shared(tmp, "who.c", "libwho.so.1", f"-DWHO=\"{where}\"", directory=where,
               deps=[f"{tmp}/deps/libdep.so.1"], *[f"-Wl,--{tags}-new-dtags,-rpath,/nowhere"])
        program(tmp, "who_main.c", f"bin/who_{where}", f"-L{where}", "-l:libwho.so.1",
                f"-Wl,--disable-new-dtags,-rpath,$ORIGIN/../{where}:$ORIGIN/../deps")
    report = ldso_report([tmp / "bin" / "who_c"])
    assert report.returncode == 127 and report.lookups is None
    with pytest.raises(LoadError, match="libdep.so.1"):
        LinkMap(str(tmp / "bin" / "who_c"))
    linkmap, _, report = assert_model_matches([tmp / "bin" / "who_d"])
    assert report.stdout == "d\n"
    assert loaded_from(linkmap, "libdep.so.1") == f"{tmp}/bin/../deps"


def test_origin_platform_and_hwcaps_subdirectories(paths):
    """$ORIGIN and $PLATFORM in DT_RPATH; in the directory, the first
    subdirectory that ld.so tries holds a file of another ELF class
    (skipped), the second the copy that ld.so must load."""
    tmp, _ = paths
    config = LdsoConfig.probe()
    platform_dir = tmp / config.platform
    shared(tmp, "who.c", "libwho.so.1", "-DWHO=\"sub\"",
           directory=platform_dir / config.subdirectories[1], deps=[f"{tmp}/deps/libdep.so.1"])
    wrong = platform_dir / config.subdirectories[0] / "libwho.so.1"
    wrong.parent.mkdir(parents=True)
    data = bytearray((tmp / "a" / "libwho.so.1").read_bytes())
    data[4] = 1                                         # ELFCLASS32
    wrong.write_bytes(bytes(data))
    prog = program(tmp, "who_main.c", "bin/who_platform", "-La", "-l:libwho.so.1",
                   "-Wl,--disable-new-dtags,-rpath,$ORIGIN/../$PLATFORM:$ORIGIN/../deps")
    linkmap, _, report = assert_model_matches([prog])
    assert report.stdout == "sub\n"
    assert loaded_from(linkmap, "libwho.so.1") == \
        f"{tmp}/bin/../{config.platform}/{config.subdirectories[1].rstrip('/')}"


def test_wrong_machine_is_skipped(paths):
    tmp, progs = paths
    data = bytearray((tmp / "b" / "libwho.so.1").read_bytes())
    struct.pack_into("<H", data, 18, 183)               # EM_AARCH64
    (tmp / "a" / "libwho.so.1").write_bytes(bytes(data))
    linkmap, _, report = assert_model_matches([progs["disable"]],
                                              {"LD_LIBRARY_PATH": f"{tmp}/b"})
    assert report.stdout == "b\n"


def test_legacy_hwcaps_subdirectories_as_ldso_lists_them():
    """The search path ld.so prints for LD_LIBRARY_PATH is the directory
    with every subdirectory of :attr:`LdsoConfig.subdirectories`."""
    config = LdsoConfig.probe()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    env.update(LD_DEBUG="libs", LD_LIBRARY_PATH="/nonexistent")
    out = subprocess.run([config.interp, "--list", shutil.which("true")], env=env,
                         capture_output=True, text=True).stderr
    listed = re.search(r"search path=(\S*)\s+\(LD_LIBRARY_PATH\)", out).group(1)
    assert listed.split(":") == [f"/nonexistent/{s}".rstrip("/") for s in
                                 config.subdirectories]


# -- the cache ----------------------------------------------------------------------

def test_cache_agrees_with_ldconfig_listing():
    """Every entry ldconfig -p lists, read from the binary file."""
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True).stdout
    listed = re.findall(r"^\s+(\S+) \(([^)]*)\) => (\S+)$", out, re.M)
    cache = LdCache.read()
    entries = [(name, path) for name, path, _ in cache.names()]
    assert entries == [(name, path) for name, _, path in listed]
    config = LdsoConfig.probe()
    ours = {name for name, flags, _ in listed if "x86-64" in flags.split(",")}
    for name, _ in entries:
        # ld.so skips entries of another ABI (an i386 libc6-i386 puts its
        # ld-linux.so.2 there): _dl_cache_check_flags.
        assert (cache.lookup(name, config) is not None) == (name in ours), name
    assert cache.lookup("libc.so.6", config) == "/lib/x86_64-linux-gnu/libc.so.6"
    assert cache.lookup("libnothing-at-all.so.0", config) is None


def test_cache_prefers_active_hwcaps_subdirectory(tmp_path):
    """A cache written by ldconfig with glibc-hwcaps variants: the most
    preferred active subdirectory wins, the plain entry without hwcaps.
    ldconfig runs with -r (its root is tmp_path), so that nothing of the
    system's (ld.so.cache, its aux-cache) is written."""
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    shared(tmp_path, "dep.c", "libdep.so.1", directory="libs")
    for sub in ("x86-64-v2", "x86-64-v3"):
        shared(tmp_path, "dep.c", "libdep.so.1", directory=f"libs/glibc-hwcaps/{sub}")
    (tmp_path / "conf").write_text("/libs\n")
    run([ldconfig, "-X", "-r", tmp_path, "-C", "/cache", "-f", "/conf"], cwd=tmp_path)
    cache = LdCache.read(str(tmp_path / "cache"))
    assert {sub for name, _, sub in cache.names() if name == "libdep.so.1"} == \
        {None, "x86-64-v2", "x86-64-v3"}
    both = LdsoConfig(hwcaps_subdirs=("x86-64-v3", "x86-64-v2"))
    assert cache.lookup("libdep.so.1", both) == "/libs/glibc-hwcaps/x86-64-v3/libdep.so.1"
    v2 = LdsoConfig(hwcaps_subdirs=("x86-64-v2",))
    assert cache.lookup("libdep.so.1", v2) == "/libs/glibc-hwcaps/x86-64-v2/libdep.so.1"
    assert cache.lookup("libdep.so.1", LdsoConfig(hwcaps_subdirs=())) == "/libs/libdep.so.1"


def test_cache_libcmp_compares_numbers():
    assert cache_libcmp("libfoo.so.10", "libfoo.so.9") > 0
    assert cache_libcmp("libfoo.so.01", "libfoo.so.1") == 0
    assert cache_libcmp("libfoo.so", "libfoo.so.1") < 0
    assert cache_libcmp("libfoo1.so", "libfoo.so") > 0


def test_version_hash_and_missing_versions(versioned):
    """A program asking a version its library does not define: ld.so
    refuses to start it, and the model names the version."""
    assert elf_hash("GLIBC_2.2.5") == 0x09691A75
    assert Version.named("V1").hash == elf_hash("V1")
    prog = versioned["old"]
    (prog.parent / "v2only").write_text("V2 { global: *; };\n")
    shared(prog.parent, "ver_plain.c", "libver.so.1", "-Wl,--version-script=v2only",
           directory="lib")
    report = ldso_report([prog])
    assert report.returncode == 1 and report.lookups is None    # _dl_check_all_versions
    missing = LinkMap(str(prog)).missing_versions()
    assert [(Path(o.name).name, f, v) for o, f, v in missing] == [("ver_old", "libver.so.1", "V1")]


# -- a root directory (a sysroot), and ld.so's of other architectures --------------

def test_root_keeps_symbolic_links_inside_it(tmp_path):
    """Under a root, an absolute link names a file of the root (Debian's
    /lib64/ld-linux-x86-64.so.2 is one) and ``..`` stops at the root, as in
    a chroot; the model never reads this system's file instead."""
    (tmp_path / "lib/x").mkdir(parents=True)
    (tmp_path / "lib/x/libdep.so.1").write_bytes(b"")
    (tmp_path / "lib64").mkdir()
    os.symlink("/lib/x/libdep.so.1", tmp_path / "lib64/absolute")
    os.symlink("../../../../lib/x", tmp_path / "lib64/up")
    config = LdsoConfig(root=str(tmp_path))
    assert config.host_path("/lib64/absolute") == f"{tmp_path}/lib/x/libdep.so.1"
    assert config.host_path("/lib64/up/libdep.so.1") == f"{tmp_path}/lib/x/libdep.so.1"
    assert config.host_path("/../lib/x/libdep.so.1") == f"{tmp_path}/lib/x/libdep.so.1"
    assert config.name_in_root(f"{tmp_path}/lib64/absolute") == "/lib/x/libdep.so.1"
    assert LdsoConfig().host_path("/lib64/absolute") == "/lib64/absolute"


def test_an_ldso_that_cannot_run_here_has_its_defaults(tmp_path):
    """A root without the architecture's ld.so: its settings are the
    table's (the AArch64 system directories and cache flags, no hwcaps)."""
    config = LdsoConfig.for_arch("aarch64", str(tmp_path))
    assert (config.arch, config.root, config.interp) == \
        ("aarch64", str(tmp_path), "/lib/ld-linux-aarch64.so.1")
    assert config.system_dirs[0] == "/lib/aarch64-linux-gnu/" and config.hwcaps_subdirs == ()
    assert config.cache_flags == 0x0a03 and config.subdirectories[-1] == ""
    assert LdsoConfig.for_arch("x86_64") == LdsoConfig.probe()
