/* libvers.so.1: an IFUNC and a function with two versions. */
static int sel_generic(int x) { return 1000 + x; }
static int sel_fast(int x) { return 2000 + x; }

/* The resolver always picks sel_fast: a vector slot that pointed at the
   resolver itself, or at sel_generic, gives a different answer. */
static int (*resolve_sel(void))(int) { return sel_fast; }
int sel(int) __attribute__((ifunc("resolve_sel")));

int ver_v1(int x) { return -x; }          /* ver@V1: the old ABI */
int ver_v2(int x) { return x * 10; }      /* ver@@V2: the default */
__asm__(".symver ver_v1, ver@V1");
__asm__(".symver ver_v2, ver@@V2");

int plain(int x) { return x + sel_generic(0) - 1000; }
