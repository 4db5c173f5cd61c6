"""The dynamic linker's rules, as glibc 2.36's ld.so applies them on x86-64.

This is the one model of ld.so that the commands ask when they must predict
what the dynamic linker will do with a set of files: which file a DT_NEEDED
name loads, the order of the global scope, and which definition every
symbol reference binds to.  Each rule follows the glibc 2.36 source named in
its docstring (``elf/dl-load.c``, ``dl-deps.c``, ``dl-cache.c``,
``dl-hwcaps.c``, ``dl-lookup.c``, ``dl-reloc.c``, ``dl-sort-maps.c``,
``rtld.c``) and is tested against ld.so itself (``LD_DEBUG=bindings``).

The API, from the bottom:

* :class:`LdsoConfig` - what the running ld.so was built and started with
  (``$PLATFORM``, ``$LIB``, the active glibc-hwcaps subdirectories, the
  system directories), asked from ld.so by :meth:`LdsoConfig.probe`.
* :class:`LdCache` - ``/etc/ld.so.cache`` (format ``glibc-ld.so.cache1.1``,
  hwcaps entries included) and its lookup.
* :class:`ElfObject` - one file as ld.so sees it: dynamic tags, symbols,
  versions, its hash table as a name index, relocations.  A
  :class:`FileCache` parses each file once, however many programs use it.
* :class:`LinkMap` - one process start: the program, the preloads and the
  breadth-first DT_NEEDED closure as :class:`MappedObject` instances, the
  global scope, the relocation order, :meth:`LinkMap.lookup` (check_match
  and do_lookup_x) and :meth:`LinkMap.startup`, which replays every symbol
  lookup ld.so makes before the first constructor runs.

The model describes an ordinary (not setuid) process in the base namespace,
without audit modules; dlopen is out of its scope.
"""

import errno
import functools
import os
import re
import struct
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from .elfimage import (DT_GNU_HASH, DT_HASH, DT_JMPREL, DT_NEEDED, DT_PLTRELSZ, DT_RELA,
                       DT_RELASZ, DT_RPATH, DT_RUNPATH, DT_SONAME, DT_SYMTAB,
                       DT_VERDEF, DT_VERDEFNUM, DT_VERNEED, DT_VERNEEDNUM, DT_VERSYM,
                       EM_X86_64, ET_DYN, ET_EXEC, PT_INTERP, SHN_ABS, SYM, ElfImage,
                       read_elf_file)
from .errors import ElfvectorError, UnsupportedElfError

# -- x86-64 relocations and ld.so's classes of them (sysdeps/x86_64/dl-machine.h)

R_X86_64_NONE, R_X86_64_64, R_X86_64_COPY = 0, 1, 5
R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT, R_X86_64_RELATIVE = 6, 7, 8
R_X86_64_DTPMOD64, R_X86_64_DTPOFF64, R_X86_64_TPOFF64 = 16, 17, 18
R_X86_64_TLSDESC, R_X86_64_IRELATIVE = 36, 37
TLS_RELOCATIONS = frozenset({R_X86_64_DTPMOD64, R_X86_64_DTPOFF64, R_X86_64_TPOFF64,
                             R_X86_64_TLSDESC})

CLASS_NORMAL, CLASS_PLT, CLASS_COPY = 0, 1, 2       #: ELF_RTYPE_CLASS_*
_PLT_CLASS = frozenset({R_X86_64_JUMP_SLOT}) | TLS_RELOCATIONS


def type_class(rtype):
    """``elf_machine_type_class``: JUMP_SLOT and the TLS relocations are of
    PLT class (they never bind to an undefined symbol with a value), COPY
    is of COPY class (it never binds to the executable)."""
    if rtype in _PLT_CLASS:
        return CLASS_PLT
    return CLASS_COPY if rtype == R_X86_64_COPY else CLASS_NORMAL


# -- symbols -------------------------------------------------------------------

STB_LOCAL, STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE = 0, 1, 2, 10
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_COMMON, STT_TLS, STT_GNU_IFUNC = 0, 1, 2, 5, 6, 10
STV_DEFAULT, STV_INTERNAL, STV_HIDDEN, STV_PROTECTED = 0, 1, 2, 3
SHN_UNDEF = 0
_ALLOWED_TYPES = frozenset({STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_COMMON, STT_TLS,
                            STT_GNU_IFUNC})

DT_SYMBOLIC, DT_FLAGS, DT_FLAGS_1 = 16, 30, 0x6FFFFFFB
DT_REL, DT_PLTREL, DT_AUXILIARY, DT_FILTER = 17, 20, 0x7FFFFFFD, 0x7FFFFFFF
DT_RELRSZ, DT_RELR = 35, 36
DF_SYMBOLIC, DF_1_NODEFLIB, DF_1_PIE = 0x2, 0x800, 0x08000000
VER_FLG_BASE, VER_FLG_WEAK = 0x1, 0x2


class Symbol(NamedTuple):
    """One .dynsym entry; ``versym`` is its .gnu.version word (None without)."""

    index: int
    name: str
    info: int
    other: int
    shndx: int
    value: int
    size: int
    versym: int

    @property
    def bind(self):
        return self.info >> 4

    @property
    def type(self):
        return self.info & 0xF

    @property
    def visibility(self):
        return self.other & 3

    @property
    def defined(self):
        return self.shndx != SHN_UNDEF


