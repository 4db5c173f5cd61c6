"""The closure rewrite (:mod:`elfvector.closure.rewrite`), one object at a time,
from plans made by hand for a two-object closure: a program and libcl.

``testdata/closure/cl_lib.c`` makes every kind of word the rewrite settles
(RELATIVE pointers and tables, R_X86_64_64 against its own functions and
data, JUMP_SLOTs through its own PLT, an IFUNC); ``cl_main.c`` calls it,
reads its data through copy relocations and compares ``&cl_add`` across the
two.  Each variant (PIE or not, IBT PLT or not, ``-z now`` or not) is
rewritten four ways, each settling more:

* ``keep``: every relocation kept, the library only moved to BASE;
* ``relative``: the library's RELATIVE relocations settled;
* ``own``: also its references to its own symbols;
* ``full``: also the program's references into it, with a check.

Every output must run exactly as the stock build does (stdout, stderr,
exit status), at BASE and when a preloaded blocker holds BASE so the
library lands elsewhere and the fix-up routines correct the words.
libc stays outside the closure: references to it stay lookups.
"""

import os
import re
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import TESTDATA
from elfvector.closure import addedwords
from elfvector.closure.x86_64 import ENDBR64
from elfvector.closure.model import (RELA_DYN, RELA_PLT, Check, ClosurePlan, IrelativeForeign,
                                     IrelativeLocal, Keep, ObjectPlan, Relative, Settle,
                                     Target)
from elfvector.closure.rewrite import rewrite_object
from elfvector.closure.symbols import check_symbol_name
from elfvector.elfimage import ElfImage, gnu_hash

SRC = TESTDATA / "closure"
BASE = 0x3000000000
SONAME = "libcl.so.1"
FINGERPRINT = 0x1234ABCD
MODES = ("keep", "relative", "own", "full")
R_64, R_COPY, R_GLOB_DAT, R_JUMP_SLOT, R_RELATIVE, R_IRELATIVE = 1, 5, 6, 7, 8, 37
STT_GNU_IFUNC, PT_LOAD, PF_X, PF_W = 10, 1, 1, 2
DT_RELA, DT_JMPREL = 7, 23
VARIANTS = [f"{pie}-{plt}-{bind}" for pie in ("pie", "nopie") for plt in ("plt", "ibt")
            for bind in ("lazy", "now")]


# -- building ---------------------------------------------------------------------

