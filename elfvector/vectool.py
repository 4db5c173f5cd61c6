"""vectool: build a group of libraries at fixed bases, with vectors.

lib mode, per library (the seed's methodology):

1. trial link with a movable base;
2. the export vector, rebuilt against the previous ``.vec`` so that slots
   never move (``--exclexp`` leaves functions out);
3. the import vector from the ``.vec`` files of its first-level DT_NEEDED
   libraries, found in ``--rpathdir``;
4. a base from the addrfile (the old one while the library still fits,
   else a new one below all others with room to grow), under its lock;
5. the final link at that base (``-Ttext-segment``), the table's seal, its
   import slots pre-bound (the libraries it needs have their bases), then
   relvec;
6. the library and its ``.vec`` linked into ``--rpathdir``.

prog mode links a program with the import vectors of every ``.vec`` in
``--rpathdir``, its slots pre-bound (non-PIE: near or far; PIE: far).
"""

import os
import tempfile
from dataclasses import dataclass, field

from . import addrfile
from .atomic import write_bytes
from .elfimage import PT_LOAD, ElfImage
from .errors import LinkError, VectorMismatchError
from .exportvec import (blamed_on, check_final, choose_vector, link_features, seal_table,
                        trial_link, vector_version_script, write_vector_objects)
from .importvec import assemble_import, plan_for_link, prebind, read_vectors
from .importvec import build as build_program_with_vectors
from .linkcmd import LinkCommand
from .patterns import DEFAULT_IMPORT_EXCLUDES, PatternList
from .relvec import relvec
from .vecfile import read_vec

DEFAULT_EXCLEXP = r"^__V_ ^_init$ ^_fini$"
# The seed's default was '.': every reference to the library's own symbols
# settled, a partial -Bsymbolic.  A settled reference to a function no
# longer sees the canonical address a non-PIE program's PLT or an impvec'd
# program's exported slot gives it, so &f differs between the program and
# the library.  By default relvec settles the RELATIVE relocations only,
# which changes nothing anyone can observe; --inclrel opts symbols in.
DEFAULT_INCLREL = ""
DEFAULT_EXCLREL = r"^__ti ^__environ$ ^__ctype_"
#: the operation named when vectool's lib and prog modes open a file
OPERATION = "vectool --mode=lib|prog"


@dataclass
class Options:
    addrfile: str
    rpathdir: str
    exclexp: str = DEFAULT_EXCLEXP
    inclrel: str = DEFAULT_INCLREL
    exclrel: str = DEFAULT_EXCLREL
    region: addrfile.Region = addrfile.DEFAULT_REGION
    relvec: bool = True


@dataclass
class LibraryResult:
    output: str
    soname: str
    base: int
    new_base: bool
    span: int
    slots: int
    imported: int
    notes: list = field(default_factory=list)


def build_library(options, loader_words):
    cmd = LinkCommand(loader_words)
    output = cmd.output
    soname = cmd.soname
    if not soname:
        raise LinkError("lib mode needs -Wl,-soname=NAME in the loader arguments", output)
    addrfile.check_name(soname, output, remedy="give it another soname")
    os.makedirs(options.rpathdir, exist_ok=True)
    excl = PatternList.from_arg(options.exclexp, "--exclexp")
    inclrel = PatternList.from_arg(options.inclrel, "--inclrel") or None
    exclrel = PatternList.from_arg(options.exclrel, "--exclrel")
    vec_path = output + ".vec"
    old_vec, variant_of = _previous_vector(options.rpathdir, soname, output, vec_path)
    cmd = cmd.with_extra(f"-L{options.rpathdir}")
    with tempfile.TemporaryDirectory(prefix="vectool-") as tmp, blamed_on(output, tmp):
        trial = trial_link(cmd, tmp, OPERATION)
        toolchain = cmd.toolchain(trial.arch)
        if old_vec:
            vector, notes = choose_vector(trial, cmd, "@" + old_vec, None, excl)
        else:
            vector, notes = choose_vector(trial, cmd, ".", PatternList(["."]), excl)
        if variant_of:
            _check_same_vector(vector, read_vec(old_vec), output, variant_of)
        objects = list(write_vector_objects(tmp, toolchain, vector, link_features(trial, vector)))
        objects += vector_version_script(cmd, tmp)
        imports = plan_for_link(cmd, trial, _needed_vectors(options.rpathdir, trial),
                                PatternList(DEFAULT_IMPORT_EXCLUDES), operation=OPERATION)
        if imports.slot_count:
            objects.append(assemble_import(tmp, toolchain, imports.assembly()))
        unplaced = _link(cmd, tmp, "unplaced.so", objects, "link")
        span = _span(unplaced, options.relvec, inclrel, exclrel)
        with addrfile.locked(options.addrfile) as assignments:
            region = _region_for(options.region, trial)
            base, is_new = addrfile.choose_base(assignments, soname, span, region,
                                                options.addrfile)
            placed = _link(cmd, tmp, "placed.so", objects + [
                cmd.linker_option(f"-Ttext-segment={base:#x}")], "final link")
            notes += check_final(placed, vector, output, OPERATION)
            with open(placed, "rb") as f:
                data = seal_table(f.read(), vector, output, OPERATION)
            if imports.slot_count:
                data, prebound = prebind(data, imports, output)
                notes.append(f"{prebound} of {len(imports.vectors)} import vectors pre-bound")
            if options.relvec:
                data, report = relvec(data, output, inclrel, exclrel)
                notes.append(str(report))
            write_bytes(output, data, mode=0o755)
            text = vector.format(f"{len(vector.slots)} slots of {soname}; managed by vectool")
            write_bytes(vec_path, text.encode("utf-8", "surrogateescape"), mode=0o644)
            if is_new:
                addrfile.append(options.addrfile, addrfile.Assignment(base, soname), span)
    if not variant_of:
        _link_into(options.rpathdir, soname, output)
        _link_into(options.rpathdir, soname + ".vec", vec_path)
    return LibraryResult(output, soname, base, is_new, span, len(vector.slots),
                         imports.slot_count, notes + imports.warnings)


