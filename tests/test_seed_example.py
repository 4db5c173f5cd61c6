"""The seed's own example, foo.so.5 and testmain, in every link mode.

Each vectored program is run and compared with the same program linked the
usual way: stdout, stderr and exit status must be identical.
"""

import pytest

from conftest import symbol_relocations

MODES = {
    "pie-lazy": ([], []),
    "pie-now": ([], ["-Wl,-z,now"]),
    "nopie-lazy": (["-fno-pie"], ["-no-pie"]),
    "nopie-now": (["-fno-pie"], ["-no-pie", "-Wl,-z,now"]),
    "pie-noplt": (["-fno-plt"], ["-Wl,-z,now"]),
    "ibt": (["-fcf-protection=full"], ["-Wl,-z,now"]),
}


@pytest.fixture
def foo(build):
    vec = build.expvec("foo.c", "foo.so.5", incl="@" + build.src("foo.order"),
                       vscript=build.src("foo.vscript"))
    stock = build.stock_lib("foo.c", "foo.so.5")
    return vec, stock


def assert_same_behaviour(build, program, stock_dir, args=()):
    vectored = build.run(program, *args)
    stock = build.run(str(program) + ".stock", *args, libdir=stock_dir)
    assert vectored.stdout == stock.stdout
    assert vectored.stderr == stock.stderr
    assert vectored.returncode == stock.returncode
    return vectored


@pytest.mark.parametrize("mode", sorted(MODES))
def test_testmain_behaves_like_stock(build, foo, mode):
    vec, stock = foo
    cflags, ldflags = MODES[mode]
    prog = build.program("testmain.c", "testmain", ["foo.so.5"], [vec],
                         cflags=cflags, ldflags=ldflags)
    result = assert_same_behaviour(build, prog, stock, ["vectors"])
    assert "same &foo_add: yes" in result.stdout
    assert result.returncode == 7
    imported = [name.split("@")[0] for name in symbol_relocations(prog)]
    assert not [n for n in imported if n.startswith("foo_") and n != "foo_counter"]
    assert any(n.startswith("__V_foo_so_5__") for n in imported)


def test_seed_command_lines(build, foo):
    """The seed's exact forms: stdout and fd 3, then gcc -c and a plain link;
    the program behaves exactly like the stock one and calls foo.so.5
    through the vector."""
    _, stock = foo
    build.gcc("-fPIC", "-c", build.src("foo.c"), "-o", "foo.o")
    out = build.tool("expvec", "@" + build.src("foo.order"), "", build.src("foo.vscript"),
                     "gcc", "-shared", "-Wl,-soname=foo.so.5", "-o", "foo.so.5", "foo.o",
                     fd3=build.path / "foo.vec.o")
    (build.path / "foo.vec").write_text(out.stdout)
    assert out.stdout.splitlines()[0] == "__V_foo_so_5"
    assert (build.path / "foo.vec.o").read_bytes()[:4] == b"\x7fELF"
    build.gcc("-c", build.src("testmain.c"), "-o", "testmain.o")
    imp = build.tool("impvec", "^free$ ^malloc$ ^calloc$ ^realloc$", "foo.vec",
                     "gcc", "-o", "testmain", "testmain.o", "foo.so.5")
    (build.path / "foo_imp.s").write_text(imp.stdout)
    build.gcc("-c", "foo_imp.s")
    build.gcc("-o", "testmain", "testmain.o", "foo_imp.o", "foo.so.5")
    build.gcc("-o", "testmain.stock", "testmain.o", "stock/foo.so.5")
    result = assert_same_behaviour(build, build.path / "testmain", stock)
    assert result.returncode == 7 and "add 5 mul 20 twice 42" in result.stdout
    imported = [name.split("@")[0] for name in symbol_relocations(build.path / "testmain")]
    assert not [n for n in imported if n.startswith("foo_") and n != "foo_counter"]
