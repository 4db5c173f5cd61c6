"""Where a closure rewrite puts what it adds: in bytes already mapped.

Every PT_LOAD costs ld.so an ``mmap`` (and the kernel a VMA), so the
rewrite adds none in the common case.  The room it uses:

* **the table window**: the dynamic tables between the program headers and
  the end of the first PT_LOAD (``.interp``, the notes, ``.gnu.hash``,
  ``.dynsym``, ``.dynstr``, the version tables, ``.rela.dyn``,
  ``.rela.plt``) are reached only through ``DT_*`` entries, program headers
  and section headers, so they are laid out again there; the settled
  relocations leave it much emptier, and the segment may grow up to its
  last page end when the next segment's file offset and address allow;
* **segment tails**: the bytes between a read-only or executable segment's
  end and its last page end, mapped anyway (the executable segment's tail
  is where the fix-up routine goes);
* **dead PLT bytes** (see :mod:`.x86_64`);
* only when all that is not enough, **one added PT_LOAD** after the others.

:class:`Output` is the one place that turns the staged changes into the
file's bytes: program headers, moved and new sections, the section name
table and section headers, written at the end.
"""

from dataclasses import dataclass, field

from ..elfimage import (EHDR, PF_W, PF_X, PHDR, PT_LOAD, PT_PHDR, SHF_ALLOC, SHT_NOBITS,
                        SHT_PROGBITS, Phdr, Shdr)
from ..errors import UnsupportedElfError

PAGE = 0x1000
SHT_NOTE = 7
#: sections whose size valgrind asserts equal in the file and in its separate
#: debug file (coregrind/m_debuginfo/readelf.c, FIND(text, rx) ...)
SIZE_CHECKED = (".text", ".data", ".sdata", ".rodata", ".bss", ".sbss")

#: the tables the window may lay out again (besides every SHT_NOTE section)
WINDOW_TABLES = (".interp", ".gnu.hash", ".hash", ".dynsym", ".dynstr", ".gnu.version",
                 ".gnu.version_d", ".gnu.version_r", ".rela.dyn", ".rela.plt", ".relr.dyn")


def align_up(value, align):
    return (value + align - 1) // align * align if align > 1 else value


def page_end(address):
    return align_up(address, PAGE)


@dataclass
class Space:
    """Free bytes ``[vaddr, end)`` of the output, at new link-time addresses."""

    name: str
    vaddr: int
    end: int
    flags: int
    cursor: int = None

    def __post_init__(self):
        if self.cursor is None:
            self.cursor = self.vaddr

    def take(self, size, align=8):
        """Reserve ``size`` bytes; their address, or None when they do not fit."""
        at = align_up(self.cursor, align)
        if at + size > self.end:
            return None
        self.cursor = at + size
        return at

    @property
    def used(self):
        return self.cursor - self.vaddr


# -- finding room ---------------------------------------------------------------

def loads(phdrs):
    return sorted((p for p in phdrs if p.type == PT_LOAD), key=lambda p: p.vaddr)


def tail_end(phdrs, seg):
    """How far the non-writable segment ``seg`` may grow into bytes mapped
    anyway: up to its last page end, and not into the next segment's file
    bytes or addresses."""
    end = page_end(seg.vaddr + seg.filesz)
    following = [p for p in loads(phdrs) if p.vaddr > seg.vaddr]
    if following:
        nxt = following[0]
        end = min(end, nxt.vaddr, seg.vaddr + (nxt.offset - seg.offset))
    return max(end, seg.vaddr + seg.filesz)


def file_bytes_free(image, offset, end):
    """Whether no section claims file bytes [offset, end)."""
    for s in image.shdrs:
        if s.type != SHT_NOBITS and s.size and s.offset < end and offset < s.offset + s.size:
            return False
    return True


@dataclass
class Window:
    """The first PT_LOAD's tables: sections laid out again from ``start``."""

    segment: int                    #: index of the first PT_LOAD in the phdrs
    sections: list                  #: section indices in address order
    start: int                      #: original address of the first byte after the phdrs
    end: int                        #: original address the window may reach
    original_end: int               #: original end of the laid-out sections


