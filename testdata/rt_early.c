/* librtearly.so.1 (linked the usual way), a library that librta depends on:
 * its constructor runs before librta's .init_array, so before librta's
 * binder, and calls librta, whose calls to librtv reach unbound slots.
 * It names librta's functions without linking against it (they resolve in
 * the global scope), so that it does not depend on librta itself. */
#include "rt_probe.h"   /* first: it defines _GNU_SOURCE */
#include <stdio.h>
#include "rt_alib.h"

__attribute__((constructor)) static void early_ctor(void)
{
    char buf[200];
    char before = a_slot_state();
    int n = a_compute(7, buf, sizeof buf);
    char after = a_slot_state();
    printf("early ctor: %s (%d chars)\n", buf, n);
    printf("early ctor: a_count(1000) = %ld\n", a_count(1000));
    rt_probe("early ctor: before %c after %c\n", before, after);
}
