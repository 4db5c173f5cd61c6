"""relvec: settle a fixed-base library's relocations, and stay relocatable.

vectool links a shared library at a fixed base (``-Wl,-Ttext-segment=``),
so its ``p_vaddr`` start there.  The base is only a hint: ld.so maps an
ET_DYN at its ``p_vaddr`` without ``MAP_FIXED`` (glibc 2.36 does so for
every program; older ones, through ``GLRO(dl_use_load_bias)``, not under a
PIE program started as ``ld.so ./prog``), and the kernel picks another
address when that range is taken, e.g. by another library given the same
base.  glibc applies every ``R_X86_64_RELATIVE`` even when the library
lands at its link address (``l_addr == 0``), so settling them pays only if
they *leave* the file.

relvec, on such a library:

* writes the settled value into the word of every ``R_X86_64_RELATIVE`` of
  ``.rela.dyn`` (its addend), and of every ``R_X86_64_GLOB_DAT`` /
  ``R_X86_64_64`` against a **function** (``STT_FUNC``; never an IFUNC,
  never data, whose address a copy relocation may move) that this library
  defines with default or protected visibility and whose name matches
  ``inclrel`` and not ``exclrel`` (``st_value + addend``): a partial
  ``-Bsymbolic``.  Such a reference no longer sees an interposer, nor the
  canonical address a program gives ``f`` (a non-PIE program's PLT entry,
  an impvec'd program's exported slot), so ``&f`` taken in such a program
  differs from the library's own: exclude functions whose address
  programs compare;
* removes those relocations: ``.rela.dyn`` is rewritten in place, shorter
  (the kept entries, RELATIVE ones first, then the added IRELATIVE, then
  the kept IRELATIVEs; the freed tail is zeroed and left out of the
  section), with ``DT_RELASZ`` and ``DT_RELACOUNT`` updated;
* keeps the settled words' addresses in a RELR-encoded table (the ELF
  gABI's ``DT_RELR`` format: an even entry is the address of a word, an odd
  one a bitmap of the 63 words that follow) in ``.elfvector.relvec``,
  and adds a small routine (``.elfvector.relvec.text``) that adds the load
  bias to every listed word, and returns at once when the bias is 0;
* runs the routine through one ``R_X86_64_IRELATIVE`` in ``.rela.dyn``
  whose word is the first settled word: the routine returns that word's
  fixed-up value, so no writable page of its own is needed.  glibc's
  ``elf_dynamic_do_Rela`` applies a table's IRELATIVE entries after all
  its other entries, in order (ours comes first), then ``.rela.plt``, and
  only then ``_dl_protect_relro`` and the constructors: the RELRO words
  are still writable, and no code sees an unfixed word.

Not touched: ``.rela.plt`` (ld.so's lazy path accepts only JUMP_SLOT,
IRELATIVE and TLSDESC there, so nothing can be added to or taken from it
in the same way), ``DT_RELR`` relocations, words in read-only segments
(text relocations) or past a segment's file bytes, unaligned words, and
words that a kept relocation also writes.

Layout (:class:`~elfvector.elfwrite.Appender`): two PT_LOADs (R, RX)
follow the old ones, so the library's address span grows (see
:attr:`RelvecReport.span_after`); the program header table grows in place,
and the tables right after it (``.gnu.hash``, ``.dynsym``, ... whatever is
in the way) move, unchanged, into the new read-only segment.  The two
mappings cost something at load: relvec pays off for libraries with many
relative relocations (C++ vtables, pointer tables), not for small ones.
"""

import struct
from dataclasses import dataclass, field

from .arch import x86_64
from .elfimage import (DF_1_PIE, DT_FLAGS_1, DT_GNU_HASH, DT_HASH, DT_JMPREL, DT_RELA,
                       DT_RELACOUNT, DT_RELAENT, DT_RELASZ, DT_STRTAB, DT_SYMTAB, DT_VERDEF,
                       DT_VERNEED, DT_VERSYM, ET_DYN, PF_R, PF_W, PF_X, PHDR, PT_LOAD,
                       R_X86_64_64, R_X86_64_GLOB_DAT, R_X86_64_IRELATIVE, R_X86_64_RELATIVE,
                       RELA, SHDR, SHF_ALLOC, SHN_LORESERVE, SHN_UNDEF, STB_GLOBAL, STB_WEAK,
                       STT_FUNC, ElfImage, Rela, rela_info)
from .elfwrite import Appender, align_up
from .errors import ElfvectorError, UnsupportedElfError

TABLE_SECTION = ".elfvector.relvec"
CODE_SECTION = ".elfvector.relvec.text"

