"""retroimp xclude export.vec... a.elf > new_a.elf"""

import os

import click

from ..errors import VecFormatError
from ..retroimp import retroimp
from ..vecfile import read_vec
from . import command, warn, write_output
from .impvec import split_vec_files


@command("retroimp")
@click.option("-o", "--output", metavar="FILE", help="Write the new file to FILE, not stdout.")
@click.option("-L", "--library-path", "library_path", multiple=True, metavar="DIR",
              help="Look for the vectored libraries in DIR first (also LD_LIBRARY_PATH).")
@click.option("-v", "--verbose", is_flag=True,
              help="List the functions kept bound by name, and why.")
@click.argument("xclude")
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED)
def main(output, library_path, verbose, xclude, args):
    """Bind the PLT of the linked program or library A.ELF through the
    vectors in the EXPORT.VEC files.

    XCLUDE: regexes of functions to keep bound by name ('' for none; malloc,
    free, ..., pthread_* always are).  The vectored libraries are looked up
    as ld.so would, with LD_LIBRARY_PATH and -L first; each must export the
    layout its .vec describes.
    """
    if len(args) < 2:
        raise click.UsageError("give the .vec files, then one ELF file")
    *vec_words, path = args
    vec_paths, rest = split_vec_files(vec_words)
    if rest:
        raise VecFormatError("not a .vec file (does not start with __V_)", rest[0])
    data, decided = retroimp(xclude, [read_vec(p) for p in vec_paths], path, library_path)
    for message in decided.warnings:
        warn("retroimp", message)
    if verbose:
        for name, why in decided.kept:
            click.echo(f"retroimp: {name}: kept by name ({why})", err=True)
    if data is None:
        warn("retroimp", f"{path}: no PLT entry is in these vectors; output is a copy")
        with open(path, "rb") as f:
            data = f.read()
    write_output(output, data, os.stat(path).st_mode & 0o7777)
