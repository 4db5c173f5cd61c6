"""The preload check of a rewritten program (i386), part of its fix-up routine.

The check of :mod:`..x86_64.preload`, in 32-bit code with the same data
(:class:`~..preload.PreloadLayout`, its words 4 bytes, the file
table's mapping given in pages as ``mmap2`` takes it) and the same Bloom
filter.  What differs is the ABI: glibc's i386 ``link_map`` has ``l_name``
at 4, ``l_ld`` at 8 and ``l_next`` at 12, ``r_debug.r_map`` is at 4, a
``.dynamic`` entry is 8 bytes, a ``.gnu.hash`` Bloom word 4, and system
calls go through ``int 0x80`` (arguments in ebx ecx edx esi edi ebp,
every register but eax preserved).
"""

from ..preload import BLOOM_MULTIPLIER, DT_GNU_HASH

# Linux i386 system call numbers (arch/x86/entry/syscalls/syscall_32.tbl).
SYS_READ, SYS_OPEN, SYS_CLOSE, SYS_LSEEK, SYS_MUNMAP, SYS_WRITEV = 3, 5, 6, 19, 91, 146
SYS_MMAP2, SYS_EXIT_GROUP = 192, 252

VDSO_NAME = "linux-gate.so.1"
#: the file table's mapping is given to mmap2 in pages
MAP_OFFSET_UNIT = 0x1000

# The frame of ev_preload: [ebp] is the fix-up data's address (the caller's
# %ebp), below it the saved registers and the locals.
TABLE, MAPPING, OBJECT = "[ebp - 0x10]", "[ebp - 0x14]", "[ebp - 0x18]"
BUCKET, BUCKETS_END, CHAINS = "[ebp - 0x1c]", "[ebp - 0x20]", "[ebp - 0x24]"


