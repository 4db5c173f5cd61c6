"""``vectool --mode=retro``: programs and their whole closure, rewritten into DIR.

The driver orders the closure operations and owns what lies around them:

1. read the closure of every program (this run's and every program an
   earlier run recorded in DIR's manifest, so DIR/lib stays right for all);
2. refuse setuid, setgid and file-capability programs: their outputs would
   load libraries through a run path, which a user could write;
3. give each library a base from the addrfile, under its lock (a new
   addrfile starts at a random top, as ``prelink -R`` did);
4. compute each library's check symbol: a fingerprint of its source bytes,
   its base and elfvector's version, so that another build, another base or
   another elfvector makes importers refuse to start;
5. plan (:func:`.resolve.plan_closure`) and rewrite every object in memory,
   ld.so copied verbatim;
6. write each output whose bytes changed (atomically, the source's mode
   without setuid/setgid bits), remove outputs no program needs any more,
   and record the manifest ``DIR/elfvector-retro.json``: every program and
   source, each output's sha256, base and check symbol.

:func:`check` compares the manifest with the sources as they are now.
"""

import fcntl
import hashlib
import json
import os
import random
import shlex
import stat
import struct
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from .. import __version__
from .. import addrfile as addresses
from ..atomic import write_bytes
from ..elfimage import SHF_ALLOC, SHT_NOBITS
from ..errors import ElfvectorError, OutputError
from ..ldso import FileCache
from ..retroimp import MARKER_SECTION as RETROIMP_SECTION
from . import layout
from .resolve import ClosureOptions, plan_closure, program_lookups, read_closure, summarize
from .rewrite import rewrite_object
from .symbols import CHECK_NAME, check_symbol_name

MANIFEST = "elfvector-retro.json"
LOCK = ".elfvector-retro.lock"
MANIFEST_FORMAT = 1
ENTRY_KEYS = ("source", "output", "source_sha256", "output_sha256")
CAPABILITY_XATTR = "security.capability"
PAGE = 0x1000
PT_LOAD = 1
STT_OBJECT = 1
#: the sections this mode adds to an output (some outputs have none: their check
#: symbols tell them)
OUTPUT_SECTIONS = (layout.FIXUP_SECTION, layout.DATA_SECTION, layout.PREBOUND_SECTION,
                   layout.FILTER_SECTION)


class RetroError(ElfvectorError):
    """A program the retro mode refuses, or an output directory it cannot use."""


@dataclass
class RetroOptions:
    """The command line of ``vectool --mode=retro`` (see the CLI's help).

    ``exclude`` and ``keep_interposable`` None mean "not given": a rerun
    takes what DIR's manifest records (:func:`with_recorded_settings`), a
    new DIR none; ``fixed_bases`` False is --no-fixed-bases (no addrfile
    needed); ``seed`` makes a new addrfile's random top reproducible;
    ``progress``, if given, is called as ``progress(done, total, what)``."""

    outdir: str
    addrfile: str = None
    libdir: str = None
    exclude: tuple = None
    keep_interposable: bool = None
    fixed_bases: bool = True
    seed: int = None
    progress: object = None

    def closure_options(self):
        return ClosureOptions(outdir=os.path.abspath(self.outdir), libdir=self.libdir,
                              exclude=tuple(self.exclude or ()),
                              keep_interposable=bool(self.keep_interposable))


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
    files = FileCache()
    programs = _all_programs(old, programs, outdir, files)
    if not programs:
        raise RetroError("no program given, and no earlier run recorded one", outdir)
    _note(options, 0, 1, "reading the closure")
    closure = read_closure(programs, options.closure_options(), files)
    libraries = [elf for elf in closure.objects
                 if not closure.is_program(elf) and not closure.is_ldso(elf)]
    bases, limits = assign_bases(libraries, options) if options.fixed_bases else ({}, {})
    checks = {elf.path: check_symbol(elf, bases.get(elf.path)) for elf in libraries}
    _note(options, 0, 1, "planning")
    plan = plan_closure(closure, {elf.path: bases.get(elf.path) for elf in libraries},
                        checks, options.closure_options())
    outputs, reports = _rewrite_all(closure, plan, options)
    _check_room(plan, outputs, reports, limits)
    rows = _rows(closure, plan, outputs, reports, bases)
    for row, elf, data in zip(rows, closure.objects, outputs):
        row.written = _write_if_changed(row.output, data, _output_mode(elf.path))
    manifest = Manifest.of(outdir, programs, closure, plan, rows, outputs, options)
    removed = _remove_stale(old, manifest, outdir)
    manifest.write()
    lookups = program_lookups(plan, closure)
    return RetroResult(programs, rows, lookups, time.perf_counter() - start, closure, plan,
                       removed, settings, stale_debug_info(closure, plan))


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
    refuse_output(path, (files or FileCache()).get(path).image, old)
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
    """"retro" for an output of this mode: a section it adds, or a check
    symbol an importer names (every program output has one, the sections
    only when it needed them); "retroimp" for retroimp's outputs; None for
    anything else."""
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


