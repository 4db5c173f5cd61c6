/* A vectored program calling librtv and librtifunc, whose IFUNC resolver
 * called librtv while ld.so was relocating librtifunc; v_mul, which only the
 * program calls, goes through a slot. */
#include "rt_probe.h"   /* first: it defines _GNU_SOURCE */
#include <stdio.h>
#include "rt_vlib.h"

int ifunc_result(double *sumd);

int main(void)
{
    double sumd;
    int result = ifunc_result(&sumd);
    int sum = v_add(1, 2);
    printf("librtifunc: %d sumd %.2f; v_add(1, 2) = %d v_mul(6, 7) = %d\n", result, sumd, sum,
           v_mul(6, 7));
    rt_probe("main: slots %c\n", RT_OWN_SLOTS());
    return 0;
}
