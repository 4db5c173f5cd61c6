"""Where the bytes of dynamic linking go, section by section.

Used by the demo and the benchmark to compare a vectored build with a
stock one: the sections that exist per imported or exported function.
"""

import lief

from .elffile import ElfFile  # noqa: F401  (keeps LIEF's logging disabled)

LINKAGE_SECTIONS = (
    ".dynsym", ".dynstr", ".gnu.hash", ".hash", ".gnu.version", ".rela.plt", ".rela.dyn",
    ".plt", ".plt.sec", ".plt.got", ".got", ".got.plt", ".elfvector.slots",
)


def linkage_bytes(path, vector_prefix=None):
    """Bytes of each linkage section of ``path`` (absent ones count 0).

    With ``vector_prefix`` the export table (``.rodata.<vector>``) is
    counted under the name ``export vector``.
    """
    binary = lief.ELF.parse(path)
    sizes = {name: 0 for name in LINKAGE_SECTIONS}
    for section in binary.sections:
        if section.name in sizes:
            sizes[section.name] = section.size
        elif vector_prefix and section.name.startswith(".rodata." + vector_prefix):
            sizes["export vector"] = sizes.get("export vector", 0) + section.size
    if vector_prefix:
        for sym in binary.dynamic_symbols:
            if sym.name.startswith(vector_prefix) and sym.shndx:
                sizes.setdefault("export vector", sym.size)
                break
    return sizes


def slots_used_bytes(path):
    """Bytes of ``.elfvector.slots`` actually used by slots (16 per slot)."""
    binary = lief.ELF.parse(path)
    section = binary.get_section(".elfvector.slots")
    return 0 if section is None else section.size


def diff_sizes(before, after):
    keys = sorted(set(before) | set(after))
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys}
