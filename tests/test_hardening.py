"""Escapes found from outside (issue "Hardening"): pinned ancestors of protected paths, the
policy in use, the uid a root launch runs as, and denials that win over protections.

Every test runs as root and as an unprivileged launcher (`launcher`); the host must hold
exactly what it held after each attempt.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from helpers import marker, quarantined, rmtree


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root: kind, content or link target, mode and inode, by relative path."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                what = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                what = ("dir", st.st_ino)
            else:
                what = ("file", Path(p).read_bytes(), st.st_ino)
            out[os.path.relpath(p, root)] = (*what, stat.S_IMODE(st.st_mode))
    return out


def git_repo(ws, rel=".") -> None:
    base = ws.proj / rel
    base.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(base)], check=True, capture_output=True)
    (base / ".git" / "hooks" / "pre-commit").write_text("#!/bin/sh\nexit 0\n")
    ws.chown()


# --- 1. ancestors of protected paths are pinned -------------------------------------------

ANCESTOR_ATTEMPTS = [
    "mv .git .git2",
    "mv .git .git2; mkdir -p .git/hooks; echo evil > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit",
    "rmdir .git/hooks; rm -rf .git/hooks; mkdir -p .git/hooks; echo evil > .git/hooks/post-checkout",
    "mv .git/hooks .git/h2; mkdir .git/hooks; echo evil > .git/hooks/pre-commit",
    "mv .git/config .git/c2; echo '[core]' > .git/config; echo 'fsmonitor = touch /tmp/pwn' >> .git/config",
    "python3 -c 'import os; os.rename(\".git\", \"g\"); os.mkdir(\".git\")'",
]


@pytest.mark.parametrize("attempt", ANCESTOR_ATTEMPTS)
def test_git_dir_cannot_be_moved_away_or_replaced(launcher, ws, attempt, quarantine_cleanup):
    git_repo(ws)
    before = snapshot(ws.proj / ".git")
    p = ws.sh(attempt)
    quarantine_cleanup.extend(quarantined(p.stderr).values())
    assert (ws.proj / ".git").is_dir()
    assert not (ws.proj / ".git2").exists() and not (ws.proj / "g").exists()
    after = snapshot(ws.proj / ".git")
    for rel in ("hooks", "hooks/pre-commit", "config"):
        assert after.get(rel) == before.get(rel), (rel, p.stderr)
    assert after.keys() >= {k for k in before if k.startswith("hooks") or k == "config"}


@pytest.mark.parametrize("depth", ["a", "a/b"])
@pytest.mark.parametrize("how", ["mv {top} {top}.2", "mv {top} {top}.2; mkdir -p {repo}/.git/hooks; "
                                  "echo evil > {repo}/.git/hooks/pre-commit"])
def test_ancestors_one_and_two_levels_up_are_pinned(launcher, ws, depth, how, quarantine_cleanup):
    git_repo(ws, "a/b/repo")
    before = snapshot(ws.proj)
    top = depth
    p = ws.sh(how.format(top=top, repo="a/b/repo"))
    quarantine_cleanup.extend(quarantined(p.stderr).values())
    assert "Device or resource busy" in p.stderr, p.stderr
    assert snapshot(ws.proj) == before


def test_deny_write_directory_parent_cannot_be_swapped(launcher, ws, quarantine_cleanup):
    ws.write("cfg/locked/settings.ini", "safe\n")
    before = snapshot(ws.proj)
    p = ws.sh("mv cfg cfg2; mkdir -p cfg/locked; echo evil > cfg/locked/settings.ini; "
              "mv cfg/locked cfg/l2; echo evil > cfg/locked/x", "--deny-write", "cfg/locked")
    quarantine_cleanup.extend(quarantined(p.stderr).values())
    assert snapshot(ws.proj) == before, p.stderr


@pytest.mark.parametrize("layout", ["sub/.claude/settings.json", "sub/.vscode/tasks.json", "x/y/.bashrc"])
def test_agent_and_editor_dirs_cannot_be_moved_and_recreated(launcher, ws, layout, quarantine_cleanup):
    ws.write(layout, "original\n")
    top = layout.split("/")[0]
    before = snapshot(ws.proj)
    parent = os.path.dirname(layout)
    p = ws.sh(f"mv {top} {top}.2; mv {parent} {parent}.2; mkdir -p {parent}; echo evil > {layout}")
    quarantine_cleanup.extend(quarantined(p.stderr).values())
    assert snapshot(ws.proj) == before, p.stderr


def test_writes_inside_pinned_directories_still_work(launcher, ws):
    git_repo(ws)
    p = ws.sh("git add README.txt && git -c user.name=a -c user.email=a@b commit -qm one && git log --oneline "
              "&& echo note > .git/description && mkdir -p deep/er && echo ok > deep/er/f")
    assert p.returncode == 0, p.stderr
    assert "one" in p.stdout
    assert (ws.proj / ".git" / "description").read_text() == "note\n"
    assert (ws.proj / "deep" / "er" / "f").read_text() == "ok\n"


# --- 2. the policy in use cannot be changed from inside ------------------------------------

def _policy(ws, rel=".sandbox/settings.json"):
    body = {"network": {"allowedDomains": [], "deniedDomains": []},
            "filesystem": {"denyRead": [], "allowRead": [], "allowWrite": ["."], "denyWrite": []}}
    return ws.write(rel, json.dumps(body))


POLICY_ATTEMPTS = [
    "echo '{{}}' > {f}",
    ": > {f}",
    "truncate -s 0 {f}",
    "echo '{{}}' > new.json; mv new.json {f}",
    "python3 -c 'import os; open(\"n\",\"w\").write(\"{{}}\"); os.replace(\"n\", \"{f}\")'",
    "mv {d} {d}.old; mkdir {d}; echo '{{}}' > {f}",
    "ln {f} hard; echo '{{}}' > hard",
    "rm -f {f}; echo '{{}}' > {f}",
    "cd {d} && mv ../{d} ../moved; echo '{{}}' > settings.json",
]


@pytest.mark.parametrize("attempt", POLICY_ATTEMPTS)
def test_policy_in_use_cannot_be_changed(launcher, ws, attempt, quarantine_cleanup):
    f = _policy(ws)
    before = snapshot(ws.proj)
    p = ws.sh(attempt.format(f=".sandbox/settings.json", d=".sandbox"), "--settings", str(f))
    quarantine_cleanup.extend(quarantined(p.stderr).values())
    after = snapshot(ws.proj)
    assert after.get(".sandbox/settings.json") == before[".sandbox/settings.json"], p.stderr
    assert after.get(".sandbox") == before[".sandbox"]


@pytest.mark.parametrize("given, link, target", [("settings.json", "settings.json", "policies/real.json"),
                                                  ("pdir/real.json", "pdir", "policies")])
def test_symlinked_policy_is_not_repointed(launcher, ws, quarantine_cleanup, given, link, target):
    real = _policy(ws, "policies/real.json")
    os.symlink(target, ws.proj / link)
    ws.write("evil.json", "{}")
    ws.chown()
    for attempt in (f"ln -sfn evil.json {link}", f"rm -f {link}; mkdir {link}", f"rm {link}; echo '{{}}' > {link}"):
        p = ws.sh(attempt, "--settings", str(ws.proj / given))
        quarantine_cleanup.extend(quarantined(p.stderr).values())
        assert os.readlink(ws.proj / link) == target, p.stderr
        assert "restored the symlink" in p.stderr
        assert json.loads(real.read_text())["filesystem"]["allowWrite"] == ["."]
        for leftover in ws.proj.glob(f"{link}.corral-replaced-*"):
            rmtree(leftover)


def test_own_installation_in_the_workspace_stays_read_only(launcher, ws):
    """A project .venv holding corral: a .pth planted there would run at corral's next start."""
    import sys

    site = Path(sys.prefix)
    if not str(site).startswith(str(ws.proj)):
        # Run corral from a venv that lies inside the workspace: a venv whose site-packages
        # points at this checkout (cheap: no copy of the interpreter, no network).
        venv = ws.proj / ".venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        src = Path(__file__).resolve().parent.parent / "src"
        sp = next((venv / "lib").glob("python3*/site-packages"))
        deps = next(site.glob("lib/python3*/site-packages"))
        (sp / "corral-src.pth").write_text(f"{src}\n{deps}\n")
        ws.chown()
        py = str(venv / "bin" / "python")
    else:
        venv, py, sp = site, sys.executable, next(site.glob("lib/python3*/site-packages"))
    env = {**launcher.env}
    p = subprocess.run([*launcher.prefix, py, "-m", "corral", "run", "--", "sh", "-c",
                        f"echo 'import os' > {sp}/evil.pth; echo x > {venv}/bin/corral; echo done"],
                       cwd=ws.proj, env=env, capture_output=True, text=True, timeout=60)
    assert "done" in p.stdout, p.stderr
    assert not (sp / "evil.pth").exists()
    assert not (venv / "bin" / "corral").exists()
    assert "corral's own installation" in p.stderr


