"""Which command runs on which input, and how: one ``Command`` per input position.

A command's ``argv(subject, output, role)`` is its whole command line, run in a
scratch directory holding copies of the baseline files it names
(``files``): ``subject`` is the path of the input under test (put at
``place``), ``output`` the path given to ``-o`` (or ``--vec`` ...), which
exists beforehand so that a failure can be seen to leave it intact.
``roles`` lists the inputs it takes; ``good`` is the baseline used in the
input's position when the input under test is the output path instead.

``elf_output`` names the file to check structurally when the command
succeeds, and ``reference`` the valid file its diagnostics are compared
with (``None``: the input itself, before the run).

``place``, ``files`` and ``elf_output`` may be functions of the input's
role: the ``--root`` commands put an i386 input in the i386 sysroot
(baselines.root_files), an AArch64 one in the AArch64 sysroot.
"""

import sys
from dataclasses import dataclass
from typing import Callable, Optional

from .baselines import CROSS, FUNCTIONS, RPATHDIR, ROOT, SONAME, root_files

CROSS_ROLES = tuple(f"lib-{arch}" for arch in CROSS)
CROSS_PROGRAMS = tuple(f"pie-{arch}" for arch in CROSS)
ELF_ROLES = ("lib", "veclib", "latin1", "pie", "nopie", "libc", "elf") + CROSS_ROLES + \
    CROSS_PROGRAMS
LIBRARY_ROLES = ("lib", "veclib", "latin1", "libc", "elf") + CROSS_ROLES
PROGRAM_ROLES = ("pie", "nopie", "elf")


def tool(name, *args):
    return [sys.executable, str(ROOT / "bin" / name), *args]


@dataclass(frozen=True)
class Command:
    name: str
    roles: tuple
    argv: Callable            # (subject, output, role of the input) -> argv
    place: str                # the input's file name in the scratch directory
    files: tuple = ()         # baseline files copied in (relative paths)
    dirs: tuple = ()          # directories made beforehand
    output: Optional[str] = "out"   # the pre-existing output (None: no output)
    good: Optional[str] = None      # the baseline standing in for the input (outpath runs)
    elf_output: Optional[str] = None
    reference: Optional[str] = None
    skips_non_elf: bool = False     # vecstat: skipping a non-ELF argument is documented
    extra_outputs: tuple = ()       # created on success besides ``output``
    in_place: bool = False          # rpathrm edits its input
    found_by_search: bool = False   # the input is a library found as ld.so would: one it
                                    # cannot use may be passed over (with a warning), and
                                    # the error name a file that needs it

    def applies(self, inp):
        return inp.role in self.roles or (inp.role == "outpath" and self.good is not None)

    def place_for(self, role):
        return self.place(role) if callable(self.place) else self.place

    def files_for(self, role):
        return self.files(role) if callable(self.files) else self.files

    def elf_output_for(self, role):
        return self.elf_output(role) if callable(self.elf_output) else self.elf_output


def _retrovec_vec(role):
    return "libc.vec" if role == "libc" else "libfz.vec"


LINK_LIB = ["gcc", "-shared", f"-Wl,-soname={SONAME}"]


def _arch(role):
    return role.split("-", 1)[1]


def _root(role):
    return f"{_arch(role)}/root"


def _in_root(role):
    """Where a cross input goes in its sysroot: the program's or the library's place."""
    return f"{_root(role)}/bin/pie" if role in CROSS_PROGRAMS else f"{_root(role)}/lib/{SONAME}"


def _with_root(role):
    """The sysroot of ``role``'s architecture and the .vec files naming its libraries."""
    return root_files(_arch(role)) + ("libfz.vec", f"{_arch(role)}/libc.vec")


def _retroimp_root(s, o, role):
    vecs = [f"{_arch(role)}/libc.vec"] + (["libfz.vec"] if role in CROSS_PROGRAMS else [])
    return tool("retroimp", "--root", _root(role), "-o", o, "", *vecs, s)


def _retro(s, o, role):
    return tool("vectool", "--mode=retro", f"--root={_root(role)}", "--addrfile=addrs",
                "--outdir=outd", "--seed=1", f"{_root(role)}/bin/pie")


def _retro_output(role):
    return "outd/bin/pie" if role in CROSS_PROGRAMS else f"outd/lib/{SONAME}"


def _vecstat_root(s, o, role):
    return tool("vecstat", "--root", _root(role), "-o", o, f"{_root(role)}/bin/pie")

