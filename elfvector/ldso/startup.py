"""ld.so's start-up binding replayed (``elf/dl-reloc.c``, ``rtld.c``):
every relocation of every object, in relocation order, with the lookup
it makes and what it binds to."""

import bisect
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from ..elfstruct import ELFCLASS64, PT_LOAD
from .lookup import lookup
from .objects import MappedObject
from .symbols import (STB_LOCAL, STV_HIDDEN, STV_INTERNAL, STV_PROTECTED, LoadError, Symbol,
                      Version)

RTLD_MALLOC = ("calloc", "free", "malloc", "realloc")     #: __rtld_malloc_init_real


class Binding(NamedTuple):
    """What one relocation (or one explicit lookup by ld.so) resolved to.

    ``definer``/``symbol`` are None for a weak reference found nowhere.
    ``looked_up`` is False when ld.so needed no lookup (a local or hidden
    reference binds to its own object), ``from_cache`` when ld.so reused
    the previous lookup of that object (``l_lookup_cache``);
    ``protected`` is what LD_DEBUG prints as "protected symbol".
    """

    requester: MappedObject
    table: str                  #: "rela.dyn" (also i386's .rel.dyn), "rela.plt", or "rtld"
    index: int
    rtype: int
    sym_index: int
    name: str
    version: Version
    definer: MappedObject
    symbol: Symbol
    looked_up: bool
    from_cache: bool
    protected: bool


@dataclass
class Startup:
    """Every binding ld.so makes at start-up under LD_BIND_NOW, in its order."""

    bindings: list
    #: (requester, table, index) -> Binding, for every relocation with a symbol
    by_relocation: dict
    lookups: int                #: LD_DEBUG=statistics "number of relocations" (no vDSO)
    cache_hits: int             #: "number of relocations from cache"
    by_requester: Counter = field(default_factory=Counter)     #: object -> its lookups

    def lookups_of(self, obj):
        """The lookups made for ``obj`` (the malloc ones count for the program)."""
        return self.by_requester[obj]



def replay(linkmap):
    """Replay ld.so's start-up binding of ``linkmap`` under LD_BIND_NOW:
    every object's relocations in relocation order (.rela.dyn, then
    .rela.plt), with the per-object lookup cache, and ld.so's own lookups
    of the malloc functions before it relocates itself."""
    linkmap.unique.clear()
    main = linkmap.main
    bindings, by_relocation = [], {}
    for obj in linkmap.relocation_order():
        if obj.is_rtld:
            malloc = Version.named(linkmap.config.facts.malloc_version)
            for name in RTLD_MALLOC:
                found = lookup(linkmap, name, main, malloc)
                bindings.append(Binding(main, "rtld", 0, 0, 0, name, malloc,
                                        *(found or (None, None)), True, False, False))
        for b in _relocate(linkmap, obj):
            bindings.append(b)
            by_relocation[(obj, b.table, b.index)] = b
    made = Counter(b.requester for b in bindings if b.looked_up and not b.from_cache)
    hits = sum(1 for b in bindings if b.from_cache)
    return Startup(bindings, by_relocation, sum(made.values()), hits, made)


def _relocate(linkmap, obj):
    """``_dl_relocate_object`` with ``resolve_map``, for the bindings."""
    elf = obj.elf
    without_symbol = (elf.machine.relative, elf.machine.none)
    type_class = linkmap.config.facts.type_class
    cache_key, cache_value = None, None
    for table, relocs in (("rela.dyn", elf.rela_dyn), ("rela.plt", elf.rela_plt)):
        for index, (_, rtype, sym_index, _) in enumerate(relocs):
            if rtype in without_symbol:
                continue
            ref = elf.symbols[sym_index]
            version = elf.reference_version(sym_index)
            if ref.bind == STB_LOCAL or ref.visibility in (STV_HIDDEN, STV_INTERNAL):
                yield Binding(obj, table, index, rtype, sym_index, ref.name, version, obj,
                              ref, False, False, False)
                continue
            tclass = type_class(rtype)
            hit = cache_key == (sym_index, tclass)
            if not hit:
                cache_key = (sym_index, tclass)
                cache_value = lookup(linkmap, ref.name, obj, version, tclass, ref)
            definer, symbol = cache_value or (None, None)
            yield Binding(obj, table, index, rtype, sym_index, ref.name, version, definer,
                          symbol, True, hit, ref.visibility == STV_PROTECTED)


def check_relocated_words(elf):
    """ld.so writes each relocated word at the load bias plus ``r_offset``,
    unchecked: a word outside the file's PT_LOAD segments would crash the
    start-up (or land in another mapping), so no binding of it can be settled.
    (Offsets sorted and counted per segment by bisection: gdb's closure has
    150,000 relocations.)"""
    word = 8 if elf.machine.elfclass == ELFCLASS64 else 4
    none = elf.machine.none
    offsets = sorted(r[0] for relocs in (elf.rela_dyn, elf.rela_plt) for r in relocs
                     if r[1] != none)
    starts = sorted((p.vaddr, p.vaddr + p.memsz - word) for p in elf.image.phdrs
                    if p.type == PT_LOAD and p.memsz >= word)
    inside, last = 0, -1
    for first, final in starts:             # each offset counted once: from past the last
        first = max(first, last + 1)
        if first <= final:
            inside += bisect.bisect_right(offsets, final) - bisect.bisect_left(offsets, first)
            last = final
    if inside == len(offsets):
        return
    wild = next(o for o in offsets if not any(a <= o <= b for a, b in starts))
    raise LoadError(f"a dynamic relocation writes at {wild:#x}, outside its segments: ld.so "
                    "would crash starting the program", elf.path)
