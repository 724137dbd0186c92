"""Overlay sessions: where a run's writes wait for review.

A session is a directory `<root>/<name>/` (root: `$XDG_STATE_HOME/corral/sessions`, default
`~/.local/state/corral/sessions`) holding

* `upper/`, `work/` — the overlayfs upper and work directories of `corral run --workspace
  overlay --session NAME`; the workspace directory itself is the (only) lower layer;
* `meta.json`  — `{"version": 1, "workspace": <realpath>, "started_ns": <ns>}`;
* `lock`       — flock'ed shared by runs that have the overlay mounted, exclusive by `apply`
  and `discard` (they edit `upper/`, which overlayfs forbids while mounted);
* `apply.journal`, `applied.json` — see `apply.py`.

Rules of this module: it only creates, loads, lists, locks and removes session directories;
it never looks inside `upper/` (that is `changes.py`) nor touches the workspace (`apply.py`).

`started_ns` is read from CLOCK_REALTIME_COARSE when the session is created: the kernel stamps
ctimes from that clock (or a finer one that is never behind it), so a workspace file changed
after the session began always has `st_ctime_ns >= started_ns`. Comparing with `>=` has no
false negatives; its only false positives are changes made within the same clock tick (a few
milliseconds) *before* the session began, which then count as conflicts (the safe side).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time

from .._values import frozen

from ..errors import SetupError, UsageError

VERSION = 1
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_CLOCK_REALTIME_COARSE = getattr(time, "CLOCK_REALTIME_COARSE", 5)  # Linux: 5


@frozen  # not dataclasses: it costs ~14 ms to import, and `corral run` opens sessions
class Session:
    name: str
    dir: str
    workspace: str  # realpath of the workspace (the overlay's lower directory)
    started_ns: int  # CLOCK_REALTIME_COARSE at creation (see the module docstring)

    @property
    def upper(self) -> str:
        return os.path.join(self.dir, "upper")

    @property
    def work(self) -> str:
        return os.path.join(self.dir, "work")

    @property
    def meta(self) -> str:
        return os.path.join(self.dir, "meta.json")

    @property
    def journal(self) -> str:
        return os.path.join(self.dir, "apply.journal")

    @property
    def applied(self) -> str:
        return os.path.join(self.dir, "applied.json")

    @contextlib.contextmanager
    def lock(self, exclusive: bool = True):
        """Hold the session lock: shared while a run has the overlay mounted, exclusive to
        edit `upper/` (apply, discard). Never waits: a busy session is an error."""
        fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except BlockingIOError:
                what = "a run has it mounted" if exclusive else "it is being applied or discarded"
                raise UsageError(f"session {self.name!r} is busy ({what}); try again when it is done") from None
            yield self
        finally:
            os.close(fd)


def sessions_root(environ=os.environ) -> str:
    state = environ.get("XDG_STATE_HOME")
    if not state or not os.path.isabs(state):
        home = environ.get("HOME") or os.path.expanduser("~")
        state = os.path.join(home, ".local", "state")
    return os.path.join(state, "corral", "sessions")


def valid_name(name: str) -> bool:
    return 0 < len(name) <= 64 and _NAME_CHARS.issuperset(name) and not name.startswith(".")


def _check_name(name: str) -> None:
    if not valid_name(name):
        raise UsageError(f"invalid session name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
                         "not starting with '.'")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _check_apart(final: str, workspace: str) -> None:
    if _inside(final, workspace) or _inside(workspace, final):
        raise SetupError(
            f"the session directory {final} and the workspace {workspace} overlap (overlayfs refuses "
            "overlapping layers)",
            "set XDG_STATE_HOME to a directory outside the workspace",
        )


def _makedirs_private(path: str) -> None:
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise SetupError(f"cannot create the session directory {path}: {exc.strerror}",
                         "set XDG_STATE_HOME to a writable directory") from None


def open_session(name: str, workspace: str, environ=os.environ) -> Session:
    """Create the session `name` for `workspace`, or load it if it exists (several runs may
    share a session). A session belongs to one workspace."""
    _check_name(name)
    workspace = os.path.realpath(workspace)
    if not os.path.isdir(workspace):
        raise UsageError(f"workspace {workspace} is not a directory")
    root = sessions_root(environ)
    _check_apart(os.path.join(os.path.realpath(root), name), workspace)  # before creating anything
    _makedirs_private(root)
    real_root = os.path.realpath(root)
    final = os.path.join(real_root, name)
    _check_apart(final, workspace)
    if not os.path.lexists(final):
        _create(real_root, name, workspace)
    session = load_session(name, environ)
    if session.workspace != workspace:
        raise UsageError(f"session {name!r} belongs to the workspace {session.workspace}, not {workspace}; "
                         "pick another session name")
    return session


def _create(root: str, name: str, workspace: str) -> None:
    # Built under a temporary name, then renamed into place: a session directory either
    # exists complete or not at all, and of two racing creators exactly one wins.
    tmp = os.path.join(root, f".new-{name}-{os.urandom(4).hex()}")
    os.mkdir(tmp, 0o700)
    try:
        os.mkdir(os.path.join(tmp, "upper"), 0o700)
        os.mkdir(os.path.join(tmp, "work"), 0o700)
        meta = {"version": VERSION, "workspace": workspace,
                "started_ns": time.clock_gettime_ns(_CLOCK_REALTIME_COARSE)}
        _write_json(os.path.join(tmp, "meta.json"), meta)
        try:
            os.rename(tmp, os.path.join(root, name))
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        else:
            fsync_dir(root)
    finally:
        if os.path.lexists(tmp):
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


def session_dir(name: str, environ=os.environ) -> str:
    _check_name(name)
    return os.path.join(os.path.realpath(sessions_root(environ)), name)


def load_session(name: str, environ=os.environ) -> Session:
    path = session_dir(name, environ)
    try:
        with open(os.path.join(path, "meta.json"), encoding="utf-8") as fh:
            import json

            meta = json.load(fh)
    except FileNotFoundError:
        raise UsageError(f"no session named {name!r} (see `corral sessions`)") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"session {name!r} is unreadable ({path}/meta.json: {exc}); "
                         f"`corral discard {name}` removes it") from None
    if not isinstance(meta, dict) or meta.get("version") != VERSION or not isinstance(meta.get("workspace"), str) \
            or not isinstance(meta.get("started_ns"), int):
        raise UsageError(f"session {name!r} has an unknown format ({path}/meta.json); "
                         f"`corral discard {name}` removes it")
    for sub in ("upper", "work"):
        st = os.lstat(os.path.join(path, sub)) if os.path.lexists(os.path.join(path, sub)) else None
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise UsageError(f"session {name!r} is damaged ({path}/{sub} is missing); "
                             f"`corral discard {name}` removes it")
    return Session(name, path, meta["workspace"], meta["started_ns"])


def list_sessions(environ=os.environ) -> list[Session]:
    root = sessions_root(environ)
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if not valid_name(name):
            continue
        try:
            out.append(load_session(name, environ))
        except UsageError:
            continue
    return out


def discard(session: Session) -> None:
    """Remove the session and everything in it (its upper layer is lost)."""
    with session.lock(exclusive=True):
        # Out of sight first (one rename), then removed: no half-removed session stays visible.
        gone = os.path.join(os.path.dirname(session.dir), f".discard-{session.name}-{os.urandom(4).hex()}")
        os.rename(session.dir, gone)
    _rmtree(gone)


def _rmtree(path: str) -> None:
    # overlayfs leaves work/work with mode 000; an unprivileged owner must chmod it first.
    def onerror(func, p, exc_info):
        try:
            os.chmod(os.path.dirname(p), stat.S_IRWXU)
            func(p)
        except OSError:
            raise exc_info[1] from None

    for root, dirs, _files in os.walk(path):
        for d in dirs:
            full = os.path.join(root, d)
            try:
                if not os.path.islink(full):
                    os.chmod(full, stat.S_IRWXU)
            except OSError:
                pass
    import shutil

    shutil.rmtree(path, onerror=onerror)


def _write_json(path: str, data) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        import json

        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_dir(path: str) -> None:
    """Make a rename or unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
