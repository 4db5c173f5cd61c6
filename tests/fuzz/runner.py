"""Run one command on one input in a scratch directory, and check the contract.

The contract (issue 7), for every command on every input:

* it ends within ``TIMEOUT`` seconds and ``ADDRESS_SPACE`` bytes (the
  limit is set in the child, so a runaway allocation fails there);
* on failure: exit 1 or 2, and stderr is exactly one line, ``prog: `` then
  the path of the input under test, with no "internal error", no
  traceback and no temporary file's name;
* an input no command may accept (``must_fail``) is refused;
* the input and every other file it was given are unchanged (a hash
  before and after), an existing output survives a failure, nothing is
  left behind in the directory or in ``$TMPDIR``;
* on success: an ELF output makes ``readelf -a`` and ``eu-elflint
  --gnu-ld`` report nothing the input (or, for a link, a valid build) did
  not already have, and stderr carries no Python warning.

Each breach is a ``(kind, detail)`` in the run's ``Outcome``.
"""

import hashlib
import os
import re
import resource
import shutil
import signal
import stat
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .commands import GOOD_PATTERNS
from .elfview import EM_AARCH64, ElfView

TIMEOUT = 10
ADDRESS_SPACE = 1 << 30
SENTINEL = b"an output that existed before the run\n"
TOOL_TIMEOUT = 60
TEMP_NAME = re.compile(r"\.elfvector-|trial\.so|expvec-[a-z0-9_]{6,}|/tmp/tmp")
PYTHON_NOISE = re.compile(r"\w+Warning: |Traceback|internal error")


@dataclass
class Outcome:
    command: str
    input: str
    kind: str
    argv: list
    returncode: object          # None: killed at the timeout
    seconds: float
    stderr: str
    violations: list = field(default_factory=list)    # [(kind, detail)]

    @property
    def status(self):
        if self.violations:
            return "violation"
        return "success" if self.returncode == 0 else "clean error"


def limit_resources():
    """In the child: the address-space cap, and no core files."""
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def clean_env(tmpdir):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LD_") and k != "ELFVECTOR_DEBUG"}
    env.update(TMPDIR=str(tmpdir), LC_ALL="C.UTF-8")
    return env


def execute(argv, cwd, env, timeout=TIMEOUT):
    """Run ``argv`` with stdin closed, the limits set, killed (its whole group) at ``timeout``."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=limit_resources, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
        returncode = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        returncode = None
    return returncode, err.decode("utf-8", "replace"), time.monotonic() - started


# -- the files of a run -----------------------------------------------------------


def snapshot(top):
    """{relative path: signature} of everything under ``top`` (symlinks not followed)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                sig = ("file", digest, st.st_ino, stat.S_IMODE(st.st_mode))
            elif stat.S_ISLNK(st.st_mode):
                sig = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                sig = ("dir",)
            else:
                sig = ("special", stat.S_IFMT(st.st_mode))
            state[os.path.relpath(path, top)] = sig
    return state


def materialize(inp, work, place, baselines):
    """Put ``inp`` at ``place`` in ``work``; returns (argument, text the error must name)."""
    path = work / place
    path.parent.mkdir(parents=True, exist_ok=True)
    special = inp.special
    if special is None:
        path.write_bytes(inp.content(baselines))
        path.chmod(inp.mode)
        return place, place
    if special == "newline":
        name = place.replace("input", "bad\nname")
        (work / name).write_bytes(inp.text)
        return name, name.split("\n")[1]
    if special == "fifo":
        os.mkfifo(path)
    elif special == "dir":
        path.mkdir()
    elif special == "loop":
        os.symlink(path.name + ".loop", path)
        os.symlink(path.name, str(path) + ".loop")
    elif special == "devnull":
        if not place.endswith(".vec"):
            return "/dev/null", "/dev/null"
        os.symlink("/dev/null", path)
    elif special != "missing":
        raise ValueError(f"unknown special file {special}")
    return place, place


def output_path(inp, work):
    """The -o path of the run, and whether it is the thing under test."""
    if inp.special == "nodir":
        return "nodir/out", True
    if inp.special == "isdir":
        (work / "outdir").mkdir()
        return "outdir", True
    (work / "out").write_bytes(SENTINEL)
    (work / "out").chmod(0o640)
    return "out", False


# -- diagnostics --------------------------------------------------------------------


def _normalize(line, path):
    line = line.replace(str(path), "FILE")
    return re.sub(r"\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]*\d[0-9a-fA-F]*\b", "N", line.strip())


#: eu-elflint (elfutils 0.188) calls every R_AARCH64_IRELATIVE an invalid type, stock
#: glibc's AArch64 libc.so.6's as well: those lines say nothing of the file
ELFLINT_INVALID_TYPE = re.compile(r"section \[\s*\d+\] '([^']+)': relocation (\d+): invalid type$")
ELFLINT_UNKNOWN_TYPES = {EM_AARCH64: {1032}}       # R_AARCH64_IRELATIVE


