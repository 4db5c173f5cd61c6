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

  Without ``DT_JMPREL`` nothing reaches PLT0 or a lazy tail any more (ld.so
  applies every JUMP_SLOT eagerly, and a settled GOT word never points
  back into the PLT), so those bytes are free for code.

* **The fix-up routine** (:func:`fixup_routine`), run by ld.so as the first
  ``R_X86_64_IRELATIVE`` of an object, after every other relocation of the
  object and before any of its code runs (glibc ``elf_dynamic_do_Rela``
  defers IRELATIVEs to the end of the table, in order).  It corrects the
  settled words when an object is not where they were settled for, and in a
  program runs the preload check.  It is assembled from readable Intel-syntax
  assembly with keystone (whose AT&T mode reads bare numbers as hex).

* **The stub** (:func:`foreign_stub`): ``endbr64; jmp *word(%rip)``.
"""

from dataclasses import dataclass

import keystone

ENDBR64 = bytes.fromhex("f30f1efa")
PLT_ENTRY = 16
FOREIGN_STUB_SIZE = 10
WORD = 8

# Linux x86-64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl).
SYS_READ, SYS_OPEN, SYS_CLOSE, SYS_WRITEV, SYS_EXIT_GROUP = 0, 2, 3, 20, 231

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


# -- the fix-up routine -------------------------------------------------------

@dataclass
class PreloadCheck:
    """What a program's preload check reads (link-time addresses of the
    program, tables in the program's read-only bytes)."""

    debug_word: int          #: d_val of the program's DT_DEBUG entry
    names: int               #: sorted u32 GNU hashes of expected object basenames
    names_count: int
    prebound: int            #: sorted u32 (GNU hash | 1) of pre-bound names
    prebound_count: int
    prefix: int              #: "elfvector: PROG: LD_PRELOAD'ed "
    prefix_len: int
    suffix: int              #: " would interpose ... anyway)\n"
    suffix_len: int
    environ_path: int        #: "/proc/self/environ\0"
    pattern: int             #: "ELFVECTOR_PRELOAD=ignore\0"
    pattern_len: int


@dataclass
class FixupParams:
    """Where the fix-up routine finds its lists (link-time addresses)."""

    result_word: int         #: the word its IRELATIVE writes; the routine returns its value
    own: tuple = None        #: (start, end) of the RELR list of words into this object
    checks: tuple = None     #: (start, end) of the check table, 32 bytes a check
    preload: PreloadCheck = None


CHECK_ENTRY = 32             # word, expected, list start, list end
RELR_BITS = 63


def fixup_routine(at, params):
    """The bytes of the fix-up routine linked at ``at``.

    ld.so calls it with no arguments (a normal call: %rbx, %rbp, %r12-%r15
    are preserved, the rest are free).  With %r11 its run-time address and
    %r10 the object's load bias (run-time minus link-time address):

    * when the bias is not 0, it adds the bias to every word of the ``own``
      RELR list (words settled to this object's own addresses);
    * for each check (word, expected, list): the check word, which a
      GLOB_DAT against the library's check symbol filled, minus
      ``expected`` is the library's displacement; when not 0 it is added to
      every word of that library's RELR list;
    * in a program, the preload check (:func:`_preload_asm`);
    * returns the (corrected) value of ``result_word``.

    The common case (every object at its base) costs a few instructions a
    check.  Words are listed by link-time address, found at that plus the
    bias.  RELR: an even entry is a word's address, the next bitmap starts
    at the word after it; an odd entry is a bitmap whose bit ``i`` (after
    the tag bit) marks the word ``base + 8*i``, the next base 63 words on.
    """
    return _assemble(_fixup_asm(at, params), at)


def fixup_routine_size(params):
    """An upper bound of the routine's size, for any placement: every
    displacement assembled as a 32-bit one."""
    far = _far_params(params)
    return len(_assemble(_fixup_asm(0x10000000, far), 0x10000000))


def _far_params(params):
    """``params`` with every address far from the routine (disp32 everywhere)."""
    def far(addr):
        return 0x70000000 + (addr & 0xFFF)

    def far_pair(pair):
        return None if pair is None else (far(pair[0]), far(pair[1]))
    pre = params.preload
    if pre is not None:
        pre = PreloadCheck(far(pre.debug_word), far(pre.names), pre.names_count,
                           far(pre.prebound), pre.prebound_count, far(pre.prefix),
                           pre.prefix_len, far(pre.suffix), pre.suffix_len,
                           far(pre.environ_path), far(pre.pattern), pre.pattern_len)
    return FixupParams(far(params.result_word), far_pair(params.own), far_pair(params.checks),
                       pre)


def _assemble(source, at):
    ks = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_64)
    encoding, _ = ks.asm(source, at)
    return bytes(encoding)


