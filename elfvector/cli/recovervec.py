"""recovervec foo.so > export.vec"""

import os

import click

from ..recovervec import recover
from . import check_outputs, command, read_input, say, warn, write_text


@command("recovervec", options_anywhere=True)
@click.option("-o", "--output", metavar="FILE",
              help="Write export.vec to FILE (replaced atomically) instead of standard output.")
@click.option("-v", "--verbose", is_flag=True, help="Report IFUNC slots.")
@click.argument("library", metavar="FOO.SO")
def main(output, verbose, library):
    """Rebuild the export.vec of FOO.SO, a library linked with expvec.

    The slots are read back from the library's vector table; when several
    exported names share a function, the layout symbols decide which one a
    slot holds, and what they cannot decide is reported on standard error.
    Options may come before or after the file.

    \b
    Example:
      recovervec -o foo.vec foo.so.5
    """
    read_input(library, "recovervec [OPTIONS] FOO.SO")
    check_outputs(output)
    result = recover(library)
    vector = result.vector
    for index, options, chosen in result.ambiguous:
        say(f"recovervec: {library}: slot {index}: aliases "
            f"{', '.join(map(str, options))}; chose {chosen}")
    for symbol in result.mismatched:
        warn("recovervec", f"{library}: the recovered slots do not match {symbol}")
    if verbose:
        for index in result.ifunc_slots:
            say(f"recovervec: note: slot {index}: {vector.slots[index]}: IFUNC, "
                "reached through the library's IPLT entry")
    # The comment expvec writes: an unchanged vector is recovered byte for byte.
    text = vector.format(
        f"{len(vector.slots)} slots of {os.path.basename(library)}; "
        "slots are append-only (use expvec --rebuild @copy_of_this.vec)")
    write_text(output, text)

