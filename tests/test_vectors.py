"""Vector contents: IFUNCs, versions, --rebuild, and the layout check."""

import re
import sys

import pytest

from conftest import BIN, run, symbol_relocations
from elfvector import exportvec


def lines_of(path):
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


def same_as_stock(build, prog, stock):
    """The vectored ``prog`` and ``prog.stock`` (libraries from ``stock``)
    give the same exit status, stdout and stderr; returns the run."""
    got = build.run(prog)
    expected = build.run(str(prog) + ".stock", libdir=stock)
    assert (got.returncode, got.stdout, got.stderr) == \
        (expected.returncode, expected.stdout, expected.stderr)
    return got


def test_ifunc_and_default_version_are_bound_right(build):
    vec = build.expvec("vers.c", "libvers.so.1", vscript=build.src("vers.vscript"))
    assert lines_of(build.path / vec) == [
        "__V_libvers_so_1", "plain@@V1", "sel@@V1", "ver@V1", "ver@@V2"]
    stock = build.stock_lib("vers.c", "libvers.so.1",
                            ldflags=[f"-Wl,--version-script={build.src('vers.vscript')}"])
    prog = build.program("vers_main.c", "vers_main", ["libvers.so.1"], [vec])
    assert same_as_stock(build, prog, stock).stdout == "sel 2001 ver 30 plain 5\n"
    assert not {"sel", "ver", "plain"} & {n.split("@")[0] for n in symbol_relocations(prog)}


def test_explicit_old_version_stays_bound_by_name(build):
    vec = build.expvec("vers.c", "libvers.so.1", vscript=build.src("vers.vscript"))
    stock = build.stock_lib("vers.c", "libvers.so.1",
                            ldflags=[f"-Wl,--version-script={build.src('vers.vscript')}"])
    prog = build.program("vers_old.c", "vers_old", ["libvers.so.1"], [vec])
    assert same_as_stock(build, prog, stock).stdout == "old ver -3 sel 2002\n"
    assert "ver@V1" in symbol_relocations(prog)       # asked for V1: ld.so binds it


def test_rebuild_keeps_old_slots_and_old_programs_run(build):
    vec = build.expvec("foo.c", "foo.so.5", incl="@" + build.src("foo.order"),
                       vscript=build.src("foo.vscript"))
    prog = build.program("testmain.c", "testmain", ["foo.so.5"], [vec])
    before = build.run(prog)
    old = lines_of(build.path / vec)
    (build.path / "old.vec").write_text((build.path / vec).read_text())
    build.expvec("foo.c", "foo.so.5", incl="@old.vec", vscript=build.src("foo.vscript"),
                 cflags=["-DFOO_V2"], rebuild=True)
    new = lines_of(build.path / vec)
    assert new[:len(old)] == old and new[len(old):] == ["foo_extra"]
    assert "#@layouts 9 10" in (build.path / vec).read_text()
    after = build.run(prog)                  # the old program, the new library
    assert (after.returncode, after.stdout, after.stderr) == \
        (before.returncode, before.stdout, before.stderr)


def test_rebuild_without_a_function_names_it_and_keeps_the_library(build):
    vec = build.expvec("foo.c", "foo.so.5", vscript=build.src("foo.vscript"))
    (build.path / "old.vec").write_text((build.path / vec).read_text())
    library = (build.path / "foo.so.5").read_bytes()
    build.gcc("-fPIC", "-DFOO_WITHOUT_MUL", "-c", build.src("foo.c"), "-o", "foo2.o")
    result = build.tool("expvec", "--rebuild", "@old.vec", "", build.src("foo.vscript"),
                        "gcc", "-shared", "-Wl,-soname=foo.so.5", "-o", "foo.so.5", "foo2.o",
                        check=False)
    assert result.returncode == 1
    assert "foo_mul" in result.stderr and "no longer defined" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert (build.path / "foo.so.5").read_bytes() == library


def test_reordered_vector_makes_old_program_refuse_to_start(build):
    vec = build.expvec("foo.c", "foo.so.5", incl="^foo_add$ ^foo_mul$ ^foo_",
                       vscript=build.src("foo.vscript"))
    prog = build.program("testmain.c", "testmain", ["foo.so.5"], [vec])
    assert build.run(prog).returncode == 7
    # Rebuilt without --rebuild, with foo_mul first: slots 0 and 1 swap.
    build.expvec("foo.c", "foo.so.5", incl="^foo_mul$ ^foo_add$ ^foo_",
                 vscript=build.src("foo.vscript"))
    result = build.run(prog)
    assert result.returncode == 127
    assert result.stdout == ""                  # never a wrong result
    assert "__V_foo_so_5__9_" in result.stderr    # names the library's vector
    assert "foo.so.5" in result.stderr or "foo_so_5" in result.stderr


