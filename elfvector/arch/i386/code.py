"""i386 machine code for the post-link commands (see :mod:`elfvector.arch.x86_64`).

Assembled by keystone (AT&T syntax) at the address the code will have;
``endbr32``, which keystone 0.9.2 cannot assemble, is written as its bytes.
i386 has no PC-relative data access: the code finds itself with ``call L;
L: pop`` and reaches its data at fixed distances from ``L``, which hold
wherever the file is loaded (32-bit displacements reach the whole
address space, modulo 2**32).  Every entry point that ld.so or another
module reaches indirectly starts with ``endbr32``.
"""

from ..machinecode import assemble, disassemble

__all__ = ["ENDBR32", "IPLT_STUB_SIZE", "INDIRECT_JUMP_MAX", "RESOLVER_STUB_SIZE",
           "RESOLVER_COMMON_SIZE", "RELVEC_FIXUP_SIZE", "indirect_jump_target", "iplt_stub",
           "resolver_stub", "resolver_common", "relvec_fixup"]

ENDBR32 = bytes.fromhex("f30f1efb")
IPLT_STUB_SIZE = 32
RESOLVER_STUB_SIZE = 16
_RELR_BITS = 31                 # words one RELR bitmap entry covers (ELF32)

RESOLVER_COMMON_SIZE = 33     # the longest resolver_common (32-bit displacements)
RELVEC_FIXUP_SIZE = 92


def _assemble(lines, at, size, endbr=True):
    """``lines`` assembled at ``at`` (after ``endbr32`` with ``endbr``),
    padded with ``int3`` to ``size`` bytes.  Numbers in ``lines`` must be
    written in hex: keystone's AT&T mode reads 10 as 0x10."""
    return assemble("i386", lines, at, size, ENDBR32 if endbr else b"", b"\xcc")


