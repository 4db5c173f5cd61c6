/* librtv.so.1, the vectored library of tests/test_runtime.py. */
#ifndef RT_VLIB_H
#define RT_VLIB_H
#include <stddef.h>

struct v_pair { long a, b, c; };                /* returned in memory (%rdi) */

int v_add(int a, int b);
int v_mul(int a, int b);
long v_many(int a, long b, int c, long d, int e, long f, int g, long h, double x, int i,
            double y);                          /* g, h, i on the stack */
double v_sumd(int n, ...);                      /* n doubles: %al and %xmm0..7 */
int v_fmt(char *buf, size_t len, const char *fmt, ...);
struct v_pair v_pair(long a, long b);
const char *v_name(void);
int (*v_self_add(void))(int, int);              /* the library's own &v_add */
int (*v_self_mul(void))(int, int);
long v_calls(void);                             /* calls of v_add/v_mul/v_many/... */
#endif
