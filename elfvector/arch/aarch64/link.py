"""AArch64 assembly text for the link-time path (see :mod:`elfvector.arch.x86_64`).

Export side: the same table as x86-64 (``.long target - table`` per slot,
an ``R_AARCH64_PREL32`` the link resolves, the 8-byte seal before it).

Import side: each imported function gets one 24-byte slot in
``.elfvector.slots`` (8-byte aligned, sharing pages with other code):

    unbound:  bti c; adr x16, slot; b .Llazy; udf #0;    .quad 0
    near:     bti c; b target;        udf #0; udf #0;    .quad target
    far:      bti c; ldr x16, .+12; br x16;   udf #0;    .quad target

The binder writes the near form when ``b``'s 26-bit word offset reaches
the target from the slot's second instruction (+-128 MiB, at the slot's
final address), the far form otherwise.  A direct ``b`` needs no landing
pad at the target.  The far form reaches anywhere; it costs what a PLT
call costs (a load and an indirect branch through x16, the AAPCS64
intra-procedure-call register, which a ``bti c`` landing pad at the
target accepts).  Both start with ``bti c`` (``hint #34``, a no-op
without BTI): a slot is the target of indirect calls too, as an exported
slot (the function's canonical address) and as the lazy trampoline's
retry (``br x16``), so on a BTI-guarded page it must be a landing pad.
Slots are bound at start-up only: no pre-binding on AArch64 yet
(:data:`bound_slot` is None).

The binder builds the slot pages anew in a fresh anonymous mapping, as on
x86-64, then cleans the data cache (``dc cvau``, ``dsb ish``), makes the
pages read+exec (with ``PROT_BTI`` when the file is BTI-marked), moves
them over the old pages with one ``mremap`` and invalidates the
instruction cache at their final address (``ic ivau``, ``dsb ish``,
``isb``).  Its lock is ``ldaxr``/``stxr``, its release ``stlr``.
"""

from ..asmtext import (AARCH64, INDEX_SIZE, SEAL_SIZE, asm_symbol, bind_message, export_table,
                       import_slots, start_entry, table_seal, text, veneers)

__all__ = ["SLOT_SIZE", "SEAL_SIZE", "PAGE_SIZE", "MAX_PAGE_SIZE", "FAR_SLOT_CODE",
           "B_OPCODE", "NEAR_BRANCH_OFFSET", "NEAR_REACH", "near_slot_code",
           "asm_symbol", "export_table_asm", "table_seal", "import_vector_asm", "bound_slot",
           "CACHE_MAINTENANCE", "PROT_BTI"]

SLOT_SIZE = 24
#: the smallest and largest page sizes of AArch64 Linux kernels (4, 16, 64 KiB)
PAGE_SIZE, MAX_PAGE_SIZE = 4096, 65536
#: slots are bound at start-up only: no pre-binding on AArch64 yet
bound_slot = None
#: ``bti c; ldr x16, .+12; br x16; udf #0``: the far slot's code, the target follows
FAR_SLOT_CODE = bytes.fromhex("5f2403d5" "70000058" "00021fd6" "00000000")
#: ``b``'s opcode, its imm26 the word offset to the target; the near slot's
#: ``b`` is its second instruction, after ``bti c``
B_OPCODE, NEAR_BRANCH_OFFSET = 0x14000000, 4
#: ``b`` reaches targets within [-NEAR_REACH, NEAR_REACH) bytes of itself
NEAR_REACH = 1 << 27
PROT_BTI = 0x10
#: the instructions that make the rewritten slots visible to instruction
#: fetch on every core, in the order the binder runs them
CACHE_MAINTENANCE = ("dc cvau", "dsb ish", "ic ivau", "dsb ish", "isb")

# Linux AArch64 system call numbers (include/uapi/asm-generic/unistd.h).
SYS_WRITE, SYS_MMAP, SYS_MUNMAP, SYS_MPROTECT, SYS_MREMAP, SYS_EXIT_GROUP = \
    64, 222, 215, 226, 216, 94


