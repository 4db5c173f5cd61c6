"""``vectool --mode=retro`` (the closure mode) on i386 and AArch64, issue 10:
Debian's own bzip2, xz and sqlite3 of each architecture, from the sysroot
of :mod:`ports` (fetched with ``apt-get download``, unpacked, never
installed), rewritten with their whole closure (libc included) into one
DIR, with the sysroot as the root ld.so reads them under.

* the outputs run without the sysroot (their PT_INTERP is the copied
  ld.so, their run path DIR/lib; natively on i386, under ``qemu-aarch64``
  without ``-L``), and give the output the originals give run by the
  sysroot's ld.so: compression, decompression, SQL, an error path;
* ``--verify`` (the oracle under gdb) finds every word ld.so writes in
  the stock process as the outputs hold it (AArch64 programs under
  ``qemu-aarch64 -g`` and ``gdb-multiarch``);
* ld.so's lookups fall (``LD_DEBUG=statistics``);
* libraries off their bases (preloaded blockers in the way) behave the
  same: the fix-up routine of each architecture corrects the words;
* a preload defining a pre-bound name is refused in one line, and runs
  with ``ELFVECTOR_PRELOAD=ignore``; a preloaded malloc still interposes;
* the PLTs of cross-built code: on i386 PIC (through %ebx) and not, with
  and without ``-fcf-protection`` (``.plt.sec``); on AArch64 with and
  without BTI and PAC (``-mbranch-protection=standard``); PIE and not.

Under qemu-user, ``/proc/self/environ`` is qemu's own environment, so
``ELFVECTOR_PRELOAD`` is given to qemu (which passes its environment on),
the loader's variables with ``-E``.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import TESTDATA, require_programs, run, tool
from ports import (cross_build, libdirs, port, sysroot, sysroot_of)  # noqa: F401 (fixtures)
from elfvector.closure.driver import RetroOptions, retro
from elfvector.closure.verify import verify

RETRO = TESTDATA / "retro"
PROGRAMS = ("bin/bzip2", "usr/bin/xz", "usr/bin/sqlite3")
SQL = ("create table t(a, b); insert into t values (1, 'x'), (2, 'yy'), (3, NULL);"
       " select a, upper(b), length(b), hex(b), printf('%.3f', a / 3.0) from t;"
       " select json_object('n', count(*)) from t; select sqlite_version();")
#: (program, arguments, stdin)
WORKLOADS = [
    ("bin/bzip2", ["-c"], "text"),
    ("bin/bzip2", ["-dc"], "bz2"),
    ("bin/bzip2", ["--help"], None),
    ("usr/bin/xz", ["-c"], "text"),
    ("usr/bin/xz", ["--version"], None),
    ("usr/bin/sqlite3", [":memory:", SQL], None),
    ("usr/bin/sqlite3", [":memory:", "select no_such_column"], None),
]
TEXT = "".join(f"line {i} of the closure test\n" for i in range(3000)).encode()


@pytest.fixture(scope="module")
def rewritten(port, sysroot, tmp_path_factory):
    """The three programs of ``port`` and their closure rewritten into one DIR."""
    d = tmp_path_factory.mktemp(f"retro-{port.name}")
    result = retro([Path(sysroot) / p for p in PROGRAMS],
                   RetroOptions(outdir=str(d / "out"), addrfile=str(d / "addrs"), seed=7,
                                root=str(sysroot)))
    return port, sysroot, d, result


def stock(port, root, program, args, loader_env=None):
    """The original ``program`` of the sysroot ``root``, run by its ld.so
    (``loader_env``: variables for the loader, LD_PRELOAD, LD_DEBUG...)."""
    argv = port.command(root, [Path(root) / program, *args], libdirs(root, port))
    return with_loader_env(port, argv, loader_env)


def output(port, d, program, args, loader_env=None):
    argv = [d / "out/bin" / Path(program).name, *args]
    if port.name == "aarch64":
        argv = ["qemu-aarch64", *argv]
    return with_loader_env(port, argv, loader_env)


def with_loader_env(port, argv, loader_env):
    """``argv`` with variables for the guest's ld.so: ``-E`` to qemu (in
    qemu's own environment they would reach the host's loader), else env."""
    if not loader_env:
        return argv
    pairs = [f"{k}={v}" for k, v in loader_env.items()]
    if argv[0] == "qemu-aarch64":
        return [argv[0], *[a for p in pairs for a in ("-E", p)], *argv[1:]]
    return ["env", *pairs, *argv]


def preloading(paths):
    return {"LD_PRELOAD": ":".join(map(str, paths))}


def outcome(argv, data=None, env=None):
    full = dict(os.environ, **(env or {}))
    proc = subprocess.run([str(a) for a in argv], input=data, capture_output=True,
                          timeout=120, env=full)
    return proc.stdout, proc.stderr, proc.returncode


def stdin_of(kind, port, root):
    if kind == "bz2":
        return outcome(stock(port, root, "bin/bzip2", ["-c"]), TEXT)[0]
    return TEXT if kind == "text" else None


def workloads_agree(port, root, d, loader_env=None):
    for program, args, kind in WORKLOADS:
        data = stdin_of(kind, port, root)
        expected = outcome(stock(port, root, program, args), data)
        got = outcome(output(port, d, program, args, loader_env), data)
        assert got == expected, (program, args)
        assert expected[0] or expected[1]


def test_outputs_behave_like_stock(rewritten):
    port, root, d, result = rewritten
    workloads_agree(port, root, d)
    names = {Path(row.output).name for row in result.rows}
    assert {"bzip2", "xz", "sqlite3", "libc.so.6", "libsqlite3.so.0", "liblzma.so.5",
            Path(port.interp).name} <= names
    low, high = {"i386": (0x41000000, 0x50000000),
                 "aarch64": (0x3000000000, 0x4000000000)}[port.name]
    bases = [row.base for row in result.rows if row.base is not None]
    assert bases and all(low <= b < high and b % 0x200000 == 0 for b in bases)
    assert all(row.loads_after <= row.loads_before + (row.output.endswith("/libc.so.6")
                                                      and port.name == "i386")
               for row in result.rows)


def test_a_rerun_takes_the_recorded_sysroot(rewritten):
    """A rerun into DIR from the command line (no program given, no --root)
    reads the closure under the sysroot the manifest records, and finds
    nothing to write."""
    port, root, d, _ = rewritten
    result = tool("vectool", "--mode=retro", f"--outdir={d / 'out'}", f"--addrfile={d / 'addrs'}",
                  "--verbose", cwd=d)
    assert f"--root={root} (as {d / 'out/elfvector-retro.json'} records)" in result.stdout
    again = retro([], RetroOptions(outdir=str(d / "out"), addrfile=str(d / "addrs")))
    assert len(again.rows) > 10 and not any(row.written for row in again.rows)


def test_verify_is_clean(rewritten):
    """The oracle: every word ld.so writes in the stock processes is the
    output's word, translated to where the objects lie (AArch64 programs
    run under qemu-aarch64's gdbstub, driven by gdb-multiarch)."""
    port, _, _, result = rewritten
    require_programs(*{"i386": ["gdb"], "aarch64": ["gdb-multiarch", "qemu-aarch64"]}[port.name])
    verified = verify(result.closure, result.plan, ("--version",))
    assert verified.failures == []
    assert verified.settled > 10000 and verified.words > verified.settled


