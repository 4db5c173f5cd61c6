"""What the preload check of a rewritten program needs on every architecture.

The check itself is each architecture's code (``closure/<arch>/preload.py``,
:func:`preload_lines`; what it does and why is in :mod:`.x86_64.preload`);
its data is the same in words of the object's class
(:class:`PreloadLayout`, built by :class:`.fixupdata.FixupData`), and so
is the Bloom filter the rewrite builds and the code probes
(:func:`bloom_positions`).
"""

from dataclasses import dataclass

from ..elfstruct import DT_GNU_HASH  # noqa: F401 (the tag the checks look for in l_ld)

#: the file the check maps the pre-bound table from when ld.so was exec'd directly
PROC_EXE = b"/proc/self/exe\0"


@dataclass
class PreloadLayout:
    """Where the preload check's data lies, as offsets from the fix-up data.

    The sorted table of pre-bound names is either loaded (``loaded``: its
    link-time address; nothing to read but memory) or in a section of the
    file that is mapped on demand; then a Bloom filter in loaded bytes, if
    there was room for one, answers "not pre-bound" for most names without
    a system call (:func:`bloom_positions`)."""

    debug: int               #: word: link-time address of the program's DT_DEBUG value
    names: int               #: sorted u32 GNU hashes of the expected objects' basenames
    names_count: int
    table: int               #: 3 words: page-aligned file offset of the pre-bound table's
    #: mapping, the mapping's length, the table's offset in it
    loaded: int              #: word: link-time address of the loaded table, 0: in the file
    filter: int              #: word: link-time address of the filter (0: none), u32 mask,
    #: u32 shift (see bloom_positions)
    header: int              #: 16 bytes the table starts with in the file
    prebound_count: int      #: u32 entries after the header: sorted (GNU hash | 1)
    prefix: int              #: "elfvector: PROG: LD_PRELOAD'ed "
    prefix_len: int
    suffix: int              #: " would interpose ... anyway)\n"
    suffix_len: int
    unreadable: int          #: ": cannot check it: ... anyway)\n"
    unreadable_len: int
    environ: int             #: "/proc/self/environ\0"
    exe: int                 #: "/proc/self/exe\0"
    pattern: int             #: "ELFVECTOR_PRELOAD=ignore\0"
    pattern_len: int


#: the second probe of the Bloom filter: a multiplicative mix of the hash
BLOOM_MULTIPLIER = 0x9E3779B1


def bloom_positions(gnu_hash, bits):
    """The two bits of a ``2**bits``-bit Bloom filter that the name of GNU
    hash ``gnu_hash`` sets, from its upper 31 bits (bit 0 of a hash in a
    ``.gnu.hash`` chain marks the chain's end): the low ``bits`` of them,
    and the top ``bits`` of their product with :data:`BLOOM_MULTIPLIER`
    (mod 2**32).  Each architecture's ``_filter_lines`` probes the same two."""
    h = gnu_hash >> 1
    return h & ((1 << bits) - 1), ((h * BLOOM_MULTIPLIER) & 0xFFFFFFFF) >> (32 - bits)
