"""The fuzz inputs: every mutation of every baseline, special files, bad text files.

``generate(baselines, seed)`` returns the same list for the same baselines
and seed.  An ELF input is stored as a ``Delta`` against its baseline (a
few changed bytes, or a shorter length), so a sweep over libc.so.6's
mutations does not hold hundreds of copies of it.

Roles say where an input can go: an ELF role (``lib``, ``veclib``,
``latin1``, ``pie``, ``nopie``, ``libc``, ``lib-i386`` and ``lib-aarch64``
(the library cross-built), ``pie-i386`` and ``pie-aarch64`` (the program
cross-built), or ``elf`` for a special file standing for any
of them), ``vec``, ``patfile`` (an ``@file`` of regular
expressions), ``addrfile``, or ``outpath`` (an ``-o`` path that cannot
be written).  ``must_fail`` marks inputs no command may accept.
"""

import random
import re
from dataclasses import dataclass
from typing import Optional

from .baselines import VECTOR
from .mutate import Mutator

# ELF mutations no command may accept: besides every truncation (issue 7:
# recovervec and vecstat accepted a file cut by one byte), a file of a class,
# byte order or machine the core does not read (Mutator.foreign), or not ELF
# at all (vecstat succeeded on a big-endian file).  A vector table mutation
# contradicts the layout symbols or points outside the functions: recovervec
# must refuse it (it exited 0 on a table that contradicts its layout symbol).
# Other mutations may be accepted when the output is sound.

# Well-formed .vec files naming functions the library lacks: the error may
# name the library instead (symbol names are bytes, so any name can exist).
WELL_FORMED_VECS = ("non-ascii-function", "not-utf8", "long-name")
MUTATED_ROLES = ("lib", "veclib", "pie", "nopie", "libc", "lib-i386", "lib-aarch64", "pie-i386",
                 "pie-aarch64")
SPECIALS = ("fifo", "dir", "loop", "missing", "devnull", "empty")
GOOD_SLOTS = "fz_add@@FZ_1\nfz_mul@@FZ_1\n"


@dataclass(frozen=True)
class Delta:
    """A mutated copy of a baseline: its first ``length`` bytes, ``new`` at ``start``."""

    length: int
    start: int
    new: bytes

    @classmethod
    def between(cls, base, mutated):
        prefix = _common_prefix(base, mutated)
        suffix = _common_prefix(base[:len(mutated)][::-1], mutated[::-1])
        end = max(prefix, len(mutated) - suffix)
        return cls(len(mutated), prefix, bytes(mutated[prefix:end]))

    def apply(self, base):
        out = bytearray(base[:self.length])
        out[self.start:self.start + len(self.new)] = self.new
        return bytes(out)


