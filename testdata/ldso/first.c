/* Loaded first of two libraries that define the same names. */

/* A weak definition: ld.so takes it although a later object is strong. */
__attribute__((weak)) int weak_first(void) { return 1; }

/* Also defined by second.c: this earlier definition interposes. */
int twice(void) { return 1; }

/* Defined by the program and by second.c: the program's wins. */
int hook(void);

int first_calls_hook(void) { return hook(); }
