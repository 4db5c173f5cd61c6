"""Resolution for ``vectool --mode=retro``: a decision for every relocation.

The closure of one or more programs is read as ld.so would load it
(:func:`read_closure`, built on :mod:`elfvector.ldso`); then
:func:`plan_closure` replays each program's start-up binding and decides,
for every entry of .rela.dyn and .rela.plt of every object, what the
rewriting does with it (the decisions of :mod:`.model`).  Several programs
may share the output directory, so a word of a library is settled only when
every program that loads the library binds it the same way.

What the rewriting may settle, and why the rest stays (``Keep.why``):

==========================  ==================================================
``relative``                a RELATIVE of the PIE program (not at a fixed base)
``ifunc resolver``          an IRELATIVE: the resolver runs at every start
``copy``, ``tls``           COPY and TLS relocations: ld.so's work by nature
``excluded``                a name of the default exclusions or --exclude
``into the program``        bound into a program (its copy of data, its
                            function, a non-PIE program's canonical PLT entry)
``into ld.so``              bound into ld.so, which is never at a fixed base
``conflict``                bound differently by different programs
``unique``                  an STB_GNU_UNIQUE definition
``ifunc address``           a GLOB_DAT or absolute word (R_X86_64_64, R_386_32)
                            to another object's IFUNC
``protected data``          data with STV_PROTECTED visibility
``interposable``            a library's own symbol, with --keep-interposable
``undefined``               nothing defines it (ld.so stops if it is used)
``absolute symbol``         bound to an SHN_ABS symbol
``weak undefined+addend``   an absolute word whose weak symbol is nowhere
``ld.so``                   ld.so's own relocations: it relocates itself
``type N``                  a relocation type the rewriting does not handle
==========================  ==================================================
"""

import functools
import os
from collections import Counter
from dataclasses import dataclass, field

from ..errors import ElfvectorError
from ..ldso import (SHN_ABS, STB_GNU_UNIQUE, STB_LOCAL, STB_WEAK, STT_FUNC, STT_GNU_IFUNC,
                    STV_HIDDEN, STV_INTERNAL, STV_PROTECTED, FileCache, LdsoConfig, LinkMap)
from ..ldso.config import ARCHES
from ..patterns import DEFAULT_IMPORT_EXCLUDES, PatternList
from .machine import OPERATION
from .model import (RELA_DYN, RELA_PLT, Check, ClosurePlan, IrelativeForeign, IrelativeLocal,
                    Keep, ObjectPlan, Relative, Settle, SettleZero, Target)

RTLD_MALLOC_REASON = "ld.so's malloc lookups"
CHECK_REASON = "check"


@dataclass
class ClosureOptions:
    """What the command line says about the closure.

    ``outdir`` is DIR (outputs DIR/bin/<program>, DIR/lib/<file>);
    ``libdir`` the DT_RPATH of the outputs and the directory of the
    interpreter (default: DIR/lib made absolute); ``exclude`` --exclude's
    regexes (POSIX ERE words), kept by name besides the default malloc
    family and ``pthread_*``; ``keep_interposable`` keeps a library's
    references to itself; ``library_path`` is the LD_LIBRARY_PATH the
    closure is read with (None: unset); ``root`` the directory ld.so and
    every path it opens are under (a sysroot of another system's packages;
    None: this system).
    """

    outdir: str
    libdir: str = None
    exclude: tuple = ()
    keep_interposable: bool = False
    library_path: str = None
    config: LdsoConfig = None
    root: str = None

    @property
    def rpath(self):
        return self.libdir or os.path.abspath(os.path.join(self.outdir, "lib"))


@dataclass
class Closure:
    """The programs' link maps and the objects of the output directory.

    ``objects`` are ElfObjects, each file once: the programs in the order
    given, then every other object in the order the programs load them
    (ld.so where it is first needed).  ``libraries`` are the real paths
    the driver gives bases and check symbols to (not the programs, not
    ld.so)."""

    linkmaps: list
    objects: list
    outputs: list               #: output path of each object
    _startups: dict = field(default_factory=dict, repr=False)

    def startup(self, linkmap):
        """``linkmap.startup()``, replayed once."""
        if linkmap not in self._startups:
            self._startups[linkmap] = linkmap.startup()
        return self._startups[linkmap]

    @property
    def libraries(self):
        return [o.path for o in self.objects if not self.is_program(o) and not self.is_ldso(o)]

    def is_program(self, elf):
        return elf in self._programs

    def is_ldso(self, elf):
        return elf in self._interpreters

    @functools.cached_property
    def _programs(self):
        return {lm.main.elf for lm in self.linkmaps}

    @functools.cached_property
    def _interpreters(self):
        return {lm.rtld.elf for lm in self.linkmaps}


