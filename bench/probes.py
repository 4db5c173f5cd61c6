"""The measurements: instructions, symbol lookups, linkage bytes, ns per call, and how
a vectored slot is bound in the running process.

Every probe that runs a program checks what it printed, so a number is
never reported for a run that computed the wrong thing.
"""

import re

from builds import BenchError, run_program
from elfvector.measure import linkage_bytes, read_image

CALLGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")
SLOTS_SECTION = ".elfvector.slots"
INDEX_SECTION = ".elfvector.index"
UNBOUND_SLOT = 0xE8      # call .Llazy


def expect_output(build, stdout, expected):
    """A measured run must have computed the right thing too."""
    if stdout != expected:
        raise BenchError(f"{build.title} ({build.program}) printed {stdout!r}, "
                         f"expected {expected!r}")


def check_outputs(builds, expected):
    """Every build must print ``expected``; otherwise show what each printed."""
    outputs = {b.title: run_program(b).stdout for b in builds}
    if any(out != expected for out in outputs.values()):
        lines = [f"  {title:18} {out!r}" for title, out in outputs.items()]
        raise BenchError("the builds disagree (expected "
                         f"{expected!r}):\n" + "\n".join(lines))


def instructions(build, expected):
    """Instructions callgrind counts for one whole run: ld.so, binding, main, exit.

    User space only: a system call counts as its one ``syscall``
    instruction, whatever the kernel does for it (the vectored binder's
    mmap, mprotect and mremap of the slot pages among them).
    """
    proc = run_program(build, wrapper=CALLGRIND)
    expect_output(build, proc.stdout, expected)
    match = re.search(r"Collected : (\d+)", proc.stderr)
    if match is None:
        raise BenchError(f"no callgrind summary for {build.program}:\n{proc.stderr}")
    return int(match.group(1))


def symbol_lookups(build, expected):
    """ld.so's symbol lookups, from ``LD_DEBUG=statistics``.

    ld.so prints "number of relocations" after start-up and "final number
    of relocations" at exit.  Both count symbol lookups only (glibc's
    dl_num_relocations): relative relocations are counted apart, as
    "number of relative relocations", and are not part of either number.
    The difference between the two is what a lazy build resolves while
    it runs.  Run without LD_BIND_NOW, so a lazy build stays lazy.
    """
    proc = run_program(build, env={"LD_DEBUG": "statistics"})
    expect_output(build, proc.stdout, expected)

    def number(label):
        match = re.search(rf"^\s*\d+:\s+{label}: (\d+)$", proc.stderr, re.M)
        if match is None:
            raise BenchError(f"no '{label}' in LD_DEBUG=statistics of {build.program}")
        return int(match.group(1))

    return {"startup": number("number of relocations"),
            "total": number("final number of relocations"),
            "relative": number("number of relative relocations")}


def check_prebound(build, expected):
    """Every slot of ``build``'s program is bound in its file, and a run
    binds nothing: no ``mremap`` of a slot page copy and no ``mprotect``
    making one writable in place (the binder's ways of writing), so the
    start-up measured is the pre-bound one."""
    image = read_image(build.program)
    _, section = image.section(SLOTS_SECTION)
    code = image.bytes_at(section.offset, section.size)
    unbound = sum(code[i] == UNBOUND_SLOT for i in range(0, len(code), 16))
    if unbound:
        raise BenchError(f"{build.program}: {unbound} slots are not pre-bound")
    trace = build.program.with_suffix(".strace")
    proc = run_program(build, wrapper=("strace", "-f", "-qq", "-e", "trace=mremap,mprotect",
                                          "-o", trace))
    expect_output(build, proc.stdout, expected)
    if re.search(r"mremap\(|mprotect\([^)]*, PROT_READ\|PROT_WRITE\)", trace.read_text()):
        raise BenchError(f"{build.program}: the binder rebound pre-bound slots "
                         f"(is {build.libdir} at its base?)")


def import_bytes(build):
    """Bytes the program spends on its imports: the linkage sections
    (page padding included), the slot indices and pre-binding record."""
    image = read_image(build.program)
    _, index = image.section(INDEX_SECTION)
    return sum(linkage_bytes(str(build.program)).values()) + (index.size if index else 0)


def text_bytes(build):
    return read_image(build.program).section(".text")[1].size


def program_linkage(builds):
    """``linkage_bytes`` of every build's program, by section."""
    return {b.key: linkage_bytes(str(b.program)) for b in builds}


def library_linkage(stock_library, vectored_library, vector):
    """``linkage_bytes`` of the library, stock and vectored (with its export vector)."""
    return {"stock": linkage_bytes(str(stock_library)),
            "vectored": linkage_bytes(str(vectored_library), vector_prefix=vector)}


