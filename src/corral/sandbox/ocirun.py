"""The launcher's part for OCI runtimes (runc, crun, runsc): write the bundle that
`backends/oci.py` renders, prepare the root view in corral's child, start the runtime in
corral's namespaces, tell a failed start from the command's own exit, and clean up.

Process layout for one run:

    corral ──fork──> child: cgroups, corral's view (protected paths, idmaps, /tmp overlay),
                     corral's user + network namespaces, a private mount namespace with "/"
                     bound read-only onto the bundle's rootfs ──exec──> runtime run ──> init ──> command

The reaper deletes the container (`RUNTIME delete --force`) if corral dies mid-run.
"""

from __future__ import annotations

import os
import sys

from .._which import find_executable
from ..errors import SetupError

INITS = ("catatonit", "tini")
BUNDLE_PREFIX = "corral-oci-"


def runtime_path(name: str) -> str | None:
    """The runtime's program: for gVisor, corral's own copy first (scripts/install.sh puts the
    newest runsc Debian offers there), then PATH."""
    if name == "gvisor":
        own = os.path.join(sys.prefix, "libexec", "corral", "runsc")
        if os.access(own, os.X_OK):
            return own
        return find_executable("runsc", os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    return find_executable(name, os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def init_path() -> str | None:
    for name in INITS:
        found = find_executable(name, "/usr/bin:/usr/libexec/podman:/usr/sbin:/bin")
        if found:
            return found
    return None


def append_regular_stdio() -> None:
    """runsc writes a regular file given as stdout/stderr at offsets of its own, over what the
    other stream wrote: in append mode every write lands at the end (left set: the caller's
    later writes then append too, which is where they would go)."""
    import fcntl
    import stat

    for fd in (1, 2):
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                flags = fcntl.fcntl(fd, fcntl.F_GETFL)
                if not flags & os.O_APPEND:
                    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_APPEND)
        except OSError:
            pass


def _openable(path: str) -> bool:
    """Can the launching user open `path` (a file to read, a directory to search)?"""
    try:
        return os.access(path, os.X_OK if os.path.isdir(path) else os.R_OK)
    except OSError:
        return False


def bundle_parent() -> str:
    """Where bundles go: a directory that corral's child sees as the host does (its /tmp is an
    overlay whose writes vanish: the runtime's pid file and state must reach the host, where
    the reaper may need them). /dev/shm, never visible to the command (its /dev is a tmpfs)."""
    for cand in ("/dev/shm", os.environ.get("XDG_RUNTIME_DIR") or ""):
        if cand and os.path.isdir(cand) and os.access(cand, os.W_OK | os.X_OK):
            return cand
    raise SetupError("the OCI backends need a writable /dev/shm (or XDG_RUNTIME_DIR) for the run's bundle",
                     "mount a tmpfs on /dev/shm, or set XDG_RUNTIME_DIR to a private writable directory")


class OciLaunch:
    """One run on an OCI runtime; `Run` calls prepare() on the host, child() in the forked
    child, outcome() after the runtime exited, and cleanup() at the end."""

    drops_uid = False  # the runtime needs its privileges (in corral's user namespace); config.json names the uid

    def __init__(self, run, backend, image: str | None = None):
        self.run = run
        self.backend = backend
        self.image = image
        self.dir = ""
        self.in_userns = os.geteuid() != 0
        self.tty = False  # set by Run.prepare: corral relays a pseudo-terminal
        self.container = f"corral-{run.plan.run_id or os.urandom(6).hex()}"

    def prepare(self) -> list[str]:
        from ..backends import oci

        name = self.backend.name
        exe = runtime_path(name)
        if exe is None:
            pkg = oci.RUNTIMES[name]
            raise SetupError(f"the {name} backend needs {pkg}, which is not installed",
                             f"install it: sudo apt-get install {pkg} (or choose --backend bwrap)")
        if self.image is not None and not os.path.isdir(self.image):
            raise SetupError(f"--image {self.image}: not a directory (the OCI backends take a root filesystem "
                             "directory)", "unpack the image into a directory, or use --backend podman for images")
        if name == "gvisor":
            append_regular_stdio()
        import tempfile

        self.dir = tempfile.mkdtemp(prefix=BUNDLE_PREFIX, dir=bundle_parent())
        os.makedirs(f"{self.dir}/rootfs")
        os.makedirs(f"{self.dir}/data")
        os.makedirs(f"{self.dir}/state", mode=0o700)
        skip = ()
        if name == "gvisor" and not self.run.launched_by_root:
            skip = tuple(m.dest for m in self.run.plan.mounts if m.op in ("dev-null", "tmpfs") and not _openable(m.dest))
        ns = self.run.namespaces.ns if self.run.namespaces is not None else None
        self.in_userns = not self.run.launched_by_root or (ns is not None and ns.user_fd >= 0)
        bundle = oci.Bundle(self.dir, name, self.run.launched_by_root, init_path(), self.image, os.uname().machine,
                            skip, self.in_userns, self.tty)
        config, files = oci.render(self.run.plan, bundle)
        for path, data, mode in files:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(path, mode)
        with open(f"{self.dir}/config.json", "wb") as fh:
            fh.write(oci.config_json(config))
        return [exe, *self.global_flags(), "run", "--bundle", self.dir, "--pid-file", f"{self.dir}/pid",
                *self.run_flags(), self.container]

    def global_flags(self) -> list[str]:
        flags = ["--root", f"{self.dir}/state"]
        if self.backend.name == "gvisor":
            # corral's namespace is the network (host stack inside it: gVisor's own netstack cannot
            # start in a prepared namespace on this kernel); corral's cgroup holds the limits;
            # --oci-seccomp: without it runsc ignores config.json's seccomp silently.
            flags += ["--rootless", "--network=host", "--ignore-cgroups", "--oci-seccomp"]
            if self.run.plan.seccomp.allow_unix_sockets:
                flags.append("--host-uds=open")
        elif self.backend.name == "crun":
            flags.append("--cgroup-manager=disabled")
        elif self.in_userns:
            flags.append("--rootless=true")  # in corral's user namespace: cgroups are corral's business
        return flags

    def run_flags(self) -> list[str]:
        return ["--no-new-keyring"] if self.backend.name in ("runc", "crun") else []

    def delete_argv(self) -> list[str]:
        exe = runtime_path(self.backend.name) or "true"
        return [exe, *self.global_flags(), "delete", "--force", self.container]

    def forward_signal(self, pid: int, signum: int) -> None:
        """runc and crun forward signals to the container's init; `runsc run` does not, so gVisor's
        go through `runsc kill`."""
        if self.backend.name != "gvisor":
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
            return
        import subprocess

        exe = runtime_path("gvisor") or "runsc"
        try:
            subprocess.Popen([exe, *self.global_flags(), "kill", self.container, str(signum)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            os.kill(pid, signum)

    # -- in the forked child, after corral's namespaces and view ---------------------------------------
    def child(self) -> None:
        from . import mountprep

        mountprep.private_mount_ns()  # owned by corral's user namespace: the runtime may mount in it
        if self.backend.name == "crun":
            # crun 1.8 refuses hybrid cgroup layouts; corral's cgroup (joined already) holds the limits.
            mountprep.hide_cgroups()
        if self.image is None:
            mountprep.root_view(f"{self.dir}/rootfs")

    # -- after the runtime exited ----------------------------------------------------------------------
    def outcome(self, status: int) -> str:
        """"ran" when the container started (the status is the command's), else "setup"."""
        return "ran" if os.path.exists(f"{self.dir}/pid") else "setup"

    def failure(self, status: int) -> SetupError:
        return SetupError(f"the {self.backend.name} runtime could not start the sandbox (exit {status}; its "
                          "message is above)", f"run `corral doctor --backend {self.backend.name}`, or choose "
                          "--backend bwrap")

    def reaper_lines(self) -> list[str]:
        import json

        return [f"exec {json.dumps(self.delete_argv())}\n", f"rmtree {self.dir}\n"]

    def cleanup(self) -> None:
        if self.dir:
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""
