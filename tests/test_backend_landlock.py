"""The landlock backend: its pure renderer (table-driven), and the conformance suite's escape
attempts run on it, root and unprivileged. Where Landlock honestly cannot do what the other
walls do, the test asserts that the enforcement report says so.

Launched by root, the workspace belongs to the unprivileged test user: the backend runs the
command as the workspace's owner and refuses a root-owned workspace (no idmapped mounts
without a mount namespace), which `test_root_owned_workspace_refused` checks.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess

import pytest

import conformance as C
import helpers
from corral.backends import landlock as L
from corral.sandbox.plan import Mount, NetPlan
from helpers import marker, quarantined

# The conformance suite, collected here with `backend` = "landlock" (the fixtures come along).
from test_conformance import *  # noqa: F401,F403
from test_conformance import PROBE, out_of

ABI = 0
try:
    from corral.sandbox.landlockrun import abi as _abi

    ABI = _abi()
except OSError:
    pass


@pytest.fixture
def backend() -> str:
    if ABI < L.MIN_ABI:
        pytest.skip(f"landlock backend: the kernel offers Landlock ABI {ABI}, it needs {L.MIN_ABI}")
    return "landlock"


class _UserOwned(helpers.Workspace):
    """Files owned by the unprivileged test user, whoever launches."""

    def chown(self) -> None:
        if os.geteuid() == 0:
            pw = pwd.getpwnam(helpers.TEST_USER)
            for root, dirs, files in os.walk(self.base):
                for n in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
                    os.lchown(n, pw.pw_uid, pw.pw_gid)


@pytest.fixture
def ws(request):
    launcher = request.getfixturevalue("launcher")
    w = helpers.make_workspace(launcher)
    w = _UserOwned(w.base, w.proj, w.outside, w.launcher)
    w.chown()
    yield w
    helpers.rmtree(w.base)


# ---------------------------------------------------------------------------------------------
# conformance tests whose landlock form differs (the report says why)
# ---------------------------------------------------------------------------------------------


def test_planted_startup_files_quarantined_or_refused(launcher, ws, backend, quarantine_cleanup):
    """No new entry directly in the workspace root (it holds the protected placeholders): the
    planted .envrc is refused there; in an existing subdirectory a planted file is quarantined."""
    home = C.home(ws)
    ws.write("sub/deep/keep.txt", "x")
    p = C.run(ws, backend, "echo evil > .envrc; echo evil >> ~/.bashrc; echo evil > sub/deep/.bashrc && "
                           "echo evil > sub/.envrc; echo ran")
    assert "ran" in p.stdout, out_of(p)
    q = quarantined(p.stderr)
    quarantine_cleanup.extend(q.values())
    assert not (ws.proj / ".envrc").exists(), "a .envrc was planted at the workspace root"
    assert not (home / ".bashrc").exists()
    for rel in ("sub/deep/.bashrc", "sub/.envrc"):
        assert not (ws.proj / rel).exists(), f"planted {rel} left in the workspace"
        assert str(ws.proj / rel) in q, p.stderr
    assert "no new file directly in a directory holding a protected path" in C.dry_report(ws, backend)


def test_dns_of_a_name_not_allowed_refused(launcher, ws, backend):
    """No synthetic DNS on this backend: no name resolves inside (the proxy resolves them)."""
    s = C.policy(ws, allowed=["example.com"])
    p = C.run(ws, backend, "getent hosts example.com; echo a=$?; getent hosts blocked-ct.example.org; echo b=$?", s)
    assert "b=0" not in p.stdout and "a=0" not in p.stdout, out_of(p)
    report = C.dry_report(ws, backend, s)
    assert "no DNS" in report and "transparent networking  not enforced" in report, report


def test_denied_names_stay_visible_and_the_report_says_so(launcher, ws, backend):
    home = C.home(ws)
    key = marker()
    ws.write(home / ".ssh" / "id_rsa", key)
    p = C.run(ws, backend, "ls -A ~/.ssh 2>&1; stat -c %s ~/.ssh/id_rsa 2>&1; cat ~/.ssh/id_rsa 2>&1; echo ran")
    assert "ran" in p.stdout and key not in out_of(p), out_of(p)
    report = C.dry_report(ws, backend)
    assert "read denials" in report and "names and sizes still visible" in report, report


def test_reports_no_pid_namespace_and_no_private_tmp(launcher, ws, backend):
    report = C.dry_report(ws, backend)
    assert "pid namespace" in report and "host processes visible" in report, report
    assert "no private /tmp" in report, report
    assert f"ABI {min(ABI, L.MAX_ABI)}" in report or f"ABI {ABI}" in report, report


def test_tmp_writes_refused_tmpdir_private_and_removed(launcher, ws, backend):
    tag = f"ct-ll-{os.getpid()}"
    p = C.run(ws, backend, f"echo x > /tmp/{tag}; echo y > $TMPDIR/f && cat $TMPDIR/f; echo $TMPDIR")
    assert not os.path.lexists(f"/tmp/{tag}")
    lines = p.stdout.splitlines()
    assert lines[0] == "y", out_of(p)
    assert not os.path.lexists(lines[1])


def test_udp_raw_and_other_sockets_refused(launcher, ws, backend, server):
    """What Landlock does not cover, seccomp refuses: UDP (a DNS exfiltration path), raw, SCTP,
    packet sockets, TCP Fast Open."""
    script = r'''
import socket, errno
def t(name, f):
    try:
        f(); print(name, "ALLOWED")
    except OSError as e:
        print(name, "refused", errno.errorcode.get(e.errno))
t("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", 53)))
t("udp6", lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
t("raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, 1))
t("sctp", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132))
t("packet", lambda: socket.socket(17, socket.SOCK_RAW, 0))
t("fastopen", lambda: socket.socket().sendto(b"GET / HTTP/1.0\r\n\r\n", 0x20000000, ("127.0.0.1", PORT)))
t("bind", lambda: socket.socket().bind(("127.0.0.1", 0)))
'''.replace("PORT", str(server.port))
    ws.write("socks.py", script)
    p = C.run(ws, backend, "python3 socks.py", C.policy(ws, allowed=[server.hostport]))
    lines = p.stdout.splitlines()
    assert len(lines) == 7 and all(" refused " in line for line in lines), out_of(p)
    assert server.paths() == []


def test_proxy_refuses_connections_without_the_runs_credentials(launcher, ws, backend, server):
    """The proxy's port is on the host's loopback: a connection without the run's credentials
    (another local process, or the command dropping them) gets 407, never the allowed host."""
    s = C.policy(ws, allowed=[server.hostport])
    curl = "curl -sS --max-time 20 -o /dev/null -w '%{http_code}\\n'"
    p = C.run(ws, backend, f'P=${{HTTP_PROXY##*:}}; {curl} -x http://127.0.0.1:$P {server.url("/nocreds")}; '
                           f'{curl} {server.url("/ok")}', s)
    assert p.stdout.splitlines() == ["407", "200"], out_of(p)
    assert server.paths() == ["/ok"]


def test_other_host_ports_refused_but_port_numbers_are_the_only_key(launcher, ws, backend, server):
    """Direct TCP to any other port is refused; the report says that Landlock knows ports, not
    addresses (the proxy's port number on another address is not refused)."""
    s = C.policy(ws, allowed=[server.hostport])
    ws.write("ctprobe.py", PROBE)
    p = C.run(ws, backend, f"python3 ctprobe.py tcp 127.0.0.1 {server.port}; python3 ctprobe.py tcp 127.0.0.1 22", s)
    assert p.stdout.splitlines() == ["tcp: refused EACCES"] * 2, out_of(p)
    assert "Landlock TCP rules know ports, not addresses" in C.dry_report(ws, backend, s)


def test_leftover_processes_killed_when_the_command_ends(launcher, ws, backend):
    tag = f"1000.{os.getpid()}7"
    p = C.run(ws, backend, f"(sleep {tag} &); (setsid sleep {tag} &); echo ran")
    assert "ran" in p.stdout, out_of(p)
    assert helpers.wait_for(lambda: not helpers.pids_with_arg(tag), timeout=5), "a process of the run survived it"


def test_root_owned_workspace_refused(launcher, backend):
    if not launcher.is_root:
        pytest.skip("a root launch only (an unprivileged launcher owns its workspace)")
    w = helpers.make_workspace(launcher)  # root-owned
    try:
        p = C.run(w, backend, "echo ran")
        assert p.returncode == 125 and "ran" not in p.stdout, out_of(p)
        assert "landlock backend cannot show the workspace" in p.stderr and "--as-user" in p.stderr, p.stderr
    finally:
        helpers.rmtree(w.base)


# ---------------------------------------------------------------------------------------------
# the renderer (pure)
# ---------------------------------------------------------------------------------------------

TREE = {
    "/": ["bin", "etc", "home", "dev", "proc"],
    "/home": ["u", "v"],
    "/home/u": [".ssh", ".aws", "proj", ".bashrc"],
    "/home/u/proj": [".git", "src", ".bashrc", ".env"],
    "/home/u/proj/.git": ["config", "hooks", "objects", "HEAD"],
}


def _ls(path):
    if path not in TREE:
        raise NotADirectoryError(path)
    return TREE[path]


@pytest.mark.parametrize("root,excluded,expected", [
    ("/", [], ["/"]),
    ("/", ["/"], []),
    ("/", ["/home/u/.ssh"], ["/bin", "/dev", "/etc", "/home/u/.aws", "/home/u/.bashrc", "/home/u/proj", "/home/v",
                             "/proc"]),
    ("/", ["/home/u/.ssh", "/dev"], ["/bin", "/etc", "/home/u/.aws", "/home/u/.bashrc", "/home/u/proj", "/home/v",
                                     "/proc"]),
    ("/home/u/proj", ["/home/u/proj/.git/config", "/home/u/proj/.git/hooks", "/home/u/proj/.bashrc"],
     ["/home/u/proj/.env", "/home/u/proj/.git/HEAD", "/home/u/proj/.git/objects", "/home/u/proj/src"]),
    ("/home/u/proj", ["/etc/passwd"], ["/home/u/proj"]),  # excluded elsewhere: the root whole
    ("/home/u/proj", ["/home/u/proj/missing"], [".git", ".bashrc", ".env", "src"]),
])
def test_carve(root, excluded, expected):
    got = L.carve(root, excluded, _ls)
    if expected and not expected[0].startswith("/"):
        expected = sorted(f"{root}/{n}" for n in expected)
    assert sorted(got) == sorted(expected)


def _plan(**kw):
    from corral.sandbox.plan import Plan
    from corral.sandbox.seccomp import SeccompOptions

    base = dict(argv=("true",), cwd="/home/u/proj", env=(("PATH", "/bin"),), seccomp=SeccompOptions(),
                disable_userns=True, placeholders=(), tmpdir="/tmp/corral-x", writable_roots=("/home/u/proj",),
                scan_skip=frozenset(), protected_before={},
                mounts=(Mount("ro-bind", "/", "/"), Mount("dev-null", "/home/u/.aws", "/dev/null"),
                        Mount("tmpfs", "/home/u/.ssh"), Mount("tmpfs", "/tmp/corral-x"), Mount("tmpfs", "/dev/shm"),
                        Mount("bind", "/home/u/proj", "/home/u/proj"),
                        Mount("pre-ro-bind", "/home/u/proj/.git/config", "/home/u/proj/.git/config"),
                        Mount("pre-ro-bind", "/home/u/proj/.bashrc", "/home/u/proj/.bashrc"),
                        Mount("dev-null", "/home/u/proj/.env", "/dev/null")))
    base.update(kw)
    return Plan(**base)


def test_rules_read_write_and_ports():
    r = L.rules(_plan(), 7, (4000, 4001), _ls)
    by = {p.path: p.access for p in r.paths}
    assert "/home/u/.ssh" not in by and "/home/u/.aws" not in by and "/home/u" not in by
    assert by["/etc"] == L.READ and by["/home/u/.bashrc"] == L.READ
    assert "/dev" not in by and by["/dev/null"] & L.WRITE_FILE
    # the workspace: writable minus its protected and denied paths; never the root itself
    assert "/home/u/proj" not in by and "/home/u/proj/.env" not in by
    assert by["/home/u/proj/src"] & L.WRITE_FILE and by["/home/u/proj/.git/objects"] & L.MAKE_REG
    assert by["/home/u/proj/.git/config"] == L.READ and by["/home/u/proj/.bashrc"] == L.READ
    assert r.connect_ports == (4000, 4001) and r.handled_net == L.NET_BIND_TCP | L.NET_CONNECT_TCP
    assert r.scoped == L.SCOPE_ABSTRACT_UNIX_SOCKET | L.SCOPE_SIGNAL
    assert not any(a & (L.MAKE_CHAR | L.MAKE_BLOCK) for a in by.values())


@pytest.mark.parametrize("abi,fs,scoped,size", [
    (4, (1 << 15) - 1, 0, 16), (5, (1 << 16) - 1, 0, 16), (6, (1 << 16) - 1, 3, 24), (7, (1 << 16) - 1, 3, 24),
])
def test_rights_per_abi(abi, fs, scoped, size):
    r = L.rules(_plan(), abi, (), _ls)
    assert r.handled_fs == fs and r.scoped == scoped and L.attr_size(abi) == size
    assert all(p.access & ~fs == 0 for p in r.paths)  # never a right the kernel does not handle
    assert r.connect_ports == ()  # no network: every connect refused


@pytest.mark.parametrize("abi", [0, 1, 3])
def test_below_abi_4_refused_with_the_kernels_abi_and_the_fix(abi):
    with pytest.raises(L.AbiTooOld) as e:
        L.check_abi(abi)
    assert "ABI 4" in str(e.value) and (f"ABI {abi}" in str(e.value) or "not enabled" in str(e.value))
    from corral.backends.facts import Facts

    rep = L.report("landlock", _plan(), Facts(False, landlock_abi=abi))
    row = rep.get("landlock")
    assert row.state == "not enforced" and "Linux >= 6.7" in row.how and "--backend bwrap" in row.how


@pytest.mark.parametrize("abi,says", [(7, "not signalable"), (5, "CAN be signalled")])
def test_report_signals_per_abi(abi, says):
    from corral.backends.facts import Facts

    rep = L.report("landlock", _plan(), Facts(False, landlock_abi=abi))
    assert says in rep.get("pid namespace").how
    assert rep.get("pid namespace").state == ("partial" if abi >= 6 else "not enforced")
    assert rep.get("network").state == "enforced"  # offline: nothing to reach
    net = L.report("landlock", _plan(network=NetPlan(False, "u", "t")), Facts(False, landlock_abi=abi))
    assert net.get("network").state == "partial" and "ports, not addresses" in net.get("network").how


@pytest.mark.parametrize("kw,says", [
    (dict(run_as=(0, 0)), "does not run commands as root"),
    (dict(idmaps=("x",)), "idmapped mounts need a mount namespace"),
])
def test_refusals(kw, says):
    assert says in L.refusal(_plan(**kw))


def test_on_host_ports_rewrites_only_corrals_proxy_variables():
    from corral.policy.model import NetworkPolicy
    from corral.sandbox.netenv import proxy_environment

    net = NetPlan(False, "corral-x", "tok")
    policy = NetworkPolicy(allowed_domains=("example.com",))
    env = {**proxy_environment(net, policy), "OTHER": "127.0.0.1:3128"}
    plan = L.on_host_ports(_plan(network=net, env=tuple(env.items())), 40001, 40002, policy)
    got = dict(plan.env)
    assert got["HTTP_PROXY"] == "http://corral-x:tok@127.0.0.1:40001"
    assert got["ALL_PROXY"] == "socks5h://corral-x:tok@127.0.0.1:40002"
    assert got["OTHER"] == "127.0.0.1:3128" and plan.network.http_port == 40001


def test_extra_seccomp_compiles():
    from corral.sandbox.seccomp import SeccompOptions, compile_filter

    base = compile_filter(SeccompOptions())
    more = compile_filter(SeccompOptions(), extra=L.extra_seccomp())
    assert len(more) > len(base) and more[:24] == base[:24]


# The same attempts as the conformance suite's, with new files in an existing subdirectory (src/):
# the workspace root takes no new entry on this backend (see the report's filesystem view).


def test_setuid_file_cannot_be_created(launcher, ws, backend):
    p = C.run(ws, backend, "cp /bin/true src/s; chmod u+s,g+s src/s; "
                           "python3 -c 'import os; os.chmod(\"src/s\", 0o6755)'; stat -c %a src/s; echo ran")
    assert "ran" in p.stdout, out_of(p)
    mode = os.stat(ws.proj / "src" / "s").st_mode
    assert mode & 0o755 and not mode & 0o6000, oct(mode)


def test_mount_refused(launcher, ws, backend):
    ws.write("ctprobe.py", PROBE.replace('"/tmp/ct-mnt"', '"src/ct-mnt"').replace('b"/tmp/ct-mnt"', 'b"src/ct-mnt"'))
    p = C.run(ws, backend, "python3 ctprobe.py mount")
    assert p.stdout.startswith("mount: refused"), out_of(p)


def test_sigterm_to_corral_reaches_the_command(launcher, ws, backend):
    import signal
    import time

    proc = C.popen(ws, backend, "trap 'echo got-term; exit 3' TERM; echo ready > src/ready.tmp && "
                                "mv src/ready.tmp src/ready; sleep 30 & wait")
    try:
        assert helpers.wait_for(lambda: (ws.proj / "src" / "ready").exists(), timeout=30), proc.poll()
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "got-term" in out, out + err
    assert proc.returncode == 3, (proc.returncode, out, err)


def test_new_file_in_the_workspace_root_refused_and_said(launcher, ws, backend):
    """The cost of the walk, pinned: the root holds protected names, so it takes no new entry."""
    p = C.run(ws, backend, "echo x > new.txt; echo x > src/new.txt && echo sub-ok")
    assert "sub-ok" in p.stdout and not (ws.proj / "new.txt").exists(), out_of(p)
    assert (ws.proj / "src" / "new.txt").read_text() == "x\n"
