"""A session's new commits, brought into the real repository as commits.

A command that runs `git commit` under the overlay leaves raw git files in the session's upper
layer: loose objects, a rewritten `refs/heads/main`, `index`, `logs/...`. Copying them over
the real `.git` would overwrite whatever the host did meanwhile (a `git status` rewrites the
index, a host commit moves the branch). Instead, `apply` leaves git directories out and fetches
the session's new commits into the real repository, as refs under
`refs/corral/<session>/heads/<branch>` (and `.../tags/<tag>`, `.../HEAD` for a detached HEAD),
then fast-forwards the checked-out branch only when asked (`--ff`), or prints the git command.

How, without running anything of the session's:

* **Refs are read as files**, never by git in the session's repository: the merged view of a
  git directory (upper layer over the real one: whiteouts delete, opaque directories hide the
  real entries, no symlink is followed) gives `packed-refs`, the loose refs and `HEAD`.
  Names must be plain (`REF_NAME`), values hexadecimal object ids.
* **A private bare repository** (`<session>/fetch-XXXX.git`, made by corral with
  `git init --bare --template=`, removed afterwards) receives a copy of the *regular files*
  under the upper layer's `objects/` whose names are loose objects or packs, and borrows the
  real repository's objects through `objects/info/alternates`. The session's own
  `objects/info/alternates`, commit-graph, multi-pack index and config are never read.
* **Every git process** runs with GIT_CONFIG_NOSYSTEM=1, GIT_CONFIG_GLOBAL=/dev/null, no
  GIT_* variable of the caller, `core.hooksPath=/dev/null`, `core.fsmonitor=false`, no
  automatic gc or maintenance, and `fetch.fsckObjects`/`transfer.fsckObjects` (a malformed
  object planted in the session is refused by git's checker). The real repository's own
  config is the user's and is read as usual.

Which working-tree changes the commits carry ("covered"): a path whose content in the session
equals its content in the session's HEAD commit, where that commit changed it relative to the
merge base with the real HEAD. `apply` leaves such paths to git (the merge brings them, and a
host-side change to them is git's to merge); everything else is applied as files.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess

from ..display import shown
from ..errors import CorralError
from .changes import is_opaque, is_whiteout

REF_NAME = re.compile(r"^refs/(heads|tags)/[A-Za-z0-9_+@=,][A-Za-z0-9._+@=,/-]{0,199}$")
OID = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
LOOSE = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{38}(?:[0-9a-f]{24})?$")
PACK = re.compile(r"^pack/pack-[0-9a-f]{40}(?:[0-9a-f]{24})?\.(?:pack|idx|rev)$")
SMALL = 1 << 20  # refs, packed-refs and HEAD larger than this are not read
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0",
           "GIT_LITERAL_PATHSPECS": "1", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
GIT_CONFIG = ("core.hooksPath=/dev/null", "core.fsmonitor=false", "protocol.file.allow=always",
              "safe.directory=*", "fetch.fsckObjects=true", "transfer.fsckObjects=true", "gc.auto=0",
              "maintenance.auto=false", "fetch.writeCommitGraph=false", "core.askPass=",
              "credential.helper=")


class GitError(CorralError):
    """A git command failed while bringing a session's commits in."""


def is_ref_name(name: str) -> bool:
    if not REF_NAME.match(name):
        return False
    parts = name.split("/")
    return not any(p == "" or p.startswith(".") or p.endswith(".lock") for p in parts) and ".." not in name \
        and "@{" not in name and not name.endswith((".", "/"))


def corral_ref(session_name: str, ref: str) -> str:
    """refs/heads/main -> refs/corral/<session>/heads/main; "HEAD" -> refs/corral/<session>/HEAD."""
    return f"refs/corral/{session_name}/{ref[5:] if ref.startswith('refs/') else ref}"


# ---------------------------------------------------------------- the merged view, as files

