"""The launcher's part for container engines (podman, docker): write the files that
`backends/container.py` names (seccomp profile, environment file, generated data files) in a
private directory, start the engine from corral's child, tell a failed start from the
command's own exit, and leave nothing behind.

Process layout for one run (root, podman):

    corral ──fork──> child: joins corral's network namespace only (and the overlay session's
                     mount namespace), never its user namespace ──exec──> env ENGINE_VARS podman run
                     --network host ... ──> conmon ──> runc ──> catatonit ──> command

podman stays in the host's user namespace (it needs its own privileges), and its container
inherits the network namespace it was started in: corral's, where the proxy's listeners are
the only way out. Rootless podman re-executes itself in its own user namespace, which cannot
join corral's network namespace: it gets `--network none`, and runs that need the proxy are
refused (`backends.container.network_mode`). Docker's daemon starts containers itself: the same.

The reaper removes the container (`ENGINE rm -f`) if corral dies mid-run.
"""

from __future__ import annotations

import os

from .._which import find_executable
from ..errors import SetupError

DIR_PREFIX = "corral-ctr-"
# What the engine itself reads from its environment: taken from corral's (the launcher's),
# never from the sandbox's (the plan's environment reaches the container through --env-file).
ENGINE_VARS = ("HOME", "PATH", "USER", "LOGNAME", "LANG", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
               "TMPDIR", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF",
               "CONTAINER_HOST", "CONTAINER_CONNECTION", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT",
               "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "DBUS_SESSION_BUS_ADDRESS")


def engine_path(name: str) -> str | None:
    return find_executable(name, os.environ.get("PATH", "") + ":/usr/bin:/usr/local/bin")


def podman_runtime() -> str | None:
    """`--runtime runc` where podman's default crun refuses the host's hybrid cgroup layout
    (cgroup v1 with a v2 hierarchy beside it: crun 1.8 stops with "cgroups in hybrid mode not
    supported") and runc is installed; else None (the engine's configured runtime)."""
    hybrid = os.path.isdir("/sys/fs/cgroup/unified") and not os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    if not hybrid:
        return None
    return "runc" if find_executable("runc", os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin") else None


def engine_env(plan_env: dict[str, str], environ=None) -> list[str]:
    """`env` arguments giving the engine the launcher's values of the variables it reads."""
    environ = os.environ if environ is None else environ
    unset, assign = [], []
    for name in ENGINE_VARS:
        if name in environ:
            assign.append(f"{name}={environ[name]}")
        elif name in plan_env:
            unset += ["-u", name]
    return [*unset, *assign]


def docker_unreachable(engine: str) -> SetupError:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return SetupError(f"the docker backend needs the Docker daemon, which does not answer at {host}",
                      "start it (`sudo systemctl start docker`) or set DOCKER_HOST; or use --backend podman "
                      "(no daemon needed)")


def _under(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def symlinked_protection(plan) -> tuple[str, str] | None:
    """(path, where it points) of a protected path the engine would bind through a symlink to
    something the container must not see, or None. The engine's `-v PATH:PATH:ro` follows a
    symlink: a workspace's `.bashrc -> ~/.ssh/id_rsa` or `.vscode -> ~/.ssh` would show the key
    (the image has no ~/.ssh to hide). A symlink to a visible file of the workspace is fine."""
    real = os.path.realpath
    areas = [real(r) for r in plan.writable_roots]
    if plan.workspace is not None:
        areas.append(real(plan.workspace.path))
    hidden = [real(m.dest) for m in plan.mounts if m.op == "dev-null" or (
        m.op == "tmpfs" and m.dest not in (plan.tmpdir, plan.workspace.path if plan.workspace else None))]
    for m in plan.mounts:
        if m.op in ("pre-bind", "pre-ro-bind") and os.path.islink(m.dest):
            target = real(m.dest)
            if not _under(target, areas) or _under(target, hidden):
                return m.dest, target
    return None


class ContainerLaunch:
    """One run on a container engine; `Run` calls prepare() on the host, child() in the forked
    child (instead of its own namespace steps: `own_namespaces`), outcome() after the engine
    exited, and cleanup() at the end."""

    drops_uid = False  # the engine needs its own privileges; --user names the command's uid
    own_namespaces = True  # corral's child joins only what the engine needs (see child())

    def __init__(self, run, backend, image: str | None = None):
        self.run = run
        self.backend = backend
        self.image = image
        self.dir = ""
        self.exe = ""
        self.container = f"corral-{run.plan.run_id or os.urandom(6).hex()}"
        self.status: int | None = None

    @property
    def cidfile(self) -> str:
        return f"{self.dir}/cid"

    def target(self, facts, tty: bool):
        from ..backends import container

        limits = self.run.limits.plan.limits if self.run.limits is not None else None
        return container.Target.for_run(
            self.backend.name, facts, self.image, seccomp=f"{self.dir}/seccomp.json", datadir=self.dir,
            container=self.container, cidfile=self.cidfile, tty=tty, limits=limits,
            runtime=podman_runtime() if self.backend.name == "podman" else None)

    def prepare(self) -> list[str]:
        from ..backends import container
        from ..backends.facts import Facts

        name = self.backend.name
        plan = self.run.plan
        self.exe = engine_path(name)
        if self.exe is None:
            pkg = "podman" if name == "podman" else "docker.io"
            raise SetupError(f"the {name} backend needs {name}, which is not installed",
                             f"install it: sudo apt-get install {pkg} (or choose --backend bwrap)")
        root = self.run.launched_by_root
        if name == "docker":
            from .hostfacts import _docker_reachable

            if not _docker_reachable(self.exe):
                raise docker_unreachable(name)
        ws = plan.workspace
        if ws is not None and ws.mode == "overlay" and not root:
            raise SetupError(f"--workspace overlay is not available on the {name} backend for unprivileged users "
                             "(the engine mounts in its own namespace, where corral's overlay is not)",
                             "use --workspace copy or ro, or --backend bwrap")
        from .hostfacts import engine_init

        facts = Facts(root, self.exe, engine_rootless=not root and name == "podman", init=engine_init(name))
        import sys

        tty = False
        try:
            tty = sys.stdin.isatty() and sys.stdout.isatty()
        except (OSError, ValueError):
            pass
        import tempfile

        from .ocirun import bundle_parent

        link = symlinked_protection(plan)
        if link is not None:
            from ..display import shown

            raise SetupError(f"{shown(link[0])} is a symlink to {shown(link[1])}: {name} would bind what it points "
                             "to in its place, which the sandbox must not see",
                             "replace the symlink with the file itself, or remove it")
        self.dir = tempfile.mkdtemp(prefix=DIR_PREFIX, dir=bundle_parent())
        argv, files = container.render(name, plan, self.target(facts, tty))
        files.append((f"{self.dir}/seccomp.json", container.seccomp_json(plan, os.uname().machine), 0o644))
        for path, data, mode in files:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(path, mode)
        env = find_executable("env", "/usr/bin:/bin") or "/usr/bin/env"
        return [env, *engine_env(dict(plan.env)), *argv]

    def rm_argv(self) -> list[str]:
        exe = self.exe or engine_path(self.backend.name) or "true"
        if self.backend.name == "podman":
            return [exe, "rm", "--force", "--ignore", "--time", "0", self.container]
        return [exe, "rm", "--force", self.container]

    def forward_signal(self, pid: int, signum: int) -> None:
        """Root podman's sig-proxy forwards a signal sent to the engine to the container. Rootless
        podman 4.3 does not wait: SIGTERM to `podman run` ends it with status 0 while the command
        is still handling the signal (its own exit status is lost), so rootless runs' signals go
        through `podman kill --signal N NAME` once the container exists."""
        rootless = self.backend.name == "podman" and not self.run.launched_by_root
        if rootless and self.dir and os.path.exists(self.cidfile):
            import subprocess

            try:
                subprocess.Popen([self.exe or "podman", "kill", "--signal", str(signum), self.container],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                return
            except OSError:
                pass
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    # -- in the forked child ---------------------------------------------------------------------------
    def child(self) -> None:
        """Root: join corral's network namespace (and the overlay session's mount namespace), not
        its user namespace: podman must keep its privileges to start the container, which
        inherits that network namespace (--network host). Unprivileged: nothing to join (the
        container gets an empty network namespace of its own)."""
        ns = self.run.namespaces.ns if self.run.namespaces is not None else None
        if not self.run.launched_by_root:
            return
        from .libc import CLONE_NEWNET, CLONE_NEWNS, setns

        if ns is not None and ns.mnt_fd >= 0:
            setns(ns.mnt_fd, CLONE_NEWNS)
        plan = self.run.plan
        if plan.idmaps or plan.skeletons or plan.overlay_layers or plan.tmp_overlay is not None or plan.premounts:
            # corral's view (idmapped writable areas for the sandbox uid, protections), in a private
            # mount namespace the engine inherits: its volume sources resolve there.
            from .mountprep import prepare

            ws = plan.workspace
            prepare(plan.idmaps, plan.skeletons, self.run.userns_fds, plan.overlay_layers,
                    ws.upper if plan.overlay_layers else "", ws.work if plan.overlay_layers else "",
                    plan.tmp_overlay, plan.premounts)
        if ns is not None:
            setns(ns.net_fd, CLONE_NEWNET)

    # -- after the engine exited -----------------------------------------------------------------------
    def outcome(self, status: int) -> str:
        """"ran" when the engine created the container (the status is the command's), else "setup"."""
        self.status = status
        if status == 125 and not os.path.exists(self.cidfile):
            return "setup"
        return "ran"

    def failure(self, status: int) -> SetupError:
        name = self.backend.name
        return SetupError(f"{name} could not start the container (exit {status}; its message is above)",
                          f"check that the image exists (`{name} image inspect IMAGE`; corral never pulls one), "
                          f"run `corral doctor --backend {name}`, or choose --backend bwrap")

    def reaper_lines(self) -> list[str]:
        import json

        return [f"exec {json.dumps(self.rm_argv())}\n", f"rmtree {self.dir}\n"]

    def cleanup(self) -> None:
        """Remove the container when the engine did not (it was killed, or the run aborted);
        --rm removes it otherwise."""
        if self.dir and (self.status is None or self.status >= 128) and os.path.exists(self.cidfile):
            import subprocess

            try:
                subprocess.run(self.rm_argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=60)
            except (OSError, subprocess.SubprocessError):
                pass
        if self.dir:
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""
