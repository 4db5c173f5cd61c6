/* Interposition: by the program (hook) and by an earlier library (twice,
   weak_first); weak references that nothing defines. */
#include <stdio.h>

int weak_first(void);
int twice(void);
int first_calls_hook(void);
int second_calls(void);
extern int nowhere(void) __attribute__((weak));
extern int nowhere_data __attribute__((weak));

int hook(void) { return 3; }

int main(void)
{
    printf("%d %d %d %d %d %d\n", weak_first(), twice(), first_calls_hook(), second_calls(),
           nowhere ? nowhere() : 0, &nowhere_data ? nowhere_data : 0);
    return 0;
}