# --- 3. launched by root, the command is never host uid 0 ----------------------------------

def test_command_never_runs_as_host_root(launcher, ws):
    p = ws.sh("id -u; id -g; cat /proc/self/status | grep -E '^(Uid|Gid|CapEff)'")
    lines = p.stdout.split()
    assert p.returncode == 0, p.stderr
    assert lines[0] != "0" and lines[1] != "0", p.stdout
    if not launcher.is_root:
        assert lines[0] == str(launcher.uid)


def test_files_made_inside_are_owned_as_the_launcher_expects(launcher, ws):
    p = ws.sh("echo x > made && mkdir d && echo y > d/f && chmod 600 README.txt && echo z >> README.txt && rm src/main.py")
    assert p.returncode == 0, p.stderr
    for rel in ("made", "d", "d/f", "README.txt"):
        st = os.lstat(ws.proj / rel)
        assert (st.st_uid, st.st_gid) == (launcher.uid, launcher.gid), rel
    assert not (ws.proj / "src" / "main.py").exists()


def test_root_0600_file_outside_every_rule_is_unreadable(launcher, ws):
    secret = marker()
    f = ws.outside / "root-only.txt"
    f.write_text(secret)
    os.chown(f, 0, 0)
    f.chmod(0o600)
    p = ws.sh(f"cat {f}; head -c 100 /etc/shadow; echo end")
    assert secret not in p.stdout
    assert "root:" not in p.stdout
    assert "Permission denied" in p.stderr