def sh(argv, cwd, env=None, check=True):
    """Run ``argv`` with only ``env`` added to a clean environment (no
    LD_LIBRARY_PATH unless given)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    full.update(env or {})
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=full, capture_output=True,
                          text=True)
    if check and proc.returncode:
        raise AssertionError(f"{argv} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def flags(variant):
    pie, plt, bind = variant.split("-")
    cflags = ["-fcf-protection"] if plt == "ibt" else []
    ldflags = (["-Wl,-z,ibtplt"] if plt == "ibt" else []) + \
        (["-Wl,-z,now"] if bind == "now" else [])
    prog = ["-fno-pie", "-no-pie"] if pie == "nopie" else []
    return cflags, ldflags, prog


def build_variant(d, variant):
    cflags, ldflags, prog = flags(variant)
    sh(["gcc", "-fPIC", "-O2", *cflags, "-shared", f"-Wl,-soname={SONAME}", *ldflags,
        "-o", SONAME, SRC / "cl_lib.c", "-I", SRC], d)
    sh(["gcc", "-O2", *cflags, *prog, *ldflags, "-o", "prog", SRC / "cl_main.c", "-I", SRC,
        f"./{SONAME}"], d)


def build_helper(d, source, output, *extra):
    sh(["gcc", "-fPIC", "-O2", "-shared", *extra, "-o", output, SRC / source], d)
    return d / output


# -- plans by hand: ld.so's rules for this closure ---------------------------------------

def definitions(image, program):
    """name -> Sym of what ``image`` defines for ld.so; a program's undefined
    function with st_value != 0 (a canonical PLT entry) counts for non-PLT
    references."""
    names = image.symbol_names()
    out = {}
    for i, s in enumerate(image.dynsyms()):
        if i and (s.shndx != 0 or (program and s.value)):
            out.setdefault(names[i], s)
    return out


def decide(r, name, me, pie, program_defs, lib_defs):
    """What ld.so would bind relocation ``r`` of object ``me`` (0 program,
    1 library) to, as a Decision; the program comes first in the scope."""
    if r.type == R_RELATIVE:
        return Settle(Target(1, r.addend)) if me == 1 else Keep("relative")
    if r.type in (R_IRELATIVE, R_COPY):
        return Keep("ifunc" if r.type == R_IRELATIVE else "copy")
    addend = r.addend if r.type == R_64 else 0
    p = program_defs.get(name)
    if p is not None and (p.shndx != 0 or r.type != R_JUMP_SLOT):
        if me == 1:
            return Keep("into the program")
        return Relative(p.value + addend) if pie else Settle(Target(0, p.value + addend))
    s = lib_defs.get(name)
    if s is None:
        return Keep("outside the closure")
    if s.type == STT_GNU_IFUNC:
        if r.type != R_JUMP_SLOT:
            return Keep("ifunc address")
        return IrelativeLocal(s.value) if me == 1 else IrelativeForeign(Target(1, s.value))
    return Settle(Target(1, s.value + addend))


def wanted(mode, me, r, decision):
    if isinstance(decision, Keep) or mode == "keep":
        return False
    if mode == "relative":
        return me == 1 and r.type == R_RELATIVE
    return me == 1 or mode == "full"


def make_plan(d, outdir, mode, fingerprint=FINGERPRINT, base=BASE, soname=SONAME):
    prog, lib = d / "prog", d / soname
    pimg, limg = ElfImage(prog.read_bytes(), str(prog)), ElfImage(lib.read_bytes(), str(lib))
    pie = pimg.type == 3
    pbase = min(p.vaddr for p in pimg.phdrs if p.type == PT_LOAD)
    program = ObjectPlan(str(prog), str(outdir / "prog"), is_program=True, is_pie=pie,
                         old_base=pbase, new_base=pbase, rpath=str(outdir))
    library = ObjectPlan(str(lib), str(outdir / soname), soname=soname, old_base=0,
                         new_base=base, rpath=str(outdir))
    plan = ClosurePlan([program, library])
    defs = definitions(pimg, True), definitions(limg, False)
    prebound = set()
    for me, (obj, img) in enumerate(((program, pimg), (library, limg))):
        names = img.symbol_names()
        for table, tag in ((RELA_DYN, DT_RELA), (RELA_PLT, DT_JMPREL)):
            for k, r in enumerate(img.relas(tag, None)):
                decision = decide(r, names[r.sym], me, pie, *defs)
                if not wanted(mode, me, r, decision):
                    decision = Keep(mode) if not isinstance(decision, Keep) else decision
                elif r.sym and isinstance(decision, (Settle, IrelativeForeign)):
                    prebound.add(names[r.sym].encode())
                obj.decisions[(table, k)] = decision
    if mode == "full":
        name, value = check_symbol_name(lib.read_bytes(), soname, fingerprint)
        library.check_symbol = name
        program.checks = [Check(1, name, plan.new_address(Target(1, value)))]
        program.prebound_names = prebound
        program.expected_objects = [soname, "libc.so.6"]
    return plan


def write_closure(plan, only=None):
    reports = []
    for i, obj in enumerate(plan.objects):
        if only is not None and i != only:
            continue
        data, report = rewrite_object(plan, i, Path(obj.source).read_bytes())
        Path(obj.output).parent.mkdir(exist_ok=True)
        Path(obj.output).write_bytes(data)
        os.chmod(obj.output, 0o755)
        reports.append(report)
    return reports


@pytest.fixture(scope="module", params=VARIANTS)
def variant(request, tmp_path_factory):
    """A built variant with its four rewritten closures: (dir, reports by mode, name)."""
    d = tmp_path_factory.mktemp(request.param)
    build_variant(d, request.param)
    reports = {mode: write_closure(make_plan(d, d / mode, mode)) for mode in MODES}
    return d, reports, request.param


@pytest.fixture(scope="module")
def helpers(tmp_path_factory):
    d = tmp_path_factory.mktemp("helpers")
    return {"blocker": build_helper(d, "cl_blocker.c", "blocker.so",
                                    f"-Wl,-Ttext-segment={BASE:#x}"),
            "hit": build_helper(d, "cl_preload_hit.c", "hit.so"),
            "malloc": build_helper(d, "cl_preload_malloc.c", "malloc.so")}


def stock(d, env=None):
    return sh(["./prog"], d, dict(env or {}, LD_LIBRARY_PATH=str(d)), check=False)


def rewritten(d, mode, env=None):
    return sh([d / mode / "prog"], d, env, check=False)


def outcome(proc):
    return proc.stdout, proc.stderr, proc.returncode


def library_bias(d, mode, env=None, soname=SONAME):
    """The load bias ld.so reports for the library (0: at its link address)."""
    err = rewritten(d, mode, dict(env or {}, LD_DEBUG="files")).stderr
    found = re.search(rf"file=(?:\S*/)?{re.escape(soname)} \[0\];  generating link map\n"
                      rf".*base: 0x([0-9a-f]+)", err)
    return int(found.group(1), 16)


# -- (a)-(d): at the base, behaviour identical ---------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_runs_like_stock_at_its_base(variant, mode):
    d, _, _ = variant
    assert outcome(rewritten(d, mode)) == outcome(stock(d))
    assert outcome(stock(d))[2] == 3
    assert library_bias(d, mode) == 0


def test_each_mode_settles_more(variant):
    d, reports, _ = variant
    lib = {mode: reports[mode][1] for mode in MODES}
    assert lib["keep"].settled == 0 and lib["keep"].relative_after == lib["keep"].relative_before
    assert lib["relative"].relative_after == 0 < lib["relative"].relative_before
    assert lib["relative"].lookups_after == lib["relative"].lookups_before
    assert lib["own"].lookups_after < lib["own"].lookups_before
    prog = reports["full"][0]
    assert prog.checks == 1
    assert prog.lookups_after < reports["own"][0].lookups_after


def test_lookups_fall_at_start_up(variant):
    """ld.so's own count, stock under LD_BIND_NOW=1 against the full rewrite."""
    d, reports, _ = variant

    def lookups(proc):
        return int(re.search(r"final number of relocations: (\d+)", proc.stderr).group(1))
    before = lookups(stock(d, {"LD_DEBUG": "statistics", "LD_BIND_NOW": "1"}))
    after = lookups(rewritten(d, "full", {"LD_DEBUG": "statistics"}))
    removed = sum(r.lookups_before - r.lookups_after for r in reports["full"])
    assert after <= before - removed


