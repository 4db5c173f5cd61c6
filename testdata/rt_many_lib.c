/* One of the 40 small libraries of the many-vectors test: compile with
 * -DRT_N=n (0..39) for librtm<n>.so.  Seven functions each, so that the
 * program's 280 slots take two pages. */
#ifndef RT_N
#error "define RT_N"
#endif
#define RT_CAT2(a, b) a##b
#define RT_CAT(a, b) RT_CAT2(a, b)

int RT_CAT(m_add_, RT_N)(int x) { return x + RT_N; }
int RT_CAT(m_scale_, RT_N)(int x) { return x * (RT_N + 1); }
void *RT_CAT(m_self_, RT_N)(void) { return (void *)RT_CAT(m_add_, RT_N); }
long RT_CAT(m_f1_, RT_N)(long x) { return x ^ (RT_N * 3); }
long RT_CAT(m_f2_, RT_N)(long x, long y) { return x * y - RT_N; }
double RT_CAT(m_f3_, RT_N)(double x) { return x * 0.5 + RT_N; }
int RT_CAT(m_f4_, RT_N)(const char *s) { return s[RT_N % 4] + RT_N; }
