#!/usr/bin/env bash
# A real build through vectool: Debian's lua5.4, built twice from the same
# sources with the same flags, once the usual way and once with vectool in
# front of its link commands, then checked against each other.
#
#   tests/realbuild/build.sh WORKDIR
#
# WORKDIR/apt        Debian's source packages (lua5.4, and lua5.1 for the
#                    test scripts its upstream tarball ships), fetched with
#                    `apt-get source --download-only` when absent: needs a
#                    deb-src entry and `apt-get update` (see .ci/run).
# WORKDIR/lua5.4     the unpacked source, Debian's patches applied
# WORKDIR/lua5.1-test  upstream's test scripts (lua-5.1.5/test in lua5.1's .orig)
# WORKDIR/build/normal, WORKDIR/build/vectool
#                    fresh copies of lua5.4, rebuilt on every run (the
#                    downloads and unpacked trees are kept: reruns are cheap)
# WORKDIR/build/vectool-group  the addrfile and the rpathdir
# WORKDIR/run, WORKDIR/out     each build's scratch directory, and what each
#                    check printed there (NAME.out, NAME.err, NAME.rc)
# WORKDIR/results.txt  one "key value" line per number printed
#
# How: Debian's src/Makefile drives libtool, whose shared-library link
# command comes from its own configuration, not from the Makefile; so the
# build uses upstream's src/Makefile (from the .orig tarball) on Debian's
# patched sources and Debian's flags, and builds the shared library the way
# upstream's own `mingw` target builds its DLL: LUA_A=<library> and
# AR='<linker> -shared -o'.  Compiling is one make run (`make o`); linking
# is another, whose only commands are the links, with vectool in front:
#
#   AR = vectool --mode=lib --addrfile=A --rpathdir=R gcc -shared -Wl,-soname=liblua5.4.so.0 ... -o
#   CC = vectool --mode=prog --rpathdir=R gcc -std=gnu99        (lua, luac)
#
# lua links against liblua5.4.so.0, non-PIE (so the library sits at its
# fixed base); luac needs Lua's internal functions and links liblua.a, as
# upstream does.  Exits 1 on any difference or failed check, 2 when it
# cannot get or build the sources.
#
# VECTOOL (default: the checkout's .venv python running bin/vectool) is the
# command that runs vectool.

set -euo pipefail

say() { printf '==> %s\n' "$*"; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 2; }

