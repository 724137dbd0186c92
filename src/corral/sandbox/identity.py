"""Who the command runs as, and how files keep their owners: pure decisions.

Launched by root, the command never runs as host uid 0 (it would own every root file it can
see). It runs as an unprivileged uid instead:

- `process.run_as` / `--as-user USER` when given (the files it writes belong to that user);
- else the owner of the working directory when that is not root (`sudo corral ...` in a
  user's project);
- else a dedicated uid (`SANDBOX_USER` if the system has it, else `SANDBOX_ID`).

In the last two cases the writable areas owned by someone else (a root-owned project) are
shown to the command through kernel idmapped mounts that swap the area's owner with the
sandbox uid: the command sees its own files and may edit them, and what it creates lands on
disk owned by the area's owner, as the launcher expects. `--as-user root` (`run_as = "root"`)
keeps the old behaviour by name: uid 0 without capabilities.

Nothing here touches the host; `sandbox.mountprep` applies the result.
"""

from __future__ import annotations

from .._values import frozen

SANDBOX_USER = "corral-sandbox"
SANDBOX_ID = 65533  # below nobody (65534); used when the system has no SANDBOX_USER
ID_MAX = 4294967295  # 2^32 - 1 ids: 0 .. 4294967294 (-1 is never a valid id)
ROOT = (0, 0)  # run_as = "root": the opt-in to the old behaviour


@frozen
class Identity:
    """The host uid/gid the command runs as, and why (for --dry-run and messages).
    `idmapped`: writable areas owned by others are shown through idmapped mounts."""

    uid: int
    gid: int
    why: str
    idmapped: bool = False


@frozen
class IdMap:
    """An idmapped view of `path`: on disk `disk` (uid, gid), seen as `shown` by the command."""

    path: str
    disk: tuple[int, int]
    shown: tuple[int, int]


@frozen
class Skeleton:
    """`top` cannot be searched by the sandbox uid (e.g. /root, 0700): it is shown as an empty
    tmpfs holding only `keep` ((path, kind) pairs re-attached from the host), so the paths the
    run needs stay reachable while everything else of `top` stays out of sight."""

    top: str
    keep: tuple[tuple[str, str], ...]


@frozen
class TmpOverlay:
    """/tmp writable inside without touching the host's: an overlay whose lower layer is the
    host's `path` (readable where the policy allows) and whose upper layer is a tmpfs mounted on
    `upper` (the run's TMPDIR placeholder, hidden once the overlay is on top), so writes vanish
    with the run. `keep`: paths under `path` that must stay the host's (writable areas, the
    session's overlay, skeletons), re-attached on top of the overlay."""

    path: str
    upper: str
    keep: tuple[str, ...]


def choose(run_as, launcher_uid: int, cwd_owner: tuple[int, int], sandbox_id: tuple[int, int]) -> Identity | None:
    """None: run as the launcher (an unprivileged launcher, or root's explicit opt-in)."""
    if launcher_uid != 0:
        return None
    if run_as == ROOT:
        return None
    if run_as:
        return Identity(run_as[0], run_as[1], "--as-user / process.run_as")
    if cwd_owner[0] != 0:
        return Identity(cwd_owner[0], cwd_owner[1], "the owner of the working directory", idmapped=True)
    return Identity(sandbox_id[0], sandbox_id[1], "corral's dedicated sandbox uid (launched by root)", idmapped=True)


def overlay_by_launcher(run_as, launcher_uid: int, cwd_owner: tuple[int, int], sandbox_id: tuple[int, int]) -> bool:
    """Must the launcher mount an overlay session itself, with idmapped layers? (overlayfs
    cannot be idmapped as a whole, only its layers; corral's namespace helper mounts it in a
    user namespace, where layers cannot be idmapped.) True when the command runs as a uid that
    does not own the workspace."""
    ident = choose(run_as, launcher_uid, cwd_owner, sandbox_id)
    return ident is not None and ident.idmapped and cwd_owner[0] != ident.uid


def swap_map(disk: int, shown: int) -> str:
    """A uid_map/gid_map text that maps every id onto itself except `disk` <-> `shown`.

    For an idmapped mount, an on-disk id X (the map's inside id) is seen as the outside id it
    maps to; so the owner `disk` appears as `shown`, and files created by `shown` are stored
    as `disk`. Every other id keeps its meaning (other users' files stay theirs)."""
    if disk == shown:
        return f"0 0 {ID_MAX}\n"
    lines = []
    a, b = sorted((disk, shown))
    # ranges in inside-id order: [0, a), a, (a, b), b, (b, max]
    if a > 0:
        lines.append((0, 0, a))
    lines.append((a, b, 1))
    if b - a - 1 > 0:
        lines.append((a + 1, a + 1, b - a - 1))
    lines.append((b, a, 1))
    if ID_MAX - b - 1 > 0:
        lines.append((b + 1, b + 1, ID_MAX - b - 1))
    return "".join(f"{i} {o} {n}\n" for i, o, n in lines)


def passwd_entry(uid: int, gid: int) -> tuple[str, str]:
    """Lines naming the dedicated sandbox uid in /etc/passwd and /etc/group (shown inside only),
    so that `whoami`, `id -un` and programs that look up their user do not fail."""
    return (f"{SANDBOX_USER}:x:{uid}:{gid}:corral sandbox:/nonexistent:/usr/sbin/nologin\n",
            f"{SANDBOX_USER}:x:{gid}:\n")
