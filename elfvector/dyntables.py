"""Growing the dynamic tables that the post-link commands extend.

``.dynstr`` and ``.rela.dyn`` (``.rel.dyn`` on i386) cannot grow in place,
so the grown copies go into the appended read-only segment and
DT_STRTAB/DT_STRSZ or DT_RELA/DT_RELASZ (DT_REL/DT_RELSZ) point at them.
Old string offsets stay valid because the copy starts with the old table.
"""

import struct

from .elfimage import DT_STRSZ, DT_STRTAB, SHF_ALLOC, SHT_RELA

SHT_REL = 9


def grow_dynstr(appender, names):
    """Copy .dynstr with ``names`` appended; return {name: offset}.

    Names are written as the bytes they were read as (``surrogateescape``).
    """
    image = appender.image
    table = bytearray(image.dynstr())
    offsets = {}
    for name in names:
        offsets[name] = len(table)
        table.extend(name.encode("utf-8", "surrogateescape") + b"\0")
    vaddr = appender.add_data(bytes(table), 1)
    appender.set_dynamic(DT_STRTAB, vaddr)
    appender.set_dynamic(DT_STRSZ, len(table))
    appender.move_section(".dynstr", vaddr, len(table))
    return offsets


class RelaDynGrowth:
    """``.rela.dyn`` (``.rel.dyn``) grown by ``extra`` entries: reserved
    now, filled later.

    The new relocations point into segments laid out after this read-only
    one, so their addresses are known only after the reservation.  New
    entries go at the end, so DT_RELACOUNT (the RELATIVE prefix) stays
    right.  A file without the table gets one in a spare .dynamic slot.
    New entries are made with ``image.layout.relocation`` (REL on i386).
    """

    def __init__(self, appender, extra):
        image = appender.image
        self.appender = appender
        self.tags = image.dynamic_relocation_tags
        self.entry = image.layout.entry_size(image.arch.rela)
        self.old = image.dynamic_relocations()
        self.at = appender.alloc((len(self.old) + extra) * self.entry, image.layout.word)

    def fill(self, new_relas, old=None):
        """Write ``old`` (default: the original entries) followed by ``new_relas``."""
        appender, image = self.appender, self.appender.image
        addr_tag, size_tag, entry_tag = self.tags
        data = b"".join(r.pack() for r in list(self.old if old is None else old) + new_relas)
        appender.put(self.at, data)
        name = ".rela.dyn" if image.arch.rela else ".rel.dyn"
        if image.dyn(addr_tag) is None:
            appender.add_dynamic(addr_tag, self.at)
            appender.add_dynamic(size_tag, len(data))
            appender.add_dynamic(entry_tag, self.entry)
            dynsym, _ = image.section(".dynsym")
            appender.add_section(name, self.at, len(data), SHF_ALLOC, image.layout.word,
                                 self.entry, sh_type=SHT_RELA if image.arch.rela else SHT_REL,
                                 link=dynsym or 0)
            return
        appender.set_dynamic(addr_tag, self.at)
        appender.set_dynamic(size_tag, len(data))
        appender.move_section(name, self.at, len(data))


def pack_u16s(values):
    return struct.pack(f"<{len(values)}H", *values)
