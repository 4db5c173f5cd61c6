"""i386 assembly text for the link-time path (see :mod:`elfvector.arch.x86_64`).

Export side: the same table as x86-64 (:func:`asmtext.export_table`),
which needs no dynamic relocation on i386 either.  ld's IPLT entry of an
IFUNC in a library, ``jmp *name@GOT(%ebx)``, needs the *caller's* %ebx to
hold the library's GOT, which a call through a vector from another object
does not set; so an IFUNC's slot leads to a veneer of ours instead
(:func:`_ifunc_veneer`), which finds its word with ``call``/``pop``.

Import side: each imported function gets one 8-byte slot in
``.elfvector.slots``:

    unbound:  e8 <rel32> cc cc cc        call .Llazy
    bound:    e9 <rel32> cc cc cc        jmp target

A ``jmp rel32`` reaches the whole 32-bit address space (the displacement
wraps), so one form binds every slot wherever the file and the library
are, at the cost of a PLT call.  The binder writes it at start-up; slots
are not pre-bound on i386 (:data:`bound_slot` is None).

The binder is position-independent through a get-pc thunk and
``@GOTOFF``/``@GOT`` addressing off ``%ebx``, and uses ``int $0x80``
system calls only.  It builds the slot pages anew in a fresh anonymous
mapping, makes it read+exec and moves it over the old pages with one
``mremap``, as on x86-64: no page is ever writable and executable at
once.
"""

from ..asmtext import (I386, INDEX_SIZE, SEAL_SIZE, asm_symbol, bind_message, export_table,
                       import_slots, start_entry, table_seal, text, veneers)
from .code import IPLT_STUB_SIZE

__all__ = ["SLOT_SIZE", "SEAL_SIZE", "PAGE_SIZE", "asm_symbol", "export_table_asm",
           "table_seal", "import_vector_asm", "bound_slot"]

SLOT_SIZE = 8
PAGE_SIZE = 4096
#: slots are bound at start-up only: no pre-binding on i386 yet
bound_slot = None

# Linux i386 system call numbers (arch/x86/entry/syscalls/syscall_32.tbl).
SYS_WRITE, SYS_MMAP2, SYS_MPROTECT, SYS_MREMAP, SYS_EXIT_GROUP = 4, 192, 125, 163, 252


def export_table_asm(vector, aliases, ifunc_slots=()):
    """Assembly for the export vector of ``vector`` (:func:`asmtext.export_table`);
    the slots in ``ifunc_slots`` (those of IFUNCs) lead to veneers."""
    return text(export_table(I386, vector, aliases, ifunc_slots)
                + veneers(ifunc_slots, aliases, _ifunc_veneer))


def _ifunc_veneer(alias):
    """Jump to what the IFUNC ``alias``'s resolver chose, changing no
    register and no flag, from any caller.

    The word is ours, in ``.data.rel.ro``: ``.long alias`` against an
    IFUNC the library defines makes the link editor emit an
    ``R_386_IRELATIVE`` for it, which ld.so fills with the resolver's
    choice before RELRO makes it read-only.  The veneer is retrovec's
    IFUNC stub (:func:`elfvector.arch.i386.code.iplt_stub`) to the byte,
    so that the checks and recovervec decode both alike: it reaches the
    word from the address ``call``/``pop`` leave, and returns into it."""
    word = f".Lifunc_word_{alias}"
    return [
        "2:\tendbr32",
        "\tlea -4(%esp),%esp",
        "\tpush %eax",
        "\tcall 1f",
        "1:\tpop %eax",
        f"\tmov {word}-1b(%eax),%eax",   # always a disp32: the word is in another segment
        "\tmov %eax,4(%esp)",
        "\tpop %eax",
        "\tret",
        f"\t.fill {IPLT_STUB_SIZE} - (. - 2b),1,0xcc",
        '\t.section .data.rel.ro,"aw",@progbits',
        "\t.balign 4",
        f"{word}:",
        f"\t.long {alias}",
        "\t.text",
    ]


