"""The addrfile: format, the address policy, and concurrent writers."""

import multiprocessing

import pytest

from elfvector import addrfile
from elfvector.addrfile import MIB2, AddrFileError, Assignment, Region, choose_base, parse

REGION = Region(top=0x4000000000, bottom=0x3000000000)


def test_parse_decimal_hex_comments():
    text = "# fixed bases\n274877906944 libc.so.6 # 0x4000000000\n0x3ffe000000 libm.so.6\n\n"
    assert parse(text, "f") == [Assignment(0x4000000000, "libc.so.6"),
                                Assignment(0x3FFE000000, "libm.so.6")]


@pytest.mark.parametrize("text,reason", [
    ("4096 a\n8192 b\n", "decrease"),
    ("4096 a b\n", "expected"),
    ("0x1001 a\n", "page-aligned"),
    ("8192 a\n4096 a\n", "twice"),
    ("12z libx.so\n", "expected"),
])
def test_parse_errors_name_the_line(text, reason):
    with pytest.raises(AddrFileError, match=reason):
        parse(text, "addrs")


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
    with pytest.raises(AddrFileError, match="no longer fits.*delete its line"):
        choose_base(taken, "libb.so.1", 0x1E00001, REGION, "f")
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
