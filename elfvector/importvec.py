"""impvec: give a program (or library) an import vector at link time.

The wrapped link runs once with ``--noinhibit-exec`` to learn what the
output imports and which libraries it loads; every imported function that
ld.so would bind to a library exporting a vector becomes a slot.  The
slots are named like the functions, so the final link binds the program's
calls to them instead of to PLT entries.  Which library, and which of its
definitions, is ld.so's answer (:mod:`elfvector.ldso`), the link command's
libraries and ``-L`` directories searched first.
"""

import os
import struct
import tempfile
from dataclasses import dataclass, field

from . import arch as arches
from .arch.asmtext import asm_symbol
from .atomic import move_into_place
from .elffile import ElfFile
from .elfimage import ET_EXEC, PT_LOAD, STB_LOCAL, ElfImage
from .errors import VectorMismatchError
from .exportvec import blamed_on, bti_marked
from .ldso import CLASS_NORMAL, CLASS_PLT, STT_FUNC, STT_GNU_IFUNC, Ldd
from .ldso.lookup import lookup_in
from .linkcmd import LinkCommand
from .patterns import DEFAULT_IMPORT_EXCLUDES, PatternList
from .vecfile import read_vec, vector_name_for_soname


#: the operation named when impvec opens a file (:data:`elfvector.arch.SUPPORTED`)
OPERATION = "impvec"


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
    bti: bool = False               # AArch64: the output is BTI-marked (:func:`bti_marked`)
    vectors: list = field(default_factory=list)      # (Vector, [SlotChoice])
    libraries: dict = field(default_factory=dict)     # vector name -> the MappedObject
    kept: list = field(default_factory=list)          # (name, why)
    warnings: list = field(default_factory=list)

    @property
    def slot_count(self):
        return sum(len(slots) for _, slots in self.vectors)

    def assembly(self):
        machine = arches.for_arch(self.arch)
        groups = [(vec.layout_symbol(), [(s.name, s.index, s.exported) for s in slots])
                  for vec, slots in self.vectors]
        features = {"bti": True} if self.bti else {}
        return machine.import_vector_asm(groups, self.in_executable,
                                         os.path.basename(self.program),
                                         bind_at_relocation=self.prebindable(), **features)

    def prebindable(self):
        """True if :func:`prebind` would bind some vector: its library has a
        fixed base and a sealed table.  Only pre-bound slots need the binder
        to run while ld.so relocates (an unbound slot binds on its first call)."""
        machine = arches.for_arch(self.arch)
        return machine.bound_slot is not None and any(
            _sealed_table(machine, self.libraries[vec.name], vec) is not None
            for vec, _ in self.vectors)