def slot_accounting(vectored, stock):
    """Where the vectored program's slot pages go, and the binder's code size.

    The slots are measured from their symbols (one per slot, each of its
    own size), so the rest of ``.elfvector.slots`` is page padding.  The
    binder and its trampoline are the growth of ``.text`` over the stock
    build of the same objects (``linkage_bytes`` does not count ``.text``).
    """
    image = read_image(vectored.program)
    _, section = image.section(SLOTS_SECTION)
    start, end = section.addr, section.addr + section.size
    slots = [s for _, s in image.static_symbols() if s.size and start <= s.value < end]
    used = sum(s.size for s in slots)
    stock_text = read_image(stock.program).section(".text")[1].size
    _, index = image.section(INDEX_SECTION)
    return {"slots": len(slots), "slot_bytes": used, "page_padding": section.size - used,
            "index_bytes": index.size if index else 0,
            "binder_text_bytes": image.section(".text")[1].size - stock_text}


def ns_per_call(loops, calls, reps, rounds, expected_checksum):
    """ns per call of each loop program in every round: {key: [ns, ...]}.

    Each run times ``reps`` repetitions itself and reports its best; the
    programs take turns for ``rounds`` rounds, so that round i of two
    programs ran close in time and their ratio is a paired comparison
    that a slow spell of the shared machine does not skew.
    """
    runs = {loop.key: [] for loop in loops}
    for _ in range(rounds):
        for loop in loops:
            ns, checksum = run_program(loop, str(calls), str(reps)).stdout.split()
            if int(checksum) != expected_checksum:
                raise BenchError(f"{loop.title} ({loop.program}) made the wrong calls: "
                                 f"checksum {checksum}, expected {expected_checksum}")
            runs[loop.key].append(float(ns))
    return runs


def _function_address(library, name):
    """``name``'s address in ``library``, relative to its load base (.dynsym)."""
    image = read_image(library)
    for sym_name, sym in zip(image.symbol_names(), image.dynsyms()):
        if sym_name == name and sym.defined:
            return sym.value
    raise BenchError(f"{library} does not define {name}")


def _decode_slot(code, address):
    """The encoding and the jump target of a bound slot's bytes (None: not bound)."""
    if code[0] == 0xE9:
        return "jmp rel32", address + 5 + int.from_bytes(code[1:5], "little", signed=True)
    if code[:6] == bytes.fromhex("ff2502000000"):
        return "jmp *8(%rip)", int.from_bytes(code[8:16], "little")
    return None, None


def slot_binding(loop, callee_library, function):
    """How ``loop``'s slot is bound, read from inside the running process.

    The program runs one call, then prints the 16 bytes at the slot (the
    caller's load base + the slot's offset), every loaded object's base and
    /proc/self/maps.  The slot must be bound (not ``e8`` to the binder), and
    jump exactly to ``function`` in ``callee_library`` as it is mapped in
    that process, inside an executable mapping of that file.
    """
    proc = run_program(loop.build, "1", "1", loop.object, f"{loop.target:x}")
    lines = proc.stdout.splitlines()
    slot_line = next((line for line in lines if line.startswith("slot ")), None)
    if slot_line is None:
        raise BenchError(f"{loop.build.program}: the slot probe printed nothing:\n{proc.stdout}")
    words = slot_line.split()
    address, code = int(words[1], 16), bytes(int(b, 16) for b in words[2:])
    bases = {}
    for line in lines:
        if line.startswith("object "):
            _, base, name = line.split(" ", 2)
            bases[name] = int(base, 16)
    maps = [line[4:] for line in lines if line.startswith("map ")]
    callee = next((base for name, base in bases.items()
                   if name.rsplit("/", 1)[-1] == callee_library.name), None)
    if callee is None:
        raise BenchError(f"{loop.build.program}: {callee_library.name} is not loaded")
    expected = callee + _function_address(callee_library, function)
    encoding, target = _decode_slot(code, address)
    where = f"{loop.build.program} ({loop.build.title}, caller {loop.group})"
    if encoding is None:
        raise BenchError(f"{where}: slot at {address:#x} is not bound: {code.hex(' ')}")
    if target != expected:
        raise BenchError(f"{where}: slot at {address:#x} ({code.hex(' ')}) jumps to {target:#x}, "
                         f"but {function} is at {expected:#x}")
    target_map, slot_map = _mapping(maps, target), _mapping(maps, address)
    if target_map is None or "x" not in target_map.split()[1] \
            or not target_map.rstrip().endswith(callee_library.name):
        raise BenchError(f"{where}: the slot's target {target:#x} is not in an executable mapping "
                         f"of {callee_library.name}: {target_map}")
    return {"slot": f"{address:#x}", "bytes": code.hex(" "), "encoding": encoding,
            "target": f"{target:#x}", "function": f"{expected:#x}",
            "distance": target - address, "slot_mapping": slot_map,
            "target_mapping": target_map}


def _mapping(maps, address):
    """The /proc/self/maps line (whitespace squeezed) that contains ``address``."""
    for line in maps:
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        if start <= address < end:
            return " ".join(line.split())
    return None
