"""The dynamic linker's rules, as glibc 2.36's ld.so applies them on x86-64,
i386 and AArch64.

This is the one model of ld.so that the commands ask when they must predict
what the dynamic linker will do with a set of files: which file a DT_NEEDED
name loads, the order of the global scope, and which definition every
symbol reference binds to.  Each rule follows the glibc 2.36 source named in
its docstring (``elf/dl-load.c``, ``dl-deps.c``, ``dl-cache.c``,
``dl-hwcaps.c``, ``dl-lookup.c``, ``dl-reloc.c``, ``dl-sort-maps.c``,
``rtld.c``) and is tested against ld.so itself (``LD_DEBUG=bindings``),
natively for x86-64 and i386, under qemu-user for AArch64.

The rules are the same on the three architectures; what differs (the
interpreter, the system directories, the ld.so.cache entries taken, the
relocation types, REL or RELA, the word size) are facts of the file's
:class:`~elfvector.elfstruct.Machine` and of one table, :data:`ARCHES`
(:class:`LdsoArch`).  A program's architecture picks its ld.so; a library
of another ELF class or machine is skipped, as ld.so skips it.  A
``root`` directory puts the whole system under it, as a chroot would: a
sysroot of another system's packages is read as its own ld.so would read
it there.

The modules, from the bottom:

* :mod:`.symbols` - the vocabulary: relocation classes, symbol bindings,
  types and visibilities, :class:`Version`, :class:`LoadError`.
* :mod:`.config` - :data:`ARCHES`, each architecture's ld.so facts;
  :class:`LdsoConfig`, what one ld.so was built and started with
  (``$PLATFORM``, ``$LIB``, the active glibc-hwcaps subdirectories, the
  system directories, its root), asked from that ld.so by
  :meth:`LdsoConfig.probe` (natively, or under qemu-user) through
  :meth:`LdsoConfig.for_arch`.
* :mod:`.cache` - :class:`LdCache`, ``/etc/ld.so.cache`` (format
  ``glibc-ld.so.cache1.1``, hwcaps entries included) and its lookup.
* :mod:`.objects` - :class:`ElfObject`, one file as ld.so sees it: dynamic
  tags, symbols, versions, its hash table as a name index, relocations;
  a :class:`FileCache` parses each file once, however many programs use
  it; :class:`MappedObject`, a file loaded into a process.
* :mod:`.search` - :class:`LibrarySearch`, the file a DT_NEEDED name loads.
* :mod:`.lookup` - which definition a reference binds to (check_match and
  do_lookup_x).
* :mod:`.startup` - every symbol lookup ld.so makes before the first
  constructor runs, replayed.
* :mod:`.linkmap` - :class:`LinkMap`, one process start: the program, the
  preloads and the breadth-first DT_NEEDED closure, the global scope, the
  relocation order; :meth:`LinkMap.lookup` and :meth:`LinkMap.startup`.
  Its ``trace`` mode loads as ``ld.so --list`` (ldd) does, and
  :class:`Ldd` makes such link maps for the commands that ask, of many
  files, which library serves each import (reading the files for the
  command that asks: ``Ldd(operation="vecstat")``).

The model describes an ordinary (not setuid) process in the base namespace,
without audit modules; dlopen is out of its scope.
"""

from ..elfimage import SHN_ABS
from .cache import LdCache, cache_libcmp
from .config import ARCHES, LdsoArch, LdsoConfig
from .linkmap import Ldd, LinkMap, config_for
from .objects import ElfObject, FileCache, MappedObject
from .search import LibrarySearch
from .startup import Binding, Startup
from .symbols import (CLASS_COPY, CLASS_NORMAL, CLASS_PLT, DF_1_NODEFLIB, DF_1_PIE, DF_SYMBOLIC,
                      DT_AUXILIARY, DT_FILTER, DT_FLAGS, DT_FLAGS_1, DT_PLTREL, DT_REL, DT_RELR,
                      DT_RELRSZ, DT_SYMBOLIC, R_X86_64_64, R_X86_64_COPY, R_X86_64_DTPMOD64,
                      R_X86_64_DTPOFF64, R_X86_64_GLOB_DAT, R_X86_64_IRELATIVE,
                      R_X86_64_JUMP_SLOT, R_X86_64_NONE, R_X86_64_RELATIVE, R_X86_64_TLSDESC,
                      R_X86_64_TPOFF64, SHN_UNDEF, STB_GLOBAL, STB_GNU_UNIQUE, STB_LOCAL,
                      STB_WEAK, STT_COMMON, STT_FUNC, STT_GNU_IFUNC, STT_NOTYPE, STT_OBJECT,
                      STT_TLS, STV_DEFAULT, STV_HIDDEN, STV_INTERNAL, STV_PROTECTED,
                      TLS_RELOCATIONS, VER_FLG_BASE, VER_FLG_WEAK, LoadError, Symbol, Version,
                      elf_hash, type_class)

__all__ = [
    "ARCHES", "Binding", "ElfObject", "FileCache", "Ldd", "LdCache", "LdsoArch", "LdsoConfig",
    "LibrarySearch", "LinkMap", "config_for",
    "LoadError", "MappedObject", "Startup", "Symbol", "Version", "cache_libcmp", "elf_hash",
    "type_class",
    "CLASS_COPY", "CLASS_NORMAL", "CLASS_PLT", "DF_1_NODEFLIB", "DF_1_PIE", "DF_SYMBOLIC",
    "DT_AUXILIARY", "DT_FILTER", "DT_FLAGS", "DT_FLAGS_1", "DT_PLTREL", "DT_REL", "DT_RELR",
    "DT_RELRSZ", "DT_SYMBOLIC", "R_X86_64_64", "R_X86_64_COPY", "R_X86_64_DTPMOD64",
    "R_X86_64_DTPOFF64", "R_X86_64_GLOB_DAT", "R_X86_64_IRELATIVE", "R_X86_64_JUMP_SLOT",
    "R_X86_64_NONE", "R_X86_64_RELATIVE", "R_X86_64_TLSDESC", "R_X86_64_TPOFF64", "SHN_ABS",
    "SHN_UNDEF", "STB_GLOBAL", "STB_GNU_UNIQUE", "STB_LOCAL", "STB_WEAK", "STT_COMMON",
    "STT_FUNC", "STT_GNU_IFUNC", "STT_NOTYPE", "STT_OBJECT", "STT_TLS", "STV_DEFAULT",
    "STV_HIDDEN", "STV_INTERNAL", "STV_PROTECTED", "TLS_RELOCATIONS", "VER_FLG_BASE",
    "VER_FLG_WEAK",
]
