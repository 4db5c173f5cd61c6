"""vecstat: which dynamic functions programs import, from where, how often.

The seed's frequency script as an operation: ``nm -u --dynamic`` over the
dynamically linked files among the arguments, ``sort | uniq -c | sort -rn``.
Here each undefined function is also attributed to the library ld.so binds
it to (:mod:`elfvector.ldso`: the file's closure as ``ld.so --list``
loads it, and ld.so's lookup of the function at the version the file asks
for).  A count is a number of files; a file reached under several names
(symbolic or hard links) counts once.

The counts give a library its first vector: its most used functions first
(:func:`vector_for`), so that the slots programs need most are the oldest.
"""

import os
from collections import Counter
from dataclasses import dataclass, field

from .elffile import ElfFile
from .elfimage import ElfImage, not_regular_reason, read_elf_file
from .errors import ElfvectorError, UnsupportedElfError, VectorMismatchError
from .exportvec import slot_for
from .ldso import CLASS_PLT, STT_FUNC, STT_GNU_IFUNC, Ldd, Version
from .ldso.lookup import lookup_in
from .patterns import DEFAULT_IMPORT_EXCLUDES, PatternList
from .vecfile import MAGIC, Slot, Vector, vector_name_for_soname

UNRESOLVED = "unresolved"
OPERATION = "vecstat"   #: files are read for it: the architectures arch.SUPPORTED gives it
_ELF_MAGIC = b"\x7fELF"


class NothingUsedError(VectorMismatchError):
    """No function of the library is used by the files: its vector would be
    empty (``vecstat --if-used`` skips such a library quietly)."""


@dataclass
class LibraryUses:
    """The imports attributed to one library (or to none: ``elf`` None).

    ``elf`` is the library's :class:`~elfvector.ldso.ElfObject`, ``name``
    the path ld.so opened it by.  ``counts`` maps ``(name, version)`` as the
    files ask for it (``version`` None for an unversioned reference) to
    the number of files.
    """

    label: str
    elf: object = None
    name: str = None
    counts: Counter = field(default_factory=Counter)

    @property
    def total(self):
        return sum(self.counts.values())

    def ranked(self):
        """``(count, "name[@version]")``, most frequent first, ties by name."""
        rows = [(n, name if version is None else f"{name}@{version}")
                for (name, version), n in self.counts.items()]
        return sorted(rows, key=lambda row: (-row[0], row[1]))


@dataclass
class Stats:
    """What :func:`scan` found."""

    files: list = field(default_factory=list)        # the paths counted
    groups: dict = field(default_factory=dict)       # library key -> LibraryUses
    missing: set = field(default_factory=set)        # DT_NEEDED names not found
    unreadable: list = field(default_factory=list)   # (path, reason)
    ldd: Ldd = None
    first: object = None                             # LinkMap of the first file
    bound: dict = field(default_factory=dict)        # (closure, name, Version) -> group

    def libraries(self):
        """Groups by total uses, then label; unresolved last."""
        known = sorted((g for k, g in self.groups.items() if k != UNRESOLVED),
                       key=lambda g: (-g.total, g.label))
        return known + ([self.groups[UNRESOLVED]] if UNRESOLVED in self.groups else [])


def open_inputs(paths, unreadable, skipped=None):
    """Yield the usable dynamic ELF files among ``paths`` (as ElfImages),
    each file once.

    Like the seed's ``file | sed`` filter, anything else (not ELF, static,
    an object file, a directory, another architecture) is skipped, and its
    reason appended to ``skipped`` as ``(path, reason, unsupported)``
    (``unsupported``: an ELF file of a kind vecstat does not handle, such
    as another architecture); a path that cannot be read at all is
    appended to ``unreadable`` with the reason.
    """
    seen = set()
    skipped = [] if skipped is None else skipped
    for path in paths:
        try:
            st = os.stat(path)
            if not_regular_reason(st.st_mode):
                skipped.append((path, not_regular_reason(st.st_mode), False))
                continue
            if _magic(path) != _ELF_MAGIC:
                skipped.append((path, "not an ELF file", False))
                continue
        except OSError as e:
            unreadable.append((path, e.strerror))
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            image = ElfImage(read_elf_file(path), path, OPERATION)
        except ElfvectorError as e:
            skipped.append((path, e.reason, isinstance(e, UnsupportedElfError)))
            continue
        elf = ElfFile.from_image(image)
        if elf.is_dynamic or elf.is_shared_object:
            yield image
        else:
            skipped.append((path, "not a dynamically linked ELF file (statically linked)", False))


