"""``/etc/ld.so.cache`` as ld.so reads it (``elf/dl-cache.c``)."""

import re
import struct

from .symbols import decode

_CACHE_MAGIC = b"glibc-ld.so.cache1.1"
_OLD_MAGIC = b"ld.so-1.7.0"
_CACHE_HEADER = struct.Struct("<20sIIB3xI12x")
_CACHE_ENTRY = struct.Struct("<iIIIQ")
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
        self._answers, self._answers_config = {}, None
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
        return decode(self.data[offset:end if end >= 0 else len(self.data)])

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
        a binary search, then the best of the entries of that name).  Each
        answer is kept: vecstat asks for the same few names thousands of
        times."""
        if config is not self._answers_config:
            self._answers, self._answers_config = {}, config
        if name not in self._answers:
            self._answers[name] = self._search(name, config)
        return self._answers[name]

    def _search(self, name, config):
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
        else the first usable plain entry; only entries of the ABI of
        ``config``'s ld.so (``_dl_cache_check_flags``: an x86-64 ld.so
        skips the i386 entries a cache may also list, and the reverse)."""
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
            if flags != config.cache_flags or value >= limit:
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

