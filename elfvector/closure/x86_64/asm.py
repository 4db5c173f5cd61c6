"""A small x86-64 assembler: one routine laid out over several regions.

The fix-up routine must go into executable bytes that are already mapped:
the executable segment's last page, the dead IBT ``.plt``, PLT0, the
10-byte lazy tails of the PLT entries.  :class:`Routine` encodes the lines
(keystone for single instructions, whose AT&T mode reads bare numbers as
hex, so the lines are Intel syntax; the branches itself) and threads them
through those regions, joined by jumps.
"""

import re

import keystone

from ..fixup import NoRoutineRoom
from ..i386 import ENDBR32
from . import ENDBR64, rel32


_CONDITIONS = {"jo": 0, "jno": 1, "jb": 2, "jc": 2, "jae": 3, "jnc": 3, "je": 4, "jz": 4,
               "jne": 5, "jnz": 5, "jbe": 6, "ja": 7, "js": 8, "jns": 9, "jl": 0xC,
               "jge": 0xD, "jle": 0xE, "jg": 0xF}
_BRANCH = re.compile(r"(jmp|call|j[a-z]+) (ev_\w+)$")
_ENCODED = {}


#: keystone 0.9.2 cannot assemble the CET landing pads: their encodings
_HINTS = {"endbr64": ENDBR64, "endbr32": ENDBR32}
_MODES = {64: keystone.KS_MODE_64, 32: keystone.KS_MODE_32}


def _encode(line, bits=64):
    """The bytes of one position-independent instruction (cached)."""
    key = (line, bits)
    if key not in _ENCODED:
        if line in _HINTS:
            _ENCODED[key] = _HINTS[line]
        else:
            encoding, _ = keystone.Ks(keystone.KS_ARCH_X86, _MODES[bits]).asm(line, 0)
            if not encoding:
                raise ValueError(f"cannot assemble {line!r}")
            _ENCODED[key] = bytes(encoding)
    return _ENCODED[key]


