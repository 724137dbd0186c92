"""The host view a root launch prepares before dropping to the sandbox uid.

In the launcher's forked child, still root in the initial user namespace: a private mount
namespace in which writable areas owned by someone else are re-attached as idmapped mounts
(`identity.IdMap`) and directories the sandbox uid cannot search are replaced by skeletons
(`identity.Skeleton`). bwrap, started afterwards as the sandbox uid, builds the sandbox from
this view. The idmapping itself is a user namespace made by a short-lived helper (`userns()`).

Kernel interfaces (reached through ctypes): open_tree(2), mount_setattr(2), move_mount(2).
Their syscall numbers are the same on every architecture (the unified table, >= 424).
"""

from __future__ import annotations

import os

from .identity import IdMap, Skeleton, TmpOverlay, swap_map
from .libc import write_file as _write

SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, 0o2000000
AT_EMPTY_PATH, AT_RECURSIVE, AT_NO_AUTOMOUNT = 0x1000, 0x8000, 0x800
AT_SYMLINK_NOFOLLOW = 0x100
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x00100000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 0x4000, 1 << 18
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000


class PrepError(OSError):
    """The view could not be prepared: `what` says which step, for the refusal message."""

    def __init__(self, errno_: int, what: str):
        super().__init__(errno_, f"{what}: {os.strerror(errno_)}")
        self.what = what


_started: dict = {}  # (disk, shown) -> (pid, r, w2): helpers forked ahead of need (prefetch)
_exited: list[int] = []  # helpers told to exit, reaped by reap()


def prefetch(disk: tuple[int, int], shown: tuple[int, int]) -> None:
    """Fork the helper for `userns(disk, shown)` now, so that its fork and unshare overlap with
    plan building (the CLI calls this as soon as it knows who the command runs as)."""
    if (disk, shown) in _started:
        return
    from .libc import load_libc

    libc = load_libc()
    r, w = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - helper
        try:
            os.close(r)
            os.close(w2)
            ok = libc.unshare(CLONE_NEWUSER) == 0
            os.write(w, b"U" if ok else b"E")
            os.read(r2, 1)  # hold the namespace until the parent has opened it
        finally:
            os._exit(0)
    os.close(w)
    os.close(r2)
    _started[(disk, shown)] = (pid, r, w2)


def userns(disk: tuple[int, int], shown: tuple[int, int]) -> int:
    """A descriptor of a new user namespace mapping `disk` <-> `shown` (uid and gid), for
    mount_setattr's MOUNT_ATTR_IDMAP. Root only. One fork: the helper unshares and waits."""
    prefetch(disk, shown)
    pid, r, w2 = _started.pop((disk, shown))
    try:
        if os.read(r, 1) != b"U":
            raise PrepError(1, "creating the user namespace for an idmapped mount")
        _write(f"/proc/{pid}/uid_map", swap_map(disk[0], shown[0]))
        _write(f"/proc/{pid}/gid_map", swap_map(disk[1], shown[1]))
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(r)
        os.close(w2)  # the helper exits; reaped later, off the start path
        _exited.append(pid)


def reap() -> None:
    """Collect the helpers (and drop unused prefetched ones)."""
    for pid, r, w2 in _started.values():
        os.close(r)
        os.close(w2)
        _exited.append(pid)
    _started.clear()
    while _exited:
        try:
            os.waitpid(_exited.pop(), 0)
        except ChildProcessError:
            pass


def prepare(idmaps: tuple[IdMap, ...], skeletons: tuple[Skeleton, ...], userns_fds: dict,
            overlay_layers: tuple[IdMap, ...] = (), upper: str = "", work: str = "", tmp=None,
            pre=()) -> None:
    """In the forked child, before setns/setuid: a private mount namespace with the view.
    `userns_fds`: (disk, shown) -> descriptor from `userns()`. `overlay_layers`: (lower,
    session directory): idmapped, then the overlay is mounted on the lower directory with
    `upper` and `work` from the session directory. Raises PrepError."""
    import ctypes

    from .libc import load_libc

    libc = load_libc()

    def check(ret: int, what: str) -> int:
        if ret < 0:
            raise PrepError(ctypes.get_errno(), what)
        return ret

    check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making the mount tree private")
    _views(libc, check, idmaps, skeletons, userns_fds, overlay_layers, upper, work)
    if tmp is not None:
        overlay_tmp(tmp, userxattr=False, libc=libc)
    premount(pre, libc)