def test_setuid_binary_made_inside_never_gives_euid_0(launcher, ws):
    p = ws.sh("cp /usr/bin/id ./myid; chmod u+s,g+s ./myid; ./myid -u; ./myid -ru; "
              "python3 -c 'import os; print(os.geteuid())'")
    assert "0" not in p.stdout.split(), p.stdout
    st = os.lstat(ws.proj / "myid") if (ws.proj / "myid").exists() else None
    if st is not None:
        assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID)


def test_as_user_root_is_the_named_opt_in(launcher, ws):
    p = ws.sh("id -u", "--as-user", "root")
    if launcher.is_root:
        assert p.stdout.strip() == "0"
    else:
        assert p.returncode == 125 and "launched as root" in p.stderr


def test_project_under_a_root_only_directory_is_reachable(me, ws):
    """/root-like: 0700 root. Launched by root, the command (an unprivileged uid) reaches its
    project through a skeleton of that directory, and nothing else of it."""
    launcher = me
    if not launcher.is_root:
        pytest.skip("needs root: only root launches drop to another uid")
    private = ws.base / "private"
    proj = private / "proj2"
    proj.mkdir(parents=True)
    private.chmod(0o700)
    secret = marker()
    (private / "other.txt").write_text(secret)
    (proj / "f.txt").write_text("hello\n")
    p = subprocess.run(launcher.argv(["run", "--", "sh", "-c", "pwd; cat f.txt; echo new > n.txt; ls -A ..; "
                                      f"cat {private}/other.txt"]),
                       cwd=proj, env=launcher.env, capture_output=True, text=True, timeout=60)
    assert p.returncode != 125, p.stderr
    assert "hello" in p.stdout and secret not in p.stdout
    assert p.stdout.split("\n")[2:3] == ["proj2"], p.stdout
    assert (proj / "n.txt").read_text() == "new\n"
    assert os.lstat(proj / "n.txt").st_uid == 0


def test_dry_run_says_who_the_command_runs_as(launcher, ws):
    p = ws.sh("true", "--dry-run")
    if launcher.is_root:
        assert "never host uid 0" in p.stdout
        assert "idmapped" in p.stdout
    else:
        assert "never host uid 0" not in p.stdout