def table_window(image):
    """The :class:`Window` of ``image``: the sections right after the program
    header table that only DT_*, program and section headers reach."""
    first = loads(image.phdrs)[0]
    if first.offset != 0 or first.flags & PF_W:
        raise UnsupportedElfError("the first PT_LOAD does not map the headers read-only",
                                  image.path)
    phdrs_end = first.vaddr + image.phoff + image.phnum * PHDR.size
    inside = sorted((i for i, s in enumerate(image.shdrs)
                     if s.flags & SHF_ALLOC and first.vaddr <= s.addr < first.vaddr + first.memsz
                     and s.addr >= phdrs_end),
                    key=lambda i: image.shdrs[i].addr)
    chosen, end = [], None
    for i in inside:
        s, name = image.shdrs[i], image.section_names[i]
        if s.type == SHT_NOTE or name in WINDOW_TABLES:
            chosen.append(i)
        else:
            end = s.addr
            break
    if end is None:
        end = first.vaddr + first.filesz if first.flags & PF_X else tail_end(image.phdrs, first)
    original_end = max((image.shdrs[i].addr + image.shdrs[i].size for i in chosen),
                       default=phdrs_end)
    return Window(image.phdrs.index(first), chosen, phdrs_end, end, original_end)


# -- the output -----------------------------------------------------------------

@dataclass
class NewSection:
    name: str
    type: int
    flags: int
    addr: int
    size: int
    align: int = 8
    entsize: int = 0
    link: int = 0
    info: int = 0
    offset: int = None             #: file offset of a section that is not loaded
    data: bytes = None             #: its contents