class Version(NamedTuple):
    """A version as ld.so's ``struct r_found_version`` holds it: the name,
    the ELF hash stored in the file (vd_hash/vna_hash), whether a reference
    asks for a hidden version, and the file a reference expects it in."""

    name: str
    hash: int
    hidden: bool = False
    filename: str = None
    weak: bool = False          #: VER_FLG_WEAK: a missing version only warns

    @classmethod
    def named(cls, name):
        return cls(name, elf_hash(name))


def elf_hash(name):
    """The SysV ELF hash of ``name`` (``_dl_elf_hash``)."""
    h = 0
    for c in name.encode("utf-8", "surrogateescape"):
        h = ((h << 4) + c) & 0xFFFFFFFF
        h ^= (h >> 24) & 0xF0
        h &= 0x0FFFFFFF
    return h


def _decode(raw):
    return raw.decode("utf-8", "surrogateescape")


class LoadError(ElfvectorError):
    """ld.so would refuse to start the program (a library it cannot find or
    load, a bad dynamic string token); ``path`` is the object that needs it."""


# -- the running ld.so ------------------------------------------------------------

@dataclass(frozen=True)
class LdsoConfig:
    """What ld.so's search depends on besides the files (glibc 2.36, x86-64).

    ``hwcaps_subdirs`` are the active ``glibc-hwcaps`` subdirectories in
    priority order; ``hwcap``/``hwcap_important`` and ``platform`` give the
    legacy hwcaps subdirectories (the power set of the hwcap names, the
    platform and ``tls``) and filter legacy cache entries;
    ``string_platform`` is ``_dl_string_platform(platform)`` (-1: unknown).
    """

    interp: str = "/lib64/ld-linux-x86-64.so.2"
    platform: str = "x86_64"
    dst_lib: str = "lib/x86_64-linux-gnu"
    hwcap: int = 0x2
    hwcap_important: int = 0x6
    string_platform: int = -1
    hwcaps_subdirs: tuple = ("x86-64-v4", "x86-64-v3", "x86-64-v2")
    system_dirs: tuple = ("/lib/x86_64-linux-gnu/", "/usr/lib/x86_64-linux-gnu/",
                          "/lib/", "/usr/lib/")
    cache_path: str = "/etc/ld.so.cache"
    preload_path: str = "/etc/ld.so.preload"

    HWCAP_NAMES = ("sse2", "x86_64", "avx512_1")     #: _dl_x86_hwcap_flags

    @classmethod
    @functools.lru_cache(maxsize=None)
    def probe(cls, interp="/lib64/ld-linux-x86-64.so.2"):
        """Ask ``interp --list-diagnostics`` (glibc >= 2.33) for its settings."""
        try:
            out = subprocess.run([interp, "--list-diagnostics"], capture_output=True,
                                 text=True, errors="surrogateescape", check=True,
                                 timeout=60).stdout
        except (OSError, subprocess.SubprocessError) as e:
            raise ElfvectorError(f"cannot ask the dynamic linker for its settings: {e}",
                                 interp) from None
        return cls.from_diagnostics(out, interp)

    @classmethod
    def from_diagnostics(cls, text, interp):
        """The settings ``ld.so --list-diagnostics`` printed in ``text``."""
        values, dirs = {}, []
        for line in text.splitlines():
            m = re.fullmatch(r'([\w.]+)(?:\[0x[0-9a-f]+\])?=(?:"(.*)"|(0x[0-9a-f]+))', line)
            if not m:
                continue
            key, string, number = m.groups()
            value = _unescape(string) if string is not None else int(number, 16)
            if key == "path.system_dirs":
                dirs.append(value)
            else:
                values[key] = value
        subdirs = values["dl_hwcaps_subdirs"].split(":")
        active = values["dl_hwcaps_subdirs_active"]
        string_platform = values.get("dl_string_platform", -1)
        return cls(interp=interp, platform=values.get("dl_platform"),
                   dst_lib=values["dl_dst_lib"], hwcap=values["dl_hwcap"],
                   hwcap_important=values["dl_hwcap_important"],
                   string_platform=-1 if string_platform >= 1 << 63 else string_platform,
                   hwcaps_subdirs=tuple(s for i, s in enumerate(subdirs) if active >> i & 1),
                   system_dirs=tuple(dirs))

    def isa_level_supported(self, level):
        """Whether the CPU has x86 ISA level ``level`` (0: baseline, 1..3:
        x86-64-v2..v4), judged by which glibc-hwcaps subdirectories are active
        (``dl_cache_hwcap_isa_level_compatible``)."""
        return level == 0 or f"x86-64-v{level + 1}" in self.hwcaps_subdirs

    @functools.cached_property
    def subdirectories(self):
        """Every subdirectory ld.so tries in a search directory, in order,
        each ending in ``/`` (the directory itself last, as ``""``).

        ``_dl_important_hwcaps``: the glibc-hwcaps ones first, then the
        legacy power set of [hwcap names..., platform, "tls"] (entry k holds
        the names whose bit is set in 2**n - 1 - k, the last name first).
        """
        names = [self.HWCAP_NAMES[bit] for bit in range(len(self.HWCAP_NAMES))
                 if (self.hwcap & self.hwcap_important) >> bit & 1]
        names += [self.platform] if self.platform else []
        names.append("tls")
        legacy = []
        for k in range(1 << len(names)):
            mask = (1 << len(names)) - 1 - k
            legacy.append("".join(names[n] + "/" for n in reversed(range(len(names)))
                                  if mask >> n & 1))
        return tuple(f"glibc-hwcaps/{s}/" for s in self.hwcaps_subdirs) + tuple(legacy)


