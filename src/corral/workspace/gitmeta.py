"""Git metadata written by a sandboxed command: keep what is inert, drop what runs or redirects.

A repository cloned or initialised inside the sandbox must stay usable on the host, but its
`.git/config` is read by the host's next `git status`. Instead of quarantining a new git config
as a whole, corral rewrites it with only the keys known to be inert (an allow-list: anything
not on it is dropped, so a key git learns next year is dropped too) and reports what it
removed. Other git files that redirect git (`commondir`, gitfiles, a worktree's pointers,
`objects/info/alternates`) are kept only when they are exactly what git itself writes and stay
inside the same repository; anything else is quarantined.

* `sanitise_config(text)`: pure. Parses git's config syntax conservatively (anything it does
  not fully understand makes the whole file suspect: None) and *re-serialises* the kept
  entries, so that what git reads afterwards is exactly what this parser understood; a
  comment, an odd quote or a continuation line cannot smuggle a dropped key past it.
* `sanitise_or_none(path, is_dir)`: the post-run hook. Returns the removed keys (the file was
  rewritten atomically, or kept as is when the list is empty), or None: quarantine it.

Parsing runs no git (git's own parser would be safe with `--file` and without `--includes`,
but a second process per file is not needed); tests compare this parser with `git config
--list --null` on every case of the table.
"""

from __future__ import annotations

import os
import stat

from . import protected

# Keys kept in a git config written inside the sandbox: section.key, or section.*.key for any
# subsection. Everything else is removed. These set repository format, identity, remotes and
# branches (what `git init`, `git clone`, `git submodule` and `git worktree` write) and a few
# plain preferences; none of them names a program, a file to read, or a place to connect to
# other than the remote's own URL.
KEEP = frozenset({
    # repository format: removing these would make git misread the repository
    "core.repositoryformatversion", "core.bare", "core.filemode", "core.symlinks",
    "core.ignorecase", "core.precomposeunicode", "core.logallrefupdates", "core.autocrlf",
    "core.eol", "core.safecrlf", "core.sparsecheckout", "core.sparsecheckoutcone",
    "core.quotepath", "core.checkstat", "core.trustctime", "core.untrackedcache",
    "core.splitindex", "core.commentchar", "core.commentstring", "core.abbrev",
    "core.compression", "core.loosecompression", "core.whitespace", "core.longpaths",
    "extensions.objectformat", "extensions.refstorage", "extensions.worktreeconfig",
    "extensions.partialclone", "extensions.preciousobjects", "extensions.noop",
    "index.version", "index.skiphash", "feature.manyfiles", "lfs.repositoryformatversion",
    # identity
    "user.name", "user.email", "author.name", "author.email", "committer.name", "committer.email",
    # remotes and branches (URLs are checked, see _value_ok)
    "remote.*.url", "remote.*.pushurl", "remote.*.fetch", "remote.*.push", "remote.*.tagopt",
    "remote.*.mirror", "remote.*.prune", "remote.*.prunetags", "remote.*.promisor",
    "remote.*.partialclonefilter", "remote.*.skipdefaultupdate", "remote.*.skipfetchall",
    "branch.*.remote", "branch.*.merge", "branch.*.rebase", "branch.*.pushremote",
    "branch.*.description",
    "submodule.*.url", "submodule.*.active", "submodule.*.branch", "submodule.*.ignore",
    "submodule.*.fetchrecursesubmodules", "submodule.active",
    # plain preferences
    "init.defaultbranch", "pull.rebase", "pull.ff", "push.default", "push.autosetupremote",
    "fetch.prune", "fetch.prunetags", "merge.conflictstyle", "merge.ff", "rebase.autosquash",
    "rebase.autostash", "diff.renames", "diff.algorithm", "status.showuntrackedfiles",
    "color.ui", "gc.auto", "gc.autodetach", "maintenance.auto",
})

