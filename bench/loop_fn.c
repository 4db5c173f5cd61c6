/* The function loop_body.c calls: in an object of its own so that the loop's
 * compiler cannot see it, and noinline so that not even an LTO build can
 * inline it.  The name is one no system library defines. */
__attribute__((noinline)) unsigned ev_bench_step(unsigned x)
{
    return x + 1;
}