def _unescape(text):
    """A string as --list-diagnostics quotes it (``\\xHH`` for odd bytes)."""
    return _decode(re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]),
                          text.encode("utf-8", "surrogateescape")))


# -- /etc/ld.so.cache ------------------------------------------------------------------

_CACHE_MAGIC = b"glibc-ld.so.cache1.1"
_OLD_MAGIC = b"ld.so-1.7.0"
_CACHE_HEADER = struct.Struct("<20sIIB3xI12x")
_CACHE_ENTRY = struct.Struct("<iIIIQ")
_CACHE_FLAGS = 0x0303                   #: FLAG_ELF_LIBC6 | FLAG_X8664_LIB64
_EXTENSION_MAGIC = 0xEAA42174
_HWCAP_EXTENSION = 1 << 62
_ISA_LEVEL_MASK = (1 << 10) - 1
_HWCAP_PLATFORM_MASK = ((1 << 4) - 1) << 48
_HWCAP_TLS_MASK = 1 << 63


class LdCache:
    """The new-format part of ``/etc/ld.so.cache`` (``elf/dl-cache.c``).

    Entries are sorted in descending ``_dl_cache_libcmp`` order; those for
    glibc-hwcaps subdirectories come first among equal names and carry
    ``DL_CACHE_HWCAP_EXTENSION`` plus an index into the hwcaps section.
    Entry strings are offsets from the new-format header; the extension
    directory and the hwcaps names are offsets from the start of the file.
    """

    def __init__(self, data, path="/etc/ld.so.cache"):
        self.path = path
        self.data = data
        self.base = self._new_format_offset(data)
        self.entries, self.hwcaps = [], []
        if self.base is None:
            return
        _, nlibs, _, flags, ext_offset = _CACHE_HEADER.unpack_from(data, self.base)
        first = self.base + _CACHE_HEADER.size
        if flags & 3 in (1, 3) or (len(data) - first) // _CACHE_ENTRY.size < nlibs:
            return                      # invalid or big-endian, or truncated
        self.entries = [_CACHE_ENTRY.unpack_from(data, first + i * _CACHE_ENTRY.size)
                        for i in range(nlibs)]
        self.hwcaps = self._hwcaps_names(ext_offset)

    @classmethod
    def read(cls, path="/etc/ld.so.cache"):
        """The cache at ``path``; an empty cache if it cannot be read."""
        try:
            with open(path, "rb") as f:
                return cls(f.read(), path)
        except OSError:
            return cls(b"", path)

    @staticmethod
    def _new_format_offset(data):
        if data.startswith(_CACHE_MAGIC) and len(data) > _CACHE_HEADER.size:
            return 0
        if data.startswith(_OLD_MAGIC) and len(data) >= 16:
            nlibs = struct.unpack_from("<I", data, 12)[0]
            offset = (16 + 12 * nlibs + 7) & ~7          # ALIGN_CACHE
            if data[offset:offset + len(_CACHE_MAGIC)] == _CACHE_MAGIC:
                return offset
        return None

    def _cstring(self, offset):
        end = self.data.find(b"\0", offset)
        return _decode(self.data[offset:end if end >= 0 else len(self.data)])

    def _hwcaps_names(self, ext_offset):
        """The names of the cache_extension_tag_glibc_hwcaps section."""
        if not ext_offset or ext_offset + 8 > len(self.data):
            return []
        magic, count = struct.unpack_from("<II", self.data, ext_offset)
        if magic != _EXTENSION_MAGIC:
            return []
        for i in range(count):
            at = ext_offset + 8 + 16 * i
            if at + 16 > len(self.data):
                break
            tag, _, offset, size = struct.unpack_from("<IIII", self.data, at)
            if tag == 1 and offset + size <= len(self.data):
                return [self._cstring(o) for o in
                        struct.unpack_from(f"<{size // 4}I", self.data, offset)]
        return []

    def names(self):
        """(name, path, hwcaps subdirectory or None) of every entry."""
        for _, key, value, _, hwcap in self.entries:
            sub = self._hwcaps_subdir(hwcap)
            yield self._cstring(self.base + key), self._cstring(self.base + value), sub

    def _hwcaps_subdir(self, hwcap):
        if (hwcap >> 32) & ~_ISA_LEVEL_MASK != _HWCAP_EXTENSION >> 32:
            return None
        index = hwcap & 0xFFFFFFFF
        return self.hwcaps[index] if index < len(self.hwcaps) else ""

    def lookup(self, name, config):
        """The path the cache gives for ``name``, or None (``search_cache``:
        a binary search, then the best of the entries of that name)."""
        limit = len(self.data) - (self.base or 0)
        left, right = 0, len(self.entries) - 1
        while left <= right:
            middle = (left + right) // 2
            key = self.entries[middle][1]
            if key >= limit:
                return None
            cmp = cache_libcmp(name, self._cstring(self.base + key))
            if cmp == 0:
                return self._best_of(name, middle, right, limit, config)
            if cmp < 0:
                left = middle + 1
            else:
                right = middle - 1
        return None

    def _same_name(self, name, i, limit):
        key = self.entries[i][1]
        return key < limit and cache_libcmp(name, self._cstring(self.base + key)) == 0

    def _best_of(self, name, middle, right, limit, config):
        """The loop of ``search_cache`` over the entries named ``name``:
        the glibc-hwcaps entry of the most preferred active subdirectory,
        else the first usable plain entry."""
        while middle > 0 and self._same_name(name, middle - 1, limit):
            middle -= 1
        priorities = {sub: i + 1 for i, sub in enumerate(config.hwcaps_subdirs)}
        exclude = ~((config.hwcap & config.hwcap_important) | _HWCAP_PLATFORM_MASK
                    | _HWCAP_TLS_MASK)
        platform = -1 if config.string_platform == -1 else 1 << config.string_platform
        best, best_priority = None, 0
        for i in range(middle, right + 1):
            flags, key, value, _, hwcap = self.entries[i]
            if not self._same_name(name, i, limit):
                break
            if flags != _CACHE_FLAGS or value >= limit:
                continue
            sub = self._hwcaps_subdir(hwcap)
            if sub is not None and not config.isa_level_supported(hwcap >> 32 & _ISA_LEVEL_MASK):
                continue
            if sub is None and best is not None:
                break
            if sub is None and hwcap & exclude:
                continue
            if hwcap & _HWCAP_PLATFORM_MASK and hwcap & _HWCAP_PLATFORM_MASK != platform:
                continue
            if sub is not None:
                priority = priorities.get(sub, 0)
                if priority == 0 or (best is not None and priority >= best_priority):
                    continue
                best_priority = priority
            best = self._cstring(self.base + value)
            if sub is None:
                break                   # flags == _DL_CACHE_DEFAULT_ID: no better one
        return best


