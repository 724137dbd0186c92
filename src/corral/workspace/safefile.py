"""Reading a small file that a sandbox may have written: never through a symlink, never a FIFO
or device (no blocking open), never a file with a second name (a hard link to a secret must not
be read under an innocent one), never more than `limit` bytes."""

from __future__ import annotations

import os

LIMIT = 1 << 20


def read_single(path: str, limit: int = LIMIT) -> str | None:
    """The UTF-8 text of regular file `path` with one name only and at most `limit` bytes, or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170000) != 0o100000 or st.st_nlink != 1 or st.st_size > limit:
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(limit + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8") if len(data) <= limit else None
    except UnicodeDecodeError:
        return None
