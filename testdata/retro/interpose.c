/* An LD_PRELOAD that would interpose demo_twice, which the retro mode
   pre-bound: the output refuses to start. */
int demo_twice(int x) { return -x; }
