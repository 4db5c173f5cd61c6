"""rpathrm: build directories leave DT_RPATH / DT_RUNPATH, in place.

The removed directory is a real one holding a broken foo.so.5 (no
``foo_mul``): while it is in the run path the program fails to start, once
it is gone the program finds the good library through ``$ORIGIN``.
"""

import os
import re
import stat
import subprocess

import pytest

from conftest import run
from elfvector.elfimage import DT_STRSZ, DT_STRTAB, ElfImage
from elfvector.errors import NotElfError, UnsupportedElfError
from elfvector.rpathrm import rpathrm

TAGS = {"rpath": ("-Wl,--disable-new-dtags", "RPATH", "Library rpath"),
        "runpath": ("-Wl,--enable-new-dtags", "RUNPATH", "Library runpath")}
NO_LIBRARY_PATH = {"LD_LIBRARY_PATH": ""}


@pytest.fixture
def app(build):
    """app/foo.so.5 (good), some/build/dir/foo.so.5 (broken); returns the build dir."""
    app = build.path / "app"
    build_dir = build.path / "some" / "build" / "dir"
    for d, cflags in ((app, []), (build_dir, ["-DFOO_WITHOUT_MUL"])):
        d.mkdir(parents=True)
        build.gcc("-fPIC", "-O2", *cflags, "-c", build.src("foo.c"), "-o", d / "foo.o")
        build.gcc("-shared", "-Wl,-soname=foo.so.5", "-o", d / "foo.so.5", d / "foo.o")
    return build_dir


def link(build, rpath, tags, output="app/testmain"):
    build.gcc("-o", output, build.src("testmain.c"), "app/foo.so.5", f"-Wl,-rpath,{rpath}",
              TAGS[tags][0])
    return build.path / output


def run_path(build, path, tags):
    text = run(["readelf", "-dW", path], build.path).stdout
    assert TAGS[tags][1] in text, text
    return re.search(re.escape(TAGS[tags][2]) + r": \[(.*)\]", text).group(1)


def rewrite(path, remove_dirs):
    data = path.read_bytes()
    out = rpathrm(data, str(path), remove_dirs)
    assert len(out) == len(data)
    image = ElfImage(data, str(path))
    lo = image.offset_of(image.dyn(DT_STRTAB))
    hi = lo + image.dyn(DT_STRSZ)
    changed = [i for i in range(len(data)) if data[i] != out[i]]
    assert all(lo <= i < hi for i in changed), "only .dynstr bytes may change"
    path.write_bytes(out)
    return out


@pytest.mark.parametrize("tags", sorted(TAGS))
def test_build_dir_removed_program_runs(build, app, tags):
    prog = link(build, f"{app}:$ORIGIN", tags)
    plain = build.path / "plain"
    build.gcc("-o", plain, build.src("testmain.c"), "app/foo.so.5")
    expected = build.run(plain, libdir=build.path / "app")
    assert expected.returncode == 7
    broken = build.run(prog, env=NO_LIBRARY_PATH)
    assert broken.returncode == 127 and "foo_mul" in broken.stderr
    rewrite(prog, [str(app)])
    assert run_path(build, prog, tags) == "$ORIGIN"
    got = build.run(prog, env=NO_LIBRARY_PATH)
    assert (got.stdout, got.stderr, got.returncode) == (
        expected.stdout, expected.stderr, expected.returncode)
    assert str(app) not in build.run(prog, env=dict(NO_LIBRARY_PATH, LD_DEBUG="libs")).stderr


@pytest.mark.parametrize("tags", sorted(TAGS))
def test_remove_everything(build, app, tags):
    prog = link(build, f"{app}:$ORIGIN", tags)
    rewrite(prog, None)
    assert run_path(build, prog, tags) == ""
    missing = build.run(prog, env=NO_LIBRARY_PATH)
    assert missing.returncode == 127 and "cannot open shared object file" in missing.stderr
    assert build.run(prog, libdir=build.path / "app").returncode == 7
    assert rpathrm(prog.read_bytes(), str(prog), None) == prog.read_bytes()


def test_directories_below_and_not_beside(build, app):
    rpath = "/some/build/dir:/some/buildx:/some/build:/some//build/sub/:$ORIGIN/../lib:$ORIGIN"
    prog = link(build, rpath, "runpath")
    assert run_path(build, prog, "runpath") == rpath
    rewrite(prog, ["/some/build/"])
    assert run_path(build, prog, "runpath") == "/some/buildx:$ORIGIN/../lib:$ORIGIN"
    rewrite(prog, ["$ORIGIN/../lib", "/elsewhere"])
    assert run_path(build, prog, "runpath") == "/some/buildx:$ORIGIN"
    same = prog.read_bytes()
    assert rpathrm(same, str(prog), ["/not/there"]) is same


