"""The post-run check sees and acts on everything the run created, whatever modes the command
set (issue 10, point 6): locked directories, read-only directories, locked workspace roots,
sparse files across filesystems, names carrying terminal escapes, set-id bits."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import helpers
from helpers import quarantined

from corral.sandbox.hostprep import CLOCK_SLACK

PLACEHOLDER_NAMES = (".bashrc", ".profile", ".gitconfig", ".mcp.json", ".vscode", ".idea", ".claude")


def _no_protected_left(root: Path) -> list[str]:
    """Protected names still anywhere under `root` (root walks everything)."""
    left = []
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            if n in (".bashrc", ".vscode"):
                left.append(os.path.join(dirpath, n))
    return left


@pytest.mark.parametrize("mode", [0o000, 0o100, 0o300, 0o400])
def test_planted_bashrc_in_unlistable_directory_is_quarantined(launcher, ws, quarantine_cleanup, mode):
    p = ws.sh(f"mkdir -p a/d && echo evil > a/d/.bashrc && chmod {mode:o} a/d; echo rc=$?")
    moved = quarantined(p.stderr)
    quarantine_cleanup.extend(moved.values())
    host = ws.proj / "a/d/.bashrc"
    assert "rc=0" in p.stdout, p.stderr
    assert p.returncode == 0, p.stderr
    assert str(host) in moved, p.stderr
    assert Path(moved[str(host)]).read_text() == "evil\n"
    assert not os.path.lexists(host)
    assert stat.S_IMODE(os.lstat(ws.proj / "a/d").st_mode) == mode  # the mode the command left


def test_planted_bashrc_in_read_only_directory_is_quarantined(launcher, ws, quarantine_cleanup):
    p = ws.sh("mkdir -p a/d && echo evil > a/d/.bashrc && chmod 555 a/d a; echo rc=$?")
    moved = quarantined(p.stderr)
    quarantine_cleanup.extend(moved.values())
    host = ws.proj / "a/d/.bashrc"
    assert "rc=0" in p.stdout and p.returncode == 0, p.stderr
    assert str(host) in moved, p.stderr
    assert not os.path.lexists(host), "reported moved but still on the host"
    assert Path(moved[str(host)]).read_text() == "evil\n"
    assert stat.S_IMODE(os.lstat(ws.proj / "a/d").st_mode) == 0o555


def test_planted_settings_dir_locked_inside_is_quarantined(launcher, ws, quarantine_cleanup):
    # a protected directory holding locked subdirectories: moving it needs w on it ("..")
    p = ws.sh("mkdir -p s/.vscode/x/y && echo '{}' > s/.vscode/x/y/tasks.json && "
              "chmod 000 s/.vscode/x/y && chmod 555 s/.vscode/x s/.vscode s; echo rc=$?")
    moved = quarantined(p.stderr)
    quarantine_cleanup.extend(moved.values())
    host = ws.proj / "s/.vscode"
    assert "rc=0" in p.stdout and p.returncode == 0, p.stderr
    assert str(host) in moved, p.stderr
    assert not os.path.lexists(host)


@pytest.mark.parametrize("lock", ["chmod 555 .", "chmod 000 .", "chmod 300 .", "chmod 000 . && cd / "])
def test_placeholders_removed_after_workspace_root_is_locked(launcher, ws, lock):
    p = ws.sh(f"{lock}; echo rc=$?")
    try:
        assert "rc=0" in p.stdout, p.stderr
        assert p.returncode == 0, p.stderr
        left = sorted(n for n in os.listdir(ws.proj) if n in PLACEHOLDER_NAMES)
        assert left == [], f"placeholders left behind: {left}"
        assert "could not check" not in p.stderr
    finally:
        os.chmod(ws.proj, 0o755)


def test_planted_bashrc_in_locked_workspace_root_subdir_is_quarantined(launcher, ws, quarantine_cleanup):
    p = ws.sh("mkdir -p a && echo evil > a/.bashrc && chmod 000 a && chmod 500 .; echo rc=$?")
    moved = quarantined(p.stderr)
    quarantine_cleanup.extend(moved.values())
    try:
        assert "rc=0" in p.stdout and p.returncode == 0, p.stderr
        assert str(ws.proj / "a/.bashrc") in moved, p.stderr
        assert not os.path.lexists(ws.proj / "a/.bashrc")
        assert [n for n in os.listdir(ws.proj) if n in PLACEHOLDER_NAMES] == []
        assert stat.S_IMODE(os.lstat(ws.proj).st_mode) == 0o500
    finally:
        os.chmod(ws.proj, 0o755)


def test_pre_existing_bashrc_in_locked_directory_is_not_taken(launcher, ws):
    """The user's own locked directory (unlistable before the run, so unseen by the pre-run
    scan) keeps its files: only what the run created or changed is quarantined."""
    ws.write("private/.bashrc", "mine\n")
    os.chmod(ws.proj / "private", 0o000)
    time.sleep(CLOCK_SLACK + 0.2)  # older than the run's start, as corral measures it
    try:
        p = ws.sh("true")
        assert p.returncode == 0, p.stderr
        assert "quarantined" not in p.stderr
        assert stat.S_IMODE(os.lstat(ws.proj / "private").st_mode) == 0o000
        assert (ws.proj / "private/.bashrc").read_text() == "mine\n"
    finally:
        os.chmod(ws.proj / "private", 0o755)


@pytest.mark.parametrize("launcher", ["user"], indirect=True)  # root can look into every directory
def test_directory_not_ours_that_the_command_could_reach_fails_the_run(launcher, ws, tmp_path):
    """Something the check cannot look into, and the command could have written below: the
    run does not report success (125) and names it."""
    d = ws.proj / "theirs"
    (d / "open").mkdir(parents=True)
    os.chmod(d / "open", 0o777)
    os.chmod(d, 0o711)  # root-owned: searchable, not listable, not ours to chmod
    try:
        p = ws.sh("echo evil > theirs/open/.bashrc; echo rc=$?")
        assert "rc=0" in p.stdout, p.stderr
        assert p.returncode == 125, p.stderr
        assert f"could not check {d}" in p.stderr, p.stderr
        assert "not reporting the command's status" in p.stderr
        os.chmod(d, 0o700)  # out of reach of the command: no complaint
        p = ws.sh("echo hi")
        assert p.returncode == 0 and "could not check" not in p.stderr, p.stderr
    finally:
        os.chmod(d, 0o755)


def _other_filesystem_state(launcher) -> Path:
    """An XDG_STATE_HOME on /dev/shm (tmpfs) while the workspace is on /tmp's filesystem."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    state = Path(tempfile.mkdtemp(prefix="ct-state-", dir="/dev/shm"))
    os.chown(state, launcher.uid, launcher.gid)
    if os.stat(state).st_dev == os.stat("/tmp").st_dev:
        pytest.skip("/dev/shm and /tmp are the same filesystem here")
    return state