def preload_lines(p):
    """The preload check of a program (see :func:`..x86_64.preload.preload_lines`
    for what it does); %ebp is the data's address, %edi the load bias, both
    kept."""
    return [
        "ev_preload:",
        "push ebp", "mov ebp, esp", "push ebx", "push esi", "push edi",
        "xor eax, eax", "push eax", "push eax", "push eax", "push eax", "push eax", "push eax",
        "mov edx, dword ptr [ebp]",
        f"mov eax, dword ptr [edx + {p.loaded:#x}]",
        "test eax, eax",
        "jz ev_walk",
        "add eax, edi",
        f"mov dword ptr {TABLE}, eax",           # the table is loaded: no mapping
        "ev_walk:",
        f"mov eax, dword ptr [edx + {p.debug:#x}]",
        "mov eax, dword ptr [eax + edi]",
        "test eax, eax",
        "jz ev_preload_done",
        "mov eax, dword ptr [eax + 4]",           # r_map: the program
        f"mov dword ptr {OBJECT}, eax",
        "ev_object:",
        f"mov eax, dword ptr {OBJECT}",
        "mov eax, dword ptr [eax + 0xc]",         # l_next
        "test eax, eax",
        "jz ev_preload_done",
        f"mov dword ptr {OBJECT}, eax",
        "mov esi, dword ptr [eax + 4]",           # l_name
        "mov ecx, esi",
        "ev_basename:",
        "movzx eax, byte ptr [esi]",
        "inc esi",
        "test eax, eax",
        "jz ev_basename_done",
        "cmp eax, 0x2f",
        "jne ev_basename",
        "mov ecx, esi",
        "jmp ev_basename",
        "ev_basename_done:",
        "mov eax, 0x1505",                        # GNU hash: h = 5381
        "ev_name_hash:",
        "movzx edx, byte ptr [ecx]",
        "test edx, edx",
        "jz ev_name_hashed",
        "mov esi, eax",
        "shl esi, 5",
        "add eax, esi",
        "add eax, edx",                           # h = h * 33 + c
        "inc ecx",
        "jmp ev_name_hash",
        "ev_name_hashed:",
        "mov esi, dword ptr [ebp]",
        f"add esi, {p.names:#x}",
        f"mov ecx, {p.names_count:#x}",
        "call ev_find",
        "jnz ev_object",                          # an expected object
        f"mov eax, dword ptr {OBJECT}",
        "mov esi, dword ptr [eax + 8]",           # l_ld
        "ev_dynamic:",
        "mov eax, dword ptr [esi]",
        "test eax, eax",
        "jz ev_hit",                              # no DT_GNU_HASH: cannot tell
        f"cmp eax, {DT_GNU_HASH:#x}",
        "je ev_gnu_hash",
        "add esi, 8",
        "jmp ev_dynamic",
        "ev_gnu_hash:",
        "mov esi, dword ptr [esi + 4]",
        "mov eax, dword ptr [esi + 8]",           # bloom size (4-byte words)
        "lea ecx, [esi + eax*4 + 0x10]",          # buckets
        f"mov dword ptr {BUCKET}, ecx",
        "mov eax, dword ptr [esi]",               # nbucket
        "lea edx, [ecx + eax*4]",                 # end of the buckets
        f"mov dword ptr {BUCKETS_END}, edx",
        "mov eax, dword ptr [esi + 4]",           # symoffset
        "shl eax, 2",
        "sub edx, eax",
        f"mov dword ptr {CHAINS}, edx",           # chain of symbol i at CHAINS + 4i
        "ev_bucket:",
        f"mov ecx, dword ptr {BUCKET}",
        f"cmp ecx, dword ptr {BUCKETS_END}",
        "jae ev_object",
        "mov ebx, dword ptr [ecx]",
        "add ecx, 4",
        f"mov dword ptr {BUCKET}, ecx",
        "test ebx, ebx",
        "jz ev_bucket",
        "ev_chain:",
        f"mov ecx, dword ptr {CHAINS}",
        "mov eax, dword ptr [ecx + ebx*4]",
        "or eax, 1",                              # the table holds hash | 1
        "call ev_prebound",
        "jnz ev_hit",
        f"mov ecx, dword ptr {CHAINS}",
        "test byte ptr [ecx + ebx*4], 1",         # the chain's last symbol
        "jnz ev_bucket",
        "inc ebx",
        "jmp ev_chain",
        "ev_hit:",
        "call ev_ignored",
        "test eax, eax",
        "jnz ev_preload_done",
        f"mov eax, dword ptr {OBJECT}",
        "mov esi, dword ptr [eax + 4]",
        "mov ecx, esi",
        "ev_name_length:",
        "cmp byte ptr [ecx], 0",
        "je ev_name_measured",
        "inc ecx",
        "jmp ev_name_length",
        "ev_name_measured:",
        "sub ecx, esi",
        "sub esp, 0x18",                          # three iovecs: prefix, name, suffix
        "mov edx, dword ptr [ebp]",
        f"lea eax, [edx + {p.prefix:#x}]",
        "mov dword ptr [esp], eax",
        f"mov dword ptr [esp + 4], {p.prefix_len:#x}",
        "mov dword ptr [esp + 8], esi",
        "mov dword ptr [esp + 0xc], ecx",
        f"lea eax, [edx + {p.suffix:#x}]",
        f"mov ecx, {p.suffix_len:#x}",
        f"cmp dword ptr {TABLE}, 1",
        "jne ev_suffix",
        f"lea eax, [edx + {p.unreadable:#x}]",    # the table could not be read
        f"mov ecx, {p.unreadable_len:#x}",
        "ev_suffix:",
        "mov dword ptr [esp + 0x10], eax",
        "mov dword ptr [esp + 0x14], ecx",
        f"mov eax, {SYS_WRITEV:#x}",
        "mov ebx, 2",
        "mov ecx, esp",
        "mov edx, 3",
        "int 0x80",
        f"mov eax, {SYS_EXIT_GROUP:#x}",
        "mov ebx, 0x7f",
        "int 0x80",
        "hlt",
        "ev_preload_done:",
        f"mov ebx, dword ptr {MAPPING}",          # the mapping, if any
        "test ebx, ebx",
        "jz ev_preload_return",
        "mov edx, dword ptr [ebp]",
        f"mov ecx, dword ptr [edx + {p.table + 4:#x}]",
        f"mov eax, {SYS_MUNMAP:#x}",
        "int 0x80",
        "ev_preload_return:",
        "mov edi, dword ptr [ebp - 0xc]",
        "mov esi, dword ptr [ebp - 8]",
        "mov ebx, dword ptr [ebp - 4]",
        "mov esp, ebp",
        "pop ebp",
        "ret",
    ] + _prebound_lines(p) + _find_lines() + _ignored_lines(p)


