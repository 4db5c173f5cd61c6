/* Copy relocation of counter; libfunc's address taken by the program. */
#include <stdio.h>

extern int counter;
int *counter_addr(void);
int libfunc(void);
void *libfunc_addr(void);

int main(void)
{
    printf("%d %d %d %d\n", libfunc(), libfunc_addr() == (void *)&libfunc, counter,
           counter_addr() == &counter);
    return 0;
}
