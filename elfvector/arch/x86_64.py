"""x86-64: the export table, the import slots and the start-up binder.

Export side: the table is ``.long target - table`` per slot, in ``.rodata``,
so it needs no dynamic relocation; the targets are hidden aliases that the
final link defines (see :mod:`elfvector.exportvec`).  An IFUNC alias makes
the link editor point its slot at an IPLT entry, so a vectored IFUNC calls
what its resolver chose.  The 8 bytes before the table are its *seal*, the
first 8 bytes of SHA-256 over the table as linked (:func:`table_seal`),
written after the final link: an importer that pre-bound its slots against
this very table checks its address and its seal at start-up.

Import side: each imported function gets one 16-byte slot in
``.elfvector.slots`` (16-byte aligned, sharing pages with other code):

    unbound:  e8 <rel32> cc cc cc  <0 or abs64>  call .Llazy
    near:     e9 <rel32> cc cc cc  <abs64>       jmp target        (pre-bound, within +-2 GiB)
    far:      ff 25 02 00 00 00 cc cc <abs64>    jmp *8(%rip)      (anywhere)

The far form is a PLT entry's ``jmp *GOT(%rip)`` with the word in the slot
itself, so a bound call costs what a bound PLT call costs in every layout;
it is position-independent, so a PIE program's slots can be pre-bound too
(for libraries at fixed bases).  The binder writes the far form only.
Every bound form holds its target in its word, and so does an unbound
slot whose library has no fixed base but a sealed table
(:func:`unbound_slot`): its target there as linked.  The slot indices
and the pre-binding record are in ``.elfvector.index``
(:func:`import_layout`).  The text every architecture shares (the
table, the slots' declarations, the index) is :mod:`.asmtext`'s.

A file linked at a fixed address (a non-PIE program, a library of a
vectool group) has its slots bound when it is written (pre-bound,
:func:`bound_slot`), and so has a PIE program against such libraries,
with far forms only.  At start-up the binder checks, per vector, that the
file (for near forms) and the table are where they were and that the
table carries the recorded seal, and writes nothing when they are.
Otherwise it writes the far form into the slots of the vectors that do
not hold: when the table is the recorded build, moved, by adding how far
it moved to every word (:func:`_shift_group`), else from the table
(:func:`_bind_group`); in place in a program, or in a pre-bound library
as ld.so relocates it, else in a copy moved over the old pages with one
``mremap`` (:func:`_rebind`).  No page is ever writable and executable
at once, and a thread running through these pages sees either the old
ones or the new ones, both valid code.
"""

from .asmtext import INDEX_SIZE, X86_64, bind_message, export_table, import_slots, start_entry, text
# every architecture's module offers these names (see elfvector.arch)
from .asmtext import SEAL_SIZE, asm_symbol, table_seal  # noqa: F401

SLOT_SIZE = 16
PAGE_SIZE = 4096
#: the pre-binding record's slot address for slots bound with far forms only,
#: which hold wherever the file is loaded (a PIE program's)
PREBOUND_ANYWHERE = 1
#: bit 0 of a table address in the pre-binding record: the vector's slots
#: are not bound, their words hold their targets for that table (:func:`prebinding`)
NOT_BOUND = 1
#: ``jmp *8(%rip)`` and two bytes of padding: the far slot's code
FAR_SLOT_CODE = bytes.fromhex("ff2502000000cccc")

# Linux x86-64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl).
SYS_WRITE, SYS_MMAP, SYS_MPROTECT, SYS_MREMAP, SYS_EXIT_GROUP = 1, 9, 10, 25, 231


def export_table_asm(vector, aliases):
    """Assembly for the export vector of ``vector`` (:func:`asmtext.export_table`):
    an IFUNC's alias makes the link editor point its slot at an IPLT entry
    ``jmp *GOT(%rip)``, which any caller may reach, so x86-64 needs no veneer."""
    return text(export_table(X86_64, vector, aliases))


def import_layout(nslots, nvectors):
    """(offset of the pre-binding record, size) in ``.elfvector.index``,
    which holds the slot indices (u32 each, in slot order), then the
    record: the address the slots were pre-bound at (0: not pre-bound),
    then per vector the address and the seal of the table they were
    pre-bound against (0, 0: not pre-bound)."""
    record = _round_up(nslots * INDEX_SIZE, 8)
    return record, record + 8 + 16 * nvectors


