"""The fix-up routine of the closure rewrite (i386), and the layout of its data.

The same routine as :mod:`..x86_64.fixup`, in 32-bit code: ld.so runs it
as the first ``R_386_IRELATIVE`` of an object (glibc's
``elf_dynamic_do_Rel`` defers IRELATIVEs to the end of the table, as
``elf_dynamic_do_Rela`` does), after every other relocation and before any
of the object's code.  Two things differ on i386:

* there is no PC-relative operand: the data's run-time address comes from
  a call to ``ev_pc`` (``mov ebp, [esp]; ret``) plus a displacement;
* a REL ``R_386_IRELATIVE`` finds its resolver's address in the word it
  writes (``value = l_addr + *word``), so the routine's IRELATIVE targets a
  word of its own holding the routine's address in the file, which the
  routine's return value then overwrites: it returns 0, the value of that
  word (a dead ``.got.plt`` header word, or a weak reference nothing
  defines) in a stock process.
"""

from ..fixup import DataLayout, routine_lines
from .preload import preload_lines

#: the fix-up data, read through %ebp = its run-time address; its result
#: word is unused on i386 (see the module docstring)
DATA = DataLayout(4)


def fixup_lines(preload=None):
    """The fix-up routine, as assembly lines.

    %ebx, %esi, %edi and %ebp are callee-saved (i386 psABI); ld.so passes no
    argument.  %ebp is the data's run-time address, %edi the load bias;
    each entry whose word moved has its RELR list walked (:func:`_relr_lines`);
    then a program runs the preload check; the routine returns 0."""
    walk = [
        "endbr32",                                # ld.so calls us indirectly
        "push ebx", "push esi", "push edi", "push ebp",
        "lea ebp, [eip + DATA]",
        "mov edi, ebp",
        f"sub edi, dword ptr [ebp + {DATA.header_self:#x}]",    # the load bias
        f"lea ebx, [ebp + {DATA.header_size:#x}]",
        f"mov eax, dword ptr [ebp + {DATA.header_end:#x}]",
        "add eax, edi",
        "push eax",                               # [esp]: the end of the entries
        "jmp ev_test",
        "ev_entry:",
        "mov eax, dword ptr [ebx]",
        "mov edx, dword ptr [eax + edi]",
        "sub edx, dword ptr [ebx + 4]",           # how far that object moved
        "jz ev_next",
        "mov esi, dword ptr [ebx + 8]",
        "add esi, edi",
        "mov ecx, dword ptr [ebx + 0xc]",
        "add ecx, edi",
        "call ev_relr",
        "ev_next:",
        f"add ebx, {DATA.entry_size:#x}",
        "ev_test:",
        "cmp ebx, dword ptr [esp]",
        "jb ev_entry",
        "pop eax",
    ]
    epilogue = [
        "xor eax, eax",
        "pop ebp", "pop edi", "pop esi", "pop ebx",
        "ret",
        "ev_pc:",
        "mov ebp, dword ptr [esp]",
        "ret",
    ]
    return routine_lines(walk, ["call ev_preload"], epilogue, _relr_lines(), preload,
                         preload_lines)


def _relr_lines():
    """Add %edx to every word the RELR list [%esi, %ecx) names (link-time
    addresses; the words are at address + %edi).  An even entry is a
    word's address, the next bitmap starts at the word after it; an odd
    entry is a bitmap whose bit ``i`` (after the tag bit) marks the word
    ``base + 4*i``, the next base 31 words on.  Clobbers eax esi."""
    return [
        "ev_relr:",
        "push ebx", "push ebp",
        "ev_relr_entry:",
        "cmp esi, ecx",
        "jae ev_relr_done",
        "lodsd",
        "test al, 1",
        "jnz ev_relr_bitmap",
        "lea ebx, [eax + edi]",
        "add dword ptr [ebx], edx",
        "add ebx, 4",                             # the next bitmap's first word
        "jmp ev_relr_entry",
        "ev_relr_bitmap:",
        "shr eax, 1",                             # drop the tag bit
        "mov ebp, ebx",
        "ev_relr_bit:",
        "shr eax, 1",                             # CF = this word's bit
        "jnc ev_relr_skip",
        "add dword ptr [ebp], edx",
        "ev_relr_skip:",
        "add ebp, 4",
        "test eax, eax",
        "jnz ev_relr_bit",
        f"add ebx, {DATA.relr_bits * DATA.word:#x}",
        "jmp ev_relr_entry",
        "ev_relr_done:",
        "pop ebp", "pop ebx",
        "ret",
    ]
