"""incl/excl/xclude arguments: whitespace-separated regexes or ``@file``.

As in the seed: ``''`` means no pattern; ``@path`` reads patterns from a
file (or a pipe, ``@<(...)``) where ``#`` starts a comment; otherwise the
argument itself is the list.

The seed's regular expressions "follow <regex.h>": each is a POSIX
extended regular expression, matched as ``regcomp(REG_EXTENDED)`` and
``regexec`` match it in the C locale, anywhere in the name (anchor with
``^`` and ``$``: ``^printf$``).  Accepted, and translated to Python's
``re``:

* literals, ``.`` (any character), ``^`` and ``$`` (anchors anywhere);
* ``( )`` groups, ``|`` alternation, empty alternatives included (a
  ``)`` that closes no group is itself, as in glibc);
* ``*``, ``+``, ``?`` and intervals ``{m}``, ``{m,}``, ``{m,n}``, ``{,n}``
  (m, n <= 32767), which may follow one another (``a+?`` is ``(a+)?``,
  not a lazy ``+``);
* bracket expressions ``[abc]``, ``[^a-z]``, ``[]x]``, ``[a-]``, with the
  classes ``[:alnum:] [:alpha:] [:blank:] [:cntrl:] [:digit:] [:graph:]
  [:lower:] [:print:] [:punct:] [:space:] [:upper:] [:xdigit:]`` (ASCII,
  as in the C locale), one-character equivalence classes ``[=a=]`` and
  collating symbols ``[.a.]``; a backslash in brackets is itself;
* glibc's escapes: ``\\w \\W \\s \\S \\b \\B``, ``\\<`` and ``\\>`` (start and
  end of a word), ``\\``` and ``\\'`` (start and end of the name),
  back-references ``\\1``..``\\9``; any other escaped character is itself.

What ``regcomp`` refuses is refused (a quantifier with nothing to repeat,
an unmatched parenthesis or bracket, a bad interval or class, a trailing
backslash), each with the pattern in the message.
"""

import re

from .errors import PatternError
from .vecfile import read_text

RE_DUP_MAX = 0x7FFF         # glibc's <regex.h>

_CLASSES = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "blank": " \\t", "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9", "graph": "\\x21-\\x7e", "lower": "a-z", "print": "\\x20-\\x7e",
    "punct": "!-/:-@\\[-`{-~", "space": " \\t\\n\\r\\f\\v", "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}
_ESCAPES = {"w": r"\w", "W": r"\W", "s": r"\s", "S": r"\S", "b": r"\b", "B": r"\B",
            "<": r"\b(?=\w)", ">": r"\b(?<=\w)", "`": r"\A", "'": r"\Z"}


def read_words(arg):
    """The words of an incl/excl argument, reading ``@file`` if given."""
    if arg.startswith("@"):
        text = read_text(arg[1:], PatternError, "pattern file")
    else:
        text = arg
    words = []
    for line in text.splitlines():
        words.extend(line.split("#", 1)[0].split())
    return words


class _BadRegex(Exception):
    """Why a POSIX ERE is refused (turned into a PatternError)."""