class View:
    """A git directory as seen through the overlay: `upper` (or None) over `lower` (or None)."""

    def __init__(self, upper: str | None, lower: str | None) -> None:
        self.upper, self.lower = upper, lower

    def _resolve(self, rel: str):
        """(path, lstat, lower_shows) of `rel` in the merged view, or None; `lower_shows`: do
        the real directory's entries show through here (no opaque directory on the way)?
        No symlink is followed, in either layer."""
        parts = [p for p in rel.split("/") if p]
        lower_shows = self.lower is not None
        found = None
        if self.upper is not None:
            path = self.upper
            for i, comp in enumerate(parts):
                path = os.path.join(path, comp)
                try:
                    st = os.lstat(path)
                except (FileNotFoundError, NotADirectoryError):
                    break
                if is_whiteout(st):
                    return None
                if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
                    return None
                if stat.S_ISDIR(st.st_mode) and is_opaque(path):
                    lower_shows = False
                if i == len(parts) - 1:
                    found = (path, st)
            else:
                if not parts:
                    try:
                        found = (self.upper, os.lstat(self.upper))
                    except FileNotFoundError:
                        found = None
        lower_found = None
        if self.lower is not None and lower_shows:
            path = self.lower
            lower_found = (path, os.lstat(path)) if os.path.isdir(path) else None
            for i, comp in enumerate(parts):
                path = os.path.join(path, comp)
                try:
                    st = os.lstat(path)
                except (FileNotFoundError, NotADirectoryError):
                    lower_found = None
                    break
                if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
                    lower_found = None
                    break
                lower_found = (path, st)
        if found is not None:
            shows = lower_shows and lower_found is not None and stat.S_ISDIR(found[1].st_mode) \
                and stat.S_ISDIR(lower_found[1].st_mode)
            return found[0], found[1], shows
        if lower_found is not None:
            return lower_found[0], lower_found[1], stat.S_ISDIR(lower_found[1].st_mode)
        return None

    def read(self, rel: str) -> bytes | None:
        found = self._resolve(rel)
        if found is None or not stat.S_ISREG(found[1].st_mode) or found[1].st_size > SMALL:
            return None
        try:
            fd = os.open(found[0], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            return os.read(fd, SMALL + 1)[:SMALL]
        finally:
            os.close(fd)

    def listdir(self, rel: str) -> dict[str, bool]:
        """{name: is_dir} of a directory of the merged view."""
        found = self._resolve(rel)
        if found is None or not stat.S_ISDIR(found[1].st_mode):
            return {}
        path, _st, lower_shows = found
        out: dict[str, bool] = {}
        hidden: set[str] = set()
        layers = []
        if self.upper is not None and (path == self.upper or path.startswith(self.upper.rstrip("/") + "/")):
            layers.append(path)
            if lower_shows:
                layers.append(os.path.join(self.lower, rel) if rel else self.lower)
        else:
            layers.append(path)
        for layer in layers:
            for name in sorted(os.listdir(layer)):
                if name in out or name in hidden:
                    continue
                st = os.lstat(os.path.join(layer, name))
                if is_whiteout(st):
                    hidden.add(name)
                else:
                    out[name] = stat.S_ISDIR(st.st_mode)
        return out


def parse_packed_refs(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        if not line or line[0] in "#^":
            continue
        oid, _, name = line.partition(" ")
        if OID.match(oid) and is_ref_name(name):
            out[name] = oid
    return out


def read_refs(view: View) -> dict[str, str]:
    """Branches and tags of a git directory: packed-refs overlaid with the loose refs."""
    refs = parse_packed_refs(view.read("packed-refs") or b"")
    stack = ["refs/heads", "refs/tags"]
    while stack:
        rel = stack.pop()
        for name, is_dir in sorted(view.listdir(rel).items()):
            path = f"{rel}/{name}"
            if is_dir:
                if path.count("/") < 20:
                    stack.append(path)
                continue
            value = (view.read(path) or b"").decode("ascii", "replace").strip()
            if is_ref_name(path) and OID.match(value):
                refs[path] = value
    return refs


def read_head(view: View, refs: dict[str, str]) -> tuple[str | None, str | None]:
    """(branch ref or None when detached, commit id or None when unborn)."""
    text = (view.read("HEAD") or b"").decode("ascii", "replace").strip()
    if text.startswith("ref: "):
        ref = text[5:].strip()
        return (ref if is_ref_name(ref) else None), refs.get(ref)
    return None, text if OID.match(text) else None


# ---------------------------------------------------------------- what the session committed

class Repo:
    """One git directory of the workspace that exists in the real tree and changed in the
    session: its refs on both sides."""

    def __init__(self, session, gitdir_rel: str) -> None:
        self.session = session
        self.rel = gitdir_rel
        self.real = os.path.join(session.workspace, gitdir_rel)
        upper = os.path.join(session.upper, gitdir_rel)
        self.view = View(upper, self.real)
        self.real_view = View(None, self.real)
        self.session_refs = read_refs(self.view)
        self.real_refs = read_refs(self.real_view)
        self.session_branch, self.session_head = read_head(self.view, self.session_refs)
        self.real_branch, self.real_head = read_head(self.real_view, self.real_refs)
        self.new_refs = {r: o for r, o in sorted(self.session_refs.items()) if self.real_refs.get(r) != o}
        if self.session_branch is None and self.session_head and self.session_head != self.real_head \
                and self.session_head not in self.new_refs.values():
            self.new_refs["HEAD"] = self.session_head  # a detached HEAD's commits
        # refs an earlier apply already fetched, unchanged since (loose refs/corral/<session>/...)
        self.fetched = {r for r, o in self.new_refs.items()
                        if (self.real_view.read(corral_ref(session.name, r)) or b"").decode("ascii", "replace").strip() == o}
        # the directory whose files the repository tracks (None: bare or a submodule's git dir)
        self.worktree = os.path.dirname(gitdir_rel) if os.path.basename(gitdir_rel) == ".git" else None

    @property
    def usable(self) -> str | None:
        """Why the commits cannot be fetched, or None."""
        if not os.path.isdir(os.path.join(self.real, "objects")) or os.path.islink(self.real):
            return "the real git directory has no objects directory of its own (a linked worktree?)"
        if os.path.lexists(os.path.join(self.real, "reftable")):
            return "reftable repositories are not supported"
        return None

    def head_ref(self) -> str | None:
        """The corral ref of the session's HEAD commit (what a merge would bring in)."""
        if self.session_head is None or self.session_head == self.real_head:
            return None
        if self.session_branch in self.new_refs:
            return corral_ref(self.session.name, self.session_branch)
        if "HEAD" in self.new_refs:
            return corral_ref(self.session.name, "HEAD")
        return None


def repos_with_new_refs(session, gitdirs) -> list[Repo]:
    out = []
    for rel in sorted(gitdirs):
        repo = Repo(session, rel)
        if repo.new_refs:
            out.append(repo)
    return out


# ---------------------------------------------------------------- running git safely

def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_ENV)
    return env


def git(args: list[str], git_dir: str | None = None, cwd: str | None = None, input: bytes | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    argv = ["git"]
    for item in GIT_CONFIG:
        argv += ["-c", item]
    if git_dir is not None:
        argv.append(f"--git-dir={git_dir}")
    argv += args
    try:
        proc = subprocess.run(argv, cwd=cwd or "/", env=git_env(), input=input, capture_output=True, timeout=600)
    except FileNotFoundError:
        raise GitError("git is not installed: the session's commits cannot be fetched "
                       "(--no-commits applies their files instead)") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} took more than 10 minutes") from None
    if check and proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed: {shown(msg[-1] if msg else str(proc.returncode))}")
    return proc


def _copy_file(src: str, dst: str) -> None:
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444)
        try:
            while chunk := os.read(fd, 1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view):]
        finally:
            os.close(out)
    finally:
        os.close(fd)


