"""AArch64 machine code for the post-link commands (see :mod:`elfvector.arch.x86_64`).

Assembled by keystone at the address the code will have; ``bti c`` is
written as its hint encoding (``hint #34``), which keystone 0.9.2 knows.
Every entry point that another module or ld.so reaches with ``br``/``blr``
starts with ``bti c``: the commands append an executable segment to a file
whose other code may be marked BTI (``PT_GNU_PROPERTY``), and ld.so then
maps every executable segment of the file with ``PROT_BTI``.  The code
reaches its data with ``adrp`` (+-4 GiB); :func:`adrp_reaches` says
whether a target is in reach.  None of this code writes code: the slots
are data words, so no instruction-cache maintenance is needed.
"""

from ..machinecode import assemble, disassemble

__all__ = ["BTI_C", "IPLT_STUB_SIZE", "INDIRECT_JUMP_MAX", "RESOLVER_STUB_SIZE",
           "RESOLVER_COMMON_SIZE", "RELVEC_FIXUP_SIZE", "adrp_reaches", "indirect_jump_target",
           "iplt_stub", "resolver_stub", "resolver_common", "relvec_fixup"]

#: ``bti c``: the landing pad of an indirect call, as the hint keystone assembles
BTI_C = "hint #34"
#: ``autia1716``, which a PAC PLT entry runs before ``br x17``
_AUTIA1716 = 12
_BTI_HINTS = {34, 38}       # bti c, bti jc

IPLT_STUB_SIZE = 16
INDIRECT_JUMP_MAX = 24      # bti, adrp, ldr, add, autia1716, br
RESOLVER_STUB_SIZE = 16
RESOLVER_COMMON_SIZE = 40
RELVEC_FIXUP_SIZE = 144
_RELR_BITS = 63             # words one RELR bitmap entry covers


def _assemble(lines, size, at):
    """``lines`` assembled at ``at``: exactly ``size`` bytes."""
    return assemble("aarch64", lines, at, size)


def adrp_reaches(at, target):
    """Whether an ``adrp`` at ``at`` reaches the page of ``target`` (+-4 GiB)."""
    return -(1 << 32) <= (target & ~0xFFF) - (at & ~0xFFF) < (1 << 32)


def _address_of(register, target, at):
    """``register`` = ``target``: ``adrp`` + ``add`` (the ``adrp`` at ``at``)."""
    if not adrp_reaches(at, target):
        raise ValueError(f"adrp at {at:#x} cannot reach {target:#x}")
    return [f"adrp {register}, {target & ~0xFFF:#x}",
            f"add {register}, {register}, #{target & 0xFFF:#x}"]


def iplt_stub(at, got):
    """``bti c; adrp x16; ldr x17, [x16, #lo12]; br x17``: an IFUNC's vector
    target, the shape of ld's IPLT entry (x16/x17 are the AAPCS64
    intra-procedure-call registers, free at any call)."""
    if got % 8 or not adrp_reaches(at + 4, got):
        raise ValueError(f"the GOT word {got:#x} is not in reach of {at:#x}")
    return _assemble([BTI_C, f"adrp x16, {got & ~0xFFF:#x}",
                      f"ldr x17, [x16, #{got & 0xFFF:#x}]", "br x17"], IPLT_STUB_SIZE, at)


def indirect_jump_target(code, at):
    """The GOT word that the PLT-style entry ``code`` (at ``at``) jumps
    through, or None: ``[bti c] adrp x16, P; ldr x17, [x16, #O]; [add x16,
    x16, #O]; [autia1716]; br x17``, the shape of ld's ``.plt`` entries
    (standard, BTI and PAC) and IPLT entries, and of :func:`iplt_stub`."""
    import capstone
    insns = disassemble("aarch64", code, at)
    while insns and insns[0].mnemonic in ("bti", "hint") and _hint(insns[0]) in _BTI_HINTS:
        insns.pop(0)
    if len(insns) < 3 or insns[0].mnemonic != "adrp" or insns[1].mnemonic != "ldr":
        return None
    page_reg, page = insns[0].operands[0].reg, insns[0].operands[1].imm
    load = insns[1].operands
    if len(load) != 2 or load[1].type != capstone.arm64.ARM64_OP_MEM \
            or load[1].mem.base != page_reg or load[1].mem.index:
        return None
    rest = insns[2:]
    if rest and rest[0].mnemonic == "add":
        rest.pop(0)
    if rest and _hint(rest[0]) == _AUTIA1716:
        rest.pop(0)
    if not rest or rest[0].mnemonic != "br" or rest[0].operands[0].reg != load[0].reg:
        return None
    return page + load[1].mem.disp