def _prebound_lines(p):
    """ZF clear (jnz) when %eax is in the pre-bound table.  A table in the
    file is mapped on first use, unless the filter rules the name out
    first; clobbers ecx edx esi."""
    return [
        "ev_prebound:",
        f"mov esi, dword ptr {TABLE}",
        "test esi, esi",
        "jnz ev_prebound_mapped",
        "call ev_filtered",
        "jz ev_no",                               # ZF set: not pre-bound
        "push eax",
        "call ev_map",
        "pop eax",
        f"mov esi, dword ptr {TABLE}",
        "ev_prebound_mapped:",
        "cmp esi, 1",
        "je ev_yes",                              # unreadable: every name counts
        f"mov ecx, {p.prebound_count:#x}",
        "jmp ev_find",
        "ev_map:",
        f"mov dword ptr {TABLE}, 1",
        "push ebx", "push edi", "push ebp",
        "mov edx, dword ptr [ebp]",
        f"mov eax, dword ptr [edx + {p.debug:#x}]",
        "mov eax, dword ptr [eax + edi]",
        "mov eax, dword ptr [eax + 4]",
        "mov ebx, dword ptr [eax + 4]",           # the program's l_name
        "cmp byte ptr [ebx], 0",
        "jne ev_map_open",
        f"lea ebx, [edx + {p.exe:#x}]",           # exec'd directly: l_name is ""
        "ev_map_open:",
        f"mov eax, {SYS_OPEN:#x}",
        "xor ecx, ecx",
        "xor edx, edx",
        "int 0x80",
        "test eax, eax",
        "js ev_map_done",
        "mov edi, eax",                           # the descriptor
        "mov ebx, eax",                           # the file must reach the table's end
        "xor ecx, ecx",                           # (another, shorter file would fault
        "mov edx, 2",                             # the mapping: SIGBUS)
        f"mov eax, {SYS_LSEEK:#x}",
        "int 0x80",
        "mov edx, dword ptr [ebp]",
        f"mov ecx, dword ptr [edx + {p.table:#x}]",
        "shl ecx, 12",
        f"add ecx, dword ptr [edx + {p.table + 4:#x}]",
        "mov esi, -1",                            # no mapping
        "cmp eax, ecx",
        "jl ev_map_close",
        "mov eax, dword ptr [ebp]",
        f"mov ecx, dword ptr [eax + {p.table + 4:#x}]",
        f"mov ebp, dword ptr [eax + {p.table:#x}]",   # the offset, in pages
        "xor ebx, ebx",
        "mov edx, 1",                             # PROT_READ
        "mov esi, 2",                             # MAP_PRIVATE
        f"mov eax, {SYS_MMAP2:#x}",
        "int 0x80",
        "mov esi, eax",
        "ev_map_close:",
        f"mov eax, {SYS_CLOSE:#x}",
        "mov ebx, edi",
        "int 0x80",
        "mov ebp, dword ptr [esp]",               # the frame again
        "cmp esi, -0x1000",
        "jae ev_map_done",
        f"mov dword ptr {MAPPING}, esi",
        "mov edx, dword ptr [ebp]",
        f"add esi, dword ptr [edx + {p.table + 8:#x}]",
    ] + [line for k in range(0, 16, 4) for line in (
        f"mov eax, dword ptr [esi + {k:#x}]",
        f"cmp eax, dword ptr [edx + {p.header + k:#x}]",
        "jne ev_map_done")] + [
        "add esi, 0x10",
        f"mov dword ptr {TABLE}, esi",
        "ev_map_done:",
        "pop ebp", "pop edi", "pop ebx",
        "ret",
    ] + _filter_lines(p)


def _filter_lines(p):
    """ZF set (jz) when the Bloom filter says %eax (a GNU hash | 1) is not
    pre-bound (:func:`bloom_positions`).  No filter: ZF clear.  Clobbers
    ecx edx esi."""
    return [
        "ev_filtered:",
        "mov edx, dword ptr [ebp]",
        f"mov esi, dword ptr [edx + {p.filter:#x}]",
        "test esi, esi",
        "jz ev_yes",
        "add esi, edi",                           # the load bias
        "push ebx",
        "mov ebx, edx",
        "mov ecx, eax",
        "shr ecx, 1",
        "mov edx, ecx",
        f"and edx, dword ptr [ebx + {p.filter + 4:#x}]",
        "bt dword ptr [esi], edx",
        "jnc ev_filtered_out",
        f"imul edx, ecx, {BLOOM_MULTIPLIER - (1 << 32):#x}",
        f"mov ecx, dword ptr [ebx + {p.filter + 8:#x}]",
        "shr edx, cl",
        "bt dword ptr [esi], edx",
        "jnc ev_filtered_out",
        "pop ebx",
        "jmp ev_yes",
        "ev_filtered_out:",
        "pop ebx",
        "jmp ev_no",
    ]


