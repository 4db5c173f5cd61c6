/* Data a program copies, and a function whose address a non-PIE program
   makes canonical (its PLT entry). */
int counter = 5;
int *counter_addr(void) { return &counter; }

int libfunc(void) { return 1; }
void *libfunc_addr(void) { return (void *)&libfunc; }
