"""Which file a DT_NEEDED name loads (``elf/dl-load.c``): DT_RPATH of the
loader chain, LD_LIBRARY_PATH, DT_RUNPATH, ``/etc/ld.so.cache``, the
system directories; every directory with its hwcaps subdirectories; the
dynamic string tokens ($ORIGIN, $PLATFORM, $LIB)."""

import errno
import os
import re
import struct

from ..elfimage import ET_DYN
from ..errors import ElfvectorError
from .symbols import LoadError


class LibrarySearch:
    """ld.so's search for one process: ``main`` is the program (its
    DT_RPATH serves every object; only files of its ELF class and machine
    are loaded), ``library_path`` LD_LIBRARY_PATH (None: unset).  Files
    come from ``files``, a :class:`FileCache`; every path is one inside
    ``config.root``.

    At link time (impvec), the libraries named on the link command line
    (``link_files``) and its ``-L`` directories (``link_dirs``) come first,
    for every name: they are the files the link editor used, which a
    program about to be installed may not find at run time yet.  They are
    paths of this machine, never under the root.
    """

    def __init__(self, config, cache, files, main, library_path, link_files=(), link_dirs=()):
        self.config = config
        self.cache = cache
        self.files = files
        self.main = main
        self.layout, self.machine = main.elf.image.layout, main.elf.machine
        self.env_dirs = self.path_list(library_path or "", ":;", main)
        self.link_files = self._by_soname(link_files)
        self.link_dirs = [d.rstrip("/") + "/" if d.rstrip("/") else "/" for d in link_dirs]

    def find(self, loader, name):
        """The file that a name without a slash loads: (path, ElfObject) or
        None."""
        found = self._link_time(loader, name) if self.link_files or self.link_dirs else None
        return found or self._ldso_search(loader, name)

    def _ldso_search(self, loader, name):
        """The search for a name without a slash, in ld.so's order."""
        if loader.elf.runpath is None:
            chain, seen_main = loader, False
            while chain is not None:
                found = self._open_path(name, self._rpath_dirs(chain), loader)
                if found:
                    return found
                seen_main |= chain.is_main
                chain = chain.loader
            if not seen_main:
                found = self._open_path(name, self._rpath_dirs(self.main), loader)
                if found:
                    return found
        found = self._open_path(name, self.env_dirs, loader)
        if not found and loader.elf.runpath is not None:
            found = self._open_path(name, self.path_list(loader.elf.runpath, ":", loader),
                                    loader)
        if not found:
            found = self._from_cache(name, loader)
        if not found and not loader.elf.nodeflib:
            found = self._open_path(name, self.config.system_dirs, loader)
        return found

    def _link_time(self, loader, name):
        """A library of the link command line whose soname is ``name``, else
        ``name`` in the first ``-L`` directory holding a usable file (the
        link editor skips an incompatible one, and so does this)."""
        if name in self.link_files:
            return self.open_verify(self.link_files[name], loader, in_root=False)
        for directory in self.link_dirs:
            try:
                found = self.open_verify(directory + name, loader, in_root=False)
            except ElfvectorError:
                continue
            if found:
                return found
        return None

    def _by_soname(self, paths):
        """soname (else file name) -> path, of the shared libraries among
        ``paths`` (a link command's objects, archives and libraries)."""
        found = {}
        for path in paths:
            if self._elf_type(path) == ET_DYN:
                try:
                    elf = self.files.get(path)
                except ElfvectorError:
                    continue
                if not elf.is_pie:
                    found.setdefault(elf.soname or os.path.basename(path), path)
        return found

    def _rpath_dirs(self, obj):
        """DT_RPATH of ``obj``, unless it has DT_RUNPATH (which hides it)."""
        if obj.elf.rpath is None or obj.elf.runpath is not None:
            return []
        return self.path_list(obj.elf.rpath, ":", obj)

    def _from_cache(self, name, loader):
        path = self.cache.lookup(name, self.config)
        if path is None:
            return None
        if loader.elf.nodeflib and any(path.startswith(d) for d in self.config.system_dirs):
            return None
        return self.open_verify(path, loader)

    def path_list(self, text, separators, obj):
        """``fillin_rpath``: each element DST-expanded (dropped if that
        empties it), trailing slashes reduced to one, duplicates dropped;
        an empty element is the current directory."""
        dirs = []
        for element in re.split(f"[{separators}]", text) if text else []:
            if element:
                element = self.substitute(obj, element) if dst_count(element) else element
                if not element:
                    continue
                element = element.rstrip("/") or "/"
                element = element if element.endswith("/") else element + "/"
            if element not in dirs:
                dirs.append(element)
        return dirs

    def substitute(self, obj, text):
        """``_dl_dst_substitute``: $ORIGIN, $PLATFORM, $LIB (or ${...})."""
        values = {"ORIGIN": obj.origin, "PLATFORM": self.config.platform,
                  "LIB": self.config.dst_lib}
        out, i = [], 0
        while i < len(text):
            if text[i] == "$":
                token, length = dst_at(text, i + 1)
                if token is not None:
                    if values[token] is None:
                        return ""
                    out.append(values[token])
                    i += 1 + length
                    continue
            out.append(text[i])
            i += 1
        return "".join(out)

    def _open_path(self, name, dirs, loader):
        """``open_path``: every directory with every hwcaps subdirectory."""
        for directory in dirs:
            for sub in self.config.subdirectories:
                found = self.open_verify(directory + sub + name, loader)
                if found is False:
                    break               # an error other than "not there": next list
                if found:
                    return found
            else:
                continue
            return None
        return None

    def open_verify(self, path, loader, in_root=True):
        """``open_verify``: (path, ElfObject) if ld.so would load the file;
        None if it would try the next candidate (missing, unreadable, of
        another ELF class or machine than the program: ld.so skips an
        i386 library in an x86-64 program's path, and the reverse); False
        to give up this path list.  ``path`` is inside the root unless
        ``in_root`` is False (a link command's file)."""
        host = self.config.host_path(path) if in_root else path
        try:
            header = _read_header(host)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EACCES, errno.ENOTDIR, errno.ENAMETOOLONG):
                return None
            if e.errno == errno.EISDIR:
                raise LoadError(f"{host}: cannot read file data: Is a directory",
                                loader.elf.path) from None
            return False
        if len(header) < self.layout.ehdr.size or header[:4] != b"\x7fELF":
            raise LoadError(f"{host}: invalid ELF header", loader.elf.path)
        if not self._compatible(header):
            return None
        return path, self.files.get(host)

    def _compatible(self, header):
        """Whether an ELF header is of the program's class and machine."""
        return header[4] == self.layout.elfclass and \
            struct.unpack_from("<H", header, 18)[0] == self.machine.number

    def _elf_type(self, path):
        """``e_type`` of an ELF file at the host path ``path`` of the
        program's class and machine, else None."""
        try:
            header = _read_header(path)
        except OSError:
            return None
        if len(header) < self.layout.ehdr.size or header[:4] != b"\x7fELF" \
                or not self._compatible(header):
            return None
        return struct.unpack_from("<H", header, 16)[0]


def _read_header(path):
    """The first 64 bytes of the file at ``path`` (fewer if it is shorter);
    O_NONBLOCK, so that a FIFO in a search path never blocks."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return os.read(fd, 64)
    finally:
        os.close(fd)


def dst_at(text, i):
    """The DST starting at ``text[i]`` (after a ``$``) and its length
    (``is_dst``), or (None, 0)."""
    for token in ("ORIGIN", "PLATFORM", "LIB"):
        curly = text.startswith("{" + token + "}", i)
        if curly:
            return token, len(token) + 2
        if text.startswith(token, i):
            after = text[i + len(token):i + len(token) + 1]
            if not (after and (after.isascii() and (after.isalnum() or after == "_"))):
                return token, len(token)
    return None, 0


def dst_count(text):
    """``_dl_dst_count``: how many known DSTs ``text`` holds."""
    count, i = 0, text.find("$")
    while i >= 0:
        token, length = dst_at(text, i + 1)
        count += token is not None
        i = text.find("$", i + 1 + length)
    return count
