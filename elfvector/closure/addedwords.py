"""The words a closure rewrite adds to an object's writable data.

Each check needs a word for its GLOB_DAT, and the fix-up routine one that
its IRELATIVE stores (and, for the object's own words, one a RELATIVE
sets).  A page dirtied for them alone would cost every process a
copy-on-write fault and a private page, so they go, when there is room, on
pages ld.so writes anyway (:func:`pages_written_anyway`): the GOT's dead
header words, and the words past ``.bss`` in the last writable page.
"""

from ..elfimage import PF_W, PT_LOAD, SHF_ALLOC, SHT_NOBITS
from ..errors import UnsupportedElfError
from .model import Settle, SettleZero
from .output import PAGE, align_up, page_end

DT_PLTGOT, DT_DEBUG = 3, 21


def page_of(address):
    return address // PAGE


def added_words(rw, out, count, exclude=()):
    """Addresses of ``count`` words for the checks' GLOB_DATs and the
    fix-up (``rw``: the staged rewrite), on pages ld.so writes anyway when
    they have room (a page dirtied for them alone costs a copy-on-write
    fault and a private page): the GOT's two dead header words
    (:func:`dead_got_words`) and the words past the end of the last
    writable segment (its ``.bss``) up to that page's end.  Then the other
    dead header words, then more words past ``.bss``.  No section header
    covers words past ``.bss`` (the segment's memory size does): ``.bss``
    keeps its size, as valgrind requires, and gdb finds no section its
    separate debug file lacks.  ``exclude``: dead header words taken already."""
    word = rw.arch.word
    last = max((p for p in out.phdrs if p.type == PT_LOAD and p.flags & PF_W),
               key=lambda p: p.vaddr, default=None)
    dead = [w for w in dead_got_words(rw) if w not in exclude]
    if last is None and count > len(dead):
        raise UnsupportedElfError("no writable segment for the check words", rw.obj.source)
    dirty = pages_written_anyway(rw, out)
    bss = align_up(last.vaddr + last.memsz, word) if last is not None else None
    bss_dirty = (page_end(bss + 1) - bss) // word if bss is not None and \
        page_of(bss) in dirty else 0
    words = [w for w in dead if page_of(w) in dirty][:count]
    past_bss = min(count - len(words), bss_dirty)
    words += [w for w in dead if page_of(w) not in dirty][:count - len(words) - past_bss]
    past_bss = count - len(words)
    in_dead = len(words)
    if past_bss:
        last.memsz = bss + word * past_bss - last.vaddr
        words += [bss + word * k for k in range(past_bss)]
    rw.report.check_words = _where_words(in_dead, bss, past_bss, bss_dirty, word)
    rw.report.check_pages = len({page_of(w) for w in words} - dirty)
    return words


def _where_words(in_dead, bss, past_bss, bss_dirty, word):
    """The report's words on where :func:`added_words` put them."""
    where = [f"{in_dead} in the GOT's dead header"] if in_dead else []
    if past_bss:
        page = ("its last page, written anyway" if past_bss <= bss_dirty else
                "a new page" if page_of(bss + word * past_bss - 1) != page_of(bss - 1)
                else "its last page")
        where.append(f"{past_bss} at {bss:#x}, past .bss in {page}")
    return ", ".join(where) or "none"


def dead_got_words(rw):
    """GOT[1] and GOT[2] (at DT_PLTGOT): ld.so's link_map and lazy
    resolver, which ``elf_machine_runtime_setup`` stores only for
    DT_JMPREL, which the output keeps only for lazy slots.  Only when they
    are zero writable file bytes that no relocation writes."""
    got, word = rw.image.dyn(DT_PLTGOT), rw.arch.word
    if rw.lazy or not got or not rw.in_writable_file_bytes(got + word) or \
            not rw.in_writable_file_bytes(got + 2 * word) or \
            rw.image.read(got + word, 2 * word) != bytes(2 * word) or \
            any(got + word <= r.rela.offset < got + 3 * word for r in rw.relocs):
        return []
    return [rw.mv(got) + word, rw.mv(got) + 2 * word]


def padding_words(rw):
    """Words of the writable segments' file bytes that no section covers
    (alignment padding, as between ``.got.plt`` and a 32-aligned ``.data``),
    that hold 0 and that no relocation writes: free words with file
    contents, at new addresses.  A REL object's fix-up needs one."""
    image, word = rw.image, rw.arch.word
    covered = sorted((s.addr, s.addr + s.size) for s in image.shdrs
                     if s.flags & SHF_ALLOC and s.type != SHT_NOBITS and s.size)
    written = {r.rela.offset for r in rw.relocs}
    free = []
    for p in rw.loads:
        if not p.flags & PF_W:
            continue
        for at in range(align_up(p.vaddr, word), p.vaddr + p.filesz - word + 1, word):
            if at in written or any(start < at + word and at < end for start, end in covered):
                continue
            if image.read(at, word) == bytes(word):
                free.append(rw.mv(at))
    return free


def pages_written_anyway(rw, out):
    """Pages ld.so dirties at start-up whatever words the rewrite adds:
    those of the words that kept relocations write (the PIE program's
    RELATIVEs, every IRELATIVE and every lazy slot included), the page after
    a writable segment's file bytes that ld.so zeroes up to ``.bss``'s end
    (glibc ``_dl_map_segments``), and a program's DT_DEBUG entry.  An
    under-estimate is safe: it only costs a page that could be saved."""
    pages = {page_of(rw.mv(r.rela.offset)) for r in rw.relocs
             if not isinstance(r.decision, (Settle, SettleZero)) and r.rela.type}
    if not rw.settles_relr:
        pages |= {page_of(rw.mv(address)) for address in rw.relr_words}
    for p in out.phdrs:
        end = p.vaddr + p.filesz
        if p.type == PT_LOAD and p.flags & PF_W and p.memsz > p.filesz and end % PAGE:
            pages.add(page_of(end))
    if rw.obj.is_program and DT_DEBUG in (t for t, _ in rw.dynamic):
        pages.add(page_of(rw.debug_word()))
    return pages
