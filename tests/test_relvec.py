"""relvec: libraries linked at a fixed base lose their relative relocations,
and stay correct wherever ld.so maps them.

Every library is built at BASE with ``-Wl,-Ttext-segment``, rewritten with
:func:`elfvector.relvec.relvec`, and every program run against it must
print exactly what it prints against the same library linked the usual way
(``stock/``).  ``LD_DEBUG=files`` tells where ld.so put each library: its
``base:`` is the load bias, 0 when the library sits at its link address.

On glibc 2.36 ld.so always asks the kernel for the link address (the
"don't honour it under a PIE" rule went with prelink), so a library is
relocated only when its range is taken: by another library at the same
base, loaded first (case c, or an LD_PRELOAD'ed blocker).  The tests force
that case explicitly instead of relying on the program being PIE.
"""

import random
import re
import struct

import capstone
import pytest

from conftest import run
from elfvector.arch import x86_64
from elfvector.elfimage import (DT_RELA, DT_RELACOUNT, DT_RELASZ, R_X86_64_IRELATIVE,
                                R_X86_64_RELATIVE, ElfImage)
from elfvector.errors import ElfvectorError, UnsupportedElfError
from elfvector.patterns import PatternList
from elfvector.relvec import (CODE_SECTION, TABLE_SECTION, AlreadyRelvecError,
                              relr_decode, relr_encode, relvec)
from test_retro import assert_sound

BASE = 0x3F00000000
TABLE_LIB = "librelvec_table.so.1"
EXCLUDED = PatternList(["^relvec_addr_taken$", "^foo_add$"])
NONPIE = (["-fno-pie"], ["-no-pie"])
PIE = ([], [])


# -- helpers ------------------------------------------------------------------

def based_lib(build, source, soname, directory="based", base=BASE):
    """``source`` linked at ``base`` into ``directory``; also stock/ (usual link)."""
    build.stock_lib(source, soname)
    d = build.path / directory
    d.mkdir(exist_ok=True)
    obj = f"{directory}/{soname}.o"
    build.gcc("-fPIC", "-O2", "-c", build.src(source), "-o", obj)
    build.gcc("-shared", f"-Wl,-soname={soname}", f"-Wl,-Ttext-segment={base:#x}",
              "-o", f"{directory}/{soname}", obj)
    return d / soname


def do_relvec(src, dst, incl=PatternList(["."]), excl=EXCLUDED):
    out, report = relvec(src.read_bytes(), str(src), incl, excl)
    dst.write_bytes(out)
    dst.chmod(0o755)
    return report


def program(build, source, output, libs, mode):
    cflags, ldflags = mode
    build.gcc("-O2", *cflags, *ldflags, "-o", output, build.src(source),
              *[f"stock/{lib}" for lib in libs])
    return f"./{output}"


def outcome(result):
    return result.stdout, result.stderr, result.returncode


def load_biases(build, prog, libdir, env=None):
    """soname -> load bias (LD_DEBUG=files ``base:``) for each library loaded."""
    err = build.run(prog, env=dict(env or {}, LD_DEBUG="files"), libdir=libdir).stderr
    found = re.findall(r"file=(\S+) \[0\];  generating link map\n\s*\d+:\s*dynamic: 0x[0-9a-f]+"
                       r"\s+base: 0x([0-9a-f]+)", err)
    return {name: int(bias, 16) for name, bias in found}


def statistics(build, prog, libdir, env=None):
    err = build.run(prog, env=dict(env or {}, LD_DEBUG="statistics"), libdir=libdir).stderr
    return {key: int(re.findall(rf"{key}:\s*(\d+)", err)[-1])
            for key in ("number of relative relocations", "final number of relocations")}


def relacount(path):
    return ElfImage(path.read_bytes(), str(path)).dyn(DT_RELACOUNT)


def first_load_vaddr(build, path):
    text = run(["readelf", "-lW", path], build.path).stdout
    return int(re.search(r"^\s*LOAD\s+0x[0-9a-f]+\s+0x([0-9a-f]+)", text, re.M).group(1), 16)


@pytest.fixture
def libs(build):
    """foo.so.5 and librelvec_table.so.1 at BASE (based/), relvec'd into the build dir."""
    reports = {}
    for source, soname in (("foo.c", "foo.so.5"), ("relvec_table.c", TABLE_LIB)):
        based = based_lib(build, source, soname)
        assert first_load_vaddr(build, based) == BASE
        reports[soname] = do_relvec(based, build.path / soname)
    return reports


