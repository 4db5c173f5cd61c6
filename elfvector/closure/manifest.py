"""DIR's manifest, ``DIR/elfvector-retro.json``, and what reads it.

The manifest records what DIR holds and what it was made from: every
program, each output's source and both files' sha256, its base and check
symbol, and the options of the run.  It is what lets a later run redo every
program sharing DIR/lib (taking the recorded --exclude,
--keep-interposable, --root and --libdir unless given,
:func:`with_recorded_settings`), what
``--check`` compares with the files as they are (:func:`check`), and what
names the original of an output given as a program.
"""

import hashlib
import json
import os
import shlex
from dataclasses import dataclass, field, replace

from .. import __version__
from ..atomic import write_bytes
from ..errors import ElfvectorError
from ..patterns import read_words

MANIFEST = "elfvector-retro.json"
MANIFEST_FORMAT = 1
ENTRY_KEYS = ("source", "output", "source_sha256", "output_sha256")


class RetroError(ElfvectorError):
    """A program the retro mode refuses, or an output directory it cannot use."""


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
        (a manifest of an older elfvector may hold none), and the
        ``exclude_file`` an --exclude=@FILE came from."""
        out = {}
        for name, (kind, what) in _SETTING_TYPES.items():
            value = self.settings.get(name)
            if value is None:
                continue
            if not isinstance(value, kind) or \
                    (kind is list and not all(isinstance(w, str) for w in value)):
                raise RetroError(f"a malformed manifest: settings.{name} is not {what}",
                                 self.path)
            out[name] = tuple(value) if kind is list else value
        if out.get("libdir") in self._library_directories():
            del out["libdir"]                       # the default: DIR/lib, not given
        return out

    def _library_directories(self):
        """Where the run wrote the libraries (DIR/lib, wherever DIR was then):
        the run path the manifest records when --libdir was not given."""
        return {os.path.dirname(o["output"]) for o in self.objects if o.get("kind") != "program"}

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
                    "exclude": list(options.exclude)}
        if options.exclude_file is not None:           # --exclude=@FILE: redone from FILE
            settings["exclude_file"] = os.path.abspath(options.exclude_file)
        settings.update(keep_interposable=options.keep_interposable, root=options.root)
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


# -- the options a rerun inherits -----------------------------------------------------------

#: the settings a rerun reads: name -> (type, what a malformed one is not)
_SETTING_TYPES = {"exclude": (list, "a list of strings"), "exclude_file": (str, "a string"),
                  "keep_interposable": (bool, "true or false"), "root": (str, "a string"),
                  "libdir": (str, "a string")}

#: the options a rerun takes from the manifest when they are not given: (name, default)
RECORDED_OPTIONS = (("exclude", ()), ("keep_interposable", False), ("root", None),
                    ("libdir", None))


def with_recorded_settings(options, old):
    """(options, notes): --exclude, --keep-interposable, the sysroot
    (``root``) and --libdir not given take the values DIR's manifest
    records, so that a rerun (after an update, or to add a program) redoes
    DIR as it was made, names kept interposable do not silently become
    pre-bound, and the outputs keep the run path they were installed for; a
    value given replaces the recorded one.  An --exclude=@FILE recorded is
    read again (the words in FILE now).  ``notes`` says, one line each,
    which were taken or replaced."""
    recorded = old.recorded_options() if old else {}
    changes, notes = {}, []
    known_file = recorded.get("exclude_file")
    if options.exclude is None and known_file is not None:
        changes.update(exclude=tuple(read_words("@" + known_file)), exclude_file=known_file)
        notes.append(f"{_option_text('exclude', (), known_file)} (as {old.path} records)")
    for name, default in RECORDED_OPTIONS:
        given, known = getattr(options, name), recorded.get(name)
        if name in changes:
            continue
        if given is None:
            changes[name] = default if known is None else known
            if known not in (None, default):
                notes.append(f"{_option_text(name, known)} (as {old.path} records)")
        elif known is not None and _normalized(name, given) != known:
            given_file = options.exclude_file if name == "exclude" else None
            notes.append(f"{_option_text(name, given, given_file)} replaces the recorded "
                         f"{_option_text(name, known, known_file)}")
    return replace(options, **changes), notes


def _normalized(name, value):
    if name in ("root", "libdir"):
        return value
    return tuple(value) if name == "exclude" else bool(value)


def _option_text(name, value, exclude_file=None):
    """The option as a command line gives it (``exclude_file``: --exclude's @FILE)."""
    if name == "exclude" and exclude_file is not None:
        return f"--exclude=@{shlex.quote(exclude_file)}"
    if name == "exclude":
        return f"--exclude={shlex.quote(' '.join(value))}"
    if name in ("root", "libdir"):
        return f"--{name}={shlex.quote(value)}"
    return "--keep-interposable" if value else "--no-keep-interposable"
