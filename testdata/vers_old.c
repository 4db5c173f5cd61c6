/* Asks for the old version ver@V1 explicitly, as a program built against
   the library's first release would. */
#include <stdio.h>
int ver_old(int);
__asm__(".symver ver_old, ver@V1");
int sel(int);
int main(void)
{
    printf("old ver %d sel %d\n", ver_old(3), sel(2));
    return 0;
}
