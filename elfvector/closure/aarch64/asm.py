"""The AArch64 fix-up routine assembled where it goes (:class:`Routine`).

Lines are keystone's AArch64 assembly, labels included, and two
pseudo-instructions the layout resolves: ``adr_data xN`` (the fix-up data's
address: ``adrp`` and ``add`` of its page and offset) and ``imm wN,
VALUE`` / ``imm xN, VALUE`` (``movz``/``movk``).  Every instruction is 4
bytes, so the routine's size is known before its address; it goes whole
in the first region that holds it (no threading: AArch64 has no dead
10-byte PLT tails to thread through).  capstone decodes the bytes back
and must find every instruction.
"""

import capstone
import keystone

from ..fixup import NoRoutineRoom

INSTRUCTION = 4


def _pseudo_size(line):
    """How many instructions ``line`` is: a pseudo-instruction two."""
    return 2 if line.startswith(("adr_data ", "imm ")) else 1


class Routine:
    """Assembly lines placed in one region of free executable bytes."""

    def __init__(self, lines):
        self.lines = list(lines)
        self.size = INSTRUCTION * sum(_pseudo_size(l) for l in self.lines
                                      if not l.endswith(":"))
        self.at = None

    def layout(self, regions):
        """Place the routine in the first of ``regions`` [(start, end)] that
        holds it; per region, the end of the bytes used (None: unused)."""
        used = [None] * len(regions)
        for k, (start, end) in enumerate(regions):
            at = (start + INSTRUCTION - 1) // INSTRUCTION * INSTRUCTION
            if at + self.size <= end:
                self.at = at
                used[k] = at + self.size
                return used
        raise NoRoutineRoom("no room for the fix-up routine")

    def encode(self, data):
        """[(address, bytes)] of the routine, reading its data at ``data``."""
        text = "\n".join(self._expand(line, data) for line in self.lines)
        encoding, count = keystone.Ks(keystone.KS_ARCH_ARM64,
                                      keystone.KS_MODE_LITTLE_ENDIAN).asm(text, self.at)
        code = bytes(encoding or b"")
        if len(code) != self.size:
            raise ValueError(f"the fix-up routine assembled to {len(code)} bytes, "
                             f"not {self.size}")
        decoded = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM).disasm(code,
                                                                                  self.at)
        if sum(1 for _ in decoded) != self.size // INSTRUCTION:
            raise ValueError("capstone does not decode the fix-up routine whole")
        return [(self.at, code)]

    @staticmethod
    def _expand(line, data):
        if line.startswith("adr_data "):
            reg = line.split()[1]
            return f"adrp {reg}, {data & ~0xFFF:#x}\nadd {reg}, {reg}, #{data & 0xFFF:#x}"
        if line.startswith("imm "):
            reg, value = (part.strip() for part in line[4:].split(","))
            value = int(value, 0)
            if not 0 <= value <= 0xFFFFFFFF:           # movz/movk set 32 bits, zero the rest
                raise ValueError(f"imm {value:#x} does not fit 32 bits")
            return (f"movz {reg}, #{value & 0xFFFF:#x}\n"
                    f"movk {reg}, #{value >> 16:#x}, lsl #16")
        return line

    @property
    def entry(self):
        return self.at
