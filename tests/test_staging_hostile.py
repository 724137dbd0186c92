"""A hostile `.corralignore` / `.dockerignore` must never crash (or hang) a copy-mode run.

The threat: a bind-mode run writes the ignore file for a later `--workspace copy` run to
read. Every unusable ignore file stops the run with exit 125 and one line naming the file
(and the line), never a traceback; no staging copy is left behind. Real runs, as root and
as an unprivileged launcher, plus table tests of the pure pattern checks.
"""

from __future__ import annotations

import glob
import os
import stat

import pytest

import helpers
from corral.errors import SetupError
from corral.workspace import staging
from corral.workspace.staging import IgnoreFileError, build_copy, parse_patterns


def _copy_run(ws, script="ls -A | sort | tr '\\n' ' '"):
    before = set(glob.glob("/tmp/corral-*-copy"))
    p = ws.sh(script, "--workspace", "copy", timeout=60)  # a hang fails the test here
    assert set(glob.glob("/tmp/corral-*-copy")) == before, "a staging copy was left behind"
    return p


def _assert_refused(p, path, *words):
    out = p.stdout + p.stderr
    assert p.returncode == 125, out
    assert "Traceback" not in out and "internal error" not in out.lower(), out
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("corral: "), out
    assert str(path) in lines[0], out
    for w in words:
        assert w in lines[0], (w, out)
    assert p.stdout == "", out  # the command never ran


def _plant(ws, name: str, data: bytes):
    p = ws.proj / name
    p.write_bytes(data)
    ws.chown()
    return p


# ---------------------------------------------------------------------------------------
# Real runs
# ---------------------------------------------------------------------------------------

