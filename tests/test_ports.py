"""i386 and AArch64 (issue 10): the common ELF core and the post-link
commands, on Debian's own packages of those architectures.

Each architecture's packages (bzip2, xz-utils, sqlite3 and the libraries
they load, libc6 included) are fetched with ``apt-get download`` into the
session's temporary directory and unpacked with ``dpkg-deb -x`` (never
installed): a sysroot.  i386 programs run natively through the sysroot's
own ``ld-linux.so.2``, AArch64 ones under ``qemu-aarch64 -L SYSROOT``.

* the core reads every ELF file of the sysroot as readelf does: the same
  dynamic symbols and the same relocations (REL with implicit addends on
  i386);
* retrovec adds a vector to every library the three programs load (libc's
  IFUNCs included, through stubs), the table leads each slot to its
  function (checked with readelf, not with our reader), recovervec reads
  it back, eu-elflint finds nothing new, and the programs, unchanged, give
  the same output against the vectored libraries as against the originals;
* retroimp binds the three programs' PLTs through those vectors (found with
  ``--root``, as the architecture's ld.so would in a chroot of the
  sysroot), and they give the same output, standard error and exit code;
* rpathrm edits the run path of a cross-built library and program in
  place, and the program still runs;
* a file of an architecture the commands do not handle (32-bit ARM) is
  refused in one line that says why.

Cross-built libraries and programs in every PLT form are in
``test_ports_post.py``.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import require_programs, run, tool
from ports import (LIBRARIES, PORTS, PROGRAMS, cross_build, cross_run, library, libdirs,
                   port, sysroot, sysroot_of)  # noqa: F401 (fixtures)
from elfvector.elffile import ElfFile
from elfvector.elfimage import ElfImage, read_elf_file


# -- the core reads what readelf reads ------------------------------------

def elf_files(root):
    """Every ELF file of the sysroot (no symbolic links)."""
    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and not path.is_symlink() and path.read_bytes()[:4] == b"\x7fELF":
            yield path


def readelf_dynsym_count(path):
    text = run(["readelf", "-W", "--dyn-syms", path], cwd=".").stdout
    m = re.search(r"Symbol table '\.dynsym' contains (\d+) entries", text)
    return int(m.group(1)) if m else 0


def readelf_relocations(path, prefix):
    """``[(offset, type name)]`` of the dynamic relocations readelf lists
    (RELR words excluded: neither table holds them)."""
    text = run(["readelf", "-rW", path], cwd=".").stdout
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2].startswith(prefix) and re.fullmatch(r"[0-9a-f]+",
                                                                              fields[0]):
            found.append((int(fields[0], 16), fields[2]))
    return sorted(found)


RELOCATION_NAMES = {"i386": {1: "R_386_32", 6: "R_386_GLOB_DAT", 7: "R_386_JUMP_SLOT",
                             8: "R_386_RELATIVE", 42: "R_386_IRELATIVE", 5: "R_386_COPY",
                             14: "R_386_TLS_TPOFF", 35: "R_386_TLS_DTPMOD32",
                             36: "R_386_TLS_DTPOFF32", 37: "R_386_TLS_TPOFF32",
                             41: "R_386_TLS_DESC", 2: "R_386_PC32"},
                    "aarch64": {257: "R_AARCH64_ABS64", 1025: "R_AARCH64_GLOB_DAT",
                                1026: "R_AARCH64_JUMP_SLOT", 1027: "R_AARCH64_RELATIVE",
                                1032: "R_AARCH64_IRELATIVE", 1024: "R_AARCH64_COPY",
                                1028: "R_AARCH64_TLS_DTPMOD64", 1029: "R_AARCH64_TLS_DTPREL64",
                                1030: "R_AARCH64_TLS_TPREL64", 1031: "R_AARCH64_TLSDESC"}}


def test_core_reads_every_file_as_readelf_does(port, sysroot):
    """Symbol counts, relocation offsets and types of every ELF file of the
    sysroot, against readelf; a REL entry's addend is the word it
    relocates (an i386 RELATIVE's: an address inside the file)."""
    files = list(elf_files(sysroot))
    assert len(files) > 30
    names = RELOCATION_NAMES[port.name]
    for path in files:
        image = ElfImage(read_elf_file(path), str(path), "retrovec")
        assert image.arch.name == port.name and ElfFile.from_image(image).arch == port.name
        if image.dynamic is None:
            continue
        assert image.dynsym_count() == readelf_dynsym_count(path), path
        ours = sorted((r.offset, names.get(r.type, str(r.type)))
                      for r in image.dynamic_relocations() + image.relas(23, 2))
        assert ours == readelf_relocations(path, port.relocation_prefix), path
        end = max(p.vaddr + p.memsz for p in image.phdrs if p.type == 1)
        for r in image.dynamic_relocations():
            if r.type == image.arch.relative:
                assert 0 < r.addend < end, (path, r)


# -- retrovec on every library of three programs ----------------------------

def vector_text(lib_path, soname, users):
    """A .vec of the functions (and IFUNCs) of ``lib_path`` that ``users``
    import, as plain names."""
    lib = ElfFile(str(lib_path), operation="retrovec")
    wanted = set()
    for user in users:
        wanted |= {name for name, _ in ElfFile(str(user), operation="retrovec")
                   .imported_function_versions()}
    slots = sorted({s.name for s in lib.exported_functions()
                    if s.name in wanted and s.kind in ("func", "ifunc")})
    assert slots, soname
    name = "__V_" + re.sub(r"[^A-Za-z0-9]", "_", soname)
    return name, "\n".join([name, *slots]) + "\n"


@pytest.fixture(scope="module")
def vectored(port, sysroot, tmp_path_factory):
    """A copy of the sysroot whose LIBRARIES are retrovec'd: (root, {soname: .vec})."""
    work = tmp_path_factory.mktemp(f"vectored-{port.name}")
    root = work / "root"
    shutil.copytree(sysroot, root, symlinks=True)
    users = [Path(sysroot) / p for p in PROGRAMS] + \
        [library(sysroot, port, s) for s in LIBRARIES]
    vecs = {}
    for soname in LIBRARIES:
        original = library(sysroot, port, soname)
        _, text = vector_text(original, soname, users)
        vec = work / f"{soname}.vec"
        vec.write_text(text)
        target = library(root, port, soname).resolve()
        target.unlink()
        tool("retrovec", "-o", target, vec, original, cwd=work)
        vecs[soname] = vec
    return root, vecs


def table_of(path, vec_name):
    """(table address, [int32 offsets]) of ``vec_name``, read with readelf."""
    text = run(["readelf", "-W", "--dyn-syms", path], cwd=".").stdout
    line = next(l for l in text.splitlines() if l.split()[-1:] == [vec_name])
    value, size = int(line.split()[1], 16), int(line.split()[2])
    dump = run(["readelf", "-x", f".rodata.{vec_name}", path], cwd=".").stdout
    # "  0xADDRESS " then 16 bytes in 36 columns (4 words and their spaces), then text
    rows = (re.match(r"\s*0x[0-9a-f]+ (.{36})", line) for line in dump.splitlines())
    raw = bytes.fromhex("".join(m.group(1).replace(" ", "") for m in rows if m))
    assert len(raw) == size
    return value, [int.from_bytes(raw[k:k + 4], "little", signed=True)
                   for k in range(0, size, 4)]


def function_addresses(path, kind="FUNC"):
    """name -> addresses of the functions (``kind`` IFUNC: of the IFUNCs)
    ``path`` defines, from readelf."""
    text = run(["readelf", "-W", "--dyn-syms", path], cwd=".").stdout
    found = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[3] == kind and fields[6] != "UND":
            found.setdefault(fields[7].split("@")[0], set()).add(int(fields[1], 16))
    return found


def section_range(path, name):
    """[start, end) of the section ``name``, from readelf (None: no such section)."""
    for line in run(["readelf", "-SW", path], cwd=".").stdout.splitlines():
        fields = line.replace("[ ", "[").split()
        if len(fields) > 5 and fields[1] == name:
            return int(fields[3], 16), int(fields[3], 16) + int(fields[5], 16)
    return None


def test_vector_tables_lead_to_their_functions(port, sysroot, vectored):
    """Each slot's offset, read by readelf from the written file, plus the
    table's address is the address of the function the slot names, or for
    an IFUNC one of the stubs in ``.elfvector.iplt``, each filled by one
    more IRELATIVE (the stub's decoding is recovervec's test)."""
    root, vecs = vectored
    ifunc_slots = 0
    for soname, vec in vecs.items():
        path = library(root, port, soname)
        lines = vec.read_text().split()
        table, offsets = table_of(path, lines[0])
        functions, ifuncs = function_addresses(path), function_addresses(path, "IFUNC")
        stubs = section_range(path, ".elfvector.iplt")
        assert len(offsets) == len(lines) - 1
        for name, offset in zip(lines[1:], offsets):
            target = (table + offset) % (1 << 64)
            if name in ifuncs and name not in functions:
                assert stubs[0] <= target < stubs[1], (soname, name)
                ifunc_slots += 1
            else:
                assert target in functions[name], (soname, name)
        irelative = f"{port.relocation_prefix}IRELATIVE"
        grown = (sum(t == irelative for _, t in readelf_relocations(path, port.relocation_prefix))
                 - sum(t == irelative for _, t in readelf_relocations(
                     library(sysroot, port, soname), port.relocation_prefix)))
        assert grown == (0 if stubs is None else (stubs[1] - stubs[0]) // {
            "i386": 32, "aarch64": 16}[port.name]), soname
    assert ifunc_slots > 5