def read_closure(programs, options, files=None):
    """Each program's closure as ld.so loads it, every file parsed once
    (``files``: a :class:`FileCache` that may already hold some)."""
    files = FileCache(OPERATION) if files is None else files
    config = options.config or (LdsoConfig.probe() if options.root is None else None)
    linkmaps, seen = [], set()
    for path in programs:
        if os.path.realpath(path) not in seen:
            seen.add(os.path.realpath(path))
            linkmaps.append(LinkMap(path, library_path=options.library_path, config=config,
                                    files=files, system_preload=False, root=options.root))
    objects, outputs = [], []
    for linkmap in linkmaps:
        output = os.path.join(options.outdir, "bin", os.path.basename(linkmap.main.name))
        if output in outputs:
            raise ElfvectorError(f"another program would also be {output}", linkmap.main.name)
        objects.append(linkmap.main.elf)
        outputs.append(output)
    for linkmap in linkmaps:
        for obj in linkmap.objects:
            _add_library(obj, objects, outputs, options)
        if linkmap.rtld not in linkmap.objects:
            _add_library(linkmap.rtld, objects, outputs, options)
    return Closure(linkmaps, objects, outputs)


def _add_library(obj, objects, outputs, options):
    """``obj`` as DIR/lib/<the name it was found under>, once."""
    if obj.is_main:
        return
    needed_by_path = [n for n in obj.names if "/" in n and not obj.is_rtld]
    if needed_by_path:
        raise ElfvectorError(f"loaded by a DT_NEEDED path ({needed_by_path[0]}): the output "
                             "would load the original file", obj.name)
    output = os.path.join(options.outdir, "lib", os.path.basename(obj.name))
    if obj.elf in objects:
        if outputs[objects.index(obj.elf)] != output:
            raise ElfvectorError(f"loaded as {os.path.basename(obj.name)} and as "
                                 f"{os.path.basename(outputs[objects.index(obj.elf)])} by "
                                 "different programs", obj.path)
        return
    if output in outputs:
        other = objects[outputs.index(output)].path
        raise ElfvectorError(f"two libraries would both be {output}: this one and {other}",
                             obj.path)
    objects.append(obj.elf)
    outputs.append(output)


# -- planning ----------------------------------------------------------------------

def plan_closure(programs, bases, check_symbols, options):
    """The ClosurePlan of ``programs`` (a list of paths, or a :class:`Closure`
    already read).

    ``bases`` maps each library's real path to its new base (None with
    --no-fixed-bases: it stays where it is linked and the fix-up always
    corrects); ``check_symbols`` maps it to the (name, value) that the
    writer's ``check_symbol_name()`` returned for it.
    """
    closure = programs if isinstance(programs, Closure) else read_closure(programs, options)
    startups = [closure.startup(lm) for lm in closure.linkmaps]
    planner = _Planner(closure, startups, bases, check_symbols, options)
    plan = ClosurePlan(objects=[planner.object_plan(i) for i in range(len(closure.objects))],
                       fixed_bases=any(b is not None for b in bases.values()))
    for linkmap, startup in zip(closure.linkmaps, startups):
        planner.program_tables(plan, linkmap, startup)
    return plan


