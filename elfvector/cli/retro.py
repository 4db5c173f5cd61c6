"""vectool --mode=retro: the options of the retro mode and their handling.

vectool's click command carries these options (:func:`options`) and hands
them here (:func:`main`); this module parses nothing else and does no work
itself: :mod:`elfvector.closure.driver` runs the mode and
:mod:`elfvector.closure.verify` is --verify's oracle.  Both are imported
only when the retro mode runs: vectool imports this module for its options,
and its other modes (and ``--version``) should not pay for the closure's
modules (the x86-64 assembler among them).
"""

import json
import os
import shlex
import sys

import click

from ..patterns import PatternList, read_words
from . import check_outputs, say, warn, write_text

#: vectool's options that mean nothing to the retro mode
OTHER_MODES_ONLY = ("rpathdir", "exclexp", "inclrel", "exclrel", "near", "no_relvec")

USAGE = ("vectool --mode=retro --addrfile=FILE --outdir=DIR [OPTIONS] PROGRAM...  or  "
         "vectool --mode=retro --check --outdir=DIR")

_OPTIONS = [
    click.option("--outdir", metavar="DIR",
                 help="retro mode: write DIR/bin/PROGRAM and DIR/lib/FILE for every library "
                      "of its closure, ld.so included, and the manifest "
                      "DIR/elfvector-retro.json (every program recorded there is redone by "
                      "each later run, PROGRAM... may then be omitted)."),
    click.option("--libdir", metavar="PATH",
                 help="retro mode: the outputs' DT_RPATH and the directory of their "
                      "interpreter, where DIR/lib will be installed (default: DIR/lib made "
                      "absolute)."),
    click.option("--exclude", default="", metavar="PATTERNS",
                 help="retro mode: POSIX extended regular expressions (separated by spaces, "
                      "or @FILE) of symbols to keep as lookups, so that a preload can still "
                      "interpose them; malloc, free, ..., pthread_* always are.  Not given: "
                      "those DIR's manifest records."),
    click.option("--keep-interposable/--no-keep-interposable", default=False,
                 help="retro mode: keep libraries' references to their own exported "
                      "symbols as lookups.  Not given: as DIR's manifest records."),
    click.option("--no-fixed-bases", is_flag=True,
                 help="retro mode: keep full ASLR: libraries are not moved (no --addrfile) "
                      "and every start corrects the settled words."),
    click.option("--seed", type=int, metavar="N",
                 help="retro mode: a new addrfile's bases from N instead of random ones."),
    click.option("--json", "json_path", metavar="FILE",
                 help="retro mode: also write the report, as JSON, to FILE."),
    click.option("--verify", is_flag=True,
                 help="retro mode: run each program and its output under gdb up to their "
                      "first constructor and check every word settled in the outputs "
                      "against ld.so's value in the stock program."),
    click.option("--verify-args", default="--version", show_default=True, metavar="ARGS",
                 help="retro mode: the arguments of the programs started by --verify "
                      "(shell words; they stop before main)."),
    click.option("--root", metavar="DIR", type=click.Path(exists=True, file_okay=False),
                 help="retro mode: the programs and every file their ld.so opens are under "
                      "DIR, as in a chroot of DIR (a sysroot: another system's packages "
                      "unpacked).  Not given: as DIR's manifest records."),
    click.option("--check", "check_only", is_flag=True,
                 help="retro mode: list the outputs of --outdir whose sources changed since "
                      "they were written; exit 1 if any.  Rerunning the command redoes them."),
]


def options(func):
    """Add the retro mode's options to vectool's command."""
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


def any_given(retro_options):
    """Whether any retro option was given (vectool hands those to :func:`main`)."""
    return any(given(name) for name in retro_options)


def given(name):
    """Whether option ``name`` (a parameter name) was on the command line."""
    source = click.get_current_context().get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def main(mode, addrfile, verbose, programs, outdir, libdir, exclude, keep_interposable,
         no_fixed_bases, seed, json_path, verify, verify_args, root, check_only):
    """The retro mode, or a usage error for one of its options in another mode."""
    ours = ("outdir", "libdir", "exclude", "keep_interposable", "no_fixed_bases", "seed",
            "json_path", "verify", "verify_args", "root", "check_only")
    if mode != "retro":
        name = next(n for n in ours if given(n))
        raise click.UsageError(f"{_flag(name)} is an option of --mode=retro")
    for name in OTHER_MODES_ONLY:
        if given(name):
            raise click.UsageError(f"{_flag(name)} is not an option of --mode=retro")
    if not outdir:
        raise click.UsageError(f"--mode=retro needs --outdir=DIR (usage: {USAGE})")
    if check_only:
        for name in ("addrfile",) + ours:
            if name not in ("outdir", "check_only") and given(name):
                raise click.UsageError(f"--check takes only --outdir, not {_flag(name)}")
        if programs:
            raise click.UsageError("--check takes no PROGRAM: it checks every output of "
                                   "--outdir")
        return _check(outdir)
    _check_usage(addrfile, no_fixed_bases, seed, verify, verify_args)
    check_outputs(json_path)
    from ..closure.driver import RetroOptions, retro
    words = read_words(exclude)
    PatternList(words, "--exclude", exclude[1:] if exclude.startswith("@") else None)
    options = RetroOptions(outdir=outdir, addrfile=addrfile, libdir=libdir,
                           exclude=words if given("exclude") else None,
                           exclude_file=(os.path.abspath(exclude[1:])
                                         if given("exclude") and exclude.startswith("@") else None),
                           keep_interposable=(keep_interposable if given("keep_interposable")
                                              else None),
                           fixed_bases=not no_fixed_bases, seed=seed, root=root,
                           progress=_progress if sys.stderr.isatty() else None)
    created = _missing_directories(os.path.abspath(outdir))
    try:
        result = retro(programs, options)
    except BaseException:           # refused (or interrupted): no empty DIR left
        _remove_if_empty(created, os.path.abspath(outdir))
        raise
    for message in result.warnings:
        warn("vectool", message)
    _report(result, verbose)
    if json_path:
        write_text(json_path, json.dumps(result.as_json(), indent=1) + "\n")
    if verify:
        _verify(result, shlex.split(verify_args))