# -- the encoding and the routine ---------------------------------------------

@pytest.mark.parametrize("seed", range(20))
def test_relr_round_trip(seed):
    rng = random.Random(seed)
    base = BASE + 0x4000
    words = {base + 8 * rng.randrange(0, rng.choice([10, 70, 200, 5000]))
             for _ in range(rng.randrange(1, 300))}
    table = relr_encode(words)
    assert relr_decode(table) == sorted(words)
    assert all(e & 1 for e in table if e not in words)


def test_relr_sizes():
    run_of = [BASE + 8 * i for i in range(1 + 63 + 37)]
    assert len(relr_encode(run_of)) == 3                  # address, 63-bit map, 37-bit map
    last_bit = relr_encode([BASE, BASE + 8 * 63])
    assert last_bit == [BASE, (1 << 63) | 1]
    assert relr_encode([BASE, BASE + 8 * 64]) == [BASE, BASE + 8 * 64]   # one word too far
    # a bitmap may follow a bitmap: the second covers words 64..126 after BASE
    assert relr_encode([BASE, BASE + 8, BASE + 8 * 65]) == [BASE, 0b11, 0b101]
    with pytest.raises(ValueError):
        relr_encode([BASE + 4])


def test_fixup_routine_encoding():
    at, table, end, word = BASE + 0x7000, BASE + 0x5010, BASE + 0x5040, BASE + 0x3e00
    code = x86_64.relvec_fixup(at, table, end, word)
    assert len(code) == x86_64.RELVEC_FIXUP_SIZE
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    insns = list(md.disasm(code, at))
    assert sum(i.size for i in insns) == len(code)
    assert insns[0].mnemonic == "endbr64" and insns[-1].mnemonic == "ret"

    def rip_target(insn):
        disp = int(re.search(r"rip ([+-] 0x[0-9a-f]+|[+-] \d+)", insn.op_str).group(1)
                   .replace(" ", ""), 0)
        return insn.address + insn.size + disp

    leas = [i for i in insns if i.mnemonic == "lea" and "rip" in i.op_str]
    assert [(i.op_str.split(",")[0], rip_target(i)) for i in leas] == [
        ("rax", at), ("rcx", table), ("rsi", end)]
    load = insns[-2]
    assert load.mnemonic == "mov" and load.op_str.startswith("rax, qword ptr [rip")
    assert rip_target(load) == word
    assert any(i.mnemonic == "movabs" and i.op_str == f"rdx, {at:#x}" for i in insns)
    assert not [i for i in insns if i.mnemonic in ("push", "pop", "call")]


# -- (a) at the base, (b) relocated, (c) two libraries at one base -----------

def test_at_base_in_a_non_pie_program(build, libs):
    prog = program(build, "testmain.c", "main_nopie", ["foo.so.5"], NONPIE)
    expected = build.run(prog, "x", libdir=build.path / "stock")
    got = build.run(prog, "x")
    assert outcome(got) == outcome(expected)
    assert load_biases(build, prog, build.path)["foo.so.5"] == 0
    err = build.run(prog, env={"LD_DEBUG": "files"}).stderr
    assert re.search(r"file=foo\.so\.5 .*\n.*dynamic: 0x0000003f000", err)
    # glibc counts relative relocations only for objects with a load bias,
    # so the library at its base adds nothing either way; the stock library
    # (relocated) adds its RELACOUNT.
    stock = statistics(build, prog, build.path / "stock")
    after = statistics(build, prog, build.path)
    assert (stock["number of relative relocations"] - after["number of relative relocations"]
            == relacount(build.path / "stock" / "foo.so.5"))
    assert relacount(build.path / "foo.so.5") == 0


