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

from dataclasses import dataclass

from . import ENDBR64, rel32

PLT_ENTRY = 16
FOREIGN_STUB_SIZE = 10
#: the lazy push's operand is the slot's index in DT_JMPREL
PUSH_SCALE = 1
#: the stub jumps through the slot's word (the settled resolver address)
STUB_THROUGH_CHECK = False
#: the stub goes in the slot's PLT entry's dead lazy tail
STUB_NEEDS_ENTRY = True
CODE_ALIGN = 2

#: ``jmp *disp32(%rip)`` forms at the start of a PLT entry: prefix -> length
_JUMPS = (bytes.fromhex("ff25"), bytes.fromhex("f2ff25"), ENDBR64 + bytes.fromhex("ff25"),
          ENDBR64 + bytes.fromhex("f2ff25"))
_LAZY_PUSH = 0x68


@dataclass(frozen=True)
class PltEntry:
    """A PLT entry that jumps through the GOT word ``word``."""

    address: int
    word: int
    section: str
    #: (address, size) of the dead lazy tail in the same entry, or None
    tail: tuple = None


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
    entries = {}
    for name in (".plt", ".plt.sec", ".plt.got"):
        if name not in sections:
            continue
        address, code, entsize = sections[name]
        step = entsize or PLT_ENTRY
        first = PLT_ENTRY if name == ".plt" else 0          # PLT0
        for at in range(first, len(code) - step + 1, step):
            entry = code[at:at + step]
            word = decode_jump(entry, address + at)
            if word is None:
                continue
            tail = None
            if name == ".plt" and step == PLT_ENTRY and entry[6] == _LAZY_PUSH:
                tail = (address + at + 6, PLT_ENTRY - 6)
            entries.setdefault(word, PltEntry(address + at, word, name, tail))
    return entries


def dead_plt(sections):
    """(address, size) of PLT bytes that are dead without lazy binding and
    form one block: the whole ``.plt`` of an IBT layout (the live entries are
    in ``.plt.sec``), else PLT0 alone.  None when there is no ``.plt``."""
    if ".plt" not in sections:
        return None
    address, code, _ = sections[".plt"]
    if ".plt.sec" in sections:
        return address, len(code)
    return address, min(PLT_ENTRY, len(code))


def lazy_push(sections, target):
    """The lazy PLT code at ``target`` (a JUMP_SLOT's initial GOT value):
    ``(address of its push's imm32, the index pushed)`` when it is GNU ld's
    ``(endbr64)? push $index; (bnd)? jmp PLT0`` in ``.plt``, else None.  A
    slot the rewrite keeps lazy gets its index in the new ``DT_JMPREL``
    there: ld.so's ``_dl_runtime_resolve`` finds the relocation by it."""
    if ".plt" not in sections:
        return None
    address, code, _ = sections[".plt"]
    at = target - address
    if not PLT_ENTRY <= at <= len(code) - 10:
        return None
    if code[at:at + 4] == ENDBR64:
        at += 4
    jump = at + 5
    if code[at] != _LAZY_PUSH or jump + 5 > len(code):
        return None
    if code[jump] == 0xF2:                                # bnd jmp
        jump += 1
    if jump + 5 > len(code) or code[jump] != 0xE9 or \
            jump + 5 + int.from_bytes(code[jump + 1:jump + 5], "little", signed=True) != 0:
        return None
    return address + at + 1, int.from_bytes(code[at + 1:at + 5], "little")


def lazy_bytes(sections, target):
    """(start, end) of the PLT bytes a lazy slot still runs: from its GOT
    word's initial value to the end of that 16-byte ``.plt`` entry."""
    address = sections[".plt"][0]
    return target, address + ((target - address) // PLT_ENTRY + 1) * PLT_ENTRY


def plt0(sections):
    """(start, end) of PLT0, which every lazy slot jumps to."""
    address = sections[".plt"][0]
    return address, address + PLT_ENTRY


def foreign_stub(at, word):
    """``endbr64; jmp *word(%rip)``: the resolver an IRELATIVE calls (indirectly,
    hence ``endbr64``) for a slot bound to another library's IFUNC: it
    jumps to that IFUNC's resolver, whose address the settled word holds."""
    return ENDBR64 + b"\xff\x25" + rel32(at + FOREIGN_STUB_SIZE, word)

