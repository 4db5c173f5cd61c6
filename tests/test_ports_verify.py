"""``vectool --mode=retro --verify`` on i386 and AArch64: the oracle finds
a settled word the plan did not write.  Debian's bzip2 of each port's
sysroot (:mod:`ports`) is rewritten with its closure, then one word of
libbz2 that the plan settled to libc is changed behind its back: --verify
(natively on i386, under ``qemu-aarch64 -g`` and ``gdb-multiarch`` on
AArch64) reports that word, in that file, and nothing else.
"""

import re
import shutil
from pathlib import Path

import pytest

from conftest import require_programs
from ports import AARCH64, port, sysroot, sysroot_of  # noqa: F401 (fixtures)
from elfvector.closure.driver import RetroOptions, retro
from elfvector.closure.machine import OPERATION
from elfvector.closure.model import RELA_DYN, Settle
from elfvector.closure.verify import VerifyError, verify
from elfvector.elfimage import ElfImage

DEBUGGERS = {"i386": ("gdb",), "aarch64": ("gdb-multiarch", "qemu-aarch64")}


def corrupt_a_settled_word(result, soname):
    """Flip bit 4 of a word of ``soname`` settled to another object: its
    output file and the word's address there."""
    plan = result.plan
    i, obj = next((i, o) for i, o in enumerate(plan.objects) if o.soname == soname)
    elf = result.closure.objects[i]
    n = next(n for (table, n), d in sorted(obj.decisions.items())
             if table == RELA_DYN and isinstance(d, Settle) and d.target.obj != i)
    word = elf.rela_dyn[n][0] - obj.old_base + obj.new_base
    output = Path(obj.output)
    data = bytearray(output.read_bytes())
    data[ElfImage(bytes(data), obj.output, OPERATION).offset_of(word)] ^= 0x10
    output.write_bytes(bytes(data))
    return output, word, n


def test_verify_reports_a_wrong_word(port, sysroot, tmp_path):
    require_programs(*DEBUGGERS[port.name])
    options = RetroOptions(outdir=str(tmp_path / "out"), addrfile=str(tmp_path / "addrs"),
                           seed=5, root=str(sysroot))
    result = retro([Path(sysroot) / "bin/bzip2"], options)
    assert verify(result.closure, result.plan).failures == []
    output, word, n = corrupt_a_settled_word(result, "libbz2.so.1.0")
    verified = verify(result.closure, result.plan)
    assert verified.settled > 1000 and len(verified.failures) == 1
    found = re.fullmatch(rf"{re.escape(str(output))}: word {word:#x} \(rela.dyn #{n}, "
                         r"Settle\) holds (0x[0-9a-f]+) where ld.so gives the stock program "
                         r"(0x[0-9a-f]+)", str(verified.failures[0]))
    assert found, verified.failures[0]
    assert int(found.group(1), 16) ^ int(found.group(2), 16) == 0x10


def test_without_gdb_multiarch_aarch64_is_refused(sysroot_of, tmp_path, monkeypatch):
    """No gdb-multiarch on PATH (qemu-aarch64 there): refused in one line
    naming the package, before any program starts."""
    require_programs("qemu-aarch64")
    root = sysroot_of(AARCH64)
    result = retro([Path(root) / "bin/bzip2"],
                   RetroOptions(outdir=str(tmp_path / "out"), addrfile=str(tmp_path / "addrs"),
                                seed=5, root=str(root)))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "qemu-aarch64").symlink_to(shutil.which("qemu-aarch64"))
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(VerifyError) as refused:
        verify(result.closure, result.plan)
    assert str(refused.value) == f"{Path(root) / 'bin/bzip2'}: --verify runs AArch64 " \
        "programs under qemu-aarch64 and gdb-multiarch: install the Debian package gdb-multiarch"