def test_sparse_bashrc_quarantined_across_filesystems_costs_no_space(launcher, ws):
    state = _other_filesystem_state(launcher)
    try:
        p = ws.sh("mkdir -p d/e && truncate -s 1T d/.bashrc && printf evil >> d/.bashrc && "
                  "truncate -s 1T d/e/.zshrc && ln -s /etc/passwd d/e/link && mkdir -p s/.vscode/k && "
                  "truncate -s 1T s/.vscode/k/big && echo x > s/.vscode/k/small; echo rc=$?",
                  env_extra={"XDG_STATE_HOME": str(state)})
        moved = quarantined(p.stderr)
        assert "rc=0" in p.stdout and p.returncode == 0, p.stderr
        for rel in ("d/.bashrc", "d/e/.zshrc", "s/.vscode"):
            assert str(ws.proj / rel) in moved, p.stderr
            assert not os.path.lexists(ws.proj / rel)
            q = Path(moved[str(ws.proj / rel)])
            assert q.is_relative_to(state)
        q = Path(moved[str(ws.proj / "d/.bashrc")])
        st = os.lstat(q)
        assert st.st_size == (1 << 40) + 4
        assert st.st_blocks * 512 <= 1 << 20, st.st_blocks  # the holes stayed holes
        with open(q, "rb") as fh:
            fh.seek(1 << 40)
            assert fh.read() == b"evil"
        tree = Path(moved[str(ws.proj / "s/.vscode")])
        assert os.lstat(tree / "k/big").st_size == 1 << 40 and os.lstat(tree / "k/big").st_blocks == 0
        assert (tree / "k/small").read_text() == "x\n"
    finally:
        subprocess.run(["rm", "-rf", str(state)])


