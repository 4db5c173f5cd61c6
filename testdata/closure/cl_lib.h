/* The closure-rewrite test library: every kind of word the rewrite settles. */
#include <stddef.h>

struct cl_op {
    int (*fn)(int, int);
    const char *name;
};

extern int cl_counter;
extern int *cl_counter_ptr;
extern int *cl_hidden_ptr;
extern const char *cl_names[4];
extern const struct cl_op cl_ops[3];
extern size_t (*cl_length)(const char *);

int cl_add(int a, int b);
int cl_mul(int a, int b);
int cl_twice(int x);
int cl_thrice(int x);
int cl_apply(int i, int a, int b);
int cl_square(int x);
int cl_sum_squares(int a, int b);
const char *cl_name(int i);
int cl_get_counter(void);
void cl_bump(void);
int (*cl_get_add(void))(int, int);