def relocations(argv):
    """ld.so's "number of relocations" (its symbol lookups) at start-up
    under LD_BIND_NOW=1 (``argv`` made with these loader variables)."""
    err = outcome(argv)[1].decode()
    return int(re.search(r"^\s*\d+:\s+number of relocations: (\d+)$", err, re.M).group(1))


STATISTICS = {"LD_DEBUG": "statistics", "LD_BIND_NOW": "1"}


@pytest.mark.parametrize("program", PROGRAMS)
def test_lookups_fall(rewritten, program):
    port, root, d, result = rewritten
    before = relocations(stock(port, root, program, ["--version"], STATISTICS))
    after = relocations(output(port, d, program, ["--version"], STATISTICS))
    stock_count, remaining, _ = next(v for p, v in result.lookups.items()
                                     if p.endswith(program))
    # the i386 vDSO (linux-gate.so.1) makes lookups of its own, which
    # elfvector.ldso does not model: the same number in both processes
    vdso = before - stock_count
    assert 0 <= vdso <= 8 and after - vdso == remaining
    assert after < before / 2


def cross_library(port, tmp_path, name, *flags):
    require_programs(port.cross_gcc)
    run([port.cross_gcc, "-O2", "-fPIC", "-shared", "-o", tmp_path / name, *flags],
        cwd=tmp_path)
    return tmp_path / name


def blocker(port, tmp_path, base):
    """A library linked at ``base``: preloaded, it takes that base."""
    return cross_library(port, tmp_path, f"blocker-{base:x}.so", RETRO / "blocker.c",
                         f"-Wl,-Ttext-segment={base:#x}")


def base_of(result, name):
    return next(row.base for row in result.rows if Path(row.output).name == name)


