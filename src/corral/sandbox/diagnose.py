"""Why could bubblewrap not set up the sandbox? Detect the cause and name the fix."""

from __future__ import annotations

import os

from ..errors import SetupError


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def userns_problem() -> SetupError | None:
    """Return the reason unprivileged user namespaces are refused here, if they are."""
    if _read("/proc/sys/user/max_user_namespaces") == "0":
        return SetupError(
            "user namespaces are disabled (user.max_user_namespaces = 0)",
            "sudo sysctl -w user.max_user_namespaces=15000 (persist it in /etc/sysctl.d/)",
        )
    if os.geteuid() != 0 and _read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        return SetupError(
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)",
            "sudo sysctl -w kernel.unprivileged_userns_clone=1",
        )
    if os.geteuid() != 0 and _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return SetupError(
            "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)",
            "allow bwrap with an AppArmor profile granting 'userns' (see docs/troubleshooting.md), "
            "or sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
        )
    if not _can_unshare_user():
        return SetupError(
            "creating a user namespace is refused (likely a container's seccomp profile or a "
            "security module)",
            "run corral on the host, or start the container with a seccomp profile that allows "
            "unshare/clone with CLONE_NEWUSER (e.g. podman --security-opt seccomp=unconfined)",
        )
    return None


def _can_unshare_user() -> bool:
    import ctypes

    pid = os.fork()
    if pid == 0:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            os._exit(0 if libc.unshare(0x10000000) == 0 else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# -- what bwrap's exit means ----------------------------------------------------------------------
# bwrap reports `child-pid` before it mounts anything and `exit-code` only once the command ran;
# a command it could not exec (`bwrap: execvp X: No such file or directory`) and a mount that
# failed both end with status 1 and no exit code. What tells them apart is whether bwrap got past
# its mounts: it reads the seccomp program (our pipe) only after the last mount, right before
# it starts the command, so an emptied pipe means the sandbox was built.

RAN, SETUP_FAILED, START_FAILED = "ran", "setup", "start"


def classify_exit(status_json: bytes, status: int, setup_done: bool | None) -> str:
    """RAN (the status is the command's), SETUP_FAILED (bwrap could not build the sandbox) or
    START_FAILED (the sandbox was built, the command could not be executed). Pure.
    `setup_done`: whether bwrap read the seccomp pipe; None when unknown."""
    if b'"exit-code"' in status_json:
        return RAN
    if b'"child-pid"' not in status_json:
        return SETUP_FAILED
    if status != 1:
        return RAN  # killed by a signal (128+N), or a status the command itself set
    return START_FAILED if setup_done else SETUP_FAILED


def _covering(path: str, mounts) -> object | None:
    """The last mount that hides `path` inside (an empty tmpfs or /dev/null over it)."""
    hit = None
    for m in mounts:
        if m.op in ("tmpfs", "dev-null") and (path == m.dest or path.startswith(m.dest.rstrip("/") + "/")):
            hit = m
        elif m.op in ("bind", "ro-bind") and hit is not None and (
                path == m.dest or path.startswith(m.dest.rstrip("/") + "/")):
            hit = None  # re-opened below the hiding mount
    return hit


def start_failure(name: str, path_var: str, cwd: str, mounts=(), stat=os.stat) -> tuple[int, str]:
    """The exit status and the one line for a command bwrap could not execute, as shells say
    it: 127 `command not found` (or `no such file or directory` for a path), 126 when it
    exists but cannot be executed. Looked up on the host along the sandbox's PATH, minus what
    the plan hides (`mounts`); `stat` is injectable for tests."""
    import stat as st

    from ..display import shown

    label = shown(name, 200)
    if not name:
        return 127, "corral: '': command not found"
    if "/" in name:
        candidates = [name if name.startswith("/") else os.path.normpath(os.path.join(cwd, name))]
    else:
        candidates = [os.path.join(d if d.startswith("/") else os.path.join(cwd, d or "."), name)
                      for d in (path_var or "/bin:/usr/bin").split(":")]
    hidden = None
    blocked = None
    for cand in candidates:
        try:
            info = stat(cand)
        except OSError:
            continue
        cover = _covering(cand, mounts)
        if cover is not None:
            hidden = hidden or (cand, cover)
            continue
        if st.S_ISDIR(info.st_mode):
            blocked = blocked or (cand, "is a directory")
            continue
        if not info.st_mode & 0o111:
            blocked = blocked or (cand, "permission denied (not executable)")
            continue
        return 126, (f"corral: {label}: cannot be executed in the sandbox (bubblewrap's message is above; "
                     f"`corral run --dry-run` shows what the sandbox hides)")
    if blocked is not None:
        return 126, f"corral: {label}: {blocked[1]}"
    missing = "no such file or directory" if "/" in name else "command not found"
    if hidden is not None:
        cand, cover = hidden
        why = f": {cover.why}" if cover.why else ""
        return 127, (f"corral: {label}: {missing} in the sandbox ({shown(cand, 200)} is hidden by the "
                     f"policy{shown(why, 120)})")
    return 127, f"corral: {label}: {missing}"


def diagnose_failure(plan, status: int) -> SetupError:
    problem = userns_problem()
    if problem is not None:
        return problem
    return SetupError(
        f"bubblewrap could not set up the sandbox (exit status {status}); its message is above",
        "run `corral doctor`, or `corral run --dry-run ...` to see the exact bwrap command",
    )
