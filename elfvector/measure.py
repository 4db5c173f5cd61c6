"""Where the bytes of dynamic linking go, section by section.

Used by the demo and the benchmark to compare a vectored build with a
stock one: the sections that exist per imported or exported function.
Read with the project's own reader, as every command reads.
"""

from .elffile import ElfFile
from .elfimage import ElfImage, read_elf_file

LINKAGE_SECTIONS = (
    ".dynsym", ".dynstr", ".gnu.hash", ".hash", ".gnu.version", ".rela.plt", ".rela.dyn",
    ".plt", ".plt.sec", ".plt.got", ".got", ".got.plt", ".elfvector.slots",
    ".elfvector.index",
)


def read_image(path):
    """The :class:`ElfImage` of the file at ``path`` (a str or a Path)."""
    return ElfImage(read_elf_file(str(path)), str(path))


def linkage_bytes(path, vector_prefix=None):
    """Bytes of each linkage section of ``path`` (absent ones count 0).

    With ``vector_prefix`` (``__V_libfoo_so_5``) the export table is
    counted under the name ``export vector``, from the vector symbol's
    size: the link editor merges ``.rodata.__V_*`` into ``.rodata``.
    """
    image = read_image(path)
    sizes = {name: 0 for name in LINKAGE_SECTIONS}
    for name, section in zip(image.section_names, image.shdrs):
        if name in sizes and not sizes[name]:
            sizes[name] = section.size
    if vector_prefix:
        sizes["export vector"] = ElfFile.from_image(image).symbol_size(vector_prefix) or 0
    return sizes


def section_containing(path, address):
    """The name of the allocated section of ``path`` holding ``address``, or None."""
    image = read_image(path)
    index, _ = image.section_containing(address)
    return None if index is None else image.section_names[index]
