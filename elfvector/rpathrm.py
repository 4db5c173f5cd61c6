"""rpathrm: remove directories from a linked file's DT_RPATH / DT_RUNPATH.

The run path is a ``:``-separated list in ``.dynstr``.  rpathrm rewrites
it **in place**: the kept entries, joined by ``:``, then NUL bytes up to the
old string's end.  The file keeps its size and its layout, and the
``.dynamic`` entry keeps its value.

* ``remove_dirs=None`` removes every entry; otherwise an entry goes when it
  equals one of ``remove_dirs`` or lies below one (``/a/b`` removes ``/a/b``
  and ``/a/b/c``, not ``/a/bc``).  Comparison is textual, after collapsing
  repeated ``/`` and dropping a trailing one; ``$ORIGIN`` and other
  dynamic string tokens are compared as written.  Empty entries (which
  ld.so reads as the current directory) are kept unless all are removed.
* When nothing is left, the entry stays and names an empty string.  ld.so
  reads an empty list as no directory at all (``decompose_rpath``), and a
  present DT_RUNPATH keeps its other effect, disabling the DT_RPATH of the
  file and of its loaders: dropping the entry instead could change which
  directories are searched.
* The link editor merges strings that are suffixes of others in
  ``.dynstr``: bytes of the old run path that another name uses (a
  DT_NEEDED, a symbol or version name) are never overwritten; if the new
  list does not fit before them, rpathrm refuses.

Writing in place is the one documented exception to elfvector's rule of
writing every output through a temporary file and a rename (atomic.py).
rpathrm edits installed files, as patchelf and chrpath do, and such a
file must stay the file it was: same inode, hard links, symbolic links
(the target is edited), owner and mode.  The edit only shortens a string,
so rpathrm_file writes just the changed bytes of ``.dynstr``, a few dozen
bytes within one page, and a file with nothing to remove is not opened for
writing at all.  A file being run cannot be written (ETXTBSY): that is an
error, never a silent copy.
"""

import errno
import os
import re

from .elfimage import (DT_AUDIT, DT_AUXILIARY, DT_CONFIG, DT_DEPAUDIT, DT_FILTER, DT_NEEDED,
                       DT_RPATH, DT_RUNPATH, DT_SONAME, DT_STRTAB, DT_SYMTAB, ElfImage,
                       read_elf_file)
from .errors import OutputError, UnsupportedElfError

RUN_PATH_TAGS = (DT_RPATH, DT_RUNPATH)
OTHER_NAME_TAGS = (DT_NEEDED, DT_SONAME, DT_AUXILIARY, DT_FILTER, DT_CONFIG, DT_DEPAUDIT,
                   DT_AUDIT)


def rpathrm(data, path, remove_dirs):
    """The bytes of ``data`` with ``remove_dirs`` (all, if None) out of its run paths.

    A file without DT_RPATH/DT_RUNPATH, or with nothing to remove, comes
    back unchanged (the same object).
    """
    edits = run_path_edits(data, path, remove_dirs)
    if not edits:
        return data
    out = bytearray(data)
    for at, new in edits:
        out[at:at + len(new)] = new
    return bytes(out)


def run_path_edits(data, path, remove_dirs):
    """``[(file offset, new bytes)]``: each run path string to rewrite, in place."""
    image = ElfImage(data, path, "vectool --mode=rpathrm")
    if image.dynamic is None:
        return []
    entries = [(tag, value) for tag, value in image.dynamic if tag in RUN_PATH_TAGS]
    if not entries:
        return []
    strtab = image.dyn(DT_STRTAB)
    table = image.dynstr()
    others = _other_references(image)
    edits = []
    for offset in sorted({value for _, value in entries}):
        old = _string(table, offset, path)
        new = ":".join(d for d in old.split(":") if not _removed(d, remove_dirs)) if old else ""
        if new == old:
            continue
        end = offset + len(old.encode("utf-8", "surrogateescape"))
        if offset in others:
            raise UnsupportedElfError("the run path string is also another name in .dynstr",
                                      path)
        shared = [o for o in others if offset < o <= end]
        limit = min(shared, default=end)
        encoded = new.encode("utf-8", "surrogateescape")
        if len(encoded) >= limit - offset + (limit == end):
            raise UnsupportedElfError("the run path shares its bytes with another name in "
                                      ".dynstr: no room to rewrite it in place", path)
        at = image.offset_of(strtab + offset, limit - offset)
        edits.append((at, encoded + bytes(limit - offset - len(encoded))))
    return edits


def rpathrm_file(path, remove_dirs):
    """Remove ``remove_dirs`` from the run paths of the file ``path``, in place.

    Returns whether the file changed; an unchanged file is not touched.
    """
    edits = run_path_edits(read_elf_file(path), path, remove_dirs)
    if not edits:
        return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ETXTBSY:
            raise OutputError("cannot edit in place: the file is being run (text file "
                              "busy); rerun when it has exited", path) from None
        raise OutputError(f"cannot edit in place: {e.strerror}", path) from None
    try:
        for at, new in edits:
            os.pwrite(fd, new, at)
    except OSError as e:
        raise OutputError(f"cannot edit in place: {e.strerror}", path) from None
    finally:
        os.close(fd)
    return True


def _removed(entry, remove_dirs):
    if remove_dirs is None:
        return True
    entry = _normal(entry)
    if not entry:
        return False
    for d in remove_dirs:
        d = _normal(d)
        if not d:
            continue
        if entry == d or entry.startswith(d.rstrip("/") + "/"):
            return True
    return False


def _normal(path):
    path = re.sub(r"/+", "/", path)
    return path[:-1] if len(path) > 1 and path.endswith("/") else path


def _string(table, offset, path):
    if offset >= len(table):
        raise UnsupportedElfError(f"bad .dynstr offset {offset} for the run path", path)
    end = table.find(b"\0", offset)
    if end < 0:
        raise UnsupportedElfError("unterminated run path in .dynstr", path)
    return table[offset:end].decode("utf-8", "surrogateescape")


def _other_references(image):
    """Every .dynstr offset named by something other than a run path entry."""
    refs = {value for tag, value in image.dynamic if tag in OTHER_NAME_TAGS}
    if image.dyn(DT_SYMTAB):
        refs |= {s.name for s in image.dynsyms()}
    refs |= {offset for _, offset in image.version_strings()}
    return refs
