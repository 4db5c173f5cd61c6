/* Prints how its slot for foo_add was bound: e9 = jmp rel32, 49 = movabs+jmp. */
#include <stdio.h>
#include "foo.h"

int main(void)
{
    const unsigned char *slot = (const unsigned char *)(void *)foo_add;
    printf("foo_add(2, 3) = %d, slot starts with %02x\n", foo_add(2, 3), slot[0]);
    return 0;
}
