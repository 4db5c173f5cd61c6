"""The output's dynamic symbol tables, and the check symbol appended to them.

A library exports one new symbol, its check symbol (:func:`check_symbol_name`),
which its importers look up once each: another build of the library lacks
it, and ld.so refuses to start them.  It is appended at the end of
``.dynsym`` without renumbering anything, so every relocation, version
entry and hash chain that names a symbol by index stays right: its name is
salted until its GNU hash falls in the last non-empty bucket of
``.gnu.hash`` or a later one, so that it extends the last chain
(:class:`GnuHash`).  An importer renames one freed undefined entry to each
check symbol it needs (:class:`DynamicSymbols`).
"""

import re
import struct

from ..elfimage import PT_DYNAMIC, SHN_UNDEF, ElfImage, Sym, build_sysv_hash, gnu_hash
from ..errors import NotElfError, UnsupportedElfError
from . import layout
from .machine import OPERATION

CHECK_PREFIX = "__elfvector_"
#: a check symbol's name (:func:`check_symbol_name`): the fingerprint is 8 hex digits
CHECK_NAME = re.compile(CHECK_PREFIX + r"[0-9A-Za-z_]+_[0-9a-f]{8}(?:_[0-9]+)?")
MAX_SALT = 1 << 20
STB_GLOBAL, STT_OBJECT = 1, 1
VER_NDX_GLOBAL = 1
DT_HASH, DT_GNU_HASH = 4, 0x6FFFFEF5


def check_symbol_name(data, soname, fingerprint, new_base=None, path=None):
    """(name, value) of the check symbol the library ``data`` will export.

    The name is ``__elfvector_<soname as identifier>_<8 hex fingerprint>``,
    salted (``_<n>``) so that its GNU hash falls in the last non-empty
    bucket of ``.gnu.hash`` or a later one: appended at the end of
    ``.dynsym`` it then extends the last chain, and no symbol is renumbered.
    The value is the address of ``.dynamic`` in the output when the library
    is linked at ``new_base`` (what importers' :attr:`~.model.Check.expected`
    must be); without ``new_base``, its original address in ``data``.
    An error names ``path``, the library's file (else its soname).
    """
    path = path or soname
    image = ElfImage(data, path, OPERATION)
    if isinstance(fingerprint, int):
        fingerprint = f"{fingerprint:08x}"
    if not re.fullmatch(r"[0-9A-Za-z_]+", fingerprint):
        raise ValueError(f"fingerprint {fingerprint!r} is not an identifier")
    base = f"{CHECK_PREFIX}{_identifier(soname)}_{fingerprint}"
    dynamic = [p for p in image.phdrs if p.type == PT_DYNAMIC]
    if not dynamic:
        raise UnsupportedElfError("no dynamic section", path)
    value = dynamic[0].vaddr
    if new_base is not None:
        value += new_base - layout.loads(image.phdrs)[0].vaddr
    return _salted(base, GnuHash.of(image)), value


def _identifier(soname):
    return re.sub(r"[^0-9A-Za-z_]", "_", soname)


def _salted(base, gnu):
    if gnu is None:
        return base
    for salt in range(MAX_SALT):
        name = base if salt == 0 else f"{base}_{salt}"
        if gnu.may_append(name.encode()):
            return name
    raise ValueError(f"no salt puts {base} in the last .gnu.hash bucket")