def plan(linkmap, vectors, excludes, callable_only=None):
    """Decide the slot of every imported function of the file ``linkmap``
    loads (a traced :class:`~elfvector.ldso.LinkMap`).

    ``vectors`` maps vector names to Vectors.  A function is vectored only
    when the library ld.so binds it to carries a vector holding the
    definition it binds to; a plain name in a ``.vec`` holds the library's
    default version (:meth:`Vector.resolved`).  A function no library
    exports by name is vectored through the first vector holding it (a
    vector-only function).

    impvec (``callable_only`` None) names each slot like its function, so
    only the library's default version can have one.  retroimp passes the
    (name, version) pairs that have a PLT slot; any version can be bound.
    """
    elf, main = linkmap.main.elf.file, linkmap.main
    result = ImportPlan(elf.path, not elf.is_shared_object, elf.arch)
    libraries = [o for o in linkmap.search_list if o is not main]
    vector_of = _vectors_by_library(libraries, vectors, result)
    address_taken = elf.address_taken_imports()
    versions = main.elf.reference_versions()
    chosen, slots = {}, {}
    for sym in sorted(_imports(elf, vector_of), key=lambda s: s.name):
        why = _kept_before_lookup(sym, callable_only, excludes)
        if why:
            result.kept.append((sym.name, why))
            if why == "no PLT slot" and _vector_only_owner(vector_of, sym):
                result.warnings.append(
                    f"{sym.name} is in a vector only and this file needs its address by "
                    "name: ld.so will not find it")
            continue
        version = versions.get(sym.version, sym.version)
        definers = linkmap.definitions(sym.name, main, version, CLASS_PLT)
        lib = definers[0][0] if definers else _vector_only_owner(vector_of, sym)
        if lib not in vector_of:
            result.kept.append((sym.name, "no vector"))
            continue
        vec = vector_of[lib]
        if vec.name not in slots:               # once per vector: plan() stays linear
            slots[vec.name] = _slot_numbers(vec)
        index = _slot_of(vec, slots[vec.name], lib, definers[0][1] if definers else None, sym)
        if index is None:
            result.kept.append((sym.name, _version_mismatch(vec, sym)))
            continue
        if callable_only is None and not vec.slots[index].default:
            # A slot is named like its function, and a plain name is the
            # default version: it cannot stand for an older one.
            result.kept.append((sym.name, f"asks for the old version {vec.slots[index]}"))
            continue
        for other, _ in definers[1:]:
            result.warnings.append(
                f"{sym.name} is also defined by {_soname(other)}; "
                f"the vector binds {lib.elf.soname}'s definition")
        if callable_only is None and definers and any(
                sym.name in o.elf.undefined_names() for o in libraries if o is not lib):
            # The link editor refuses a hidden definition that a DSO
            # references, and an exported slot would capture that DSO's
            # calls, even those its IFUNC resolvers make before the program
            # is relocated.  Calls alone need no canonical address.
            result.kept.append((sym.name, "another loaded library imports it too"))
            continue
        exported = sym.name in address_taken
        chosen.setdefault(vec.name, (vec, []))[1].append(SlotChoice(sym.name, index, exported))
    result.vectors = [chosen[v.name] for v in vector_of.values() if v.name in chosen]
    result.libraries = {v.name: lib for lib, v in vector_of.items() if v.name in chosen}
    return result


def _slot_of(vec, numbers, lib, definition, sym):
    """The slot of ``vec`` holding ``definition``, the symbol of ``lib``
    ld.so binds ``sym`` to (None: a vector-only function, which the slot
    of its name at the version asked for holds); ``numbers`` are
    :func:`_slot_numbers` of ``vec``."""
    if definition is None:
        return vec.find(sym.name, sym.version)
    return numbers.get((sym.name, lib.elf.version_of(definition)[0]))


def _slot_numbers(vec):
    """(name, version) -> slot number, of every slot of ``vec``."""
    numbers = {}
    for i, slot in enumerate(vec.slots):
        numbers.setdefault(slot.key, i)
    return numbers


def _soname(obj):
    """How a warning names a loaded library."""
    return obj.elf.soname or obj.name


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
    """The first library whose vector holds ``sym`` although its hash table
    does not hold it: the function is in the vector only."""
    for lib, vec in vector_of.items():
        if vec.find(sym.name, sym.version) is not None and not lib.elf.index.get(sym.name):
            return lib
    return None


def _by_name(lib, name, type_class=CLASS_PLT):
    """The definition of ``name`` that ld.so finds in the loaded library
    ``lib`` by name alone (as dlsym does: the default version), or None."""
    return lookup_in(lib.elf, name, None, type_class, newest=True)


def _default_version(lib):
    """``name`` -> the version of ``lib``'s default definition of the
    function ``name`` (None: unversioned, or no such function): what a
    plain ``.vec`` name means."""
    if not lib.elf.defined_versions:
        return lambda name: None        # a library without versions
    def version(name):
        sym = lookup_in(lib.elf, name, None, CLASS_PLT, newest=True)
        if sym is None or sym.info & 0xF not in (STT_FUNC, STT_GNU_IFUNC):
            return None
        return lib.elf.version_of(sym)[0]
    return version


