"""Applying an overlay session's changes to the real workspace.

Rules of this module:

* **All-or-nothing prechecks.** Before anything is written, every selected change is checked:
  a *conflict* is a real path changed since the session began (its ctime is at or after
  `Session.started_ns`, and it is not a change apply itself made, see `applied.json`); a
  *dangerous* path is one `protected.rule_for` names anywhere along its components (rc
  files, git hooks, config and pointers, editor and agent config; git directories known by
  what they hold in the merged view). Either refuses the whole apply (`ApplyRefused`,
  listing them) unless `force` / `allow_dangerous`. A *new* git config (a repository cloned
  or initialised in the session) is not refused: the upper layer's copy is sanitised
  (`gitmeta`) just before the plan is made, and `ApplyResult.sanitised` says what went.
* **A journal before the first write.** The ordered plan (each write carries the sha256 of
  its source) is written to `<session>/apply.journal` and fsync'ed; each operation appends
  `{"done": i}` (fsync'ed) when it is durable. An apply that finds a journal resumes it
  first: operations recorded as done are verified against the journal (the real target must
  hold what the journal says was written), the others are redone — each operation is
  idempotent, so one that completed without its record is simply found complete. The journal
  is removed only when every operation is done and the upper layer has been pruned.
* **Atomic per file.** A file is written to a temporary file in the target directory,
  fsync'ed, given its mode and renamed over the target; a symlink likewise. A deleted
  directory is removed with an fd-based rmtree.
* **Never through a symlink.** The real tree is walked component by component from an fd on
  the workspace with O_NOFOLLOW|O_DIRECTORY; a symlink (or file) where a directory should be
  stops the apply with an error. Nothing is written outside the workspace.
* **Applied changes leave the upper layer.** After the journal completes, every upper entry
  that no longer makes a difference is removed ("pruned"), so `corral changes` shows what is
  left and the merged view of later runs is unchanged. Entries inside an opaque directory are
  kept while that directory still differs (removing them would hide the real files).
  The session itself stays, even when empty, until `corral discard`: runs may share it.

Git directories: changes inside an existing git directory (`.git/**`, submodules' git dirs,
bare repositories) are left out unless `include_git`; a repository created in the session
(its git directory is new) is applied whole, its config sanitised. A session's new commits are
fetched into the real repository as `refs/corral/<session>/...` instead (`gitcommits`), and the
working-tree paths those commits carry are left to git (`--ff` fast-forwards the checked-out
branch; otherwise the exact `git merge` command is printed).

Modes: permission bits only (setuid/setgid never applied). When apply runs as root, files it
creates take the owner of the file they replace, new entries the owner of their directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
import time
from dataclasses import dataclass, field

from ..display import shown
from ..errors import CorralError, UsageError
from . import gitmeta, protected
from .changes import Change, ftype, is_opaque, list_changes, merged_names, perm, sha256_file, split_git
from .sessions import fsync_dir

JOURNAL_VERSION = 1
CRASH_ENV = "CORRAL_APPLY_CRASH_AFTER"

# Why a protected path is dangerous: the words of `protected.TABLE` for the rule that matched.
# A new git config (a repository cloned or initialised in the session) is not refused: it is
# applied sanitised (see `gitmeta`); one that changed an existing file still is (sanitising
# it would drop the user's own keys). `*.sample` files in a hooks directory are never run.
SANITISED_RULES = frozenset({f"{protected.GITDIR}/config", f"{protected.GITDIR}/config.worktree"})
# The kind of file, by the program the table names first (anything else is agent config).
KIND_BY_PROGRAM = {
    "bash": "shell startup file", "sh/dash/bash": "shell startup file", "zsh": "shell startup file",
    "ksh": "shell startup file", "csh/tcsh": "shell startup file", "tcsh": "shell startup file",
    "direnv": "direnv file", "ripgrep": "search tool config", "VS Code/Cursor/Windsurf": "editor config",
    "JetBrains IDEs": "editor config", "Zed": "editor config", "Zed (~/.config/zed)": "editor config",
    "Dev Containers": "editor config",
}
KIND_BY_RULE = {
    f"{protected.GITDIR}/hooks": "git hook", f"{protected.GITDIR}/config": "git config",
    f"{protected.GITDIR}/config.worktree": "git config", ".gitconfig": "git config",
}


def why_dangerous(rule: str) -> str:
    """`shell startup file; bash: sourced by every interactive shell`"""
    text = protected.reason(rule)
    program = text.split(":")[0]
    kind = KIND_BY_RULE.get(rule) or KIND_BY_PROGRAM.get(program) or \
        ("git metadata" if program == "git" else "agent config")
    return f"{kind}; {text}"


class ApplyRefused(CorralError):
    """Nothing was changed: conflicts (without --force) or dangerous paths (without
    --allow-dangerous). `conflicts` and `dangerous` are lists of (path, reason)."""

    def __init__(self, conflicts, dangerous, unknown=()):
        self.conflicts = list(conflicts)
        self.dangerous = list(dangerous)
        parts = []
        if self.conflicts:
            parts.append(f"{len(self.conflicts)} conflict{'s' if len(self.conflicts) != 1 else ''} (--force to overwrite)")
        if self.dangerous:
            parts.append(f"{len(self.dangerous)} dangerous path{'s' if len(self.dangerous) != 1 else ''} "
                         "(--allow-dangerous to apply)")
        super().__init__("apply refused, nothing was changed: " + ", ".join(parts))


class ApplyError(CorralError):
    """An operation failed midway; the journal records how far apply got."""


@dataclass
class ApplyResult:
    applied: list[Change] = field(default_factory=list)  # changes applied by this call
    ops: list[dict] = field(default_factory=list)  # the plan (executed, or only printed with dry_run)
    resumed: int = 0  # operations of an interrupted apply that this call finished
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): cannot be applied
    sanitised: list[tuple[str, list[str]]] = field(default_factory=list)  # (path, removed keys): new git configs
    dry_run: bool = False
    git_left_out: dict[str, int] = field(default_factory=dict)  # {existing git dir: changes left out}
    new_repos: dict[str, int] = field(default_factory=dict)  # {git dir created in the session: changes applied}
    commits: list["CommitInfo"] = field(default_factory=list)


@dataclass
class CommitInfo:
    """A repository whose session commits were (or, with dry_run, would be) fetched."""

    gitdir: str  # relative to the workspace
    worktree: str | None  # the directory it tracks (None: bare / a submodule's git dir)
    refs: list[tuple[str, str]] = field(default_factory=list)  # (refs/corral/<session>/..., oid)
    count: int = 0  # commits not in the real repository before
    head_ref: str | None = None  # the corral ref of the session's HEAD commit
    real_branch: str | None = None  # the real repository's checked-out branch
    can_ff: bool = False  # the real HEAD is an ancestor of the session's HEAD commit
    up_to_date: bool = False  # the session's HEAD commit is already in the real HEAD
    covered: list[str] = field(default_factory=list)  # workspace paths the commits carry (not applied as files)
    already: bool = False  # every ref was fetched by an earlier apply, unchanged since
    ff_done: bool = False
    ff_error: str | None = None
    note: str | None = None  # why nothing was fetched
    # (path, why) of protected paths the commits would bring into the working tree (a planted
    # .bashrc, .envrc, .vscode/tasks.json committed inside the session): never fast-forwarded
    dangerous: list[tuple[str, str]] = field(default_factory=list)

    def merge_command(self, workspace: str) -> str | None:
        if self.head_ref is None or self.up_to_date or self.worktree is None:
            return None
        import shlex

        where = shlex.quote(os.path.join(workspace, self.worktree) if self.worktree else workspace)
        return f"git -C {where} merge {'--ff-only ' if self.can_ff else ''}{self.head_ref}"


# ---------------------------------------------------------------- selection and prechecks

def normalize_paths(session, paths) -> list[str]:
    """Paths relative to the workspace root (absolute paths must lie inside it)."""
    out = []
    for raw in paths:
        p = raw
        if os.path.isabs(p):
            p = os.path.normpath(p)
            if not _under(p, session.workspace):  # reached through a symlinked parent?
                p = os.path.join(os.path.realpath(os.path.dirname(p)), os.path.basename(p))
            p = os.path.relpath(p, session.workspace)
        p = os.path.normpath(p)
        if p == ".." or p.startswith("../") or os.path.isabs(p):
            raise UsageError(f"{raw!r} is outside the workspace {session.workspace}")
        out.append("" if p == "." else p)
    return out


def _under(path: str, prefix: str) -> bool:
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


def select(changes: list[Change], prefixes: list[str] | None) -> tuple[list[Change], list[str]]:
    """The changes under any of `prefixes` (all when None), plus the type changes of their
    ancestors (a file that became a directory must be applied before what is inside);
    also returns the prefixes that matched nothing."""
    if prefixes is None:
        return list(changes), []
    chosen = [c for c in changes if any(_under(p, pre) for p in c.paths for pre in prefixes)]
    unmatched = [pre for pre in prefixes if not any(_under(p, pre) for c in changes for p in c.paths)]
    ids = {id(c) for c in chosen}
    for c in changes:
        if id(c) not in ids and c.kind == "modified" and c.type_new == "dir" and \
                any(p.startswith(c.path + "/") for s in chosen for p in s.paths):
            chosen.append(c)
            ids.add(id(c))
    return sorted(chosen, key=lambda c: c.path), unmatched


def danger(workspace: str, rel: str, is_dir: bool, names_of=None) -> str | None:
    """Why `rel` (or one of its parent directories) is a protected path, or None.
    `names_of(rel_dir)`: the entries of a directory (to know git directories by what they
    hold); without it, only directories called `.git` are git directories."""
    rule, where = danger_rule(workspace, rel, is_dir, names_of)
    if rule is None:
        return None
    why = why_dangerous(rule)
    return why if where == rel else f"inside {shown(where)} ({why})"


def danger_rule(workspace: str, rel: str, is_dir: bool, names_of=None) -> tuple[str | None, str]:
    """(the `protected` rule that matched, the path it matched), or (None, "")."""
    parent = os.path.basename(workspace)
    parts = rel.split("/")
    for i, name in enumerate(parts):
        d = True if i < len(parts) - 1 else is_dir
        here = "/".join(parts[:i])
        names = names_of(here) if names_of is not None else ()
        in_git = protected.is_git_dir(parent, names)
        rule = protected.rule_for(f"{workspace}/{here}".rstrip("/"), name, d, in_git)
        if rule is not None:
            where = "/".join(parts[: i + 1])
            if rule == f"{protected.GITDIR}/hooks" and i == len(parts) - 2 and parts[-1].endswith(".sample") \
                    and not is_dir:
                return None, ""  # git never runs a sample hook
            return rule, where
        parent = name
    return None, ""


def _names_of(session):
    """Entries of a directory in the merged view (upper layer and real workspace), cached."""
    return merged_names(session)


def _load_applied(session) -> dict[str, int]:
    try:
        with open(session.applied, encoding="utf-8") as fh:
            data = json.load(fh)
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, int)}
    except (OSError, ValueError, AttributeError):
        return {}


def _changed_since(session, applied: dict[str, int], rel: str, st) -> bool:
    return st.st_ctime_ns >= session.started_ns and applied.get(rel) != st.st_ctime_ns


def conflicts(session, chosen: list[Change]) -> list[tuple[str, str]]:
    applied = _load_applied(session)
    found: list[tuple[str, str]] = []
    why = "changed in the workspace since the session began"
    for c in chosen:
        for rel in c.paths:
            real = os.path.join(session.workspace, rel)
            try:
                st = os.lstat(real)
            except (FileNotFoundError, NotADirectoryError):
                if c.kind == "added" and _copied_up(session, rel):
                    found.append((rel, "removed from the workspace since the session began"))
                continue
            if _changed_since(session, applied, rel, st):
                found.append((rel, why if c.kind != "added" else "created in the workspace since the session began"))
                continue
            if stat.S_ISDIR(st.st_mode) and (c.type_old == "dir" and c.type_new != "dir" or
                                             c.kind == "deleted" or (c.kind == "renamed" and rel == c.old_path)):
                hit = _changed_inside(session, applied, rel)
                if hit:
                    found.append((hit, why + f" (it would be removed with {shown(rel)}/)"))
    return sorted(set(found))


def _copied_up(session, rel: str) -> bool:
    """Did overlayfs copy this upper entry up from a workspace file (it records the origin)?"""
    try:
        os.getxattr(os.path.join(session.upper, rel), "user.overlay.origin", follow_symlinks=False)
        return True
    except OSError:
        return False


def _changed_inside(session, applied, rel: str) -> str | None:
    for root, dirs, files in os.walk(os.path.join(session.workspace, rel)):
        for name in sorted(dirs + files):
            full = os.path.join(root, name)
            sub = os.path.relpath(full, session.workspace)
            try:
                if _changed_since(session, applied, sub, os.lstat(full)):
                    return sub
            except FileNotFoundError:
                continue
    return None


def dangerous(session, chosen: list[Change], fixable: list | None = None) -> list[tuple[str, str]]:
    """[(path, why)] of the chosen changes that touch protected paths. With `fixable`, new git
    config files that `gitmeta` can sanitise are put there as (path, removed keys) instead."""
    found = []
    names_of = _names_of(session)
    for c in chosen:
        for rel in c.paths:
            is_dir = c.type_new == "dir" if rel == c.path else c.type_old == "dir"
            rule, where = danger_rule(session.workspace, rel, is_dir, names_of)
            if rule is None:
                continue
            if fixable is not None and rule in SANITISED_RULES and where == rel and c.kind == "added" \
                    and c.type_new == "file":
                removed = gitmeta.sanitise_config_file(os.path.join(session.upper, rel), write=False)
                if removed is not None:
                    fixable.append((rel, removed))
                    continue
            found.append((rel, danger(session.workspace, rel, is_dir, names_of)))
        if c.kind == "renamed" and c.is_dir:  # what moves in with the directory
            for sub, is_dir in _upper_tree(session, c.path):
                why = danger(session.workspace, sub, is_dir, names_of)
                if why:
                    found.append((sub, why))
    return sorted(set(found))


def _upper_tree(session, rel: str):
    base = os.path.join(session.upper, rel)
    for root, dirs, files in os.walk(base):
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(root, name)
            yield os.path.relpath(full, session.upper), os.path.isdir(full) and not os.path.islink(full)


# ---------------------------------------------------------------- the plan

def plan(session, chosen: list[Change]) -> tuple[list[dict], list[tuple[str, str]], list[Change]]:
    """Ordered operations: writes, creations and type changes (by path, so parents first),
    then deletions (deepest first), then directory modes (deepest first: a read-only
    directory gets its mode after its content). Returns (ops, skipped, planned changes)."""
    first: list[dict] = []
    deletes: list[dict] = []
    dirmodes: dict[str, int] = {}
    skipped: list[tuple[str, str]] = []
    planned: list[Change] = []
    upper = session.upper

    def create(rel: str, kind: str) -> dict:
        full = os.path.join(upper, rel)
        st = os.lstat(full)
        if kind == "file":
            return {"op": "write", "path": rel, "mode": perm(st), "size": st.st_size, "sha256": sha256_file(full)}
        if kind == "symlink":
            return {"op": "symlink", "path": rel, "target": os.readlink(full)}
        dirmodes[rel] = perm(st)
        return {"op": "mkdir", "path": rel}

    for c in chosen:
        for t in (c.type_old, c.type_new):
            if t not in (None, "file", "dir", "symlink"):
                skipped.append((c.path, f"a {t} cannot be applied"))
                break
        else:
            planned.append(c)
            if c.kind == "deleted":
                deletes.append({"op": "delete", "path": c.path})
            elif c.kind == "mode":
                if c.is_dir:
                    dirmodes[c.path] = c.mode_new
                else:
                    first.append({"op": "chmod", "path": c.path, "mode": c.mode_new})
            elif c.kind == "renamed":
                first.append(create(c.path, c.type_new))
                if c.is_dir:
                    for sub, _ in _upper_tree(session, c.path):
                        st = os.lstat(os.path.join(upper, sub))
                        if ftype(st) in ("file", "dir", "symlink"):
                            first.append(create(sub, ftype(st)))
                        elif not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0):
                            skipped.append((sub, f"a {ftype(st)} cannot be applied"))
                deletes.append({"op": "delete", "path": c.old_path})
            else:  # added, modified
                if c.kind == "modified" and c.type_old != c.type_new and "dir" in (c.type_old, c.type_new):
                    first.append({"op": "delete", "path": c.path})
                first.append(create(c.path, c.type_new))
    # directories created on the way to a new entry take their mode from the upper layer
    for op in first:
        parts = op["path"].split("/")[:-1]
        for i in range(1, len(parts) + 1):
            rel = "/".join(parts[:i])
            if rel not in dirmodes and not os.path.isdir(os.path.join(session.workspace, rel)):
                try:
                    dirmodes[rel] = perm(os.lstat(os.path.join(upper, rel)))
                except FileNotFoundError:
                    pass
    ops = first + sorted(deletes, key=lambda o: o["path"], reverse=True)
    ops += [{"op": "chmod", "path": rel, "mode": mode, "dir": True}
            for rel, mode in sorted(dirmodes.items(), key=lambda kv: (-kv[0].count("/"), kv[0]))]
    return ops, skipped, planned


def describe(op: dict) -> str:
    kind, path = op["op"], shown(op["path"])
    if kind == "write":
        return f"write   {path} (mode {op['mode']:04o}, {op['size']} bytes, sha256 {op['sha256'][:12]})"
    if kind == "symlink":
        return f"symlink {path} -> {shown(op['target'])}"
    if kind == "chmod":
        return f"chmod   {path}{'/' if op.get('dir') else ''} {op['mode']:04o}"
    if kind == "mkdir":
        return f"mkdir   {path}/"
    return f"delete  {path}"


# ---------------------------------------------------------------- the real tree, without following symlinks

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Tree:
    """The workspace, reached only through directory fds opened with O_NOFOLLOW."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.fd = os.open(root, _DIR_FLAGS)

    def close(self) -> None:
        os.close(self.fd)

    def parent(self, rel: str, create: bool):
        """(fd of the parent directory, final name), or None when a parent is missing and
        `create` is false. The caller closes the fd."""
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise ApplyError(f"refusing the path {rel!r}: not a plain relative path")
        fd = os.dup(self.fd)
        try:
            for i, comp in enumerate(parts[:-1]):
                try:
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    os.mkdir(comp, 0o700, dir_fd=fd)
                    _own_like_parent(fd, comp)
                    os.fsync(fd)
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    bad = "/".join(parts[: i + 1])
                    raise ApplyError(f"refusing to write {shown(rel)}: {shown(bad)} in the workspace is a symlink or not a "
                                     f"directory ({exc.strerror}); apply never follows symlinks") from None
                os.close(fd)
                fd = nfd
        except BaseException:
            try:
                os.close(fd)
            except OSError:
                pass
            raise
        return fd, parts[-1]


