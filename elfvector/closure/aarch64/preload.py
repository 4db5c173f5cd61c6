"""The preload check of a rewritten program (AArch64), part of its fix-up routine.

The check of :mod:`..x86_64.preload` (what it does and why is there), in
AArch64 code with the same data (:class:`~..preload.PreloadLayout`,
8-byte words) and the same Bloom filter.  glibc's AArch64 ``link_map`` and
``r_debug`` have x86-64's offsets; system calls are ``svc #0`` with the
number in x8 (``openat`` with ``AT_FDCWD``: there is no ``open``), and
preserve every register but x0.  x19 holds the address of the check's
fields (the data plus ``debug``), x20 the load bias, x21 the table (0: not
mapped yet, 1: unreadable), x22 the mapping, x23 the object.
"""

from ..preload import BLOOM_MULTIPLIER, DT_GNU_HASH

# Linux AArch64 system call numbers (include/uapi/asm-generic/unistd.h).
SYS_OPENAT, SYS_CLOSE, SYS_LSEEK, SYS_READ, SYS_WRITEV = 56, 57, 62, 63, 66
SYS_EXIT_GROUP, SYS_MUNMAP, SYS_MMAP = 94, 215, 222
AT_FDCWD = -100

VDSO_NAME = "linux-vdso.so.1"
MAP_OFFSET_UNIT = 1


def preload_lines(p):
    """The preload check of a program; x9 and x10 (the fix-up's) are kept."""
    def rel(offset):
        return offset - p.debug

    def address(reg, offset):
        """``reg`` = the address of the data at ``offset``."""
        if rel(offset) < 4096:
            return [f"add {reg}, x19, #{rel(offset)}"]
        return [f"imm {reg}, {rel(offset)}", f"add {reg}, x19, {reg}"]

    return [
        "ev_preload:",
        "stp x29, x30, [sp, #-112]!",
        "mov x29, sp",
        "stp x19, x20, [sp, #16]", "stp x21, x22, [sp, #32]", "stp x23, x24, [sp, #48]",
        "stp x25, x26, [sp, #64]", "stp x27, x28, [sp, #80]", "stp x9, x10, [sp, #96]",
        f"imm x19, {p.debug}",
        "add x19, x9, x19",
        "mov x20, x10",
        "mov x21, xzr",
        "mov x22, xzr",
        f"ldr x0, [x19, #{rel(p.loaded)}]",
        "cbz x0, ev_walk",
        "add x21, x0, x20",                       # the table is loaded: no mapping
        "ev_walk:",
        "ldr x0, [x19]",
        "ldr x0, [x0, x20]",                      # &_r_debug
        "cbz x0, ev_preload_done",
        "ldr x23, [x0, #8]",                      # r_map: the program
        "ev_object:",
        "ldr x23, [x23, #24]",                    # l_next
        "cbz x23, ev_preload_done",
        "ldr x1, [x23, #8]",                      # l_name
        "mov x2, x1",
        "ev_basename:",
        "ldrb w3, [x1], #1",
        "cbz w3, ev_basename_done",
        "cmp w3, #0x2f",
        "b.ne ev_basename",
        "mov x2, x1",
        "b ev_basename",
        "ev_basename_done:",
        "mov w0, #0x1505",                        # GNU hash: h = 5381
        "ev_name_hash:",
        "ldrb w3, [x2], #1",
        "cbz w3, ev_name_hashed",
        "add w0, w0, w0, lsl #5",
        "add w0, w0, w3",                         # h = h * 33 + c
        "b ev_name_hash",
        "ev_name_hashed:",
        *address("x1", p.names),
        f"imm w2, {p.names_count}",
        "bl ev_find",
        "cbnz w4, ev_object",                     # an expected object
        "ldr x1, [x23, #16]",                     # l_ld
        f"imm x3, {DT_GNU_HASH}",
        "ev_dynamic:",
        "ldr x0, [x1]",
        "cbz x0, ev_hit",                         # no DT_GNU_HASH: cannot tell
        "cmp x0, x3",
        "b.eq ev_gnu_hash",
        "add x1, x1, #16",
        "b ev_dynamic",
        "ev_gnu_hash:",
        "ldr x24, [x1, #8]",
        "ldr w0, [x24, #8]",                      # bloom size
        "add x25, x24, #16",
        "add x25, x25, x0, lsl #3",               # buckets
        "ldr w0, [x24]",                          # nbucket
        "add x26, x25, x0, lsl #2",               # end of the buckets
        "ldr w1, [x24, #4]",                      # symoffset
        "sub x24, x26, x1, lsl #2",               # chain of symbol i at x24 + 4i
        "ev_bucket:",
        "cmp x25, x26",
        "b.hs ev_object",
        "ldr w27, [x25], #4",
        "cbz w27, ev_bucket",
        "ev_chain:",
        "ldr w0, [x24, x27, lsl #2]",
        "orr w0, w0, #1",                         # the table holds hash | 1
        "bl ev_prebound",
        "cbnz w4, ev_hit",
        "ldr w0, [x24, x27, lsl #2]",
        "tbnz w0, #0, ev_bucket",                 # the chain's last symbol
        "add x27, x27, #1",
        "b ev_chain",
        "ev_hit:",
        "bl ev_ignored",
        "cbnz w4, ev_preload_done",
        "ldr x1, [x23, #8]",
        "mov x2, x1",
        "ev_name_length:",
        "ldrb w3, [x2]",
        "cbz w3, ev_name_measured",
        "add x2, x2, #1",
        "b ev_name_length",
        "ev_name_measured:",
        "sub x2, x2, x1",
        "sub sp, sp, #48",                        # three iovecs: prefix, name, suffix
        *address("x0", p.prefix),
        "str x0, [sp]",
        f"imm x0, {p.prefix_len}",
        "str x0, [sp, #8]",
        "str x1, [sp, #16]",
        "str x2, [sp, #24]",
        *address("x0", p.suffix),
        f"imm x3, {p.suffix_len}",
        "cmp x21, #1",
        "b.ne ev_suffix",
        *address("x0", p.unreadable),             # the table could not be read
        f"imm x3, {p.unreadable_len}",
        "ev_suffix:",
        "str x0, [sp, #32]",
        "str x3, [sp, #40]",
        "mov x0, #2",
        "mov x1, sp",
        "mov x2, #3",
        f"mov x8, #{SYS_WRITEV}",
        "svc #0",
        "mov x0, #127",
        f"mov x8, #{SYS_EXIT_GROUP}",
        "svc #0",
        "brk #0",
        "ev_preload_done:",
        "cbz x22, ev_preload_return",             # the mapping, if any
        "mov x0, x22",
        f"ldr x1, [x19, #{rel(p.table) + 8}]",
        f"mov x8, #{SYS_MUNMAP}",
        "svc #0",
        "ev_preload_return:",
        "ldp x19, x20, [sp, #16]", "ldp x21, x22, [sp, #32]", "ldp x23, x24, [sp, #48]",
        "ldp x25, x26, [sp, #64]", "ldp x27, x28, [sp, #80]", "ldp x9, x10, [sp, #96]",
        "ldp x29, x30, [sp], #112",
        "ret",
    ] + _prebound_lines(p, rel, address) + _find_lines() + _ignored_lines(p, address)


