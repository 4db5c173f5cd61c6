"""Print what vectoring changed in the demo: relocations and bytes per function."""

import os
import re
import subprocess
import sys

from elfvector.measure import linkage_bytes

out = sys.argv[1]


def symbol_lookups(program, library_dir):
    """Symbol lookups ld.so made for the whole process (BIND_NOW).

    glibc counts relative relocations separately, so "final number of
    relocations" is exactly the number of symbol lookups.
    """
    env = dict(os.environ, LD_DEBUG="statistics", LD_BIND_NOW="1", LD_LIBRARY_PATH=library_dir)
    err = subprocess.run([program], env=env, capture_output=True, text=True).stderr
    return int(re.search(r"final number of relocations:\s*(\d+)", err).group(1))


def symbol_relocations(path):
    text = subprocess.run(["readelf", "-rW", path], capture_output=True, text=True).stdout
    return sum(1 for line in text.splitlines()
               if re.search(r"R_X86_64_(GLOB_DAT|JUMP_SLOT|64|COPY)\b", line))


stock = os.path.join(out, "testmain.stock")
vec = os.path.join(out, "testmain")
nfunc = sum(1 for line in open(os.path.join(out, "foo.vec")) if line.strip()
            and not line.startswith(("#", "__V_")))
print(f"symbol relocations in the program file: stock {symbol_relocations(stock)}, "
      f"vectored {symbol_relocations(vec)}")
print(f"symbol lookups by ld.so (LD_BIND_NOW=1, whole process with libc): "
      f"stock {symbol_lookups(stock, os.path.join(out, 'stock'))}, "
      f"vectored {symbol_lookups(vec, out)}")
before, after = linkage_bytes(stock), linkage_bytes(vec)
print(f"\nlinkage bytes of testmain ({nfunc} functions of foo.so.5 imported):")
print(f"  {'section':18} {'stock':>7} {'vectored':>9}")
for name in before:
    if before[name] or after[name]:
        print(f"  {name:18} {before[name]:7} {after[name]:9}")
print("  (.elfvector.slots shares its pages with other code; each slot is 16 bytes,"
      " each slot index 4 in .elfvector.index)")
lib_stock = linkage_bytes(os.path.join(out, "stock", "foo.so.5"))
lib_vec = linkage_bytes(os.path.join(out, "foo.so.5"), vector_prefix="__V_foo_so_5")
print(f"\nfoo.so.5 export side: export vector {lib_vec.get('export vector', 0)} bytes"
      f" = 4 per function; .dynsym {lib_stock['.dynsym']} -> {lib_vec['.dynsym']},"
      f" .dynstr {lib_stock['.dynstr']} -> {lib_vec['.dynstr']} (the vector symbols)")
