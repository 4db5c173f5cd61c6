"""``vectool --mode=retro``: programs and their whole closure, rewritten into DIR.

The driver orders the closure operations and owns what lies around them:

1. read the closure of every program (this run's and every program an
   earlier run recorded in DIR's manifest, :mod:`.manifest`, so DIR/lib
   stays right for all);
2. refuse setuid, setgid and file-capability programs, whose outputs would
   load libraries through a run path, which a user could write, and
   outputs of this mode (:mod:`.refuse`);
3. give each library a base from the addrfile, under its lock (a new
   addrfile starts at a random top, as ``prelink -R`` did; :mod:`.bases`);
4. compute each library's check symbol: a fingerprint of its source bytes,
   its base and elfvector's version, so that another build, another base or
   another elfvector makes importers refuse to start;
5. plan (:func:`.resolve.plan_closure`) and rewrite every object in memory,
   ld.so copied verbatim;
6. write each output whose bytes changed (atomically, the source's mode
   without setuid/setgid bits), remove outputs no program needs any more,
   and record the manifest ``DIR/elfvector-retro.json``: every program and
   source, each output's sha256, base and check symbol.

:func:`.manifest.check` compares the manifest with the sources as they are now.
"""

import fcntl
import hashlib
import os
import stat
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

from .. import __version__
from ..atomic import write_bytes
from ..elfimage import LAYOUTS, SHF_ALLOC, SHT_NOBITS
from ..errors import OutputError
from ..ldso import FileCache
from .bases import address_span, assign_bases
from .machine import OPERATION
from .manifest import Manifest, RetroError, with_recorded_settings
from .refuse import refuse_program
from .resolve import ClosureOptions, plan_closure, program_lookups, read_closure, summarize
from .rewrite import rewrite_object
from .symbols import check_symbol_name

LOCK = ".elfvector-retro.lock"


@dataclass
class RetroOptions:
    """The command line of ``vectool --mode=retro`` (see the CLI's help).

    ``exclude``, ``keep_interposable``, ``libdir`` and ``root`` None mean
    "not given": a rerun takes what DIR's manifest records
    (:func:`with_recorded_settings`), a new DIR none; ``fixed_bases``
    False is --no-fixed-bases (no addrfile needed); ``seed`` makes a new
    addrfile's random top reproducible;
    ``progress``, if given, is called as ``progress(done, total, what)``;
    ``root`` is the directory the programs' ld.so and every path it opens
    are under (a sysroot of another system's packages; None: this system)."""

    outdir: str
    addrfile: str = None
    libdir: str = None
    exclude: tuple = None
    #: the file --exclude=@FILE read ``exclude`` from (recorded, and read again by a rerun)
    exclude_file: str = None
    keep_interposable: bool = None
    fixed_bases: bool = True
    seed: int = None
    progress: object = None
    root: str = None

    def closure_options(self):
        return ClosureOptions(outdir=os.path.abspath(self.outdir), libdir=self.libdir,
                              exclude=tuple(self.exclude or ()),
                              keep_interposable=bool(self.keep_interposable), root=self.root)


@dataclass
class ObjectRow:
    """One object of the report, before and after."""

    source: str
    output: str
    base: int                   #: new base (None: not moved: a program, ld.so, --no-fixed-bases)
    check_symbol: str
    lookups_before: int
    lookups_after: int
    relative_before: int
    relative_after: int
    loads_before: int
    loads_after: int
    bytes_before: int
    bytes_after: int
    written: bool               #: False: the output already had these bytes
    remaining: dict = field(default_factory=dict)     #: why -> lookups that remain
    notes: list = field(default_factory=list)         #: settles the rewrite kept, PT_LOAD added

    def as_json(self):
        return dict(self.__dict__)


@dataclass
class RetroResult:
    """What a run did: the rows of the report, per-program lookups, and what
    :mod:`.verify` needs (the closure and the plan)."""

    programs: list              #: program paths, the manifest's first
    rows: list                  #: [ObjectRow], in the plan's order
    lookups: dict               #: program -> (stock, remaining, {why: count})
    seconds: float
    closure: object = None
    plan: object = None
    removed: list = field(default_factory=list)       #: stale outputs deleted
    settings: list = field(default_factory=list)      #: options taken from or replacing
                                                      #: the manifest's, one line each
    warnings: list = field(default_factory=list)      #: one line each, for stderr

    def as_json(self):
        return {"elfvector": __version__, "seconds": round(self.seconds, 3),
                "programs": {p: {"lookups_before": stock, "lookups_after": after,
                                 "remaining": dict(why)}
                             for p, (stock, after, why) in self.lookups.items()},
                "objects": [row.as_json() for row in self.rows],
                "removed": self.removed, "warnings": self.warnings}