BAD_CONTENTS = [
    ("invalid_range", b"build/\n[z-a]\n", ("line 2", "[z-a]", "invalid")),
    ("lone_backslash", b"*.log\n\\\n", ("line 2", "invalid")),
    ("lone_bang", b"!\n", ("line 1", "invalid")),
    ("exponential", b"*a*a*a*a*a*a*a*b\n", ("line 1", "too many wildcards")),
    ("deep_exponential", b"**/a/**/a/**/a/**/b\n", ("too many wildcards",)),
    ("nul_bytes", b"build/\n\x00\x01\x02\xff" * 10, ("NUL",)),
    ("huge", b"x\n" * (staging.MAX_BYTES // 2 + 1), ("bytes",)),
    ("too_many_patterns", "".join(f"p{i}\n" for i in range(staging.MAX_PATTERNS + 1)).encode(), ("patterns",)),
    ("long_pattern", b"a" * (staging.MAX_PATTERN_CHARS + 1) + b"\n", ("line 1", "characters")),
    ("escape_sequences", b"\x1b]0;pwned\x07[z-a\n", ("invalid", "\\x1b")),
]


@pytest.mark.parametrize("case, data, words", BAD_CONTENTS, ids=[c[0] for c in BAD_CONTENTS])
def test_hostile_corralignore_contents_are_refused_in_one_line(launcher, ws, case, data, words):
    if case == "exponential":
        ws.write("a" * 200, "bait for catastrophic backtracking\n")
    if case == "escape_sequences":
        data = b"\x1b]0;pwned\x07[z-a]\n"
    path = _plant(ws, ".corralignore", data)
    p = _copy_run(ws)
    _assert_refused(p, path, *words)
    assert "\x1b" not in p.stderr  # a planted escape sequence is shown escaped, never sent to the terminal


def test_symlinked_corralignore_to_dev_zero_is_refused(launcher, ws):
    os.symlink("/dev/zero", ws.proj / ".corralignore")
    _assert_refused(_copy_run(ws), ws.proj / ".corralignore", "symlink")


def test_symlinked_corralignore_to_a_host_file_is_refused(launcher, ws):
    os.symlink("/etc/passwd", ws.proj / ".corralignore")  # its lines would become patterns
    _assert_refused(_copy_run(ws), ws.proj / ".corralignore", "symlink")


def test_fifo_corralignore_does_not_hang(launcher, ws):
    os.mkfifo(ws.proj / ".corralignore")
    ws.chown()
    _assert_refused(_copy_run(ws), ws.proj / ".corralignore", "FIFO")


def test_symlink_to_fifo_corralignore_does_not_hang(launcher, ws):
    os.mkfifo(ws.outside / "fifo")
    os.symlink(ws.outside / "fifo", ws.proj / ".corralignore")
    _assert_refused(_copy_run(ws), ws.proj / ".corralignore", "symlink")


def test_directory_named_corralignore_is_refused(launcher, ws):
    (ws.proj / ".corralignore").mkdir()
    (ws.proj / ".dockerignore").write_text("src\n")  # no silent fallback to another file
    ws.chown()
    _assert_refused(_copy_run(ws), ws.proj / ".corralignore", "directory")


def test_unreadable_corralignore(launcher, ws):
    path = _plant(ws, ".corralignore", b"src\n")
    path.chmod(0)
    p = _copy_run(ws)
    if launcher.is_root:  # root reads it anyway: the patterns apply
        assert p.returncode == 0 and p.stdout.split() == [".corralignore", ".git", "README.txt"], p.stdout + p.stderr
    else:
        _assert_refused(p, path, "cannot be read", "Permission denied")


def test_invalid_dockerignore_is_named(launcher, ws):
    path = _plant(ws, ".dockerignore", b"node_modules\n[9-0]\n")
    _assert_refused(_copy_run(ws), path, ".dockerignore", "line 2")


def test_corralignore_planted_by_a_bind_mode_run(launcher, ws):
    """The threat end to end: the sandbox writes the file, the next copy-mode run reports it."""
    p = ws.sh("printf 'build/\\n[z-a]\\n' > .corralignore && echo planted")
    assert p.stdout.strip() == "planted", p.stdout + p.stderr
    _assert_refused(_copy_run(ws), ws.proj / ".corralignore", "line 2", "[z-a]")
    # once the file is fixed, copy mode works again
    (ws.proj / ".corralignore").write_text("build/\n")
    p = _copy_run(ws)
    assert p.returncode == 0, p.stdout + p.stderr


def test_usual_patterns_still_work(launcher, ws):
    name = b"caf\xe9.log"  # a Latin-1 name (not UTF-8): the pattern's bytes match it
    (ws.proj / os.fsdecode(name)).write_text("x\n")
    ws.write("node_modules/pkg/index.js", "x\n")
    ws.write("src/deep/mod.pyc", "x\n")
    ws.write("keep.txt", "x\n")
    _plant(ws, ".corralignore", b"# comment\n\n**/node_modules/**\n**/*.pyc\n" + name + b"\r\n!keep.txt\n*-*-*.tmp\n")
    p = _copy_run(ws, "ls -A | sort | tr '\\n' ' '; echo; ls src/deep | wc -l")
    assert p.returncode == 0, p.stdout + p.stderr
    listing, count = p.stdout.splitlines()
    assert listing.split() == [".corralignore", ".git", "README.txt", "keep.txt", "src"], p.stdout
    assert count.strip() == "0"


# ---------------------------------------------------------------------------------------
# Pure checks (no sandbox): the pattern table and the matching budget
# ---------------------------------------------------------------------------------------

PATTERN_TABLE = [
    # (line, accepted?)
    ("*.log", True),
    ("**/node_modules/**", True),
    ("src/**/test_*.py", True),
    ("**/build/**/*.o", True),
    ("*-*-*.txt", True),
    ("/a*a*a*a", True),  # anchored: no implicit **/, 4 repeats
    ("*a*a*a*a", False),  # 4 stars + the implicit **/
    ("**/a/**/a/**/b", False),  # three repeats across `/`
    ("a/**/a/**/a/**/b", False),
    ("**/a*/**/*b", True),
    ("**/*a*/**/*a*b", False),
    ("[z-a]", False),
    ("\\", False),
    ("!", False),
    ("[[:alpha:]]", True),  # odd but valid; pathspec's FutureWarning must not escape
    ("   ", True),
    ("# *a*a*a*a*a*a", True),  # a comment
]


@pytest.mark.parametrize("line, ok", PATTERN_TABLE)
def test_pattern_table(line, ok):
    data = line.encode() + b"\n"
    if ok:
        parse_patterns("/w/.corralignore", data)
    else:
        with pytest.raises(IgnoreFileError) as info:
            parse_patterns("/w/.corralignore", data)
        assert "\n" not in str(info.value) and "/w/.corralignore: line 1" in str(info.value)
        assert isinstance(info.value, SetupError)


def test_repeats_counter():
    assert staging._repeats(r"^(?:.+/)?[^/]*\.log") == (2, 1)
    assert staging._repeats(r"^a(?:/.+)?/b(?:/.*)?") == (2, 2)
    assert staging._repeats(r"^a\*b\+c\.*") == (1, 0)  # an escaped dot does not cross
    assert staging._repeats(r"^[*]") == (1, 0)  # over-counts inside classes: stricter, never looser


def test_budget_exceeded_leaves_no_copy(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / ".corralignore").write_text("*.log\n")
    for i in range(20):
        (src / f"f{i}.txt").write_text("x")
    with pytest.raises(IgnoreFileError) as info:
        build_copy(str(src), str(dst), set(), budget=0.0)
    assert "took more than" in str(info.value)
    assert not dst.exists()
    counts = build_copy(str(src), str(dst), set())
    assert counts == {"copied": 21, "skipped": 0} and (dst / "f0.txt").exists()  # with .corralignore


def test_no_ignore_file_no_spec(tmp_path):
    assert staging.ignore_spec(str(tmp_path)) == (None, None)
    (tmp_path / ".dockerignore").write_text("a\n")
    name, spec = staging.ignore_spec(str(tmp_path))
    assert name == ".dockerignore" and spec.match_file("a")
    st = os.lstat(tmp_path / ".dockerignore")
    assert stat.S_ISREG(st.st_mode)
