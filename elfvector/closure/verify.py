"""``vectool --mode=retro --verify``: the oracle, against ld.so itself.

For each program, the STOCK program and its output, both under
``LD_BIND_NOW=1`` (so that the JUMP_SLOTs the output keeps lazy hold
ld.so's answer, not their PLT entries' push code), are started under gdb and stopped once ld.so has relocated every
object, before the first constructor (:file:`gdb_before_init.py`).  Every
word ld.so relocates in the stock process (each relocation but COPY, each
DT_RELR word) must hold in the output the value ld.so gave it there,
translated by where each object actually lies in the two processes: the
value points into some object at some offset, and must point to the same
offset of the same object.  That covers every word the plan settled
(Settle, SettleZero, Relative, IrelativeLocal, IrelativeForeign) and the
words it left to ld.so, which the rewrite moved.  A wrong definer, a wrong
version, a wrong addend or a fix-up that failed shows as one failure per
word.

Programs this machine does not run (AArch64 ones on x86-64) run under
qemu-user's gdbstub (``qemu-aarch64 -g SOCKET``), driven by gdb-multiarch:
the same stop, the same words.
"""

import hashlib
import json
import os
import platform
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass

from ..errors import ElfvectorError
from .model import (RELA_DYN, RELA_PLT, IrelativeForeign, Keep, Settle, SettleZero,
                    Target)

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gdb_before_init.py")
DT_INIT, DT_INIT_ARRAY, DT_INIT_ARRAYSZ = 12, 25, 27
PT_LOAD, PF_W = 1, 2
GDB_SECONDS = 300
#: the architectures whose programs gdb runs natively, by this machine's
RUNS_HERE = {"x86_64": ("x86_64", "i386"), "i686": ("i386",), "aarch64": ("aarch64",)}
#: the others: (qemu-user, the gdb that debugs them through its gdbstub,
#: the Debian packages of both)
UNDER_QEMU = {"aarch64": ("qemu-aarch64", "gdb-multiarch", "qemu-user", "gdb-multiarch")}
QEMU_START_SECONDS = 30
GDB_SETTINGS = ("set debuginfod enabled off", "set auto-load off",
                "set disable-randomization on", "set startup-with-shell off",
                "set confirm off", "set pagination off")


class VerifyError(ElfvectorError):
    """The oracle could not be run (no gdb, a program that did not start)."""


@dataclass
class Failure:
    """A settled word whose value in the output is not ld.so's."""

    path: str                   #: the output file holding the word
    reason: str

    def __str__(self):
        return f"{self.path}: {self.reason}"


@dataclass
class Verified:
    """What --verify found: the failures, the words compared (every word
    ld.so relocates at start-up), and how many of them the files settle."""

    failures: list
    words: int = 0
    settled: int = 0


def verify(closure, plan, args=("--version",), gdb="gdb"):
    """A :class:`Verified` for every program of ``closure``."""
    total = Verified([])
    for linkmap in closure.linkmaps:
        found = verify_program(closure, plan, linkmap, args, gdb)
        total.failures += found.failures
        total.words += found.words
        total.settled += found.settled
    return total


