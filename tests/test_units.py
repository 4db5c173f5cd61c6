"""Unit tests of the pure parts: the .vec model, patterns, the link command."""

import pytest

from elfvector.errors import LinkError, PatternError, VecFormatError
from elfvector.linkcmd import LinkCommand
from elfvector.patterns import PatternList
from elfvector.vecfile import Slot, Vector, fingerprint, parse_vec, vector_name_for_soname


def test_vector_name_from_soname():
    assert vector_name_for_soname("libfoo.so.5") == "__V_libfoo_so_5"
    assert vector_name_for_soname("libstdc++.so.6") == "__V_libstdc___so_6"


def test_vec_round_trip_with_versions_and_layouts():
    text = "__V_libx_so_1\n#@layouts 2 3\nfoo\nbar@@V2  # default\nbar@V1\n"
    vec = parse_vec(text)
    assert [str(s) for s in vec.slots] == ["foo", "bar@@V2", "bar@V1"]
    assert vec.layouts == [2, 3]
    assert parse_vec(vec.format()).slots == vec.slots
    assert vec.layout_symbols() == [f"__V_libx_so_1__2_{fingerprint(vec.slots[:2])}",
                                    f"__V_libx_so_1__3_{fingerprint(vec.slots)}"]


def test_fingerprint_ignores_default_marker_but_not_order_or_version():
    a = [Slot.parse("f@@V2"), Slot.parse("g")]
    assert fingerprint(a) == fingerprint([Slot.parse("f@V2"), Slot.parse("g")])
    assert fingerprint(a) != fingerprint(list(reversed(a)))
    assert fingerprint(a) != fingerprint([Slot.parse("f@V3"), Slot.parse("g")])


def test_find_binds_unversioned_reference_to_default_version():
    vec = Vector("__V_x", [Slot.parse("f@V1"), Slot.parse("f@@V2"), Slot.parse("g")])
    assert vec.find("f", None) == 1
    assert vec.find("f", "V1") == 0
    assert vec.find("g", None) == 2
    assert vec.find("h", None) is None


def test_layouts_must_end_at_slot_count():
    with pytest.raises(VecFormatError, match="does not end"):
        parse_vec("__V_x\n#@layouts 1 5\nf\ng\n")


def test_patterns_from_file_with_comments(tmp_path):
    (tmp_path / "p").write_text("^a$ ^b  # comment ^c\n# all comment\n^d\n")
    assert PatternList.from_arg(f"@{tmp_path / 'p'}").words == ["^a$", "^b", "^d"]
    assert not PatternList.from_arg("")
    with pytest.raises(PatternError):
        PatternList(["("])


def test_link_command_output_soname_and_version_script():
    cmd = LinkCommand(["LD_LIBRARY_PATH=/x", "gcc", "-shared", "-Wl,-soname,libq.so.2",
                       "-Wl,--version-script=old.map", "-olibq.so.2", "q.o"])
    assert cmd.env == {"LD_LIBRARY_PATH": "/x"}
    assert cmd.output == "libq.so.2"
    assert cmd.soname == "libq.so.2"
    assert cmd.with_output("/tmp/t.so").output == "/tmp/t.so"
    replaced = cmd.with_version_script("new.map").words
    assert "-Wl,--version-script=old.map" not in replaced
    assert replaced[-1] == "-Wl,--version-script=new.map"


def test_link_command_ld_directly():
    cmd = LinkCommand(["ld", "-shared", "-soname", "libz.so.1", "-o", "libz.so.1", "z.o",
                       "--version-script", "z.map"])
    assert cmd.calls_ld_directly and cmd.soname == "libz.so.1"
    assert cmd.linker_option("--noinhibit-exec") == "--noinhibit-exec"
    assert cmd.with_version_script("n.map").words[-3:] == ["libz.so.1", "z.o",
                                                             "--version-script=n.map"]


def test_link_command_requires_output():
    with pytest.raises(LinkError, match="-o"):
        LinkCommand(["gcc", "x.o"]).output
