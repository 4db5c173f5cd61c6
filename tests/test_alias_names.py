"""Function names the linker-script language could misread.

expvec reaches each function through a hidden alias defined in a linker
script.  GNU ld reads a bare ``add``, ``feed`` or ``fd`` as a number, and
``$dol`` or ``SECTIONS`` as something else: the slots pointed at 0xadd and
the program crashed.  Here such names go through both paths (expvec +
impvec, retrovec + retroimp) and run against the stock build, and every
function name of libc.so.6 goes through the alias path, each slot's target
checked against the symbol's address by a reader independent of elfvector.
"""

import re
import struct
from pathlib import Path

import pytest

from conftest import run

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
NAMES = ["add", "feed", "bad", "cab", "fd", "fb", "ax", "ah", "other", "$dol", "SECTIONS",
         "ALIGN", "bed", "dab"]
SONAME = "libnumnames.so.1"
RESULT = ("add 5 feed 9 bad 2 cab 20 fd 47 fb 93 ax 36 ah 5 other 111\n"
          "$dol 1001 SECTIONS 2002 ALIGN 3003 bed 7004 dab 500 dab@V1 -6\n")


# -- an independent reader of the export table ---------------------------------

def dynamic_functions(path):
    """``{"name@@VER" or "name@VER" or "name": (address, is IFUNC)}`` and
    ``{name: (address, size)}`` of the defined objects, from readelf."""
    functions, objects = {}, {}
    out = run(["readelf", "--dyn-syms", "-W", path], cwd=".").stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 8 or fields[6] == "UND" or not fields[0][:-1].isdigit():
            continue
        value, size, kind, name = int(fields[1], 16), int(fields[2], 0), fields[3], fields[7]
        if kind in ("FUNC", "IFUNC"):
            functions[name] = (value, kind == "IFUNC")
        elif kind == "OBJECT":
            objects[name.split("@")[0]] = (value, size)
    return functions, objects


def irelative_addends(path):
    out = run(["readelf", "-rW", path], cwd=".").stdout
    return {int(m.group(1), 16): int(m.group(2), 16)
            for m in re.finditer(r"^([0-9a-f]+)\s+\S+\s+R_X86_64_IRELATIVE\s+([0-9a-f]+)",
                                 out, re.M)}


def read_at(data, address, size):
    """``size`` bytes at virtual ``address`` of the ELF64 file ``data``."""
    phoff, = struct.unpack_from("<Q", data, 32)
    phnum, = struct.unpack_from("<H", data, 56)
    for i in range(phnum):
        ptype, _, offset, vaddr, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", data,
                                                                      phoff + 56 * i)
        if ptype == 1 and vaddr <= address and address + size <= vaddr + filesz:
            return data[offset + address - vaddr:offset + address - vaddr + size]
    raise AssertionError(f"{address:#x} is in no PT_LOAD")


def assert_slots_reach_their_functions(path, vec_lines):
    """Slot i of the table must reach the function ``vec_lines[i]`` names:
    its address, or for an IFUNC a ``jmp *GOT(%rip)`` entry whose GOT word
    an IRELATIVE fills from that IFUNC's resolver."""
    data = Path(path).read_bytes()
    functions, objects = dynamic_functions(path)
    table, size = objects[vec_lines[0]]
    slots = vec_lines[1:]
    assert size == 4 * len(slots)
    irelative = irelative_addends(path)
    offsets = struct.unpack(f"<{len(slots)}i", read_at(data, table, size))
    for slot, offset in zip(slots, offsets):
        target = table + offset
        key = slot if "@" in slot else next(
            n for n in (slot, *[k for k in functions if k.startswith(slot + "@@")])
            if n in functions)
        address, is_ifunc = functions[key]
        if not is_ifunc:
            assert target == address, (slot, hex(target), hex(address))
            continue
        code = read_at(data, target, 11)
        pos = 4 if code.startswith(bytes.fromhex("f30f1efa")) else 0
        pos += code[pos] == 0xF2
        assert code[pos:pos + 2] == b"\xff\x25", (slot, code.hex())
        got = target + pos + 6 + struct.unpack_from("<i", code, pos + 2)[0]
        assert irelative[got] == address, slot


def vec_lines(path):
    return [line for line in Path(path).read_text().splitlines()
            if line and not line.startswith("#")]


