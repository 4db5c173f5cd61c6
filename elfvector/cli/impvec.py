"""impvec [--link] xclude export.vec... loader_args... > import.s"""

import os
import sys

import click

from ..atomic import write_bytes
from ..errors import VecFormatError
from ..importvec import build
from ..vecfile import MAGIC
from . import command, warn


def split_vec_files(words):
    """Leading words that are .vec files; the rest is the loader command.

    A file is a .vec by its ``__V_`` magic; a word ending in ``.vec`` that
    names no file is an error rather than the start of the command.
    """
    vecs = []
    for i, word in enumerate(words):
        if os.path.isfile(word) and _starts_with_magic(word):
            vecs.append(word)
        elif word.endswith(".vec") and not os.path.exists(word):
            raise VecFormatError("no such file", word)
        elif word.endswith(".vec") and not vecs:
            raise VecFormatError("not a .vec file (does not start with __V_)", word)
        else:
            return vecs, list(words[i:])
    return vecs, []


def _starts_with_magic(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC.encode()
    except OSError:
        return False


@command("impvec")
@click.option("--link", is_flag=True,
              help="Assemble the import vector and do the final link to -o.")
@click.option("--asm", "asm_path", metavar="FILE",
              help="Write import.s to FILE instead of standard output.")
@click.option("-v", "--verbose", is_flag=True,
              help="List the functions kept bound by name, and why.")
@click.argument("xclude")
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED)
def main(link, asm_path, verbose, xclude, args):
    """Generate the import vector of a program (or library).

    XCLUDE: regexes of functions to keep bound by name ('' for none; the
    usual LD_PRELOAD targets malloc, free, ..., pthread_* always are).
    Then the .vec files, then the link command (which must contain -o),
    optionally preceded by LD_LIBRARY_PATH=...
    """
    vecs, loader = split_vec_files(args)
    if not vecs:
        raise click.UsageError("no export.vec file given")
    if not loader:
        raise click.UsageError("no loader command given")
    plan, asm_text = build(xclude, vecs, loader, link=link)
    for message in plan.warnings:
        warn("impvec", message)
    if verbose:
        for name, why in plan.kept:
            click.echo(f"impvec: {name}: kept by name ({why})", err=True)
        click.echo(f"impvec: {plan.slot_count} slots", err=True)
    text = asm_text or "# impvec: no function of the program is in these vectors\n"
    if asm_path:
        write_bytes(asm_path, text.encode(), mode=0o644)
    elif not link:
        sys.stdout.write(text)