main() {
    [ $# -eq 1 ] || die "usage: $0 WORKDIR"
    mkdir -p "$1"
    WORK=$(cd "$1" && pwd)
    case "$WORK" in *[[:space:]]*) die "$WORK: the work directory must not contain spaces (make splits on them)";; esac
    ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    if [ -z "${VECTOOL:-}" ]; then
        if [ -x "$ROOT/.venv/bin/python" ]; then VECTOOL="$ROOT/.venv/bin/python $ROOT/bin/vectool"
        else VECTOOL="python3 $ROOT/bin/vectool"; fi
    fi
    for tool in gcc make ar readelf apt-get dpkg-source dpkg-buildflags dpkg-architecture; do
        command -v "$tool" >/dev/null || die "$tool not found (Debian packages: gcc make binutils apt dpkg-dev)"
    done
    [ -e /usr/include/readline/readline.h ] || die "readline/readline.h not found (Debian package: libreadline-dev)"
    start=$SECONDS
    failures=0
    fail() { printf 'FAIL: %s\n' "$*"; failures=$((failures + 1)); }
    results=()
    result() { results+=("$1 $2"); printf '    %-28s %s\n' "$1" "$2"; }

    # -- 1. the sources, from Debian's archive --------------------------------
    APT=$WORK/apt
    mkdir -p "$APT"
    fetch() {   # fetch PACKAGE: its .dsc and files into $APT, once
        if ! compgen -G "$APT/$1_*.dsc" >/dev/null; then
            say "fetching the source package $1: (cd $APT && apt-get source --download-only $1)"
            if ! (cd "$APT" && apt-get source --download-only "$1"); then
                die "'apt-get source --download-only $1' failed: it needs a deb-src entry for Debian's archive (e.g. a copy of /etc/apt/sources.list.d/debian.sources with 'Types: deb-src'), then 'apt-get update'"
            fi
        else
            say "source package $1: already in $APT"
        fi
    }
    fetch lua5.4
    fetch lua5.1
    DSC=$(ls "$APT"/lua5.4_*.dsc | sort -V | tail -1)
    ORIG=$(ls "$APT"/lua5.4_*.orig.tar.* | sort -V | tail -1)
    ORIG51=$(ls "$APT"/lua5.1_*.orig.tar.* | sort -V | tail -1)
    SRC=$WORK/lua5.4
    if [ ! -f "$SRC/.unpacked" ]; then
        say "unpacking $(basename "$DSC") into $SRC (dpkg-source -x applies Debian's patches)"
        rm -rf "$SRC"
        dpkg-source -q -x "$DSC" "$SRC"
        touch "$SRC/.unpacked"
    fi
    TESTS51=$WORK/lua5.1-test
    if [ ! -f "$TESTS51/.unpacked" ]; then
        say "unpacking the test scripts of $(basename "$ORIG51") into $TESTS51"
        rm -rf "$TESTS51" && mkdir -p "$TESTS51"
        tar -xf "$ORIG51" -C "$TESTS51" --strip-components=2 --wildcards '*/test/*'
        touch "$TESTS51/.unpacked"
    fi
    VERSION=$(basename "$DSC" .dsc); VERSION=${VERSION#lua5.4_}
    result source "lua5.4 $VERSION"

    # -- 2. two builds -----------------------------------------------------------
    MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
    SONAME=liblua5.4.so.0
    declare -A LIBDIR
    build() {   # build KIND LIBLINK PROGLINK: a fresh tree in $WORK/build/KIND
        local kind=$1 liblink=$2 proglink=$3 tree=$WORK/build/$1 log=$WORK/build/$1.log
        say "build $kind: fresh copy of the sources in $tree"
        rm -rf "$tree" "$log"
        mkdir -p "$WORK/build"
        cp -a "$SRC" "$tree"
        # upstream's Makefile (Debian's patch 0001 turns it into a libtool build)
        tar -xf "$ORIG" -C "$tree/src" --strip-components=2 --wildcards '*/src/Makefile'
        # what debian/rules writes in override_dh_auto_configure
        printf '#ifndef _LUA_DEB_MULTIARCH_\n#define _LUA_DEB_MULTIARCH_\n#define DEB_HOST_MULTIARCH "%s"\n#endif\n' \
            "$MULTIARCH" > "$tree/src/lua5.4-deb-multiarch.h"
        # Debian's version script, with vectool's __V_* symbols kept global
        sed '0,/global:/s//global:\n\t\t__V_*;/' "$tree/debian/version-script" > "$tree/version-script"
        # Debian's flags; -ffile-prefix-map=$tree=. makes both trees' objects alike
        local cflags cppflags ldflags
        cflags=$(cd "$tree" && dpkg-buildflags --get CFLAGS)
        cppflags=$(cd "$tree" && dpkg-buildflags --get CPPFLAGS)
        ldflags=$(cd "$tree" && dpkg-buildflags --get LDFLAGS)
        local common=("SYSCFLAGS=-DLUA_USE_LINUX -DLUA_USE_READLINE"
                      "SYSLIBS=-Wl,-E -ldl -lreadline"
                      "MYCFLAGS=-fPIC $cflags $cppflags"
                      "MYLDFLAGS=$ldflags -no-pie")
        say "build $kind: compile (make -C src o; log in $log)"
        make -C "$tree/src" -j2 "${common[@]}" "CC=gcc -std=gnu99" o > "$log" 2>&1 \
            || { tail -20 "$log"; die "build $kind: compiling failed"; }
        # The links only (the objects are up to date).  -lm comes before the
        # objects in AR's command, and Debian's gcc links --as-needed: hence
        # --no-as-needed around it, so that the library needs libm as Debian's does.
        link_lua() {
            make -C "$tree/src" --no-print-directory "${common[@]}" "CC=${proglink}gcc -std=gnu99" \
                LUA_A=$SONAME RANLIB=: \
                "AR=${liblink}gcc -shared -Wl,-soname=$SONAME -Wl,--version-script=$tree/version-script $ldflags -Wl,--push-state,--no-as-needed -lm -Wl,--pop-state -o" \
                lua 2>&1 | tee -a "$log"
        }
        say "build $kind: link $SONAME and lua, then liblua.a and luac"
        link_lua || die "build $kind: linking $SONAME or lua failed"
        if [ "$kind" = vectool ]; then
            say "build $kind: link $SONAME and lua once more: same base, same vector, same bytes"
            local first=$WORK/build/first-link f same=yes
            rm -rf "$first" && mkdir -p "$first"
            cp "$VT/addrs" "$tree/src/$SONAME" "$tree/src/$SONAME.vec" "$tree/src/lua" "$first/"
            rm "$tree/src/$SONAME" "$tree/src/lua"
            link_lua || die "build $kind: linking $SONAME or lua again failed"
            for f in "$VT/addrs" "$tree/src/$SONAME" "$tree/src/$SONAME.vec" "$tree/src/lua"; do
                cmp -s "$f" "$first/$(basename "$f")" || { same=no; fail "relinking changed $f"; }
            done
            result relink_identical "$same"
        fi
        if ! make -C "$tree/src" --no-print-directory "${common[@]}" "CC=${proglink}gcc -std=gnu99" \
                luac 2>&1 | tee -a "$log"; then
            die "build $kind: linking luac failed"
        fi
    }
    VT=$WORK/build/vectool-group           # the addrfile and the rpathdir
    rm -rf "$VT" && mkdir -p "$VT"         # vectool creates the addrfile, not its directory
    t0=$SECONDS
    build normal "" ""
    result build_normal_seconds $((SECONDS - t0))
    t0=$SECONDS
    build vectool "$VECTOOL --mode=lib --addrfile=$VT/addrs --rpathdir=$VT/rp " \
                  "$VECTOOL --mode=prog --rpathdir=$VT/rp "
    result build_vectool_seconds $((SECONDS - t0))
    N=$WORK/build/normal/src
    V=$WORK/build/vectool/src
    LIBDIR[normal]=$N
    LIBDIR[vectool]=$VT/rp

    say "same sources, same flags: the object files of both builds must be identical"
    same=0 total=0
    for o in "$N"/*.o; do
        total=$((total + 1))
        if cmp -s "$o" "$V/$(basename "$o")"; then same=$((same + 1)); else fail "$(basename "$o") differs"; fi
    done
    result objects_identical "$same/$total"
    if cmp -s "$N/luac" "$V/luac"; then result luac_identical yes
    else result luac_identical no; fi

    # -- 3. the checks, run by both builds --------------------------------------
    OUT=$WORK/out
    RUN=$WORK/run
    rm -rf "$OUT" "$RUN"
    COMPAT='table.getn = function(t) return #t end
    math.mod = math.fmod; loadstring = load; unpack = table.unpack; math.randomseed(0)
    os.clock = function() return 0 end; os.date = function() return "Sat Jan  1 00:00:00 2000" end
    getfenv = function() return _G end
    setfenv = function(level, env)
      local f = debug.getinfo(level + 1, "f").func
      for i = 1, math.huge do
        local name = debug.getupvalue(f, i)
        if name == nil then return f end
        if name == "_ENV" then debug.setupvalue(f, i, env) return f end
      end
    end'
    for kind in normal vectool; do
        mkdir -p "$OUT/$kind" "$RUN/$kind"
        cp "$TESTS51"/*.lua "$RUN/$kind/"
    done
    write_inputs() {   # the same inputs in both scratch directories
        local d=$1
        workload_lua > "$d/workload.lua"
        printf 'x = 6 * 7\nprint(x)\n= x + 1\nfor i = 1, 3 do\nio.write(i)\nend\nprint()\nerror("oops")\nprint(#arg)\n' > "$d/repl.txt"
        printf 'return {value = "loaded with -l", sum = 1 + 2}\n' > "$d/mod.lua"
        printf 'local x = = 1\n' > "$d/bad.lua"
        printf 'print("LUA_INIT ran")\n' > "$d/init.lua"
        for i in 5 3 1 4 2; do printf 'item%d data%d\nitem%d more%d\n' $((i % 3)) "$i" $((i % 3)) "$i"; done > "$d/items.txt"
    }
    for kind in normal vectool; do write_inputs "$RUN/$kind"; done

    cases=0
    # check NAME [--in FILE] [--env K=V] [--addr] PROGRAM ARGS...: run in both builds, compare
    check() {
        local name=$1; shift
        local input=/dev/null addr=0 env=() kind bin rc lines
        while :; do
            case $1 in
                --in) input=$2; shift 2;;
                --env) env+=("$2"); shift 2;;
                --addr) addr=1; shift;;
                *) break;;
            esac
        done
        local prog=$1; shift
        cases=$((cases + 1))
        for kind in normal vectool; do
            bin=$WORK/build/$kind/src/$prog
            rc=0
            ( cd "$RUN/$kind" && exec env -i PATH=/usr/bin:/bin LC_ALL=C TZ=UTC TERM=dumb \
                  LD_LIBRARY_PATH="${LIBDIR[$kind]}" "${env[@]}" \
                  bash -c 'exec -a "$0" "$@"' "$prog" "$bin" "$@" ) \
                < "$input" > "$OUT/$kind/$name.out" 2> "$OUT/$kind/$name.err" || rc=$?
            echo $rc > "$OUT/$kind/$name.rc"
            if [ $addr = 1 ]; then   # luac -l prints where each function lives
                sed -i 's/0x[0-9a-f]\{6,\}/0xADDR/g' "$OUT/$kind/$name.out"
            fi
        done
        rc=$(cat "$OUT/normal/$name.rc")
        lines=$(cat "$OUT/normal/$name.out" | wc -l)
        if diff -q "$OUT/normal/$name.out" "$OUT/vectool/$name.out" >/dev/null &&
           diff -q "$OUT/normal/$name.err" "$OUT/vectool/$name.err" >/dev/null &&
           [ "$rc" = "$(cat "$OUT/vectool/$name.rc")" ]; then
            printf '    same  %-26s exit %-3s %6s lines\n' "$name" "$rc" "$lines"
        else
            fail "$name: the two builds differ:"
            diff "$OUT/normal/$name.rc" "$OUT/vectool/$name.rc" | head -5 || true
            diff "$OUT/normal/$name.out" "$OUT/vectool/$name.out" | head -10 || true
            diff "$OUT/normal/$name.err" "$OUT/vectool/$name.err" | head -10 || true
        fi
    }
    say "checks: every one runs in both builds (cwd $RUN/KIND); stdout, stderr and exit status must match"
    check lua-v lua -v
    check luac-v luac -v
    # upstream's test scripts (lua-5.1's test/), under a small 5.1 compatibility prelude
    for script in bisect cf env factorial fib fibfor hello life printf readonly sieve sort \
                  trace-globals; do
        check "t51-$script" lua -e "$COMPAT" "$script.lua"
    done
    check t51-echo lua -e "$COMPAT" echo.lua one two three
    check t51-trace-calls lua -e "$COMPAT" -l trace-calls bisect.lua
    check t51-table --in "$RUN/normal/items.txt" lua table.lua
    check t51-luac lua -e "$COMPAT" luac.lua life.lua
    check t51-luac.out lua luac.out
    check t51-xd-luac.out --in "$RUN/normal/luac.out" lua xd.lua
    check t51-globals --in "$TESTS51/README" lua globals.lua
    # a deterministic tour of Lua 5.4 (workload_lua, at the end of this file)
    check workload lua workload.lua arg1 arg2
    check workload-stdin --in "$RUN/normal/workload.lua" lua - arg1
    check luac-o luac -o workload.luac workload.lua
    check xd-workload.luac --in "$RUN/normal/workload.luac" lua xd.lua
    check workload.luac lua workload.luac arg1 arg2
    for script in workload life sort trace-calls; do
        check "luac-l-$script" --addr luac -l -l -p "$script.lua"
    done
    check luac-syntax-error luac bad.lua
    check lua-syntax-error lua bad.lua
    check repl --in "$RUN/normal/repl.txt" lua -i
    check lua-l lua -l mod -e 'print(mod.value, mod.sum)'
    check lua-init --env LUA_INIT=@init.lua lua -e 'print("after init")'
    check lua-E --env LUA_INIT=@init.lua lua -E -e 'print(package.path)'
    check lua-W lua -W -e 'warn("a ", "warning")'
    check lua-exit lua -e 'io.write("bye\n") os.exit(3)'
    check lua-error lua -e 'error("boom")'
    check lua-error-object lua -e 'error(setmetatable({}, {__tostring = function() return "custom" end}))'
    check lua-bad-option lua --no-such-option
    result checks_compared "$cases"

    say "bytecode: luac of both builds must write the same bytes"
    if cmp "$RUN/normal/workload.luac" "$RUN/vectool/workload.luac"; then result bytecode_identical yes
    else result bytecode_identical no; fail "luac wrote different bytecode"; fi

    # -- 4. the library: fixed base, lookups, layout check ------------------------
    say "the vectool library: base from the addrfile, sitting there under the non-PIE lua"
    cat "$VT/addrs" || fail "no addrfile"
    base_hex=$(readelf -lW "$V/$SONAME" | awk '$1 == "LOAD" { print $3; exit }' || true)
    base=$((${base_hex:-0}))
    addr_base=$(awk -v s="$SONAME" '$2 == s { print $1 }' "$VT/addrs" 2>/dev/null || true)
    [ -n "$addr_base" ] && [ "$((addr_base))" = "$base" ] || fail "first PT_LOAD at $base_hex, addrfile says '$addr_base'"
    result lib_base "$(printf '%#x' "$base")"
    link_map() {   # link_map KIND: "l_addr phdr" of liblua in KIND's lua (LD_DEBUG=files)
        env -i LD_LIBRARY_PATH="${LIBDIR[$1]}" LD_DEBUG=files "$WORK/build/$1/src/lua" -e '' 2>&1 \
            | awk -v s="$SONAME" '$0 ~ "file=" s " \\[0\\];  generating link map" { grab = 2; next }
                                  grab && /base:/ { for (i = 1; i <= NF; i++) if ($i == "base:") b = $(i + 1) }
                                  grab && /phdr:/ { for (i = 1; i <= NF; i++) if ($i == "phdr:") p = $(i + 1); grab = 0 }
                                  END { print b, p }' || true
    }
    read -r l_addr phdr <<< "$(link_map vectool)"
    result lib_l_addr_vectool "$l_addr"
    [ -n "$l_addr" ] && [ "$((l_addr))" = 0 ] || fail "liblua is not at its base under the vectool lua (l_addr $l_addr)"
    [ -n "$phdr" ] && [ "$((phdr))" = "$((base + 64))" ] || fail "liblua's program headers at $phdr, not at base + 64"
    read -r l_addr_normal _ <<< "$(link_map normal)"
    result lib_l_addr_normal "$l_addr_normal"
    maps() {   # where KIND's lua sees liblua mapped, from its own /proc/self/maps
        env -i LD_LIBRARY_PATH="${LIBDIR[$1]}" "$WORK/build/$1/src/lua" -e '
          for l in io.lines("/proc/self/maps") do
            if l:find("'"$SONAME"'", 1, true) then print("0x" .. l:match("^(%x+)")) return end
          end'
    }
    m1=$(maps vectool || true); m2=$(maps vectool || true)
    result lib_mapped_at "$m1 $m2"
    [ -n "$m1" ] && [ -n "$m2" ] && [ "$((m1))" = "$base" ] && [ "$((m2))" = "$base" ] || fail "liblua mapped at $m1, $m2, not at $base_hex"

    say "symbol lookups and relocations (LD_DEBUG=statistics, LD_BIND_NOW=1, lua -e '')"
    ldstat() {   # ldstat KIND FIELD: ld.so's statistic line "FIELD: N"
        env -i LD_LIBRARY_PATH="${LIBDIR[$1]}" LD_BIND_NOW=1 LD_DEBUG=statistics "$WORK/build/$1/src/lua" -e '' 2>&1 \
            | awk -v f="$2" 'index($0, " " f ":") { n = $NF } END { print n }' || true
    }
    lookups_normal=$(ldstat normal "number of relocations")
    lookups_vectool=$(ldstat vectool "number of relocations")
    result lookups_normal "$lookups_normal"
    result lookups_vectool "$lookups_vectool"
    result lookups_saved "$((lookups_normal - lookups_vectool))"
    [ -n "$lookups_vectool" ] && [ "$lookups_vectool" -lt "$lookups_normal" ] || fail "symbol lookups did not drop"
    relative_normal=$(ldstat normal "number of relative relocations")
    relative_vectool=$(ldstat vectool "number of relative relocations")
    result relative_normal "$relative_normal"
    result relative_vectool "$relative_vectool"
    lazy() {   # symbol lookups under lazy binding, running the workload
        ( cd "$RUN/$1" && env -i LD_LIBRARY_PATH="${LIBDIR[$1]}" LD_DEBUG=statistics \
              "$WORK/build/$1/src/lua" workload.lua 2>&1 >/dev/null \
              | awk 'index($0, " final number of relocations:") { n = $NF } END { print n }' || true )
    }
    result lookups_lazy_workload "$(lazy normal) -> $(lazy vectool)"
    liblua_refs() { readelf -rW "$1" | grep -c '@LUA_5.4' || true; }
    result lua_relocs_to_liblua "$(liblua_refs "$N/lua") -> $(liblua_refs "$V/lua")"
    [ "$(liblua_refs "$V/lua")" = 1 ] || fail "the vectool lua still has more than its layout symbol's relocation against liblua"
    slots=$(grep -vc '^#\|^__V_' "$VT/rp/$SONAME.vec" || true)
    exported=$(readelf --dyn-syms -W "$N/$SONAME" | awk '$4 == "FUNC" && $7 != "UND" && $8 ~ /@@LUA_5.4$/' | wc -l)
    result exported_slots "$slots of $exported exported functions"
    [ "$slots" = "$exported" ] || fail "$slots slots for $exported exported functions"

    say "drop-in and layout check"
    ( cd "$RUN/normal" && env -i LD_LIBRARY_PATH="$VT/rp" "$N/lua" workload.lua arg1 arg2 \
          > "$OUT/normal-lua-vectool-lib.out" 2>&1 ) || true
    if cmp -s "$OUT/normal-lua-vectool-lib.out" "$OUT/normal/workload.out"; then
        result normal_lua_with_vectool_lib same
    else result normal_lua_with_vectool_lib differs; fail "the usual lua behaves differently with the vectool library"; fi
    rc=0
    env -i LD_LIBRARY_PATH="$N" "$V/lua" -e 'print("started")' > "$OUT/vectool-lua-normal-lib.out" 2>&1 || rc=$?
    if [ $rc = 127 ] && grep -q 'undefined symbol: __V_liblua5_4_so_0__' "$OUT/vectool-lua-normal-lib.out"; then
        result vectool_lua_with_normal_lib "refused (exit 127)"
    else
        result vectool_lua_with_normal_lib "exit $rc"
        fail "the vectool lua started against a library without its vector: $(head -1 "$OUT/vectool-lua-normal-lib.out")"
    fi
    sed -n '1p' "$OUT/vectool-lua-normal-lib.out"

    result failures "$failures"
    result seconds "$((SECONDS - start))"
    printf '%s\n' "${results[@]}" > "$WORK/results.txt"
    say "results in $WORK/results.txt; outputs in $OUT"
    if [ "$failures" -ne 0 ]; then
        say "$failures check(s) FAILED"
        return 1
    fi
    say "all checks passed: $cases checks, no difference"
    return 0
}

# A deterministic tour of Lua 5.4: its libraries, metatables, coroutines, errors,
# load/dump, io, debug, and a few classic benchmarks.
workload_lua() {
    cat <<'LUA'
-- elfvector real-build workload: a deterministic tour of Lua 5.4 and its C API
local function section(name) io.write("== ", name, "\n") end

section("strings")
print(string.format("%q|%5.2f|%-6s|%x|%g|%a|%i", "a\n\0b\"", math.pi, "ab", 255, 1e300, 1.0, -7))
print(("hello world from lua"):gsub("(%w+)", "<%1>"))
print(("key=val, k2=v2; k3 = v3"):gsub("(%w+)%s*=%s*(%w+)", "%2=%1"))
for k, v in string.gmatch("a=1, b=22, ccc=333", "(%w+)=(%w+)") do io.write(k, ":", v, " ") end
print()
print(string.find("the quick brown fox", "(q%a+)%s+(b%a+)"))
print(("%bxy"):len(), string.find("f(a(b)c)d", "%b()"), ("THE (quick) fox"):find("%f[%a]%a+", 5))
print(string.rep("ab", 5, ","), ("Lua"):rep(0), ("x"):byte(), string.char(72, 105))
print(("MiXeD"):upper(), ("MiXeD"):lower(), ("stressed"):reverse(), #string.rep("z", 100000))
local packed = string.pack("<i4 d s1 z", -2, 0.5, "pk", "zt")
print(#packed, string.unpack("<i4 d s1 z", packed))
print(string.pack(">I2", 0x1234):byte(1, -1))
print(tostring(nil), tostring(true), tostring(12), tostring(1.5), 10 // 3, 10.0 // 3, -7 % 3, 2^10, 7 / 2)
print(math.tointeger(3.0), math.tointeger(3.5), 1e15, 2^53, math.maxinteger + 1 == math.mininteger)
print(string.format("%.14g", 0.1 + 0.2), 3 | 5, 3 & 5, 3 ~ 5, ~0, 1 << 62, 256 >> 4, "10" + 5, "3" * "4")

section("utf8")
local u = utf8.char(72, 228, 8364, 128512)
print(#u, utf8.len(u), utf8.codepoint(u, 1, -1))
for p, c in utf8.codes(u) do io.write(p, "=", c, " ") end
print(utf8.offset(u, 3), #utf8.charpattern, utf8.len("\xff"))

section("tables")
local seed = 12345
local function lcg() seed = (seed * 1103515245 + 12345) % 2147483648; return seed end
local t = {}
for i = 1, 5000 do t[i] = lcg() % 100000 end
table.sort(t)
local ok = true
for i = 2, #t do if t[i - 1] > t[i] then ok = false end end
print("sorted", ok, t[1], t[2500], t[5000])
table.sort(t, function(a, b) return a > b end)
print("desc", t[1], t[5000])
local words = {}
for w in ("the quick brown fox jumps over the lazy dog again and again"):gmatch("%a+") do
  words[#words + 1] = w
end
table.sort(words)
print(table.concat(words, " "))
table.insert(words, 1, "first"); table.insert(words, "last"); print(table.remove(words), table.remove(words, 1), #words)
print(table.unpack(table.move({1, 2, 3, 4, 5}, 2, 4, 1)))
print(select("#", nil, nil, nil), select(2, "a", "b", "c"), select(-1, "a", "b", "c"))
local parts = {}
for i = 1, 20000 do parts[i] = tostring(i) end
local s = table.concat(parts, ",")
print(#s, s:sub(1, 20), s:sub(-20))
print(next({}), rawlen({1, 2, 3}), rawequal(t, t), #arg)

section("math")
math.randomseed(42)
local r = {}
for i = 1, 5 do r[i] = math.random(1, 1000) end
print(table.concat(r, " "), math.random(0) ~= nil)
print(math.floor(-3.5), math.ceil(-3.5), math.fmod(7, 3), math.fmod(-7, 3), math.abs(math.mininteger))
print(string.format("%.10f %.10f %.10f %.10f", math.sin(1), math.exp(1), math.log(10, 2), math.sqrt(2)))
print(math.ult(1, -1), math.type(1), math.type(1.0), math.type("1"), math.huge, -math.huge)
print(pcall(function() return 1 // 0 end))
print(1 / 0, -1 / 0, 0/0 ~= 0/0, math.max(3, 9, 2), math.min(3.5, -1))

section("closures and varargs")
local function counter()
  local n = 0
  return function(step) n = n + (step or 1); return n end
end
local c1, c2 = counter(), counter()
c1(); c1(5); c2()
print(c1(), c2())
local function va(...) local a, b = ...; return select("#", ...), a, b, {...} end
local n, a, b, tt = va(1, nil, 3, nil)
print(n, a, b, #tt >= 1)
print(table.pack(1, nil, 3).n)

section("metatables")
local V = {}
V.__index = V
V.__add = function(x, y) return setmetatable({x = x.x + y.x, y = x.y + y.y}, V) end
V.__eq = function(x, y) return x.x == y.x and x.y == y.y end
V.__lt = function(x, y) return x.x < y.x end
V.__le = function(x, y) return x.x <= y.x end
V.__tostring = function(v) return "(" .. v.x .. "," .. v.y .. ")" end
V.__len = function(v) return 2 end
V.__call = function(v, k) return v[k] end
V.__concat = function(x, y) return tostring(x) .. tostring(y) end
V.__unm = function(v) return setmetatable({x = -v.x, y = -v.y}, V) end
V.__name = "Vec"
local function vec(x, y) return setmetatable({x = x, y = y}, V) end
local p, q = vec(1, 2), vec(3, 4)
print(tostring(p + q), p == vec(1, 2), p < q, q <= p, #p, p("y"), p .. q, tostring(-p))
local log = {}
local proxy = setmetatable({}, {__index = function(_, k) log[#log + 1] = "get " .. k; return k:upper() end,
                                 __newindex = function(_, k, v) log[#log + 1] = "set " .. k .. "=" .. tostring(v) end})
local _ = proxy.abc; proxy.x = 1
print(_, table.concat(log, "; "))
local weak = setmetatable({}, {__mode = "k"})
weak[{}] = 1
collectgarbage(); collectgarbage()
print("weak entries after gc", next(weak) == nil)
local gcd = {}
for i = 1, 3 do setmetatable({}, {__gc = function() gcd[#gcd + 1] = i end}) end
collectgarbage(); collectgarbage()
table.sort(gcd)
print("finalized", table.concat(gcd, ","))
do
  local closed = {}
  do
    local x <close> = setmetatable({}, {__close = function(_, e) closed[#closed + 1] = "x:" .. tostring(e) end})
    local y <close> = setmetatable({}, {__close = function(_, e) closed[#closed + 1] = "y:" .. tostring(e) end})
    local z <const> = 10
  end
  print(pcall(function()
    local w <close> = setmetatable({}, {__close = function(_, e) closed[#closed + 1] = "w:" .. tostring(e) end})
    error("in scope", 0)
  end))
  print(table.concat(closed, " "))
end

section("coroutines")
local function gen(n)
  return coroutine.wrap(function() for i = 2, n do coroutine.yield(i) end end)
end
local function filter(pr, g)
  return coroutine.wrap(function()
    while true do
      local x = g()
      if not x then return end
      if x % pr ~= 0 then coroutine.yield(x) end
    end
  end)
end
local primes, src = {}, gen(600)
while true do
  local pr = src()
  if not pr then break end
  primes[#primes + 1] = pr
  src = filter(pr, src)
end
print(#primes, primes[#primes])
local co = coroutine.create(function(a, b)
  local c = coroutine.yield(a + b)
  local d, e = coroutine.yield(c * 2)
  return d + e, coroutine.isyieldable(), coroutine.running() ~= nil
end)
print(coroutine.resume(co, 1, 2)); print(coroutine.resume(co, 10)); print(coroutine.resume(co, 3, 4))
print(coroutine.resume(co), coroutine.status(co))
local bad = coroutine.create(function() error({code = 7}) end)
local okb, err = coroutine.resume(bad)
local closedok, closeerr = coroutine.close(bad)
print(okb, type(err), err.code, coroutine.status(bad), closedok, closeerr == err)
print(coroutine.isyieldable())

section("errors")
print(pcall(error, "msg", 0))
print(select("#", pcall(error, {1, 2})), select(2, pcall(error, {1, 2}))[2])
print(select(2, pcall(function() local x = nil; return x.field end)))
print(select(2, pcall(function() return {} < {} end)))
print(select(2, pcall(function() return ("x") + 1 end)))
print(select(2, pcall(string.rep)))
print(select(2, pcall(setmetatable, 1, {})))
print(xpcall(function() error("deep") end, function(m) return "handled: " .. m end))
local function lvl3() error("at level 2", 2) end
local function lvl2() lvl3() end
print(pcall(lvl2))
print((debug.traceback("tb", 1):gsub("\n%s*%[C%]: in %?", "")))
print(select(2, load("x = = 1", "=chunk")))
print(select(2, load("return 1", "=bin", "b")))

section("load, dump, env")
local f = load("local a, b = ... return a * b + k", "=mul", "t", {k = 100})
print(f(6, 7))
local dumped = string.dump(f, true)
local g = load(dumped, "=dumped", "b", {k = 1000})
print(#dumped > 0, g(6, 7))
local env = {print = print}
local chunk = load("x = 42; y = (y or 0) + 1; return x + y", "=envchunk", "t", env)
print(chunk(), chunk(), env.x, env.y, rawget(_G, "x"))
local pieces = {"return ", "1 + ", "2 * ", "3"}
local i = 0
print(load(function() i = i + 1; return pieces[i] end)())
goto skip
print("not printed")
::skip::
for k = 1, 3 do
  for l = 1, 3 do
    if l == 2 then goto continue end
    io.write(k, l, " ")
    ::continue::
  end
end
print()

section("modules")
local dir = os.tmpname()
os.remove(dir)
local modpath = dir .. "_wlmod.lua"
local mf = assert(io.open(modpath, "w"))
mf:write("local M = {} function M.twice(x) return 2 * x end M.name = ... return M\n")
mf:close()
package.path = dir .. "_?.lua;" .. package.path
local m = require("wlmod")
print(m.twice(21), m.name, package.loaded.wlmod == m, require("wlmod") == m)
print(package.searchpath("wlmod", dir .. "_?.lua") == modpath)
print(select(2, pcall(require, "no_such_module_xyz")) ~= nil)
print(package.loadlib("no_such_lib_xyz.so", "f"))
os.remove(modpath)

section("io")
local tf = assert(io.tmpfile())
for k = 1, 1000 do tf:write(k, " ", k * k, "\n") end
tf:write("1.5e3 0x10 -7 end\n")
tf:seek("set", 0)
local sum, count = 0, 0
while true do
  local a1, b1 = tf:read("n", "n")
  if not b1 then break end
  sum = sum + a1 + b1; count = count + 1
end
print(count, sum)
print(tf:read("n", "n", "n", "l"))
print(tf:seek("end"), tf:seek("set", 5), tf:read(4), io.type(tf))
tf:close()
print(io.type(tf), pcall(tf.read, tf))
local name = os.tmpname()
local fw = assert(io.open(name, "wb")); fw:write(string.rep("line\n", 50)); fw:close()
local nlines = 0
for _ in io.lines(name) do nlines = nlines + 1 end
print(nlines, os.remove(name), io.open(name) == nil, select(2, os.remove(name)) ~= nil)
print(os.time({year = 2000, month = 1, day = 1, hour = 12, isdst = false}) ~= nil, type(os.clock()))
print(os.date("!%Y-%m-%d %H:%M:%S", 86400 * 365), os.getenv("ELFVECTOR_NO_SUCH_VAR"))

section("debug")
local function probe(a, b)
  local info = debug.getinfo(1, "nSlu")
  return info.short_src, info.currentline > 0, info.nparams, info.what, debug.getlocal(1, 1)
end
print(probe(5, 6))
local calls = 0
debug.sethook(function() calls = calls + 1 end, "c")
for k = 1, 10 do math.abs(k) end
debug.sethook()
print("hook calls >= 10", calls >= 10)
local up = 5
local function useup() return up end
print(debug.getupvalue(useup, 1), debug.setupvalue(useup, 1, 6), useup())
print(debug.getmetatable("").__index == string, debug.getinfo(print).what)

section("benchmarks")
local function bottomup(d)
  if d == 0 then return {} end
  d = d - 1
  return {bottomup(d), bottomup(d)}
end
local function check(tree) if tree[1] then return 1 + check(tree[1]) + check(tree[2]) end return 1 end
for d = 4, 14, 2 do print("binary tree depth", d, check(bottomup(d))) end
local function A(i, j) local ij = i + j - 1; return 1.0 / (ij * (ij - 1) * 0.5 + i) end
local function Av(x, y, N) for i = 1, N do local a = 0; for j = 1, N do a = a + x[j] * A(i, j) end; y[i] = a end end
local function Atv(x, y, N) for i = 1, N do local a = 0; for j = 1, N do a = a + x[j] * A(j, i) end; y[i] = a end end
local function AtAv(x, y, t2, N) Av(x, t2, N); Atv(t2, y, N) end
local N = 100
local uu, vv, t2 = {}, {}, {}
for k = 1, N do uu[k] = 1 end
for _ = 1, 10 do AtAv(uu, vv, t2, N); AtAv(vv, uu, t2, N) end
local vBv, vv2 = 0, 0
for k = 1, N do local ui, vi = uu[k], vv[k]; vBv = vBv + ui * vi; vv2 = vv2 + vi * vi end
print(string.format("spectral norm %0.9f", math.sqrt(vBv / vv2)))
local function fannkuch(n)
  local p, q, s, sign, maxflips, sum = {}, {}, {}, 1, 0, 0
  for k = 1, n do p[k] = k; q[k] = k; s[k] = k end
  repeat
    local q1 = p[1]
    if q1 ~= 1 then
      for k = 2, n do q[k] = p[k] end
      local flips = 1
      repeat
        local qq = q[q1]
        if qq == 1 then
          sum = sum + sign * flips
          if flips > maxflips then maxflips = flips end
          break
        end
        q[q1] = q1
        if q1 >= 4 then
          local k, j = 2, q1 - 1
          repeat q[k], q[j] = q[j], q[k]; k = k + 1; j = j - 1; until k >= j
        end
        q1 = qq; flips = flips + 1
      until false
    end
    if sign == 1 then
      p[2], p[1] = p[1], p[2]; sign = -1
    else
      p[2], p[3] = p[3], p[2]; sign = 1
      for k = 3, n do
        local sx = s[k]
        if sx ~= 1 then s[k] = sx - 1; break end
        if k == n then return sum, maxflips end
        s[k] = k
        local t1 = p[1]; for j = 1, k do p[j] = p[j + 1] end; p[k + 1] = t1
      end
    end
  until false
end
print("fannkuch(8)", fannkuch(8))
local counts = {}
local text = string.rep("the lua interpreter runs this text and counts its words ", 400)
for w in text:gmatch("%a+") do counts[w] = (counts[w] or 0) + 1 end
local keys = {}
for k in pairs(counts) do keys[#keys + 1] = k end
table.sort(keys)
for _, k in ipairs(keys) do io.write(k, "=", counts[k], " ") end
print()
section("done")
LUA
}

main "$@"
