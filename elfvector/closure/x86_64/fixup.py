"""The fix-up routine of the closure rewrite (x86-64), and the layout of its data.

ld.so runs it as the first ``R_X86_64_IRELATIVE`` of an object, after every
other relocation of the object and before any of its code runs (glibc
``elf_dynamic_do_Rela`` defers IRELATIVEs to the end of the table, in
order).  It corrects the settled words when an object is not where they
were settled for, and in a program runs the preload check
(:mod:`.preload`).  It is written as readable Intel-syntax assembly
(:func:`fixup_lines`), which :class:`.asm.Routine` encodes and lays out
over dead bytes.
"""

from ..fixup import DataLayout, routine_lines
from .preload import preload_lines

#: the fix-up data, read through %r11 = its run-time address
DATA = DataLayout(8)


def fixup_lines(preload=None):
    """The fix-up routine, as assembly lines.

    ld.so calls it with no arguments (a normal call: %rbx, %rbp, %r12-%r15
    are preserved, the rest are free); %r11 is the data's run-time address,
    %r10 the load bias.  For each entry whose word moved, the RELR walk
    (:func:`_relr_lines`) adds the displacement to the listed words; then
    a program runs the preload check (:func:`.preload.preload_lines`); the routine
    returns the corrected value of the result word, which its IRELATIVE
    stores there again.  Every object at its base costs about 6
    instructions an entry.
    """
    walk = [
        "endbr64",                                # ld.so calls us indirectly
        "lea r11, [rip + DATA]",
        "mov r10, r11",
        f"sub r10, qword ptr [r11 + {DATA.header_self:#x}]",    # the load bias
        "push rbx",
        f"lea rbx, [r11 + {DATA.header_size:#x}]",
        f"mov r9, qword ptr [r11 + {DATA.header_end:#x}]",
        "add r9, r10",
        "jmp ev_test",
        "ev_entry:",
        "mov rax, qword ptr [rbx]",
        "mov rdx, qword ptr [rax + r10]",
        "sub rdx, qword ptr [rbx + 8]",          # how far that object moved
        "jz ev_next",
        "mov rsi, qword ptr [rbx + 0x10]",
        "add rsi, r10",
        "mov rdi, qword ptr [rbx + 0x18]",
        "add rdi, r10",
        "call ev_relr",
        "ev_next:",
        f"add rbx, {DATA.entry_size:#x}",
        "ev_test:",
        "cmp rbx, r9",
        "jb ev_entry",
    ]
    epilogue = [
        f"mov rax, qword ptr [r11 + {DATA.header_result:#x}]",
        "mov rax, qword ptr [rax + r10]",
        "pop rbx",
        "ret",
    ]
    return routine_lines(walk, ["call ev_preload", "lea r11, [rip + DATA]"], epilogue,
                         _relr_lines(), preload, preload_lines)


def _relr_lines():
    """Add %rdx to every word the RELR list [%rsi, %rdi) names (link-time
    addresses; the words are at address + %r10).  An even entry is a word's
    address, the next bitmap starts at the word after it; an odd entry is a
    bitmap whose bit ``i`` (after the tag bit) marks the word ``base + 8*i``,
    the next base 63 words on.  Clobbers rax rcx rsi r8 (DF is clear: psABI)."""
    return [
        "ev_relr:",
        "cmp rsi, rdi",
        "jae ev_relr_done",
        "lodsq",
        "test al, 1",
        "jnz ev_relr_bitmap",
        "lea rcx, [rax + r10]",
        "add qword ptr [rcx], rdx",
        "add rcx, 8",                             # the next bitmap's first word
        "jmp ev_relr",
        "ev_relr_bitmap:",
        "shr rax, 1",                             # drop the tag bit
        "mov r8, rcx",
        "ev_relr_bit:",
        "shr rax, 1",                             # CF = this word's bit
        "jnc ev_relr_skip",
        "add qword ptr [r8], rdx",
        "ev_relr_skip:",
        "add r8, 8",
        "test rax, rax",
        "jnz ev_relr_bit",
        f"add rcx, {DATA.relr_bits * DATA.word:#x}",
        "jmp ev_relr",
        "ev_relr_done:",
        "ret",
    ]
