/* librtother.so.1 (linked the usual way): another object's view of &v_add. */
#include "rt_vlib.h"
int (*other_view_add(void))(int, int) { return v_add; }
