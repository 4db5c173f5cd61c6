/* libdemo.so.1: a library of the closure.  Its references to its own
   exported symbols (demo_add from demo_twice, demo_counter) are the ones
   the retro mode pre-binds; demo_sort calls libc's qsort with the
   program's callback, so a crash in the callback has qsort on the stack.
   Built with -DVARIANT=n for "another build" of the same library. */
#include <stdio.h>
#include <stdlib.h>
#include "demo.h"

#ifndef VARIANT
#define VARIANT 1
#endif

int demo_counter = 40;
const char *demo_greeting = "hello from libdemo";
static __thread int tls_counter;

int demo_add(int a, int b) { demo_counter++; return a + b; }

int demo_twice(int x) { return demo_add(x, x); }

void demo_sort(int *v, size_t n, int (*cmp)(const void *, const void *))
{
    qsort(v, n, sizeof *v, cmp);
}

int demo_tls_bump(int by) { tls_counter += by; return tls_counter; }

void *demo_add_address(void) { return (void *)&demo_add; }

const char *demo_variant(void)
{
    static char name[32];
    snprintf(name, sizeof name, "variant %d", VARIANT);
    return name;
}