def _own_like_parent(dir_fd: int, name: str, like: os.stat_result | None = None) -> None:
    if os.geteuid() != 0:
        return
    ref = like or os.fstat(dir_fd)
    os.chown(name, ref.st_uid, ref.st_gid, dir_fd=dir_fd, follow_symlinks=False)


def _is_done(tree: _Tree, op: dict) -> bool:
    """Is the real tree already as this operation leaves it?"""
    kind = op["op"]
    try:
        got = tree.parent(op["path"], create=False)
    except ApplyError:
        return False
    if got is None:
        return kind == "delete"
    fd, name = got
    try:
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return kind == "delete"
        if kind == "mkdir":
            return stat.S_ISDIR(st.st_mode)
        if kind == "chmod":
            return not stat.S_ISLNK(st.st_mode) and perm(st) == op["mode"]
        if kind == "symlink":
            return stat.S_ISLNK(st.st_mode) and os.readlink(name, dir_fd=fd) == op["target"]
        if kind == "write":
            if not (stat.S_ISREG(st.st_mode) and perm(st) == op["mode"] and st.st_size == op["size"]):
                return False
            h = hashlib.sha256()
            ffd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
            try:
                while chunk := os.read(ffd, 1 << 20):
                    h.update(chunk)
            finally:
                os.close(ffd)
            return h.hexdigest() == op["sha256"]
        return False
    except OSError:
        return False
    finally:
        os.close(fd)