def bound_slot(slot, target):
    """The 16 bytes of the slot at ``slot`` bound to ``target``: ``jmp rel32``
    where it reaches, else the far form, which the binder writes.  With
    ``slot`` None (a file loaded anywhere) always the far form, which
    holds wherever the slot is.  Every form keeps ``target`` in its word,
    so that the binder can move it with its library (:func:`_shift_group`)."""
    disp = None if slot is None else target - (slot + 5)
    if disp is not None and -(1 << 31) <= disp < (1 << 31):
        return b"\xe9" + disp.to_bytes(4, "little", signed=True) + b"\xcc" * 3 + _word(target)
    return FAR_SLOT_CODE + _word(target)


def unbound_slot(slot, target):
    """``slot``, an unbound slot as assembled (``call .Llazy``), with
    ``target`` in its word: where the slot goes if its library is loaded
    at the base it was linked against.  The slot still binds before its
    first call; the binder adds to the word how far the library moved."""
    return bytes(slot[:8]) + _word(target)


def prebinding(table, seal, bound):
    """A vector's 16 bytes of the pre-binding record (:func:`import_layout`):
    its table's address and seal, and whether its slots are bound (else
    they hold their targets for a table at ``table`` in their words only,
    :func:`unbound_slot`).  Unbound is bit 0 of the address (a table is
    8-aligned), so that no check finds such a vector holding."""
    return (table | (0 if bound else NOT_BOUND)).to_bytes(8, "little") + seal


def _word(value):
    return value.to_bytes(8, "little")


def import_vector_asm(vectors, in_executable, program, bind_at_relocation=False):
    """Assembly for an import vector.

    ``vectors`` is a list of ``(layout_symbol, slots)`` where ``slots`` is a
    list of ``(symbol, index, exported)``.  ``in_executable`` chooses
    ``.preinit_array`` (runs before every library constructor) over
    ``.init_array.00000`` (the first constructor of a shared library, before
    any of its own, which may call through the slots).  With
    ``bind_at_relocation`` (slots that will be pre-bound or hold their
    targets for an assumed layout: :func:`prebinding`) the binder runs
    earlier still, as the object's IRELATIVE (:func:`_bind_at_relocation`),
    and that entry then returns at once.
    """
    unbound = ["\tcall .Llazy", "\t.byte 0xcc,0xcc,0xcc", "\t.quad 0"]
    out = import_slots(X86_64, vectors, program, SLOT_SIZE, SLOT_SIZE, unbound)
    out += ["\t.balign 8", ".Lprebind:", "\t.quad 0"] + ["\t.quad 0,0"] * len(vectors) + [""]
    out += [f'\t.section {BINDER_SECTION},"ax",@progbits', ".Lbinder:"]
    out += _lazy_trampoline()
    out += _binder(vectors, program, in_executable or bind_at_relocation)
    out += _bind_at_relocation() if bind_at_relocation else []
    entry = BIND_IFUNC if bind_at_relocation else ".Lbind"
    return text(out + start_entry(X86_64, in_executable, entry))


#: the section of the binder's code: cold code, which GNU ld's scripts put
#: at the start of ``.text``, away from the slots after it, so that the
#: slot pages can be made writable while the binder runs (:func:`_rebind`)
BINDER_SECTION = ".text.unlikely.elfvector"

#: the local IFUNC symbol whose resolver runs the binder while ld.so relocates
BIND_IFUNC = "__elfvector_bind_at_relocation"


