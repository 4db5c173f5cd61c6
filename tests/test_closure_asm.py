"""The x86 fix-up routine's assembler (:mod:`elfvector.closure.x86_64.asm`):
a routine threaded over regions of dead bytes must run on, through every
jump it adds, into bytes it wrote."""

import pytest

from elfvector.closure.fixup import NoRoutineRoom
from elfvector.closure.x86_64.asm import Routine

LINES = ["ev_start:", "mov eax, ebx", "mov ecx, edx", "mov esi, edi", "xor eax, eax",
         "test eax, eax", "jz ev_start", "ret"]


def threads_land_on_code(routine):
    """Every jump the layout threads from one region to the next lands on
    an instruction of the routine."""
    starts = {at for k, at, size in routine.placed if size}
    targets = [k[1] for k, _, _ in routine.placed if isinstance(k, tuple)]
    return targets and all(t in starts for t in targets)


@pytest.mark.parametrize("bits", [64, 32])
def test_a_region_too_small_for_a_jump_is_passed_over(bits):
    """The 3-byte region between two others holds neither an instruction
    with a jump after it nor a jump: the first region's jump goes past it."""
    routine = Routine(LINES, bits)
    used = routine.layout([(0x1000, 0x1008), (0x2000, 0x2003), (0x3000, 0x3100)])
    assert used[1] is None and used[0] is not None and used[2] is not None
    assert threads_land_on_code(routine)
    assert not any(0x2000 <= at < 0x2003 for at, _ in routine.encode(0x4000))


def test_no_room_is_said():
    with pytest.raises(NoRoutineRoom):
        Routine(LINES).layout([(0x1000, 0x1004), (0x2000, 0x2004)])
