/* librtifunchook.so.1 (linked the usual way): a local IFUNC whose resolver
 * calls rt_early_hook, a function of the program (exported with -rdynamic),
 * while ld.so relocates this library, before it relocates the program.
 * The program's hook calls librtv through a slot that cannot be bound yet
 * (the GOT word of its layout symbol is still zero): the binder must fail
 * loudly (exit 127), never jump wild. */
int rt_early_hook(void);

static int picked_one(void) { return 1; }

static int (*resolve_picked(void))(void)
{
    rt_early_hook();
    return picked_one;
}

static int picked(void) __attribute__((ifunc("resolve_picked")));

int hook_result(void) { return picked(); }