def _disp(target, base):
    """``target - base`` as the signed 32-bit displacement that reaches it."""
    return ((target - base + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _here(at):
    """Where ``call here; here: pop`` leaves its own address, in code that
    starts with ``endbr32`` at ``at``: the code's first instruction is that call."""
    return at + len(ENDBR32) + 5


def iplt_stub(at, got):
    """An IFUNC's vector target: jumps to the word at ``got`` (filled by
    its ``R_386_IRELATIVE``), changing no register and no flag.

    ld's IPLT entry ``jmp *got@GOT(%ebx)`` needs the caller's GOT pointer in
    %ebx, which a call from another module through a vector does not set,
    so the stub finds the word from its own address, and returns into it
    (expvec's veneer, :func:`elfvector.arch.i386.link._ifunc_veneer`, is
    these bytes too, so :func:`indirect_jump_target` decodes both)::

        endbr32; lea -4(%esp),%esp; push %eax; call here; here: pop %eax
        mov got-here(%eax),%eax; mov %eax,4(%esp); pop %eax; ret
    """
    here = at + len(ENDBR32) + 4 + 1 + 5
    code = _assemble(["lea -4(%esp),%esp", "push %eax", "call here", "here: pop %eax",
                      f"mov {_disp(got, here):#x}(%eax),%eax", "mov %eax,4(%esp)", "pop %eax",
                      "ret"], at, IPLT_STUB_SIZE)
    return code


INDIRECT_JUMP_MAX = IPLT_STUB_SIZE     # bytes indirect_jump_target may need


def indirect_jump_target(code, at):
    """The GOT word that the entry ``code`` (at ``at``) jumps through, or
    None: a non-PIC PLT or IPLT entry ``[endbr32] [bnd] jmp *ADDR`` (a
    program's ``.plt``, ``.plt.sec``, ``.iplt``) or :func:`iplt_stub`.  A
    PIC entry, ``jmp *off(%ebx)``, depends on the caller's %ebx: None."""
    import capstone
    insns = disassemble("i386", code, at)
    if insns and insns[0].mnemonic == "endbr32":
        insns.pop(0)
    if not insns:
        return None
    operand = insns[0].operands[0] if insns[0].operands else None
    if insns[0].mnemonic.split()[-1] == "jmp" and operand.type == capstone.x86.X86_OP_MEM:
        absolute = operand.mem.base == 0 and operand.mem.index == 0
        return operand.mem.disp & 0xFFFFFFFF if absolute else None
    return _stub_target(code, at, insns)


def _stub_target(code, at, insns):
    """The GOT word of the :func:`iplt_stub` ``code`` at ``at``, or None:
    the word its fifth instruction loads, if the stub for that word is
    ``code``."""
    import capstone
    if len(insns) < 5 or insns[4].mnemonic != "mov" or \
            insns[4].operands[1].type != capstone.x86.X86_OP_MEM:
        return None
    got = (insns[3].address + insns[4].operands[1].mem.disp) & 0xFFFFFFFF
    stub = iplt_stub(at, got).rstrip(b"\xcc")
    return got if code[:len(stub)] == stub else None


def resolver_stub(at, number, common):
    """``endbr32; mov $number,%eax; jmp common``: the IRELATIVE resolver of
    one slot, which ld.so calls while relocating the file."""
    return _assemble([f"mov ${number:#x},%eax", f"jmp {common:#x}"], at, RESOLVER_STUB_SIZE)


def resolver_common(at, descriptors, got):
    """The shared tail of the resolver stubs (see
    :func:`elfvector.arch.x86_64.resolver_common`): %eax is the stub's
    number; ``descriptors`` holds a (u32 slot index, u32 vector number) pair
    per number, ``got`` the table address per vector (32-bit words).
    Returns ``table + table[index]``; clobbers only %eax, %ecx, %edx."""
    here = at + 5
    return _assemble(["call here", "here: pop %ecx",
                      f"mov {_disp(descriptors + 4, here):#x}(%ecx,%eax,8),%edx",   # vector
                      f"mov {_disp(descriptors, here):#x}(%ecx,%eax,8),%eax",       # slot index
                      f"mov {_disp(got, here):#x}(%ecx,%edx,4),%edx",               # the table
                      "mov (%edx,%eax,4),%eax",
                      "add %edx,%eax",
                      "ret"], at, RESOLVER_COMMON_SIZE, endbr=False)


def relvec_fixup(at, table, table_end, word, value):
    """The routine relvec runs through one ``R_386_IRELATIVE``; the
    algorithm of :func:`elfvector.arch.x86_64.relvec_fixup` on 32-bit words
    (a RELR bitmap covers 31 of them).

    The relocation is a REL one: its word holds this routine's address
    (the implicit addend), not the word's settled ``value``, so the
    routine returns ``value`` plus the load bias, an immediate, which ld.so
    then stores in ``word``.  The bias is ``call``/``pop`` of itself minus
    its link-time address (an immediate, so no relocation).  Keeps %ebx,
    %esi, %edi (cdecl's callee-saved registers), uses no vector register.
    """
    del word    # ld.so stores the returned value there; the routine need not read it
    here = _here(at)
    lines = [
        "call here",
        "here: pop %ecx",                               # `here` at run time
        "mov %ecx,%eax",
        f"sub ${here:#x},%eax",                         # the load bias
        "push %ebx", "push %esi", "push %edi",
        "test %eax,%eax",
        "je restore",
        f"lea {_disp(table, here):#x}(%ecx),%esi",
        f"lea {_disp(table_end, here):#x}(%ecx),%edi",
        "loop: cmp %edi,%esi",
        "jae restore",
        "mov (%esi),%edx",
        "add $4,%esi",
        "test $1,%dl",
        "jne bitmap",
        "add %eax,(%edx,%eax,1)",                       # an address: fix its word
        "lea 4(%edx,%eax,1),%ebx",                      # the next bitmap's base
        "jmp loop",
        "bitmap: mov %ebx,%ecx",
        "shr $1,%edx",                                  # drop the tag bit
        "bit: test %edx,%edx",
        "je bitmap_done",
        "shr $1,%edx",                                  # CF = this word's bit
        "jnc skip",
        "add %eax,(%ecx)",
        "skip: add $4,%ecx",
        "jmp bit",
        f"bitmap_done: add ${4 * _RELR_BITS:#x},%ebx",
        "jmp loop",
        "restore: pop %edi", "pop %esi", "pop %ebx",
        f"add ${value & 0xFFFFFFFF:#x},%eax",
        "ret",
    ]
    return _assemble(lines, at, RELVEC_FIXUP_SIZE)
