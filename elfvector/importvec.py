"""impvec: give a program (or library) an import vector at link time.

The wrapped link runs once with ``--noinhibit-exec`` to learn what the
output imports and which libraries it loads; every imported function that
the first library defining it exports through a vector becomes a slot.
The slots are named like the functions, so the final link binds the
program's calls to them instead of to PLT entries.
"""

import os
import tempfile
from dataclasses import dataclass, field

from . import arch as arches
from .atomic import move_into_place
from .elffile import ElfFile
from .errors import VectorMismatchError
from .libsearch import LibraryResolver
from .linkcmd import LinkCommand, run_tool
from .patterns import DEFAULT_IMPORT_EXCLUDES, PatternList, read_words
from .vecfile import read_vec, vector_name_for_soname


@dataclass
class SlotChoice:
    """One imported function bound through a vector slot."""

    name: str
    index: int
    exported: bool


@dataclass
class ImportPlan:
    """What impvec decided, before any code is generated."""

    program: str
    in_executable: bool
    arch: str
    vectors: list = field(default_factory=list)      # (Vector, [SlotChoice])
    kept: list = field(default_factory=list)          # (name, why)
    warnings: list = field(default_factory=list)

    @property
    def slot_count(self):
        return sum(len(slots) for _, slots in self.vectors)

    def assembly(self):
        machine = arches.for_arch(self.arch)
        groups = [(vec.layout_symbol(), [(s.name, s.index, s.exported) for s in slots])
                  for vec, slots in self.vectors]
        return machine.import_vector_asm(groups, self.in_executable,
                                         os.path.basename(self.program))


def plan(elf, libraries, vectors, excludes, callable_only=None):
    """Decide the slot of every imported function of ``elf``.

    ``libraries`` are the ElfFiles it loads, in ld.so's order; ``vectors``
    maps vector names to Vectors.  A function is vectored only when the
    first library defining it (the one ld.so would bind) carries a vector
    holding it at the version the program asks for.

    impvec (``callable_only`` None) names each slot like its function, so
    only the library's default version can have one.  retroimp passes the
    (name, version) pairs that have a PLT slot; any version can be bound.
    """
    result = ImportPlan(elf.path, not elf.is_shared_object, elf.arch)
    vector_of = _vectors_by_library(libraries, vectors, result)
    address_taken = elf.address_taken_imports()
    chosen = {}
    for sym in sorted(elf.imported_functions(), key=lambda s: s.name):
        if callable_only is not None and (sym.name, sym.version) not in callable_only:
            result.kept.append((sym.name, "no PLT slot"))
            continue
        if excludes.matches(sym.name):
            result.kept.append((sym.name, "excluded"))
            continue
        if sym.binding == "weak":
            # A weak reference may be absent at run time; a slot would
            # define it and turn `if (&f)` always true.
            result.kept.append((sym.name, "weak reference"))
            continue
        definers = [lib for lib in libraries if _defines(lib, sym)]
        if not definers or definers[0] not in vector_of:
            result.kept.append((sym.name, "no vector"))
            continue
        lib = definers[0]
        vec = vector_of[lib]
        index = vec.find(sym.name, sym.version)
        if index is None or (callable_only is None and not vec.slots[index].default):
            result.kept.append((sym.name, "not in the vector at this version"))
            continue
        for other in definers[1:]:
            result.warnings.append(
                f"{sym.name} is also defined by {other.soname or other.path}; "
                f"the vector binds {lib.soname}'s definition")
        if callable_only is None and any(sym.name in o.undefined_names()
                                         for o in libraries if o is not lib):
            # The link editor refuses a hidden definition that a DSO
            # references, and an exported slot would capture that DSO's
            # calls, even those its IFUNC resolvers make before the program
            # is relocated.  Calls alone need no canonical address.
            result.kept.append((sym.name, "another loaded library imports it too"))
            continue
        exported = sym.name in address_taken
        chosen.setdefault(vec.name, (vec, []))[1].append(SlotChoice(sym.name, index, exported))
    result.vectors = [chosen[v.name] for v in vector_of.values() if v.name in chosen]
    return result


def _defines(lib, sym):
    return any(sym.version is None or d.version in (sym.version, None)
               for d in lib.function_definitions(sym.name))


def _vectors_by_library(libraries, vectors, result):
    """Pair each loaded library with its vector; check the library has it."""
    pairs = {}
    for lib in libraries:
        vec = vectors.get(vector_name_for_soname(lib.soname or os.path.basename(lib.path)))
        if vec is None:
            continue
        layout = vec.layout_symbol()
        if layout not in lib.defined_names():
            raise VectorMismatchError(
                f"does not export {layout}: it was not built with this vector "
                "(rebuild it with expvec, or use its current .vec)", lib.path)
        pairs[lib] = vec
    found = {v.name for v in pairs.values()}
    for name in vectors:
        if name not in found:
            result.warnings.append(f"no library loaded by the program carries {name}; ignored")
    return pairs


def read_vectors(vec_paths):
    """{vector name: Vector} of the given .vec files."""
    vectors = {}
    for path in vec_paths:
        vec = read_vec(path)
        vectors[vec.name] = vec
    return vectors


def plan_for_link(cmd, elf, vectors, excludes):
    """The ImportPlan of a trial-linked ``elf``, its libraries found as ld.so would."""
    env_path = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    resolver = LibraryResolver(cmd.input_files, cmd.library_dirs, cmd.search_env() + env_path)
    libraries, missing = resolver.closure(elf)
    result = plan(elf, libraries, vectors, excludes)
    result.program = cmd.output
    result.warnings += [f"cannot find {name}; its functions stay bound by name"
                        for name in missing]
    return result


def build(xclude_arg, vec_paths, loader_words, link=False):
    """Trial-link, plan, and (with ``link``) assemble and do the final link."""
    vectors = read_vectors(vec_paths)
    excludes = PatternList(list(DEFAULT_IMPORT_EXCLUDES) + read_words(xclude_arg), "xclude")
    cmd = LinkCommand(loader_words)
    output = cmd.output
    with tempfile.TemporaryDirectory(prefix="impvec-") as tmp:
        trial_path = os.path.join(tmp, os.path.basename(output))
        cmd.with_output(trial_path).with_extra(cmd.linker_option("--noinhibit-exec")) \
            .run("trial link", blame=output)
        result = plan_for_link(cmd, ElfFile(trial_path), vectors, excludes)
        asm_text = result.assembly() if result.slot_count else None
        if link:
            extra = [assemble_import(tmp, asm_text)] if asm_text else []
            final_path = os.path.join(tmp, "final")
            cmd.with_output(final_path).with_extra(*extra).run("final link", blame=output)
            move_into_place(final_path, output)
    return result, asm_text


def assemble_import(tmp, asm_text):
    """Assemble an import vector; return the object's path."""
    asm = os.path.join(tmp, "import.s")
    obj = os.path.join(tmp, "import.o")
    with open(asm, "w") as f:
        f.write(asm_text)
    run_tool(["as", "--64", "-o", obj, asm], "assembling the import vector")
    return obj
