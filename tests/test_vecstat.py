"""vecstat: undefined dynamic functions by frequency, per defining library,
and --emit-vec, a library's vector ordered by use."""

import os
from collections import Counter

import pytest

from conftest import run
from test_bad_input import assert_one_line_error

SMALL_PROGRAM = """\
#include <stdio.h>
#include <stdlib.h>
#include "foo.h"
int main(int argc, char **argv)
{
    char *p = malloc(argc + 8);
    snprintf(p, argc + 8, "%d", foo_add(argc, 2));
    printf("%s %zu\\n", p, foo_len(argv[0]));
    free(p);
    return 0;
}
"""


def report(text):
    """``{header: {name: count}}`` from vecstat's output (headers unindented)."""
    groups, current = {}, None
    for line in text.splitlines():
        if not line.startswith(" "):
            current = groups.setdefault(line, {})
            continue
        count, name = line.split()
        assert name not in current, line
        current[name] = int(count)
    return groups


def group(groups, soname):
    found = [g for header, g in groups.items() if header.split(" ")[0] == soname]
    assert len(found) == 1, list(groups)
    return found[0]


def undefined_functions(path):
    """The undefined FUNC/IFUNC symbols of ``path``, ``name@VERSION``, per readelf."""
    text = run(["readelf", "-W", "--dyn-syms", path], cwd=".").stdout
    names = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[6] == "UND" and fields[3] in ("FUNC", "IFUNC"):
            names.add(fields[7])
    return names


