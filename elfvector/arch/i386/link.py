"""i386 assembly text for the link-time path (see :mod:`elfvector.arch.x86_64`)."""

__all__ = []