def _views(libc, check, idmaps, skeletons, userns_fds, overlay_layers, upper, work) -> None:
    import ctypes

    def idmapped_clone(m: IdMap) -> int:
        fd = check(libc.syscall(SYS_OPEN_TREE, -100, m.path.encode(),
                                OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_NO_AUTOMOUNT),
                   f"open_tree({m.path})")
        attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_IDMAP, 0, 0, userns_fds[(m.disk, m.shown)])
        check(libc.syscall(SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH | AT_RECURSIVE, attr, 32),
              f"idmapping {m.path} (mount_setattr MOUNT_ATTR_IDMAP)")
        return fd

    if overlay_layers:
        # Layers first, while every path is visible; the overlay then sits on the lower one.
        for m in overlay_layers:
            fd = idmapped_clone(m)
            check(libc.syscall(SYS_MOVE_MOUNT, fd, b"", -100, m.path.encode(), MOVE_MOUNT_F_EMPTY_PATH),
                  f"attaching {m.path} (move_mount)")
            os.close(fd)
        lower = overlay_layers[0].path
        options = f"lowerdir={lower},upperdir={upper},workdir={work},userxattr".encode()
        check(libc.mount(b"overlay", lower.encode(), b"overlay", 0, options), f"mounting the overlay on {lower}")
    # Clone every tree to re-attach while the host paths are still visible (skeletons hide them).
    attach: list[tuple[str, int]] = []
    idmapped = {m.path: m for m in idmaps}
    kept = {p for s in skeletons for p, _ in s.keep}
    for path in sorted(set(idmapped) | kept, key=lambda p: (p.count("/"), p)):
        m = idmapped.get(path)
        if m is not None:
            fd = idmapped_clone(m)
        else:
            fd = check(libc.syscall(SYS_OPEN_TREE, -100, path.encode(),
                                    OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_NO_AUTOMOUNT),
                       f"open_tree({path})")
        attach.append((path, fd))
    for sk in skeletons:
        check(libc.mount(b"tmpfs", sk.top.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0755,size=64k"),
              f"mounting the skeleton over {sk.top}")
        for path, kind in sk.keep:
            parent = os.path.dirname(path)
            os.makedirs(parent, mode=0o755, exist_ok=True)
            if kind == "dir":
                os.makedirs(path, mode=0o755, exist_ok=True)
            elif not os.path.lexists(path):
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    for path, fd in attach:
        check(libc.syscall(SYS_MOVE_MOUNT, fd, b"", -100, path.encode(), MOVE_MOUNT_F_EMPTY_PATH),
              f"attaching {path} (move_mount)")
        os.close(fd)


def private_mount_ns() -> None:
    """A private mount namespace for a caller in a user namespace it owns (corral's)."""
    import ctypes

    from .libc import load_libc

    libc = load_libc()
    if libc.unshare(CLONE_NEWNS) < 0 or libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) < 0:
        raise PrepError(ctypes.get_errno(), "a private mount namespace")


MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4


def premount(pre, libc=None) -> None:
    """Bind each (path, read_only) onto itself, in order (parents first): open_tree clone,
    mount_setattr, move_mount. What bwrap does per `--ro-bind P P`, minus its parse of the
    whole mount table for every mount."""
    if not pre:
        return
    import ctypes

    if libc is None:
        from .libc import load_libc

        libc = load_libc()
    for path, read_only in pre:
        raw = path.encode()
        # AT_SYMLINK_NOFOLLOW: a protected path that is a symlink (`.bashrc -> ~/.ssh/id_rsa`) is
        # pinned as the symlink; following it bound the key's content in its place, past its denial.
        fd = libc.syscall(SYS_OPEN_TREE, -100, raw, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_NO_AUTOMOUNT
                          | AT_SYMLINK_NOFOLLOW)
        if fd < 0:
            raise PrepError(ctypes.get_errno(), f"open_tree({path})")
        try:
            flags = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (MOUNT_ATTR_RDONLY if read_only else 0)
            attr = (ctypes.c_uint64 * 4)(flags, 0, 0, 0)
            if libc.syscall(SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH | AT_RECURSIVE, attr, 32) < 0:
                raise PrepError(ctypes.get_errno(), f"making {path} read-only (mount_setattr)")
            if libc.syscall(SYS_MOVE_MOUNT, fd, b"", -100, raw, MOVE_MOUNT_F_EMPTY_PATH) < 0:
                raise PrepError(ctypes.get_errno(), f"binding {path} (move_mount)")
        finally:
            os.close(fd)