def _find_lines():
    """Binary search of %eax in the sorted u32 table %esi of %ecx entries;
    ZF clear (jnz) when found.  Clobbers ecx edx."""
    return [
        "ev_find:",
        "push ebx", "push edi",
        "xor ebx, ebx",
        "mov edi, ecx",
        "ev_find_loop:",
        "cmp ebx, edi",
        "jae ev_absent",
        "lea ecx, [ebx + edi]",
        "shr ecx, 1",
        "mov edx, dword ptr [esi + ecx*4]",
        "cmp eax, edx",
        "je ev_present",
        "jb ev_find_lower",
        "lea ebx, [ecx + 1]",
        "jmp ev_find_loop",
        "ev_find_lower:",
        "mov edi, ecx",
        "jmp ev_find_loop",
        "ev_present:",
        "pop edi", "pop ebx",
        "ev_yes:",
        "test esp, esp",                          # ZF clear: found
        "ret",
        "ev_absent:",
        "pop edi", "pop ebx",
        "ev_no:",
        "xor edx, edx",                           # ZF set: absent
        "ret",
    ]


def _ignored_lines(p):
    """%eax = 1 when /proc/self/environ holds the entry
    ``ELFVECTOR_PRELOAD=ignore`` exactly, else 0 (the state machine of
    :mod:`..x86_64.preload`; %ebx is how much of the pattern the current
    entry matched, -1 once it cannot match)."""
    return [
        "ev_ignored:",
        "push ebx", "push esi", "push edi",
        "sub esp, 0x1000",
        "mov edx, dword ptr [ebp]",
        f"lea ebx, [edx + {p.environ:#x}]",
        f"mov eax, {SYS_OPEN:#x}",
        "xor ecx, ecx",
        "xor edx, edx",
        "int 0x80",
        "test eax, eax",
        "js ev_ignored_no_file",
        "mov edi, eax",
        "xor ebx, ebx",
        "ev_ignored_read:",
        "push ebx",
        f"mov eax, {SYS_READ:#x}",
        "mov ebx, edi",
        "lea ecx, [esp + 4]",
        "mov edx, 0x1000",
        "int 0x80",
        "pop ebx",
        "test eax, eax",
        "jle ev_ignored_no",
        "mov esi, esp",
        "lea ecx, [esp + eax]",
        "ev_ignored_byte:",
        "cmp esi, ecx",
        "jae ev_ignored_read",
        "movzx eax, byte ptr [esi]",
        "inc esi",
        "test ebx, ebx",
        "js ev_ignored_other",
        "mov edx, dword ptr [ebp]",
        f"add edx, {p.pattern:#x}",
        "cmp al, byte ptr [edx + ebx]",
        "jne ev_ignored_mismatch",
        "inc ebx",
        f"cmp ebx, {p.pattern_len:#x}",
        "je ev_ignored_yes",
        "jmp ev_ignored_byte",
        "ev_ignored_mismatch:",
        "mov ebx, -1",
        "ev_ignored_other:",
        "test al, al",
        "jnz ev_ignored_byte",
        "xor ebx, ebx",                           # the next entry starts
        "jmp ev_ignored_byte",
        "ev_ignored_yes:",
        "mov esi, 1",
        "jmp ev_ignored_close",
        "ev_ignored_no:",
        "xor esi, esi",
        "ev_ignored_close:",
        f"mov eax, {SYS_CLOSE:#x}",
        "mov ebx, edi",
        "int 0x80",
        "mov eax, esi",
        "jmp ev_ignored_return",
        "ev_ignored_no_file:",
        "xor eax, eax",
        "ev_ignored_return:",
        "add esp, 0x1000",
        "pop edi", "pop esi", "pop ebx",
        "ret",
    ]