def test_recovervec_reads_the_vectors_back(port, vectored):
    """The same slots, a plain name coming back as the default version it
    meant (``name@@VER``) in a versioned library; where libc has aliases
    the layout cannot tell apart (``__mbrlen``, ``mbrlen``; IFUNCs
    ``bcmp``, ``memcmp``), one at the same address (for an IFUNC: with the
    same resolver)."""
    root, vecs = vectored
    for soname, vec in vecs.items():
        path = library(root, port, soname)
        out = tool("recovervec", path, cwd=root).stdout
        recovered = [l.split("@@")[0] for l in out.splitlines() if not l.startswith("#")]
        expected = vec.read_text().split()
        assert "@" not in "".join(recovered) and recovered[0] == expected[0], soname
        functions = function_addresses(path)
        for name, addresses in function_addresses(path, "IFUNC").items():
            functions.setdefault(name, set()).update(addresses)     # resolvers
        assert len(recovered) == len(expected)
        for got, wanted in zip(recovered[1:], expected[1:]):
            assert got == wanted or functions[got] & functions[wanted], (soname, got, wanted)
        if soname != "libc.so.6":
            assert recovered == expected, soname


def elflint(path):
    """eu-elflint's complaints about ``path``, its file name left out.
    elfutils 0.188 calls every R_AARCH64_IRELATIVE an "invalid type": those
    complaints are one, so a new IRELATIVE (an IFUNC stub's, in
    ``.rela.dyn``) is a complaint the library had already (in ``.rela.plt``)."""
    require_programs("eu-elflint")
    result = run(["eu-elflint", "--gnu-ld", path], cwd=".", check=False)
    return {"a relocation: invalid type" if line.endswith(": invalid type") else line
            for line in result.stdout.splitlines() if line != "No errors"}


