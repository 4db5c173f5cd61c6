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
from .arch import x86_64
from .atomic import move_into_place
from .elffile import ElfFile
from .errors import VectorMismatchError
from .exportvec import blamed_on
from .libsearch import LibraryResolver
from .linkcmd import LinkCommand, run_tool
from .patterns import DEFAULT_IMPORT_EXCLUDES, PatternList
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
    holding it at the version the program asks for; a plain name in a
    ``.vec`` holds the library's default version (:meth:`Vector.resolved`).
    A function no library exports by name is vectored through the first
    vector holding it (a vector-only function).

    impvec (``callable_only`` None) names each slot like its function, so
    only the library's default version can have one.  retroimp passes the
    (name, version) pairs that have a PLT slot; any version can be bound.
    """
    result = ImportPlan(elf.path, not elf.is_shared_object, elf.arch)
    indexes = {}
    vector_of = _vectors_by_library(libraries, vectors, result, indexes)
    address_taken = elf.address_taken_imports()
    chosen = {}
    for sym in sorted(_imports(elf, vector_of), key=lambda s: s.name):
        why = _kept_before_lookup(sym, callable_only, excludes)
        if why:
            result.kept.append((sym.name, why))
            if why == "no PLT slot" and _vector_only_owner(vector_of, sym):
                result.warnings.append(
                    f"{sym.name} is in a vector only and this file needs its address by "
                    "name: ld.so will not find it")
            continue
        definers = [lib for lib in libraries if _defines(indexes.get(lib, lib), sym)]
        lib = definers[0] if definers else _vector_only_owner(vector_of, sym)
        if lib not in vector_of:
            result.kept.append((sym.name, "no vector"))
            continue
        vec = vector_of[lib]
        index = vec.find(sym.name, sym.version)
        if index is None:
            result.kept.append((sym.name, _version_mismatch(vec, sym)))
            continue
        if callable_only is None and not vec.slots[index].default:
            # A slot is named like its function, and a plain name is the
            # default version: it cannot stand for an older one.
            result.kept.append((sym.name, f"asks for the old version {vec.slots[index]}"))
            continue
        for other in definers[1:]:
            result.warnings.append(
                f"{sym.name} is also defined by {other.soname or other.path}; "
                f"the vector binds {lib.soname}'s definition")
        if callable_only is None and definers and any(
                sym.name in o.undefined_names() for o in libraries if o is not lib):
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


def _imports(elf, vector_of):
    """The undefined functions of ``elf``, and the untyped undefined symbols
    that a vector names (a call to a vector-only function has no definition
    to take its type from)."""
    in_vectors = {slot.name for vec in vector_of.values() for slot in vec.slots}
    return [s for s in elf.dynamic_symbols if not s.defined and s.name
            and (s.is_function or (s.kind == "notype" and s.name in in_vectors))]


def _kept_before_lookup(sym, callable_only, excludes):
    """Why ``sym`` stays bound by name whatever the vectors hold, or None."""
    if callable_only is not None and (sym.name, sym.version) not in callable_only:
        return "no PLT slot"
    if excludes.matches(sym.name):
        return "excluded"
    if sym.binding == "weak":
        # A weak reference may be absent at run time; a slot would
        # define it and turn `if (&f)` always true.
        return "weak reference"
    return None


def _vector_only_owner(vector_of, sym):
    """The first library whose vector holds ``sym`` although its ``.dynsym``
    does not define it: the function is in the vector only."""
    for lib, vec in vector_of.items():
        if vec.find(sym.name, sym.version) is not None and sym.name not in lib.defined_names():
            return lib
    return None


def _version_mismatch(vec, sym):
    """The reason a function the vector has no slot for stays bound by name."""
    held = [str(vec.slots[i]) for i in vec.slots_named(sym.name)]
    asked = sym.name if sym.version is None else f"{sym.name}@{sym.version}"
    if not held:
        return "not in the vector"
    return f"not in the vector at this version: asks for {asked}, the slot holds " + \
        ", ".join(held)


def _defines(lib, sym):
    """Whether ``lib`` (an ElfFile or a :class:`FunctionIndex`) defines the
    function ``sym`` asks for."""
    return any(sym.version is None or d.version in (sym.version, None)
               for d in lib.function_definitions(sym.name))


class FunctionIndex:
    """The defined functions of a vectored library by name, built once from
    its flattened ``.dynsym``: every slot and every import asks it."""

    def __init__(self, lib):
        self._functions = {}
        for s in lib.dynamic_symbols:
            if s.defined and s.is_function:
                self._functions.setdefault(s.name, []).append(s)

    def function_definitions(self, name):
        return self._functions.get(name, [])

    def default_version(self, name):
        """The version of the default definition of the function ``name``
        (None: unversioned or not defined), what a plain ``.vec`` name means."""
        for d in self.function_definitions(name):
            if d.is_exported_function and d.default:
                return d.version
        return None


def _vectors_by_library(libraries, vectors, result, indexes):
    """Pair each loaded library with its vector, its plain names resolved
    against it; check the library has that vector.  ``indexes`` receives a
    FunctionIndex per vectored library."""
    pairs = {}
    for lib in libraries:
        vec = vectors.get(vector_name_for_soname(lib.soname or os.path.basename(lib.path)))
        if vec is None:
            continue
        indexes[lib] = FunctionIndex(lib)
        vec = vec.resolved(indexes[lib].default_version)
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


def _resolver(cmd):
    env_path = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    return LibraryResolver(cmd.input_files, cmd.library_dirs, cmd.search_env() + env_path)


def plan_for_link(cmd, elf, vectors, excludes, resolver=None):
    """The ImportPlan of a trial-linked ``elf``, its libraries found as ld.so would."""
    libraries, missing = (resolver or _resolver(cmd)).closure(elf)
    result = plan(elf, libraries, vectors, excludes)
    result.program = cmd.output
    result.warnings += [f"cannot find {name}; its functions stay bound by name"
                        for name in missing if name != SHIM_SONAME]
    return result


def build(xclude_arg, vec_paths, loader_words, link=False):
    """Trial-link, plan, and (with ``link``) assemble and do the final link."""
    vectors = read_vectors(vec_paths)
    excludes = PatternList.from_arg(xclude_arg, "xclude", DEFAULT_IMPORT_EXCLUDES)
    cmd = LinkCommand(loader_words)
    output = cmd.output
    resolver = _resolver(cmd)       # one: each library is read once
    with tempfile.TemporaryDirectory(prefix="impvec-") as tmp, blamed_on(output, tmp):
        trial = trial_link(cmd, tmp, vectors, resolver)
        result = plan_for_link(cmd, trial, vectors, excludes, resolver)
        asm_text = result.assembly() if result.slot_count else None
        if link:
            extra = [assemble_import(tmp, asm_text)] if asm_text else []
            final_path = os.path.join(tmp, "final")
            cmd.with_output(final_path).with_extra(*extra).run("final link", blame=output)
            move_into_place(final_path, output)
    return result, asm_text


SHIM_SONAME = "elfvector-vector-only.so"


def trial_link(cmd, tmp, vectors, resolver):
    """The trial-linked output, with ``--noinhibit-exec``.

    A call to a vector-only function has no definition the link editor can
    see, and it leaves such an undefined symbol out of an executable's
    symbol tables altogether.  When the loaded libraries' vectors hold
    such functions, the trial is linked again with a shim library that
    defines them by name, so the output imports them like any function.
    """
    trial_path = os.path.join(tmp, os.path.basename(cmd.output))
    trial = cmd.with_output(trial_path).with_extra(cmd.linker_option("--noinhibit-exec"))
    trial.run("trial link", blame=cmd.output)
    elf = ElfFile(trial_path)
    libraries, _ = resolver.closure(elf)
    only = sorted(_vector_only_names(libraries, vectors))
    if not only:
        return elf
    trial.with_extra(_shim_library(tmp, only)).run("trial link", blame=cmd.output)
    return ElfFile(trial_path)


def _vector_only_names(libraries, vectors):
    """Names in the vectors of ``libraries`` that the library does not export."""
    names = set()
    for lib in libraries:
        vec = vectors.get(vector_name_for_soname(lib.soname or os.path.basename(lib.path)))
        if vec is not None:
            names |= {slot.name for slot in vec.slots} - lib.defined_names()
    return names


def _shim_library(tmp, names):
    """A shared library defining each of ``names`` as a function."""
    asm = "".join(f"\t.globl {n}\n\t.type {n},@function\n{n}:\n\tret\n"
                  for n in map(x86_64.asm_symbol, names))
    obj = _assemble(tmp, "vector-only", '\t.section .note.GNU-stack,"",@progbits\n\t.text\n'
                    + asm, "assembling the vector-only shim")
    shim = os.path.join(tmp, SHIM_SONAME)
    run_tool(["ld", "-shared", f"-soname={SHIM_SONAME}", "-o", shim, obj],
             "linking the vector-only shim")
    return shim


def assemble_import(tmp, asm_text):
    """Assemble an import vector; return the object's path."""
    return _assemble(tmp, "import", asm_text, "assembling the import vector")


def _assemble(tmp, stem, asm_text, what):
    asm = os.path.join(tmp, f"{stem}.s")
    obj = os.path.join(tmp, f"{stem}.o")
    with open(asm, "wb") as f:
        f.write(asm_text.encode("utf-8", "surrogateescape"))
    run_tool(["as", "--64", "-o", obj, asm], what)
    return obj
