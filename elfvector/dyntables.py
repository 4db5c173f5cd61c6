"""Growing the dynamic tables that the post-link commands extend.

``.dynstr`` and ``.rela.dyn`` cannot grow in place, so the grown copies go
into the appended read-only segment and DT_STRTAB/DT_STRSZ or
DT_RELA/DT_RELASZ point at them.  Old string offsets stay valid because
the copy starts with the old table.
"""

import struct

from .elfimage import DT_RELA, DT_RELAENT, DT_RELASZ, DT_STRSZ, DT_STRTAB, RELA, SHF_ALLOC

SHT_RELA = 4


def grow_dynstr(appender, names):
    """Copy .dynstr with ``names`` appended; return {name: offset}."""
    image = appender.image
    table = bytearray(image.dynstr())
    offsets = {}
    for name in names:
        offsets[name] = len(table)
        table.extend(name.encode() + b"\0")
    vaddr = appender.add_data(bytes(table), 1)
    appender.set_dynamic(DT_STRTAB, vaddr)
    appender.set_dynamic(DT_STRSZ, len(table))
    appender.move_section(".dynstr", vaddr, len(table))
    return offsets


def grow_rela_dyn(appender, old_relas, new_relas):
    """Write .rela.dyn = ``old_relas`` (possibly edited) + ``new_relas``.

    New entries go at the end, so DT_RELACOUNT (the RELATIVE prefix) stays
    right.  A file without DT_RELA gets one in a spare .dynamic slot.
    """
    image = appender.image
    data = b"".join(r.pack() for r in list(old_relas) + list(new_relas))
    vaddr = appender.add_data(data, 8)
    if image.dyn(DT_RELA) is None:
        appender.add_dynamic(DT_RELA, vaddr)
        appender.add_dynamic(DT_RELASZ, len(data))
        appender.add_dynamic(DT_RELAENT, RELA.size)
    else:
        appender.set_dynamic(DT_RELA, vaddr)
        appender.set_dynamic(DT_RELASZ, len(data))
    index, _ = image.section(".rela.dyn")
    if index is not None:
        appender.move_section(".rela.dyn", vaddr, len(data))
    else:
        dynsym, _ = image.section(".dynsym")
        appender.add_section(".rela.dyn", vaddr, len(data), SHF_ALLOC, 8, RELA.size,
                             sh_type=SHT_RELA, link=dynsym or 0)
    return vaddr


def pack_u16s(values):
    return struct.pack(f"<{len(values)}H", *values)
