/* Calls through every PLT entry of cl_plt. */
#include <stdio.h>
int cl_plt_32(int x);
extern const char **cl_plt_names;
int main(void) {
    printf("%d %s %s\n", cl_plt_32(1), cl_plt_names[0], cl_plt_names[1]);
    return 0;
}
