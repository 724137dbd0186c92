"""Finding programs on PATH (bwrap, OCI runtimes, container engines)."""

from __future__ import annotations

import os


def find_executable(name: str, path: str | None = None) -> str | None:
    if "/" in name:
        return name if os.access(name, os.X_OK) else None
    for d in (path if path is not None else os.environ.get("PATH", "/usr/bin:/bin")).split(":"):
        cand = os.path.join(d or ".", name)
        if os.access(cand, os.X_OK) and not os.path.isdir(cand):
            return cand
    return None
