"""incl/excl/xclude arguments: whitespace-separated regexes or ``@file``.

As in the seed: ``''`` means no pattern; ``@path`` reads patterns from a file
where ``#`` starts a comment; otherwise the argument itself is the list.
Regexes use Python's ``re`` with ``search`` semantics, like ``regexec``
(anchor with ``^`` and ``$``).
"""

import re

from .errors import PatternError


def read_words(arg):
    """The words of an incl/excl argument, reading ``@file`` if given."""
    if arg.startswith("@"):
        path = arg[1:]
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise PatternError(f"cannot read pattern file: {e.strerror}", path) from None
    else:
        text = arg
    words = []
    for line in text.splitlines():
        words.extend(line.split("#", 1)[0].split())
    return words


class PatternList:
    """An ordered list of compiled regexes."""

    def __init__(self, words, source="patterns"):
        self.words = list(words)
        self.regexes = []
        for word in self.words:
            try:
                self.regexes.append(re.compile(word))
            except re.error as e:
                raise PatternError(f"bad regular expression {word!r}: {e}", source) from None

    @classmethod
    def from_arg(cls, arg, source="patterns"):
        return cls(read_words(arg), source)

    def matches(self, name):
        return any(r.search(name) for r in self.regexes)

    def first_match(self, name):
        """Index of the first regex that matches ``name``, or None."""
        for i, r in enumerate(self.regexes):
            if r.search(name):
                return i
        return None

    def __bool__(self):
        return bool(self.regexes)


# Functions that are commonly interposed (LD_PRELOAD allocators, thread
# libraries): never vectored unless the user asks for them by name.
DEFAULT_IMPORT_EXCLUDES = (
    r"^malloc$ ^free$ ^calloc$ ^realloc$ ^memalign$ ^posix_memalign$ "
    r"^aligned_alloc$ ^valloc$ ^pvalloc$ ^pthread_"
).split()
