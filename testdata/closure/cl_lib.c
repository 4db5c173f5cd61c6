/* Closure-rewrite test library.  Each definition below makes one kind of
   dynamic relocation:
   - RELATIVE: pointers to static data and functions, string tables;
   - R_X86_64_64 against its own exported symbols: data pointers and a
     vtable-like table of exported functions;
   - JUMP_SLOT against its own functions: calls through its own PLT
     (cl_thrice -> cl_mul, cl_twice, cl_sum_squares), and against its own
     IFUNC (cl_square);
   - GLOB_DAT against its own data (cl_counter, which a non-PIE program
     copies) and function (&cl_add);
   - words into libc that stay lookups (strlen, printf). */
#include <stdio.h>
#include <string.h>
#include "cl_lib.h"

int cl_counter = 7;
int *cl_counter_ptr = &cl_counter;
static int hidden_value = 11;
int *cl_hidden_ptr = &hidden_value;
const char *cl_names[4] = {"zero", "one", "two", "three"};

int cl_add(int a, int b) { return a + b; }
int cl_mul(int a, int b) { return a * b; }
static int cl_sub(int a, int b) { return a - b; }

const struct cl_op cl_ops[3] = {{cl_add, "add"}, {cl_mul, "mul"}, {cl_sub, "sub"}};
size_t (*cl_length)(const char *) = strlen;

int cl_twice(int x) { return cl_add(x, x); }
int cl_thrice(int x) { return cl_mul(x, 3) + cl_twice(0) + cl_sum_squares(0, 0); }
int cl_apply(int i, int a, int b) { return cl_ops[i].fn(a, b); }

static int square_plain(int x) { return x * x; }
static int (*resolve_square(void))(int) { return square_plain; }
int cl_square(int x) __attribute__((ifunc("resolve_square")));
int cl_sum_squares(int a, int b) { return cl_square(a) + cl_square(b); }

const char *cl_name(int i) { return cl_names[i]; }
int cl_get_counter(void) { return *cl_counter_ptr; }
void cl_bump(void) { cl_counter++; }
int (*cl_get_add(void))(int, int) { return cl_add; }
