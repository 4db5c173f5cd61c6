"""recovervec: rebuild the ``.vec`` of a vectored library from the library.

The library holds everything: ``__V_<name>`` (``STT_OBJECT``, size 4*N) is
the table of N ``int32`` offsets from the table to each slot's function;
the layout symbols ``__V_<name>__<K>_<fingerprint>`` give the layout
history and pin the first K slot identities.  Each target is mapped back
to the exported function(s) at that address.  An IFUNC's slot points at an
IPLT entry, ``[endbr64] [bnd] jmp *GOT(%rip)`` on x86-64, whose GOT word
ld.so fills through an ``R_X86_64_IRELATIVE`` relocation: its addend is the
resolver, the ``st_value`` of the exported IFUNC symbol.

Several exported names at one address (aliases) are told apart by the
layout fingerprints when they can be; what remains ambiguous is reported.

The table is the same in i386 (ELF32) and AArch64 libraries; an IPLT
entry is recognised on the architectures whose entries elfvector writes
(:data:`elfvector.arch.IFUNC_STUBS`), by that architecture's decoder.
"""

import hashlib
import math
import os
import re
import struct
from dataclasses import dataclass, field

from . import arch as arches
from .elffile import ElfFile
from .errors import VectorMismatchError
from .exportvec import slot_for
from .vecfile import MAGIC, Vector, fingerprint, vector_name_for_soname

# Combinations of aliases tried against one layout fingerprint, and the
# bytes hashed trying them (about a second's work at most).
MAX_COMBINATIONS = 1 << 16
MAX_HASHED_BYTES = 1 << 28

_LAYOUT_RE = re.compile(r"(__V_\w*)__(\d+)_([0-9a-f]{8})")


@dataclass
class Recovered:
    """A recovered vector, and what could not be decided for sure."""

    vector: Vector
    library: str
    ambiguous: list = field(default_factory=list)    # (index, [candidates], chosen)
    ifunc_slots: list = field(default_factory=list)  # slot indices reached via an IPLT
    mismatched: list = field(default_factory=list)   # layout symbols the slots do not match


def recover(path):
    """Read the export vector of the library at ``path``: a :class:`Recovered`."""
    elf = ElfFile(path, operation="recovervec")
    name, table, size = _find_table(elf, path)
    if size <= 0 or size % 4:
        raise VectorMismatchError(f"{name} has size {size}, not a multiple of 4", path)
    count = size // 4
    data = elf.read(table, size)
    if len(data) != size:
        raise VectorMismatchError(f"{name} at {table:#x}: the file does not hold its "
                                  f"{size} bytes", path)
    functions = [s for s in elf.exported_functions() if not s.name.startswith(MAGIC)]
    versioned = any(s.version for s in functions)
    # A function by its address; an IFUNC by its resolver's (its st_value),
    # reached only through an IPLT entry: a slot pointing at the resolver
    # itself would call it, not the function it chooses.
    by_address, by_resolver = {}, {}
    for s in functions:
        table_of = by_resolver if s.kind == "ifunc" else by_address
        table_of.setdefault(s.value, []).append(slot_for(s, versioned))
    irelative = None
    candidates, ifunc_slots = [], []
    address_mask = (1 << 8 * elf.image.layout.word) - 1
    for i, (offset,) in enumerate(struct.iter_unpack("<i", data)):
        target = (table + offset) & address_mask
        found = by_address.get(target)
        if not found and by_resolver and elf.arch in arches.IFUNC_STUBS:
            if irelative is None:
                irelative = elf.irelative_relocations()
            found = by_resolver.get(_iplt_resolver(elf, target, irelative))
            if found:
                ifunc_slots.append(i)
        if not found:
            raise VectorMismatchError(
                f"slot {i}: cannot recover (no exported function at {target:#x}"
                f"{_undecoded(elf, by_resolver)})", path)
        candidates.append(sorted(set(found), key=_preference))
    layouts = _layouts(elf, name, table, count, path)
    slots, ambiguous, contradicted = _choose(candidates, layouts)
    if contradicted:
        start, length, expected = contradicted
        raise VectorMismatchError(
            f"the table contradicts its layout symbol {name}__{length}_{expected}: no choice "
            f"of the names at slots {start}..{length - 1} gives that fingerprint", path)
    vector = Vector(name, slots, [k for k, _ in layouts])
    mismatched = [f"{name}__{k}_{fp}" for k, fp in layouts
                  if fp is not None and fingerprint(slots[:k]) != fp]
    return Recovered(vector, path, ambiguous, ifunc_slots, mismatched)