class Staging:
    """The private bare repository holding the session's objects, the real ones borrowed."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.path = os.path.join(repo.session.dir, f"fetch-{os.urandom(4).hex()}.git")
        fmt = git(["rev-parse", "--show-object-format"], git_dir=repo.real, check=False)
        self.object_format = fmt.stdout.decode().strip() if fmt.returncode == 0 else "sha1"
        if self.object_format not in ("sha1", "sha256"):
            raise GitError(f"{shown(repo.real)}: unknown object format {shown(self.object_format)}")
        try:
            git(["init", "--bare", "-q", "--template=", f"--object-format={self.object_format}", self.path])
            self._copy_objects()
            real_objects = os.path.realpath(os.path.join(repo.real, "objects"))
            with open(os.path.join(self.path, "objects", "info", "alternates"), "w", encoding="utf-8") as fh:
                fh.write(real_objects + "\n")
            self.refs = self._set_refs()
        except BaseException:
            self.close()
            raise

    def _copy_objects(self) -> None:
        base = os.path.join(self.repo.session.upper, self.repo.rel, "objects")
        if not os.path.isdir(base) or os.path.islink(base):
            return
        dest = os.path.join(self.path, "objects")
        for root, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
            for name in files:
                full = os.path.join(root, name)
                rel = os.path.relpath(full, base)
                if LOOSE.match(rel) or PACK.match(rel):
                    _copy_file(full, os.path.join(dest, rel))
        # a pack without its index (or the reverse) is useless and would only make git complain
        packs = os.path.join(dest, "pack")
        if os.path.isdir(packs):
            names = set(os.listdir(packs))
            for name in names:
                stem = name.rsplit(".", 1)[0]
                if f"{stem}.pack" not in names or f"{stem}.idx" not in names:
                    os.unlink(os.path.join(packs, name))

    def _set_refs(self) -> dict[str, str]:
        """Write the session's new refs into the staging repository (commits and tags only,
        whose objects exist); returns {session ref: oid} of those written."""
        wanted = dict(self.repo.new_refs)
        if not wanted:
            return {}
        oids = sorted(set(wanted.values()))
        proc = git(["cat-file", "--batch-check"], git_dir=self.path, input="".join(o + "\n" for o in oids).encode())
        kinds = {}
        for line in proc.stdout.decode("ascii", "replace").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                kinds[parts[0]] = parts[1]
        ok = {r: o for r, o in wanted.items() if kinds.get(o) in ("commit", "tag")}
        lines = "".join(f"update refs/s/{r}\0{o}\0\0" for r, o in ok.items())
        if ok:
            git(["update-ref", "-z", "--stdin"], git_dir=self.path, input=lines.encode())
        return ok

    def count_new_commits(self) -> int:
        tips = sorted(set(self.refs.values()))
        if not tips:
            return 0
        known = sorted(set(self.repo.real_refs.values()) | ({self.repo.real_head} if self.repo.real_head else set()))
        stdin = "".join(t + "\n" for t in tips) + "".join(f"^{k}\n" for k in known)
        proc = git(["rev-list", "--count", "--stdin"], git_dir=self.path, input=stdin.encode(), check=False)
        try:
            return int(proc.stdout.decode().strip() or 0)
        except ValueError:
            return 0

    def tree(self, commit: str | None) -> dict[str, tuple[str, str]]:
        """{path: (mode, oid)} of every file of a commit's tree (empty for None)."""
        if not commit:
            return {}
        proc = git(["ls-tree", "-r", "-z", "--full-tree", commit], git_dir=self.path)
        out = {}
        for item in proc.stdout.split(b"\0"):
            if not item:
                continue
            meta, _, path = item.partition(b"\t")
            mode, _kind, oid = meta.decode().split(" ")
            out[os.fsdecode(path)] = (mode, oid)
        return out

    def changed_paths(self, a: str, b: str) -> list[str]:
        proc = git(["diff", "--name-only", "--no-renames", "-z", a, b], git_dir=self.path, check=False)
        return [os.fsdecode(p) for p in proc.stdout.split(b"\0") if p]

    def merge_base(self, a: str, b: str | None) -> str | None:
        if not b:
            return None
        proc = git(["merge-base", a, b], git_dir=self.path, check=False)
        return proc.stdout.decode().strip() or None

    def is_ancestor(self, a: str | None, b: str) -> bool:
        if not a:
            return True
        return git(["merge-base", "--is-ancestor", a, b], git_dir=self.path, check=False).returncode == 0

    def fetch_into_real(self) -> list[tuple[str, str]]:
        """Fetch the staged refs into the real repository as refs/corral/<session>/...;
        returns [(corral ref, oid)]."""
        if not self.refs:
            return []
        import time

        specs = [f"+refs/s/{r}:{corral_ref(self.repo.session.name, r)}" for r in self.refs]
        since = time.clock_gettime_ns(getattr(time, "CLOCK_REALTIME_COARSE", 5))
        try:
            git(["fetch", "-q", "--no-tags", "--no-write-fetch-head", "--no-auto-gc", "--no-recurse-submodules",
                 self.path, *specs], git_dir=self.repo.real)
        finally:
            give_back(self.repo.real, os.lstat(self.repo.real), since)
        return [(corral_ref(self.repo.session.name, r), o) for r, o in self.refs.items()]

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def give_back(top: str, owner, since_ns: int, names=None) -> None:
    """Run as root on someone else's repository, git leaves what it wrote owned by root: give
    every entry created or changed since `since_ns` under `top` (or only `names`, relative to
    it, with their parent directories) to `owner` (a stat result: uid, gid). No symlink is
    followed."""
    if os.geteuid() != 0 or owner.st_uid == 0:
        return

    def fix(path: str) -> None:
        try:
            st = os.lstat(path)
        except OSError:
            return
        if st.st_uid == 0 and st.st_ctime_ns >= since_ns:
            os.lchown(path, owner.st_uid, owner.st_gid)

    if names is None:
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                fix(os.path.join(root, name))
        return
    done: set[str] = set()
    for rel in names:
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub not in done:
                done.add(sub)
                fix(os.path.join(top, sub))


