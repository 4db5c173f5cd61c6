/* The call-cost program: runs ev_loop_run (loop_body.c: in this program,
 * or in libloop.so) and prints "<ns per call> <checksum>".
 *
 * With two more arguments, OBJECT and OFFSET (hex), it also shows how the
 * slot at OFFSET in OBJECT (a file name as ld.so loaded it, "" for the
 * program itself) was bound, as the running process sees it:
 *     slot <address> <its 16 bytes in hex>
 *     object <load base> <name>          for every loaded object
 *     map <line>                         /proc/self/maps
 * The probe runs after the loop, so the timed code is the same either way.
 */
#define _GNU_SOURCE
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double ev_loop_run(long calls, int reps, unsigned *xp);

struct wanted {
    const char *name;          /* "" for the program */
    unsigned long base;
    int found;
};

static int is_named(const char *path, const char *name)
{
    size_t n = strlen(path), m = strlen(name);

    if (m == 0)
        return n == 0;
    return n >= m && strcmp(path + n - m, name) == 0 && (n == m || path[n - m - 1] == '/');
}

static int visit(struct dl_phdr_info *info, size_t size, void *data)
{
    struct wanted *w = data;

    (void)size;
    printf("object %#lx %s\n", (unsigned long)info->dlpi_addr,
           info->dlpi_name[0] ? info->dlpi_name : "(program)");
    if (!w->found && is_named(info->dlpi_name, w->name)) {
        w->base = info->dlpi_addr;
        w->found = 1;
    }
    return 0;
}

static int probe(const char *object, const char *offset)
{
    struct wanted w = { object, 0, 0 };
    char line[1024];
    FILE *maps;

    dl_iterate_phdr(visit, &w);
    if (!w.found) {
        fprintf(stderr, "no loaded object named '%s'\n", object);
        return 1;
    }
    const unsigned char *slot = (const unsigned char *)(w.base + strtoul(offset, NULL, 16));
    printf("slot %#lx", (unsigned long)slot);
    for (int i = 0; i < 16; i++)
        printf(" %02x", slot[i]);
    printf("\n");
    maps = fopen("/proc/self/maps", "r");
    if (maps == NULL) {
        perror("/proc/self/maps");
        return 1;
    }
    while (fgets(line, sizeof line, maps))
        printf("map %s", line);
    fclose(maps);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 5) {
        fprintf(stderr, "usage: %s CALLS REPS [OBJECT OFFSET]\n", argv[0]);
        return 2;
    }
    unsigned x = 1;
    double ns = ev_loop_run(atol(argv[1]), atoi(argv[2]), &x);

    printf("%.4f %u\n", ns, x);
    return argc == 5 ? probe(argv[3], argv[4]) : 0;
}
