"""What a backend's report and renderer need to know about the host, as a plain value
(gathered by `sandbox/hostfacts.py`, the only part that looks at the machine)."""

from __future__ import annotations

from .._values import frozen


@frozen
class Facts:
    launched_by_root: bool
    runtime: str | None = None  # the runtime's or engine's program (None: not installed)
    runtime_version: str = ""
    init: str | None = None  # a minimal init for pid 1 (catatonit, tini), forwarding signals
    engine_rootless: bool = False  # podman/docker: the engine runs rootless
    engine_reachable: bool = True  # docker: the daemon answers
    cgroup_version: int = 0  # 1, 2 (0: unknown)
    tty: bool | None = None  # does this run relay a pseudo-terminal? (None: not known, as for --dry-run)
    landlock_abi: int = 0  # landlock: the kernel's Landlock ABI (0: none)
    root_is_host_root: bool = True  # uid 0 here is the host's root (False: uid 0 of a user's own user namespace)