@pytest.mark.parametrize("bind_now", [False, True])
def test_pie_program_and_relocated_library(build, libs, bind_now):
    """PIE testmain; then the base taken by a preloaded library: the fixup runs."""
    prog = program(build, "testmain.c", "main_pie", ["foo.so.5"], PIE)
    env = {"LD_BIND_NOW": "1"} if bind_now else {}
    expected = build.run(prog, env=env, libdir=build.path / "stock")
    assert outcome(build.run(prog, env=env)) == outcome(expected)
    blocker = based_lib(build, "relvec_table.c", TABLE_LIB, directory="blocker")
    env["LD_PRELOAD"] = str(blocker)
    assert load_biases(build, prog, build.path, env)["foo.so.5"] != 0
    assert outcome(build.run(prog, env=env)) == outcome(expected)
    assert "same &foo_add: yes" in expected.stdout
    before = statistics(build, prog, build.path / "based", env)
    after = statistics(build, prog, build.path, env)
    assert (before["number of relative relocations"] - after["number of relative relocations"]
            == relacount(build.path / "based" / "foo.so.5") == 3)


@pytest.mark.parametrize("mode", ["nopie", "pie"])
@pytest.mark.parametrize("order", [("foo.so.5", TABLE_LIB), (TABLE_LIB, "foo.so.5")])
def test_two_libraries_at_one_base(build, libs, mode, order):
    prog = program(build, "relvec_main.c", "rmain", order, NONPIE if mode == "nopie" else PIE)
    expected = build.run(prog, libdir=build.path / "stock")
    assert expected.returncode == 0 and "a0 a1" in expected.stdout
    got = build.run(prog)
    assert outcome(got) == outcome(expected)
    biases = load_biases(build, prog, build.path)
    first, second = order
    assert biases[first] == 0 and biases[second] != 0, biases
    before = statistics(build, prog, build.path / "based")
    after = statistics(build, prog, build.path)
    assert (before["number of relative relocations"] - after["number of relative relocations"]
            == relacount(build.path / "based" / second))


def test_library_linked_at_zero_is_always_fixed_up(build):
    stock = build.stock_lib("foo.c", "foo.so.5")
    do_relvec(stock / "foo.so.5", build.path / "foo.so.5")
    prog = program(build, "testmain.c", "main_pie", ["foo.so.5"], PIE)
    assert outcome(build.run(prog)) == outcome(build.run(prog, libdir=stock))
    assert load_biases(build, prog, build.path)["foo.so.5"] != 0


# -- soundness ------------------------------------------------------------------

def test_elflint_strip_and_objcopy(build, libs):
    stripped = build.path / "stripped"
    stripped.mkdir()
    for soname in ("foo.so.5", TABLE_LIB):
        assert_sound(build.path / soname, build.path / "based" / soname)
        run(["strip", "-o", f"{soname}.strip", soname], build.path)
        run(["objcopy", f"{soname}.strip", f"stripped/{soname}"], build.path)
        names = run(["readelf", "-SW", f"stripped/{soname}"], build.path).stdout
        assert all(s in names for s in (TABLE_SECTION, CODE_SECTION))
    for order in (("foo.so.5", TABLE_LIB), (TABLE_LIB, "foo.so.5")):
        prog = program(build, "relvec_main.c", "rmain_" + order[0], order, NONPIE)
        expected = build.run(prog, libdir=build.path / "stock")
        assert outcome(build.run(prog, libdir=stripped)) == outcome(expected)
        assert load_biases(build, prog, stripped)[order[1]] != 0


@pytest.mark.parametrize("soname", ["foo.so.5", TABLE_LIB])
def test_file_level_changes(build, libs, soname):
    """Removed words hold their settled values, kept ones are untouched, the
    table lists exactly the removed words, one IRELATIVE runs the routine."""
    old = ElfImage((build.path / "based" / soname).read_bytes(), soname)
    new = ElfImage((build.path / soname).read_bytes(), soname)
    old_relas = old.relas(DT_RELA, DT_RELASZ)
    new_relas = new.relas(DT_RELA, DT_RELASZ)
    _, code = new.section(CODE_SECTION)
    ours = [r for r in new_relas if r.type == R_X86_64_IRELATIVE and r.addend == code.addr]
    kept = [r for r in new_relas if r not in ours]
    removed = [r for r in old_relas if r not in kept]
    assert len(ours) == 1 and len(kept) + len(removed) == len(old_relas)
    # ld.so runs a table's IRELATIVEs last, in order: the fixup before the others
    irelative = [r for r in new_relas if r.type == R_X86_64_IRELATIVE]
    assert irelative[0] == ours[0]
    assert len(irelative) == (2 if soname == TABLE_LIB else 1)
    assert not [r for r in kept if r.type == R_X86_64_RELATIVE]
    assert new.dyn(DT_RELACOUNT) == 0
    syms = old.dynsyms()
    for r in removed:
        expected = r.addend if r.type == R_X86_64_RELATIVE else syms[r.sym].value + r.addend
        assert struct.unpack("<Q", new.read(r.offset, 8))[0] == expected
    for r in kept:
        assert new.read(r.offset, 8) == old.read(r.offset, 8)
    _, table = new.section(TABLE_SECTION)
    raw = new.read(table.addr, table.size)
    assert relr_decode(struct.unpack(f"<{len(raw) // 8}Q", raw)) == sorted(
        r.offset for r in removed)
    assert ours[0].offset == min(r.offset for r in removed)   # a settled word, no GOT
    assert new.read(code.addr, code.size) == x86_64.relvec_fixup(
        code.addr, table.addr, table.addr + table.size, ours[0].offset)
    report = libs[soname]
    assert report.changed and report.rela_before == len(old_relas)
    assert report.rela_after == len(new_relas) == len(kept) + 1
    assert report.relative_settled == sum(r.type == R_X86_64_RELATIVE for r in old_relas)
    assert report.relative_settled + report.symbols_settled == len(removed)
    loads = [(p.vaddr, p.memsz) for p in new.phdrs if p.type == 1]
    assert report.span_after == max(v + m for v, m in loads) - BASE > report.span_before


