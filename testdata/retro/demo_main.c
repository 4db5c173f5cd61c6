/* The retro tests' C program, built as a PIE and as a non-PIE program.
   demo [crash|fail|N...]: sorts its numbers through libdemo (qsort calls
   back into the program), prints what libdemo's data and functions give;
   "fail" exits 3 with a message on stderr, "crash" faults inside the qsort
   callback (gdb's backtrace goes through libc and libdemo). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "demo.h"

static int crash;

static int by_value(const void *a, const void *b)
{
    if (crash)
        return *(volatile int *)0;
    return *(const int *)a - *(const int *)b;
}

int main(int argc, char **argv)
{
    int v[16], n = 0;
    for (int i = 1; i < argc && n < 16; i++) {
        if (!strcmp(argv[i], "crash"))
            crash = 1;
        else if (!strcmp(argv[i], "fail")) {
            fprintf(stderr, "demo: failing as asked\n");
            return 3;
        } else
            v[n++] = atoi(argv[i]);
    }
    if (crash) {
        v[0] = 2, v[1] = 1, n = 2;
    }
    demo_sort(v, n, by_value);
    for (int i = 0; i < n; i++)
        printf("%d%c", v[i], i + 1 < n ? ' ' : '\n');
    printf("%s; %s; twice(21) = %d; counter %d\n", demo_greeting, demo_variant(),
           demo_twice(21), demo_counter);
    printf("&demo_add %s\n", (void *)&demo_add == demo_add_address() ? "is one address"
                                                                    : "DIFFERS");
    return 0;
}
