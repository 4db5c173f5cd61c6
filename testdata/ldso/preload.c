/* An LD_PRELOAD library: comes before every library of the program. */
int twice(void) { return 9; }
