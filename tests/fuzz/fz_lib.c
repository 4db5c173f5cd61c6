/* The fuzz baselines' library, libfz.so.1: functions that call libc, call
   each other through the PLT, and a data symbol, so that its .dynsym,
   .gnu.hash, relocations and version tables all have entries to mutate. */
#include <stdio.h>
#include <string.h>

int fz_counter;                                  /* data: never vectored */

int fz_add(int a, int b) { fz_counter++; return a + b; }
int fz_mul(int a, int b) { fz_counter++; return a * b; }
int fz_twice(int x) { return fz_add(x, x); }     /* through its own PLT */
size_t fz_len(const char *s) { return strlen(s); }
void fz_hello(const char *who) { printf("hello, %s\n", who); }
int (*fz_self(void))(int, int) { return fz_add; }

#ifdef FZ_LATIN1
/* A name that is not UTF-8, as a Latin-1 source would have it: valid ELF. */
int fz_latin1(int x) __asm__("fz_caf\351");
int fz_latin1(int x) { return x + 1; }
#endif