def cache_libcmp(a, b):
    """``_dl_cache_libcmp``: digit runs compare as numbers."""
    i = j = 0
    while i < len(a):
        if a[i].isdigit() and a[i].isascii():
            if j < len(b) and b[j].isdigit() and b[j].isascii():
                m = re.match(r"[0-9]+", a[i:]).group()
                n = re.match(r"[0-9]+", b[j:]).group()
                if int(m) != int(n):
                    return int(m) - int(n)
                i, j = i + len(m), j + len(n)
                continue
            return 1
        if j < len(b) and b[j].isdigit() and b[j].isascii():
            return -1
        if j >= len(b) or a[i] != b[j]:
            return ord(a[i]) - (ord(b[j]) if j < len(b) else 0)
        i, j = i + 1, j + 1
    return -(ord(b[j]) if j < len(b) else 0)


# -- one file -----------------------------------------------------------------------

class ElfObject:
    """One ELF file as ld.so sees it: what ``_dl_map_object_from_fd``,
    ``get-dynamic-info.h``, ``_dl_setup_hash`` and ``_dl_check_map_versions``
    read from it.  Parsed once (see :class:`FileCache`)."""

    def __init__(self, data, path):
        self.path = path
        self.image = ElfImage(data, path)
        if self.image.dynamic is None:
            raise UnsupportedElfError("not dynamically linked (no PT_DYNAMIC)", path)
        self._dynstr = self.image.dynstr()
        last = {}
        for tag, value in self.image.dynamic:
            last[tag] = value           # get-dynamic-info.h: the last entry of a tag wins
        self.tags = last
        for tag in (DT_REL, DT_AUXILIARY, DT_FILTER):
            if tag in last:
                raise UnsupportedElfError(f"dynamic tag {tag:#x} (REL relocations or a "
                                          "filter) is not modelled", path)
        if DT_PLTREL in last and last[DT_PLTREL] != DT_RELA:
            raise UnsupportedElfError("DT_PLTREL is not DT_RELA", path)
        self.needed = [self.string(v) for v in self.image.dyn_all(DT_NEEDED)]
        self.soname = self._tag_string(DT_SONAME)
        self.rpath = self._tag_string(DT_RPATH)
        self.runpath = self._tag_string(DT_RUNPATH)
        flags, flags_1 = last.get(DT_FLAGS, 0), last.get(DT_FLAGS_1, 0)
        self.symbolic = DT_SYMBOLIC in last or bool(flags & DF_SYMBOLIC)
        self.nodeflib = bool(flags_1 & DF_1_NODEFLIB)
        self.is_executable = self.image.type == ET_EXEC
        self.is_pie = self.image.type == ET_DYN and bool(flags_1 & DF_1_PIE)
        self.interp = self._interp()
        self.base = min((p.vaddr for p in self.image.phdrs if p.type == 1), default=0)
        self.symbols = self._symbols()
        self.versions, self.defined_versions = self._versions()
        self.index = self._hash_index()
        self.rela_dyn, self.rela_plt = self._relocation_tables()
        self.relr = self._relr_addresses()

    def string(self, offset):
        if offset >= len(self._dynstr):
            raise UnsupportedElfError(f"bad .dynstr offset {offset}", self.path)
        end = self._dynstr.find(b"\0", offset)
        return _decode(self._dynstr[offset:end if end >= 0 else None])

    def _tag_string(self, tag):
        return self.string(self.tags[tag]) if tag in self.tags else None

    def _interp(self):
        for p in self.image.phdrs:
            if p.type == PT_INTERP:
                raw = self.image.bytes_at(p.offset, p.filesz)
                return _decode(raw.split(b"\0", 1)[0])
        return None

    def _symbols(self):
        count = self.image.dynsym_count()
        raw = self.image.read(self.tags[DT_SYMTAB], count * SYM.size)
        versym = self.image.versyms() if DT_VERSYM in self.tags else None
        strtab = self._dynstr
        out = []
        for i, (name, info, other, shndx, value, size) in enumerate(SYM.iter_unpack(raw)):
            end = strtab.find(b"\0", name)
            out.append(Symbol(i, _decode(strtab[name:end if end >= 0 else None]), info, other,
                              shndx, value, size, versym[i] if versym else None))
        return out

    def _versions(self):
        """``l_versions``: index -> Version, from DT_VERDEF (not the base
        version, which "should not be available for matching") and
        DT_VERNEED; and the names this file defines (base included)."""
        versions, defined = {}, set()
        read = self.image.read
        addr = self.tags.get(DT_VERDEF)
        for _ in range(self.tags.get(DT_VERDEFNUM, 0) if addr else 0):
            _, flags, ndx, cnt, vhash, aux, nxt = struct.unpack("<HHHHIII", read(addr, 20))
            name = self.string(struct.unpack("<I", read(addr + aux, 4))[0]) if cnt else ""
            defined.add(name)
            if not flags & VER_FLG_BASE:
                versions[ndx & 0x7FFF] = Version(name, vhash)
            if not nxt:
                break
            addr += nxt
        addr = self.tags.get(DT_VERNEED)
        for _ in range(self.tags.get(DT_VERNEEDNUM, 0) if addr else 0):
            _, cnt, file_off, aux, nxt = struct.unpack("<HHIII", read(addr, 16))
            filename, a = self.string(file_off), addr + aux
            for _ in range(cnt):
                vhash, flags, other, name_off, anext = struct.unpack("<IHHII", read(a, 16))
                versions[other & 0x7FFF] = Version(self.string(name_off), vhash,
                                                   bool(other & 0x8000), filename,
                                                   bool(flags & VER_FLG_WEAK))
                if not anext:
                    break
                a += anext
            if not nxt:
                break
            addr += nxt
        return versions, defined

    def _hash_index(self):
        """Name -> the indices ld.so's hash walk meets, in chain order
        (``_dl_setup_hash``: DT_GNU_HASH if present, else DT_HASH).  Only
        what can ever match is kept (``check_match``'s first tests)."""
        chains = self._gnu_chains() if DT_GNU_HASH in self.tags else self._sysv_chains()
        index = {}
        symbols = self.symbols
        for i in chains:
            s = symbols[i]
            if (s.value == 0 and s.shndx != SHN_ABS and s.info & 0xF != STT_TLS) \
                    or s.info & 0xF not in _ALLOWED_TYPES:
                continue
            index.setdefault(s.name, []).append(i)
        return {name: tuple(ids) for name, ids in index.items()}

    def _gnu_chains(self):
        addr = self.tags[DT_GNU_HASH]
        nbucket, symoffset, bloom_size, _ = struct.unpack("<IIII", self.image.read(addr, 16))
        buckets_at = addr + 16 + 8 * bloom_size
        buckets = struct.unpack(f"<{nbucket}I", self.image.read(buckets_at, 4 * nbucket))
        nsyms = len(self.symbols)
        if nsyms <= symoffset:
            return []
        chain = struct.unpack(f"<{nsyms - symoffset}I",
                              self.image.read(buckets_at + 4 * nbucket, 4 * (nsyms - symoffset)))
        order = []
        for start in buckets:
            i = start
            while start and symoffset <= i < nsyms:
                order.append(i)
                if chain[i - symoffset] & 1:
                    break
                i += 1
        return order

    def _sysv_chains(self):
        if DT_HASH not in self.tags:
            return []                   # l_nbuckets == 0: never searched
        addr = self.tags[DT_HASH]
        nbucket, nchain = struct.unpack("<II", self.image.read(addr, 8))
        table = struct.unpack(f"<{nbucket + nchain}I",
                              self.image.read(addr + 8, 4 * (nbucket + nchain)))
        buckets, chain = table[:nbucket], table[nbucket:]
        order = []
        for start in buckets:
            i, steps = start, 0
            while i and i < min(nchain, len(self.symbols)) and steps <= nchain:
                order.append(i)
                i, steps = chain[i], steps + 1
        return order

    def _relocation_tables(self):
        """The DT_RELA and DT_JMPREL tables as ``_ELF_DYNAMIC_DO_RELOC`` splits
        them: a DT_JMPREL table at the tail of DT_RELA's range is only
        DT_JMPREL's; without DT_PLTREL, DT_JMPREL is not processed."""
        rela_at, rela_size = self.tags.get(DT_RELA) or 0, self.tags.get(DT_RELASZ) or 0
        plt_at, plt_size = self.tags.get(DT_JMPREL) or 0, self.tags.get(DT_PLTRELSZ) or 0
        if DT_PLTREL not in self.tags:
            plt_at = plt_size = 0
        if plt_size and rela_at and rela_at + rela_size == plt_at + plt_size:
            rela_size -= plt_size
        return self._relocations(rela_at, rela_size), self._relocations(plt_at, plt_size)

    def _relr_addresses(self):
        """The words DT_RELR relocates (each by the load bias): an even
        entry is an address, an odd one a bitmap of the 63 words after
        the last address (psABI "RELR relative relocation format")."""
        addr, size = self.tags.get(DT_RELR), self.tags.get(DT_RELRSZ)
        if not addr or not size:
            return []
        words, base = [], 0
        for (entry,) in struct.iter_unpack("<Q", self.image.read(addr, size - size % 8)):
            if entry & 1 == 0:
                words.append(entry)
                base = entry + 8
                continue
            words.extend(base + 8 * i for i in range(63) if entry >> (i + 1) & 1)
            base += 63 * 8
        return words

    def _relocations(self, addr, size):
        """(r_offset, type, symbol index, r_addend) of each entry."""
        if not addr or size <= 0:
            return []
        raw = self.image.read(addr, size - size % 24)
        return [(off, info & 0xFFFFFFFF, info >> 32, addend)
                for off, info, addend in struct.iter_unpack("<QQq", raw)]

    def reference_version(self, sym_index):
        """The version a relocation against symbol ``sym_index`` asks for
        (``version`` in ``resolve_map``: none unless its hash is nonzero)."""
        versym = self.symbols[sym_index].versym
        if versym is None:
            return None
        version = self.versions.get(versym & 0x7FFF)
        return version if version is not None and version.hash else None


