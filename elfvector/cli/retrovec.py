"""retrovec export.vec foo.so > vecfoo.so"""

import click

from ..retrovec import retrovec
from ..vecfile import read_vec
from . import check_outputs, command, expect_vec, input_mode, read_input, write_output

USAGE = "retrovec [OPTIONS] EXPORT.VEC FOO.SO"


@command("retrovec", options_anywhere=True)
@click.option("-o", "--output", metavar="FILE", help="Write the library to FILE, not stdout.")
@click.argument("vec_path", metavar="EXPORT.VEC")
@click.argument("library", metavar="FOO.SO")
def main(output, vec_path, library):
    """Add the export vector EXPORT.VEC to the built library FOO.SO.

    EXPORT.VEC lists literal function names (name, name@VER or name@@VER);
    the library itself is never modified.  Options may come before or
    after the files.

    \b
    Example:
      retrovec -o vec/libz.so.1 libz.so.1.vec /lib/x86_64-linux-gnu/libz.so.1
    """
    expect_vec(vec_path, USAGE)
    data = read_input(library, USAGE)
    check_outputs(output)
    vector = read_vec(vec_path)
    write_output(output, retrovec(vector, data, library), input_mode(library))
