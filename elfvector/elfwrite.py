"""Append-only layout change: new PT_LOAD segments at the end of a file.

The post-link commands never move code or data that the link editor
placed.  They *append*: a read-only segment with the grown dynamic tables
(``.dynsym``, ``.dynstr``, hash tables, ``.rela.dyn``), then an executable
and a writable segment when needed, then a new section-name table and
section header table.  Edits inside the original bytes are fixed-size
patches (a relocation type, a dynamic entry, a symbol's name).  The same
shape as Firefox's elfhack (one added PT_LOAD).

The program header table stays where every tool expects it, right after
the ELF header (BFD's ``strip`` and ``objcopy`` lay it out there whatever
``e_phoff`` says).  It grows in place by one entry per new segment: the
hash tables and ``.dynsym`` that follow it move into the new segment, and
the small sections between (``.interp``, ``.note.*``) slide down into the
space they left, with PT_INTERP, PT_NOTE and PT_GNU_PROPERTY following.

New segments start on fresh pages after the file's last byte and after
the highest address any segment reaches (``.bss`` included), and new
PT_LOAD entries follow the old ones, in address order.

This is the *stage, then commit* pattern of patchelf: methods record what
must change, :meth:`Appender.write` lays it out in one pass.

Every record is written in the file's own class (``image.layout``): an
i386 file gets ELF32 headers, dynamic entries and symbols.
"""

from dataclasses import dataclass, field

from .elfimage import (ELF64, PF_R, PF_W, PF_X, PT_LOAD, PT_PHDR, SHF_ALLOC, SHF_EXECINSTR,
                       SHF_WRITE, SHT_DYNSYM, SHT_GNU_HASH, SHT_GNU_VERDEF, SHT_GNU_VERNEED,
                       SHT_GNU_VERSYM, SHT_HASH, SHT_PROGBITS, SHT_RELA, SHT_STRTAB, STT_SECTION,
                       DT_SYMTAB, Phdr, Shdr)
from .errors import UnsupportedElfError

PAGE = 0x1000
#: address space kept free above the new segments' start (they hold tables
#: and stubs); a sixteenth of the whole where that is less (i386's 4 GiB)
ROOM = 1 << 32
SHT_REL = 9


def table_sections(layout):
    """(sh_type, sh_entsize) of the dynamic tables that move to a new
    segment, as GNU ld writes them for ``layout``'s class (an ELF64
    ``.gnu.hash`` mixes word sizes: 0; an ELF32 one has 4-byte words only).  A moved table's header says what the table is,
    whatever the input's said: eu-elflint and strip trust the type and
    entry size of an allocated section."""
    return {".dynsym": (SHT_DYNSYM, layout.sym.size), ".dynstr": (SHT_STRTAB, 0),
            ".hash": (SHT_HASH, 4), ".gnu.hash": (SHT_GNU_HASH, 4 if layout.word == 4 else 0),
            ".gnu.version": (SHT_GNU_VERSYM, 2), ".gnu.version_d": (SHT_GNU_VERDEF, 0),
            ".gnu.version_r": (SHT_GNU_VERNEED, 0), ".rela.dyn": (SHT_RELA, layout.rela.size),
            ".rela.plt": (SHT_RELA, layout.rela.size), ".rel.dyn": (SHT_REL, layout.rel.size),
            ".rel.plt": (SHT_REL, layout.rel.size)}


TABLE_SECTIONS = table_sections(ELF64)


def align_up(value, align):
    return (value + align - 1) // align * align


@dataclass
class NewSegment:
    flags: int
    offset: int
    vaddr: int
    data: bytearray = field(default_factory=bytearray)

    @property
    def end_offset(self):
        return self.offset + len(self.data)


@dataclass
class NewSection:
    name: str
    type: int
    flags: int
    addr: int
    size: int
    align: int
    entsize: int = 0
    link: int = 0
    info: int = 0


def _segment_alignment(image, loads):
    """The alignment of the new segments: a page, or the file's own
    segments' alignment up to its architecture's largest page
    (``Machine.max_page_size``: an AArch64 file linked for 64 KiB pages
    must load on a kernel that uses them)."""
    return max(PAGE, min(max(p.align for p in loads), image.arch.max_page_size))


