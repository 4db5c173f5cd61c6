"""aarch64 machine code for the post-link commands (see :mod:`elfvector.arch.x86_64`)."""

__all__ = []
