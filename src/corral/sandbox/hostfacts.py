"""The host facts a backend's report and renderer depend on (`backends.facts.Facts`):
which runtime is installed, its version, an init for pid 1, the engine's mode."""

from __future__ import annotations

import os

from ..backends.facts import Facts


def gather(name: str, policy=None, plan=None, version: bool = False) -> Facts:
    """`version`: also ask the runtime its version (a process start: only for reports)."""
    from .._which import find_executable

    root = os.geteuid() == 0
    if name == "bwrap":
        exe = find_executable((plan.bwrap if plan is not None else None) or "bwrap")
        return Facts(root, exe, _version(exe) if version and exe else "")
    if name in ("runc", "crun", "gvisor"):
        from .ocirun import init_path, runtime_path

        exe = runtime_path(name)
        return Facts(root, exe, _version(exe) if version and exe else "", init=init_path())
    if name == "landlock":
        from .landlockrun import abi

        found = abi()
        from .diagnose import root_host_uid

        return Facts(root, "landlock" if found > 0 else None, f"ABI {found}" if found > 0 else "", landlock_abi=found,
                     root_is_host_root=not root or root_host_uid() == 0)
    exe = find_executable(name, os.environ.get("PATH", "") + ":/usr/bin:/usr/local/bin")
    return Facts(root, exe, _version(exe) if version and exe else "", engine_rootless=not root and name == "podman",
                 engine_reachable=True if name == "podman" else _docker_reachable(exe), init=engine_init(name),
                 cgroup_version=2 if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else 1)


def _version(exe: str) -> str:
    import subprocess

    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.splitlines()[0].strip() if out.strip() else ""


def _docker_reachable(exe: str | None) -> bool:
    if exe is None:
        return False
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        import socket

        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(host[len("unix://"):])
            return True
        except OSError:
            return False
        finally:
            s.close()
    return True  # a TCP or SSH daemon: the engine itself says if it is unreachable


PODMAN_INIT = "/usr/libexec/podman/catatonit"


def engine_init(name: str) -> str | None:
    """The init a container engine runs as pid 1 with --init (podman: catatonit; docker: docker-init)."""
    from .._which import find_executable

    if name == "podman":
        return PODMAN_INIT if os.access(PODMAN_INIT, os.X_OK) else find_executable("catatonit", "/usr/bin:/usr/libexec")
    return find_executable("docker-init", "/usr/bin:/usr/libexec/docker:/usr/local/bin")


def auto_probe(policy=None):
    """What `--backend auto` decides on (`backends.auto.Probe`): bubblewrap's program, why user
    namespaces are refused here (one forked probe), the kernel's Landlock ABI, and whether this
    build has the landlock backend."""
    from .._which import find_executable
    from ..backends import KINDS
    from ..backends.auto import WEAKER, Probe
    from .diagnose import landlock_abi, userns_problem

    bwrap = find_executable((policy.process.bwrap_path if policy is not None else None) or "bwrap")
    problem = userns_problem() if bwrap else None
    return Probe(bwrap, problem.cause if problem else "", problem.fix if problem else "",
                 landlock_abi(), WEAKER in KINDS)
