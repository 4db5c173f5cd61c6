/* A vectored program calling librtv directly and librta (which has an
 * import vector of its own). */
#include "rt_probe.h"   /* first: it defines _GNU_SOURCE */
#include <stdio.h>
#include "rt_alib.h"
#include "rt_vlib.h"

int main(void)
{
    char buf[200];
    int n = a_compute(11, buf, sizeof buf);
    printf("main: %s (%d chars)\n", buf, n);
    printf("main: a_count(5000) = %ld\n", a_count(5000));
    printf("main: librta ctor computed %d\n", a_ctor_result());
    int sum = v_add(2, 40);
    printf("main: v_add(2, 40) = %d, v_calls %ld\n", sum, v_calls());
    rt_probe("main: program slots %c librta slots %c\n", RT_OWN_SLOTS(), a_slot_state());
    return 0;
}
