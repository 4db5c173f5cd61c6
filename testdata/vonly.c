/* libvonly.so.1: one function exported by name, the others reachable
   through the export vector only (expvec's vector-only opt-in makes them
   local in the final link).  vo_pick is an IFUNC. */
#include <stdio.h>

int vo_public(int x) { return x + 1; }
int vo_twice(int x) { return 2 * x; }
int vo_square(int x) { return x * x; }
const char *vo_name(void) { return "libvonly"; }

static int pick_generic(int x) { return x + 100; }
static int pick_fast(int x) { return x + 200; }
static int (*resolve_pick(void))(int) { return pick_fast; }
int vo_pick(int) __attribute__((ifunc("resolve_pick")));
