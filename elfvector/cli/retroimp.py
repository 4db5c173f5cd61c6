"""retroimp xclude export.vec... a.elf > new_a.elf"""

import click

from ..retroimp import retroimp
from ..vecfile import read_vec
from . import (check_outputs, command, expect_vec, input_mode, read_input, say, warn,
               write_output)

USAGE = "retroimp [OPTIONS] XCLUDE EXPORT.VEC... A.ELF"


@command("retroimp", options_anywhere=True)
@click.option("-o", "--output", metavar="FILE", help="Write the new file to FILE, not stdout.")
@click.option("-L", "--library-path", "library_path", multiple=True, metavar="DIR",
              help="Look for the vectored libraries in DIR first (also LD_LIBRARY_PATH).")
@click.option("--root", metavar="DIR", type=click.Path(exists=True, file_okay=False),
              help="Find the libraries as ld.so would in a chroot of DIR (a sysroot: another "
                   "system's files, say of another architecture): its system directories, "
                   "its ld.so.cache, LD_LIBRARY_PATH and -L are inside DIR.")
@click.option("-v", "--verbose", is_flag=True,
              help="List the functions kept bound by name, and why.")
@click.argument("xclude")
@click.argument("args", nargs=-1, required=True, metavar="EXPORT.VEC... A.ELF")
def main(output, library_path, root, verbose, xclude, args):
    """Bind the PLT of the linked program or library A.ELF through the
    vectors in the EXPORT.VEC files.

    XCLUDE: POSIX extended regular expressions of functions to keep bound
    by name ('' for none; malloc, free, ..., pthread_* always are).  The
    vectored libraries are looked up as ld.so would, with LD_LIBRARY_PATH
    and -L first; each must export the layout its .vec describes.  Options
    may come before or after the files.

    \b
    Example:
      LD_LIBRARY_PATH=vec retroimp -o curl.vec '' vec/*.vec /usr/bin/curl
    """
    if len(args) < 2:
        raise click.UsageError("give the .vec files, then one ELF file")
    *vec_paths, path = args
    for vec_path in vec_paths:
        expect_vec(vec_path, USAGE)
    data = read_input(path, USAGE)
    check_outputs(output)
    vectors = [read_vec(p) for p in vec_paths]
    new, decided = retroimp(xclude, vectors, path, library_path, root or "")
    for message in decided.warnings:
        warn("retroimp", message)
    if verbose:
        for name, why in decided.kept:
            say(f"retroimp: {name}: kept by name ({why})")
    if new is None:
        warn("retroimp", f"{path}: no PLT entry is in these vectors; output is a copy")
        new = data
    write_output(output, new, input_mode(path))
