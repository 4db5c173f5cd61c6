/* A program calling 40 libraries, each with an export vector (280 slots). */
#include "rt_probe.h"   /* first: it defines _GNU_SOURCE */
#include <stdio.h>

#define RT_LIBS X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) \
    X(10) X(11) X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19)     \
    X(20) X(21) X(22) X(23) X(24) X(25) X(26) X(27) X(28) X(29)     \
    X(30) X(31) X(32) X(33) X(34) X(35) X(36) X(37) X(38) X(39)

#define X(n)                                                              \
    int m_add_##n(int); int m_scale_##n(int); void *m_self_##n(void);     \
    long m_f1_##n(long); long m_f2_##n(long, long); double m_f3_##n(double); \
    int m_f4_##n(const char *);
RT_LIBS
#undef X

int main(void)
{
    long total = 0;
#define X(n)                                                            \
    {                                                                   \
        int a = m_add_##n(n), s = m_scale_##n(2);                       \
        long f1 = m_f1_##n(1000), f2 = m_f2_##n(n, 7);                  \
        double f3 = m_f3_##n(3.0);                                      \
        int f4 = m_f4_##n("abcd");                                      \
        const char *same = m_self_##n() == (void *)m_add_##n ? "yes" : "NO"; \
        printf("lib %d: add %d scale %d f %ld %ld %.1f %d same %s\n", n, a, \
               s, f1, f2, f3, f4, same);                                \
        total += a * 1000L + s;                                         \
    }
    RT_LIBS
#undef X
    int (*volatile first)(int) = m_add_0, (*volatile last)(int) = m_add_39;
    printf("total %ld\n", total);
    printf("same &m_add_0: %s, same &m_add_39: %s\n",
           (void *)first == m_self_0() ? "yes" : "NO", (void *)last == m_self_39() ? "yes" : "NO");
    printf("through pointers: %d %d\n", first(100), last(100));
    rt_probe("main: slots %c\n", RT_OWN_SLOTS());
    return 0;
}