STV_MASK, STV_DEFAULT, STV_PROTECTED = 3, 0, 3
WORD = 8
BITS = 63                   # words one RELR bitmap entry covers
MASK64 = (1 << 64) - 1
RIP_REACH = (1 << 31) - (1 << 16)   # a %rip-relative operand, less the routine's own size

#: tables that may sit between the program headers and the code, and may
#: move to the new read-only segment to make room for two more headers
MOVABLE = {".gnu.hash": DT_GNU_HASH, ".hash": DT_HASH, ".dynsym": DT_SYMTAB,
           ".dynstr": DT_STRTAB, ".gnu.version": DT_VERSYM, ".gnu.version_r": DT_VERNEED,
           ".gnu.version_d": DT_VERDEF, ".rela.plt": DT_JMPREL}


class AlreadyRelvecError(ElfvectorError):
    """The library already carries relvec's table (``.elfvector.relvec``)."""


@dataclass
class RelvecReport:
    """What relvec did to one library."""

    path: str
    changed: bool = False
    reason: str = ""
    base: int = 0                     #: lowest PT_LOAD p_vaddr (the link-time base)
    relative_settled: int = 0
    symbol_settled: dict = field(default_factory=dict)     #: name -> relocations settled
    kept: int = 0                     #: original .rela.dyn entries left in place
    kept_reasons: list = field(default_factory=list)       #: (what, why) for candidates kept
    rela_before: int = 0              #: .rela.dyn entries before
    rela_after: int = 0               #: .rela.dyn entries after (the IRELATIVE included)
    relacount_before: int = 0
    relacount_after: int = 0
    table_bytes: int = 0              #: the RELR table
    code_bytes: int = 0               #: the fixup routine
    bytes_before: int = 0             #: file sizes
    bytes_after: int = 0
    span_before: int = 0              #: address space the PT_LOADs cover, from the base
    span_after: int = 0               #: (grows: the new segments follow the old ones)

    @property
    def symbols_settled(self):
        return sum(self.symbol_settled.values())

    def summary(self):
        if not self.changed:
            return f"{self.path}: unchanged: {self.reason}"
        return (f"{self.path}: settled {self.relative_settled} relative and "
                f"{self.symbols_settled} symbol relocations "
                f"({len(self.symbol_settled)} functions), kept {self.kept}; "
                f".rela.dyn {self.rela_before} -> {self.rela_after} entries, "
                f"table {self.table_bytes} bytes, file {self.bytes_before} -> "
                f"{self.bytes_after} bytes, span {self.span_before:#x} -> "
                f"{self.span_after:#x}")

    __str__ = summary


def relvec(data, path, inclrel, exclrel):
    """Return (new bytes, :class:`RelvecReport`) for the shared library ``data``.

    ``inclrel``/``exclrel`` are :class:`~elfvector.patterns.PatternList`
    (``None`` or an empty list: no match), searched in function names.
    A library without any ``R_X86_64_RELATIVE`` in ``.rela.dyn`` comes back
    unchanged (the same object), with the report saying why.
    """
    image = ElfImage(data, path, "relvec")
    if image.type != ET_DYN or image.dynamic is None or (image.dyn(DT_FLAGS_1) or 0) & DF_1_PIE:
        raise UnsupportedElfError("not a shared library", path)
    if image.section(TABLE_SECTION)[0] is not None:
        raise AlreadyRelvecError(f"already rewritten by relvec (it has {TABLE_SECTION})", path)
    loads = [p for p in image.phdrs if p.type == PT_LOAD]
    report = RelvecReport(path, base=min(p.vaddr for p in loads) if loads else 0,
                          bytes_before=len(data), bytes_after=len(data))
    report.span_before = report.span_after = _span(image)
    relas = image.relas(DT_RELA, DT_RELASZ)
    report.rela_before = report.rela_after = report.kept = len(relas)
    report.relacount_before = report.relacount_after = image.dyn(DT_RELACOUNT) or 0
    if not any(r.type == R_X86_64_RELATIVE for r in relas):
        report.reason = "no R_X86_64_RELATIVE relocation in .rela.dyn"
        return data, report
    rela_index, rela_shdr = _rela_dyn_section(image)
    settled = _settle(image, relas, inclrel, exclrel, report)
    if not settled:
        report.reason = "no relocation can be settled"
        return data, report
    kept = [r for k, r in enumerate(relas) if k not in settled]
    out = _rewrite(image, rela_index, rela_shdr, relas, settled, kept, report)
    report.changed = True
    report.kept = len(kept)
    report.rela_after = len(kept) + 1
    report.relacount_after = sum(r.type == R_X86_64_RELATIVE for r in kept)
    report.bytes_after = len(out)
    report.span_after = _span(ElfImage(out, path))
    return out, report


def _span(image):
    loads = [p for p in image.phdrs if p.type == PT_LOAD]
    if not loads:
        return 0
    return max(p.vaddr + p.memsz for p in loads) - min(p.vaddr for p in loads)