def test_strings_sharing_the_run_path_survive(build, app):
    """GNU ld stores ``foo_add`` inside ``.../opt/foo_add``: it must stay."""
    prog = link(build, f"{app}:/opt/foo_add", "runpath")
    image = ElfImage(prog.read_bytes(), str(prog))
    runpath_at = re.search(rb"[^\0]*/opt/foo_add\0", image.dynstr()).start()
    names = {image.string(s.name): s.name for s in image.dynsyms()}
    assert runpath_at < names["foo_add"] < runpath_at + len(f"{app}:/opt/foo_add")
    expected = build.run(prog, libdir=build.path / "app")
    rewrite(prog, [str(app)])
    assert run_path(build, prog, "runpath") == "/opt/foo_add"
    got = build.run(prog, libdir=build.path / "app")
    assert (got.stdout, got.returncode) == (expected.stdout, 7)
    assert "foo_add" in run(["readelf", "--dyn-syms", "-W", prog], build.path).stdout


def test_no_room_before_a_shared_string_is_refused(build, app):
    prog = link(build, "/a:/some/long/dir/foo_add", "runpath")
    data = prog.read_bytes()
    with pytest.raises(UnsupportedElfError, match="shares its bytes"):
        rpathrm(data, str(prog), ["/a"])
    # removing the other entry fits
    out = rpathrm(data, str(prog), ["/some/long"])
    prog.write_bytes(out)
    assert run_path(build, prog, "runpath") == "/a"


def test_files_without_run_path_and_non_elf(build, app):
    prog = build.path / "plain"
    build.gcc("-o", prog, build.src("testmain.c"), "app/foo.so.5")
    data = prog.read_bytes()
    assert rpathrm(data, str(prog), None) is data
    with pytest.raises(NotElfError):
        rpathrm(b"#!/bin/sh\n", "script", None)


# -- vectool --mode=rpathrm: in place, as patchelf and chrpath edit --------------

def vectool_rpathrm(build, rpathdir, *files, check=True):
    return build.tool("vectool", "--mode=rpathrm", f"--rpathdir={rpathdir}", *files,
                      check=check)


def identity(path):
    st = os.stat(path)
    return st.st_ino, st.st_nlink, stat.S_IMODE(st.st_mode), st.st_uid


def test_in_place_keeps_inode_hard_links_symbolic_links_and_mode(build, app):
    prog = link(build, f"{app}:$ORIGIN", "runpath")
    prog.chmod(0o750)
    os.link(prog, build.path / "app" / "hard")
    (build.path / "via").symlink_to(prog)
    before = identity(prog)
    expected = build.run(prog, libdir=build.path / "app")
    vectool_rpathrm(build, app, "via")
    assert (build.path / "via").is_symlink()
    assert identity(prog) == before and before[1] == 2
    assert run_path(build, build.path / "app" / "hard", "runpath") == "$ORIGIN"
    got = build.run(prog, env=NO_LIBRARY_PATH)
    assert (got.stdout, got.returncode) == (expected.stdout, 7)


def test_nothing_to_remove_touches_nothing(build, app):
    prog = link(build, f"{app}:$ORIGIN", "runpath")
    os.utime(prog, ns=(1_000_000_000, 1_000_000_000))
    before = os.stat(prog)
    data = prog.read_bytes()
    vectool_rpathrm(build, build.path / "elsewhere", prog)
    after = os.stat(prog)
    assert (after.st_mtime_ns, after.st_ctime_ns, after.st_ino) == \
        (before.st_mtime_ns, before.st_ctime_ns, before.st_ino)
    assert prog.read_bytes() == data


def test_a_running_file_is_a_clear_error(build, app):
    (build.path / "wait.c").write_text("#include <unistd.h>\nint main(void) { pause(); }\n")
    build.gcc("-o", "waiting", "wait.c", f"-Wl,-rpath,{app}", TAGS["runpath"][0])
    data = (build.path / "waiting").read_bytes()
    proc = subprocess.Popen([build.path / "waiting"], stdin=subprocess.DEVNULL)
    try:
        result = vectool_rpathrm(build, app, "waiting", check=False)
    finally:
        proc.kill()
        proc.wait()
    assert result.returncode == 1 and result.stderr == (
        "vectool: waiting: cannot edit in place: the file is being run (text file busy); "
        "rerun when it has exited\n")
    assert (build.path / "waiting").read_bytes() == data
    vectool_rpathrm(build, app, "waiting")
    assert run_path(build, build.path / "waiting", "runpath") == ""


def test_special_files_are_refused(build, app):
    os.mkfifo(build.path / "fifo")
    result = vectool_rpathrm(build, app, "fifo", check=False)
    assert result.returncode == 1
    assert result.stderr == "vectool: fifo: not a regular file (a FIFO)\n"
