"""AArch64 code of the closure rewrite, beside :mod:`..x86_64`'s and with the same names:

* :mod:`.plt`: **PLT decoding** (GNU ld's ``adrp x16; ldr x17, [x16, #lo];
  add x16; br x17`` entries, with ``bti c`` and PAC's ``autia1716`` in the
  BTI form) and the stub of a slot bound to another library's IFUNC;
* :mod:`.fixup`: **the fix-up routine**, run by ld.so as the first
  ``R_AARCH64_IRELATIVE`` of an object, and a program's preload check
  (:mod:`.preload`);
* :mod:`.asm`: the routine assembled by keystone where it goes, one block
  (every instruction is 4 bytes; capstone reads it back).

Every piece called indirectly starts with ``bti c`` (``hint #34``, which
keystone 0.9.2 does not know by name): ld.so maps the text of an object
marked for BTI with ``PROT_BTI``.  Nothing here writes code at run time, so
no instruction-cache maintenance is needed.
"""

BTI_C = "hint #34"
