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
    """Return the reason new user namespaces are refused here, if they are: the exact cause
    (the sysctl, the security module, the seccomp filter, the nesting limit) and its fix."""
    uid_map = _read("/proc/self/uid_map")
    nested = uid_map is not None and uid_map.split() != ["0", "0", "4294967295"]
    root = os.geteuid() == 0 and not nested
    if _read("/proc/sys/user/max_user_namespaces") == "0":
        if nested:
            return SetupError(
                "user namespaces are disabled in the user namespace corral was started in "
                "(user.max_user_namespaces = 0 there; uid_map " + " ".join((uid_map or "").split()) + ": "
                "corral is not host root, whatever its uid)",
                "raise the limit in the namespace that set it (echo 15000 > /proc/sys/user/max_user_namespaces "
                "as its owner), or start corral outside that user namespace")
        return SetupError(
            "user namespaces are disabled (user.max_user_namespaces = 0)",
            "sudo sysctl -w user.max_user_namespaces=15000 (persist it in /etc/sysctl.d/)",
        )
    if not root and _read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        return SetupError(
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)",
            "sudo sysctl -w kernel.unprivileged_userns_clone=1 (persist it in /etc/sysctl.d/)",
        )
    if not root and _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return SetupError(
            "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)",
            "an AppArmor profile granting 'userns' to bwrap and to corral's python: " + apparmor_fix()
            + "; or sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
        )
    err = _unshare_user_errno()
    if err == 0:
        return None
    import errno as E

    if err == E.ENOSPC:
        return SetupError(
            "the user namespace limit is reached (user.max_user_namespaces of this or a parent user namespace)",
            "raise it: sudo sysctl -w user.max_user_namespaces=15000, or in the namespace that set it")
    if seccomp_filtered():
        where = f"corral runs in {container()}" if container() else "set by a parent process or the container"
        return SetupError(
            f"a seccomp filter on corral's process refuses CLONE_NEWUSER (Seccomp: 2 in /proc/self/status, "
            f"{where}; Docker's and podman's default profiles do this)",
            "start the container with --security-opt seccomp=unconfined (or a profile allowing unshare and "
            "clone with CLONE_NEWUSER), or run corral on the host")
    return SetupError(
        f"creating a user namespace is refused ({os.strerror(err)}; likely a security module such as "
        f"SELinux or AppArmor{', inside ' + container() if container() else ''})",
        "run corral on the host, or allow user namespaces for it (`corral doctor` lists the checks)",
    )


def root_host_uid() -> int | None:
    """The host uid that uid 0 of corral's user namespace is (None: not mapped). 0 in the
    initial namespace; under `unshare -r` run by a user, that user's uid."""
    uid_map = _read("/proc/self/uid_map") or ""
    for row in uid_map.splitlines():
        parts = row.split()
        if len(parts) == 3 and parts[0] == "0":
            return int(parts[1])
    return None


def nested_root_problem(sandbox_uid: int = 65533, userns: bool = True) -> SetupError | None:
    """corral launched as uid 0 of a user namespace (`unshare -r`, `podman unshare`) that does
    not map the sandbox uid: its root launch path (the command as `sandbox_uid`, idmapped
    views) cannot work there; say why instead of failing later on a placeholder or a mount.
    Cheap: reads /proc/self/uid_map (and probes user namespaces only when it refuses)."""
    uid_map = _read("/proc/self/uid_map")
    if uid_map is None or uid_map.split() == ["0", "0", "4294967295"]:
        return None
    rows = [line.split() for line in uid_map.splitlines()]
    if any(len(r) == 3 and int(r[0]) <= sandbox_uid < int(r[0]) + int(r[2]) for r in rows):
        return None
    problem = userns_problem() if userns else None  # `userns`: the wall needs new user namespaces
    if problem is not None:
        return problem
    shown = "; ".join(" ".join(r) for r in rows)
    return SetupError(
        f"corral runs as uid 0 of a user namespace (uid_map {shown}), not as host root: it cannot run the "
        f"command as its sandbox uid {sandbox_uid}, which that namespace does not map",
        "start corral as your own user outside that namespace (not under unshare -r or podman unshare), "
        f"or map a range of uids into it (newuidmap) that includes {sandbox_uid}")


def apparmor_fix() -> str:
    """The commands that install an AppArmor profile granting `userns` to bwrap and to the
    python running corral (Ubuntu >= 23.10; docs/doctor.md explains it)."""
    import sys

    from .._which import find_executable

    progs = [p for p in (find_executable("bwrap"), os.path.realpath(sys.executable)) if p]
    body = " ".join(f"profile corral-{i} {p} flags=(unconfined) {{ userns, }}" for i, p in enumerate(progs))
    return (f"echo 'abi <abi/4.0>, include <tunables/global> {body}' | sudo tee /etc/apparmor.d/corral && "
            "sudo apparmor_parser -r /etc/apparmor.d/corral")


def seccomp_filtered() -> bool:
    status = _read("/proc/self/status") or ""
    return any(line.split() == ["Seccomp:", "2"] for line in status.splitlines())


def container() -> str:
    """The container engine corral runs under, as far as it shows ("" : none seen)."""
    if os.path.exists("/.dockerenv"):
        return "a Docker container"
    if os.path.exists("/run/.containerenv"):
        return "a podman container"
    env = _read("/proc/1/environ") or ""
    if "container=" in env:
        return "a container"
    return ""


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0: not available). One syscall."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION): 444 on every architecture
    abi = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return abi if abi > 0 else 0


def in_child(probe) -> str:
    """Run `probe()` in a forked child (a probe may change its process for good: unshare,
    mounts); "" when it succeeded, else its one-line reason (the exception's text)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - probe child
        try:
            os.close(r)
            try:
                probe()
                os._exit(0)
            except BaseException as exc:  # noqa: BLE001 - reported to the parent as a line
                os.write(w, str(exc).encode(errors="replace")[:300] or b"failed")
                os._exit(1)
        finally:
            os._exit(2)
    os.close(w)
    why = b""
    while chunk := os.read(r, 512):
        why += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return ""
    return why.decode(errors="replace") or f"the probe failed (status {status})"


def _unshare_user_errno() -> int:
    """0 when a forked child can unshare a new user namespace, else the errno it got."""

    def probe():
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x10000000) != 0:
            raise RuntimeError(str(ctypes.get_errno() or 1))  # the reason in_child reports: the errno

    why = in_child(probe)
    try:
        return int(why) if why else 0
    except ValueError:
        return 1


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
