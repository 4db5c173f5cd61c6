/* Calls libvonly's functions, most of which it exports through its vector
   only.  With -DVIA_POINTER it takes &vo_twice too: a program linked by
   impvec gets it from its exported slot; retroimp binds calls only. */
#include <stdio.h>
int vo_public(int), vo_twice(int), vo_square(int), vo_pick(int);
const char *vo_name(void);

int main(void)
{
#ifdef VIA_POINTER
    int (*volatile twice)(int) = vo_twice;
    int via = twice(5);
#else
    int via = vo_twice(5);
#endif
    printf("public %d twice %d square %d pick %d name %s via pointer %d\n", vo_public(1),
           vo_twice(2), vo_square(3), vo_pick(4), vo_name(), via);
    return 0;
}
