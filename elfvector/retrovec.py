"""retrovec: add an export vector to an already built shared library.

The library gets, in one appended read-only segment: a rebuilt
``.dynsym`` (its symbols plus the vector symbol and its layout symbols,
re-sorted into the GNU hash buckets), ``.dynstr``, ``.gnu.hash``
(``.hash``), ``.gnu.version``, and the export table itself.  Relocations
keep their places; only their symbol indices are renumbered.  A vectored
IFUNC gets a stub ``jmp *got(%rip)`` whose GOT word an
``R_X86_64_IRELATIVE`` fills with what the resolver selects, as the link
editor's IPLT does for expvec.

i386 (ELF32, REL) and AArch64 libraries get the same tables in their own
class, and their own IFUNC stubs (``elfvector.arch.<arch>.iplt_stub``):
on i386 the new ``R_386_IRELATIVE``'s addend, the resolver, is written
into its GOT word, where a REL relocation keeps it.
"""

import struct

from . import arch as arches
from .dyntables import RelaDynGrowth, grow_dynstr, pack_u16s
from .elfimage import (DT_GNU_HASH, DT_HASH, DT_JMPREL, DT_PLTRELSZ, DT_SYMTAB, DT_VERSYM,
                       ELF64, ET_DYN, PF_R, PF_W, PF_X, STB_GLOBAL, STB_WEAK, STT_FUNC, STT_GNU_IFUNC,
                       STT_OBJECT, ElfImage, Sym, build_gnu_hash, build_sysv_hash, gnu_hash,
                       gnu_hash_header)
from .elfwrite import Appender
from .errors import NotElfError, UnsupportedElfError, VectorMismatchError
from .vecfile import MAGIC

STV_MASK, STV_DEFAULT, STV_PROTECTED = 3, 0, 3


class LibrarySymbols:
    """The dynamic symbols of a library with names and versions resolved,
    indexed by name (a lookup per slot must not scan the whole table)."""

    def __init__(self, image):
        self.image = image
        self.syms = image.dynsyms()
        self.names = image.symbol_names()
        self.versym = image.versyms()
        self.version_names = image.version_names()
        self._by_name = {}
        for i, name in enumerate(self.names):
            self._by_name.setdefault(name, []).append(i)

    def named(self, name):
        """Indices of the symbols called ``name``."""
        return self._by_name.get(name, [])

    def version_of(self, index):
        """(version name or None, is default).

        Version indices 0 (local) and 1 (global, the base definition named
        like the file) mean no version, as in ``readelf``.
        """
        if self.versym is None:
            return None, True
        v = self.versym[index]
        if v & 0x7FFF <= 1:
            return None, True
        return self.version_names.get(v & 0x7FFF), not v & 0x8000

    def exported(self, index):
        s = self.syms[index]
        return (s.defined and s.bind in (STB_GLOBAL, STB_WEAK)
                and s.other & STV_MASK in (STV_DEFAULT, STV_PROTECTED))

    def _functions_named(self, name):
        return [i for i in self.named(name)
                if self.exported(i) and self.syms[i].type in (STT_FUNC, STT_GNU_IFUNC)]

    def default_version(self, name):
        """The version of the default definition of the function ``name``
        (None: unversioned, or no such function): what a plain name in a
        ``.vec`` means, as an unversioned reference does to the link editor."""
        for i in self._functions_named(name):
            version, default = self.version_of(i)
            if default:
                return version
        return None

    def find_function(self, slot):
        """Index of the exported function a slot names; a clear error otherwise."""
        for i in self._functions_named(slot.name):
            version, default = self.version_of(i)
            if version == slot.version and (slot.version is not None or default):
                return i
        raise VectorMismatchError(f"{slot} {self._why_not(slot)}", self.image.path)

    def _why_not(self, slot):
        functions = self._functions_named(slot.name)
        if functions:
            held = sorted(f"{slot.name}{'@@' if d else '@'}{v}"
                          for v, d in map(self.version_of, functions) if v)
            return f"is not defined at this version (the library has {', '.join(held)})"
        if any(self.exported(i) for i in self.named(slot.name)):
            return "is data, not a function"
        return "is not an exported function"


