"""Bad input: one line naming the file and the reason, a non-zero exit, no
traceback, and no file modified."""

import pytest


def assert_one_line_error(result, *words, status=1):
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]
    return lines[0]


@pytest.fixture
def foo(build):
    return build.expvec("foo.c", "foo.so.5", vscript=build.src("foo.vscript"))


def test_expvec_without_output(build):
    build.gcc("-fPIC", "-c", build.src("foo.c"), "-o", "foo.o")
    result = build.tool("expvec", ".", "", "", "gcc", "-shared", "foo.o", check=False)
    line = assert_one_line_error(result, "-o")
    assert line.startswith("expvec: ")


def test_expvec_bad_regex(build):
    build.gcc("-fPIC", "-c", build.src("foo.c"), "-o", "foo.o")
    result = build.tool("expvec", "foo_( ^bar", "", "", "gcc", "-shared", "-o", "foo.so",
                        "foo.o", check=False)
    assert_one_line_error(result, "incl", "foo_(")
    assert not (build.path / "foo.so").exists()


def test_expvec_missing_pattern_file(build):
    result = build.tool("expvec", "@nowhere.order", "", "", "gcc", "-shared", "-o", "x.so",
                        check=False)
    assert_one_line_error(result, "nowhere.order")


def test_expvec_failing_link_names_output(build):
    result = build.tool("expvec", ".", "", "", "gcc", "-shared", "-o", "foo.so",
                        "missing.o", check=False)
    assert_one_line_error(result, "foo.so", "trial link failed")


def test_expvec_link_output_not_elf(build):
    result = build.tool("expvec", ".", "", "", "bash", "-c", 'echo junk > "$2"', "--",
                        "-o", "foo.so", check=False)
    assert_one_line_error(result, "not an ELF file")


def test_expvec_usage_error_exits_2(build):
    result = build.tool("expvec", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_impvec_malformed_vec(build, foo):
    (build.path / "bad.vec").write_text("hello\nworld\n")
    build.gcc("-c", build.src("testmain.c"), "-o", "testmain.o")
    result = build.tool("impvec", "", "bad.vec", "gcc", "-o", "testmain", "testmain.o",
                        "foo.so.5", check=False)
    assert_one_line_error(result, "bad.vec", "not a .vec file")
    assert not (build.path / "testmain").exists()


@pytest.mark.parametrize("body,reason", [
    ("__V_foo_so_5\nfoo_add\nfoo_add\n", "appears twice"),
    ("__V_foo_so_5\nfoo add\n", "bad function name"),
    ("__V_foo-so\nfoo_add\n", "bad vector name"),
    ("__V_foo_so_5\n# nothing\n", "no slots"),
    ("__V_foo_so_5\n#@layouts 1 x\nfoo_add\n", "#@layouts"),
])
def test_impvec_vec_errors(build, foo, body, reason):
    (build.path / "x.vec").write_text(body)
    build.gcc("-c", build.src("testmain.c"), "-o", "testmain.o")
    result = build.tool("impvec", "", "x.vec", "gcc", "-o", "testmain", "testmain.o",
                        "foo.so.5", check=False)
    assert_one_line_error(result, "x.vec", reason)


def test_impvec_missing_vec_file(build):
    result = build.tool("impvec", "", "gone.vec", "gcc", "-o", "t", "t.o", check=False)
    assert_one_line_error(result, "gone.vec")


def test_impvec_without_output(build, foo):
    build.gcc("-c", build.src("testmain.c"), "-o", "testmain.o")
    result = build.tool("impvec", "", foo, "gcc", "testmain.o", "foo.so.5", check=False)
    assert_one_line_error(result, "-o")


def test_impvec_bad_xclude_regex(build, foo):
    result = build.tool("impvec", "[", foo, "gcc", "-o", "t", "t.o", check=False)
    assert_one_line_error(result, "xclude")


def test_impvec_against_library_without_that_vector(build, foo):
    """A .vec that the library on disk does not carry is caught at build time."""
    build.gcc("-c", build.src("testmain.c"), "-o", "testmain.o")
    (build.path / "other.vec").write_text("__V_foo_so_5\nfoo_mul\nfoo_add\n")
    result = build.tool("impvec", "", "other.vec", "gcc", "-o", "testmain", "testmain.o",
                        "foo.so.5", check=False)
    assert_one_line_error(result, "foo.so.5", "does not export __V_foo_so_5__2_")


def test_final_output_keeps_mode_and_is_replaced_atomically(build, foo):
    """impvec --link writes through a temporary file: an old output survives a failure."""
    build.gcc("-c", build.src("testmain.c"), "-o", "testmain.o")
    (build.path / "testmain").write_text("previous\n")
    result = build.tool("impvec", "--link", "", foo, "gcc", "-o", "testmain", "testmain.o",
                        "foo.so.5", "-lnosuchlib", check=False)
    assert result.returncode == 1
    assert (build.path / "testmain").read_text() == "previous\n"
    assert not [p for p in build.path.iterdir() if p.name.startswith(".elfvector-")]
