"""What the three fix-up routines share (``closure/<arch>/fixup.py``).

Each architecture writes its routine in its own instructions; the layout
of the data they read is one, in words of the object's class
(:class:`DataLayout`, which :class:`.fixupdata.FixupData` writes), and so is
the order of a routine's parts (:func:`routine_lines`).
"""

from dataclasses import dataclass


class NoRoutineRoom(Exception):
    """The routine does not fit the regions it was given (an architecture's
    ``Routine.layout``); the caller tries other regions."""


@dataclass(frozen=True)
class DataLayout:
    """Offsets in the fix-up data (word-aligned, read-only) of ``word``-byte words.

    A header of three words: the data's own link-time address (the load
    bias is its run-time address minus that), the link-time address of the
    result word (the routine's IRELATIVE's), and of the end of the entries
    that follow.  An entry is four words (word, expected, list start, list
    end): the word's run-time value minus ``expected`` is added to every
    word of the RELR list.  A check's word is its GLOB_DAT's (the library's
    displacement); the object's own words have an entry whose word a
    RELATIVE sets to ``expected`` plus the bias."""

    word: int

    @property
    def header_self(self):
        return 0

    @property
    def header_result(self):
        return self.word

    @property
    def header_end(self):
        return 2 * self.word

    @property
    def header_size(self):
        return 3 * self.word

    @property
    def entry_size(self):
        return 4 * self.word

    @property
    def relr_bits(self):
        """The words an odd RELR entry (a bitmap) covers."""
        return 8 * self.word - 1


def routine_lines(walk, call_preload, epilogue, relr, preload, preload_lines):
    """A fix-up routine's lines: the ``walk`` of the entries, in a program
    (``preload`` its :class:`~.preload.PreloadLayout`, else None) the
    ``call_preload`` of the check, the ``epilogue``, then the subroutines:
    the RELR walk ``relr`` and the check's ``preload_lines(preload)``."""
    lines = list(walk)
    if preload is not None:
        lines += call_preload
    lines += epilogue + relr
    if preload is not None:
        lines += preload_lines(preload)
    return lines
