"""The sweep's figures and its table of violations, as printed by ``make fuzz`` and the test."""

from collections import Counter, defaultdict

from .sweep import is_known


def figures(inputs, outcomes):
    """Counts of the sweep: inputs, runs, clean errors, successes, violations."""
    status = Counter(o.status for o in outcomes)
    return {"inputs": len({o.input for o in outcomes}) if outcomes else 0,
            "inputs_generated": len(inputs),
            "runs": len(outcomes),
            "clean_errors": status["clean error"],
            "successes": status["success"],
            "runs_with_violations": status["violation"],
            "violations": sum(len(o.violations) for o in outcomes),
            "hangs": sum(1 for o in outcomes if o.returncode is None),
            "slowest_run_s": max((o.seconds for o in outcomes), default=0)}


def architecture(role):
    """i386 or aarch64 for a cross-built input's role (``lib-i386``), else x86-64 (text
    files and special files included)."""
    suffix = role.rsplit("-", 1)[-1]
    return suffix if suffix in ("i386", "aarch64") else "x86-64"


def by_command_and_kind(outcomes):
    """{(command, violation kind): [outcome, ...]}, sorted."""
    groups = defaultdict(list)
    for o in outcomes:
        for kind in dict.fromkeys(k for k, _ in o.violations):
            groups[(o.command, kind)].append(o)
    return dict(sorted(groups.items()))


def reproducer(outcome):
    return f'make fuzz FUZZ_ARGS="--only {outcome.input} --command {outcome.command}"'


def lines(inputs, outcomes, seconds, seed, jobs):
    f = figures(inputs, outcomes)
    out = [f"fuzz: seed {seed}: {f['inputs']} inputs (of {f['inputs_generated']} generated), "
           f"{f['runs']} runs in {seconds:.0f} s with {jobs} workers",
           f"  clean errors {f['clean_errors']}, successes {f['successes']}, "
           f"runs with violations {f['runs_with_violations']} ({f['violations']} violations), "
           f"hangs {f['hangs']}, slowest run {f['slowest_run_s']:.1f} s"]
    arch_of = {i.name: architecture(i.role) for i in inputs}
    arches = Counter(arch_of[name] for name in dict.fromkeys(o.input for o in outcomes))
    out.append("  inputs by architecture: " + ", ".join(f"{a} {n}"
                                                      for a, n in sorted(arches.items())))
    kinds = Counter(o.kind for o in outcomes)
    out.append("  runs by input kind: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    groups = by_command_and_kind(outcomes)
    if not groups:
        out.append("no violations")
        return out
    out.append("violations by command and kind (runs; an example and its reproducer):")
    for (command, kind), members in groups.items():
        first = members[0]
        detail = next(d for k, d in first.violations if k == kind)
        known = " (known)" if is_known(command, kind, detail) else ""
        out.append(f"  {command:16} {kind:17} {len(members):4}  {first.input}{known}")
        out.append(f"      {detail[:200]}")
        out.append(f"      {reproducer(first)}")
    return out
