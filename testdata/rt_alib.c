/* librta.so.1: calls librtv through its own import vector, bound from its
 * .init_array (or by the lazy trampoline when a slot is reached first). */
#include "rt_probe.h"   /* first: it defines _GNU_SOURCE */
#include "rt_alib.h"
#include "rt_vlib.h"

static int ctor_result;

/* Runs before or after the binder, as the link orders .init_array. */
__attribute__((constructor)) static void a_ctor(void)
{
    char before = RT_OWN_SLOTS();
    struct v_pair p = v_pair(40, 2);            /* first call: struct returned in memory */
    ctor_result = (int)(p.a * 1000 + p.b * 10 + p.c) + v_add(1, 1);
    rt_probe("librta ctor: before %c after %c\n", before, RT_OWN_SLOTS());
}

int a_compute(int x, char *out, size_t len)
{
    double s = v_sumd(4, 1.5, 2.25, 0.125, (double)x);     /* variadic, 4 doubles */
    long m = v_many(x, 2, 3, 4, 5, 6, 7, 8, 0.5, 9, 0.25);
    struct v_pair p = v_pair(x, 3);
    return v_fmt(out, len, "x=%d sumd=%.3f many=%ld pair=%ld/%ld/%ld add=%d mul=%d name=%s",
                 x, s, m, p.a, p.b, p.c, v_add(x, 1), v_mul(x, 3), v_name());
}

long a_count(int n)
{
    int acc = 0;
    for (int i = 0; i < n; i++)
        acc = v_add(acc, i % 3);
    return acc;
}

int a_ctor_result(void) { return ctor_result; }
char a_slot_state(void) { return RT_OWN_SLOTS(); }
