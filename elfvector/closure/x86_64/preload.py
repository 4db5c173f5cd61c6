"""The preload check of a rewritten program (x86-64), part of its fix-up routine.

A reference settled in a file no longer goes through ld.so, so a preload
that defines a pre-bound name would be half honoured: the program's fix-up
routine looks for such preloads among the objects ld.so has loaded, before
any code of the program runs, and stops the program unless told to run
anyway (:func:`preload_lines`).  Where its data lies and the Bloom filter
the code probes are common to the three architectures (:mod:`..preload`).
"""

from ..preload import BLOOM_MULTIPLIER, DT_GNU_HASH

# Linux x86-64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl).
SYS_READ, SYS_OPEN, SYS_CLOSE, SYS_LSEEK, SYS_MMAP, SYS_MUNMAP = 0, 2, 3, 8, 9, 11
SYS_WRITEV, SYS_EXIT_GROUP = 20, 231

VDSO_NAME = "linux-vdso.so.1"
#: the file table's mapping is given to mmap in bytes
MAP_OFFSET_UNIT = 1


def preload_lines(p):
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
        "mov edi, eax",                           # a shorter file (another one: ld.so
        "xor esi, esi",                           # run by hand, under valgrind) would
        "mov edx, 2",                             # fault the mapping's last pages
        f"mov eax, {SYS_LSEEK:#x}",               # (SIGBUS): its end must reach the table's
        "syscall",
        "lea r11, [rip + DATA]",
        f"mov rcx, qword ptr [r11 + {p.table:#x}]",
        f"add rcx, qword ptr [r11 + {p.table + 8:#x}]",
        "mov r9, -1",                             # no mapping
        "cmp rax, rcx",
        "jl ev_map_close",
        "lea r11, [rip + DATA]",
        "xor edi, edi",
        f"mov rsi, qword ptr [r11 + {p.table + 8:#x}]",
        "mov edx, 1",                             # PROT_READ
        "mov r10d, 2",                            # MAP_PRIVATE
        f"mov r9, qword ptr [r11 + {p.table:#x}]",
        f"mov eax, {SYS_MMAP:#x}",
        "syscall",
        "mov r9, rax",
        "ev_map_close:",
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