class Appender:
    """Staged changes to an :class:`~elfvector.elfimage.ElfImage`."""

    #: sections that may sit between the program headers and the tables
    #: that move out; they slide down as one block
    SLIDING = (".interp", ".note")

    def __init__(self, image):
        self.image = image
        loads = [p for p in image.phdrs if p.type == PT_LOAD]
        if not loads:
            raise UnsupportedElfError("no PT_LOAD segment", image.path)
        if not image.shdrs:
            raise UnsupportedElfError("no section headers: strip and objcopy could not keep "
                                      "what would be added", image.path)
        first = min(loads, key=lambda p: p.vaddr)
        if first.offset != 0 or first.vaddr % PAGE:
            raise UnsupportedElfError("first PT_LOAD does not map the ELF header", image.path)
        # New segments: file bytes after everything, addresses after
        # everything (.bss included), both page-aligned, so congruent.
        self.page = _segment_alignment(image, loads)
        self.start = align_up(len(image.data), self.page)
        self.start_vaddr = align_up(max(p.vaddr + p.memsz for p in loads), self.page) \
            + self._elflint_gap(image)
        self.layout = image.layout
        if self.start_vaddr + min(ROOM, image.arch.address_end >> 4) > image.arch.address_end:
            raise UnsupportedElfError("no address space left after the segments for new ones",
                                      image.path)
        self.segments = []
        self.patches = []
        self.dynamic = [list(e) for e in image.dynamic] if image.dynamic else None
        self.section_updates = {}
        self.new_sections = []
        self.allocations = []
        self.missing_sections = []

    def _elflint_gap(self, image):
        """Unused address space between the old segments and the new ones.

        eu-elflint judges a relocation by ``r_offset + st_size`` of its
        symbol, so a GOT word at the end of the writable segment "reaches"
        a read-only segment placed right after it ("read-only section
        modified").  A gap as large as the largest symbol costs no file
        bytes and keeps it quiet.
        """
        if image.dynamic is None or not image.dyn(DT_SYMTAB):
            return 0
        return align_up(max((s.size for s in image.dynsyms()), default=0), self.page)

    # -- staging ----------------------------------------------------------
    def _segment(self, flags):
        if self.segments:
            last = self.segments[-1]
            offset = align_up(last.end_offset, self.page)
            vaddr = last.vaddr + (offset - last.offset)
        else:
            offset, vaddr = self.start, self.start_vaddr
        self.segments.append(NewSegment(flags, offset, vaddr))
        return self.segments[-1]

    def alloc(self, size, align=8, flags=PF_R, section=None):
        """Reserve ``size`` zero bytes in the segment with ``flags``; return the address.

        Segments are created in the order R, RX, RW: allocate all read-only
        pieces first, then code, then data.  Every piece must end up inside
        a section (``section`` names a new one; or :meth:`move_section`),
        because ``strip`` and ``objcopy`` keep only what sections cover.
        """
        if align > self.page:
            raise UnsupportedElfError(f"a table aligned to {align:#x} bytes cannot move to a "
                                      f"new segment (pages are aligned to {self.page:#x})",
                                      self.image.path)
        if not self.segments or self.segments[-1].flags != flags:
            if any(s.flags == flags for s in self.segments):
                raise ValueError("allocate each kind of segment in one run (R, then RX, then RW)")
            self._segment(flags)
        seg = self.segments[-1]
        pad = align_up(len(seg.data), align) - len(seg.data)
        seg.data.extend(bytes(pad + size))
        vaddr = seg.vaddr + len(seg.data) - size
        self.allocations.append((vaddr, size))
        if section is not None:
            self.add_section(section, vaddr, size, SECTION_FLAGS[flags], align)
        return vaddr

    def put(self, vaddr, data):
        """Fill bytes previously reserved with :meth:`alloc`."""
        for seg in self.segments:
            if seg.vaddr <= vaddr and vaddr + len(data) <= seg.vaddr + len(seg.data):
                start = vaddr - seg.vaddr
                seg.data[start:start + len(data)] = data
                return
        raise ValueError(f"{vaddr:#x} was not allocated")

    def add_data(self, data, align=8, flags=PF_R, section=None):
        vaddr = self.alloc(len(data), align, flags, section)
        self.put(vaddr, data)
        return vaddr

    def patch(self, vaddr, data):
        """Overwrite bytes of the original file at ``vaddr`` (same size)."""
        self.patches.append((self.image.offset_of(vaddr, len(data)), bytes(data)))

    def set_dynamic(self, tag, value):
        for entry in self.dynamic:
            if entry[0] == tag:
                entry[1] = value
                return
        raise UnsupportedElfError(f"no dynamic entry {tag:#x} to update", self.image.path)

    def add_dynamic(self, tag, value):
        """Add an entry in a spare DT_NULL slot of .dynamic (one NULL must stay)."""
        if len(self.dynamic) + 1 > self.image.dynamic_capacity:
            raise UnsupportedElfError("no spare entry in .dynamic for the new tables",
                                      self.image.path)
        self.dynamic.insert(len(self.dynamic) - 1, [tag, value])

    def move_section(self, name, vaddr, size):
        """Point section ``name`` (if the file has it) at its new copy
        (a dynamic table's type and entry size set right: :func:`table_sections`)."""
        index, _ = self.image.section(name)
        if index is not None:
            self.section_updates[index] = (vaddr, size)
        else:
            self.missing_sections.append(name)

    def add_section(self, name, vaddr, size, flags, align=8, entsize=0, sh_type=SHT_PROGBITS,
                    link=0):
        """A new allocated section; returns its index."""
        self.new_sections.append(NewSection(name, sh_type, flags, vaddr, size, align, entsize,
                                            link))
        return len(self.image.shdrs) + len(self.new_sections) - 1

    def section_index(self, name):
        """Index that the new section ``name`` will have in the output."""
        for k, sec in enumerate(self.new_sections):
            if sec.name == name:
                return len(self.image.shdrs) + k
        raise KeyError(name)

    # -- committing -------------------------------------------------------
    def write(self):
        """The new file's bytes."""
        image, layout = self.image, self.layout
        self._check_sections_cover_allocations()
        self._check_address_space()
        out = bytearray(image.data)
        for offset, data in self.patches:
            out[offset:offset + len(data)] = data
        phdrs = self._program_headers()
        table_end = image.phoff + len(phdrs) * layout.phdr.size
        slide = self._slide_small_sections(out, table_end, phdrs)
        self._move_section_symbols(out)
        out[image.phoff:table_end] = b"".join(p.pack(layout) for p in phdrs)
        if self.dynamic is not None:
            record = layout.dyn
            for i, (tag, value) in enumerate(self.dynamic):
                at = image.dynamic_offset + i * record.size
                out[at:at + record.size] = record.pack(tag, value)
        for seg in self.segments:
            out.extend(bytes(seg.offset - len(out)))
            out.extend(seg.data)
        shstrtab_offset, shstrtab, names = self._section_names(len(out))
        out.extend(shstrtab)
        shoff = align_up(len(out), 8)
        out.extend(bytes(shoff - len(out)))
        shdrs = self._section_headers(shstrtab_offset, len(shstrtab), names, slide)
        out.extend(b"".join(s.pack(layout) for s in shdrs))
        header = list(layout.ehdr.unpack_from(out))
        header[6], header[10], header[12] = (shoff if shdrs else 0, len(phdrs), len(shdrs))
        out[:layout.ehdr.size] = layout.ehdr.pack(*header)
        return bytes(out)

    def _check_address_space(self):
        """The new segments end inside the process's address space (i386's
        4 GiB is small enough for a library's tables to run past it)."""
        end = self.image.arch.address_end
        for seg in self.segments:
            if seg.vaddr + len(seg.data) > end:
                raise UnsupportedElfError(
                    f"the added segment at {seg.vaddr:#x} ({len(seg.data)} bytes) would end "
                    f"past the {end.bit_length() - 1}-bit address space", self.image.path)

    def _check_sections_cover_allocations(self):
        starts = {vaddr for vaddr, _ in self.section_updates.values()}
        starts |= {sec.addr for sec in self.new_sections}
        for vaddr, size in self.allocations:
            if size and vaddr not in starts:
                if self.missing_sections:
                    raise UnsupportedElfError(
                        f"no section header for {', '.join(self.missing_sections)}: its "
                        "moved copy would be in no section, and strip would drop it",
                        self.image.path)
                raise ValueError(f"bytes at {vaddr:#x} are in no section: strip would drop them")

    def _slide_small_sections(self, out, table_end, phdrs):
        """Make room for the longer program header table; return (start, end, shift).

        The block of ``.interp``/``.note.*`` sections after the table moves
        down by a multiple of its alignment; everything it may move over
        must have moved out to the new segment already.
        """
        image = self.image
        old_end = image.phoff + image.phnum * self.layout.phdr.size
        if table_end <= old_end:
            return (0, 0, 0)
        staying = sorted((s for i, s in enumerate(image.shdrs)
                          if s.flags & SHF_ALLOC and s.size and i not in self.section_updates
                          and s.offset >= old_end and s.offset < self.start),
                         key=lambda s: s.offset)
        block = []
        for s in staying:
            if not image.section_names[image.shdrs.index(s)].startswith(self.SLIDING):
                break
            block.append(s)
        after = staying[len(block)] if len(staying) > len(block) else None
        if not block:
            if after is not None and after.offset < table_end:
                raise self._no_room()
            return (0, 0, 0)
        start, end = block[0].offset, max(s.offset + s.size for s in block)
        align = max(max(s.addralign, 1) for s in block)
        shift = max(0, align_up(table_end - start, align))
        if after is not None and end + shift > after.offset:
            raise self._no_room()
        if shift:
            moved = bytes(out[start:end])
            out[start:end] = bytes(end - start)
            out[start + shift:end + shift] = moved
            self._shift_static_symbols(out, {image.shdrs.index(s) for s in block}, shift)
            for p in phdrs:
                if p.type != PT_LOAD and p.type != PT_PHDR and start <= p.offset < end:
                    p.offset += shift
                    p.vaddr += shift
                    p.paddr += shift
        return (start, end, shift)

    def _shift_static_symbols(self, out, sections, shift):
        """Keep ``.symtab`` entries of slid sections (``__abi_tag``) pointing at them."""
        index, symtab = self.image.section(".symtab")
        if symtab is None:
            return
        layout, size = self.layout, self.layout.sym.size
        for at in range(symtab.offset, symtab.offset + symtab.size - size + 1, size):
            (sym,) = layout.iter_syms(bytes(out[at:at + size]))
            if sym.shndx in sections:
                sym.value += shift
                out[at:at + size] = sym.pack(layout)

    def _move_section_symbols(self, out):
        """Point the ``.symtab`` section symbols (STT_SECTION, which the
        AArch64 link editor writes for every section) of the moved tables at
        their new copies: eu-elflint rejects a section symbol outside its
        section."""
        _, symtab = self.image.section(".symtab")
        if symtab is None or not self.section_updates:
            return
        layout, size = self.layout, self.layout.sym.size
        for at in range(symtab.offset, symtab.offset + symtab.size - size + 1, size):
            (sym,) = layout.iter_syms(bytes(out[at:at + size]))
            if sym.type == STT_SECTION and sym.shndx in self.section_updates:
                sym.value = self.section_updates[sym.shndx][0]
                out[at:at + size] = sym.pack(layout)

    def _new_offset(self, vaddr):
        """File offset of an address in one of the new segments."""
        for seg in self.segments:
            if seg.vaddr <= vaddr <= seg.vaddr + len(seg.data):
                return seg.offset + vaddr - seg.vaddr
        raise ValueError(f"{vaddr:#x} is in no new segment")

    def _no_room(self):
        return UnsupportedElfError("no room to grow the program header table", self.image.path)

    def _program_headers(self):
        old = [Phdr(**vars(p)) for p in self.image.phdrs]
        size = (len(old) + len(self.segments)) * self.layout.phdr.size
        for p in old:
            if p.type == PT_PHDR:
                p.filesz = p.memsz = size
        last_load = max(i for i, p in enumerate(old) if p.type == PT_LOAD)
        new = [Phdr(PT_LOAD, seg.flags, seg.offset, seg.vaddr, seg.vaddr, len(seg.data),
                    len(seg.data), self.page) for seg in self.segments]
        return old[:last_load + 1] + new + old[last_load + 1:]

    def _section_names(self, offset):
        image = self.image
        if not image.shdrs:
            return offset, b"", []
        old = image.shdrs[image.shstrndx]
        table = bytearray(image.bytes_at(old.offset, old.size))
        names = []
        for sec in self.new_sections:
            names.append(len(table))
            table.extend(sec.name.encode() + b"\0")
        return offset, bytes(table), names

    def _section_headers(self, shstrtab_offset, shstrtab_size, names, slide):
        image = self.image
        if not image.shdrs:
            return []
        shdrs = [Shdr(**vars(s)) for s in image.shdrs]
        start, end, shift = slide
        for s in shdrs:
            if shift and s.flags & SHF_ALLOC and start <= s.offset < end:
                s.offset += shift
                s.addr += shift
        for index, (vaddr, size) in self.section_updates.items():
            moved = shdrs[index]
            moved.addr, moved.offset, moved.size = vaddr, self._new_offset(vaddr), size
            moved.type, moved.entsize = table_sections(self.layout).get(
                image.section_names[index], (moved.type, moved.entsize))
        shdrs[image.shstrndx].offset = shstrtab_offset
        shdrs[image.shstrndx].size = shstrtab_size
        for sec, name in zip(self.new_sections, names):
            shdrs.append(Shdr(name, sec.type, sec.flags, sec.addr, self._new_offset(sec.addr),
                              sec.size, sec.link, sec.info, sec.align, sec.entsize))
        return shdrs


SECTION_FLAGS = {PF_R: SHF_ALLOC, PF_R | PF_X: SHF_ALLOC | SHF_EXECINSTR,
                 PF_R | PF_W: SHF_ALLOC | SHF_WRITE}