def _magic(path):
    """The first four bytes of a regular file (opened without blocking)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        return f.read(4)


def scan(paths, library_path=(), root=""):
    """Count the undefined dynamic functions of the ELF files in ``paths``,
    their libraries found as ld.so would find them with ``library_path``
    (LD_LIBRARY_PATH's directories) in a system under the directory
    ``root`` ("": this one; a sysroot of another system's packages, say of
    another architecture, as ``ldd`` would in a chroot of it)."""
    stats = Stats(ldd=Ldd(":".join(library_path), root=root, operation=OPERATION))
    skipped = []
    for image in open_inputs(paths, stats.unreadable, skipped):
        try:
            linkmap = stats.ldd.linkmap(image.path, image)
        except ElfvectorError as e:
            skipped.append((image.path, e.reason, isinstance(e, UnsupportedElfError)))
            continue
        stats.files.append(image.path)
        stats.first = stats.first or linkmap
        stats.missing.update(name for _, name, _ in linkmap.not_found)
        _count(stats, linkmap)
        if not linkmap.main.elf.file.is_shared_object:
            stats.ldd.forget(image.path)        # a program: no other file loads it
    if not stats.files:
        _nothing_counted(paths, stats.unreadable, skipped)
    return stats


def _nothing_counted(paths, unreadable, skipped):
    """The error when no argument could be counted: the one file's reason,
    or, among several, the first ELF file vecstat does not handle (a
    library of another architecture, say 32-bit ARM, is no "not
    dynamically linked" file), else that none is a dynamically linked ELF
    file."""
    if len(paths) == 1:
        reason = f"cannot read: {unreadable[0][1]}" if unreadable else skipped[0][1]
        raise ElfvectorError(reason, paths[0])
    unsupported = [(path, reason) for path, reason, refused in skipped if refused]
    if unsupported:
        path, reason = unsupported[0]
        raise UnsupportedElfError(f"{reason}; none of the {len(paths)} arguments is a "
                                  "dynamically linked ELF file vecstat handles", path)
    raise ElfvectorError("no dynamically linked ELF file among the arguments")


def _count(stats, linkmap):
    """Count each function the file of ``linkmap`` imports under the
    library ld.so binds it to (a call: a lookup of PLT class).  Files that
    load the same libraries share the answers (``stats.bound``), unless
    the file itself defines the name."""
    main = linkmap.main
    closure = tuple(id(o.elf) for o in linkmap.search_list[1:])
    counted = set()
    for name, version in main.elf.imported_functions():
        key = (name, version.name if version else None)
        if key in counted:
            continue
        counted.add(key)
        shared = None if name in main.elf.index else (closure, name, version)
        group = stats.bound.get(shared)
        if group is None:
            found = linkmap.lookup(name, main, version, CLASS_PLT)
            group = _group(stats, found[0] if found else None)
            if shared:
                stats.bound[shared] = group
        group.counts[key] += 1


def _group(stats, lib):
    """The LibraryUses of the MappedObject ``lib`` (None: unresolved); one
    per file on disk."""
    key = UNRESOLVED if lib is None else lib.path
    if key not in stats.groups:
        label = UNRESOLVED if lib is None else \
            f"{lib.elf.soname or os.path.basename(lib.name)} ({lib.name})"
        stats.groups[key] = LibraryUses(label) if lib is None else \
            LibraryUses(label, lib.elf, lib.name)
    return stats.groups[key]


def definition(elf, name, version):
    """The function of the ElfObject ``elf`` that a call of ``name`` at
    ``version`` (a version name or None) binds to, as ld.so decides
    (:func:`~elfvector.ldso.lookup.lookup_in`); None if the library has
    none, or if what it defines under that name is not a function."""
    sym = lookup_in(elf, name, Version.named(version) if version else None, CLASS_PLT)
    return sym if sym is not None and sym.info & 0xF in (STT_FUNC, STT_GNU_IFUNC) else None


def format_report(stats, top=None):
    """Per library a header line, then ``uniq -c``-style lines."""
    lines = []
    for group in stats.libraries():
        lines.append(group.label)
        rows = group.ranked()
        lines.extend(f"{n:7d} {label}" for n, label in rows[:top])
    return "".join(line + "\n" for line in lines)


def find_library(stats, lib_arg):
    """The library ``lib_arg`` names (a path if it has a ``/``, else a soname):
    ``(ElfObject, groups, soname)``.  The groups of ``stats`` that are that
    library are the same file, else (say, a copy outside the search path)
    the libraries of the same soname.  A soname no group has is looked for
    as ld.so would, for the first file."""
    if "/" in lib_arg:
        elf = stats.ldd.files.get(lib_arg, ElfImage(read_elf_file(lib_arg), lib_arg, OPERATION))
        groups = [g for k, g in stats.groups.items() if k == elf.path]
        soname = elf.soname or os.path.basename(lib_arg)
    else:
        elf, soname = None, lib_arg
        groups = []
    if not groups:
        groups = [g for k, g in stats.groups.items()
                  if k != UNRESOLVED and (g.elf.soname or os.path.basename(g.name)) == soname]
    if elf is None:
        found = (None, groups[0].elf) if groups else \
            stats.first.search.find(stats.first.main, soname)
        if found is None:
            raise ElfvectorError("cannot find this library (give its path)", lib_arg)
        elf = found[1]
    return elf, groups, elf.soname or soname


def vector_for(stats, lib_arg, top=None, all_functions=False, default_excludes=True):
    """The export vector of ``lib_arg`` ordered by use: ``(Vector, soname)``.

    Each use counts for the definition ld.so binds it to.  Slots are named
    as expvec names them (with versions if the library has any); data is
    never a slot, nor (by default) DEFAULT_IMPORT_EXCLUDES.
    """
    elf, groups, soname = find_library(stats, lib_arg)
    functions = [s for s in elf.file.exported_functions() if not s.name.startswith(MAGIC)]
    versioned = any(s.version for s in functions)
    excludes = PatternList(DEFAULT_IMPORT_EXCLUDES if default_excludes else [], "excludes")
    uses = Counter()
    for group in groups:
        for (name, version), n in group.counts.items():
            d = definition(elf, name, version)
            if d is not None:
                uses[_slot(elf, d, versioned)] += n
    by_name = lambda s: (s.name, s.version or "")      # noqa: E731
    slots = sorted((s for s in uses if not excludes.matches(s.name)),
                   key=lambda s: (-uses[s], by_name(s)))
    if all_functions:
        taken = {s.key for s in slots}
        slots += sorted((s for s in {slot_for(f, versioned) for f in functions}
                         if s.key not in taken and not excludes.matches(s.name)), key=by_name)
    slots = slots[:top]
    if not slots:
        raise NothingUsedError(
            "no exported function of this library is used by these files"
            + ("" if all_functions else " (--all lists every one)"), lib_arg)
    return Vector(vector_name_for_soname(soname), slots), soname


def _slot(elf, sym, versioned):
    """The slot naming the definition ``sym`` of ``elf``."""
    version, default = elf.version_of(sym)
    return slot_for(Slot(sym.name, version, default), versioned)
