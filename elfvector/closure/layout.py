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
* **dead PLT bytes** (see each architecture's ``plt`` module, :mod:`.x86_64.plt`);
* only when all that is not enough, **one added PT_LOAD** after the others.

The module, from the bottom up: the room (:class:`Space`, the table
:class:`Window`); and :class:`Placement`, which decides where the
code, the tables, the fix-up's data and a program's pre-bound names go
and writes them into the staged file (:class:`.output.Output`).  Both take
the staged rewrite (``rw``, a :class:`.rewrite._Rewrite`) for what the
object needs.
"""

from dataclasses import dataclass

from ..elfimage import (PF_R, PF_W, PF_X, PT_LOAD, SHF_ALLOC, SHF_EXECINSTR,
                        SHT_NOBITS, SHT_PROGBITS)
from ..errors import UnsupportedElfError
from .fixup import NoRoutineRoom
from .model import IrelativeForeign
from .output import PAGE, NewSection, align_up, page_end

#: the alignment of the data the rewrite adds (a word on either class)
WORD = 8
SHT_NOTE = 7
FIXUP_SECTION, DATA_SECTION = ".elfvector.text", ".elfvector.data"
PREBOUND_SECTION, FILTER_SECTION = ".elfvector.prebound", ".elfvector.filter"

#: the tables the window may lay out again (besides every SHT_NOTE section)
WINDOW_TABLES = (".interp", ".gnu.hash", ".hash", ".dynsym", ".dynstr", ".gnu.version",
                 ".gnu.version_d", ".gnu.version_r", ".rela.dyn", ".rela.plt", ".rel.dyn",
                 ".rel.plt", ".relr.dyn")


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
    anyway: up to its last page end (of its own alignment: AArch64's
    segments are aligned to 64 KiB pages, the padding up to there is in the
    file, and the same mmap call maps it), and not into the next segment's
    file bytes or addresses."""
    end = align_up(seg.vaddr + seg.filesz, max(seg.align, PAGE))
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
    phdrs_end = first.vaddr + image.phoff + image.phnum * image.layout.phdr.size
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


# -- placing everything -----------------------------------------------------------

class NoRoom(Exception):
    """What does not fit without an added PT_LOAD."""


@dataclass
class PreboundPlace:
    """Where a program's pre-bound names went (:meth:`Placement._place_prebound`)."""

    loaded: int = 0              #: link-time address of the loaded table; 0: in the file
    file_offset: int = None      #: the file table's offset (header first), when not loaded
    filter_at: int = 0           #: link-time address of the Bloom filter; 0: none
    filter_bits: int = 0         #: log2 of the filter's size in bits


class Placement:
    """Where everything goes: in the existing segments, or (``added``) with
    one added PT_LOAD for what does not fit there.  Raises :class:`NoRoom`
    when it does not fit."""

    def __init__(self, rw, out, added):
        self.rw, self.out, self.added = rw, out, added
        image = rw.image
        self.window = table_window(image)
        self.moves = {}                     # section index -> (new address, size)
        self.new_tables = {}                # name -> new address (no section header yet)
        self._contents(image)
        self._spaces(image)
        self._place_code()
        self._place_tables(image)
        self._place_blob()
        self._place_prebound()

    def _contents(self, image):
        rw, obj = self.rw, self.rw.obj
        self.contents = rw.symbols.tables()
        self.contents[rw.arch.dynamic_section] = bytes(rw.rela_count * rw.arch.entry_size)
        self.contents[rw.arch.plt_section] = rw.lazy_table()
        if rw.settles_relr:
            self.contents[".relr.dyn"] = b""
        if obj.is_program and obj.interp is not None:
            self.contents[".interp"] = obj.interp.encode("utf-8", "surrogateescape") + b"\0"
        self.rela_size = rw.rela_count * rw.arch.entry_size
        verneed = rw.verneed_table()
        if verneed is not None:
            self.contents[".gnu.version_r"] = verneed

    def _spaces(self, image):
        rw, d = self.rw, self.rw.delta
        first = image.phdrs[self.window.segment]
        grow = image.layout.phdr.size if self.added else 0
        if grow and not self.window.sections:
            raise NoRoom("no room to grow the program header table")
        self.table_space = Space("first PT_LOAD", self.window.start + d + grow,
                                 self.window.end + d, PF_R)
        self.code_spaces, self.data_spaces = [], []
        for p in rw.loads:
            if (p is first and not p.flags & PF_X) or p.flags & PF_W:
                continue
            start, end = p.vaddr + p.filesz, tail_end(image.phdrs, p)
            if end <= start or not file_bytes_free(image, p.offset + p.filesz,
                                                   p.offset + end - p.vaddr):
                continue
            executable = bool(p.flags & PF_X)
            space = Space("executable segment's last page" if executable
                          else "read-only segment's last page", start + d, end + d, p.flags)
            (self.code_spaces if executable else self.data_spaces).append(space)
        self.added_space = None
        if self.added:
            vaddr = page_end(max(p.vaddr + p.memsz for p in self.out.phdrs
                                 if p.type == PT_LOAD))
            self.added_space = Space("added PT_LOAD", vaddr, 1 << 46, PF_R)

    def _take(self, spaces, size, align, what):
        for space in spaces:
            at = space.take(size, align)
            if at is not None:
                return at, space
        if self.added_space is not None:
            return self.added_space.take(size, align), self.added_space
        raise NoRoom(f"no room for {what} ({size} bytes)")

    # -- code ------------------------------------------------------------------------
    def _place_code(self):
        """The IFUNC stubs in their own lazy tails, then the fix-up routine:
        in one free region if one holds it, else threaded over the dead PLT
        bytes, else in the added PT_LOAD."""
        rw = self.rw
        plt = rw.arch.plt
        self.stubs, tails = {}, self._dead_plt_regions()
        for r in rw.relocs:
            if isinstance(r.decision, IrelativeForeign) and r.rela.offset in rw.plt:
                tail = rw.plt[r.rela.offset].tail
                if tail is not None and tail[1] >= plt.FOREIGN_STUB_SIZE:
                    self.stubs[r.rela.offset] = tail[0] + rw.delta
                    tails = [t for t in tails if t[0] != tail[0] + rw.delta]
        for r in rw.relocs:
            if isinstance(r.decision, IrelativeForeign) and r.rela.offset not in self.stubs:
                at, tails = self._stub_room(tails)
                self.stubs[r.rela.offset] = at
        self.routine, self.code_where = None, "none"
        if rw.needs_fixup:
            self.routine = rw.arch.routine(rw.arch.fixup.fixup_lines(rw.blob.preload))
            self._place_routine(tails)

    def _dead_plt_regions(self):
        """Dead PLT bytes, in address order: the whole IBT .plt, else PLT0
        and every lazy tail, less what the slots kept lazy still run: their
        lazy code and PLT0."""
        rw, d = self.rw, self.rw.delta
        plt = rw.arch.plt
        dead = plt.dead_plt(rw.sections)
        if dead is None:
            return []
        regions = [(dead[0], dead[0] + dead[1])]
        if ".plt.sec" not in rw.sections:
            regions += sorted((e.tail[0], e.tail[0] + e.tail[1])
                              for e in rw.plt.values() if e.tail is not None)
        if rw.lazy:
            live = [plt.plt0(rw.sections)] + [plt.lazy_bytes(rw.sections, target)
                                                 for _, _, target in rw.lazy]
            regions = _without(regions, live)
        return [(start + d, end + d) for start, end in regions]

    def _stub_room(self, tails):
        """Room for an IFUNC stub: from a dead PLT region, else like code."""
        plt = self.rw.arch.plt
        size, align = plt.FOREIGN_STUB_SIZE, plt.CODE_ALIGN
        for k, (start, end) in enumerate(tails):
            at = align_up(start, align)
            if end - at >= size:
                rest = [(at + size, end)]
                return at, tails[:k] + [r for r in rest if r[1] > r[0]] + tails[k + 1:]
        at, _ = self._take(self.code_spaces, size, align, "an IFUNC stub")
        return at, tails

    def _place_routine(self, tails):
        routine, spaces = self.routine, self.code_spaces
        ibt = [t for t in tails if ".plt.sec" in self.rw.sections]
        for space, region in [(s, (s.cursor, s.end)) for s in spaces] + [(None, t) for t in ibt]:
            try:
                used = routine.layout([region])
            except NoRoutineRoom:
                continue
            return self._routine_placed(space, [region], used, space.name if space
                                        else "dead IBT .plt")
        regions = [(s.cursor, s.end) for s in spaces] + tails
        try:
            used = routine.layout(regions)
            return self._routine_placed(None, regions, used, "threaded through dead PLT bytes")
        except NoRoutineRoom:
            pass
        if self.added_space is None:
            raise NoRoom("no room for the fix-up routine")
        self.added_space.flags = PF_R | PF_X
        region = (self.added_space.cursor, self.added_space.end)
        used = routine.layout([region])
        self.added_space.cursor = used[0]
        self.code_where = "added PT_LOAD"

    def _routine_placed(self, space, regions, used, where):
        for s in self.code_spaces:
            for (start, _), end in zip(regions, used):
                if end is not None and start == s.cursor:
                    s.cursor = end
        self.code_where = where

    # -- tables and data -------------------------------------------------------------
    def _place_tables(self, image):
        """The window's sections in their order, then the changed tables
        that lie elsewhere (their old bytes stay, unused)."""
        for i in self.window.sections:
            name = image.section_names[i]
            if name not in self.contents:
                self.contents[name] = image.bytes_at(image.shdrs[i].offset, image.shdrs[i].size)
            at, _ = self._take([self.table_space], len(self.contents[name]),
                               max(image.shdrs[i].addralign, 1), name)
            self.moves[i] = (at, len(self.contents[name]))
        for name, data in self.contents.items():
            index, shdr = image.section(name)
            if index in self.moves:
                continue
            if index is not None and image.bytes_at(shdr.offset, shdr.size) == data:
                continue
            if index is None and not data:
                continue
            at, _ = self._take([self.table_space] + self.data_spaces, len(data), WORD, name)
            if index is None:
                self.new_tables[name] = at
            else:
                self.moves[index] = (at, len(data))
        self.addresses = dict(self.new_tables)
        self.addresses.update({image.section_names[i]: at for i, (at, _) in self.moves.items()})

    def _place_blob(self):
        """The fix-up's data: right after its code in the executable page when
        it fits (one section covers both), else with the tables."""
        self.blob_at = self.blob_space = None
        if self.rw.needs_fixup:
            spaces = self.code_spaces + [self.table_space] + self.data_spaces
            self.blob_at, self.blob_space = self._take(spaces, self.rw.blob.size, WORD,
                                                       "the fix-up's lists")

    def _place_prebound(self):
        """A program's pre-bound names, read only when an unexpected object
        is loaded: the sorted table where it fits in bytes already mapped
        (right after the fix-up's data when it can); else the table in the
        file and the largest Bloom filter that fits (at least 4 bits a name,
        two probed: false positives about 15% at 4 bits, 1.4% at 16), which
        spares most preloads the system calls that map the table."""
        self.prebound, self.prebound_piece = PreboundPlace(), None
        blob = self.rw.blob
        if blob.prebound is None:
            return
        spaces = self._prebound_spaces()
        placed = self._take_if_room(spaces, len(blob.prebound))
        if placed is not None:
            self.prebound.loaded = placed[0]
            self.prebound_piece = (placed[0], blob.prebound, PREBOUND_SECTION, placed[1])
            self.rw.report.prebound = f"loaded, {placed[1].name}"
            return
        room = max(s.end - align_up(s.cursor, WORD) for s in spaces)
        bits = min((max(room, 1) * 8).bit_length() - 1, 31)
        if room < WORD or (1 << bits) < 4 * len(blob.prebound_names):
            self.rw.report.prebound = "in the file, no room for a filter"
            return
        data = blob.bloom(bits)
        at, space = self._take_if_room(spaces, len(data))
        self.prebound.filter_at, self.prebound.filter_bits = at, bits
        self.prebound_piece = (at, data, FILTER_SECTION, space)
        self.rw.report.prebound = f"in the file, a {1 << bits}-bit filter in {space.name}"

    def _prebound_spaces(self):
        """Where the pre-bound table or filter may go, the fix-up's data's space first."""
        spaces = [self.blob_space, self.table_space] + self.data_spaces + self.code_spaces
        if self.added_space is not None:
            spaces.append(self.added_space)
        unique = []
        for space in spaces:
            if space is not None and all(space is not seen for seen in unique):
                unique.append(space)
        return unique

    @staticmethod
    def _take_if_room(spaces, size):
        for space in spaces:
            at = space.take(size, WORD)
            if at is not None:
                return at, space
        return None

    # -- writing ---------------------------------------------------------------------------
    def apply(self):
        rw, out, image = self.rw, self.out, self.rw.image
        self._grow_segments(out.phdrs[self.window.segment])
        self._clear_window()
        fixup_at = self.routine.entry if self.routine is not None else None
        rela, self.relacount = rw.new_relocations(fixup_at, self.stubs)
        self.contents[rw.arch.dynamic_section] = rela
        rw.follow_sections(out, {i: at - out.shdrs[i].addr for i, (at, _) in self.moves.items()})
        self.contents[".dynsym"] = rw.symbols.packed()
        for i, (at, size) in self.moves.items():
            out.put(at, self.contents[image.section_names[i]])
            shdr = out.shdrs[i]
            shdr.addr, shdr.size, shdr.offset = at, size, out.offset_of(at, 0)
        for name, at in self.new_tables.items():
            out.put(at, self.contents[name])
            if name == rw.arch.dynamic_section:
                dynsym, _ = image.section(".dynsym")
                out.add_section(NewSection(name, rw.arch.section_type, SHF_ALLOC, at, len(rela),
                                           rw.arch.word, rw.arch.entry_size, dynsym or 0))
        if self.routine is not None:
            self._write_fixup()
        for word, at in self.stubs.items():
            out.put(at, rw.foreign_stub(at, word))
        spaces = {self.table_space.name} | ({self.blob_space.name} if self.blob_space else set())
        rw.report.tables = ", ".join(sorted(spaces))

    def _write_fixup(self):
        rw, out = self.rw, self.out
        if rw.blob.prebound is not None and not self.prebound.loaded:
            self.prebound.file_offset = out.add_file_section(PREBOUND_SECTION,
                                                             rw.blob.file_table(), WORD)
        blob = rw.blob.content(self.blob_at, self.prebound)
        out.put(self.blob_at, blob)
        pieces = self.routine.encode(self.blob_at)
        for at, code in pieces:
            out.put(at, code)
        executable = self.code_spaces + ([self.added_space] if self.added_space else [])
        for space in executable:
            if space.used:
                self._cover(space.vaddr, space.cursor, SHF_ALLOC | SHF_EXECINSTR)
        data = [(self.blob_at, blob, DATA_SECTION, self.blob_space)]
        if self.prebound_piece is not None:
            out.put(*self.prebound_piece[:2])
            data.append(self.prebound_piece)
        self._cover_data([d for d in data if d[3] not in executable])
        rw.report.code = f"{self.code_where} at {self.routine.entry:#x}"

    def _cover_data(self, pieces):
        """Sections for the data ``pieces`` [(address, bytes, section name,
        space)] outside executable bytes: one for pieces that follow each other."""
        runs = []
        for at, data, name, _ in sorted(pieces, key=lambda piece: piece[0]):
            if runs and runs[-1][1] == at:
                runs[-1][1] = at + len(data)
            else:
                runs.append([at, at + len(data), name])
        for start, end, name in runs:
            self._cover(start, end, SHF_ALLOC, name)

    def _cover(self, start, end, flags, name=FIXUP_SECTION):
        """A section for [start, end): the one that ends where the bytes start
        grows over them (``.fini`` at the end of the executable segment),
        else a new one.  gdb matches every allocated section against the
        separate debug file by name and warns about each it lacks."""
        if not self.out.extend_section_ending_at(start, end, SHT_PROGBITS, flags):
            self.out.add_section(NewSection(name, SHT_PROGBITS, flags, start, end - start,
                                            16 if flags & SHF_EXECINSTR else WORD))

    def _grow_segments(self, first):
        out = self.out
        out.grow(first, self.table_space.cursor)
        for space in self.code_spaces + self.data_spaces:
            if space.used:
                seg = next(p for p in out.phdrs if p.type == PT_LOAD
                           and p.vaddr <= space.vaddr <= p.vaddr + p.filesz)
                out.grow(seg, space.cursor)
        if self.added_space is not None and self.added_space.used:
            phdr = out.add_segment(self.added_space.flags, self.added_space.used)
            if phdr.vaddr != self.added_space.vaddr:
                raise AssertionError("the added PT_LOAD is not where it was planned")

    def _clear_window(self):
        """Zero the old window: stale tables would only confuse readers."""
        d = self.rw.delta
        start = self.window.start + d + (self.rw.image.layout.phdr.size if self.added else 0)
        end = self.window.original_end + d
        if end > start:
            self.out.put(start, bytes(end - start))


def _without(regions, taken):
    """``regions`` [(start, end)] less every range of ``taken``."""
    for cut_start, cut_end in taken:
        left = []
        for start, end in regions:
            if end <= cut_start or cut_end <= start:
                left.append((start, end))
                continue
            left += [r for r in ((start, cut_start), (cut_end, end)) if r[1] > r[0]]
        regions = left
    return regions