# Why a removed key is dangerous, for the report (the allow-list decides, not this table).
# (section, key or "*" for any): words.
RUNS = "runs commands"
REDIRECTS = "redirects git"
WHY_REMOVED = {
    ("core", "fsmonitor"): RUNS, ("core", "hookspath"): RUNS, ("core", "sshcommand"): RUNS,
    ("core", "pager"): RUNS, ("core", "editor"): RUNS, ("core", "askpass"): RUNS,
    ("core", "gitproxy"): RUNS, ("core", "alternaterefscommand"): RUNS, ("sequence", "editor"): RUNS,
    ("alias", "*"): RUNS, ("filter", "*"): RUNS, ("diff", "textconv"): RUNS, ("diff", "command"): RUNS,
    ("merge", "driver"): RUNS, ("difftool", "cmd"): RUNS, ("mergetool", "cmd"): RUNS,
    ("credential", "*"): RUNS, ("gpg", "*"): RUNS, ("ssh", "variant"): RUNS,
    ("sendemail", "*"): RUNS, ("uploadpack", "*"): RUNS, ("receive", "*"): RUNS,
    ("remote", "uploadpack"): RUNS, ("remote", "receivepack"): RUNS, ("remote", "vcs"): RUNS,
    ("submodule", "update"): RUNS, ("pager", "*"): RUNS, ("web", "browser"): RUNS,
    ("browser", "*"): RUNS, ("man", "*"): RUNS, ("protocol", "*"): RUNS,
    ("include", "*"): REDIRECTS, ("includeif", "*"): REDIRECTS, ("core", "worktree"): REDIRECTS,
    ("url", "*"): REDIRECTS, ("http", "*"): REDIRECTS, ("https", "*"): REDIRECTS,
    ("core", "attributesfile"): REDIRECTS, ("core", "excludesfile"): REDIRECTS,
    ("remote", "proxy"): REDIRECTS, ("remote", "url"): REDIRECTS, ("remote", "pushurl"): REDIRECTS,
    ("submodule", "url"): REDIRECTS,
}
OTHER = "not known to be inert"
# Transports that run a command instead of connecting somewhere (`ext::sh -c ...`, `fd::`).
_COMMAND_TRANSPORTS = ("ext::", "fd::")


class ConfigSyntax(ValueError):
    """The text is not a git config this parser fully understands."""


def _is_key_char(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c == "-")


def parse_config(text: str) -> list[tuple[str, str | None, str, str | None]]:
    """[(section, subsection, key, value)] in file order. section and key are lower-cased
    (git compares them so), the subsection is kept (case matters), value None is git's
    "key with no `=`" (boolean true). Raises ConfigSyntax on anything not understood."""
    if "\0" in text:
        raise ConfigSyntax("NUL byte")
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\r\n", "\n")
    out: list[tuple[str, str | None, str, str | None]] = []
    section: str | None = None
    sub: str | None = None
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\n":
            i += 1
            continue
        if c in "#;":
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if c == "[":
            section, sub, i = _parse_header(text, i + 1)
            continue
        if not (c.isascii() and c.isalpha()):
            raise ConfigSyntax(f"unexpected {c!r}")
        if section is None:
            raise ConfigSyntax("key before any section")
        j = i
        while j < n and _is_key_char(text[j]):
            j += 1
        key = text[i:j].lower()
        while j < n and text[j] in " \t":
            j += 1
        if j >= n or text[j] == "\n":
            out.append((section, sub, key, None))
            i = j + 1
            continue
        if text[j] != "=":  # (git refuses a comment right after a key without `=`, too)
            raise ConfigSyntax(f"bad key line near {text[i:j + 1]!r}")
        value, i = _parse_value(text, j + 1)
        out.append((section, sub, key, value))
    return out


def _parse_header(text: str, i: int) -> tuple[str, str | None, int]:
    n = len(text)
    j = i
    while j < n and (_is_key_char(text[j]) or text[j] == "."):
        j += 1
    name = text[i:j]
    if not name or name.startswith(".") or name.endswith(".") or ".." in name:
        raise ConfigSyntax("bad section name")
    sub: str | None = None
    if j < n and text[j] == "]":
        j += 1
        if "." in name:  # deprecated [section.subsection]: subsection lower-cased by git
            name, _, legacy = name.partition(".")
            sub = legacy.lower()
    elif j < n and text[j] in " \t" and "." not in name:
        while j < n and text[j] in " \t":
            j += 1
        if j >= n or text[j] != '"':
            raise ConfigSyntax("bad section header")
        j += 1
        buf = []
        while True:
            if j >= n or text[j] == "\n":
                raise ConfigSyntax("unterminated subsection")
            c = text[j]
            if c == '"':
                j += 1
                break
            if ord(c) < 0x20 or ord(c) == 0x7F:
                raise ConfigSyntax("control character in a subsection")
            if c == "\\":
                j += 1
                if j >= n or text[j] == "\n":
                    raise ConfigSyntax("bad escape in subsection")
                c = text[j]
                if c not in '"\\':
                    raise ConfigSyntax("escape git reads differently across versions")
            buf.append(c)
            j += 1
        if j >= n or text[j] != "]":
            raise ConfigSyntax("bad section header")
        j += 1
        sub = "".join(buf)
    else:
        raise ConfigSyntax("bad section header")
    # git also accepts `key = value` after the header on the same line; not this parser
    while j < n and text[j] in " \t":
        j += 1
    if j < n and text[j] not in "\n#;":
        raise ConfigSyntax("text after a section header")
    return name.lower(), sub, j