def same_run(build, program, stock_program, stock_dir):
    got = build.run(program)
    expected = build.run(stock_program, libdir=stock_dir)
    assert (got.returncode, got.stdout, got.stderr) == (
        expected.returncode, expected.stdout, expected.stderr)
    return got


def jump_slots(path):
    out = run(["readelf", "-rW", path], cwd=".").stdout
    return sorted(line.split()[4] for line in out.splitlines() if "R_X86_64_JUMP_SLOT" in line)


# -- names read as numbers, $-names, keywords ------------------------------------

def test_numberlike_names_through_expvec_and_impvec(build):
    vscript = build.src("numnames.vscript")
    vec = build.expvec("numnames.c", SONAME, vscript=vscript)
    assert {line.split("@")[0] for line in vec_lines(build.path / vec)[1:]} == set(NAMES)
    assert_slots_reach_their_functions(build.path / SONAME, vec_lines(build.path / vec))
    stock = build.stock_lib("numnames.c", SONAME, ldflags=[f"-Wl,--version-script={vscript}"])
    prog = build.program("numnames_main.c", "nn_main", [SONAME], [vec])
    got = same_run(build, prog, str(prog) + ".stock", stock)
    assert got.returncode == 0 and got.stdout == RESULT
    # Every default version is called through the vector; dab@V1, which a
    # slot named like the function cannot stand for, by name.
    assert [s for s in jump_slots(prog) if not s.startswith("printf@")] == ["dab@V1"]


def test_numberlike_names_through_retrovec_and_retroimp(build):
    vscript = build.src("numnames.vscript")
    stock = build.stock_lib("numnames.c", SONAME, ldflags=[f"-Wl,--version-script={vscript}"])
    vec = build.path / "nn.vec"
    vec.write_text("\n".join(["__V_libnumnames_so_1", *NAMES, "dab@V1"]) + "\n")
    build.tool("retrovec", "-o", SONAME, vec, stock / SONAME)
    resolved = ["__V_libnumnames_so_1"] + [n if n == "dab@V1" else f"{n}@@{'V2' if n == 'dab' else 'V1'}"
                                           for n in [*NAMES, "dab@V1"]]
    assert_slots_reach_their_functions(build.path / SONAME, resolved)
    build.gcc("-O2", "-o", "nn_main", build.src("numnames_main.c"), f"stock/{SONAME}")
    build.tool("retroimp", "-o", "nn_main.vec", "", vec, "nn_main")
    assert same_run(build, "./nn_main.vec", "./nn_main", stock).stdout == RESULT
    assert [s for s in jump_slots(build.path / "nn_main.vec") if not s.startswith("printf@")] == []
    assert len(jump_slots(build.path / "nn_main")) == len(NAMES) + 2   # printf, dab@V1 too


def test_name_with_a_double_quote_is_refused(build):
    (build.path / "q.s").write_text(
        '\t.text\n\t.globl "say\\"hi"\n\t.type "say\\"hi",@function\n"say\\"hi":\n\tret\n'
        '\t.globl plain\n\t.type plain,@function\nplain:\n\tret\n'
        '\t.section .note.GNU-stack,"",@progbits\n')
    build.gcc("-c", "q.s", "-o", "q.o")
    link = ["gcc", "-shared", "-nostdlib", "-Wl,-soname=libq.so", "-o", "libq.so", "q.o"]
    refused = build.tool("expvec", "--vec", "q.vec", ".", "", "", *link, check=False)
    assert refused.returncode == 1
    assert refused.stderr == ("expvec: libq.so: cannot vector say\"hi: its name contains '\"' "
                              "(leave it out with excl)\n")
    assert not (build.path / "libq.so").exists()
    build.tool("expvec", "--vec", "q.vec", ".", '"', "", *link)     # excl takes it out
    assert vec_lines(build.path / "q.vec") == ["__V_libq_so", "plain"]


# -- every function name of libc.so.6 --------------------------------------------

def libc_functions():
    """``[(name, version, default, is IFUNC)]`` of libc.so.6's exported functions."""
    out = run(["readelf", "--dyn-syms", "-W", LIBC], cwd=".").stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[3] in ("FUNC", "IFUNC") and fields[6] != "UND" \
                and fields[4] in ("GLOBAL", "WEAK") and fields[5] == "DEFAULT":
            name, at, version = re.match(r"([^@]+)(@@?)(.+)", fields[7]).groups()
            found.append((name, version, at == "@@", fields[3] == "IFUNC"))
    return found


