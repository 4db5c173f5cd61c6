"""What the three architectures' PLT code shares (``closure/<arch>/plt.py``).

An architecture's module decodes one entry (which GOT word it reaches);
this one walks GNU ld's sections with that decoding (:func:`scan`), and
holds what is the same on x86-64 and i386, whose PLTs differ only in how
an entry addresses its word and in the lazy push's operand: a ``.plt`` of
16-byte entries after a 16-byte PLT0, each ``jmp *word; push $n; jmp
PLT0`` (:func:`lazy_push`, :func:`lazy_bytes`), or, with IBT, a dead
``.plt`` of pushes beside a ``.plt.sec`` of jumps.
"""

from dataclasses import dataclass

#: the size of an x86 PLT entry, and of PLT0
X86_PLT_ENTRY = 16
_PUSH, _JMP, _BND = 0x68, 0xE9, 0xF2


@dataclass(frozen=True)
class PltEntry:
    """A PLT entry that reaches the GOT word ``word``."""

    address: int
    word: int
    section: str
    #: (address, size) of the dead lazy tail in the same entry, or None
    tail: tuple = None


def scan(sections, first, step, decode):
    """``{word: PltEntry}``: every entry of ``sections`` ({name: (address,
    bytes, entsize)}) that ``decode(entry bytes, address)`` finds a word in
    (else None), the first one of a word kept.  ``first(name)`` is where a
    section's entries start (past PLT0), ``step(name, entsize)`` their size;
    an x86 ``.plt`` entry with a push at byte 6 has its last 10 bytes as a
    tail (dead once the slot is settled)."""
    entries = {}
    for name in (".plt", ".plt.sec", ".plt.got"):
        if name not in sections:
            continue
        address, code, entsize = sections[name]
        size = step(name, entsize)
        for at in range(first(name), len(code) - size + 1, size):
            entry = code[at:at + size]
            word = decode(entry, address + at)
            if word is None:
                continue
            tail = None
            if name == ".plt" and size == X86_PLT_ENTRY and entry[6] == _PUSH:
                tail = (address + at + 6, X86_PLT_ENTRY - 6)
            entries.setdefault(word, PltEntry(address + at, word, name, tail))
    return entries


def dead_plt(sections, plt0_size):
    """(address, size) of PLT bytes that are dead without lazy binding and
    form one block: the whole ``.plt`` of an IBT layout (the live entries are
    in ``.plt.sec``), else PLT0 alone.  None when there is no ``.plt``."""
    if ".plt" not in sections:
        return None
    address, code, _ = sections[".plt"]
    if ".plt.sec" in sections:
        return address, len(code)
    return address, min(plt0_size, len(code))


def lazy_push(sections, target, endbr, scale):
    """The lazy x86 PLT code at ``target`` (a JUMP_SLOT's initial GOT value):
    ``(address of its push's imm32, the slot's index)`` when it is GNU ld's
    ``(endbr)? push $n; (bnd)? jmp PLT0`` in ``.plt``, ``n`` the index times
    ``scale``; else None.  A slot the rewrite keeps lazy gets its index in
    the new ``DT_JMPREL`` there: ld.so's ``_dl_runtime_resolve`` finds the
    relocation by it."""
    if ".plt" not in sections:
        return None
    address, code, _ = sections[".plt"]
    at = target - address
    if not X86_PLT_ENTRY <= at <= len(code) - 10:
        return None
    if code[at:at + 4] == endbr:
        at += 4
    jump = at + 5
    if code[at] != _PUSH or jump + 5 > len(code):
        return None
    if code[jump] == _BND:
        jump += 1
    if jump + 5 > len(code) or code[jump] != _JMP or \
            jump + 5 + int.from_bytes(code[jump + 1:jump + 5], "little", signed=True) != 0:
        return None
    pushed = int.from_bytes(code[at + 1:at + 5], "little")
    if pushed % scale:
        return None
    return address + at + 1, pushed // scale


def lazy_bytes(sections, target):
    """(start, end) of the x86 PLT bytes a lazy slot still runs: from its
    GOT word's initial value to the end of that 16-byte ``.plt`` entry."""
    address = sections[".plt"][0]
    return target, address + ((target - address) // X86_PLT_ENTRY + 1) * X86_PLT_ENTRY


def plt0(sections):
    """(start, end) of the x86 PLT0, which every lazy slot jumps to."""
    address = sections[".plt"][0]
    return address, address + X86_PLT_ENTRY