def export_table_asm(vector, aliases, bti=False, ifunc_slots=()):
    """Assembly for the export vector of ``vector`` (:func:`asmtext.export_table`).
    ``bti``: the library is BTI-marked, and the table's object keeps it so.

    GNU ld cannot point a table word (``R_AARCH64_PREL32``) at an IFUNC,
    as x86-64's does through the IPLT: the slots in ``ifunc_slots`` lead
    to a veneer of ours instead, the shape of an IPLT entry (``bti c;
    adrp x16; ldr x17, [x16, GOT]; br x17``) whose GOT word the link
    editor fills with an ``R_AARCH64_IRELATIVE``: the resolver's choice.
    """
    out = export_table(AARCH64, vector, aliases, ifunc_slots)
    out += veneers(ifunc_slots, aliases, _ifunc_veneer)
    return text(out + (_bti_property() if bti else []))


def _ifunc_veneer(alias):
    """``bti c; adrp x16; ldr x17, [x16, GOT]; br x17``: an IPLT entry's
    shape (:func:`elfvector.arch.aarch64.code.iplt_stub`), through the GOT
    word of the IFUNC ``alias``, which the link editor fills with an
    ``R_AARCH64_IRELATIVE``."""
    return ["\thint #34"] + _got_word("x16", alias, "x17") + ["\tbr x17"]


def import_vector_asm(vectors, in_executable, program, bind_at_relocation=False, bti=False):
    """Assembly for an import vector (the arguments are
    :func:`elfvector.arch.x86_64.import_vector_asm`'s; slots are never
    pre-bound here, so ``bind_at_relocation`` must be false).

    ``bti``: the rest of the output is BTI-marked (every other object
    carries ``GNU_PROPERTY_AARCH64_FEATURE_1_BTI``).  The object then
    carries the mark too, so the output stays marked, every indirect
    branch target here is a landing pad, and the rewritten slot pages are
    mapped with ``PROT_BTI`` as ld.so maps the rest of the file.
    """
    if bind_at_relocation:
        raise ValueError("AArch64 slots are not pre-bound")
    unbound = ["\thint #34",          # bti c
               "\tadr x16, .-4",
               "\tb .Llazy",
               "\tudf #0",
               "\t.quad 0"]
    out = import_slots(AARCH64, vectors, program, SLOT_SIZE, 8, unbound) + [""]
    out += _lazy_trampoline() + _binder(vectors, program, bti)
    out += start_entry(AARCH64, in_executable, ".Lbind")
    return text(out + (_bti_property() if bti else []))


def _bti_property():
    """``.note.gnu.property`` with ``GNU_PROPERTY_AARCH64_FEATURE_1_AND`` =
    BTI: the link editor marks the output only if every object has it."""
    return ['\t.section .note.gnu.property,"a"', "\t.balign 8",
            "\t.long 4, 16, 5", '\t.asciz "GNU"',
            "\t.long 0xc0000000, 4, 1, 0"]


def _lazy_trampoline():
    """A call that reaches an unbound slot binds every slot, then retries.

    The slot put its own address in x16 and branched here without
    touching x30, so the caller's return address is intact.  The argument
    registers x0-x7, x8 (indirect result) and x16 are saved; the binder
    touches no SIMD register, so floating-point arguments survive.  The
    retry is ``br x16``, which the slot's ``bti c`` accepts.
    """
    return ["\t.text", "\t.balign 16", ".Llazy:",
            "\tstp x29, x30, [sp, #-96]!",
            "\tmov x29, sp",
            "\tstp x0, x1, [sp, #16]",
            "\tstp x2, x3, [sp, #32]",
            "\tstp x4, x5, [sp, #48]",
            "\tstp x6, x7, [sp, #64]",
            "\tstp x8, x16, [sp, #80]",
            "\tbl .Lbind",
            "\tldp x8, x16, [sp, #80]",
            "\tldp x6, x7, [sp, #64]",
            "\tldp x4, x5, [sp, #48]",
            "\tldp x2, x3, [sp, #32]",
            "\tldp x0, x1, [sp, #16]",
            "\tldp x29, x30, [sp], #96",
            "\tbr x16",
            ""]


