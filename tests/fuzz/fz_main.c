/* The fuzz baselines' program: imports every function of libfz.so.1. */
#include <stddef.h>

int fz_add(int, int);
int fz_mul(int, int);
int fz_twice(int);
size_t fz_len(const char *);
void fz_hello(const char *);
int (*fz_self(void))(int, int);

int main(int argc, char **argv)
{
    fz_hello(argv[0]);
    return (fz_add(argc, 1) + fz_mul(2, 3) + fz_twice(1) + (int)fz_len("abc")
            + fz_self()(1, 1)) & 0x7f;
}
