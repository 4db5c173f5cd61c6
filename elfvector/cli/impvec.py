"""impvec [--link] xclude export.vec... loader_args... > import.s"""

import os

import click

from ..errors import VecFormatError
from ..importvec import build
from ..linkcmd import ENV_WORD
from . import check_outputs, command, file_kind, is_program, loader_output, say, warn, \
    write_text

USAGE = "impvec [OPTIONS] XCLUDE EXPORT.VEC... LOADER_ARGS..."


def split_vec_files(words):
    """Leading words that are .vec files; the rest is the loader command.

    A file is a .vec by its ``__V_`` magic (a pipe, as ``<(...)`` gives,
    is taken as one).  The loader command must start with a program (after
    any ``VAR=value`` words): a word ending in ``.vec``, or an existing
    file that is not an executable program (a malformed .vec, an ELF
    library), is an error naming it, never a command to run.
    """
    for i, word in enumerate(words):
        if file_kind(word) not in ("vec", "pipe"):
            rest = list(words[i:])
            check_program(next((w for w in rest if not ENV_WORD.match(w)), None))
            return list(words[:i]), rest
    return list(words), []


def check_program(word):
    """The first word of the loader command must be something to run."""
    if word is None:
        return
    kind = file_kind(word)
    if kind == "vec":
        raise VecFormatError(f"is a .vec file after the loader command (usage: {USAGE})",
                             word)
    if word.endswith(".vec"):
        raise VecFormatError("not a .vec file (does not start with __V_)"
                             if os.path.lexists(word) else "no such file", word)
    if kind == "elf" and not is_program(word):
        raise VecFormatError(f"is an ELF file, not a .vec (usage: {USAGE})", word)
    if os.path.lexists(word) and not is_program(word):
        raise VecFormatError("neither a .vec file nor a program to run", word)


@command("impvec", loader="args")
@click.option("--link", is_flag=True,
              help="Assemble the import vector and do the final link to -o.")
@click.option("--asm", "asm_path", metavar="FILE",
              help="Write import.s to FILE instead of standard output.")
@click.option("-v", "--verbose", is_flag=True,
              help="List the functions kept bound by name, and why.")
@click.argument("xclude")
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED,
                metavar="EXPORT.VEC... LOADER_ARGS...")
def main(link, asm_path, verbose, xclude, args):
    """Generate the import vector of a program (or library).

    XCLUDE: POSIX extended regular expressions of functions to keep bound
    by name ('' for none; the usual LD_PRELOAD targets malloc, free, ...,
    pthread_* always are).  Then the .vec files, then the link command
    (which must contain -o), optionally preceded by LD_LIBRARY_PATH=...;
    options go before XCLUDE.

    \b
    Example (the seed's):
      LD_LIBRARY_PATH=. impvec '^free$ ^malloc$' foo.vec \\
        gcc -o testmain testmain.o foo.so.5 > foo_imp.s
    """
    vecs, loader = split_vec_files(args)
    if not vecs:
        raise click.UsageError("no export.vec file given")
    if not loader:
        raise click.UsageError("no loader command given")
    output = loader_output(loader)
    check_outputs(asm_path, output if link else None)
    plan, asm_text = build(xclude, vecs, loader, link=link)
    for message in plan.warnings:
        warn("impvec", message)
    if verbose:
        for name, why in plan.kept:
            say(f"impvec: {name}: kept by name ({why})")
        say(f"impvec: {plan.slot_count} slots")
    text = asm_text or "# impvec: no function of the program is in these vectors\n"
    if asm_path or not link:
        write_text(asm_path, text)