# -- the options a rerun inherits -----------------------------------------------------------

#: the options a rerun takes from the manifest when they are not given: (name, default)
RECORDED_OPTIONS = (("exclude", ()), ("keep_interposable", False))


def with_recorded_settings(options, old):
    """(options, notes): --exclude and --keep-interposable not given take
    the values DIR's manifest records, so that a rerun (after an update, or
    to add a program) redoes DIR as it was made, and names kept
    interposable do not silently become pre-bound; a value given replaces
    the recorded one.  ``notes`` says, one line each, which were taken or
    replaced."""
    recorded = old.recorded_options() if old else {}
    changes, notes = {}, []
    for name, default in RECORDED_OPTIONS:
        given, known = getattr(options, name), recorded.get(name)
        if given is None:
            changes[name] = default if known is None else known
            if known not in (None, default):
                notes.append(f"{_option_text(name, known)} (as {old.path} records)")
        elif known is not None and _normalized(name, given) != known:
            notes.append(f"{_option_text(name, given)} replaces the recorded "
                         f"{_option_text(name, known)}")
    return replace(options, **changes), notes


def _normalized(name, value):
    return tuple(value) if name == "exclude" else bool(value)


def _option_text(name, value):
    """The option as a command line gives it."""
    if name == "exclude":
        return f"--exclude={shlex.quote(' '.join(value))}"
    return "--keep-interposable" if value else "--no-keep-interposable"


# -- bases ---------------------------------------------------------------------------------

def assign_bases(libraries, options):
    """({real path: base}, {real path: the lowest base above it}) from the
    addrfile, under its lock; new libraries are appended below every other."""
    path = options.addrfile
    bases, limits = {}, {}
    with addresses.locked(path) as assignments:
        assignments = list(assignments)
        region = addresses.DEFAULT_REGION
        if not assignments:
            region = addresses.Region(top=random_top(libraries, options.seed),
                                      bottom=region.bottom)
        for elf in libraries:
            name, span = addrfile_name(elf), address_span(elf.image.phdrs)
            base, new = addresses.choose_base(assignments, name, span, region, path)
            if new:
                assignment = addresses.Assignment(base, name)
                addresses.append(path, assignment, span)
                assignments.append(assignment)
            bases[elf.path] = base
        for elf in libraries:
            above = [a.base for a in assignments if a.base > bases[elf.path]]
            limits[elf.path] = min(above, default=addresses.DEFAULT_REGION.top)
    return bases, limits


def addrfile_name(elf):
    """The addrfile's name of a library: its soname, else its file name."""
    return elf.soname or os.path.basename(elf.path)