def _rela_dyn_section(image):
    if image.dyn(DT_RELAENT) not in (None, RELA.size):
        raise UnsupportedElfError("DT_RELAENT is not 24", image.path)
    if not image.shdrs:
        raise UnsupportedElfError("no section headers", image.path)
    index, shdr = image.section(".rela.dyn")
    if shdr is None or shdr.addr != image.dyn(DT_RELA) or shdr.size != image.dyn(DT_RELASZ):
        raise UnsupportedElfError("DT_RELA/DT_RELASZ do not describe the .rela.dyn section",
                                  image.path)
    return index, shdr


# -- which relocations go -----------------------------------------------------

def _settle(image, relas, inclrel, exclrel, report):
    """{index in .rela.dyn: settled 64-bit value} for the relocations that go."""
    writable = [(p.vaddr, p.vaddr + p.filesz) for p in image.phdrs
                if p.type == PT_LOAD and p.flags & PF_W]
    syms = names = None
    settled = {}
    for k, r in enumerate(relas):
        if r.type == R_X86_64_RELATIVE:
            what, value = f"R_X86_64_RELATIVE at {r.offset:#x}", r.addend
        elif r.type in (R_X86_64_GLOB_DAT, R_X86_64_64) and r.sym:
            if syms is None:
                syms = image.dynsyms()
                names = {}
            if r.sym >= len(syms):
                continue
            sym = syms[r.sym]
            if not _own_function(sym):
                continue
            name = names.get(r.sym)
            if name is None:
                name = names[r.sym] = image.string(sym.name)
            what = name
            if not (inclrel and inclrel.matches(name)):
                report.kept_reasons.append((what, "not matched by inclrel"))
                continue
            if exclrel and exclrel.matches(name):
                report.kept_reasons.append((what, "excluded by exclrel"))
                continue
            if r.type == R_X86_64_GLOB_DAT and r.addend:
                report.kept_reasons.append((what, "R_X86_64_GLOB_DAT with an addend"))
                continue
            value = sym.value + r.addend
        else:
            continue
        if r.offset % WORD:
            report.kept_reasons.append((what, "unaligned word"))
        elif not any(lo <= r.offset and r.offset + WORD <= hi for lo, hi in writable):
            report.kept_reasons.append((what, "word not in a writable segment's file bytes"))
        else:
            settled[k] = value & MASK64
    _drop_shared_words(relas, settled, report)
    for k in settled:
        r = relas[k]
        if r.type == R_X86_64_RELATIVE:
            report.relative_settled += 1
        else:
            name = names[r.sym]
            report.symbol_settled[name] = report.symbol_settled.get(name, 0) + 1
    return settled


def _own_function(sym):
    return (sym.type == STT_FUNC and sym.shndx != SHN_UNDEF and sym.shndx < SHN_LORESERVE
            and sym.bind in (STB_GLOBAL, STB_WEAK)
            and sym.other & STV_MASK in (STV_DEFAULT, STV_PROTECTED))


def _drop_shared_words(relas, settled, report):
    """Keep every relocation whose word another relocation also writes."""
    kept_at = {r.offset for k, r in enumerate(relas) if k not in settled}
    seen = {}
    for k in settled:
        seen.setdefault(relas[k].offset, []).append(k)
    for offset, ks in seen.items():
        if len(ks) > 1 or any(at in kept_at for at in range(offset - WORD + 1, offset + WORD)):
            for k in ks:
                del settled[k]
                report.kept_reasons.append((f"relocation at {offset:#x}",
                                            "another relocation writes the same word"))


# -- the RELR table -----------------------------------------------------------

