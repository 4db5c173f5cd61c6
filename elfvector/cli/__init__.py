"""The click commands: parse arguments, call an operation, report.

Conventions (binutils style): errors as ``prog: FILE: reason`` on stderr,
one line (control characters in names escaped), exit 0 on success, 1 on
error, 2 on usage errors.  SIGTERM and SIGHUP clean up as SIGINT does.
"""

import functools
import os
import signal
import stat
import sys

import click

from .. import __version__
from ..atomic import check_output, write_bytes
from ..elfimage import ElfImage, read_elf_file
from ..errors import ElfvectorError, LinkError, NotElfError, VecFormatError, printable
from ..linkcmd import LinkCommand
from ..vecfile import MAGIC

# Loader arguments are passed through untouched: no option parsing after
# the first positional argument (an unknown option before it is an error).
PASSTHROUGH = dict(allow_interspersed_args=False, help_option_names=["-h", "--help"])
# Our long options that the wrapped compiler or linker also knows.
SHARED_WITH_LOADER = {"--help", "--version", "--verbose"}
ELF_MAGIC = b"\x7fELF"


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwind like ^C, so temporary files are removed."""


def _terminate(signum, frame):
    raise Terminated(128 + signum)


def command(name, options_anywhere=False, loader=None, **kwargs):
    """A click command named ``name`` with --version and error reporting.

    Commands that wrap a loader command stop parsing options at the first
    argument; ``loader`` names their parameter holding the loader
    arguments, where an option of ours is a usage error.
    ``options_anywhere`` lets options follow the file arguments instead
    (``vecstat /usr/bin/* --emit-vec libc.so.6``).
    """
    settings = dict(PASSTHROUGH, allow_interspersed_args=True) if options_anywhere \
        else PASSTHROUGH
    def decorate(func):
        @functools.wraps(func)
        def run(*args, **kw):
            for signum in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, _terminate)
            if loader:
                _refuse_our_options(kw[loader])
            try:
                return func(*args, **kw)
            except (click.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except ElfvectorError as e:
                say(f"{name}: {e}")
                sys.exit(1)
            except BrokenPipeError:
                sys.stderr.close()
                sys.exit(1)
            except Terminated as e:
                sys.exit(e.args[0])
            except KeyboardInterrupt:
                sys.exit(130)
            except Exception as e:  # a bug of ours: still one line, unless asked
                if os.environ.get("ELFVECTOR_DEBUG"):
                    raise
                say(f"{name}: internal error: {type(e).__name__}: {e} "
                    "(set ELFVECTOR_DEBUG=1 for a traceback)")
                sys.exit(1)
        run = click.version_option(__version__, prog_name=name)(run)
        return click.command(name, context_settings=settings, **kwargs)(run)
    return decorate


def _refuse_our_options(words):
    """An option of ours after the loader command would reach the linker: say so."""
    ours = {opt for param in click.get_current_context().command.params
            for opt in param.opts if opt.startswith("--")} - SHARED_WITH_LOADER
    for word in words:
        if word.split("=", 1)[0] in ours:
            raise click.UsageError(f"{word} is among the loader arguments: options go before "
                                   "the loader command")


def say(text):
    """One line on standard error, whatever the names in it hold."""
    click.echo(printable(text), err=True)


def warn(name, message):
    say(f"{name}: warning: {message}")


def check_outputs(*paths):
    """Refuse outputs that cannot be written before doing any work (None: stdout)."""
    for path in paths:
        if path:
            check_output(path)


def loader_output(words):
    """The -o file of the loader command ``words``; none is a usage error."""
    try:
        return LinkCommand(words).output
    except LinkError as e:
        raise click.UsageError(e.reason) from None


def write_text(output, text):
    """A text output (a .vec, a report) to ``output`` (atomically) or to stdout.

    Names read from ELF files may hold any bytes (decoded with
    surrogateescape): they are written back as the same bytes, whatever
    the locale's encoding of stdout.
    """
    data = text.encode("utf-8", "surrogateescape")
    if output:
        write_bytes(output, data)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def write_output(output, data, mode):
    """An ELF file to ``output`` (atomically; ``mode`` if new) or to stdout."""
    if output:
        write_bytes(output, data, mode)
    elif sys.stdout.isatty():
        raise click.UsageError("refusing to write an ELF file to a terminal; use -o or >")
    else:
        sys.stdout.buffer.write(data)


def read_input(path, usage):
    """The bytes of the ELF input ``path``; a .vec there is named as swapped."""
    expect_elf(path, usage)
    return read_elf_file(path)


def input_mode(path):
    """The permission bits an output made from the input ``path`` gets when new."""
    return stat.S_IMODE(os.stat(path).st_mode)


def file_kind(path):
    """What ``path`` starts with: "elf", "vec", "pipe" (not read), or None.

    Only a regular file is read, and never blocking: a FIFO or a pipe
    (``<(...)``) is a text input that may be read once, by its consumer.
    """
    try:
        st = os.stat(path)
        if stat.S_ISFIFO(st.st_mode):
            return "pipe"
        if not stat.S_ISREG(st.st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        head = f.read(4)
    return {ELF_MAGIC: "elf", MAGIC.encode(): "vec"}.get(head)


def expect_vec(path, usage):
    """A .vec is expected at ``path``: an ELF file there means swapped arguments."""
    if file_kind(path) == "elf":
        raise VecFormatError(f"is an ELF file, not a .vec (usage: {usage})", path)


def expect_elf(path, usage):
    """An ELF file is expected at ``path``: a .vec there means swapped arguments."""
    if file_kind(path) == "vec":
        raise NotElfError(f"is a .vec file, not an ELF file (usage: {usage})", path)


def is_program(path):
    """Whether ``path`` is a file the loader command could start with: an executable
    regular file, and if ELF, not a shared library or object file."""
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        return False
    if file_kind(path) != "elf":
        return True                 # a script
    try:
        image = ElfImage(read_elf_file(path), path)
    except ElfvectorError:
        return False
    return image.is_executable


def fd_is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
