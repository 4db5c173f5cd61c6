"""Moving a library to a new base after the fact, as prelink relocated libraries.

Every address the file holds for ld.so, gdb or the kernel shifts by the
same ``delta`` (:class:`Move`): program headers (not PT_GNU_STACK, which
has none), ``e_entry``, the addresses of allocated sections, defined
symbols of ``.dynsym`` and ``.symtab`` (not TLS ones, which are offsets in
the TLS block), systemtap's probe addresses and ``.got.plt[0]``
(``_DYNAMIC``).  The address-valued ``DT_*`` entries and the relocations
move with the tables the rewrite writes anew.  ``.eh_frame`` is
PC-relative and needs nothing; in-file DWARF is left as it was (the retro
mode warns about it).
"""

import struct

from ..elfimage import SHF_ALLOC, SHN_LORESERVE, Sym
from ..errors import NotElfError, UnsupportedElfError
from .output import align_up

PT_GNU_STACK = 0x6474E551
SHN_ABS = 0xFFF1
#: the linker-defined symbols GNU ld makes SHN_ABS on AArch64 (:meth:`Move._linker_defined`)
LINKER_DEFINED = {"_DYNAMIC", "_GLOBAL_OFFSET_TABLE_"}
STT_TLS = 6


class Move:
    """The shift of the object ``image`` by ``delta``, applied to the staged
    output."""

    def __init__(self, image, delta):
        self.image = image
        self.delta = delta
        self.word = image.layout.word
        self.word_format = "<Q" if self.word == 8 else "<I"

    def headers(self, out):
        """Program headers and allocated sections' addresses."""
        for p in out.phdrs:
            if p.type not in (0, PT_GNU_STACK):
                p.vaddr += self.delta
                p.paddr += self.delta
        for s in out.shdrs:
            if s.flags & SHF_ALLOC:
                s.addr += self.delta

    def entry(self, out):
        entry = struct.unpack_from(self.word_format, out.data, 24)[0]
        if entry:
            struct.pack_into(self.word_format, out.data, 24, self.moved(entry, "e_entry"))

    def moved(self, address, what):
        """``address`` plus the delta, which must fit the object's address word:
        a 32-bit object whose (bent) ``what`` would move past 4 GiB cannot move."""
        moved = address + self.delta
        if not 0 <= moved < 1 << (8 * self.word):
            raise UnsupportedElfError(f"cannot move to its new base: {what} {address:#x} "
                                      f"would move to {moved:#x}, outside the "
                                      f"{8 * self.word}-bit address space", self.image.path)
        return moved

    def symbol(self, sym, shifts=None):
        """``sym`` moved with the object, and with its section when ``shifts``
        ({section index: how far the window moved it}) names it."""
        if not self.moves(sym):
            return sym
        shift = self.delta if shifts is None else shifts.get(sym.shndx, 0)
        return Sym(sym.name, sym.info, sym.other, sym.shndx, sym.value + shift, sym.size)

    def moves(self, sym):
        """Whether ``sym`` is defined at an address of the object."""
        shdrs = self.image.shdrs
        return (0 < sym.shndx < min(SHN_LORESERVE, len(shdrs))
                and shdrs[sym.shndx].flags & SHF_ALLOC and sym.info & 0xF != STT_TLS)

    def symtab(self, out, shifts=None):
        """``.symtab``'s symbols, in place (see :meth:`symbol`)."""
        _, symtab = self.image.section(".symtab")
        if symtab is None:
            return
        layout = self.image.layout
        size = layout.sym.size
        linker_defined = self._linker_defined()
        for k, at in enumerate(range(symtab.offset, symtab.offset + symtab.size - size + 1,
                                     size)):
            sym, = layout.iter_syms(out.data[at:at + size])
            if self.moves(sym):
                out.data[at:at + size] = layout.pack_sym(self.symbol(sym, shifts))
            elif k in linker_defined:
                section = linker_defined[k]
                shift = self.delta if shifts is None else shifts.get(section, 0)
                out.data[at:at + size] = layout.pack_sym(
                    Sym(sym.name, sym.info, sym.other, sym.shndx, sym.value + shift, sym.size))

    def _linker_defined(self):
        """{index in ``.symtab``: index of its section} of GNU ld's SHN_ABS
        ``_DYNAMIC`` and ``_GLOBAL_OFFSET_TABLE_`` (AArch64's) at the start of an
        allocated section: they name ``.dynamic`` and ``.got``, so they move with
        them, as elflint and gdb expect.  Empty when ``.strtab`` cannot be read."""
        # a section of size 0 (an empty one, or a bent .dynamic) only where no other starts
        allocated = sorted((bool(s.size), i) for i, s in enumerate(self.image.shdrs)
                           if s.flags & SHF_ALLOC)
        starts = {self.image.shdrs[i].addr: i for _, i in allocated}
        try:
            symbols = self.image.static_symbols()
        except NotElfError:
            return {}
        return {k: starts[sym.value] for k, (name, sym) in enumerate(symbols)
                if name in LINKER_DEFINED and sym.shndx == SHN_ABS and sym.value in starts}

    def probes(self, out):
        """systemtap's ``.note.stapsdt``: each note's pc, base and semaphore
        (glibc's probes, which gdb uses for longjmp and library events)."""
        _, notes = self.image.section(".note.stapsdt")
        if notes is None:
            return
        at, end = notes.offset, notes.offset + notes.size
        while at + 12 <= end:
            namesz, descsz, _ = struct.unpack_from("<III", out.data, at)
            desc = at + 12 + align_up(namesz, 4)
            for k in range(min(3, descsz // self.word)):
                value = struct.unpack_from(self.word_format, out.data, desc + self.word * k)[0]
                if value:
                    struct.pack_into(self.word_format, out.data, desc + self.word * k,
                                     self.moved(value, "a systemtap probe's address"))
            at = desc + align_up(descsz, 4)

    def got0(self, out, dynamic):
        """``.got.plt[0]``, the link-time address of ``_DYNAMIC`` (``dynamic``)."""
        _, got = self.image.section(".got.plt")
        if got is not None and got.size >= self.word and \
                struct.unpack_from(self.word_format, out.data, got.offset)[0] == dynamic:
            struct.pack_into(self.word_format, out.data, got.offset, dynamic + self.delta)