def _address(register, label):
    """``register`` = the address of ``label`` (anywhere within +-4 GiB)."""
    return [f"\tadrp {register}, {label}", f"\tadd {register}, {register}, :lo12:{label}"]


def _got_word(register, symbol, into=None):
    """``into`` (default ``register``) = the GOT word of ``symbol`` (the
    address ld.so found), its page in ``register``."""
    return [f"\tadrp {register}, :got:{symbol}",
            f"\tldr {into or register}, [{register}, :got_lo12:{symbol}]"]


def _constant(register, value):
    """``register`` (a w register) = ``value`` (< 2**32)."""
    if not 0 <= value < 1 << 32:
        raise ValueError(f"{value:#x} does not fit a w register")
    return [f"\tmovz {register}, #{value & 0xFFFF}",
            f"\tmovk {register}, #{value >> 16}, lsl #16"]


def _binder(vectors, program, bti):
    """The binding routine: once, thread-safe, raw system calls only.

    State 0 = unbound, 1 = binding, 2 = bound.  x19 = the state word,
    x20 = the first slot page, x21 = the bytes of the slot pages (pages of
    the kernel's size, :func:`_page_size`), x22 =
    the new pages, x23 = new - old, x24/x25 = :data:`FAR_SLOT_CODE`.
    """
    prot = 5 | (PROT_BTI if bti else 0)
    far = [int.from_bytes(FAR_SLOT_CODE[i:i + 8], "little") for i in (0, 8)]
    out = ["\t.balign 16", ".Lbind:",
           "\thint #34",                # bti c: .preinit_array/.init_array call it indirectly
           "\tstp x29, x30, [sp, #-80]!",
           "\tmov x29, sp",
           "\tstp x19, x20, [sp, #16]",
           "\tstp x21, x22, [sp, #32]",
           "\tstp x23, x24, [sp, #48]",
           "\tstr x25, [sp, #64]"] + _address("x19", ".Lstate") + [
           "\tmov w1, #1",
           ".Lacquire:",
           "\tldaxr w0, [x19]",
           "\tcbnz w0, .Lwait",
           "\tstxr w2, w1, [x19]",
           "\tcbnz w2, .Lacquire",
           "\tb .Lbind_now",
           ".Lwait:",                   # another thread binds: wait for it
           "\tclrex",
           ".Lwait_loop:",
           "\tldar w0, [x19]",
           "\tcmp w0, #2",
           "\tb.eq .Lbind_done",
           "\tyield",
           "\tb .Lwait_loop",
           ".Lbind_now:"]
    # A zero GOT word: called before ld.so relocated this file (from
    # another library's IFUNC resolver); fail loudly, never jump wild.
    for layout_symbol, _ in vectors:
        out += _got_word("x0", layout_symbol) + ["\tcbz x0, .Lbind_fail"]
    out += _page_size() + _address("x20", ".Lslots") + ["\tbic x20, x20, x10"]
    out += _address("x21", ".Lslots_end") + [
        "\tadd x21, x21, x10",
        "\tbic x21, x21, x10",
        "\tsub x21, x21, x20",
        # mmap(0, bytes, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
        "\tmov x0, #0", "\tmov x1, x21", "\tmov x2, #3", "\tmov x3, #0x22", "\tmov x4, #-1",
        "\tmov x5, #0", f"\tmov x8, #{SYS_MMAP}", "\tsvc #0",
        "\tcmn x0, #4095", "\tb.hs .Lbind_fail",
        "\tmov x22, x0",
        "\tmov x1, x20",                # the old pages copied whole
        "\tmov x2, x21",
        ".Lcopy:",
        "\tldp x3, x4, [x1], #16",
        "\tstp x3, x4, [x0], #16",
        "\tsubs x2, x2, #16",
        "\tb.ne .Lcopy",
        "\tsub x23, x22, x20",
        f"\tldr x24, ={far[0]:#x}",
        f"\tldr x25, ={far[1]:#x}",
    ]
    first = 0
    for layout_symbol, entries in vectors:
        out += (_got_word("x0", layout_symbol) + _address("x1", f".Lslots+{SLOT_SIZE * first}")
                + _address("x2", f".Lindex+{INDEX_SIZE * first}") + _constant("w3", len(entries))
                + ["\tbl .Lbind_group"])
        first += len(entries)
    out += _cache_lines("dc cvau", "x22", 16) + ["\tdsb ish"] + [
        # mprotect(new, bytes, PROT_READ|PROT_EXEC [|PROT_BTI])
        "\tmov x0, x22", "\tmov x1, x21", f"\tmov x2, #{prot}", f"\tmov x8, #{SYS_MPROTECT}",
        "\tsvc #0",
    ]
    if bti:                             # a kernel or CPU without BTI refuses PROT_BTI
        out += ["\tcbz x0, 1f", "\tmov x0, x22", "\tmov x1, x21", "\tmov x2, #5",
                f"\tmov x8, #{SYS_MPROTECT}", "\tsvc #0", "1:"]
    out += [
        "\tcbnz x0, .Lbind_fail",
        # mremap(new, bytes, bytes, MREMAP_MAYMOVE|MREMAP_FIXED, old)
        "\tmov x0, x22", "\tmov x1, x21", "\tmov x2, x21", "\tmov x3, #3", "\tmov x4, x20",
        f"\tmov x8, #{SYS_MREMAP}", "\tsvc #0",
        "\tcmn x0, #4095", "\tb.hs .Lbind_fail",
    ] + _cache_lines("ic ivau", "x20", 0) + ["\tdsb ish", "\tisb"] + [
        "\tmov w0, #2",
        "\tstlr w0, [x19]",             # release: the slots are written before the state
        ".Lbind_done:",
        "\tldr x25, [sp, #64]",
        "\tldp x23, x24, [sp, #48]",
        "\tldp x21, x22, [sp, #32]",
        "\tldp x19, x20, [sp, #16]",
        "\tldp x29, x30, [sp], #80",
        "\tret",
        ".Lbind_fail:",
        "\tmov x0, #2"] + _address("x1", ".Lbind_message") + [
        "\tmov x2, #(.Lbind_message_end - .Lbind_message)",
        f"\tmov x8, #{SYS_WRITE}", "\tsvc #0",
        "\tmov x0, #127", f"\tmov x8, #{SYS_EXIT_GROUP}", "\tsvc #0",
        "\tudf #0",
        "\t.ltorg",
    ] + _bind_group() + bind_message(AARCH64, program)
    return out


