"""vectool --mode=lib|prog|rpathrm --addrfile=FILE --rpathdir=DIR ... loader_args..."""

import click

import os

from .. import addrfile as addresses
from ..atomic import write_bytes
from ..rpathrm import rpathrm
from ..vectool import (DEFAULT_EXCLEXP, DEFAULT_EXCLREL, DEFAULT_INCLREL, Options,
                       build_library, build_program)
from . import command, warn
from .retrovec import read_input


@command("vectool")
@click.option("--mode", type=click.Choice(["lib", "prog", "rpathrm"]), required=True,
              help="lib: build a shared library; prog: a program; rpathrm: remove "
                   "--rpathdir from the DT_RPATH/DT_RUNPATH of installed files.")
@click.option("--addrfile", metavar="FILE", help="Fixed base addresses, one line per soname.")
@click.option("--rpathdir", metavar="DIR", required=True,
              help="Symbolic links to the libraries and their .vec files.")
@click.option("--exclexp", default=DEFAULT_EXCLEXP, show_default=True,
              help="Functions to leave out of export vectors.")
@click.option("--inclrel", default=DEFAULT_INCLREL, show_default=True,
              help="Functions whose references relvec may settle too (a partial -Bsymbolic; "
                   "default none: only RELATIVE relocations, which keeps &f equal everywhere).")
@click.option("--exclrel", default=DEFAULT_EXCLREL, show_default=True,
              help="Symbols whose relocations relvec must keep.")
@click.option("--near", is_flag=True,
              help="Hand out bases within 1 GiB of a non-PIE program's text "
                   f"({addresses.NEAR_REGION.bottom:#x}-{addresses.NEAR_REGION.top:#x}), so "
                   "slots bind as jmp rel32 (default "
                   f"{addresses.DEFAULT_REGION.bottom:#x}-{addresses.DEFAULT_REGION.top:#x}).")
@click.option("--no-relvec", is_flag=True, help="Keep every relocation (skip relvec).")
@click.option("-v", "--verbose", is_flag=True, help="Report the base, the vectors, relvec.")
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED)
def main(mode, addrfile, rpathdir, exclexp, inclrel, exclrel, near, no_relvec, verbose, args):
    """Build a group of shared libraries at fixed, non-overlapping base
    addresses, with export and import vectors; or link a program against
    them; or remove the build directory from installed files' run paths.

    ARGS is the loader command (lib and prog modes; it must contain -o, and
    -Wl,-soname= in lib mode), or the installed files (rpathrm mode).
    """
    if mode == "rpathrm":
        for path in args:
            data = rpathrm(read_input(path), path, [os.path.abspath(rpathdir), rpathdir])
            write_bytes(path, data, os.stat(path).st_mode & 0o7777)
        return
    if mode == "lib" and not addrfile:
        raise click.UsageError("--mode=lib needs --addrfile=FILE")
    region = addresses.NEAR_REGION if near else addresses.DEFAULT_REGION
    options = Options(addrfile or "", rpathdir, exclexp, inclrel, exclrel, region, not no_relvec)
    if mode == "prog":
        result, _ = build_program(options, args)
        for message in result.warnings:
            if verbose or "no library loaded by the program carries" not in message:
                warn("vectool", message)    # every .vec of the group is offered
        return
    result = build_library(options, args)
    for message in result.notes if verbose else []:
        click.echo(f"vectool: {message}", err=True)
    if verbose:
        click.echo(f"vectool: {result.output}: base {result.base:#x} "
                   f"({'new' if result.new_base else 'kept'}), span {result.span:#x}, "
                   f"{result.slots} exported slots, {result.imported} imported", err=True)
