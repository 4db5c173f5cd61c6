"""What the closure rewrite needs of an object's architecture (:func:`closure_arch`).

The rewrite itself is common: the per-architecture code lives in
``closure/x86_64``, ``closure/i386`` and ``closure/aarch64`` (PLT decoding,
the fix-up routine, the preload check, the assembler), what the three
share in ``closure/plt.py``, ``fixup.py`` and ``preload.py``; what differs
in the files is the ELF class (word size, record formats) and the
relocation format: RELA on x86-64 and AArch64, REL on i386, where a
relocation's addend is the word it relocates, so the rewrite writes kept
RELATIVE and IRELATIVE addends into the words and settles a word by
writing its value there (as on x86-64).
"""

from dataclasses import dataclass

from ..elfstruct import (DT_REL, DT_RELA, DT_RELACOUNT, DT_RELAENT, DT_RELASZ, DT_RELCOUNT,
                         DT_RELENT, DT_RELSZ)
from ..errors import UnsupportedElfError
from ..relr import relr_decode, relr_encode
from .aarch64 import asm as aarch64_asm
from .aarch64 import fixup as aarch64_fixup
from .aarch64 import plt as aarch64_plt
from .aarch64 import preload as aarch64_preload
from .i386 import fixup as i386_fixup
from .i386 import plt as i386_plt
from .i386 import preload as i386_preload
from .x86_64 import asm as x86_asm
from .x86_64 import fixup as x86_64_fixup
from .x86_64 import plt as x86_64_plt
from .x86_64 import preload as x86_64_preload

SHT_RELA, SHT_REL = 4, 9
#: the command, as :data:`elfvector.arch.SUPPORTED` names it
OPERATION = "vectool --mode=retro"


def _rela_or_rel(rela, rel):
    """A property of :class:`ClosureArch`: ``rela`` on a RELA architecture, else ``rel``."""
    return property(lambda self: rela if self.rela else rel)


@dataclass(frozen=True)
class ClosureArch:
    """One architecture's facts and code modules for the closure rewrite."""

    machine: object             #: the :class:`~elfvector.elfstruct.Machine`
    plt: object                 #: PLT decoding (``closure/<arch>/plt.py``)
    fixup: object               #: the fix-up routine (``closure/<arch>/fixup.py``)
    preload: object             #: the preload check (``closure/<arch>/preload.py``)
    #: the assembler of the fix-up routine's lines (its ``layout`` and ``encode``)
    routine: object

    @property
    def name(self):
        return self.machine.name

    @property
    def layout(self):
        return self.machine.layout

    @property
    def word(self):
        return self.layout.word

    @property
    def rela(self):
        return self.machine.rela

    def pack_word(self, value):
        return (value & ((1 << 8 * self.word) - 1)).to_bytes(self.word, "little")

    # -- the dynamic relocation table: .rela.dyn (DT_RELA) or .rel.dyn (DT_REL) --------
    table_tag = _rela_or_rel(DT_RELA, DT_REL)
    size_tag = _rela_or_rel(DT_RELASZ, DT_RELSZ)
    entry_tag = _rela_or_rel(DT_RELAENT, DT_RELENT)
    count_tag = _rela_or_rel(DT_RELACOUNT, DT_RELCOUNT)
    dynamic_section = _rela_or_rel(".rela.dyn", ".rel.dyn")
    plt_section = _rela_or_rel(".rela.plt", ".rel.plt")
    section_type = _rela_or_rel(SHT_RELA, SHT_REL)

    @property
    def entry_size(self):
        return self.layout.entry_size(self.rela)

    def relocation(self, offset, rtype, addend=0, sym=0):
        """A new entry of the dynamic relocation table (REL: ``addend`` is
        not in it; the caller writes it into the word)."""
        return self.layout.relocation(offset & ((1 << 8 * self.word) - 1), sym, rtype, addend,
                                      self.rela)

    # -- RELR lists of the fix-up ------------------------------------------------------
    def relr_encode(self, addresses):
        """The RELR encoding of word-aligned ``addresses``, as bytes of this class."""
        return b"".join(self.pack_word(e) for e in relr_encode(addresses, self.word))

    def relr_decode(self, raw):
        """The addresses the RELR table ``raw`` (bytes of this class) lists."""
        word = self.word
        return relr_decode((int.from_bytes(raw[k:k + word], "little")
                            for k in range(0, len(raw) - len(raw) % word, word)), word)


_ARCHES = {
    "x86_64": lambda m: ClosureArch(m, x86_64_plt, x86_64_fixup, x86_64_preload,
                                    lambda lines: x86_asm.Routine(lines, 64)),
    "i386": lambda m: ClosureArch(m, i386_plt, i386_fixup, i386_preload,
                                  lambda lines: x86_asm.Routine(lines, 32)),
    "aarch64": lambda m: ClosureArch(m, aarch64_plt, aarch64_fixup, aarch64_preload,
                                     aarch64_asm.Routine),
}


def closure_arch(image):
    """The :class:`ClosureArch` of ``image`` (an ElfImage)."""
    make = _ARCHES.get(image.arch.name)
    if make is None:
        raise UnsupportedElfError(f"vectool --mode=retro does not handle {image.arch.label} "
                                  "files yet", image.path)
    return make(image.arch)
