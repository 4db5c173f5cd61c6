"""x86-64 code of the closure rewrite: PLT decoding, stubs, the fix-up routine.

Three things need x86-64 knowledge:

* **PLT decoding.**  A pre-bound JUMP_SLOT bound to another library's IFUNC
  becomes an ``R_X86_64_IRELATIVE`` whose resolver is a stub in the dead
  lazy part of the PLT entry that jumps through the word.  GNU ld's entries
  (binutils ``elfxx-x86.c``, ``elf64-x86-64.c``)::

      .plt (lazy)   ff 25 <disp32>  68 <index>  e9 <plt0>      16 bytes
      .plt (IBT)    f3 0f 1e fa  68 <index>  f2? e9 <plt0> ... 16 bytes, all dead
      .plt.sec      f3 0f 1e fa  f2? ff 25 <disp32> nop...     16 bytes
      .plt.got      (f3 0f 1e fa)? ff 25 <disp32> nop...       8 or 16 bytes

  A settled GOT word never points back into the PLT, so the lazy part of
  a settled slot's entry is free for code; so is PLT0 when no slot stays
  lazy (:func:`lazy_push`: the kept JUMP_SLOTs keep a ``DT_JMPREL`` of
  their own, renumbered).

* **The fix-up routine** (:func:`fixup_lines`), run by ld.so as the first
  ``R_X86_64_IRELATIVE`` of an object, after every other relocation of the
  object and before any of its code runs (glibc ``elf_dynamic_do_Rela``
  defers IRELATIVEs to the end of the table, in order).  It corrects the
  settled words when an object is not where they were settled for, and in a
  program runs the preload check.  It is written as readable Intel-syntax
  assembly; :class:`Routine` encodes it (keystone for single instructions,
  whose AT&T mode reads bare numbers as hex; branches itself) and lays it
  out over one or more regions of dead bytes, joined by jumps: the
  executable segment's last page, the dead IBT ``.plt``, PLT0, the 10-byte
  lazy tails of the PLT entries.

* **The stub** (:func:`foreign_stub`): ``endbr64; jmp *word(%rip)``.
"""

import re
from dataclasses import dataclass

import keystone

ENDBR64 = bytes.fromhex("f30f1efa")
PLT_ENTRY = 16
FOREIGN_STUB_SIZE = 10
WORD = 8

# Linux x86-64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl).
SYS_READ, SYS_OPEN, SYS_CLOSE, SYS_MMAP, SYS_MUNMAP = 0, 2, 3, 9, 11
SYS_WRITEV, SYS_EXIT_GROUP = 20, 231

DT_GNU_HASH = 0x6FFFFEF5
VDSO_NAME = "linux-vdso.so.1"

#: ``jmp *disp32(%rip)`` forms at the start of a PLT entry: prefix -> length
_JUMPS = (bytes.fromhex("ff25"), bytes.fromhex("f2ff25"), ENDBR64 + bytes.fromhex("ff25"),
          ENDBR64 + bytes.fromhex("f2ff25"))
_LAZY_PUSH = 0x68


# -- PLT decoding -------------------------------------------------------------

@dataclass(frozen=True)
class PltEntry:
    """A PLT entry that jumps through the GOT word ``word``."""

    address: int
    word: int
    section: str
    #: (address, size) of the dead lazy tail in the same entry, or None
    tail: tuple = None


def decode_jump(code, address):
    """The GOT word that ``code`` (a PLT entry at ``address``) jumps through, or None."""
    for prefix in _JUMPS:
        if code.startswith(prefix) and len(code) >= len(prefix) + 4:
            end = len(prefix) + 4
            return address + end + int.from_bytes(code[len(prefix):end], "little", signed=True)
    return None


def plt_entries(sections):
    """Every PLT entry of ``sections``: ``{name: (address, bytes, entsize)}``
    for ``.plt``, ``.plt.sec``, ``.plt.got``.  Returns ``{word: PltEntry}``."""
    entries = {}
    for name in (".plt", ".plt.sec", ".plt.got"):
        if name not in sections:
            continue
        address, code, entsize = sections[name]
        step = entsize or PLT_ENTRY
        first = PLT_ENTRY if name == ".plt" else 0          # PLT0
        for at in range(first, len(code) - step + 1, step):
            entry = code[at:at + step]
            word = decode_jump(entry, address + at)
            if word is None:
                continue
            tail = None
            if name == ".plt" and step == PLT_ENTRY and entry[6] == _LAZY_PUSH:
                tail = (address + at + 6, PLT_ENTRY - 6)
            entries.setdefault(word, PltEntry(address + at, word, name, tail))
    return entries


