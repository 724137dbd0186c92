"""What an overlay session changed: its upper layer compared with the live workspace.

Rules of this module: it reads, it never writes (not the workspace, not the session); it
never follows a symlink, in the upper layer or in the workspace; and it reports the
difference between the *merged view* (workspace + upper, as the sandboxed command saw it)
and the *workspace as it is now* — exactly what `apply` would do.

How overlayfs (mounted with `userxattr`, no redirect_dir, no metacopy) records writes:

* a written file is copied up whole (same path in upper), a new file is created there;
* a deleted lower entry becomes a whiteout: a 0:0 character device of the same name;
  a whiteout of a lower directory deletes the whole directory;
* a directory removed and re-created is *opaque* (`user.overlay.opaque=y`): the lower
  entries it does not hold are deleted;
* a renamed file is a new file plus a whiteout; a renamed lower directory is a new directory
  (its whole content copied up) plus a whiteout. Renames are recognised afterwards: an added
  file with the size and sha256 of a deleted one, an added directory whose whole tree equals
  a deleted one's;
* copied-up entries may carry other `user.overlay.*` xattrs (ignored), and a copy-up that
  changed nothing (chown, utime, open for writing) is not a change.

Changes inside git directories (`.git/**`, submodules' `.git/modules/**`, bare repositories)
are told apart by `split_git`: `corral changes` and `apply` leave them out unless asked, and
`gitcommits` brings a session's new commits in as commits instead.

Only permission bits count as a mode change; setuid/setgid bits are masked everywhere
(`apply` never sets them), as are ownership and timestamps.
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
import os
import stat
from dataclasses import asdict, dataclass

from ..display import shown

KINDS = ("added", "modified", "deleted", "renamed", "mode")
OPAQUE_XATTRS = ("user.overlay.opaque", "trusted.overlay.opaque")
SNIFF_BYTES = 8192
DIFF_LIMIT = 8 << 20  # larger files are reported as differing, without a diff
RENAME_TREE_LIMIT = 10_000  # directory-rename detection gives up past this many entries


@dataclass(frozen=True)
class Change:
    kind: str  # one of KINDS
    path: str  # relative to the workspace; for "renamed" the new path
    old_path: str | None = None  # "renamed": where it was
    is_dir: bool = False
    is_symlink: bool = False
    binary: bool = False
    mode_old: int | None = None  # permission bits (0o644), None when absent
    mode_new: int | None = None
    type_old: str | None = None  # "file" | "dir" | "symlink" | "fifo" | "socket" | "device"; None: absent
    type_new: str | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path,) if self.old_path is None else (self.old_path, self.path)


# ---------------------------------------------------------------- file facts (no writes)

def ftype(st) -> str:
    m = st.st_mode
    if stat.S_ISREG(m):
        return "file"
    if stat.S_ISDIR(m):
        return "dir"
    if stat.S_ISLNK(m):
        return "symlink"
    if stat.S_ISFIFO(m):
        return "fifo"
    if stat.S_ISSOCK(m):
        return "socket"
    return "device"


def perm(st) -> int:
    return st.st_mode & (0o1777 if stat.S_ISDIR(st.st_mode) else 0o777)


def is_whiteout(st) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _open_nofollow(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    fd = _open_nofollow(path)
    try:
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def read_bytes(path: str, limit: int | None = None) -> bytes:
    fd = _open_nofollow(path)
    try:
        parts, total = [], 0
        while chunk := os.read(fd, 1 << 20 if limit is None else min(1 << 20, limit - total)):
            parts.append(chunk)
            total += len(chunk)
            if limit is not None and total >= limit:
                break
        return b"".join(parts)
    finally:
        os.close(fd)


def looks_binary(head: bytes) -> bool:
    """A NUL byte in the first 8 KiB, or bytes that are not UTF-8."""
    if b"\0" in head[:SNIFF_BYTES]:
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head[:SNIFF_BYTES], final=False)
    except UnicodeDecodeError:
        return True
    return False


def _binary_file(path: str | None) -> bool:
    if path is None:
        return False
    try:
        return looks_binary(read_bytes(path, SNIFF_BYTES))
    except OSError:
        return False


def _lstat(path: str):
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


# ---------------------------------------------------------------- the comparison

class _Scan:
    def __init__(self, session) -> None:
        self.upper = session.upper
        self.real = session.workspace
        self.out: list[Change] = []
        self.new_dirs: list[str] = []  # upper directories with no real directory below them

    def u(self, rel: str) -> str:
        return os.path.join(self.upper, rel) if rel else self.upper

    def r(self, rel: str) -> str:
        return os.path.join(self.real, rel) if rel else self.real

    def deleted(self, rel: str, lst) -> None:
        t = ftype(lst)
        self.out.append(Change("deleted", rel, is_dir=t == "dir", is_symlink=t == "symlink",
                               binary=t == "file" and _binary_file(self.r(rel)),
                               mode_old=None if t == "symlink" else perm(lst), type_old=t))

    def walk(self, rel: str, real_is_dir: bool, opaque: bool) -> None:
        seen: set[str] = set()
        for name in sorted(os.listdir(self.u(rel))):
            path = os.path.join(rel, name) if rel else name
            ust = os.lstat(self.u(path))
            lst = _lstat(self.r(path)) if real_is_dir else None
            seen.add(name)
            if is_whiteout(ust):
                if lst is not None:
                    self.deleted(path, lst)
                continue
            if stat.S_ISDIR(ust.st_mode):
                self.dir(path, ust, lst)
            else:
                self.leaf(path, ust, lst)
        if opaque and real_is_dir:
            for name in sorted(os.listdir(self.r(rel))):
                if name not in seen:
                    path = os.path.join(rel, name) if rel else name
                    self.deleted(path, os.lstat(self.r(path)))

    def dir(self, path: str, ust, lst) -> None:
        if lst is not None and stat.S_ISDIR(lst.st_mode):
            if perm(ust) != perm(lst):
                self.out.append(Change("mode", path, is_dir=True, mode_old=perm(lst), mode_new=perm(ust),
                                       type_old="dir", type_new="dir"))
            self.walk(path, True, is_opaque(self.u(path)))
            return
        if lst is not None:  # a file (or symlink, ...) became a directory
            self.out.append(Change("modified", path, is_dir=True, binary=_binary_file(self.r(path)) if
                                   stat.S_ISREG(lst.st_mode) else False,
                                   mode_old=None if stat.S_ISLNK(lst.st_mode) else perm(lst),
                                   mode_new=perm(ust), type_old=ftype(lst), type_new="dir"))
        before = len(self.out)
        self.new_dirs.append(path)
        self.walk(path, False, False)
        if lst is None and len(self.out) == before:
            self.out.append(Change("added", path, is_dir=True, mode_new=perm(ust), type_new="dir"))

    def leaf(self, path: str, ust, lst) -> None:
        t = ftype(ust)
        upath = self.u(path)
        mode_new = None if t == "symlink" else perm(ust)
        if lst is None:
            self.out.append(Change("added", path, is_symlink=t == "symlink", binary=t == "file" and _binary_file(upath),
                                   mode_new=mode_new, type_new=t))
            return
        lt = ftype(lst)
        mode_old = None if lt == "symlink" else perm(lst)
        if lt != t:
            self.out.append(Change("modified", path, is_symlink=t == "symlink",
                                   binary=(t == "file" and _binary_file(upath)) or
                                   (lt == "file" and _binary_file(self.r(path))),
                                   mode_old=mode_old, mode_new=mode_new, type_old=lt, type_new=t))
            return
        if t == "symlink":
            if os.readlink(upath) != os.readlink(self.r(path)):
                self.out.append(Change("modified", path, is_symlink=True, type_old=t, type_new=t))
            return
        if t == "file":
            same = ust.st_size == lst.st_size and sha256_file(upath) == sha256_file(self.r(path))
        else:  # fifo, socket, device: nothing to compare but the kind (and device number)
            same = ust.st_rdev == lst.st_rdev
        if not same:
            self.out.append(Change("modified", path,
                                   binary=t == "file" and (_binary_file(upath) or _binary_file(self.r(path))),
                                   mode_old=mode_old, mode_new=mode_new, type_old=lt, type_new=t))
        elif mode_old != mode_new:
            self.out.append(Change("mode", path, mode_old=mode_old, mode_new=mode_new, type_old=lt, type_new=t))


def list_changes(session) -> list[Change]:
    """Every difference between the session's merged view and the workspace, sorted by path."""
    scan = _Scan(session)
    if not os.path.isdir(scan.real):
        from ..errors import UsageError

        raise UsageError(f"the workspace {scan.real} of session {session.name!r} is gone")
    try:
        scan.walk("", True, is_opaque(scan.upper))
    except OSError as exc:
        from ..errors import CorralError

        raise CorralError(f"cannot compare session {session.name!r} with its workspace: {exc.filename}: "
                          f"{exc.strerror}") from None
    changes = _pair_dir_renames(scan, scan.out)
    changes = _pair_file_renames(scan, changes)
    return sorted(changes, key=lambda c: c.path)