# -- (e): not at its base -------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_fixup_corrects_everything_off_its_base(variant, helpers, mode):
    d, _, _ = variant
    env = {"LD_PRELOAD": str(helpers["blocker"])}
    assert library_bias(d, mode, env) != 0
    assert outcome(rewritten(d, mode, env)) == outcome(stock(d))


def test_two_libraries_with_one_base(variant, tmp_path):
    """The library given the base of the program's other dependency: whichever
    is mapped second is not at its base."""
    d, _, name = variant
    other = build_helper(tmp_path, "cl_blocker.c", "libother.so", "-Wl,-soname=libother.so",
                         f"-Wl,-Ttext-segment={BASE:#x}")
    relinked = tmp_path / "relinked"
    relinked.mkdir()
    cflags, ldflags, prog = flags(name)
    (relinked / SONAME).write_bytes((d / SONAME).read_bytes())
    (relinked / "libother.so").write_bytes(other.read_bytes())
    sh(["gcc", "-O2", *cflags, *prog, *ldflags, "-o", "prog", SRC / "cl_main.c", "-I", SRC,
        "-Wl,--no-as-needed", "./libother.so", f"./{SONAME}"], relinked)
    plan = make_plan(relinked, relinked / "out", "full")
    plan.objects[0].expected_objects.insert(0, "libother.so")
    write_closure(plan)
    (relinked / "out" / "libother.so").write_bytes(other.read_bytes())
    assert library_bias(relinked, "out") != 0
    assert outcome(rewritten(relinked, "out")) == outcome(stock(relinked))


# -- (f): a library that is not the one the program was settled against ----------------------