def test_dense_bashrc_over_the_limit_is_deleted_not_copied(launcher, ws):
    state = _other_filesystem_state(launcher)
    try:
        p = ws.sh("mkdir -p d && head -c 70M /dev/zero | tr '\\0' x > d/.bashrc; echo rc=$?",
                  env_extra={"XDG_STATE_HOME": str(state)})
        host = ws.proj / "d/.bashrc"
        assert "rc=0" in p.stdout and p.returncode == 0, p.stderr
        assert not os.path.lexists(host)
        assert f"corral: deleted {host} (protected file created during the run; 70 MiB, over the quarantine" \
            in p.stderr, p.stderr
        used = sum(os.lstat(os.path.join(r, n)).st_blocks for r, ds, fs in os.walk(state) for n in fs)
        assert used * 512 < 1 << 20
    finally:
        subprocess.run(["rm", "-rf", str(state)])


def test_escape_sequences_in_planted_name_come_out_escaped(launcher, ws, quarantine_cleanup):
    p = ws.sh("d=$'x\\e[2K\\e]0;t\\a\\rcorral: ok\\n\\u202e'; mkdir -p \"$d\" && echo evil > \"$d/.bashrc\"; echo rc=$?")
    assert "rc=0" in p.stdout, p.stderr
    for bad in ("\x1b", "\x07", "\r", "\u202e"):
        assert bad not in p.stderr, repr(p.stderr)
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("corral: quarantined ")]
    assert len(line) == 1, p.stderr
    assert "x\\x1b[2K\\x1b]0;t\\x07\\rcorral: ok\\n\\u202e/.bashrc" in line[0]
    for d in ws.proj.iterdir():
        if d.name.startswith("x\x1b"):
            assert not (d / ".bashrc").exists()
    dest = line[0].rsplit(" -> ", 1)[1]
    quarantine_cleanup.append(dest)


def _setid_script() -> str:
    """Sets setuid+setgid on a new file by every route the sandbox may still allow."""
    return ("cp /bin/true t1; chmod 6755 t1; cp /bin/true t2; "
            "python3 -c 'import os; os.close(os.open(\"t3\", os.O_CREAT|os.O_WRONLY, 0o6755)); os.chmod(\"t3\", 0o6755)'; "
            "mkdir -p sub/deep && cp /bin/true sub/deep/t4 && chmod u+s,g+s sub/deep/t4; true")


def test_setuid_file_created_inside_never_keeps_the_bit(launcher, ws):
    p = ws.sh(_setid_script())
    assert p.returncode == 0, p.stderr
    for rel in ("t1", "t3", "sub/deep/t4"):
        path = ws.proj / rel
        if path.exists():
            assert not os.lstat(path).st_mode & 0o6000, f"{rel}: {oct(os.lstat(path).st_mode)}"


