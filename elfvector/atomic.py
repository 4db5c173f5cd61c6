"""Writing outputs so that nothing is lost: temp file, then rename.

An output is written beside its final name and renamed over it only when
complete, so an error or an interrupt never leaves a partial file, and an
input that happens to be the output is never truncated before it is read.
The one exception is ``vectool --mode=rpathrm``, which edits installed
files in place as patchelf and chrpath do (see rpathrm.py).

Modes: a file that is replaced keeps its mode (as ``cp`` does); a new one
gets the mode the caller asks for (an ELF output: its input's), less the
umask.  Errors name the path the user gave, never the temporary file.
"""

import os
import shutil
import stat
import tempfile
from contextlib import contextmanager

from .errors import OutputError

TEMP_PREFIX = ".elfvector-"


def check_output(path):
    """Refuse, before any work is done, an output that could not be written.

    The checks are those the final rename would otherwise fail on: a
    missing directory, a path that is a directory, a directory we may not
    write in.
    """
    if os.path.isdir(path):
        raise OutputError("cannot write: it is a directory", path)
    directory = os.path.dirname(path) or "."
    if not os.path.exists(directory):
        raise OutputError(f"cannot write: no such directory {directory}", path)
    if not os.path.isdir(directory):
        raise OutputError(f"cannot write: {directory} is not a directory", path)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write: permission denied in {directory}", path)


@contextmanager
def replacing(path, mode=0o666):
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    An existing ``path`` keeps its mode; a new one gets ``mode`` less the
    umask.
    """
    check_output(path)
    final_mode = _mode_for(path, mode)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
    except OSError as e:
        raise OutputError(f"cannot write: {e.strerror}", path) from None
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, final_mode)
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise OutputError(f"cannot write: {e.strerror}", path) from None
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def write_bytes(path, data, mode=0o666):
    """``data`` to ``path``, atomically (``mode`` is that of a new file)."""
    with replacing(path, mode) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def move_into_place(src, path):
    """Move a finished file (e.g. a linker's output) to ``path`` atomically."""
    with replacing(path, os.stat(src).st_mode & 0o777) as tmp:
        shutil.copyfile(src, tmp)


def _mode_for(path, new_mode):
    try:
        st = os.stat(path)
    except OSError:
        return new_mode & ~_umask()
    if stat.S_ISREG(st.st_mode):
        return stat.S_IMODE(st.st_mode)
    return new_mode & ~_umask()


def _umask():
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o22)
    os.umask(mask)
    return mask