# --- a denial always wins over a protection ------------------------------------------------

@pytest.mark.parametrize("rel", [".envrc", ".mcp.json", "sub/.bashrc", ".git/config"])
def test_denied_and_protected_file_is_neither_readable_nor_writable(launcher, ws, rel):
    secret = "TOKEN=" + marker()
    ws.write(rel, secret + "\n")
    p = ws.sh(f"cat {rel}; echo pwn > {rel}; cat {rel}", "--deny-read", rel)
    assert secret not in p.stdout
    assert (ws.proj / rel).read_text() == secret + "\n"


def teardown_module(_m):
    rmtree("/tmp/pwn")


def test_overlay_session_as_root_runs_unprivileged_on_idmapped_layers(launcher, ws):
    """Overlay mode: the command runs as the sandbox uid, the workspace stays untouched, and the
    session's files land owned by the launcher; apply brings them in owned by the launcher."""
    state = ws.base / "state"  # private: the test never touches the launcher's real sessions
    state.mkdir()
    os.chown(state, launcher.uid, launcher.gid)
    env = {**launcher.env, "XDG_STATE_HOME": str(state)}
    p = ws.sh("id -u; echo new > made.txt; echo more >> README.txt", "--workspace", "overlay", "--session", "ov1",
              env_extra={"XDG_STATE_HOME": str(state)})
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[0] != "0"
    assert not (ws.proj / "made.txt").exists()
    assert (ws.proj / "README.txt").read_text() == "readme\n"
    a = subprocess.run(launcher.argv(["apply", "ov1"]), cwd=ws.proj, env=env, capture_output=True, text=True, timeout=60)
    assert a.returncode == 0, a.stderr
    assert (ws.proj / "made.txt").read_text() == "new\n"
    assert os.lstat(ws.proj / "made.txt").st_uid == launcher.uid


LIBRARY_SNIPPET = """
import subprocess, sys
from corral import Policy, Sandbox
with Sandbox(Policy.default()) as sb:
    r = sb.run(["sh", "-c", "id -u; echo a > lib-run.txt"], capture_output=True, text=True)
    w = subprocess.run(sb.wrap(["sh", "-c", "id -u; echo b > lib-wrap.txt"]), capture_output=True, text=True)
print(r.stdout.strip(), w.stdout.strip(), r.returncode, w.returncode, r.stderr.strip(), w.stderr.strip())
"""


def test_library_run_and_wrap_never_run_as_host_root(launcher, ws):
    import sys

    p = subprocess.run([*launcher.prefix, sys.executable, "-c", LIBRARY_SNIPPET], cwd=ws.proj, env=launcher.env,
                       capture_output=True, text=True, timeout=60)
    run_uid, wrap_uid, *rest = p.stdout.split()
    assert rest[:2] == ["0", "0"], p.stdout + p.stderr
    assert run_uid != "0" and wrap_uid != "0"
    for name in ("lib-run.txt", "lib-wrap.txt"):
        assert os.lstat(ws.proj / name).st_uid == launcher.uid


