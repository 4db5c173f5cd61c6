"""Reading and rewriting the loader command that expvec/impvec wrap.

The command is what the user would have run to link (``gcc -shared -o
libfoo.so.5 foo.o``, or ``ld ...`` directly), optionally preceded by
``VAR=value`` words, as a Bourne shell would accept them.
"""

import os
import re
import shutil
import signal
import subprocess

from .errors import LinkError

ENV_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_VERSION_SCRIPT_WL = re.compile(r"^-Wl,--?version-script[=,](.*)$")


class LinkCommand:
    """A loader command line, with the few things elfvector must know."""

    def __init__(self, words):
        words = list(words)
        self.env = {}
        while words and ENV_WORD.match(words[0]):
            key, value = words.pop(0).split("=", 1)
            self.env[key] = value
        if not words:
            raise LinkError("no loader command given")
        self.words = words

    # -- questions ------------------------------------------------------
    @property
    def calls_ld_directly(self):
        return re.fullmatch(r"(.*-)?ld(\.bfd|\.gold|\.lld)?", os.path.basename(self.words[0])) is not None

    @property
    def output(self):
        """The ``-o`` file; a LinkError when there is none."""
        index = self._output_index()
        if index is None:
            raise LinkError("loader arguments must contain -o OUTPUT")
        word = self.words[index]
        if word in ("-o", "--output"):
            return self.words[index + 1]
        if word.startswith("--output="):
            return word.split("=", 1)[1]
        return word[2:]

    def _output_index(self):
        found = None
        for i, word in enumerate(self.words[1:], start=1):
            if word in ("-o", "--output") and i + 1 < len(self.words):
                found = i
            elif (word.startswith("-o") and len(word) > 2) or word.startswith("--output="):
                found = i
        return found

    @property
    def soname(self):
        """The soname given to the linker, or None."""
        value = None
        for word, nxt in zip(self.words, self.words[1:] + [None]):
            for opt in _linker_options(word, nxt):
                m = re.fullmatch(r"--?(?:soname|h)[=,]?(.+)", opt)
                if m:
                    value = m.group(1)
        return value

    @property
    def version_scripts(self):
        """Paths of the version scripts the command gives the linker."""
        paths = []
        for i, word in enumerate(self.words):
            m = _VERSION_SCRIPT_WL.match(word) or re.match(r"^--?version-script=(.+)$", word)
            if m:
                paths.append(m.group(1))
            elif word in ("--version-script", "-version-script") and i + 1 < len(self.words):
                paths.append(self.words[i + 1])
        return paths

    @property
    def library_dirs(self):
        """``-L`` directories in order."""
        dirs = []
        for i, word in enumerate(self.words):
            if word == "-L" and i + 1 < len(self.words):
                dirs.append(self.words[i + 1])
            elif word.startswith("-L") and len(word) > 2:
                dirs.append(word[2:])
        return dirs

    @property
    def input_files(self):
        """Existing non-option words: objects, archives, libraries by path."""
        return [w for w in self.words[1:] if not w.startswith("-") and os.path.isfile(w)]

    def cross_library_dirs(self):
        """The directories a cross compiler's link editor searches by
        default (``aarch64-linux-gnu-gcc -print-search-dirs``), where its
        target's libc is; none for a native compiler, whose libraries are
        where ld.so looks anyway."""
        for line in self._ask_cross_compiler("-print-search-dirs").splitlines():
            if line.startswith("libraries: ="):
                dirs = line[len("libraries: ="):].split(":")
                return [os.path.normpath(d) for d in dirs if os.path.isdir(d)]
        return []

    def cross_root(self):
        """The directory a cross compiler's target files are under, as a
        chroot would have them (``/usr/aarch64-linux-gnu``, whose ``lib/``
        holds the target's libc and ld.so), found from where its libc is;
        "" for a native compiler."""
        libc = os.path.normpath(self._ask_cross_compiler("-print-file-name=libc.so.6").strip())
        libdir = os.path.dirname(libc)
        if not os.path.isabs(libc) or os.path.basename(libdir) != "lib":
            return ""
        return os.path.dirname(libdir)

    def _ask_cross_compiler(self, option):
        """What the wrapped cross compiler prints for ``option`` ("" for a
        native compiler, a linker, or a compiler that cannot run)."""
        if self.calls_ld_directly or not _tool_prefix(self.words[0]):
            return ""
        try:
            return _run([self.words[0], option], dict(os.environ, **self.env)).stdout
        except OSError:
            return ""               # the link itself will say what is wrong

    def toolchain(self, arch):
        """The :class:`Toolchain` that builds objects for ``arch`` (the
        output's architecture) beside this command's compiler or linker."""
        return Toolchain(_tool_prefix(self.words[0]), arch)

    def search_env(self):
        """LD_LIBRARY_PATH directories given in front of the command."""
        value = self.env.get("LD_LIBRARY_PATH", "")
        return [d for d in value.split(":") if d]

    # -- rewriting ------------------------------------------------------
    def linker_option(self, option):
        """``option`` as this command passes it to ld."""
        return option if self.calls_ld_directly else "-Wl," + option.replace(" ", ",")

    def with_output(self, path):
        copy = self._copy()
        i = copy._output_index()
        if i is None:
            raise LinkError("loader arguments must contain -o OUTPUT")
        word = copy.words[i]
        if word in ("-o", "--output"):
            copy.words[i + 1] = path
        else:
            copy.words[i] = "-o" + path
        return copy

    def with_extra(self, *words):
        copy = self._copy()
        copy.words.extend(words)
        return copy

    def with_leading(self, *words):
        """The command with ``words`` first among its arguments (``gcc -lc ...``)."""
        copy = self._copy()
        copy.words[1:1] = words
        return copy

    def with_version_script(self, script):
        """Replace every version script option by ``script`` (seed: vscript)."""
        copy = self._copy()
        words, skip = [], False
        for i, word in enumerate(copy.words):
            if skip:
                skip = False
                continue
            if _VERSION_SCRIPT_WL.match(word) or word.startswith("--version-script=") \
                    or word.startswith("-version-script="):
                continue
            if word in ("--version-script", "-version-script") and copy.calls_ld_directly:
                skip = True
                continue
            words.append(word)
        copy.words = words + [copy.linker_option(f"--version-script={script}")]
        return copy

    def _copy(self):
        copy = LinkCommand.__new__(LinkCommand)
        copy.env = dict(self.env)
        copy.words = list(self.words)
        return copy

    def run(self, what="link", blame=None):
        """Run the command; a LinkError carrying the linker's own words if it fails.

        ``blame`` is the file named in the error (default: the output).
        """
        try:
            proc = _run(self.words, dict(os.environ, **self.env))
        except OSError as e:
            raise LinkError(f"cannot run {self.words[0]}: {e.strerror}", blame) from None
        if proc.returncode != 0:
            raise LinkError(f"{what} failed: {_first_error(proc, self.words[0])}",
                            blame or self.output)
        return proc


