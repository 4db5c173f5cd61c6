/* librtifunc.so.1 (linked the usual way, against librtv): a local IFUNC
 * whose resolver calls librtv.  ld.so runs the resolver while relocating
 * librtifunc (the IRELATIVE relocation), before it relocates the program,
 * so before any .preinit_array function.  Linked the usual way, the call
 * goes to librtv, already relocated (librtifunc depends on it); when the
 * program defines v_add (an exported slot), the call goes to the program. */
#include "rt_vlib.h"

static int resolved_add;
static double resolved_sumd;

static int pick_slow(void) { return 1; }
static int pick_fast(void) { return 2; }

static int (*resolve_pick(void))(void)
{
    resolved_add = v_add(20, 22);
    resolved_sumd = v_sumd(2, 0.5, 0.25);
    return resolved_add == 42 ? pick_fast : pick_slow;
}

static int pick(void) __attribute__((ifunc("resolve_pick")));

int ifunc_result(double *sumd)
{
    *sumd = resolved_sumd;
    return pick() * 100 + resolved_add;
}
