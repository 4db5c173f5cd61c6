"""The ``.vec`` text format and the vector model behind it.

A ``.vec`` file names one export vector and lists its slots in order::

    __V_libfoo_so_5
    #@layouts 3 5
    foo
    bar@@VERS_2
    bar@VERS_1

The first four bytes ``__V_`` are the magic; ``#`` starts a comment.  A slot
is a function name, optionally with the version it holds (``@@`` marks the
library's default version, ``@`` an older one; the two are the same slot for
matching).  A plain name (the seed's form) means the library's default
definition, as the static linker reads an unversioned reference: against
a versioned library it *resolves* to ``name@@VER`` (:meth:`Vector.resolved`),
and that is the identity the layout fingerprint hashes.  ``#@layouts``
lists every vector length that programs may have been built against (one
per append-only generation, increasing, the last the slot count); each
length ``K`` becomes a layout symbol ``<vector>__<K>_<fingerprint of slots
0..K-1>`` that the library exports and a program references, so that ld.so
itself refuses a library whose first K slots are not the ones the program
was built with.

Names are ``str`` decoded from bytes with ``surrogateescape``, so any byte
sequence an ELF file holds round-trips; a slot name may hold any byte but
whitespace, control characters, ``#``, ``@`` and ``"`` (which no ``.vec``
line, version suffix or linker-script string could carry).

This module is pure: no ELF, no LIEF.
"""

import hashlib
import os
import re
import stat
from dataclasses import dataclass, field

from .errors import VecFormatError

MAGIC = "__V_"
_LAYOUTS_DIRECTIVE = "#@layouts"
_VECTOR_NAME_RE = re.compile(r"__V_[0-9A-Za-z_]+", re.ASCII)
_BAD_NAME_CHAR_RE = re.compile(r'[\s#@"\x00-\x1f\x7f]')

# Text inputs (.vec files, @file pattern lists) are small: libc's whole
# .dynsym as a .vec is about 40 KiB.  Anything past this is not one.
MAX_TEXT_BYTES = 16 << 20


def vector_name_for_soname(soname):
    """``libfoo.so.5`` -> ``__V_libfoo_so_5`` (the seed's naming rule)."""
    return MAGIC + re.sub(r"[^0-9A-Za-z_]", "_", soname, flags=re.ASCII)


def name_problem(name):
    """Why ``name`` cannot be a slot's function name or version, or None."""
    if not name:
        return "is empty"
    bad = _BAD_NAME_CHAR_RE.search(name)
    if bad:
        return f"contains {bad.group()!r}"
    return None


@dataclass(frozen=True)
class Slot:
    """One function in a vector: its name and, if versioned, the version."""

    name: str
    version: str = None
    default: bool = True

    @classmethod
    def parse(cls, text):
        """Parse ``name``, ``name@VER`` or ``name@@VER``."""
        if "@@" in text:
            name, version = text.split("@@", 1)
            return cls(name, version, True)
        if "@" in text:
            name, version = text.split("@", 1)
            return cls(name, version, False)
        return cls(text)

    @property
    def key(self):
        """Identity for matching: ``@`` and ``@@`` denote the same slot."""
        return (self.name, self.version)

    @property
    def identity(self):
        """What the layout fingerprint hashes: ``name`` or ``name@VER``."""
        return self.name if self.version is None else f"{self.name}@{self.version}"

    def problem(self):
        """Why this slot cannot be written to a ``.vec``, or None."""
        why = name_problem(self.name)
        if why is None and self.version is not None and name_problem(self.version):
            why = f"its version {name_problem(self.version)}"
        return why

    def __str__(self):
        if self.version is None:
            return self.name
        return f"{self.name}{'@@' if self.default else '@'}{self.version}"


def fingerprint(slots):
    """A 32-bit hex fingerprint of the slot identities in order."""
    text = "\n".join(s.identity for s in slots)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]


@dataclass
class Vector:
    """An export vector: its name, its slots in order, its layout history.

    A Vector is built once and not changed afterwards (``find`` indexes it).
    """

    name: str
    slots: list = field(default_factory=list)
    layouts: list = field(default_factory=list)
    _by_name: dict = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        if not self.layouts and self.slots:
            self.layouts = [len(self.slots)]

    def layout_symbol(self, length=None):
        """The symbol that pins the first ``length`` slots (default: all)."""
        length = len(self.slots) if length is None else length
        return f"{self.name}__{length}_{fingerprint(self.slots[:length])}"

    def layout_symbols(self):
        """Every layout symbol the library must export, oldest first."""
        return [self.layout_symbol(n) for n in self.layouts]

    def slots_named(self, name):
        """Slot numbers of the slots holding a version of ``name``."""
        if self._by_name is None:
            self._by_name = {}
            for i, slot in enumerate(self.slots):
                self._by_name.setdefault(slot.name, []).append(i)
        return self._by_name.get(name, [])

    def find(self, name, version):
        """Slot number of a reference to ``name`` (at ``version``), or None.

        A versioned reference matches the slot of that version; an
        unversioned one an unversioned slot or the slot of the default
        version, as the link editor would have bound it.
        """
        for i in self.slots_named(name):
            slot = self.slots[i]
            if slot.version == version or (version is None and slot.default):
                return i
        return None

    def resolved(self, default_version):
        """This vector with each plain slot named as it resolves.

        ``default_version(name)`` is the version of the library's default
        definition of ``name`` (None: unversioned or undefined).  A plain
        name means that definition, as the static linker reads an
        unversioned reference, so ``memcpy`` against glibc is the slot
        ``memcpy@@GLIBC_2.14``, and the fingerprint pins that version.
        """
        slots = [Slot(s.name, default_version(s.name), True) if s.version is None else s
                 for s in self.slots]
        return Vector(self.name, slots, list(self.layouts))

    def format(self, header_comment=None):
        lines = [self.name]
        if header_comment:
            lines.append(f"# {header_comment}")
        if self.layouts != [len(self.slots)]:
            lines.append(" ".join([_LAYOUTS_DIRECTIVE] + [str(n) for n in self.layouts]))
        lines.extend(str(s) for s in self.slots)
        return "\n".join(lines) + "\n"