def test_every_libc_function_name_through_the_alias_path(build):
    """A library defining every function libc.so.6 exports, at the same
    versions (IFUNCs as IFUNCs), linked by expvec with all of them in its
    vector: each slot must reach its own definition."""
    functions = libc_functions()
    assert len(functions) > 2000
    asm = ['\t.section .note.GNU-stack,"",@progbits', "\t.text"]
    by_version = {}
    for k, (name, version, default, ifunc) in enumerate(functions):
        kind = "gnu_indirect_function" if ifunc else "function"
        body = [f"\tlea __impl_{k - 1 if k else 0}(%rip),%rax"] if ifunc else [f"\tmov ${k},%eax"]
        asm += [f"\t.globl __impl_{k}", f"\t.type __impl_{k},@{kind}", f"__impl_{k}:", *body,
                "\tret", f"\t.symver __impl_{k}, {name}{'@@' if default else '@'}{version}"]
        by_version.setdefault(version, []).append(name)
    (build.path / "sweep.s").write_text("\n".join(asm) + "\n")
    nodes = [f"{v} {{ global: {'; '.join(sorted(set(names)))};{' local: *;' if i == 0 else ''} }};"
             for i, (v, names) in enumerate(sorted(by_version.items()))]
    (build.path / "sweep.map").write_text("\n".join(nodes) + "\n")
    build.gcc("-c", "sweep.s", "-o", "sweep.o")
    build.tool("expvec", "--vec", "sweep.vec", ".", "", "sweep.map",
               "gcc", "-shared", "-nostdlib", "-Wl,-soname=libsweep.so", "-o", "libsweep.so",
               "sweep.o")
    lines = vec_lines(build.path / "sweep.vec")
    assert len(lines) == len(functions) + 1
    assert "memcpy@GLIBC_2.2.5" in lines and "memcpy@@GLIBC_2.14" in lines
    assert_slots_reach_their_functions(build.path / "libsweep.so", lines)


def test_retrovec_every_libc_function(build):
    """retrovec on libc.so.6 itself with every function in the vector (default
    versions by their plain names): each slot reaches the real function."""
    functions = libc_functions()
    plain = ["__V_libc_so_6"] + [n if d else f"{n}@{v}" for n, v, d, _ in functions]
    resolved = ["__V_libc_so_6"] + [f"{n}{'@@' if d else '@'}{v}" for n, v, d, _ in functions]
    (build.path / "libc.vec").write_text("\n".join(plain) + "\n")
    build.tool("retrovec", "-o", "libc.so.6", "libc.vec", LIBC)
    assert_slots_reach_their_functions(build.path / "libc.so.6", resolved)
    assert build.run("/bin/true", libdir=build.path).returncode == 0


def test_names_that_are_not_utf8(build):
    """Symbol names are bytes: caf\\351 (Latin-1) goes through the .vec, both
    paths and the fingerprint unchanged."""
    (build.path / "c.c").write_text('int cafe(int x) __asm__("caf\\351");\n'
                                    "int cafe(int x) { return x + 1; }\n"
                                    "int plain(int x) { return x + 2; }\n")
    (build.path / "cm.c").write_text('#include <stdio.h>\nint cafe(int) __asm__("caf\\351");\n'
                                     "int plain(int);\nint main(void) "
                                     '{ printf("%d %d\\n", cafe(1), plain(1)); return 0; }\n')
    vec = build.expvec(str(build.path / "c.c"), "libcafe.so")
    assert (build.path / vec).read_bytes().endswith(b"\ncaf\xe9\nplain\n")
    stock = build.stock_lib(str(build.path / "c.c"), "libcafe.so")
    prog = build.program(str(build.path / "cm.c"), "cm", ["libcafe.so"], [vec])
    assert same_run(build, prog, str(prog) + ".stock", stock).stdout == "2 3\n"
    assert [s for s in jump_slots(prog) if not s.startswith("printf@")] == []
    (build.path / "r").mkdir()
    build.tool("retrovec", "-o", "r/libcafe.so", vec, stock / "libcafe.so")
    build.tool("retroimp", "-o", "r/cm", "", vec, "cm.stock", env={"LD_LIBRARY_PATH": "r"})
    got = build.run("r/cm", libdir=build.path / "r")
    assert (got.returncode, got.stdout, got.stderr) == (0, "2 3\n", "")
    assert [s for s in jump_slots(build.path / "r/cm") if not s.startswith("printf@")] == []