def _prebound_lines(p, rel, address):
    """w4 = 1 when w0 is in the pre-bound table.  A table in the file is
    mapped on first use, unless the filter rules the name out first."""
    return [
        "ev_prebound:",
        "stp x29, x30, [sp, #-32]!",
        "str x0, [sp, #16]",
        "cbnz x21, ev_prebound_mapped",
        "bl ev_filtered",
        "cbz w4, ev_prebound_return",             # not pre-bound
        "bl ev_map",
        "ev_prebound_mapped:",
        "ldr x0, [sp, #16]",
        "mov w4, #1",
        "cmp x21, #1",
        "b.eq ev_prebound_return",                # unreadable: every name counts
        "mov x1, x21",
        f"imm w2, {p.prebound_count}",
        "bl ev_find",
        "ev_prebound_return:",
        "ldp x29, x30, [sp], #32",
        "ret",
        "ev_map:",
        "mov x21, #1",
        "ldr x0, [x19]",
        "ldr x0, [x0, x20]",
        "ldr x0, [x0, #8]",
        "ldr x1, [x0, #8]",                       # the program's l_name
        "ldrb w2, [x1]",
        "cbnz w2, ev_map_open",
        *address("x1", p.exe),                    # exec'd directly: l_name is ""
        "ev_map_open:",
        f"mov x0, #{AT_FDCWD}",
        "mov x2, xzr",
        "mov x3, xzr",
        f"mov x8, #{SYS_OPENAT}",
        "svc #0",
        "tbnz x0, #63, ev_map_done",
        "mov x7, x0",                             # the descriptor
        "mov x1, xzr",
        "mov x2, #2",
        f"mov x8, #{SYS_LSEEK}",                  # the file must reach the table's end
        "svc #0",
        f"ldr x3, [x19, #{rel(p.table)}]",
        f"ldr x4, [x19, #{rel(p.table) + 8}]",
        "add x3, x3, x4",
        "mov x6, #-1",                            # no mapping
        "cmp x0, x3",
        "b.lt ev_map_close",
        "mov x0, xzr",
        f"ldr x1, [x19, #{rel(p.table) + 8}]",
        "mov x2, #1",                             # PROT_READ
        "mov x3, #2",                             # MAP_PRIVATE
        "mov x4, x7",
        f"ldr x5, [x19, #{rel(p.table)}]",
        f"mov x8, #{SYS_MMAP}",
        "svc #0",
        "mov x6, x0",
        "ev_map_close:",
        "mov x0, x7",
        f"mov x8, #{SYS_CLOSE}",
        "svc #0",
        "cmn x6, #4096",
        "b.hs ev_map_done",
        "mov x22, x6",
        f"ldr x0, [x19, #{rel(p.table) + 16}]",
        "add x6, x6, x0",
        "ldr x0, [x6]",
        f"ldr x1, [x19, #{rel(p.header)}]",
        "cmp x0, x1",
        "b.ne ev_map_done",
        "ldr x0, [x6, #8]",
        f"ldr x1, [x19, #{rel(p.header) + 8}]",
        "cmp x0, x1",
        "b.ne ev_map_done",
        "add x21, x6, #16",
        "ev_map_done:",
        "ret",
    ] + _filter_lines(p, rel)


