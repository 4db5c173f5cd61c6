/* librta.so.1: a shared library with an import vector (impvec --link on its
 * -shared link) that calls librtv through its slots. */
#ifndef RT_ALIB_H
#define RT_ALIB_H
#include <stddef.h>
int a_compute(int x, char *out, size_t len);    /* calls 7 functions of librtv */
long a_count(int n);                            /* n calls of v_add */
int a_ctor_result(void);                        /* what librta's own constructor computed */
char a_slot_state(void);                        /* rt_slot_state() of librta */
#endif
