"""``make fuzz``: the whole sweep, or one case (``--only INPUT --command CMD``) to reproduce.

Run from tests/: ``python -m fuzz [--seed N] [--jobs N] [--subset N] [--only INPUT]...
[--command CMD]... [--role ROLE]... [--keep] [--json FILE]``.  Exit status 1 when a run
breaks the contract.
"""

import argparse
import json
import shutil
import sys
import tempfile
import time

from . import summary
from .sweep import plan, prepare, run_pairs, subset

DEFAULT_SEED = 7


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--subset", type=int, metavar="N",
                   help="only N runs of each (command, input kind), as the test does")
    p.add_argument("--only", metavar="INPUT", action="append",
                   help="only the input of this name (may be repeated)")
    p.add_argument("--command", metavar="CMD", action="append",
                   help="only this command (retrovec, vectool-lib, ...; may be repeated)")
    p.add_argument("--role", metavar="ROLE", action="append",
                   help="only inputs of this role (lib-i386, pie-aarch64, vec, ...; may be "
                        "repeated)")
    p.add_argument("--keep", action="store_true",
                   help="keep the scratch directories (and print where they are)")
    p.add_argument("--json", metavar="FILE", help="write every run's outcome to FILE")
    return p.parse_args(argv)


def select(pairs, args):
    if args.only:
        pairs = [p for p in pairs if p[0].name in args.only]
    if args.command:
        pairs = [p for p in pairs if p[1].name in args.command]
    if args.role:
        pairs = [p for p in pairs if p[0].role in args.role]
    if args.subset:
        pairs = subset(pairs, args.seed, args.subset)
    return pairs


def show(outcome):
    """One run in full: what a reproducer prints."""
    print(f"{outcome.command} on {outcome.input} ({outcome.kind}): exit {outcome.returncode}, "
          f"{outcome.seconds} s, {outcome.status}")
    print("  argv: " + " ".join(repr(a) if " " in a or not a else a for a in outcome.argv))
    print("  stderr: " + (outcome.stderr.rstrip() or "(empty)").replace("\n", "\n          "))
    for kind, detail in outcome.violations:
        print(f"  VIOLATION {kind}: {detail}")
    if getattr(outcome, "kept", None):
        print(f"  scratch: {outcome.kept}/work")


def report_progress(done, total):
    """A line on stderr every 500 runs, and at the end."""
    if done % 500 == 0 or done == total:
        print(f"fuzz: {done}/{total} runs", file=sys.stderr, flush=True)


def main(argv=None):
    args = parse_args(argv)
    root = tempfile.mkdtemp(prefix="elfvector-fuzz-")
    started = time.monotonic()
    baselines, inputs = prepare(args.seed, root)
    pairs = select(plan(inputs), args)
    if not pairs:
        print("fuzz: no run matches", file=sys.stderr)
        return 2
    outcomes = run_pairs(pairs, baselines, root, jobs=args.jobs, keep=args.keep,
                         progress=report_progress)
    if len(outcomes) <= 5:
        for outcome in outcomes:
            show(outcome)
    print("\n".join(summary.lines(inputs, outcomes, time.monotonic() - started, args.seed,
                                  args.jobs)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"figures": summary.figures(inputs, outcomes),
                       "outcomes": [vars(o) for o in outcomes]}, f, indent=1)
    if args.keep:
        print(f"kept: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if any(o.violations for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
