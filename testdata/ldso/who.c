/* Which copy of libwho.so.1 was loaded (WHO), and a dependency to find. */
int dep(void);
const char *who(void) { return dep() == 7 ? WHO : "?"; }
