"""Print what vectoring changed in the demo: relocations and bytes per function."""

import os
import re
import subprocess
import sys

from elfvector.measure import linkage_bytes

out = sys.argv[1]


def ld_debug_statistics(program, library_dir):
    env = dict(os.environ, LD_DEBUG="statistics", LD_BIND_NOW="1", LD_LIBRARY_PATH=library_dir)
    err = subprocess.run([program], env=env, capture_output=True, text=True).stderr
    total = int(re.search(r"final number of relocations:\s*(\d+)", err).group(1))
    relative = sum(int(n) for n in re.findall(r"number of relative relocations:\s*(\d+)", err))
    return total - relative


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
print(f"symbol relocations processed by ld.so at start-up (LD_BIND_NOW=1, whole process): "
      f"stock {ld_debug_statistics(stock, os.path.join(out, 'stock'))}, "
      f"vectored {ld_debug_statistics(vec, out)}")
before, after = linkage_bytes(stock), linkage_bytes(vec)
print(f"\nlinkage bytes of testmain ({nfunc} functions of foo.so.5 imported):")
print(f"  {'section':18} {'stock':>7} {'vectored':>9}")
for name in before:
    if before[name] or after[name]:
        print(f"  {name:18} {before[name]:7} {after[name]:9}")
print("  (.elfvector.slots is padded to whole pages so that binding dirties no other code;"
      " each slot is 16 bytes)")
lib_stock = linkage_bytes(os.path.join(out, "stock", "foo.so.5"))
lib_vec = linkage_bytes(os.path.join(out, "foo.so.5"), vector_prefix="__V_foo_so_5")
print(f"\nfoo.so.5 export side: export vector {lib_vec.get('export vector', 0)} bytes"
      f" = 4 per function; .dynsym {lib_stock['.dynsym']} -> {lib_vec['.dynsym']},"
      f" .dynstr {lib_stock['.dynstr']} -> {lib_vec['.dynstr']} (the vector symbols)")