def retrovec(vector, data, path):
    """The bytes of the library ``data`` with ``vector`` added."""
    image = ElfImage(data, path, "retrovec")
    if image.type != ET_DYN or image.dynamic is None or image.is_pie:
        kind = " (a position-independent executable)" if image.is_pie else ""
        raise UnsupportedElfError(f"not a shared library{kind}", path)
    if not image.dyn(DT_GNU_HASH):
        raise UnsupportedElfError("no .gnu.hash table (DT_GNU_HASH)", path)
    lib = LibrarySymbols(image)
    if any(n.startswith(MAGIC) and lib.syms[i].defined for i, n in enumerate(lib.names)):
        raise VectorMismatchError("already has an export vector", path)
    vector = vector.resolved(lib.default_version)
    targets = [lib.find_function(slot) for slot in vector.slots]
    _check_ifunc_stubs(lib, vector, targets)
    layout = image.layout
    appender = Appender(image)
    new_names = [vector.name] + vector.layout_symbols()
    order = _dynsym_order(image, lib.names, new_names)
    renumber = {old: new for new, old in enumerate(order) if old < len(lib.syms)}
    # Read-only part: dynstr, dynsym, hashes, versym, export table.
    offsets = grow_dynstr(appender, new_names)
    table_size = 4 * len(vector.slots)
    symtab_at = appender.alloc(len(order) * layout.sym.size, layout.word)
    _write_hashes(appender, image, lib.names, new_names, order)
    if lib.versym is not None:
        versym = [lib.versym[i] if i < len(lib.syms) else 1 for i in order]
        vaddr = appender.add_data(pack_u16s(versym), 2)
        appender.set_dynamic(DT_VERSYM, vaddr)
        appender.move_section(".gnu.version", vaddr, 2 * len(order))
    ifuncs = [i for i in dict.fromkeys(targets) if lib.syms[i].type == STT_GNU_IFUNC]
    relas = [_renumbered(r, renumber) for r in image.dynamic_relocations()]
    got_at = {}
    if ifuncs:
        # IRELATIVE relocations for the IFUNC stubs' GOT words; sized now,
        # addresses known once the code and data segments exist.
        rela_dyn = RelaDynGrowth(appender, len(ifuncs))
    table_at = appender.alloc(table_size, 4, section=f".rodata.{vector.name}")
    export_index = appender.section_index(f".rodata.{vector.name}")
    address = {i: lib.syms[i].value for i in targets}
    if ifuncs:
        code = arches.for_arch(image.arch.name)
        stubs_at = appender.alloc(code.IPLT_STUB_SIZE * len(ifuncs), 16, PF_R | PF_X,
                                  section=".elfvector.iplt")
        word = layout.word
        got_base = appender.alloc(word * len(ifuncs), word, PF_R | PF_W,
                                  section=".elfvector.got")
        for k, i in enumerate(ifuncs):
            stub, got_at[i] = stubs_at + k * code.IPLT_STUB_SIZE, got_base + word * k
            appender.put(stub, code.iplt_stub(stub, got_at[i]))
            address[i] = stub
            if not image.arch.rela:         # REL: the addend (the resolver) is the word
                appender.put(got_at[i], lib.syms[i].value.to_bytes(word, "little"))
        rela_dyn.fill([layout.relocation(got_at[i], 0, image.arch.irelative, lib.syms[i].value,
                                         image.arch.rela) for i in ifuncs], old=relas)
    elif relas:
        appender.patch(image.dyn(image.dynamic_relocation_tags[0]),
                       b"".join(r.pack() for r in relas))
    appender.put(table_at, pack_offsets(vector, [address[i] for i in targets], table_at, path))
    # The symbol table itself, now that the export section index is known.
    syms = []
    for i in order:
        if i < len(lib.syms):
            syms.append(lib.syms[i])
        else:
            k = i - len(lib.syms)
            size = table_size if k == 0 else 4 * vector.layouts[k - 1]
            syms.append(Sym(offsets[new_names[k]], (STB_GLOBAL << 4) | STT_OBJECT, STV_DEFAULT,
                            export_index, table_at, size))
    appender.put(symtab_at, pack_symbols(syms, layout))
    appender.set_dynamic(DT_SYMTAB, symtab_at)
    appender.move_section(".dynsym", symtab_at, len(syms) * layout.sym.size)
    plt = [_renumbered(r, renumber) for r in image.relas(DT_JMPREL, DT_PLTRELSZ)]
    if plt:
        appender.patch(image.dyn(DT_JMPREL), b"".join(r.pack() for r in plt))
    data = appender.write()
    check_slots(ElfImage(data, path, "retrovec"), vector)
    return data


def _check_ifunc_stubs(lib, vector, targets):
    """A vectored IFUNC needs a stub (its slot cannot hold the resolver);
    an architecture without one refuses the vector, naming the IFUNC."""
    arch = lib.image.arch
    if arch.name in arches.IFUNC_STUBS:
        return
    for slot, i in zip(vector.slots, targets):
        if lib.syms[i].type == STT_GNU_IFUNC:
            raise UnsupportedElfError(f"{slot} is an IFUNC: its slot needs a stub that retrovec does "
                               f"not write for {arch.label} yet (leave it out of the vector)",
                               lib.image.path)


def pack_offsets(vector, addresses, table_at, path):
    """The table: each slot the signed 32-bit offset from the table to its
    function.  The table follows every segment (a huge ``.bss`` included),
    so in a library spanning more than 2 GiB a function may be out of reach:
    an error naming it, never a truncated offset."""
    offsets = [address - table_at for address in addresses]
    for slot, address, offset in zip(vector.slots, addresses, offsets):
        if not -2**31 <= offset < 2**31:
            raise UnsupportedElfError(
                f"{slot} at {address:#x} is {abs(offset) / 2**30:.1f} GiB from the vector "
                f"table at {table_at:#x}, which follows the library's segments: a slot holds "
                "a 32-bit offset, so the library may span 2 GiB at most", path)
    return struct.pack(f"<{len(offsets)}i", *offsets)