def _hint(insn):
    """The number of the hint instruction ``insn`` (``HINT #n`` is
    ``d503201f | n << 5``), or None."""
    word = int.from_bytes(insn.bytes, "little")
    return (word >> 5) & 0x7F if word & ~(0x7F << 5) == 0xD503201F else None


def resolver_stub(at, number, common):
    """``bti c; mov w16, #number; b common``: the IRELATIVE resolver of one
    slot, which ld.so calls (``blr``) while relocating the file."""
    return _assemble([BTI_C, f"movz w16, #{number & 0xFFFF:#x}",
                      f"movk w16, #{number >> 16:#x}, lsl #16", f"b {common:#x}"],
                     RESOLVER_STUB_SIZE, at)


def resolver_common(at, descriptors, got):
    """The shared tail of the resolver stubs (see :func:`elfvector.arch.x86_64.resolver_common`):
    w16 is the stub's number; ``descriptors`` holds a (u32 slot index, u32
    vector number) pair per number, ``got`` the table address per vector.
    Returns ``table + table[index]`` in x0; uses only x0, x9-x11, x16, x17."""
    return _assemble(
        _address_of("x17", descriptors, at)
        + ["add x17, x17, x16, lsl #3",
           "ldp w10, w11, [x17]"]                       # slot index, vector number
        + _address_of("x9", got, at + 16)
        + ["ldr x9, [x9, x11, lsl #3]",                 # the table
           "ldrsw x0, [x9, x10, lsl #2]",
           "add x0, x9, x0",
           "ret"], RESOLVER_COMMON_SIZE, at)


def relvec_fixup(at, table, table_end, word):
    """The routine relvec runs through one ``R_AARCH64_IRELATIVE``; the same
    algorithm as :func:`elfvector.arch.x86_64.relvec_fixup`: the load bias
    is ``adr`` of itself minus its link-time address (``movz``/``movk``
    immediates, so no relocation); when it is not 0 it is added to every
    word of the RELR table ``[table, table_end)``; returns the fixed-up
    ``word``.  Uses only x0-x7, no stack.  It writes data words only, so
    it needs no cache maintenance."""
    lines = [f"start: {BTI_C}",
             "adr x0, start",
             f"movz x1, #{at & 0xFFFF:#x}"] + [
             f"movk x1, #{(at >> shift) & 0xFFFF:#x}, lsl #{shift}" for shift in (16, 32, 48)] + [
             "subs x0, x0, x1",                          # the load bias
             "b.eq done"]
    lines += _address_of("x2", table, at + 4 * len(lines))
    lines += _address_of("x3", table_end, at + 4 * len(lines))
    lines += [
        "loop: cmp x2, x3",
        "b.hs done",
        "ldr x4, [x2], #8",
        "tbnz x4, #0, bitmap",
        "ldr x5, [x4, x0]",                             # an address: fix its word
        "add x5, x5, x0",
        "str x5, [x4, x0]",
        "add x6, x4, #8",                               # the next bitmap's base
        "b loop",
        "bitmap: mov x7, x6",
        "lsr x4, x4, #1",                               # drop the tag bit
        "bit: cbz x4, bitmap_done",
        "tbz x4, #0, skip",
        "ldr x5, [x7, x0]",
        "add x5, x5, x0",
        "str x5, [x7, x0]",
        "skip: lsr x4, x4, #1",
        "add x7, x7, #8",
        "b bit",
        f"bitmap_done: add x6, x6, #{8 * _RELR_BITS:#x}",
        "b loop"]
    if not adrp_reaches(at + 4 * len(lines), word):     # one instruction a line
        raise ValueError(f"adrp at {at + 4 * len(lines):#x} cannot reach {word:#x}")
    lines += [f"done: adrp x1, {word & ~0xFFF:#x}", f"ldr x0, [x1, #{word & 0xFFF:#x}]", "ret"]
    return _assemble(lines, RELVEC_FIXUP_SIZE, at)
