/* Calls the IFUNC and the default version of ver. */
#include <stdio.h>
int sel(int);
int ver(int);
int plain(int);
int main(void)
{
    printf("sel %d ver %d plain %d\n", sel(1), ver(3), plain(5));
    return 0;
}