# ---------------------------------------------------------------- which working-tree changes the commits carry

def blob_id(data: bytes, object_format: str) -> str:
    h = hashlib.sha256() if object_format == "sha256" else hashlib.sha1()
    h.update(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def session_entry(upper_path: str, object_format: str) -> tuple[str, str] | None:
    """(git mode, blob id) of a file or symlink of the upper layer, None otherwise."""
    st = os.lstat(upper_path)
    if stat.S_ISLNK(st.st_mode):
        return "120000", blob_id(os.fsencode(os.readlink(upper_path)), object_format)
    if not stat.S_ISREG(st.st_mode):
        return None
    from .changes import read_bytes

    mode = "100755" if st.st_mode & 0o100 else "100644"
    return mode, blob_id(read_bytes(upper_path), object_format)


def _deleted_dir_covered(workspace: str, rel: str, inner: str, tree_new: dict, tree_base: dict) -> bool:
    """A directory the session deleted: covered when the commit deletes every file of it that
    the real directory holds (all tracked at the merge base, none left in the commit)."""
    if any(p.startswith(inner + "/") for p in tree_new):
        return False
    top = os.path.join(workspace, rel)
    for root, dirs, files in os.walk(top):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            sub = os.path.relpath(os.path.join(root, name), top)
            if f"{inner}/{sub}" not in tree_base:
                return False
    return True


def covered_paths(changes, worktree_rel: str, upper: str, tree_new: dict, tree_base: dict,
                  object_format: str, workspace: str | None = None) -> set[str]:
    """The workspace paths (of `changes`) whose session state is exactly what the commit
    brings: the commit changed them (relative to the merge base), and the session's content is
    the commit's. A deleted directory is covered when the commit deletes all it holds; other
    directory changes never are (applied as files)."""
    prefix = worktree_rel + "/" if worktree_rel else ""
    covered: set[str] = set()
    for c in changes:
        if c.kind == "deleted" and c.type_old == "dir" and workspace is not None and c.path.startswith(prefix):
            if _deleted_dir_covered(workspace, c.path, c.path[len(prefix):], tree_new, tree_base):
                covered.add(c.path)
            continue
        if c.is_dir or c.type_new == "dir" or c.type_old == "dir":
            continue
        ok = True
        for rel in c.paths:
            if not rel.startswith(prefix):
                ok = False
                break
            inner = rel[len(prefix):]
            gone = c.kind == "deleted" or (c.kind == "renamed" and rel == c.old_path)
            state = None if gone else session_entry(os.path.join(upper, rel), object_format)
            if (not gone and state is None) or tree_new.get(inner) != state or tree_new.get(inner) == tree_base.get(inner):
                ok = False
                break
        if ok:
            covered.update(c.paths)
    return covered
