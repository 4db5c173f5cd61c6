"""The sweep: every applicable (input, command) pair, over a pool of processes, and its summary."""

import random
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from . import baselines as baselines_module
from .commands import BY_NAME, COMMANDS
from .inputs import generate
from .runner import Run

_WORKER = {}


def plan(inputs, commands=COMMANDS):
    """Every (input, command) pair where the command takes the input."""
    return [(inp, cmd) for inp in inputs for cmd in commands if cmd.applies(inp)]


#: (input, command) pairs that broke the contract in a full sweep after the
#: sample below had passed: every subset runs them, so the test would catch
#: them coming back
REGRESSIONS = {
    ("libc-dynstr-unterminated", "retrovec"),          # hashed a name cut at DT_STRSZ
    ("libc-shdr-.dynsym.sh_type_nobits", "retrovec"),  # moved .dynsym kept SHT_NOBITS
    ("libc-shdr-.gnu.hash.sh_entsize_7", "retrovec"),  # moved .gnu.hash kept sh_entsize 7
}


def subset(pairs, seed, per_group):
    """Up to ``per_group`` pairs of each (command, input kind): every kind, every
    command; and every pair of :data:`REGRESSIONS`."""
    groups = defaultdict(list)
    for pair in pairs:
        groups[(pair[1].name, pair[0].kind)].append(pair)
    rng = random.Random(seed)
    chosen = []
    for key in sorted(groups):
        members = groups[key]
        chosen += rng.sample(members, min(per_group, len(members)))
    taken = {id(p) for p in chosen}
    chosen += [p for p in pairs if (p[0].name, p[1].name) in REGRESSIONS and id(p) not in taken]
    order = {id(p): i for i, p in enumerate(pairs)}
    return sorted(chosen, key=lambda p: order[id(p)])


def _init(baseline_dir, root):
    _WORKER["baselines"] = baselines_module.Baselines(Path(baseline_dir))
    _WORKER["root"] = root


def _one(pair, keep=False):
    inp, name = pair
    run = Run(BY_NAME[name], inp, _WORKER["baselines"], _WORKER["root"])
    try:
        outcome = run.run()
    finally:
        if not keep:
            run.cleanup()
    if keep:
        outcome.kept = str(run.scratch)
    return outcome


def run_pairs(pairs, baselines, root, jobs=2, keep=False, progress=None):
    """The outcomes of ``pairs``, in order, ``jobs`` at a time; ``progress(done, total)``
    is called after each run."""
    by_name = [(inp, cmd.name) for inp, cmd in pairs]
    if jobs <= 1:
        _init(baselines.directory, root)
        return _collect((_one(p, keep) for p in by_name), len(by_name), progress)
    with ProcessPoolExecutor(jobs, initializer=_init,
                             initargs=(str(baselines.directory), root)) as pool:
        results = pool.map(_one, by_name, [keep] * len(by_name), chunksize=4)
        return _collect(results, len(by_name), progress)


def _collect(results, total, progress):
    outcomes = []
    for outcome in results:
        outcomes.append(outcome)
        if progress:
            progress(len(outcomes), total)
    return outcomes


def prepare(seed, root):
    """Build the baselines under ``root`` and generate the inputs."""
    base = baselines_module.build(Path(root) / "baselines")
    return base, generate(base, seed)