def overlay_tmp(tmp: TmpOverlay, userxattr: bool, libc=None) -> None:
    """/tmp as an overlay: the host's /tmp below, a tmpfs above (on `tmp.upper`, which the
    overlay then hides), the `keep` paths re-attached from the host on top. The caller is in a
    private mount namespace already."""
    import ctypes

    if libc is None:
        from .libc import load_libc

        libc = load_libc()

    def check(ret: int, what: str) -> int:
        if ret < 0:
            raise PrepError(ctypes.get_errno(), what)
        return ret

    kept = [(p, check(libc.syscall(SYS_OPEN_TREE, -100, p.encode(),
                                   OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_NO_AUTOMOUNT),
                      f"open_tree({p})")) for p in tmp.keep]
    check(libc.mount(b"tmpfs", tmp.upper.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0700"),
          f"mounting the tmpfs for /tmp's writes on {tmp.upper}")
    os.mkdir(f"{tmp.upper}/upper", 0o1777)
    os.chmod(f"{tmp.upper}/upper", 0o1777)
    os.mkdir(f"{tmp.upper}/work", 0o700)
    options = f"lowerdir={tmp.path},upperdir={tmp.upper}/upper,workdir={tmp.upper}/work"
    check(libc.mount(b"overlay", tmp.path.encode(), b"overlay", MS_NOSUID | MS_NODEV,
                     (options + (",userxattr" if userxattr else "")).encode()),
          f"mounting the overlay on {tmp.path}")
    for path, fd in kept:
        check(libc.syscall(SYS_MOVE_MOUNT, fd, b"", -100, path.encode(), MOVE_MOUNT_F_EMPTY_PATH),
              f"attaching {path} over the /tmp overlay (move_mount)")
        os.close(fd)


def self_userns(uid: int, gid: int) -> None:
    """An unprivileged child's own user + mount namespace, itself mapped to 0 (bwrap is then
    told the real ids), so that it may mount the /tmp overlay before bwrap starts."""
    import ctypes

    from .libc import load_libc, write_file

    if load_libc().unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise PrepError(err, "unshare(CLONE_NEWUSER|CLONE_NEWNS) for the /tmp overlay")
    write_file("/proc/self/setgroups", "deny")
    write_file("/proc/self/uid_map", f"0 {uid} 1\n")
    write_file("/proc/self/gid_map", f"0 {gid} 1\n")
    if load_libc().mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise PrepError(ctypes.get_errno(), "making the mount tree private")



def root_view(target: str, libc=None) -> None:
    """The whole current view ("/", with corral's preparation) bound recursively onto `target`,
    every mount read-only, nosuid and nodev: an OCI runtime's root filesystem without an image.
    The caller is in a private mount namespace that its user namespace owns."""
    import ctypes

    if libc is None:
        from .libc import load_libc

        libc = load_libc()
    fd = libc.syscall(SYS_OPEN_TREE, -100, b"/", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_NO_AUTOMOUNT)
    if fd < 0:
        raise PrepError(ctypes.get_errno(), "open_tree(/) for the root view")
    try:
        attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, 0, 0)
        if libc.syscall(SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH | AT_RECURSIVE, attr, 32) < 0:
            raise PrepError(ctypes.get_errno(), "making the root view read-only (mount_setattr)")
        if libc.syscall(SYS_MOVE_MOUNT, fd, b"", -100, target.encode(), MOVE_MOUNT_F_EMPTY_PATH) < 0:
            raise PrepError(ctypes.get_errno(), f"attaching the root view on {target} (move_mount)")
    finally:
        os.close(fd)


def hide_cgroups(libc=None) -> None:
    """An empty tmpfs over /sys/fs/cgroup in the caller's private mount namespace: crun 1.8
    refuses hybrid (v1 + v2) layouts even with cgroups disabled."""
    import ctypes

    if libc is None:
        from .libc import load_libc

        libc = load_libc()
    if os.path.isdir("/sys/fs/cgroup") and libc.mount(b"tmpfs", b"/sys/fs/cgroup", b"tmpfs",
                                                      MS_NOSUID | MS_NODEV, b"mode=0755") < 0:
        raise PrepError(ctypes.get_errno(), "hiding /sys/fs/cgroup from crun")
