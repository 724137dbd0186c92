"""corral's placeholders (empty read-only stand-ins for missing protected names, gone after the
run) are invisible to git inside the sandbox: `git add -A` must not stage twenty empty dotfiles
into the user's index. The launcher's own global excludes still apply."""

from __future__ import annotations

import os
import subprocess

import helpers


def _files(root) -> list[str]:
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x != ".git"]
        out += [os.path.relpath(os.path.join(d, f), root) for f in files]
    return sorted(out)


def _git(ws, *args):
    subprocess.run(["git", "-C", str(ws.proj), *args], check=True, capture_output=True)


def test_git_add_all_stages_only_the_commands_files(launcher, ws):
    _git(ws, "init", "-q")
    ws.write(ws.proj / "a.txt", "a\n")
    ws.chown()
    real = [f"A  {f}" for f in _files(ws.proj)]
    r = helpers.run(launcher, ["run", "-q", "--", "sh", "-c", "git add -A && git status --porcelain"], ws.proj)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == real, r.stdout
    after = subprocess.run(["git", "-c", "safe.directory=*", "-C", str(ws.proj), "status", "--porcelain"],
                           capture_output=True, text=True)
    assert sorted(after.stdout.splitlines()) == real, after.stdout  # nothing of corral's left in the index


def test_the_launchers_global_excludes_still_apply(launcher, ws):
    _git(ws, "init", "-q")
    home = ws.base / "home"
    (home / ".config" / "git").mkdir(parents=True)
    ws.write(home / ".config" / "git" / "ignore", "*.log\n")
    ws.write(ws.proj / "build.log", "x\n")
    ws.write(ws.proj / "a.txt", "a\n")
    ws.chown()
    r = helpers.run(launcher, ["run", "-q", "--", "git", "status", "--porcelain", "--untracked-files=all"], ws.proj,
                    env_extra={"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")})
    assert r.returncode == 0, r.stderr
    listed = r.stdout.splitlines()
    assert "?? a.txt" in listed and "?? build.log" not in listed, r.stdout
    assert not [line for line in listed if line[3:] not in _files(ws.proj)], r.stdout
