/* librthook.so.1 (linked the usual way): its constructor calls back into
 * the program, which exports rt_prog_hook (-rdynamic), and calls v_add of
 * librtv directly (through the program's canonical, exported slot when the
 * program takes &v_add). */
#include <stdio.h>
#include "rt_vlib.h"

void rt_prog_hook(const char *who);     /* defined by the program */

__attribute__((constructor)) static void hook_ctor(void)
{
    rt_prog_hook("librthook ctor");
    printf("librthook ctor: v_add(1, 2) = %d\n", v_add(1, 2));
}