def test_vectored_libraries_get_no_new_elflint_complaint(port, sysroot, vectored):
    root, vecs = vectored
    for soname in vecs:
        before = elflint(library(sysroot, port, soname))
        assert elflint(library(root, port, soname)) <= before, soname


RUNS = [("bin/bzip2", ["-c"], "compress"), ("bin/bzip2", ["-dc"], "decompress bzip2"),
        ("usr/bin/xz", ["-c", "-T1"], "compress"), ("usr/bin/xz", ["-dc"], "decompress xz"),
        ("usr/bin/sqlite3", [":memory:"], "sql")]
SQL = ("create table t(a integer, b text); "
       "insert into t select value, printf('%08x', value * 2654435761 % 4294967296) "
       "from generate_series(1, 2000); "
       "select count(*), sum(a), min(b), max(b), group_concat(substr(b, 1, 1), '') "
       "from t where a % 7 = 3; select sqlite_version(), upper('ok'), random() * 0;")


def _input(kind, sysroot, port):
    """The standard input of a run: some text, its compressed forms, SQL."""
    text = "".join(f"{i} {i * i} elfvector {port.name}\n" for i in range(20000)).encode()
    if kind == "compress":
        return text
    if kind == "sql":
        return SQL.encode()
    program = "bin/bzip2" if kind == "decompress bzip2" else "usr/bin/xz"
    return _run(port, sysroot, program, ["-c"], text).stdout


