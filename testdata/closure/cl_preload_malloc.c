/* Defines only malloc, which the closure keeps as a lookup: allowed. */
#include <stddef.h>
void *__libc_malloc(size_t size);
void *malloc(size_t size) { return __libc_malloc(size); }