#: GNU as's option for each architecture's word size (a multi-target as
#: such as x86-64's needs it); GNU ld's emulation of each
_AS_OPTIONS = {"x86_64": ["--64"], "i386": ["--32"], "aarch64": []}
_LD_EMULATIONS = {"x86_64": "elf_x86_64", "i386": "elf_i386", "aarch64": "aarch64linux"}
_DRIVER = re.compile(r"(.*-)?(gcc|cc|c\+\+|g\+\+|clang|clang\+\+|ld(\.bfd|\.gold|\.lld)?)"
                     r"(-[0-9.]+)?")


def _tool_prefix(program):
    """The cross prefix of the wrapped compiler or linker, with its
    directory: ``aarch64-linux-gnu-gcc`` -> ``aarch64-linux-gnu-``,
    ``/opt/x/bin/i686-linux-gnu-gcc-12`` -> ``/opt/x/bin/i686-linux-gnu-``,
    ``gcc`` -> ``""``."""
    directory, name = os.path.split(program)
    m = _DRIVER.fullmatch(name)
    prefix = m.group(1) or "" if m else ""
    return os.path.join(directory, prefix) if directory and prefix else prefix


class Toolchain:
    """The GNU as and ld of the wrapped command's target: the objects
    elfvector generates must be linked into the user's output, so they are
    assembled by the same cross binutils as the user's compiler would use
    (``aarch64-linux-gnu-gcc`` -> ``aarch64-linux-gnu-as``)."""

    def __init__(self, prefix, arch):
        self.prefix, self.arch = prefix, arch

    def _program(self, name, what):
        program = self.prefix + name
        if shutil.which(program) is None:
            raise LinkError(f"{what} needs {program} (GNU {name} for {self.arch}), "
                            "which is not on PATH")
        return program

    def assemble(self, source, obj, what):
        """Assemble ``source`` into ``obj``; a LinkError naming ``what`` if it fails."""
        run_tool([self._program("as", what), *_AS_OPTIONS.get(self.arch, []), "-o", obj,
                  source], what)

    def link_shared(self, output, soname, objects, what):
        """``ld -shared`` of ``objects`` into ``output``."""
        run_tool([self._program("ld", what), "-m", _LD_EMULATIONS[self.arch], "-shared",
                  f"-soname={soname}", "-o", output, *objects], what)


def _first_error(proc, program):
    """The line of a failed tool's output that says what went wrong."""
    lines = [line for line in (proc.stderr + proc.stdout).splitlines()
             if line.strip() and not line.startswith("collect2:")]
    for line in lines:
        if re.search(r"error|cannot|undefined|No such", line):
            return line.strip()
    return lines[-1].strip() if lines else f"{program} exited {proc.returncode}"


def _linker_options(word, nxt):
    """Linker options carried by one word (``-Wl,a,b`` carries several)."""
    if word.startswith("-Wl,"):
        parts = word[4:].split(",")
        # -Wl,-soname,libx.so.1 -> '-soname=libx.so.1'
        out, i = [], 0
        while i < len(parts):
            if parts[i] in ("-soname", "--soname", "-h") and i + 1 < len(parts):
                out.append(f"{parts[i]}={parts[i + 1]}")
                i += 2
            else:
                out.append(parts[i])
                i += 1
        return out
    if word in ("-soname", "--soname", "-h") and nxt:
        return [f"{word}={nxt}"]
    if word.startswith("-soname=") or word.startswith("--soname="):
        return [word]
    return []


def run_tool(argv, what):
    """Run a helper tool (the assembler); a LinkError if it fails."""
    try:
        proc = _run(argv, None)
    except OSError as e:
        raise LinkError(f"cannot run {argv[0]}: {e.strerror}") from None
    if proc.returncode != 0:
        raise LinkError(f"{what} failed: {_first_error(proc, argv[0])}")
    return proc


def _run(argv, env):
    """Run a tool to completion, its output captured.

    The tool runs in a process group of its own, so that when we are
    interrupted or terminated, the whole of it goes (gcc's collect2 and ld
    too, not just the driver) before our temporary directory is removed.
    """
    with subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, errors="surrogateescape",
                          start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