COMMANDS = [
    Command("retrovec", LIBRARY_ROLES + ("pie",),
            lambda s, o, role: tool("retrovec", "-o", o, _retrovec_vec(role), s),
            place="input.so", files=("libfz.vec", "libc.vec"), good=SONAME,
            elf_output="out"),
    Command("retrovec-vec", ("vec",), lambda s, o, role: tool("retrovec", "-o", o, s, SONAME),
            place="input.vec", files=(SONAME,), elf_output="out", reference=SONAME),
    Command("retroimp", PROGRAM_ROLES + ("lib",) + CROSS_ROLES + CROSS_PROGRAMS,
            lambda s, o, role: tool("retroimp", "-L", "vec", "-o", o, "", "libfz.vec", s),
            place="input", files=("libfz.vec", f"vec/{SONAME}"), good="pie", elf_output="out"),
    Command("retroimp-veclib", ("veclib",),
            lambda s, o, role: tool("retroimp", "-L", "vlib", "-o", o, "", "libfz.vec",
                                         "pie"),
            place=f"vlib/{SONAME}", files=("libfz.vec", "pie"), elf_output="out",
            reference="pie", found_by_search=True),
    Command("retroimp-vec", ("vec",),
            lambda s, o, role: tool("retroimp", "-L", "vec", "-o", o, "", s, "pie"),
            place="input.vec", files=(f"vec/{SONAME}", "pie"), elf_output="out", reference="pie"),
    Command("retroimp-xclude", ("patfile",),
            lambda s, o, role: tool("retroimp", "-L", "vec", "-o", o, "@" + s, "libfz.vec",
                                         "pie"),
            place="input.pat", files=(f"vec/{SONAME}", "libfz.vec", "pie"), elf_output="out",
            reference="pie"),
    Command("recovervec", ELF_ROLES, lambda s, o, role: tool("recovervec", "-o", o, s),
            place="input.so", good=f"vec/{SONAME}"),
    Command("vecstat", ELF_ROLES, lambda s, o, role: tool("vecstat", "-o", o, s),
            place="input", good="pie", skips_non_elf=True),
    Command("vectool-rpathrm", ("lib", "veclib", "pie", "nopie", "elf") + CROSS_ROLES +
            CROSS_PROGRAMS,
            lambda s, o, role: tool("vectool", "--mode=rpathrm", f"--rpathdir={RPATHDIR}", s),
            place="input", output=None, in_place=True),
    Command("vectool-lib", ("addrfile",),
            lambda s, o, role: tool("vectool", "--mode=lib", f"--addrfile={s}",
                                         "--rpathdir=rp", *LINK_LIB, "-o", o, "fz_lib.pic.o"),
            place="addrs", files=("fz_lib.pic.o",), dirs=("rp",), good="", elf_output="out",
            reference=SONAME, extra_outputs=("rp", "addrs", "addrs.lock", "out.vec")),
    Command("impvec", ("vec",),
            lambda s, o, role: tool("impvec", "--link", "", s, "gcc", "-o", o, "fz_main.o",
                                         f"vec/{SONAME}"),
            place="input.vec", files=(f"vec/{SONAME}", "fz_main.o"), good="libfz.vec",
            elf_output="out", reference="pie"),
    Command("impvec-xclude", ("patfile",),
            lambda s, o, role: tool("impvec", "--link", "@" + s, "libfz.vec", "gcc", "-o", o,
                                         "fz_main.o", f"vec/{SONAME}"),
            place="input.pat", files=(f"vec/{SONAME}", "libfz.vec", "fz_main.o"),
            elf_output="out", reference="pie"),
    Command("expvec-rebuild", ("vec",),
            lambda s, o, role: tool("expvec", "--rebuild", "--vec", "out.vec",
                                         "--vec-object", "out.vec.o", "@" + s, "", "", *LINK_LIB,
                                         "-o", o, "fz_lib.pic.o"),
            place="input.vec", files=("fz_lib.pic.o",), elf_output="out", reference=SONAME,
            extra_outputs=("out.vec", "out.vec.o", "out.vec.o.ld")),
    Command("expvec-incl", ("patfile",),
            lambda s, o, role: tool("expvec", "--vec", "out.vec", "--vec-object",
                                         "out.vec.o", "@" + s, "", "", *LINK_LIB, "-o", o,
                                         "fz_lib.pic.o"),
            place="input.pat", files=("fz_lib.pic.o",), good="fz.pat", elf_output="out",
            reference=SONAME, extra_outputs=("out.vec", "out.vec.o", "out.vec.o.ld")),
    # the i386 and AArch64 paths that start from a sysroot (--root): its ld.so's search
    Command("retroimp-root", CROSS_ROLES + CROSS_PROGRAMS, _retroimp_root, place="input",
            files=_with_root, elf_output="out"),
    Command("vecstat-root", CROSS_PROGRAMS, _vecstat_root, place=_in_root, files=_with_root,
            skips_non_elf=True),
    Command("vecstat-rootlib", CROSS_ROLES, _vecstat_root, place=_in_root, files=_with_root,
            found_by_search=True),
    Command("vectool-retro", CROSS_PROGRAMS, _retro, place=_in_root, files=_with_root,
            output=None, elf_output=_retro_output, extra_outputs=("outd", "addrs")),
    Command("vectool-retrolib", CROSS_ROLES, _retro, place=_in_root, files=_with_root,
            output=None, elf_output=_retro_output, extra_outputs=("outd", "addrs"),
            found_by_search=True),
]

BY_NAME = {c.name: c for c in COMMANDS}
GOOD_PATTERNS = "\n".join(f"^{f}$" for f in FUNCTIONS) + "\n"