def _fixup_asm(at, p):
    def d(addr):                       # r11-relative displacement of a link-time address
        return f"{addr - at:#x}" if addr >= at else f"-{at - addr:#x}"
    lines = [
        "ev_fixup:",
        ".byte 0xf3, 0x0f, 0x1e, 0xfa",          # endbr64: ld.so calls us indirectly
        "push rbx",
        "lea r11, [rip + ev_fixup]",
        f"movabs r10, {at:#x}",
        "neg r10",
        "add r10, r11",                           # r10 = load bias
    ]
    if p.own is not None and p.own[0] != p.own[1]:
        lines += [
            "test r10, r10",
            "jz ev_own_done",
            f"lea rsi, [r11 + {d(p.own[0])}]",
            f"lea rdi, [r11 + {d(p.own[1])}]",
            "mov rdx, r10",
            "call ev_relr",
            "ev_own_done:",
        ]
    if p.checks is not None and p.checks[0] != p.checks[1]:
        lines += [
            f"lea rbx, [r11 + {d(p.checks[0])}]",
            "ev_check:",
            "mov rax, qword ptr [rbx]",
            "mov rdx, qword ptr [rax + r10]",     # what ld.so found for the check symbol
            "sub rdx, qword ptr [rbx + 8]",       # minus where it should be
            "jz ev_check_next",
            "mov rsi, qword ptr [rbx + 16]",
            "add rsi, r10",
            "mov rdi, qword ptr [rbx + 24]",
            "add rdi, r10",
            "call ev_relr",
            "ev_check_next:",
            f"add rbx, {CHECK_ENTRY:#x}",
            f"lea rax, [r11 + {d(p.checks[1])}]",
            "cmp rbx, rax",
            "jb ev_check",
        ]
    if p.preload is not None:
        lines += ["call ev_preload", "lea r11, [rip + ev_fixup]"]
    lines += [
        f"mov rax, qword ptr [r11 + {d(p.result_word)}]",
        "pop rbx",
        "ret",
    ]
    lines += _relr_asm()
    if p.preload is not None:
        lines += _preload_asm(p.preload, d)
    return "\n".join(lines) + "\n"


def _relr_asm():
    """Add %rdx to every word the RELR list [%rsi, %rdi) names (link-time
    addresses; the words are at address + %r10).  Clobbers rax rcx rsi r8."""
    return [
        "ev_relr:",
        "cmp rsi, rdi",
        "jae ev_relr_ret",
        "mov rax, qword ptr [rsi]",
        "add rsi, 8",
        "test al, 1",
        "jnz ev_relr_bitmap",
        "add rax, r10",
        "add qword ptr [rax], rdx",
        "lea rcx, [rax + 8]",                     # the next bitmap's first word
        "jmp ev_relr",
        "ev_relr_bitmap:",
        "shr rax, 1",                             # drop the tag bit
        "mov r8, rcx",
        "ev_relr_bit:",
        "test rax, rax",
        "jz ev_relr_bitmap_done",
        "shr rax, 1",                             # CF = this word's bit
        "jnc ev_relr_skip",
        "add qword ptr [r8], rdx",
        "ev_relr_skip:",
        "add r8, 8",
        "jmp ev_relr_bit",
        "ev_relr_bitmap_done:",
        f"add rcx, {RELR_BITS * WORD:#x}",
        "jmp ev_relr",
        "ev_relr_ret:",
        "ret",
    ]


