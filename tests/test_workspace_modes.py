"""Workspace modes (`--workspace bind|ro|tmpfs|copy|overlay`), `--output`, and the automatic
denial of secret files, end to end: real sandboxes as root and as an unprivileged user, with
the effects checked on the host."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import helpers


def out_of(p) -> str:
    return p.stdout + p.stderr


def _fake_token() -> str:
    # Built at run time: the repository never holds a token-shaped literal.
    import hashlib

    tail = hashlib.sha256(b"corral-test").hexdigest()[:32]
    return "ghp_" + "".join(c.upper() if i % 3 == 0 else c for i, c in enumerate(tail)) + "Zq8r"


def _state(ws) -> dict:
    """Each test keeps its overlay sessions and caches to itself."""
    state = ws.base / "state"
    if not state.exists():
        state.mkdir()
        os.chown(state, ws.launcher.uid, ws.launcher.gid)  # not ws.chown(): that changes ctimes
    return {"XDG_STATE_HOME": str(state), "XDG_CACHE_HOME": str(ws.base / "cache")}


def _run(ws, script: str, *opts, settings=None):
    args = ["run", *opts]
    if settings is not None:
        args += ["--settings", str(settings)]
    return helpers.run(ws.launcher, [*args, "-c", script], ws.proj, env_extra=_state(ws), timeout=60)


def _corral(ws, *args):
    return helpers.run(ws.launcher, list(args), ws.proj, env_extra=_state(ws), timeout=60)


# ---------------------------------------------------------------------------------------
# automatic denial of secret files
# ---------------------------------------------------------------------------------------


def test_secret_files_are_unreadable_at_any_depth(launcher, ws):
    token = _fake_token()
    ws.write(".env", f"GITHUB_TOKEN={token}\n")
    ws.write("deep/er/still/.env.production", f"TOKEN={token}\n")
    ws.write("ignored/creds.txt", f"token: {token}\n")  # git-ignored, found by its content
    ws.write(".gitignore", "ignored/\n")
    ws.write("keys/server.pem", "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\n")
    ws.write(".env.example", "GITHUB_TOKEN=\nDEBUG=1\n")  # a template: readable
    ws.write("notes.txt", "nothing secret\n")
    script = ("for f in .env deep/er/still/.env.production ignored/creds.txt keys/server.pem .env.example notes.txt; "
              "do if cat $f >/dev/null 2>&1; then echo \"$f=read\"; else echo \"$f=denied\"; fi; done")
    p = _run(ws, script)
    assert p.returncode == 0, out_of(p)
    assert p.stdout.splitlines() == [
        ".env=denied", "deep/er/still/.env.production=denied", "ignored/creds.txt=denied",
        "keys/server.pem=denied", ".env.example=read", "notes.txt=read"], out_of(p)
    assert token not in p.stdout + p.stderr
    # with srt-format settings too (the default is on for every policy format)
    s = ws.settings(allowWrite=[str(ws.proj)])
    p = _run(ws, "cat .env || echo denied", settings=s)
    assert p.stdout.strip().endswith("denied") and token not in p.stdout


def test_a_new_secret_is_never_missed_by_the_cache(launcher, ws):
    token = _fake_token()
    ws.write("config.yml", "name: demo\n")
    p = _run(ws, "cat config.yml")
    assert p.stdout == "name: demo\n", out_of(p)
    # same size, the modification time set back: ctime still changes, so it is rescanned
    before = os.stat(ws.proj / "config.yml")
    secret = f"tok: {token}\n"
    (ws.proj / "config.yml").write_text(secret)
    os.utime(ws.proj / "config.yml", ns=(before.st_atime_ns, before.st_mtime_ns))
    ws.write("new.json", f'{{"token": "{token}"}}')
    p = _run(ws, "cat config.yml || echo denied1; cat new.json || echo denied2")
    assert "denied1" in p.stdout and "denied2" in p.stdout and token not in p.stdout, out_of(p)


def test_deny_secrets_can_be_turned_off(launcher, ws):
    ws.write(".env", "X=1\n")
    policy = ws.write("p.toml", "[filesystem]\ndeny_secrets = false\n")
    p = _run(ws, "cat .env", settings=policy)
    assert p.stdout == "X=1\n", out_of(p)


# ---------------------------------------------------------------------------------------
# ro, tmpfs, copy
# ---------------------------------------------------------------------------------------


def test_ro_workspace(launcher, ws):
    before = ws.listing()
    p = _run(ws, "cat README.txt; echo x > new.txt; echo rc=$?; echo y >> README.txt; echo rc=$?", "--workspace", "ro")
    assert p.stdout.splitlines() == ["readme", "rc=1", "rc=1"], out_of(p)
    assert ws.listing() == before and (ws.proj / "README.txt").read_text() == "readme\n"


def test_tmpfs_workspace_is_empty_scratch(launcher, ws):
    before = ws.listing()
    p = _run(ws, "ls -A | wc -l; echo data > out.txt && cat out.txt; pwd", "--workspace", "tmpfs")
    assert p.stdout.splitlines() == ["0", "data", str(ws.proj)], out_of(p)
    assert ws.listing() == before  # nothing reached the real directory


def test_copy_workspace_is_filtered_and_discarded(launcher, ws):
    token = _fake_token()
    ws.write(".corralignore", "build/\n*.log\n")
    ws.write("build/artifact.bin", "big\n")
    ws.write("debug.log", "log\n")
    ws.write(".env", f"T={token}\n")
    before = ws.listing()
    staging_before = set(glob.glob("/tmp/corral-*-copy"))
    p = _run(ws, "ls -A | sort | tr '\\n' ' '; echo; echo changed > README.txt; echo new > fresh.txt; cat README.txt",
             "--workspace", "copy")
    assert p.returncode == 0, out_of(p)
    listing, content = p.stdout.splitlines()
    assert listing.split() == [".corralignore", ".git", "README.txt", "src"], out_of(p)
    assert content == "changed"
    assert ws.listing() == before and (ws.proj / "README.txt").read_text() == "readme\n"
    assert set(glob.glob("/tmp/corral-*-copy")) == staging_before  # the copy is gone


def test_copy_workspace_uses_dockerignore_without_corralignore(launcher, ws):
    ws.write(".dockerignore", "src\n")
    p = _run(ws, "ls -A | sort | tr '\\n' ' '", "--workspace", "copy")
    assert p.stdout.split() == [".dockerignore", ".git", "README.txt"], out_of(p)


def test_output_directory(launcher, ws):
    out = ws.base / "results"
    p = _run(ws, f"echo result > {out}/r.txt && echo ok; echo x > here.txt; echo rc=$?",
             "--workspace", "ro", "--output", str(out))
    assert p.stdout.splitlines() == ["ok", "rc=1"], out_of(p)
    assert (out / "r.txt").read_text() == "result\n"
    assert not (ws.proj / "here.txt").exists()


# ---------------------------------------------------------------------------------------
# overlay sessions, end to end through corral run
# ---------------------------------------------------------------------------------------


def test_overlay_session_review_apply_discard(launcher, ws):
    before = ws.listing()
    p = _run(ws, "echo changed > README.txt; echo new > added.txt; rm src/main.py; cat README.txt",
             "--workspace", "overlay", "--session", "s1")
    assert p.returncode == 0 and p.stdout == "changed\n", out_of(p)
    assert "overlay session 's1'" in p.stderr
    # the real directory is untouched until apply
    assert ws.listing() == before and (ws.proj / "README.txt").read_text() == "readme\n"
    # a second run in the same session sees the first one's writes
    p = _run(ws, "cat added.txt; ls src | wc -l; echo more >> added.txt", "--workspace", "overlay", "--session", "s1")
    assert p.stdout.splitlines() == ["new", "0"], out_of(p)
    changes = _corral(ws, "changes", "s1")
    assert changes.returncode == 0, out_of(changes)
    lines = [line.split() for line in changes.stdout.splitlines()]
    assert ["modified", "README.txt"] in lines and ["added", "added.txt"] in lines
    assert ["deleted", "src/main.py"] in lines
    diff = _corral(ws, "changes", "s1", "--diff")
    assert "+changed" in diff.stdout and "-readme" in diff.stdout
    applied = _corral(ws, "apply", "s1")
    assert applied.returncode == 0, out_of(applied)
    assert (ws.proj / "README.txt").read_text() == "changed\n"
    assert (ws.proj / "added.txt").read_text() == "new\nmore\n"
    assert not (ws.proj / "src" / "main.py").exists()
    gone = _corral(ws, "discard", "s1")
    assert gone.returncode == 0, out_of(gone)
    assert not (ws.base / "state" / "corral" / "sessions" / "s1").exists()


def test_overlay_without_a_session_name_keeps_the_writes_for_review(launcher, ws):
    before = ws.listing()
    p = _run(ws, "echo x > planted.txt", "--workspace", "overlay")
    assert p.returncode == 0, out_of(p)
    assert ws.listing() == before
    name = p.stderr.split("overlay session '", 1)[1].split("'", 1)[0]
    changes = _corral(ws, "changes", name)
    assert changes.stdout.split() == ["added", "planted.txt"], out_of(changes)


def test_overlay_dangerous_files_need_allow_dangerous(launcher, ws):
    p = _run(ws, "echo evil > .bashrc; mkdir -p .git/hooks; echo evil > .git/hooks/pre-commit; echo ok > fine.txt",
             "--workspace", "overlay", "--session", "d1")
    assert p.returncode == 0, out_of(p)
    assert not (ws.proj / ".bashrc").exists()
    refused = _corral(ws, "apply", "d1")
    assert refused.returncode == 1 and ".bashrc" in refused.stderr and ".git/hooks" not in refused.stderr
    refused = _corral(ws, "apply", "d1", "--include-git")  # .git internals only when asked for
    assert refused.returncode == 1 and ".bashrc" in refused.stderr and ".git/hooks/pre-commit" in refused.stderr
    assert not (ws.proj / "fine.txt").exists()  # all or nothing
    ok = _corral(ws, "apply", "d1", "fine.txt")
    assert ok.returncode == 0 and (ws.proj / "fine.txt").read_text() == "ok\n"
    assert not (ws.proj / ".bashrc").exists()


def test_bad_workspace_options(launcher, ws):
    p = helpers.run(launcher, ["run", "--workspace", "nfs", "--", "true"], ws.proj)
    assert p.returncode == 2 and "--workspace" in p.stderr and "overlay" in p.stderr  # a usage error
    p = helpers.run(launcher, ["run", "--session", "x", "--", "true"], ws.proj)
    assert p.returncode == 2 and "--session" in p.stderr
    p = helpers.run(launcher, ["run", "--workspace", "overlay", "--session", "../evil", "--", "true"], ws.proj,
                    env_extra=_state(ws))
    assert p.returncode == 125 and "Traceback" not in p.stderr


def test_corral_state_and_caches_stay_read_only_with_a_writable_home(launcher, ws):
    env = _state(ws)
    for d in (env["XDG_STATE_HOME"] + "/corral/sessions", env["XDG_CACHE_HOME"] + "/corral/scan"):
        os.makedirs(d, exist_ok=True)
    for d in (ws.base / "state", ws.base / "cache"):
        for root, dirs, _ in os.walk(d):
            os.chown(root, launcher.uid, launcher.gid)
    script = (f"echo x > {env['XDG_CACHE_HOME']}/corral/scan/forged.cache; echo rc=$?; "
              f"echo x > {env['XDG_STATE_HOME']}/corral/sessions/forged; echo rc=$?; "
              f"echo ok > {ws.base}/state/fine; echo rc=$?")
    p = helpers.run(launcher, ["run", "--allow-write", str(ws.base), "-c", script], ws.proj, env_extra=env)
    assert p.stdout.splitlines() == ["rc=1", "rc=1", "rc=0"], out_of(p)
    assert not os.path.exists(env["XDG_CACHE_HOME"] + "/corral/scan/forged.cache")


def test_hard_links_to_secret_files_are_denied_too(launcher, ws):
    ws.write(".env", "PASSWORD=hunter2hunter2\n")  # a name rule, no recognisable token
    os.link(ws.proj / ".env", ws.proj / "src" / "notes.txt")
    ws.write("plain.txt", "PASSWORD=hunter2hunter2\n")  # same text, but its own file
    p = _run(ws, "cat src/notes.txt || echo denied; cat plain.txt")
    assert p.stdout.splitlines() == ["denied", "PASSWORD=hunter2hunter2"], out_of(p)


def test_launched_from_root_nothing_is_writable(launcher, ws):
    # From "/" the working directory is the whole system: the default grants no writes (and
    # does not walk the whole filesystem for secrets).
    target = Path(launcher.home) / "from-root.txt"  # (not under /tmp: its overlay takes writes that vanish)
    p = helpers.run(launcher, ["run", "--", "sh", "-c", f"echo x > {target}; echo rc=$?; pwd"], "/",
                    env_extra=_state(ws), timeout=60)
    assert p.stdout.splitlines() == ["rc=2", "/"], out_of(p)
    assert not target.exists()
