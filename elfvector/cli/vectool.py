"""vectool --mode=lib|prog|rpathrm --addrfile=FILE --rpathdir=DIR ... loader_args..."""

import os

import click

from .. import addrfile as addresses
from ..errors import OutputError
from ..rpathrm import rpathrm_file
from ..vectool import (DEFAULT_EXCLEXP, DEFAULT_EXCLREL, DEFAULT_INCLREL, Options,
                       build_library, build_program)
from . import check_outputs, command, expect_elf, loader_output, retro, say, warn


@command("vectool", loader="args")
@click.option("--mode", type=click.Choice(["lib", "prog", "rpathrm", "retro"]), required=True,
              help="lib: build a shared library; prog: a program; rpathrm: remove "
                   "--rpathdir from the DT_RPATH/DT_RUNPATH of installed files, in place; "
                   "retro: rewrite programs and their whole closure into --outdir.")
@click.option("--addrfile", metavar="FILE",
              help="Fixed base addresses (lib mode): one line 'ADDRESS SONAME' per library, "
                   "ADDRESS in decimal or 0x hex, page-aligned, decreasing from line to line; "
                   "# starts a comment.  vectool appends a line for each new soname.")
@click.option("--rpathdir", metavar="DIR",
              help="Symbolic links to the libraries and their .vec files.")
@click.option("--exclexp", default=DEFAULT_EXCLEXP, show_default=True, metavar="REGEXES",
              help="POSIX extended regular expressions (separated by spaces) of functions to "
                   "leave out of export vectors.")
@click.option("--inclrel", default=DEFAULT_INCLREL, show_default=True, metavar="REGEXES",
              help="POSIX extended regular expressions of the symbols whose references "
                   "relvec may settle too (a partial -Bsymbolic; default none: only RELATIVE "
                   "relocations, which keeps &f equal everywhere).")
@click.option("--exclrel", default=DEFAULT_EXCLREL, show_default=True, metavar="REGEXES",
              help="POSIX extended regular expressions of the symbols whose relocations "
                   "relvec must keep.")
@click.option("--near", is_flag=True,
              help="Hand out bases within 1 GiB of a non-PIE program's text "
                   f"({addresses.NEAR_REGION.bottom:#x}-{addresses.NEAR_REGION.top:#x}), so "
                   "pre-binding writes a non-PIE program's slots as jmp rel32 (default "
                   f"{addresses.DEFAULT_REGION.bottom:#x}-{addresses.DEFAULT_REGION.top:#x}).")
@click.option("--no-relvec", is_flag=True, help="Keep every relocation (skip relvec).")
@click.option("-v", "--verbose", is_flag=True, help="Report the base, the vectors, relvec.")
@retro.options
@click.argument("args", nargs=-1, type=click.UNPROCESSED,
                metavar="LOADER_ARGS...|FILE...")
def main(mode, addrfile, rpathdir, exclexp, inclrel, exclrel, near, no_relvec, verbose, args,
         **retro_options):
    """Build a group of shared libraries at fixed, non-overlapping base
    addresses, with export and import vectors; or link a program against
    them; or remove the build directory from installed files' run paths.

    LOADER_ARGS is the loader command (lib and prog modes; it must contain
    -o, and -Wl,-soname= in lib mode), FILE... the installed files
    (rpathrm mode).  Options go before them.

    \b
    Example (a library, then a program using it):
      vectool --mode=lib --addrfile=addrs --rpathdir=rp \\
        gcc -shared -Wl,-soname=libfoo.so.1 -o libfoo.so.1 foo.o
      vectool --mode=prog --rpathdir=rp gcc -o main main.o libfoo.so.1
      vectool --mode=rpathrm --rpathdir=rp /usr/local/bin/main
      vectool --mode=retro --addrfile=addrs --outdir=out /usr/bin/curl
    """
    if mode == "retro" or retro.any_given(retro_options):
        return retro.main(mode, addrfile, verbose, args, **retro_options)
    if rpathdir is None:
        raise click.UsageError("Missing option '--rpathdir'.")
    if not args:
        raise click.UsageError("Missing argument 'LOADER_ARGS...|FILE...'.")
    if mode == "rpathrm":
        for path in args:
            expect_elf(path, "vectool --mode=rpathrm --rpathdir=DIR FILE...")
            rpathrm_file(path, [os.path.abspath(rpathdir), rpathdir])
        return
    if mode == "lib" and not addrfile:
        raise click.UsageError("--mode=lib needs --addrfile=FILE")
    output = loader_output(args)
    check_outputs(output, output + ".vec" if mode == "lib" else None)
    if mode == "lib":
        addresses.check_writable(addrfile)
        _check_rpathdir(rpathdir)
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
        say(f"vectool: {message}")
    if verbose:
        say(f"vectool: {result.output}: base {result.base:#x} "
            f"({'new' if result.new_base else 'kept'}), span {result.span:#x}, "
            f"{result.slots} exported slots, {result.imported} imported")


def _check_rpathdir(path):
    """The rpathdir is created when missing; anything but a directory is refused."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError("not a directory", path)