def test_another_build_of_the_library_is_refused(variant, tmp_path):
    d, _, _ = variant
    out = tmp_path / "out"
    write_closure(make_plan(d, out, "full"))
    write_closure(make_plan(d, out, "full", fingerprint=0x99999999), only=1)
    proc = rewritten(tmp_path, "out")
    name = check_symbol_name((d / SONAME).read_bytes(), SONAME, FINGERPRINT)[0]
    assert proc.returncode == 127
    assert proc.stdout == ""
    assert proc.stderr.strip() == f"{out / 'prog'}: symbol lookup error: {out / 'prog'}: " \
                                  f"undefined symbol: {name}"


# -- (g): preloads ---------------------------------------------------------------------------

def test_preload_of_a_prebound_function_is_refused(variant, helpers):
    d, _, _ = variant
    proc = rewritten(d, "full", {"LD_PRELOAD": str(helpers["hit"])})
    assert (proc.stdout, proc.returncode) == ("", 127)
    assert proc.stderr == (f"elfvector: prog: LD_PRELOAD'ed {helpers['hit']} would interpose "
                           f"pre-bound symbols (set ELFVECTOR_PRELOAD=ignore to run anyway)\n")


def test_preload_refusal_can_be_ignored(variant, helpers):
    d, _, _ = variant
    hit = {"LD_PRELOAD": str(helpers["hit"])}
    ignored = rewritten(d, "full", dict(hit, ELFVECTOR_PRELOAD="ignore"))
    assert outcome(ignored) == outcome(stock(d))     # pre-bound calls are not interposed
    assert rewritten(d, "full", dict(hit, ELFVECTOR_PRELOAD="ignored")).returncode == 127
    assert rewritten(d, "full", dict(hit, XELFVECTOR_PRELOAD="ignore")).returncode == 127


def test_preload_of_names_kept_by_name_runs(variant, helpers):
    d, _, _ = variant
    env = {"LD_PRELOAD": f"{helpers['malloc']}:{helpers['blocker']}"}
    assert outcome(rewritten(d, "full", env)) == outcome(stock(d, env))


# -- (h): what the kernel does --------------------------------------------------------------

def test_no_mapping_writable_and_executable(variant):
    d, _, _ = variant
    env = {"CL_MAPS": "1"}
    proc = rewritten(d, "full", env)
    assert "rwx mappings 0\n" in proc.stdout
    assert outcome(proc) == outcome(stock(d, env))
    for path in (d / "full" / "prog", d / "full" / SONAME):
        image = ElfImage(path.read_bytes(), str(path))
        assert not any(p.flags & PF_W and p.flags & PF_X for p in image.phdrs)


def test_no_more_segments_mmaps_or_mprotects(variant):
    d, reports, _ = variant
    for report in reports["full"]:
        assert report.loads_after == report.loads_before
        assert report.added_load is None

    def calls(proc):
        return sum(int(line.split()[3]) for line in proc.stderr.splitlines()
                   if re.search(r"\b(mmap|mprotect)$", line))
    trace = ["strace", "-f", "-c", "-e", "trace=mmap,mprotect"]
    before = calls(sh([*trace, "./prog"], d, {"LD_LIBRARY_PATH": str(d)}, check=False))
    after = calls(sh([*trace, d / "full" / "prog"], d, check=False))
    assert 0 < after <= before


def test_outputs_pass_elflint(variant):
    d, _, _ = variant
    for mode in MODES:
        for name in ("prog", SONAME):
            proc = sh(["eu-elflint", "--gnu-ld", d / mode / name], d, check=False)
            assert (proc.returncode, proc.stdout.strip()) == (0, "No errors"), proc.stdout


def test_where_the_additions_went(variant):
    """The fix-up and its data in the executable segment's last page, the
    tables in the first PT_LOAD; the check word in the GOT's dead header,
    or past .bss in a page written anyway when the GOT header is live (the
    program's calls into libc stay lazy); no allocated section the
    original lacks (gdb warns about each when it finds the separate debug
    file); the IFUNC stub in the slot's dead lazy tail (classic PLT) or the
    dead IBT .plt."""
    d, reports, _ = variant
    prog, lib = reports["full"]
    for report in (prog, lib):
        assert report.code.startswith("executable segment's last page")
        assert report.tables == "executable segment's last page, first PT_LOAD"
    assert lib.check_words == "1 in the GOT's dead header"
    assert re.fullmatch(r"1 at 0x\w+, past \.bss in its last page, written anyway",
                        prog.check_words)
    for name in ("prog", SONAME):
        before, after = (ElfImage(p.read_bytes(), name) for p in (d / name, d / "full" / name))
        assert {n for n, s in zip(after.section_names, after.shdrs) if s.flags & 2} == \
            {n for n, s in zip(before.section_names, before.shdrs) if s.flags & 2}
    image = ElfImage((d / "full" / "prog").read_bytes(), "prog")
    _, plt = image.section(".plt")
    code = image.read(plt.addr, plt.size)
    stubs = [at for at in range(0, plt.size - 9) if code[at:at + 6] == ENDBR64 + b"\xff\x25"]
    assert len(stubs) == 1                                   # cl_square's


