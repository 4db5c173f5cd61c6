/* Loaded after first.c's library: each of its names is interposed. */

int weak_first(void) { return 2; }
int twice(void) { return 2; }
int hook(void) { return 2; }

/* 100 * twice + 10 * weak_first + hook, as the calls bind. */
int second_calls(void) { return twice() * 100 + weak_first() * 10 + hook(); }