# -- symbol relocations: inclrel / exclrel ------------------------------------

def relocation_names(build, path):
    text = run(["readelf", "-rW", path], build.path).stdout
    section = text.split("'.rela.plt'")[0]
    return [(line.split()[2], line.split()[4]) for line in section.splitlines()
            if "R_X86_64_" in line and len(line.split()) > 4]


def test_data_library_exclrel_keeps_one_function(build, libs):
    report = libs[TABLE_LIB]
    names = relocation_names(build, TABLE_LIB)
    before = relocation_names(build, f"based/{TABLE_LIB}")
    assert ("R_X86_64_64", "relvec_square") in before
    assert ("R_X86_64_GLOB_DAT", "relvec_square") in before
    assert sorted(n for n in names if n[1].startswith("relvec_")) == [
        ("R_X86_64_64", "relvec_addr_taken"), ("R_X86_64_GLOB_DAT", "relvec_addr_taken"),
        ("R_X86_64_GLOB_DAT", "relvec_words")]                # data: never settled
    assert not [n for n in names if "RELATIVE" in n[0]]
    assert report.symbol_settled == {"relvec_square": 2, "relvec_negate": 2}
    assert ("relvec_addr_taken", "excluded by exclrel") in report.kept_reasons
    assert report.relative_settled >= 100
    prog = program(build, "relvec_main.c", "rmain", ["foo.so.5", TABLE_LIB], NONPIE)
    got = build.run(prog)
    assert outcome(got) == outcome(build.run(prog, libdir=build.path / "stock"))
    assert "same &relvec_addr_taken: yes yes" in got.stdout


def test_settling_a_function_is_symbolic_binding(build):
    """Without the exclusion, a non-PIE program's canonical &f is no longer
    the library's: the documented price of settling symbol relocations."""
    based = based_lib(build, "relvec_table.c", TABLE_LIB)
    based_lib(build, "foo.c", "foo.so.5")
    report = do_relvec(based, build.path / TABLE_LIB, excl=PatternList([]))
    do_relvec(build.path / "based" / "foo.so.5", build.path / "foo.so.5")
    assert report.symbol_settled["relvec_addr_taken"] == 2
    nopie = program(build, "relvec_main.c", "rmain", ["foo.so.5", TABLE_LIB], NONPIE)
    expected = build.run(nopie, libdir=build.path / "stock").stdout
    got = build.run(nopie).stdout
    assert got == expected.replace("same &relvec_addr_taken: yes yes",
                                   "same &relvec_addr_taken: NO NO")
    pie = program(build, "relvec_main.c", "rmain_pie", ["foo.so.5", TABLE_LIB], PIE)
    assert build.run(pie).stdout == expected


def test_no_symbol_patterns_settles_only_relative(build):
    based = based_lib(build, "relvec_table.c", TABLE_LIB)
    _, report = relvec(based.read_bytes(), str(based), None, None)
    assert report.changed and report.symbol_settled == {}
    assert report.relative_settled == sum(
        r.type == R_X86_64_RELATIVE for r in ElfImage(based.read_bytes(), "x").relas(
            DT_RELA, DT_RELASZ))


