"""Writing outputs so that nothing is lost: temp file, then rename.

An output is written beside its final name and renamed over it only when
complete, so an error or an interrupt never leaves a partial file, and an
input that happens to be the output is never truncated before it is read.
"""

import os
import shutil
import tempfile
from contextlib import contextmanager


@contextmanager
def replacing(path, mode=None):
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    ``mode`` (default: the mode of an existing ``path``, else whatever the
    writer produced) is applied before the rename.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".elfvector-", dir=directory)
    os.close(fd)
    if mode is None and os.path.exists(path):
        mode = os.stat(path).st_mode & 0o7777
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_bytes(path, data, mode=None):
    with replacing(path, mode) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def move_into_place(src, path):
    """Move a finished file (e.g. a linker's output) to ``path`` atomically."""
    with replacing(path, os.stat(src).st_mode & 0o7777) as tmp:
        shutil.copyfile(src, tmp)
