"""expvec [--rebuild] incl excl vscript loader_args... > export.vec 3> export.vec.o"""

import os

import click

from ..atomic import write_bytes
from ..exportvec import build
from . import command, fd_is_open, write_text


@command("expvec")
@click.option("--rebuild", is_flag=True,
              help="incl is the old vector (@old.vec or literal names): keep every old "
                   "slot where it was, append new functions.")
@click.option("--vec", "vec_path", metavar="FILE",
              help="Write export.vec to FILE instead of standard output.")
@click.option("--vec-object", "object_path", metavar="FILE",
              help="Write export.vec.o to FILE instead of file descriptor 3.")
@click.option("-v", "--verbose", is_flag=True, help="Report IFUNC slots and other notes.")
@click.argument("incl")
@click.argument("excl")
@click.argument("vscript")
@click.argument("loader_args", nargs=-1, required=True, type=click.UNPROCESSED)
def main(rebuild, vec_path, object_path, verbose, incl, excl, vscript, loader_args):
    """Link a shared library with an export vector.

    INCL and EXCL are whitespace-separated regular expressions, or @FILE
    (with # comments); '' means none.  The order of INCL sets the slot
    order.  VSCRIPT replaces any version script of LOADER_ARGS ('' keeps
    it).  LOADER_ARGS is the usual link command and must contain -o.
    """
    result = build(incl, excl, vscript, list(loader_args), rebuild=rebuild)
    text = result.vector.format(
        f"{len(result.vector.slots)} slots of {os.path.basename(result.library)}; "
        "slots are append-only (use expvec --rebuild @copy_of_this.vec)")
    write_text(vec_path, text)
    if object_path:
        write_bytes(object_path, result.object_bytes, mode=0o644)
        write_bytes(object_path + ".ld", result.alias_script.encode(), mode=0o644)
    elif fd_is_open(3):
        with os.fdopen(3, "wb", closefd=False) as f:
            f.write(result.object_bytes)
    if verbose:
        for note in result.notes:
            click.echo(f"expvec: note: {note}", err=True)
