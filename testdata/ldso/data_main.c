/* Copy relocation of counter, and a word of the program pointing to the
   copy (an R_X86_64_64 a PIE program binds to itself); libfunc's address
   taken by the program. */
#include <stdio.h>

extern int counter;
int *counter_ptr = &counter;
int *counter_addr(void);
int libfunc(void);
void *libfunc_addr(void);

int main(void)
{
    printf("%d %d %d %d %d\n", libfunc(), libfunc_addr() == (void *)&libfunc, counter,
           counter_addr() == &counter, counter_ptr == &counter);
    return 0;
}