# -- the relocations really left the file ---------------------------------

def test_settled_words_are_no_longer_written_at_load(build, libs):
    """Overwrite relvec_words[0] in the file with relvec_words[1]'s value.
    Before relvec, ld.so rewrites the word even at the link address; after,
    nothing does at the base, and the fixup adds the bias to it elsewhere."""
    relvecd = ElfImage((build.path / TABLE_LIB).read_bytes(), TABLE_LIB)
    words = [s for s in relvecd.dynsyms() if relvecd.string(s.name) == "relvec_words"][0]
    second = relvecd.read(words.value + 8, 8)        # &"a1" at link time
    corrupted = {}
    for kind, libdir in (("based", build.path / "based"), ("relvec", build.path)):
        data = bytearray((libdir / TABLE_LIB).read_bytes())
        at = ElfImage(bytes(data), TABLE_LIB).offset_of(words.value, 8)
        data[at:at + 8] = second
        d = corrupted[kind] = build.path / f"corrupt_{kind}"
        d.mkdir()
        (d / TABLE_LIB).write_bytes(bytes(data))
        (d / "foo.so.5").write_bytes((libdir / "foo.so.5").read_bytes())
    for order in ((TABLE_LIB, "foo.so.5"), ("foo.so.5", TABLE_LIB)):
        prog = program(build, "relvec_main.c", "rmain_" + order[0], order, NONPIE)
        for kind, d in corrupted.items():
            at_base = load_biases(build, prog, d)[TABLE_LIB] == 0
            assert at_base == (order[0] == TABLE_LIB)
            result = build.run(prog, libdir=d)
            assert result.returncode == 0
            first = result.stdout.splitlines()[4].split()[:2]
            assert first == (["a0", "a1"] if kind == "based" else ["a1", "a1"]), (kind, order)


# -- refusals ------------------------------------------------------------------

def test_twice_is_an_error(build, libs):
    data = (build.path / "foo.so.5").read_bytes()
    with pytest.raises(AlreadyRelvecError) as e:
        relvec(data, "foo.so.5", PatternList(["."]), EXCLUDED)
    assert isinstance(e.value, ElfvectorError)
    assert "already" in str(e.value) and "foo.so.5" in str(e.value)


@pytest.mark.parametrize("mode", [NONPIE, PIE])
def test_programs_are_refused(build, mode):
    build.stock_lib("foo.c", "foo.so.5")
    prog = program(build, "testmain.c", "prog", ["foo.so.5"], mode)
    with pytest.raises(UnsupportedElfError, match="not a shared library"):
        relvec((build.path / prog).read_bytes(), prog, PatternList(["."]), EXCLUDED)


def test_library_without_relative_relocations_is_unchanged(build):
    build.gcc("-fPIC", "-O2", "-c", build.src("relvec_table.c"), "-o", "t.o")
    build.gcc("-shared", "-Wl,-z,pack-relative-relocs", f"-Wl,-Ttext-segment={BASE:#x}",
              "-o", "packed.so", "t.o")
    data = (build.path / "packed.so").read_bytes()
    assert "RELR" in run(["readelf", "-d", "packed.so"], build.path).stdout
    out, report = relvec(data, "packed.so", PatternList(["."]), EXCLUDED)
    assert out is data and not report.changed
    assert "no R_X86_64_RELATIVE" in report.reason and "unchanged" in report.summary()


def test_words_out_of_the_routines_reach_are_refused(build):
    """A .bss of 3 GiB puts the new segments out of %rip-relative reach of
    the words to settle: a clear refusal, not a broken displacement."""
    based = based_lib(build, "relvec_table.c", TABLE_LIB)
    data = bytearray(based.read_bytes())
    phoff, phnum = struct.unpack_from("<Q", data, 0x20)[0], struct.unpack_from("<H", data, 0x38)[0]
    loads = [phoff + 56 * i for i in range(phnum)
             if struct.unpack_from("<I", data, phoff + 56 * i)[0] == 1]
    struct.pack_into("<Q", data, loads[-1] + 40, 3 << 30)              # p_memsz: 3 GiB
    with pytest.raises(UnsupportedElfError, match="more than 2 GiB from the new segments"):
        relvec(bytes(data), TABLE_LIB, PatternList(["."]), EXCLUDED)