def _bind_at_relocation():
    """The binder, run again as this object's own ``R_X86_64_IRELATIVE``.

    An unbound slot goes through ``.Llazy``, which binds first; a pre-bound
    slot does not, so a call reaching it before ``.preinit_array`` or
    ``.init_array`` ran the binder (an IFUNC resolver of an object
    relocated later, a dependency's constructor calling back into a
    library) would jump to its pre-bound target unchecked.  ld.so
    relocates an object after its dependencies and runs its IRELATIVEs
    after its other relocations (GNU ld sorts them last: the layout
    symbols' GLOB_DATs, which the binder reads, come first; in a non-PIE
    program the IRELATIVE of the ``.iplt`` is in ``.rela.plt``, which
    ld.so resolves at load time even when lazy).  So the binder has
    run before any constructor and before the IFUNC resolvers of the
    objects relocated later; the ``.preinit_array``/``.init_array`` entry
    then finds the lock word at 2 and returns at once.  Running while
    ld.so relocates the object, before anything can reach its code but
    the IFUNC resolvers ld.so calls on this thread, is also what lets
    the binder write the slot pages in place (:func:`_rebind`).

    The IRELATIVE is the ``.preinit_array``/``.init_array`` entry's
    (:func:`import_vector_asm`): the resolver returns the address of a
    bare ``ret``, which ld.so stores there and calls later.  GNU ld puts
    the init arrays before ``.data.rel.ro``, ``.got`` and ``.data`` and
    sorts the IRELATIVEs of ``.rela.dyn`` by address, so the binder also
    runs before the resolvers of the file's own IFUNCs whose addresses
    its data holds (in a PIE program or a library; a non-PIE program's
    are in ``.rela.plt``, after ``.rela.dyn``, like those of the IFUNCs
    it calls).

    ld.so calls the resolver with no meaningful argument, at 8 mod 16 like
    any function: one word more and ``.Lbind`` is entered at 8 mod 16 too;
    ``.Lbind`` keeps the callee-saved registers.
    """
    return [
        f'\t.section {BINDER_SECTION},"ax",@progbits',
        "\t.balign 16",
        f"\t.type {BIND_IFUNC},@gnu_indirect_function",
        f"{BIND_IFUNC}:",
        "\tsub $8,%rsp",
        "\tcall .Lbind",
        "\tadd $8,%rsp",
        "\tlea .Lbound_nothing(%rip),%rax",
        ".Lbound_nothing:",
        "\tret",
        f"\t.size {BIND_IFUNC},.-{BIND_IFUNC}",
    ]


def _lazy_trampoline():
    """A call that reaches an unbound slot binds every slot, then retries.

    The slot's ``call`` left the slot address + 5 on the stack.  Argument
    registers (and %rax, the vector-register count of a variadic call, and
    %r10, the static chain) are saved; the binder touches no vector
    register, so %xmm/%ymm arguments survive untouched.  %r11 is free at a
    call boundary (psABI 3.2.3).  Stack: the slot was entered at 8 mod 16,
    the call made it 0, eight pushes keep it 0, so .Lbind is entered at
    8 mod 16 as the psABI requires.
    """
    regs = ["%rax", "%rdi", "%rsi", "%rdx", "%rcx", "%r8", "%r9", "%r10"]
    return (["\t.balign 16", ".Llazy:"]
            + [f"\tpush {r}" for r in regs]
            + ["\tcall .Lbind"]
            + [f"\tpop {r}" for r in reversed(regs)]
            + ["\tpop %r11", "\tsub $5,%r11", "\tjmp *%r11", ""])


def _binder(vectors, program, in_place):
    """The binding routine: once, thread-safe, raw system calls only.

    It must not call anything that could itself be a vectored slot, so it
    uses no libc.  State 0 = unbound, 1 = binding, 2 = bound.  A first
    pass checks every vector's pre-binding (:func:`_check`); when all hold,
    nothing is written.  Else :func:`_rebind` writes the slots, each
    vector's by ``.Lbind_vector`` with %rdx = export table, %rdi = its
    pre-binding record, %r13 = first slot, %r8 = first index, %r15d =
    count, and %r14 = the distance from the slots to where they are
    written.  All of its code is between ``.Lbinder`` and ``.Lbinder_end``.
    """
    saved = ["%rbx", "%rbp", "%r12", "%r13", "%r14", "%r15"]
    out = ["\t.balign 16", ".Lbind:"] + [f"\tpush {r}" for r in saved] + [
        "\tlea .Lstate(%rip),%rbx",
        "\txor %eax,%eax",
        "\tmov $1,%ecx",
        "\tlock cmpxchg %ecx,(%rbx)",
        "\tje .Lbind_now",
        ".Lwait:",                      # another thread binds: wait for it
        "\tcmp $2,%eax",
        "\tje .Lbind_done",
        "\tpause",
        "\tmov (%rbx),%eax",
        "\tjmp .Lwait",
        ".Lbind_now:",
        "\tmov .Lprebind(%rip),%rax",
        "\tlea .Lslots(%rip),%rcx",
        "\txor %ebp,%ebp",
        "\tcmp %rcx,%rax",
        "\tsete %bpl",                  # 1: the slots are where they were pre-bound,
        f"\tcmp ${PREBOUND_ANYWHERE},%rax",
        "\tjne 1f",
        "\tmov $1,%ebp",                # or pre-bound with far forms only, valid anywhere
        "1:",
    ]
    # One GOT load per vector: ld.so found the layout symbol at load time
    # (or refused to start the program if the library lacks that layout).
    # A zero GOT word: called before ld.so relocated this file (from
    # another library's IFUNC resolver); fail loudly, never jump wild.
    for v, (layout_symbol, _) in enumerate(vectors):
        out += [f"\tmov {layout_symbol}@GOTPCREL(%rip),%rdx",
                "\ttest %rdx,%rdx",
                "\tjz .Lbind_fail",
                f"\tlea .Lprebind+{8 + 16 * v}(%rip),%rdi",
                "\tcall .Lcheck",
                "\tjne .Lrebind"]
    out += ["\tjmp .Lbound"] + _rebind(in_place) + [
        ".Lbound:",
        "\tmovl $2,(%rbx)",             # release: x86 stores are not reordered
        ".Lbind_done:"] + [f"\tpop {r}" for r in reversed(saved)] + [
        "\tret",
        ".Lbind_fail:",
        f"\tmov ${SYS_WRITE},%eax", "\tmov $2,%edi", "\tlea .Lbind_message(%rip),%rsi",
        "\tmov $(.Lbind_message_end - .Lbind_message),%edx", "\tsyscall",
        f"\tmov ${SYS_EXIT_GROUP},%eax", "\tmov $127,%edi", "\tsyscall",
        "\thlt",
    ]
    out += _bind_all(vectors) + _pages() + _check() + _bind_vector() + _shift_group()
    return out + _bind_group() + [".Lbinder_end:"] + bind_message(X86_64, program)


