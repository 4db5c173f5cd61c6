"""The README's examples, run as written: the seed's example, the curl
recipe and the closure mode's worked example (each block is the first
indented block after its heading)."""

import re

import pytest

from conftest import BIN, ROOT, require_programs, run

README = ROOT / "README.md"


def block_after(heading):
    """The first indented code block after ``heading``, as shell text."""
    lines = README.read_text().split(f"\n{heading}\n", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("    "))
    block = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        block.append(line[4:])
    return "\n".join(block) + "\n"


@pytest.fixture
def shell(tmp_path):
    """Run shell text in a scratch directory, the commands on PATH as after
    ``. .venv/bin/activate``, testdata/ at hand as in the checkout."""
    bindir = tmp_path / "commands"
    bindir.mkdir()
    for command in BIN.iterdir():
        wrapper = bindir / command.name
        wrapper.write_text(f'#!/bin/sh\nexec "{run.__globals__["sys"].executable}" '
                           f'"{command}" "$@"\n')
        wrapper.chmod(0o755)
    (tmp_path / "testdata").symlink_to(ROOT / "testdata")

    def shell_run(text):
        env = {"PATH": f"{bindir}:/usr/bin:/bin", "LD_LIBRARY_PATH": ""}
        return run(["bash", "-euo", "pipefail", "-c", text], tmp_path, env, check=False)
    return shell_run


def test_seed_example(shell):
    result = shell(block_after("### The seed's example"))
    assert result.returncode == 0 and not result.stderr, result.stderr
    assert result.stdout.splitlines()[1:] == [
        "add 5 mul 20 twice 42", "sum 10 len 6 name foo.so.5", "hypot2 25.00",
        "same &foo_add: yes", "counter 3", "exit 7"]


def test_curl_recipe_is_quiet_and_ends_with_the_lookups_before_and_after(shell, tmp_path):
    require_programs("curl")
    result = shell(block_after("### Vectoring Debian's own programs (post-link)"))
    assert result.returncode == 0 and not result.stderr, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("curl ") and len(lines) == 6      # curl --version: 4 lines
    before, after = lines[-2:]
    before, after = (int(re.search(r"number of relocations: (\d+)$", line).group(1))
                     for line in (before, after))
    slots = [relocations(path, "R_X86_64_JUMP_SLOT")
             for path in ("/usr/bin/curl", tmp_path / "curl.vec")]
    vectors = relocations(tmp_path / "curl.vec", r"R_X86_64_GLOB_DAT .* __V_")
    assert slots[0] - slots[1] > 100 and vectors >= 2
    assert before - after == slots[0] - slots[1] - vectors


def relocations(path, kind):
    return len(re.findall(kind, run(["readelf", "-rW", path], ".").stdout))


def test_retro_worked_example(shell):
    """"Faster start-up for installed programs": jq rewritten with its closure,
    run, reported, verified and checked, as the README shows it."""
    require_programs("jq", "gdb")
    result = shell(block_after("### Trying it"))
    assert result.returncode == 0 and not result.stderr, result.stderr
    lines = result.stdout.splitlines()
    stock, after = map(int, re.fullmatch(
        r"/usr/bin/jq: lookups at start-up (\d+) -> (\d+) \(.*\bcheck \d+.*\)", lines[0]).groups())
    assert after * 5 < stock, lines[0]
    written = re.fullmatch(r"(\d+) outputs \((\d+) written\) in \S+/fast in [\d.]+ s", lines[1])
    assert written and written[1] == written[2], lines[1]
    jq_version = run(["/usr/bin/jq", "--version"], ".").stdout.strip()
    assert lines[2:4] == [jq_version, "[10,20,30]"]
    assert lines[4].split() == ["output", "base", "lookups", "RELATIVE", "PT_LOAD", "bytes"]
    assert f"{written[1]} outputs (0 written)" in result.stdout
    assert re.search(r"^verified: \d+ words \(\d+ settled in the files\) hold ld\.so's values "
                     r"in 1 program$", result.stdout, re.M)
    assert lines[-1] == "up to date"