def random_top(libraries, seed=None):
    """Where a new addrfile starts: a 2 MiB boundary chosen at random (from
    os.urandom, or from ``seed``) in the upper part of the region that
    leaves room below for the whole closure."""
    region = addresses.DEFAULT_REGION
    needed = sum(addresses.room_for(address_span(elf.image.phdrs)) for elf in libraries)
    lowest_top = region.bottom + needed
    choices = max((region.top - lowest_top) // addresses.MIB2, 0) + 1
    if seed is None:
        pick = int.from_bytes(os.urandom(8), "little") % choices
    else:
        pick = random.Random(seed).randrange(choices)
    return region.top - pick * addresses.MIB2


def address_span(phdrs):
    """The bytes of address space the PT_LOADs cover, whole pages."""
    loads = [p for p in phdrs if p.type == PT_LOAD]
    low = min(p.vaddr for p in loads) & ~(PAGE - 1)
    high = max(p.vaddr + p.memsz for p in loads)
    return (high - low + PAGE - 1) & ~(PAGE - 1)


def check_symbol(elf, base):
    """(name, value) of the library's check symbol: the fingerprint covers
    its bytes, its base and this elfvector, whose outputs it must match."""
    digest = hashlib.sha256(elf.image.data)
    digest.update(b"%s %s" % (str(base).encode(), __version__.encode()))
    soname = elf.soname or os.path.basename(elf.path)
    return check_symbol_name(elf.image.data, soname, digest.hexdigest()[:8], new_base=base)


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


@dataclass
class _Phdr:
    type: int
    vaddr: int
    memsz: int


def _phdrs(data):
    """The program headers of an ELF64 file (the type, address and size)."""
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    out = []
    for k in range(phnum):
        ptype, _, _, vaddr, _, _, memsz, _ = struct.unpack_from("<IIQQQQQQ", data,
                                                               phoff + k * phentsize)
        out.append(_Phdr(ptype, vaddr, memsz))
    return out


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


# -- the manifest -------------------------------------------------------------------------

@dataclass
class Manifest:
    """DIR/elfvector-retro.json: what DIR holds and what it was made from."""

    outdir: str
    programs: list
    objects: list                                   #: [dict], one per output
    settings: dict = field(default_factory=dict)

    @property
    def path(self):
        return os.path.join(self.outdir, MANIFEST)

    @classmethod
    def read(cls, outdir):
        """The manifest of ``outdir``, or None when there is none."""
        path = os.path.join(outdir, MANIFEST)
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise RetroError(f"cannot read: {e.strerror}", path) from None
        except ValueError as e:
            raise RetroError(f"not a manifest of vectool --mode=retro: {e}", path) from None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise RetroError("not a manifest of vectool --mode=retro (format "
                             f"{MANIFEST_FORMAT})", path)
        try:
            programs = [p["source"] for p in data["programs"]]
            objects = [dict(o) for o in data["objects"]]
        except (KeyError, TypeError) as e:
            raise RetroError(f"a malformed manifest: {e!r} missing", path) from None
        if not all(set(ENTRY_KEYS) <= set(o) for o in objects):
            raise RetroError(f"a malformed manifest: an object lacks one of {ENTRY_KEYS}",
                             path)
        settings = data.get("settings", {})
        if not isinstance(settings, dict):
            raise RetroError("a malformed manifest: settings is not an object", path)
        return cls(outdir, programs, objects, settings)

    def recorded_options(self):
        """{name: value} of the :data:`RECORDED_OPTIONS` the manifest holds
        (a manifest of an older elfvector may hold none)."""
        out = {}
        exclude = self.settings.get("exclude")
        if exclude is not None:
            if not isinstance(exclude, list) or not all(isinstance(w, str) for w in exclude):
                raise RetroError("a malformed manifest: settings.exclude is not a list of "
                                 "strings", self.path)
            out["exclude"] = tuple(exclude)
        keep = self.settings.get("keep_interposable")
        if keep is not None:
            if not isinstance(keep, bool):
                raise RetroError("a malformed manifest: settings.keep_interposable is not "
                                 "true or false", self.path)
            out["keep_interposable"] = keep
        return out

    @classmethod
    def of(cls, outdir, programs, closure, plan, rows, outputs, options):
        objects = []
        for elf, obj, row, data in zip(closure.objects, plan.objects, rows, outputs):
            objects.append({
                "source": elf.path, "output": obj.output,
                "source_sha256": hashlib.sha256(elf.image.data).hexdigest(),
                "output_sha256": hashlib.sha256(data).hexdigest(),
                "base": row.base, "old_base": obj.old_base,
                "check_symbol": obj.check_symbol,
                "kind": "program" if obj.is_program else "ld.so" if obj.is_interp else
                        "library"})
        settings = {"libdir": plan.objects[0].rpath, "fixed_bases": options.fixed_bases,
                    "addrfile": options.addrfile and os.path.abspath(options.addrfile),
                    "exclude": list(options.exclude),
                    "keep_interposable": options.keep_interposable}
        return cls(outdir, list(programs), objects, settings)

    def write(self):
        data = {"format": MANIFEST_FORMAT, "elfvector": __version__,
                "programs": [{"source": p, "output": os.path.join(
                    self.outdir, "bin", os.path.basename(p))} for p in self.programs],
                "settings": self.settings, "objects": self.objects}
        text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
        write_bytes(self.path, text.encode("utf-8", "surrogateescape"), 0o644)


def _sha256_of(path):
    """The sha256 of the file ``path``, or None if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


# -- --check -------------------------------------------------------------------------------

def check(outdir):
    """[(output, why)] for every output whose source changed since the
    manifest (or whose output was changed or removed); [] when DIR is up to
    date.  The reasons are short: ``source changed``, ``source is gone``,
    ``output changed``, ``output is gone``."""
    outdir = os.path.abspath(outdir)
    manifest = Manifest.read(outdir)
    if manifest is None:
        raise RetroError(f"no {MANIFEST}: not an output directory of vectool --mode=retro",
                         outdir)
    stale = []
    for entry in manifest.objects:
        source = _sha256_of(entry["source"])
        output = _sha256_of(entry["output"])
        if source is None:
            stale.append((entry["output"], f"source {entry['source']} is gone"))
        elif source != entry["source_sha256"]:
            stale.append((entry["output"], f"source {entry['source']} changed"))
        elif output is None:
            stale.append((entry["output"], "output is gone"))
        elif output != entry["output_sha256"]:
            stale.append((entry["output"], "output changed"))
    return stale
