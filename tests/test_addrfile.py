"""The addrfile: format, the address policy, and concurrent writers."""

import multiprocessing
import os
import threading

import pytest

from elfvector import addrfile
from elfvector.addrfile import MIB2, AddrFileError, Assignment, Region, choose_base, parse

REGION = Region(top=0x4000000000, bottom=0x3000000000)


def test_parse_decimal_hex_comments():
    text = "# fixed bases\n274877906944 libc.so.6 # 0x4000000000\n0x3ffe000000 libm.so.6\n\n"
    assert parse(text, "f") == [Assignment(0x4000000000, "libc.so.6"),
                                Assignment(0x3FFE000000, "libm.so.6")]


@pytest.mark.parametrize("text,reason", [
    ("0x20000 a\n0x30000 b\n", "line 2: addresses must decrease"),
    ("0x20000 a b\n", "line 1: expected 'ADDRESS SONAME'"),
    ("0x21001 a\n", "line 1: 0x21001 is not page-aligned"),
    ("0x30000 a\n0x20000 a\n", "line 2: a appears twice"),
    ("12z libx.so\n", "line 1: expected 'ADDRESS SONAME'"),
    (f"{2 ** 70} a\n", f"line 1: {2 ** 70} is outside the x86-64 user address space"),
    ("0 a\n", "line 1: 0 is outside"),
    ("0xf000 a\n", "line 1: 0xf000 is outside"),             # below vm.mmap_min_addr
    ("0x7ffffffff000 a\n", "line 1: 0x7ffffffff000 is outside"),
    ("0x30000 a\n0x2f800 b\n", "line 2: 0x2f800 is not page-aligned"),   # closer than a page
])
def test_parse_errors_name_the_line(text, reason):
    with pytest.raises(AddrFileError, match=reason):
        parse(text, "addrs")


def test_bases_a_page_apart_and_the_ends_of_user_space_are_accepted():
    text = "0x7fffffffe000 top\n0x7fffffffd000 next\n0x10000 bottom\n"
    assert [a.base for a in parse(text, "f")] == [0x7FFFFFFFE000, 0x7FFFFFFFD000, 0x10000]


def test_new_library_goes_below_all_with_room():
    base, new = choose_base([], "liba.so.1", 0x300000, REGION, "f")
    assert new and base % MIB2 == 0
    assert REGION.top - base >= 0x300000 * 4 // 3            # 33% room
    below, _ = choose_base([Assignment(base, "liba.so.1")], "libb.so.1", 0x1000, REGION, "f")
    assert below < base and base - below >= 0x1000


def test_old_base_is_kept_while_it_fits_and_refused_when_not():
    taken = [Assignment(0x3FFE000000, "liba.so.1"), Assignment(0x3FFC000000, "libb.so.1")]
    assert choose_base(taken, "libb.so.1", 0x1E00000, REGION, "f") == (0x3FFC000000, False)
    # A mapping of 2 MiB or more keeps its hint only with 2 MiB free above it.
    with pytest.raises(AddrFileError) as error:
        choose_base(taken, "libb.so.1", 0x1E00001, REGION, "f")
    assert str(error.value) == (
        "f: libb.so.1 no longer fits at 0x3ffc000000 (0x1e00001 bytes, 0x2000000 available): "
        "delete its line '274810798080 libb.so.1' from this addrfile and rerun vectool, which "
        "gives it a new base below all others")
    assert choose_base(taken, "liba.so.1", 0x1FFFFF, REGION, "f") == (0x3FFE000000, False)


def test_region_exhausted():
    with pytest.raises(AddrFileError, match="no room"):
        choose_base([], "big.so", 0x2000000000, REGION, "f")


def _assign(args):
    path, soname = args
    with addrfile.locked(path) as assignments:
        base, new = choose_base(assignments, soname, 0x200000, REGION, path)
        if new:
            addrfile.append(path, Assignment(base, soname), 0x200000)
    return soname, base


def test_concurrent_writers_never_overlap(tmp_path):
    path = str(tmp_path / "addrs")
    names = [f"lib{i}.so.1" for i in range(24)] * 2       # each soname twice, at once
    with multiprocessing.Pool(8) as pool:
        results = pool.map(_assign, [(path, n) for n in names])
    final = addrfile.read(path)
    assert sorted(a.soname for a in final) == sorted(set(names))
    bases = {a.soname: a.base for a in final}
    assert all(bases[soname] == base for soname, base in results)   # same answer twice
    ordered = sorted(bases.values())
    assert all(b - a >= 0x200000 for a, b in zip(ordered, ordered[1:]))


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "addrs"
    os.mkfifo(fifo)
    errors = []

    def attempt():
        for call in (addrfile.read, addrfile.check_writable):
            try:
                call(str(fifo))
            except AddrFileError as e:
                errors.append(str(e))
    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "blocked on a FIFO"
    assert errors == [f"{fifo}: not a regular file (a FIFO)"] * 2


def test_a_read_only_addrfile_is_refused_never_replaced(tmp_path):
    path = tmp_path / "addrs"
    path.write_text("0x3ffe000000 liba.so.1\n")
    path.chmod(0o444)
    with pytest.raises(AddrFileError, match=r"is read-only \(mode 0444\)"):
        with addrfile.locked(str(path)):
            pass
    with pytest.raises(AddrFileError, match="is read-only"):
        addrfile.append(str(path), Assignment(0x3FFC000000, "libb.so.1"), 0x1000)
    assert path.read_text() == "0x3ffe000000 liba.so.1\n"
    assert path.stat().st_mode & 0o777 == 0o444


def test_a_symbolic_link_stays_one_and_shares_the_target_lock(tmp_path):
    (tmp_path / "group").mkdir()
    target = tmp_path / "group" / "addrs"
    target.write_text("0x3ffe000000 liba.so.1\n")
    target.chmod(0o600)
    link = tmp_path / "addrs"
    link.symlink_to("group/addrs")
    with addrfile.locked(str(link)) as assignments:
        assert assignments == [Assignment(0x3FFE000000, "liba.so.1")]
        addrfile.append(str(link), Assignment(0x3FFC000000, "libb.so.1"), 0x1000)
    assert link.is_symlink() and target.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "group" / "addrs.lock").exists()
    assert not (tmp_path / "addrs.lock").exists()
    assert [a.soname for a in addrfile.read(str(link))] == ["liba.so.1", "libb.so.1"]
