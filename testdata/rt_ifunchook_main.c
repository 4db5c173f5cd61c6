/* A vectored program whose rt_early_hook is called by librtifunchook's IFUNC
 * resolver before ld.so relocated the program (see rt_ifunchook.c). */
#include <stdio.h>
#include "rt_vlib.h"

int hook_result(void);

int rt_early_hook(void) { return v_mul(6, 7); }

int main(void)
{
    printf("hook %d v_mul %d\n", hook_result(), v_mul(2, 3));
    return 0;
}
