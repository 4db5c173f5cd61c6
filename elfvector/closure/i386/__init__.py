"""i386 code of the closure rewrite, beside :mod:`..x86_64`'s and with the same names:

* :mod:`.plt`: **PLT decoding**: which GOT word an entry of GNU ld's i386
  PLT jumps through (``%ebx``-relative in PIC code, absolute otherwise,
  ``.plt.sec`` with ``-fcf-protection``), its dead lazy tail, the push of a
  slot that stays lazy.
* :mod:`.fixup`: **the fix-up routine**, 32-bit assembly run by ld.so as
  the first ``R_386_IRELATIVE`` of an object; and a program's preload
  check (:mod:`.preload`).

The 32-bit code is laid out by the x86-64 package's assembler
(:class:`..x86_64.asm.Routine` with ``bits=32``): the branch encodings are
the same, and keystone assembles the rest.
"""

ENDBR32 = bytes.fromhex("f30f1efb")