def _version_mismatch(vec, sym):
    """The reason a function the vector has no slot for stays bound by name."""
    held = [str(vec.slots[i]) for i in vec.slots_named(sym.name)]
    asked = sym.name if sym.version is None else f"{sym.name}@{sym.version}"
    if not held:
        return "not in the vector"
    return f"not in the vector at this version: asks for {asked}, the slot holds " + \
        ", ".join(held)


def _vectors_by_library(libraries, vectors, result):
    """Pair each loaded library (a MappedObject) with its vector, its plain
    names resolved against it; check the library exports that vector's
    layout symbol (which the binder looks up by name)."""
    pairs = {}
    for lib in libraries:
        vec = vectors.get(_vector_name(lib))
        if vec is None:
            continue
        vec = vec.resolved(_default_version(lib))
        layout = vec.layout_symbol()
        if _by_name(lib, layout, CLASS_NORMAL) is None:
            raise VectorMismatchError(
                f"does not export {layout}: it was not built with this vector "
                "(rebuild it with expvec, or use its current .vec)", lib.name)
        pairs[lib] = vec
    found = {v.name for v in pairs.values()}
    for name in vectors:
        if name not in found:
            result.warnings.append(f"no library loaded by the program carries {name}; ignored")
    return pairs


def _vector_name(lib):
    """The name of the vector the loaded library ``lib`` would carry."""
    return vector_name_for_soname(lib.elf.soname or os.path.basename(lib.name))


def read_vectors(vec_paths):
    """{vector name: Vector} of the given .vec files."""
    vectors = {}
    for path in vec_paths:
        vec = read_vec(path)
        vectors[vec.name] = vec
    return vectors


def link_time_ldd(cmd, operation=OPERATION):
    """ld.so's view of a link's output: the link command's libraries and
    ``-L`` directories first (a cross compiler's own library directories
    after them), then ld.so's search with the LD_LIBRARY_PATH given in
    front of the command and this process's.  Files of the architectures
    ``operation`` handles are read."""
    env_path = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    library_path = cmd.search_env() + env_path
    root = cmd.cross_root()
    if root:
        # ld.so and the system's libraries are the cross toolchain's, under
        # its root; LD_LIBRARY_PATH names this machine's directories, which
        # the model takes a relative path for (the link's files and -L
        # directories are always this machine's).
        library_path = [os.path.relpath(d) for d in library_path]
    return Ldd(":".join(library_path), cmd.input_files,
               cmd.library_dirs + cmd.cross_library_dirs(), root=root, operation=operation)


def plan_for_link(cmd, elf, vectors, excludes, ldd=None, operation=OPERATION):
    """The ImportPlan of a trial-linked ``elf`` (an ElfFile), its libraries
    found as ld.so would."""
    linkmap = (ldd or link_time_ldd(cmd, operation)).linkmap(elf.path, elf.image)
    result = plan(linkmap, vectors, excludes)
    result.program = cmd.output
    result.bti = elf.arch == "aarch64" and bti_marked(elf.image)
    result.warnings += [f"cannot find {name}; its functions stay bound by name"
                        for _, name, _ in linkmap.not_found if name != SHIM_SONAME]
    return result


def build(xclude_arg, vec_paths, loader_words, link=False, prebound=False, operation=OPERATION):
    """Trial-link, plan, and (with ``link``) assemble and do the final link.

    The output's slots are pre-bound where they can be (:func:`prebind`);
    ``prebound`` (vectool) also puts libc first among the libraries ld.so
    searches when that changes no binding (:func:`libc_can_come_first`).
    """
    vectors = read_vectors(vec_paths)
    excludes = PatternList.from_arg(xclude_arg, "xclude", DEFAULT_IMPORT_EXCLUDES)
    cmd = LinkCommand(loader_words)
    output = cmd.output
    ldd = link_time_ldd(cmd, operation)     # one: each library is read once
    with tempfile.TemporaryDirectory(prefix="impvec-") as tmp, blamed_on(output, tmp):
        trial = trial_link(cmd, tmp, vectors, ldd, operation)
        result = plan_for_link(cmd, trial, vectors, excludes, ldd)
        asm_text = result.assembly() if result.slot_count else None
        if link:
            toolchain = cmd.toolchain(trial.arch)
            extra = [assemble_import(tmp, toolchain, asm_text)] if asm_text else []
            final_path = os.path.join(tmp, "final")
            final = cmd.with_output(final_path).with_extra(*extra)
            if prebound and not cmd.calls_ld_directly and \
                    libc_can_come_first(ldd.linkmap(trial.path, trial.image)):
                final = final.with_leading("-lc")
            final.run("final link", blame=output)
            if asm_text:
                prebind_file(final_path, result, output)
            move_into_place(final_path, output)
    return result, asm_text


