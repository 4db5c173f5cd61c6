"""Unit tests of the pure parts: the .vec model, patterns, the link command,
the ELF records."""

import ctypes
import dataclasses
import hashlib
import os
import random
import re
import subprocess
import time
import warnings

import pytest

from elfvector import elfstruct
from elfvector.elffile import ElfFile
from elfvector.errors import LinkError, PatternError, VecFormatError
from elfvector.linkcmd import LinkCommand
from elfvector.patterns import PatternList, read_words
from elfvector.vecfile import (Slot, Vector, fingerprint, parse_vec, read_text, read_vec,
                               vector_name_for_soname)


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


# -- the .vec format: what it refuses ------------------------------------------

@pytest.mark.parametrize("text,reason", [
    ("__V_x\n#@layouts 0 2\nf\ng\n", "positive and increasing"),
    ("__V_x\n#@layouts 2 2\nf\ng\n", "positive and increasing"),
    ("__V_x\n#@layouts 2 1\nf\ng\n", "positive and increasing"),
    ("__V_x\n#@layouts -1 2\nf\ng\n", "bad #@layouts line"),
    ("__V_x\n#@layouts\nf\n", "bad #@layouts line"),
    ("__V_x\n#@layouts 1\n#@layouts 1\nf\n", "a second #@layouts"),
    ("__V_caf\u00e9\nf\n", "bad vector name"),
    ("__V_x\nf\x00g\n", "bad function name"),
    ("__V_x\nf\"g\n", "bad function name"),
    ("__V_x\nf@\n", "bad function name"),
    ("__V_x\n", "no slots"),
    ("", "not a .vec file"),
])
def test_bad_vec_text_is_refused(text, reason):
    with pytest.raises(VecFormatError, match=re.escape(reason)):
        parse_vec(text, "x.vec")


def test_non_utf8_slot_names_round_trip():
    name = b"caf\xe9".decode("utf-8", "surrogateescape")
    vec = parse_vec(f"__V_x\n{name}\n")
    assert vec.slots[0].name == name and parse_vec(vec.format()).slots == vec.slots
    assert fingerprint(vec.slots) == hashlib.sha256(b"caf\xe9").hexdigest()[:8]


def test_plain_names_resolve_to_the_default_version():
    """A plain name is the library's default definition: it is hashed as
    name@VER, so a library whose default version changed fails the layout."""
    plain = parse_vec("__V_x\nmemcpy\nputs\n")
    v214 = plain.resolved({"memcpy": "GLIBC_2.14", "puts": None}.get)
    assert [str(s) for s in v214.slots] == ["memcpy@@GLIBC_2.14", "puts"]
    assert v214.layout_symbol() == Vector("__V_x", [Slot.parse("memcpy@GLIBC_2.14"),
                                                    Slot.parse("puts")]).layout_symbol()
    v300 = plain.resolved({"memcpy": "GLIBC_3.0"}.get)
    assert v300.layout_symbol() != v214.layout_symbol() != plain.layout_symbol()
    assert v214.find("memcpy", "GLIBC_2.14") == 0 and v214.find("memcpy", None) == 0
    assert v214.find("memcpy", "GLIBC_2.2.5") is None


