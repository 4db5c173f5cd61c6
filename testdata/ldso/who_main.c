#include <stdio.h>

const char *who(void);

int main(void)
{
    puts(who());
    return 0;
}