def dead_plt(sections):
    """(address, size) of PLT bytes that are dead without lazy binding and
    form one block: the whole ``.plt`` of an IBT layout (the live entries are
    in ``.plt.sec``), else PLT0 alone.  None when there is no ``.plt``."""
    if ".plt" not in sections:
        return None
    address, code, _ = sections[".plt"]
    if ".plt.sec" in sections:
        return address, len(code)
    return address, min(PLT_ENTRY, len(code))


def lazy_push(sections, target):
    """The lazy PLT code at ``target`` (a JUMP_SLOT's initial GOT value):
    ``(address of its push's imm32, the index pushed)`` when it is GNU ld's
    ``(endbr64)? push $index; (bnd)? jmp PLT0`` in ``.plt``, else None.  A
    slot the rewrite keeps lazy gets its index in the new ``DT_JMPREL``
    there: ld.so's ``_dl_runtime_resolve`` finds the relocation by it."""
    if ".plt" not in sections:
        return None
    address, code, _ = sections[".plt"]
    at = target - address
    if not PLT_ENTRY <= at <= len(code) - 10:
        return None
    if code[at:at + 4] == ENDBR64:
        at += 4
    jump = at + 5
    if code[at] != _LAZY_PUSH or jump + 5 > len(code):
        return None
    if code[jump] == 0xF2:                                # bnd jmp
        jump += 1
    if jump + 5 > len(code) or code[jump] != 0xE9 or \
            jump + 5 + int.from_bytes(code[jump + 1:jump + 5], "little", signed=True) != 0:
        return None
    return address + at + 1, int.from_bytes(code[at + 1:at + 5], "little")


