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

The same holds on i386 (``R_386_RELATIVE``/``GLOB_DAT``/``32`` of
``.rel.dyn``, 32-bit words, a RELR bitmap of 31 words, ``DT_RELCOUNT``) and
AArch64 (``R_AARCH64_RELATIVE``/``GLOB_DAT``/``ABS64``), with that
architecture's routine (``elfvector.arch.<arch>.relvec_fixup``).  An i386
relocation is REL: the IRELATIVE's word holds the routine's address (its
addend), and the routine returns the word's settled value plus the bias.
The routine reaches its table and its word %rip-relative on x86-64
(+-2 GiB) and with ``adrp`` on AArch64 (+-4 GiB); a library whose words
are farther from the new segments is refused.  i386 code reaches the
whole address space.

Layout (:class:`~elfvector.elfwrite.Appender`): two PT_LOADs (R, RX)
follow the old ones, so the library's address span grows (see
:attr:`RelvecReport.span_after`); the program header table grows in place,
and the tables right after it (``.gnu.hash``, ``.dynsym``, ... whatever is
in the way) move, unchanged, into the new read-only segment.  The two
mappings cost something at load: relvec pays off for libraries with many
relative relocations (C++ vtables, pointer tables), not for small ones.
"""

import dataclasses
import struct
from dataclasses import dataclass, field

from . import arch as arches
from .elfimage import (DF_1_PIE, DT_FLAGS_1, DT_GNU_HASH, DT_HASH, DT_JMPREL, DT_RELACOUNT,
                       DT_RELCOUNT, DT_STRTAB, DT_SYMTAB, DT_VERDEF, DT_VERNEED, DT_VERSYM,
                       ET_DYN, PF_R, PF_W, PF_X, PT_LOAD, SHF_ALLOC, SHN_LORESERVE, SHN_UNDEF,
                       STB_GLOBAL, STB_WEAK, STT_FUNC, ElfImage)
from .elfwrite import Appender, align_up
from .errors import ElfvectorError, UnsupportedElfError
from .relr import relr_decode, relr_encode  # noqa: F401 (relr_decode: the module's API)

TABLE_SECTION = ".elfvector.relvec"
CODE_SECTION = ".elfvector.relvec.text"

STV_MASK, STV_DEFAULT, STV_PROTECTED = 3, 0, 3
RIP_REACH = (1 << 31) - (1 << 16)   # a %rip-relative operand, less the routine's own size
#: architecture -> (how far the routine reaches its data, by what), None: everywhere
REACH = {"x86_64": (RIP_REACH, "a %rip-relative operand"),
         "aarch64": ((1 << 32) - (1 << 16), "adrp"),
         "i386": None}

#: tables that may sit between the program headers and the code, and may
#: move to the new read-only segment to make room for two more headers
MOVABLE = {".gnu.hash": DT_GNU_HASH, ".hash": DT_HASH, ".dynsym": DT_SYMTAB,
           ".dynstr": DT_STRTAB, ".gnu.version": DT_VERSYM, ".gnu.version_r": DT_VERNEED,
           ".gnu.version_d": DT_VERDEF, ".rela.plt": DT_JMPREL, ".rel.plt": DT_JMPREL}


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
    A library without any relative relocation (``R_X86_64_RELATIVE``, ...)
    in ``.rela.dyn`` (``.rel.dyn``) comes back unchanged (the same object),
    with the report saying why.
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
    arch = image.arch
    relas = image.dynamic_relocations()
    report.rela_before = report.rela_after = report.kept = len(relas)
    report.relacount_before = report.relacount_after = image.dyn(_count_tag(arch)) or 0
    if not any(r.type == arch.relative for r in relas):
        report.reason = (f"no {arch.relocation_prefix}RELATIVE relocation in "
                         f"{_section_name(arch)}")
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
    report.relacount_after = sum(r.type == arch.relative for r in kept)
    report.bytes_after = len(out)
    report.span_after = _span(ElfImage(out, path, "relvec"))
    return out, report


def _span(image):
    loads = [p for p in image.phdrs if p.type == PT_LOAD]
    if not loads:
        return 0
    return max(p.vaddr + p.memsz for p in loads) - min(p.vaddr for p in loads)


def _section_name(arch):
    return ".rela.dyn" if arch.rela else ".rel.dyn"


def _count_tag(arch):
    """DT_RELACOUNT, or DT_RELCOUNT of a REL table: its leading relative relocations."""
    return DT_RELACOUNT if arch.rela else DT_RELCOUNT


def _rela_dyn_section(image):
    arch = image.arch
    addr_tag, size_tag, entry_tag = arch.relocation_table()
    entry = image.layout.entry_size(arch.rela)
    addr_name, size_name, entry_name = (("DT_RELA", "DT_RELASZ", "DT_RELAENT") if arch.rela
                                        else ("DT_REL", "DT_RELSZ", "DT_RELENT"))
    if image.dyn(entry_tag) not in (None, entry):
        raise UnsupportedElfError(f"{entry_name} is not {entry}", image.path)
    if not image.shdrs:
        raise UnsupportedElfError("no section headers", image.path)
    name = _section_name(arch)
    index, shdr = image.section(name)
    if shdr is None or shdr.addr != image.dyn(addr_tag) or shdr.size != image.dyn(size_tag):
        raise UnsupportedElfError(f"{addr_name}/{size_name} do not describe the {name} section",
                                  image.path)
    return index, shdr


# -- which relocations go -----------------------------------------------------

def _settle(image, relas, inclrel, exclrel, report):
    """{index in .rela.dyn: settled word value} for the relocations that go."""
    arch, word = image.arch, image.layout.word
    prefix = arch.relocation_prefix
    writable = [(p.vaddr, p.vaddr + p.filesz) for p in image.phdrs
                if p.type == PT_LOAD and p.flags & PF_W]
    syms = names = None
    settled = {}
    for k, r in enumerate(relas):
        if r.type == arch.relative:
            what, value = f"{prefix}RELATIVE at {r.offset:#x}", r.addend
        elif r.type in (arch.glob_dat, arch.word) and r.sym:
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
            if r.type == arch.glob_dat and r.addend:
                report.kept_reasons.append((what, f"{prefix}GLOB_DAT with an addend"))
                continue
            value = sym.value + r.addend
        else:
            continue
        if r.offset % word:
            report.kept_reasons.append((what, "unaligned word"))
        elif not any(lo <= r.offset and r.offset + word <= hi for lo, hi in writable):
            report.kept_reasons.append((what, "word not in a writable segment's file bytes"))
        else:
            settled[k] = value & ((1 << 8 * word) - 1)
    _drop_shared_words(relas, settled, report, word)
    for k in settled:
        r = relas[k]
        if r.type == arch.relative:
            report.relative_settled += 1
        else:
            name = names[r.sym]
            report.symbol_settled[name] = report.symbol_settled.get(name, 0) + 1
    return settled


def _own_function(sym):
    return (sym.type == STT_FUNC and sym.shndx != SHN_UNDEF and sym.shndx < SHN_LORESERVE
            and sym.bind in (STB_GLOBAL, STB_WEAK)
            and sym.other & STV_MASK in (STV_DEFAULT, STV_PROTECTED))


def _drop_shared_words(relas, settled, report, word):
    """Keep every relocation whose word another relocation also writes."""
    kept_at = {r.offset for k, r in enumerate(relas) if k not in settled}
    seen = {}
    for k in settled:
        seen.setdefault(relas[k].offset, []).append(k)
    for offset, ks in seen.items():
        if len(ks) > 1 or any(at in kept_at for at in range(offset - word + 1, offset + word)):
            for k in ks:
                del settled[k]
                report.kept_reasons.append((f"relocation at {offset:#x}",
                                            "another relocation writes the same word"))


# -- writing ------------------------------------------------------------------

def _rewrite(image, rela_index, rela_shdr, relas, settled, kept, report):
    arch, layout = image.arch, image.layout
    word_size, word_code = layout.word, layout.word_code
    code = arches.for_arch(arch.name)
    new_count = len(kept) + 1
    new_size = new_count * layout.entry_size(arch.rela)
    # The relocation section shrinks in place: patch its header before the
    # Appender copies the section headers.
    raw = bytearray(image.data)
    at = image.shoff + rela_index * layout.shdr.size
    raw[at:at + layout.shdr.size] = dataclasses.replace(rela_shdr, size=new_size).pack(layout)
    image = ElfImage(bytes(raw), image.path, "relvec")
    appender = Appender(image)
    rela_moves = _make_room(appender, image, 2)
    table = relr_encode((relas[k].offset for k in settled), word_size)
    table_bytes = struct.pack(f"<{len(table)}{word_code}", *table)
    table_at = appender.alloc(len(table_bytes), word_size)
    appender.add_section(TABLE_SECTION, table_at, len(table_bytes), SHF_ALLOC, word_size,
                         word_size)
    appender.put(table_at, table_bytes)
    addr_tag, size_tag, _ = arch.relocation_table()
    rela_at = image.dyn(addr_tag)
    if rela_moves:
        rela_at = appender.alloc(new_size, word_size)
        appender.move_section(_section_name(arch), rela_at, new_size)
        appender.set_dynamic(addr_tag, rela_at)
    code_size = code.RELVEC_FIXUP_SIZE
    code_at = appender.alloc(code_size, 16, PF_R | PF_X, section=CODE_SECTION)
    word = min(relas[k].offset for k in settled)
    _check_reach(image, code_at, word)
    table_end = table_at + len(table_bytes)
    fixup_args = (code_at, table_at, table_end, word) + (() if arch.rela else (settled_value(
        relas, settled, word),))
    appender.put(code_at, code.relvec_fixup(*fixup_args))
    fixup = layout.relocation(word, 0, arch.irelative, code_at, arch.rela)
    relative = [r for r in kept if r.type == arch.relative]
    irelative = [r for r in kept if r.type == arch.irelative]
    others = [r for r in kept if r.type not in (arch.relative, arch.irelative)]
    packed = b"".join(r.pack() for r in relative + others + [fixup] + irelative)
    if rela_moves:
        appender.put(rela_at, packed)
    else:
        appender.patch(rela_at, packed + bytes(rela_shdr.size - len(packed)))
    appender.set_dynamic(size_tag, new_size)
    if image.dyn(_count_tag(arch)) is not None:
        appender.set_dynamic(_count_tag(arch), len(relative))
    for k, value in settled.items():
        if arch.rela or relas[k].offset != word:
            appender.patch(relas[k].offset, struct.pack(f"<{word_code}", value))
    if not arch.rela:       # REL: the IRELATIVE's addend, the routine, is its word
        appender.patch(word, struct.pack(f"<{word_code}", code_at))
    report.table_bytes = len(table_bytes)
    report.code_bytes = code_size
    return appender.write()


def settled_value(relas, settled, word):
    """The settled value of the word at ``word``."""
    return next(value for k, value in settled.items() if relas[k].offset == word)


def _check_reach(image, code_at, word):
    """The routine at ``code_at`` must reach ``word`` (and its table, next to it)."""
    reach = REACH[image.arch.name]
    if reach is not None and abs(word - code_at) > reach[0]:
        distance = "2 GiB" if reach[0] < (1 << 31) else "4 GiB"
        raise UnsupportedElfError(f"the word at {word:#x} is more than {distance} from the new "
                                  f"segments: the fixup routine ({reach[1]}) cannot reach it",
                                  image.path)


def _make_room(appender, image, new_segments):
    """Move tables out of the way of a program header table ``new_segments``
    entries longer, the way :class:`~elfvector.elfwrite.Appender` slides
    ``.interp``/``.note.*``.  Returns whether ``.rela.dyn`` must move too."""
    old_end = image.phoff + image.phnum * image.layout.phdr.size
    table_end = old_end + new_segments * image.layout.phdr.size
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
            if name == _section_name(image.arch):
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