def build_program(options, loader_words):
    """prog mode: ``impvec --link`` with every .vec of the rpathdir."""
    if not os.path.isdir(options.rpathdir):
        raise VectorMismatchError("no such directory (build the libraries first)",
                                  options.rpathdir)
    vecs = sorted(os.path.join(options.rpathdir, f) for f in os.listdir(options.rpathdir)
                  if f.endswith(".vec"))
    return build_program_with_vectors("", vecs, list(loader_words) + [f"-L{options.rpathdir}"],
                                      link=True, prebound=True, operation=OPERATION)


def _previous_vector(rpathdir, soname, output, vec_path):
    """(the .vec to rebuild against or None, the library this one is a variant of or None)."""
    link = os.path.join(rpathdir, soname)
    link_vec = link + ".vec"
    if os.path.lexists(link) and os.path.exists(link_vec):
        other = os.path.realpath(link)
        if other != os.path.realpath(output):
            return link_vec, other
        return link_vec, None
    return (vec_path if os.path.exists(vec_path) else None), None


def _check_same_vector(vector, reference, output, other):
    if [s.key for s in vector.slots] != [s.key for s in reference.slots]:
        ours = {s.key for s in vector.slots}
        theirs = {s.key for s in reference.slots}
        diff = sorted(str(k[0]) for k in ours ^ theirs) or ["(order)"]
        raise VectorMismatchError(
            f"is a variant of {other} but its vector differs ({', '.join(diff[:5])}): every "
            "build of one soname must carry the same vector", output)


def _needed_vectors(rpathdir, trial):
    """Vectors of the first-level DT_NEEDED libraries that have one in rpathdir."""
    paths = [os.path.join(rpathdir, name + ".vec") for name in trial.needed]
    return read_vectors([p for p in paths if os.path.exists(p)])


def _link(cmd, tmp, name, extra, what):
    path = os.path.join(tmp, name)
    cmd.with_output(path).with_extra(*extra).run(what, blame=cmd.output)
    return path


#: prelink's i386 region, for the 32-bit address space the default region is outside
REGION_32 = addrfile.Region(top=0x50000000, bottom=0x41000000)


def _region_for(region, trial):
    """``region``, or for a 32-bit library (i386) instead of the default
    region, which lies above 4 GiB, prelink's i386 region."""
    if region == addrfile.DEFAULT_REGION and trial.image.arch.address_end <= 1 << 32:
        return REGION_32
    return region


def _span(path, relvec_too, inclrel, exclrel):
    """Bytes of address space the finished library will cover (relvec adds segments)."""
    with open(path, "rb") as f:
        data = f.read()
    if relvec_too:
        data, _ = relvec(data, path, inclrel, exclrel)
    image = ElfImage(data, path, OPERATION)
    loads = [p for p in image.phdrs if p.type == PT_LOAD]
    return max(p.vaddr + p.memsz for p in loads) - min(p.vaddr for p in loads)


def _link_into(rpathdir, name, target):
    """``rpathdir/name`` -> ``target``, replaced atomically."""
    link = os.path.join(rpathdir, name)
    tmp = link + ".tmp-link"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(os.path.abspath(target), tmp)
    os.replace(tmp, link)
