"""Finding secrets on disk: the walk, the reads and the scan cache (the I/O edge of `secrets`).

* `scan_tree`: every file below a root at any depth, hidden and git-ignored ones included,
  matched by name (`secrets.match_names`) and, for regular files up to `max_bytes` that are
  not binary, by content (`secrets.scan_text`). Symlinks are never followed: a link whose
  own name matches a rule is reported (`paths_to_deny` adds its target). `.git/objects` is
  not entered; `.git/config` is checked for credentials in remote URLs.
* `home_findings`: the well-known credential locations under a HOME that exist.
* `paths_to_deny`: what automatic denial makes unreadable on every `corral run`.

Rules of this module: it decides nothing about what a secret is (that is `secrets.py`), and
it never writes a secret value anywhere. The content cache
(`$XDG_CACHE_HOME/corral/scan/<sha256 of the root's realpath>.json`, mode 0600, replaced
atomically) maps each relative path to `[size, mtime_ns, ctime_ns, inode, verdict]`, where the
verdict is 0 (clean) or the list of kinds found. A file is read again unless all four stat
fields match; ctime cannot be set back by users, so an edit hidden by `touch -d` or
`os.utime` is still seen. Files changed within `RACY_NS` of the scan are not cached at all
(timestamps are coarse: an edit in the same clock tick as the read would otherwise keep them).
A cache that cannot be read or parsed, or was written for other signatures or limits, is
ignored and rebuilt. Beside it, `<sha256>.secrets.json` lists the files whose contents held a
secret at the last scan (kinds only): `paths_to_deny` reads that small file on every run
instead of the whole cache.
"""

from __future__ import annotations

import os

from .._values import field, frozen
from ..errors import SetupError
from . import secrets

MAX_BYTES = 1 << 20  # content scan limit per file
BINARY_PROBE = 8192  # a NUL in the first bytes: binary, not scanned
MAX_ENTRIES = 2_000_000
RACY_NS = 2_000_000_000
CACHE_VERSION = 1
_S_IFMT, _S_IFREG, _S_IFLNK = 0o170000, 0o100000, 0o120000
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DETAILS_MAX = 3  # content matches named per finding


@frozen
class Finding:
    path: str  # absolute
    kind: str  # "template" for env templates
    why: str
    source: str  # "name" | "content" | "template"
    details: str = ""  # line numbers and redacted previews; never a secret value
    target: str = field(default="", compare=False)  # a symlink's resolved target, if any

    @property
    def secret(self) -> bool:
        return self.source != "template"


@frozen
class ScanResult:
    root: str
    findings: tuple[Finding, ...]
    files_seen: int  # entries that are not directories
    seconds: float
    files_read: int = 0  # content reads (cache misses)
    skipped_large: int = 0
    unreadable: tuple[str, ...] = ()  # directories that could not be listed (relative)

    @property
    def secrets(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.secret)