def _missing_directories(outdir):
    """DIR and its bin and lib as far as they do not exist yet: the run creates them
    (and DIR's lock) before it reads the closure."""
    paths = [outdir, os.path.join(outdir, "bin"), os.path.join(outdir, "lib")]
    return [path for path in paths if not os.path.lexists(path)]


def _remove_if_empty(created, outdir):
    """After a failed run: what it created of ``created`` goes again, so that a
    refused program leaves no empty DIR behind (a DIR that existed keeps its lock)."""
    from ..closure.driver import LOCK
    if outdir in created:
        try:
            os.unlink(os.path.join(outdir, LOCK))
        except OSError:
            pass
    for path in reversed(created):
        try:
            os.rmdir(path)          # only when empty
        except OSError:
            pass


def _flag(name):
    return {"json_path": "--json", "check_only": "--check"}.get(
        name, "--" + name.replace("_", "-"))


def _check_usage(addrfile, no_fixed_bases, seed, verify, verify_args):
    if no_fixed_bases:
        for name in ("addrfile", "seed"):
            if given(name):
                raise click.UsageError(f"--no-fixed-bases gives no base: {_flag(name)} "
                                       "would not be used")
    elif not addrfile:
        raise click.UsageError(f"--mode=retro needs --addrfile=FILE, or --no-fixed-bases "
                               f"(usage: {USAGE})")
    if given("verify_args") and not verify:
        raise click.UsageError("--verify-args is for --verify")
    try:
        shlex.split(verify_args)
    except ValueError as e:
        raise click.UsageError(f"--verify-args: {e}") from None


def _check(outdir):
    from ..closure.manifest import check
    stale = check(outdir)
    for output, why in stale:
        click.echo(f"{output}: {why}")
    sys.exit(1 if stale else 0)


def _progress(done, total, what):
    """A line on the terminal that rewrites itself; cleared when done."""
    text = f"vectool: {done}/{total} {what}" if total > 1 else f"vectool: {what}"
    sys.stderr.write(f"\r\x1b[K{text}" if done < total or total == 1 else "\r\x1b[K")
    sys.stderr.flush()


# -- the report -------------------------------------------------------------------------------

def _report(result, verbose):
    """The options taken from the manifest and the objects before and after
    (with -v), then one line per program."""
    if verbose:
        for line in result.settings:
            click.echo(f"vectool: {line}")
        click.echo(format_table(result.rows))
    for program, (stock, after, why) in result.lookups.items():
        reasons = ", ".join(f"{name} {count}" for name, count in why.most_common())
        click.echo(f"{program}: lookups at start-up {stock} -> {after}"
                   + (f" ({reasons})" if reasons else ""))
    written = sum(row.written for row in result.rows)
    removed = f", {len(result.removed)} removed" if result.removed else ""
    click.echo(f"{len(result.rows)} outputs ({written} written{removed}) in "
               f"{os.path.dirname(os.path.dirname(result.rows[0].output))} in "
               f"{result.seconds:.1f} s")


def format_table(rows):
    """The table of objects: lookups, RELATIVE relocations, PT_LOADs and
    bytes, before -> after."""
    header = ("output", "base", "lookups", "RELATIVE", "PT_LOAD", "bytes")
    lines = [header]
    for row in rows:
        lines.append((
            os.path.join(os.path.basename(os.path.dirname(row.output)),
                         os.path.basename(row.output)),
            "-" if row.base is None else f"{row.base:#x}",
            f"{row.lookups_before} -> {row.lookups_after}",
            f"{row.relative_before} -> {row.relative_after}",
            f"{row.loads_before} -> {row.loads_after}",
            f"{row.bytes_before} -> {row.bytes_after}"))
    widths = [max(len(line[k]) for line in lines) for k in range(len(header))]
    text = ["  ".join(cell.ljust(w) if k < 2 else cell.rjust(w)
                      for k, (cell, w) in enumerate(zip(line, widths))).rstrip()
            for line in lines]
    for row in rows:
        text += [f"{row.output}: {note}" for note in row.notes]
    return "\n".join(text)


def _verify(result, args):
    from ..closure.verify import verify
    found = verify(result.closure, result.plan, args)
    for failure in found.failures:
        say(f"vectool: {failure}")
    if found.failures:
        sys.exit(1)
    count = len(result.programs)
    click.echo(f"verified: {found.words} words ({found.settled} settled in the files) hold "
               f"ld.so's values in {count} program{'s' if count > 1 else ''}")