def _pair_file_renames(scan: _Scan, changes: list[Change]) -> list[Change]:
    added = [c for c in changes if c.kind == "added" and c.type_new == "file"]
    gone = [c for c in changes if c.kind == "deleted" and c.type_old == "file"]
    if not added or not gone:
        return changes
    by_key: dict[tuple[int, str], list[Change]] = {}
    sizes = {os.lstat(scan.u(c.path)).st_size for c in added}
    for c in gone:
        size = os.lstat(scan.r(c.path)).st_size
        if size in sizes:
            by_key.setdefault((size, sha256_file(scan.r(c.path))), []).append(c)
    if not by_key:
        return changes
    drop: set[int] = set()
    renamed: list[Change] = []
    for c in added:
        key = (os.lstat(scan.u(c.path)).st_size, sha256_file(scan.u(c.path)))
        cands = [g for g in by_key.get(key, []) if id(g) not in drop]
        if not cands:
            continue
        same_name = [g for g in cands if os.path.basename(g.path) == os.path.basename(c.path)]
        old = (same_name or cands)[0]
        drop.update((id(old), id(c)))
        renamed.append(Change("renamed", c.path, old_path=old.path, binary=c.binary, mode_old=old.mode_old,
                              mode_new=c.mode_new, type_old="file", type_new="file"))
    return [c for c in changes if id(c) not in drop] + renamed


