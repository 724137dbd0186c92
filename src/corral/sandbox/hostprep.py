"""Host-side state of one run: placeholders before it, cleanup and quarantine after it.

`Cleanup.run()` is idempotent and is called either by corral when the command ends or, if
corral was killed, by the reaper process (see `launch.start_reaper`), so the host never keeps
a placeholder, a TMPDIR mount point, or a protected file planted by the command.

The check after the run sees everything the run created, whatever modes the command set:
directories it locked (`chmod 000`, `chmod 555`) are opened for the check (u+rwx, on the
launcher's own directories only, never through a symlink) and given back their modes after
it; whatever still cannot be looked at, moved or removed is named on stderr and the run ends
with 125 (`CleanupIncomplete`) instead of the command's status. Quarantine copies across
filesystems keep holes and have a size limit; set-id bits on files the run created or changed
do not survive; every name printed goes through `display.shown`.
"""

from __future__ import annotations

import os
import sys
import time

from ..display import shown
from ..errors import SetupError
from .placeholders import Placeholder, _looks_like_placeholder, lock_path  # noqa: F401 - lock_path: interface
from .plan import Plan

# A quarantined item (file or directory tree) copied across filesystems holds at most this
# much data (holes cost nothing); larger ones are deleted. A run's copies share a budget.
COPY_LIMIT = 64 << 20
RUN_COPY_LIMIT = 256 << 20
# Files a run changed have ctime >= its start; the kernel's coarse clock may stamp a little
# before `time.time()`, so the start is taken this much earlier (more checked, never less).
CLOCK_SLACK = 2.0