def test_libraries_off_their_bases_behave_the_same(rewritten, tmp_path):
    port, root, d, result = rewritten
    blockers = [blocker(port, tmp_path, base_of(result, n))
                for n in ("libc.so.6", "libsqlite3.so.0")]
    files = outcome(output(port, d, "usr/bin/sqlite3", ["--version"],
                           dict(preloading(blockers), LD_DEBUG="files")))[1].decode()
    moved = re.findall(r"file=\S*(libc\.so\.6|libsqlite3\.so\.0) \[0\];.*?base: (0x[0-9a-f]+)",
                       files, re.S)
    assert {name for name, bias in moved if int(bias, 16)} == {"libc.so.6", "libsqlite3.so.0"}
    workloads_agree(port, root, d, preloading(blockers))


def test_a_preload_of_a_prebound_name_is_refused(rewritten, tmp_path):
    port, root, d, _ = rewritten
    source = tmp_path / "interpose.c"
    source.write_text("int BZ2_bzWriteOpen(void) { return 0; }\n")
    preload = cross_library(port, tmp_path, "interpose.so", source)
    argv = output(port, d, "bin/bzip2", ["-c"], preloading([preload]))
    assert outcome(argv, TEXT) == (b"", f"elfvector: bzip2: LD_PRELOAD'ed {preload} would "
                                        "interpose pre-bound symbols (set ELFVECTOR_PRELOAD="
                                        "ignore to run anyway)\n".encode(), 127)
    ignored = outcome(argv, TEXT, {"ELFVECTOR_PRELOAD": "ignore"})
    assert ignored == outcome(stock(port, root, "bin/bzip2", ["-c"]), TEXT)


def test_a_preloaded_malloc_still_interposes(rewritten, tmp_path):
    port, root, d, _ = rewritten
    wrap = cross_library(port, tmp_path, "mallocwrap.so", RETRO / "mallocwrap.c", "-ldl")
    got = outcome(output(port, d, "bin/bzip2", ["-c"], preloading([wrap])), TEXT)
    assert got[1] == b"mallocwrap: malloc was interposed\n"
    assert got == outcome(stock(port, root, "bin/bzip2", ["-c"], preloading([wrap])), TEXT)


def test_every_plt_entry_is_decoded(port, sysroot):
    """Each JUMP_SLOT of the sysroot's programs and libraries has the PLT
    entry that jumps through its word (the closure/<arch>/plt.py decoding),
    and with it the IFUNC stub's and the lazy slots' handling."""
    from elfvector.closure.machine import OPERATION, closure_arch
    from elfvector.elfimage import DT_JMPREL, ElfImage
    DT_PLTGOT = 3
    checked = 0
    for path in [Path(sysroot) / p for p in PROGRAMS] + [
            d / name for d in libdirs(sysroot, port) if d.exists()
            for name in ("libc.so.6", "libsqlite3.so.0", "liblzma.so.5", "libbz2.so.1.0")
            if (d / name).exists()]:
        image = ElfImage(path.read_bytes(), str(path), OPERATION)
        sections = {n: (h.addr, image.bytes_at(h.offset, h.size), h.entsize)
                    for n, h in zip(image.section_names, image.shdrs)
                    if n in (".plt", ".plt.sec", ".plt.got")}
        entries = closure_arch(image).plt.plt_entries(sections, image.dyn(DT_PLTGOT))
        slots = {r.offset for r in image.relas(DT_JMPREL, None)
                 if r.type == image.arch.jump_slot}
        assert slots and slots <= set(entries), path
        checked += len(slots)
    assert checked > 300


def test_relr_lists_of_either_class():
    """The fix-up's RELR lists: words of the class, a bitmap covering 63
    words in ELF64, 31 (of 4 bytes) in ELF32."""
    from elfvector.closure.machine import ClosureArch
    from elfvector.elfstruct import I386 as I386_MACHINE, X86_64
    i386, x86_64 = (ClosureArch(m, None, None, None, 0) for m in (I386_MACHINE, X86_64))
    words = [0x1000, 0x1004, 0x1010, 0x1100, 0x2000] + list(range(0x3000, 0x3400, 4))
    raw = i386.relr_encode(words)
    assert i386.relr_decode(raw) == words and len(raw) % 4 == 0
    entries = [int.from_bytes(raw[k:k + 4], "little") for k in range(0, len(raw), 4)]
    assert 0xFFFFFFFF in entries                # a bitmap of 31 words, all listed
    assert all(e < 1 << 32 for e in entries)
    with pytest.raises(ValueError):
        x86_64.relr_encode(words)
    even = [w for w in words if w % 8 == 0]
    assert x86_64.relr_decode(x86_64.relr_encode(even)) == even


# -- the PLT forms, cross-built ------------------------------------------------------