def test_text_inputs_may_be_pipes_and_never_block(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    assert read_text(str(fifo)) == ""                  # no writer: EOF at once
    assert time.monotonic() - started < 1
    read_end, write_end = os.pipe()
    os.write(write_end, b"__V_x\nf\n")
    os.close(write_end)
    assert read_vec(f"/dev/fd/{read_end}").slots == [Slot("f")]
    os.close(read_end)
    with pytest.raises(VecFormatError, match="not a regular file or a pipe .a directory."):
        read_vec(str(tmp_path))
    with pytest.raises(VecFormatError, match="not a regular file or a pipe .a character"):
        read_vec("/dev/zero")
    with pytest.raises(PatternError, match="cannot read pattern file: No such file"):
        read_words(f"@{tmp_path / 'missing'}")


def test_binary_vec_is_one_clear_error(tmp_path):
    (tmp_path / "b.vec").write_bytes(b"__V_x\n\x7fELF\x02\x01\x01\x00\xff\xfe\n")
    with pytest.raises(VecFormatError, match=r"line 2: bad function name"):
        read_vec(str(tmp_path / "b.vec"))


# -- regular expressions: POSIX EREs as regcomp(REG_EXTENDED) reads them --------

def posix_regexec(pattern, name):
    """glibc's own answer: True/False, or None when regcomp refuses."""
    libc = ctypes.CDLL("libc.so.6")
    regex = ctypes.create_string_buffer(256)              # >= sizeof(regex_t)
    if libc.regcomp(regex, pattern.encode(), 1 | 8):      # REG_EXTENDED | REG_NOSUB
        return None
    try:
        return libc.regexec(regex, name.encode(), 0, None, 0) == 0
    finally:
        libc.regfree(regex)


def ours(pattern, name):
    try:
        return bool(PatternList([pattern]).regexes[0].search(name))
    except PatternError:
        return None


ERE_CASES = ["^foo_[[:alpha:]]*$", "^a+?$", "[]x]", "[^]x]", "[a-]", "[\\w]", "a{2}",
             "a{2,}", "a{,2}b", "a{2}{2}", "^*a", "*a", "a**", "(*a)", "a|*b", "(?:a)", "a{",
             "a{x}", "a{3,2}", "{", "a}", "\\<ab", "ab\\>", "\\`ab", "ab\\'", "(a)\\1", "\\1",
             "[[:digit:]]+", "[[:foo:]]", "[[=a=]]", "[[.-.]]", "[a", "(a", "a)", "()", "a||b",
             "(|a)", "$a", "a^", "^$", "x$|^y", "[[:punct:]]", "\\", "a\\", "[z-a]", ".",
             "[.]", "\\.", "a[]]b", "[[]", "[&&]", "[--]", "[a-c-e]", "[--[:digit:]]",
             "\\d", "a{1,2}?", "(ab)*c", "[[:upper:][:digit:]]", "^_?[[:upper:]]", "x{0}",
             "x{32767}", "x{32768}", "^pthread_", "^(str|mem)cpy$"]
ERE_NAMES = ["foo_bar", "foo_", "foo_b1", "a", "aa", "aaa", "", "x", "]", "-", "w", "\\", "ab",
             "xab", "abx", "a_b", "aab", "b", "{", "}", "a{", "a{x}", "*a", "a*", "$a", "^",
             "y", "1", "A1", "_Z", "&", ".", "c", "abab", "ababc", "d", "[", "e",
             "pthread_create", "strcpy", "memcpy", "stpcpy"]


def test_regexes_follow_regex_h():
    """Each pattern matches (or is refused) exactly as glibc's regcomp
    (REG_EXTENDED) and regexec have it, and Python warns about none."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for pattern in ERE_CASES:
            for name in ERE_NAMES:
                assert ours(pattern, name) == posix_regexec(pattern, name), (pattern, name)


def test_random_regexes_follow_regex_h():
    rnd = random.Random(2001)
    atoms = list("ab.^$|()*+?{}[]-\\,1") + ["[:alpha:]", "[:digit:]", "{2}", "{1,2}", "[^",
                                            "\\<", "\\>", "\\w", "\\1", "[=a=]", "[.b.]"]
    for _ in range(3000):
        pattern = "".join(rnd.choice(atoms) for _ in range(rnd.randint(1, 6)))
        for name in ("", "a", "ab", "ba1", "-", "]", "{", "\\", "(", "a b", "aab"):
            assert ours(pattern, name) == posix_regexec(pattern, name), (pattern, name)


def test_pattern_list_matches_any():
    for words in (["^[[:upper:]]", "x$", "b"], ["^[[:upper:]]", "x$", "(b)\\1?"]):
        patterns = PatternList(words)
        assert patterns.matches("Foo") and patterns.matches("box") and patterns.matches("ab")
        assert not patterns.matches("foo")


@pytest.mark.parametrize("record,layout", [(elfstruct.Phdr, elfstruct.PHDR),
                                           (elfstruct.Shdr, elfstruct.SHDR),
                                           (elfstruct.Sym, elfstruct.SYM),
                                           (elfstruct.Rela, elfstruct.RELA)])
def test_records_pack_their_fields_in_order(record, layout):
    """pack() names each field (no dataclass walk): in the layout's order."""
    values = [i + 1 for i in range(len(dataclasses.fields(record)))]
    assert record(*values).pack() == layout.pack(*values)
    assert layout.unpack(record(*values).pack()) == tuple(values)


def test_function_definitions_are_the_flattened_table_by_name():
    """ElfFile decodes each symbol once and indexes the functions by name:
    what it answers is what a scan of the whole table gives."""
    libc = subprocess.run(["gcc", "-print-file-name=libc.so.6"], capture_output=True,
                          text=True, check=True).stdout.strip()
    scanned = {}
    for sym in ElfFile(libc).dynamic_symbols:
        if sym.defined and sym.is_function:
            scanned.setdefault(sym.name, []).append(sym)
    elf = ElfFile(libc)
    assert {name: elf.function_definitions(name) for name in scanned} == scanned
    assert elf.function_definitions("no_such_function") == []
    assert elf.function_definitions("memcpy") is elf.function_definitions("memcpy")
    assert {s.version for s in scanned["memcpy"]} == {"GLIBC_2.2.5", "GLIBC_2.14"}
    with pytest.raises(AttributeError):
        scanned["memcpy"][0].name = "other"


# -- the per-architecture code modules ------------------------------------------

def _table_lines(text):
    """The slot words of an export table's text, without their comments."""
    return [line.split("\t")[1] for line in text.splitlines() if line.startswith("\t.long ")
            and "Lvector" in line]


def test_every_architecture_writes_one_export_table():
    """The export table is the same text on every architecture (asmtext),
    its comments one printable line whatever the slot's name; only i386's
    and AArch64's IFUNC slots lead to veneers."""
    from elfvector.arch import aarch64, i386, x86_64
    vector = Vector("__V_x", [Slot("a\nb"), Slot("c", "V1", True)], [1, 2])
    texts = [m.export_table_asm(vector, ["__elfvector_x_0", "__elfvector_x_1"])
             for m in (x86_64, i386, aarch64)]
    assert _table_lines(texts[0]) == _table_lines(texts[1]) == _table_lines(texts[2]) == \
        [".long __elfvector_x_0 - .Lvector", ".long __elfvector_x_1 - .Lvector"]
    assert all("a?b" in text and "a\nb" not in text for text in texts)
    for module in (i386, aarch64):
        text = module.export_table_asm(vector, ["__elfvector_x_0", "__elfvector_x_1"],
                                       ifunc_slots=[1])
        assert _table_lines(text)[1] == ".long .Lifunc1 - .Lvector"
        assert "\n.Lifunc1:\n" in text and ".Lifunc0" not in text


def test_machine_code_must_fit_what_was_planned():
    """keystone's output longer than planned (or, unpadded, of another
    size) is an error, never a truncated or overlapping routine."""
    from elfvector.arch import machinecode
    assert machinecode.assemble("i386", ["nop"], 0x1000, 4, pad=b"\xcc") == b"\x90\xcc\xcc\xcc"
    with pytest.raises(AssertionError):
        machinecode.assemble("i386", ["nop"] * 5, 0x1000, 4, pad=b"\xcc")
    with pytest.raises(AssertionError):
        machinecode.assemble("aarch64", ["nop"], 0x1000, 8)


def test_aarch64_constant_refuses_what_a_w_register_cannot_hold():
    from elfvector.arch.aarch64 import link
    assert link._constant("w3", 0x12345) == ["\tmovz w3, #9029", "\tmovk w3, #1, lsl #16"]
    with pytest.raises(ValueError):
        link._constant("w3", 1 << 32)
