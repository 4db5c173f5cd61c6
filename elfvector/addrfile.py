"""The addrfile: fixed, non-overlapping base addresses of a group of libraries.

Format (the seed's): one line per library, the base address then the
soname, ``#`` starts a comment, addresses in decreasing order.  Addresses
are written in decimal (the seed's shells could not read hex) with the hex
form in a comment, and ``0x`` hex is accepted on input.  A new soname
appends one line; nothing else in the file is rewritten.

Many ``vectool`` runs at once (``make -j``) serialize on an exclusive
``flock`` of ``FILE.lock`` held from reading the file to writing it, and the
new file replaces the old by rename, so no reader ever sees half a file
and no two libraries get overlapping ranges.

The addrfile must be a regular file (a symbolic link to one is followed:
the line goes into its target, as an editor would put it) that we may
write: a read-only addrfile (``chmod a-w``) is refused before any link,
never replaced behind the user's back.  Replacing it keeps its mode.
"""

import fcntl
import os
import re
import stat
from contextlib import contextmanager
from dataclasses import dataclass

from .atomic import write_bytes
from .errors import ElfvectorError, OutputError, printable

MIB2 = 2 << 20
PAGE = 0x1000
# The x86-64 user address space with 4-level paging (TASK_SIZE_MAX), above
# the kernel's default vm.mmap_min_addr: a base outside cannot be mapped.
USER_BOTTOM = 0x10000
USER_TOP = 0x7FFFFFFFF000


class AddrFileError(ElfvectorError):
    """A malformed addrfile, or a library that does not fit its range."""


@dataclass(frozen=True)
class Region:
    """Where bases are handed out: downwards from ``top``, never below ``bottom``."""

    top: int
    bottom: int


# prelink's x86-64 region; and one within 1 GiB of a non-PIE program's text
# at 0x400000, so that slots bind as jmp rel32 (the binder checks each
# displacement only for tables within 1 GiB of the slots).
DEFAULT_REGION = Region(top=0x4000000000, bottom=0x3000000000)
NEAR_REGION = Region(top=0x40000000, bottom=0x10000000)


@dataclass(frozen=True)
class Assignment:
    base: int
    soname: str


def parse(text, path):
    """The assignments of an addrfile's text, checked."""
    result, seen = [], set()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if len(words) != 2 or not re.fullmatch(r"\d+|0[xX][0-9a-fA-F]+", words[0]):
            raise AddrFileError(f"line {lineno}: expected 'ADDRESS SONAME', got {raw.strip()!r}",
                                path)
        base = int(words[0], 0)
        if not USER_BOTTOM <= base < USER_TOP:
            raise AddrFileError(f"line {lineno}: {words[0]} is outside the x86-64 user address "
                                f"space ({USER_BOTTOM:#x}-{USER_TOP:#x})", path)
        if base % PAGE:
            raise AddrFileError(f"line {lineno}: {words[0]} is not page-aligned", path)
        if words[1] in seen:
            raise AddrFileError(f"line {lineno}: {words[1]} appears twice", path)
        if result and base >= result[-1].base:
            raise AddrFileError(f"line {lineno}: addresses must decrease", path)
        seen.add(words[1])
        result.append(Assignment(base, words[1]))
    return result


#: what an addrfile's name cannot hold: its lines are split on white space, ``#``
#: starts a comment, and the file is strict UTF-8 text a user may edit
_UNLINEABLE = re.compile(r"[\s#\x00-\x1f\x7f\udc80-\udcff]")


def check_name(name, library, remedy="rename it, or use --no-fixed-bases"):
    """Refuse, before anything is written, a library whose addrfile name (its
    soname) no addrfile line can hold (``remedy``: what the user can do).

    A soname that is not UTF-8 (decoded with surrogateescape) would make the
    addrfile unreadable to every later run, one with white space or ``#``
    would read back as another line: the library cannot have a fixed base.
    """
    if _UNLINEABLE.search(name):
        raise AddrFileError(f"'{printable(name)}' cannot name it in an addrfile (not "
                            f"UTF-8, or white space, '#' or a control character in it): "
                            f"{remedy}", library)


def format_line(assignment, span):
    return (f"{assignment.base} {assignment.soname}  # {assignment.base:#x}, "
            f"{span:#x} bytes used\n")


