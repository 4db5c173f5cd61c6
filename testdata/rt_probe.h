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
 * rt_wx(addr) describes W^X: the permissions of the mapping that holds those
 * slots ("r-xp"; "-" without slots), then "rwx N": how many mappings of the
 * process are writable and executable at once (read from /proc/self/maps).
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

/* The address and size of the .elfvector.slots section of the object that
 * holds ADDR: 1 if found, 0 if it has none, -1 if we cannot tell. */
static __attribute__((unused)) int rt_slots_of(const void *addr, const unsigned char **slots,
                                               unsigned long *size)
{
    Dl_info info;
    struct link_map *map = NULL;
    if (!dladdr1(addr, &info, (void **)&map, RTLD_DL_LINKMAP) || !map)
        return -1;
    const char *path = map->l_name && map->l_name[0] ? map->l_name : "/proc/self/exe";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int found = -1;
    Elf64_Ehdr eh;
    Elf64_Shdr strtab, sh;
    if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || eh.e_shstrndx >= eh.e_shnum ||
        pread(fd, &strtab, sizeof strtab, eh.e_shoff + (off_t)eh.e_shstrndx * eh.e_shentsize)
            != (ssize_t)sizeof strtab)
        goto out;
    found = 0;
    for (unsigned i = 0; i < eh.e_shnum; i++) {
        char name[32] = {0};
        if (pread(fd, &sh, sizeof sh, eh.e_shoff + (off_t)i * eh.e_shentsize) != (ssize_t)sizeof sh
            || pread(fd, name, sizeof name - 1, strtab.sh_offset + sh.sh_name) < 0)
            { found = -1; goto out; }
        if (strcmp(name, ".elfvector.slots") == 0) {
            *slots = (const unsigned char *)(map->l_addr + sh.sh_addr);
            *size = sh.sh_size;
            found = 1;
            break;
        }
    }
out:
    close(fd);
    return found;
}

static __attribute__((unused)) char rt_slot_state(const void *addr)
{
    const unsigned char *slot;
    unsigned long size;
    int found = rt_slots_of(addr, &slot, &size);
    if (found <= 0)
        return found ? '?' : '-';
    unsigned long unbound = 0, bound = 0;
    for (unsigned long off = 0; off + 16 <= size; off += 16) {
        if (slot[off] == 0xcc)
            break;              /* the padding after the last slot */
        if (slot[off] == 0xe8)
            unbound++;
        else
            bound++;            /* a jump to the target, whatever its encoding */
    }
    return unbound && bound ? 'M' : unbound ? 'U' : bound ? 'B' : '?';
}

/* "PERMS rwx N" (see above) into OUT, without malloc. */
static __attribute__((unused)) const char *rt_wx(const void *addr, char *out, size_t size)
{
    static char maps[1 << 16];
    const unsigned char *slots = NULL;
    unsigned long slots_size;
    char perms[5] = "-";
    int rwx = 0;
    if (rt_slots_of(addr, &slots, &slots_size) <= 0)
        slots = NULL;
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    ssize_t n = 0, got;
    while (fd >= 0 && n < (ssize_t)sizeof maps - 1 &&
           (got = read(fd, maps + n, sizeof maps - 1 - n)) > 0)
        n += got;
    if (fd >= 0)
        close(fd);
    maps[n] = 0;
    for (char *line = maps; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        unsigned long start, end;
        char p[5];
        if (sscanf(line, "%lx-%lx %4s", &start, &end, p) != 3)
            continue;
        if (p[1] == 'w' && p[2] == 'x')
            rwx++;
        if (slots && start <= (unsigned long)slots && (unsigned long)slots < end)
            memcpy(perms, p, sizeof perms);
    }
    snprintf(out, size, "%s rwx %d", perms, rwx);
    return out;
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
/* W^X of the object this header is compiled into (char buf[32]). */
#define RT_OWN_WX(buf) rt_wx((const void *)&rt_slot_state, buf, sizeof buf)

#endif
