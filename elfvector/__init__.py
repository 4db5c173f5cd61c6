"""elfvector: transfer vectors between ELF programs and shared libraries.

A shared library exports one table of 4-byte offsets (its *export vector*)
behind one symbol; a program imports through slots bound once at start-up
from that table, with one symbol lookup per library instead of one per
function.  See docs/design.md for the formats and the binding sequence.
"""

__version__ = "0.8.0"
