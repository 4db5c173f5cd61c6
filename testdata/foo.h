#include <stddef.h>
extern int foo_counter;
int foo_add(int a, int b);
int foo_mul(int a, int b);
long foo_sum(int n, ...);
const char *foo_name(void);
int foo_twice(int x);
size_t foo_len(const char *s);
void foo_hello(const char *who);
int (*foo_self(void))(int, int);
double foo_hypot2(double x, double y);