def _find_table(elf, path):
    """``(name, address, size)`` of the library's vector table symbol."""
    objects = {s.name: s for s in elf.dynamic_symbols
               if s.defined and s.name.startswith(MAGIC) and s.kind == "object"}
    tables = [n for n in objects if not _layout_match(n, objects)]
    if not tables:
        raise VectorMismatchError("no export vector in this library (no __V_ symbol)", path)
    own = vector_name_for_soname(elf.soname or os.path.basename(path))
    if own in tables:
        name = own
    elif len(tables) == 1:
        name = tables[0]
    else:
        raise VectorMismatchError(f"several export vectors: {', '.join(sorted(tables))}", path)
    return name, objects[name].value, elf.symbol_size(name)


def _layout_match(symbol, objects):
    """True if ``symbol`` is a layout symbol ``<table>__<K>_<8 hex>`` of one
    of the ``objects``."""
    m = _LAYOUT_RE.fullmatch(symbol)
    return m is not None and m.group(1) in objects


def _layouts(elf, name, table, count, path):
    """``[(K, fingerprint)]`` of the layout symbols of ``name``, by K."""
    pattern = re.compile(re.escape(name) + r"__(\d+)_([0-9a-f]{8})")
    found = {}
    for s in elf.dynamic_symbols:
        m = pattern.fullmatch(s.name)
        if m and s.defined and s.value == table:
            found[int(m.group(1))] = m.group(2)
    layouts = sorted(found.items())
    if layouts and layouts[-1][0] > count:
        raise VectorMismatchError(
            f"layout symbol {name}__{layouts[-1][0]}_{layouts[-1][1]} is longer than "
            f"the {count}-slot table", path)
    if not layouts or layouts[-1][0] != count:
        layouts.append((count, None))
    return layouts


def _preference(slot):
    """The alias to name a slot by when nothing else decides: a public
    name (no leading underscore), the default version, the shorter name."""
    return (slot.name.startswith("_"), not slot.default, len(slot.name), slot.name,
            slot.version or "")


def _choose(candidates, layouts):
    """One slot per index; ``(slots, ambiguous, contradicted)``.

    Each layout fingerprint pins its prefix: the choice of aliases between
    the previous layout length and this one that reproduces it is the one
    the library was built with.  Tried in turn: each slot its preferred
    alias not taken by an earlier slot; the same in name order (how expvec
    orders a regex's matches); every combination, when there are at most
    MAX_COMBINATIONS.  Without a match (or a layout symbol) the first is
    kept, and its ambiguous slots are reported.

    ``contradicted`` is ``(start, length, fingerprint)`` of the first layout
    that no choice can match although everything before it matched: the
    table is not the one its layout symbol describes.  None otherwise.
    """
    slots, ambiguous, start, certain = [], [], 0, True
    for length, expected in layouts:
        segment = candidates[start:length]
        chosen = _greedy(slots, segment, _preference)
        if expected is not None and fingerprint(slots + chosen) != expected:
            chosen, decided = _fitting_choice(slots, segment, expected, chosen)
            if fingerprint(slots + chosen) != expected:
                if decided and certain:
                    return slots, ambiguous, (start, length, expected)
                certain = False
                ambiguous += _ambiguous_slots(segment, chosen, start)
        elif expected is None:
            ambiguous += _ambiguous_slots(segment, chosen, start)
        slots += chosen
        start = length
    return slots, ambiguous, None


def _fitting_choice(prefix, segment, expected, first):
    """Aliases for ``segment`` whose fingerprint after ``prefix`` is
    ``expected``: ``(choice, True)``; else ``(first, decided)``, ``decided``
    when every combination was tried (none fits)."""
    if all(len(options) == 1 for options in segment):
        return first, True
    by_name = _greedy(prefix, segment, lambda s: (s.name, s.version or ""))
    if fingerprint(prefix + by_name) == expected:
        return by_name, True
    if not _searchable(prefix, segment):
        return first, False
    found = _match(prefix, segment, expected)
    return (found, True) if found is not None else (first, True)