def _filter_lines(p, rel):
    """w4 = 0 when the Bloom filter says w0 (a GNU hash | 1) is not
    pre-bound (:func:`bloom_positions`), else 1 (no filter: 1)."""
    return [
        "ev_filtered:",
        "mov w4, #1",
        f"ldr x1, [x19, #{rel(p.filter)}]",
        "cbz x1, ev_filtered_return",
        "add x1, x1, x20",                        # the load bias
        "lsr w2, w0, #1",
        f"ldr w3, [x19, #{rel(p.filter) + 8}]",
        "and w3, w2, w3",
        "lsr w5, w3, #6",
        "ldr x6, [x1, x5, lsl #3]",
        "lsr x6, x6, x3",
        "tbz x6, #0, ev_filtered_out",
        f"imm w7, {BLOOM_MULTIPLIER}",
        "mul w3, w2, w7",
        f"ldr w5, [x19, #{rel(p.filter) + 12}]",
        "lsr w3, w3, w5",
        "lsr w5, w3, #6",
        "ldr x6, [x1, x5, lsl #3]",
        "lsr x6, x6, x3",
        "tbnz x6, #0, ev_filtered_return",
        "ev_filtered_out:",
        "mov w4, #0",
        "ev_filtered_return:",
        "ret",
    ]


def _find_lines():
    """Binary search of w0 in the sorted u32 table x1 of w2 entries; w4 = 1
    when found.  Clobbers w2 w3 w5 w6."""
    return [
        "ev_find:",
        "mov w3, wzr",
        "ev_find_loop:",
        "mov w4, #0",
        "cmp w3, w2",
        "b.hs ev_find_return",
        "add w5, w3, w2",
        "lsr w5, w5, #1",
        "ldr w6, [x1, x5, lsl #2]",
        "mov w4, #1",
        "cmp w0, w6",
        "b.eq ev_find_return",
        "b.lo ev_find_lower",
        "add w3, w5, #1",
        "b ev_find_loop",
        "ev_find_lower:",
        "mov w2, w5",
        "b ev_find_loop",
        "ev_find_return:",
        "ret",
    ]


def _ignored_lines(p, address):
    """w4 = 1 when /proc/self/environ holds the entry
    ``ELFVECTOR_PRELOAD=ignore`` exactly, else 0 (the state machine of
    :mod:`..x86_64.preload`; w5 is how much of the pattern the current
    entry matched, -1 once it cannot match)."""
    return [
        "ev_ignored:",
        "stp x29, x30, [sp, #-16]!",
        "sub sp, sp, #4096",
        f"mov x0, #{AT_FDCWD}",
        *address("x1", p.environ),
        "mov x2, xzr",
        "mov x3, xzr",
        f"mov x8, #{SYS_OPENAT}",
        "svc #0",
        "mov w4, #0",
        "tbnz x0, #63, ev_ignored_return",
        "mov x7, x0",
        "mov w5, wzr",
        *address("x6", p.pattern),
        "ev_ignored_read:",
        "mov x0, x7",
        "mov x1, sp",
        "mov x2, #4096",
        f"mov x8, #{SYS_READ}",
        "svc #0",
        "cmp x0, #0",
        "b.le ev_ignored_no",
        "mov x1, sp",
        "add x2, x1, x0",
        "ev_ignored_byte:",
        "cmp x1, x2",
        "b.hs ev_ignored_read",
        "ldrb w3, [x1], #1",
        "tbnz w5, #31, ev_ignored_other",
        "ldrb w0, [x6, w5, uxtw]",
        "cmp w3, w0",
        "b.ne ev_ignored_mismatch",
        "add w5, w5, #1",
        f"cmp w5, #{p.pattern_len}",
        "b.eq ev_ignored_yes",
        "b ev_ignored_byte",
        "ev_ignored_mismatch:",
        "mov w5, #-1",
        "ev_ignored_other:",
        "cbnz w3, ev_ignored_byte",
        "mov w5, wzr",                            # the next entry starts
        "b ev_ignored_byte",
        "ev_ignored_yes:",
        "mov w4, #1",
        "b ev_ignored_close",
        "ev_ignored_no:",
        "mov w4, #0",
        "ev_ignored_close:",
        "mov x0, x7",
        f"mov x8, #{SYS_CLOSE}",
        "svc #0",
        "ev_ignored_return:",
        "add sp, sp, #4096",
        "ldp x29, x30, [sp], #16",
        "ret",
    ]
