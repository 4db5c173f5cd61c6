/* Test-only probes for tests/test_runtime.py.
 *
 * rt_slot_state(addr) tells whether the import-vector slots of the ELF
 * object holding ADDR are bound, by reading the first byte of every slot in
 * its .elfvector.slots section:
 *   'U'  every slot is unbound (e8: call .Llazy)
 *   'B'  every slot is bound (anything else: a jump to the target, e9 rel32
 *        or a far form)
 *   'M'  some of each
 *   '-'  the object has no .elfvector.slots section (a stock build)
 *   '?'  cannot tell
 * rt_probe(fmt, ...) appends a line to the file named by $RT_PROBE (nothing
 * when unset), never to stdout/stderr, which must stay identical between the
 * vectored and the stock build.  Neither calls malloc.
 */
#ifndef RT_PROBE_H
#define RT_PROBE_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static __attribute__((unused)) char rt_slot_state(const void *addr)
{
    Dl_info info;
    struct link_map *map = NULL;
    if (!dladdr1(addr, &info, (void **)&map, RTLD_DL_LINKMAP) || !map)
        return '?';
    const char *path = map->l_name && map->l_name[0] ? map->l_name : "/proc/self/exe";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return '?';
    char state = '?';
    Elf64_Ehdr eh;
    Elf64_Shdr strtab, sh;
    if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || eh.e_shstrndx >= eh.e_shnum ||
        pread(fd, &strtab, sizeof strtab, eh.e_shoff + (off_t)eh.e_shstrndx * eh.e_shentsize)
            != (ssize_t)sizeof strtab)
        goto out;
    state = '-';
    for (unsigned i = 0; i < eh.e_shnum; i++) {
        char name[32] = {0};
        if (pread(fd, &sh, sizeof sh, eh.e_shoff + (off_t)i * eh.e_shentsize) != (ssize_t)sizeof sh)
            { state = '?'; goto out; }
        if (pread(fd, name, sizeof name - 1, strtab.sh_offset + sh.sh_name) < 0)
            { state = '?'; goto out; }
        if (strcmp(name, ".elfvector.slots") != 0)
            continue;
        const unsigned char *slot = (const unsigned char *)(map->l_addr + sh.sh_addr);
        unsigned long unbound = 0, bound = 0;
        for (unsigned long off = 0; off + 16 <= sh.sh_size; off += 16) {
            if (slot[off] == 0xcc)
                break;              /* the padding after the last slot */
            if (slot[off] == 0xe8)
                unbound++;
            else
                bound++;            /* a jump to the target, whatever its encoding */
        }
        state = unbound && bound ? 'M' : unbound ? 'U' : bound ? 'B' : '?';
        break;
    }
out:
    close(fd);
    return state;
}

static __attribute__((unused, format(printf, 1, 2))) void rt_probe(const char *fmt, ...)
{
    const char *path = getenv("RT_PROBE");
    if (!path || !*path)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n >= (int)sizeof line)
        n = sizeof line - 1;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (write(fd, line, n) != n) { /* nothing to do */ }
    close(fd);
}

/* The state of the slots of the object this header is compiled into. */
#define RT_OWN_SLOTS() rt_slot_state((const void *)&rt_slot_state)

#endif
