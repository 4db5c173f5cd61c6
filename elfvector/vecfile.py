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
matching).  ``#@layouts`` lists every vector length that programs may have
been built against (one per append-only generation); each length ``K``
becomes a layout symbol ``<vector>__<K>_<fingerprint of slots 0..K-1>`` that
the library exports and a program references, so that ld.so itself refuses
a library whose first K slots are not the ones the program was built with.

This module is pure: no ELF, no LIEF.
"""

import hashlib
import re
from dataclasses import dataclass, field

from .errors import VecFormatError

MAGIC = "__V_"
_LAYOUTS_DIRECTIVE = "#@layouts"
_SLOT_RE = re.compile(r"^[A-Za-z_.$][\w.$]*(@@?[\w.$]+)?$")


def vector_name_for_soname(soname):
    """``libfoo.so.5`` -> ``__V_libfoo_so_5`` (the seed's naming rule)."""
    return MAGIC + re.sub(r"[^0-9A-Za-z_]", "_", soname)


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

    def __str__(self):
        if self.version is None:
            return self.name
        return f"{self.name}{'@@' if self.default else '@'}{self.version}"


def fingerprint(slots):
    """A 32-bit hex fingerprint of the slot identities in order."""
    text = "\n".join(s.name if s.version is None else f"{s.name}@{s.version}" for s in slots)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


@dataclass
class Vector:
    """An export vector: its name, its slots in order, its layout history."""

    name: str
    slots: list = field(default_factory=list)
    layouts: list = field(default_factory=list)

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

    def index(self):
        """Map slot identity -> slot number."""
        return {slot.key: i for i, slot in enumerate(self.slots)}

    def find(self, name, version):
        """Slot number of a reference to ``name`` (at ``version``), or None.

        An unversioned reference matches an unversioned slot or the slot of
        the default version, as the link editor would have bound it.
        """
        for i, slot in enumerate(self.slots):
            if slot.name != name:
                continue
            if slot.version == version or (version is None and slot.default):
                return i
        return None

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
    if not re.fullmatch(r"__V_\w+", name):
        raise VecFormatError(f"bad vector name {name!r}", path)
    slots, layouts, seen = [], [], set()
    for lineno, raw in enumerate(lines[1:], start=2):
        if raw.startswith(_LAYOUTS_DIRECTIVE):
            layouts = _parse_layouts(raw, lineno, path)
            continue
        text_ = raw.split("#", 1)[0].strip()
        if not text_:
            continue
        if not _SLOT_RE.match(text_):
            raise VecFormatError(f"line {lineno}: bad function name {text_!r}", path)
        slot = Slot.parse(text_)
        if slot.key in seen:
            raise VecFormatError(f"line {lineno}: {text_} appears twice", path)
        seen.add(slot.key)
        slots.append(slot)
    if not slots:
        raise VecFormatError("vector has no slots", path)
    if layouts and (layouts != sorted(set(layouts)) or layouts[-1] != len(slots)):
        raise VecFormatError(
            f"#@layouts {layouts} does not end at the slot count {len(slots)}", path)
    return Vector(name, slots, layouts)


def _parse_layouts(raw, lineno, path):
    try:
        return [int(word) for word in raw.split()[1:]]
    except ValueError:
        raise VecFormatError(f"line {lineno}: bad {_LAYOUTS_DIRECTIVE} line", path) from None


def read_vec(path):
    """Read and parse a ``.vec`` file; an unreadable file is a VecFormatError."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise VecFormatError(f"cannot read: {getattr(e, 'strerror', None) or e}", path) from None
    return parse_vec(text, path)
