#include <stdio.h>

extern int value;
int lib_hook(void);
int *lib_value(void);

int hook(void) { return 2; }

int main(void)
{
    printf("%d %d\n", lib_hook(), lib_value() == &value);
    return 0;
}
