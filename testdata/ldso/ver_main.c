/* foo's version is the one the link gave (foo@@V2), foo@V1 with -DOLD,
   none when linked against ver_plain.c's library. */
#include <stdio.h>

#ifdef OLD
__asm__(".symver foo, foo@V1");
#endif
int foo(void);
int bar(void);

int main(void)
{
    printf("%d %d\n", foo(), bar());
    return 0;
}
