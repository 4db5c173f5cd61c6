"""The staged output file of a closure rewrite, written once.

:class:`Output` holds the object's bytes, program headers and section
headers as the rewrite edits them (at new link-time addresses) and is the
one place that turns them into the file (:meth:`Output.write`): program
headers, sections moved or added, the one PT_LOAD that may be added, the
section name table and the section headers, at the end.  Sections that are
not loaded go after every other byte.
"""

from dataclasses import dataclass, field

from ..elfimage import PT_LOAD, PT_PHDR, SHF_ALLOC, SHT_NOBITS, SHT_PROGBITS, Phdr, Shdr

PAGE = 0x1000
#: sections whose size valgrind asserts equal in the file and in its separate
#: debug file (coregrind/m_debuginfo/readelf.c, FIND(text, rx) ...)
SIZE_CHECKED = (".text", ".data", ".sdata", ".rodata", ".bss", ".sbss")


def align_up(value, align):
    return (value + align - 1) // align * align if align > 1 else value


def page_end(address):
    return align_up(address, PAGE)



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
        end = image.phoff + len(self.phdrs) * image.layout.phdr.size
        for p in self.phdrs:
            if p.type == PT_LOAD and p is not added:
                end = max(end, p.offset + p.filesz)
        for i, s in enumerate(self.shdrs):
            if i != image.shstrndx and s.type != SHT_NOBITS and s.size and not (
                    added is not None and s.offset >= added.offset):
                end = max(end, s.offset + s.size)   # (a table moved into the added
        return end                                  # PT_LOAD is written with it)

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
        layout = image.layout
        for p in self.phdrs:
            if p.type == PT_PHDR:
                p.filesz = p.memsz = len(self.phdrs) * layout.phdr.size
        table = b"".join(p.pack(layout) for p in self.phdrs)
        out[image.phoff:image.phoff + len(table)] = table
        shdrs = self._section_headers(out)
        shoff = align_up(len(out), 8)
        out.extend(bytes(shoff - len(out)))
        out.extend(b"".join(s.pack(layout) for s in shdrs))
        header = list(layout.ehdr.unpack_from(out))
        header[6], header[10], header[12] = shoff if shdrs else 0, len(self.phdrs), len(shdrs)
        out[:layout.ehdr.size] = layout.ehdr.pack(*header)
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
