/* The seed's example library: foo.so.5. */
#include <stdio.h>
#include <string.h>

int foo_counter;                       /* data: never vectored */

int foo_add(int a, int b) { foo_counter++; return a + b; }
#ifndef FOO_WITHOUT_MUL
int foo_mul(int a, int b) { foo_counter++; return a * b; }
#endif
#ifdef FOO_V2
int foo_extra(int x) { return x - 1; }    /* added in the second release */
#endif
long foo_sum(int n, ...);
const char *foo_name(void) { return "foo.so.5"; }
int foo_twice(int x) { return foo_add(x, x); }   /* calls through its own PLT */
size_t foo_len(const char *s) { return strlen(s); }
void foo_hello(const char *who) { printf("hello, %s, from %s\n", who, foo_name()); }
int (*foo_self(void))(int, int) { return foo_add; }   /* the library's own &foo_add */

#include <stdarg.h>
long foo_sum(int n, ...)
{
    va_list ap;
    long total = 0;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        total += va_arg(ap, long);
    va_end(ap);
    return total;
}

double foo_hypot2(double x, double y) { return x * x + y * y; }
