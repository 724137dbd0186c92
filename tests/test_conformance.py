"""Conformance: the same escape attempts against every backend this machine runs, for both
launchers (root and the unprivileged `corral-test` user).

Each test drives the real CLI (`corral run --backend X --settings FILE.json -c ...`, with an
srt-format settings file the test writes) and asserts on host-side effects: files unchanged,
nothing created, secrets never printed, servers never reached. A backend that is not
installed is skipped with the reason; the docker backend needs an engine (none here). The
podman backend runs the Debian test image (scripts/build-test-image.sh --debian) from each
launcher's private store (tests/podman_env.py); the test's HOME and the workspace's siblings
are not in the image at all, so those assertions hold on host state. Where a backend cannot
enforce something, the test asserts that the run refuses (exit 125 with the reason: rootless
podman and the proxy) or that its enforcement report (`--dry-run`) says so.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

import conformance as C
import helpers
from helpers import marker, quarantined, wait_for

PROBE = r'''
import ctypes, errno, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
ARCH = os.uname().machine
NR = {"x86_64": {"keyctl": 250, "io_uring_setup": 425, "ptrace": 101, "mount": 165},
      "aarch64": {"keyctl": 219, "io_uring_setup": 425, "ptrace": 117, "mount": 40}}[ARCH]

def call(name, *args):
    r = libc.syscall(NR[name], *args)
    e = ctypes.get_errno()
    print(f"{name}: " + ("OK" if r >= 0 else f"refused {errno.errorcode.get(e, e)}"))

what = sys.argv[1]
if what == "keyctl":  # KEYCTL_GET_KEYRING_ID of the session keyring, creating it
    call("keyctl", 0, ctypes.c_long(-3), 1)
elif what == "io_uring":
    params = ctypes.create_string_buffer(120)
    call("io_uring_setup", 8, params)
elif what == "ptrace":  # PTRACE_ATTACH to a process that is not our child
    call("ptrace", 16, int(sys.argv[2]), 0, 0)
elif what == "mount":
    os.makedirs("/tmp/ct-mnt", exist_ok=True)
    call("mount", b"none", b"/tmp/ct-mnt", b"tmpfs", 0, 0)
elif what == "nnp":  # PR_GET_NO_NEW_PRIVS
    print("nnp:", libc.prctl(39, 0, 0, 0, 0))
elif what == "unix":
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(sys.argv[2])
        s.sendall(b"escaped")
        print("unix: CONNECTED")
    except OSError as e:
        print("unix: refused", errno.errorcode.get(e.errno, e))
elif what == "tcp":
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((sys.argv[2], int(sys.argv[3])))
        print("tcp: CONNECTED")
    except OSError as e:
        print("tcp: refused", errno.errorcode.get(e.errno, str(e)))
'''


@pytest.fixture(params=C.PARAMS)
def backend(request) -> str:
    return C.backend_param(request)


def out_of(p) -> str:
    return p.stdout + p.stderr


def probe(ws, backend, *args, settings=None):
    ws.write("ctprobe.py", PROBE)
    return C.run(ws, backend, "python3 ctprobe.py " + " ".join(map(str, args)), settings)


# ---------------------------------------------------------------------------------------------
# filesystem
# ---------------------------------------------------------------------------------------------


def test_home_credentials_unreadable(launcher, ws, backend):
    home = C.home(ws)
    key, aws = marker(), marker()
    ws.write(home / ".ssh" / "id_rsa", key)
    ws.write(home / ".aws" / "credentials", f"[default]\naws_secret_access_key = {aws}\n")
    p = C.run(ws, backend, "cat ~/.ssh/id_rsa ~/.aws/credentials; ls -A ~/.ssh ~/.aws; "
                           "cat ~/.ssh/* ~/.aws/* 2>/dev/null; echo done")
    assert "done" in p.stdout, out_of(p)
    assert key not in out_of(p) and aws not in out_of(p), out_of(p)


def test_deny_read_glob_in_workspace_unreadable(launcher, ws, backend):
    k1, k2 = marker(), marker()
    ws.write("top.pem", k1)
    ws.write("a/b/key.pem", k2)
    ws.write("a/b/ok.txt", "visible-ok")
    p = C.run(ws, backend, "cat top.pem a/b/key.pem; cat a/b/ok.txt", C.policy(ws, deny_read=["**/*.pem"]))
    assert "visible-ok" in p.stdout, out_of(p)
    assert k1 not in out_of(p) and k2 not in out_of(p)


def test_write_outside_workspace_refused(launcher, ws, backend):
    home = C.home(ws)
    tag = f"ct-escape-{os.getpid()}-{backend}"
    p = C.run(ws, backend, f"echo pwn > ~/{tag}; echo pwn > /etc/{tag}; echo pwn > ../outside/new.txt; "
                           f"echo pwn >> ../outside/victim.txt; echo pwn > /var/tmp/{tag}; echo pwn > /dev/shm/{tag}; "
                           "echo ran")
    assert "ran" in p.stdout, out_of(p)
    assert not (home / tag).exists()
    assert not os.path.lexists(f"/etc/{tag}")
    assert not os.path.lexists(f"/var/tmp/{tag}")
    assert not os.path.lexists(f"/dev/shm/{tag}")
    assert not (ws.outside / "new.txt").exists()
    assert (ws.outside / "victim.txt").read_text() == "original\n"


def test_git_hooks_and_config_unwritable(launcher, ws, backend):
    git = ws.proj / ".git"
    config = (git / "config").read_bytes()
    hooks = sorted(os.listdir(git / "hooks"))
    p = C.run(ws, backend, "echo '#!/bin/sh' > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit; "
                           "printf '[core]\\n\\tfsmonitor = /tmp/pwn\\n' >> .git/config; "
                           "git config core.hooksPath /tmp; echo ran")
    assert "ran" in p.stdout, out_of(p)
    assert (git / "config").read_bytes() == config
    assert sorted(os.listdir(git / "hooks")) == hooks


def test_planted_startup_files_quarantined_or_refused(launcher, ws, backend, quarantine_cleanup):
    home = C.home(ws)
    p = C.run(ws, backend, "echo evil > .envrc; echo evil >> ~/.bashrc; mkdir -p sub/deep && "
                           "echo evil > sub/deep/.bashrc && echo evil > sub/.envrc; echo ran")
    assert "ran" in p.stdout, out_of(p)
    q = quarantined(p.stderr)
    quarantine_cleanup.extend(q.values())
    assert not (ws.proj / ".envrc").exists(), "a .envrc was planted at the workspace root"
    assert not (home / ".bashrc").exists()
    for rel in ("sub/deep/.bashrc", "sub/.envrc"):
        assert not (ws.proj / rel).exists(), f"planted {rel} left in the workspace"
        assert str(ws.proj / rel) in q, p.stderr
        assert Path(q[str(ws.proj / rel)]).read_text() == "evil\n"


def test_policy_file_cannot_be_renamed_or_replaced(launcher, ws, backend, quarantine_cleanup):
    s = C.policy(ws, where=ws.proj / ".sandbox" / "settings.json")
    before = s.read_bytes()
    p = C.run(ws, backend, "mv .sandbox/settings.json x.json; echo '{}' > .sandbox/settings.json; "
                           "rm -f .sandbox/settings.json; mv .sandbox .sb2 && mkdir .sandbox && echo '{}' > "
                           ".sandbox/settings.json; ln -sf /dev/null .sandbox/settings.json; echo ran", s)
    quarantine_cleanup.extend(quarantined(p.stderr).values())
    assert "ran" in p.stdout, out_of(p)
    assert not s.is_symlink() and s.read_bytes() == before
    assert not (ws.proj / ".sb2").exists()  # the directory is pinned (x.json may be a copy: mv falls back)


def test_symlink_and_hardlink_tricks_toward_protected_files(launcher, ws, backend):
    home = C.home(ws)
    key = marker()
    ws.write(home / ".ssh" / "id_rsa", key)
    config = (ws.proj / ".git" / "config").read_bytes()
    p = C.run(ws, backend, "ln -s ~/.ssh/id_rsa k; cat k; ln -s ../outside/victim.txt v; echo pwn > v; "
                           "ln ../outside/victim.txt h; echo pwn >> h; ln .git/config gc; echo pwn >> gc; "
                           "ln -s .git/hooks hk; echo pwn > hk/post-checkout; echo ran")
    assert "ran" in p.stdout, out_of(p)
    assert key not in out_of(p)
    assert (ws.outside / "victim.txt").read_text() == "original\n"
    assert (ws.proj / ".git" / "config").read_bytes() == config
    assert not (ws.proj / ".git" / "hooks" / "post-checkout").exists()


@pytest.mark.parametrize("link", [".bashrc", ".git/config"])
def test_symlinked_protected_file_does_not_show_a_home_credential(launcher, ws, backend, link):
    # A repository can carry `.bashrc -> /home/me/.ssh/id_rsa`: protecting .bashrc must not
    # show the key that the credential denial hides.
    home = C.home(ws)
    key = marker()
    ws.write(home / ".ssh" / "id_rsa", key)
    dest = ws.proj / link
    if dest.exists():
        dest.unlink()
    dest.symlink_to(home / ".ssh" / "id_rsa")
    ws.chown()
    p = C.run(ws, backend, f"cat {link}; echo ran")
    assert key not in out_of(p)
    if backend == "podman":  # the engine's -v follows the symlink: refused, naming it
        assert p.returncode == 125 and f"{dest} is a symlink to" in p.stderr, out_of(p)
    else:
        assert "ran" in p.stdout, out_of(p)
    assert (home / ".ssh" / "id_rsa").read_text() == key and dest.is_symlink()


def test_setuid_file_cannot_be_created(launcher, ws, backend):
    p = C.run(ws, backend, "cp /bin/true s; chmod u+s,g+s s; python3 -c 'import os; os.chmod(\"s\", 0o6755)'; "
                           "stat -c %a s; echo ran")
    assert "ran" in p.stdout, out_of(p)
    mode = os.stat(ws.proj / "s").st_mode
    assert not mode & (stat.S_ISUID | stat.S_ISGID), oct(mode)


# ---------------------------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------------------------


def test_no_capabilities_and_no_new_privs(launcher, ws, backend):
    p = C.run(ws, backend, "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status; "
                           "python3 -c 'import ctypes; print(\"nnp:\", ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))'")
    fields = dict(line.split(":", 1) for line in p.stdout.splitlines() if ":" in line)
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["CapEff"] == "0000000000000000", out_of(p)
    assert fields["CapPrm"] == "0000000000000000", out_of(p)
    # gVisor's /proc has no NoNewPrivs line: the prctl answer is the behavioural check everywhere
    if "NoNewPrivs" in fields:
        assert fields["NoNewPrivs"] == "1"
    else:
        assert backend == "gvisor", out_of(p)
    assert fields["nnp"] == "1", out_of(p)


@pytest.mark.parametrize("cmd", ["unshare -U true", "unshare -m true", "unshare -r true"])
def test_new_namespaces_refused(launcher, ws, backend, cmd):
    p = C.run(ws, backend, f"{cmd} && echo UNSHARED")
    assert "UNSHARED" not in p.stdout, out_of(p)
    assert p.returncode != 0


def test_mount_refused(launcher, ws, backend):
    p = probe(ws, backend, "mount")
    assert p.stdout.startswith("mount: refused"), out_of(p)


def test_ptrace_of_a_non_child_refused(launcher, ws, backend):
    ws.write("ctprobe.py", PROBE)
    p = C.run(ws, backend, "sleep 30 & pid=$!; python3 ctprobe.py ptrace $pid; python3 ctprobe.py ptrace 1; "
                           "kill $pid")
    lines = p.stdout.splitlines()
    assert lines == ["ptrace: refused EPERM"] * 2, out_of(p)


def test_keyctl_refused(launcher, ws, backend):
    p = probe(ws, backend, "keyctl")
    assert p.stdout.startswith("keyctl: refused"), out_of(p)


def test_io_uring_refused(launcher, ws, backend):
    p = probe(ws, backend, "io_uring")
    assert p.stdout.startswith("io_uring_setup: refused"), out_of(p)


def test_host_unix_socket_unreachable(launcher, ws, backend):
    path = ws.base / "host.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    os.chmod(path, 0o777)
    srv.listen(5)
    srv.setblocking(False)
    try:
        p = probe(ws, backend, "unix", path)
        assert p.stdout.startswith("unix: refused"), out_of(p)
        with pytest.raises(BlockingIOError):
            srv.accept()
    finally:
        srv.close()


def test_host_process_cannot_be_killed(launcher, ws, backend):
    tag = f"1000.{os.getpid()}{time.monotonic_ns() % 100000}"
    sleeper = subprocess.Popen([*launcher.prefix, "sleep", tag], env=launcher.env)
    try:
        found: list[int] = []  # kept from the call that saw it (a second look may race setpriv's exec)
        assert wait_for(lambda: found.extend(helpers.pids_with_arg(tag)) or found)
        pid = found[0]
        p = C.run(ws, backend, f"kill -9 {pid}; echo rc=$?; pkill -9 -f {tag}; ls /proc | grep -c '^[0-9]'")
        time.sleep(0.2)
        assert sleeper.poll() is None, f"the host's sleep was killed from inside: {out_of(p)}"
        assert "rc=0" not in p.stdout, out_of(p)
    finally:
        sleeper.kill()
        sleeper.wait()


# ---------------------------------------------------------------------------------------------
# network
# ---------------------------------------------------------------------------------------------


def test_host_loopback_server_unreachable_directly(launcher, ws, backend, server):
    s = C.policy(ws, allowed=[server.hostport])
    ws.write("ctprobe.py", PROBE)
    p = C.run(ws, backend, f"python3 ctprobe.py tcp 127.0.0.1 {server.port}", s)
    assert server.paths() == []
    if C.refused_rootless(ws, backend, p):
        return
    assert p.stdout.startswith("tcp: refused"), out_of(p)


def test_only_the_allowed_host_is_reachable_through_the_proxy(launcher, ws, backend, server, other):
    s = C.policy(ws, allowed=[server.hostport])
    curl = "curl -sS --max-time 20 -o /dev/null -w '%{http_code}\\n'"
    p = C.run(ws, backend, f"{curl} {server.url('/ok')}; {curl} {other.url('/no')}", s)
    assert other.paths() == []
    if C.refused_rootless(ws, backend, p):
        assert server.paths() == []
        return
    assert p.stdout.splitlines() == ["200", "403"], out_of(p)
    assert server.paths() == ["/ok"]
    assert other.paths() == []


def test_dns_of_a_name_not_allowed_refused(launcher, ws, backend):
    s = C.policy(ws, allowed=["example.com"])
    p = C.run(ws, backend, "getent hosts example.com; echo a=$?; getent hosts blocked-ct.example.org; echo b=$?", s)
    if C.refused_rootless(ws, backend, p):
        return
    lines = p.stdout.splitlines()
    assert lines[0].split()[0].startswith(("198.18.", "198.19.")), out_of(p)  # corral's synthetic addresses
    assert lines[1:] == ["a=0", "b=2"], out_of(p)


def test_no_network_without_allowed_domains(launcher, ws, backend, server):
    ws.write("ctprobe.py", PROBE)
    curl = "curl -sS --max-time 10 -o /dev/null -w '%{http_code}\\n'"
    # 203.0.113.5 is TEST-NET-3: never reached; the sandbox's own 127.0.0.1 has no server
    p = C.run(ws, backend, f"python3 ctprobe.py tcp 203.0.113.5 443; {curl} {server.url('/x')}; "
                           "getent hosts example.com; echo dns=$?")
    assert p.stdout.startswith("tcp: refused"), out_of(p)
    assert "200" not in p.stdout and "dns=2" in p.stdout, out_of(p)
    assert server.paths() == []


# ---------------------------------------------------------------------------------------------
# credentials
# ---------------------------------------------------------------------------------------------


def test_credential_is_a_placeholder_inside_and_real_on_the_wire(launcher, ws, backend, server):
    real = f"ct-real-gh-{os.urandom(16).hex()}"
    s = C.policy(ws, allowed=[server.hostport], extra={
        "credentials.envVars": [{"name": "GH_TOKEN", "mode": "mask", "injectHosts": ["127.0.0.1"]}],
        "credentials.allowPlaintextInject": True})
    p = C.run(ws, backend, 'echo "inside=$GH_TOKEN"; curl -sS --max-time 20 -o /dev/null -w "%{http_code}\\n" '
                           f'-H "Authorization: Bearer $GH_TOKEN" {server.url("/cred")}', s,
              env_extra={"GH_TOKEN": real})
    assert real not in out_of(p)
    if C.refused_rootless(ws, backend, p):
        assert server.hits == []
        return
    inside = [line for line in p.stdout.splitlines() if line.startswith("inside=")]
    assert inside and inside[0].startswith("inside=corral-ph-"), out_of(p)
    assert "200" in p.stdout.splitlines(), out_of(p)
    assert [h["headers"].get("authorization") for h in server.hits] == [f"Bearer {real}"]


# ---------------------------------------------------------------------------------------------
# lifecycle
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("script,code", [("exit 7", 7), ("kill -9 $$", 137), ("ct-no-such-command-xyz", 127)])
def test_exit_status_is_the_commands(launcher, ws, backend, script, code):
    p = C.run(ws, backend, script)
    assert p.returncode == code, out_of(p)


def test_sigterm_to_corral_reaches_the_command(launcher, ws, backend):
    proc = C.popen(ws, backend, "trap 'echo got-term; exit 3' TERM; echo ready > ready.tmp && mv ready.tmp ready; "
                                "sleep 30 & wait")
    try:
        assert wait_for(lambda: (ws.proj / "ready").exists(), timeout=30), proc.poll()
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "got-term" in out, out + err
    assert proc.returncode == 3, (proc.returncode, out, err)


def test_stdin_passes_through(launcher, ws, backend):
    data = marker()
    p = C.run(ws, backend, "read line; echo \"got:$line\"; wc -l", input=f"{data}\na\nb\n")
    assert p.stdout.splitlines() == [f"got:{data}", "2"], out_of(p)


def test_tmpdir_is_private_and_the_commands_own(launcher, ws, backend):
    # Every wall gives the command a private TMPDIR it can use (git reads corral's generated
    # config there), which no other run sees and which is gone afterwards.
    p = C.run(ws, backend, 'echo x > "$TMPDIR/f" && cat "$TMPDIR/f" && stat -c %a "$TMPDIR" && echo "$TMPDIR" && '
                           'git -C . status --porcelain >/dev/null && echo git-ok')
    lines = p.stdout.splitlines()
    assert p.returncode == 0 and lines[:2] == ["x", "700"] and lines[-1] == "git-ok", out_of(p)
    assert not os.path.exists(os.path.join(lines[2], "f"))


def _bundles_of(ws) -> list[str]:
    """OCI bundles in /dev/shm whose config.json names this test's workspace (other runs on the
    machine, concurrent ones included, have bundles of their own there)."""
    found = []
    for n in os.listdir("/dev/shm"):
        if n.startswith("corral-"):
            try:
                text = Path("/dev/shm", n, "config.json").read_text()
            except OSError:
                text = ""
            if str(ws.proj) in text:
                found.append(n)
    return found


def test_no_debris_after_the_run(launcher, ws, backend):
    tag = f"1000.{os.getpid()}{time.monotonic_ns() % 100000}"
    s = C.policy(ws)
    listing = ws.listing()
    p = C.run(ws, backend, f"(sleep {tag} &); echo $TMPDIR; ls -A", s)
    assert p.returncode == 0, out_of(p)
    assert ".bashrc" in p.stdout  # placeholders existed during the run
    tmpdir = p.stdout.splitlines()[0]
    assert wait_for(lambda: not helpers.pids_with_arg(tag), timeout=5), "a process of the run survived it"
    assert not os.path.lexists(tmpdir)  # (other /tmp/corral-* belong to runs of other tests on the machine)
    assert ws.listing() == listing, ws.listing() ^ listing
    # no bundle (config.json, the runtime's state) left in /dev/shm
    assert wait_for(lambda: not _bundles_of(ws), timeout=5), _bundles_of(ws)