def _rebind(in_place):
    """Some pre-binding does not hold: write every vector's slots anew.

    In place (``in_place``) when no code of the binder is on the slot
    pages: they are made read+write (not executable), written, and made
    read+exec again, as ld.so does for a text relocation.  ``in_place``
    says that no other thread can be in them then: the binder of a
    program runs before any constructor (from ``.preinit_array``, or
    earlier from an IFUNC resolver, on ld.so's thread), and a library's
    binder runs while ld.so relocates it (:func:`_bind_at_relocation`),
    before ld.so gives the library to anyone.  Else (a library's binder,
    which may run from its constructor or its first call while another
    thread runs the library after a ``dlopen``, or a binder sharing a page
    with slots) in fresh anonymous pages: a copy of the slot pages,
    written, made read+exec and moved over the old ones with one
    ``mremap``, so that a thread running through them sees either the old
    pages or the new ones, both valid code.  No page is ever writable and
    executable at once.
    """
    out = [".Lrebind:", "\tcall .Lpages"]
    if in_place:
        out += [
            "\tlea .Lbinder(%rip),%rax",
            "\tlea (%rsi,%rdx),%rcx",
            "\tcmp %rcx,%rax",
            "\tjae .Lrebind_in_place",      # the binder starts after the slot pages
            "\tlea .Lbinder_end(%rip),%rax",
            "\tcmp %rsi,%rax",
            "\tjbe .Lrebind_in_place",      # or ends before them
        ]
    out += [
        "\tmov %rdx,%rsi", "\txor %edi,%edi", "\tmov $3,%edx", "\tmov $0x22,%r10d",
        "\tmov $-1,%r8", "\txor %r9d,%r9d", f"\tmov ${SYS_MMAP},%eax", "\tsyscall",
        "\tcmp $-4095,%rax", "\tjae .Lbind_fail",
        "\tmov %rax,%r12",              # the new pages
        "\tcall .Lpages",
        "\tmov %r12,%r14",
        "\tsub %rsi,%r14",              # new pages - old pages
        "\tmov %r12,%rdi",
        "\tmov %rdx,%rcx",
        "\tshr $3,%rcx",
        "\trep movsq",                  # a copy: the other code and the slots that hold
        "\tcall .Lbind_all",
        "\tcall .Lpages",
        f"\tmov ${SYS_MPROTECT},%eax", "\tmov %r12,%rdi", "\tmov %rdx,%rsi", "\tmov $5,%edx",
        "\tsyscall",
        "\ttest %rax,%rax", "\tjnz .Lbind_fail",
        "\tcall .Lpages",
        f"\tmov ${SYS_MREMAP},%eax", "\tmov %rsi,%r8", "\tmov %r12,%rdi", "\tmov %rdx,%rsi",
        "\tmov $3,%r10d",               # MREMAP_MAYMOVE | MREMAP_FIXED
        "\tsyscall",
        "\tcmp $-4095,%rax", "\tjae .Lbind_fail",
        "\tjmp .Lbound",
    ]
    if in_place:
        out += [".Lrebind_in_place:"] + _protect_slot_pages(3) + [
            "\txor %r14d,%r14d",
            "\tcall .Lbind_all"] + _protect_slot_pages(5) + ["\tjmp .Lbound"]
    return out


