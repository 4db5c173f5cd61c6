"""A real build: Debian's lua5.4, linked through vectool, against the usual build.

tests/realbuild/build.sh fetches the source package with apt-get source
(it needs a deb-src entry and ``apt-get update``, as .ci/run sets up),
builds it twice from the same sources with the same flags, once with
vectool in front of the link commands only, runs the same checks with
both and compares them, then checks the library's fixed base and the
symbol lookups.  Here: the script passes, and its numbers say what they
should.  On a machine without the packages or the deb-src entry the build
needs, the test is skipped saying what provides them (on CI, .ci/run
installs them and a skip is a failure).
"""

import os
import subprocess
import sys

from conftest import BIN, ROOT, missing, require_programs
from elfvector import addrfile

SCRIPT = ROOT / "tests" / "realbuild" / "build.sh"
SOURCE_PACKAGES = ("lua5.4", "lua5.1")      # lua5.1's .orig carries the test scripts


def require_what_the_build_needs():
    require_programs("gcc", "make", "ar", "readelf", "apt-get", "dpkg-source",
                     "dpkg-buildflags", "dpkg-architecture")
    if not os.path.exists("/usr/include/readline/readline.h"):
        missing("readline/readline.h", "the Debian package libreadline-dev")
    for package in SOURCE_PACKAGES:
        found = subprocess.run(["apt-cache", "showsrc", package], capture_output=True,
                               text=True).stdout
        if f"Package: {package}\n" not in found:
            missing(f"the source package {package}", "a deb-src entry for Debian's archive "
                    "(then apt-get update)")


def test_lua54_linked_through_vectool_behaves_as_the_usual_build(tmp_path):
    require_what_the_build_needs()
    work = tmp_path / "work"
    env = dict(os.environ, VECTOOL=f"{sys.executable} {BIN / 'vectool'}")
    proc = subprocess.run(["bash", str(SCRIPT), str(work)], env=env, capture_output=True,
                          stdin=subprocess.DEVNULL, text=True, timeout=900)
    assert proc.returncode == 0, f"{proc.stdout[-8000:]}\n{proc.stderr[-4000:]}"
    results = dict(line.split(" ", 1) for line in
                   (work / "results.txt").read_text().splitlines())
    assert results["failures"] == "0"
    assert results["source"].startswith("lua5.4 5.4.")

    # Same sources, same flags: only the links differ.
    same, total = results["objects_identical"].split("/")
    assert same == total and int(total) == 34
    assert results["luac_identical"] == "yes"      # no liblua in luac: nothing to vector
    assert results["relink_identical"] == "yes"    # addrfile, .vec, library and lua
    assert results["bytecode_identical"] == "yes"
    assert int(results["checks_compared"]) >= 40

    # The library sits at its addrfile base under the non-PIE lua, the
    # usual one wherever the kernel put it.
    base = int(results["lib_base"], 16)
    region = addrfile.DEFAULT_REGION
    assert region.bottom <= base < region.top and base % 0x200000 == 0
    assert int(results["lib_l_addr_vectool"], 16) == 0
    assert int(results["lib_l_addr_normal"], 16) != 0
    assert [int(a, 16) for a in results["lib_mapped_at"].split()] == [base, base]

    # One lookup (the layout symbol) instead of one per Lua function lua calls.
    before, after = (int(n) for n in results["lua_relocs_to_liblua"].split(" -> "))
    assert before >= 30 and after == 1
    normal, vectool = int(results["lookups_normal"]), int(results["lookups_vectool"])
    assert normal - vectool >= before - after
    assert int(results["relative_vectool"]) < int(results["relative_normal"])
    slots, _, exported = results["exported_slots"].split()[:3]
    assert slots == exported and int(slots) >= 150

    # The vectool library replaces the usual one; the vectool lua refuses a
    # library without its vector.
    assert results["normal_lua_with_vectool_lib"] == "same"
    assert results["vectool_lua_with_normal_lib"] == "refused (exit 127)"
