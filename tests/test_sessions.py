"""Overlay sessions: `corral changes | apply | discard | sessions` on real overlay mounts.

Each session's upper layer is produced by a real kernel overlayfs mounted the way `corral run
--workspace overlay` mounts it (inside a user + mount namespace, `userxattr`), as root and as
the unprivileged test user; the CLI is then run as that same user.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import helpers

SESSION_PY = """
import json, sys
from corral.workspace.sessions import open_session
s = open_session(sys.argv[1], sys.argv[2])
print(json.dumps({"dir": s.dir, "upper": s.upper, "work": s.work, "started_ns": s.started_ns}))
"""


# ---------------------------------------------------------------- harness

def _env(ws) -> dict:
    return {**ws.launcher.env, "XDG_STATE_HOME": str(ws.base / "state")}


def _state(ws) -> Path:
    state = ws.base / "state"
    if not state.exists():
        state.mkdir(mode=0o700)
        if os.geteuid() == 0:
            os.chown(state, ws.launcher.uid, ws.launcher.gid)
    return state


def corral(ws, *args, env_extra=None) -> subprocess.CompletedProcess:
    _state(ws)
    return helpers.run(ws.launcher, list(args), ws.proj, env_extra={"XDG_STATE_HOME": str(ws.base / "state"),
                                                                     **(env_extra or {})})


def open_session(ws, name="s1") -> dict:
    _state(ws)
    proc = subprocess.run([*ws.launcher.prefix, sys.executable, "-c", SESSION_PY, name, str(ws.proj)],
                          env=_env(ws), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def overlay(ws, script: str, name="s1") -> dict:
    """Run `script` (sh, cwd = the workspace) with the workspace under the session's overlay."""
    s = open_session(ws, name)
    w = shlex.quote(str(ws.proj))
    mount = (f"mount -t overlay overlay -o lowerdir={w},upperdir={shlex.quote(s['upper'])},"
             f"workdir={shlex.quote(s['work'])},userxattr {w}")
    proc = subprocess.run([*ws.launcher.prefix, "unshare", "-Urm", "sh", "-ec", f"{mount}\ncd {w}\n{script}"],
                          env=_env(ws), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return s


def tree(root: Path) -> dict:
    """Everything under root except .git: {rel: ("file", text, mode) | ("dir", mode) | ("link", target)}."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        if dirpath == str(root):
            dirs[:] = [d for d in dirs if d != ".git"]
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", Path(full).read_bytes(), stat.S_IMODE(st.st_mode))
    return out


def changes(ws, name="s1") -> list[dict]:
    proc = corral(ws, "changes", name, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def kinds(ws, name="s1") -> dict[str, str]:
    return {(f"{c['old_path']} -> {c['path']}" if c["old_path"] else c["path"]): c["kind"] for c in changes(ws, name)}


def upper_entries(session: dict) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), session["upper"])
                  for d, ds, fs in os.walk(session["upper"]) for n in ds + fs)


def assert_clean_finish(ws, session: dict) -> None:
    assert not os.path.exists(os.path.join(session["dir"], "apply.journal"))
    assert upper_entries(session) == []
    assert changes(ws) == []
    leftovers = [n for d, ds, fs in os.walk(ws.proj) for n in ds + fs if n.startswith(".corral-apply-")]
    assert leftovers == []


def base_files(ws) -> None:
    ws.write("a.txt", "alpha\n")
    ws.write("gone.txt", "bye\n")
    ws.write("old.txt", "moved content\n")
    ws.write("docs/guide.md", "guide\n")
    ws.write("docs/img/logo.txt", "logo\n")
    ws.write("sub/keep.txt", "old sub\n")
    ws.write("script.sh", "#!/bin/sh\necho hi\n", mode=0o644)
    os.symlink("a.txt", ws.proj / "link")
    ws.chown()


# ---------------------------------------------------------------- what changed, and applying it

def test_edits_new_files_and_deletes_are_listed_and_applied(launcher, ws):
    base_files(ws)
    s = overlay(ws, "echo more >> a.txt; echo new > new.txt; mkdir -p n/m; echo deep > n/m/f.txt; "
                    "rm gone.txt; rm -r docs; touch src/main.py")
    assert (ws.proj / "a.txt").read_text() == "alpha\n"  # the real workspace is untouched
    assert (ws.proj / "gone.txt").exists() and (ws.proj / "docs").is_dir()
    assert kinds(ws) == {"a.txt": "modified", "new.txt": "added", "n/m/f.txt": "added", "gone.txt": "deleted",
                         "docs": "deleted"}  # touch (a copy-up changing nothing) is no change
    before = tree(ws.proj)
    proc = corral(ws, "apply", "s1")
    assert proc.returncode == 0, proc.stderr
    after = tree(ws.proj)
    assert after["a.txt"] == ("file", b"alpha\nmore\n", 0o644)
    assert after["new.txt"][1] == b"new\n" and after["n/m/f.txt"][1] == b"deep\n"
    assert after["n"][0] == "dir" and after["n/m"][0] == "dir"
    for gone in ("gone.txt", "docs", "docs/guide.md", "docs/img", "docs/img/logo.txt"):
        assert gone not in after
    untouched = {k: v for k, v in before.items() if k not in ("a.txt", "gone.txt") and not k.startswith("docs")}
    assert {k: after[k] for k in untouched} == untouched
    assert_clean_finish(ws, s)


def test_renamed_file_and_directory_are_reported_and_applied(launcher, ws):
    base_files(ws)
    s = overlay(ws, "mv old.txt renamed.txt; mv docs manual; mkdir -p x; mv sub/keep.txt x/kept.txt")
    found = {c["path"]: c for c in changes(ws)}
    assert found["renamed.txt"]["kind"] == "renamed" and found["renamed.txt"]["old_path"] == "old.txt"
    assert found["manual"]["kind"] == "renamed" and found["manual"]["old_path"] == "docs" and found["manual"]["is_dir"]
    assert found["x/kept.txt"]["old_path"] == "sub/keep.txt"
    assert set(found) == {"renamed.txt", "manual", "x/kept.txt"}
    listing = corral(ws, "changes", "s1").stdout
    assert "renamed   old.txt -> renamed.txt" in listing and "renamed   docs/ -> manual/" in listing
    proc = corral(ws, "apply", "s1")
    assert proc.returncode == 0, proc.stderr
    after = tree(ws.proj)
    assert after["renamed.txt"][1] == b"moved content\n" and "old.txt" not in after
    assert after["manual/guide.md"][1] == b"guide\n" and after["manual/img/logo.txt"][1] == b"logo\n"
    assert "docs" not in after and "sub/keep.txt" not in after and after["x/kept.txt"][1] == b"old sub\n"
    assert_clean_finish(ws, s)


def test_mode_changes_and_symlinks(launcher, ws):
    base_files(ws)
    s = overlay(ws, "chmod 755 script.sh; ln -sfn gone.txt link; ln -s ../outside/victim.txt out; "
                    "rm a.txt; ln -s script.sh a.txt; chmod 700 sub")
    found = {c["path"]: c for c in changes(ws)}
    assert found["script.sh"]["kind"] == "mode" and (found["script.sh"]["mode_old"], found["script.sh"]["mode_new"]) == (0o644, 0o755)
    assert found["link"]["kind"] == "modified" and found["link"]["is_symlink"]
    assert found["out"]["kind"] == "added" and found["out"]["is_symlink"]
    assert (found["a.txt"]["type_old"], found["a.txt"]["type_new"]) == ("file", "symlink")
    assert found["sub"]["kind"] == "mode" and found["sub"]["is_dir"] and found["sub"]["mode_new"] == 0o700
    diff = corral(ws, "changes", "s1", "--diff").stdout
    assert "-a.txt\n\\ No newline at end of file\n+gone.txt" in diff
    assert "old mode 100644\nnew mode 100755" in diff
    proc = corral(ws, "apply", "s1")
    assert proc.returncode == 0, proc.stderr
    after = tree(ws.proj)
    assert after["script.sh"] == ("file", b"#!/bin/sh\necho hi\n", 0o755)
    assert after["link"] == ("link", "gone.txt") and after["out"] == ("link", "../outside/victim.txt")
    assert after["a.txt"] == ("link", "script.sh") and after["sub"] == ("dir", 0o700)
    assert (ws.outside / "victim.txt").read_text() == "original\n"
    assert_clean_finish(ws, s)


def test_opaque_directory_deletes_what_it_no_longer_holds(launcher, ws):
    base_files(ws)
    ws.write("sub/other.txt", "other\n")
    s = overlay(ws, "rm -r sub; mkdir sub; echo fresh > sub/new.txt; echo 'old sub' > sub/keep.txt")
    assert os.getxattr(os.path.join(s["upper"], "sub"), "user.overlay.opaque") == b"y"
    # keep.txt was re-created with its old content: no change
    assert kinds(ws) == {"sub/new.txt": "added", "sub/other.txt": "deleted"}
    proc = corral(ws, "apply", "s1")
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(ws.proj / "sub")) == ["keep.txt", "new.txt"]
    assert_clean_finish(ws, s)


def test_binary_and_text_diffs(launcher, ws):
    base_files(ws)
    (ws.proj / "blob.bin").write_bytes(b"\x00\x01\x02old")
    ws.chown()
    overlay(ws, r"printf '\000\001\002new' > blob.bin; printf '\377\376' > latin.txt; echo more >> a.txt")
    diff = corral(ws, "changes", "s1", "--diff").stdout
    assert "Binary files a/blob.bin and b/blob.bin differ" in diff
    assert "Binary files /dev/null and b/latin.txt differ" in diff  # not UTF-8
    assert "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1,2 @@\n alpha\n+more\n" in diff
    assert "\x00" not in diff
    listing = corral(ws, "changes", "s1").stdout
    assert "modified  blob.bin (binary)" in listing


def test_several_runs_share_a_session(launcher, ws):
    base_files(ws)
    overlay(ws, "echo one > one.txt; echo more >> a.txt")
    s = overlay(ws, "cat one.txt > two.txt; echo again >> a.txt")  # sees the first run's writes
    assert kinds(ws) == {"a.txt": "modified", "one.txt": "added", "two.txt": "added"}
    assert corral(ws, "apply", "s1").returncode == 0
    assert (ws.proj / "a.txt").read_text() == "alpha\nmore\nagain\n" and (ws.proj / "two.txt").read_text() == "one\n"
    # a later run in the same session, then a second apply: apply's own writes are no conflict
    overlay(ws, "echo third >> a.txt")
    proc = corral(ws, "apply", "s1")
    assert proc.returncode == 0, proc.stderr
    assert (ws.proj / "a.txt").read_text() == "alpha\nmore\nagain\nthird\n"
    assert_clean_finish(ws, s)


# ---------------------------------------------------------------- refusals

def test_workspace_change_after_session_start_is_a_conflict(launcher, ws):
    base_files(ws)
    s = overlay(ws, "echo agent > a.txt; echo new > new.txt; rm -r docs")
    (ws.proj / "a.txt").write_text("human edit\n")  # on the host, after the session began
    (ws.proj / "docs" / "img" / "logo.txt").write_text("new logo\n")
    proc = corral(ws, "apply", "s1")
    assert proc.returncode == 1, proc.stderr
    assert "conflict   a.txt: changed in the workspace since the session began" in proc.stderr
    assert "conflict   docs/img/logo.txt" in proc.stderr
    assert (ws.proj / "a.txt").read_text() == "human edit\n"
    assert not (ws.proj / "new.txt").exists() and (ws.proj / "docs").is_dir()  # all or nothing
    assert not os.path.exists(os.path.join(s["dir"], "apply.journal"))
    # what has no conflict can still be applied on its own
    assert corral(ws, "apply", "s1", "new.txt").returncode == 0
    assert (ws.proj / "new.txt").read_text() == "new\n"
    proc = corral(ws, "apply", "s1", "--force")
    assert proc.returncode == 0, proc.stderr
    assert (ws.proj / "a.txt").read_text() == "agent\n" and not (ws.proj / "docs").exists()
    assert_clean_finish(ws, s)


def test_workspace_file_removed_after_session_start_is_a_conflict(launcher, ws):
    base_files(ws)
    overlay(ws, "echo agent >> a.txt; echo brand new > fresh.txt")
    os.unlink(ws.proj / "a.txt")  # the host deleted what the session edited
    assert kinds(ws) == {"a.txt": "added", "fresh.txt": "added"}
    proc = corral(ws, "apply", "s1")
    assert proc.returncode == 1
    assert "conflict   a.txt: removed from the workspace since the session began" in proc.stderr
    assert "fresh.txt" not in proc.stderr and not (ws.proj / "fresh.txt").exists()
    assert corral(ws, "apply", "s1", "--force").returncode == 0
    assert (ws.proj / "a.txt").read_text() == "alpha\nagent\n"


def test_dangerous_files_are_refused_and_named(launcher, ws):
    base_files(ws)
    s = overlay(ws, "echo evil > .bashrc; mkdir -p .git/hooks; echo evil > .git/hooks/pre-commit; "
                    "mkdir -p .vscode; echo '{}' > .vscode/settings.json; echo evil > sub/.envrc; "
                    "echo fine > fine.txt")
    proc = corral(ws, "apply", "s1")
    assert proc.returncode == 1, proc.stderr
    for line in ("dangerous  .bashrc: shell startup file",
                 "dangerous  .vscode/settings.json: inside .vscode (editor config", "dangerous  sub/.envrc: direnv file"):
        assert line in proc.stderr
    assert "fine.txt" not in proc.stderr
    assert ".git/hooks" not in proc.stderr  # inside .git: left out by default, never applied
    # with the git directory's raw files, the hook is dangerous too
    proc = corral(ws, "apply", "s1", "--include-git")
    assert proc.returncode == 1, proc.stderr
    assert "dangerous  .git/hooks/pre-commit: inside .git/hooks (git hook" in proc.stderr
    assert not (ws.proj / ".bashrc").exists() and not (ws.proj / ".git/hooks/pre-commit").exists()
    assert not (ws.proj / "fine.txt").exists()  # all or nothing
    proc = corral(ws, "apply", "s1", "--allow-dangerous")
    assert proc.returncode == 0, proc.stderr
    assert "left out 1 change inside .git/" in proc.stderr, proc.stderr
    assert not (ws.proj / ".git/hooks/pre-commit").exists()
    proc = corral(ws, "apply", "s1", "--allow-dangerous", "--include-git")
    assert proc.returncode == 0, proc.stderr
    assert (ws.proj / ".bashrc").read_text() == "evil\n" and (ws.proj / ".vscode/settings.json").exists()
    assert (ws.proj / ".git/hooks/pre-commit").read_text() == "evil\n" and (ws.proj / "fine.txt").exists()
    assert_clean_finish(ws, s)


def test_apply_of_selected_paths_only(launcher, ws):
    base_files(ws)
    s = overlay(ws, "echo 1 > docs/guide.md; echo 2 > docs/img/new.txt; echo 3 >> a.txt; mv old.txt docs/old.txt")
    proc = corral(ws, "apply", "s1", "docs/img", str(ws.proj / "a.txt"))
    assert proc.returncode == 0, proc.stderr
    assert (ws.proj / "docs/img/new.txt").read_text() == "2\n" and (ws.proj / "a.txt").read_text() == "alpha\n3\n"
    assert (ws.proj / "docs/guide.md").read_text() == "guide\n"
    assert kinds(ws) == {"docs/guide.md": "modified", "old.txt -> docs/old.txt": "renamed"}
    # selecting either side of a rename applies both
    assert corral(ws, "apply", "s1", "old.txt").returncode == 0
    assert not (ws.proj / "old.txt").exists() and (ws.proj / "docs/old.txt").read_text() == "moved content\n"
    proc = corral(ws, "apply", "s1", "nothing/here")
    assert proc.returncode == 125 and proc.stderr.startswith("corral: no changes under nothing/here")
    assert corral(ws, "apply", "s1", "../outside").returncode == 125
    assert corral(ws, "apply", "s1").returncode == 0
    assert_clean_finish(ws, s)


# ---------------------------------------------------------------- crash safety

def _crash_scenario(ws) -> tuple[dict, dict]:
    base_files(ws)
    s = overlay(ws, "echo 1 >> a.txt; echo b > b.txt; mkdir -p d/e; echo c > d/e/c.txt; rm gone.txt; "
                    "mv old.txt moved.txt; chmod 755 script.sh; ln -sfn b.txt link; rm -r sub; mkdir sub; "
                    "echo s > sub/s.txt")
    expected = dict(tree(ws.proj))
    expected.update({"a.txt": ("file", b"alpha\n1\n", 0o644), "b.txt": ("file", b"b\n", 0o644),
                     "d": ("dir", 0o755), "d/e": ("dir", 0o755), "d/e/c.txt": ("file", b"c\n", 0o644),
                     "moved.txt": ("file", b"moved content\n", 0o644),
                     "script.sh": ("file", b"#!/bin/sh\necho hi\n", 0o755), "link": ("link", "b.txt"),
                     "sub/s.txt": ("file", b"s\n", 0o644)})
    for gone in ("gone.txt", "old.txt", "sub/keep.txt"):
        del expected[gone]
    return s, expected


@pytest.mark.parametrize("crash_after", [1, 2, 5])
def test_crash_in_the_middle_of_apply_then_second_apply_completes(launcher, ws, crash_after):
    s, expected = _crash_scenario(ws)
    ops = corral(ws, "apply", "s1", "--dry-run").stdout.splitlines()
    assert len(ops) > crash_after + 2
    proc = corral(ws, "apply", "s1", env_extra={"CORRAL_APPLY_CRASH_AFTER": str(crash_after)})
    assert proc.returncode == 137, proc.stderr
    journal = Path(s["dir"], "apply.journal").read_text().splitlines()
    assert len(journal) == crash_after  # the plan + the done records, the last op's record missing
    assert tree(ws.proj) != expected  # really half-way...
    assert "was interrupted" in corral(ws, "changes", "s1").stderr  # ...and it says so
    assert "interrupted apply" in corral(ws, "sessions").stdout
    proc = corral(ws, "apply", "s1")
    assert proc.returncode == 0, proc.stderr
    assert "finished an interrupted apply" in proc.stderr
    assert tree(ws.proj) == expected
    assert_clean_finish(ws, s)


def test_resume_refuses_when_an_applied_file_changed_after_the_crash(launcher, ws):
    s, expected = _crash_scenario(ws)
    dry = corral(ws, "apply", "s1", "--dry-run")
    assert dry.stdout.startswith("write   a.txt") and tree(ws.proj) != expected  # a dry run writes nothing
    assert corral(ws, "apply", "s1", env_extra={"CORRAL_APPLY_CRASH_AFTER": "3"}).returncode == 137
    assert (ws.proj / "a.txt").read_text() == "alpha\n1\n"  # op 1, recorded as done
    (ws.proj / "a.txt").write_text("edited between the crash and the resume\n")
    proc = corral(ws, "apply", "s1")
    assert proc.returncode == 1, proc.stderr
    assert "conflict   a.txt: changed in the workspace after an interrupted apply wrote it" in proc.stderr
    assert (ws.proj / "a.txt").read_text() == "edited between the crash and the resume\n"
    assert os.path.exists(os.path.join(s["dir"], "apply.journal"))
    proc = corral(ws, "apply", "s1", "--force")
    assert proc.returncode == 0, proc.stderr
    assert tree(ws.proj) == expected
    assert_clean_finish(ws, s)


def test_symlink_planted_during_interrupted_apply_does_not_redirect_writes(launcher, ws):
    base_files(ws)
    s = overlay(ws, "echo agent >> README.txt; echo pwned > src/main.py")
    proc = corral(ws, "apply", "s1", env_extra={"CORRAL_APPLY_CRASH_AFTER": "1"})  # README.txt, then crash
    assert proc.returncode == 137
    os.rename(ws.proj / "src", ws.proj / "src.real")
    os.symlink(str(ws.outside), ws.proj / "src")  # src -> outside the workspace
    proc = corral(ws, "apply", "s1", "--force")
    assert proc.returncode == 125
    assert "refusing to write src/main.py: src in the workspace is a symlink" in proc.stderr
    assert sorted(os.listdir(ws.outside)) == ["victim.txt"]
    assert (ws.outside / "victim.txt").read_text() == "original\n"
    assert os.path.exists(os.path.join(s["dir"], "apply.journal"))  # still resumable once fixed
    os.unlink(ws.proj / "src")
    os.rename(ws.proj / "src.real", ws.proj / "src")
    proc = corral(ws, "apply", "s1")
    assert proc.returncode == 0, proc.stderr
    assert (ws.proj / "src/main.py").read_text() == "pwned\n" and "agent" in (ws.proj / "README.txt").read_text()
    assert_clean_finish(ws, s)


def test_symlink_replacing_a_workspace_dir_is_replaced_not_followed(launcher, ws):
    base_files(ws)
    overlay(ws, "echo x > src/new.py")
    os.rename(ws.proj / "src", ws.proj / "src.real")
    os.symlink(str(ws.outside), ws.proj / "src")
    found = {c["path"]: c for c in changes(ws)}
    assert (found["src"]["type_old"], found["src"]["type_new"]) == ("symlink", "dir")
    assert corral(ws, "apply", "s1").returncode == 1  # src changed since the session began
    proc = corral(ws, "apply", "s1", "--force")
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(ws.outside)) == ["victim.txt"]
    assert not (ws.proj / "src").is_symlink() and (ws.proj / "src/new.py").read_text() == "x\n"


# ---------------------------------------------------------------- session lifecycle

def test_discard_removes_the_session_and_its_mode_000_workdir(launcher, ws):
    base_files(ws)
    s = overlay(ws, "echo x > new.txt; rm -r docs")
    assert stat.S_IMODE(os.lstat(os.path.join(s["work"], "work")).st_mode) == 0
    assert "s1" in corral(ws, "sessions").stdout
    proc = corral(ws, "discard", "s1")
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(ws.base / "state" / "corral" / "sessions") == []
    assert not (ws.proj / "new.txt").exists() and (ws.proj / "docs").is_dir()
    proc = corral(ws, "changes", "s1")
    assert proc.returncode == 125 and "no session named 's1'" in proc.stderr
    assert corral(ws, "discard", "s1").returncode == 125


def test_session_belongs_to_one_workspace(launcher, ws):
    overlay(ws, "true")
    other = ws.base / "other"
    other.mkdir()
    helpers.Workspace.chown(ws)
    proc = subprocess.run([*ws.launcher.prefix, sys.executable, "-c", SESSION_PY, "s1", str(other)],
                          env=_env(ws), capture_output=True, text=True)
    assert proc.returncode != 0 and "belongs to the workspace" in proc.stderr


def test_session_names_and_locations(tmp_path):
    from corral.errors import CorralError
    from corral.workspace.sessions import open_session, sessions_root, valid_name

    for name, ok in [("s1", True), ("run-0a1b.c_d", True), ("a" * 64, True), ("a" * 65, False), ("", False),
                     (".hidden", False), ("../x", False), ("a/b", False), ("a b", False)]:
        assert valid_name(name) is ok, name
    assert sessions_root({"XDG_STATE_HOME": "/s", "HOME": "/h"}) == "/s/corral/sessions"
    assert sessions_root({"HOME": "/h"}) == "/h/.local/state/corral/sessions"
    assert sessions_root({"XDG_STATE_HOME": "relative", "HOME": "/h"}) == "/h/.local/state/corral/sessions"
    ws = tmp_path / "ws"
    ws.mkdir()
    with pytest.raises(CorralError, match="overlap.*XDG_STATE_HOME"):
        open_session("s1", str(ws), {"XDG_STATE_HOME": str(ws / ".state")})
    with pytest.raises(CorralError, match="invalid session name"):
        open_session("../../x", str(ws), {"XDG_STATE_HOME": str(tmp_path / "st")})
    s = open_session("s1", str(ws), {"XDG_STATE_HOME": str(tmp_path / "st")})
    assert stat.S_IMODE(os.stat(s.upper).st_mode) == 0o700 and s.workspace == str(ws)
    again = open_session("s1", str(ws), {"XDG_STATE_HOME": str(tmp_path / "st")})
    assert again == s


def test_dangerous_path_table():
    from corral.workspace.apply import danger

    cases = {
        ".bashrc": "shell startup file", "sub/.envrc": "direnv file", ".git/hooks/pre-commit": "git hook",
        ".git/config": "git config", ".vscode/settings.json": "editor config", ".idea": "editor config",
        ".claude/settings.json": "agent config", ".mcp.json": "agent config", "a/b/.zshrc": "shell startup file",
        "src/main.py": None, ".git/HEAD": None, "hooks/x": None, ".claude/notes.md": None,
    }
    for path, want in cases.items():
        got = danger("/w/proj", path, False)
        assert (got is None) if want is None else (got is not None and want in got), (path, got)


def test_corral_run_overlay_session_end_to_end(launcher, ws):
    """The same cycle through `corral run --workspace overlay --session NAME` itself."""
    base_files(ws)
    script = "echo more >> a.txt; rm gone.txt; rm -r docs; echo n > new.txt"
    for _ in range(2):  # two runs share the session
        proc = corral(ws, "run", "--workspace", "overlay", "--session", "e2e", "-c", script + "; echo x >> new.txt")
        assert proc.returncode == 0, proc.stderr
    assert (ws.proj / "a.txt").read_text() == "alpha\n" and (ws.proj / "docs").is_dir()
    assert kinds(ws, "e2e") == {"a.txt": "modified", "gone.txt": "deleted", "docs": "deleted", "new.txt": "added"}
    proc = corral(ws, "apply", "e2e")
    assert proc.returncode == 0, proc.stderr
    assert (ws.proj / "a.txt").read_text() == "alpha\nmore\nmore\n" and (ws.proj / "new.txt").read_text() == "n\nx\n"
    assert not (ws.proj / "docs").exists() and not (ws.proj / "gone.txt").exists()
    assert changes(ws, "e2e") == []
    assert corral(ws, "discard", "e2e").returncode == 0
    assert os.listdir(ws.base / "state" / "corral" / "sessions") == []


def test_new_repository_in_session_is_applied_with_a_sanitised_config(launcher, ws):
    """A clone made under the overlay is applied (not refused) with only its inert git config
    keys; the workspace's own git config modified in the session is still refused."""
    src = ws.base / "src"
    src.mkdir()
    (src / "f.txt").write_text("hello\n")
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(ws.base)}
    for a in (["init", "-q"], ["add", "f.txt"], ["-c", "user.name=a", "-c", "user.email=a@a", "commit", "-q", "-m", "first"]):
        subprocess.run(["git", *a], cwd=src, env=env, check=True, capture_output=True)
    ws.chown()
    s = overlay(ws, f"export GIT_CONFIG_GLOBAL=/dev/null HOME=/nonexistent\n"
                    f"git -c safe.directory='*' clone -q {src} c\n"
                    f"git -C c config core.fsmonitor 'touch {ws.base}/MARK; false'\n"
                    f"git -C c config alias.x '!echo evil'\n")
    proc = corral(ws, "apply", "s1")
    assert proc.returncode == 0, proc.stderr
    assert f"corral: sanitised c/.git/config: removed core.fsmonitor, alias.x (runs commands)" in proc.stderr
    config = (ws.proj / "c/.git/config").read_text()
    assert "fsmonitor" not in config and "alias" not in config and "url" in config
    git = ["git", "-c", "safe.directory=*", "-C", str(ws.proj / "c")]
    assert "first" in subprocess.run([*git, "log", "--oneline"], env=env, capture_output=True, text=True).stdout
    subprocess.run([*git, "status"], env=env, capture_output=True)
    assert not (ws.base / "MARK").exists()
    assert_clean_finish(ws, s)
    # the workspace's own repository config: left out by default, and with --include-git
    # it is not sanitised away but refused
    overlay(ws, "printf '[core]\\n\\tfsmonitor = evil\\n' >> .git/config", name="s2")
    proc = corral(ws, "apply", "s2")
    assert proc.returncode == 0 and "left out 1 change inside .git/" in proc.stderr, proc.stderr
    assert "fsmonitor" not in (ws.proj / ".git/config").read_text()
    proc = corral(ws, "apply", "s2", "--include-git")
    assert proc.returncode == 1 and "dangerous  .git/config: git config" in proc.stderr, proc.stderr