@dataclass
class Output:
    """The staged output file.  ``phdrs`` and ``shdrs`` are edited in place
    (new link-time addresses); :meth:`put` writes bytes at an address of a
    PT_LOAD's file bytes; :meth:`bytes` lays out the section headers."""

    image: object
    data: bytearray = None
    phdrs: list = None
    shdrs: list = None
    new_sections: list = field(default_factory=list)
    added: tuple = None             #: (Phdr, bytearray) of the added PT_LOAD

    def __post_init__(self):
        self.data = bytearray(self.image.data)
        self.phdrs = [Phdr(**vars(p)) for p in self.image.phdrs]
        self.shdrs = [Shdr(**vars(s)) for s in self.image.shdrs]

    def offset_of(self, vaddr, size):
        for p in self.phdrs:
            if p.type == PT_LOAD and p.vaddr <= vaddr and vaddr + size <= p.vaddr + p.filesz:
                return vaddr - p.vaddr + p.offset
        raise ValueError(f"{vaddr:#x}+{size} is in no segment's file bytes")

    def put(self, vaddr, data):
        if self.added is not None:
            phdr, body = self.added
            if phdr.vaddr <= vaddr and vaddr + len(data) <= phdr.vaddr + len(body):
                body[vaddr - phdr.vaddr:vaddr - phdr.vaddr + len(data)] = data
                return
        at = self.offset_of(vaddr, len(data))
        if at + len(data) > len(self.data):
            self.data.extend(bytes(at + len(data) - len(self.data)))
        self.data[at:at + len(data)] = data

    def read(self, vaddr, size):
        at = self.offset_of(vaddr, size)
        return bytes(self.data[at:at + size])

    def grow(self, seg, end):
        """Let the PT_LOAD ``seg`` cover file and memory bytes up to ``end``."""
        if end > seg.vaddr + seg.filesz:
            seg.filesz = seg.memsz = end - seg.vaddr

    def add_section(self, section):
        self.new_sections.append(section)
        return len(self.shdrs) + len(self.new_sections) - 1

    def extend_section_ending_at(self, end, new_end, sh_type, flags=0):
        """Let the allocated section of ``sh_type`` (with ``flags``) that ends
        at ``end`` (its alignment padding included) reach ``new_end``: bytes
        added to a segment's end stay in a section the separate debug file
        also has (gdb warns about each allocated section it lacks).  Never
        one whose size valgrind requires to match the debug file's.  False
        when no section may grow."""
        for s, name in zip(self.shdrs, self.image.section_names):
            if s.flags & SHF_ALLOC and s.type == sh_type and s.flags & flags == flags and \
                    s.size and s.addr + s.size <= end <= align_up(s.addr + s.size, 16) \
                    and name not in SIZE_CHECKED:
                s.size = new_end - s.addr
                return True
        return False

    def add_file_section(self, name, data, align=8):
        """A section that is not loaded, after every other byte of the file;
        returns its file offset (call once the segments are final)."""
        end = self._content_end()
        if self.added is not None:
            end = max(end, self.added[0].offset + len(self.added[1]))
        for sec in self.new_sections:
            if sec.data is not None:
                end = max(end, sec.offset + len(sec.data))
        offset = align_up(end, align)
        self.add_section(NewSection(name, SHT_PROGBITS, 0, 0, len(data), align, offset=offset,
                                    data=bytes(data)))
        return offset

    def add_segment(self, flags, size):
        """The added PT_LOAD: after every byte of the file and every address
        (``.bss`` included), page-aligned, so offset and address are congruent."""
        content_end = self._content_end()
        offset = page_end(content_end)
        vaddr = page_end(max(p.vaddr + p.memsz for p in self.phdrs if p.type == PT_LOAD))
        phdr = Phdr(PT_LOAD, flags, offset, vaddr, vaddr, size, size, PAGE)
        last = max(i for i, p in enumerate(self.phdrs) if p.type == PT_LOAD)
        self.phdrs.insert(last + 1, phdr)
        self.added = (phdr, bytearray(size))
        return phdr

    def _content_end(self):
        """End of the bytes that stay: segments, headers, sections other than
        the section name table (rewritten at the end)."""
        image = self.image
        added = self.added[0] if self.added else None
        end = image.phoff + len(self.phdrs) * PHDR.size
        for p in self.phdrs:
            if p.type == PT_LOAD and p is not added:
                end = max(end, p.offset + p.filesz)
        for i, s in enumerate(self.shdrs):
            if i != image.shstrndx and s.type != SHT_NOBITS and s.size:
                end = max(end, s.offset + s.size)
        return end

    def write(self):
        """The output file's bytes."""
        image = self.image
        out = self.data[:self._content_end()]
        if self.added is not None:
            phdr, body = self.added
            out.extend(bytes(phdr.offset - len(out)))
            out.extend(body)
        for sec in self.new_sections:
            if sec.data is not None:
                out.extend(bytes(sec.offset - len(out)))
                out.extend(sec.data)
        for p in self.phdrs:
            if p.type == PT_PHDR:
                p.filesz = p.memsz = len(self.phdrs) * PHDR.size
        table = b"".join(p.pack() for p in self.phdrs)
        out[image.phoff:image.phoff + len(table)] = table
        shdrs = self._section_headers(out)
        shoff = align_up(len(out), 8)
        out.extend(bytes(shoff - len(out)))
        out.extend(b"".join(s.pack() for s in shdrs))
        header = list(EHDR.unpack_from(out))
        header[6], header[10], header[12] = shoff if shdrs else 0, len(self.phdrs), len(shdrs)
        out[:EHDR.size] = EHDR.pack(*header)
        return bytes(out)

    def _section_headers(self, out):
        """The section headers, with a new section name table appended to ``out``."""
        image = self.image
        if not self.shdrs:
            return []
        old = image.shdrs[image.shstrndx]
        names = bytearray(image.bytes_at(old.offset, old.size))
        shdrs = [Shdr(**vars(s)) for s in self.shdrs]
        for sec in self.new_sections:
            name_at = len(names)
            names.extend(sec.name.encode() + b"\0")
            offset = self._section_offset(sec)
            shdrs.append(Shdr(name_at, sec.type, sec.flags, sec.addr, offset, sec.size,
                              sec.link, sec.info, sec.align, sec.entsize))
        shdrs[image.shstrndx].offset = len(out)
        shdrs[image.shstrndx].size = len(names)
        out.extend(names)
        return shdrs

    def _section_offset(self, sec):
        if sec.offset is not None:
            return sec.offset
        for p in self.phdrs:
            if p.type == PT_LOAD and p.vaddr <= sec.addr <= p.vaddr + p.memsz:
                return sec.addr - p.vaddr + p.offset
        raise ValueError(f"section {sec.name} at {sec.addr:#x} is in no segment")
