"""Finding the shared libraries a file needs, the way ld.so would.

The search order follows glibc's ``elf/dl-load.c`` (``_dl_map_object``):
DT_RPATH of the requesting object (when it has no DT_RUNPATH),
LD_LIBRARY_PATH, DT_RUNPATH, the ld.so.cache directories, then the system
directories.  At link time the libraries named on the command line and the
``-L`` directories come first, since those are what the link editor used.
"""

import glob
import os
from collections import deque

from .elffile import ElfFile
from .errors import ElfvectorError

SYSTEM_DIRS = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
               "/lib64", "/usr/lib64", "/lib", "/usr/lib"]


def ld_so_conf_dirs(path="/etc/ld.so.conf", _seen=None):
    """Directories listed in ld.so.conf and its ``include`` files."""
    seen = _seen if _seen is not None else set()
    if path in seen or not os.path.isfile(path):
        return []
    seen.add(path)
    dirs = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line.startswith("include"):
                pattern = line.split(None, 1)[1]
                for inc in sorted(glob.glob(os.path.join(os.path.dirname(path), pattern))):
                    dirs.extend(ld_so_conf_dirs(inc, seen))
            elif line:
                dirs.append(line)
    return dirs


class LibraryResolver:
    """Maps DT_NEEDED names to files, caching what it has opened."""

    def __init__(self, known_files=(), link_dirs=(), library_path=()):
        self.link_dirs = list(link_dirs)
        self.library_path = list(library_path)
        self.system_dirs = ld_so_conf_dirs() + SYSTEM_DIRS
        self._by_soname = {}
        for path in known_files:
            elf = self._open(path)
            if elf is not None and elf.is_shared_object:
                self._by_soname.setdefault(elf.soname or os.path.basename(path), elf)

    def _open(self, path):
        """A library, parsed for its dynamic section and .dynsym only (fast)."""
        try:
            return ElfFile(path, light=True)
        except ElfvectorError:
            return None     # wrong class or architecture: ld.so skips it too

    def find(self, name, requester):
        """The ElfFile for DT_NEEDED ``name`` of ``requester``, or None."""
        if "/" in name:
            return self._open(name) if os.path.isfile(name) else None
        if name in self._by_soname:
            return self._by_soname[name]
        rpath, runpath = requester.runpath
        dirs = self.link_dirs + (rpath if not runpath else []) + self.library_path \
            + runpath + self.system_dirs
        for d in dirs:
            candidate = os.path.join(d, name)
            if os.path.isfile(candidate):
                elf = self._open(candidate)
                if elf is not None and elf.arch == requester.arch:
                    self._by_soname[name] = elf
                    return elf
        return None

    def closure(self, root):
        """Every library ``root`` loads, breadth-first as ld.so maps them.

        Returns ``(libraries, missing)``: ElfFiles in load order, and the
        DT_NEEDED names that could not be found.
        """
        order, missing, seen = [], [], set()
        queue = deque([root])
        while queue:
            obj = queue.popleft()
            for name in obj.needed:
                if name in seen:
                    continue
                seen.add(name)
                lib = self.find(name, obj)
                if lib is None:
                    missing.append(name)
                    continue
                order.append(lib)
                queue.append(lib)
        return order, missing
