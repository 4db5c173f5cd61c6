"""elfvector.closure.resolve: a decision for every relocation of a closure.

The oracle: each program of issue 8, and each small case, is started under
gdb with LD_BIND_NOW=1 and stopped once ld.so has relocated every object,
before the first constructor (constructors rewrite some data: nettle's
table of implementations, gmp's memory functions set by gnutls); every word
the plan settles (Settle, SettleZero, Relative) must hold the value the plan
gives it, at the bases ld.so chose.  Then the rules one at a time, on small
programs built with gcc, and the lookups that remain for the seven programs.
"""

import json
import os
import shutil
import struct
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import TESTDATA, gcc, require_programs
from elfvector.closure.model import (RELA_DYN, RELA_PLT, IrelativeForeign,
                                     IrelativeLocal, Keep, Relative, Settle, SettleZero, Target)
from elfvector.closure.resolve import (CHECK_REASON, RTLD_MALLOC_REASON, ClosureOptions,
                                       plan_closure, program_lookups, read_closure, summarize)
from elfvector.errors import ElfvectorError
from elfvector.ldso import R_X86_64_RELATIVE
from test_ldso import PROGRAMS, debian_program, ldso_report, patch_dynsym_visibility

DT_INIT, DT_INIT_ARRAY, DT_INIT_ARRAYSZ = 12, 25, 27

#: The issue's target: at most 5% of stock lookups remain for these.
FIVE_PERCENT = {"curl", "cmake", "gdb"}
#: What may remain (issue 8, "What remains"); anything else is a failure.
ALLOWED_REASONS = {CHECK_REASON, RTLD_MALLOC_REASON, "excluded", "into the program",
                   "into ld.so", "conflict", "tls", "copy", "unique", "ifunc address", "ld.so"}
#: Issue 8: curl's closure within 10 s, gdb's within 30 s (the whole
#: command, which also writes); resolution must take a fraction of that.
PLAN_SECONDS = {"curl": 5, "gdb": 15}


def plan_of(programs, tmp_path, **options):
    opts = ClosureOptions(outdir=str(tmp_path / "out"), **options)
    closure = read_closure([str(p) for p in programs], opts)
    bases = {path: 0x100000000 * (i + 1) for i, path in enumerate(closure.libraries)}
    checks = {path: (f"__elfvector_check_{i}", 0x1000 * i)
              for i, path in enumerate(closure.libraries)}
    return closure, plan_closure(closure, bases, checks, opts)


# -- the oracle ---------------------------------------------------------------------

def first_constructor(linkmap):
    """(real path, address) of the first function ld.so's _dl_init calls."""
    for obj in reversed(linkmap.initfini()):
        tags = obj.elf.tags
        if obj.is_main:
            continue
        if DT_INIT in tags:
            return obj.path, tags[DT_INIT]
        if tags.get(DT_INIT_ARRAYSZ):
            at = tags[DT_INIT_ARRAY]
            relative = [a for off, rtype, _, a in obj.elf.rela_dyn
                        if off == at and rtype == R_X86_64_RELATIVE]
            return obj.path, relative[0] if relative else \
                struct.unpack("<Q", obj.elf.image.read(at, 8))[0]
    raise AssertionError("no constructor")


def writable_ranges(elf):
    """The address ranges of the writable PT_LOADs of ``elf``."""
    return [(p.vaddr, p.vaddr + p.memsz) for p in elf.image.phdrs if p.type == 1 and p.flags & 2]


