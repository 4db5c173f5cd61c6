"""Where the bytes of dynamic linking go, section by section.

Used by the demo and the benchmark to compare a vectored build with a
stock one: the sections that exist per imported or exported function.
"""

import lief

lief.logging.disable()

LINKAGE_SECTIONS = (
    ".dynsym", ".dynstr", ".gnu.hash", ".hash", ".gnu.version", ".rela.plt", ".rela.dyn",
    ".plt", ".plt.sec", ".plt.got", ".got", ".got.plt", ".elfvector.slots",
)


def linkage_bytes(path, vector_prefix=None):
    """Bytes of each linkage section of ``path`` (absent ones count 0).

    With ``vector_prefix`` (``__V_libfoo_so_5``) the export table is
    counted under the name ``export vector``, from the vector symbol's
    size: the link editor merges ``.rodata.__V_*`` into ``.rodata``.
    """
    binary = lief.ELF.parse(path)
    sizes = {name: 0 for name in LINKAGE_SECTIONS}
    for section in binary.sections:
        if section.name in sizes:
            sizes[section.name] = section.size
    if vector_prefix:
        sizes["export vector"] = next((sym.size for sym in binary.dynamic_symbols
                                       if sym.name == vector_prefix and sym.shndx), 0)
    return sizes