class FileCache:
    """Each file parsed once: by real path, and by (device, inode), which
    is how ld.so recognizes a file it has already loaded."""

    def __init__(self):
        self._by_path = {}
        self._by_id = {}

    def get(self, path):
        """The ElfObject of the file at ``path`` (symbolic links followed)."""
        real = os.path.realpath(path)
        obj = self._by_path.get(real)
        if obj is None:
            obj = ElfObject(read_elf_file(real), real)
            st = os.stat(real)
            obj.file_id = (st.st_dev, st.st_ino)
            self._by_path[real] = obj
        return obj


# -- one process ---------------------------------------------------------------------

@dataclass(eq=False)
class MappedObject:
    """One ``struct link_map``: a file, the name ld.so gives it (``l_name``,
    what LD_DEBUG prints), the names DT_NEEDED entries match (``l_libname``),
    the object that loaded it (``l_loader``) and its symbol scopes."""

    elf: ElfObject
    name: str
    names: set
    loader: "MappedObject" = None
    origin: str = None
    is_main: bool = False
    is_rtld: bool = False
    deps: list = field(default_factory=list)     #: DT_NEEDED maps, in order
    scope: list = field(default_factory=list)    #: lists of MappedObject searched in turn

    @property
    def path(self):
        """The real path of the file."""
        return self.elf.path

    def __repr__(self):
        return f"<MappedObject {self.name}>"