def memory_before_init(closure, argv, tmp_path):
    """(bias, {path: [(start, bytes)]}) of the writable segments of every
    object, read by gdb after relocation, before any constructor."""
    require_programs("gdb")
    spec = {elf.path: (elf.base & ~0xFFF, writable_ranges(elf)) for elf in closure.objects}
    spec["@init"] = first_constructor(closure.linkmaps[0])
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    env.update(ORACLE_SPEC=str(tmp_path / "spec.json"), ORACLE_OUT=str(tmp_path / "dump"))
    settings = ["set debuginfod enabled off", "set auto-load off", "set disable-randomization on",
                "set startup-with-shell off", "set environment LD_BIND_NOW=1"]
    proc = subprocess.run(
        ["gdb", "-batch", "-nx", *[a for s in settings for a in ("-iex", s)],
         "-x", str(TESTDATA / "ldso" / "gdb_before_init.py"), "--args", *[str(a) for a in argv]],
        env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and (tmp_path / "dump").exists(), proc.stderr[-2000:]
    data = (tmp_path / "dump").read_bytes()
    bias, memory, i = {}, {}, 0
    while i < len(data):
        length, b, start, size = struct.unpack_from("<HQQQ", data, i)
        path = data[i + 26:i + 26 + length].decode("utf-8", "surrogateescape")
        i += 26 + length
        bias[path] = b
        memory.setdefault(path, []).append((start, data[i:i + size]))
        i += size
    return bias, memory


def word_at(memory, path, address):
    for start, blob in memory[path]:
        if start <= address < start + len(blob):
            return struct.unpack_from("<Q", blob, address - start)[0]
    raise AssertionError(f"{path}: {address:#x} is in no writable segment")


def assert_settled_words_match(closure, plan, argv, tmp_path):
    """Every word the plan settles holds that value in the stock process."""
    bias, memory = memory_before_init(closure, argv, tmp_path)
    checked, wrong = Counter(), []
    for elf, obj in zip(closure.objects, plan.objects):
        tables = {RELA_DYN: elf.rela_dyn, RELA_PLT: elf.rela_plt}
        for (table, n), decision in obj.decisions.items():
            if isinstance(decision, Settle):
                target = decision.target
                expected = bias[closure.objects[target.obj].path] + target.address
            elif isinstance(decision, SettleZero):
                expected = 0
            elif isinstance(decision, Relative):
                expected = bias[elf.path] + decision.address
            else:
                continue
            got = word_at(memory, elf.path, tables[table][n][0])
            checked[type(decision).__name__] += 1
            if got != expected:
                wrong.append((elf.path, table, n, decision, hex(got), hex(expected)))
    assert not wrong, wrong[:10]
    return checked


@pytest.mark.parametrize("program", PROGRAMS)
def test_settled_words_equal_ldso_values(program, tmp_path):
    path = debian_program(program)
    closure, plan = plan_of([path], tmp_path)
    checked = assert_settled_words_match(closure, plan, [path, "--version"], tmp_path)
    assert checked["Settle"] > 300


# -- lookups that remain --------------------------------------------------------------

@pytest.mark.parametrize("program", PROGRAMS)
def test_lookups_that_remain(program, tmp_path):
    """At most 5% of stock for curl, cmake and gdb; for every program only
    what the issue lets remain; planning well within the time budget.  The
    stock figures are ld.so's (LD_DEBUG=statistics, the vDSO's aside)."""
    path = debian_program(program)
    start = time.perf_counter()
    closure, plan = plan_of([path], tmp_path)
    seconds = time.perf_counter() - start
    summaries = summarize(plan, closure)
    stock, remaining, reasons = program_lookups(plan, closure, summaries)[path]
    report = ldso_report([path, "--version"])
    assert stock == report.lookups - report.vdso_lookups
    assert report.relative == sum(s.relative_before for s, elf in zip(summaries, closure.objects)
                                  if not closure.is_ldso(elf))
    assert set(reasons) <= ALLOWED_REASONS, reasons
    assert remaining < stock
    if program in FIVE_PERCENT:
        assert remaining <= 0.05 * stock, (stock, remaining, reasons)
    assert seconds < PLAN_SECONDS.get(program, 5)


def test_every_relocation_has_a_decision(tmp_path):
    path = debian_program("jq")
    closure, plan = plan_of([path], tmp_path)
    for elf, obj in zip(closure.objects, plan.objects):
        assert set(obj.decisions) == {(RELA_DYN, n) for n in range(len(elf.rela_dyn))} | \
            {(RELA_PLT, n) for n in range(len(elf.rela_plt))}


# -- the rules, one at a time -----------------------------------------------------------

def src(name):
    return str(TESTDATA / "ldso" / name)


def shared(tmp, source, soname, *flags):
    gcc("-fPIC", "-O2", "-shared", f"-Wl,-soname={soname}", "-o", soname, src(source), *flags,
        cwd=tmp)
    return Path(tmp) / soname


def program(tmp, source, output, *flags):
    gcc("-O2", "-o", output, src(source), *flags, "-L.", f"-Wl,-rpath,{tmp}", cwd=tmp)
    return Path(tmp) / output


def decisions_of(closure, plan, obj_name, name, table=None):
    """The decisions for the relocations of symbol ``name`` in the object
    whose output is named ``obj_name``."""
    i = next(i for i, o in enumerate(plan.objects) if Path(o.output).name == obj_name)
    elf = closure.objects[i]
    return [d for (t, n), d in plan.objects[i].decisions.items()
            if (table is None or t == table)
            and elf.symbols[(elf.rela_dyn if t == RELA_DYN else elf.rela_plt)[n][2]].name == name]


def decision(closure, plan, obj_name, name, table=None):
    """The decision for the one relocation of ``name`` in ``obj_name``."""
    found = decisions_of(closure, plan, obj_name, name, table)
    assert len(found) == 1, found
    return found[0]


def target(closure, plan, obj_name, symbol):
    """Settle's Target for ``symbol`` defined in the object output as ``obj_name``."""
    i = next(i for i, o in enumerate(plan.objects) if Path(o.output).name == obj_name)
    sym = next(s for s in closure.objects[i].symbols if s.name == symbol and s.defined)
    return Target(i, sym.value)


@pytest.fixture
def interpose(tmp_path):
    shared(tmp_path, "first.c", "libfirst.so")
    shared(tmp_path, "second.c", "libsecond.so")
    return program(tmp_path, "interpose_main.c", "interpose", "-lfirst", "-lsecond")


def test_interposition_and_weak(interpose, tmp_path):
    closure, plan = plan_of([interpose], tmp_path)
    assert decision(closure, plan, "libsecond.so", "twice") == \
        Settle(target(closure, plan, "libfirst.so", "twice"))
    assert decision(closure, plan, "libsecond.so", "weak_first") == \
        Settle(target(closure, plan, "libfirst.so", "weak_first"))
    assert decision(closure, plan, "libfirst.so", "hook") == Keep("into the program")
    assert decision(closure, plan, "interpose", "nowhere") == SettleZero()
    assert decision(closure, plan, "interpose", "nowhere_data") == SettleZero()
    assert decision(closure, plan, "libc.so.6", "malloc") == Keep("excluded")
    assert_settled_words_match(closure, plan, [interpose], tmp_path)


def test_checks_and_program_tables(interpose, tmp_path):
    closure, plan = plan_of([interpose], tmp_path)
    prog = plan.objects[0]
    assert prog.is_program and prog.is_pie and prog.interp.endswith("/ld-linux-x86-64.so.2")
    assert prog.expected_objects == ["libfirst.so", "libsecond.so", "libc.so.6"]
    names = {Path(plan.objects[c.obj].output).name for c in prog.checks}
    assert names == {"libfirst.so", "libsecond.so", "libc.so.6"}
    for check in prog.checks:
        i = closure.libraries.index(closure.objects[check.obj].path)
        assert (check.symbol, check.expected) == (f"__elfvector_check_{i}", 0x1000 * i)
    assert {b"twice", b"weak_first", b"nowhere", b"nowhere_data"} <= prog.prebound_names
    assert b"hook" not in prog.prebound_names and b"malloc" not in prog.prebound_names
    second = next(o for o in plan.objects if o.output.endswith("/lib/libsecond.so"))
    assert [Path(plan.objects[c.obj].output).name for c in second.checks] == \
        ["libfirst.so", "libc.so.6"]
    assert second.rpath == str(tmp_path / "out" / "lib") and second.new_base != second.old_base


def test_programs_that_bind_differently_conflict(interpose, tmp_path):
    """libsecond.so's twice and weak_first bind to libfirst.so in one program
    and to libsecond.so itself in the other, which loads it first."""
    other = program(tmp_path, "interpose_main.c", "reversed", "-lsecond", "-lfirst")
    closure, plan = plan_of([interpose, other], tmp_path)
    assert decision(closure, plan, "libsecond.so", "twice") == Keep("conflict")
    assert decision(closure, plan, "libsecond.so", "weak_first") == Keep("conflict")
    assert decision(closure, plan, "reversed", "twice", RELA_PLT) == \
        Settle(target(closure, plan, "libsecond.so", "twice"))
    alone = plan_of([other], tmp_path / "alone")
    assert decision(*alone, "libsecond.so", "twice") == \
        Settle(target(*alone, "libsecond.so", "twice"))


def test_outputs_must_not_collide(interpose, tmp_path):
    """Two programs (or libraries) that would be written to one file: an
    error naming it, before anything is planned."""
    (tmp_path / "other").mkdir()
    shutil.copy(interpose, tmp_path / "other" / "interpose")
    with pytest.raises(ElfvectorError, match="another program would also be .*/bin/interpose"):
        plan_of([interpose, tmp_path / "other" / "interpose"], tmp_path)


def test_exclude_and_keep_interposable(interpose, tmp_path):
    closure, plan = plan_of([interpose], tmp_path, exclude=("^twice$",), keep_interposable=True)
    assert decision(closure, plan, "libsecond.so", "twice") == Keep("excluded")
    assert decision(closure, plan, "libc.so.6", "free") == Keep("excluded")
    libc = next(o for o in plan.objects if o.output.endswith("/libc.so.6"))
    assert Keep("interposable") in libc.decisions.values()


@pytest.mark.parametrize("pie", ["-pie", "-no-pie"])
def test_copy_and_canonical_plt(tmp_path, pie):
    shared(tmp_path, "data.c", "libdata.so")
    flags = ["-fno-pic"] if pie == "-no-pie" else []
    prog = program(tmp_path, "data_main.c", "data", pie, *flags, "-ldata")
    closure, plan = plan_of([prog], tmp_path)
    copy = next(s for s in closure.objects[0].symbols if s.name == "counter")
    assert set(decisions_of(closure, plan, "data", "counter")) == \
        ({Keep("copy"), Relative(copy.value)} if pie == "-pie" else {Keep("copy")})
    assert decision(closure, plan, "libdata.so", "counter") == Keep("into the program")
    own = decision(closure, plan, "libdata.so", "libfunc")
    if pie == "-no-pie":
        assert own == Keep("into the program")              # the canonical PLT entry
        assert decision(closure, plan, "data", "libfunc") == \
            Settle(target(closure, plan, "libdata.so", "libfunc"))
    else:
        assert own == Settle(target(closure, plan, "libdata.so", "libfunc"))
    assert plan.objects[0].is_pie == (pie == "-pie")
    assert_settled_words_match(closure, plan, [prog], tmp_path)


def test_unversioned_reference_binds_oldest_version(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "plain").mkdir()
    gcc("-fPIC", "-shared", "-Wl,-soname=libver.so.1", "-o", "lib/libver.so.1", src("ver.c"),
        f"-Wl,--version-script={src('ver.vscript')}", cwd=tmp_path)
    gcc("-fPIC", "-shared", "-Wl,-soname=libver.so.1", "-o", "plain/libver.so.1",
        src("ver_plain.c"), cwd=tmp_path)
    prog = program(tmp_path, "ver_main.c", "ver_none", "-Lplain", "-l:libver.so.1",
                   f"-Wl,-rpath,{tmp_path}/lib")
    closure, plan = plan_of([prog], tmp_path)
    lib = next(i for i, o in enumerate(plan.objects) if o.output.endswith("libver.so.1"))
    v1 = next(s for s in closure.objects[lib].symbols if s.name == "foo" and s.versym == 0x8002)
    assert decision(closure, plan, "ver_none", "foo") == Settle(Target(lib, v1.value))
    assert_settled_words_match(closure, plan, [prog], tmp_path)


def test_protected(tmp_path):
    """A library's JUMP_SLOT to its own protected function binds to itself
    (settled); its GLOB_DAT to its own protected data stays a lookup."""
    lib = shared(tmp_path, "hook.c", "libhook.so")
    prog = program(tmp_path, "hook_main.c", "hook", "-lhook")
    patch_dynsym_visibility(lib, {"hook", "value"}, 3)
    closure, plan = plan_of([prog], tmp_path)
    assert decision(closure, plan, "libhook.so", "hook") == \
        Settle(target(closure, plan, "libhook.so", "hook"))
    assert decision(closure, plan, "libhook.so", "value") == Keep("protected data")
    assert_settled_words_match(closure, plan, [prog], tmp_path)


def test_ifunc(tmp_path):
    """Its own IFUNC: an IRELATIVE; another library's, through the PLT: an
    IRELATIVE of a stub; its address (GLOB_DAT): a lookup."""
    shared(tmp_path, "ifunc.c", "libpick.so")
    calls = program(tmp_path, "ifunc_main.c", "pick", "-lpick")
    address = program(tmp_path, "ifunc_main.c", "pick_address", "-DADDRESS", "-lpick")
    closure, plan = plan_of([calls, address], tmp_path)
    resolver = target(closure, plan, "libpick.so", "pick")
    assert decision(closure, plan, "libpick.so", "pick") == IrelativeLocal(resolver.address)
    assert decision(closure, plan, "pick", "pick") == IrelativeForeign(resolver)
    assert decision(closure, plan, "pick_address", "pick") == Keep("ifunc address")


def test_summary_counts(interpose, tmp_path):
    closure, plan = plan_of([interpose], tmp_path)
    summaries = summarize(plan, closure)
    startup = closure.startup(closure.linkmaps[0])
    assert sum(s.lookups_before for s in summaries) == startup.lookups
    for s, obj in zip(summaries, plan.objects):
        assert sum(s.decisions.values()) == len(obj.decisions)
        assert s.remaining[CHECK_REASON] == len(obj.checks)
        assert s.lookups_after <= s.lookups_before + len(obj.checks)
    stock, remaining, reasons = program_lookups(plan, closure, summaries)[str(interpose)]
    assert stock == startup.lookups and remaining == sum(reasons.values())
    assert reasons[RTLD_MALLOC_REASON] == 4