def import_vector_asm(vectors, in_executable, program, bind_at_relocation=False):
    """Assembly for an import vector (the arguments are
    :func:`elfvector.arch.x86_64.import_vector_asm`'s; slots are never
    pre-bound here, so ``bind_at_relocation`` must be false)."""
    if bind_at_relocation:
        raise ValueError("i386 slots are not pre-bound")
    unbound = ["\tcall .Llazy", "\t.byte 0xcc,0xcc,0xcc"]
    out = import_slots(I386, vectors, program, SLOT_SIZE, SLOT_SIZE, unbound) + [""]
    out += _lazy_trampoline() + _binder(vectors, program)
    return text(out + start_entry(I386, in_executable, ".Lbind"))


def _lazy_trampoline():
    """A call that reaches an unbound slot binds every slot, then retries.

    The slot's ``call`` left the slot address + 5 on the stack, above the
    caller's return address.  %eax, %ecx and %edx (regparm and fastcall
    arguments) are saved; the others the binder keeps.  The retry turns
    that word into the slot's address and returns to it, so no register
    is clobbered and the slot sees the caller's stack exactly.
    """
    regs = ["%eax", "%ecx", "%edx"]
    return (["\t.text", "\t.balign 16", ".Llazy:"]
            + [f"\tpush {r}" for r in regs]
            + ["\tcall .Lbind"]
            + [f"\tpop {r}" for r in reversed(regs)]
            + ["\tsubl $5,(%esp)", "\tret", ""])


