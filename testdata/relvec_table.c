/* librelvec_table.so.1, for relvec: tables of pointers to the library's own
 * functions and strings.  Static functions and strings give
 * R_X86_64_RELATIVE relocations (in .data.rel.ro and .data), exported
 * functions R_X86_64_64 (in tables) and R_X86_64_GLOB_DAT (their &f). */
#include "relvec_table.h"

static int twice(int x) { return 2 * x; }
static int plus_one(int x) { return x + 1; }
int relvec_square(int x) { return x * x; }
int relvec_negate(int x) { return -x; }
int relvec_addr_taken(int x) { return x + 100; }   /* programs compare its address */

const struct relvec_entry relvec_table[] = {
    {"twice", twice},
    {"square", relvec_square},
    {"negate", relvec_negate},
    {"addr_taken", relvec_addr_taken},
    {0, 0},
};

/* 100 consecutive pointers: RELR bitmaps of 63 and 37 words. */
#define S10(p) p "0", p "1", p "2", p "3", p "4", p "5", p "6", p "7", p "8", p "9"
const char *const relvec_words[100] = {
    S10("a"), S10("b"), S10("c"), S10("d"), S10("e"),
    S10("f"), S10("g"), S10("h"), S10("i"), S10("j"),
};

/* Writable data, outside RELRO. */
const char *relvec_mutable = "mutable";
int (*relvec_hook)(int) = relvec_negate;
static int (*local_hook)(int) = plus_one;
static char gap[8192] = {1};                      /* far from the tables */
static const char *far_word = "far";

/* A local IFUNC whose resolver reads a relocated word: its IRELATIVE must
 * run after relvec's fixup. */
static int picked(int x) { return x + 1000; }
static int (*volatile candidates[])(int) = {picked};
static int (*resolve_pick(void))(int) { return candidates[0]; }
static int pick(int) __attribute__((ifunc("resolve_pick")));
int (*const relvec_picked)(int) = pick;

int (*relvec_get_square(void))(int) { return relvec_square; }
int (*relvec_get_addr_taken(void))(int) { return relvec_addr_taken; }
int relvec_call_local(int x) { return local_hook(x) + gap[0]; }
const char *relvec_word(int i) { return i < 0 ? far_word : relvec_words[i]; }