class _EreTranslator:
    """One POSIX extended regular expression, translated to Python ``re``.

    A recursive descent over ERE's grammar: regex = branch ('|' branch)*,
    branch = piece*, piece = atom quantifier*.
    """

    def __init__(self, pattern):
        self.text = pattern
        self.pos = 0
        self.groups = 0
        self.depth = 0

    def translate(self):
        return self._regex()

    def _peek(self, ahead=0):
        at = self.pos + ahead
        return self.text[at] if at < len(self.text) else None

    def _regex(self):
        branches = [self._branch()]
        while self._peek() == "|":
            self.pos += 1
            branches.append(self._branch())
        return "|".join(branches)

    def _branch(self):
        out = []
        while self._peek() not in (None, "|") and not (self._peek() == ")" and self.depth):
            out.append(self._piece())
        return "".join(out)

    def _piece(self):
        atom, repeatable = self._atom()
        quantified = False
        while self._peek() is not None and self._peek() in "*+?{":
            if not repeatable:
                raise _BadRegex("a repetition operator follows nothing to repeat")
            quantifier = self._quantifier()
            atom = f"(?:{atom}){quantifier}" if quantified else f"{atom}{quantifier}"
            quantified = True
        return atom

    def _atom(self):
        """(Python text, whether a quantifier may follow it)."""
        c = self._peek()
        self.pos += 1
        if c in "*+?{":
            raise _BadRegex("a repetition operator follows nothing to repeat")
        if c == "(":
            self.groups += 1
            self.depth += 1
            inner = self._regex()
            if self._peek() != ")":
                raise _BadRegex("unmatched ( or )")
            self.pos += 1
            self.depth -= 1
            return f"({inner})", True
        if c == "[":
            return self._bracket(), True
        if c == ".":
            return ".", True
        if c == "^":
            return "^", False
        if c == "$":
            return r"\Z", False
        if c == "\\":
            return self._escape()
        return re.escape(c), True

    def _escape(self):
        c = self._peek()
        if c is None:
            raise _BadRegex("trailing backslash")
        self.pos += 1
        if c in _ESCAPES:
            return _ESCAPES[c], c in "wWsS"
        if c.isdigit() and c != "0":
            if int(c) > self.groups:
                raise _BadRegex(f"back-reference \\{c} to no group")
            return f"(?:\\{c})", True
        return re.escape(c), True

    def _quantifier(self):
        c = self._peek()
        self.pos += 1
        if c != "{":
            return c
        end = self.text.find("}", self.pos)
        m = re.fullmatch(r"(\d*)(,?)(\d*)", self.text[self.pos:end]) if end >= 0 else None
        if m is None or (not m.group(1) and not m.group(2)):
            raise _BadRegex("bad interval {...}")
        low = int(m.group(1) or 0)
        high = int(m.group(3)) if m.group(3) else (None if m.group(2) else low)
        if low > RE_DUP_MAX or (high is not None and not low <= high <= RE_DUP_MAX):
            raise _BadRegex("bad interval {...}")
        self.pos = end + 1
        return f"{{{low},{'' if high is None else high}}}"

    def _bracket(self):
        """A bracket expression after its ``[``: a Python character class."""
        negate = self._peek() == "^"
        if negate:
            self.pos += 1
        items, first = [], True
        while True:
            c = self._peek()
            if c is None:
                raise _BadRegex("unmatched [ or ]")
            if c == "]" and not first:
                self.pos += 1
                break
            first = False
            if c == "[" and self._peek(1) == ":":
                items.append(self._class())
                continue
            low = self._bracket_char()
            if self._peek() == "-" and self._peek(1) not in (None, "]"):
                self.pos += 1
                if self._peek() == "[" and self._peek(1) == ":":
                    raise _BadRegex("a range cannot end at a character class")
                high = self._bracket_char()
                if ord(high) < ord(low):
                    raise _BadRegex(f"bad range {low}-{high}")
                items.append(f"{_class_char(low)}-{_class_char(high)}")
                if self._peek() == "-" and self._peek(1) != "]":
                    raise _BadRegex(f"a range cannot start at the end of {low}-{high}")
            else:
                items.append(_class_char(low))
        return f"[{'^' if negate else ''}{''.join(items)}]"

    def _bracket_char(self):
        """One character of a bracket: itself, ``[=c=]`` or ``[.c.]``."""
        c = self._peek()
        if c == "[" and self._peek(1) in ("=", "."):
            kind = self._peek(1)
            end = self.text.find(kind + "]", self.pos + 2)
            if end < 0:
                raise _BadRegex("unmatched [ or ]")
            element = self.text[self.pos + 2:end]
            if len(element) != 1:
                raise _BadRegex(f"unknown collating element {element!r}")
            self.pos = end + 2
            return element
        self.pos += 1
        return c

    def _class(self):
        end = self.text.find(":]", self.pos + 2)
        name = self.text[self.pos + 2:end] if end >= 0 else None
        if name not in _CLASSES:
            raise _BadRegex(f"unknown character class [:{name or ''}:]")
        self.pos = end + 2
        return _CLASSES[name]


def _class_char(c):
    """``c`` inside a Python character class: every non-alphanumeric escaped,
    so that nothing reads as a set operation or a nested set."""
    if c.isascii() and c.isalnum():
        return c
    return f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"


_FLAGS = re.ASCII | re.DOTALL        # C-locale classes; "." matches any character


class PatternList:
    """An ordered list of compiled regexes.

    ``source`` is what an error names: the ``@file`` the patterns came
    from, else the argument's role (``incl``); ``path`` is that file or None.
    """

    def __init__(self, words, source="patterns", path=None):
        self.words = list(words)
        self.source = path or source
        self.path = path
        self.regexes = []
        translated = []
        for word in self.words:
            try:
                translated.append(_EreTranslator(word).translate())
                self.regexes.append(re.compile(translated[-1], _FLAGS))
            except (_BadRegex, re.error) as e:
                raise PatternError(f"bad regular expression {word!r}: {e}",
                                   self.source) from None
        # One search instead of one per regex; a list with groups keeps the
        # loop (its back-references count groups from its own start).
        self._any = None if any(r.groups for r in self.regexes) else \
            re.compile("|".join(f"(?:{t})" for t in translated) or "(?!)", _FLAGS)

    @classmethod
    def from_arg(cls, arg, source="patterns", defaults=()):
        """The patterns of an incl/excl/xclude argument, after ``defaults``."""
        return cls(list(defaults) + read_words(arg), source,
                   arg[1:] if arg.startswith("@") else None)

    def matches(self, name):
        if self._any is not None:
            return self._any.search(name) is not None
        return any(r.search(name) for r in self.regexes)

    def __bool__(self):
        return bool(self.regexes)


# Functions that are commonly interposed (LD_PRELOAD allocators, thread
# libraries): never vectored unless the user asks for them by name.
DEFAULT_IMPORT_EXCLUDES = (
    r"^malloc$ ^free$ ^calloc$ ^realloc$ ^memalign$ ^posix_memalign$ "
    r"^aligned_alloc$ ^valloc$ ^pvalloc$ ^pthread_"
).split()
