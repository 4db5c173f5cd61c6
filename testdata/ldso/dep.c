int dep(void) { return 7; }
