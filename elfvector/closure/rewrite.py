"""Rewriting one object of a closure from its :class:`~.model.ObjectPlan`.

:func:`rewrite` turns the original bytes of one object into the output,
in the order of docs/design.md ("Closure rewrite"):

1. **move** a library from ``old_base`` to ``new_base``, the way prelink
   relocated libraries (:mod:`.move`): program and section headers,
   ``e_entry``, the address-valued ``DT_*`` entries, defined symbols of
   ``.dynsym`` and ``.symtab``, relocation offsets and RELATIVE/IRELATIVE
   addends, ``.got.plt[0]`` and the addresses of systemtap probes
   (``.eh_frame`` is PC-relative and needs nothing);
2. **settle** every Settle/SettleZero/IrelativeForeign word in the file;
3. write one new ``.rela.dyn`` (``.rel.dyn`` on i386, whose kept
   RELATIVE and IRELATIVE addends go into their words): kept RELATIVEs
   (``DT_RELACOUNT``), the
   other kept relocations, the checks' GLOB_DATs, the fix-up's IRELATIVE,
   then every other IRELATIVE; and a ``.rela.plt`` of the JUMP_SLOTs kept by
   name, lazy as in the stock file (their PLT entries push their new
   indices).  The lazy code of every settled slot is dead, and so is PLT0
   when no slot stays lazy;
4. lay the tables out again in the first PT_LOAD (:mod:`.layout`), with
   the fix-up's lists and, in a program, the preload check's data
   (:mod:`.fixupdata`): its table of pre-bound names loaded where it fits,
   else in the file with a Bloom filter of them in loaded bytes;
5. a library exports its check symbol, appended to ``.dynsym`` without
   renumbering anything (:mod:`.symbols`);
6. an importer renames one freed undefined ``.dynsym`` entry per library
   it settled words into to that library's check symbol; the GLOB_DAT's word
   (like the fix-up's own words) goes where ld.so writes anyway: the GOT's
   dead header or past ``.bss`` in its last page;
7. the fix-up routine (``closure/<arch>/fixup.py``, :mod:`.machine`) goes into
   executable bytes already mapped: the executable segment's last page,
   else the dead IBT ``.plt``;
8. each IrelativeForeign gets its stub in the dead lazy tail of its PLT entry;
9. ``DT_RPATH`` and, in a program, ``PT_INTERP``;
10. every other section is kept, section headers describe every byte.
"""

import os
import struct
from collections import Counter
from dataclasses import dataclass, field

from ..elfimage import (PF_W, PT_DYNAMIC, PT_INTERP, PT_LOAD, SHN_UNDEF, SHT_PROGBITS, ElfImage,
                        Rela)
from ..errors import UnsupportedElfError
from . import layout
from .addedwords import added_words, dead_got_words, padding_words
from .fixupdata import FixupData
from .machine import OPERATION, closure_arch
from .model import (RELA_DYN, RELA_PLT, IrelativeForeign, IrelativeLocal, Keep, Relative,
                    Settle, SettleZero)
from .move import Move
from .output import PAGE, Output
from .symbols import DynamicSymbols

# Constants not (yet) in the shared ELF layout module.
PT_NOTE, PT_GNU_PROPERTY = 4, 0x6474E553
DT_NULL, DT_NEEDED, DT_PLTRELSZ, DT_PLTGOT, DT_HASH, DT_STRTAB, DT_SYMTAB = 0, 1, 2, 3, 4, 5, 6
DT_RELA, DT_STRSZ, DT_INIT, DT_FINI = 7, 10, 12, 13
DT_RPATH, DT_REL, DT_PLTREL, DT_DEBUG, DT_JMPREL = 15, 17, 20, 21, 23
DT_INIT_ARRAY, DT_FINI_ARRAY, DT_RUNPATH, DT_PREINIT_ARRAY = 25, 26, 29, 32
DT_RELRSZ, DT_RELR, DT_RELRENT = 35, 36, 37
DT_GNU_HASH, DT_VERSYM = 0x6FFFFEF5, 0x6FFFFFF0
DT_VERDEF, DT_VERNEED, DT_VERNEEDNUM = 0x6FFFFFFC, 0x6FFFFFFE, 0x6FFFFFFF
DT_ADDRRNGLO, DT_ADDRRNGHI = 0x6FFFFE00, 0x6FFFFEFF
DT_CONFIG, DT_DEPAUDIT, DT_AUDIT = 0x6FFFFEFA, 0x6FFFFEFB, 0x6FFFFEFC