def _tree_signature(root: str, skip_whiteouts: bool):
    """Everything apply would reproduce of a directory tree, or None when too large."""
    entries = []
    stack = [""]
    while stack:
        rel = stack.pop()
        for name in os.listdir(os.path.join(root, rel) if rel else root):
            path = os.path.join(rel, name) if rel else name
            st = os.lstat(os.path.join(root, path))
            if skip_whiteouts and is_whiteout(st):
                continue
            t = ftype(st)
            if t == "file":
                extra = (st.st_size, sha256_file(os.path.join(root, path)))
            elif t == "symlink":
                extra = os.readlink(os.path.join(root, path))
            elif t == "dir":
                extra = None
                stack.append(path)
            else:
                extra = st.st_rdev
            entries.append((path, t, None if t == "symlink" else perm(st), extra))
            if len(entries) > RENAME_TREE_LIMIT:
                return None
    return perm(os.lstat(root)), sorted(entries, key=lambda e: e[0])


def _pair_dir_renames(scan: _Scan, changes: list[Change]) -> list[Change]:
    gone = [c for c in changes if c.kind == "deleted" and c.type_old == "dir"]
    fresh = [d for d in scan.new_dirs if _lstat(scan.r(d)) is None]
    # only the outermost new directories are candidates
    fresh = [d for d in fresh if not any(d.startswith(o + "/") for o in fresh)]
    if not gone or not fresh:
        return changes
    sigs = {}
    for c in gone:
        sig = _tree_signature(scan.r(c.path), False)
        if sig is not None:
            sigs.setdefault(repr(sig), []).append(c)
    out = changes
    for d in fresh:
        sig = _tree_signature(scan.u(d), True)
        cands = sigs.get(repr(sig)) if sig is not None else None
        if not cands:
            continue
        old = cands.pop(0)
        out = [c for c in out if c is not old and c.path != d and not c.path.startswith(d + "/")]
        out.append(Change("renamed", d, old_path=old.path, is_dir=True, mode_old=old.mode_old,
                          mode_new=perm(os.lstat(scan.u(d))), type_old="dir", type_new="dir"))
    return out


