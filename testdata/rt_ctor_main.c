/* A vectored program whose functions are called from library constructors
 * (librthook's, and the vectored librtv's own), before main, and which then
 * call vectored functions.  Link with -rdynamic. */
#include "rt_probe.h"   /* first: it defines _GNU_SOURCE */
#include <stdio.h>
#include "rt_vlib.h"

int (*volatile rt_add_ptr)(int, int);

void rt_prog_hook(const char *who)
{
    char buf[160];
    char before = RT_OWN_SLOTS();
    struct v_pair p = v_pair(9, 4);
    int n = v_fmt(buf, sizeof buf, "%s: add %d mul %d sumd %.2f many %ld pair %ld/%ld/%ld name %s",
                  who, v_add(20, 22), v_mul(6, 7), v_sumd(3, 0.5, 0.25, 2.0),
                  v_many(1, 2, 3, 4, 5, 6, 7, 8, 0.5, 9, 0.25), p.a, p.b, p.c, v_name());
    printf("%s (%d chars)\n", buf, n);
    rt_probe("hook from %s: slots %c\n", who, before);
}

int main(void)
{
    rt_add_ptr = v_add;                     /* v_add's slot is exported */
    rt_prog_hook("main");
    printf("through the pointer: %d\n", rt_add_ptr(3, 4));
    printf("calls %ld\n", v_calls());
    return 3;
}
