/* A library of functions that call each other through its own PLT: in an
   IBT layout its dead lazy .plt (16 bytes an entry) can hold the fix-up
   routine, in a classic one its 10-byte lazy tails, threaded by jumps.  Built with a filler (see the tests) that leaves no room in the
   last page of its executable segment. */
#define STEP(n, m) int cl_plt_##n(int x) { return cl_plt_##m(x) + n; }
int cl_plt_0(int x) { return x; }
STEP(1, 0) STEP(2, 1) STEP(3, 2) STEP(4, 3) STEP(5, 4) STEP(6, 5) STEP(7, 6) STEP(8, 7)
STEP(9, 8) STEP(10, 9) STEP(11, 10) STEP(12, 11) STEP(13, 12) STEP(14, 13) STEP(15, 14)
STEP(16, 15) STEP(17, 16) STEP(18, 17) STEP(19, 18) STEP(20, 19) STEP(21, 20) STEP(22, 21)
STEP(23, 22) STEP(24, 23) STEP(25, 24) STEP(26, 25) STEP(27, 26) STEP(28, 27) STEP(29, 28)
STEP(30, 29) STEP(31, 30) STEP(32, 31)
static const char *names[] = {"plt", "calls"};
const char **cl_plt_names = names;
