/* Pointer equality: the program's &v_add (in code and in static data) must
 * be the library's own &v_add, another library's, and dlsym's. */
#define _GNU_SOURCE
#include "rt_probe.h"   /* first: it defines _GNU_SOURCE */
#include <dlfcn.h>
#include <stdio.h>
#include "rt_vlib.h"

int (*other_view_add(void))(int, int);

static int (*table[])(int, int) = { v_add, v_mul };      /* static data */

static const char *yes(int same) { return same ? "yes" : "NO"; }

int main(void)
{
    int (*volatile add)(int, int) = v_add;               /* code */
    int (*volatile mul)(int, int) = v_mul;
    printf("code &v_add == library's &v_add: %s\n", yes(add == v_self_add()));
    printf("code &v_mul == library's &v_mul: %s\n", yes(mul == v_self_mul()));
    printf("data &v_add == library's &v_add: %s\n", yes(table[0] == v_self_add()));
    printf("data &v_mul == library's &v_mul: %s\n", yes(table[1] == v_self_mul()));
    printf("code == data: %s\n", yes(add == table[0]));
    printf("other library's &v_add: %s\n", yes(other_view_add() == add));
    printf("dlsym(RTLD_DEFAULT) &v_add: %s\n", yes(dlsym(RTLD_DEFAULT, "v_add") == (void *)add));
    printf("calls: %d %d %d %d %d\n", add(2, 3), mul(4, 5), table[0](6, 7), table[1](8, 9),
           v_self_add()(10, 11));
    int sum = v_add(1, 2), product = v_mul(3, 4);
    const char *name = v_name();
    printf("direct: %d %d name %s calls %ld\n", sum, product, name, v_calls());
    rt_probe("main: slots %c\n", RT_OWN_SLOTS());
    return 0;
}
