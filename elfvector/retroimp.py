"""retroimp: bind an already linked program's PLT through export vectors.

A PLT entry jumps through its GOT slot; ld.so fills that slot from a
``R_X86_64_JUMP_SLOT`` relocation, i.e. one symbol lookup per function.
retroimp turns each vectored function's JUMP_SLOT into an
``R_X86_64_IRELATIVE`` whose "resolver" is a 16-byte stub of ours that
returns ``table + table[index]`` from the library's export vector.  The
same holds on i386 (``R_386_JUMP_SLOT``) and AArch64
(``R_AARCH64_JUMP_SLOT``), with that architecture's stubs
(``elfvector.arch.<arch>``); i386's relocations are REL, whose addend is
the relocated word, so there the GOT slot is written with the stub's
address.  ld.so
runs those resolvers while it relocates the file, before any constructor,
under lazy binding and BIND_NOW alike, so early calls, threads and
``dlopen`` need nothing more: the PLT code is untouched and a call costs
what a bound PLT call costs.

The table's address comes from one ``R_X86_64_GLOB_DAT`` per vector against
its layout symbol, appended to ``.rela.dyn`` (which ld.so applies before
DT_JMPREL).  The symbol needs a ``.dynsym`` entry: the entry of one of the
vectored functions, which no relocation names any more, is renamed to it.
So the file's symbol lookups fall by (vectored functions - vectors), and a
library without the expected layout makes ld.so refuse to load the file.
"""

import os
import struct

from . import arch as arches
from .dyntables import RelaDynGrowth, grow_dynstr, pack_u16s
from .elfimage import (DT_GNU_HASH, DT_HASH, DT_JMPREL, DT_PLTRELSZ, DT_SYMTAB, DT_VERSYM,
                       PF_R, PF_W, PF_X, STB_GLOBAL, STT_OBJECT, ElfImage, Sym, read_elf_file)
from .elfwrite import Appender, align_up
from .errors import UnsupportedElfError, VectorMismatchError
from .importvec import plan
from .ldso import Ldd
from .patterns import DEFAULT_IMPORT_EXCLUDES, PatternList
from .retrovec import LibrarySymbols, pack_symbols
from .vecfile import MAGIC

MARKER_SECTION = ".elfvector.resolvers"


def retroimp(xclude_arg, vectors, path, library_path=(), root=""):
    """Return (new file bytes, ImportPlan) for the ELF file at ``path``.

    Its libraries are those ld.so loads for it (:mod:`elfvector.ldso`), with
    ``library_path`` in front of LD_LIBRARY_PATH, in a chroot of ``root``
    ("": this system; a sysroot of the file's architecture)."""
    image = ElfImage(read_elf_file(path), path, "retroimp")
    if image.dynamic is None:
        raise UnsupportedElfError("statically linked: nothing to bind", path)
    if image.section(MARKER_SECTION)[0] is not None:
        raise VectorMismatchError("already rewritten by retroimp", path)
    syms = LibrarySymbols(image)
    if any(n.startswith(MAGIC) and not syms.syms[i].defined for i, n in enumerate(syms.names)):
        raise VectorMismatchError("already imports through vectors", path)
    jump_slots = {r.sym: r for r in image.relas(DT_JMPREL, DT_PLTRELSZ)
                  if r.type == image.arch.jump_slot}
    callable_only = {(syms.names[i], syms.version_of(i)[0]) for i in jump_slots}
    excludes = PatternList.from_arg(xclude_arg, "xclude", DEFAULT_IMPORT_EXCLUDES)
    env_path = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    ldd = Ldd(":".join(list(library_path) + env_path), root=root, operation="retroimp")
    linkmap = ldd.linkmap(path, image)
    decided = plan(linkmap, {v.name: v for v in vectors}, excludes, callable_only)
    groups = _slot_groups(image, syms, jump_slots, decided)
    if not groups:
        return None, decided
    return _rewrite(image, syms, jump_slots, groups), decided


