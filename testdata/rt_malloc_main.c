/* A vectored program calling malloc (kept bound by name) and librtalloc's
 * functions (vectored), one of which calls malloc inside the library. */
#include <stdio.h>
#include <stdlib.h>
#include "rt_alloc.h"

char *volatile sink;

int main(void)
{
    long check = 0;
    for (int i = 0; i < 100; i++) {
        sink = malloc(RT_MARK);
        sink[0] = (char)i;
        check += sink[0];
        free(sink);
    }
    for (int i = 0; i < 50; i++) {
        sink = ra_dup("vector");
        check += sink[i % 6];
        free(sink);
    }
    printf("check %ld served %ld\n", check, ra_served());
    return 0;
}