def start_up_lookups(proc):
    """ld.so's lookups at start-up and by exit (LD_DEBUG=statistics)."""
    found = dict(re.findall(r"(final )?number of relocations: (\d+)", proc.stderr))
    return int(found[""]), int(found["final "])


def test_kept_slots_stay_lazy(variant):
    """The JUMP_SLOTs kept by name (here the program's calls into libc,
    outside the closure) keep a DT_JMPREL of their own, renumbered, with
    their lazy PLT code and PLT0: ld.so binds each when it is first called,
    as the stock file does, and every one at start-up under LD_BIND_NOW."""
    d, reports, name = variant
    image = ElfImage((d / "full" / "prog").read_bytes(), "prog")
    lazy = image.relas(DT_JMPREL, None)
    names = image.symbol_names()
    assert lazy and {r.type for r in lazy} == {R_JUMP_SLOT}
    assert not any(names[r.sym].startswith("cl_") for r in lazy)      # settled, or eager
    assert "printf" in {names[r.sym] for r in lazy}
    shipped = start_up_lookups(rewritten(d, "full", {"LD_DEBUG": "statistics"}))
    now = start_up_lookups(rewritten(d, "full", {"LD_DEBUG": "statistics",
                                                 "LD_BIND_NOW": "1"}))
    assert now[0] == now[1] and shipped[1] <= now[1]
    if name.endswith("-lazy"):                       # -z now binds every slot at once
        assert shipped[0] < shipped[1]               # bound when first called
        assert shipped[0] <= now[0] - len(lazy)


