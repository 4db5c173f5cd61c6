/* Calls every function of libnumnames.so.1 (numnames.c), the old dab@V1
   too; "$dol" through an assembly stub, since C cannot name it. */
#include <stdio.h>
int add(int, int);
int feed(int), bad(int), cab(int), fd(int), fb(int), ax(int), ah(int), other(int);
int sections(int) __asm__("SECTIONS");
int align_(int) __asm__("ALIGN");
int bed(int);
int dab(int);
int dab_old(int);
__asm__(".symver dab_old, dab@V1");
int call_dol(int);
__asm__(".text\n\t.globl call_dol\n\t.type call_dol,@function\n"
        "call_dol:\n\tjmp \"$dol\"@PLT\n");

int main(void)
{
    printf("add %d feed %d bad %d cab %d fd %d fb %d ax %d ah %d other %d\n",
           add(2, 3), feed(4), bad(5), cab(6), fd(7), fb(8), ax(9), ah(10), other(11));
    printf("$dol %d SECTIONS %d ALIGN %d bed %d dab %d dab@V1 %d\n",
           call_dol(1), sections(2), align_(3), bed(4), dab(5), dab_old(6));
    return 0;
}
