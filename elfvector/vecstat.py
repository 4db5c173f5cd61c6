"""vecstat: which dynamic functions programs import, from where, how often.

The seed's frequency script as an operation: ``nm -u --dynamic`` over the
dynamically linked files among the arguments, ``sort | uniq -c | sort -rn``.
Here each undefined function is also attributed to the library ld.so would
bind it to: the first library of the file's DT_NEEDED closure, in load
order, that exports the function at the version the file asks for.  A count
is a number of files; a file reached under several names (symbolic or hard
links) counts once.

The counts give a library its first vector: its most used functions first
(:func:`vector_for`), so that the slots programs need most are the oldest.
"""

import os
from collections import Counter
from dataclasses import dataclass, field

from .elffile import ElfFile
from .elfimage import not_regular_reason
from .errors import ElfvectorError, VectorMismatchError
from .exportvec import slot_for
from .libsearch import LibraryResolver
from .patterns import DEFAULT_IMPORT_EXCLUDES, PatternList
from .vecfile import MAGIC, Vector, vector_name_for_soname

UNRESOLVED = "unresolved"
_ELF_MAGIC = b"\x7fELF"


class NothingUsedError(VectorMismatchError):
    """No function of the library is used by the files: its vector would be
    empty (``vecstat --if-used`` skips such a library quietly)."""


@dataclass
class LibraryUses:
    """The imports attributed to one library (or to none: ``elf`` None).

    ``counts`` maps ``(name, version)`` as the files ask for it (``version``
    None for an unversioned reference) to the number of files.
    """

    label: str
    elf: ElfFile = None
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
    resolver: LibraryResolver = None
    first: ElfFile = None                            # requester for find_library

    def libraries(self):
        """Groups by total uses, then label; unresolved last."""
        known = sorted((g for k, g in self.groups.items() if k != UNRESOLVED),
                       key=lambda g: (-g.total, g.label))
        return known + ([self.groups[UNRESOLVED]] if UNRESOLVED in self.groups else [])


def open_inputs(paths, unreadable, skipped=None):
    """Yield the usable dynamic ELF files among ``paths``, each file once.

    Like the seed's ``file | sed`` filter, anything else (not ELF, static,
    an object file, a directory, another architecture) is skipped, and its
    reason appended to ``skipped`` as ``(path, reason)``; a path that
    cannot be read at all is appended to ``unreadable`` with the reason.
    Files are opened one at a time: only libraries stay parsed.
    """
    seen = set()
    skipped = [] if skipped is None else skipped
    for path in paths:
        try:
            st = os.stat(path)
            if not_regular_reason(st.st_mode):
                skipped.append((path, not_regular_reason(st.st_mode)))
                continue
            if _magic(path) != _ELF_MAGIC:
                skipped.append((path, "not an ELF file"))
                continue
        except OSError as e:
            unreadable.append((path, e.strerror))
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            elf = ElfFile(path, light=True)
        except ElfvectorError as e:
            skipped.append((path, e.reason))
            continue
        if elf.is_dynamic or elf.is_shared_object:
            yield elf
        else:
            skipped.append((path, "not a dynamically linked ELF file (statically linked)"))


