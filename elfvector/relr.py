"""The ``DT_RELR`` encoding (gABI) of a set of relative-relocated words.

An entry with its low bit clear is an address; one with it set is a bitmap
of the ``8 * word - 1`` words after the last covered one.  Both the
relocation vector (:mod:`elfvector.relvec`, whose table ld.so applies) and
the closure's fix-up lists (:mod:`elfvector.closure.fixupdata`, walked by
the fix-up routine) use it, in either ELF class.
"""


def relr_encode(addresses, word=8):
    """The entries encoding the ``word``-aligned ``addresses`` (as ints)."""
    addrs = sorted(set(addresses))
    bits = 8 * word - 1
    if any(a % word for a in addrs):
        raise ValueError(f"RELR can only list {word}-aligned words")
    out, i = [], 0
    while i < len(addrs):
        out.append(addrs[i])
        base = addrs[i] + word
        i += 1
        while True:
            bitmap = 0
            while i < len(addrs) and addrs[i] - base < bits * word:
                bitmap |= 1 << ((addrs[i] - base) // word)
                i += 1
            if not bitmap:
                break
            out.append((bitmap << 1) | 1)
            base += bits * word
    return out


def relr_decode(entries, word=8):
    """The addresses the RELR ``entries`` (ints) list: the inverse of
    :func:`relr_encode`."""
    addrs, base = [], None
    bits = 8 * word - 1
    for entry in entries:
        if not entry & 1:
            addrs.append(entry)
            base = entry + word
            continue
        if base is None:
            raise ValueError("RELR table starts with a bitmap")
        addrs += [base + i * word for i in range(bits) if entry >> (i + 1) & 1]
        base += bits * word
    return addrs
