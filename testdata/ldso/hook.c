/* References to names the program also defines (hook) or copies (value);
   the tests mark them protected, or the library DT_SYMBOLIC. */
int hook(void) { return 1; }
int value = 1;

int lib_hook(void) { return hook(); }
int *lib_value(void) { return &value; }