def test_git_clone_of_a_host_repository_works_and_home_is_usable(launcher, ws):
    """The sandbox uid owns no host repository: a local clone must not die of git's
    'dubious ownership', and programs must not trip over an unreachable HOME."""
    src = ws.outside / "src"
    subprocess.run(["git", "init", "-q", str(src)], check=True)
    (src / "a.txt").write_text("a\n")
    subprocess.run(["git", "-C", str(src), "add", "a.txt"], check=True)
    subprocess.run(["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "init"],
                   check=True)
    ws.chown()
    p = ws.sh(f"git clone -q {src} cl && git -C cl log --oneline && cd ~ && ls -a >/dev/null && echo x")
    assert p.returncode == 0, p.stderr
    assert "init" in p.stdout and "x" in p.stdout
    assert "Permission denied" not in p.stderr and "dubious" not in p.stderr, p.stderr
    assert (ws.proj / "cl" / "a.txt").read_text() == "a\n"
    assert os.lstat(ws.proj / "cl" / "a.txt").st_uid == launcher.uid


def test_a_datagram_socket_as_stdio_is_refused(launcher, ws):
    """Only stdio is inherited; a Unix datagram socket there could reach host socket paths."""
    import socket

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        p = subprocess.run(launcher.argv(["run", "--", "true"]), cwd=ws.proj, env=launcher.env, stdin=a.fileno(),
                           capture_output=True, text=True, timeout=60)
    finally:
        a.close()
        b.close()
    assert p.returncode == 125 and "Unix datagram socket" in p.stderr, p.stderr
    c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        p = subprocess.run(launcher.argv(["run", "--", "true"]), cwd=ws.proj, env=launcher.env, stdin=c.fileno(),
                           capture_output=True, text=True, timeout=60)
    finally:
        c.close()
        d.close()
    assert p.returncode == 0, p.stderr


def test_tmp_is_writable_inside_and_its_writes_vanish(launcher, ws):
    """/tmp: an overlay over the host's. Writes succeed inside and never reach the host; the
    host's files there stay readable (where the policy allows) and unchanged; a writable area
    under /tmp (the workspace here) still writes through to the host."""
    host_file = ws.outside / "kept.txt"
    host_file.write_text("host\n")
    ws.chown()
    name = f"ct-tmp-{os.getpid()}"
    p = ws.sh(f"echo new > /tmp/{name} && cat /tmp/{name} && cat {host_file} && echo changed > {host_file}; "
              f"rm -f {host_file}; mkdir -p /tmp/{name}.d && echo in > /tmp/{name}.d/f && echo done > result.txt")
    assert p.returncode == 0, p.stderr
    assert "new" in p.stdout and "host" in p.stdout
    assert not Path(f"/tmp/{name}").exists() and not Path(f"/tmp/{name}.d").exists()
    assert host_file.read_text() == "host\n"
    assert (ws.proj / "result.txt").read_text() == "done\n"


def test_tmp_overlay_can_be_turned_off(launcher, ws):
    ws.write("p.toml", "[filesystem]\ntmp_overlay = false\n")
    p = ws.sh("touch /tmp/ct-ro-probe", "--settings", str(ws.proj / "p.toml"))
    assert p.returncode != 0 and "Read-only file system" in p.stderr


def test_root_launch_as_another_user_denies_and_protects_that_users_home(me, ws):
    """`sudo corral run` in a user's project runs as that user: their credentials stay
    unreadable, and from their home directory its start-up files stay protected."""
    import pwd

    if not me.is_root:
        pytest.skip("needs root: only root launches run as another user")
    user = pwd.getpwnam("corral-test")
    home = Path(user.pw_dir)
    secret = marker()
    made = []
    for rel in (".ssh/id_ct", ".aws/credentials"):
        p = home / rel
        if not p.parent.exists():
            p.parent.mkdir(parents=True)
            made.append(p.parent)
        p.write_text(secret)
        made.append(p)
        os.chown(p.parent, user.pw_uid, user.pw_gid)
        os.chown(p, user.pw_uid, user.pw_gid)
        p.chmod(0o600)
    try:
        os.chown(ws.proj, user.pw_uid, user.pw_gid)
        p = subprocess.run(me.argv(["run", "--", "sh", "-c", f"id -u; cat {home}/.ssh/id_ct {home}/.aws/credentials"]),
                           cwd=ws.proj, env=me.env, capture_output=True, text=True, timeout=60)
        assert p.stdout.split()[0] == str(user.pw_uid), p.stdout + p.stderr
        assert secret not in p.stdout
        before = snapshot(home)
        p = subprocess.run(me.argv(["run", "--", "sh", "-c", "mkdir -p .local/bin; echo x > .local/bin/git; "
                                    "echo x > .bash_aliases; echo x >> .bashrc"]),
                           cwd=home, env=me.env, capture_output=True, text=True, timeout=60)
        after = snapshot(home)
        assert not (home / ".local" / "bin" / "git").exists() and not (home / ".bash_aliases").exists(), p.stderr
        assert after.get(".bashrc") == before.get(".bashrc")
    finally:
        for p in reversed(made):
            rmtree(p) if p.is_dir() else p.unlink()


def test_unprivileged_launch_in_a_directory_it_cannot_write_runs(launcher, ws):
    """No placeholders where the launcher cannot create files (the command cannot either)."""
    locked = ws.base / "locked"
    locked.mkdir()
    (locked / "f.txt").write_text("x\n")
    os.chown(locked, 0, 0)
    locked.chmod(0o755)
    p = subprocess.run(launcher.argv(["run", "--", "cat", "f.txt"]), cwd=locked, env=launcher.env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == "x\n", p.stderr
    assert sorted(os.listdir(locked)) == ["f.txt"]


def test_where_idmapped_mounts_are_refused_the_run_is_refused_with_the_opt_in_named(me, ws):
    """A root-owned project on a filesystem that cannot be idmapped (an overlayfs mount, in a
    private mount namespace the test makes): refused with the cause and the fixes, never run
    as uid 0 silently; `--as-user root` is the by-name opt-in."""
    if not me.is_root:
        pytest.skip("needs root: only root launches drop to another uid")
    base = ws.base / "ov"
    for d in ("l", "u", "w", "m"):
        (base / d).mkdir(parents=True)
    corral = " ".join(me.argv([]))
    script = (f"mount -t overlay overlay -o lowerdir={base}/l,upperdir={base}/u,workdir={base}/w {base}/m && "
              f"cd {base}/m && {corral} run -- id -u; echo rc=$?; {corral} run --as-user root -- id -u; echo rc=$?")
    p = subprocess.run(["unshare", "-m", "sh", "-c", script], env=me.env, capture_output=True, text=True, timeout=60)
    lines = p.stdout.split()
    assert lines[:3] == ["rc=125", "0", "rc=0"], p.stdout + p.stderr
    assert "cannot prepare the sandbox's view for uid" in p.stderr and "--as-user root" in p.stderr
    assert "Traceback" not in p.stderr


def test_a_planted_symlink_cannot_widen_a_write_grant(launcher, ws):
    """`allowWrite: [".", "./cache"]`: a sandbox plants `cache -> /elsewhere`; the next run must
    not grant /elsewhere. The entry is refused with the reason."""
    elsewhere = ws.outside / "lib"
    elsewhere.mkdir()
    ws.chown()
    settings = ws.settings(allowWrite=[".", "./cache"])
    p = ws.sh(f"ln -s {elsewhere} cache", "--settings", str(settings))
    assert p.returncode == 0, p.stderr
    p = ws.sh("echo pwn > cache/evil.pth", "--settings", str(settings))
    assert p.returncode == 125, p.stderr
    assert "symlink" in p.stderr and "cache" in p.stderr and "Traceback" not in p.stderr
    assert list(elsewhere.iterdir()) == []


def test_wrap_keeps_its_files_in_a_private_directory(me, ws):
    """Sandbox.wrap() hands the seccomp program and data files over as files: in a fresh 0700
    directory, never at a predictable path in /tmp that another user could plant or swap."""
    import sys

    code = ("import os, sys; from corral import Policy, Sandbox\n"
            "sb = Sandbox(Policy.from_toml('[network]\\nallowed_domains = [\"127.0.0.1:9\"]'))\n"
            "argv = sb.wrap(['true'])\n"
            "files = [a for a in argv if a.startswith('/tmp/corral-wrap-')]\n"
            "d = os.path.dirname(files[0])\n"
            "print(len(files) >= 1, oct(os.stat(d).st_mode & 0o777), all(os.path.dirname(f) == d for f in files))\n"
            "sb.close(); print(os.path.exists(d))\n")
    p = subprocess.run([*me.prefix, sys.executable, "-c", code], cwd=ws.proj, env=me.env, capture_output=True,
                       text=True, timeout=60)
    assert p.stdout.split() == ["True", "0o700", "True", "False"], p.stdout + p.stderr


def test_root_launch_in_a_shared_sticky_directory_is_not_idmapped(me, ws):
    """From /tmp-like directories (sticky, world-writable, root-owned), an idmapped view would
    make every root file there the sandbox's: the sandbox uid writes there as itself."""
    if not me.is_root:
        pytest.skip("needs root: only root launches drop to another uid")
    shared = ws.base / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = shared / "root-file"
    victim.write_text("root\n")
    victim.chmod(0o600)
    p = subprocess.run(me.argv(["run", "--", "sh", "-c", "echo x >> root-file; rm -f root-file; echo mine > new"]),
                       cwd=shared, env=me.env, capture_output=True, text=True, timeout=60)
    assert victim.read_text() == "root\n", p.stderr
    assert os.lstat(shared / "new").st_uid != 0
