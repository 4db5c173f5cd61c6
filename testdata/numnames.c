/* libnumnames.so.1: functions named like what GNU ld's script parser reads
   as something else: hex numbers with a b/d/h/o/x suffix (add, feed, bad,
   cab, fd, fb, ax, ah), a name starting with $, script keywords.  A bare
   name in expvec's alias script made their slots point at 0xadd, 0xfeed,
   ...; each function here returns something distinct, so a slot that
   reaches the wrong code shows in the output (or crashes). */
int add(int a, int b) { return a + b; }
int feed(int x) { return x * 2 + 1; }
int bad(int x) { return x - 3; }
int cab(int x) { return x * 3 + 2; }
int fd(int x) { return x + 40; }
int fb(int x) { return x ^ 0x55; }
int ax(int x) { return x << 2; }
int ah(int x) { return x >> 1; }
int other(int x) { return x + 100; }

int dollar(int x) __asm__("$dol");
int dollar(int x) { return x + 1000; }
int sections(int x) __asm__("SECTIONS");
int sections(int x) { return x + 2000; }
int align_(int x) __asm__("ALIGN");
int align_(int x) { return x + 3000; }

/* An IFUNC named like a number: its slot goes through an IPLT entry. */
static int bed_impl(int x) { return x + 7000; }
static int (*resolve_bed(void))(int) { return bed_impl; }
int bed(int) __attribute__((ifunc("resolve_bed")));

/* Two versions of a number-like name. */
int dab_v1(int x) { return -x; }
int dab_v2(int x) { return 100 * x; }
__asm__(".symver dab_v1, dab@V1");
__asm__(".symver dab_v2, dab@@V2");