def _binder(vectors, program):
    """The binding routine: once, thread-safe, ``int $0x80`` only.

    State 0 = unbound, 1 = binding, 2 = bound.  Locals on the stack: 0 the
    GOT address, 4 the first slot page, 8 the bytes of the slot pages,
    12 the new pages.  The new pages get a copy of the old ones, every
    slot is bound there (``.Lbind_group``), they become read+exec and
    replace the old ones.
    """
    saved = ["%ebp", "%ebx", "%esi", "%edi"]
    out = ["\t.balign 16", ".Lbind:"] + [f"\tpush {r}" for r in saved] + [
        "\tsub $16,%esp",
        "\tcall .Lpc_thunk",
        "\taddl $_GLOBAL_OFFSET_TABLE_,%ebx",
        "\tmov %ebx,0(%esp)",
        "\tlea .Lstate@GOTOFF(%ebx),%esi",
        "\txor %eax,%eax",
        "\tmov $1,%ecx",
        "\tlock cmpxchg %ecx,(%esi)",
        "\tje .Lbind_now",
        ".Lwait:",                      # another thread binds: wait for it
        "\tcmp $2,%eax",
        "\tje .Lbind_done",
        "\tpause",
        "\tmov (%esi),%eax",
        "\tjmp .Lwait",
        ".Lbind_now:",
    ]
    # A zero GOT word: called before ld.so relocated this file (from
    # another library's IFUNC resolver); fail loudly, never jump wild.
    for layout_symbol, _ in vectors:
        out += [f"\tmov {layout_symbol}@GOT(%ebx),%eax", "\ttest %eax,%eax", "\tjz .Lbind_fail"]
    out += [
        "\tlea .Lslots@GOTOFF(%ebx),%eax",
        f"\tand $-{PAGE_SIZE},%eax",
        "\tmov %eax,4(%esp)",
        f"\tlea .Lslots_end@GOTOFF+{PAGE_SIZE - 1}(%ebx),%ecx",
        f"\tand $-{PAGE_SIZE},%ecx",
        "\tsub %eax,%ecx",
        "\tmov %ecx,8(%esp)",
        # mmap2(0, bytes, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
        f"\tmov ${SYS_MMAP2},%eax", "\txor %ebx,%ebx", "\tmov $3,%edx", "\tmov $0x22,%esi",
        "\tmov $-1,%edi", "\txor %ebp,%ebp", "\tint $0x80",
        "\tcmp $-4095,%eax", "\tjae .Lbind_fail",
        "\tmov %eax,12(%esp)",
        "\tmov %eax,%edi",              # the old pages copied whole
        "\tmov 4(%esp),%esi",
        "\tmov 8(%esp),%ecx",
        "\tshr $2,%ecx",
        "\tcld",
        "\trep movsl",
        "\tmov 12(%esp),%ebp",
        "\tsub 4(%esp),%ebp",           # new pages - old pages
    ]
    first = 0
    for layout_symbol, entries in vectors:
        out += ["\tmov 0(%esp),%ebx",
                f"\tmov {layout_symbol}@GOT(%ebx),%edx",
                f"\tlea .Lslots@GOTOFF+{SLOT_SIZE * first}(%ebx),%esi",
                f"\tlea .Lindex@GOTOFF+{INDEX_SIZE * first}(%ebx),%edi",
                f"\tmov ${len(entries)},%ecx",
                "\tcall .Lbind_group"]
        first += len(entries)
    out += [
        # mprotect(new, bytes, PROT_READ|PROT_EXEC)
        f"\tmov ${SYS_MPROTECT},%eax", "\tmov 12(%esp),%ebx", "\tmov 8(%esp),%ecx",
        "\tmov $5,%edx", "\tint $0x80",
        "\ttest %eax,%eax", "\tjnz .Lbind_fail",
        # mremap(new, bytes, bytes, MREMAP_MAYMOVE|MREMAP_FIXED, old)
        f"\tmov ${SYS_MREMAP},%eax", "\tmov 12(%esp),%ebx", "\tmov 8(%esp),%ecx",
        "\tmov %ecx,%edx", "\tmov $3,%esi", "\tmov 4(%esp),%edi", "\tint $0x80",
        "\tcmp $-4095,%eax", "\tjae .Lbind_fail",
        "\tmov 0(%esp),%ebx",
        "\tmovl $2,.Lstate@GOTOFF(%ebx)",   # release: x86 stores are not reordered
        ".Lbind_done:",
        "\tadd $16,%esp"] + [f"\tpop {r}" for r in reversed(saved)] + [
        "\tret",
        ".Lbind_fail:",
        "\tmov 0(%esp),%ecx",
        "\tlea .Lbind_message@GOTOFF(%ecx),%ecx",
        f"\tmov ${SYS_WRITE},%eax", "\tmov $2,%ebx",
        "\tmov $(.Lbind_message_end - .Lbind_message),%edx", "\tint $0x80",
        f"\tmov ${SYS_EXIT_GROUP},%eax", "\tmov $127,%ebx", "\tint $0x80",
        "\thlt",
        ".Lpc_thunk:",
        "\tmov (%esp),%ebx",
        "\tret",
    ] + _bind_group() + bind_message(I386, program)
    return out


def _bind_group():
    """Bind %ecx slots from %esi (indices from %edi) against the table at
    %edx: ``jmp rel32`` to ``table + table[index]``, the displacement from
    the slot's final address, written at its place in the new pages
    (%ebp further on).  A slot's three bytes of padding stay ``cc``."""
    return [
        "\t.balign 16",
        ".Lbind_group:",
        "\tmov (%edi),%eax",
        "\tmov (%edx,%eax,4),%eax",
        "\tadd %edx,%eax",              # table + table[index]
        "\tlea 5(%esi),%ebx",
        "\tsub %ebx,%eax",              # the displacement from the slot's end
        "\tmovb $0xe9,(%esi,%ebp)",
        "\tmov %eax,1(%esi,%ebp)",
        f"\tadd ${SLOT_SIZE},%esi",
        f"\tadd ${INDEX_SIZE},%edi",
        "\tdec %ecx",
        "\tjnz .Lbind_group",
        "\tret",
    ]