class GnuHash:
    """A ``.gnu.hash`` table, to which one symbol can be appended."""

    def __init__(self, raw, nsyms, word=8):
        self.nbucket, self.symoffset, self.bloom_size, self.shift = struct.unpack_from(
            "<IIII", raw)
        self.word = word
        self.bloom_code = "Q" if word == 8 else "I"
        at = 16
        self.bloom = list(struct.unpack_from(f"<{self.bloom_size}{self.bloom_code}", raw, at))
        at += word * self.bloom_size
        self.buckets = list(struct.unpack_from(f"<{self.nbucket}I", raw, at))
        at += 4 * self.nbucket
        self.chains = list(struct.unpack_from(f"<{max(nsyms - self.symoffset, 0)}I", raw, at))
        self.nsyms = nsyms
        self.last = max((b for b in range(self.nbucket) if self.buckets[b]), default=None)

    @classmethod
    def of(cls, image):
        """The table of ``image``, or None without DT_GNU_HASH."""
        addr = image.dyn(DT_GNU_HASH)
        if not addr:
            return None
        nsyms = image.dynsym_count()
        nbucket, symoffset, bloom_size, _ = struct.unpack("<IIII", image.read(addr, 16))
        word = image.layout.word
        size = 16 + word * bloom_size + 4 * nbucket + 4 * max(nsyms - symoffset, 0)
        table = cls(image.read(addr, size), nsyms, word)
        if table.last is not None and table.chain_end(table.last) is None:
            raise NotElfError("a malformed .gnu.hash: its last chain is not terminated "
                              "within .dynsym", image.path)
        if nsyms < table.symoffset or (table.last is not None and
                                       table.chain_end(table.last) != nsyms - 1):
            raise UnsupportedElfError(".dynsym does not end with the last .gnu.hash chain",
                                      image.path)
        return table

    def chain_end(self, bucket):
        """The index of the last symbol of ``bucket``'s chain, or None when the chain
        starts outside .dynsym's hashed symbols or runs past them unterminated (a
        malformed table: walking on would read beyond it)."""
        i = self.buckets[bucket]
        if i < self.symoffset:
            return None
        while i < self.nsyms and not self.chains[i - self.symoffset] & 1:
            i += 1
        return i if i < self.nsyms else None

    def may_append(self, name):
        return self.last is None or gnu_hash(name) % self.nbucket >= self.last

    def append(self, name):
        """Hash the symbol ``name`` appended at index ``nsyms``."""
        h = gnu_hash(name)
        bucket = h % self.nbucket
        if not self.may_append(name):
            raise ValueError(f"{name!r} does not hash into the last .gnu.hash bucket")
        if bucket == self.last:
            self.chains[-1] &= ~1
        else:
            self.buckets[bucket] = self.nsyms
        self.chains.append(h | 1)
        bits = 8 * self.word
        self.bloom[(h // bits) % self.bloom_size] |= (1 << (h % bits)) | (
            1 << ((h >> self.shift) % bits))
        self.nsyms += 1
        self.last = bucket

    def pack(self):
        return (struct.pack("<IIII", self.nbucket, self.symoffset, self.bloom_size, self.shift)
                + struct.pack(f"<{self.bloom_size}{self.bloom_code}", *self.bloom)
                + struct.pack(f"<{self.nbucket}I", *self.buckets)
                + struct.pack(f"<{len(self.chains)}I", *self.chains))


# -- the tables of the output ----------------------------------------------------

class DynamicSymbols:
    """``.dynsym``, ``.dynstr``, ``.gnu.version`` and the hash tables, as the
    output will have them.  Names are bytes."""

    def __init__(self, image):
        self.image = image
        self.syms = [Sym(**vars(s)) for s in image.dynsyms()]
        self.strtab = bytearray(image.dynstr())
        self.versym = image.versyms()
        self.gnu = GnuHash.of(image)
        self.sysv_nbucket = (struct.unpack("<I", image.read(image.dyn(DT_HASH), 4))[0]
                             if image.dyn(DT_HASH) else None)

    def name(self, i):
        end = self.strtab.index(b"\0", self.syms[i].name)
        return bytes(self.strtab[self.syms[i].name:end])

    def add_string(self, text):
        offset = len(self.strtab)
        self.strtab += text + b"\0"
        return offset

    def rename_to_check(self, i, name):
        """Entry ``i`` (undefined, freed) becomes the reference to a check symbol."""
        self.syms[i] = Sym(self.add_string(name), (STB_GLOBAL << 4) | STT_OBJECT, 0,
                           SHN_UNDEF, 0, 0)
        if self.versym is not None:
            self.versym[i] = VER_NDX_GLOBAL

    def append_definition(self, name, shndx, value):
        """The library's check symbol, at the end of .dynsym and of the last hash chain."""
        if self.gnu is not None:
            self.gnu.append(name)
        self.syms.append(Sym(self.add_string(name), (STB_GLOBAL << 4) | STT_OBJECT, 0, shndx,
                             value, 0))
        if self.versym is not None:
            self.versym.append(VER_NDX_GLOBAL)

    def packed(self):
        """The .dynsym bytes (``Sym.pack`` goes through ``astuple``: too slow here)."""
        layout = self.image.layout
        if layout.sym_order == (0, 1, 2, 3, 4, 5):
            return b"".join(layout.sym.pack(s.name, s.info, s.other, s.shndx, s.value, s.size)
                            for s in self.syms)
        return b"".join(layout.pack_sym(s) for s in self.syms)

    def tables(self):
        """Section name -> new contents, for the tables this object has."""
        out = {".dynsym": self.packed(), ".dynstr": bytes(self.strtab)}
        if self.versym is not None:
            out[".gnu.version"] = struct.pack(f"<{len(self.versym)}H", *self.versym)
        if self.gnu is not None:
            out[".gnu.hash"] = self.gnu.pack()
        if self.sysv_nbucket is not None:
            out[".hash"] = build_sysv_hash([self.name(i) for i in range(len(self.syms))],
                                           self.sysv_nbucket)
        return out

