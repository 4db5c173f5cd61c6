"""Per-architecture code generation: vector tables, slots and the binder.

Each architecture module provides the same few functions; ``for_arch``
is the one registry.  An architecture we do not know is an error, never a
guess.
"""

from ..errors import UnsupportedElfError
from . import x86_64

_ARCHES = {"x86_64": x86_64}


def for_arch(name):
    try:
        return _ARCHES[name]
    except KeyError:
        raise UnsupportedElfError(f"no vector support for architecture {name}") from None