#: per port: variant -> (the library's flags, the program's).  The cross
#: toolchain's start files have no BTI landing pads: a BTI library is
#: linked without them (ld.so calls its _init indirectly), and the program
#: gets the flags that do not make it a BTI object
PLT_FORMS = {
    "i386": {"plt": (["-fcf-protection=none"],) * 2,
             "ibt": (["-fcf-protection", "-Wl,-z,ibtplt"],) * 2},
    "aarch64": {"plt": (["-mbranch-protection=none"],) * 2,
                "bti": (["-mbranch-protection=standard", "-Wl,-z,force-bti", "-nostartfiles"],
                        ["-mbranch-protection=standard"])},
}


def plt_mnemonics(port, path):
    """The instructions of ``.plt`` (capstone), to tell the forms apart."""
    import capstone
    from elfvector.elfimage import ElfImage
    image = ElfImage(path.read_bytes(), str(path), "vectool --mode=retro")
    _, shdr = image.section(".plt")
    md = capstone.Cs(*{"i386": (capstone.CS_ARCH_X86, capstone.CS_MODE_32),
                       "aarch64": (capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)}[port.name])
    return {i.mnemonic for i in md.disasm(image.bytes_at(shdr.offset, shdr.size), shdr.addr)}


def sysroot_copy(port, sysroot, root):
    """A root holding the sysroot's ld.so and libc only."""
    libdir = root / "lib" / port.triplet
    libdir.mkdir(parents=True)
    source = libdirs(sysroot, port)[0]
    shutil.copy(source / Path(port.interp).name, root / port.interp.lstrip("/"))
    shutil.copy(source / "libc.so.6", libdir / "libc.so.6")


@pytest.mark.parametrize("pie", ["pie", "nopie"])
@pytest.mark.parametrize("form", ["plt", "protected"])
def test_cross_built_plt_forms(port, sysroot, pie, form, tmp_path):
    """A library and a program cross-built here: on i386 PIC (the library,
    a PIE: through %ebx) or not (a non-PIE program's absolute PLT), with
    ``-fcf-protection`` (``.plt.sec``) or not; on AArch64 a library with
    BTI and PAC (``bti c`` PLT entries, its pages guarded: every indirect
    branch into it, the fix-up routine's call included, must land on a
    ``bti c``) or not.  In a root of the sysroot's libc and
    ld.so, rewritten, the program prints what it prints stock, at the
    bases and with the library off its base."""
    variant = sorted(PLT_FORMS[port.name])[form == "plt"] if form == "protected" else "plt"
    lib_flags, prog_flags = PLT_FORMS[port.name][variant]
    root = tmp_path / "root"
    sysroot_copy(port, Path(sysroot), root)
    build = tmp_path / "build"
    build.mkdir()
    cross_build(port, build)
    libdir = root / "usr/lib" / port.triplet
    libdir.mkdir(parents=True)
    run([port.cross_gcc, "-O2", "-fPIC", *lib_flags, "-shared", "-Wl,-soname=libx.so", "-o",
         libdir / "libx.so", build / "x.c"], cwd=build)
    prog = ["-fno-pie", "-no-pie"] if pie == "nopie" else ["-fpie", "-pie"]
    run([port.cross_gcc, "-O2", *prog_flags, *prog, "-o", root / "main", build / "main.c",
         "-L", libdir, "-lx"], cwd=build)
    mnemonics = plt_mnemonics(port, libdir / "libx.so")
    if port.name == "i386":
        sections = run(["readelf", "-SW", root / "main"], cwd=build).stdout
        assert (".plt.sec" in sections) == (variant == "ibt")
    else:
        assert ("bti" in mnemonics) == (variant == "bti")
    result = retro([root / "main"], RetroOptions(outdir=str(tmp_path / "out"),
                                                 addrfile=str(tmp_path / "addrs"), seed=3,
                                                 root=str(root)))
    argv = output(port, tmp_path, "main", [])
    assert outcome(argv) == (b"42 42 9 1 2 8\n", b"", 0)
    program = next(row for row in result.rows if row.output.endswith("/bin/main"))
    assert program.lookups_after < program.lookups_before
    block = blocker(port, tmp_path, base_of(result, "libx.so"))
    moved = output(port, tmp_path, "main", [], preloading([block]))
    assert outcome(moved) == (b"42 42 9 1 2 8\n", b"", 0)


def test_a_static_program_is_refused_in_one_line(port, tmp_path):
    require_programs(port.cross_gcc)
    (tmp_path / "s.c").write_text("int main(void) { return 0; }\n")
    run([port.cross_gcc, "-static", "-o", tmp_path / "s", tmp_path / "s.c"], cwd=tmp_path)
    refused = tool("vectool", "--mode=retro", f"--root={port.cross_root}",
                   f"--outdir={tmp_path / 'out'}", f"--addrfile={tmp_path / 'addrs'}",
                   tmp_path / "s", cwd=tmp_path, check=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert str(tmp_path / "s") in refused.stderr and "Traceback" not in refused.stderr