def pages_written_anyway(image, added):
    """The pages ld.so writes at start-up besides the ``added`` words: those
    of every other relocation's word, and the page it zeroes after the
    writable segment's file bytes (glibc ``_dl_map_segments``)."""
    pages = {r.offset // 0x1000 for r in image.relas(DT_RELA, None) if r.offset not in added}
    for p in image.phdrs:
        end = p.vaddr + p.filesz
        if p.type == PT_LOAD and p.flags & PF_W and p.memsz > p.filesz and end % 0x1000:
            pages.add(end // 0x1000)
    return pages


def test_libraries_are_opened_without_a_search(variant):
    """The closure's libraries are needed by their paths in the run path's
    directory: ld.so opens each at once, where a search of the run path
    first tries its glibc-hwcaps and legacy hwcap subdirectories (11
    failed openat and newfstatat for the first library, glibc 2.36).
    Names outside the closure (libc here) are still searched."""
    d, _, _ = variant
    trace = sh(["strace", "-f", "-e", "trace=openat,newfstatat", d / "full" / "prog"], d,
               check=False)
    opened = [line for line in trace.stderr.splitlines() if SONAME in line]
    assert len(opened) == 1 and "ENOENT" not in opened[0], opened     # libc is not in it
    image = ElfImage((d / "full" / "prog").read_bytes(), "prog")
    needed = [image.string(v) for v in image.dyn_all(1)]
    assert str(d / "full" / SONAME) in needed and "libc.so.6" in needed


def test_added_words_dirty_no_page_of_their_own(variant):
    """The check words, the own words' entry and the fix-up's IRELATIVE
    word lie on pages ld.so writes anyway: a page written for them alone
    costs a copy-on-write fault and a private page at every start.  The
    IRELATIVE stores into one of them, never into a settled word."""
    d, _, _ = variant
    for mode in ("own", "full"):
        for name in ("prog", SONAME):
            image = ElfImage((d / mode / name).read_bytes(), name)
            relas = image.relas(DT_RELA, None)
            checks = {r.offset for r in relas if r.type == R_GLOB_DAT and
                      image.symbol_names()[r.sym].startswith("__elfvector_")}
            own = {r.offset for r in relas if r.type == R_RELATIVE and r.addend == r.offset}
            fixup = [r for r in relas if r.type == R_IRELATIVE][:1]
            if not fixup or not checks | own:
                continue
            added = checks | own
            assert fixup[0].offset in added, (mode, name)
            written = pages_written_anyway(image, added)
            assert {w // 0x1000 for w in added} <= written, (mode, name)


def test_an_object_left_alone_comes_back_unchanged(variant, tmp_path):
    """ld.so's plan: not moved, every relocation kept, nothing added."""
    d, _, _ = variant
    plan = make_plan(d, tmp_path, "keep", base=0)
    plan.objects[1].rpath = None
    data, report = rewrite_object(plan, 1, (d / SONAME).read_bytes())
    assert data == (d / SONAME).read_bytes() and report.tables == "unchanged"


# -- debuggers --------------------------------------------------------------------------------

def split_debug_file(path, debug_dir):
    """Debian's way: the file stripped, its debug info in
    DIR/.build-id/xx/yyy.debug (where gdb looks), also named by a
    .gnu_debuglink (valgrind looks by build-id only in /usr/lib/debug)."""
    image = ElfImage(path.read_bytes(), str(path))
    _, note = image.section(".note.gnu.build-id")
    build_id = image.bytes_at(note.offset + 16, note.size - 16).hex()
    target = debug_dir / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug"
    target.parent.mkdir(parents=True, exist_ok=True)
    sh(["objcopy", "--only-keep-debug", path, target], path.parent)
    sh(["strip", "--strip-unneeded", path], path.parent)
    sh(["objcopy", f"--add-gnu-debuglink={target}", path], path.parent)
    return target


@pytest.mark.parametrize("words", ["got", "past-bss"])
def test_debuggers_see_through_the_rewrite(tmp_path, monkeypatch, words):
    """gdb finds the separate debug files by build-id and shows a source-level
    backtrace through the moved library, and valgrind, which requires
    .text, .data, .bss ... to have their debug file's sizes, runs the
    program.  No section is added for the check words, in the GOT's dead
    header or past .bss (here forced), so gdb has nothing to warn about, and
    words past .bss do not make .bss grow."""
    if words == "past-bss":
        monkeypatch.setattr(addedwords, "dead_got_words", lambda rw: [])
    sh(["gcc", "-fPIC", "-O2", "-g", "-shared", f"-Wl,-soname={SONAME}", "-o", SONAME,
        SRC / "cl_lib.c", "-I", SRC], tmp_path)
    sh(["gcc", "-O2", "-g", "-o", "prog", SRC / "cl_main.c", "-I", SRC, f"./{SONAME}"],
       tmp_path)
    debug = tmp_path / "debug"
    links = {name: split_debug_file(tmp_path / name, debug) for name in ("prog", SONAME)}
    _, lib = write_closure(make_plan(tmp_path, tmp_path / "out", "full"))
    for name, target in links.items():                   # where valgrind follows the link
        (tmp_path / "out" / target.name).write_bytes(target.read_bytes())
    assert ("past .bss" in lib.check_words) == (words == "past-bss")
    gdb = sh(["gdb", "-q", "-batch", "-iex", f"set debug-file-directory {debug}", "-ex",
              "set breakpoint pending on", "-ex", "break cl_add", "-ex", "run", "-ex", "bt",
              tmp_path / "out" / "prog"], tmp_path, check=False)
    frames = [line for line in gdb.stdout.splitlines() if line.startswith("#")]
    expected = ["cl_add", "cl_twice", "cl_thrice", "main"]
    assert [re.search(r"(\w+) \(.*\) at .*cl_(lib|main)\.c:\d+$", f).group(1)
            for f in frames[:4]] == expected, gdb.stdout
    assert "not found in" not in gdb.stderr, gdb.stderr
    grind = sh(["valgrind", "-q", "--tool=none", tmp_path / "out" / "prog"], tmp_path,
               check=False)
    assert outcome(grind) == outcome(stock(tmp_path))


# -- the check symbol -------------------------------------------------------------------------

def test_check_symbol_extends_the_last_hash_chain(variant):
    d, _, _ = variant
    name, value = check_symbol_name((d / SONAME).read_bytes(), SONAME, FINGERPRINT)
    assert re.fullmatch(r"__elfvector_libcl_so_1_1234abcd(_\d+)?", name)
    assert value == next(p.vaddr for p in ElfImage((d / SONAME).read_bytes(), "l").phdrs
                         if p.type == 2)
    out = ElfImage((d / "full" / SONAME).read_bytes(), "l")
    syms, names = out.dynsyms(), out.symbol_names()
    assert names[-1] == name and syms[-1].value == value + BASE
    original = ElfImage((d / SONAME).read_bytes(), "l")
    assert names[:-1] == original.symbol_names()                # nothing renumbered
    nbucket, = struct.unpack("<I", out.read(out.dyn(0x6FFFFEF5), 4))
    assert gnu_hash(name) % nbucket >= gnu_hash(names[-2]) % nbucket


# -- when the executable segment's last page is full ---------------------------------------

def full_page_library(d, source, main, soname, ibt):
    """``source`` as a library whose executable segment leaves less than 64
    bytes of its last page (a filler after .text), and ``main`` using it."""
    cflags = ["-fcf-protection"] if ibt else []
    ldflags = ["-Wl,-z,ibtplt"] if ibt else []

    def room(extra):
        sh(["gcc", "-fPIC", "-O2", *cflags, "-shared", f"-Wl,-soname={soname}", *ldflags,
            "-o", soname, SRC / source, "-I", SRC, *extra], d)
        rx = next(p for p in ElfImage((d / soname).read_bytes(), soname).phdrs
                  if p.type == PT_LOAD and p.flags & PF_X)
        return -(rx.vaddr + rx.filesz) % 0x1000
    (d / "fill.s").write_text(f'.section .text.zz_fill,"ax",@progbits\n'
                              f'.skip {room([]) - 16}, 0xcc\n')
    assert room(["fill.s"]) < 64
    sh(["gcc", "-O2", *cflags, *ldflags, "-o", "prog", SRC / main, "-I", SRC, f"./{soname}"],
       d)


@pytest.mark.parametrize("source, ibt, where", [
    ("cl_plt.c", True, "dead IBT .plt"),
    ("cl_plt.c", False, "threaded through dead PLT bytes"),
    ("cl_lib.c", False, "added PT_LOAD")], ids=["ibt", "lazy-tails", "added"])
def test_fixup_without_room_in_the_executable_page(tmp_path, helpers, source, ibt, where):
    """IBT: the routine goes to the dead lazy .plt; a classic PLT with
    enough entries: threaded through PLT0 and the 10-byte lazy tails; too
    few (cl_lib has 4): one PT_LOAD is added, and the report says why."""
    main = "cl_plt_main.c" if source == "cl_plt.c" else "cl_main.c"
    full_page_library(tmp_path, source, main, SONAME, ibt)
    _, lib = write_closure(make_plan(tmp_path, tmp_path / "out", "own"))
    assert lib.code.startswith(where)
    if where == "added PT_LOAD":
        assert "the fix-up routine" in lib.added_load
        assert lib.loads_after == lib.loads_before + 1
    else:
        assert lib.added_load is None and lib.loads_after == lib.loads_before
    assert outcome(rewritten(tmp_path, "out")) == outcome(stock(tmp_path))
    blocked = {"LD_PRELOAD": str(helpers["blocker"])}
    assert library_bias(tmp_path, "out", blocked) != 0
    assert outcome(rewritten(tmp_path, "out", blocked)) == outcome(stock(tmp_path))
    proc = sh(["eu-elflint", "--gnu-ld", tmp_path / "out" / SONAME], tmp_path, check=False)
    assert proc.stdout.strip() == "No errors"


def with_prebound(d, out, count):
    """The full rewrite, its program given ``count`` more pre-bound names."""
    plan = make_plan(d, out, "full")
    plan.objects[0].prebound_names |= {f"name_{k}".encode() for k in range(count)}
    prog, _ = write_closure(plan)
    return prog


@pytest.mark.parametrize("count, where", [
    (0, r"loaded, executable segment's last page"),
    (2000, r"in the file, a 16384-bit filter in read-only segment's last page"),
    (5000, r"in the file, no room for a filter")], ids=["loaded", "filter", "file"])
def test_where_the_prebound_names_go(variant, helpers, tmp_path, count, where):
    """The pre-bound names cost no added segment: their sorted table is
    loaded where it fits; else it lies in a section of the file that is not
    loaded, mapped only when an unexpected object is loaded, with a Bloom
    filter in the room left; the binary search still finds the preloaded
    function among thousands of names."""
    d, _, _ = variant
    prog = with_prebound(d, tmp_path / "out", count)
    assert prog.prebound == where
    assert prog.loads_after == prog.loads_before and prog.added_load is None
    path = tmp_path / "out" / "prog"
    image = ElfImage(path.read_bytes(), str(path))
    _, table = image.section(".elfvector.prebound")
    assert (table is not None and table.flags == 0) == (count > 0)
    proc = sh(["eu-elflint", "--gnu-ld", path], tmp_path, check=False)
    assert proc.stdout.strip() == "No errors"
    assert outcome(rewritten(tmp_path, "out")) == outcome(stock(d))
    proc = rewritten(tmp_path, "out", {"LD_PRELOAD": str(helpers["hit"])})
    assert proc.returncode == 127 and "would interpose pre-bound symbols" in proc.stderr
    malloc = {"LD_PRELOAD": str(helpers["malloc"])}
    assert outcome(rewritten(tmp_path, "out", malloc)) == outcome(stock(d))


@pytest.mark.parametrize("count, reads", [(0, False), (2000, False), (5000, True)],
                         ids=["loaded", "filter", "file"])
def test_a_preload_that_interposes_nothing_costs_no_system_call(variant, helpers, tmp_path,
                                                               count, reads):
    """A preload that interposes no pre-bound name (a malloc wrapper, a
    library in the way of a base) is told apart in memory, from the loaded
    table or the filter: no open of the program's file (through
    /proc/self/exe, about 26 us here), no mmap or munmap of its table.
    Only without room for a filter is the table read."""
    d, _, _ = variant
    with_prebound(d, tmp_path / "out", count)
    env = {"LD_PRELOAD": f"{helpers['malloc']}:{helpers['blocker']}"}
    trace = sh(["strace", "-f", "-e", "trace=open,openat,munmap", tmp_path / "out" / "prog"],
               tmp_path, env, check=False)
    assert ('open("/proc/self/exe"' in trace.stderr) == reads
    plain = sh(["strace", "-f", "-e", "trace=munmap", tmp_path / "out" / "prog"], tmp_path,
               check=False)
    assert (trace.stderr.count("munmap(") > plain.stderr.count("munmap(")) == reads
    assert outcome(rewritten(tmp_path, "out", env)) == outcome(stock(d, env))


def test_ld_so_run_by_hand_checks_a_preload_in_memory(variant, helpers, tmp_path):
    """``ld.so PROGRAM``: the program's link_map has no name and
    /proc/self/exe is ld.so.  A loaded table still tells a preload that
    interposes nothing (runs) from one that does (refused); a table left
    in the file, without a filter, cannot be read: any preload outside the
    closure is refused, saying so."""
    d, _, _ = variant
    argv = ["/lib64/ld-linux-x86-64.so.2", d / "full" / "prog"]
    assert outcome(sh(argv, d, check=False)) == outcome(stock(d))
    malloc = {"LD_PRELOAD": str(helpers["malloc"])}
    assert outcome(sh(argv, d, malloc, check=False)) == outcome(stock(d))
    proc = sh(argv, d, {"LD_PRELOAD": str(helpers["hit"])}, check=False)
    assert (proc.stdout, proc.returncode) == ("", 127)
    assert "would interpose pre-bound symbols" in proc.stderr
    with_prebound(d, tmp_path / "out", 5000)
    argv[1] = tmp_path / "out" / "prog"
    proc = sh(argv, d, malloc, check=False)
    assert (proc.stdout, proc.returncode) == ("", 127)
    assert proc.stderr == (f"elfvector: prog: LD_PRELOAD'ed {helpers['malloc']}: cannot read "
                           f"the program's pre-bound names to check it (set "
                           f"ELFVECTOR_PRELOAD=ignore to run anyway)\n")
