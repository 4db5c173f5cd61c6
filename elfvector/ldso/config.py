"""What the running ld.so was built and started with (``$PLATFORM``,
``$LIB``, the active glibc-hwcaps subdirectories, the system directories),
asked from ld.so itself: its library search depends on them."""

import functools
import re
import subprocess
from dataclasses import dataclass

from ..errors import ElfvectorError
from .symbols import decode

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
    return decode(re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]),
                          text.encode("utf-8", "surrogateescape")))

