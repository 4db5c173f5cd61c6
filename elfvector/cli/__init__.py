"""The click commands: parse arguments, call an operation, report.

Conventions (binutils style): errors as ``prog: FILE: reason`` on stderr,
exit 0 on success, 1 on error, 2 on usage errors.
"""

import functools
import os
import sys

import click

from .. import __version__
from ..atomic import write_bytes
from ..errors import ElfvectorError

# Loader arguments are passed through untouched: no option parsing after
# the first positional argument, and unknown options are arguments.
PASSTHROUGH = dict(ignore_unknown_options=True, allow_interspersed_args=False,
                   help_option_names=["-h", "--help"])


def command(name, options_anywhere=False, **kwargs):
    """A click command named ``name`` with --version and error reporting.

    Commands that wrap a loader command stop parsing options at the first
    argument; ``options_anywhere`` lets options follow the file arguments
    instead (``vecstat /usr/bin/* --emit-vec libc.so.6``).
    """
    settings = dict(PASSTHROUGH, allow_interspersed_args=True,
                    ignore_unknown_options=False) if options_anywhere else PASSTHROUGH
    def decorate(func):
        @functools.wraps(func)
        def run(*args, **kw):
            try:
                return func(*args, **kw)
            except (click.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except ElfvectorError as e:
                click.echo(f"{name}: {e}", err=True)
                sys.exit(1)
            except BrokenPipeError:
                sys.stderr.close()
                sys.exit(1)
            except KeyboardInterrupt:
                sys.exit(130)
            except Exception as e:  # a bug of ours: still one line, unless asked
                if os.environ.get("ELFVECTOR_DEBUG"):
                    raise
                click.echo(f"{name}: internal error: {type(e).__name__}: {e} "
                           "(set ELFVECTOR_DEBUG=1 for a traceback)", err=True)
                sys.exit(1)
        run = click.version_option(__version__, prog_name=name)(run)
        return click.command(name, context_settings=settings, **kwargs)(run)
    return decorate


def write_text(output, text):
    """A text output (a .vec, a report) to ``output`` (atomically) or to stdout."""
    if output:
        write_bytes(output, text.encode(), mode=0o644)
    else:
        sys.stdout.write(text)


def write_output(output, data, mode):
    """An ELF file to ``output`` (atomically, with ``mode``) or to stdout."""
    if output:
        write_bytes(output, data, mode)
    elif sys.stdout.isatty():
        raise click.UsageError("refusing to write an ELF file to a terminal; use -o or >")
    else:
        sys.stdout.buffer.write(data)


def warn(name, message):
    click.echo(f"{name}: warning: {message}", err=True)


def fd_is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
