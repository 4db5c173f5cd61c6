"""Fixed bases for the libraries of a closure, from the addrfile.

The addrfile has the format and the locking of vectool's other modes (the
line's name is the soname, else the file name).  A new addrfile starts at a
random 2 MiB boundary (:func:`random_top`), as ``prelink -R`` did, so each
machine gets its own bases; new libraries go below every other base, each
with room to grow (:func:`elfvector.addrfile.room_for`).
"""

import os
import random

from .. import addrfile as addresses

PAGE = 0x1000
PT_LOAD = 1


def assign_bases(libraries, options):
    """({real path: base}, {real path: the lowest base above it}) from the
    addrfile, under its lock; new libraries are appended below every other."""
    path = options.addrfile
    bases, limits = {}, {}
    with addresses.locked(path) as assignments:
        assignments = list(assignments)
        region = addresses.DEFAULT_REGION
        if not assignments:
            region = addresses.Region(top=random_top(libraries, options.seed),
                                      bottom=region.bottom)
        for elf in libraries:
            name, span = addrfile_name(elf), address_span(elf.image.phdrs)
            base, new = addresses.choose_base(assignments, name, span, region, path)
            if new:
                assignment = addresses.Assignment(base, name)
                addresses.append(path, assignment, span)
                assignments.append(assignment)
            bases[elf.path] = base
        for elf in libraries:
            above = [a.base for a in assignments if a.base > bases[elf.path]]
            limits[elf.path] = min(above, default=addresses.DEFAULT_REGION.top)
    return bases, limits


def addrfile_name(elf):
    """The addrfile's name of a library: its soname, else its file name."""
    return elf.soname or os.path.basename(elf.path)


def random_top(libraries, seed=None):
    """Where a new addrfile starts: a 2 MiB boundary chosen at random (from
    os.urandom, or from ``seed``) in the upper part of the region that
    leaves room below for the whole closure."""
    region = addresses.DEFAULT_REGION
    needed = sum(addresses.room_for(address_span(elf.image.phdrs)) for elf in libraries)
    lowest_top = region.bottom + needed
    choices = max((region.top - lowest_top) // addresses.MIB2, 0) + 1
    if seed is None:
        pick = int.from_bytes(os.urandom(8), "little") % choices
    else:
        pick = random.Random(seed).randrange(choices)
    return region.top - pick * addresses.MIB2


def address_span(phdrs):
    """The bytes of address space the PT_LOADs cover, whole pages."""
    loads = [p for p in phdrs if p.type == PT_LOAD]
    low = min(p.vaddr for p in loads) & ~(PAGE - 1)
    high = max(p.vaddr + p.memsz for p in loads)
    return (high - low + PAGE - 1) & ~(PAGE - 1)