POST_RUN = r"""
import os, sys, time
from corral.sandbox.hostprep import Cleanup
from corral.sandbox.plan import Plan
ws, state = sys.argv[1], sys.argv[2]
plan = Plan(argv=("true",), cwd=ws, env=(), mounts=(), seccomp=None, disable_userns=False, placeholders=(),
            tmpdir="/nonexistent", writable_roots=(ws,), scan_skip=frozenset(), protected_before={},
            quarantine_dir=state + "/q/run")
old = os.path.join(ws, "old")
os.close(os.open(old, os.O_CREAT | os.O_WRONLY, 0o755)); os.chmod(old, 0o4755)
time.sleep(0.1)
cleanup = Cleanup(plan)
cleanup.since = time.time()  # the run starts after `old` was made (ctime cannot be set back)
time.sleep(0.1)  # the kernel stamps ctime with a clock that may lag time.time() a little
os.makedirs(os.path.join(ws, "a/b"))
for rel in ("new", "a/b/new"):
    p = os.path.join(ws, rel)
    os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o755)); os.chmod(p, 0o6755)
os.symlink(old, os.path.join(ws, "a/link"))
cleanup.run(lambda line: print(line))
for rel in ("new", "a/b/new", "old"):
    print(rel, oct(os.lstat(os.path.join(ws, rel)).st_mode & 0o7777))
"""


def test_setid_bits_on_files_made_during_the_run_are_stripped_after_it(launcher, ws):
    """The post-run side alone (defence in depth behind the seccomp rule): files created or
    changed during the run lose setuid/setgid, one line says so; older files are untouched."""
    state = Path(tempfile.mkdtemp(prefix="ct-state-", dir="/tmp"))
    os.chown(state, launcher.uid, launcher.gid)
    proj = ws.proj / "area"
    proj.mkdir()
    os.chown(proj, launcher.uid, launcher.gid)
    try:
        src = str(Path(__file__).resolve().parents[1] / "src")
        p = subprocess.run([*launcher.prefix, sys.executable, "-c", POST_RUN, str(proj), str(state)],
                           env={**launcher.env, "PYTHONPATH": src}, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert "new 0o755" in p.stdout and "a/b/new 0o755" in p.stdout, p.stdout
        assert "old 0o4755" in p.stdout, p.stdout  # not changed during the run
        lines = [ln for ln in p.stdout.splitlines() if "setuid/setgid" in ln]
        assert len(lines) == 1 and "from 2 files" in lines[0], p.stdout
    finally:
        subprocess.run(["rm", "-rf", str(state)])


@pytest.mark.parametrize("op", [
    {"op": "delete", "path": "a\x1b]0;x\x07b"},
    {"op": "mkdir", "path": "a\nb"},
    {"op": "symlink", "path": "ok", "target": "\u202etxt.exe"},
])
def test_apply_plan_lines_escape_session_chosen_names(op):
    from corral.workspace.apply import describe

    line = describe(op)
    assert line.isprintable(), repr(line)
    assert "\\x1b" in line or "\\n" in line or "\\u202e" in line


def test_a_path_too_long_to_name_is_reported_not_skipped(launcher, ws):
    """A protected file planted below a path longer than PATH_MAX (made with dir fds): the
    post-run check cannot name it, so the run does not report success."""
    script = ws.write("deep.py", (
        "import os\n"
        "fd = os.open('.', os.O_RDONLY)\n"
        "for i in range(2100):\n"
        "    os.mkdir('d', dir_fd=fd)\n"
        "    n = os.open('d', os.O_RDONLY, dir_fd=fd); os.close(fd); fd = n\n"
        "w = os.open('.bashrc', os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd); os.write(w, b'evil'); os.close(w)\n"))
    try:
        p = helpers.run(launcher, ["run", "--", "python3", str(script)], ws.proj, timeout=120)
        assert p.returncode == 125, p.stderr[-500:]
        assert "could not check" in p.stderr and "File name too long" in p.stderr
    finally:
        subprocess.run(["rm", "-rf", str(ws.proj / "d")], check=False)
