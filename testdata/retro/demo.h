/* libdemo.so.1: what the retro tests' C programs use from a library of the closure. */
#ifndef DEMO_H
#define DEMO_H
#include <stddef.h>

extern int demo_counter;                 /* copied into the programs (COPY) */
extern const char *demo_greeting;        /* a pointer: a RELATIVE relocation */

int demo_add(int a, int b);
int demo_twice(int x);                   /* calls demo_add through the PLT */
void demo_sort(int *v, size_t n, int (*cmp)(const void *, const void *));  /* qsort */
int demo_tls_bump(int by);               /* a __thread counter of this library */
const char *demo_variant(void);
void *demo_add_address(void);            /* &demo_add as the library sees it */
#endif
