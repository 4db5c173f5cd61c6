"""x86-64 code of the closure rewrite, in three parts:

* :mod:`.plt`: **PLT decoding and the IFUNC stub.**  What the rewrite reads
  in GNU ld's PLT (which GOT word an entry jumps through, its dead lazy
  tail, the push of a slot that stays lazy) and the 10-byte stub it writes
  there for a slot bound to another library's IFUNC.
* :mod:`.fixup`: **the fix-up routine**, run by ld.so as the first
  ``R_X86_64_IRELATIVE`` of an object: it corrects the settled words when
  an object is not where they were settled for, and in a program runs the
  preload check.  Readable Intel-syntax assembly, and the layout of the
  data it reads.
* :mod:`.asm`: **a small assembler** that lays one routine out over
  several regions of dead bytes, joined by jumps.

This module holds the encodings the three share.
"""

ENDBR64 = bytes.fromhex("f30f1efa")


def rel32(source_end, target):
    """The 4 bytes of a displacement from ``source_end`` (the end of the
    instruction) to ``target``; an error when it does not fit."""
    disp = target - source_end
    if not -(1 << 31) <= disp < (1 << 31):
        raise ValueError(f"rel32 displacement {disp:#x} out of range")
    return disp.to_bytes(4, "little", signed=True)
