"""vectool: libraries at fixed bases with vectors, programs against them."""

import os
import re

import pytest

from conftest import run, symbol_relocations
from elfvector import addrfile


class Group:
    """A vectool build directory: addrfile, rpathdir, objects."""

    def __init__(self, build, near=False):
        self.build = build
        self.flags = ["--addrfile=addrs", "--rpathdir=rp"] + (["--near"] if near else [])
        build.gcc("-fPIC", "-O2", "-c", build.src("foo.c"), "-o", "foo.o")
        build.gcc("-fPIC", "-O2", "-c", build.src("bar.c"), "-o", "bar.o")

    def lib(self, *words, check=True):
        return self.build.tool("vectool", "--mode=lib", *self.flags, *words, check=check)

    def foo(self, obj="foo.o", out="foo.so.5", check=True):
        return self.lib("gcc", "-shared", "-Wl,-soname=foo.so.5", "-o", out, obj, check=check)

    def bar(self):
        return self.lib("gcc", "-shared", "-Wl,-soname=libbar.so.1", "-o", "libbar.so.1",
                        "bar.o", "foo.so.5")

    def prog(self, source, output, *libs, pie=False):
        self.build.gcc("-O2", *([] if pie else ["-fno-pie"]), "-c", self.build.src(source),
                       "-o", output + ".o")
        link = ["gcc", *([] if pie else ["-no-pie"]), "-o", output, output + ".o", *libs]
        self.build.tool("vectool", "--mode=prog", *self.flags[1:], *link)
        return self.build.path / output

    def bases(self):
        return {a.soname: a.base for a in addrfile.read(str(self.build.path / "addrs"))}


def assert_vectored(program, prefix, layout):
    """``program`` calls the functions named ``prefix...`` through a vector:
    no relocation names them (foo_counter is data), one names the layout."""
    names = [n.split("@")[0] for n in symbol_relocations(program)]
    assert [n for n in names if n.startswith(prefix) and n != "foo_counter"] == []
    assert [n for n in names if n.startswith(layout)]


def load_address(build, program, soname, env=None):
    """Where ld.so mapped ``soname`` (LD_DEBUG=files: 'base:' of its link map;
    0 at its fixed base), in the environment ``env`` too."""
    err = build.run(program, env=dict(env or {}, LD_DEBUG="files",
                                      LD_LIBRARY_PATH="rp")).stderr
    block = err.split(f"file={soname} [0];  generating link map")[1]
    return int(re.search(r"base: (0x[0-9a-f]+)", block).group(1), 16)


def test_group_builds_at_fixed_bases_and_runs(build):
    group = Group(build)
    group.foo()
    group.bar()
    bases = group.bases()
    assert bases["foo.so.5"] > bases["libbar.so.1"]                       # decreasing
    assert bases["foo.so.5"] - bases["libbar.so.1"] >= 0x200000
    assert os.readlink(build.path / "rp" / "foo.so.5") == str(build.path / "foo.so.5")
    assert (build.path / "rp" / "libbar.so.1.vec").exists()
    headers = run(["readelf", "-lW", "foo.so.5"], build.path).stdout
    assert f"0x{bases['foo.so.5']:016x}" in headers
    prog = group.prog("bar_main.c", "bar_main", "libbar.so.1", "foo.so.5")
    build.gcc("-o", "bar_main.stock", build.src("bar_main.c"), "libbar.so.1", "foo.so.5")
    got = build.run(prog, env={"LD_LIBRARY_PATH": "rp"})
    stock = build.run("./bar_main.stock", env={"LD_LIBRARY_PATH": "rp"})
    assert (got.returncode, got.stdout, got.stderr) == \
        (stock.returncode, stock.stdout, stock.stderr)
    assert got.returncode == 3
    assert_vectored(prog, "bar_", "__V_libbar_so_1__")
    # A non-PIE program gets its libraries at their bases (l_addr 0)...
    assert load_address(build, prog, "foo.so.5") == 0
    # ...and the relocations relvec settled are gone from the file.
    stats = build.run(prog, env={"LD_DEBUG": "statistics", "LD_LIBRARY_PATH": "rp"}).stderr
    assert "number of relative relocations: 0" in stats


def test_rebuild_keeps_base_and_slots(build):
    group = Group(build)
    group.foo()
    first = group.bases()["foo.so.5"]
    old_vec = (build.path / "foo.so.5.vec").read_text().splitlines()
    build.gcc("-fPIC", "-O2", "-DFOO_V2", "-c", build.src("foo.c"), "-o", "foo2.o")
    group.foo("foo2.o")
    assert group.bases()["foo.so.5"] == first
    new_vec = (build.path / "foo.so.5.vec").read_text().splitlines()
    slots = [line for line in old_vec if not line.startswith(("#", "__V_"))]
    assert [line for line in new_vec if not line.startswith(("#", "__V_"))] == slots + ["foo_extra"]


def test_deleted_function_is_an_error_naming_it(build):
    group = Group(build)
    group.foo()
    library = (build.path / "foo.so.5").read_bytes()
    build.gcc("-fPIC", "-DFOO_WITHOUT_MUL", "-c", build.src("foo.c"), "-o", "foo3.o")
    result = group.foo("foo3.o", check=False)
    assert result.returncode == 1 and "foo_mul" in result.stderr
    assert (build.path / "foo.so.5").read_bytes() == library


