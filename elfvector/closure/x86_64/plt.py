"""x86-64 PLT decoding, and the stub written into a dead lazy tail.

A pre-bound JUMP_SLOT bound to another library's IFUNC becomes an
``R_X86_64_IRELATIVE`` whose resolver is a stub in the dead lazy part of
the PLT entry that jumps through the word.  GNU ld's entries (binutils
``elfxx-x86.c``, ``elf64-x86-64.c``)::

    .plt (lazy)   ff 25 <disp32>  68 <index>  e9 <plt0>      16 bytes
    .plt (IBT)    f3 0f 1e fa  68 <index>  f2? e9 <plt0> ... 16 bytes, all dead
    .plt.sec      f3 0f 1e fa  f2? ff 25 <disp32> nop...     16 bytes
    .plt.got      (f3 0f 1e fa)? ff 25 <disp32> nop...       8 or 16 bytes

A settled GOT word never points back into the PLT, so the lazy part of a
settled slot's entry is free for code; so is PLT0 when no slot stays lazy
(:func:`lazy_push`: the kept JUMP_SLOTs keep a ``DT_JMPREL`` of their own,
renumbered).  The stub (:func:`foreign_stub`) is ``endbr64; jmp
*word(%rip)``.
"""

from .. import plt as common
from . import ENDBR64, rel32

FOREIGN_STUB_SIZE = 10
#: the lazy push's operand is the slot's index in DT_JMPREL
PUSH_SCALE = 1
#: the stub jumps through the slot's word (the settled resolver address)
STUB_THROUGH_CHECK = False
#: the stub goes in the slot's PLT entry's dead lazy tail
STUB_NEEDS_ENTRY = True
CODE_ALIGN = 2

#: ``jmp *disp32(%rip)`` forms at the start of a PLT entry
_JUMPS = (bytes.fromhex("ff25"), bytes.fromhex("f2ff25"), ENDBR64 + bytes.fromhex("ff25"),
          ENDBR64 + bytes.fromhex("f2ff25"))


def decode_jump(code, address):
    """The GOT word that ``code`` (a PLT entry at ``address``) jumps through, or None."""
    for prefix in _JUMPS:
        if code.startswith(prefix) and len(code) >= len(prefix) + 4:
            end = len(prefix) + 4
            return address + end + int.from_bytes(code[len(prefix):end], "little", signed=True)
    return None


def plt_entries(sections, got=None):
    """Every PLT entry of ``sections``: ``{name: (address, bytes, entsize)}``
    for ``.plt``, ``.plt.sec``, ``.plt.got``.  Returns ``{word: PltEntry}``
    (``got``, DT_PLTGOT, is for the architectures whose PIC PLT is relative
    to it; x86-64's is PC-relative)."""
    return common.scan(sections, _first, _step, decode_jump)


def _first(name):
    return common.X86_PLT_ENTRY if name == ".plt" else 0          # past PLT0


def _step(name, entsize):
    return entsize or common.X86_PLT_ENTRY


def dead_plt(sections):
    """:func:`..plt.dead_plt`: the whole ``.plt`` of an IBT layout, else PLT0."""
    return common.dead_plt(sections, common.X86_PLT_ENTRY)


def lazy_push(sections, target):
    """:func:`..plt.lazy_push` of ``(endbr64)? push $index; (bnd)? jmp PLT0``."""
    return common.lazy_push(sections, target, ENDBR64, PUSH_SCALE)


lazy_bytes, plt0 = common.lazy_bytes, common.plt0


def foreign_stub(at, word):
    """``endbr64; jmp *word(%rip)``: the resolver an IRELATIVE calls (indirectly,
    hence ``endbr64``) for a slot bound to another library's IFUNC: it
    jumps to that IFUNC's resolver, whose address the settled word holds."""
    return ENDBR64 + b"\xff\x25" + rel32(at + FOREIGN_STUB_SIZE, word)

