/* The same library without versions: what an old program was linked with. */
int foo(void) { return 0; }
int bar(void) { return 0; }