# ---------------------------------------------------------------- diffs

def _side(path: str | None, kind: str | None) -> tuple[str, bytes | None]:
    """(description, content) of one side: content None when absent or not diffable."""
    if path is None or kind is None:
        return "absent", b""
    if kind == "symlink":
        return "symlink", os.fsencode(os.readlink(path))
    if kind == "file":
        st = os.lstat(path)
        if st.st_size > DIFF_LIMIT:
            return "large", None
        return "file", read_bytes(path)
    return kind, None


def _text_diff(a_name: str, b_name: str, a: bytes, b: bytes) -> str:
    a_lines = a.decode("utf-8").splitlines(keepends=True)
    b_lines = b.decode("utf-8").splitlines(keepends=True)
    out = []
    for line in difflib.unified_diff(a_lines, b_lines, a_name, b_name):
        if not line.endswith("\n"):
            line += "\n\\ No newline at end of file\n"
        out.append(line)
    return "".join(out)


def _decodable(data: bytes) -> bool:
    if b"\0" in data[:SNIFF_BYTES]:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _octal(kind: str | None, mode: int | None) -> str:
    base = {"file": 0o100000, "symlink": 0o120000, "dir": 0o040000}.get(kind or "", 0)
    return f"{base | (mode or 0):06o}"


def _content_diff(rel_a: str, rel_b: str, a_path, a_kind, b_path, b_kind) -> str:
    a_desc, a = _side(a_path, a_kind)
    b_desc, b = _side(b_path, b_kind)
    a_name = "/dev/null" if a_kind is None else f"a/{shown(rel_a)}"
    b_name = "/dev/null" if b_kind is None else f"b/{shown(rel_b)}"
    if a is None or b is None:
        if "large" in (a_desc, b_desc):
            return f"Files {a_name} and {b_name} differ (too large to diff)\n"
        return f"Files {a_name} ({a_desc}) and {b_name} ({b_desc}) differ\n"
    if a == b:
        return ""
    if not (_decodable(a) and _decodable(b)):
        return f"Binary files {a_name} and {b_name} differ\n"
    return _text_diff(a_name, b_name, a, b)


def _mode_lines(change: Change) -> str:
    return f"old mode {_octal(change.type_old, change.mode_old)}\nnew mode {_octal(change.type_new, change.mode_new)}\n"


def unified_diff(session, change: Change) -> str:
    """The change as a git-style unified diff (text), a one-line note for binary content."""
    real, upper = session.workspace, session.upper
    p = change.path
    head = f"diff --git a/{shown(change.old_path or p)} b/{shown(p)}\n"
    if change.kind == "mode":
        return head + _mode_lines(change)
    if change.kind == "renamed":
        text = head + f"rename from {shown(change.old_path)}\nrename to {shown(p)}\n"
        if change.mode_old != change.mode_new:
            text += _mode_lines(change)
        return text
    if change.kind == "deleted":
        if change.type_old == "dir":
            return _tree_diff(real, p)
        return head + f"deleted file mode {_octal(change.type_old, change.mode_old)}\n" + \
            _content_diff(p, p, os.path.join(real, p), change.type_old, None, None)
    if change.kind == "added":
        if change.type_new == "dir":
            return head + f"new directory mode {_octal('dir', change.mode_new)}\n"
        return head + f"new file mode {_octal(change.type_new, change.mode_new)}\n" + \
            _content_diff(p, p, None, None, os.path.join(upper, p), change.type_new)
    # modified
    if change.type_old != change.type_new:
        text = ""
        if change.type_old == "dir":
            text += _tree_diff(real, p)
        else:
            text += head + f"deleted file mode {_octal(change.type_old, change.mode_old)}\n" + \
                _content_diff(p, p, os.path.join(real, p), change.type_old, None, None)
        if change.type_new == "dir":
            text += head + f"new directory mode {_octal('dir', change.mode_new)}\n"
        else:
            text += head + f"new file mode {_octal(change.type_new, change.mode_new)}\n" + \
                _content_diff(p, p, None, None, os.path.join(upper, p), change.type_new)
        return text
    text = head
    if change.mode_old != change.mode_new and change.type_new != "symlink":
        text += _mode_lines(change)
    return text + _content_diff(p, p, os.path.join(real, p), change.type_old, os.path.join(upper, p), change.type_new)