class CleanupIncomplete(SetupError):
    """The post-run check could not see or act on everything the run created."""


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
        self.since = time.time() - CLOCK_SLACK  # before the command can have changed anything
        self.access = Access()

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

    def remove_placeholders(self) -> list[tuple[str, str]]:
        """Remove the placeholders no other run holds. Returns [(path, why)] for those that
        could not be checked or removed."""
        problems: list[tuple[str, str]] = []
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
                self.access.reach(directory, self.plan.writable_roots)  # the command may have locked it
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
        except OSError as exc:
            problems.append((ph.path, f"placeholder cannot be looked at: {exc.strerror}"))
            return
        if (st.st_dev, st.st_ino) != (dev, ino) or not _looks_like_placeholder(ph, st):
            return  # not ours any more: the quarantine scan judges what is there now
        try:
            if ph.kind == "dir":
                os.rmdir(ph.path)
            else:
                os.unlink(ph.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            problems.append((ph.path, f"placeholder cannot be removed: {exc.strerror}"))

    def run(self, report=None) -> list[tuple[str, str]]:
        """Remove placeholders, then quarantine protected files the run created and strip
        set-id bits from files it created or changed. Returns [(original_path, quarantined_path)].
        Raises CleanupIncomplete (after reporting each path) when something could not be
        checked or acted on: the run must not look successful."""
        if self.done:
            return []
        self.done = True
        ws = self.plan.workspace
        if ws is not None and ws.staging:
            from ..workspace.staging import remove_copy

            remove_copy(ws.staging)  # the staging copy never outlives its run
        outcome = Outcome()
        try:
            outcome.unchecked.extend(self.remove_placeholders())
            quarantine_new(self.plan, self.left, self.access, self.since, outcome)
            restore_policy_links(self.plan.policy_links, outcome)
        finally:
            outcome.unchecked.extend(self.access.restore())
        if report is not None:
            for line in outcome.lines():
                report(line)
        if outcome.unchecked:
            n = len(outcome.unchecked)
            raise CleanupIncomplete(
                f"the post-run check could not see or act on {n} path{'s' if n > 1 else ''} the run may "
                "have created (listed above); not reporting the command's status",
                "inspect and remove them by hand",
            )
        return outcome.moved


def restore_policy_links(links, outcome: "Outcome") -> None:
    """Symlinks on the way to the policy in use cannot be made read-only: whatever the run put
    at their place is set aside and the link is put back, so the next run reads the same policy."""
    for link, target in links:
        try:
            st = os.lstat(link)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            outcome.unchecked.append((link, exc.strerror or str(exc)))
            continue
        if st is not None and os.path.islink(link) and os.readlink(link) == target:
            continue
        try:
            if st is not None:
                import stat as _stat

                if _stat.S_ISDIR(st.st_mode):
                    os.rename(link, f"{link}.corral-replaced-{os.urandom(3).hex()}")
                else:
                    os.unlink(link)
            os.symlink(target, link)
        except OSError as exc:
            outcome.unchecked.append((link, f"cannot restore the policy's symlink: {exc.strerror}"))
            continue
        outcome.restored.append((link, target))


class Outcome:
    """What the post-run check did; `lines()` is what corral prints."""

    def __init__(self) -> None:
        self.moved: list[tuple[str, str]] = []  # (original, quarantined)
        self.deleted: list[tuple[str, str]] = []  # (original, why)
        self.stripped: list[tuple[str, int]] = []  # (path, old mode)
        self.unchecked: list[tuple[str, str]] = []  # (path, why)
        self.sanitised: list[str] = []  # report lines of git metadata kept in place (gitmeta)
        self.restored: list[tuple[str, str]] = []  # (link, target): policy symlinks put back

    def lines(self) -> list[str]:
        out = [f"corral: quarantined {shown(src)} (protected file created during the run) -> {shown(dst)}"
               for src, dst in self.moved]
        out += [f"corral: deleted {shown(src)} (protected file created during the run; {why})"
                for src, why in self.deleted]
        out += self.sanitised
        out += [f"corral: restored the symlink {shown(link)} -> {shown(target)} (the policy in use is read through "
                "it; the run had changed it)" for link, target in self.restored]
        if self.stripped:
            names = ", ".join(shown(p) for p, _ in self.stripped[:5])
            more = f" and {len(self.stripped) - 5} more" if len(self.stripped) > 5 else ""
            out.append(f"corral: removed setuid/setgid bits from {len(self.stripped)} file"
                       f"{'s' if len(self.stripped) > 1 else ''} the run created or changed: {names}{more}")
        out += [f"corral: could not check {shown(path, 300)}: {why}" for path, why in self.unchecked]
        return out


class Access:
    """Temporary owner permissions on directories the command locked (chmod 000, 555, ...).

    Only the launcher's own directories can be opened (root needs none of this); the mode is
    changed through an O_PATH descriptor opened with O_NOFOLLOW, so a symlink swapped in is
    never followed, and `restore()` gives every directory its mode back (matched by inode)."""

    def __init__(self) -> None:
        self.euid = os.geteuid()
        self.changed: list[tuple[str, int, int, int]] = []  # (path, dev, ino, mode before)
        self.opened: set[str] = set()

    def open(self, path: str, bits: int = 0o700, st=None) -> bool:
        """Make sure the owner has `bits` on directory `path`. False when it could not be done."""
        if self.euid == 0:
            return True
        if st is not None and (st.st_mode & bits) == bits:
            return True
        try:
            fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if (st.st_mode & 0o170000) != 0o040000 or st.st_uid != self.euid:
                return False
            mode = st.st_mode & 0o7777
            if (mode & bits) == bits:
                return True
            os.chmod(f"/proc/self/fd/{fd}", mode | bits)  # this inode, whatever the path is now
        except OSError:
            return False
        finally:
            os.close(fd)
        self.changed.append((path, st.st_dev, st.st_ino, mode))
        self.opened.add(path)
        return True

    def reach(self, directory: str, roots) -> None:
        """Open `directory` (u+rwx) and the directories between it and the writable root
        holding it (u+x): the command can lock any of them."""
        if self.euid == 0:
            return
        root = max((r for r in roots if directory == r or directory.startswith(r.rstrip("/") + "/")),
                   key=len, default=None)
        if root is not None:
            path = root
            for part in directory[len(root):].strip("/").split("/"):
                try:
                    st = os.lstat(path)
                except OSError:
                    break
                self.open(path, 0o100, st)
                if not part:
                    break
                path = f"{path.rstrip('/')}/{part}"
        self.open(directory, 0o700)

    def restore(self) -> list[tuple[str, str]]:
        """Give back the modes the command left (deepest first). Directories moved into the
        quarantine or removed are gone from their path: nothing to give back."""
        problems = []
        for path, dev, ino, mode in reversed(self.changed):
            try:
                fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == (dev, ino):
                    os.chmod(f"/proc/self/fd/{fd}", mode)
            except OSError as exc:
                problems.append((path, f"cannot restore its mode {mode:04o}: {exc.strerror}"))
            finally:
                os.close(fd)
        self.changed.clear()
        return problems

    def under_opened(self, path: str) -> bool:
        while True:
            path = os.path.dirname(path)
            if path in self.opened:
                return True
            if path in ("/", ""):
                return False


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


def quarantine_new(plan: Plan, left: dict[str, int] | None = None, access: Access | None = None,
                   since: float | None = None, outcome: Outcome | None = None) -> Outcome:
    """Move protected files the run created out of the way, strip set-id bits from files it
    created or changed, and list what could not be checked. `left`: placeholders still held
    by other runs (path -> inode), which are not the command's doing."""
    left = left or {}
    access = access or Access()
    outcome = outcome if outcome is not None else Outcome()
    if not plan.writable_roots:
        return outcome
    from ..workspace.scan import scan_protected

    after = scan_protected(list(plan.writable_roots), plan.scan_skip, plan.allow_git_config,
                           opener=lambda path, st: access.open(path, 0o700, st), since=since)
    for path, why in sorted(after.unlisted.items()):
        if not _out_of_reach(path):
            outcome.unchecked.append((path, f"cannot be listed ({why})"))
    before = plan.protected_before
    box = None
    budget = [RUN_COPY_LIMIT]
    for path, (ino, is_dir) in sorted(after.found.items()):
        old = before.get(path)
        if old is not None and old[0] == ino:
            continue
        if left.get(path) == ino:
            continue
        if since is not None and access.under_opened(path) and _untouched_since(path, since):
            continue  # was there before the run, in a directory the pre-run scan could not list
        if is_dir and _harmless_dir(path):
            continue
        # Git metadata the run created (a clone's config, a worktree's pointers) stays, with
        # only its inert keys, when workspace.gitmeta vouches for it; anything else is moved.
        from ..workspace import gitmeta

        kept = gitmeta.sanitise_or_none(path, is_dir)
        if kept is not None:
            line = gitmeta.report_line(shown(path), kept)
            if line:
                outcome.sanitised.append(line)
            continue
        parent = os.path.dirname(path)
        access.open(parent, 0o300)  # a read-only directory: w+x to move the entry out
        if is_dir:
            access.open(path, 0o700)  # moving a directory rewrites its ".."; copying reads it
        try:
            if box is None:
                box = _new_quarantine_box(plan.quarantine_dir)
            # Flattened name in a directory created just now: nothing the command planted in
            # a writable quarantine area (symlinks, a guessed run id) can steer the move, and
            # the moved file never keeps a name a shell or git would pick up.
            dest = f"{box}/{path.lstrip('/').replace('%', '%25').replace('/', '%2F')}"
            try:
                os.rename(path, dest)
                _strip_setid(dest)
            except OSError as exc:
                if exc.errno != 18:  # EXDEV: another filesystem
                    raise
                try:
                    _copy_out(path, dest, access, budget)
                except BaseException:
                    _remove(dest, access)
                    raise
                _remove(path, access)
            outcome.moved.append((path, dest))
        except _TooBig as big:
            _remove(path, access)
            outcome.deleted.append((path, f"{big}, over the quarantine copy limit ({_human(COPY_LIMIT)} a file, "
                                          f"{_human(RUN_COPY_LIMIT)} a run)"))
        except OSError as exc:
            # Could not keep a copy: the host must still not keep it at that path.
            _remove(path, access)
            outcome.deleted.append((path, f"no copy kept: {exc.strerror or exc}"))
        if _still_there(path, ino):
            if outcome.moved and outcome.moved[-1][0] == path:
                outcome.moved.pop()
            elif outcome.deleted and outcome.deleted[-1][0] == path:
                outcome.deleted.pop()
            outcome.unchecked.append((path, "protected file created during the run could not be moved or removed"))
    for directory in after.changed:
        _strip_setid_in(directory, since, outcome)
    return outcome


def _out_of_reach(path: str) -> bool:
    """A path the walk could not look at, which the command could not have written below
    either: it ran as corral's own user (no capabilities), and corral cannot search the
    directory nor change its mode (not ours). Root can search anything: never out of reach."""
    if os.geteuid() == 0:
        return False
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError as exc:
        # Its parent is not searchable by this user: nothing below is reachable. Anything else
        # (a path too long to name, ELOOP, ...) is not evidence of that: it must be reported.
        return exc.errno in (13, 1)  # EACCES, EPERM
    if (st.st_mode & 0o170000) != 0o040000:
        return False
    return st.st_uid != os.geteuid() and not os.access(path, os.X_OK, effective_ids=os.access in os.supports_effective_ids)


def _untouched_since(path: str, since: float) -> bool:
    try:
        return os.lstat(path).st_ctime < since
    except OSError:
        return False


def _still_there(path: str, ino: int) -> bool:
    try:
        return os.lstat(path).st_ino == ino
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: not "moved"


class _TooBig(Exception):
    pass


def _copy_out(path: str, dest: str, access: Access, budget: list[int]) -> None:
    """Copy `path` (file, directory tree or symlink) to `dest` on another filesystem: holes
    stay holes, symlinks are copied as links (never followed), other special files are left
    out, and at most COPY_LIMIT bytes of data (and what is left of the run's budget) are
    copied; past that `_TooBig` names the size."""
    allowed = [min(COPY_LIMIT, budget[0])]
    parent, name = os.path.split(path)
    dparent, dname = os.path.split(dest)
    spfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fds = [spfd]
    try:
        dpfd = os.open(dparent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        fds.append(dpfd)
        if not _copy_entry(spfd, dpfd, name, dname, allowed, access):
            return
        stack = []  # (source dir fd, dest dir fd, names left)
        sfd, dfd = _open_pair(spfd, dpfd, name, dname, access, fds)
        stack.append((sfd, dfd, _names(sfd)))
        while stack:
            sfd, dfd, names = stack[-1]
            if not names:
                stack.pop()
                continue
            entry = names.pop()
            if _copy_entry(sfd, dfd, entry, entry, allowed, access):
                s2, d2 = _open_pair(sfd, dfd, entry, entry, access, fds)
                stack.append((s2, d2, _names(s2)))
    finally:
        for fd in fds:
            os.close(fd)
        budget[0] = max(0, budget[0] - (min(COPY_LIMIT, budget[0]) - allowed[0]))


def _names(dfd: int) -> list[str]:
    with os.scandir(dfd) as it:
        return [e.name for e in it]


def _open_pair(spfd, dpfd, sname, dname, access, fds) -> tuple[int, int]:
    _open_at(spfd, sname, 0o500, access)
    sfd = os.open(sname, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=spfd)
    fds.append(sfd)
    dfd = os.open(dname, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dpfd)
    fds.append(dfd)
    return sfd, dfd


def _open_at(dfd: int, name: str, bits: int, access: Access) -> None:
    """Give the owner `bits` on `name` (in directory `dfd`) when it is ours and lacks them;
    it is about to be deleted, so its mode is not given back."""
    if access.euid == 0:
        return
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return
    try:
        st = os.fstat(fd)
        kind = st.st_mode & 0o170000
        if kind in (0o040000, 0o100000) and st.st_uid == access.euid and (st.st_mode & bits) != bits:
            os.chmod(f"/proc/self/fd/{fd}", (st.st_mode & 0o7777) | bits)
    except OSError:
        pass
    finally:
        os.close(fd)


def _copy_entry(sfd: int, dfd: int, sname: str, dname: str, allowed: list[int], access: Access) -> bool:
    """Copy one entry; True when it is a directory (created empty, to be filled)."""
    import stat

    st = os.lstat(sname, dir_fd=sfd)
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(dname, 0o700, dir_fd=dfd)
        return True
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(sname, dir_fd=sfd), dname, dir_fd=dfd)
    elif stat.S_ISREG(st.st_mode):
        _open_at(sfd, sname, 0o400, access)
        src = os.open(sname, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=sfd)
        try:
            if not stat.S_ISREG(os.fstat(src).st_mode):
                return False
            dst = os.open(dname, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
            try:
                copy_sparse(src, dst, allowed)
            finally:
                os.close(dst)
        finally:
            os.close(src)
    return False  # fifos, sockets, devices: not copied


def copy_sparse(src: int, dst: int, allowed: list[int]) -> None:
    """Copy the data regions of `src` into `dst` (SEEK_DATA/SEEK_HOLE), leaving holes as
    holes, then set the size. `allowed[0]`: bytes of data still allowed; `_TooBig` past it."""
    size = os.fstat(src).st_size
    offset = 0
    while offset < size:
        try:
            data = os.lseek(src, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == 6:  # ENXIO: only a hole after `offset`
                break
            raise
        end = os.lseek(src, data, os.SEEK_HOLE)
        allowed[0] -= end - data
        if allowed[0] < 0:
            raise _TooBig(f"{_human(size)}")
        pos = data
        while pos < end:
            chunk = os.pread(src, min(1 << 20, end - pos), pos)
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                n = os.pwrite(dst, view, pos)
                view = view[n:]
                pos += n
        offset = end
    os.ftruncate(dst, size)


def _human(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024
    return str(n)


def _strip_setid(path: str) -> bool:
    """Clear setuid/setgid on regular file `path` (never through a symlink); True if done."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170000) != 0o100000 or not st.st_mode & 0o6000:
            return True
        os.chmod(f"/proc/self/fd/{fd}", st.st_mode & 0o1777)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _strip_setid_in(directory: str, since: float | None, outcome: Outcome) -> None:
    """Regular files with a set-id bit in `directory` (which changed during the run) and
    changed themselves during the run lose the bit. Only changed directories are looked
    into: a full stat pass over 100k files costs ~0.2 s, this costs nothing on most runs."""
    try:
        it = os.scandir(directory)
    except OSError:
        return  # vanished (moved to the quarantine); unlistable ones are in `unlisted`
    with it:
        for entry in it:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_mode & 0o6000 and (since is None or st.st_ctime >= since):
                if _strip_setid(entry.path):
                    outcome.stripped.append((entry.path, st.st_mode & 0o7777))
                else:
                    outcome.unchecked.append((entry.path, f"cannot remove its set-id bits (mode {st.st_mode & 0o7777:04o})"))


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


def _remove(path: str, access: Access | None = None) -> None:
    """Delete `path` (a whole tree for a directory) without following symlinks, opening
    directories the command locked on the way. Errors are left for the caller to see: the
    path still exists."""
    access = access or Access()
    parent, name = os.path.split(path)
    try:
        pfd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    fds = []
    try:
        try:
            os.unlink(name, dir_fd=pfd)
            return
        except IsADirectoryError:
            pass
        except OSError as exc:
            if exc.errno != 1:  # EPERM: unlink of a directory on some systems
                return
        stack = []  # (parent fd, name, fd, subdirectories left)
        _open_at(pfd, name, 0o700, access)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        fds.append(fd)
        stack.append((pfd, name, fd, _clear(fd, access)))
        while stack:
            pfd_, nm, fd, subs = stack[-1]
            if subs:
                sub = subs.pop()
                _open_at(fd, sub, 0o700, access)
                sfd = os.open(sub, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                fds.append(sfd)
                stack.append((fd, sub, sfd, _clear(sfd, access)))
                continue
            stack.pop()
            fds.remove(fd)
            os.close(fd)
            os.rmdir(nm, dir_fd=pfd_)
    except OSError:
        pass
    finally:
        for fd in fds:
            os.close(fd)
        os.close(pfd)


def _clear(dfd: int, access: Access) -> list[str]:
    """Unlink every non-directory in `dfd`; return the names of its subdirectories."""
    subs = []
    with os.scandir(dfd) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                subs.append(entry.name)
            else:
                os.unlink(entry.name, dir_fd=dfd)
    return subs


def stderr_report(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
