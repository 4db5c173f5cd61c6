#!/usr/bin/env bash
# The seed's example, end to end: foo.so.5 with expvec, testmain with impvec.
# Run by `make demo` with the venv's commands first on PATH.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$here/../testdata
out=$here/out
rm -rf "$out" && mkdir -p "$out" && cd "$out"
export LD_LIBRARY_PATH=$out${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

step() { printf '\n$ %s\n' "$*"; "$@"; }

echo "== 1. the library, with an export vector (the seed's Makefile line)"
step gcc -fPIC -O2 -c "$src/foo.c" -o foo.o
printf '\n$ expvec @foo.order %s vscript gcc -shared -Wl,-soname=foo.so.5 -o foo.so.5 foo.o > foo.vec 3> foo.vec.o\n' "''"
expvec @"$src/foo.order" '' "$src/foo.vscript" gcc -shared -Wl,-soname=foo.so.5 -o foo.so.5 foo.o > foo.vec 3> foo.vec.o
cat foo.vec

echo
echo "== 2. the program, with an import vector"
step gcc -O2 -I"$src" -c "$src/testmain.c" -o testmain.o
printf '\n$ impvec %s foo.vec gcc -o testmain testmain.o foo.so.5 > foo_imp.s\n' "'^free\$ ^malloc\$ ^calloc\$ ^realloc\$'"
impvec '^free$ ^malloc$ ^calloc$ ^realloc$' foo.vec gcc -o testmain testmain.o foo.so.5 > foo_imp.s
step gcc -c foo_imp.s -o foo_imp.o
step gcc -o testmain testmain.o foo_imp.o foo.so.5
echo "   and the same program linked the usual way, for comparison:"
mkdir -p stock
gcc -shared -Wl,-soname=foo.so.5 -o stock/foo.so.5 foo.o
gcc -o testmain.stock testmain.o stock/foo.so.5

echo
echo "== 3. run both"
echo '$ ./testmain'
rc=0; ./testmain | tee vec.out || rc=$?
stock_rc=0; LD_LIBRARY_PATH=$out/stock ./testmain.stock > stock.out || stock_rc=$?
echo "(exit $rc; the stock build exits $stock_rc)"
if cmp -s stock.out vec.out && [ "$rc" = "$stock_rc" ]; then
    echo "same output and exit status as the stock build"
else
    echo "DIFFERENT from the stock build:"; diff stock.out vec.out; exit 1
fi

echo
echo "== 4. what changed"
python3 "$here/report.py" "$out"
