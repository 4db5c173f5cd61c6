"""Commands whose issues have not landed yet: --help works, running says so."""

import sys

import click

from . import command


def _pending(name, summary):
    @command(name, help=f"{summary}\n\nNot implemented yet.")
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def main(args):
        click.echo(f"{name}: not implemented yet", err=True)
        sys.exit(2)
    return main


vectool = _pending("vectool", "vectool --mode=lib|prog --addrfile=... loader_args...: "
                   "manage libraries at fixed base addresses.")
