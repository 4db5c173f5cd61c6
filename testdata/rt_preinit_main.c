/* A vectored program that calls librtv before main: from an IFUNC resolver
 * (which ld.so runs while relocating the program, before any .preinit_array
 * function, so before the binder), and from its own .preinit_array and
 * .init_array functions. */
#include "rt_probe.h"   /* first: it defines _GNU_SOURCE */
#include <stdio.h>
#include "rt_vlib.h"

static char pre_before, pre_after, ctor_before, ctor_after;
static long pre_many;
static double pre_sumd;
static struct v_pair pre_pair;
static char pre_buf[160], ctor_buf[160];
static int pre_argc;

static char ifunc_before, ifunc_after;
static int ifunc_add;
static long ifunc_many;
static double ifunc_sumd;

static int pick_slow(void) { return 1; }
static int pick_fast(void) { return 2; }

static int (*resolve_pick(void))(void)
{
    ifunc_before = RT_OWN_SLOTS();
    /* The first call: 6 integer arguments in registers, 3 on the stack, 2 doubles. */
    ifunc_many = v_many(9, 8, 7, 6, 5, 4, 3, 2, 0.75, 1, 0.5);
    ifunc_sumd = v_sumd(3, 0.25, 0.5, 0.75);        /* variadic: %al and %xmm0..2 */
    ifunc_add = v_add(20, 22);
    ifunc_after = RT_OWN_SLOTS();
    return ifunc_add == 42 ? pick_fast : pick_slow;
}

int rt_pick(void) __attribute__((ifunc("resolve_pick")));

static void preinit(int argc, char **argv, char **envp)
{
    (void)argv; (void)envp;
    pre_argc = argc;
    pre_before = RT_OWN_SLOTS();
    pre_many = v_many(1, 2, 3, 4, 5, 6, 7, 8, 0.5, 9, 0.25);
    pre_sumd = v_sumd(5, 0.5, 1.5, 2.5, 3.5, (double)argc);
    pre_pair = v_pair(argc + 20, 7);
    v_fmt(pre_buf, sizeof pre_buf, "%s %d %.2f %s", "preinit", v_add(argc, 40), 2.75, v_name());
    pre_after = RT_OWN_SLOTS();
}

__attribute__((section(".preinit_array"), used))
static void (*preinit_entry)(int, char **, char **) = preinit;

__attribute__((constructor)) static void init(void)
{
    ctor_before = RT_OWN_SLOTS();
    v_fmt(ctor_buf, sizeof ctor_buf, "init_array %d %d %.1f", v_add(30, 12), v_mul(6, 7),
          v_sumd(2, 1.0, 2.0));
    ctor_after = RT_OWN_SLOTS();
}

int main(int argc, char **argv)
{
    (void)argv;
    printf("preinit: argc %d many %ld sumd %.3f pair %ld/%ld/%ld buf '%s'\n", pre_argc, pre_many,
           pre_sumd, pre_pair.a, pre_pair.b, pre_pair.c, pre_buf);
    printf("init: buf '%s'\n", ctor_buf);
    printf("ifunc: picked %d many %ld sumd %.3f add %d\n", rt_pick(), ifunc_many, ifunc_sumd,
           ifunc_add);
    int sum = v_add(argc, 1);
    printf("main: argc %d add %d calls %ld\n", argc, sum, v_calls());
    rt_probe("ifunc resolver: before %c after %c\n", ifunc_before, ifunc_after);
    rt_probe("preinit: before %c after %c\n", pre_before, pre_after);
    rt_probe("init_array: before %c after %c\n", ctor_before, ctor_after);
    char wx[32];
    rt_probe("main: slot pages %s\n", RT_OWN_WX(wx));
    return 5;
}
