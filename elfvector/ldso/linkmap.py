"""One process start: which objects ld.so loads and in what order
(``rtld.c``, ``elf/dl-deps.c``, ``dl-load.c``), their scopes, the order
of relocation (``dl-sort-maps.c``), and the checks ld.so makes before it
runs anything (``dl-version.c``)."""

import os
import re

from ..errors import ElfvectorError, UnsupportedElfError
from . import startup
from .cache import LdCache
from .config import ARCHES, LdsoConfig
from .lookup import definitions, lookup
from .objects import FileCache, MappedObject
from .search import LibrarySearch, dst_count
from .symbols import CLASS_NORMAL, LoadError, decode


class LinkMap:
    """The objects of one program's start, as ld.so loads and links them.

    ``program`` is run as ``argv[0]`` (what LD_DEBUG calls it);
    ``preload`` the LD_PRELOAD list; ``library_path`` LD_LIBRARY_PATH (None:
    unset; nothing is read from this process's environment);
    ``system_preload`` whether /etc/ld.so.preload is read, as ld.so does.

    ``trace`` loads as ``ld.so --list`` (ldd) does: ``program`` may be a
    shared library, and a library that cannot be loaded is left out (ldd's
    "not found", listed in :attr:`not_found`) instead of stopping the
    start.  ``link_files`` and ``link_dirs`` are a link command's
    libraries and ``-L`` directories, searched first
    (:class:`~.search.LibrarySearch`).

    ``config`` is the ld.so's (:class:`LdsoConfig`); by default, and when
    it is another architecture's, that of the program's architecture
    under ``root`` (the config's root if one is given): the directory
    that every path ld.so opens is under, as in a chroot ("": this
    system).  ``program`` is a path of this system; the names of the
    objects (and what LD_DEBUG would print) are paths inside the root.
    """

    RTLD_MALLOC = startup.RTLD_MALLOC

    def __init__(self, program, preload=(), library_path=None, config=None, cache=None,
                 files=None, system_preload=True, trace=False, link_files=(), link_dirs=(),
                 root=None):
        self.files = files or FileCache()
        elf = self.files.get(program)
        self.config = config_for(elf.machine, config, root)
        self.cache = cache if cache is not None else \
            LdCache.read(self.config.host_path(self.config.cache_path))
        self.trace = trace
        self.not_found = []             #: trace: (loader, name, reason) of each one left out
        self.loaded = []                # the namespace's list, in mapping order
        self.main = self._map_main(program, elf)
        self.rtld = self._map_rtld()
        self.search = LibrarySearch(self.config, self.cache, self.files, self.main,
                                    library_path, link_files, link_dirs)
        preloads = self._preloads(preload, system_preload)
        self.search_list = self._map_dependencies([self.main] + preloads)
        if not trace:           # ld.so relocates what it loads (ldd, tracing, does not)
            for obj in self.loaded:
                startup.check_relocated_words(obj.elf)
        self._set_scopes()
        self.unique = {}                           #: the STB_GNU_UNIQUE table (lookup.py)

    @property
    def objects(self):
        """The objects in load order (ld.so's ``l_next`` chain without the
        vDSO): the global scope, where ld.so sits if something needs it."""
        return self.search_list

    # -- loading (rtld.c dl_main, dl-deps.c, dl-load.c) --------------------------------
    def _map_main(self, program, elf):
        if elf.interp is None and not (self.trace and not elf.is_executable):
            raise UnsupportedElfError("not a dynamically linked program (no PT_INTERP)",
                                      program)
        origin = os.path.dirname(self.config.name_in_root(program))
        main = MappedObject(elf, program, {""}, is_main=True, origin=origin)
        self.loaded.append(main)
        return main

    def _map_rtld(self):
        """ld.so itself, known by the program's PT_INTERP name and its
        soname.  The file is PT_INTERP's, which the kernel loads; when
        tracing, it is the running ld.so (``ld.so --list FILE``)."""
        interp = self.main.elf.interp
        path = self.config.interp if self.trace or interp is None else interp
        try:
            elf = self.files.get(self.config.host_path(path))
        except ElfvectorError as e:
            where = f" under {self.config.root}" if self.config.root else ""
            raise LoadError(f"its dynamic linker {path}{where}: {e.reason}",
                            self.main.elf.path) from None
        names = {path} | ({interp} if interp else set()) | ({elf.soname} if elf.soname else set())
        rtld = MappedObject(elf, path, names, is_rtld=True, origin=self.main.origin)
        self.loaded.append(rtld)
        return rtld

    def _preloads(self, preload, system_preload):
        """LD_PRELOAD's names (split at spaces and colons), then those of
        /etc/ld.so.preload; each loaded as needed by the program.  One that
        cannot be loaded is ignored; one already loaded is no preload."""
        names = [n for n in re.split(r"[ :]", preload) if n] if isinstance(preload, str) \
            else list(preload)
        preload_path = self.config.host_path(self.config.preload_path)
        if system_preload and os.access(preload_path, os.R_OK):
            with open(preload_path, "rb") as f:
                text = re.sub(rb"#[^\n]*", b"", f.read())
            names += [decode(n) for n in re.split(rb"[: \t\n]", text) if n]
        maps = []
        for name in names:
            loaded = len(self.loaded)
            try:
                obj = self._map_object(self.main, name)
            except LoadError:
                continue        # "cannot be preloaded (...): ignored."
            if len(self.loaded) > loaded:
                maps.append(obj)
        return maps

    def _map_dependencies(self, initial):
        """``_dl_map_object_deps``: breadth-first over DT_NEEDED, each
        object once; the result is the global scope (main map's searchlist)."""
        search = list(initial)
        listed = set(search)
        i = 0
        while i < len(search):
            obj = search[i]
            for needed in obj.elf.needed:
                dep = self._map_needed(obj, needed)
                if dep is None:
                    continue
                if dep not in listed:
                    listed.add(dep)
                    search.append(dep)
                obj.deps.append(dep)
            i += 1
        return search

    def _map_needed(self, obj, needed):
        """The object a DT_NEEDED entry of ``obj`` loads.  When tracing, a
        library that cannot be loaded is None, and so is every later
        request of that name (ld.so enters a stand-in without symbols
        under the name: ``_dl_map_object`` in trace mode)."""
        if any(name == needed for _, name, _ in self.not_found):
            return None
        try:
            return self._map_object(obj, self._expand_needed(obj, needed))
        except ElfvectorError as e:
            if not self.trace:
                raise
            self.not_found.append((obj, needed, e.reason))
            return None

    def _expand_needed(self, obj, name):
        expanded = self.search.substitute(obj, name) if dst_count(name) else name
        if not expanded:
            raise LoadError(f"{name}: empty dynamic string token substitution", obj.elf.path)
        return expanded

    def _map_object(self, loader, name):
        """``_dl_map_object``: an object already loaded under this name or
        soname, else the file the search finds, unless it is one already
        loaded (same device and inode)."""
        for obj in self.loaded:
            if name in obj.names or name == obj.elf.soname \
                    or (name == obj.name and not obj.is_main):
                obj.names.add(name)
                return obj
        if "/" in name:
            realname = self.search.substitute(loader, name) if dst_count(name) else name
            found = self.search.open_verify(realname, loader) if realname else None
        else:
            found = self.search.find(loader, name)
        if not found:
            raise LoadError(f"cannot find {name}, which it needs: ld.so would not start "
                            "the program", loader.elf.path)
        realname, elf = found
        for obj in self.loaded:
            if not obj.is_main and not obj.is_rtld and obj.elf.file_id == elf.file_id:
                obj.names.add(name)
                return obj
        if elf.is_executable or elf.is_pie:
            raise LoadError(f"{elf.path}: cannot load an executable as a library",
                            loader.elf.path)
        obj = MappedObject(elf, realname, {name}, loader=loader,
                           origin=os.path.dirname(os.path.abspath(realname)) or "/")
        self.loaded.append(obj)
        return obj

    def _set_scopes(self):
        """Every object searches the global scope; an object with
        DT_SYMBOLIC (not the program) first searches itself.  ld.so has no
        scope of its own: it is relocated with the program's."""
        for obj in self.loaded:
            if obj.is_rtld:
                continue
            obj.scope = [self.search_list]
            if obj.elf.symbolic and not obj.is_main:
                obj.scope = [[obj], self.search_list]

    # -- order of relocation (dl-deps.c, dl-sort-maps.c, rtld.c) -----------------
    def initfini(self):
        """The main map's ``l_initfini``: the global scope sorted by
        ``_dl_sort_maps_dfs`` (dependencies after their users, the program
        first).  Constructors run from its end; relocation too."""
        visited, post = set(), []

        def visit(obj):
            visited.add(obj)
            if not obj.is_main:
                for dep in obj.deps:
                    if dep not in visited and not dep.is_main:
                        visit(dep)
            post.append(obj)

        for obj in reversed(self.search_list):
            if obj not in visited:
                visit(obj)
        order = post[::-1]
        if order[0] is not self.main:
            order.remove(self.main)
            order.insert(0, self.main)
        return order

    def relocation_order(self):
        """Objects in the order ld.so relocates them: reverse ``l_initfini``
        without ld.so, then ld.so itself if some object needs it."""
        order = [o for o in reversed(self.initfini()) if not o.is_rtld]
        return order + ([self.rtld] if self.rtld in self.search_list else [])

    # -- symbol lookup and start-up (lookup.py, startup.py) ----------------------
    def lookup(self, name, requester, version=None, type_class=CLASS_NORMAL, ref=None,
               newest=False):
        """``_dl_lookup_symbol_x``: (MappedObject, Symbol) or None; see
        :func:`.lookup.lookup`."""
        return lookup(self, name, requester, version, type_class, ref, newest)

    def definitions(self, name, requester, version=None, type_class=CLASS_NORMAL):
        """Every definition the lookup of ``name`` would accept, in the
        order it tries them; see :func:`.lookup.definitions`."""
        return definitions(self, name, requester, version, type_class)

    def startup(self):
        """Every binding of the start-up under LD_BIND_NOW, in ld.so's order
        (a :class:`.startup.Startup`)."""
        return startup.replay(self)

    # -- checks ------------------------------------------------------------------------
    def missing_versions(self):
        """(object, file, version) of every version a DT_VERNEED entry asks
        of a loaded file that defines versions but not this one: ld.so
        (``_dl_check_map_versions``) refuses to start the program, unless
        the version is weak.  A file without versions only draws a warning."""
        by_name = {}
        for obj in self.loaded:
            for name in obj.names | ({obj.elf.soname} if obj.elf.soname else set()):
                by_name.setdefault(name, obj)
        missing = []
        for obj in self.search_list:
            for version in obj.elf.versions.values():
                target = by_name.get(version.filename) if version.filename else None
                if target is not None and target.elf.defined_versions and not version.weak \
                        and version.name not in target.elf.defined_versions:
                    missing.append((obj, version.filename, version.name))
        return missing