def _ambiguous_slots(segment, chosen, start):
    return [(i, options, pick) for i, (options, pick) in enumerate(zip(segment, chosen), start)
            if len(options) > 1]


def _greedy(prefix, segment, order):
    """Each slot of ``segment`` its first alias by ``order`` that no earlier
    slot holds (two slots at one address hold two of its names)."""
    chosen, used = [], {s.key for s in prefix}
    for options in segment:
        ranked = sorted(options, key=order)
        pick = next((o for o in ranked if o.key not in used), ranked[0])
        used.add(pick.key)
        chosen.append(pick)
    return chosen


def _searchable(prefix, segment):
    """True if trying every combination of ``segment``'s aliases stays within
    MAX_COMBINATIONS and MAX_HASHED_BYTES."""
    if math.prod(len(options) for options in segment) > MAX_COMBINATIONS:
        return False
    pieces, ambiguous, fixed = _search_parts(prefix, segment)
    nodes, cost = 1, 0
    for i in ambiguous:
        nodes *= len(segment[i])
        cost += nodes * (max(map(len, pieces[i])) + len(fixed[i]))
    return cost <= MAX_HASHED_BYTES


def _search_parts(prefix, segment):
    """The text each candidate adds, the ambiguous slots, and the fixed text
    after each ambiguous slot up to the next one (or the end)."""
    pieces = [[_piece(i, o) for o in options]
              for i, options in enumerate(segment, len(prefix))]
    ambiguous = [i for i, options in enumerate(segment) if len(options) > 1]
    fixed = {}
    for n, i in enumerate(ambiguous):
        stop = ambiguous[n + 1] if n + 1 < len(ambiguous) else len(segment)
        fixed[i] = b"".join(pieces[j][0] for j in range(i + 1, stop))
    return pieces, ambiguous, fixed


def _match(prefix, segment, expected):
    """The combination of ``segment``'s candidates whose fingerprint after
    ``prefix`` is ``expected``, or None: call it when :func:`_searchable`.

    A depth-first search over the ambiguous slots that hashes each common
    part once (SHA-256 states are copied, not recomputed), so a long vector
    with a few aliases costs little more than one fingerprint per leaf.
    """
    pieces, ambiguous, fixed = _search_parts(prefix, segment)
    state = hashlib.sha256(b"".join(_piece(i, s) for i, s in enumerate(prefix)))
    state.update(b"".join(pieces[j][0] for j in range(ambiguous[0] if ambiguous else 0)))
    used = {s.key for s in prefix} | {o[0].key for o in segment if len(o) == 1}
    choice = [options[0] for options in segment]

    def search(n, before):
        if n == len(ambiguous):
            return before.hexdigest()[:8] == expected
        i = ambiguous[n]
        for option, piece in zip(segment[i], pieces[i]):
            if option.key in used:
                continue
            used.add(option.key)
            choice[i] = option
            h = before.copy()
            h.update(piece + fixed[i])
            if search(n + 1, h):
                return True
            used.discard(option.key)
        return False

    if search(0, state) and fingerprint(prefix + choice) == expected:
        return choice
    return None


def _undecoded(elf, by_resolver):
    """Why an IFUNC's slot may have gone unrecognised: its IPLT entry is of
    an architecture whose entries are not decoded yet."""
    if by_resolver and elf.arch not in arches.IFUNC_STUBS:
        return f"; IPLT entries of {elf.image.arch.label} are not decoded yet"
    return ""


def _piece(index, slot):
    """Slot ``index``'s part of the text :func:`vecfile.fingerprint` hashes."""
    return (b"\n" if index else b"") + slot.identity.encode("utf-8", "surrogateescape")


def _iplt_resolver(elf, address, irelative):
    """The IFUNC resolver behind the IPLT entry at ``address``, or None.

    The entry jumps through a GOT word (``elfvector.arch.<arch>.indirect_jump_target``
    decodes it: ``jmp *GOT(%rip)`` on x86-64, ``adrp``/``ldr``/``br`` on
    AArch64, retrovec's stub or ``jmp *ADDR`` on i386); that word's
    IRELATIVE addend is the resolver.
    """
    code = arches.for_arch(elf.arch)
    got = code.indirect_jump_target(elf.read(address, code.INDIRECT_JUMP_MAX), address)
    return irelative.get(got)
