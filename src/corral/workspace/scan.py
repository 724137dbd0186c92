"""Walks of the host filesystem that the plan needs (the only I/O of policy resolution).

* `scan_protected`: every protected entry (see `protected.classify_entry`) inside the writable
  areas, recorded with its inode so that a later scan can tell what the run created.
* `expand_globs`: the paths that gitignore-style deny patterns match right now.

Walks never follow symlinks, never descend into a protected directory (it is covered as a
whole) nor into the `skip` set (areas the sandbox cannot write), and stop with a SetupError
past `MAX_ENTRIES`, so a huge writable area fails closed instead of silently going unchecked.
"""

from __future__ import annotations

import os

from ..errors import SetupError
from .protected import candidate_names, classify_entry, is_git_dir

MAX_ENTRIES = 2_000_000


class ProtectedScan:
    def __init__(self) -> None:
        self.found: dict[str, tuple[int, bool]] = {}  # path -> (inode, is_dir)
        self.hardlinked: set[tuple[int, int]] = set()  # (dev, ino) with nlink > 1
        self.entries = 0
        # Paths the walk could not look at or into -> why (strerror). Nothing below them was
        # checked: the post-run check decides whether the command could have written there.
        self.unlisted: dict[str, str] = {}
        # Directories whose ctime is >= `since` (only with `since`): entries were added,
        # removed or renamed in them (or their mode changed) during the run.
        self.changed: list[str] = []


def scan_protected(roots: list[str], skip: frozenset[str], allow_git_config: bool,
                   opener=None, since: float | None = None) -> ProtectedScan:
    """Record every protected entry below `roots`.

    Cost: one stat per directory plus one listing. A directory whose link count is 2 has no
    subdirectory, so a plain `listdir` and a set intersection (C speed) replace the per-entry
    Python work; that is most directories of a large tree (see bench/startup).

    `opener(path, st)`, when given, is called for a directory whose owner bits lack read or
    search before it is listed (the command may have chmod-ed it); it may add them. Whatever
    still cannot be looked at is recorded in `unlisted`, never skipped silently. `since`: a
    time; directories changed since then are listed in `changed` (their ctime, which no
    command can set back, comes with the stat the walk makes anyway)."""
    result = ProtectedScan()
    found = result.found
    unlisted = result.unlisted
    changed = result.changed
    count = 0
    for root in roots:
        stack = [root]
        while stack:
            top = stack.pop()
            parent_name = top.rpartition("/")[2]
            try:
                st = os.lstat(top)
                if opener is not None and (st.st_mode & 0o500) != 0o500:
                    opener(top, st)
                leaf = st.st_nlink == 2  # only "." and ".." of its own: no subdirs
                if leaf:
                    names = os.listdir(top)
            except FileNotFoundError:
                continue  # vanished
            except OSError as exc:
                unlisted[top] = exc.strerror or str(exc)
                continue
            if since is not None and st.st_ctime >= since:
                changed.append(top)
            if leaf:
                count += len(names)
                hits = candidate_names(parent_name).intersection(names)
                in_git = is_git_dir(parent_name, hits)
                for name in hits:
                    path = f"{top}/{name}"
                    try:
                        st = os.lstat(path)
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        unlisted[path] = exc.strerror or str(exc)
                        continue
                    is_dir = (st.st_mode & 0o170000) == 0o040000
                    if classify_entry(top, name, is_dir, in_git, allow_git_config):
                        found[path] = (st.st_ino, is_dir)
                        if (st.st_mode & 0o170000) == 0o100000 and st.st_nlink > 1:
                            result.hardlinked.add((st.st_dev, st.st_ino))
                continue
            try:
                it = os.scandir(top)
            except FileNotFoundError:
                continue
            except OSError as exc:
                unlisted[top] = exc.strerror or str(exc)
                continue
            with it:
                entries = list(it)  # a git directory is known by what it holds (HEAD, refs...)
                in_git = is_git_dir(parent_name, {e.name for e in entries})
                for entry in entries:
                    count += 1
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        unlisted[entry.path] = exc.strerror or str(exc)
                        continue
                    path = entry.path
                    if classify_entry(top, entry.name, is_dir, in_git, allow_git_config):
                        found[path] = (entry.inode(), is_dir)
                        if not is_dir and entry.is_file(follow_symlinks=False):
                            try:
                                st = entry.stat(follow_symlinks=False)
                            except OSError:
                                continue
                            if st.st_nlink > 1:
                                result.hardlinked.add((st.st_dev, st.st_ino))
                    elif is_dir and path not in skip:
                        stack.append(path)
            if count > MAX_ENTRIES:
                raise SetupError(
                    f"writable area {root} holds more than {MAX_ENTRIES} entries; corral cannot "
                    "check it for protected files",
                    "grant narrower allow_write paths",
                )
    result.entries = count
    return result


def _walk(root: str, descend):
    """Yield (entry, is_dir) below `root` without following symlinks; a directory entry is
    entered only when `descend(entry)` is true. Unreadable directories are passed over."""
    stack = [root]
    while stack:
        try:
            it = os.scandir(stack.pop())
        except OSError:
            continue
        with it:
            for entry in it:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                yield entry, is_dir
                if is_dir and descend(entry):
                    stack.append(entry.path)


def find_links(roots: list[str], skip: frozenset[str], targets: set[tuple[int, int]]) -> list[str]:
    """Other names of hard-linked protected files (rare: only walked when one exists)."""
    out: list[str] = []
    for root in roots:
        for entry, is_dir in _walk(root, lambda e: e.path not in skip):
            try:
                if not is_dir and entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    if st.st_nlink > 1 and (st.st_dev, st.st_ino) in targets:
                        out.append(entry.path)
            except OSError:
                continue
    return out


def glob_base(pattern: str) -> str:
    """The longest leading directory of an absolute pattern that has no wildcard."""
    parts = pattern.split("/")
    base: list[str] = []
    for part in parts[:-1]:
        if any(c in part for c in "*?["):
            break
        base.append(part)
    return "/".join(base) or "/"


def expand_globs(patterns: list[str]) -> list[str]:
    """Existing paths matched by absolute path-glob patterns (`*` stays within a component,
    `**` spans directories). A matched directory is returned whole and not descended."""
    if not patterns:
        return []
    import pathspec  # lazy: costs ~30 ms to import, only paid when a policy has globs

    by_base: dict[str, list[str]] = {}
    for pat in patterns:
        base = glob_base(pat)
        by_base.setdefault(base, []).append("/" + pat[len(base):].lstrip("/"))
    matches: list[str] = []
    count = 0
    for base, rels in by_base.items():
        spec = pathspec.PathSpec.from_lines("gitwildmatch", rels)
        matched: set[str] = set()

        def descend(entry, base=base, spec=spec, matched=matched):
            return entry.path not in matched  # a matched directory is hidden whole

        for entry, _is_dir in _walk(base, descend):
            count += 1
            if spec.match_file(entry.path[len(base):].lstrip("/")):
                matches.append(entry.path)
                matched.add(entry.path)
            if count > MAX_ENTRIES:
                raise SetupError(
                    f"deny pattern base {base} holds more than {MAX_ENTRIES} entries",
                    "anchor the glob in a smaller directory",
                )
    return matches