def _page_size():
    """x10 = the kernel's page size - 1 (4, 16 or 64 KiB).  A scratch
    mapping of :data:`MAX_PAGE_SIZE` bytes starts on a page boundary; the
    first candidate size at which ``mprotect`` accepts an address inside
    it (its start plus the candidate) is the page size, since ``mprotect``
    refuses an address off a page boundary.  Only the scratch mapping is
    touched, and it is unmapped again."""
    return [
        # mmap(0, MAX_PAGE_SIZE, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
        "\tmov x0, #0", f"\tmov x1, #{MAX_PAGE_SIZE}", "\tmov x2, #0", "\tmov x3, #0x22",
        "\tmov x4, #-1", "\tmov x5, #0", f"\tmov x8, #{SYS_MMAP}", "\tsvc #0",
        "\tcmn x0, #4095", "\tb.hs .Lbind_fail",
        "\tmov x11, x0",
        f"\tmov x9, #{PAGE_SIZE}",
        ".Lpage_size:",
        "\tcmp x9, #(1 << 16)",
        "\tb.eq .Lpage_known",         # neither 4 nor 16 KiB: 64 KiB
        "\tadd x0, x11, x9", "\tmov x1, #1", "\tmov x2, #0", f"\tmov x8, #{SYS_MPROTECT}",
        "\tsvc #0",
        "\tcbz x0, .Lpage_known",
        "\tlsl x9, x9, #2",
        "\tb .Lpage_size",
        ".Lpage_known:",
        "\tmov x0, x11", f"\tmov x1, #{MAX_PAGE_SIZE}", f"\tmov x8, #{SYS_MUNMAP}", "\tsvc #0",
        "\tsub x10, x9, #1",
    ]


