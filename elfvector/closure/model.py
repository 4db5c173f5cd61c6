"""The plan of a closure rewrite: what resolution decided, what rewriting does.

The resolution (:mod:`.resolve`) reads the original files and produces one
:class:`ObjectPlan` per object; the rewriting (:mod:`.rewrite`) turns each
plan and its original file into the output file.  Addresses in a plan are
always *original* link-time addresses (as in the file read); the rewriting
maps them to new ones with :meth:`ClosurePlan.new_address`.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    """A settled word's value: ``address`` (original link-time address, e.g.
    ``st_value + r_addend`` or a RELATIVE addend) inside object ``obj``
    (an index into :attr:`ClosurePlan.objects`)."""

    obj: int
    address: int


# -- what becomes of one dynamic relocation ------------------------------------

@dataclass(frozen=True)
class Settle:
    """The word gets its final value now; ld.so no longer touches it.

    If ``target.obj`` is not at its base at run time, the object's fix-up
    adds that object's displacement to the word before any code runs."""

    target: Target


@dataclass(frozen=True)
class SettleZero:
    """A weak reference that nothing in the closure defines: the word is 0,
    as ld.so would leave it, and needs no fix-up."""


@dataclass(frozen=True)
class IrelativeLocal:
    """A reference to an IFUNC this object defines: an ``R_*_IRELATIVE``
    with the resolver's address (``resolver``, original link-time address in
    this object); the resolver still runs at every start."""

    resolver: int


@dataclass(frozen=True)
class IrelativeForeign:
    """A PLT slot bound to an IFUNC of another fixed-base library: the word
    holds the resolver's address (``target``; corrected by the fix-up like any
    settled word) and an ``R_*_IRELATIVE`` calls a stub in the dead lazy tail
    of the slot's own PLT entry that jumps through the word to the resolver.
    Only for JUMP_SLOT words that a PLT entry jumps through."""

    target: Target


@dataclass(frozen=True)
class Relative:
    """A reference a PIE program resolves to itself: becomes an
    ``R_*_RELATIVE`` with this addend (original link-time address)."""

    address: int


@dataclass(frozen=True)
class Keep:
    """The relocation stays for ld.so (a lookup, TLS, COPY, ...).  ``why`` is
    reported (``excluded``, ``conflict``, ``into the program``, ``into ld.so``,
    ``tls``, ``copy``, ``unique``, ``ifunc address``, ...)."""

    why: str


Decision = (Settle, SettleZero, IrelativeLocal, IrelativeForeign, Relative, Keep)

RELA_DYN, RELA_PLT = "rela.dyn", "rela.plt"


@dataclass
class Check:
    """One start-up check of a library this object has settled words into:
    a GLOB_DAT against the library's check symbol (its only lookup for that
    library) whose result, minus ``expected``, is the library's displacement.
    A library that is not the build the words were settled against lacks
    the symbol, and ld.so refuses to start the program, naming it."""

    obj: int            #: the library (index into ClosurePlan.objects)
    symbol: str         #: the library's check symbol
    expected: int       #: its value (new link-time address) when at its base


@dataclass
class ObjectPlan:
    """Everything the rewriting needs to know about one object."""

    source: str                       #: the file read
    output: str                       #: the file written (DIR/bin/x or DIR/lib/x)
    soname: str = None
    is_program: bool = False
    is_pie: bool = False
    #: the dynamic linker itself: copied verbatim (the kernel maps it anywhere)
    is_interp: bool = False
    old_base: int = 0                 #: lowest PT_LOAD p_vaddr of the source
    new_base: int = 0                 #: where it is linked in the output (programs: old_base)
    #: (RELA_DYN or RELA_PLT, index in that table) -> one of Decision
    decisions: dict = field(default_factory=dict)
    check_symbol: str = None          #: libraries: the symbol importers check
    checks: list = field(default_factory=list)          #: [Check]
    rpath: str = None                 #: DT_RPATH of the output (replaces RPATH/RUNPATH)
    interp: str = None                #: programs: PT_INTERP of the output
    #: programs: names (bytes) that settled words of the closure were bound by,
    #: which a preloaded library could interpose; the start-up preload check
    prebound_names: set = field(default_factory=set)
    #: programs: file names (basenames) of the objects ld.so loads, in order
    expected_objects: list = field(default_factory=list)


@dataclass
class ClosurePlan:
    """The plans of every object of one output directory."""

    objects: list = field(default_factory=list)         #: [ObjectPlan]
    fixed_bases: bool = True

    def new_address(self, target):
        """The address ``target`` has in the output, when its object is at its base."""
        obj = self.objects[target.obj]
        return target.address - obj.old_base + obj.new_base