def _relocation_types(path):
    """{(section name, index): type} of ``path``'s relocation sections, read from their
    bytes (readelf lists none when .dynsym's header is bent); {} if they cannot be read."""
    try:
        view = ElfView(Path(path).read_bytes())
        return view.machine, {(name, i): rtype for name in view.sections
                              if name.startswith(".rel")
                              for i, (_, _, rtype) in enumerate(view.relocations(name))}
    except (struct.error, IndexError, KeyError, ValueError, OSError):
        return None, {}


def _elflint_noise(line, path, cache):
    """Whether an eu-elflint line is one of its false alarms (ELFLINT_UNKNOWN_TYPES)."""
    match = ELFLINT_INVALID_TYPE.match(line.strip())
    if not match:
        return False
    if "types" not in cache:
        cache["types"] = _relocation_types(path)
    machine, types = cache["types"]
    return types.get((match.group(1), int(match.group(2)))) in \
        ELFLINT_UNKNOWN_TYPES.get(machine, ())


def diagnostics(path):
    """What readelf -a and eu-elflint --gnu-ld say about ``path``, numbers masked."""
    found, cache = set(), {}
    for tool, argv in (("readelf", ["readelf", "-a", "-W", str(path)]),
                       ("elflint", ["eu-elflint", "--gnu-ld", str(path)])):
        try:
            proc = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL,
                                  timeout=TOOL_TIMEOUT)
        except subprocess.TimeoutExpired:
            found.add((tool, "timed out"))
            continue
        text = proc.stderr if tool == "readelf" else proc.stdout + proc.stderr
        for line in text.decode("utf-8", "replace").splitlines():
            if line.strip() and line.strip() != "No errors" \
                    and not (tool == "elflint" and _elflint_noise(line, path, cache)):
                found.add((tool, _normalize(line, path)))
        if tool == "readelf" and proc.returncode != 0:
            found.add((tool, f"exit status {proc.returncode}"))
    return found


# -- one run ------------------------------------------------------------------------


class Run:
    """One command on one input, in ``root``/<id>."""

    def __init__(self, command, inp, baselines, root, timeout=TIMEOUT):
        self.command, self.input, self.baselines = command, inp, baselines
        self.timeout = timeout
        self.scratch = Path(tempfile.mkdtemp(prefix="run-", dir=root))
        self.work = self.scratch / "work"
        self.tmp = self.scratch / "tmp"
        self.work.mkdir()
        self.tmp.mkdir()

    def prepare(self):
        """The scratch copy: baseline files, the input (or the good file), the output."""
        role = "lib" if self.input.role == "outpath" else self.input.role
        for name in self.command.files_for(role):
            self._copy(name)
        for name in self.command.dirs:
            (self.work / name).mkdir()
        if self.input.role == "outpath":
            subject = self.command.good
            if subject == "fz.pat":
                (self.work / subject).write_text(GOOD_PATTERNS)
            elif subject:
                self._copy(subject)
            else:
                subject = self.command.place      # vectool's addrfile: a new one
            output, _ = output_path(self.input, self.work)
            return subject, output, output
        subject, named = materialize(self.input, self.work, self.command.place_for(role),
                                     self.baselines)
        output = None
        if self.command.output:
            output, _ = output_path(self.input, self.work)
        return subject, output, named

    def _copy(self, name):
        (self.work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.baselines.path(name), self.work / name)

    def run(self):
        subject, output, named = self.prepare()
        role = "lib" if self.input.role == "outpath" else self.input.role
        argv = self.command.argv(subject, output, role)
        before = snapshot(self.work)
        pre_image = self._pre_image(subject)
        rc, err, seconds = execute(argv, self.work, clean_env(self.tmp), self.timeout)
        outcome = Outcome(self.command.name, self.input.name, self.input.kind, argv, rc,
                          round(seconds, 3), err)
        after = snapshot(self.work)
        check = Checker(self, outcome, subject, output, named)
        check.process()
        if rc == 0:
            check.success(pre_image)
        elif rc is not None:
            check.failure()
        check.files(before, after)
        return outcome

    def _pre_image(self, subject):
        """A copy of the input as it was, for the structural comparison."""
        path = self.work / subject
        if self.input.special is not None or not path.is_file():
            return None
        copy = self.scratch / "pre-image"
        shutil.copy(path, copy)
        return copy

    def cleanup(self):
        shutil.rmtree(self.scratch, ignore_errors=True)


