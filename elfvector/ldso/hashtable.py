"""A file's symbol hash table as ld.so walks it (``_dl_setup_hash`` and
``do_lookup_x`` in ``elf/dl-lookup.c``): DT_GNU_HASH if the file has one,
else DT_HASH, else nothing (``l_nbuckets`` 0: the file is never searched).

:class:`HashIndex` answers, for a name, which .dynsym entries the lookup of
that name meets, in chain order.  It walks the table for each new name, as
ld.so does: a command that asks a file about a few names (vecstat asks a
program about its own imports) reads a few chains.  After many names it
reads every chain at once into a dict: the start-up replay of a big program
asks each library thousands.  The two agree on every table whose hashes
are those of its names, as a link editor writes them.
"""

import bisect
import functools
import struct

from ..elfimage import DT_GNU_HASH, DT_HASH, SHN_ABS, gnu_hash, sysv_hash
from .symbols import ALLOWED_TYPES, STT_TLS

#: the share of the symbols in a file's chains asked about, one name at a
#: time, after which every chain is read at once
WHOLE_TABLE_AFTER = 1 / 8


class HashIndex:
    """Name -> the indices of the symbols named so that ld.so's hash walk
    meets, in chain order, keeping only what ``check_match`` can ever
    accept (a symbol with a value, or absolute, or TLS, of an allowed
    type).  ``raw`` are the file's .dynsym records (``elfstruct.Sym``),
    ``strtab`` its .dynstr, ``tags`` its dynamic tags, ``read(address,
    size)`` its bytes, ``word_bits`` the bits of its class's word (of a
    DT_GNU_HASH Bloom filter word)."""

    def __init__(self, raw, strtab, tags, read, word_bits=64):
        self._raw = raw
        self._strtab = strtab + b"\0"      # every name ends, even in a damaged file
        self._table = _gnu_table(tags, read, len(raw), word_bits) if DT_GNU_HASH in tags else \
            _sysv_table(tags, read, len(raw))
        self._asked = {}
        self._whole = False
        self._limit = max(16, int(self._table.size * WHOLE_TABLE_AFTER) if self._table else 0)

    def get(self, name):
        """The indices for ``name`` (empty or None if the walk meets none)."""
        found = self._asked.get(name)
        if found is None:
            if self._whole:
                return ()
            found = self._asked[name] = self._walk(name)
            if len(self._asked) > self._limit:
                self._whole = True
                self._asked = self._every_chain()
                # From now on the dict answers, without a Python call in
                # between: the start-up replay asks this millions of times.
                self.get = self._asked.get
        return found

    def __contains__(self, name):
        return bool(self.get(name))

    def _kept(self, i):
        s = self._raw[i]
        kind = s.info & 0xF
        return kind in ALLOWED_TYPES and (s.value or s.shndx == SHN_ABS or kind == STT_TLS)

    def _walk(self, name):
        """The lookup of one name: its bucket's chain, the entries whose
        hash and name are the name's."""
        if self._table is None:
            return ()
        key = name.encode("utf-8", "surrogateescape")
        ending = key + b"\0"
        strtab, raw = self._strtab, self._raw
        return tuple(i for i in self._table.chain_of(key)
                     if strtab.startswith(ending, raw[i].name) and self._kept(i))

    def _every_chain(self):
        """Every chain read at once: name -> indices."""
        if self._table is None:
            return {}
        raw = self._raw
        kept = [(i, raw[i].name) for i in self._table.every_chain() if self._kept(i)]
        strtab = self._strtab
        find = strtab.find
        names = [strtab[start:find(b"\0", start)].decode("utf-8", "surrogateescape")
                 for _, start in kept]
        index = dict(zip(names, [(i,) for i, _ in kept]))
        if len(index) < len(kept):          # a name defined at several versions
            index = {}
            for name, (i, _) in zip(names, kept):
                index[name] = index.get(name, ()) + (i,)
        return index


