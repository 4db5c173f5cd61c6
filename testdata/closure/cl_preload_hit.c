/* Defines a function the closure pre-bound: the preload check refuses it. */
int cl_twice(int x) { return -x; }
