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
"""
import json
import os
import struct

import gdb

spec = json.load(open(os.environ["ELFVECTOR_SPEC"]))
stop_path, stop_address = spec.pop("@stop")


def mapped(pid):
    """Real path -> lowest address mapped, for the files of the spec."""
    found = {}
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].rstrip("\n") in spec:
                found.setdefault(parts[5].rstrip("\n"), int(parts[0].split("-")[0], 16))
    return found


gdb.execute("set stop-on-solib-events 1")
gdb.execute("run", to_string=True)
inferior = gdb.selected_inferior()
while len(mapped(inferior.pid)) < len(spec):
    gdb.execute("continue", to_string=True)
gdb.execute("set stop-on-solib-events 0")
starts = mapped(inferior.pid)
bias = {path: starts[path] - low for path, (low, _) in spec.items()}
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