def lazy_bytes(sections, target):
    """(start, end) of the PLT bytes a lazy slot still runs: from its GOT
    word's initial value to the end of that 16-byte ``.plt`` entry."""
    address = sections[".plt"][0]
    return target, address + ((target - address) // PLT_ENTRY + 1) * PLT_ENTRY


def plt0(sections):
    """(start, end) of PLT0, which every lazy slot jumps to."""
    address = sections[".plt"][0]
    return address, address + PLT_ENTRY


def foreign_stub(at, word):
    """``endbr64; jmp *word(%rip)``: the resolver an IRELATIVE calls (indirectly,
    hence ``endbr64``) for a slot bound to another library's IFUNC: it
    jumps to that IFUNC's resolver, whose address the settled word holds."""
    return ENDBR64 + b"\xff\x25" + _rel32(at + FOREIGN_STUB_SIZE, word)


def _rel32(source_end, target):
    disp = target - source_end
    if not -(1 << 31) <= disp < (1 << 31):
        raise ValueError(f"rel32 displacement {disp:#x} out of range")
    return disp.to_bytes(4, "little", signed=True)


# -- the fix-up routine's data ------------------------------------------------------

#: The fix-up data (8-aligned, read-only) starts with a header the code reads
#: through %r11 = its run-time address: its own link-time address (so the
#: bias is %r11 minus that), the link-time address of the result word, and
#: of the end of the entries that follow.  An entry is (word, expected,
#: list start, list end): the word's run-time value minus ``expected`` is
#: added to every word of the RELR list.  A check's word is its GLOB_DAT's
#: (the library's displacement); the object's own words have an entry whose
#: word a RELATIVE sets to ``expected`` plus the bias.
HEADER_SELF, HEADER_RESULT, HEADER_END, HEADER_SIZE = 0, 8, 16, 24
ENTRY_SIZE = 32
RELR_BITS = 63
PROC_EXE = b"/proc/self/exe\0"


@dataclass
class PreloadLayout:
    """Where the preload check's data lies, as offsets from the fix-up data.

    The sorted table of pre-bound names is either loaded (``loaded``: its
    link-time address; nothing to read but memory) or in a section of the
    file that is mapped on demand; then a Bloom filter in loaded bytes, if
    there was room for one, answers "not pre-bound" for most names without
    a system call (:func:`bloom_positions`)."""

    debug: int               #: u64: link-time address of the program's DT_DEBUG value
    names: int               #: sorted u32 GNU hashes of the expected objects' basenames
    names_count: int
    table: int               #: u64 x3: page-aligned file offset of the pre-bound table's
    #: mapping, the mapping's length, the table's offset in it
    loaded: int              #: u64: link-time address of the loaded table, 0: in the file
    filter: int              #: u64 link-time address of the filter (0: none), u32 mask,
    #: u32 shift (see bloom_positions)
    header: int              #: 16 bytes the table starts with in the file
    prebound_count: int      #: u32 entries after the header: sorted (GNU hash | 1)
    prefix: int              #: "elfvector: PROG: LD_PRELOAD'ed "
    prefix_len: int
    suffix: int              #: " would interpose ... anyway)\n"
    suffix_len: int
    unreadable: int          #: ": cannot check it: ... anyway)\n"
    unreadable_len: int
    environ: int             #: "/proc/self/environ\0"
    exe: int                 #: "/proc/self/exe\0"
    pattern: int             #: "ELFVECTOR_PRELOAD=ignore\0"
    pattern_len: int


#: the second probe of the Bloom filter: a multiplicative mix of the hash
BLOOM_MULTIPLIER = 0x9E3779B1


def bloom_positions(gnu_hash, bits):
    """The two bits of a ``2**bits``-bit Bloom filter that the name of GNU
    hash ``gnu_hash`` sets, from its upper 31 bits (bit 0 of a hash in a
    ``.gnu.hash`` chain marks the chain's end): the low ``bits`` of them,
    and the top ``bits`` of their product with :data:`BLOOM_MULTIPLIER`
    (mod 2**32).  :func:`_filter_lines` probes the same two."""
    h = gnu_hash >> 1
    return h & ((1 << bits) - 1), ((h * BLOOM_MULTIPLIER) & 0xFFFFFFFF) >> (32 - bits)


def fixup_lines(preload=None):
    """The fix-up routine, as assembly lines.

    ld.so calls it with no arguments (a normal call: %rbx, %rbp, %r12-%r15
    are preserved, the rest are free); %r11 is the data's run-time address,
    %r10 the load bias.  For each entry whose word moved, the RELR walk
    (:func:`_relr_lines`) adds the displacement to the listed words; then
    a program runs the preload check (:func:`_preload_lines`); the routine
    returns the corrected value of the result word, which its IRELATIVE
    stores there again.  Every object at its base costs about 6
    instructions an entry.
    """
    lines = [
        "endbr64",                                # ld.so calls us indirectly
        "lea r11, [rip + DATA]",
        "mov r10, r11",
        f"sub r10, qword ptr [r11 + {HEADER_SELF:#x}]",    # the load bias
        "push rbx",
        f"lea rbx, [r11 + {HEADER_SIZE:#x}]",
        f"mov r9, qword ptr [r11 + {HEADER_END:#x}]",
        "add r9, r10",
        "jmp ev_test",
        "ev_entry:",
        "mov rax, qword ptr [rbx]",
        "mov rdx, qword ptr [rax + r10]",
        "sub rdx, qword ptr [rbx + 8]",          # how far that object moved
        "jz ev_next",
        "mov rsi, qword ptr [rbx + 0x10]",
        "add rsi, r10",
        "mov rdi, qword ptr [rbx + 0x18]",
        "add rdi, r10",
        "call ev_relr",
        "ev_next:",
        f"add rbx, {ENTRY_SIZE:#x}",
        "ev_test:",
        "cmp rbx, r9",
        "jb ev_entry",
    ]
    if preload is not None:
        lines += ["call ev_preload", "lea r11, [rip + DATA]"]
    lines += [
        f"mov rax, qword ptr [r11 + {HEADER_RESULT:#x}]",
        "mov rax, qword ptr [rax + r10]",
        "pop rbx",
        "ret",
    ]
    lines += _relr_lines()
    if preload is not None:
        lines += _preload_lines(preload)
    return lines


def _relr_lines():
    """Add %rdx to every word the RELR list [%rsi, %rdi) names (link-time
    addresses; the words are at address + %r10).  An even entry is a word's
    address, the next bitmap starts at the word after it; an odd entry is a
    bitmap whose bit ``i`` (after the tag bit) marks the word ``base + 8*i``,
    the next base 63 words on.  Clobbers rax rcx rsi r8 (DF is clear: psABI)."""
    return [
        "ev_relr:",
        "cmp rsi, rdi",
        "jae ev_relr_done",
        "lodsq",
        "test al, 1",
        "jnz ev_relr_bitmap",
        "lea rcx, [rax + r10]",
        "add qword ptr [rcx], rdx",
        "add rcx, 8",                             # the next bitmap's first word
        "jmp ev_relr",
        "ev_relr_bitmap:",
        "shr rax, 1",                             # drop the tag bit
        "mov r8, rcx",
        "ev_relr_bit:",
        "shr rax, 1",                             # CF = this word's bit
        "jnc ev_relr_skip",
        "add qword ptr [r8], rdx",
        "ev_relr_skip:",
        "add r8, 8",
        "test rax, rax",
        "jnz ev_relr_bit",
        f"add rcx, {RELR_BITS * WORD:#x}",
        "jmp ev_relr",
        "ev_relr_done:",
        "ret",
    ]


def _preload_lines(p):
    """The preload check of a program.

    ld.so set the program's DT_DEBUG to ``_r_debug`` before relocating
    anything (rtld.c ``elf_setup_debug_entry``); ``r_map`` (offset 8) is the
    program's link_map, and ``l_next`` (24) runs through every loaded
    object.  An object whose basename (``l_name``, 8) hashes to no expected
    name is a preload: the GNU hashes in its ``.gnu.hash`` chains (found
    through ``l_ld``, 16, whose DT_GNU_HASH ld.so has already relocated) are
    looked up in the sorted table of pre-bound names: in memory when the
    table is loaded, so a preload costs no system call.  A table left in
    the file is mapped from it (``l_name``, or ``/proc/self/exe`` when
    ld.so was not run by hand: about 26 us for that open alone) only for a
    name the Bloom filter, if any, does not rule out, and must start with
    the 16 bytes the data holds; a file that cannot be read (ld.so run by
    hand: the program's l_name is empty and /proc/self/exe is ld.so) counts
    as a hit, with its own message.  On a hit, unless
    ``/proc/self/environ`` holds ``ELFVECTOR_PRELOAD=ignore``, one line goes
    to fd 2 and the process exits with 127, as ld.so does for a missing
    symbol.  An object without DT_GNU_HASH cannot be judged: refused too.
    Raw system calls only (libc is not ready, and may be what is
    preloaded); they clobber rcx and r11, and %r10 carries their fourth
    argument.  %rbp frames two slots: the table (0: not yet mapped, 1:
    unreadable) and the mapping.
    """
    return [
        "ev_preload:",
        "push rbp", "mov rbp, rsp", "push r10", "push r12", "push r13", "push r14",
        "push r15", "push rbx",
        "xor eax, eax", "push rax", "push rax",             # [rbp-0x38], [rbp-0x40]
        f"mov rax, qword ptr [r11 + {p.loaded:#x}]",
        "test rax, rax",
        "jz ev_walk",
        "add rax, r10",
        "mov qword ptr [rbp - 0x38], rax",        # the table is loaded: no mapping
        "ev_walk:",
        f"mov rax, qword ptr [r11 + {p.debug:#x}]",
        "mov rax, qword ptr [rax + r10]",
        "test rax, rax",
        "jz ev_preload_done",
        "mov r12, qword ptr [rax + 8]",           # r_map: the program
        "ev_object:",
        "mov r12, qword ptr [r12 + 0x18]",        # l_next
        "test r12, r12",
        "jz ev_preload_done",
        "mov rsi, qword ptr [r12 + 8]",           # l_name
        "mov rdi, rsi",
        "ev_basename:",
        "movzx ecx, byte ptr [rsi]",
        "inc rsi",
        "test ecx, ecx",
        "jz ev_basename_done",
        "cmp ecx, 0x2f",
        "jne ev_basename",
        "mov rdi, rsi",
        "jmp ev_basename",
        "ev_basename_done:",
        "mov eax, 0x1505",                        # GNU hash: h = 5381
        "ev_name_hash:",
        "movzx ecx, byte ptr [rdi]",
        "test ecx, ecx",
        "jz ev_name_hashed",
        "mov edx, eax",
        "shl edx, 5",
        "add eax, edx",
        "add eax, ecx",                           # h = h * 33 + c
        "inc rdi",
        "jmp ev_name_hash",
        "ev_name_hashed:",
        f"lea rsi, [r11 + {p.names:#x}]",
        f"mov ecx, {p.names_count:#x}",
        "call ev_find",
        "jnz ev_object",                          # an expected object
        "mov rsi, qword ptr [r12 + 0x10]",        # l_ld
        "ev_dynamic:",
        "mov rax, qword ptr [rsi]",
        "test rax, rax",
        "jz ev_hit",                              # no DT_GNU_HASH: cannot tell
        f"cmp rax, {DT_GNU_HASH:#x}",
        "je ev_gnu_hash",
        "add rsi, 0x10",
        "jmp ev_dynamic",
        "ev_gnu_hash:",
        "mov r13, qword ptr [rsi + 8]",
        "mov eax, dword ptr [r13 + 8]",           # bloom size
        "lea r14, [r13 + rax*8 + 0x10]",          # buckets
        "mov ecx, dword ptr [r13]",               # nbucket
        "lea r15, [r14 + rcx*4]",                 # chains (index symoffset)
        "mov eax, dword ptr [r13 + 4]",           # symoffset
        "shl rax, 2",
        "sub r15, rax",                           # chain of symbol i at r15 + 4i
        "lea r13, [r14 + rcx*4]",                 # end of the buckets
        "ev_bucket:",
        "cmp r14, r13",
        "jae ev_object",
        "mov ebx, dword ptr [r14]",
        "add r14, 4",
        "test ebx, ebx",
        "jz ev_bucket",
        "ev_chain:",
        "mov eax, dword ptr [r15 + rbx*4]",
        "or eax, 1",                              # the table holds hash | 1
        "call ev_prebound",
        "jnz ev_hit",
        "test byte ptr [r15 + rbx*4], 1",         # the chain's last symbol
        "jnz ev_bucket",
        "inc ebx",
        "jmp ev_chain",
        "ev_hit:",
        "call ev_ignored",
        "test eax, eax",
        "jnz ev_preload_done",
        "lea r11, [rip + DATA]",
        "mov rsi, qword ptr [r12 + 8]",
        "mov rcx, rsi",
        "ev_name_length:",
        "cmp byte ptr [rcx], 0",
        "je ev_name_measured",
        "inc rcx",
        "jmp ev_name_length",
        "ev_name_measured:",
        "sub rcx, rsi",
        "sub rsp, 0x30",                          # three iovecs: prefix, name, suffix
        f"lea rax, [r11 + {p.prefix:#x}]",
        "mov qword ptr [rsp], rax",
        f"mov eax, {p.prefix_len:#x}",
        "mov qword ptr [rsp + 8], rax",
        "mov qword ptr [rsp + 0x10], rsi",
        "mov qword ptr [rsp + 0x18], rcx",
        f"lea rax, [r11 + {p.suffix:#x}]",
        f"mov edx, {p.suffix_len:#x}",
        "cmp qword ptr [rbp - 0x38], 1",
        "jne ev_suffix",
        f"lea rax, [r11 + {p.unreadable:#x}]",    # the table could not be read
        f"mov edx, {p.unreadable_len:#x}",
        "ev_suffix:",
        "mov qword ptr [rsp + 0x20], rax",
        "mov qword ptr [rsp + 0x28], rdx",
        f"mov eax, {SYS_WRITEV:#x}",
        "mov edi, 2",
        "mov rsi, rsp",
        "mov edx, 3",
        "syscall",
        f"mov eax, {SYS_EXIT_GROUP:#x}",
        "mov edi, 0x7f",
        "syscall",
        "hlt",
        "ev_preload_done:",
        "mov rdi, qword ptr [rbp - 0x40]",        # the mapping, if any
        "test rdi, rdi",
        "jz ev_preload_return",
        f"mov eax, {SYS_MUNMAP:#x}",
        "lea r11, [rip + DATA]",
        f"mov rsi, qword ptr [r11 + {p.table + 8:#x}]",
        "syscall",
        "ev_preload_return:",
        "add rsp, 0x10",
        "pop rbx", "pop r15", "pop r14", "pop r13", "pop r12", "pop r10", "pop rbp",
        "ret",
    ] + _prebound_lines(p) + _find_lines() + _ignored_lines(p)


def _prebound_lines(p):
    """ZF clear (jnz) when %eax is in the pre-bound table.  A table in the
    file is mapped on first use, unless the filter rules the name out
    first; clobbers rcx rdx rsi rdi r8 r9 r11."""
    return [
        "ev_prebound:",
        "mov rsi, qword ptr [rbp - 0x38]",
        "test rsi, rsi",
        "jnz ev_prebound_mapped",
        "call ev_filtered",
        "jz ev_filtered_out",                     # ZF set: not pre-bound
        "push rax",
        "call ev_map",
        "pop rax",
        "mov rsi, qword ptr [rbp - 0x38]",
        "ev_prebound_mapped:",
        "cmp rsi, 1",
        "je ev_found",                            # unreadable: every name counts
        f"mov ecx, {p.prebound_count:#x}",
        "jmp ev_find",
        "ev_map:",
        "mov qword ptr [rbp - 0x38], 1",
        "lea r11, [rip + DATA]",
        f"mov rax, qword ptr [r11 + {p.debug:#x}]",
        "mov r10, qword ptr [rbp - 8]",
        "mov rax, qword ptr [rax + r10]",
        "mov rax, qword ptr [rax + 8]",
        "mov rdi, qword ptr [rax + 8]",           # the program's l_name
        "cmp byte ptr [rdi], 0",
        "jne ev_map_open",
        f"lea rdi, [r11 + {p.exe:#x}]",           # exec'd directly: l_name is ""
        "ev_map_open:",
        f"mov eax, {SYS_OPEN:#x}",
        "xor esi, esi",
        "xor edx, edx",
        "syscall",
        "test eax, eax",
        "js ev_map_done",
        "mov r8d, eax",
        "lea r11, [rip + DATA]",
        "xor edi, edi",
        f"mov rsi, qword ptr [r11 + {p.table + 8:#x}]",
        "mov edx, 1",                             # PROT_READ
        "mov r10d, 2",                            # MAP_PRIVATE
        f"mov r9, qword ptr [r11 + {p.table:#x}]",
        f"mov eax, {SYS_MMAP:#x}",
        "syscall",
        "mov r9, rax",
        f"mov eax, {SYS_CLOSE:#x}",
        "mov edi, r8d",
        "syscall",
        "cmp r9, -0x1000",
        "jae ev_map_done",
        "mov qword ptr [rbp - 0x40], r9",
        "lea r11, [rip + DATA]",
        f"add r9, qword ptr [r11 + {p.table + 16:#x}]",
        "mov rax, qword ptr [r9]",
        f"cmp rax, qword ptr [r11 + {p.header:#x}]",
        "jne ev_map_done",
        "mov rax, qword ptr [r9 + 8]",
        f"cmp rax, qword ptr [r11 + {p.header + 8:#x}]",
        "jne ev_map_done",
        "add r9, 0x10",
        "mov qword ptr [rbp - 0x38], r9",
        "ev_map_done:",
        "lea r11, [rip + DATA]",
        "ret",
    ] + _filter_lines(p)


def _filter_lines(p):
    """ZF set (jz) when the Bloom filter says %eax (a GNU hash | 1) is not
    pre-bound: one of its two bits (:func:`bloom_positions`) is clear.  No
    filter: ZF clear.  Clobbers rcx rdx rsi r11."""
    return [
        "ev_filtered:",
        "lea r11, [rip + DATA]",
        f"mov rsi, qword ptr [r11 + {p.filter:#x}]",
        "test rsi, rsi",
        "jz ev_filter_passed",
        "add rsi, qword ptr [rbp - 8]",           # the load bias
        "mov ecx, eax",
        "shr ecx, 1",
        "mov edx, ecx",
        f"and edx, dword ptr [r11 + {p.filter + 8:#x}]",
        "bt qword ptr [rsi], rdx",
        "jnc ev_filtered_out",
        f"imul edx, ecx, {BLOOM_MULTIPLIER - (1 << 32):#x}",
        f"mov ecx, dword ptr [r11 + {p.filter + 12:#x}]",
        "shr edx, cl",
        "bt qword ptr [rsi], rdx",
        "jnc ev_filtered_out",
        "ev_filter_passed:",
        "test esp, esp",                          # ZF clear: may be pre-bound
        "ret",
        "ev_filtered_out:",
        "xor edx, edx",                           # ZF set
        "ret",
    ]


def _find_lines():
    """Binary search of %eax in the sorted u32 table %rsi of %ecx entries;
    ZF clear (jnz) when found.  Clobbers rcx rdx r8 r9."""
    return [
        "ev_find:",
        "xor r8d, r8d",
        "mov r9d, ecx",
        "ev_find_loop:",
        "cmp r8d, r9d",
        "jae ev_absent",
        "lea ecx, [r8 + r9]",
        "shr ecx, 1",
        "mov edx, dword ptr [rsi + rcx*4]",
        "cmp eax, edx",
        "je ev_found",
        "jb ev_find_lower",
        "lea r8d, [rcx + 1]",
        "jmp ev_find_loop",
        "ev_find_lower:",
        "mov r9d, ecx",
        "jmp ev_find_loop",
        "ev_found:",
        "test esp, esp",                          # ZF clear: found
        "ret",
        "ev_absent:",
        "xor edx, edx",                           # ZF set: absent
        "ret",
    ]


def _ignored_lines(p):
    """%eax = 1 when /proc/self/environ holds the entry
    ``ELFVECTOR_PRELOAD=ignore`` exactly, else 0: a state machine over the
    NUL-separated entries, read 4 KiB at a time into the stack; %r8d is how
    much of the pattern (NUL included) the current entry matched, -1 once
    it cannot match."""
    return [
        "ev_ignored:",
        "push rbx",
        "sub rsp, 0x1000",
        "lea r11, [rip + DATA]",
        f"lea rdi, [r11 + {p.environ:#x}]",
        f"lea rbx, [r11 + {p.pattern:#x}]",
        f"mov eax, {SYS_OPEN:#x}",
        "xor esi, esi",
        "xor edx, edx",
        "syscall",
        "test eax, eax",
        "js ev_ignored_no_file",
        "mov r9d, eax",
        "xor r8d, r8d",
        "ev_ignored_read:",
        f"mov eax, {SYS_READ:#x}",
        "mov edi, r9d",
        "mov rsi, rsp",
        "mov edx, 0x1000",
        "syscall",
        "test rax, rax",
        "jle ev_ignored_no",
        "lea rdi, [rsp + rax]",
        "mov rsi, rsp",
        "ev_ignored_byte:",
        "cmp rsi, rdi",
        "jae ev_ignored_read",
        "movzx eax, byte ptr [rsi]",
        "inc rsi",
        "test r8d, r8d",
        "js ev_ignored_other",
        "cmp al, byte ptr [rbx + r8]",
        "jne ev_ignored_mismatch",
        "inc r8d",
        f"cmp r8d, {p.pattern_len:#x}",
        "je ev_ignored_yes",
        "jmp ev_ignored_byte",
        "ev_ignored_mismatch:",
        "mov r8d, -1",
        "ev_ignored_other:",
        "test al, al",
        "jnz ev_ignored_byte",
        "xor r8d, r8d",                           # the next entry starts
        "jmp ev_ignored_byte",
        "ev_ignored_yes:",
        "mov ebx, 1",
        "jmp ev_ignored_close",
        "ev_ignored_no:",
        "xor ebx, ebx",
        "ev_ignored_close:",
        f"mov eax, {SYS_CLOSE:#x}",
        "mov edi, r9d",
        "syscall",
        "mov eax, ebx",
        "jmp ev_ignored_return",
        "ev_ignored_no_file:",
        "xor eax, eax",
        "ev_ignored_return:",
        "add rsp, 0x1000",
        "pop rbx",
        "ret",
    ]


# -- a small assembler: one routine over several regions ---------------------------

class NoRoom(Exception):
    """The routine does not fit the regions it was given."""


_CONDITIONS = {"jo": 0, "jno": 1, "jb": 2, "jc": 2, "jae": 3, "jnc": 3, "je": 4, "jz": 4,
               "jne": 5, "jnz": 5, "jbe": 6, "ja": 7, "js": 8, "jns": 9, "jl": 0xC,
               "jge": 0xD, "jle": 0xE, "jg": 0xF}
_BRANCH = re.compile(r"(jmp|call|j[a-z]+) (ev_\w+)$")
_ENCODED = {}


def _encode(line):
    """The bytes of one position-independent instruction (cached)."""
    if line not in _ENCODED:
        if line == "endbr64":
            _ENCODED[line] = ENDBR64
        else:
            encoding, _ = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_64).asm(line, 0)
            if not encoding:
                raise ValueError(f"cannot assemble {line!r}")
            _ENCODED[line] = bytes(encoding)
    return _ENCODED[line]