class _Planner:
    """The decisions of one closure; see the module docstring for the rules."""

    def __init__(self, closure, startups, bases, check_symbols, options):
        self.closure = closure
        self.bases = bases
        self.check_symbols = check_symbols
        self.options = options
        self.excluded = PatternList(list(DEFAULT_IMPORT_EXCLUDES) + list(options.exclude),
                                    "--exclude")
        self.index = {elf: i for i, elf in enumerate(closure.objects)}
        #: object -> [(its MappedObject, that program's Startup)], per program loading it
        self.instances = {}
        for linkmap, startup in zip(closure.linkmaps, startups):
            for mapped in linkmap.objects + [linkmap.rtld]:
                pairs = self.instances.setdefault(mapped.elf, [])
                if all(m is not mapped for m, _ in pairs):
                    pairs.append((mapped, startup))

    def object_plan(self, i):
        elf = self.closure.objects[i]
        program = self.closure.is_program(elf)
        plan = ObjectPlan(source=elf.path, output=self.closure.outputs[i], soname=elf.soname,
                          is_program=program, is_pie=program and not elf.is_executable,
                          old_base=elf.base, new_base=elf.base)
        if self.closure.is_ldso(elf):
            plan.is_interp = True
            plan.decisions = {(table, n): Keep("ld.so") for table, relocs in _tables(elf)
                              for n in range(len(relocs))}
            return plan
        if not program:
            base = self.bases.get(elf.path)
            plan.new_base = elf.base if base is None else base
            plan.check_symbol = self.check_symbols.get(elf.path, (None, None))[0]
        plan.rpath = self.options.rpath
        if program:
            interp = next(lm.rtld for lm in self.closure.linkmaps if lm.main.elf is elf).name
            plan.interp = os.path.join(self.options.rpath, os.path.basename(interp))
        for table, relocs in _tables(elf):
            for n, reloc in enumerate(relocs):
                plan.decisions[(table, n)] = self.decide(elf, table, n, reloc)
        plan.checks = self.checks(i, plan)
        return plan

    # -- one relocation -------------------------------------------------------------
    def decide(self, elf, table, n, reloc):
        _, rtype, sym_index, addend = reloc
        m = elf.machine
        if rtype == m.relative:
            if self.closure.is_program(elf) and not elf.is_executable:
                return Keep("relative")
            return Settle(Target(self.index[elf], addend))
        simple = {m.none: "none", m.irelative: "ifunc resolver", m.copy: "copy"}
        if rtype in simple:
            return Keep(simple[rtype])
        if rtype in ARCHES[m.name].tls:
            return Keep("tls")
        if rtype not in (m.glob_dat, m.jump_slot, m.word):
            return Keep(f"type {rtype}")
        ref = elf.symbols[sym_index]
        extra = addend if rtype == m.word else 0
        if ref.bind == STB_LOCAL or ref.visibility in (STV_HIDDEN, STV_INTERNAL):
            return self.bound_to(elf, elf, ref, rtype, extra)      # resolve_map: no lookup
        if self.excluded.matches(ref.name):
            return Keep("excluded")
        bindings = [startup.by_relocation[(mapped, table, n)]
                    for mapped, startup in self.instances[elf]]
        return self.agreed(elf, ref, rtype, extra, bindings)

    def agreed(self, elf, ref, rtype, extra, bindings):
        """The decision when every program binds the reference alike."""
        if any(b.definer is not None and b.definer.is_main and b.definer.elf is not elf
               for b in bindings):
            return Keep("into the program")
        if any(b.definer is not None and b.definer.is_rtld for b in bindings):
            return Keep("into ld.so")
        keys = {(b.definer.elf if b.definer else None, b.symbol.index if b.symbol else None)
                for b in bindings}
        if len(keys) > 1:
            return Keep("conflict")
        b = bindings[0]
        if b.definer is None:
            if ref.bind != STB_WEAK:
                return Keep("undefined")
            return SettleZero() if extra == 0 else Keep("weak undefined+addend")
        sym = b.symbol
        if sym.bind == STB_GNU_UNIQUE:
            return Keep("unique")
        if sym.visibility == STV_PROTECTED and sym.type not in (STT_FUNC, STT_GNU_IFUNC):
            return Keep("protected data")
        if b.definer.elf is elf and self.options.keep_interposable \
                and not self.closure.is_program(elf):
            return Keep("interposable")
        return self.bound_to(elf, b.definer.elf, sym, rtype, extra)

    def bound_to(self, elf, definer, sym, rtype, extra):
        """A word of ``elf`` whose value is ``sym`` of ``definer`` (+ ``extra``)."""
        if sym.shndx == SHN_ABS:
            return Keep("absolute symbol")
        m = elf.machine
        if sym.type == STT_GNU_IFUNC and sym.defined:
            if definer is elf and (rtype != m.word or extra == 0):
                return IrelativeLocal(sym.value)
            if rtype == m.jump_slot and definer is not elf:
                return IrelativeForeign(Target(self.index[definer], sym.value))
            return Keep("ifunc address")
        if definer is elf:
            return self.own_word(elf, sym.value + extra)
        return Settle(Target(self.index[definer], sym.value + extra))

    def own_word(self, elf, address):
        """A word pointing into ``elf`` itself: a RELATIVE in the PIE
        program, else settled (a library, or the program at its address)."""
        if self.closure.is_program(elf) and not elf.is_executable:
            return Relative(address)
        return Settle(Target(self.index[elf], address))

    def checks(self, i, plan):
        """One Check per library that settled words of object ``i`` point into."""
        targets = sorted({d.target.obj for d in plan.decisions.values()
                          if isinstance(d, (Settle, IrelativeForeign)) and d.target.obj != i})
        checks = []
        for target in targets:
            path = self.closure.objects[target].path
            symbol, expected = self.check_symbols.get(path, (None, None))
            checks.append(Check(obj=target, symbol=symbol, expected=expected))
        return checks

    # -- programs -----------------------------------------------------------------
    def program_tables(self, plan, linkmap, startup):
        """The program's prebound names and expected objects."""
        program = plan.objects[self.index[linkmap.main.elf]]
        names = set()
        for b in startup.bindings:
            if b.table == "rtld" or not b.looked_up or not _preload_could_interpose(b):
                continue
            decision = plan.objects[self.index[b.requester.elf]].decisions[(b.table, b.index)]
            if isinstance(decision, (Settle, SettleZero, IrelativeLocal, IrelativeForeign)):
                names.add(b.name.encode("utf-8", "surrogateescape"))
        program.prebound_names = names
        program.expected_objects = [
            os.path.basename(plan.objects[self.index[o.elf]].output)
            for o in linkmap.objects if not o.is_main and not o.is_rtld]