def _common_prefix(a, b):
    """Length of the common prefix of ``a`` and ``b`` (bisection over C slice compares)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass(frozen=True)
class Input:
    name: str                   # unique; the stem of its file name
    kind: str                   # truncation, ehdr, ..., special, vec, patfile, addrfile, outpath
    role: str
    detail: str
    delta: Optional[Delta] = None     # ELF inputs: against the baseline of ``role``
    text: Optional[bytes] = None      # text inputs: the content
    special: Optional[str] = None     # fifo, dir, loop, missing, devnull, empty, newline, ...
    mode: int = 0o644
    must_fail: bool = False
    refused_by: tuple = ()      # commands that must refuse it, if not must_fail
    blame_any: bool = False     # its error may name another file of the command line

    def must_be_refused_by(self, command):
        return self.must_fail or command in self.refused_by

    def content(self, baselines):
        """The bytes of a regular-file input."""
        if self.delta is not None:
            return self.delta.apply(baselines.bytes(self.role))
        return self.text


def _file_name(text):
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def elf_inputs(baselines, rng):
    for role in MUTATED_ROLES:
        base = baselines.bytes(role)
        vector = VECTOR if role == "veclib" else None
        mutator = Mutator(role, base, rng, vector)
        foreign = mutator.foreign()
        for kind, label, data in mutator.all():
            yield Input(_file_name(f"{role}-{kind}-{label}"), kind, role, label,
                        delta=Delta.between(base, data),
                        must_fail=kind == "truncation" or label in foreign,
                        refused_by=("recovervec",) if kind == "vector" else ())
    unchanged = Delta(len(baselines.bytes("latin1")), 0, b"")
    yield Input("latin1-dynstr-valid", "dynstr", "latin1",
                "a valid library with a function name that is not UTF-8", delta=unchanged)


def special_inputs():
    """FIFOs, directories, symlink loops, missing files, /dev/null, empty files, per role.

    An empty or missing addrfile is a new group, and an empty, FIFO (no
    writer: reads as empty) or /dev/null pattern file lists no pattern:
    those may succeed.  Anything else must fail.
    """
    may_succeed = {"addrfile": {"missing", "empty"}, "patfile": {"fifo", "devnull", "empty"}}
    for role in ("elf", "vec", "patfile", "addrfile"):
        for special in SPECIALS:
            ok = special in may_succeed.get(role, ())
            yield Input(f"{role}-special-{special}", "special", role, special,
                        text=b"" if special == "empty" else None,
                        special=None if special == "empty" else special, must_fail=not ok)
    yield Input("elf-special-newline", "special", "elf", "a file name with a newline",
                text=b"\x7fELF\x02\x01\x01", special="newline", must_fail=True)


def vec_inputs(rng):
    v = VECTOR
    bodies = {
        "binary": bytes(rng.randrange(256) for _ in range(200)) + b"\0",
        "no-magic": b"libfz\nfz_add@@FZ_1\n",
        "layouts-0": f"{v}\n#@layouts 0 2\n{GOOD_SLOTS}".encode(),
        "layouts-negative": f"{v}\n#@layouts -1 2\n{GOOD_SLOTS}".encode(),
        "layouts-huge": f"{v}\n#@layouts 2 99999999999999999999\n{GOOD_SLOTS}".encode(),
        "layouts-past-end": f"{v}\n#@layouts 2 5\n{GOOD_SLOTS}".encode(),
        "non-ascii-function": f"{v}\nfz_add@@FZ_1\nfz_caf\u00e9\n".encode(),
        "non-ascii-vector": f"__V_libfz_\u00e9\n{GOOD_SLOTS}".encode(),
        "not-utf8": f"{v}\nfz_add@@FZ_1\n".encode() + b"fz_caf\xe9\n",
        "duplicate": f"{v}\nfz_add@@FZ_1\nfz_mul@@FZ_1\nfz_add@@FZ_1\n".encode(),
        "duplicate-version": f"{v}\nfz_add@@FZ_1\nfz_add@FZ_1\n".encode(),
        "empty": b"",
        "magic-only": f"{v}\n".encode(),
        "quote": f'{v}\nfz_"add\n'.encode(),
        "nul": f"{v}\nfz_add\0@@FZ_1\n".encode(),
        "long-name": f"{v}\n{'a' * (1 << 21)}\n".encode(),
    }
    for label, body in bodies.items():
        yield Input(f"vec-{label}", "vec", "vec", label, text=body, must_fail=True,
                    blame_any=label in WELL_FORMED_VECS)


def patfile_inputs():
    for label, body in {"binary": b"fz_\xff\xfe(\n", "bad-regex": b"fz_(\n"}.items():
        yield Input(f"patfile-{label}", "patfile", "patfile", label, text=body, must_fail=True)


def addrfile_inputs():
    bodies = {
        "2^70": f"{1 << 70} libother.so.1\n",
        "negative": "-4096 libother.so.1\n",
        "unsorted": "206158430208 libone.so.1\n206158495744 libtwo.so.1\n",
        "duplicate-soname": "206158495744 libone.so.1\n206158430208 libone.so.1\n",
        "closer-than-a-page": "206158430464 libone.so.1\n206158430208 libtwo.so.1\n",
        "not-a-number": "abc libone.so.1\n",
        "three-words": "206158430208 libone.so.1 extra\n",
        "binary": "\x7fELF\x02\x01\x01\0\0\0",
    }
    for label, body in bodies.items():
        yield Input(f"addrfile-{label}", "addrfile", "addrfile", label,
                    text=body.encode("latin-1"), must_fail=True)
    yield Input("addrfile-read-only", "addrfile", "addrfile", "a valid addrfile of mode 0444",
                text=b"206158430208 libother.so.1\n", mode=0o444, must_fail=True)


def outpath_inputs():
    yield Input("outpath-missing-dir", "outpath", "outpath", "-o in a directory that does "
                "not exist", special="nodir", must_fail=True)
    yield Input("outpath-directory", "outpath", "outpath", "-o naming a directory",
                special="isdir", must_fail=True)


def generate(baselines, seed):
    """Every input, in a fixed order, for ``seed``."""
    rng = random.Random(seed)
    inputs = list(elf_inputs(baselines, rng))
    inputs += special_inputs()
    inputs += vec_inputs(rng)
    inputs += patfile_inputs()
    inputs += addrfile_inputs()
    inputs += outpath_inputs()
    names = [i.name for i in inputs]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"input names not unique: {sorted(duplicates)}")
    return inputs