def _protect_slot_pages(prot):
    """``mprotect`` the slot pages to ``prot`` (3 read+write, 5 read+exec)."""
    return ["\tcall .Lpages",
            f"\tmov ${SYS_MPROTECT},%eax", "\tmov %rsi,%rdi", "\tmov %rdx,%rsi",
            f"\tmov ${prot},%edx", "\tsyscall",
            "\ttest %rax,%rax", "\tjnz .Lbind_fail"]


def _bind_all(vectors):
    """Write every vector's slots at %r14 from where they are."""
    out = [".Lbind_all:", "\tmov $0x" + FAR_SLOT_CODE[::-1].hex() + ",%r9"]
    first = 0
    for v, (layout_symbol, entries) in enumerate(vectors):
        out += [f"\tmov {layout_symbol}@GOTPCREL(%rip),%rdx",
                "\ttest %rdx,%rdx",        # the check stopped before this vector's
                "\tjz .Lbind_fail",
                f"\tlea .Lprebind+{8 + 16 * v}(%rip),%rdi",
                f"\tlea .Lslots+{SLOT_SIZE * first}(%rip),%r13",
                f"\tlea .Lindex+{INDEX_SIZE * first}(%rip),%r8",
                f"\tmov ${len(entries)},%r15d",
                "\tcall .Lbind_vector"]
        first += len(entries)
    return out + ["\tret"]


def _pages():
    """%rsi = the first page holding slots, %rdx = the bytes of the pages
    holding them (the slots need not start or end on a page boundary)."""
    return [
        "\t.balign 16",
        ".Lpages:",
        "\tlea .Lslots(%rip),%rsi",
        f"\tand $-{PAGE_SIZE},%rsi",
        f"\tlea .Lslots_end+{PAGE_SIZE - 1}(%rip),%rdx",
        f"\tand $-{PAGE_SIZE},%rdx",
        "\tsub %rsi,%rdx",
        "\tret",
    ]


def _check():
    """ZF set iff the vector's slots hold as pre-bound: the slots are where
    they were bound (%ebp), the table at %rdx is at the recorded address
    (%rdi) and carries the recorded seal.  The seal is read only from a
    table at the recorded address, where the library bound against put it.
    A vector whose slots are not bound (:data:`NOT_BOUND`) never holds."""
    return [
        ".Lcheck:",
        "\tcmp $1,%ebp",
        "\tjne 1f",
        "\tcmp (%rdi),%rdx",
        "\tjne 1f",
        f"\tmov -{SEAL_SIZE}(%rdx),%rax",
        "\tcmp 8(%rdi),%rax",
        "1:",
        "\tret",
    ]


def _bind_vector():
    """Leave a vector's slots as they are if they hold; else, when its
    table is the build they hold their targets for, moved by a whole
    number of pages, move every target by as much (:func:`_shift_group`);
    else bind them from the table (:func:`_bind_group`).

    The seal is read before a table found elsewhere only when it is on
    the table's own page (which is mapped): the recorded table is not at
    the start of its page, and the new one is at the same offset in its
    page, as every load of the recorded library puts it.
    """
    return [
        ".Lbind_vector:",
        "\tcall .Lcheck",
        "\tje .Lbind_vector_done",      # they hold: in place, or in the copy
        "\tmov (%rdi),%rax",
        f"\tand $-{NOT_BOUND + 1},%rax",  # the recorded table
        "\tjz .Lbind_group",            # none: bind from the table
        "\tmov %rdx,%rcx",
        "\tsub %rax,%rcx",              # how far it moved
        f"\ttest ${PAGE_SIZE - 1},%ecx",
        "\tjnz .Lbind_group",
        f"\ttest ${PAGE_SIZE - 1},%eax",
        "\tjz .Lbind_group",
        f"\tmov -{SEAL_SIZE}(%rdx),%rax",
        "\tcmp 8(%rdi),%rax",
        "\tjne .Lbind_group",           # another build of the library
        "\tmov %rcx,%rax",
        "\tjmp .Lshift_group",
        ".Lbind_vector_done:",
        "\tret",
    ]


