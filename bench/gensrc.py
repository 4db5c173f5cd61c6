"""The generated C of the start-up benchmark, and the output it must print.

The library has ``n`` distinct functions: distinct constants keep the
link editor from folding two into one, and make a call bound to the wrong
function change the result.  The program calls every function once,
feeding each the running result, so no call can be dropped or reordered
and the number printed depends on every binding.  The expected number is
computed here, in Python, independently of any build.
"""

UINT_MASK = 0xFFFFFFFF


def function_name(i):
    return f"f{i:04d}"


def _multiplier(i):
    """Odd and different for every function."""
    return 2 * i + 3


def library_source(n):
    """``unsigned fNNNN(unsigned x)`` for NNNN < n (unsigned: no overflow UB)."""
    return "".join(
        f"unsigned {function_name(i)}(unsigned x) {{ return x * {_multiplier(i)}u + {i}u; }}\n"
        for i in range(n))


def program_source(n):
    """A main that chains a call of each function and prints the result.

    The chain starts from argc, so the compiler knows nothing of the
    values even if it could see the library (it cannot: another object).
    """
    lines = ["#include <stdio.h>", ""]
    lines += [f"unsigned {function_name(i)}(unsigned);" for i in range(n)]
    lines += ["", "int main(int argc, char **argv)", "{", "    unsigned acc = (unsigned)argc;",
              "", "    (void)argv;"]
    lines += [f"    acc = acc * 31u + {function_name(i)}(acc);" for i in range(n)]
    lines += ['    printf("%u\\n", acc);', "    return 0;", "}", ""]
    return "\n".join(lines)


def expected_output(n, argc=1):
    """What every build of ``program_source(n)`` must print when run with no arguments."""
    acc = argc
    for i in range(n):
        acc = (acc * 31 + acc * _multiplier(i) + i) & UINT_MASK
    return f"{acc}\n"


def expected_loop_checksum(calls, reps):
    """The loop's final value: ``ev_bench_step`` adds 1, starting from 1."""
    return (1 + calls * reps) & UINT_MASK