def parse_vec(text, path=None):
    """Parse the text of a ``.vec`` file into a :class:`Vector`."""
    if not text.startswith(MAGIC):
        raise VecFormatError("not a .vec file (does not start with __V_)", path)
    lines = text.splitlines()
    name = lines[0].split("#", 1)[0].strip()
    if not _VECTOR_NAME_RE.fullmatch(name):
        raise VecFormatError(f"bad vector name {_shown(name)} (want __V_ then "
                             "ASCII letters, digits or _)", path)
    slots, layouts, seen = [], None, set()
    for lineno, raw in enumerate(lines[1:], start=2):
        if raw.startswith(_LAYOUTS_DIRECTIVE):
            if layouts is not None:
                raise VecFormatError(f"line {lineno}: a second {_LAYOUTS_DIRECTIVE} line", path)
            layouts = _parse_layouts(raw, lineno, path)
            continue
        text_ = raw.split("#", 1)[0].strip()
        if not text_:
            continue
        slot = Slot.parse(text_)
        why = slot.problem()
        if why:
            raise VecFormatError(f"line {lineno}: bad function name {_shown(text_)} ({why})",
                                 path)
        if slot.key in seen:
            raise VecFormatError(f"line {lineno}: {text_} appears twice", path)
        seen.add(slot.key)
        slots.append(slot)
    if not slots:
        raise VecFormatError("vector has no slots", path)
    if layouts and layouts[-1] != len(slots):
        raise VecFormatError(
            f"{_LAYOUTS_DIRECTIVE} {' '.join(map(str, layouts))} does not end at the "
            f"slot count {len(slots)}", path)
    return Vector(name, slots, layouts or [])


def _parse_layouts(raw, lineno, path):
    """The lengths of a ``#@layouts`` line: positive and increasing."""
    words = raw[len(_LAYOUTS_DIRECTIVE):].split()
    if not words or not all(w.isascii() and w.isdigit() for w in words):
        raise VecFormatError(f"line {lineno}: bad {_LAYOUTS_DIRECTIVE} line "
                             "(want vector lengths, oldest first)", path)
    layouts = [int(w) for w in words]
    if layouts[0] <= 0 or any(a >= b for a, b in zip(layouts, layouts[1:])):
        raise VecFormatError(f"line {lineno}: {_LAYOUTS_DIRECTIVE} lengths must be "
                             "positive and increasing", path)
    return layouts


def _shown(text, limit=60):
    """``text`` quoted for a one-line message (control characters escaped)."""
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def read_text(path, error=VecFormatError, what="file"):
    """The text of a small input that may be a pipe (``<(...)``).

    A regular file or a pipe/FIFO, nothing else (a directory, a device, a
    socket is refused before it is opened).  The open does not wait for a
    writer (``O_NONBLOCK``); a FIFO that has none reads as empty.  At most
    MAX_TEXT_BYTES are read.  Errors are ``error(reason, path)``.
    """
    try:
        mode = os.stat(path).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise error(f"not a regular file or a pipe ({_file_kind(mode)})", path)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise error(f"cannot read {what}: {e.strerror}", path) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISFIFO(mode):
            # Block on data from here: with no writer a read is EOF at once.
            os.set_blocking(fd, True)
        elif not stat.S_ISREG(mode):
            raise error(f"not a regular file or a pipe ({_file_kind(mode)})", path)
        data = _read_capped(fd, path, error, what)
    finally:
        os.close(fd)
    return data.decode("utf-8", "surrogateescape")


def _read_capped(fd, path, error, what):
    chunks, size = [], 0
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError as e:
            raise error(f"cannot read {what}: {e.strerror}", path) from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_TEXT_BYTES:
            raise error(f"{what} larger than {MAX_TEXT_BYTES >> 20} MiB", path)
        chunks.append(chunk)


def _file_kind(mode):
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((kind for test, kind in kinds if test(mode)), "a special file")


def read_vec(path):
    """Read and parse a ``.vec`` file (or pipe); errors are VecFormatError."""
    return parse_vec(read_text(path, VecFormatError, ".vec file"), path)
