/* librtalloc.so.1: a vectored library that also defines malloc. */
#ifndef RT_ALLOC_H
#define RT_ALLOC_H
#include <stddef.h>
#define RT_MARK 12345                   /* the size the tests count */
char *ra_dup(const char *s);            /* calls malloc(RT_MARK) */
long ra_served(void);                   /* librtalloc's malloc(RT_MARK) calls */
#endif