def _run(port, root, program, args, data):
    argv = port.command(root, [Path(root) / program, *args], libdirs(root, port))
    result = subprocess.run([str(a) for a in argv], input=data, capture_output=True,
                            timeout=120)
    assert result.returncode == 0, (argv, result.stderr)
    return result


def test_programs_run_the_same_against_vectored_libraries(port, sysroot, vectored):
    """bzip2, xz and sqlite3 of the architecture, unchanged, load the
    retrovec'd copies of all their libraries (libc too) and print what
    they print with the originals."""
    root, _ = vectored
    for program, args, kind in RUNS:
        data = _input(kind, sysroot, port)
        stock = _run(port, sysroot, program, args, data)
        ours = _run(port, root, program, args, data)
        assert ours.stdout == stock.stdout and ours.stderr == stock.stderr, (program, kind)
        assert len(stock.stdout) > 20


def test_the_vectored_libraries_are_the_ones_loaded(port, vectored):
    """The runs above used the vectored files: ld.so reports loading each
    from the vectored root (LD_DEBUG=files works under qemu too)."""
    root, vecs = vectored
    argv = port.command(root, [root / "usr/bin/sqlite3", "-version"], libdirs(root, port))
    result = run(argv, cwd=root, env={"LD_DEBUG": "files"})
    loaded = set(re.findall(r"file=(\S+) \[0\];\s+generating link map", result.stderr))
    assert {"libsqlite3.so.0", "libreadline.so.8", "libz.so.1", "libc.so.6"} <= loaded
    for soname in ("libsqlite3.so.0", "libc.so.6"):
        data = library(root, port, soname).read_bytes()
        assert f"__V_{soname.replace('.', '_')}".encode() in data


def test_retrovec_of_a_cross_built_library(port, tmp_path):
    """An unstripped library (the AArch64 link editor gives every section a
    .symtab section symbol, which must follow the moved tables): vectored,
    it passes eu-elflint as the original does, and its program prints the
    same with it."""
    lib, main = cross_build(port, tmp_path)
    (tmp_path / "x.vec").write_text("__V_libx_so\nnext\ntwice\nplus\nlen\n")
    vecdir = tmp_path / "vec"
    vecdir.mkdir()
    tool("retrovec", "-o", vecdir / "libx.so", "x.vec", lib, cwd=tmp_path)
    assert elflint(vecdir / "libx.so") <= elflint(lib)
    stock = run(cross_run(port, main, lib.parent), cwd=tmp_path).stdout
    assert stock == "42 42 9 1 2 8\n"
    assert run(cross_run(port, main, vecdir), cwd=tmp_path).stdout == stock
    out = tool("recovervec", vecdir / "libx.so", cwd=tmp_path).stdout
    assert [l for l in out.splitlines() if not l.startswith("#")] == \
        ["__V_libx_so", "next", "twice", "plus", "len"]


# -- rpathrm ------------------------------------------------------------------

def test_rpathrm_edits_cross_built_files(port, tmp_path):
    """A library and a program cross-built with their build directory in
    their run paths: vectool --mode=rpathrm takes it out in place, the rest
    stays, and the program still runs."""
    build = tmp_path / "lib"
    lib, main = cross_build(port, tmp_path, rpath=f"{build}:/opt/keep")
    tool("vectool", "--mode=rpathrm", f"--rpathdir={build}", lib, main, cwd=tmp_path)
    for path in (lib, main):
        dynamic = run(["readelf", "-d", path], cwd=tmp_path).stdout
        assert "[/opt/keep]" in dynamic and str(build) not in dynamic, dynamic
    assert run(cross_run(port, main, build), cwd=tmp_path).stdout == "42 42 9 1 2 8\n"


# -- retroimp of the three programs ---------------------------------------------

