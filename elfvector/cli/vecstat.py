"""vecstat [--emit-vec LIB [--top N] [--all] [--if-used]] FILE... > stats (or > export.vec)"""

import os

import click

from ..vecstat import NothingUsedError, format_report, scan, vector_for
from . import check_outputs, command, warn, write_text


@command("vecstat", options_anywhere=True)
@click.option("--emit-vec", "lib", metavar="LIB",
              help="Write a .vec for LIB (a soname such as libc.so.6, or a path) instead: "
                   "its functions that FILE... use, most used first.")
@click.option("--top", type=click.IntRange(min=1), metavar="N",
              help="Keep only the first N functions (of each library without --emit-vec).")
@click.option("--all", "all_functions", is_flag=True,
              help="With --emit-vec: list every exported function of LIB, the used ones first.")
@click.option("--no-default-excludes", is_flag=True,
              help="With --emit-vec: also list malloc, free, ..., pthread_* (left out by "
                   "default: LD_PRELOAD allocators and thread libraries interpose them).")
@click.option("--if-used", is_flag=True,
              help="With --emit-vec: when FILE... use no function of LIB, write nothing and "
                   "exit 0 (for a loop over a program's libraries; without it, that is an "
                   "error).")
@click.option("-o", "--output", metavar="FILE",
              help="Write to FILE (replaced atomically) instead of standard output.")
@click.option("--root", metavar="DIR", type=click.Path(exists=True, file_okay=False),
              help="Find the libraries as ld.so would in a chroot of DIR (a sysroot: another "
                   "system's files, say of another architecture): its system directories, "
                   "its ld.so.cache and LD_LIBRARY_PATH are inside DIR.")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
def main(lib, top, all_functions, no_default_excludes, if_used, output, root, files):
    """Undefined dynamic functions of FILE... by frequency, per library.

    Each function is counted once per file that imports it, under the
    library that defines it (the first in load order that exports it at the
    version the file asks for), or under 'unresolved'.  Arguments that are
    not dynamically linked ELF files are skipped.  Options may come before
    or after the files.

    \b
    Example (a .vec of libc's functions used by these programs):
      vecstat --emit-vec libc.so.6 -o libc.so.6.vec /usr/bin/*
    """
    if lib is None and (all_functions or no_default_excludes or if_used):
        raise click.UsageError("--all, --no-default-excludes and --if-used need --emit-vec")
    check_outputs(output)
    library_path = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    stats = scan(list(files), library_path, root or "")
    for path, reason in stats.unreadable:
        warn("vecstat", f"{path}: cannot read: {reason}")
    for name in sorted(stats.missing):
        warn("vecstat", f"cannot find {name}; the functions only it defines are unresolved")
    if lib is None:
        text = format_report(stats, top)
    else:
        try:
            vector, soname = vector_for(stats, lib, top, all_functions, not no_default_excludes)
        except NothingUsedError:
            if if_used:
                return
            raise
        text = vector.format(f"{len(vector.slots)} slots of {soname}, most used first "
                             f"(vecstat, {len(stats.files)} files)")
    write_text(output, text)