def _tree_diff(real: str, rel: str) -> str:
    """Deletion diffs for every file under the real directory `rel`."""
    out = []
    for root, dirs, files in os.walk(os.path.join(real, rel)):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
            full = os.path.join(root, name)
            sub = os.path.relpath(full, real)
            st = os.lstat(full)
            t = ftype(st)
            mode = _octal(t, None if t == "symlink" else perm(st))
            out.append(f"diff --git a/{shown(sub)} b/{shown(sub)}\ndeleted file mode {mode}\n")
            out.append(_content_diff(sub, sub, full, t, None, None))
    if not out:
        out.append(f"diff --git a/{shown(rel)} b/{shown(rel)}\ndeleted directory\n")
    return "".join(out)


# ---------------------------------------------------------------- git directories

@dataclass
class GitSplit:
    """`list_changes` split by git directory: `plain` changes, and those inside a git directory
    (`internal`: {git dir relative to the workspace: changes}); `new_repos`: the git
    directories that do not exist in the real workspace (created in the session)."""

    plain: list[Change]
    internal: dict[str, list[Change]]
    new_repos: set[str]

    @property
    def internal_count(self) -> int:
        return sum(len(v) for v in self.internal.values())


def git_dir_of(rel: str, is_dir: bool, names_of) -> str | None:
    """The outermost git directory holding `rel` (or `rel` itself when it is one), or None.
    `names_of(rel_dir)`: the entries of a directory of the merged view."""
    from .protected import is_git_dir

    parts = rel.split("/")
    for i, name in enumerate(parts):
        if i == len(parts) - 1 and not is_dir:
            return None
        here = "/".join(parts[: i + 1])
        if name == ".git" or is_git_dir(name, names_of(here)):
            return here
    return None


def merged_names(session):
    """names_of(rel_dir): the entries of a directory in the merged view (upper and workspace), cached."""
    cache: dict[str, set[str]] = {}

    def names_of(rel_dir: str) -> set[str]:
        if rel_dir not in cache:
            out: set[str] = set()
            for base in (session.upper, session.workspace):
                try:
                    out.update(os.listdir(os.path.join(base, rel_dir) if rel_dir else base))
                except OSError:
                    pass
            cache[rel_dir] = out
        return cache[rel_dir]
    return names_of


def split_git(session, changes: list[Change]) -> GitSplit:
    names_of = merged_names(session)
    plain: list[Change] = []
    internal: dict[str, list[Change]] = {}
    for c in changes:
        where = None
        for p in c.paths:
            is_dir = (c.type_new if p == c.path else c.type_old) == "dir" or \
                (c.kind == "deleted" and c.type_old == "dir")
            where = git_dir_of(p, is_dir, names_of)
            if where is not None:
                break
        if where is None:
            plain.append(c)
        else:
            internal.setdefault(where, []).append(c)
    new = set()
    for gd in internal:
        try:
            st = os.lstat(os.path.join(session.workspace, gd))
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is None or not stat.S_ISDIR(st.st_mode):
            new.add(gd)
    return GitSplit(plain, internal, new)