def _slot_groups(image, syms, jump_slots, decided):
    """Per vector: (vector, [(dynsym index, slot index)], index of the entry to rename)."""
    others = _symbols_named_elsewhere(image, jump_slots)
    index_of = {(syms.names[i], syms.version_of(i)[0]): i for i in jump_slots}
    groups = []
    for vec, choices in decided.vectors:
        slots = []
        for choice in choices:
            version = vec.slots[choice.index].version
            i = index_of.get((choice.name, version)) or index_of.get((choice.name, None))
            if i is not None:
                slots.append((i, choice.index))
        renamable = [i for i, _ in slots if i not in others and syms.syms[i].value == 0]
        if not renamable:
            decided.kept += [(syms.names[i], "no .dynsym entry to reuse for the vector")
                             for i, _ in slots]
            continue
        groups.append((vec, slots, renamable[0]))
    return groups


def _symbols_named_elsewhere(image, jump_slots):
    """Symbol indices named by any relocation other than their own JUMP_SLOT."""
    named = {r.sym for r in image.dynamic_relocations()}
    named |= {r.sym for r in image.relas(DT_JMPREL, DT_PLTRELSZ)
              if r.type != image.arch.jump_slot}
    return named


def _rewrite(image, syms, jump_slots, groups):
    arch, layout = image.arch, image.layout
    code = arches.for_arch(arch.name)
    appender = Appender(image)
    layout_names = [vec.layout_symbol() for vec, _, _ in groups]
    offsets = grow_dynstr(appender, layout_names)
    # .dynsym (with the renamed entries) and the hash tables move out, which
    # also frees the room the program header table needs to grow.
    dynsym = list(syms.syms)
    for (vec, _, renamed), name in zip(groups, layout_names):
        dynsym[renamed] = Sym(offsets[name], (STB_GLOBAL << 4) | STT_OBJECT, 0, 0, 0, 0)
    vaddr = appender.add_data(pack_symbols(dynsym, layout), 8)
    appender.set_dynamic(DT_SYMTAB, vaddr)
    appender.move_section(".dynsym", vaddr, len(dynsym) * layout.sym.size)
    for tag, name in ((DT_GNU_HASH, ".gnu.hash"), (DT_HASH, ".hash")):
        _move_verbatim(appender, image, tag, name)
    slots = [(i, vi, index) for vi, (_, members, _) in enumerate(groups) for i, index in members]
    descriptors = appender.add_data(
        b"".join(struct.pack("<II", index, vi) for _, vi, index in slots), 8,
        section=".elfvector.slots")
    rela_dyn = RelaDynGrowth(appender, len(groups))
    stubs_offset = align_up(code.RESOLVER_COMMON_SIZE, 16)
    code_at = appender.alloc(stubs_offset + code.RESOLVER_STUB_SIZE * len(slots), 16,
                             PF_R | PF_X, section=MARKER_SECTION)
    word = layout.word
    got_at = appender.alloc(word * len(groups), word, PF_R | PF_W, section=".elfvector.got")
    common = code_at
    appender.put(common, code.resolver_common(common, descriptors, got_at))
    stubs_at = code_at + stubs_offset
    stub_of = {}
    for number, (i, _, _) in enumerate(slots):
        stub = stubs_at + number * code.RESOLVER_STUB_SIZE
        appender.put(stub, code.resolver_stub(stub, number, common))
        stub_of[i] = stub
    plt = []
    for r in image.relas(DT_JMPREL, DT_PLTRELSZ):
        if r.type == arch.jump_slot and r.sym in stub_of:
            r = layout.relocation(r.offset, 0, arch.irelative, stub_of[r.sym], arch.rela)
            if not arch.rela:       # REL: ld.so calls the address in the word
                appender.patch(r.offset, r.addend.to_bytes(word, "little"))
        plt.append(r)
    appender.patch(image.dyn(DT_JMPREL), b"".join(r.pack() for r in plt))
    rela_dyn.fill([layout.relocation(got_at + word * k, renamed, arch.glob_dat, 0, arch.rela)
                   for k, (_, _, renamed) in enumerate(groups)])
    if syms.versym is not None:
        for _, _, renamed in groups:
            appender.patch(image.dyn(DT_VERSYM) + 2 * renamed, pack_u16s([1]))
    return appender.write()


def _move_verbatim(appender, image, tag, section):
    """Copy a table that must leave the first segment, unchanged."""
    addr = image.dyn(tag)
    if not addr:
        return
    _, shdr = image.section(section)
    if shdr is None:
        raise UnsupportedElfError(f"no section header for {section}", image.path)
    vaddr = appender.add_data(image.read(addr, shdr.size), 8)
    appender.set_dynamic(tag, vaddr)
    appender.move_section(section, vaddr, shdr.size)
