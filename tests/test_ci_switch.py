"""The suite on a machine that lacks something: tests that need it are
skipped with one line naming what provides it; with ELFVECTOR_NO_SKIP=1
(.ci/run) every such skip is a failure.  Also: subprocesses time out."""

import os
import shutil
import subprocess
import sys

from conftest import ROOT

TESTS = '''
import subprocess
import time
import pytest
from conftest import run

pytest.importorskip("os")          # present: no skip

def test_program_missing_through_run(tmp_path):
    run(["jq", "--version"], tmp_path)

def test_program_missing_through_subprocess():
    subprocess.run(["zstd", "-V"], capture_output=True)

def test_explicit_skip():
    pytest.skip("needs the moon: NASA provides it")

def test_passes():
    pass

def test_no_stdin():
    assert subprocess.run(["cat"], capture_output=True, text=True).stdout == ""

def test_timeout(tmp_path):
    import conftest
    with pytest.raises(AssertionError, match="still running after 1 s"):
        conftest.run(["sh", "-c", "sleep 60 & sleep 60"], tmp_path, timeout=1)
'''


def pytest_in(directory, **env):
    """pytest on ``directory`` with only sh, cat and sleep on PATH."""
    bindir = directory / "bin"
    bindir.mkdir(exist_ok=True)
    for name in ("sh", "cat", "sleep"):
        if not (bindir / name).exists():
            (bindir / name).symlink_to(shutil.which(name))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           str(directory)], cwd=directory, capture_output=True, text=True,
                          env=dict(os.environ, PATH=str(bindir), **env))


def test_skips_name_the_provider_and_fail_under_the_ci_switch(tmp_path):
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_machine.py").write_text(TESTS)
    local = pytest_in(tmp_path, ELFVECTOR_NO_SKIP="")
    assert "3 passed, 3 skipped" in local.stdout, local.stdout
    for program, package in (("jq", "jq"), ("zstd", "zstd")):
        assert (f"{program} is missing: the Debian package {package} provides it (sudo .ci/run "
                "installs everything the tests need)") in local.stdout
    ci = pytest_in(tmp_path, ELFVECTOR_NO_SKIP="1")
    assert ci.returncode == 1 and "3 failed, 3 passed" in ci.stdout, ci.stdout
    assert "skipped, but ELFVECTOR_NO_SKIP=1 forbids skips: needs the moon" in ci.stdout


def test_a_module_level_skip_fails_under_the_ci_switch(tmp_path):
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_module.py").write_text(
        'import pytest\npytest.importorskip("no_such_module_here")\n'
        'def test_never():\n    pass\n')
    assert "1 skipped" in pytest_in(tmp_path, ELFVECTOR_NO_SKIP="").stdout
    ci = pytest_in(tmp_path, ELFVECTOR_NO_SKIP="1")
    assert ci.returncode != 0 and "no_such_module_here" in ci.stdout, ci.stdout