def _magic(path):
    """The first four bytes of a regular file (opened without blocking)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        return f.read(4)


def scan(paths, library_path=()):
    """Count the undefined dynamic functions of the ELF files in ``paths``."""
    stats = Stats(resolver=LibraryResolver(library_path=library_path))
    group_of = {}           # id(library) -> its LibraryUses
    memo = {}

    def defines(lib, name, version):
        key = (id(lib), name, version)
        if key not in memo:
            memo[key] = definition(lib, name, version) is not None
        return memo[key]

    definer = {}            # (closure, name, version) -> LibraryUses
    skipped = []
    for elf in open_inputs(paths, stats.unreadable, skipped):
        stats.files.append(elf.path)
        stats.first = stats.first or elf
        libraries, missing = stats.resolver.closure(elf)
        stats.missing.update(missing)
        closure = tuple(id(lib) for lib in libraries)   # many files share one
        for name, version in elf.imported_function_versions():
            group = definer.get((closure, name, version))
            if group is None:
                lib = next((lib for lib in libraries if defines(lib, name, version)), None)
                group = definer[(closure, name, version)] = _group(stats, group_of, lib)
            group.counts[(name, version)] += 1
    if not stats.files:
        if len(paths) == 1:
            reason = f"cannot read: {stats.unreadable[0][1]}" if stats.unreadable else \
                skipped[0][1]
            raise ElfvectorError(reason, paths[0])
        raise ElfvectorError("no dynamically linked ELF file among the arguments")
    return stats


def _group(stats, group_of, lib):
    """The LibraryUses of ``lib`` (None: unresolved); one per file on disk."""
    if id(lib) not in group_of:
        key = UNRESOLVED if lib is None else os.path.realpath(lib.path)
        if key not in stats.groups:
            label = UNRESOLVED if lib is None else \
                f"{lib.soname or os.path.basename(lib.path)} ({lib.path})"
            stats.groups[key] = LibraryUses(label, lib)
        group_of[id(lib)] = stats.groups[key]
    return group_of[id(lib)]


def definition(lib, name, version):
    """The exported function of ``lib`` that a reference to ``name`` at
    ``version`` binds to (None: ``lib`` does not define it).

    A versioned reference takes that version (or the definition of a library
    without versions); an unversioned one the default version.
    """
    candidates = [d for d in lib.function_definitions(name) if d.is_exported_function]
    if version is not None:
        return next((d for d in candidates if d.version in (version, None)), None)
    return next((d for d in candidates if d.default), candidates[0] if candidates else None)


def format_report(stats, top=None):
    """Per library a header line, then ``uniq -c``-style lines."""
    lines = []
    for group in stats.libraries():
        lines.append(group.label)
        rows = group.ranked()
        lines.extend(f"{n:7d} {label}" for n, label in rows[:top])
    return "\n".join(lines) + "\n"


def find_library(stats, lib_arg):
    """The library ``lib_arg`` names (a path if it has a ``/``, else a soname)
    and the groups of ``stats`` that are that library: the same file, else
    (say, a copy outside the search path) the libraries of the same soname."""
    if "/" in lib_arg:
        elf = ElfFile(lib_arg, light=True)
        real = os.path.realpath(lib_arg)
        groups = [g for k, g in stats.groups.items() if k == real]
        soname = elf.soname or os.path.basename(lib_arg)
    else:
        elf, soname = None, lib_arg
        groups = []
    if not groups:
        groups = [g for k, g in stats.groups.items()
                  if k != UNRESOLVED and (g.elf.soname or os.path.basename(g.elf.path)) == soname]
    if elf is None:
        elf = groups[0].elf if groups else stats.resolver.find(soname, stats.first)
        if elf is None:
            raise ElfvectorError("cannot find this library (give its path)", lib_arg)
    return elf, groups


def vector_for(stats, lib_arg, top=None, all_functions=False, default_excludes=True):
    """The export vector of ``lib_arg`` ordered by use: ``(Vector, soname)``.

    Slots are named as expvec names them (with versions if the library has
    any); data is never a slot, nor (by default) DEFAULT_IMPORT_EXCLUDES.
    """
    elf, groups = find_library(stats, lib_arg)
    functions = [s for s in elf.exported_functions() if not s.name.startswith(MAGIC)]
    versioned = any(s.version for s in functions)
    excludes = PatternList(DEFAULT_IMPORT_EXCLUDES if default_excludes else [], "excludes")
    uses = Counter()
    for group in groups:
        for (name, version), n in group.counts.items():
            d = definition(elf, name, version)
            if d is not None:
                uses[slot_for(d, versioned)] += n
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
    soname = elf.soname or os.path.basename(elf.path)
    return Vector(vector_name_for_soname(soname), slots), soname
