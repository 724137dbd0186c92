"""The C library and the few system calls Python 3.11 lacks, for the process-side modules.

Kept apart from `netns` (which needs `socket`) so that a run without network pays for neither
`socket` nor `ctypes`: `load_libc()` imports ctypes only when it is first called.
"""

from __future__ import annotations

import os

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000

_LIBC = None


def load_libc():
    """libc through ctypes (errno kept). Call it before fork: children then only use it."""
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def setns(fd: int, flag: int) -> None:
    import ctypes

    if load_libc().setns(fd, flag) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def enter(ns, mount: bool = True) -> None:
    """In a forked child: join a prepared namespace (`netns.Namespace`): user first, since it
    grants the right to join the others. `mount=False`: the mount namespace was joined
    already (see launch.Run.child_enter)."""
    for fd, flag in ((ns.user_fd, CLONE_NEWUSER), (ns.net_fd, CLONE_NEWNET), (ns.mnt_fd if mount else -1, CLONE_NEWNS)):
        if fd >= 0:
            setns(fd, flag)


def set_name(name: str) -> None:
    """What `ps -o comm` and /proc/PID/comm show, so the processes of a run are told apart."""
    try:
        with open("/proc/self/comm", "w") as fh:
            fh.write(name)
    except OSError:
        pass


def write_file(path: str, text: str) -> None:
    """One write to a /proc or /sys file (id maps, cgroup files): no buffering, no truncation."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def kill_and_reap(pid: int, kill: bool = True) -> None:
    """SIGKILL a helper of ours (with `kill`; else it is expected to exit) and collect it."""
    if kill:
        try:
            os.kill(pid, 9)  # SIGKILL
        except ProcessLookupError:
            pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def close_all_but(keep: set[int]) -> None:
    top = max(keep) + 1
    last = 0
    for fd in sorted(keep) + [top]:
        if fd > last:
            os.closerange(last, fd)
        last = fd + 1
    try:
        os.closerange(top, os.sysconf("SC_OPEN_MAX"))
    except (ValueError, OSError):
        os.closerange(top, 65536)
