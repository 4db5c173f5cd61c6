"""The fix-up routine's data in a rewritten object (:class:`FixupData`).

The routine (:mod:`.x86_64.fixup`, and its i386 and AArch64 versions: the
same data in words of the object's class) reads, from one block of read-only
bytes: a header, one entry per list of words to correct (the object's own
words, and each library's it has words settled into, with the word that
tells how far that library moved), the lists themselves RELR-encoded, and
in a program the preload check's data (:mod:`.preload`): the hashes
of the objects it expects, the messages it may print, and where the
sorted table of pre-bound names lies.
"""

import hashlib
import os
import struct

from ..elfimage import PT_INTERP, gnu_hash
from .fixup import DataLayout
from .output import PAGE, align_up
from .preload import PROC_EXE, PreloadLayout, bloom_positions

#: the alignment of the strings and tables (8 in either class: it aligns a word of both)
WORD = 8
PRELOAD_SUFFIX = (" would interpose pre-bound symbols "
                  "(set ELFVECTOR_PRELOAD=ignore to run anyway)\n")
PRELOAD_UNREADABLE = (": cannot read the program's pre-bound names to check it "
                      "(set ELFVECTOR_PRELOAD=ignore to run anyway)\n")
PRELOAD_IGNORE = b"ELFVECTOR_PRELOAD=ignore\0"
ENVIRON_PATH = b"/proc/self/environ\0"


class FixupData:
    """The fix-up routine's read-only data (its header and entries in words
    of the object's class: :class:`.fixup.DataLayout`), the RELR lists, and
    in a program the preload check's names and strings.  Its sorted table
    of pre-bound names goes apart (:class:`.layout.PreboundPlace`): loaded
    when it fits in bytes already mapped, else in a section of the file that
    is not loaded, with a Bloom filter of them in loaded bytes when there is
    room for one."""

    def __init__(self, rw, own, deps):
        self.rw = rw
        self.arch = arch = rw.arch
        self.word = arch.word
        entries = []
        if own:
            entries.append((rw.own_word, rw.own_expected, arch.relr_encode(own)))
        for word, (check, _) in zip(rw.check_words, rw.checks):
            entries.append((word, check.expected, arch.relr_encode(deps.get(check.obj, []))))
        self.entries = entries
        data = DataLayout(self.word)
        self.lists_at = data.header_size + data.entry_size * len(entries)
        self.size = self.lists_at + sum(len(relr) for _, _, relr in entries)
        self.preload = self.prebound = None
        if rw.preload:
            self._preload_data()

    def _preload_data(self):
        obj, preload, word = self.rw.obj, self.arch.preload, self.word
        names = {os.path.basename(n).encode("utf-8", "surrogateescape")
                 for n in obj.expected_objects}
        names |= {preload.VDSO_NAME.encode()} | self._interp_names()
        self.prebound_names = {n if isinstance(n, bytes) else n.encode("utf-8", "surrogateescape")
                               for n in obj.prebound_names}
        self.prebound = _hash_table(self.prebound_names, low_bit=True)
        self.header = b"ELFVPRE1" + hashlib.sha256(self.prebound).digest()[:8]
        program = os.path.basename(obj.output).encode("utf-8", "surrogateescape")
        self.strings = [_hash_table(names), self.header,
                        b"elfvector: " + program + b": LD_PRELOAD'ed ",
                        PRELOAD_SUFFIX.encode(), PRELOAD_UNREADABLE.encode(),
                        ENVIRON_PATH, PROC_EXE, PRELOAD_IGNORE]
        # words before the strings: DT_DEBUG's address, the file table's
        # mapping (3), the loaded table, the filter (address; u32 mask and shift)
        fields = align_up(self.size, WORD)
        offsets, cursor = [], fields + 6 * word + 8
        for data in self.strings:
            offsets.append(cursor)
            cursor += align_up(len(data), WORD)
        self.size = cursor
        self.preload = PreloadLayout(
            debug=fields, names=offsets[0], names_count=len(self.strings[0]) // 4,
            table=fields + word, loaded=fields + 4 * word, filter=fields + 5 * word,
            header=offsets[1], prebound_count=len(self.prebound) // 4,
            prefix=offsets[2], prefix_len=len(self.strings[2]),
            suffix=offsets[3], suffix_len=len(self.strings[3]),
            unreadable=offsets[4], unreadable_len=len(self.strings[4]),
            environ=offsets[5], exe=offsets[6], pattern=offsets[7],
            pattern_len=len(PRELOAD_IGNORE))

    def _interp_names(self):
        """Basenames ld.so's own link_map may carry: the old and the new PT_INTERP."""
        image, names = self.rw.image, set()
        for p in image.phdrs:
            if p.type == PT_INTERP:
                names.add(os.path.basename(image.bytes_at(p.offset, p.filesz).rstrip(b"\0")))
        if self.rw.obj.interp is not None:
            names.add(os.path.basename(self.rw.obj.interp).encode("utf-8", "surrogateescape"))
        return names

    def file_table(self):
        """The pre-bound table as it lies in the file: the header the routine
        checks after mapping it (it may have mapped another file), then the
        sorted hashes."""
        return self.header + self.prebound

    def bloom(self, bits):
        """A ``2**bits``-bit Bloom filter of the pre-bound names (two bits
        each, :func:`.preload.bloom_positions`)."""
        words = [0] * max((1 << bits) // 64, 1)
        for name in self.prebound_names:
            for bit in bloom_positions(gnu_hash(name), bits):
                words[bit // 64] |= 1 << (bit % 64)
        return struct.pack(f"<{len(words)}Q", *words)

    def content(self, at, place=None):
        """The bytes at link-time address ``at``; ``place`` says where a
        program's pre-bound names went."""
        rw, pack = self.rw, self._pack
        out = bytearray(pack(at, rw.result_word or 0, at + self.lists_at))
        lists, cursor = bytearray(), at + self.lists_at
        for word, expected, relr in self.entries:
            out += pack(word, expected, cursor, cursor + len(relr))
            lists += relr
            cursor += len(relr)
        out += lists
        if self.preload is not None:
            out += bytes(self.preload.debug - len(out))
            out += self._preload_fields(place)
            for data in self.strings:
                out += data + bytes(align_up(len(data), WORD) - len(data))
        assert len(out) == self.size
        return bytes(out)

    def _pack(self, *words):
        return b"".join(self.arch.pack_word(w) for w in words)

    def _preload_fields(self, place):
        mapping = (0, 0, 0)
        if place.file_offset is not None:
            page = place.file_offset // PAGE * PAGE
            mapping = (page // self.arch.preload.MAP_OFFSET_UNIT,
                       place.file_offset + len(self.file_table()) - page,
                       place.file_offset - page)
        bits = place.filter_bits
        return (self._pack(self.rw.debug_word(), *mapping, place.loaded, place.filter_at)
                + struct.pack("<II", (1 << bits) - 1 if bits else 0, 32 - bits if bits else 0))


def _hash_table(names, low_bit=False):
    hashes = sorted({gnu_hash(n) | (1 if low_bit else 0) for n in names})
    return struct.pack(f"<{len(hashes)}I", *hashes)
