"""The closure part of ``make bench`` (bench/closurebench.py): its parsers
against real runs, and how report.py judges issue 8's targets from its record.

The parsers read what ld.so and callgrind print; a misread figure would
judge a target on the wrong number, so each is checked against a figure the
tool states itself (callgrind's total, ld.so's start-up and exit counts).
The judging runs on a made-up record in the shape measure() writes: every
target passes on it, and each change below makes exactly its target fail.
"""

import copy
import re
import subprocess
import sys

import pytest

from conftest import ROOT, require_programs

sys.path.insert(0, str(ROOT / "bench"))
import closurebench  # noqa: E402
import report  # noqa: E402

MODES = tuple(closurebench.MODES)


def test_callgrind_profile_is_split_by_object(tmp_path):
    """The objects' self instructions add up to callgrind's own total, and
    ld.so's are there (a dynamic program's start-up is mostly ld.so's)."""
    require_programs("valgrind")
    out = tmp_path / "callgrind.out"
    proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                           "/usr/bin/true"], capture_output=True, text=True)
    total = int(re.search(r"Collected\s*:\s*(\d+)", proc.stderr).group(1))
    by_object = closurebench.instructions_by_object(out.read_text())
    assert sum(by_object.values()) == total
    ldso = [n for name, n in by_object.items() if "ld-linux" in name]
    assert len(ldso) == 1 and total / 2 < ldso[0] < total


def statistics_of(argv):
    proc = subprocess.run(argv, env={"LD_BIND_NOW": "1", "LD_DEBUG": "statistics,bindings",
                                     "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, errors="replace")
    return closurebench.parse_statistics(proc.stderr)


def test_start_up_lookups_are_apart_from_later_ones():
    """A module dlopen'ed by the run counts in the exit figure, not the start-up one;
    the vDSO's lookups are counted among the start-up ones."""
    plain = statistics_of(["/usr/bin/python3", "-c", "pass"])
    dlopen = statistics_of(["/usr/bin/python3", "-c", "import _ctypes"])
    assert plain["final"] == plain["startup"] == dlopen["startup"]
    assert dlopen["final"] > dlopen["startup"]
    assert 0 < plain["vdso"] < plain["startup"]
    assert plain["relative"] > 0


# -- the targets -------------------------------------------------------------------------

def passing_record():
    """A closure record on which every target of issue 8 passes."""
    def side(stock, new):
        return {"stock": stock, "shared": new, "alone": copy.deepcopy(new)}
    programs = {}
    for p in closurebench.PROGRAMS:
        lookups = {layout: {"startup": 30, "final": 30, "relative": 0, "vdso": 7}
                   for layout in ("shared", "alone")}
        lookups["stock"] = {"startup": 1000, "final": 1000, "relative": 900, "vdso": 7}
        def ratio():
            return {"median": 0.5, "q1": 0.45, "q3": 0.55}
        cpu = {mode: {"stock": {"minflt": 100}, "new": {"minflt": 90}, "cpu_ratio": ratio()}
               for mode in MODES}
        cpu["moved"] = {"cpu_ratio": ratio()}
        programs[p] = {
            "lookups": {mode: copy.deepcopy(lookups) for mode in MODES},
            "instructions": {mode: side({"total": 100}, {"total": 20}) for mode in MODES},
            "cpu": cpu,
            "mmap_mprotect": {mode: side(10, 9) for mode in MODES},
            "launcher": {mode: side({"rss_kib": 100}, {"rss_kib": 90}) for mode in MODES},
            "private_dirty_kb": {mode: side(100, 90) for mode in MODES}}
    remaining = {"check": 10, "excluded": 13}
    tool = {"programs": {p: {"lookups_after": 23, "remaining": remaining}
                         for p in closurebench.PROGRAMS}}
    return {"programs": programs, "pairs": [100, 1000, 4.0],
            "behaviour": {"workloads": 27, "runs_compared": 162},
            "retro": {"shared": tool, "alone": {p: tool for p in closurebench.PROGRAMS}}}


def verdicts(record):
    return {t["target"]: t for t in report.closure_targets(record)}


def failed(record):
    return {name: t["detail"] for name, t in verdicts(record).items() if t["status"] != "PASS"}


def test_every_target_passes_on_a_passing_record():
    targets = verdicts(passing_record())
    assert len(targets) == 22
    assert all(t["status"] == "PASS" and t["issue"] == 8 for t in targets.values())


def test_a_program_slower_than_stock_fails_its_mode():
    record = passing_record()
    record["programs"]["git"]["cpu"]["shipped"]["cpu_ratio"]["median"] = 1.02
    [(name, detail)] = failed(record).items()
    assert name.startswith("as shipped: no program slower") and "MISSED by git" in detail
    assert report.missed(report.closure_targets(record))[0]["status"] == "FAIL"


@pytest.mark.parametrize("change", ["one more lookup", "an undefined reference"])
def test_lookups_beyond_the_allowed_reasons_fail(change):
    """git, sqlite3, jq and python3 may keep only the checks, conflicts, ... and the
    vDSO's lookups: one more, or one for a reason outside those, fails."""
    record = passing_record()
    if change == "one more lookup":
        record["programs"]["jq"]["lookups"]["bind_now"]["shared"] = {
            "startup": 31, "final": 31, "relative": 0, "vdso": 7}
    else:
        shared = copy.deepcopy(record["retro"]["shared"])
        shared["programs"]["jq"]["remaining"] = {"check": 9, "undefined": 1, "excluded": 13}
        record["retro"]["shared"] = shared
    [(name, detail)] = failed(record).items()
    assert name.startswith("shared: start-up lookups of git, sqlite3, jq, python3")
    assert "jq 31" in detail or "undefined" in detail


def test_five_percent_and_seventy_percent_are_per_program():
    record = passing_record()
    record["programs"]["gdb"]["lookups"]["bind_now"]["alone"]["startup"] = 51
    record["programs"]["curl"]["instructions"]["bind_now"]["shared"]["total"] = 31
    assert set(failed(record)) == {
        "alone: symbol lookups at start-up (LD_BIND_NOW=1) at most 5% of stock for curl, "
        "cmake, gdb",
        "shared, LD_BIND_NOW=1: callgrind instructions of --version at least 70% fewer for "
        "curl, cmake, sqlite3, jq"}
