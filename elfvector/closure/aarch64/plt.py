"""AArch64 PLT decoding, and the stub of a slot bound to another library's IFUNC.

GNU ld's entries (binutils ``elfnn-aarch64.c``)::

    PLT0        (bti c)? stp x16, x30, [sp, #-16]!; adrp x16; ldr x17; add x16; br x17; nop...
    .plt        (bti c)? adrp x16, PAGE(slot); ldr x17, [x16, #lo12]; add x16, x16, #lo12;
                (autia1716)? br x17 (nop)?

An entry loads its GOT word into x17, and x16 holds the word's address
(ld.so's lazy resolver finds the relocation from it, not from a pushed
index: a slot cannot be renumbered, so the rewrite keeps no JUMP_SLOT
lazy on AArch64, :func:`lazy_push` is None).  No byte of an entry is dead;
PLT0 is, with nothing lazy.  The stub of a slot bound to another library's
IFUNC (:func:`foreign_stub`) is ``bti c; adrp x16; ldr x16, [x16, #lo12];
br x16`` through the settled word, in the executable segment's last page.
capstone decodes the entries.
"""

import re

import capstone
import keystone

from .. import plt as common
from . import BTI_C

PLT0_SIZE = 32
FOREIGN_STUB_SIZE = 16
PUSH_SCALE = 1
STUB_THROUGH_CHECK = False
STUB_NEEDS_ENTRY = False
CODE_ALIGN = 4
_ADRP = re.compile(r"x16, #(0x[0-9a-f]+|\d+)$")
_LDR = re.compile(r"x17, \[x16(?:, #(0x[0-9a-f]+|\d+))?\]$")


def plt_entries(sections, got=None):
    """Every PLT entry of ``sections`` ({name: (address, bytes, entsize)}):
    ``{word: PltEntry}``, each an ``adrp x16`` followed by ``ldr x17, [x16,
    #lo12]``."""
    if ".plt" not in sections:
        return {}
    address, code, _ = sections[".plt"]
    md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    insns = list(md.disasm(code[PLT0_SIZE:], address + PLT0_SIZE))
    entries = {}
    for first, second in zip(insns, insns[1:]):
        page = _ADRP.match(first.op_str) if first.mnemonic == "adrp" else None
        load = _LDR.match(second.op_str) if second.mnemonic == "ldr" else None
        if page and load:
            word = int(page.group(1), 0) + int(load.group(1) or "0", 0)
            entries.setdefault(word, common.PltEntry(first.address, word, ".plt"))
    return entries


def dead_plt(sections):
    """(address, size) of PLT0, dead as no slot stays lazy here."""
    return common.dead_plt(sections, PLT0_SIZE)


def lazy_push(sections, target):
    """None: an AArch64 slot is found by its GOT word's address, not renumbered."""
    return None


def lazy_bytes(sections, target=None):
    """Never called: no JUMP_SLOT stays lazy on AArch64 (:func:`lazy_push`)."""
    raise AssertionError("no JUMP_SLOT stays lazy on AArch64")


plt0 = lazy_bytes


def foreign_stub(at, word):
    """``bti c; adrp x16, word; ldr x16, [x16, #lo12]; br x16``: the resolver an
    IRELATIVE calls (through ``blr``) for a slot bound to another library's
    IFUNC, whose resolver's address the settled word holds."""
    text = (f"{BTI_C}\nadrp x16, {word & ~0xFFF:#x}\nldr x16, [x16, #{word & 0xFFF:#x}]\n"
            "br x16")
    encoding, _ = keystone.Ks(keystone.KS_ARCH_ARM64, keystone.KS_MODE_LITTLE_ENDIAN).asm(
        text, at)
    code = bytes(encoding)
    if len(code) != FOREIGN_STUB_SIZE:
        raise ValueError(f"the IFUNC stub assembled to {len(code)} bytes")
    return code