class _GnuTable:
    """DT_GNU_HASH: a bloom filter, buckets, and chains of hash values whose
    low bit ends a chain; symbols below ``symoffset`` are in no chain."""

    def __init__(self, symoffset, bloom, shift, buckets, chain, nsyms, word_bits):
        self.symoffset, self.bloom, self.shift = symoffset, bloom, shift
        self.word_bits = word_bits
        self.buckets, self.chain, self.nsyms = buckets, chain, nsyms

    @property
    def size(self):
        """How many symbols the chains hold."""
        return max(0, self.nsyms - self.symoffset)

    def chain_of(self, key):
        """The indices whose hash is ``key``'s, in the chain the bucket of
        ``key`` starts, after the bloom filter lets it through."""
        h, bits = _gnu_hash(key), self.word_bits
        word = self.bloom[(h // bits) & (len(self.bloom) - 1)]
        if not (word >> (h % bits)) & (word >> ((h >> self.shift) % bits)) & 1:
            return []
        i = self.buckets[h % len(self.buckets)]
        found = []
        while self.symoffset <= i < self.nsyms:
            value = self.chain[i - self.symoffset]
            if (value ^ h) >> 1 == 0:
                found.append(i)
            if value & 1:
                break
            i += 1
        return found

    def every_chain(self):
        """Every index of every chain, bucket by bucket."""
        symoffset, nsyms = self.symoffset, self.nsyms
        ends = [symoffset + k for k, h in enumerate(self.chain) if h & 1]
        order = []
        for start in self.buckets:
            if start and symoffset <= start < nsyms:
                # A chain runs from its bucket's first symbol to the first
                # hash with the low bit set (or to the end of .dynsym).
                after = bisect.bisect_left(ends, start)
                order.extend(range(start, ends[after] + 1 if after < len(ends) else nsyms))
        return order


class _SysvTable:
    """DT_HASH: buckets and a chain of next indices, one per symbol."""

    def __init__(self, buckets, chain, nsyms):
        self.buckets, self.chain, self.nsyms = buckets, chain, nsyms

    def _from(self, start):
        i, steps, end = start, 0, min(len(self.chain), self.nsyms)
        while i and i < end and steps <= len(self.chain):
            yield i
            i, steps = self.chain[i], steps + 1

    @property
    def size(self):
        return min(len(self.chain), self.nsyms)

    def chain_of(self, key):
        if not self.buckets:
            return []
        return list(self._from(self.buckets[_sysv_hash(key) % len(self.buckets)]))

    def every_chain(self):
        return [i for start in self.buckets for i in self._from(start)]


def _gnu_table(tags, read, nsyms, word_bits):
    addr = tags[DT_GNU_HASH]
    nbucket, symoffset, bloom_size, shift = struct.unpack("<IIII", read(addr, 16))
    word = word_bits // 8
    bloom = struct.unpack(f"<{bloom_size}{'Q' if word == 8 else 'I'}",
                          read(addr + 16, word * bloom_size))
    buckets_at = addr + 16 + word * bloom_size
    buckets = struct.unpack(f"<{nbucket}I", read(buckets_at, 4 * nbucket))
    count = max(0, nsyms - symoffset)
    chain = struct.unpack(f"<{count}I", read(buckets_at + 4 * nbucket, 4 * count))
    return _GnuTable(symoffset, bloom, shift, buckets, chain, nsyms, word_bits)


def _sysv_table(tags, read, nsyms):
    if DT_HASH not in tags:
        return None
    addr = tags[DT_HASH]
    nbucket, nchain = struct.unpack("<II", read(addr, 8))
    table = struct.unpack(f"<{nbucket + nchain}I", read(addr + 8, 4 * (nbucket + nchain)))
    return _SysvTable(table[:nbucket], table[nbucket:], nsyms)


@functools.lru_cache(maxsize=1 << 16)
def _gnu_hash(key):
    return gnu_hash(key)


@functools.lru_cache(maxsize=1 << 16)
def _sysv_hash(key):
    return sysv_hash(key)