def relr_encode(addresses):
    """The ``DT_RELR`` encoding of a set of 8-aligned addresses."""
    addrs = sorted(set(addresses))
    if any(a % WORD for a in addrs):
        raise ValueError("RELR can only list 8-aligned words")
    out, i = [], 0
    while i < len(addrs):
        out.append(addrs[i])
        base = addrs[i] + WORD
        i += 1
        while True:
            bitmap = 0
            while i < len(addrs) and addrs[i] - base < BITS * WORD:
                bitmap |= 1 << ((addrs[i] - base) // WORD)
                i += 1
            if not bitmap:
                break
            out.append((bitmap << 1) | 1)
            base += BITS * WORD
    return out


def relr_decode(entries):
    """The addresses a ``DT_RELR`` table lists (the inverse of :func:`relr_encode`)."""
    addrs, base = [], None
    for entry in entries:
        if not entry & 1:
            addrs.append(entry)
            base = entry + WORD
            continue
        if base is None:
            raise ValueError("RELR table starts with a bitmap")
        bits = entry >> 1
        for i in range(BITS):
            if bits >> i & 1:
                addrs.append(base + i * WORD)
        base += BITS * WORD
    return addrs


# -- writing ------------------------------------------------------------------

def _rewrite(image, rela_index, rela_shdr, relas, settled, kept, report):
    new_count = len(kept) + 1
    new_size = new_count * RELA.size
    # The .rela.dyn section shrinks in place: patch its header before the
    # Appender copies the section headers.
    raw = bytearray(image.data)
    at = image.shoff + rela_index * SHDR.size
    raw[at + 32:at + 40] = struct.pack("<Q", new_size)           # sh_size
    image = ElfImage(bytes(raw), image.path)
    appender = Appender(image)
    rela_moves = _make_room(appender, image, 2)
    table = relr_encode(relas[k].offset for k in settled)
    table_bytes = struct.pack(f"<{len(table)}Q", *table)
    table_at = appender.alloc(len(table_bytes), WORD)
    appender.add_section(TABLE_SECTION, table_at, len(table_bytes), SHF_ALLOC, WORD, WORD)
    appender.put(table_at, table_bytes)
    rela_at = image.dyn(DT_RELA)
    if rela_moves:
        rela_at = appender.alloc(new_size, WORD)
        appender.move_section(".rela.dyn", rela_at, new_size)
        appender.set_dynamic(DT_RELA, rela_at)
    code_size = x86_64.RELVEC_FIXUP_SIZE
    code_at = appender.alloc(code_size, 16, PF_R | PF_X, section=CODE_SECTION)
    word = min(relas[k].offset for k in settled)
    if abs(word - code_at) > RIP_REACH:
        raise UnsupportedElfError(f"the word at {word:#x} is more than 2 GiB from the new "
                                  "segments: the fixup routine cannot reach it", image.path)
    appender.put(code_at, x86_64.relvec_fixup(code_at, table_at, table_at + len(table_bytes),
                                              word))
    fixup = Rela(word, rela_info(0, R_X86_64_IRELATIVE), code_at)
    relative = [r for r in kept if r.type == R_X86_64_RELATIVE]
    irelative = [r for r in kept if r.type == R_X86_64_IRELATIVE]
    others = [r for r in kept if r.type not in (R_X86_64_RELATIVE, R_X86_64_IRELATIVE)]
    packed = b"".join(r.pack() for r in relative + others + [fixup] + irelative)
    if rela_moves:
        appender.put(rela_at, packed)
    else:
        appender.patch(rela_at, packed + bytes(rela_shdr.size - len(packed)))
    appender.set_dynamic(DT_RELASZ, new_size)
    if image.dyn(DT_RELACOUNT) is not None:
        appender.set_dynamic(DT_RELACOUNT, len(relative))
    for k, value in settled.items():
        appender.patch(relas[k].offset, struct.pack("<Q", value))
    report.table_bytes = len(table_bytes)
    report.code_bytes = code_size
    return appender.write()


def _make_room(appender, image, new_segments):
    """Move tables out of the way of a program header table ``new_segments``
    entries longer, the way :class:`~elfvector.elfwrite.Appender` slides
    ``.interp``/``.note.*``.  Returns whether ``.rela.dyn`` must move too."""
    old_end = image.phoff + image.phnum * PHDR.size
    table_end = old_end + new_segments * PHDR.size
    moved, rela_moves = set(), False
    while True:
        staying = sorted((i for i, s in enumerate(image.shdrs)
                          if s.flags & SHF_ALLOC and s.size and i not in moved
                          and old_end <= s.offset < appender.start),
                         key=lambda i: image.shdrs[i].offset)
        block = []
        for i in staying:
            if not image.section_names[i].startswith(Appender.SLIDING):
                break
            block.append(i)
        if block:
            start = image.shdrs[block[0]].offset
            end = max(image.shdrs[i].offset + image.shdrs[i].size for i in block)
            align = max(max(image.shdrs[i].addralign, 1) for i in block)
            limit = end + max(0, align_up(table_end - start, align))
        else:
            limit = table_end
        blockers = [i for i in staying[len(block):] if image.shdrs[i].offset < limit]
        if not blockers:
            return rela_moves
        for i in blockers:
            name = image.section_names[i]
            if name == ".rela.dyn":
                rela_moves = True
            elif name in MOVABLE and image.dyn(MOVABLE[name]) == image.shdrs[i].addr:
                shdr = image.shdrs[i]
                vaddr = appender.add_data(image.read(shdr.addr, shdr.size),
                                          max(shdr.addralign, 1))
                appender.set_dynamic(MOVABLE[name], vaddr)
                appender.move_section(name, vaddr, shdr.size)
            else:
                raise UnsupportedElfError(f"no room to grow the program header table "
                                          f"({name} cannot move)", image.path)
            moved.add(i)