#: slots a turn of :func:`_shift_group`'s loop: 16 slots span 256 bytes,
#: which one-byte displacements from the middle reach
SHIFT_UNROLL = 16


def _shift_group():
    """Move %r15d slots from %r13 (written at %r13 + %r14) by %rax: each
    gets the far form (%r9, :data:`FAR_SLOT_CODE`) and %rax added to the
    target in its word (the library moved; every form holds its target
    there).  Two instructions a slot: one slot a turn until the count is
    a multiple of :data:`SHIFT_UNROLL`, then that many a turn."""
    half = SLOT_SIZE * SHIFT_UNROLL // 2
    out = [
        "\t.balign 16",
        ".Lshift_group:",
        f"\tlea {half}(%r13,%r14),%rdi",
        "\tmov %r15d,%ecx",
        f"\ttest ${SHIFT_UNROLL - 1},%cl",
        "\tjz .Lshift_many",
        ".Lshift_one:",
        f"\tmov %r9,-{half}(%rdi)",
        f"\tadd %rax,{8 - half}(%rdi)",
        f"\tadd ${SLOT_SIZE},%rdi",
        "\tdec %ecx",
        f"\ttest ${SHIFT_UNROLL - 1},%cl",
        "\tjnz .Lshift_one",
        ".Lshift_many:",
        "\ttest %ecx,%ecx",
        "\tjz .Lshift_done",
        ".Lshift_turn:",
    ]
    for k in range(SHIFT_UNROLL):
        at = SLOT_SIZE * k - half
        out += [f"\tmov %r9,{at}(%rdi)", f"\tadd %rax,{at + 8}(%rdi)"]
    return out + [
        f"\tadd ${SLOT_SIZE * SHIFT_UNROLL},%rdi",
        f"\tsub ${SHIFT_UNROLL},%ecx",
        "\tjnz .Lshift_turn",
        ".Lshift_done:",
        "\tret",
    ]


def _bind_group():
    """Bind %r15d slots from %r13 (indices from %r8) against the table at %rdx.

    Every slot gets the far form, which reaches anywhere and costs what a
    PLT call costs.  One induction variable, %rcx, runs from -4 * count up
    to 0, so that ``(%r8,%rcx)`` is a slot's index and ``(%r13,%rcx,4)``
    the slot where it is written (%r8 and %r13 point past the vector's last
    index and slot).  Two slots a turn (one first for an odd count): 6
    instructions a slot.  %r9 holds :data:`FAR_SLOT_CODE`.
    """
    scale = SLOT_SIZE // INDEX_SIZE
    return [
        "\t.balign 16",
        ".Lbind_group:",
        f"\tlea 0(,%r15,{INDEX_SIZE}),%rcx",
        "\tadd %rcx,%r8",
        f"\tlea (%r13,%rcx,{scale}),%r13",
        "\tadd %r14,%r13",
        "\tneg %rcx",
        f"\ttest ${INDEX_SIZE},%cl",
        "\tjz .Lbind_pair",
        "\tmov (%r8,%rcx),%eax",          # an odd count: one slot alone
        "\tmovslq (%rdx,%rax,4),%rax",
        "\tadd %rdx,%rax",
        f"\tmov %r9,(%r13,%rcx,{scale})",
        f"\tmov %rax,8(%r13,%rcx,{scale})",
        f"\tadd ${INDEX_SIZE},%rcx",
        "\tjz .Lbind_group_done",
        ".Lbind_pair:",
        "\tmov (%r8,%rcx),%eax",          # the two slots' indices
        f"\tmov {INDEX_SIZE}(%r8,%rcx),%r10d",
        "\tmovslq (%rdx,%rax,4),%rax",
        "\tmovslq (%rdx,%r10,4),%r10",
        "\tadd %rdx,%rax",                 # table + table[index]
        "\tadd %rdx,%r10",
        f"\tmov %r9,(%r13,%rcx,{scale})",  # ff 25 02 00 00 00: jmp *8(%rip)
        f"\tmov %rax,8(%r13,%rcx,{scale})",  # the word it jumps through
        f"\tmov %r9,{SLOT_SIZE}(%r13,%rcx,{scale})",
        f"\tmov %r10,{SLOT_SIZE + 8}(%r13,%rcx,{scale})",
        f"\tadd ${2 * INDEX_SIZE},%rcx",
        "\tjnz .Lbind_pair",
        ".Lbind_group_done:",
        "\tret",
    ]


