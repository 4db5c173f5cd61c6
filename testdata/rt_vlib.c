/* librtv.so.1: the vectored library of tests/test_runtime.py.
 * Its constructor calls back into the program when the program exports
 * rt_prog_hook (linked with -rdynamic). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include "rt_vlib.h"

static long calls;
#define COUNT() __atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED)

int v_add(int a, int b) { COUNT(); return a + b; }
int v_mul(int a, int b) { COUNT(); return a * b; }

long v_many(int a, long b, int c, long d, int e, long f, int g, long h, double x, int i,
            double y)
{
    COUNT();
    return a + 10 * b + 100 * c + 1000 * d + 10000 * e + 100000 * f + 1000000L * g
           + 10000000L * h + 100000000L * i + (long)(x * 10000000000.0)
           + (long)(y * 1000000000000.0);
}

double v_sumd(int n, ...)
{
    va_list ap;
    double total = 0, weight = 1;
    COUNT();
    va_start(ap, n);
    for (int k = 0; k < n; k++, weight *= 10)
        total += weight * va_arg(ap, double);
    va_end(ap);
    return total;
}

int v_fmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    COUNT();
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return n;
}

struct v_pair v_pair(long a, long b)
{
    COUNT();
    struct v_pair p = { a + b, a - b, a * b };
    return p;
}

const char *v_name(void) { COUNT(); return "librtv.so.1"; }
int (*v_self_add(void))(int, int) { return v_add; }
int (*v_self_mul(void))(int, int) { return v_mul; }
long v_calls(void) { return __atomic_load_n(&calls, __ATOMIC_RELAXED); }

__attribute__((constructor)) static void v_ctor(void)
{
    void (*hook)(const char *) = (void (*)(const char *))dlsym(RTLD_DEFAULT, "rt_prog_hook");
    if (hook)
        hook("librtv ctor");
}
