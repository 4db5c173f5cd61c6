"""The closure's refusals of malformed or unmovable inputs (issue 7's fuzz
found each as a crash or a leftover): one ``ElfvectorError`` naming the
user's file, and nothing written.

Each test builds the least the code under test reads (a table's bytes, a
library's program headers), so that it fails for the one reason it names.
"""

import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from conftest import missing

from elfvector import addrfile
from elfvector.closure.bases import assign_bases
from elfvector.closure.machine import OPERATION
from elfvector.closure.move import LINKER_DEFINED, SHN_ABS, Move
from elfvector.closure.symbols import DT_GNU_HASH, GnuHash
from elfvector.elfimage import ElfImage
from elfvector.errors import ElfvectorError

PT_LOAD = 1


@dataclass
class TableImage:
    """What GnuHash.of reads of an image: DT_GNU_HASH's bytes and .dynsym's count."""

    raw: bytes
    nsyms: int
    path: str = "libbent.so"
    layout: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(word=8))

    def dyn(self, tag):
        return 0x1000 if tag == DT_GNU_HASH else 0

    def dynsym_count(self):
        return self.nsyms

    def read(self, addr, size):
        return self.raw[addr - 0x1000:addr - 0x1000 + size].ljust(size, b"\0")


def gnu_hash_table(buckets, chains, symoffset=1):
    """A .gnu.hash of one bloom word and ``buckets``, then ``chains``."""
    return (struct.pack("<IIII", len(buckets), symoffset, 1, 6) + struct.pack("<Q", 2**64 - 1)
            + struct.pack(f"<{len(buckets)}I", *buckets)
            + struct.pack(f"<{len(chains)}I", *chains))


def test_a_well_formed_gnu_hash_is_read():
    table = GnuHash.of(TableImage(gnu_hash_table([1, 3], [2, 5, 6, 9]), nsyms=5))
    assert table.chain_end(table.last) == 4


@pytest.mark.parametrize("buckets, chains", [
    ([1, 3], [2, 5, 6, 8]),         # the last chain has no end bit: was an IndexError
    ([1, 0], [2, 4, 6, 8]),         # no chain ends at all
])
def test_an_unterminated_last_chain_is_refused_naming_the_file(buckets, chains):
    with pytest.raises(ElfvectorError, match="malformed .gnu.hash") as caught:
        GnuHash.of(TableImage(gnu_hash_table(buckets, chains), nsyms=5))
    assert caught.value.path == "libbent.so"


def test_a_chain_starting_below_symoffset_is_refused():
    with pytest.raises(ElfvectorError, match="malformed .gnu.hash"):
        GnuHash.of(TableImage(gnu_hash_table([0, 0, 2], [1, 1, 1, 1], symoffset=3),
                              nsyms=7))


def test_a_32_bit_entry_moved_past_4_gib_is_refused():
    image = SimpleNamespace(layout=SimpleNamespace(word=4), path="libbent.so")
    data = bytearray(52)
    struct.pack_into("<I", data, 24, 0xFFFFF000)
    with pytest.raises(ElfvectorError, match="e_entry 0xfffff000") as caught:
        Move(image, 0x41000000).entry(SimpleNamespace(data=data))
    assert caught.value.path == "libbent.so"
    assert struct.unpack_from("<I", data, 24)[0] == 0xFFFFF000


def library(path, soname):
    return SimpleNamespace(
        path=path, soname=soname,
        machine=SimpleNamespace(name="x86_64", address_end=1 << 47),
        image=SimpleNamespace(phdrs=[SimpleNamespace(type=PT_LOAD, vaddr=0, memsz=0x5000)]))


@pytest.mark.parametrize("soname", ["lib\udcffx.so.1", "lib x.so", "lib#x.so", "lib\nx.so"])
def test_a_soname_no_addrfile_line_can_hold_is_refused_naming_the_library(tmp_path, soname):
    addrs = tmp_path / "addrs"
    options = SimpleNamespace(addrfile=str(addrs), seed=1)
    with pytest.raises(ElfvectorError, match="cannot name it in an addrfile") as caught:
        with assign_bases([library("/x/libx.so", soname)], options):
            pass
    assert caught.value.path == "/x/libx.so"
    assert "\n" not in str(caught.value)
    assert not addrs.exists()


def test_the_addrfile_is_written_only_when_the_run_records_its_bases(tmp_path):
    addrs = tmp_path / "addrs"
    options = SimpleNamespace(addrfile=str(addrs), seed=1)
    with pytest.raises(RuntimeError):
        with assign_bases([library("/x/liba.so", "liba.so.1")], options):
            raise RuntimeError("a later refusal")
    assert not addrs.exists()
    with assign_bases([library("/x/liba.so", "liba.so.1"), library("/x/libb.so", "libb.so.1")],
                      options) as (bases, _, record):
        record()
    assert [(a.base, a.soname) for a in addrfile.read(str(addrs))] == [
        (bases["/x/liba.so"], "liba.so.1"), (bases["/x/libb.so"], "libb.so.1")]


def test_gnu_ld_s_absolute_aarch64_dynamic_and_got_move_with_their_sections(tmp_path):
    """GNU ld makes AArch64's ``_DYNAMIC`` and ``_GLOBAL_OFFSET_TABLE_`` SHN_ABS:
    left behind, elflint finds them off ``.dynamic`` and ``.got`` in every
    moved AArch64 library (fuzz: lib-aarch64-ehdr-e_entry_huge)."""
    compiler = "aarch64-linux-gnu-gcc"
    if shutil.which(compiler) is None:
        missing(compiler, "the Debian package gcc-aarch64-linux-gnu")
    (tmp_path / "a.c").write_text("extern int g; int f(void) { return g; }\n")
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(tmp_path / "liba.so"),
                    str(tmp_path / "a.c")], check=True)
    data = (tmp_path / "liba.so").read_bytes()
    image = ElfImage(data, "liba.so", OPERATION)
    before = {n: s for n, s in image.static_symbols() if n in LINKER_DEFINED}
    assert {s.shndx for s in before.values()} == {SHN_ABS}
    out = SimpleNamespace(data=bytearray(data))
    Move(image, 0x10000000).symtab(out)
    after = dict(ElfImage(bytes(out.data), "liba.so", OPERATION).static_symbols())
    assert {n: after[n].value for n in before} == {
        n: s.value + 0x10000000 for n, s in before.items()}