_ESCAPES = {"n": "\n", "t": "\t", "b": "\b", '"': '"', "\\": "\\"}


def _parse_value(text: str, i: int) -> tuple[str, int]:
    """git's parse_value: quotes toggle, escapes, `\\` newline continues, comments end it
    outside quotes, whitespace outside quotes is trimmed at both ends and kept (each
    character as one space) inside."""
    n = len(text)
    buf: list[str] = []
    quoted = False
    spaces = 0
    while True:
        if i >= n:
            if quoted:
                raise ConfigSyntax("unterminated quote")
            return "".join(buf), i
        c = text[i]
        i += 1
        if c == "\n":
            if quoted:
                raise ConfigSyntax("newline inside quotes")
            return "".join(buf), i
        if not quoted and c in "#;":
            j = text.find("\n", i)
            return "".join(buf), (n if j < 0 else j + 1)
        if not quoted and c in " \t":
            if buf:
                spaces += 1
            continue
        if spaces:
            buf.append(" " * spaces)
            spaces = 0
        if c == "\\":
            if i >= n:
                raise ConfigSyntax("backslash at end of file")
            e = text[i]
            i += 1
            if e == "\n":
                continue  # continuation line
            if e not in _ESCAPES:
                raise ConfigSyntax(f"bad escape \\{e}")
            buf.append(_ESCAPES[e])
            continue
        if c == '"':
            quoted = not quoted
            continue
        if ord(c) < 0x20 or ord(c) == 0x7F:
            raise ConfigSyntax("control character in a value")
        buf.append(c)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") \
        .replace("\t", "\\t").replace("\b", "\\b") + '"'


def serialise(entries: list[tuple[str, str | None, str, str | None]]) -> str:
    """Canonical git config text for `entries` (as `parse_config` returns them)."""
    lines: list[str] = []
    current = None
    for section, sub, key, value in entries:
        if (section, sub) != current:
            current = (section, sub)
            if sub is None:
                lines.append(f"[{section}]")
            else:
                lines.append(f'[{section} "' + sub.replace("\\", "\\\\").replace('"', '\\"') + '"]')
        lines.append(f"\t{key}" if value is None else f"\t{key} = {_quote(value)}")
    return "\n".join(lines) + "\n" if lines else ""


def entry_name(section: str, sub: str | None, key: str) -> str:
    return f"{section}.{key}" if sub is None else f"{section}.{sub}.{key}"


def _kept(section: str, sub: str | None, key: str, value: str | None) -> bool:
    pattern = f"{section}.{key}" if sub is None else f"{section}.*.{key}"
    if pattern not in KEEP:
        return False
    if key in ("url", "pushurl") and value is not None:
        v = value.strip().lower()
        if v.startswith(_COMMAND_TRANSPORTS) or v.startswith("-"):
            return False
    if sub is not None and ("\n" in sub or not sub):
        return False
    return True


def why_removed(section: str, key: str) -> str:
    return WHY_REMOVED.get((section, key)) or WHY_REMOVED.get((section, "*")) or OTHER


def sanitise_config(text: str) -> tuple[str, list[tuple[str, str]]] | None:
    """(the config with only kept entries, [(removed name, why)]), or None when the text is
    not a config this parser fully understands (quarantine it)."""
    try:
        entries = parse_config(text)
    except ConfigSyntax:
        return None
    kept = []
    removed: list[tuple[str, str]] = []
    for section, sub, key, value in entries:
        if _kept(section, sub, key, value):
            kept.append((section, sub, key, value))
        else:
            item = (entry_name(section, sub, key), why_removed(section, key))
            if item not in removed:
                removed.append(item)
    return serialise(kept), removed


# ------------------------------------------------------------------ pointers (pure)

def commondir_ok(text: str) -> bool:
    """git writes `../..` into `<gitdir>/worktrees/<name>/commondir`: the repository itself."""
    return text.strip("\n") == "../.."


def gitfile_target(text: str) -> str | None:
    """The path of a gitfile (`gitdir: PATH`), or None when it is not one line of that form."""
    body = text[:-1] if text.endswith("\n") else text
    if "\n" in body or not body.startswith("gitdir: "):
        return None
    target = body[len("gitdir: "):]
    return target or None