class Routine:
    """Assembly lines laid out over regions of free bytes.

    A line is a label (``name:``), a branch or call to a label, the data's
    address (given to :meth:`encode`) into a register: ``lea r11, [rip +
    DATA]`` in 64-bit code, ``lea ebp, [eip + DATA]`` in 32-bit code (which
    has no PC-relative operand: ``call ev_pc`` and ``add ebp, DATA - the
    return address``, the routine's ``ev_pc:`` being ``mov ebp, [esp]; ret``),
    or one position-independent instruction (``bits``: the code's width).
    :meth:`layout` places the lines in
    the first region and, when one does not fit with room left for a jump,
    jumps to the next region and goes on there (a 10-byte lazy PLT tail
    holds 8 bytes of code and a 2-byte jump to the next).  Branches are
    short where they reach, else long (relaxation until nothing changes).
    """

    def __init__(self, lines, bits=64):
        self.bits = bits
        self.items = []
        for line in lines:
            branch = _BRANCH.match(line)
            if line.endswith(":"):
                self.items.append(("label", line[:-1]))
            elif branch:
                self.items.append((branch.group(1), branch.group(2)))
            elif line == _DATA_LINES[bits]:
                self.items.append(("data", None))
            else:
                self.items.append(("op", _encode(line, bits)))
        self.placed = None

    def _size(self, k, long):
        kind, arg = self.items[k]
        if kind == "label":
            return 0
        if kind == "op":
            return len(arg)
        if kind in ("call", "data"):
            return 5 if kind == "call" else _DATA_SIZES[self.bits]
        return (5 if kind == "jmp" else 6) if k in long else 2

    def _ends_flow(self, k):
        """Whether nothing runs on after item ``k`` (no jump needed after it)."""
        kind, arg = self.items[k]
        return kind == "jmp" or (kind == "op" and arg in (b"\xc3", b"\xf4"))

    def layout(self, regions):
        """Place the routine over ``regions`` [(start, end)]; returns, per
        region, the end of the bytes used (None: unused).  Raises :class:`..fixup.NoRoutineRoom`."""
        long = set()
        while True:
            placed, labels, used = self._place(regions, long)
            far = {k for k, at, size in placed if isinstance(k, int)
                   and self.items[k][0] in _SHORTENABLE and k not in long
                   and not -128 <= labels[self.items[k][1]] - (at + size) < 128}
            if not far:
                self.placed, self.labels = placed, labels
                return used
            long |= far

    def _place(self, regions, long):
        """One pass of :meth:`layout`.  A region smaller than a long jump is
        left out: one that held neither the next item nor a jump onward would
        be passed over after the region before it had jumped to its start."""
        placed, labels = [], {}
        used = [None] * len(regions)
        order = [n for n, (start, end) in enumerate(regions) if end - start >= _LONG_JUMP]
        r = 0
        at = regions[order[0]][0] if order else 0
        for k in range(len(self.items)):
            size = self._size(k, long)
            while True:
                if r >= len(order):
                    raise NoRoutineRoom("no room for the fix-up routine")
                end = regions[order[r]][1]
                last = k == len(self.items) - 1 or r == len(order) - 1 or self._ends_flow(k)
                onward = None if r == len(order) - 1 else regions[order[r + 1]][0]
                room = 0 if last else _jump_size(at + size, onward)
                if at + size + room <= end:
                    break
                if onward is not None and at + _jump_size(at, onward) <= end:
                    jump = _jump_size(at, onward)
                    placed.append((("thread", onward), at, jump))
                    used[order[r]] = at + jump
                r += 1
                if r < len(order):
                    at = regions[order[r]][0]
            if self.items[k][0] == "label":
                labels[self.items[k][1]] = at
            placed.append((k, at, size))
            at += size
            used[order[r]] = at
        return placed, labels, used

    def encode(self, data):
        """[(address, bytes)] of the routine laid out by :meth:`layout`,
        reading its data at the link-time address ``data``."""
        pieces = []
        for k, at, size in self.placed:
            if isinstance(k, tuple):
                code = _jump(at, size, k[1])
            else:
                kind, arg = self.items[k]
                if kind == "label":
                    continue
                if kind == "op":
                    code = arg
                elif kind == "data" and self.bits == 64:
                    code = b"\x4c\x8d\x1d" + rel32(at + 7, data)
                elif kind == "data":
                    code = (b"\xe8" + rel32(at + 5, self.labels["ev_pc"]) + b"\x81\xc5"
                            + ((data - (at + 5)) & 0xFFFFFFFF).to_bytes(4, "little"))
                elif kind == "call":
                    code = b"\xe8" + rel32(at + 5, self.labels[arg])
                elif kind == "jmp":
                    code = _jump(at, size, self.labels[arg])
                else:
                    code = _jcc(_CONDITIONS[kind], at, size, self.labels[arg])
            if pieces and pieces[-1][0] + len(pieces[-1][1]) == at:
                pieces[-1] = (pieces[-1][0], pieces[-1][1] + code)
            else:
                pieces.append((at, code))
        return pieces

    @property
    def entry(self):
        return self.placed[0][1]


_SHORTENABLE = {"jmp"} | set(_CONDITIONS)
_DATA_LINES = {64: "lea r11, [rip + DATA]", 32: "lea ebp, [eip + DATA]"}
_DATA_SIZES = {64: 7, 32: 11}


_LONG_JUMP = 5


def _jump_size(source, target):
    return 2 if -128 <= target - (source + 2) < 128 else 5


def _jump(at, size, target):
    if size == 2:
        return b"\xeb" + (target - at - 2).to_bytes(1, "little", signed=True)
    return b"\xe9" + rel32(at + 5, target)


def _jcc(cc, at, size, target):
    if size == 2:
        return bytes([0x70 | cc]) + (target - at - 2).to_bytes(1, "little", signed=True)
    return bytes([0x0F, 0x80 | cc]) + rel32(at + 6, target)