#: DT_* entries whose value is an address (gABI "d_ptr"), moved with the object
ADDRESS_TAGS = ({DT_PLTGOT, DT_HASH, DT_STRTAB, DT_SYMTAB, DT_RELA, DT_INIT, DT_FINI, DT_REL,
                 DT_JMPREL, DT_INIT_ARRAY, DT_FINI_ARRAY, DT_PREINIT_ARRAY, DT_RELR,
                 DT_VERSYM, DT_VERDEF, DT_VERNEED}
                | set(range(DT_ADDRRNGLO, DT_ADDRRNGHI + 1))) - {DT_CONFIG, DT_DEPAUDIT,
                                                                  DT_AUDIT}
#: entries that go: lazy binding, and the run path that RPATH replaces
DROPPED_TAGS = {DT_JMPREL, DT_PLTRELSZ, DT_PLTREL, DT_RUNPATH, DT_RPATH}
#: lazy binding's entries, kept when JUMP_SLOTs stay lazy
LAZY_TAGS = {DT_JMPREL, DT_PLTRELSZ, DT_PLTREL}
#: the tables the rewrite may move, by section name, with their DT_* tag
TABLE_TAGS = {".dynsym": DT_SYMTAB, ".dynstr": DT_STRTAB, ".gnu.hash": DT_GNU_HASH,
              ".hash": DT_HASH, ".gnu.version": DT_VERSYM, ".gnu.version_d": DT_VERDEF,
              ".gnu.version_r": DT_VERNEED, ".rela.dyn": DT_RELA, ".relr.dyn": DT_RELR,
              ".rela.plt": DT_JMPREL, ".rel.dyn": DT_REL, ".rel.plt": DT_JMPREL}
#: DT_RELR (gABI): RELATIVE relocations with the addend in the word
RELR_TAGS = (DT_RELR, DT_RELRSZ, DT_RELRENT)
SETTLED = (Settle, SettleZero, IrelativeForeign)


def _check_plt_relocation_types(image, machine, path):
    """Refuse a DT_JMPREL entry ld.so would not take there (only JUMP_SLOT,
    IRELATIVE and TLSDESC: lazy binding stops at any other, "unexpected PLT
    reloc type"), rather than carry it into the output's other table."""
    lazy_types = (machine.jump_slot, machine.irelative, machine.tlsdesc)
    for r in image.relas(DT_JMPREL, None):
        if r.type not in lazy_types:
            raise UnsupportedElfError(f"the PLT relocation at {r.offset:#x} has type {r.type}, "
                                      "which ld.so does not take in DT_JMPREL", path)


@dataclass
class ObjectReport:
    """What the rewrite did to one object (before/after figures of issue 8)."""

    source: str
    output: str
    lookups_before: int = 0          #: relocations naming a symbol
    lookups_after: int = 0           #: kept ones, plus the checks
    relative_before: int = 0
    relative_after: int = 0
    loads_before: int = 0
    loads_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    settled: int = 0                 #: words given their value in the file
    checks: int = 0
    kept: Counter = field(default_factory=Counter)      #: why -> relocations kept
    demoted: list = field(default_factory=list)         #: (what, why): settles kept
    code: str = "none"               #: where the fix-up routine went
    tables: str = ""                 #: where the tables and lists went
    added_load: str = None           #: why a PT_LOAD was added, if one was
    check_words: str = "none"        #: where the check words went
    check_pages: int = 0             #: pages dirtied for the added words alone
    prebound: str = "none"           #: where a program's pre-bound names went

    def summary(self):
        extra = f"; added PT_LOAD: {self.added_load}" if self.added_load else ""
        return (f"{self.output}: lookups {self.lookups_before} -> {self.lookups_after}, "
                f"RELATIVE {self.relative_before} -> {self.relative_after}, PT_LOAD "
                f"{self.loads_before} -> {self.loads_after}, bytes {self.bytes_before} -> "
                f"{self.bytes_after}; settled {self.settled}, checks {self.checks}; fix-up: "
                f"{self.code}; tables: {self.tables}{extra}")

    __str__ = summary


# -- one object -------------------------------------------------------------------

def rewrite(plan, index, data):
    """The output bytes of object ``index`` of ``plan``, from its original ``data``."""
    return rewrite_object(plan, index, data)[0]


def rewrite_object(plan, index, data):
    """(output bytes, :class:`ObjectReport`) of object ``index`` of ``plan``.

    An object the plan leaves alone (ld.so: not moved, every relocation
    kept, no check, no run path or interpreter) comes back unchanged."""
    obj = plan.objects[index]
    if _untouched(obj):
        image = ElfImage(data, obj.source, OPERATION)
        loads = sum(p.type == PT_LOAD for p in image.phdrs)
        relas = image.dynamic_relocations() + image.relas(DT_JMPREL, None)
        lookups = sum(r.sym != 0 for r in relas)
        relative = sum(r.type == image.arch.relative for r in relas)
        return data, ObjectReport(obj.source, obj.output, lookups, lookups, relative, relative,
                                  loads, loads, len(data), len(data), tables="unchanged")
    return _Rewrite(plan, index, ElfImage(data, obj.source, OPERATION)).run()


