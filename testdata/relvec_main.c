/* Uses librelvec_table.so.1 and foo.so.5: both may be linked at one base. */
#include <stdio.h>
#include "foo.h"
#include "relvec_table.h"

int main(void)
{
    for (const struct relvec_entry *e = relvec_table; e->name; e++)
        printf("%s(7) = %d\n", e->name, e->fn(7));
    for (int i = 0; i < 100; i++)
        printf("%s%c", relvec_words[i], i % 20 == 19 ? '\n' : ' ');
    printf("word 42 %s, far %s\n", relvec_word(42), relvec_word(-1));
    printf("mutable %s, hook %d, local %d, square %d\n", relvec_mutable, relvec_hook(5),
           relvec_call_local(5), relvec_get_square()(9));
    printf("picked %d\n", relvec_picked(1));
    printf("same &relvec_addr_taken: %s %s\n",
           relvec_get_addr_taken() == relvec_addr_taken ? "yes" : "NO",
           relvec_table[3].fn == relvec_addr_taken ? "yes" : "NO");
    printf("foo: %s %d\n", foo_name(), foo_add(2, 2));
    return 0;
}