def _cache_lines(operation, start, line_field):
    """``operation`` (``dc cvau`` or ``ic ivau``) on every cache line of the
    x21 bytes at ``start``; the line size is ``4 << CTR_EL0[field+3:field]``
    (DminLine at bit 16, IminLine at bit 0), read from CTR_EL0 as Linux
    lets user space do."""
    label = ".Ldc" if operation.startswith("dc") else ".Lic"
    return [
        "\tmrs x0, ctr_el0",
        f"\tubfx x0, x0, #{line_field}, #4",
        "\tmov x1, #4",
        "\tlsl x1, x1, x0",             # the line size
        "\tsub x2, x1, #1",
        f"\tbic x3, {start}, x2",
        f"\tadd x4, {start}, x21",
        f"{label}:",
        f"\t{operation}, x3",
        "\tadd x3, x3, x1",
        "\tcmp x3, x4",
        f"\tb.lo {label}",
    ]


def near_slot_code(slot, target):
    """The near slot's first 16 bytes at address ``slot`` jumping to
    ``target`` (what the binder writes; None when ``b`` cannot reach it)."""
    offset = target - slot - NEAR_BRANCH_OFFSET
    if not -NEAR_REACH <= offset < NEAR_REACH:
        return None
    branch = B_OPCODE | (offset >> 2 & 0x3FFFFFF)
    return FAR_SLOT_CODE[:4] + branch.to_bytes(4, "little") + bytes(8)


def _bind_group():
    """Bind w3 slots from x1 (indices from x2) against the table at x0,
    jumping to ``table + table[index]``: the near form when ``b`` at the
    slot's final address (x1) reaches it, else the far form, written at
    the slot's place in the new pages (x23 further on).  x12 = ``b``'s
    opcode, x13 = ``bti c``."""
    return [
        "\t.balign 16",
        ".Lbind_group:",
        f"\tmovz w12, #{B_OPCODE >> 16:#x}, lsl #16",
        "\tmov w13, w24",                # bti c, the far code's first instruction
        ".Lbind_slot:",
        "\tldr w4, [x2], #4",
        "\tldrsw x5, [x0, x4, lsl #2]",
        "\tadd x5, x0, x5",             # table + table[index]
        "\tadd x6, x1, x23",
        "\tstr x5, [x6, #16]",          # the word a far slot jumps through
        "\tsub x7, x5, x1",
        f"\tsub x7, x7, #{NEAR_BRANCH_OFFSET}",    # from the b, at the slot's final address
        f"\tsbfx x8, x7, #0, #{NEAR_REACH.bit_length()}",
        "\tcmp x8, x7",
        "\tb.ne .Lbind_far",              # beyond +-128 MiB
        "\tubfx x7, x7, #2, #26",
        "\torr w7, w7, w12",
        "\torr x7, x13, x7, lsl #32",
        "\tstp x7, xzr, [x6]",          # bti c; b target; udf #0; udf #0
        "\tb .Lbind_next",
        ".Lbind_far:",
        "\tstp x24, x25, [x6]",         # bti c; ldr x16, .+12; br x16; udf #0
        ".Lbind_next:",
        f"\tadd x1, x1, #{SLOT_SIZE}",
        "\tsubs w3, w3, #1",
        "\tb.ne .Lbind_slot",
        "\tret",
    ]
