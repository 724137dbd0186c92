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


class Cleanup:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.created: list[tuple[Placeholder, int, int]] = []  # (placeholder, dev, ino)
        self.done = False

    def create_placeholders(self) -> None:
        owner = self.plan.run_as
        for ph in self.plan.placeholders:
            try:
                if ph.kind == "dir":
                    os.mkdir(ph.path, 0o700 if ph.path == self.plan.tmpdir else 0o555)
                else:
                    fd = os.open(ph.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444)
                    os.close(fd)
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
        problems = []
        for ph, dev, ino in reversed(self.created):
            try:
                st = os.lstat(ph.path)
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) != (dev, ino):
                problems.append(ph.path)  # not ours any more; leave it to the quarantine scan
                continue
            try:
                if ph.kind == "dir":
                    os.rmdir(ph.path)
                else:
                    os.unlink(ph.path)
            except OSError:
                problems.append(ph.path)
        self.created.clear()
        return problems

    def run(self, report=None) -> list[tuple[str, str]]:
        """Remove placeholders, then quarantine protected files the run created.
        Returns [(original_path, quarantined_path)]."""
        if self.done:
            return []
        self.done = True
        self.remove_placeholders()
        moved = quarantine_new(self.plan)
        if moved and report is not None:
            for src, dst in moved:
                report(f"corral: quarantined {src} (protected file created during the run) -> {dst}")
        return moved


def quarantine_new(plan: Plan) -> list[tuple[str, str]]:
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
