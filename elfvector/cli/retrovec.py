"""retrovec export.vec foo.so > vecfoo.so"""

import os

import click

from ..errors import NotElfError
from ..retrovec import retrovec
from ..vecfile import read_vec
from . import command, write_output


def read_input(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise NotElfError(f"cannot read: {e.strerror}", path) from None


@command("retrovec")
@click.option("-o", "--output", metavar="FILE", help="Write the library to FILE, not stdout.")
@click.argument("vec_path", metavar="EXPORT.VEC")
@click.argument("library", metavar="FOO.SO")
def main(output, vec_path, library):
    """Add the export vector EXPORT.VEC to the built library FOO.SO.

    EXPORT.VEC lists literal function names (name, name@VER or name@@VER);
    the library itself is never modified.
    """
    vector = read_vec(vec_path)
    data = retrovec(vector, read_input(library), library)
    write_output(output, data, os.stat(library).st_mode & 0o7777)