def prebind(data, result, path):
    """``data``, the linked file ``result`` planned, with its slots bound now,
    and the number of vectors so bound.

    Slots are pre-bound only against a library at a fixed base whose table
    carries its seal (:func:`elfvector.exportvec.seal_table`).  A file at
    a fixed address (a non-PIE program, a library linked at its base) gets
    ``jmp rel32`` where it reaches; a file loaded anywhere (a PIE program)
    the far form only, which holds wherever it is.  Against a sealed table
    without a fixed base the slots stay unbound, each holding in its word
    its target for the library at the base it was linked at: the binder
    then only adds how far the library moved.
    The pre-binding record says where the slots and the tables were and
    what the seals were; at start-up the binder checks it and binds anew
    what moved (:mod:`elfvector.arch.x86_64`), so a wrong pre-binding costs
    a rebinding, never a call to the wrong place.  An architecture without
    pre-binding (``bound_slot`` None: i386, AArch64) binds at start-up.
    """
    machine = arches.for_arch(result.arch)
    if machine.bound_slot is None:
        return data, 0
    image = ElfImage(data, path, OPERATION)
    _, section = image.section(".elfvector.slots")
    _, index = image.section(".elfvector.index")
    if section is None or index is None:
        return data, 0
    fixed = _at_fixed_address(image)
    record, size = machine.import_layout(result.slot_count, len(result.vectors))
    if (section.size, index.size) != (result.slot_count * machine.SLOT_SIZE, size):
        raise VectorMismatchError(f"the import vector has {section.size} bytes of slots and "
                                  f"{index.size} of indices, not what {result.slot_count} "
                                  "slots take", path)
    out = bytearray(data)
    first = bound = 0
    for v, (vec, slots) in enumerate(result.vectors):
        lib = result.libraries[vec.name]
        table = _sealed_table(machine, lib, vec, fixed_only=False)
        if table is not None:
            address, offsets, seal = table
            at_base = _lowest_address(lib.elf.image) != 0
            for k, choice in enumerate(slots, start=first):
                at = section.offset + k * machine.SLOT_SIZE
                target = address + offsets[choice.index]
                out[at:at + machine.SLOT_SIZE] = machine.bound_slot(
                    section.addr + k * machine.SLOT_SIZE if fixed else None, target) \
                    if at_base else machine.unbound_slot(out[at:at + machine.SLOT_SIZE], target)
            at = index.offset + record + 8 + 16 * v
            out[at:at + 16] = machine.prebinding(address, seal, at_base)
            bound += 1 if at_base else 0
        first += len(slots)
    if bound:
        at = index.offset + record
        where = section.addr if fixed else machine.PREBOUND_ANYWHERE
        out[at:at + 8] = where.to_bytes(8, "little")
    return bytes(out), bound


def libc_can_come_first(linkmap):
    """True if the libraries the output needs before libc.so.6 define no
    name libc.so.6 defines, so that needing libc first changes no binding.

    ld.so looks every symbol up in the program's libraries in DT_NEEDED
    order: libc's own references and the program's calls into libc (the
    bulk of a start's lookups) then skip the libraries that come after it,
    such as a vectored library, which is reached through its vector.
    """
    needed = linkmap.main.deps
    libc = next((i for i, dep in enumerate(needed) if dep.elf.soname == LIBC_SONAME), None)
    if not libc:
        return False
    libc_names = _defined_names(needed[libc])
    return not any(_defined_names(dep) & libc_names for dep in needed[:libc])