def room_for(span):
    """A new library's range: its span plus 33% and a few pages, in 2 MiB units."""
    return _align_up(span + span // 3 + 4 * PAGE + _thp_margin(span), MIB2)


def _thp_margin(span):
    """Free space a mapping of ``span`` bytes needs above its end to get its hint.

    Linux 6.7+ aligns file mappings of 2 MiB or more to 2 MiB (for
    transparent huge pages) and then keeps the hint only when the range
    plus another 2 MiB is free; otherwise the library lands elsewhere.
    """
    return MIB2 if span >= MIB2 else 0


def choose_base(assignments, soname, span, region, path):
    """(base, is_new) for ``soname`` needing ``span`` bytes of address space.

    An old base is kept while the library still fits below the next base
    up; a new one goes below every other, with room to grow.
    """
    for i, a in enumerate(assignments):
        if a.soname != soname:
            continue
        upper = min((b.base for b in assignments if b.base > a.base), default=region.top)
        if a.base + span + _thp_margin(span) > upper:
            raise AddrFileError(
                f"{soname} no longer fits at {a.base:#x} ({span:#x} bytes, "
                f"{upper - a.base:#x} available): delete its line '{a.base} {soname}' from "
                "this addrfile and rerun vectool, which gives it a new base below all others",
                path)
        return a.base, False
    lowest = min((a.base for a in assignments), default=region.top)
    base = (min(lowest, region.top) - room_for(span)) // MIB2 * MIB2
    if base < region.bottom:
        raise AddrFileError(f"no room left for {soname} above {region.bottom:#x}", path)
    return base, True


def check_writable(path):
    """Refuse, before any link, an addrfile that vectool could not update.

    It may be missing (then its directory must be writable), or a regular
    file (after following symbolic links) with write permission.
    """
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        directory = os.path.dirname(real)
        if not os.path.isdir(directory):
            raise AddrFileError(f"cannot create: no such directory "
                                f"{os.path.dirname(path) or '.'}", path) from None
        if not os.access(directory, os.W_OK | os.X_OK):
            raise AddrFileError("cannot create: permission denied in its directory",
                                path) from None
        return
    except OSError as e:
        raise AddrFileError(f"cannot read: {e.strerror}", path) from None
    _check_regular(st, path)
    if not st.st_mode & 0o222 or not os.access(real, os.W_OK):
        raise AddrFileError(f"is read-only (mode {stat.S_IMODE(st.st_mode):04o}): vectool "
                            "adds a line for each new library; make it writable or use "
                            "another addrfile", path)


@contextmanager
def locked(path):
    """Hold the addrfile's lock; yields its current assignments.

    The lock is ``FILE.lock`` beside the addrfile's real path, so that
    every name of one addrfile takes the same lock.
    """
    check_writable(path)
    lock_path = os.path.realpath(path) + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise AddrFileError(f"cannot create its lock file {os.path.basename(lock_path)}: "
                            f"{e.strerror}", path) from None
    try:
        _check_regular(os.fstat(fd), path, f"its lock file {os.path.basename(lock_path)} is ")
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield read(path)
    finally:
        os.close(fd)


def read(path):
    """The assignments of the addrfile ``path`` (none if it does not exist).

    Opened without blocking and checked to be a regular file before
    anything is read from it: a FIFO would block forever.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise AddrFileError(f"cannot read: {e.strerror}", path) from None
    with os.fdopen(fd, "rb") as f:
        _check_regular(os.fstat(f.fileno()), path)
        try:
            return parse(f.read().decode("utf-8"), path)
        except OSError as e:
            raise AddrFileError(f"cannot read: {e.strerror}", path) from None
        except UnicodeDecodeError as e:
            raise AddrFileError(f"not UTF-8 text (byte {e.start})", path) from None


def append(path, assignment, span):
    """Add one line (call with the lock held); the file is replaced atomically.

    A symbolic link stays one: its target gets the line.
    """
    append_all(path, [(assignment, span)])


def append_all(path, entries):
    """Add a line for each (assignment, span) of ``entries`` in one atomic
    replacement (call with the lock held), as :func:`append` adds one."""
    check_writable(path)
    real = os.path.realpath(path)
    text = ""
    if os.path.exists(real):
        with open(real, encoding="utf-8") as f:
            text = f.read()
        if text and not text.endswith("\n"):
            text += "\n"
    try:
        lines = "".join(format_line(assignment, span) for assignment, span in entries)
        write_bytes(real, (text + lines).encode())
    except OutputError as e:
        raise AddrFileError(e.reason, path) from None


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def _check_regular(st, path, what=""):
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(st.st_mode)), "a special file")
        raise AddrFileError(f"{what}not a regular file ({kind})", path)


def _align_up(value, align):
    return (value + align - 1) // align * align