# -- the run ---------------------------------------------------------------------------

def retro(programs, options):
    """Rewrite ``programs`` and every program DIR's manifest records; a
    :class:`RetroResult`."""
    start = time.perf_counter()
    outdir = os.path.abspath(options.outdir)
    _prepare_outdir(outdir)
    with _locked(outdir):
        return _retro(programs, options, outdir, start)


def _retro(programs, options, outdir, start):
    old = Manifest.read(outdir)
    options, settings = with_recorded_settings(options, old)
    files = FileCache(OPERATION)
    programs = _all_programs(old, programs, outdir, files)
    if not programs:
        raise RetroError("no program given, and no earlier run recorded one", outdir)
    _note(options, 0, 1, "reading the closure")
    closure = read_closure(programs, options.closure_options(), files)
    libraries = [elf for elf in closure.objects
                 if not closure.is_program(elf) and not closure.is_ldso(elf)]
    with _bases(libraries, options) as (bases, limits, record_bases):
        plan, outputs, reports = _plan_and_rewrite(closure, libraries, bases, limits, options)
        record_bases()      # the run can no longer refuse: the new bases are taken
    rows = _rows(closure, plan, outputs, reports, bases)
    for row, elf, data in zip(rows, closure.objects, outputs):
        row.written = _write_if_changed(row.output, data, _output_mode(elf.path))
    manifest = Manifest.of(outdir, programs, closure, plan, rows, outputs, options)
    removed = _remove_stale(old, manifest, outdir)
    manifest.write()
    lookups = program_lookups(plan, closure)
    return RetroResult(programs, rows, lookups, time.perf_counter() - start, closure, plan,
                       removed, settings, stale_debug_info(closure, plan))


def _bases(libraries, options):
    """:func:`.bases.assign_bases`, or none for --no-fixed-bases."""
    if options.fixed_bases:
        return assign_bases(libraries, options)
    return nullcontext(({}, {}, lambda: None))


def _plan_and_rewrite(closure, libraries, bases, limits, options):
    """(plan, outputs, reports): every object rewritten in memory, each
    within the room its base leaves (everything the run may refuse)."""
    checks = {elf.path: check_symbol(elf, bases.get(elf.path)) for elf in libraries}
    _note(options, 0, 1, "planning")
    plan = plan_closure(closure, {elf.path: bases.get(elf.path) for elf in libraries},
                        checks, options.closure_options())
    outputs, reports = _rewrite_all(closure, plan, options)
    _check_room(plan, outputs, reports, limits)
    return plan, outputs, reports


@contextmanager
def _locked(outdir):
    """Hold DIR's lock: runs into one DIR take turns (each reads the
    manifest another writes)."""
    path = os.path.join(outdir, LOCK)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise OutputError(f"cannot create: {e.strerror}", path) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _note(options, done, total, what):
    if options.progress is not None:
        options.progress(done, total, what)


def _prepare_outdir(outdir):
    for sub in ("", "bin", "lib"):
        path = os.path.join(outdir, sub)
        if os.path.exists(path) and not os.path.isdir(path):
            raise OutputError("not a directory", path)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create: {e.strerror}", path) from None


def _all_programs(old, given, outdir, files):
    """The manifest's programs, then the new ones given; each once, and
    each one a program the retro mode may rewrite (``files``, the run's
    :class:`~elfvector.ldso.FileCache`, parses each once)."""
    out, seen = [], set()
    recorded = old.programs if old else []
    for path in recorded + [os.path.abspath(p) for p in given]:
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        try:
            refuse_program(path, outdir, files, old)
        except RetroError as e:
            if path not in recorded:
                raise
            raise RetroError(f"{e.reason} (a program {old.path} records: remove it there to "
                             "stop redoing it)", path) from None
        out.append(path)
    return out


def check_symbol(elf, base):
    """(name, value) of the library's check symbol: the fingerprint covers
    its bytes, its base and this elfvector, whose outputs it must match."""
    digest = hashlib.sha256(elf.image.data)
    digest.update(b"%s %s" % (str(base).encode(), __version__.encode()))
    soname = elf.soname or os.path.basename(elf.path)
    return check_symbol_name(elf.image.data, soname, digest.hexdigest()[:8], new_base=base,
                             path=elf.path)


