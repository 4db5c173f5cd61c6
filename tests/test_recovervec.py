"""recovervec: the .vec read back from a vectored library must be the one
expvec (or retrovec) built it with."""

import re
import struct

import pytest

from conftest import run
from elfvector.recovervec import _iplt_resolver
from test_bad_input import assert_one_line_error

ALIASES = """\
int real_add(int a, int b) { return a + b; }
int alias_add(int, int) __attribute__((alias("real_add")));
int zz_add(int, int) __attribute__((alias("real_add")));
int other(int x) { return x + 1; }
"""


def slot_lines(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def expvec_inline(build, source_text, soname, incl="."):
    """Link ``source_text`` (C) as ``soname`` with expvec; returns the .vec text."""
    (build.path / "lib.c").write_text(source_text)
    build.gcc("-fPIC", "-O2", "-c", "lib.c", "-o", "lib.o")
    build.tool("expvec", "--vec", f"{soname}.vec", "--vec-object", f"{soname}.vec.o",
               incl, "", "", "gcc", "-shared", f"-Wl,-soname={soname}", "-o", soname, "lib.o")
    return (build.path / f"{soname}.vec").read_text()


def file_offset(path, address):
    """The file offset of virtual ``address`` in ``path`` (from its PT_LOADs)."""
    for line in run(["readelf", "-lW", path], cwd=".").stdout.splitlines():
        fields = line.split()
        if fields[:1] == ["LOAD"]:
            offset, vaddr, filesz = int(fields[1], 16), int(fields[2], 16), int(fields[4], 16)
            if vaddr <= address < vaddr + filesz:
                return address - vaddr + offset
    raise AssertionError(f"{address:#x} is not in a PT_LOAD of {path}")


def dynamic_symbol(path, name):
    for line in run(["readelf", "-W", "--dyn-syms", path], cwd=".").stdout.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[7].split("@")[0] == name:
            return int(fields[1], 16), int(fields[2])
    raise AssertionError(f"{name} not in {path}")


# -- round trips --------------------------------------------------------------

def test_foo_round_trip(build):
    vec = build.expvec("foo.c", "foo.so.5", incl="@" + build.src("foo.order"),
                       vscript=build.src("foo.vscript"))
    written = (build.path / vec).read_text()
    result = build.tool("recovervec", "foo.so.5")
    assert slot_lines(result.stdout) == slot_lines(written)
    assert slot_lines(written)[1:3] == ["foo_add", "foo_mul"]      # foo.order, not by name
    assert result.stdout == written               # even the comment, for the same file name
    assert result.stderr == ""


def test_ifunc_and_versions_round_trip(build):
    vec = build.expvec("vers.c", "libvers.so.1", vscript=build.src("vers.vscript"))
    written = (build.path / vec).read_text()
    result = build.tool("recovervec", "-v", "libvers.so.1")
    assert slot_lines(result.stdout) == slot_lines(written) == [
        "__V_libvers_so_1", "plain@@V1", "sel@@V1", "ver@V1", "ver@@V2"]
    # sel is an IFUNC: its slot is an IPLT entry, found through R_X86_64_IRELATIVE.
    assert "slot 1: sel@@V1: IFUNC" in result.stderr


@pytest.mark.parametrize("cflags,ldflags", [
    (["-fcf-protection=full"], ["-Wl,-z,ibtplt"]),          # endbr64; bnd jmp *GOT
    ([], ["-Wl,-z,now"]),                                   # IRELATIVE in .rela.dyn
])
def test_ifunc_plt_variants(build, cflags, ldflags):
    vec = build.expvec("vers.c", "libvers.so.1", vscript=build.src("vers.vscript"),
                       cflags=cflags, ldflags=ldflags)
    result = build.tool("recovervec", "libvers.so.1")
    assert slot_lines(result.stdout) == slot_lines((build.path / vec).read_text())


def test_layouts_round_trip_and_output_file(build):
    vec = build.expvec("foo.c", "foo.so.5", incl="@" + build.src("foo.order"),
                       vscript=build.src("foo.vscript"))
    (build.path / "old.vec").write_text((build.path / vec).read_text())
    build.expvec("foo.c", "foo.so.5", incl="@old.vec", vscript=build.src("foo.vscript"),
                 cflags=["-DFOO_V2"], rebuild=True)
    written = (build.path / vec).read_text()
    assert "#@layouts 9 10" in written
    result = build.tool("recovervec", "foo.so.5", "-o", "recovered.vec")
    assert result.stdout == ""
    assert (build.path / "recovered.vec").read_text() == written


def test_retrovec_round_trip(build):
    vec = build.expvec("vers.c", "libvers.so.1", vscript=build.src("vers.vscript"))
    stock = build.stock_lib("vers.c", "libvers.so.1",
                            ldflags=[f"-Wl,--version-script={build.src('vers.vscript')}"])
    build.tool("retrovec", "-o", "retro.so", vec, stock / "libvers.so.1")
    result = build.tool("recovervec", "retro.so")
    assert slot_lines(result.stdout) == slot_lines((build.path / vec).read_text())


class _Memory:
    """Stands for an ElfFile of ``arch``: ``read`` from ``code`` loaded at ``address``."""

    def __init__(self, address, code, arch="x86_64"):
        self.address, self.code, self.arch = address, code, arch

    def read(self, address, size):
        start = address - self.address
        return self.code[start:start + size] if 0 <= start < len(self.code) else b""


@pytest.mark.parametrize("prefix", [b"", b"\xf2", b"\xf3\x0f\x1e\xfa", b"\xf3\x0f\x1e\xfa\xf2"])
def test_iplt_entry_forms(prefix):
    """[endbr64] [bnd] jmp *GOT(%rip): the GOT word's IRELATIVE addend is the resolver
    (GNU ld no longer writes bnd, older libraries have it)."""
    entry, got = 0x1050, 0x4000
    end = entry + len(prefix) + 6
    code = prefix + b"\xff\x25" + struct.pack("<i", got - end) + b"\x66\x90"
    assert _iplt_resolver(_Memory(entry, code), entry, {got: 0x1130}) == 0x1130
    assert _iplt_resolver(_Memory(entry, code), entry, {got + 8: 0x1130}) is None
    not_a_jump = prefix + b"\xff\x15" + struct.pack("<i", got - end)     # call *GOT
    assert _iplt_resolver(_Memory(entry, not_a_jump), entry, {got: 0x1130}) is None



def _aarch64(text, at):
    import keystone
    ks = keystone.Ks(keystone.KS_ARCH_ARM64, keystone.KS_MODE_LITTLE_ENDIAN)
    return bytes(ks.asm(text, at)[0])


AARCH64_ENTRY = "adrp x16, 0x20000; ldr x17, [x16, #0x28]; add x16, x16, #0x28; {pac}br x17"


@pytest.mark.parametrize("form", ["standard", "bti", "pac", "bti+pac", "ours"])
def test_aarch64_iplt_entry_forms(form):
    """ld's PLT/IPLT entries, standard, BTI (``bti c`` first) and PAC
    (``autia1716`` before ``br``), and retrovec's stub: the word at
    page + ``ldr`` offset is the GOT word whose IRELATIVE names the resolver."""
    from elfvector.arch import aarch64
    entry, got = 0x1050, 0x20028
    if form == "ours":
        code = aarch64.iplt_stub(entry, got)
    else:
        start = aarch64.BTI_C + "; " if "bti" in form else ""
        code = _aarch64(start + AARCH64_ENTRY.format(pac="hint #12; " if "pac" in form else ""),
                        entry)
    memory = _Memory(entry, code, "aarch64")
    assert _iplt_resolver(memory, entry, {got: 0x1130}) == 0x1130
    assert _iplt_resolver(memory, entry, {got + 8: 0x1130}) is None


@pytest.mark.parametrize("text", ["adrp x16, 0x20000; ldr x17, [x16, #0x28]; blr x17",
                                  "adrp x16, 0x20000; ldr x17, [x15, #0x28]; br x17",
                                  "adrp x16, 0x20000; ldr x17, [x16, #0x28]; br x16",
                                  "hint #12; adrp x16, 0x20000; ldr x17, [x16, #0x28]; br x17"])
def test_aarch64_other_code_is_no_iplt_entry(text):
    from elfvector.arch import aarch64
    assert aarch64.indirect_jump_target(_aarch64(text, 0x1050), 0x1050) is None


@pytest.mark.parametrize("form", ["jmp *ADDR", "endbr32; bnd jmp *ADDR", "ours"])
def test_i386_iplt_entry_forms(form):
    """A non-PIC PLT/IPLT entry (with ``-fcf-protection``: ``endbr32``, old
    ones ``bnd``) and retrovec's stub, which finds its GOT word from its
    own address; a PIC entry depends on the caller's %ebx: not decoded."""
    from elfvector.arch import i386
    entry, got = 0x1050, 0x4000
    code = {"jmp *ADDR": b"\xff\x25" + struct.pack("<I", got),
            "endbr32; bnd jmp *ADDR": i386.ENDBR32 + b"\xf2\xff\x25" + struct.pack("<I", got),
            "ours": i386.iplt_stub(entry, got)}[form]
    memory = _Memory(entry, code, "i386")
    assert _iplt_resolver(memory, entry, {got: 0x1130}) == 0x1130
    assert _iplt_resolver(_Memory(entry, code[:-8] if form == "ours" else code[:-1], "i386"),
                          entry, {got: 0x1130}) is None
    pic = b"\xff\xa3" + struct.pack("<i", 0xC)                  # jmp *0xc(%ebx)
    assert i386.indirect_jump_target(pic, entry) is None


def test_post_link_entry_points_have_landing_pads():
    """Every routine ld.so or another module calls indirectly starts with
    ``endbr32`` (i386) or ``bti c`` (AArch64), and decodes to the end."""
    import capstone
    from elfvector.arch import aarch64, i386
    cases = [(i386, capstone.CS_ARCH_X86, capstone.CS_MODE_32, "endbr32"),
             (aarch64, capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM, "bti")]
    for module, arch, mode, pad in cases:
        cs = capstone.Cs(arch, mode)
        extra = () if module is aarch64 else (0x1234,)
        for code in (module.iplt_stub(0x10000, 0x30000), module.resolver_stub(0x10000, 7, 0x9000),
                     module.relvec_fixup(0x10000, 0x20000, 0x20040, 0x30000, *extra)):
            insns = list(cs.disasm(code, 0x10000))
            assert insns[0].mnemonic == pad
            assert sum(i.size for i in insns) == len(code), module.__name__


# -- aliases ------------------------------------------------------------------

def test_aliases_all_in_the_vector(build):
    written = expvec_inline(build, ALIASES, "libalias.so.1")
    assert slot_lines(written)[1:] == ["alias_add", "other", "real_add", "zz_add"]
    result = build.tool("recovervec", "libalias.so.1")
    assert result.stdout == written
    assert result.stderr == ""


def test_alias_chosen_by_the_layout_fingerprint(build):
    written = expvec_inline(build, ALIASES, "libalias.so.1", incl="^real_add$ ^other$")
    assert slot_lines(written)[1:] == ["real_add", "other"]
    result = build.tool("recovervec", "libalias.so.1")
    assert result.stdout == written               # not alias_add nor zz_add
    assert result.stderr == ""


def test_undecidable_aliases_are_reported(build):
    # 17 slots with two names each: 2**17 combinations, more than are tried.
    source = "".join(f"int a{i}(int x) {{ return x + {i}; }}\n"
                     f"int zlong_name_{i}(int) __attribute__((alias(\"a{i}\")));\n"
                     for i in range(17))
    written = expvec_inline(build, source, "libmany.so.1", incl="^zlong_name_")
    result = build.tool("recovervec", "libmany.so.1")
    lines = result.stderr.splitlines()
    reports = [line for line in lines if ": aliases " in line]
    assert len(reports) == 17
    assert "recovervec: libmany.so.1: slot 0: aliases a0, zlong_name_0; chose a0" in reports
    assert any("do not match __V_libmany_so_1__17_" in line for line in lines)
    order = [line.split("zlong_name_")[1] for line in slot_lines(written)[1:]]
    assert slot_lines(result.stdout)[1:] == [f"a{n}" for n in order]


# -- errors -------------------------------------------------------------------

def test_not_elf(build):
    (build.path / "junk.so").write_text("junk\n")
    line = assert_one_line_error(build.tool("recovervec", "junk.so", check=False),
                                 "junk.so", "not an ELF file")
    assert line.startswith("recovervec: junk.so: ")


def test_missing_file(build):
    assert_one_line_error(build.tool("recovervec", "gone.so", check=False), "gone.so")


def test_library_without_vector(build):
    stock = build.stock_lib("foo.c", "foo.so.5")
    result = build.tool("recovervec", stock / "foo.so.5", check=False)
    assert_one_line_error(result, "foo.so.5", "no export vector")


def test_slot_without_exported_function(build):
    build.expvec("foo.c", "foo.so.5", vscript=build.src("foo.vscript"))
    path = build.path / "foo.so.5"
    table, size = dynamic_symbol(path, "__V_foo_so_5")
    assert size == 4 * 9
    write_with_slot(path, table, 2, 0, build.path / "broken.so")   # slot 2 -> the table
    result = build.tool("recovervec", "broken.so", check=False)
    line = assert_one_line_error(result, "broken.so")
    assert line == f"recovervec: broken.so: slot 2: cannot recover " \
                   f"(no exported function at {table:#x})"


def test_slot_at_an_ifunc_resolver_is_not_the_ifunc(build):
    """Calling an IFUNC's resolver is not calling the IFUNC: only an IPLT entry is."""
    build.expvec("vers.c", "libvers.so.1", vscript=build.src("vers.vscript"))
    path = build.path / "libvers.so.1"
    table, _ = dynamic_symbol(path, "__V_libvers_so_1")
    resolver, _ = dynamic_symbol(path, "sel")
    write_with_slot(path, table, 1, resolver - table, build.path / "broken.so")  # sel@@V1
    result = build.tool("recovervec", "broken.so", check=False)
    line = assert_one_line_error(result, "broken.so")
    assert line == f"recovervec: broken.so: slot 1: cannot recover " \
                   f"(no exported function at {resolver:#x})"


def test_unexported_function_names_the_slot(build):
    """A library whose function is no longer exported (its .dynsym entry
    made hidden) keeps its table, but that slot cannot be named."""
    build.expvec("foo.c", "foo.so.5", incl="@" + build.src("foo.order"),
                 vscript=build.src("foo.vscript"))
    hidden = _hide_dynamic_symbol(build.path / "foo.so.5", "foo_mul")
    (build.path / "hidden.so").write_bytes(hidden)
    address, _ = dynamic_symbol(build.path / "foo.so.5", "foo_mul")
    result = build.tool("recovervec", "hidden.so", check=False)
    line = assert_one_line_error(result, "hidden.so")
    assert line == f"recovervec: hidden.so: slot 1: cannot recover " \
                   f"(no exported function at {address:#x})"


def test_table_contradicting_its_layout_symbol_is_an_error(build):
    """Two slots swapped: every slot still names a function, but not the
    layout the library's symbol pins, so programs built against it would
    call the wrong one.  That is an error, not a warning."""
    build.expvec("foo.c", "foo.so.5", incl="@" + build.src("foo.order"),
                 vscript=build.src("foo.vscript"))
    path = build.path / "foo.so.5"
    table, _ = dynamic_symbol(path, "__V_foo_so_5")
    at = file_offset(path, table)
    first, second = struct.unpack_from("<ii", path.read_bytes(), at)
    write_with_slot(path, table, 0, second, build.path / "swapped.so")
    write_with_slot(build.path / "swapped.so", table, 1, first, build.path / "swapped.so")
    result = build.tool("recovervec", "swapped.so", check=False)
    assert_one_line_error(result, "swapped.so", "contradicts its layout symbol __V_foo_so_5__9_",
                          "slots 0..8")


def write_with_slot(path, table, slot, offset, out):
    """Write a copy of library ``path`` whose table entry ``slot`` is ``offset``."""
    data = bytearray(path.read_bytes())
    at = file_offset(path, table) + 4 * slot
    data[at:at + 4] = offset.to_bytes(4, "little", signed=True)
    out.write_bytes(bytes(data))


def _hide_dynamic_symbol(path, name):
    """The bytes of ``path`` with ``name``'s .dynsym entry made STV_HIDDEN."""
    data = bytearray(path.read_bytes())
    sections = run(["readelf", "-SW", path], cwd=".").stdout
    m = re.search(r"\] \.dynsym +DYNSYM +[0-9a-f]+ ([0-9a-f]+) ([0-9a-f]+) 18", sections)
    offset, size = int(m.group(1), 16), int(m.group(2), 16)
    m = re.search(r"\] \.dynstr +STRTAB +[0-9a-f]+ ([0-9a-f]+)", sections)
    strtab = int(m.group(1), 16)
    for entry in range(offset, offset + size, 24):
        st_name = int.from_bytes(data[entry:entry + 4], "little")
        end = data.index(0, strtab + st_name)
        if data[strtab + st_name:end] == name.encode():
            data[entry + 5] = 2                             # st_other: STV_HIDDEN
            return bytes(data)
    raise AssertionError(f"{name} not in .dynsym of {path}")
