/* Closure-rewrite test program: calls and data of cl_lib, with pointer
   equality between the program's and the library's &cl_add.  Prints no
   address, so stock and rewritten runs compare equal.  CL_MAPS=1 also
   counts writable-and-executable mappings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cl_lib.h"

static void count_rwx(void) {
    char line[512];
    int rwx = 0;
    FILE *maps = fopen("/proc/self/maps", "r");
    while (maps && fgets(line, sizeof line, maps))
        if (strstr(line, "rwx"))
            rwx++;
    printf("rwx mappings %d\n", rwx);
}

int main(void) {
    printf("twice %d thrice %d\n", cl_twice(21), cl_thrice(5));
    printf("apply %d %d %d\n", cl_apply(0, 6, 7), cl_apply(1, 6, 7), cl_apply(2, 6, 7));
    printf("names %s %s %s\n", cl_name(1), cl_names[3], cl_ops[1].name);
    printf("counter %d %d\n", cl_counter, cl_get_counter());
    cl_bump();
    printf("counter %d %d %d\n", cl_counter, *cl_counter_ptr, cl_get_counter());
    printf("hidden %d\n", *cl_hidden_ptr);
    printf("square %d %d\n", cl_square(9), cl_sum_squares(3, 4));
    printf("length %zu\n", cl_length("hello"));
    printf("same add %d %d\n", cl_get_add() == cl_add, cl_ops[0].fn == cl_add);
    if (getenv("CL_MAPS"))
        count_rwx();
    return 3;
}