class Binding(NamedTuple):
    """What one relocation (or one explicit lookup by ld.so) resolved to.

    ``definer``/``symbol`` are None for a weak reference found nowhere.
    ``looked_up`` is False when ld.so needed no lookup (a local or hidden
    reference binds to its own object), ``from_cache`` when ld.so reused
    the previous lookup of that object (``l_lookup_cache``);
    ``protected`` is what LD_DEBUG prints as "protected symbol".
    """

    requester: MappedObject
    table: str                  #: "rela.dyn", "rela.plt", or "rtld" (ld.so's own lookups)
    index: int
    rtype: int
    sym_index: int
    name: str
    version: Version
    definer: MappedObject
    symbol: Symbol
    looked_up: bool
    from_cache: bool
    protected: bool


@dataclass
class Startup:
    """Every binding ld.so makes at start-up under LD_BIND_NOW, in its order."""

    bindings: list
    #: (requester, table, index) -> Binding, for every relocation with a symbol
    by_relocation: dict
    lookups: int                #: LD_DEBUG=statistics "number of relocations" (no vDSO)
    cache_hits: int             #: "number of relocations from cache"
    by_requester: Counter = field(default_factory=Counter)     #: object -> its lookups

    def lookups_of(self, obj):
        """The lookups made for ``obj`` (the malloc ones count for the program)."""
        return self.by_requester[obj]