def verify_program(closure, plan, linkmap, args, gdb):
    runner = _runner(linkmap, gdb)
    index = {elf: i for i, elf in enumerate(closure.objects)}
    mapped = [index[o.elf] for o in linkmap.objects]
    if linkmap.rtld not in linkmap.objects:
        mapped.append(index[linkmap.rtld.elf])
    program = plan.objects[index[linkmap.main.elf]]
    layouts = [_Layout(i, closure.objects[i], plan.objects[i], program) for i in mapped]
    for lay in sorted(layouts, key=lambda lay: not lay.plan.is_interp):
        lay.check_installed()
    stop_path, stop_address, stop_obj = _first_constructor(linkmap, index)
    main = next(lay for lay in layouts if lay.index == index[linkmap.main.elf])
    stock = runner.run([*_stock_command(linkmap), *args],
                       {lay.stock_path: lay.stock_spec() for lay in layouts},
                       (stop_path, stop_address), main.stock_path)
    stop_layout = next(lay for lay in layouts if lay.index == stop_obj)
    output = runner.run([program.output, *args],
                        {lay.output_path: lay.output_spec() for lay in layouts},
                        (stop_layout.output_path, stop_layout.mv(stop_address)),
                        main.output_path)
    stock.size = output.size = linkmap.main.elf.image.layout.word
    for lay in layouts:
        lay.stock_bias = stock.bias[lay.stock_path]
        lay.output_bias = output.bias[lay.output_path]
    by_index = {lay.index: lay for lay in layouts}
    result = Verified([])
    for lay in layouts:
        if lay.plan.is_interp:
            continue
        for what, offset, decision in lay.words():
            value = stock.word(lay.stock_path, offset)
            expected = _translate(value, _hint(decision, lay.index), layouts, by_index)
            got = output.word(lay.output_path, lay.mv(offset))
            result.words += 1
            result.settled += not isinstance(decision, Keep)
            if got != expected:
                result.failures.append(Failure(lay.plan.output, (
                    f"word {lay.mv(offset):#x} ({what}, {_label(decision)}) holds {got:#x} "
                    f"where ld.so gives the stock program {expected:#x}")))
    return result


def _stock_command(linkmap):
    """How the stock program starts: itself; under a sysroot, by the
    sysroot's ld.so searching the sysroot's system directories, as the
    closure was read (the sysroot holds no ld.so.cache)."""
    config = linkmap.config
    if not config.root:
        return [linkmap.main.name]
    dirs = ":".join(config.host_path(d) for d in config.system_dirs)
    return [config.host_path(config.interp), "--library-path", dirs, linkmap.main.path]


def _label(decision):
    if isinstance(decision, Keep):
        return f"Keep: {decision.why}"
    return type(decision).__name__


class _Layout:
    """One object in the stock process and in the output's process, which
    loads its libraries from --libdir (DIR/lib unless the user installs
    them elsewhere) and its interpreter from the program's PT_INTERP."""

    def __init__(self, index, elf, obj, program):
        self.index, self.elf, self.plan = index, elf, obj
        self.stock_path = elf.path
        if obj.is_program:
            runtime = obj.output
        elif obj.is_interp:
            runtime = program.interp
        else:
            runtime = os.path.join(program.rpath, os.path.basename(obj.output))
        self.output_path = os.path.realpath(runtime)
        loads = [p for p in elf.image.phdrs if p.type == PT_LOAD]
        self.machine = elf.machine
        self.low = min(p.vaddr for p in loads)
        self.high = max(p.vaddr + p.memsz for p in loads)
        self.writable = [(p.vaddr, p.vaddr + p.memsz) for p in loads if p.flags & PF_W]
        self.stock_bias = self.output_bias = None

    def check_installed(self):
        """The file the output's process will load must be the output."""
        if self.output_path == os.path.realpath(self.plan.output):
            return
        if _sha256(self.output_path) != _sha256(self.plan.output):
            raise VerifyError(f"--verify: not the output {self.plan.output}: install DIR/lib "
                              "at --libdir first", self.output_path)

    def mv(self, address):
        return address - self.plan.old_base + self.plan.new_base

    def words(self):
        """(what, address, decision) of every word ld.so relocates in the
        stock object: each relocation but COPY and NONE, with the plan's
        decision, then each DT_RELR word (moved by the rewrite: Settle)."""
        for table, relocs in ((RELA_DYN, self.elf.rela_dyn), (RELA_PLT, self.elf.rela_plt)):
            for n, (offset, rtype, _, _) in enumerate(relocs):
                if rtype not in (self.machine.none, self.machine.copy):
                    yield f"{table} #{n}", offset, self.plan.decisions[(table, n)]
        own = Settle(Target(self.index, 0))
        for k, offset in enumerate(self.elf.relr):
            yield f"relr #{k}", offset, own

    def stock_spec(self):
        return (self.low & ~0xFFF, self.writable)

    def output_spec(self):
        return (self.mv(self.low) & ~0xFFF, [(self.mv(a), self.mv(b)) for a, b in self.writable])

    def stock_range(self):
        return self.stock_bias + self.low, self.stock_bias + self.high

    def to_output(self, value):
        """The stock process's address ``value`` in this object, in the output's process."""
        return value - self.stock_bias + self.plan.new_base - self.plan.old_base \
            + self.output_bias


