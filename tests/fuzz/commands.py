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
"""

import sys
from dataclasses import dataclass
from typing import Callable, Optional

from .baselines import FUNCTIONS, RPATHDIR, ROOT, SONAME

CROSS_ROLES = ("lib-i386", "lib-aarch64")
ELF_ROLES = ("lib", "veclib", "latin1", "pie", "nopie", "libc", "elf") + CROSS_ROLES
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
                                    # cannot use may be passed over (with a warning)

    def applies(self, inp):
        return inp.role in self.roles or (inp.role == "outpath" and self.good is not None)


def _retrovec_vec(role):
    return "libc.vec" if role == "libc" else "libfz.vec"


LINK_LIB = ["gcc", "-shared", f"-Wl,-soname={SONAME}"]

COMMANDS = [
    Command("retrovec", LIBRARY_ROLES + ("pie",),
            lambda s, o, role: tool("retrovec", "-o", o, _retrovec_vec(role), s),
            place="input.so", files=("libfz.vec", "libc.vec"), good=SONAME,
            elf_output="out"),
    Command("retrovec-vec", ("vec",), lambda s, o, role: tool("retrovec", "-o", o, s, SONAME),
            place="input.vec", files=(SONAME,), elf_output="out", reference=SONAME),
    Command("retroimp", PROGRAM_ROLES + ("lib",) + CROSS_ROLES,
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
    Command("vectool-rpathrm", ("lib", "veclib", "pie", "nopie", "elf") + CROSS_ROLES,
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
]

BY_NAME = {c.name: c for c in COMMANDS}
GOOD_PATTERNS = "\n".join(f"^{f}$" for f in FUNCTIONS) + "\n"
