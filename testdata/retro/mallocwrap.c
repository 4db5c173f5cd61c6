/* An LD_PRELOAD allocator wrapper: malloc is kept as a lookup, so it still
   interposes; says on stderr, at exit, that it was used. */
#include <stddef.h>
#include <unistd.h>

void *__libc_malloc(size_t size);
static int used;

void *malloc(size_t size)
{
    used = 1;
    return __libc_malloc(size);
}

__attribute__((destructor)) static void report(void)
{
    static const char line[] = "mallocwrap: malloc was interposed\n";
    if (used)
        write(2, line, sizeof line - 1);
}