def _preload_asm(p, d):
    """The preload check of a program.

    ld.so set the program's DT_DEBUG to ``_r_debug`` before relocating
    anything (rtld.c ``elf_setup_debug_entry``); ``r_map`` (offset 8) is the
    program's link_map, and ``l_next`` (24) runs through every loaded
    object.  An object whose basename (``l_name``, 8) hashes to no expected
    name is a preload: the GNU hashes in its ``.gnu.hash`` chains (found
    through ``l_ld``, 16, whose DT_GNU_HASH ld.so has already relocated) are
    looked up in the sorted table of pre-bound names.  On a hit, unless
    ``/proc/self/environ`` holds ``ELFVECTOR_PRELOAD=ignore``, one line goes
    to fd 2 and the process exits with 127, as ld.so does for a missing
    symbol.  An object without DT_GNU_HASH cannot be judged: refused too.
    Raw system calls only (libc is not ready, and may be what is preloaded).
    """
    return [
        "ev_preload:",
        "push r12", "push r13", "push r14", "push r15",
        f"mov rax, qword ptr [r11 + {d(p.debug_word)}]",
        "test rax, rax",
        "jz ev_preload_ret",
        "mov r12, qword ptr [rax + 8]",           # r_map: the program
        "ev_preload_object:",
        "mov r12, qword ptr [r12 + 24]",          # l_next
        "test r12, r12",
        "jz ev_preload_ret",
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
        f"lea rsi, [r11 + {d(p.names)}]",
        f"mov ecx, {p.names_count:#x}",
        "call ev_find",
        "jnz ev_preload_object",                     # an expected object
        "mov rsi, qword ptr [r12 + 16]",          # l_ld
        "ev_dynamic:",
        "mov rax, qword ptr [rsi]",
        "test rax, rax",
        "jz ev_preload_hit",                         # no DT_GNU_HASH: cannot tell
        f"cmp rax, {DT_GNU_HASH:#x}",
        "je ev_gnu_hash",
        "add rsi, 16",
        "jmp ev_dynamic",
        "ev_gnu_hash:",
        "mov r13, qword ptr [rsi + 8]",
        "mov eax, dword ptr [r13 + 8]",           # bloom size
        "lea r14, [r13 + rax*8 + 16]",            # buckets
        "mov ecx, dword ptr [r13]",               # nbucket
        "lea r15, [r14 + rcx*4]",                 # chains (index symoffset)
        "mov eax, dword ptr [r13 + 4]",           # symoffset
        "shl rax, 2",
        "sub r15, rax",                           # chain of symbol i at r15 + 4i
        "lea r13, [r14 + rcx*4]",                 # end of the buckets
        "ev_bucket:",
        "cmp r14, r13",
        "jae ev_preload_object",
        "mov ebx, dword ptr [r14]",
        "add r14, 4",
        "test ebx, ebx",
        "jz ev_bucket",
        "ev_chain:",
        "mov eax, dword ptr [r15 + rbx*4]",
        "or eax, 1",                              # the table holds hash | 1
        f"lea rsi, [r11 + {d(p.prebound)}]",
        f"mov ecx, {p.prebound_count:#x}",
        "call ev_find",
        "jnz ev_preload_hit",
        "test byte ptr [r15 + rbx*4], 1",         # the chain's last symbol
        "jnz ev_bucket",
        "inc ebx",
        "jmp ev_chain",
        "ev_preload_hit:",
        "call ev_ignored",
        "test eax, eax",
        "jnz ev_preload_ret",
        "lea r11, [rip + ev_fixup]",
        "mov rsi, qword ptr [r12 + 8]",
        "mov rcx, rsi",
        "ev_name_length:",
        "cmp byte ptr [rcx], 0",
        "je ev_name_measured",
        "inc rcx",
        "jmp ev_name_length",
        "ev_name_measured:",
        "sub rcx, rsi",
        "sub rsp, 0x30",
        f"lea rax, [r11 + {d(p.prefix)}]",
        "mov qword ptr [rsp], rax",
        f"mov qword ptr [rsp + 8], {p.prefix_len:#x}",
        "mov qword ptr [rsp + 0x10], rsi",
        "mov qword ptr [rsp + 0x18], rcx",
        f"lea rax, [r11 + {d(p.suffix)}]",
        "mov qword ptr [rsp + 0x20], rax",
        f"mov qword ptr [rsp + 0x28], {p.suffix_len:#x}",
        f"mov eax, {SYS_WRITEV:#x}",
        "mov edi, 2",
        "mov rsi, rsp",
        "mov edx, 3",
        "syscall",
        f"mov eax, {SYS_EXIT_GROUP:#x}",
        "mov edi, 0x7f",
        "syscall",
        "hlt",
        "ev_preload_ret:",
        "pop r15", "pop r14", "pop r13", "pop r12",
        "ret",
    ] + _find_asm() + _ignored_asm(p, d)


def _find_asm():
    """Binary search of %eax in the sorted u32 table %rsi of %ecx entries;
    ZF clear (jnz) when found.  Clobbers rcx rdx r8 r9."""
    return [
        "ev_find:",
        "xor r8d, r8d",
        "mov r9d, ecx",
        "ev_find_loop:",
        "cmp r8d, r9d",
        "jae ev_find_absent",
        "lea ecx, [r8 + r9]",
        "shr ecx, 1",
        "mov edx, dword ptr [rsi + rcx*4]",
        "cmp eax, edx",
        "je ev_find_found",
        "jb ev_find_lower",
        "lea r8d, [rcx + 1]",
        "jmp ev_find_loop",
        "ev_find_lower:",
        "mov r9d, ecx",
        "jmp ev_find_loop",
        "ev_find_found:",
        "test esp, esp",                          # ZF clear: found
        "ret",
        "ev_find_absent:",
        "xor edx, edx",                           # ZF set: absent
        "ret",
    ]


def _ignored_asm(p, d):
    """%eax = 1 when /proc/self/environ holds the entry
    ``ELFVECTOR_PRELOAD=ignore`` exactly, else 0.  A state machine over the
    NUL-separated entries, read 4 KiB at a time into the stack: %r8d is how
    much of the pattern (NUL included) the current entry matched, -1 once it
    cannot match.  System calls clobber rcx and r11."""
    return [
        "ev_ignored:",
        "push rbx",
        "sub rsp, 0x1000",
        "lea r11, [rip + ev_fixup]",
        f"lea rdi, [r11 + {d(p.environ_path)}]",
        f"lea rbx, [r11 + {d(p.pattern)}]",
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
        "jmp ev_ignored_ret",
        "ev_ignored_no_file:",
        "xor eax, eax",
        "ev_ignored_ret:",
        "add rsp, 0x1000",
        "pop rbx",
        "ret",
    ]