def gitfile_ok(gitfile_dir: str, target: str) -> bool:
    """Does a gitfile in `gitfile_dir` pointing at `target` point where git itself would:
    `<A>/.git/modules/<name>` (a submodule) or `<A>/.git/worktrees/<name>` (a worktree),
    `<A>` being `gitfile_dir` or one of its ancestors? Lexical check (the caller checks that
    no symlink is on the way)."""
    full = os.path.normpath(os.path.join(gitfile_dir, target))
    parts = full.split("/")
    if parts.count(".git") != 1:
        return False
    k = parts.index(".git")
    owner = "/".join(parts[:k]) or "/"
    rest = parts[k + 1:]
    if not (owner == gitfile_dir or gitfile_dir.startswith(owner.rstrip("/") + "/")):
        return False
    if len(rest) == 2 and rest[0] == "worktrees":
        return True
    # .git/modules/<name>[/modules/<name>...], names may hold "/": at least one component
    return len(rest) >= 2 and rest[0] == "modules"


# ------------------------------------------------------------------ the post-run hook (I/O)

_MAX_READ = 1 << 20


def _read_small(path: str) -> str | None:
    from .safefile import read_single

    return read_single(path, _MAX_READ)


def _no_symlinks(path: str) -> bool:
    try:
        return os.path.realpath(path) == os.path.normpath(path)
    except OSError:
        return False


def _rewrite(path: str, text: str) -> bool:
    """Replace `path` with `text` atomically (same mode and owner), never through a symlink."""
    d, name = os.path.split(path)
    try:
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    tmp = f".{name}.corral-{os.urandom(4).hex()}"
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            return False
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            os.write(fd, text.encode("utf-8"))
            if os.geteuid() == 0:
                os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o777)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        return True
    except OSError:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        return False
    finally:
        os.close(dfd)


def _only_samples(path: str) -> bool:
    """A hooks directory holding only git's `*.sample` files (which git never runs)."""
    try:
        with os.scandir(path) as it:
            return all(e.name.endswith(".sample") and e.is_file(follow_symlinks=False) for e in it)
    except OSError:
        return False


def sanitise_config_file(path: str, write: bool = True) -> list[str] | None:
    """Sanitise the git config file at `path` in place (atomically; not when `write` is
    false). Returns the removed keys as `name (why)`, or None: not a regular, single-linked,
    UTF-8 config this parser understands, or it could not be rewritten."""
    text = _read_small(path)
    if text is None:
        return None
    result = sanitise_config(text)
    if result is None:
        return None
    new, removed = result
    if removed and write and not _rewrite(path, new):
        return None
    return [f"{n} ({why})" for n, why in removed]


def sanitise_or_none(path: str, is_dir: bool = False) -> list[str] | None:
    """Post-run hook for a protected entry the run created or replaced at `path`.

    Returns the names of the config keys removed (the file was rewritten in place; an empty
    list: kept as it is), or None: the caller quarantines it. Handles git metadata only;
    every other protected file gets None."""
    d, name = os.path.split(path)
    if not _no_symlinks(d):
        return None
    in_git = protected.is_git_dir(os.path.basename(d), _names(d))
    rule = protected.rule_for(d, name, is_dir, in_git)
    if rule is None:
        return None
    if rule == f"{protected.GITDIR}/hooks":
        return [] if is_dir and _only_samples(path) else None
    if is_dir:
        return None
    if rule in (f"{protected.GITDIR}/config", f"{protected.GITDIR}/config.worktree"):
        return sanitise_config_file(path)
    if rule == f"{protected.GITDIR}/commondir":
        text = _read_small(path)
        worktree_admin = os.path.basename(os.path.dirname(d)) == "worktrees"
        return [] if text is not None and worktree_admin and commondir_ok(text) else None
    if rule == f"{protected.GITDIR}/gitdir":
        # a worktree's back-pointer: used by `git worktree prune/repair`, names a `.git` file
        text = _read_small(path)
        worktree_admin = os.path.basename(os.path.dirname(d)) == "worktrees"
        if text is None or not worktree_admin:
            return None
        target = text.strip("\n")
        return [] if "\n" not in target and target.endswith("/.git") else None
    if rule == ".git":
        text = _read_small(path)
        target = gitfile_target(text) if text is not None else None
        if target is None or not gitfile_ok(d, target):
            return None
        full = os.path.normpath(os.path.join(d, target))
        if not _no_symlinks(full) or not os.path.isdir(full):
            return None
        return []
    return None


def _names(d: str):
    try:
        return set(os.listdir(d))
    except OSError:
        return set()


def report_line(path: str, removed: list[str]) -> str | None:
    """The line corral prints for a git file it sanitised after the run (None: nothing was
    removed, nothing to say). `removed` as `sanitise_or_none` returns it."""
    if not removed:
        return None
    groups: dict[str, list[str]] = {}
    for item in removed:
        name, _, why = item.rpartition(" (")
        groups.setdefault(why.rstrip(")"), []).append(name)
    return f"corral: sanitised {path}: removed " + "; ".join(
        f"{', '.join(names)} ({why})" for why, names in groups.items())