def config_for(machine, config=None, root=None):
    """The :class:`LdsoConfig` that starts a program of the architecture
    ``machine`` (an elfstruct.Machine): ``config`` if it is that
    architecture's, else that architecture's ld.so under ``root`` (by
    default ``config``'s root)."""
    if config is not None and config.arch == machine.name and root in (None, config.root):
        return config
    if root is None:
        root = config.root if config is not None else ""
    if machine.name not in ARCHES:
        raise UnsupportedElfError(f"no model of the {machine.label} ld.so")
    return LdsoConfig.for_arch(machine.name, root)


class Ldd:
    """What ``ld.so --list`` (ldd) loads, for many files in one run: the
    commands that must know which library serves a file's imports (vecstat,
    impvec, retroimp, vectool) ask it.  ld.so's settings and cache are read
    once per architecture, each file is parsed once; /etc/ld.so.preload is
    not read (it is this machine's, not the file's).  ``library_path``,
    ``link_files`` and ``link_dirs`` are :class:`LinkMap`'s; ``root`` the
    directory the files' system is under ("": this one), as with
    ``ldd`` in a chroot; ``operation`` the command asking, whose
    architectures are read (:class:`FileCache`)."""

    def __init__(self, library_path=None, link_files=(), link_dirs=(), root="",
                 operation=None):
        self.root = root or ""
        self.files = FileCache(operation)
        self.library_path = library_path
        self.link_files = tuple(link_files)
        self.link_dirs = tuple(link_dirs)
        self._settings = {}             # architecture name -> (LdsoConfig, LdCache)

    def settings(self, machine):
        """(LdsoConfig, LdCache) of the ld.so of ``machine``, read once."""
        if machine.name not in self._settings:
            config = config_for(machine, root=self.root)
            self._settings[machine.name] = \
                (config, LdCache.read(config.host_path(config.cache_path)))
        return self._settings[machine.name]

    def linkmap(self, path, image=None):
        """The traced LinkMap of the file at ``path`` (``image``: the file,
        as just read)."""
        elf = self.files.get(path, image)
        config, cache = self.settings(elf.machine)
        return LinkMap(path, library_path=self.library_path, config=config, cache=cache,
                       files=self.files, system_preload=False, trace=True,
                       link_files=self.link_files, link_dirs=self.link_dirs)

    def forget(self, path):
        """Let the file at ``path`` go (:meth:`FileCache.forget`)."""
        self.files.forget(path)