# ---------------------------------------------------------------- executing one operation

def _execute(session, tree: _Tree, op: dict, tmp: str) -> None:
    kind, rel = op["op"], op["path"]
    got = tree.parent(rel, create=kind in ("write", "symlink", "mkdir"))
    if got is None:  # a parent is missing: nothing to delete or chmod
        if kind == "delete":
            return
        raise ApplyError(f"{shown(rel)} is missing from the workspace")
    fd, name = got
    try:
        _remove_quietly(fd, tmp)
        if kind == "write":
            _write(session, fd, name, tmp, op)
        elif kind == "symlink":
            os.symlink(op["target"], tmp, dir_fd=fd)
            _own_like_parent(fd, tmp, _old_stat(fd, name))
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        elif kind == "mkdir":
            try:
                os.mkdir(name, 0o700, dir_fd=fd)
                _own_like_parent(fd, name)
            except FileExistsError:
                if not stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise ApplyError(f"cannot create the directory {shown(rel)}: something else is there") from None
        elif kind == "chmod":
            target = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            try:
                if stat.S_ISLNK(os.fstat(target).st_mode):
                    raise ApplyError(f"refusing to chmod {shown(rel)}: it is a symlink in the workspace")
                os.chmod(f"/proc/self/fd/{target}", op["mode"])
            finally:
                os.close(target)
        elif kind == "delete":
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
        else:
            raise ApplyError(f"unknown operation {kind!r} in the journal")
        os.fsync(fd)
    except OSError as exc:
        _remove_quietly(fd, tmp)
        raise ApplyError(f"{describe(op)}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _old_stat(fd: int, name: str):
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove_quietly(fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=fd)
    except FileNotFoundError:
        pass


def _write(session, fd: int, name: str, tmp: str, op: dict) -> None:
    src_tree = _Tree(session.upper)
    try:
        got = src_tree.parent(op["path"], create=False)
        if got is None:
            raise ApplyError(f"{shown(op['path'])} is gone from the session's upper layer")
        sfd, sname = got
        try:
            src = os.open(sname, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
        finally:
            os.close(sfd)
    finally:
        src_tree.close()
    h = hashlib.sha256()
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            raise ApplyError(f"{shown(op['path'])} in the session's upper layer is no longer a regular file")
        dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
        try:
            while chunk := os.read(src, 1 << 20):
                h.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(dst, view):]
            if h.hexdigest() != op["sha256"]:
                raise ApplyError(f"{shown(op['path'])} changed in the session's upper layer while being applied")
            os.fchmod(dst, op["mode"])
            if os.geteuid() == 0:
                ref = _old_stat(fd, name) or os.fstat(fd)
                os.fchown(dst, ref.st_uid, ref.st_gid)
                os.fchmod(dst, op["mode"])  # chown clears nothing we keep, but be explicit
            os.fsync(dst)
        finally:
            os.close(dst)
        os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
    except BaseException:
        _remove_quietly(fd, tmp)
        raise
    finally:
        os.close(src)


# ---------------------------------------------------------------- the journal

class _Journal:
    def __init__(self, path: str, jid: str, ops: list[dict], done: set[int]) -> None:
        self.path, self.id, self.ops, self.done = path, jid, ops, done

    @classmethod
    def create(cls, session, ops: list[dict]) -> "_Journal":
        jid = os.urandom(4).hex()
        head = {"version": JOURNAL_VERSION, "id": jid, "created_ns": time.time_ns(), "ops": ops}
        tmp = session.journal + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (json.dumps(head) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, session.journal)
        fsync_dir(session.dir)
        return cls(session.journal, jid, ops, set())

    @classmethod
    def load(cls, session) -> "_Journal | None":
        try:
            with open(session.journal, "rb") as fh:
                lines = fh.read().split(b"\n")
        except FileNotFoundError:
            return None
        try:
            head = json.loads(lines[0])
            ops = head["ops"]
            jid = head["id"]
            if head.get("version") != JOURNAL_VERSION or not isinstance(ops, list):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise ApplyError(f"the apply journal {session.journal} is unreadable; inspect the workspace, then "
                             "remove the journal to start over") from None
        done = set()
        for line in lines[1:]:
            try:  # a torn last line (crash while appending) is simply not a record
                rec = json.loads(line)
                done.add(int(rec["done"]))
            except (ValueError, KeyError, TypeError):
                continue
        return cls(session.journal, jid, ops, done)

    def mark(self, i: int) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.write(fd, (json.dumps({"done": i}) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self.done.add(i)

    def tmp_name(self, i: int) -> str:
        return f".corral-apply-{self.id}-{i}"

    def remove(self, session) -> None:
        os.unlink(self.path)
        fsync_dir(session.dir)


class _CrashHook:
    """Test hook: CORRAL_APPLY_CRASH_AFTER=N kills apply (os._exit(137), no cleanup) right after
    the N-th operation of this process is durable on disk, *before* it is recorded as done —
    the hardest moment for a resume. Used by tests/test_sessions.py; never set it otherwise."""

    def __init__(self) -> None:
        raw = os.environ.get(CRASH_ENV, "")
        self.after = int(raw) if raw.isdigit() else 0
        self.count = 0

    def tick(self) -> None:
        self.count += 1
        if self.after and self.count == self.after:
            sys.stderr.flush()
            os._exit(137)


def _run(session, journal: _Journal, force: bool, hook: _CrashHook) -> int:
    """Finish every operation of the journal; returns how many this call performed."""
    tree = _Tree(session.workspace)
    performed = 0
    try:
        last_for_path = {op["path"]: i for i, op in enumerate(journal.ops)}
        # done operations must still hold (unless a later one on the same path changed it)
        stale = [op["path"] for i, op in enumerate(journal.ops)
                 if i in journal.done and last_for_path[op["path"]] == i and not _is_done(tree, op)]
        if stale and not force:
            raise ApplyRefused([(p, "changed in the workspace after an interrupted apply wrote it") for p in stale], [])
        redo = {i for i, op in enumerate(journal.ops) if op["path"] in stale}
        for i, op in enumerate(journal.ops):
            if i in journal.done and i not in redo:
                continue
            if i not in redo and last_for_path[op["path"]] == i and _is_done(tree, op):
                # finished before a crash, but not recorded: verified, so record it
                journal.mark(i)
                continue
            _execute(session, tree, op, journal.tmp_name(i))
            performed += 1
            hook.tick()
            journal.mark(i)
    finally:
        tree.close()
    return performed


def _record_applied(session, ops: list[dict]) -> None:
    """Remember the ctimes apply gave to real paths, so they are not taken for conflicts."""
    applied = _load_applied(session)
    for op in ops:
        rel = op["path"]
        for p in (rel, os.path.dirname(rel)):
            if not p:
                continue
            try:
                applied[p] = os.lstat(os.path.join(session.workspace, p)).st_ctime_ns
            except (FileNotFoundError, NotADirectoryError):
                applied.pop(p, None)
    tmp = session.applied + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(applied, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, session.applied)


def prune_upper(session) -> None:
    """Remove from the upper layer every entry that no longer makes a difference."""
    needed: set[str] = set()
    for c in list_changes(session):
        for p in c.paths:
            parts = p.split("/")
            needed.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))

    def walk(rel: str) -> None:
        base = os.path.join(session.upper, rel) if rel else session.upper
        for name in os.listdir(base):
            p = f"{rel}/{name}" if rel else name
            full = os.path.join(base, name)
            st = os.lstat(full)
            if p not in needed:
                if stat.S_ISDIR(st.st_mode):
                    _rmtree_owned(full)
                else:
                    os.unlink(full)
            elif stat.S_ISDIR(st.st_mode) and not is_opaque(full):
                walk(p)

    walk("")


def _rmtree_owned(path: str) -> None:
    for root, dirs, _ in os.walk(path):
        for d in dirs:
            full = os.path.join(root, d)
            if not os.path.islink(full):
                os.chmod(full, stat.S_IRWXU)
    shutil.rmtree(path)


def _finish(session, journal: _Journal) -> None:
    _record_applied(session, journal.ops)
    prune_upper(session)
    journal.remove(session)


# ---------------------------------------------------------------- entry point

def apply(session, paths=None, force: bool = False, allow_dangerous: bool = False, dry_run: bool = False,
          include_git: bool = False, commits: bool | None = None, ff: bool = False) -> ApplyResult:
    """Apply the session's changes (all, or those under `paths`, relative to the workspace).
    `include_git`: also the files inside existing git directories (raw, as they are in the
    session). `commits`: fetch the session's new commits (None: when no `paths` are given and
    not `include_git`). `ff`: then fast-forward the real checked-out branch when possible."""
    if include_git and commits:
        raise UsageError("--commits and --include-git exclude each other: either the session's commits are "
                         "fetched, or its raw git files are copied")
    result = ApplyResult(dry_run=dry_run)
    hook = _CrashHook()
    with session.lock(exclusive=True):
        journal = _Journal.load(session)
        if journal is not None:
            if dry_run:
                result.ops = [op for i, op in enumerate(journal.ops) if i not in journal.done]
                result.resumed = len(result.ops)
                return result
            pending = len(journal.ops) - len(journal.done)
            _run(session, journal, force, hook)
            _finish(session, journal)
            result.resumed = pending
        prefixes = None if paths is None else normalize_paths(session, paths)
        changes = list_changes(session)
        use_commits = (prefixes is None if commits is None else commits) and not include_git
        stagings: list = []
        try:
            if not include_git:
                split = split_git(session, changes)
                changes = split.plain + [c for gd in sorted(split.new_repos) for c in split.internal[gd]]
                changes.sort(key=lambda c: c.path)
                result.git_left_out = {gd: len(v) for gd, v in split.internal.items() if gd not in split.new_repos}
                result.new_repos = {gd: len(split.internal[gd]) for gd in sorted(split.new_repos)}
                if use_commits and result.git_left_out:
                    changes = _stage_commits(session, sorted(result.git_left_out), changes, result, stagings)
            chosen, unmatched = select(changes, prefixes)
            if unmatched and not result.resumed:
                raise UsageError(f"no changes under {', '.join(p or '.' for p in unmatched)} in session "
                                 f"{session.name!r} (see `corral changes {session.name}`)")
            bad = [] if force else conflicts(session, chosen)
            fixable: list[tuple[str, list[str]]] = []
            risky = [] if allow_dangerous else dangerous(session, chosen, fixable)
            if bad or risky:
                raise ApplyRefused(bad, risky)
            if dry_run:
                result.sanitised = [(rel, removed) for rel, removed in fixable if removed]
                result.ops, result.skipped, _planned = plan(session, chosen) if chosen else ([], [], [])
                return result
            for staging, info in stagings:  # additive only: refs under refs/corral/<session>/
                info.refs = staging.fetch_into_real()
            for rel, removed in fixable:  # new git configs: applied with only their inert keys
                if removed and gitmeta.sanitise_config_file(os.path.join(session.upper, rel)) is None:
                    raise ApplyRefused([], [(rel, "git config that could not be sanitised")])
            result.sanitised = [(rel, removed) for rel, removed in fixable if removed]
            if chosen:
                ops, result.skipped, planned = plan(session, chosen)
                result.ops = ops
                if ops:
                    journal = _Journal.create(session, ops)
                    _run(session, journal, force, hook)
                    _finish(session, journal)
                result.applied = planned
            if ff:
                for staging, info in stagings:
                    _fast_forward(session, staging, info)
        finally:
            for staging, _info in stagings:
                staging.close()
    return result


def _stage_commits(session, gitdirs: list[str], changes: list[Change], result: ApplyResult, stagings: list):
    """Stage the new commits of each existing git directory; returns `changes` without the
    working-tree paths those commits carry."""
    from . import gitcommits

    for repo in gitcommits.repos_with_new_refs(session, gitdirs):
        info = CommitInfo(repo.rel, repo.worktree, real_branch=repo.real_branch)
        result.commits.append(info)
        why = repo.usable
        if why:
            info.note = why
            continue
        staging = gitcommits.Staging(repo)
        stagings.append((staging, info))
        info.refs = [(gitcommits.corral_ref(session.name, r), o) for r, o in staging.refs.items()]
        if not staging.refs:
            info.note = "its new refs point to objects the session does not hold"
            continue
        info.count = staging.count_new_commits()
        info.already = set(staging.refs) <= repo.fetched
        info.head_ref = repo.head_ref() if (repo.session_branch in staging.refs or "HEAD" in staging.refs) else None
        head = repo.session_head
        if info.head_ref is None or head is None:
            continue
        info.up_to_date = repo.real_head is not None and staging.is_ancestor(head, repo.real_head)
        info.can_ff = staging.is_ancestor(repo.real_head, head)
        if repo.worktree is None or info.up_to_date:
            continue
        base = staging.merge_base(head, repo.real_head)
        # What the commits change in the working tree, judged as the files applied one by one are
        # (a dangerous file committed inside the session must not arrive by a merge either).
        names_of = _names_of(session)
        for rel in staging.changed_paths(base or repo.real_head, head) if (base or repo.real_head) else ():
            wrel = f"{repo.worktree}/{rel}" if repo.worktree else rel
            why = danger(session.workspace, wrel, False, names_of)
            if why:
                info.dangerous.append((wrel, why))
        covered = gitcommits.covered_paths(changes, repo.worktree, session.upper, staging.tree(head),
                                           staging.tree(base), staging.object_format, session.workspace)
        info.covered = sorted(covered)
        changes = [c for c in changes if not covered.intersection(c.paths)]
    return changes


def _fast_forward(session, staging, info: CommitInfo) -> None:
    from . import gitcommits

    if info.head_ref is None or info.up_to_date or info.worktree is None:
        return
    if info.dangerous:
        n = len(info.dangerous)
        info.ff_error = (f"the session's commits bring {n} dangerous path{'s' if n != 1 else ''} into the working "
                         f"tree ({', '.join(shown(p) for p, _ in info.dangerous[:3])}{', ...' if n > 3 else ''}): "
                         f"not fast-forwarded; review them with `git diff HEAD {info.head_ref}` before any merge")
        return
    if not info.can_ff or info.real_branch is None:
        info.ff_error = ("the histories diverged (the host committed too): merge or rebase instead"
                         if info.real_branch is not None else "the real repository has a detached HEAD")
        return
    worktree = os.path.join(session.workspace, info.worktree) if info.worktree else session.workspace
    gitdir = os.path.join(session.workspace, info.gitdir)
    since = time.clock_gettime_ns(getattr(time, "CLOCK_REALTIME_COARSE", 5))
    try:
        proc = gitcommits.git(["--work-tree=" + worktree, "merge", "--ff-only", "-q", info.head_ref],
                              git_dir=gitdir, cwd=worktree, check=False)
    finally:  # launched by root on another user's repository: the files git wrote go to that user
        gitcommits.give_back(gitdir, os.lstat(gitdir), since)
        if staging.repo.real_head and staging.repo.session_head:
            gitcommits.give_back(worktree, os.lstat(worktree), since,
                                 staging.changed_paths(staging.repo.real_head, staging.repo.session_head))
    if proc.returncode == 0:
        info.ff_done = True
    else:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        info.ff_error = shown(lines[0] if lines else f"git merge exited {proc.returncode}")