def _untouched(obj):
    return (obj.new_base == obj.old_base and obj.rpath is None and obj.interp is None
            and obj.check_symbol is None and not obj.checks and not obj.prebound_names
            and all(isinstance(d, Keep) for d in obj.decisions.values()))


@dataclass
class _Reloc:
    table: str
    index: int
    rela: Rela
    decision: object


class _Rewrite:
    """The staged rewrite of one object (see the module docstring for the steps)."""

    def __init__(self, plan, index, image):
        self.plan, self.index, self.image = plan, index, image
        self.obj = obj = plan.objects[index]
        if image.dynamic is None:
            raise UnsupportedElfError("statically linked (no dynamic section)", obj.source)
        self.arch = arch = closure_arch(image)
        self.word = arch.word
        machine = arch.machine
        self.types = machine
        self.settleable = (machine.word, machine.glob_dat, machine.jump_slot, machine.relative)
        self.loads = layout.loads(image.phdrs)
        if obj.old_base != self.loads[0].vaddr:
            raise ValueError(f"{obj.source}: old_base {obj.old_base:#x} is not the first "
                             f"PT_LOAD's address {self.loads[0].vaddr:#x}")
        self.delta = obj.new_base - obj.old_base
        if self.delta % PAGE or (self.delta and obj.is_program):
            raise ValueError(f"{obj.source}: cannot move from {obj.old_base:#x} to "
                             f"{obj.new_base:#x}")
        other = DT_REL if arch.rela else DT_RELA
        if image.dyn(other):
            raise UnsupportedElfError(f"{'DT_REL' if arch.rela else 'DT_RELA'} relocations "
                                      f"in an {machine.label} file", obj.source)
        if image.dyn(DT_JMPREL) and image.dyn(DT_PLTREL) not in (None, arch.table_tag):
            raise UnsupportedElfError(f"DT_PLTREL is not {'DT_RELA' if arch.rela else 'DT_REL'}",
                                      obj.source)
        _check_plt_relocation_types(image, machine, obj.source)
        self.dynamic_phdr = next(p for p in image.phdrs if p.type == PT_DYNAMIC)
        self.report = ObjectReport(obj.source, obj.output, bytes_before=len(image.data),
                                   loads_before=len(self.loads))
        self.sections = {n: (s.addr, image.bytes_at(s.offset, s.size), s.entsize)
                         for n, s in zip(image.section_names, image.shdrs)
                         if n in (".plt", ".plt.sec", ".plt.got") and s.type == SHT_PROGBITS}
        self.plt = arch.plt.plt_entries(self.sections, image.dyn(DT_PLTGOT))
        #: REL: {new address: addend} of the words that carry a kept relocation's addend
        self.implicit = {}

    def mv(self, address):
        """The output's link-time address of the original ``address``."""
        return address + self.delta

    def run(self):
        """Stage every change (see the module docstring), then write once."""
        self._check_the_checks()
        self.relocs = relocs = self._relocations()
        self.relr_words = self._relr_words()
        self.settles_relr = bool(self.relr_words) and not self.obj.is_program
        self._count_before(relocs)
        self.symbols = DynamicSymbols(self.image)
        self.out = out = Output(self.image)
        self._move(out)
        self.checks = self._assign_checks(relocs)
        self._name_checks()
        self.rpath_offset = None if self.obj.rpath is None else self.symbols.add_string(
            self.obj.rpath.encode("utf-8", "surrogateescape"))
        self.needed_paths = self._needed_paths()
        words, own, deps = self._settle(relocs)
        self.lazy = self._lazy_slots(relocs)
        self.preload = bool(self.obj.is_program and self.obj.prebound_names)
        self.needs_fixup = bool(own or self.checks or self.preload)
        self.result_word = None
        if self.needs_fixup and not self.arch.rela:
            self.result_word = self._rel_result_word()
        self.rela_count = (sum(not isinstance(r.decision, (Settle, SettleZero)) for r in relocs)
                           - len(self.lazy) + len(self.checks) + bool(own) + self.needs_fixup)
        self.dynamic = self._dynamic_entries()
        self._add_words(out, own)
        self.blob = FixupData(self, own, deps)
        self._place(out)
        for address, value in words.items():
            out.put(address, self.arch.pack_word(value))
        for address, value in self.implicit.items():
            out.put(address, self.arch.pack_word(value))
        return self._write(out)

    def _add_words(self, out, own):
        """The words the rewrite adds: the checks', one a RELATIVE sets to
        its own address (the own words' entry), one for the IRELATIVE if no
        other.  The fix-up's IRELATIVE stores into one of them, which ld.so
        has written already: never a settled word, whose page would
        otherwise stay clean."""
        if not self.arch.rela:
            return self._add_rel_words(out, own)
        scratch = self.preload and not own and not self.checks
        extra = added_words(self, out, len(self.checks) + bool(own) + scratch)
        self.check_words = extra[:len(self.checks)]
        self.own_word = extra[len(self.checks)] if own else None
        self.own_expected = self.own_word
        self.result_word = self.own_word if own else (extra[0] if extra else None)

    def _add_rel_words(self, out, own):
        """The same with REL relocations, whose addends are in the words:
        the own words' entry starts at 0 (its RELATIVE makes it the load
        bias); the fix-up's IRELATIVE has its word (:meth:`_rel_result_word`)."""
        result = self.result_word
        extra = added_words(self, out, len(self.checks) + bool(own),
                            exclude=() if result is None else (result,))
        self.check_words = extra[:len(self.checks)]
        self.own_word = extra[len(self.checks)] if own else None
        self.own_expected = 0

    def _rel_result_word(self):
        """The word of a REL object's fix-up IRELATIVE, which must hold the
        routine's address in the file (ld.so calls ``l_addr + *word``) and
        is 0 in a stock process, the routine's return value: padding in the
        writable segments' file bytes, else a dead GOT header word, else a
        weak reference settled to 0; on a page ld.so writes anyway (a kept
        relocation's) first, since the IRELATIVE dirties it.  When none is
        free, the JUMP_SLOTs kept lazy are bound at start-up instead, which
        frees the GOT header."""
        written = {self.mv(r.rela.offset) // PAGE for r in self.relocs
                   if not isinstance(r.decision, (Settle, SettleZero))}
        free = sorted(padding_words(self) or dead_got_words(self) or [
            self.mv(r.rela.offset) for r in self.relocs if isinstance(r.decision, SettleZero)],
            key=lambda word: (word // PAGE not in written, word))
        if not free and self.lazy:
            self.lazy = []
            self.report.demoted.append(("lazy JUMP_SLOTs", "bound at start-up: the fix-up's "
                                        "IRELATIVE takes the GOT header"))
            free = dead_got_words(self)
        if not free:
            raise UnsupportedElfError("no word for the fix-up routine's R_386_IRELATIVE (no "
                                      "padding in the writable segments, no dead .got.plt "
                                      "header word, no weak reference settled to 0)",
                                      self.obj.source)
        return free[0]

    def _place(self, out):
        """Everything in bytes already mapped, else with one added PT_LOAD."""
        self.moved_phdrs = list(out.phdrs)
        try:
            self.placement = layout.Placement(self, out, added=False)
        except layout.NoRoom as why:
            self.placement = layout.Placement(self, out, added=True)
            self.report.added_load = str(why)
        self.placement.apply()

    def _write(self, out):
        self._renumber_lazy(out)
        self._write_dynamic(out)
        self._recompute_small_segments(out)
        self.report.kept = Counter(r.decision.why for r in self.relocs
                                   if isinstance(r.decision, Keep))
        data = out.write()
        self.report.bytes_after = len(data)
        self.report.loads_after = sum(p.type == PT_LOAD for p in out.phdrs)
        return data, self.report

    # -- decisions ------------------------------------------------------------------
    def _relocations(self):
        relocs = []
        for table, tag in ((RELA_DYN, self.arch.table_tag), (RELA_PLT, DT_JMPREL)):
            for k, r in enumerate(self.image.relas(tag, None)):
                decision = self.obj.decisions.get((table, k)) or Keep("no decision")
                relocs.append(_Reloc(table, k, r, self._sound(r, decision)))
        return relocs

    def _sound(self, r, decision):
        """``decision``, or Keep when the rewrite cannot carry it out for ``r``."""
        if not isinstance(decision, SETTLED) and (self.arch.rela or not isinstance(
                decision, (Relative, IrelativeLocal))):
            return decision
        why = None
        if not self.arch.rela and isinstance(decision, (Relative, IrelativeLocal)):
            if not self.in_writable_file_bytes(r.offset):
                why = "the addend's word is not in a writable segment's file bytes"
        elif r.type not in self.settleable:
            why = f"relocation type {r.type} is not settled"
        elif r.offset % self.word:
            why = "unaligned word"
        elif not self.in_writable_file_bytes(r.offset):
            why = "word not in a writable segment's file bytes"
        elif isinstance(decision, IrelativeForeign) and r.type != self.types.jump_slot:
            why = "an IFUNC word other than a JUMP_SLOT"
        elif isinstance(decision, IrelativeForeign) and self.arch.plt.STUB_NEEDS_ENTRY \
                and r.offset not in self.plt:
            why = "no PLT entry jumps through the word"
        if why is not None:
            self.report.demoted.append((f"relocation at {r.offset:#x}", why))
            return Keep(why)
        target = getattr(decision, "target", None)
        if target is not None and target.obj != self.index and not any(
                c.obj == target.obj for c in self.obj.checks):
            raise ValueError(f"{self.obj.source}: the plan settles words into object "
                             f"{target.obj} without a check")
        return decision

    def _check_the_checks(self):
        """Every importer's Check of this object must name its check symbol
        and expect it at its new .dynamic address: a wrong ``expected``
        would make every importer's fix-up "correct" good words."""
        objects = self.plan.objects
        for importer in objects:
            for check in importer.checks:
                if check.symbol != objects[check.obj].check_symbol:
                    raise ValueError(f"{importer.source}: its check of "
                                     f"{objects[check.obj].source} names {check.symbol}, "
                                     f"not {objects[check.obj].check_symbol}")
                if check.obj == self.index and check.expected != \
                        self.mv(self.dynamic_phdr.vaddr):
                    raise ValueError(f"{importer.source}: its check of {self.obj.source} "
                                     f"expects {check.expected:#x}, not the new .dynamic "
                                     f"address {self.mv(self.dynamic_phdr.vaddr):#x}")

    def in_writable_file_bytes(self, address):
        return any(p.flags & PF_W and p.vaddr <= address and address + self.word <= p.vaddr + p.filesz
                   for p in self.loads)

    def _count_before(self, relocs):
        self.report.relative_before = sum(r.rela.type == self.types.relative for r in relocs) \
            + len(self.relr_words)
        self.report.lookups_before = sum(r.rela.sym != 0 for r in relocs)

    def _assign_checks(self, relocs):
        """[(Check, .dynsym index to rename)] for the libraries this object
        settled words into.  A library without a free entry keeps its words
        as lookups (reported), which may take a free entry from another: repeat."""
        while True:
            targets = Counter(r.decision.target.obj for r in relocs
                              if isinstance(r.decision, (Settle, IrelativeForeign))
                              and r.decision.target.obj != self.index)
            needed = [c for c in self.obj.checks if targets[c.obj]]
            free = self._free_entries(relocs)
            if len(free) >= len(needed):
                return list(zip(needed, free))
            victim = min(needed, key=lambda c: targets[c.obj]).obj
            for r in relocs:
                if isinstance(r.decision, (Settle, IrelativeForeign)) and \
                        r.decision.target.obj == victim:
                    why = "no free .dynsym entry for the check"
                    self.report.demoted.append((f"relocation at {r.rela.offset:#x}", why))
                    r.decision = Keep(why)

    def _free_entries(self, relocs):
        """Undefined .dynsym entries that no kept relocation names, outside
        the GNU hash chains, never a non-PIE program's canonical PLT address
        (st_value != 0): those whose relocations were all settled first."""
        syms, gnu = self.symbols.syms, self.symbols.gnu
        limit = len(syms)
        if gnu is not None and gnu.last is not None:
            limit = min(gnu.symoffset, len(syms))   # a chain holds every symbol after
        named = Counter(r.rela.sym for r in relocs)
        kept = {r.rela.sym for r in relocs if isinstance(r.decision, Keep)}
        free = [i for i in range(1, limit)
                if syms[i].shndx == SHN_UNDEF and syms[i].value == 0 and i not in kept]
        return sorted(free, key=lambda i: (named[i] == 0, i))

    def _name_checks(self):
        obj = self.obj
        for check, entry in self.checks:
            self.symbols.rename_to_check(entry, check.symbol.encode("utf-8", "surrogateescape"))
        self.report.checks = len(self.checks)
        if obj.check_symbol is not None:
            dyn_index, _ = self.image.section(".dynamic")
            if dyn_index is None:
                raise UnsupportedElfError("no .dynamic section header", obj.source)
            self.symbols.append_definition(obj.check_symbol.encode("utf-8", "surrogateescape"),
                                           dyn_index, self.mv(self.dynamic_phdr.vaddr))

    def _needed_paths(self):
        """{.dynstr offset of a DT_NEEDED name: offset of its path}: each
        library of the closure is needed by its full path in the run path's
        directory, so ld.so opens it at once instead of searching: a run
        path directory is first tried with every glibc-hwcaps and legacy
        hwcap subdirectory (glibc 2.36: 11 failed ``openat`` and
        ``newfstatat`` for the first library).  The version needs
        (``vn_file``) name the same strings: ld.so matches them against the
        names objects were loaded by.  ld.so itself stays needed by name
        (its link map answers to its soname); so does any name that is not
        an output of the plan, and every name when the run path is not one
        absolute directory."""
        rpath = self.obj.rpath
        if rpath is None or not rpath.startswith("/") or ":" in rpath or "$" in rpath:
            return {}
        outputs = {os.path.basename(o.output).encode("utf-8", "surrogateescape")
                   for o in self.plan.objects if not o.is_program and not o.is_interp}
        directory = rpath.rstrip("/").encode("utf-8", "surrogateescape") + b"/"
        paths = {}
        for tag, value in self.image.dynamic:
            if tag == DT_NEEDED and value not in paths:
                name = bytes(self.symbols.strtab[value:self.symbols.strtab.index(b"\0", value)])
                if name in outputs:
                    paths[value] = self.symbols.add_string(directory + name)
        return paths

    def verneed_table(self):
        """.gnu.version_r with each ``vn_file`` that names a needed library
        by path (:meth:`_needed_paths`), or None when nothing changes."""
        _, shdr = self.image.section(".gnu.version_r")
        if shdr is None or not self.needed_paths or not self.image.dyn(DT_VERNEED):
            return None
        raw = bytearray(self.image.bytes_at(shdr.offset, shdr.size))
        at = 0
        for _ in range(self.image.dyn(DT_VERNEEDNUM) or 0):
            _, _, vn_file, _, vn_next = struct.unpack_from("<HHIII", raw, at)
            if vn_file in self.needed_paths:
                struct.pack_into("<I", raw, at + 4, self.needed_paths[vn_file])
            if not vn_next:
                break
            at += vn_next
        return bytes(raw)

    # -- step 1: the move ---------------------------------------------------------------
    def _move(self, out):
        """Program and section headers, entry, symbols, probes, .got.plt[0]."""
        move = Move(self.image, self.delta)
        move.headers(out)
        if not self.delta:
            return
        move.entry(out)
        self.symbols.syms = [move.symbol(s) for s in self.symbols.syms]
        move.symtab(out)
        move.probes(out)
        move.got0(out, self.dynamic_phdr.vaddr)

    def follow_sections(self, out, shifts):
        """Symbols of the sections the window laid out again (``__abi_tag``
        in .note.ABI-tag) move with them."""
        if not any(shifts.values()):
            return
        move = Move(self.image, self.delta)
        self.symbols.syms = [move.symbol(s, shifts) for s in self.symbols.syms]
        move.symtab(out, shifts)

    # -- step 2: the settled words --------------------------------------------------------
    def _settle(self, relocs):
        """{new address: value} of every settled word, and the RELR lists:
        own (words into this object) and {object: words into it}."""
        words, own, deps = {}, [], {}
        for r in relocs:
            decision = r.decision
            if not isinstance(decision, SETTLED):
                continue
            at = self.mv(r.rela.offset)
            if isinstance(decision, SettleZero):
                words[at] = 0
                continue
            if isinstance(decision, IrelativeForeign) and self.arch.plt.STUB_THROUGH_CHECK:
                continue                # the word holds its stub's address (REL)
            words[at] = self.plan.new_address(decision.target)
            if decision.target.obj == self.index:
                own.append(at)
            else:
                deps.setdefault(decision.target.obj, []).append(at)
        if self.settles_relr:
            for address in self.relr_words:
                at = self.mv(address)
                words[at] = self._word_at(address) + self.delta
                own.append(at)
        self.report.settled = len(words)
        return words, sorted(own), {k: sorted(v) for k, v in deps.items()}

    def _relr_words(self):
        """The words DT_RELR relocates; a library's are settled like its
        RELATIVEs (the word += the move, listed for the fix-up) and the
        table goes, a program's stay with ld.so."""
        image = self.image
        addr, size = image.dyn(DT_RELR), image.dyn(DT_RELRSZ) or 0
        if not addr:
            return []
        if image.dyn(DT_RELRENT) not in (None, self.word) or size % self.word:
            raise UnsupportedElfError(f"DT_RELRENT is not {self.word}", self.obj.source)
        words = self.arch.relr_decode(image.read(addr, size))
        if not self.obj.is_program:
            for address in words:
                if address % self.word or not self.in_writable_file_bytes(address):
                    raise UnsupportedElfError(f"DT_RELR word {address:#x} is not in a "
                                              f"writable segment's file bytes", self.obj.source)
        return words

    def foreign_stub(self, at, word):
        """The bytes of the IFUNC stub at ``at`` for the slot at the original
        ``word``: through the settled word (x86-64), or from the library's
        check word (i386, where the word holds the stub's address)."""
        plt = self.arch.plt
        if not plt.STUB_THROUGH_CHECK:
            return plt.foreign_stub(at, self.mv(word))
        target = next(r.decision.target for r in self.relocs if r.rela.offset == word
                      and isinstance(r.decision, IrelativeForeign))
        k = next(k for k, (check, _) in enumerate(self.checks) if check.obj == target.obj)
        return plt.foreign_stub(at, self.check_words[k],
                                self.plan.new_address(target) - self.checks[k][0].expected)

    # -- lazy binding of the kept JUMP_SLOTs ---------------------------------------------
    def _lazy_slots(self, relocs):
        """[(_Reloc, address of its PLT push's imm32, its lazy PLT code)] for the
        JUMP_SLOTs of ``.rela.plt`` kept by name (the default exclusions,
        ``--exclude``, conflicts, words into the program or ld.so), in table
        order: they stay lazy as in the stock file, so a name the program
        never calls costs no lookup (python3 --version calls 5 of its 34
        ``pthread_*`` and malloc-family slots).  A slot whose PLT entry is
        not GNU ld's lazy code pushing its index is bound eagerly instead."""
        lazy = []
        for r in relocs:
            if r.table != RELA_PLT or r.rela.type != self.types.jump_slot or \
                    not isinstance(r.decision, Keep) or \
                    not self.in_writable_file_bytes(r.rela.offset):
                continue
            target = self._word_at(r.rela.offset)
            push = self.arch.plt.lazy_push(self.sections, target)
            if push is not None and push[1] == r.index:
                lazy.append((r, push[0], target))
        return lazy

    def _renumber_lazy(self, out):
        """Each lazy slot's PLT entry pushes its index in the new DT_JMPREL,
        and its GOT word starts at the lazy code's new address (ld.so adds
        the load bias to it, ``elf_machine_lazy_rel``)."""
        for k, (r, push, target) in enumerate(self.lazy):
            out.put(self.mv(push), struct.pack("<I", k * self.arch.plt.PUSH_SCALE))
            out.put(self.mv(r.rela.offset), self.arch.pack_word(self.mv(target)))

    def _word_at(self, address):
        """The unsigned word of the original file at ``address``."""
        return int.from_bytes(self.image.read(address, self.word), "little")

    def lazy_table(self):
        """The new ``.rela.plt``: the lazy slots, renumbered in order."""
        return b"".join(self.arch.relocation(self.mv(r.rela.offset), r.rela.type,
                                             r.rela.addend, r.rela.sym).pack()
                        for r, _, _ in self.lazy)

    # -- step 3: the new .rela.dyn -----------------------------------------------------------
    def new_relocations(self, fixup_at, stubs):
        """(bytes, RELATIVE count) of the new .rela.dyn (.rel.dyn: the
        addends go into their words, :attr:`implicit`)."""
        d, types = self.delta, self.types
        relative, others, irelative = [], [], []
        lazy = {id(r) for r, _, _ in self.lazy}
        self.implicit = {}
        entry = self._entry
        for r in self.relocs:
            decision, rela = r.decision, r.rela
            at = self.mv(rela.offset)
            if id(r) in lazy:
                continue
            if isinstance(decision, Keep):
                if rela.type == types.relative:
                    relative.append(entry(at, rela.type, rela.addend + d, rela.sym, bool(d)))
                elif rela.type == types.irelative:
                    irelative.append(entry(at, rela.type, rela.addend + d, rela.sym, bool(d)))
                else:
                    others.append(entry(at, rela.type, rela.addend, rela.sym))
            elif isinstance(decision, Relative):
                relative.append(entry(at, types.relative, decision.address + d, changed=True))
            elif isinstance(decision, IrelativeLocal):
                irelative.append(entry(at, types.irelative, decision.resolver + d, changed=True))
            elif isinstance(decision, IrelativeForeign):
                irelative.append(entry(at, types.irelative, stubs[rela.offset], changed=True))
        if self.own_word is not None:
            relative.append(entry(self.own_word, types.relative, self.own_expected))
        checks = [entry(word, types.glob_dat, 0, sym)
                  for word, (_, sym) in zip(self.check_words, self.checks)]
        fixup = [entry(self.result_word, types.irelative, fixup_at, changed=True)] \
            if self.needs_fixup else []
        table = relative + others + checks + fixup + irelative
        if len(table) != self.rela_count:
            raise AssertionError("relocation count changed while placing")
        self.report.relative_after = len(relative) - (self.own_word is not None) + (
            0 if self.settles_relr else len(self.relr_words))
        self.report.lookups_after = sum(e.sym != 0 for e in others) + len(checks) + \
            len(self.lazy)
        return b"".join(e.pack() for e in table), len(relative)

    def _entry(self, at, rtype, addend, sym=0, changed=False):
        """A relocation of the new table at ``at``.  REL: its addend goes
        into the word when it changed (``changed``, or a nonzero move)."""
        if not self.arch.rela and changed:
            self.implicit[at] = addend
        return self.arch.relocation(at, rtype, addend, sym)

    # -- step 9: .dynamic ----------------------------------------------------------------------
    def _dynamic_entries(self):
        """The output's .dynamic entries in their final order; the tables'
        addresses are filled in once they are placed."""
        image, obj = self.image, self.obj
        dropped = DROPPED_TAGS | (set(RELR_TAGS) if self.settles_relr else set())
        if self.lazy:
            dropped -= LAZY_TAGS
        entries = [[t, v + self.delta if t in ADDRESS_TAGS and v else v]
                   for t, v in image.dynamic if t != DT_NULL and t not in dropped]
        tags = {t for t, _ in entries}
        arch = self.arch
        if not self.rela_count:
            entries = [e for e in entries if e[0] not in (arch.table_tag, arch.size_tag,
                                                          arch.entry_tag, arch.count_tag)]
        else:
            for tag in (arch.table_tag, arch.size_tag, arch.entry_tag):
                if tag not in tags:
                    entries.append([tag, 0])
        if obj.rpath is not None:
            entries.append([DT_RPATH, 0])
        else:
            entries += [[t, image.dyn(t)] for t in (DT_RPATH, DT_RUNPATH)
                        if image.dyn(t) is not None]
        if self.preload and DT_DEBUG not in tags:
            raise UnsupportedElfError("no DT_DEBUG entry for the preload check", obj.source)
        if len(entries) + 1 > image.dynamic_capacity:
            raise UnsupportedElfError(f"no room in .dynamic for {len(entries) + 1} entries "
                                      f"(it has {image.dynamic_capacity})", obj.source)
        return entries

    def debug_word(self):
        """Address of the program's DT_DEBUG value, where ld.so stores &_r_debug."""
        k = [t for t, _ in self.dynamic].index(DT_DEBUG)
        return self.mv(self.dynamic_phdr.vaddr) + k * self.image.layout.dyn.size + self.word

    def _write_dynamic(self, out):
        pl = self.placement
        arch = self.arch
        values = {DT_STRSZ: len(self.symbols.strtab), arch.size_tag: pl.rela_size,
                  arch.entry_tag: arch.entry_size, arch.count_tag: pl.relacount,
                  DT_RPATH: self.rpath_offset,
                  DT_PLTRELSZ: len(self.lazy) * arch.entry_size, DT_PLTREL: arch.table_tag}
        for name, tag in TABLE_TAGS.items():
            if name in pl.addresses:
                values[tag] = pl.addresses[name]
        for entry in self.dynamic:
            if entry[0] in values and not (entry[0] == DT_RPATH and self.obj.rpath is None):
                entry[1] = values[entry[0]]
            elif entry[0] == DT_NEEDED:
                entry[1] = self.needed_paths.get(entry[1], entry[1])
        dyn = self.image.layout.dyn
        raw = b"".join(dyn.pack(t, v) for t, v in self.dynamic)
        raw += bytes(self.image.dynamic_capacity * dyn.size - len(raw))
        out.put(self.mv(self.dynamic_phdr.vaddr), raw)

    def _recompute_small_segments(self, out):
        """PT_INTERP, PT_NOTE, PT_GNU_PROPERTY: around the sections they held."""
        image, moves = self.image, self.placement.moves
        for old, new in zip(image.phdrs, self.moved_phdrs):
            if old.type not in (PT_INTERP, PT_NOTE, PT_GNU_PROPERTY):
                continue
            covered = [i for i in moves if image.shdrs[i].size and old.offset <=
                       image.shdrs[i].offset and image.shdrs[i].offset + image.shdrs[i].size
                       <= old.offset + old.filesz]
            if not covered:
                continue
            start = min(moves[i][0] for i in covered)
            end = max(moves[i][0] + moves[i][1] for i in covered)
            new.vaddr = new.paddr = start
            new.offset = out.offset_of(start, end - start)
            new.filesz = new.memsz = end - start