@pytest.fixture(scope="module")
def retroimped(port, vectored, tmp_path_factory):
    """The PROGRAMS rewritten by retroimp against every vector of the
    vectored sysroot: {program: path}."""
    root, vecs = vectored
    out = tmp_path_factory.mktemp(f"retroimp-{port.name}")
    written = {}
    for program in PROGRAMS:
        written[program] = out / Path(program).name
        tool("retroimp", "--root", root, "-o", written[program], "", *vecs.values(),
             Path(root) / program, cwd=out)
    return written


def test_retroimp_binds_the_programs_through_the_vectors(port, sysroot, retroimped):
    """Each program's JUMP_SLOTs of vectored functions are IRELATIVEs now:
    fewer symbol lookups at start-up."""
    prefix = port.relocation_prefix
    for program, path in retroimped.items():
        before = readelf_relocations(Path(sysroot) / program, prefix)
        after = readelf_relocations(path, prefix)
        moved = sum(t == f"{prefix}IRELATIVE" for _, t in after) - \
            sum(t == f"{prefix}IRELATIVE" for _, t in before)
        slots = sum(t == f"{prefix}JUMP_SLOT" for _, t in before)
        assert moved >= slots // 2 and sum(t == f"{prefix}JUMP_SLOT" for _, t in after) == \
            slots - moved, program


def test_retroimped_programs_run_the_same(port, sysroot, vectored, retroimped):
    """bzip2, xz and sqlite3 through retroimp, against the vectored copies
    of all their libraries, print what the stock programs print against
    the stock libraries: standard output, standard error, exit code."""
    root, _ = vectored
    for program, args, kind in RUNS:
        data = _input(kind, sysroot, port)
        stock = _run(port, sysroot, program, args, data)
        ours = _run(port, root, retroimped[program], args, data)
        assert (ours.returncode, ours.stdout, ours.stderr) == \
            (stock.returncode, stock.stdout, stock.stderr), (program, kind)


def test_retroimped_programs_need_the_vectors(port, sysroot, retroimped):
    """Against the stock libraries (no vector) ld.so refuses to start a
    retroimp'd program, naming the layout symbol it misses."""
    argv = port.command(sysroot, [retroimped["bin/bzip2"], "--help"], libdirs(sysroot, port))
    result = run(argv, cwd=sysroot, check=False)
    assert result.returncode != 0 and "__V_libbz2_so_1_0__" in result.stderr


# -- what is refused, in one line -------------------------------------------

def one_line(result, path, *words):
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{Path(result.args[1]).name}: {path}: "), lines[0]
    for word in words:
        assert word in lines[0], (lines[0], word)
    return lines[0]


def test_another_architecture_is_refused_in_one_line(sysroot_of, tmp_path):
    """A file of an architecture the commands do not know (32-bit ARM: the
    i386 files with e_machine EM_ARM) is refused in one line naming it."""
    port = PORTS["i386"]
    sysroot = sysroot_of(port)
    arm = {}
    for name, original in (("bzip2", Path(sysroot) / "bin/bzip2"),
                           ("libbz2.so.1.0", library(sysroot, port, "libbz2.so.1.0"))):
        data = bytearray(original.read_bytes())
        data[18:20] = (40).to_bytes(2, "little")              # e_machine: EM_ARM
        arm[name] = tmp_path / name
        arm[name].write_bytes(bytes(data))
    vec = tmp_path / "bz.vec"
    vec.write_text("__V_libbz2_so_1_0\nBZ2_bzlibVersion\n")
    label = "32-bit ELF (ARM): not supported"
    one_line(tool("retroimp", "", vec, arm["bzip2"], cwd=tmp_path, check=False), arm["bzip2"],
             label)
    one_line(tool("retrovec", "-o", tmp_path / "out.so", vec, arm["libbz2.so.1.0"],
                  cwd=tmp_path, check=False), arm["libbz2.so.1.0"], label)
    assert not (tmp_path / "out.so").exists()
    from elfvector.errors import UnsupportedElfError
    from elfvector.relvec import relvec
    with pytest.raises(UnsupportedElfError, match="ARM.: not supported"):
        relvec(arm["libbz2.so.1.0"].read_bytes(), str(arm["libbz2.so.1.0"]), None, None)
