#include <stdio.h>
int bar_poly(int x);
void bar_greet(void);
int main(void)
{
    bar_greet();
    for (int i = 0; i < 4; i++)
        printf("bar_poly(%d) = %d\n", i, bar_poly(i));
    return 3;
}
