"""The one exception hierarchy of elfvector.

Every failure the user can cause (bad input, a link that fails, a vector
that does not match) is an :class:`ElfvectorError`.  The command-line layer
turns it into one line ``prog: FILE: reason`` and exit status 1; nothing
below the CLI imports click.
"""


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


class VectorMismatchError(ElfvectorError):
    """A vector does not agree with the library or with an older vector."""
