"""Fixed bases for the libraries of a closure, from the addrfile.

The addrfile has the format and the locking of vectool's other modes (the
line's name is the soname, else the file name).  A new addrfile starts at a
random 2 MiB boundary (:func:`random_top`), as ``prelink -R`` did, so each
machine gets its own bases; new libraries go below every other base, each
with room to grow (:func:`elfvector.addrfile.room_for`).

The region depends on the architecture (:func:`region_of`): prelink's
x86-64 one on 64-bit architectures, prelink's i386 one (between a
program's heap and the mmap area under the stack) on i386.  An addrfile
may list the libraries of several architectures: a library other than
x86-64's is named ``ARCH:soname`` there (i386's libc.so.6 is not
x86-64's).
"""

import os
import random
from contextlib import contextmanager

from .. import addrfile as addresses

PAGE = 0x1000
PT_LOAD = 1
#: prelink's i386 region (``-r`` default 0x41000000 .. 0x50000000)
I386_REGION = addresses.Region(top=0x50000000, bottom=0x41000000)


@contextmanager
def assign_bases(libraries, options):
    """Under the addrfile's lock, yields ({real path: base}, {real path: the
    lowest base above it}) and a function that appends the new libraries'
    lines (below every other base).  The caller calls it, still in the
    ``with``, once the run can no longer refuse: a refused run leaves the
    addrfile as it was (or absent)."""
    path = options.addrfile
    bases, limits, new_lines = {}, {}, []
    with addresses.locked(path) as assignments:
        assignments = list(assignments)
        region = region_of(libraries)
        # the bases in this architecture's region: another's are elsewhere
        assignments = [a for a in assignments if region.bottom <= a.base < region.top]
        if not assignments:
            region = addresses.Region(top=random_top(libraries, options.seed, region),
                                      bottom=region.bottom)
        for elf in libraries:
            name, span = addrfile_name(elf), address_span(elf.image.phdrs)
            addresses.check_name(name, elf.path)
            base, new = addresses.choose_base(assignments, name, span, region, path)
            if new:
                assignment = addresses.Assignment(base, name)
                new_lines.append((assignment, span))
                assignments.append(assignment)
            bases[elf.path] = base
        for elf in libraries:
            above = [a.base for a in assignments if a.base > bases[elf.path]]
            limits[elf.path] = min(above, default=region_of(libraries).top)

        def record():
            if new_lines:
                addresses.append_all(path, new_lines)
        yield bases, limits, record


def region_of(libraries):
    """Where the bases of ``libraries`` (of one architecture) go."""
    if libraries and libraries[0].machine.address_end <= 1 << 32:
        return I386_REGION
    return addresses.DEFAULT_REGION


def addrfile_name(elf):
    """The addrfile's name of a library: its soname, else its file name;
    ``ARCH:`` before it for an architecture other than x86-64."""
    name = elf.soname or os.path.basename(elf.path)
    return name if elf.machine.name == "x86_64" else f"{elf.machine.name}:{name}"


def random_top(libraries, seed=None, region=addresses.DEFAULT_REGION):
    """Where a new addrfile (or an architecture's first libraries in one)
    starts: a 2 MiB boundary chosen at random (from os.urandom, or from
    ``seed``) in the upper part of ``region`` that leaves room below for the
    whole closure."""
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
