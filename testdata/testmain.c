/* The seed's example program: calls every function of foo.so.5. */
#include <stdio.h>
#include "foo.h"

int main(int argc, char **argv)
{
    int (*add)(int, int) = foo_add;            /* pointer equality */
    foo_hello(argc > 1 ? argv[1] : "world");
    printf("add %d mul %d twice %d\n", foo_add(2, 3), foo_mul(4, 5), foo_twice(21));
    printf("sum %ld len %zu name %s\n", foo_sum(4, 1L, 2L, 3L, 4L), foo_len("vector"), foo_name());
    printf("hypot2 %.2f\n", foo_hypot2(3.0, 4.0));
    printf("same &foo_add: %s\n", add == foo_self() ? "yes" : "NO");
    printf("counter %d\n", foo_counter);
    return foo_add(0, 7);
}
