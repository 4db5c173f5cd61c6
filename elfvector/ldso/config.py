"""What the running ld.so was built and started with (``$PLATFORM``,
``$LIB``, the active glibc-hwcaps subdirectories, the system directories),
asked from ld.so itself: its library search depends on them.

:data:`ARCHES` holds what differs between the ld.so of each architecture
the model knows (x86-64, i386, AArch64): the facts of glibc 2.36's source
(``sysdeps/*/dl-machine.h``, ``dl-procinfo.c``, ``ldconfig.h``) that no
option of ld.so reports.  Everything else is one model for all three.
"""

import errno
import functools
import os
import re
import subprocess
from dataclasses import dataclass, replace

from ..elfstruct import AARCH64, I386, X86_64
from ..errors import ElfvectorError
from .symbols import decode, type_class


@dataclass(frozen=True)
class LdsoArch:
    """What the ld.so of one architecture is built with.

    ``cache_flags`` is the flags word of the ld.so.cache entries it takes
    (``_dl_cache_check_flags``: ``FLAG_ELF_LIBC6`` and the ABI's flag);
    ``tls`` the TLS relocation types, of PLT class like the JUMP_SLOT
    (``elf_machine_type_class``); ``malloc_version`` the version of
    ``malloc`` ld.so looks up for itself (``__rtld_malloc_init_real``: the
    architecture's first glibc version); ``hwcap_names`` the names of the
    hwcap bits in the legacy hwcaps subdirectories (``_dl_hwcap_string``).
    The rest are the defaults of :class:`LdsoConfig`, as ld.so reports them
    on a CPU without optional features, for when that ld.so cannot run here.
    """

    machine: object             #: the elfstruct.Machine
    interp: str
    cache_flags: int
    tls: frozenset
    malloc_version: str
    hwcap_names: tuple
    platform: str
    dst_lib: str
    system_dirs: tuple

    def type_class(self, rtype):
        """``elf_machine_type_class`` of this architecture."""
        m = self.machine
        return type_class(rtype, m.jump_slot, m.copy, self.tls)


def _system_dirs(triplet):
    return (f"/lib/{triplet}/", f"/usr/lib/{triplet}/", "/lib/", "/usr/lib/")


#: Machine.name -> LdsoArch
ARCHES = {a.machine.name: a for a in (
    LdsoArch(X86_64, "/lib64/ld-linux-x86-64.so.2", 0x0303,     # FLAG_X8664_LIB64
             frozenset({16, 17, 18, 36}),   # DTPMOD64, DTPOFF64, TPOFF64, TLSDESC
             "GLIBC_2.2.5", ("sse2", "x86_64", "avx512_1"), "x86_64",
             "lib/x86_64-linux-gnu", _system_dirs("x86_64-linux-gnu")),
    LdsoArch(I386, "/lib/ld-linux.so.2", 0x0003,                 # FLAG_ELF_LIBC6 alone
             frozenset({14, 35, 36, 37, 41}),   # TLS_TPOFF, DTPMOD32, DTPOFF32, TPOFF32, DESC
             "GLIBC_2.0", ("sse2", "x86_64", "avx512_1"), "i686",
             "lib/i386-linux-gnu", _system_dirs("i386-linux-gnu")),
    LdsoArch(AARCH64, "/lib/ld-linux-aarch64.so.1", 0x0a03,      # FLAG_AARCH64_LIB64
             frozenset({1028, 1029, 1030, 1031}),  # TLS_DTPMOD, DTPREL, TPREL, TLSDESC
             "GLIBC_2.17",
             ("fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32", "atomics",
              "fphp", "asimdhp", "cpuid", "asimdrdm", "jscvt", "fcma", "lrcpc", "dcpop",
              "sha3", "sm3", "sm4", "asimddp", "sha512", "sve", "asimdfhm", "dit", "uscat",
              "ilrcpc", "flagm", "ssbs", "sb", "paca", "pacg"), "aarch64",
             "lib/aarch64-linux-gnu", _system_dirs("aarch64-linux-gnu")),
)}


