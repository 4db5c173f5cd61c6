"""Run by gdb (``gdb -batch -x gdb_before_init.py --args PROGRAM...``), never
imported: the writable segments of every object once ld.so has relocated
them all, before the first constructor runs (constructors rewrite data,
e.g. a library's table of implementations).

$ELFVECTOR_SPEC (JSON) names, per real path, the lowest PT_LOAD address
(page) and the address ranges to read, and under "@stop" where to stop:
(path, address) of the first constructor, or of the program's entry point
when there is none.  $ELFVECTOR_DUMP receives, per range, a header "<HQQQ"
(path length, load bias, start, size), the path, the bytes.  Adapted from
the resolver tests' testdata/ldso/gdb_before_init.py.

With $ELFVECTOR_REMOTE (a qemu-user gdbstub's socket; ``gdb-multiarch``)
the program already waits under qemu at its first instruction: there is
no /proc of the guest, so the objects and their biases come from ld.so's
link map (``_r_debug``), each name as the guest opened it, under the
guest's root $ELFVECTOR_ROOT when it is not a file here, and "@main"
names the program (whose link-map name is empty).
"""
import json
import os
import struct
import time

import gdb

spec = json.load(open(os.environ["ELFVECTOR_SPEC"]))
stop_path, stop_address = spec.pop("@stop")
main_path = spec.pop("@main", None)
remote = os.environ.get("ELFVECTOR_REMOTE")


def mapped(pid):
    """Real path -> lowest address mapped, for the files of the spec."""
    found = {}
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].rstrip("\n") in spec:
                found.setdefault(parts[5].rstrip("\n"), int(parts[0].split("-")[0], 16))
    return found


def biases_native():
    starts = mapped(gdb.selected_inferior().pid)
    return {path: starts[path] - spec[path][0] for path in starts}


def host_path(name):
    """The file the guest opened as ``name``: ``name`` itself if it exists
    here (qemu -L falls back to it), else under the guest's root."""
    if not name:
        return main_path
    root = os.environ.get("ELFVECTOR_ROOT", "")
    if root and not os.path.exists(name):
        name = os.path.join(root, name.lstrip("/"))
    return os.path.realpath(name)


def biases_remote():
    """Real path -> load bias (l_addr) of the objects of ld.so's link map."""
    inferior, found = gdb.selected_inferior(), {}
    size = gdb.lookup_type("long").sizeof

    def word(address):
        return int.from_bytes(bytes(inferior.read_memory(address, size)), "little")

    def string(address):
        """The C string at ``address``, read a page at most at a time (the
        next page may not be mapped)."""
        text = b""
        while b"\0" not in text:
            chunk = 4096 - (address + len(text)) % 4096
            text += bytes(inferior.read_memory(address + len(text), chunk))
        return text.split(b"\0")[0].decode("utf-8", "surrogateescape")
    entry = word(int(gdb.parse_and_eval("(long) &_r_debug")) + size)   # r_map
    while entry:
        bias, name, _, entry = (word(entry + k * size) for k in range(4))
        path = host_path(string(name) if name else "")
        if path in spec:
            found.setdefault(path, bias)
    return found


biases = biases_remote if remote else biases_native
def connect(attempts=50):
    """``target remote`` qemu's socket, which exists from its bind(), a
    moment before its listen()."""
    for attempt in range(attempts):
        try:
            gdb.execute(f"target remote {remote}", to_string=True)
            return
        except gdb.error:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1)


if remote:
    connect()
    gdb.execute("set stop-on-solib-events 1")
    gdb.execute("continue", to_string=True)
else:
    gdb.execute("set stop-on-solib-events 1")
    gdb.execute("run", to_string=True)
inferior = gdb.selected_inferior()
while len(biases()) < len(spec):
    gdb.execute("continue", to_string=True)
gdb.execute("set stop-on-solib-events 0")
bias = biases()
gdb.execute(f"tbreak *{bias[stop_path] + stop_address:#x}", to_string=True)
gdb.execute("continue", to_string=True)
with open(os.environ["ELFVECTOR_DUMP"], "wb") as out:
    for path, (_, ranges) in spec.items():
        for start, end in ranges:
            data = bytes(inferior.read_memory(bias[path] + start, end - start))
            name = path.encode("utf-8", "surrogateescape")
            out.write(struct.pack("<HQQQ", len(name), bias[path], start, len(data)))
            out.write(name + data)
gdb.execute("kill", to_string=True)