def test_removed_library_vector_is_refused(build):
    vec = build.expvec("foo.c", "foo.so.5", vscript=build.src("foo.vscript"))
    prog = build.program("testmain.c", "testmain", ["foo.so.5"], [vec])
    build.stock_lib("foo.c", "foo.so.5", directory=".")      # no vector at all
    result = build.run(prog)
    assert result.returncode == 127 and result.stdout == ""
    assert "__V_foo_so_5" in result.stderr


def test_version_script_hiding_the_vector_is_an_error(build):
    (build.path / "hide.vscript").write_text("{ global: foo_*; local: *; };\n")
    build.gcc("-fPIC", "-c", build.src("foo.c"), "-o", "foo.o")
    result = build.tool("expvec", ".", "", "hide.vscript", "gcc", "-shared",
                        "-Wl,-soname=foo.so.5", "-o", "foo.so.5", "foo.o", check=False)
    assert result.returncode == 1
    assert "__V_foo_so_5" in result.stderr and "version script" in result.stderr
    assert not (build.path / "foo.so.5").exists()


def test_export_table_needs_no_dynamic_relocation(build):
    build.expvec("foo.c", "foo.so.5", vscript=build.src("foo.vscript"))
    syms = run(["readelf", "--dyn-syms", "-W", "foo.so.5"], build.path).stdout
    table = next(line.split() for line in syms.splitlines() if line.endswith(" __V_foo_so_5"))
    start, size = int(table[1], 16), int(table[2])
    relocs = run(["readelf", "-rW", "foo.so.5"], build.path).stdout
    offsets = [int(line.split()[0], 16) for line in relocs.splitlines()
               if re.match(r"^[0-9a-f]{16} ", line)]
    assert size == 4 * 9 and not [o for o in offsets if start <= o < start + size]
    assert "foo_add" in [line.split()[-1] for line in syms.splitlines() if "FUNC" in line]


def test_impvec_warns_about_a_second_definer(build):
    vec = build.expvec("foo.c", "foo.so.5", vscript=build.src("foo.vscript"))
    (build.path / "dup.c").write_text('const char *foo_name(void) { return "dup"; }\n')
    build.gcc("-fPIC", "-shared", "-Wl,-soname=libdup.so", "-o", "libdup.so", "dup.c")
    build.gcc("-c", build.src("testmain.c"), "-o", "testmain.o")
    result = build.tool("impvec", "--link", "", vec, "gcc", "-o", "testmain", "testmain.o",
                        "-Wl,--no-as-needed", "foo.so.5", "libdup.so")
    assert "impvec: warning: foo_name is also defined by libdup.so" in result.stderr
    assert "foo.so.5's definition" in result.stderr
    assert "from foo.so.5" in build.run("./testmain").stdout     # ld.so would pick foo.so.5 too


def test_named_version_script_gets_an_elfvector_node(build):
    """A distribution-style script (named node, local: *) hides everything it
    does not list; the vector is exported under a version node of its own."""
    (build.path / "named.map").write_text("FOO_5 { global: foo_*; local: *; };\n")
    vec = build.expvec("foo.c", "foo.so.5", vscript="named.map")
    syms = run(["readelf", "--dyn-syms", "-W", "foo.so.5"], build.path).stdout
    assert re.search(r" __V_foo_so_5@@ELFVECTOR$", syms, re.M)
    assert re.search(r" foo_add@@FOO_5$", syms, re.M)
    stock = build.stock_lib("foo.c", "foo.so.5", ldflags=["-Wl,--version-script=named.map"])
    prog = build.program("testmain.c", "testmain", ["foo.so.5"], [vec])
    assert same_as_stock(build, prog, stock).returncode == 7
    assert "__V_foo_so_5__9_" in " ".join(symbol_relocations(prog))


@pytest.mark.parametrize("content,reason", [
    (b"", "--rebuild: no old slot given (want @old.vec)"),
    (b"# only a comment\n", "--rebuild: no old slot given (want @old.vec)"),
    (b"__V_foo_so_5\n\x7fELF\x02\x01\x00\xff\n", "line 2: bad function name"),
    (b"__V_foo_so_5\n#@layouts 0 1\nfoo_add\n", "line 2: #@layouts lengths must be positive"),
])
def test_rebuild_from_a_bad_vec_is_one_line_error(build, content, reason):
    (build.path / "old.vec").write_bytes(content)
    build.gcc("-fPIC", "-c", build.src("foo.c"), "-o", "foo.o")
    result = build.tool("expvec", "--rebuild", "@old.vec", "", "", "gcc", "-shared",
                        "-Wl,-soname=foo.so.5", "-o", "foo.so.5", "foo.o", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(f"expvec: old.vec: {reason}")
    assert result.stderr.count("\n") == 1 and not (build.path / "foo.so.5").exists()


def test_rebuild_reads_the_old_vector_from_a_pipe(build):
    vec = build.expvec("foo.c", "foo.so.5", vscript=build.src("foo.vscript"))
    before = (build.path / vec).read_text()
    result = build.run("bash", "-c", f'exec "$@" --rebuild @<(cat {vec}) "" '
                       f'{build.src("foo.vscript")} gcc -shared -Wl,-soname=foo.so.5 '
                       "-o foo.so.5 foo.pic.o", "bash", sys.executable, BIN / "expvec")
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if not line.startswith("#")] == \
        [line for line in before.splitlines() if not line.startswith("#")]


