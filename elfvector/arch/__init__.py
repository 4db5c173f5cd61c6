"""Which architectures each operation handles, and the code generators.

The ELF core reads x86-64, i386 and AArch64 files alike (``elfstruct``'s
:class:`~elfvector.elfstruct.Machine` holds their psABI facts); what an
operation does to a file may still need code written for one
architecture (stubs, a binder, a fix-up routine).  :data:`SUPPORTED` is
the one table of what works where: :class:`~elfvector.elfimage.ElfImage`
consults it when a command opens a file, so a command refuses a file of
an architecture it does not handle yet in one line that says why, before
reading further.

Each architecture with generated code has a module here providing the
same names (``x86_64``, and the packages ``i386`` and ``aarch64``); ``for_arch`` is the one
registry of them.  An architecture we do not know is an error, never a
guess.  What they share is not repeated in each: :mod:`.asmtext` writes
the GNU as text of the export table and the import vector's layout (each
architecture supplies the instructions), :mod:`.machinecode` holds
keystone and capstone for the post-link code of i386 and AArch64.
"""

from ..errors import UnsupportedElfError
from . import aarch64, i386, x86_64

_ARCHES = {"x86_64": x86_64, "i386": i386, "aarch64": aarch64}

_ALL = ("x86_64", "i386", "aarch64")
_X86_64 = ("x86_64",)

#: operation -> (the architectures it handles, why it does not handle the others)
SUPPORTED = {
    "recovervec": (_ALL, None),
    "retrovec": (_ALL, None),
    "vectool --mode=rpathrm": (_ALL, None),
    "vecstat": (_ALL, None),
    "relvec": (_ALL, None),
    "retroimp": (_ALL, None),
    "expvec": (_ALL, None),
    "impvec": (_ALL, None),
    "vectool --mode=lib|prog": (_ALL, None),
    "vectool --mode=retro": (_ALL, None),
}

#: retrovec gives a vectored IFUNC a stub; the architectures that have one
IFUNC_STUBS = _ALL


def handles(operation, arch_name):
    """True if ``operation`` (a key of :data:`SUPPORTED`, or None for code
    that predates the other architectures: x86-64 only) handles files of
    the architecture ``arch_name``."""
    arches, _ = SUPPORTED[operation] if operation else (_X86_64, None)
    return arch_name in arches


def refusal(operation, machine):
    """Why ``operation`` refuses a file of the known architecture ``machine``
    (an :class:`~elfvector.elfstruct.Machine`): the text after "not
    supported yet"."""
    if operation is None:
        readers = [op for op, (arches, _) in SUPPORTED.items() if machine.name in arches]
        return f"by this command ({', '.join(readers)} read {machine.label} files)"
    return f"by {operation} ({SUPPORTED[operation][1]})"


def for_arch(name):
    try:
        return _ARCHES[name]
    except KeyError:
        raise UnsupportedElfError(f"no vector support for architecture {name}") from None
