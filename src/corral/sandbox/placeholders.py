"""Placeholders: empty files and directories corral creates on the host so that a run can
bind something read-only over a protected name that does not exist yet; shared by
concurrent runs under a per-directory lock, and removed after the last one."""

from __future__ import annotations

import os

from .._values import frozen


@frozen
class Placeholder:
    """An empty file or directory created on the host for the run and removed after it."""

    path: str
    kind: str  # "file" | "dir"


def host_uid() -> int:
    """The launcher's uid on the host: under `unshare -r` uid 0 is the user who made the
    namespace (whose lock directory it can use; the real root's it cannot)."""
    uid = os.geteuid()
    try:
        with open("/proc/self/uid_map") as fh:
            for row in fh:
                inside, outside, count = (int(x) for x in row.split())
                if inside <= uid < inside + count:
                    return outside + uid - inside
    except (OSError, ValueError):
        pass
    return uid


def lock_path(directory: str, uid: int | None = None) -> str:
    """Where runs with placeholders in `directory` take their lock (per launching user)."""
    import zlib

    uid = host_uid() if uid is None else uid
    data = directory.encode("utf-8", "surrogateescape")
    # crc32 + adler32 + length: a collision only makes two runs share a lock (more cautious)
    return f"/tmp/.corral-placeholders-{uid}/{zlib.crc32(data):08x}{zlib.adler32(data):08x}{len(data):x}"


def in_use(path: str) -> bool:
    """True while `path` is a placeholder some running sandbox holds (runs share them)."""
    if not os.path.exists(lock_path(os.path.dirname(path))):
        return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    kind = "dir" if (st.st_mode & 0o170000) == 0o040000 else "file"
    return _looks_like_placeholder(Placeholder(path, kind), st)


def _looks_like_placeholder(ph: Placeholder, st) -> bool:
    """Only ever remove what corral made: an empty read-only file or directory."""
    import stat

    if ph.kind == "dir":
        if not stat.S_ISDIR(st.st_mode):
            return False
        try:
            return not os.listdir(ph.path)
        except OSError:
            return False
    return stat.S_ISREG(st.st_mode) and st.st_size == 0
