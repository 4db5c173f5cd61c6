/* Two versions of foo: foo@V1 (the old one) and foo@@V2 (the default). */
int foo_v1(void) { return 1; }
int foo_v2(void) { return 2; }
int bar(void) { return 20; }

__asm__(".symver foo_v1, foo@V1");
__asm__(".symver foo_v2, foo@@V2");
