/* An IFUNC that the library calls itself, and the program both calls and
   takes the address of. */
static int pick_impl(void) { return 5; }
static int (*resolve_pick(void))(void) { return pick_impl; }
int pick(void) __attribute__((ifunc("resolve_pick")));

int lib_pick(void) { return pick(); }