def test_library_that_outgrew_its_range_is_refused(build):
    group = Group(build)
    group.foo()
    group.bar()
    (build.path / "big.c").write_text("char big_table[8 << 20] = {1};\nint big(void){return 1;}\n")
    build.gcc("-fPIC", "-c", "big.c", "-o", "big.o")
    result = group.lib("gcc", "-shared", "-Wl,-soname=foo.so.5", "-o", "foo.so.5", "foo.o",
                       "big.o", check=False)
    assert result.returncode == 1
    assert "no longer fits" in result.stderr and "delete its line" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_soname_and_output(build):
    group = Group(build)
    no_soname = group.lib("gcc", "-shared", "-o", "x.so", "foo.o", check=False)
    assert no_soname.returncode == 1 and "-soname" in no_soname.stderr
    no_output = group.lib("gcc", "-shared", "-Wl,-soname=x.so", "foo.o", check=False)
    assert no_output.returncode == 2 and "-o OUTPUT" in no_output.stderr   # a usage error
    assert not (build.path / "addrs").exists() or group.bases() == {}


def test_a_soname_no_addrfile_line_can_hold_is_refused(build):
    """A soname with white space (or '#', or not UTF-8) would read back from
    the addrfile as another line: refused in one line, nothing written."""
    refused = Group(build).lib("gcc", "-shared", "-Wl,-soname=lib x.so", "-o", "x.so", "foo.o",
                               check=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "x.so: 'lib x.so' cannot name it in an addrfile" in refused.stderr
    assert "give it another soname" in refused.stderr
    assert not (build.path / "x.so").exists() and not (build.path / "addrs").exists()


def test_variants_must_carry_the_same_vector(build):
    group = Group(build)
    group.foo()
    os.makedirs(build.path / "glibc-hwcaps" / "x86-64-v3")
    group.lib("gcc", "-shared", "-march=x86-64-v3", "-Wl,-soname=foo.so.5",
              "-o", "glibc-hwcaps/x86-64-v3/foo.so.5", "foo.o")
    build.gcc("-fPIC", "-DFOO_V2", "-c", build.src("foo.c"), "-o", "foo2.o")
    result = group.lib("gcc", "-shared", "-Wl,-soname=foo.so.5",
                       "-o", "glibc-hwcaps/x86-64-v3/foo.so.5", "foo2.o", check=False)
    assert result.returncode == 1 and "variant" in result.stderr and "foo_extra" in result.stderr


@pytest.mark.parametrize("near,first_byte", [(True, "e9"), (False, "ff")])
def test_slot_encoding_follows_the_layout(build, near, first_byte):
    """--near bases bind a non-PIE program's slots as jmp rel32 (e9); the
    default region is too far, so they jump through a word, jmp *8(%rip) (ff)."""
    group = Group(build, near=near)
    group.foo()
    assert (group.bases()["foo.so.5"] < 0x40000000) == near
    prog = group.prog("near_main.c", "near_main", "foo.so.5")
    assert build.run(prog, env={"LD_LIBRARY_PATH": "rp"}).stdout == \
        f"foo_add(2, 3) = 5, slot starts with {first_byte}\n"


def test_rpathrm_removes_the_build_directory(build):
    group = Group(build)
    group.foo()
    rp = str(build.path / "rp")
    build.gcc("-o", "prog", build.src("testmain.c"), "foo.so.5", f"-Wl,-rpath,{rp}:$ORIGIN")
    before = run(["readelf", "-dW", "prog"], build.path).stdout
    assert rp in before
    build.tool("vectool", "--mode=rpathrm", "--rpathdir=rp", "prog")
    after = run(["readelf", "-dW", "prog"], build.path).stdout
    assert rp not in after and "$ORIGIN" in after
    assert build.run("./prog", env={"LD_LIBRARY_PATH": ""}).returncode == 7


@pytest.mark.parametrize("pie", [False, True])
def test_pointer_equality_and_output_match_stock(build, pie):
    """relvec must not turn the library's own &f into something else than the program's."""
    group = Group(build)
    group.foo()
    prog = group.prog("testmain.c", "testmain", "foo.so.5", pie=pie)
    stock_dir = build.stock_lib("foo.c", "foo.so.5")
    build.gcc(*([] if pie else ["-no-pie"]), "-o", "testmain.stock", build.src("testmain.c"),
              "stock/foo.so.5")
    got = build.run(prog, "x", env={"LD_LIBRARY_PATH": "rp"})
    stock = build.run("./testmain.stock", "x", libdir=stock_dir)
    assert (got.returncode, got.stdout, got.stderr) == \
        (stock.returncode, stock.stdout, stock.stderr)
    assert "same &foo_add: yes" in got.stdout
    assert_vectored(prog, "foo_", "__V_foo_so_5__")


def test_large_library_keeps_its_base(build):
    """Linux aligns file mappings of 2 MiB or more to 2 MiB and then keeps
    the hint only with 2 MiB free above: vectool leaves that room."""
    group = Group(build)
    group.foo()
    (build.path / "big.c").write_text(
        "static char big[0x240000];\nint big_fn(void) { big[1] = 1; return 2 + big[0x23ffff]; }\n")
    build.gcc("-fPIC", "-O2", "-c", "big.c", "-o", "big.o")
    group.lib("gcc", "-shared", "-Wl,-soname=libbig.so.1", "-o", "libbig.so.1", "big.o")
    (build.path / "m.c").write_text(
        "int foo_add(int, int); int big_fn(void);\n"
        "int main(void) { return foo_add(1, 2) + big_fn(); }\n")
    build.gcc("-O2", "-fno-pie", "-c", "m.c", "-o", "m.o")
    build.tool("vectool", "--mode=prog", "--rpathdir=rp", "gcc", "-no-pie", "-o", "m", "m.o",
               "foo.so.5", "libbig.so.1")
    assert build.run("./m", env={"LD_LIBRARY_PATH": "rp"}).returncode == 5
    assert load_address(build, "./m", "libbig.so.1") == 0
    assert load_address(build, "./m", "foo.so.5") == 0
