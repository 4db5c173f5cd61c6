/* libbar.so.1: a library whose own imports (from foo.so.5) retroimp rewrites. */
#include <stdio.h>
#include "foo.h"

int bar_poly(int x) { return foo_add(foo_mul(x, x), foo_twice(x)); }
void bar_greet(void) { foo_hello("libbar"); printf("bar sees %s\n", foo_name()); }
