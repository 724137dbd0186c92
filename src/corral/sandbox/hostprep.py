"""Host-side state of one run: placeholders before it, cleanup and quarantine after it.

`Cleanup.run()` is idempotent and is called either by corral when the command ends or, if
corral was killed, by the reaper process (see `launch.start_reaper`), so the host never keeps
a placeholder, a TMPDIR mount point, or a protected file planted by the command.
"""

from __future__ import annotations

import os
import sys

from ..errors import SetupError
from .plan import Placeholder, Plan


def lock_path(directory: str, uid: int | None = None) -> str:
    """Where runs with placeholders in `directory` take their lock (per launching user)."""
    import zlib

    uid = os.geteuid() if uid is None else uid
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


class Cleanup:
    """Placeholders are shared by concurrent runs in the same directory: each run holds a
    shared flock on the directory's lock file; the last one to leave removes them. Removing
    one under a running sandbox would detach that sandbox's read-only bind of it. One lock
    per directory, not per file: a run has ~20 placeholders in one or two directories."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.created: list[tuple[Placeholder, int, int]] = []  # (placeholder, dev, ino)
        self.locks: dict[str, int] = {}  # directory -> lock descriptor (held shared)
        self.left: dict[str, int] = {}  # placeholders left to runs still using them -> inode
        # Seconds to wait for other holders of a directory's lock. The reaper waits a little:
        # corral, killed, may still be closing its descriptors when the reaper starts.
        self.patience = 0.0
        self.done = False

    def _lock_shared(self, directory: str) -> None:
        import fcntl

        if directory in self.locks:
            return
        lp = lock_path(directory)
        os.makedirs(os.path.dirname(lp), mode=0o700, exist_ok=True)
        while True:
            fd = os.open(lp, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                same = os.fstat(fd).st_ino == os.stat(lp).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not removed by a run that left just now
                self.locks[directory] = fd
                return
            os.close(fd)

    def create_placeholders(self) -> None:
        owner = self.plan.run_as
        for ph in self.plan.placeholders:
            shared = ph.path != self.plan.tmpdir
            try:
                if shared:
                    self._lock_shared(os.path.dirname(ph.path))
                try:
                    if ph.kind == "dir":
                        os.mkdir(ph.path, 0o700 if ph.path == self.plan.tmpdir else 0o555)
                    else:
                        fd = os.open(ph.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444)
                        os.close(fd)
                except FileExistsError:
                    if not shared:
                        raise
                    # Made by a run that started at the same time (we hold the same lock).
                    st = os.lstat(ph.path)
                    if _looks_like_placeholder(ph, st):
                        self.created.append((ph, st.st_dev, st.st_ino))
                    continue  # else a real file: the plan keeps it read-only, nothing to share
                st = os.lstat(ph.path)
                if owner and ph.path == self.plan.tmpdir:
                    os.chown(ph.path, owner[0], owner[1])
            except OSError as exc:
                self.remove_placeholders()
                raise SetupError(
                    f"cannot create placeholder {ph.path}: {exc.strerror}",
                    "make sure the directory is writable by the launching user",
                ) from None
            self.created.append((ph, st.st_dev, st.st_ino))

    def remove_placeholders(self) -> list[str]:
        problems: list[str] = []
        by_dir: dict[str, list[tuple[Placeholder, int, int]]] = {}
        for entry in reversed(self.created):
            ph = entry[0]
            if ph.path == self.plan.tmpdir:
                self._remove_one(*entry, problems)
            else:
                by_dir.setdefault(os.path.dirname(ph.path), []).append(entry)
        for directory, entries in by_dir.items():
            held = self.locks.pop(directory, None)
            if held is not None:
                os.close(held)  # drops our shared lock
            try:
                lock = os.open(lock_path(directory), os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
            except FileNotFoundError:
                lock = None
            if lock is not None and not _lock_exclusive(lock, self.patience):
                os.close(lock)
                for ph, _dev, ino in entries:  # another run still relies on them: the last
                    self.left[ph.path] = ino  # one out removes them
                continue
            try:
                for entry in entries:
                    self._remove_one(*entry, problems)
            finally:
                if lock is not None:
                    try:
                        os.unlink(lock_path(directory))
                    except FileNotFoundError:
                        pass
                    os.close(lock)
        for fd in self.locks.values():
            os.close(fd)
        self.locks.clear()
        self.created.clear()
        return problems

    def _remove_one(self, ph: Placeholder, dev: int, ino: int, problems: list) -> None:
        try:
            st = os.lstat(ph.path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) != (dev, ino) or not _looks_like_placeholder(ph, st):
            problems.append(ph.path)  # not ours any more; leave it to the quarantine scan
            return
        try:
            if ph.kind == "dir":
                os.rmdir(ph.path)
            else:
                os.unlink(ph.path)
        except OSError:
            problems.append(ph.path)

    def run(self, report=None) -> list[tuple[str, str]]:
        """Remove placeholders, then quarantine protected files the run created.
        Returns [(original_path, quarantined_path)]."""
        if self.done:
            return []
        self.done = True
        ws = self.plan.workspace
        if ws is not None and ws.staging:
            from ..workspace.staging import remove_copy

            remove_copy(ws.staging)  # the staging copy never outlives its run
        self.remove_placeholders()
        moved = quarantine_new(self.plan, self.left)
        if moved and report is not None:
            for src, dst in moved:
                report(f"corral: quarantined {src} (protected file created during the run) -> {dst}")
        return moved


def _lock_exclusive(fd: int, patience: float) -> bool:
    import fcntl
    import time

    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


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


def quarantine_new(plan: Plan, left: dict[str, int] | None = None) -> list[tuple[str, str]]:
    """Move protected files the run created out of the way. `left`: placeholders still held
    by other runs (path -> inode), which are not the command's doing."""
    left = left or {}
    if not plan.writable_roots:
        return []
    from ..workspace.scan import scan_protected

    after = scan_protected(list(plan.writable_roots), plan.scan_skip, plan.allow_git_config)
    before = plan.protected_before
    moved = []
    box = None
    for path, (ino, is_dir) in sorted(after.found.items()):
        old = before.get(path)
        if old is not None and old[0] == ino:
            continue
        if left.get(path) == ino:
            continue
        if is_dir and _harmless_dir(path):
            continue
        try:
            if box is None:
                box = _new_quarantine_box(plan.quarantine_dir)
            # Flattened name in a directory created just now: nothing the command planted in
            # a writable quarantine area (symlinks, a guessed run id) can steer the move, and
            # the moved file never keeps a name a shell or git would pick up.
            dest = f"{box}/{path.lstrip('/').replace('%', '%25').replace('/', '%2F')}"
            try:
                os.rename(path, dest)
            except OSError as exc:
                if exc.errno != 18:  # EXDEV: another filesystem
                    raise
                import shutil

                shutil.move(path, dest)
        except OSError:
            # Could not keep a copy: the host must still not keep it at that path.
            _remove(path)
            dest = "(deleted: quarantine directory not writable)"
        moved.append((path, dest))
    return moved


def _new_quarantine_box(base: str) -> str:
    """A fresh directory with an unguessable name under `base` (made 0700 if missing)."""
    parent = os.path.dirname(base)
    os.makedirs(parent, mode=0o700, exist_ok=True)
    box = f"{base}-{os.urandom(4).hex()}"
    os.mkdir(box, 0o700)  # fails on anything already there, symlinks included
    return box


def _harmless_dir(path: str) -> bool:
    """A fresh `git init` hooks directory holds only *.sample files, which git never runs."""
    if not path.endswith("/.git/hooks"):
        return False
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return all(n.endswith(".sample") and os.path.isfile(os.path.join(path, n)) and not os.path.islink(os.path.join(path, n)) for n in names)


def _remove(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass


def stderr_report(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