LIBC_SONAME = "libc.so.6"


def _defined_names(obj):
    """The names the loaded object ``obj`` defines for others (not local)."""
    image = obj.elf.image
    return {name for name, sym in zip(image.symbol_names(), image.dynsyms())
            if sym.defined and sym.bind != STB_LOCAL}


def prebind_file(path, result, output):
    """:func:`prebind` on the linked file ``path`` (errors name ``output``)."""
    with open(path, "rb") as f:
        data = f.read()
    data, _ = prebind(data, result, output)
    with open(path, "wb") as f:
        f.write(data)


def _at_fixed_address(image):
    """True if ``image`` is loaded where it was linked: a non-PIE program,
    or a library with a fixed base (ld.so asks the kernel for it)."""
    if image.type == ET_EXEC:
        return True
    return not image.is_pie and _lowest_address(image) != 0


def _lowest_address(image):
    return min(p.vaddr for p in image.phdrs if p.type == PT_LOAD)


def _sealed_table(machine, lib, vec, fixed_only=True):
    """(address, offsets, seal) of the export table of the loaded library
    ``lib`` if its table carries its seal (and, ``fixed_only``, the library
    has a fixed base), else None."""
    image = lib.elf.image
    table = _by_name(lib, vec.name, CLASS_NORMAL)
    if fixed_only and _lowest_address(image) == 0 or table is None or \
            table.size < 4 * len(vec.slots) or \
            not image.in_file(table.value - machine.SEAL_SIZE, machine.SEAL_SIZE + table.size):
        return None
    words = image.read(table.value, table.size)
    seal = image.read(table.value - machine.SEAL_SIZE, machine.SEAL_SIZE)
    if seal != machine.table_seal(words):
        return None
    return table.value, struct.unpack_from(f"<{len(vec.slots)}i", words), seal


SHIM_SONAME = "elfvector-vector-only.so"


def trial_link(cmd, tmp, vectors, ldd, operation=OPERATION):
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
    elf = ElfFile(trial_path, operation=operation)
    libraries = ldd.linkmap(trial_path, elf.image).search_list[1:]
    only = sorted(_vector_only_names(libraries, vectors))
    if not only:
        return elf
    shim = _shim_library(tmp, cmd.toolchain(elf.arch), only)
    trial.with_extra(shim).run("trial link", blame=cmd.output)
    return ElfFile(trial_path, operation=operation)


def _vector_only_names(libraries, vectors):
    """Names in the vectors of ``libraries`` that the library's hash table
    does not hold: ld.so cannot find them by name."""
    names = set()
    for lib in libraries:
        vec = vectors.get(_vector_name(lib))
        if vec is not None:
            defines = lib.elf.index.get
            names |= {slot.name for slot in vec.slots if not defines(slot.name)}
    return names


def _shim_library(tmp, toolchain, names):
    """A shared library defining each of ``names`` as a function (``ret``
    is one on every architecture we handle)."""
    asm = "".join(f"\t.globl {n}\n\t.type {n},%function\n{n}:\n\tret\n"
                  for n in map(asm_symbol, names))
    obj = _assemble(tmp, toolchain, "vector-only",
                    '\t.section .note.GNU-stack,"",%progbits\n\t.text\n' + asm,
                    "assembling the vector-only shim")
    shim = os.path.join(tmp, SHIM_SONAME)
    toolchain.link_shared(shim, SHIM_SONAME, [obj], "linking the vector-only shim")
    return shim


def assemble_import(tmp, toolchain, asm_text):
    """Assemble an import vector with ``toolchain``; return the object's path."""
    return _assemble(tmp, toolchain, "import", asm_text, "assembling the import vector")


def _assemble(tmp, toolchain, stem, asm_text, what):
    asm = os.path.join(tmp, f"{stem}.s")
    obj = os.path.join(tmp, f"{stem}.o")
    with open(asm, "wb") as f:
        f.write(asm_text.encode("utf-8", "surrogateescape"))
    toolchain.assemble(asm, obj, what)
    return obj

