"""AArch64 code generators, with the same names as :mod:`elfvector.arch.x86_64`.

``link`` writes the assembly text of the link-time path (export tables,
import vectors and their binder), assembled by GNU as; ``code`` writes the
machine code the post-link commands put into a linked file (IFUNC stubs,
retroimp's resolver stubs, relvec's fix-up routine), assembled by keystone.
"""

from .code import *  # noqa: F401,F403
from .link import *  # noqa: F401,F403
