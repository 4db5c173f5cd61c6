"""What the retro mode refuses to rewrite, and why.

A privileged program (setuid, setgid, file capabilities) would load its
libraries through a run path, and a directory a user may write would hand
that user its privileges.  An output of this mode (or of retroimp) has its
references settled against the libraries of its DIR: rewriting it again
cannot give a program that behaves like its original, so the user is sent
to the original, named when a manifest knows it.
"""

import hashlib
import os
import stat

from ..ldso import FileCache
from ..retroimp import MARKER_SECTION as RETROIMP_SECTION
from . import layout
from .machine import OPERATION
from .manifest import Manifest, RetroError
from .symbols import CHECK_NAME

CAPABILITY_XATTR = "security.capability"
STT_OBJECT = 1
#: the sections this mode adds to an output (some outputs have none: their check
#: symbols tell them)
OUTPUT_SECTIONS = (layout.FIXUP_SECTION, layout.DATA_SECTION, layout.PREBOUND_SECTION,
                   layout.FILTER_SECTION)


def refuse_program(path, outdir, files=None, old=None):
    """Refuse what must not get outputs: a missing file, a setuid, setgid or
    file-capability program (a run path into a directory a user may write
    would hand that user the program's privileges), an output of this mode
    (:func:`refuse_output`; ``files`` parses it, ``old`` is DIR's manifest),
    or any file inside DIR."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise RetroError(f"cannot read: {e.strerror}", path) from None
    if not stat.S_ISREG(st.st_mode):
        raise RetroError("not a regular file", path)
    for bit, what in ((stat.S_ISUID, "setuid"), (stat.S_ISGID, "setgid")):
        if st.st_mode & bit:
            raise RetroError(f"is {what}: its outputs would load libraries through a run "
                             "path, so it is not rewritten", path)
    if _has_capabilities(path):
        raise RetroError("has file capabilities (security.capability): its outputs would "
                         "load libraries through a run path, so it is not rewritten", path)
    refuse_output(path, (files or FileCache(OPERATION)).get(path).image, old)
    real, top = os.path.realpath(path), os.path.realpath(outdir)
    if os.path.commonpath([real, top]) == top:
        raise RetroError(f"is inside the output directory {outdir}: give the original "
                         "program", path)


def refuse_output(path, image, old=None):
    """Refuse a program this mode wrote (or one retroimp rewrote): its
    references are settled against the libraries of its DIR, which it needs
    by their paths there, so rewriting it again cannot give a program that
    behaves like its original.  The message names the original when a
    manifest knows it: ``old`` (DIR's) or the one of the DIR the output
    lies in."""
    tool = rewritten_by(image)
    if tool is None:
        return
    if tool == "retroimp":
        raise RetroError("was rewritten by retroimp: give the original program", path)
    source = original_of(path, image.data, [old, _manifest_around(path)])
    if source is None:
        hint = "give the original program"
    elif os.path.realpath(source) == os.path.realpath(path):
        hint = "it was copied over the original program it was made from: reinstall that"
    else:
        hint = f"give the original program, {source}"
    raise RetroError(f"is an output of vectool --mode=retro: {hint}", path)


def rewritten_by(image):
    """"retro" for an output of this mode: a section it adds (only some
    outputs need one), or the undefined check symbol of a library it has
    words settled into (a program has one for libc at least); "retroimp"
    for retroimp's outputs; None for anything else."""
    names = set(image.section_names)
    if names & set(OUTPUT_SECTIONS):
        return "retro"
    if RETROIMP_SECTION in names:
        return "retroimp"
    for sym, name in zip(image.dynsyms(), image.symbol_names()):
        if sym.shndx == 0 and sym.info & 0xF == STT_OBJECT and CHECK_NAME.fullmatch(name):
            return "retro"
    return None


def original_of(path, data, manifests):
    """The program an output was made from, as the first of ``manifests``
    (None entries skipped) that records it says: by the output's path, else
    by its bytes (a copy of the output elsewhere); None if none does."""
    real, digest = os.path.realpath(path), hashlib.sha256(data).hexdigest()
    for manifest in filter(None, manifests):
        for entry in manifest.objects:
            if entry.get("kind") == "program" and (
                    os.path.realpath(entry["output"]) == real
                    or entry["output_sha256"] == digest):
                return entry["source"]
    return None


def _manifest_around(path):
    """The manifest of the DIR whose bin/ holds ``path``, if it is one
    (only read to name the original: a bad one names nothing)."""
    bindir = os.path.dirname(os.path.realpath(path))
    if os.path.basename(bindir) != "bin":
        return None
    try:
        return Manifest.read(os.path.dirname(bindir))
    except RetroError:
        return None


def _has_capabilities(path):
    try:
        os.getxattr(path, CAPABILITY_XATTR)
    except OSError:             # ENODATA: none; ENOTSUP: the file system has none
        return False
    return True
