/* A library outside the closure, dlopen'ed by dlopen_main: its own
   references to libdemo and libc are looked up in the rewritten closure. */
#include <stdio.h>
#include "demo.h"

const char *describe(void)
{
    static char text[96];
    snprintf(text, sizeof text, "outside sees twice(8) = %d, %s", demo_twice(8), demo_greeting);
    return text;
}