def check_slots(image, vector, local_functions=None):
    """Every slot of the written table must lead to the function it names.

    A function's slot holds its address; an IFUNC's slot an entry
    ``jmp *GOT(%rip)`` whose GOT word an ``R_X86_64_IRELATIVE`` fills from
    that IFUNC's resolver (ld's IPLT entry, or retrovec's stub).  A slot
    that leads anywhere else would make a program call the wrong code: it
    is an error naming the library, and nothing is written.
    ``local_functions`` (name -> [(address, is IFUNC)], from ``.symtab``)
    holds the functions that the vector exports and ``.dynsym`` does not
    (vector-only); the slot must lead to one of them.
    """
    lib = LibrarySymbols(image)
    table = _table_address(lib, vector, image.path)
    offsets = struct.unpack(f"<{len(vector.slots)}i", image.read(table, 4 * len(vector.slots)))
    irelative = None
    address_mask = (1 << 8 * image.layout.word) - 1
    for i, (slot, offset) in enumerate(zip(vector.slots, offsets)):
        target = (table + offset) & address_mask
        definitions = _definitions(lib, slot, local_functions)
        if any(is_ifunc for _, is_ifunc in definitions) and irelative is None:
            irelative = _irelative_addends(image)
        if not any(irelative.get(_jump_slot_of(image, target)) == address if is_ifunc
                   else target == address for address, is_ifunc in definitions):
            where = ", ".join(f"{a:#x}" for a, _ in definitions) or "nowhere"
            raise VectorMismatchError(
                f"slot {i} ({slot}) leads to {target:#x}, not to {slot.name} at {where}: "
                "the vector would call the wrong code, so nothing was written", image.path)


def _table_address(lib, vector, path):
    for i in lib.named(vector.name):
        if lib.syms[i].defined and lib.syms[i].size == 4 * len(vector.slots):
            return lib.syms[i].value
    raise VectorMismatchError(f"{vector.name} with {len(vector.slots)} slots is not in .dynsym",
                              path)


def _definitions(lib, slot, local_functions):
    """[(address, is IFUNC)] of the function ``slot`` names."""
    if local_functions and slot.name in local_functions:
        return local_functions[slot.name]
    sym = lib.syms[lib.find_function(slot)]
    return [(sym.value, sym.type == STT_GNU_IFUNC)]


def _jump_slot_of(image, target):
    """The GOT word the entry at ``target`` jumps through, or None."""
    code = arches.for_arch(image.arch.name)
    for size in range(code.INDIRECT_JUMP_MAX, 5, -1):     # an entry may end a segment
        try:
            return code.indirect_jump_target(image.read(target, size), target)
        except NotElfError:
            continue
    return None


def _irelative_addends(image):
    """GOT word -> resolver, of every IRELATIVE relocation."""
    relas = image.dynamic_relocations() + image.relas(DT_JMPREL, DT_PLTRELSZ)
    return {r.offset: r.addend for r in relas if r.type == image.arch.irelative}


def pack_symbols(syms, layout=ELF64):
    """``syms`` as .dynsym bytes of ``layout``'s class, without a dataclass
    walk per symbol where the record's fields are in the dataclass's order."""
    if layout is not ELF64:
        return b"".join(layout.pack_sym(s) for s in syms)
    pack = layout.sym.pack
    return b"".join(pack(s.name, s.info, s.other, s.shndx, s.value, s.size) for s in syms)


def _dynsym_order(image, names, new_names):
    """Old indices (and new ones, numbered after them) in the new .dynsym order.

    Symbols below the GNU hash's ``symoffset`` keep their index; the hashed
    ones, old and new, are grouped by bucket as ld.so's lookup requires.
    """
    nbucket, symoffset, _, _ = gnu_hash_header(image)
    all_names = names + new_names
    hashed = range(symoffset, len(all_names))
    return list(range(symoffset)) + sorted(hashed, key=lambda i: gnu_hash(all_names[i]) % nbucket)


def _write_hashes(appender, image, names, new_names, order):
    all_names = names + new_names
    nbucket, symoffset, bloom_size, shift = gnu_hash_header(image)
    ordered = [all_names[i] for i in order]
    table = build_gnu_hash(ordered[symoffset:], symoffset, nbucket, bloom_size, shift,
                           8 * image.layout.word)
    vaddr = appender.add_data(table, 8)
    appender.set_dynamic(DT_GNU_HASH, vaddr)
    appender.move_section(".gnu.hash", vaddr, len(table))
    if image.dyn(DT_HASH):
        old_nbucket = struct.unpack("<I", image.read(image.dyn(DT_HASH), 4))[0]
        table = build_sysv_hash(ordered, old_nbucket)
        vaddr = appender.add_data(table, 8)
        appender.set_dynamic(DT_HASH, vaddr)
        appender.move_section(".hash", vaddr, len(table))


def _renumbered(rela, renumber):
    if rela.sym == 0:
        return rela
    return rela.renumbered(renumber[rela.sym])