def _round_up(value, align):
    return (value + align - 1) // align * align


# -- post-link code (retrovec, retroimp) ---------------------------------

ENDBR64 = bytes.fromhex("f30f1efa")
IPLT_STUB_SIZE = 16


def _rel32(source_end, target):
    disp = target - source_end
    if not -(1 << 31) <= disp < (1 << 31):
        raise ValueError(f"rel32 displacement {disp:#x} out of range")
    return disp.to_bytes(4, "little", signed=True)


def indirect_jump_target(code, at):
    """The GOT word that the PLT-style entry ``code`` (at ``at``) jumps through,
    or None: ``[endbr64] [bnd] jmp *disp32(%rip)``, the shape of ld's IPLT,
    ``.plt``, ``.plt.sec`` and ``.plt.got`` entries and of :func:`iplt_stub`."""
    pos = 4 if code.startswith(ENDBR64) else 0
    pos += 1 if code[pos:pos + 1] == b"\xf2" else 0
    if code[pos:pos + 2] != b"\xff\x25" or len(code) < pos + 6:
        return None
    disp = int.from_bytes(code[pos + 2:pos + 6], "little", signed=True)
    return (at + pos + 6 + disp) & (2**64 - 1)


INDIRECT_JUMP_MAX = 11          # bytes indirect_jump_target may need


def iplt_stub(at, got):
    """``endbr64; jmp *got(%rip)``: an IFUNC's vector target, like ld's IPLT entry."""
    code = ENDBR64 + b"\xff\x25" + _rel32(at + 10, got)
    return code + b"\xcc" * (IPLT_STUB_SIZE - len(code))


RESOLVER_STUB_SIZE = 16


def resolver_stub(at, number, common):
    """``endbr64; mov $number,%eax; jmp common``: the IRELATIVE resolver of one slot.

    ld.so calls it (indirectly, hence ``endbr64``) while relocating the
    file and stores what it returns in the function's GOT slot.
    """
    code = ENDBR64 + b"\xb8" + number.to_bytes(4, "little") + b"\xe9" + _rel32(at + 14, common)
    return code + b"\xcc" * (RESOLVER_STUB_SIZE - len(code))


def resolver_common(at, descriptors, got):
    """The shared tail of the resolver stubs.

    ``descriptors`` holds a (u32 slot index, u32 vector number) pair per
    stub number; ``got`` one word per vector, which a GLOB_DAT of the
    vector's layout symbol filled before any IRELATIVE ran (ld.so applies
    DT_RELA before DT_JMPREL).  Returns ``table + table[index]``.
    Clobbers only %rax, %rcx, %rdx.
    """
    code = bytearray()
    code += b"\x48\x8d\x0d" + _rel32(at + 7, descriptors)   # lea descriptors(%rip),%rcx
    code += bytes.fromhex("8b54c104")                        # mov 4(%rcx,%rax,8),%edx
    code += bytes.fromhex("8b04c1")                          # mov (%rcx,%rax,8),%eax
    code += b"\x48\x8d\x0d" + _rel32(at + len(code) + 7, got)  # lea got(%rip),%rcx
    code += bytes.fromhex("488b14d1")                        # mov (%rcx,%rdx,8),%rdx
    code += bytes.fromhex("48630482")                        # movslq (%rdx,%rax,4),%rax
    code += bytes.fromhex("4801d0")                          # add %rdx,%rax
    code += b"\xc3"                                          # ret
    return bytes(code)


RESOLVER_COMMON_SIZE = len(resolver_common(0, 0, 0))


# -- relvec: the relocation fixup -----------------------------------------

