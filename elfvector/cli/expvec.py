"""expvec [--rebuild] incl excl vscript loader_args... > export.vec 3> export.vec.o"""

import os

import click

from ..atomic import write_bytes
from ..exportvec import build
from . import check_outputs, command, fd_is_open, loader_output, say, write_text


@command("expvec", loader="loader_args")
@click.option("--rebuild", is_flag=True,
              help="incl is the old vector (@old.vec or literal names): keep every old "
                   "slot where it was, append new functions.")
@click.option("--vec", "vec_path", metavar="FILE",
              help="Write export.vec to FILE instead of standard output.")
@click.option("--vec-object", "object_path", metavar="FILE",
              help="Write export.vec.o to FILE instead of file descriptor 3, and the "
                   "alias definitions it is linked with to FILE.ld.")
@click.option("--vector-only", is_flag=True,
              help="VSCRIPT applies to the final link only: the functions it makes local "
                   "stay in the vector; programs not built with the vector cannot call them.")
@click.option("-v", "--verbose", is_flag=True, help="Report IFUNC slots and other notes.")
@click.argument("incl")
@click.argument("excl")
@click.argument("vscript")
@click.argument("loader_args", nargs=-1, required=True, type=click.UNPROCESSED)
def main(rebuild, vec_path, object_path, vector_only, verbose, incl, excl, vscript, loader_args):
    """Link a shared library with an export vector.

    INCL and EXCL are whitespace-separated POSIX extended regular
    expressions, or @FILE (with # comments); '' means none.  The order of
    INCL sets the slot order.  VSCRIPT replaces any version script of
    LOADER_ARGS ('' keeps it).  LOADER_ARGS is the usual link command and
    must contain -o; options go before INCL.

    \b
    Example (the seed's):
      expvec @foo.order '' vscript gcc -shared -Wl,-soname=foo.so.5 \\
        -o foo.so.5 foo.o > foo.vec 3> foo.vec.o
    """
    if vector_only and not vscript:
        raise click.UsageError("--vector-only needs a VSCRIPT (the one the final link uses)")
    check_outputs(loader_output(loader_args), vec_path, object_path,
                  object_path and object_path + ".ld")
    result = build(incl, excl, vscript, list(loader_args), rebuild=rebuild,
                   vector_only=vector_only)
    text = result.vector.format(
        f"{len(result.vector.slots)} slots of {os.path.basename(result.library)}; "
        "slots are append-only (use expvec --rebuild @copy_of_this.vec)")
    write_text(vec_path, text)
    if object_path:
        write_bytes(object_path, result.object_bytes)
        write_bytes(object_path + ".ld", result.alias_script.encode("utf-8", "surrogateescape"))
    elif fd_is_open(3):
        with os.fdopen(3, "wb", closefd=False) as f:
            f.write(result.object_bytes)
    if verbose:
        for note in result.notes:
            say(f"expvec: note: {note}")
