/* Calls pick through the PLT; with -DADDRESS also takes its address (then
   the call goes through the same GOT entry: a GLOB_DAT, no JUMP_SLOT). */
#include <stdio.h>

int pick(void);
int lib_pick(void);

int main(void)
{
#ifdef ADDRESS
    int (*volatile address)(void) = pick;
    printf("%d %d %d\n", pick(), lib_pick(), address());
#else
    printf("%d %d\n", pick(), lib_pick());
#endif
    return 0;
}