def _hint(decision, own):
    """The object the plan says the word points into (None: nowhere, or
    the plan does not say)."""
    if isinstance(decision, (Settle, IrelativeForeign)):
        return decision.target.obj
    return None if isinstance(decision, (SettleZero, Keep)) else own


def _translate(value, hint, layouts, by_index):
    """The stock value ``value`` as the output's process should hold it: the
    same offset in the same object (the plan's, when the value lies within
    it or at its end; else whichever holds it); other values unchanged."""
    lay = by_index.get(hint)
    if lay is not None:
        low, high = lay.stock_range()
        if low <= value <= high:
            return lay.to_output(value)
    for lay in layouts:
        low, high = lay.stock_range()
        if low <= value < high:
            return lay.to_output(value)
    return value


def _first_constructor(linkmap, index):
    """(real path, address, object index) where to stop: the first function
    ld.so's _dl_init calls (after every relocation), else the entry point."""
    word = linkmap.main.elf.image.layout.word
    for obj in reversed(linkmap.initfini()):
        if obj.is_main or obj.is_rtld:
            continue
        tags = obj.elf.tags
        if DT_INIT in tags:
            return obj.path, tags[DT_INIT], index[obj.elf]
        if tags.get(DT_INIT_ARRAYSZ):
            at = tags[DT_INIT_ARRAY]
            relative = [a for off, rtype, _, a in obj.elf.rela_dyn
                        if off == at and rtype == obj.elf.machine.relative]
            address = relative[0] if relative else \
                int.from_bytes(obj.elf.image.read(at, word), "little")
            return obj.path, address, index[obj.elf]
    main = linkmap.main
    return main.path, main.elf.image.entry, index[main.elf]


@dataclass
class _Memory:
    """The writable segments gdb read: per path, the load bias and [(start, bytes)]."""

    bias: dict
    ranges: dict
    size: int = 8               #: bytes of a word

    def word(self, path, address):
        for start, blob in self.ranges[path]:
            if start <= address and address + self.size <= start + len(blob):
                return int.from_bytes(blob[address - start:address - start + self.size],
                                      "little")
        raise VerifyError(f"{address:#x} is in no writable segment", path)


def _runner(linkmap, gdb):
    """How this machine runs the programs of ``linkmap`` under gdb: natively,
    else under qemu-user's gdbstub; else refused in one line."""
    machine, host = linkmap.main.elf.machine, platform.machine()
    if machine.name in RUNS_HERE.get(host, ()):
        return _Native(gdb)
    if machine.name not in UNDER_QEMU:
        raise VerifyError(f"--verify runs the programs under gdb: {machine.label} programs do "
                          f"not run natively on this {host} machine", linkmap.main.path)
    qemu, cross_gdb, *packages = UNDER_QEMU[machine.name]
    for program, package in zip((qemu, cross_gdb), packages):
        if shutil.which(program) is None:
            raise VerifyError(f"--verify runs {machine.label} programs under {qemu} and "
                              f"{cross_gdb}: install the Debian package {package}",
                              linkmap.main.path)
    return _UnderQemu(cross_gdb, qemu, linkmap.config.root)


class _Native:
    """gdb starts the program itself, LD_BIND_NOW=1 in its environment."""

    def __init__(self, gdb):
        self.gdb = gdb

    def run(self, argv, spec, stop, main):
        """Start ``argv`` under gdb, stop it at ``stop``, read the ranges of
        ``spec`` (``main``: the program's real path)."""
        with tempfile.TemporaryDirectory(prefix="elfvector-verify-") as tmp:
            settings = [*GDB_SETTINGS, "set environment LD_BIND_NOW=1"]
            return _gdb(self.gdb, settings, ["--args", *argv], argv[0],
                        _spec_file(tmp, spec, stop, main), {})


