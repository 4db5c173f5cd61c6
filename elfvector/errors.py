"""The one exception hierarchy of elfvector.

Every failure the user can cause (bad input, a link that fails, a vector
that does not match) is an :class:`ElfvectorError`.  The command-line layer
turns it into one line ``prog: FILE: reason`` and exit status 1; nothing
below the CLI imports click.
"""

import re

# Characters that would break the one-line error on a terminal or in a log:
# C0 and C1 controls, DEL, the line separators str.splitlines() honours, and
# undecodable bytes of a file name (surrogate escapes).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\udc80-\udcff]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def printable(text):
    """``text`` on one line: control characters and undecodable bytes escaped.

    A newline in a file name becomes ``\\n``, an undecodable byte ``\\xNN``,
    as ``ls -b`` shows them; backslashes are left alone.
    """
    def escape(match):
        char = match.group()
        if char in _NAMED:
            return _NAMED[char]
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            return f"\\x{code - 0xDC00:02x}"
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return _UNPRINTABLE.sub(escape, text)


class ElfvectorError(Exception):
    """A failure to report as ``prog: FILE: reason``.

    ``path`` names the file the problem is about (``None`` when no single
    file is to blame).
    """

    def __init__(self, reason, path=None):
        super().__init__(reason)
        self.reason = reason
        self.path = path

    def __str__(self):
        return f"{self.path}: {self.reason}" if self.path else self.reason


class NotElfError(ElfvectorError):
    """The file is not an ELF file, or is truncated."""


class UnsupportedElfError(ElfvectorError):
    """An ELF file of an architecture, class or type we do not handle."""


class VecFormatError(ElfvectorError):
    """A malformed ``.vec`` file (bad magic, bad name, duplicate slot)."""


class PatternError(ElfvectorError):
    """An incl/excl/xclude argument holds a regex that does not compile."""


class LinkError(ElfvectorError):
    """The wrapped linker command failed or cannot be wrapped."""


class OutputError(ElfvectorError):
    """An output that cannot be written where the user asked: a missing
    directory, a directory, a file that is not writable."""


class VectorMismatchError(ElfvectorError):
    """A vector does not agree with the library or with an older vector."""