def slot_lines(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.fixture
def progs(build):
    """foo.so.5 and libvers.so.1 linked the usual way, and programs using them."""
    build.stock_lib("foo.c", "foo.so.5", directory=".")
    build.stock_lib("vers.c", "libvers.so.1", directory=".",
                    ldflags=[f"-Wl,--version-script={build.src('vers.vscript')}"])
    for source, library in (("testmain.c", "foo.so.5"), ("vers_main.c", "libvers.so.1"),
                            ("vers_old.c", "libvers.so.1")):
        build.gcc("-O2", "-o", source[:-2], build.src(source), library)
    (build.path / "small.c").write_text(SMALL_PROGRAM)
    build.gcc("-O2", "-o", "small", "small.c", "foo.so.5")
    return build


# -- the statistics ---------------------------------------------------------

def test_real_programs_match_readelf(build):
    files = ["/usr/bin/ls", "/usr/bin/cat", "/usr/bin/sort"]
    result = build.tool("vecstat", *files)
    groups = report(result.stdout)
    assert next(iter(groups)).startswith("libc.so.6 (")     # the most used library first
    libc = group(groups, "libc.so.6")
    assert next(iter(libc.values())) == 3                    # imported by all three
    assert libc[next(n for n in libc if n.startswith("__libc_start_main@"))] == 3
    counts = list(libc.values())
    assert counts == sorted(counts, reverse=True)
    # The counts are exactly readelf's undefined functions, file by file.
    expected = Counter(name for f in files for name in undefined_functions(f))
    got = Counter()
    for g in groups.values():
        got.update(g)
    assert got == expected
    assert "unresolved" not in groups


def test_testdata_programs(progs):
    result = progs.tool("vecstat", "testmain", "vers_main", "vers_old", "small")
    groups = report(result.stdout)
    foo = group(groups, "foo.so.5")
    assert foo == {"foo_add": 2, "foo_len": 2, "foo_hello": 1, "foo_hypot2": 1,
                   "foo_mul": 1, "foo_name": 1, "foo_self": 1, "foo_sum": 1, "foo_twice": 1}
    assert list(foo)[:2] == ["foo_add", "foo_len"]          # ties by name
    assert "foo_counter" not in foo                          # data: not a function
    assert group(groups, "libvers.so.1") == {"sel@V1": 2, "plain@V1": 1, "ver@V1": 1,
                                             "ver@V2": 1}
    libc = group(groups, "libc.so.6")
    assert libc["printf@GLIBC_2.2.5"] == 4
    assert libc["malloc@GLIBC_2.2.5"] == 1
    headers = [h.split(" ")[0] for h in groups]
    assert headers[0] == "libc.so.6"
    assert str(progs.path / "foo.so.5") in next(h for h in groups if h.startswith("foo.so.5"))


def test_skips_what_is_not_a_dynamic_elf_file_and_counts_each_file_once(progs):
    plain = progs.tool("vecstat", "testmain", "small").stdout
    (progs.path / "notes.txt").write_text("not ELF\n")
    (progs.path / "empty").write_bytes(b"")
    (progs.path / "s.c").write_text("int main(void) { return 0; }\n")
    progs.gcc("-static", "-o", "static", "s.c")
    progs.gcc("-c", "s.c", "-o", "s.o")
    os.symlink("testmain", progs.path / "link_to_testmain")
    os.link(progs.path / "small", progs.path / "hardlink_to_small")
    (progs.path / "subdir").mkdir()
    result = progs.tool("vecstat", "notes.txt", "testmain", "empty", "static", "s.o",
                        "link_to_testmain", "subdir", "small", "hardlink_to_small")
    assert result.stdout == plain
    assert result.stderr == ""


def test_unresolved_when_a_library_is_missing(progs):
    result = progs.tool("vecstat", "testmain", env={"LD_LIBRARY_PATH": "/nonexistent"})
    groups = report(result.stdout)
    assert list(groups)[-1] == "unresolved"
    assert groups["unresolved"]["foo_add"] == 1
    assert "foo_hello" in groups["unresolved"]
    assert "printf@GLIBC_2.2.5" in group(groups, "libc.so.6")
    assert "cannot find foo.so.5" in result.stderr


def test_top_limits_each_library(progs):
    groups = report(progs.tool("vecstat", "--top", "2", "testmain", "small").stdout)
    assert group(groups, "foo.so.5") == {"foo_add": 2, "foo_len": 2}
    assert all(len(g) <= 2 for g in groups.values())


def test_output_file(progs):
    expected = progs.tool("vecstat", "testmain").stdout
    result = progs.tool("vecstat", "testmain", "-o", "stats.txt")
    assert result.stdout == ""
    assert (progs.path / "stats.txt").read_text() == expected


def test_whole_usr_bin(build):
    """Every file of /usr/bin at once (the timing is the benchmark's)."""
    files = sorted(os.path.join("/usr/bin", f) for f in os.listdir("/usr/bin"))
    result = build.tool("vecstat", *files)
    groups = report(result.stdout)
    assert next(iter(groups)).startswith("libc.so.6 (")
    assert max(group(groups, "libc.so.6").values()) > 20


# -- --emit-vec ---------------------------------------------------------------

def test_emit_vec_most_used_first(progs):
    result = progs.tool("vecstat", "--emit-vec", "foo.so.5", "testmain", "small")
    assert slot_lines(result.stdout) == [
        "__V_foo_so_5", "foo_add", "foo_len", "foo_hello", "foo_hypot2", "foo_mul",
        "foo_name", "foo_self", "foo_sum", "foo_twice"]
    by_path = progs.tool("vecstat", "testmain", "small", "--emit-vec", "./foo.so.5")
    assert by_path.stdout == result.stdout


def test_emit_vec_top_and_all(progs):
    top = progs.tool("vecstat", "--emit-vec", "foo.so.5", "--top", "3", "testmain", "small")
    assert slot_lines(top.stdout) == ["__V_foo_so_5", "foo_add", "foo_len", "foo_hello"]
    every = progs.tool("vecstat", "--emit-vec", "foo.so.5", "--all", "small")
    assert slot_lines(every.stdout) == [
        "__V_foo_so_5", "foo_add", "foo_len",                   # used
        "foo_hello", "foo_hypot2", "foo_mul", "foo_name", "foo_self", "foo_sum",
        "foo_twice"]                                            # the rest, by name
    assert "foo_counter" not in every.stdout


def test_emit_vec_versions_and_rebuild_with_it(progs):
    result = progs.tool("vecstat", "--emit-vec", "libvers.so.1", "-o", "used.vec",
                        "vers_main", "vers_old")
    assert result.stdout == ""
    text = (progs.path / "used.vec").read_text()
    assert slot_lines(text) == ["__V_libvers_so_1", "sel@@V1", "plain@@V1", "ver@V1", "ver@@V2"]
    every = progs.tool("vecstat", "--emit-vec", "libvers.so.1", "--all", "vers_main")
    assert slot_lines(every.stdout) == [
        "__V_libvers_so_1", "plain@@V1", "sel@@V1", "ver@@V2", "ver@V1"]
    # The emitted .vec is a vector expvec accepts and keeps in that order.
    (progs.path / "old.vec").write_text(text)
    vec = progs.expvec("vers.c", "libvers.so.1", incl="@old.vec", rebuild=True,
                       vscript=progs.src("vers.vscript"), vec="rebuilt.vec")
    assert slot_lines((progs.path / vec).read_text()) == slot_lines(text)


def test_emit_vec_default_excludes(build):
    files = ["/usr/bin/ls", "/usr/bin/cat", "/usr/bin/sort"]
    vec = build.tool("vecstat", "--emit-vec", "libc.so.6", *files).stdout
    names = [line.split("@")[0] for line in slot_lines(vec)[1:]]
    assert slot_lines(vec)[0] == "__V_libc_so_6"
    assert all("@" in line for line in slot_lines(vec)[1:])  # libc is versioned
    assert "malloc" not in names and "free" not in names and "calloc" not in names
    assert any(n.startswith("__libc_start_main") for n in names[:20])
    full = build.tool("vecstat", "--emit-vec", "libc.so.6", "--no-default-excludes", *files)
    assert "malloc@@GLIBC_2.2.5" in slot_lines(full.stdout)
    assert "free@@GLIBC_2.2.5" in slot_lines(full.stdout)


# -- errors -------------------------------------------------------------------

def test_no_usable_file_is_an_error(build):
    (build.path / "a.txt").write_text("text\n")
    (build.path / "b.txt").write_text("more text\n")
    result = build.tool("vecstat", "a.txt", "b.txt", check=False)
    assert result.returncode == 1
    assert result.stderr == "vecstat: no dynamically linked ELF file among the arguments\n"
    result = build.tool("vecstat", "a.txt", check=False)
    assert_one_line_error(result, "a.txt", "not an ELF file")
    result = build.tool("vecstat", "missing", check=False)
    assert_one_line_error(result, "missing", "cannot read")


def test_a_file_given_alone_says_why_it_is_skipped(build):
    """What the seed's filter skips among many files is an error when it is
    the only one, with the precise reason."""
    (build.path / "s.c").write_text("int main(void) { return 0; }\n")
    build.gcc("-static", "-o", "static", "s.c")
    build.gcc("-m32", "-fPIC", "-c", "s.c", "-o", "s32.o")     # no 32-bit libc needed
    run(["ld", "-m", "elf_i386", "-shared", "-o", "lib32.so", "s32.o"], cwd=build.path)
    big_endian = bytearray((build.path / "static").read_bytes())
    big_endian[5] = 2                                       # e_ident[EI_DATA]: ELFDATA2MSB
    big_endian[18:20] = (21).to_bytes(2, "big")             # e_machine: EM_PPC64
    (build.path / "big").write_bytes(bytes(big_endian))
    arm = bytearray((build.path / "lib32.so").read_bytes())
    arm[18:20] = (40).to_bytes(2, "little")                 # e_machine: EM_ARM
    (build.path / "arm.so").write_bytes(bytes(arm))
    (build.path / "dir").mkdir()
    expected = {"static": "not a dynamically linked ELF file (statically linked)",
                "arm.so": "32-bit ELF (ARM): not supported yet",
                "big": "64-bit big-endian ELF (PowerPC64): not supported yet",
                "dir": "not a regular file"}
    for name, reason in expected.items():
        result = build.tool("vecstat", name, check=False)
        assert_one_line_error(result, name, reason)
    # An i386 library is a dynamically linked file vecstat reads: this one
    # imports nothing.
    result = build.tool("vecstat", "lib32.so")
    assert (result.stdout, result.stderr) == ("", "")


def test_emit_vec_errors(progs):
    result = progs.tool("vecstat", "--emit-vec", "libnothere.so.1", "testmain", check=False)
    assert_one_line_error(result, "libnothere.so.1", "cannot find")
    result = progs.tool("vecstat", "--emit-vec", "libvers.so.1", "testmain", check=False)
    assert_one_line_error(result, "libvers.so.1", "no exported function")
    assert not (progs.path / "x.vec").exists()
    result = progs.tool("vecstat", "--emit-vec", "./notthere.so", "-o", "x.vec", "testmain",
                        check=False)
    assert_one_line_error(result, "notthere.so")
    assert not (progs.path / "x.vec").exists()


def test_usage_errors_exit_2(progs):
    for args in (["--all", "testmain"], ["--no-default-excludes", "testmain"],
                 ["--top", "0", "testmain"], []):
        result = progs.tool("vecstat", *args, check=False)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr

