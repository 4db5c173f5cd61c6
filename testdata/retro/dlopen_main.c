/* The retro tests' dlopen program.  dlopen_main LIBRARY...: each LIBRARY
   (a soname of the closure, already loaded, or a path to one outside it)
   is opened, and its function "describe" (or, for libdemo, demo_twice)
   called; an unknown library is reported on stderr (exit 1). */
#include <dlfcn.h>
#include <stdio.h>
#include "demo.h"

int main(int argc, char **argv)
{
    int status = 0;
    printf("linked: twice(5) = %d\n", demo_twice(5));
    for (int i = 1; i < argc; i++) {
        void *handle = dlopen(argv[i], RTLD_NOW);
        if (!handle) {
            fprintf(stderr, "dlopen_main: cannot open %s\n", argv[i]);
            status = 1;
            continue;
        }
        int (*twice)(int) = (int (*)(int))dlsym(handle, "demo_twice");
        const char *(*describe)(void) = (const char *(*)(void))dlsym(handle, "describe");
        if (describe)
            printf("%s: %s\n", argv[i], describe());
        else if (twice)
            printf("%s: twice(7) = %d, same function: %s\n", argv[i], twice(7),
                   twice == demo_twice ? "yes" : "no");
    }
    return status;
}