def _assemble(items, at):
    """Lay out ``items`` at ``at``: bytes, ``("label", name)``, ``("j8", opcode, name)``
    (a short jump) and ``("rip", prefix, target)`` (an instruction ending in a
    RIP-relative disp32 to the absolute address ``target``)."""
    sizes = {"j8": 2}
    labels, offset = {}, 0
    for item in items:
        if isinstance(item, bytes):
            offset += len(item)
        elif item[0] == "label":
            labels[item[1]] = offset
        elif item[0] == "rip":
            offset += len(item[1]) + 4
        else:
            offset += sizes[item[0]]
    code = bytearray()
    for item in items:
        if isinstance(item, bytes):
            code += item
        elif item[0] == "rip":
            code += item[1] + _rel32(at + len(code) + len(item[1]) + 4, item[2])
        elif item[0] == "j8":
            disp = labels[item[2]] - (len(code) + 2)
            if not -128 <= disp < 128:
                raise ValueError(f"short jump to {item[2]} out of range")
            code += bytes([item[1]]) + disp.to_bytes(1, "little", signed=True)
    return bytes(code)


def relvec_fixup(at, table, table_end, word):
    """The routine relvec runs through one ``R_X86_64_IRELATIVE``.

    ld.so calls it (indirectly, hence ``endbr64``) with no arguments after
    every other relocation of ``.rela.dyn``, before RELRO is made read-only
    and before any constructor.  It computes the load bias with a
    RIP-relative ``lea`` of itself minus its link-time address (a
    ``movabs`` immediate, so no relocation), returns at once when it is 0,
    and otherwise adds it to every word that the RELR-encoded table
    ``[table, table_end)`` lists (link-time addresses):

    * an even entry is the address of one word; the next bitmap starts at
      the word after it;
    * an odd entry is a bitmap: bit ``i`` (1..63) marks the word
      ``base + 8*(i-1)``; the next bitmap's base is 63 words further.

    Returns the (fixed-up) value of ``word``, one of the listed words,
    which is where ld.so stores the IRELATIVE's result: the IRELATIVE needs
    no writable word of its own.  Uses only %rax %rcx %rdx %rsi %rdi %r8,
    no stack and no vector register.
    """
    items = [
        ENDBR64,
        ("rip", b"\x48\x8d\x05", at),             # lea at(%rip),%rax
        b"\x48\xba" + at.to_bytes(8, "little"),    # movabs $at,%rdx
        bytes.fromhex("4829d0"),                   # sub %rdx,%rax: the load bias
        ("j8", 0x74, "done"),                      # je done
        ("rip", b"\x48\x8d\x0d", table),          # lea table(%rip),%rcx
        ("rip", b"\x48\x8d\x35", table_end),      # lea table_end(%rip),%rsi
        ("label", "loop"),
        bytes.fromhex("4839f1"),                   # cmp %rsi,%rcx
        ("j8", 0x73, "done"),                      # jae done
        bytes.fromhex("488b11"),                   # mov (%rcx),%rdx
        bytes.fromhex("4883c108"),                 # add $8,%rcx
        bytes.fromhex("f6c201"),                   # test $1,%dl
        ("j8", 0x75, "bitmap"),                    # jne bitmap
        bytes.fromhex("48010402"),                 # add %rax,(%rdx,%rax,1)
        bytes.fromhex("4c8d440208"),               # lea 8(%rdx,%rax,1),%r8: the next base
        ("j8", 0xEB, "loop"),                      # jmp loop
        ("label", "bitmap"),
        bytes.fromhex("4c89c7"),                   # mov %r8,%rdi
        bytes.fromhex("48d1ea"),                   # shr %rdx: drop the tag bit
        ("label", "bit"),
        bytes.fromhex("4885d2"),                   # test %rdx,%rdx
        ("j8", 0x74, "bitmap_done"),               # je bitmap_done
        bytes.fromhex("48d1ea"),                   # shr %rdx: CF = this word's bit
        ("j8", 0x73, "skip"),                      # jnc skip
        bytes.fromhex("480107"),                   # add %rax,(%rdi)
        ("label", "skip"),
        bytes.fromhex("4883c708"),                 # add $8,%rdi
        ("j8", 0xEB, "bit"),                       # jmp bit
        ("label", "bitmap_done"),
        bytes.fromhex("4981c0f8010000"),           # add $504,%r8: 63 words on
        ("j8", 0xEB, "loop"),                      # jmp loop
        ("label", "done"),
        ("rip", b"\x48\x8b\x05", word),           # mov word(%rip),%rax
        b"\xc3",                                   # ret
    ]
    return _assemble(items, at)


RELVEC_FIXUP_SIZE = len(relvec_fixup(0x1000, 0x2000, 0x2000, 0x3000))
