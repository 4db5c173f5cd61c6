"""i386 PLT decoding (GNU ld's entries, binutils ``elf32-i386.c``)::

    .plt (lazy, non-PIC) ff 25 <abs32>  68 <reloc offset>  e9 <plt0>         16 bytes
    .plt (lazy, PIC)     ff a3 <disp32> 68 <reloc offset>  e9 <plt0>         16 bytes
    .plt (IBT)           f3 0f 1e fb  68 <reloc offset>  e9 <plt0>  66 90   16 bytes, dead
    .plt.sec             f3 0f 1e fb  ff 25 <abs32> | ff a3 <disp32>  nop    16 bytes
    .plt.got             (f3 0f 1e fb)? ff 25 <abs32> | ff a3 <disp32> nop   8 or 16 bytes

PIC entries jump through ``disp32(%ebx)``, %ebx holding the address of
``.got.plt`` (``DT_PLTGOT``), which the caller set up; non-PIC ones
through an absolute address.  The lazy push pushes the slot's byte offset
in ``DT_JMPREL`` (8 bytes a REL entry), not its index.

A slot bound to another library's IFUNC becomes an ``R_386_IRELATIVE``
as on x86-64, but a REL IRELATIVE finds its resolver in the word it
writes (``l_addr + *word``), so the word holds the stub's address and the
stub cannot jump through it: it finds the resolver from the library's
check word instead (:func:`foreign_stub`), which ld.so has written before
any IRELATIVE runs.  At 23 bytes it does not fit a lazy tail; it goes in
the dead IBT ``.plt`` or the executable segment's last page.
"""

from .. import plt as common
from . import ENDBR32

FOREIGN_STUB_SIZE = 23
#: the stub is found from the library's check word, not through the slot's word
STUB_THROUGH_CHECK = True
STUB_NEEDS_ENTRY = False
CODE_ALIGN = 2
#: the lazy push's operand is the slot's byte offset in DT_JMPREL
PUSH_SCALE = 8
_ABSOLUTE, _EBX = bytes.fromhex("ff25"), bytes.fromhex("ffa3")


def decode_jump(code, got):
    """The GOT word that the PLT entry ``code`` jumps through, or None
    (``got``: the address %ebx holds in PIC code, ``DT_PLTGOT``)."""
    if code.startswith(ENDBR32):
        code = code[4:]
    if len(code) < 6:
        return None
    operand = int.from_bytes(code[2:6], "little", signed=code[:2] == _EBX)
    if code[:2] == _ABSOLUTE:
        return operand
    if code[:2] == _EBX and got:
        return (got + operand) & 0xFFFFFFFF
    return None


def plt_entries(sections, got=None):
    """Every PLT entry of ``sections``: ``{name: (address, bytes, entsize)}``
    for ``.plt``, ``.plt.sec``, ``.plt.got``.  Returns ``{word: PltEntry}``."""
    return common.scan(sections, _first, _step, lambda entry, _address: decode_jump(entry, got))


def _first(name):
    return common.X86_PLT_ENTRY if name == ".plt" else 0          # past PLT0


def _step(name, entsize):
    if name == ".plt.got":
        return entsize if entsize in (8, 16) else 8
    return common.X86_PLT_ENTRY                             # GNU ld's sh_entsize is 4


def dead_plt(sections):
    """:func:`..plt.dead_plt`: the whole ``.plt`` of an IBT layout, else PLT0."""
    return common.dead_plt(sections, common.X86_PLT_ENTRY)


def lazy_push(sections, target):
    """:func:`..plt.lazy_push` of ``(endbr32)? push $offset; jmp PLT0``."""
    return common.lazy_push(sections, target, ENDBR32, PUSH_SCALE)


lazy_bytes, plt0 = common.lazy_bytes, common.plt0


def foreign_stub(at, check_word, displacement):
    """The resolver an ``R_386_IRELATIVE`` calls for a slot bound to another
    library's IFUNC, at ``at``: the library's check word (``check_word``,
    link-time address in this object; it holds the library's run-time
    ``.dynamic``) plus ``displacement`` (the resolver's address minus the
    check symbol's, in the library) is the resolver, jumped to::

        endbr32; call 1f; 1: pop %eax; mov disp(%eax), %eax; add $displacement, %eax; jmp *%eax
    """
    after_call = at + 9
    return (ENDBR32 + b"\xe8\x00\x00\x00\x00\x58\x8b\x80"
            + ((check_word - after_call) & 0xFFFFFFFF).to_bytes(4, "little")
            + b"\x05" + (displacement & 0xFFFFFFFF).to_bytes(4, "little") + b"\xff\xe0")