class LinkMap:
    """The objects of one program's start, as ld.so loads and links them.

    ``program`` is run as ``argv[0]`` (what LD_DEBUG calls it);
    ``preload`` the LD_PRELOAD list; ``library_path`` LD_LIBRARY_PATH (None:
    unset; nothing is read from this process's environment);
    ``system_preload`` whether /etc/ld.so.preload is read, as ld.so does.
    """

    RTLD_MALLOC = ("calloc", "free", "malloc", "realloc")     #: __rtld_malloc_init_real

    def __init__(self, program, preload=(), library_path=None, config=None, cache=None,
                 files=None, system_preload=True):
        self.config = config or LdsoConfig.probe()
        self.cache = cache if cache is not None else LdCache.read(self.config.cache_path)
        self.files = files or FileCache()
        self.loaded = []                # the namespace's list, in mapping order
        self.main = self._map_main(program)
        self.rtld = self._map_rtld()
        self.env_dirs = self._path_list(library_path or "", ":;", self.main)
        preloads = self._preloads(preload, system_preload)
        self.search_list = self._map_dependencies([self.main] + preloads)
        self._set_scopes()
        self._definers = self._definers_index()
        self._unique = {}

    @property
    def objects(self):
        """The objects in load order (ld.so's ``l_next`` chain without the
        vDSO): the global scope, where ld.so sits if something needs it."""
        return self.search_list

    # -- loading (rtld.c dl_main, dl-deps.c, dl-load.c) --------------------------------
    def _map_main(self, program):
        elf = self.files.get(program)
        if elf.interp is None:
            raise UnsupportedElfError("not a dynamically linked program (no PT_INTERP)",
                                      program)
        main = MappedObject(elf, program, {""}, is_main=True,
                            origin=os.path.dirname(os.path.realpath(program)))
        self.loaded.append(main)
        return main

    def _map_rtld(self):
        """ld.so itself, known by its PT_INTERP name and its soname."""
        interp = self.main.elf.interp
        elf = self.files.get(interp)
        names = {interp} | ({elf.soname} if elf.soname else set())
        rtld = MappedObject(elf, interp, names, is_rtld=True, origin=self.main.origin)
        self.loaded.append(rtld)
        return rtld

    def _preloads(self, preload, system_preload):
        """LD_PRELOAD's names (split at spaces and colons), then those of
        /etc/ld.so.preload; each loaded as needed by the program.  One that
        cannot be loaded is ignored; one already loaded is no preload."""
        names = [n for n in re.split(r"[ :]", preload) if n] if isinstance(preload, str) \
            else list(preload)
        if system_preload and os.access(self.config.preload_path, os.R_OK):
            with open(self.config.preload_path, "rb") as f:
                text = re.sub(rb"#[^\n]*", b"", f.read())
            names += [_decode(n) for n in re.split(rb"[: \t\n]", text) if n]
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
                dep = self._map_object(obj, self._expand_needed(obj, needed))
                if dep not in listed:
                    listed.add(dep)
                    search.append(dep)
                obj.deps.append(dep)
            i += 1
        return search

    def _expand_needed(self, obj, name):
        expanded = self._substitute(obj, name) if _dst_count(name) else name
        if not expanded:
            raise LoadError(f"{name}: empty dynamic string token substitution", obj.name)
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
            realname = self._substitute(loader, name) if _dst_count(name) else name
            found = self._open_verify(realname, loader) if realname else None
        else:
            found = self._search(loader, name)
        if found is None:
            raise LoadError(f"cannot find {name}, which it needs: ld.so would not start "
                            "the program", loader.name)
        realname, elf = found
        for obj in self.loaded:
            if not obj.is_main and not obj.is_rtld and obj.elf.file_id == elf.file_id:
                obj.names.add(name)
                return obj
        if elf.is_executable or elf.is_pie:
            raise LoadError(f"{realname}: cannot load an executable as a library", loader.name)
        obj = MappedObject(elf, realname, {name}, loader=loader,
                           origin=os.path.dirname(os.path.abspath(realname)) or "/")
        self.loaded.append(obj)
        return obj

    def _search(self, loader, name):
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
            found = self._open_path(name, self._path_list(loader.elf.runpath, ":", loader),
                                    loader)
        if not found:
            found = self._from_cache(name, loader)
        if not found and not loader.elf.nodeflib:
            found = self._open_path(name, self.config.system_dirs, loader)
        return found

    def _rpath_dirs(self, obj):
        """DT_RPATH of ``obj``, unless it has DT_RUNPATH (which hides it)."""
        if obj.elf.rpath is None or obj.elf.runpath is not None:
            return []
        return self._path_list(obj.elf.rpath, ":", obj)

    def _from_cache(self, name, loader):
        path = self.cache.lookup(name, self.config)
        if path is None:
            return None
        if loader.elf.nodeflib and any(path.startswith(d) for d in self.config.system_dirs):
            return None
        return self._open_verify(path, loader)

    def _path_list(self, text, separators, obj):
        """``fillin_rpath``: each element DST-expanded (dropped if that
        empties it), trailing slashes reduced to one, duplicates dropped;
        an empty element is the current directory."""
        dirs = []
        for element in re.split(f"[{separators}]", text) if text else []:
            if element:
                element = self._substitute(obj, element) if _dst_count(element) else element
                if not element:
                    continue
                element = element.rstrip("/") or "/"
                element = element if element.endswith("/") else element + "/"
            if element not in dirs:
                dirs.append(element)
        return dirs

    def _substitute(self, obj, text):
        """``_dl_dst_substitute``: $ORIGIN, $PLATFORM, $LIB (or ${...})."""
        values = {"ORIGIN": obj.origin, "PLATFORM": self.config.platform,
                  "LIB": self.config.dst_lib}
        out, i = [], 0
        while i < len(text):
            if text[i] == "$":
                token, length = _dst_at(text, i + 1)
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
                found = self._open_verify(directory + sub + name, loader)
                if found is False:
                    break               # an error other than "not there": next list
                if found:
                    return found
            else:
                continue
            return None
        return None

    def _open_verify(self, path, loader):
        """``open_verify``: (path, ElfObject) if ld.so would load the file;
        None if it would try the next candidate (missing, unreadable,
        another ELF class or machine); False to give up this path list."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                header = os.read(fd, 64)
            finally:
                os.close(fd)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EACCES, errno.ENOTDIR, errno.ENAMETOOLONG):
                return None
            if e.errno == errno.EISDIR:
                raise LoadError(f"{path}: cannot read file data: Is a directory",
                                loader.name) from None
            return False
        if len(header) < 64 or header[:4] != b"\x7fELF":
            raise LoadError(f"{path}: invalid ELF header", loader.name)
        if header[4] != 2 or struct.unpack_from("<H", header, 18)[0] != EM_X86_64:
            return None
        return path, self.files.get(path)

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

    def _definers_index(self):
        """Name -> the objects of the global scope whose hash table holds
        a candidate for it, in scope order: a lookup visits only those."""
        index = {}
        for obj in self.search_list:
            for name in obj.elf.index:
                index.setdefault(name, []).append(obj)
        return index

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

    # -- symbol lookup (dl-lookup.c) ---------------------------------------------
    def lookup(self, name, requester, version=None, type_class=CLASS_NORMAL, ref=None,
               newest=False):
        """``_dl_lookup_symbol_x``: (MappedObject, Symbol) or None.

        ``version`` is a :class:`Version` or a version name; ``ref`` the
        referencing Symbol of ``requester`` (for protected references);
        ``newest`` is dlsym's DL_LOOKUP_RETURN_NEWEST.  Lookups of
        STB_GNU_UNIQUE symbols enter this link map's unique table, as in
        ld.so, so their order matters (:meth:`startup` keeps ld.so's).
        """
        if isinstance(version, str):
            version = Version.named(version)
        found = self._search_scopes(name, requester, version, type_class, ref, newest)
        if found is None or ref is None or ref.visibility != STV_PROTECTED:
            return found
        if type_class == CLASS_PLT:
            other = found
        else:
            other = self._search_scopes(name, requester, version, CLASS_PLT, ref, newest)
        if other is not None and other[0] is not requester:
            return requester, ref
        return found

    def _search_scopes(self, name, requester, version, type_class, ref, newest):
        for scope in (self.main.scope if requester.is_rtld else requester.scope):
            if scope is self.search_list:
                candidates = self._definers.get(name, ())
            else:
                candidates = [o for o in scope if name in o.elf.index]
            for obj in candidates:
                found = self._lookup_in(obj, name, version, type_class, newest)
                if found is not None:
                    return self._unique_entry(obj, found, type_class, ref, requester)
        return None

    def _lookup_in(self, obj, name, version, type_class, newest):
        """``do_lookup_x`` for one object: the first symbol of the hash
        chain that ``check_match`` accepts (or the only non-default
        versioned one, for an unversioned reference), if it is visible."""
        if type_class & CLASS_COPY and obj.is_main:
            return None
        elf = obj.elf
        num_versions, versioned = 0, None
        for i in elf.index[name]:
            sym = elf.symbols[i]
            if type_class & CLASS_PLT and sym.shndx == SHN_UNDEF:
                continue
            if sym.versym is not None:
                if version is not None:
                    own = elf.versions.get(sym.versym & 0x7FFF)
                    own_hash, own_name = (own.hash, own.name) if own else (0, None)
                    if (own_hash != version.hash or own_name != version.name) and \
                            (version.hidden or own_hash or sym.versym & 0x8000):
                        continue
                elif sym.versym & 0x7FFF >= (2 if newest else 3):
                    if not sym.versym & 0x8000:
                        num_versions += 1
                        versioned = versioned or sym
                    continue
            break
        else:
            sym = versioned if num_versions == 1 else None
        if sym is None or sym.visibility in (STV_HIDDEN, STV_INTERNAL):
            return None
        return sym if sym.bind in (STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE) else None

    def _unique_entry(self, obj, sym, type_class, ref, requester):
        """``do_lookup_unique``: the first definition of a unique name
        found (a COPY relocation enters the program's copy instead)."""
        if sym.bind != STB_GNU_UNIQUE:
            return obj, sym
        entry = self._unique.get(sym.name)
        if entry is not None:
            return (obj, sym) if type_class & CLASS_COPY else entry
        self._unique[sym.name] = (requester, ref) if type_class & CLASS_COPY else (obj, sym)
        return obj, sym

    # -- start-up ------------------------------------------------------------------------
    def startup(self):
        """Replay ld.so's start-up binding under LD_BIND_NOW: every object's
        relocations in relocation order (.rela.dyn, then .rela.plt), with
        the per-object lookup cache, and ld.so's own lookups of the malloc
        functions before it relocates itself."""
        self._unique = {}
        bindings, by_relocation = [], {}
        for obj in self.relocation_order():
            if obj.is_rtld:
                malloc = Version.named("GLIBC_2.2.5")
                for name in self.RTLD_MALLOC:
                    found = self.lookup(name, self.main, malloc)
                    bindings.append(Binding(self.main, "rtld", 0, 0, 0, name, malloc,
                                            *(found or (None, None)), True, False, False))
            for b in self._relocate(obj):
                bindings.append(b)
                by_relocation[(obj, b.table, b.index)] = b
        made = Counter(b.requester for b in bindings if b.looked_up and not b.from_cache)
        hits = sum(1 for b in bindings if b.from_cache)
        return Startup(bindings, by_relocation, sum(made.values()), hits, made)

    def _relocate(self, obj):
        """``_dl_relocate_object`` with ``resolve_map``, for the bindings."""
        elf = obj.elf
        cache_key, cache_value = None, None
        for table, relocs in (("rela.dyn", elf.rela_dyn), ("rela.plt", elf.rela_plt)):
            for index, (_, rtype, sym_index, _) in enumerate(relocs):
                if rtype in (R_X86_64_RELATIVE, R_X86_64_NONE):
                    continue
                ref = elf.symbols[sym_index]
                version = elf.reference_version(sym_index)
                if ref.bind == STB_LOCAL or ref.visibility in (STV_HIDDEN, STV_INTERNAL):
                    yield Binding(obj, table, index, rtype, sym_index, ref.name, version, obj,
                                  ref, False, False, False)
                    continue
                tclass = type_class(rtype)
                hit = cache_key == (sym_index, tclass)
                if not hit:
                    cache_key = (sym_index, tclass)
                    cache_value = self.lookup(ref.name, obj, version, tclass, ref)
                definer, symbol = cache_value or (None, None)
                yield Binding(obj, table, index, rtype, sym_index, ref.name, version, definer,
                              symbol, True, hit, ref.visibility == STV_PROTECTED)

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


def _dst_at(text, i):
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


def _dst_count(text):
    """``_dl_dst_count``: how many known DSTs ``text`` holds."""
    count, i = 0, text.find("$")
    while i >= 0:
        token, length = _dst_at(text, i + 1)
        count += token is not None
        i = text.find("$", i + 1 + length)
    return count
