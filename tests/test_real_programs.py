"""Debian's own programs, rewritten: same behaviour, fewer symbol lookups.

For each program: a .vec per library it loads (vecstat --emit-vec), each
library retrovec'd into a temporary directory, the program retroimp'd
against them, a scripted workload run with LD_LIBRARY_PATH set to that
directory, and stdout, stderr and exit status compared with the original
run against the system's libraries.  The system's files are only read.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import BIN, require_programs
from elfvector.ldso import Ldd

INTERPRETER = "ld-linux-x86-64.so.2"     # PT_INTERP: not replaceable by LD_LIBRARY_PATH


def tool(name, *args, env=None, unless=None):
    """Run an elfvector command; it must succeed (or fail saying ``unless``)."""
    proc = subprocess.run([sys.executable, str(BIN / name), *map(str, args)],
                          capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    if unless and proc.returncode == 1 and unless in proc.stderr:
        return None
    assert proc.returncode == 0, f"{name} {args}: {proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    text = "".join(f"line {i}: {'elfvector ' * (i % 7)}{i * i}\n" for i in range(4000))
    (d / "input.txt").write_text(text)
    (d / "input.json").write_text('{"a": [1, 2, 3], "b": {"c": "d"}, "e": null}\n')
    repo = d / "repo"
    env = git_env(d)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=env)
    for i in range(3):
        (repo / f"f{i}.txt").write_text(f"content {i}\n")
        subprocess.run(["git", "-C", str(repo), "add", "."], check=True, env=env)
        subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", f"commit {i}"],
                       check=True, env=env)
    return d


def git_env(d):
    return {"HOME": str(d), "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_AUTHOR_DATE": "2001-09-01T00:00:00",
            "GIT_COMMITTER_DATE": "2001-09-01T00:00:00", "PATH": os.environ["PATH"]}


# program -> list of (argv after the program name, stdin or None)
WORKLOADS = {
    "sqlite3": [(["--version"], None),
                ([":memory:", "create table t(a, b); insert into t values (1, 'x'), (2, 'y');"
                  " select a, upper(b), length(b) from t order by a desc; select sum(a) from t;"
                  " select no_such_function(1);"], None)],
    "xz": [(["--version"], None), (["-c", "-6", "{data}/input.txt"], None),
           (["-d", "-c", "{data}/missing.xz"], None)],
    "zstd": [(["-V"], None), (["-c", "-q", "-19", "{data}/input.txt"], None)],
    "jq": [(["--version"], None), (["-c", ".a | map(. * 2), .b.c, (.e // \"none\")"],
                                   '{"a": [1, 2, 3], "b": {"c": "d"}, "e": null}\n'),
           (["-c", ".["], "{}")],
    "curl": [(["--version"], None), (["-s", "file://{data}/input.txt"], None),
             (["-sS", "file://{data}/missing"], None)],
    "bzip2": [(["--version"], None), (["-c", "-9", "{data}/input.txt"], None),
              (["-d", "-c", "{data}/missing.bz2"], None)],
    "git": [(["--version"], None), (["-C", "{data}/repo", "log", "--format=%s %an"], None),
            (["-C", "{data}/repo", "cat-file", "-p", "HEAD^{{tree}}"], None),
            (["-C", "{data}/repo", "no-such-command"], None)],
}


def run_workload(path, argv, stdin, data, env):
    args = [a.format(data=data) for a in argv]
    full_env = dict(git_env(data), **env)
    proc = subprocess.run([os.path.basename(path), *args], executable=path, input=stdin,
                          capture_output=True, env=full_env, cwd=data,
                          text=False)
    return proc.returncode, proc.stdout, proc.stderr


def lookups(path, env):
    full_env = dict(os.environ, LD_DEBUG="statistics", LD_BIND_NOW="1", **env)
    err = subprocess.run([path, "--version"], capture_output=True, text=True, env=full_env).stderr
    return int(re.findall(r" number of relocations:\s*(\d+)", err)[0])


def elflint_findings(path):
    proc = subprocess.run(["eu-elflint", "--gnu-ld", str(path)], capture_output=True, text=True)
    return set(proc.stdout.splitlines()) - {"No errors"}


def assert_sound(new, original):
    """readelf -a is silent on the rewritten file; eu-elflint finds nothing new."""
    proc = subprocess.run(["readelf", "-a", "-W", str(new)], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr[:500]
    assert not elflint_findings(new) - elflint_findings(original), new


def relocations(path, kind):
    out = subprocess.run(["readelf", "-rW", path], capture_output=True, text=True).stdout
    return len(re.findall(kind, out))


def vectored_libraries(program, directory, plain=False):
    """A .vec per library ``program`` loads (vecstat --emit-vec; with
    ``plain``, the seed's form: names without versions) and the library
    retrovec'd into ``directory``.  Returns ``{vec path: original library}``."""
    linkmap = Ldd().linkmap(str(program))
    assert not linkmap.not_found
    libs = [obj.elf for obj in linkmap.objects if obj is not linkmap.main]
    vecs = {}
    for lib in libs:
        if lib.soname == INTERPRETER:
            continue
        vec = directory / f"{lib.soname}.vec"
        if not tool("vecstat", "--emit-vec", lib.path, "-o", vec, program,
                    unless="no exported function of this library is used"):
            continue
        if plain:
            names = [line.split("@")[0] for line in vec.read_text().splitlines()[1:]
                     if not line.startswith("#")]
            vec.write_text("\n".join([vec.read_text().splitlines()[0], *dict.fromkeys(names)])
                           + "\n")
        tool("retrovec", "-o", directory / lib.soname, vec, lib.path)
        assert_sound(directory / lib.soname, lib.path)
        vecs[vec] = lib.path
    assert any("libc.so.6" in str(v) for v in vecs)
    return vecs


def retroimp_and_compare(name, program, vecs, data, tmp_path):
    """retroimp ``program`` against the libraries in ``tmp_path``; every
    workload must give the original's exit status, stdout and stderr."""
    env = {"LD_LIBRARY_PATH": str(tmp_path)}
    bindir = tmp_path / "bin"
    bindir.mkdir()
    rewritten = bindir / name
    tool("retroimp", "-o", rewritten, "", *vecs, program, env=env)
    assert_sound(rewritten, program)
    for argv, stdin in WORKLOADS[name]:
        stdin = stdin.encode() if stdin is not None else None
        expected = run_workload(program, argv, stdin, data, {})
        got = run_workload(str(rewritten), argv, stdin, data, env)
        assert got == expected, (argv, got[0], expected[0], got[2][-300:], expected[2][-300:])
    return rewritten, env


def installed(name):
    """The program ``name``'s file; the test is skipped, naming the package
    that provides it, when it is not installed (a failure under .ci/run)."""
    require_programs(name)
    return os.path.realpath(shutil.which(name))


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_debian_program(name, data, tmp_path):
    program = installed(name)
    vecs = vectored_libraries(program, tmp_path)
    rewritten, env = retroimp_and_compare(name, program, vecs, data, tmp_path)
    vectored = relocations(program, "R_X86_64_JUMP_SLOT") - relocations(rewritten, "R_X86_64_JUMP_SLOT")
    vectors = relocations(rewritten, r"R_X86_64_GLOB_DAT .* __V_")
    assert vectored > 10 and vectors >= 1
    assert lookups(program, {}) - lookups(str(rewritten), env) == vectored - vectors


def jump_slot_imports(path):
    """``[(name, version)]`` of the JUMP_SLOT relocations of ``path``."""
    out = subprocess.run(["readelf", "-rW", path], capture_output=True, text=True).stdout
    return [tuple(m.groups()) for m in
            re.finditer(r"R_X86_64_JUMP_SLOT\s+[0-9a-f]+\s+([^@\s]+)@?(\S*)", out)]


def default_versions(library):
    """``{name: version}`` of the default definitions in ``library``'s .dynsym."""
    out = subprocess.run(["readelf", "--dyn-syms", "-W", library], capture_output=True,
                         text=True).stdout
    return dict(m.groups() for m in re.finditer(r" ([^@\s]+)@@(\S+)$", out, re.M))


DEFAULT_EXCLUSIONS = re.compile(r"^(malloc|free|calloc|realloc|memalign|posix_memalign|"
                                r"aligned_alloc|valloc|pvalloc)$|^pthread_")


@pytest.mark.parametrize("name", ["bzip2", "curl", "git", "sqlite3"])
def test_seed_form_vec_files_bind_the_default_versions(name, data, tmp_path):
    """With plain-name .vec files (the seed's form) for every library, at
    least 90% of the JUMP_SLOTs that could be vectored are: those against a
    vectored library, at its default version, not a default exclusion."""
    program = installed(name)
    vecs = vectored_libraries(program, tmp_path, plain=True)
    rewritten, _ = retroimp_and_compare(name, program, vecs, data, tmp_path)
    defaults = {}
    for library in reversed(list(vecs.values())):        # the first definer wins
        defaults.update(default_versions(library))
    candidates = [(n, v) for n, v in jump_slot_imports(program)
                  if n in defaults and defaults[n] == v and not DEFAULT_EXCLUSIONS.search(n)]
    left = set(jump_slot_imports(rewritten))
    bound = [c for c in candidates if c not in left]
    assert len(candidates) > 30
    assert len(bound) >= 0.9 * len(candidates), sorted(set(candidates) - set(bound))
