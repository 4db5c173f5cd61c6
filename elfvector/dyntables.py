"""Growing the dynamic tables that the post-link commands extend.

``.dynstr`` and ``.rela.dyn`` cannot grow in place, so the grown copies go
into the appended read-only segment and DT_STRTAB/DT_STRSZ or
DT_RELA/DT_RELASZ point at them.  Old string offsets stay valid because
the copy starts with the old table.
"""

import struct

from .elfimage import (DT_RELA, DT_RELAENT, DT_RELASZ, DT_STRSZ, DT_STRTAB, RELA, SHF_ALLOC,
                       SHT_RELA)


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
    """``.rela.dyn`` grown by ``extra`` entries: reserved now, filled later.

    The new relocations point into segments laid out after this read-only
    one, so their addresses are known only after the reservation.  New
    entries go at the end, so DT_RELACOUNT (the RELATIVE prefix) stays
    right.  A file without DT_RELA gets one in a spare .dynamic slot.
    """

    def __init__(self, appender, extra):
        self.appender = appender
        self.old = appender.image.relas(DT_RELA, DT_RELASZ)
        self.at = appender.alloc((len(self.old) + extra) * RELA.size, 8)

    def fill(self, new_relas, old=None):
        """Write ``old`` (default: the original entries) followed by ``new_relas``."""
        appender, image = self.appender, self.appender.image
        data = b"".join(r.pack() for r in list(self.old if old is None else old) + new_relas)
        appender.put(self.at, data)
        if image.dyn(DT_RELA) is None:
            appender.add_dynamic(DT_RELA, self.at)
            appender.add_dynamic(DT_RELASZ, len(data))
            appender.add_dynamic(DT_RELAENT, RELA.size)
            dynsym, _ = image.section(".dynsym")
            appender.add_section(".rela.dyn", self.at, len(data), SHF_ALLOC, 8, RELA.size,
                                 sh_type=SHT_RELA, link=dynsym or 0)
            return
        appender.set_dynamic(DT_RELA, self.at)
        appender.set_dynamic(DT_RELASZ, len(data))
        appender.move_section(".rela.dyn", self.at, len(data))


def pack_u16s(values):
    return struct.pack(f"<{len(values)}H", *values)
