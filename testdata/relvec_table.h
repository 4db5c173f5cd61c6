/* librelvec_table.so.1: pointers to the library's own functions and strings. */
struct relvec_entry {
    const char *name;
    int (*fn)(int);
};
extern const struct relvec_entry relvec_table[];
extern const char *const relvec_words[100];
extern const char *relvec_mutable;
extern int (*relvec_hook)(int);
extern int (*const relvec_picked)(int);
int relvec_square(int x);
int relvec_negate(int x);
int relvec_addr_taken(int x);
int (*relvec_get_square(void))(int);
int (*relvec_get_addr_taken(void))(int);
int relvec_call_local(int x);
const char *relvec_word(int i);
