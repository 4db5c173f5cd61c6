/* A vectored program calling librtv and librtifunc, whose IFUNC resolver
 * called librtv while ld.so was relocating librtifunc. */
#include <stdio.h>
#include "rt_vlib.h"

int ifunc_result(double *sumd);

int main(void)
{
    double sumd;
    int result = ifunc_result(&sumd);
    int sum = v_add(1, 2);
    printf("librtifunc: %d sumd %.2f; v_add(1, 2) = %d\n", result, sumd, sum);
    return 0;
}
