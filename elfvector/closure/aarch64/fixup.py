"""The fix-up routine of the closure rewrite (AArch64), and the layout of its data.

The routine of :mod:`..x86_64.fixup` in AArch64 code, with the same data
(words of 8 bytes): ld.so runs it as the first ``R_AARCH64_IRELATIVE`` of
an object (``elf_dynamic_do_Rela`` defers IRELATIVEs on every
architecture), a normal call: x0-x17 are free, x18 (the platform register)
is not touched, x19-x28 are kept.  x9 holds the data's run-time address,
x10 the load bias.
"""

from . import BTI_C
from ..fixup import DataLayout, routine_lines
from .preload import preload_lines

#: the fix-up data, read through x9 = its run-time address
DATA = DataLayout(8)


def fixup_lines(preload=None):
    """The fix-up routine, as assembly lines (see :mod:`.asm` for the
    pseudo-instructions): every entry whose word moved has its RELR list
    walked; a program runs the preload check; the routine returns the
    corrected value of its IRELATIVE's word."""
    walk = [
        BTI_C,                                    # ld.so calls us with blr
        "stp x29, x30, [sp, #-16]!",
        "mov x29, sp",
        "adr_data x9",
        f"ldr x10, [x9, #{DATA.header_self}]",
        "sub x10, x9, x10",                       # the load bias
        f"ldr x11, [x9, #{DATA.header_end}]",
        "add x11, x11, x10",
        f"add x12, x9, #{DATA.header_size}",
        "ev_test:",
        "cmp x12, x11",
        "b.hs ev_done",
        "ldr x13, [x12]",
        "ldr x14, [x13, x10]",
        "ldr x15, [x12, #8]",
        "subs x14, x14, x15",                     # how far that object moved
        "b.eq ev_next",
        "ldr x15, [x12, #16]",
        "add x15, x15, x10",
        "ldr x16, [x12, #24]",
        "add x16, x16, x10",
        "bl ev_relr",
        "ev_next:",
        f"add x12, x12, #{DATA.entry_size}",
        "b ev_test",
        "ev_done:",
    ]
    epilogue = [
        f"ldr x0, [x9, #{DATA.header_result}]",
        "ldr x0, [x0, x10]",
        "ldp x29, x30, [sp], #16",
        "ret",
    ]
    return routine_lines(walk, ["bl ev_preload"], epilogue, _relr_lines(), preload,
                         preload_lines)


def _relr_lines():
    """Add x14 to every word the RELR list [x15, x16) names (link-time
    addresses; the words are at address + x10).  Clobbers x1 x2 x3 x15 x17."""
    return [
        "ev_relr:",
        "cmp x15, x16",
        "b.hs ev_relr_done",
        "ldr x17, [x15], #8",
        "tbnz x17, #0, ev_relr_bitmap",
        "add x1, x17, x10",
        "ldr x2, [x1]",
        "add x2, x2, x14",
        "str x2, [x1]",
        "add x1, x1, #8",                         # the next bitmap's first word
        "b ev_relr",
        "ev_relr_bitmap:",
        "lsr x17, x17, #1",                       # drop the tag bit
        "mov x3, x1",
        "ev_relr_bit:",
        "tbz x17, #0, ev_relr_skip",
        "ldr x2, [x3]",
        "add x2, x2, x14",
        "str x2, [x3]",
        "ev_relr_skip:",
        "add x3, x3, #8",
        "lsr x17, x17, #1",
        "cbnz x17, ev_relr_bit",
        f"add x1, x1, #{DATA.relr_bits * DATA.word}",
        "b ev_relr",
        "ev_relr_done:",
        "ret",
    ]