class Routine:
    """Assembly lines laid out over regions of free bytes.

    A line is a label (``name:``), a branch or call to a label, ``lea r11,
    [rip + DATA]`` (the data's address, given to :meth:`encode`), or one
    position-independent instruction.  :meth:`layout` places the lines in
    the first region and, when one does not fit with room left for a jump,
    jumps to the next region and goes on there (a 10-byte lazy PLT tail
    holds 8 bytes of code and a 2-byte jump to the next).  Branches are
    short where they reach, else long (relaxation until nothing changes).
    """

    def __init__(self, lines):
        self.items = []
        for line in lines:
            branch = _BRANCH.match(line)
            if line.endswith(":"):
                self.items.append(("label", line[:-1]))
            elif branch:
                self.items.append((branch.group(1), branch.group(2)))
            elif line == "lea r11, [rip + DATA]":
                self.items.append(("data", None))
            else:
                self.items.append(("op", _encode(line)))
        self.placed = None

    def _size(self, k, long):
        kind, arg = self.items[k]
        if kind == "label":
            return 0
        if kind == "op":
            return len(arg)
        if kind in ("call", "data"):
            return 5 if kind == "call" else 7
        return (5 if kind == "jmp" else 6) if k in long else 2

    def _ends_flow(self, k):
        """Whether nothing runs on after item ``k`` (no jump needed after it)."""
        kind, arg = self.items[k]
        return kind == "jmp" or (kind == "op" and arg in (b"\xc3", b"\xf4"))

    def layout(self, regions):
        """Place the routine over ``regions`` [(start, end)]; returns, per
        region, the end of the bytes used (None: unused).  Raises NoRoom."""
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
        placed, labels = [], {}
        used = [None] * len(regions)
        r, at = 0, regions[0][0] if regions else 0
        for k in range(len(self.items)):
            size = self._size(k, long)
            while True:
                if r >= len(regions):
                    raise NoRoom("no room for the fix-up routine")
                end = regions[r][1]
                last = k == len(self.items) - 1 or r == len(regions) - 1 or \
                    self._ends_flow(k)
                room = 0 if last else _jump_size(at + size, regions[r + 1][0])
                if at + size + room <= end:
                    break
                if r + 1 < len(regions) and at + _jump_size(at, regions[r + 1][0]) <= end:
                    jump = _jump_size(at, regions[r + 1][0])
                    placed.append((("thread", regions[r + 1][0]), at, jump))
                    used[r] = at + jump
                r += 1
                if r < len(regions):
                    at = regions[r][0]
            if self.items[k][0] == "label":
                labels[self.items[k][1]] = at
            placed.append((k, at, size))
            at += size
            used[r] = at
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
                elif kind == "data":
                    code = b"\x4c\x8d\x1d" + _rel32(at + 7, data)
                elif kind == "call":
                    code = b"\xe8" + _rel32(at + 5, self.labels[arg])
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


def _jump_size(source, target):
    return 2 if -128 <= target - (source + 2) < 128 else 5


def _jump(at, size, target):
    if size == 2:
        return b"\xeb" + (target - at - 2).to_bytes(1, "little", signed=True)
    return b"\xe9" + _rel32(at + 5, target)


def _jcc(cc, at, size, target):
    if size == 2:
        return bytes([0x70 | cc]) + (target - at - 2).to_bytes(1, "little", signed=True)
    return bytes([0x0F, 0x80 | cc]) + _rel32(at + 6, target)