def cache_path(root: str) -> str:
    """Where the content cache of `root` (a realpath) lives."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not base.startswith("/"):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    # A cheap name (hashlib costs ~4 ms to import); the file records its root, checked on load.
    return os.path.join(base, "corral", "scan", _digest(root.encode("utf-8", "surrogateescape")) + ".cache")


def _digest(data: bytes) -> str:
    import zlib

    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}{len(data):x}"


def _cache_tag(max_bytes: int) -> str:
    """Changes whenever a cached verdict could change meaning: signatures, limits."""
    return _digest(repr((CACHE_VERSION, secrets.SIGNATURES, secrets.PLACEHOLDER_WORDS,
                         secrets.TOKEN_MIN_ENTROPY, secrets.PEM_BODY_MIN_ENTROPY, max_bytes,
                         BINARY_PROBE)).encode())


# The cache is corral's own (0700 under XDG_CACHE_HOME, read-only inside every sandbox):
# marshal, a built-in, loads it without importing json and re on every run's start path.
_CACHE_MAGIC = b"corral-scan-cache-1\n"


def _load_cache(path: str, root: str, tag: str, key: str = "files") -> dict:
    import marshal

    try:
        with open(path, "rb") as f:
            data = f.read()
        if not data.startswith(_CACHE_MAGIC):
            return {}
        doc = marshal.loads(data[len(_CACHE_MAGIC):])
        if (isinstance(doc, dict) and doc.get("root") == root and doc.get("tag") == tag
                and isinstance(doc.get(key), dict)):
            return doc[key]
    except (OSError, ValueError, EOFError, TypeError, AttributeError, RecursionError):
        pass
    return {}


def _save_cache(path: str, root: str, tag: str, body: dict) -> None:
    import marshal

    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{os.path.dirname(path)}/.scan-{os.getpid()}-{os.urandom(4).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_CACHE_MAGIC + marshal.dumps({"root": root, "tag": tag, **body}))
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass  # a cache we cannot write costs time next run, never correctness


class _Reader:
    """Reads files into one reusable buffer (no allocation per file)."""

    def __init__(self, max_bytes: int) -> None:
        self.buf = bytearray(max_bytes + 1)
        self.view = memoryview(self.buf)

    def read(self, path: str, want: int = 0) -> int | None:
        """Bytes read into `buf`: `want` of them (the size seen by lstat: one read call for
        most files), else up to max_bytes + 1; None when the file cannot be opened. Opened
        with O_NOFOLLOW and O_NONBLOCK: a file swapped for a link or a FIFO since its lstat
        is not followed and cannot block the scan."""
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError:
            return None
        try:
            view = self.view
            want = want or len(view)
            got = 0
            while got < want:
                n = os.readv(fd, [view[got:want]])
                if not n:
                    break
                got += n
            return got
        except OSError:
            return None
        finally:
            os.close(fd)


def _content_finding(path: str, matches) -> list[Finding]:
    by_kind: dict[str, list] = {}
    for m in matches:
        by_kind.setdefault(m.kind, []).append(m)
    out = []
    for kind, ms in by_kind.items():
        shown = ", ".join(f"line {m.line}: {m.preview}" for m in ms[:_DETAILS_MAX])
        more = f" (+{len(ms) - _DETAILS_MAX} more)" if len(ms) > _DETAILS_MAX else ""
        out.append(Finding(path, kind, ms[0].why, "content", shown + more))
    return out


def _named_finding(path: str, rule: secrets.NameMatch, reader: _Reader, max_bytes: int,
                   is_link: bool) -> Finding | None:
    """The finding for a file whose name matched `rule`, reading it when the rule says so."""
    target = ""
    if is_link:
        target = os.path.realpath(path)
    if not rule.check:
        return Finding(path, rule.kind, rule.why, "name", "symlink" if is_link else "", target)
    n = reader.read(target or path)
    if n is None:
        return None if is_link else Finding(path, rule.kind, rule.why, "name", "unreadable: not checked")
    if n > max_bytes:
        return Finding(path, rule.kind, rule.why, "name", "too large to check", target)
    verdict = secrets.check_named(rule.check, bytes(reader.view[:n]))
    if verdict is None:
        return None
    what, detail = verdict
    if what == "template":
        return Finding(path, "template", "env template", "template", detail, target)
    return Finding(path, rule.kind, rule.why, "name", detail, target)


def _is_dir(entry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _secrets_path(cpath: str) -> str:
    return cpath[: -len(".cache")] + ".secrets.cache"


# Where the per-run denial does not read contents (names are still matched there): installed
# dependencies and tool caches, which are large, rebuilt by tools, and not where a user keeps
# credentials. `corral scan` reads everything.
DEPENDENCY_DIRS = frozenset((
    "node_modules", ".venv", "venv", "site-packages", "dist-packages", "__pycache__", ".git", ".cache",
    ".npm", ".yarn", ".pnpm-store", ".cargo", ".rustup", ".pyenv", ".nvm", ".gradle", ".m2", ".tox", ".nox",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".terraform",
))


def _walk(root: str, *, content: bool, cache: bool, max_bytes: int, details: bool,
          max_entries: int = MAX_ENTRIES, content_skip: frozenset = frozenset()) -> ScanResult:
    import time

    t0 = time.perf_counter()
    racy = time.time_ns() - RACY_NS
    root = os.path.realpath(root)
    try:
        st = os.stat(root)
    except OSError as exc:
        raise SetupError(f"cannot scan {root}: {exc.strerror}") from None
    if st.st_mode & _S_IFMT != 0o040000:
        raise SetupError(f"cannot scan {root}: not a directory")
    reader = _Reader(max_bytes)
    findings: list[Finding] = []
    unreadable: list[str] = []
    old: dict = {}
    new: dict = {}
    content_secrets: dict[str, list[str]] = {}
    cpath = tag = ""
    if content and cache:
        cpath, tag = cache_path(root), _cache_tag(max_bytes)
        old = _load_cache(cpath, root, tag)
    changed = False
    seen = files_seen = reads = large = 0
    links: dict[tuple[int, int], list[str]] = {}  # (dev, inode) -> paths, for files with nlink > 1
    secret_inodes: set[tuple[int, int]] = set()
    match_names = secrets.match_names
    dir_rules = secrets.DIR_RULES
    scan_text = secrets.scan_text
    lstat = os.lstat
    stack = [(root, "", True)]  # (directory, its path relative to root + "/", read contents?)
    while stack:
        top, rel, read_here = stack.pop()
        try:
            with os.scandir(top) as it:
                entries = list(it)
        except OSError:
            unreadable.append(rel.rstrip("/") or ".")
            continue
        try:
            names = [e.name for e in entries if not e.is_dir(follow_symlinks=False)]
        except OSError:  # no d_type and the entry vanished: list it as a file
            names = [e.name for e in entries if not _is_dir(e)]
        if len(names) != len(entries):  # the d_type answers are cached: no new syscalls
            seen += len(entries) - len(names)
            for e in entries:
                if not _is_dir(e):
                    continue
                name = e.name
                rule = dir_rules.get(name.lower())
                if rule is not None:
                    findings.append(Finding(e.path, rule.kind, rule.why, "name", "directory"))
                elif not (name == "objects" and (rel.startswith(".git/") or "/.git/" in rel)):
                    stack.append((e.path, rel + name + "/", read_here and name not in content_skip))
        seen += len(names)
        files_seen += len(names)
        if seen > max_entries:
            raise SetupError(f"{root} holds more than {max_entries} entries; corral cannot scan it for secrets",
                             "scan a smaller directory")
        if not names:
            continue
        skip: set[str] | tuple = ()
        named = match_names(rel[:-1], names)
        if named:
            skip = set()
            for name, rule in named:
                path = f"{top}/{name}"
                try:
                    st = lstat(path)
                except OSError:
                    continue
                skip.add(name)
                f = _named_finding(path, rule, reader, max_bytes, st.st_mode & _S_IFMT == _S_IFLNK)
                if f is not None:
                    findings.append(f)
                    if f.secret and st.st_nlink > 1:
                        secret_inodes.add((st.st_dev, st.st_ino))
                if st.st_nlink > 1:
                    links.setdefault((st.st_dev, st.st_ino), []).append(path)
        if not content or not read_here:
            continue
        for name in names:
            if name in skip:
                continue
            path = f"{top}/{name}"
            try:
                st = lstat(path)
            except OSError:
                continue
            if st.st_mode & _S_IFMT != _S_IFREG:
                continue
            if st.st_nlink > 1:  # another name for the same data may be a secret's
                links.setdefault((st.st_dev, st.st_ino), []).append(path)
            size = st.st_size
            if size == 0:
                continue
            if size > max_bytes:
                large += 1
                continue
            key = rel + name
            mt, ct, ino = st.st_mtime_ns, st.st_ctime_ns, st.st_ino
            entry = old.get(key)
            if (
                entry is not None and type(entry) is list and len(entry) == 5
                and entry[0] == size and entry[1] == mt and entry[2] == ct and entry[3] == ino
            ):
                verdict = entry[4]
                if type(verdict) is int and verdict == 0:
                    new[key] = entry
                    continue
                if type(verdict) is list and verdict and all(type(k) is str for k in verdict):
                    content_secrets[key] = verdict
                    if not details:
                        new[key] = entry
                        findings.extend(Finding(path, k, "", "content") for k in verdict)
                        if st.st_nlink > 1:
                            secret_inodes.add((st.st_dev, st.st_ino))
                        continue
            n = reader.read(path, size)
            if n is None:
                continue
            reads += 1
            buf = reader.buf
            if buf.find(b"\0", 0, min(n, BINARY_PROBE)) != -1:
                matches = []
            else:
                matches = scan_text(buf, n)
            verdict = 0
            if matches:
                found = _content_finding(path, matches)
                findings.extend(found)
                if st.st_nlink > 1:
                    secret_inodes.add((st.st_dev, st.st_ino))
                verdict = content_secrets[key] = sorted({f.kind for f in found})
            if mt < racy and ct < racy:
                value = [size, mt, ct, ino, verdict]
                if value != entry:
                    changed = True
                new[key] = value
            else:
                changed = True
    if content and cache:
        spath = _secrets_path(cpath)
        if changed or len(new) != len(old) or (not content_skip and not os.path.exists(spath)):
            _save_cache(cpath, root, tag, {"files": new})
            if not content_skip:  # a partial walk must not erase what a full scan recorded
                _save_cache(spath, root, tag, {"secrets": content_secrets})
    # Hard links: every name of a secret's data is a secret (`ln .env notes.txt`).
    found_paths = {f.path for f in findings}
    for inode in secret_inodes:
        for path in links.get(inode, ()):
            if path not in found_paths:
                findings.append(Finding(path, "hard-link", "another name (hard link) of a secret file", "name"))
                found_paths.add(path)
    findings.sort(key=lambda f: (f.path, f.kind))
    return ScanResult(root, tuple(findings), files_seen, time.perf_counter() - t0, reads, large,
                      tuple(unreadable))


def scan_tree(root: str, *, content: bool = True, cache: bool = True, max_bytes: int = MAX_BYTES,
              max_entries: int = MAX_ENTRIES) -> ScanResult:
    """Every secret (and env template) below `root`, by name and, with `content`, by content.
    `cache` reads and updates the content cache; without it nothing is read from or written
    to it. Raises SetupError past `max_entries` entries."""
    return _walk(root, content=content, cache=cache, max_bytes=max_bytes, details=True,
                 max_entries=max_entries)


def scan_files(paths: list[str], *, content: bool = True, max_bytes: int = MAX_BYTES) -> list[Finding]:
    """The findings for individual files (as pre-commit passes them): name rules decided by
    their path as given, then contents. No cache."""
    reader = _Reader(max_bytes)
    out: list[Finding] = []
    for path in paths:
        abspath = os.path.abspath(path)
        rel = os.path.normpath(path)
        try:
            st = os.lstat(abspath)
        except OSError:
            continue
        is_link = st.st_mode & _S_IFMT == _S_IFLNK
        rule = secrets.classify_name(rel)
        if rule is not None:
            f = _named_finding(abspath, rule, reader, max_bytes, is_link)
            if f is not None:
                out.append(f)
            continue
        if not content or st.st_mode & _S_IFMT != _S_IFREG or not 0 < st.st_size <= max_bytes:
            continue
        n = reader.read(abspath)
        if n is None or reader.buf.find(b"\0", 0, min(n, BINARY_PROBE)) != -1:
            continue
        out.extend(_content_finding(abspath, secrets.scan_text(reader.buf, n)))
    return out


# Relative to HOME; `*` entries list one directory. Each is classified by `secrets`, so a
# home `.npmrc` without a token or a `.docker/config.json` using a credential helper is not
# reported (the built-in policy denies these locations anyway; see policy/defaults.py).
HOME_LOCATIONS = (
    ".git-credentials", ".aws/credentials", ".config/gcloud/application_default_credentials.json",
    ".config/gcloud/credentials.db", ".config/gcloud/access_tokens.db", ".azure", ".gnupg",
    ".docker/config.json", ".kube/config", ".netrc", ".pgpass", ".my.cnf", ".vault-token",
    ".config/gh/hosts.yml", ".config/hub", ".npmrc", ".pypirc", ".yarnrc.yml", ".s3cfg",
    ".cargo/credentials", ".cargo/credentials.toml", ".gem/credentials",
    ".terraform.d/credentials.tfrc.json", ".ssh/*",
)


def home_findings(home: str) -> list[Finding]:
    """The credential locations under `home` that exist (and, for checked ones, hold one)."""
    home = home.rstrip("/") or "/"
    reader = None
    out: list[Finding] = []
    for rel in HOME_LOCATIONS:
        if rel.endswith("/*"):
            try:
                names = sorted(os.listdir(f"{home}/{rel[:-2]}"))
            except OSError:
                continue
            rels = [f"{rel[:-2]}/{n}" for n in names]
        else:
            rels = [rel]
        for r in rels:
            path = f"{home}/{r}"
            try:
                st = os.lstat(path)
            except OSError:
                continue
            is_dir = st.st_mode & _S_IFMT == 0o040000
            rule = secrets.classify_name(r, is_dir)
            if rule is None:
                continue
            if is_dir:
                out.append(Finding(path, rule.kind, rule.why, "name", "directory"))
                continue
            reader = reader or _Reader(MAX_BYTES)
            f = _named_finding(path, rule, reader, MAX_BYTES, st.st_mode & _S_IFMT == _S_IFLNK)
            if f is not None and f.secret:
                out.append(f)
    return out


def paths_to_deny(workspace: str, home: str, *, content: str = "cached") -> list[str]:
    """Absolute paths automatic denial makes unreadable: the secrets found in `workspace` and
    under `home`, plus the targets of secret-named symlinks. Templates are not included.

    `content` says how contents count, since the walk runs on every `corral run`:
    "cached" (default): names are matched afresh; content findings are those the last
    content scan of the workspace recorded (`corral scan`, or `scan_tree` run by the caller
    in the background), for files that still exist: no file is read or stat'ed beyond those.
    "full": every file outside DEPENDENCY_DIRS stat'ed, new and changed ones read (the
    cache keeps this cheap), plus the content findings of the last full scan.
    "off": names only."""
    if content not in ("cached", "full", "off"):
        raise ValueError(f"content must be 'cached', 'full' or 'off', not {content!r}")
    full = content == "full"
    result = _walk(workspace, content=full, cache=True, max_bytes=MAX_BYTES, details=False,
                   content_skip=DEPENDENCY_DIRS)
    out: list[str] = []
    for f in (*result.findings, *home_findings(home)):
        if f.secret:
            out.append(f.path)
            if f.target:
                out.append(f.target)
    if content in ("cached", "full"):  # plus what the last full scan found (dependency dirs too)
        root = result.root
        remembered = _load_cache(_secrets_path(cache_path(root)), root, _cache_tag(MAX_BYTES), "secrets")
        for rel in remembered:
            if type(rel) is not str or rel.startswith("/") or ".." in rel.split("/"):
                continue
            path = f"{root}/{rel}"
            if os.path.lexists(path):
                out.append(path)
    return sorted(set(out))