class Checker:
    """The contract's checks on one finished run; each breach goes to ``outcome.violations``."""

    def __init__(self, run, outcome, subject, output, named):
        self.run, self.outcome = run, outcome
        self.command, self.input = run.command, run.input
        self.subject, self.output, self.named = subject, output, named

    def add(self, kind, detail):
        self.outcome.violations.append((kind, detail))

    def process(self):
        rc, err = self.outcome.returncode, self.outcome.stderr
        if rc is None:
            self.add("hang", f"killed after {self.run.timeout} s")
        elif "MemoryError" in err:
            self.add("memory", f"over {ADDRESS_SPACE >> 20} MiB")
        elif rc < 0:
            self.add("signal", f"killed by signal {-rc}")
        elif rc not in (0, 1, 2):
            self.add("exit-status", f"exit {rc}")
        if (rc == 0 and self.input.must_be_refused_by(self.command.name)
                and not self.command.found_by_search
                and not (self.command.skips_non_elf and not self._is_elf())):
            self.add("accepted", "exit 0 on an input that must be refused")

    def _is_elf(self):
        """Whether the input under test starts as an ELF file does (vecstat skips others)."""
        path = self.run.work / self.subject
        if self.input.special is not None or not path.is_file():
            return False
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"

    def failure(self):
        err = self.outcome.stderr
        prog = self.command.name.split("-")[0]
        lines = err.rstrip("\n").split("\n") if err.strip() else []
        if self.outcome.violations:
            return          # killed, or an exit status of its own: nothing more to learn
        if "Traceback" in err:
            self.add("traceback", _last_line(err))
        elif "internal error" in err:
            self.add("internal-error", _first_matching(lines, "internal error"))
        if self.outcome.violations:
            return          # a crash: what its message names says nothing more
        if len(lines) != 1:
            self.add("stderr-lines", f"{len(lines)} lines: {_first_lines(lines)}")
            return
        line = lines[0]
        if not line.startswith(f"{prog}: "):
            self.add("format", line)
        if not any(name in line for name in self._blamable()):
            self.add("names-other-file", line)
        if TEMP_NAME.search(line) or str(self.run.tmp) in line:
            self.add("temp-name", line)

    def _blamable(self):
        """The paths the error line may name: the input's (as given, or absolute)."""
        names = [self.named]
        if self.input.blame_any:
            names += [*self.command.files_for(self.input.role), self.output]
        elif self.command.found_by_search:      # passed over: "P: cannot find it" is ld.so's
            names += self.command.files_for(self.input.role)
        return [variant for name in names if name
                for variant in (name, os.path.abspath(self.run.work / name))]

    def files(self, before, after):
        """Inputs unchanged, an old output intact on failure, nothing left behind."""
        ok = self.outcome.returncode == 0
        allowed = self._may_change() if ok else set()
        for path, sig in before.items():
            if path in allowed or _under(path, allowed):
                continue
            if path not in after:
                self.add("input-modified", f"{path} removed")
            elif after[path] != sig:
                kind = "output-damaged" if path == self.output else "input-modified"
                self.add(kind, f"{path} changed")
        # the addrfile's lock stays, as every vectool run leaves it (addrfile.locked)
        lock_ok = {"addrs.lock"} if "addrs" in self.command.extra_outputs else set()
        for path in sorted(set(after) - set(before)):
            if path in allowed or _under(path, allowed) or path in lock_ok:
                continue
            self.add("leftover", f"{path} created")
            break
        left = sorted(os.listdir(self.run.tmp))
        if left:
            self.add("leftover", f"$TMPDIR/{left[0]} left")
        if self.command.in_place and self.input.special is None and ok:
            self._same_inode(before, after)

    def _may_change(self):
        allowed = set(self.command.extra_outputs)
        if self.output:
            allowed.add(self.output)
        if self.command.in_place:
            allowed.add(self.subject)
        return allowed

    def _same_inode(self, before, after):
        old, new = before.get(self.subject), after.get(self.subject)
        if old and new and old[0] == "file" and (new[0] != "file" or new[2] != old[2]):
            self.add("inode", f"{self.subject} replaced, not edited in place")

    def success(self, pre_image):
        err = self.outcome.stderr
        if PYTHON_NOISE.search(err):
            self.add("stderr-noise", _first_matching(err.splitlines(), "Warning")
                     or _last_line(err))
        target = self._structural_target()
        if target is None:
            return
        if not target.is_file() or target.read_bytes() == SENTINEL:
            self.add("no-output", f"exit 0 but {target.name} not written")
            return
        reference = self._reference(pre_image)
        if reference is None:
            return
        new = diagnostics(target) - diagnostics(reference)
        for tool in ("readelf", "elflint"):
            found = sorted(msg for t, msg in new if t == tool)
            if found:
                self.add(tool, f"{len(found)} new: {found[0]}")

    def _structural_target(self):
        if self.command.in_place:
            path = self.run.work / self.subject
            return path if self.input.special is None and path.is_file() else None
        elf_output = self.command.elf_output_for(self.input.role)
        if elf_output and self.output:
            return self.run.work / self.output
        if elf_output:          # an output of its own name (vectool --mode=retro's)
            return self.run.work / elf_output
        return None

    def _reference(self, pre_image):
        if self.command.reference:
            return self.run.baselines.path(self.command.reference)
        if self.input.role == "outpath":
            return self.run.baselines.path(self.command.good)
        return pre_image


def _under(path, dirs):
    return any(path.startswith(d + os.sep) for d in dirs)


def _last_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _first_matching(lines, word):
    return next((line[:300] for line in lines if word in line), "")


def _first_lines(lines):
    return " | ".join(line[:150] for line in lines[:3])