@pytest.mark.parametrize("flags,reason", [
    (["-nostdlib", "-Wl,-N", "-Wl,--fatal-warnings"],
     "trial link failed: /usr/bin/ld: warning: foo.so.5 has a LOAD segment with RWX permissions"),
    (["-nostdlib", "-Wl,--oformat=binary"], "not an ELF file"),
])
def test_errors_name_the_output_not_a_scratch_file(build, flags, reason):
    """expvec links to scratch files (trial.so, final.so); its errors name
    the user's output instead."""
    (build.path / "t.c").write_text("int t(int x) { return x + 1; }\n")
    build.gcc("-fPIC", "-c", "t.c", "-o", "t.o")
    result = build.tool("expvec", "--vec", "foo.vec", ".", "", "", "gcc", "-shared", *flags,
                        "-Wl,-soname=foo.so.5", "-o", "foo.so.5", "t.o", check=False)
    assert (result.returncode, result.stderr) == (1, f"expvec: foo.so.5: {reason}\n")


def test_vector_only_functions(build):
    """The opt-in (expvec --vector-only) of the seed's "symbols in the export
    vector can be declared local in vscript": the trial link keeps the
    command's own exports, so every function enters the vector, and vscript
    hides all but vo_public from .dynsym in the final link.  impvec'd and retroimp'd programs call
    them through the vector alone; a program not yet vectored cannot."""
    vscript, out = build.src("vonly.vscript"), str(build.path / "libvonly.so.1")
    build.gcc("-fPIC", "-O2", "-c", build.src("vonly.c"), "-o", "vonly.o")
    link = ["gcc", "-shared", "-Wl,-soname=libvonly.so.1", "-o", out, str(build.path / "vonly.o")]
    assert [str(s) for s in exportvec.build(".", "", vscript, link).vector.slots] == ["vo_public"]
    notes = build.tool("expvec", "--vector-only", "-v", "--vec", "vonly.vec", ".", "", vscript,
                       *link).stderr
    assert lines_of(build.path / "vonly.vec") == \
        ["__V_libvonly_so_1", "vo_name", "vo_pick", "vo_public", "vo_square", "vo_twice"]
    assert "expvec: note: 4 functions are in the vector only" in notes
    refused = build.tool("expvec", "--vector-only", ".", "", "", *link, check=False)
    assert (refused.returncode, refused.stdout) == (2, "")
    assert "--vector-only needs a VSCRIPT" in refused.stderr
    syms = run(["readelf", "--dyn-syms", "-W", out], build.path).stdout
    assert [n for n in re.findall(r" (vo_\w+)$", syms, re.M)] == ["vo_public"]
    stock = build.stock_lib("vonly.c", "libvonly.so.1")
    build.gcc("-O2", "-DVIA_POINTER", "-c", build.src("vonly_main.c"), "-o", "vonly_main.o")
    build.gcc("-o", "vonly_main.stock", "vonly_main.o", "stock/libvonly.so.1")
    build.tool("impvec", "--link", "", "vonly.vec", "gcc", "-o", "vonly_main", "vonly_main.o",
               "libvonly.so.1")
    expected = build.run("./vonly_main.stock", libdir=stock)
    got = build.run("./vonly_main")
    assert (got.returncode, got.stdout, got.stderr) == \
        (expected.returncode, expected.stdout, expected.stderr)
    assert got.stdout == "public 2 twice 4 square 9 pick 204 name libvonly via pointer 10\n"
    build.gcc("-O2", "-o", "calls", build.src("vonly_main.c"), "stock/libvonly.so.1")
    build.tool("retroimp", "-o", "calls.vec", "", "vonly.vec", "calls")
    expected = build.run("./calls", libdir=stock)
    got = build.run("./calls.vec")
    assert (got.returncode, got.stdout, got.stderr) == \
        (expected.returncode, expected.stdout, expected.stderr) != (0, "", "")
    not_vectored = build.run("./calls")
    assert not_vectored.returncode == 127 and "undefined symbol: vo_" in not_vectored.stderr
    # retroimp binds calls; a stock program that needs &vo_twice by name
    # cannot load against this library, and retroimp says so.
    build.gcc("-o", "pointer", "vonly_main.o", "stock/libvonly.so.1")
    warned = build.tool("retroimp", "-o", "pointer.vec", "", "vonly.vec", "pointer").stderr
    assert warned == ("retroimp: warning: vo_twice is in a vector only and this file needs "
                      "its address by name: ld.so will not find it\n")