def _preload_could_interpose(binding):
    """A preload comes after the program in the scope, and after the object
    itself for an object with DT_SYMBOLIC: those bindings it cannot change."""
    definer = binding.definer
    if definer is None:
        return True
    return not definer.is_main and not (definer is binding.requester
                                        and len(binding.requester.scope) > 1)


def _tables(elf):
    return ((RELA_DYN, elf.rela_dyn), (RELA_PLT, elf.rela_plt))


# -- the report ------------------------------------------------------------------------

@dataclass
class ObjectSummary:
    """One object before and after: symbol lookups at start-up (as
    LD_DEBUG=statistics counts them under LD_BIND_NOW, the object's share),
    RELATIVE relocations of .rela.dyn (what LD_DEBUG=statistics counts as
    "relative relocations") before and kept, the words of DT_RELR (the
    rewriting's to move) and the relocations by decision."""

    source: str
    output: str
    lookups_before: int
    lookups_after: int
    relative_before: int
    relative_kept: int
    relr_words: int
    #: reason -> lookups that remain for it ("check" for the checks)
    remaining: Counter = field(default_factory=Counter)
    #: "Settle", "Keep: conflict", ... -> relocations
    decisions: Counter = field(default_factory=Counter)


def summarize(plan, closure):
    """An ObjectSummary per object of ``plan``, in its order."""
    out = []
    for i, elf in enumerate(closure.objects):
        mapped, linkmap = next((m, lm) for lm in closure.linkmaps
                               for m in lm.objects + [lm.rtld] if m.elf is elf)
        before = closure.startup(linkmap).lookups_of(mapped)
        remaining = _remaining_lookups(elf, plan.objects[i])
        decisions = Counter(_label(d) for d in plan.objects[i].decisions.values())
        relative_type = elf.machine.relative
        relative = sum(1 for _, rtype, _, _ in elf.rela_dyn if rtype == relative_type)
        kept = sum(1 for (table, n), d in plan.objects[i].decisions.items()
                   if table == RELA_DYN and isinstance(d, Keep)
                   and elf.rela_dyn[n][1] == relative_type)
        out.append(ObjectSummary(elf.path, plan.objects[i].output, before,
                                 sum(remaining.values()), relative, kept, len(elf.relr),
                                 remaining, decisions))
    return out


def program_lookups(plan, closure, summaries=None):
    """Per program: (stock lookups, lookups that remain, remaining by reason),
    ld.so's own lookups of the malloc functions included."""
    summaries = summaries or summarize(plan, closure)
    by_elf = {elf: s for elf, s in zip(closure.objects, summaries)}
    out = {}
    for linkmap in closure.linkmaps:
        startup = closure.startup(linkmap)
        reasons = Counter()
        for obj in linkmap.objects:
            reasons.update(by_elf[obj.elf].remaining)
        rtld = sum(1 for b in startup.bindings if b.table == "rtld")
        reasons[RTLD_MALLOC_REASON] += rtld
        out[linkmap.main.name] = (startup.lookups, sum(reasons.values()), reasons)
    return out


def _label(decision):
    if isinstance(decision, Keep):
        return f"Keep: {decision.why}"
    return type(decision).__name__


def _remaining_lookups(elf, object_plan):
    """Lookups ld.so still makes for the object: its kept symbol relocations
    in the rewritten order (.rela.dyn's, then .rela.plt's), with ld.so's
    per-object cache of the previous lookup, and one per check."""
    remaining = Counter()
    previous = None
    m = elf.machine
    type_class = ARCHES[m.name].type_class
    for table, relocs in _tables(elf):
        for n, (_, rtype, sym_index, _) in enumerate(relocs):
            decision = object_plan.decisions[(table, n)]
            if not isinstance(decision, Keep) or rtype in (m.relative, m.none):
                continue
            ref = elf.symbols[sym_index]
            if ref.bind == STB_LOCAL or ref.visibility in (STV_HIDDEN, STV_INTERNAL):
                continue
            key = (sym_index, type_class(rtype))
            if key != previous:
                remaining[decision.why] += 1
            previous = key
    remaining[CHECK_REASON] += len(object_plan.checks)
    return +remaining
