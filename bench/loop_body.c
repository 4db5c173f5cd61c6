/* The timed loop of the call-cost benchmark: CALLS calls of one library
 * function, timed with clock_gettime around the loop, best of REPS
 * repetitions.  Returns the best ns per call; *xp carries the chain in
 * and out (the checksum).
 *
 * The same object is linked into the program (the far variants: the
 * caller is the PIE program at 0x55..., the library at 0x7f...) and, built
 * with -fPIC, into libloop.so (the near variants: caller and callee are
 * both libraries, mapped next to each other).  ev_bench_step is in another
 * object (loop_fn.c), so this compiler cannot inline it, and each call
 * takes the previous result, so no call can be hoisted out of the loop or
 * dropped.
 */
#include <time.h>

unsigned ev_bench_step(unsigned x);

static double now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

double ev_loop_run(long calls, int reps, unsigned *xp)
{
    unsigned x = *xp;
    double best = -1;

    for (int r = 0; r < reps; r++) {
        double start = now_ns();
        for (long i = 0; i < calls; i++)
            x = ev_bench_step(x);
        double elapsed = now_ns() - start;
        if (best < 0 || elapsed < best)
            best = elapsed;
    }
    *xp = x;
    return best / calls;
}