class _UnderQemu:
    """qemu-user runs the program (LD_BIND_NOW=1 given to the guest), its
    gdbstub listening on a socket of a private directory (no port to race
    for); gdb-multiarch drives it.  qemu is killed on every way out."""

    def __init__(self, gdb, qemu, root):
        self.gdb, self.qemu, self.root = gdb, qemu, root

    def run(self, argv, spec, stop, main):
        with tempfile.TemporaryDirectory(prefix="elfvector-verify-") as tmp:
            socket, log = os.path.join(tmp, "gdb.sock"), os.path.join(tmp, "qemu.log")
            command = [self.qemu, "-L", self.root or "/", "-g", socket, "-E", "LD_BIND_NOW=1",
                       *argv]
            with open(log, "wb") as err:
                try:
                    qemu = subprocess.Popen(command, env=_environment(), stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=err)
                except OSError as e:
                    raise VerifyError(f"--verify: cannot start {self.qemu}: {e.strerror}",
                                      argv[0]) from None
                try:
                    self._wait_for(qemu, socket, log, argv[0])
                    settings = [*GDB_SETTINGS, "set sysroot /"]
                    return _gdb(self.gdb, settings, [argv[0]], argv[0],
                                _spec_file(tmp, spec, stop, main),
                                {"ELFVECTOR_REMOTE": socket, "ELFVECTOR_ROOT": self.root})
                finally:
                    if qemu.poll() is None:
                        qemu.kill()
                    qemu.wait()

    def _wait_for(self, qemu, socket, log, program):
        """Until qemu's gdbstub listens at ``socket``."""
        deadline = time.monotonic() + QEMU_START_SECONDS
        while not os.path.exists(socket):
            if qemu.poll() is not None:
                with open(log, encoding="utf-8", errors="replace") as f:
                    last = (f.read().strip().splitlines() or ["no message"])[-1]
                raise VerifyError(f"--verify: {self.qemu} did not start it: {last}", program)
            if time.monotonic() > deadline:
                raise VerifyError(f"--verify: {self.qemu} did not listen within "
                                  f"{QEMU_START_SECONDS} s", program)
            time.sleep(0.02)


def _environment(**more):
    """This environment without the loader's variables (LD_BIND_NOW is the
    program's own), with ``more``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    env.update(more)
    return env


def _spec_file(tmp, spec, stop, main):
    path = os.path.join(tmp, "spec.json")
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
        json.dump(dict(spec, **{"@stop": list(stop), "@main": main}), f)
    return path


def _gdb(gdb, settings, program, name, spec_path, env):
    """Run gdb's batch of :data:`SCRIPT` on ``program`` (gdb's arguments
    after the script), what it read: a :class:`_Memory`."""
    dump = os.path.join(os.path.dirname(spec_path), "dump")
    command = [gdb, "-batch", "-nx", *[a for s in settings for a in ("-iex", s)],
               "-x", SCRIPT, *program]
    try:
        proc = subprocess.run(command, env=_environment(ELFVECTOR_SPEC=spec_path,
                                                        ELFVECTOR_DUMP=dump, **env),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=GDB_SECONDS)
    except FileNotFoundError:
        raise VerifyError(f"--verify needs {gdb} (the Debian package {gdb})", gdb) from None
    except subprocess.TimeoutExpired:
        raise VerifyError(f"--verify: {gdb} did not stop it within {GDB_SECONDS} s",
                          name) from None
    if proc.returncode != 0 or not os.path.exists(dump):
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise VerifyError(f"--verify: {gdb} could not stop it before its first "
                          f"constructor: {last}", name)
    with open(dump, "rb") as f:
        return _parse_dump(f.read())


def _sha256(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def _parse_dump(data):
    bias, ranges, i = {}, {}, 0
    while i < len(data):
        length, b, start, size = struct.unpack_from("<HQQQ", data, i)
        path = data[i + 26:i + 26 + length].decode("utf-8", "surrogateescape")
        i += 26 + length
        bias[path] = b
        ranges.setdefault(path, []).append((start, data[i:i + size]))
        i += size
    return _Memory(bias, ranges)