@dataclass(frozen=True)
class LdsoConfig:
    """What ld.so's search depends on besides the files (glibc 2.36).

    ``arch`` is the architecture (a :data:`ARCHES` key) of the ld.so and so
    of every object it loads; ``root`` the directory that ld.so and every
    path it opens are under ("": this system's own), as in a chroot: a
    sysroot of another system's packages.  ``hwcaps_subdirs`` are the
    active ``glibc-hwcaps`` subdirectories in priority order;
    ``hwcap``/``hwcap_important`` and ``platform`` give the legacy hwcaps
    subdirectories (the power set of the hwcap names, the platform and
    ``tls``) and filter legacy cache entries; ``string_platform`` is
    ``_dl_string_platform(platform)`` (-1: unknown).  The defaults are
    x86-64's.
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
    arch: str = "x86_64"
    root: str = ""

    @property
    def facts(self):
        """The :class:`LdsoArch` of :attr:`arch`."""
        return ARCHES[self.arch]

    @property
    def cache_flags(self):
        """The flags of the ld.so.cache entries this ld.so takes."""
        return self.facts.cache_flags

    @classmethod
    def for_arch(cls, arch="x86_64", root=""):
        """The settings of the ld.so of ``arch`` under ``root``: asked from
        that ld.so (:meth:`probe`) when it runs here, natively or under
        qemu-user; else, when its file is missing or nothing here runs it,
        its defaults (:class:`LdsoArch`: a CPU without optional features)."""
        root = _normal_root(root)
        facts = ARCHES[arch]
        try:
            return cls.probe(facts.interp, arch, root)
        except _CannotRun:
            return cls(interp=facts.interp, platform=facts.platform, dst_lib=facts.dst_lib,
                       hwcap=0, hwcap_important=0, hwcaps_subdirs=(),
                       system_dirs=facts.system_dirs, arch=arch, root=root)

    @classmethod
    @functools.lru_cache(maxsize=None)
    def probe(cls, interp="/lib64/ld-linux-x86-64.so.2", arch="x86_64", root=""):
        """Ask ``interp --list-diagnostics`` (glibc >= 2.33) for its settings:
        the file ``interp`` under ``root``, run natively or, if this machine
        cannot run it, under ``qemu-ARCH -L ROOT``."""
        host = _resolve_in(root, interp) if root else interp
        if not os.path.exists(host):
            raise _CannotRun(host)
        try:
            out = _run([host, "--list-diagnostics"])
        except OSError as e:
            if e.errno != errno.ENOEXEC:
                raise ElfvectorError(f"cannot ask the dynamic linker for its settings: {e}",
                                     interp) from None
            try:
                out = _run([f"qemu-{arch}", "-L", root or "/", host, "--list-diagnostics"])
            except FileNotFoundError:
                raise _CannotRun(host) from None
            except (OSError, subprocess.SubprocessError) as e:
                raise ElfvectorError(f"cannot ask the dynamic linker for its settings: {e}",
                                     interp) from None
        except subprocess.SubprocessError as e:
            raise ElfvectorError(f"cannot ask the dynamic linker for its settings: {e}",
                                 interp) from None
        return replace(cls.from_diagnostics(out, interp), arch=arch, root=root)

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
        subdirs = [s for s in values["dl_hwcaps_subdirs"].split(":") if s]
        active = values["dl_hwcaps_subdirs_active"]
        string_platform = values.get("dl_string_platform", -1)
        return cls(interp=interp, platform=values.get("dl_platform"),
                   dst_lib=values["dl_dst_lib"], hwcap=values["dl_hwcap"],
                   hwcap_important=values["dl_hwcap_important"],
                   string_platform=-1 if string_platform >= 1 << 63 else string_platform,
                   hwcaps_subdirs=tuple(s for i, s in enumerate(subdirs) if active >> i & 1),
                   system_dirs=tuple(dirs))

    def host_path(self, path):
        """Where the file ld.so opens as ``path`` is on this machine: under
        :attr:`root`, whose symbolic links stay inside it (an absolute link
        names a file of the root, as in a chroot)."""
        if not self.root or not path.startswith("/"):
            return path
        return _resolve_in(self.root, path)

    def name_in_root(self, path):
        """The real path ld.so would know the file at the host path ``path``
        by: inside :attr:`root` if it is there (links resolved in the root),
        else on this system."""
        path = os.path.abspath(path)
        if self.root and not path.startswith(self.root + "/"):
            path = os.path.realpath(path)
        if self.root and path.startswith(self.root + "/"):
            return _resolve_in(self.root, path[len(self.root):])[len(self.root):] or "/"
        return os.path.realpath(path)

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
        names = [self.facts.hwcap_names[bit] for bit in range(len(self.facts.hwcap_names))
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



class _CannotRun(Exception):
    """The ld.so's file is missing, or nothing on this machine runs it."""


def _run(argv):
    return subprocess.run(argv, capture_output=True, text=True, errors="surrogateescape",
                          check=True, timeout=60).stdout


def _normal_root(root):
    """``root`` as an absolute path without a trailing slash ("" for /)."""
    return os.path.realpath(root).rstrip("/") if root else ""


def _resolve_in(root, path):
    """The host path of ``path`` inside ``root``, symbolic links followed as
    the kernel would inside a chroot of ``root`` (at most 40; ``..`` stops
    at the root)."""
    parts = [p for p in path.split("/") if p]
    done, links = "", 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            done = done.rsplit("/", 1)[0]
            continue
        if part == ".":
            continue
        candidate = done + "/" + part
        if links < 40 and os.path.islink(root + candidate):
            links += 1
            target = os.readlink(root + candidate)
            parts = [p for p in target.split("/") if p] + parts
            done = "" if target.startswith("/") else done
            continue
        done = candidate
    return root + (done or "/")