def stale_debug_info(closure, plan):
    """A warning for each library moved with DWARF in the file.  The move
    updates its headers, tables and ELF symbols but not its ``.debug_*``
    sections, so gdb puts its functions, lines and variables at the
    addresses it had before (breakpoints in it fail, backtraces through it
    lose frames).  A separate debug file is not affected: gdb finds it by
    the build-id the output keeps and shifts it by the difference between
    the output's section addresses and its own."""
    out = []
    for elf, obj in zip(closure.objects, plan.objects):
        if obj.is_program or obj.is_interp or obj.new_base == obj.old_base:
            continue
        if _has_dwarf(elf.image):
            out.append(f"{elf.path}: its debug information (.debug_*) describes the "
                       f"addresses before the move to {obj.new_base:#x}, so gdb misplaces "
                       f"its functions and lines in {obj.output} (a separate debug file, "
                       "found by build-id, would not)")
    return out


def _has_dwarf(image):
    """Whether the file holds DWARF (not just the ``.gnu_debuglink`` naming
    a separate file, or an allocated ``.debug_gdb_scripts``)."""
    return any(name.startswith((".debug_", ".zdebug_")) and not shdr.flags & SHF_ALLOC
               and shdr.type != SHT_NOBITS
               for name, shdr in zip(image.section_names, image.shdrs))


# -- rewriting -----------------------------------------------------------------------------

def _rewrite_all(closure, plan, options):
    """The output bytes and ObjectReport of every object (ld.so: its bytes)."""
    outputs, reports = [], []
    total = len(plan.objects)
    for i, (elf, obj) in enumerate(zip(closure.objects, plan.objects)):
        _note(options, i, total, os.path.basename(obj.output))
        data, report = rewrite_object(plan, i, elf.image.data)
        if obj.is_interp and data != elf.image.data:
            raise ValueError(f"{elf.path}: the dynamic linker was not copied verbatim")
        outputs.append(data)
        reports.append(report)
    _note(options, total, total, "writing")
    return outputs, reports


def _check_room(plan, outputs, reports, limits):
    """A library that gained a PT_LOAD may have grown past the room the
    addrfile gave it: refuse rather than overlap the next library."""
    for obj, data, report in zip(plan.objects, outputs, reports):
        limit = limits.get(obj.source)
        if limit is None or report.loads_after <= report.loads_before:
            continue
        end = obj.new_base + address_span(_phdrs(data))
        if end > limit:
            raise RetroError(f"grew to {end - obj.new_base:#x} bytes at {obj.new_base:#x}, "
                             f"past the next base {limit:#x}: delete its line from the "
                             "addrfile and rerun", obj.source)


def _phdrs(data):
    """The program headers of an output file."""
    layout = LAYOUTS[data[4]]
    phoff, phentsize, phnum = (layout.ehdr.unpack_from(data)[k] for k in (5, 9, 10))
    return [layout.unpack_phdr(data, phoff + k * phentsize) for k in range(phnum)]


def _rows(closure, plan, outputs, reports, bases):
    summaries = summarize(plan, closure)
    rows = []
    for elf, obj, summary, report in zip(closure.objects, plan.objects, summaries, reports):
        notes = [f"kept ({why}): {what}" for what, why in report.demoted]
        if report.added_load:
            notes.append(f"added PT_LOAD: {report.added_load}")
        rows.append(ObjectRow(
            source=elf.path, output=obj.output, base=bases.get(elf.path),
            check_symbol=obj.check_symbol, lookups_before=summary.lookups_before,
            lookups_after=summary.lookups_after + len(report.demoted),
            relative_before=report.relative_before, relative_after=report.relative_after,
            loads_before=report.loads_before, loads_after=report.loads_after,
            bytes_before=report.bytes_before, bytes_after=report.bytes_after, written=False,
            remaining=dict(summary.remaining), notes=notes))
    return rows


def _output_mode(source):
    """The source's permission bits, never setuid or setgid."""
    return stat.S_IMODE(os.stat(source).st_mode) & ~(stat.S_ISUID | stat.S_ISGID)


def _write_if_changed(path, data, mode):
    """Write ``data`` to ``path`` atomically unless it already holds it;
    whether it was written.  The mode is set either way."""
    try:
        with open(path, "rb") as f:
            same = f.read() == data
    except FileNotFoundError:
        same = False
    except OSError as e:
        raise OutputError(f"cannot read: {e.strerror}", path) from None
    if not same:
        write_bytes(path, data, mode)
    if stat.S_IMODE(os.stat(path).st_mode) != mode:
        os.chmod(path, mode)
    return not same


def _remove_stale(old, new, outdir):
    """Outputs of an earlier run that no program loads any more."""
    if old is None:
        return []
    keep = {o["output"] for o in new.objects}
    removed = []
    for entry in old.objects:
        path = entry["output"]
        inside = os.path.commonpath([os.path.abspath(path), outdir]) == outdir
        if path not in keep and inside and os.path.lexists(path):
            os.unlink(path)
            removed.append(path)
    return removed

