"""Workspace mode "copy": a filtered staging copy of the working directory.

Patterns come from `.corralignore` (else `.dockerignore`), in gitignore syntax; secret files
(`corral scan`) are never copied. Data is copied, never hard-linked: the command's writes
must not reach the originals.

The ignore file is hostile input: a bind-mode run may have written it (or planted it as a
symlink, a FIFO, a directory, a huge or binary file, invalid or catastrophically slow
patterns) for a later copy-mode run to read. Every such file stops the run with one line
naming the file, the line and the fix (`IgnoreFileError`), never a traceback, a hang or a
silent fallback to copying what the user meant to leave out:

  * it is opened without following symlinks and without blocking, and must be a regular
    file of at most MAX_BYTES with no NUL byte (bytes that are not UTF-8 are kept as-is,
    like git, so they match the same non-UTF-8 file names);
  * at most MAX_PATTERNS patterns of at most MAX_PATTERN_CHARS characters, each one parsed
    on its own so that an invalid one is named with its line number;
  * a pattern compiles to a backtracking regular expression whose worst case grows like
    (segment length)^(repeats within a name) * (path length)^(repeats across `/`):
    `*a*a*a*a*a*b` against a long name of `a`s, or `**/a/**/a/**/b` against a deep path of
    `a/a/a/...`, take minutes. A pattern may have at most MAX_REPEATS unbounded repeats
    (each `*`, each `**`, and the implicit `**/` in front of a pattern without a slash), at
    most MAX_CROSS of them across `/` (`**` between slashes, the implicit `**/`): measured,
    that keeps one match under about two seconds for any path the kernel accepts. And all
    matching together must finish within MATCH_BUDGET seconds (a huge tree times many
    patterns, or an adversary's file names made to be slow).
"""

from __future__ import annotations

import os
import shutil
import stat
import time

from ..errors import SetupError

IGNORE_FILES = (".corralignore", ".dockerignore")

MAX_BYTES = 256 * 1024
MAX_PATTERNS = 2000
MAX_PATTERN_CHARS = 1024
MAX_REPEATS = 4
MAX_CROSS = 2
MATCH_BUDGET = 20.0  # seconds, for the whole tree

_FIX = "edit or remove the file (a sandboxed command may have written it)"


class IgnoreFileError(SetupError):
    """The workspace's ignore file cannot be used safely; the run stops."""

    def __init__(self, path: str, why: str, fix: str = _FIX):
        from ..display import shown

        super().__init__(f"workspace mode copy: {shown(path)}: {why}", fix)


def _read_ignore_file(path: str) -> bytes | None:
    """The file's bytes; None when there is no such entry. Raises IgnoreFileError for
    anything that is not a small regular file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IgnoreFileError(path, f"cannot inspect it ({exc.strerror})") from None
    if stat.S_ISLNK(st.st_mode):
        raise IgnoreFileError(path, "is a symlink; an ignore file must be a regular file",
                              "replace the symlink with a copy of the patterns")
    if not stat.S_ISREG(st.st_mode):
        raise IgnoreFileError(path, f"is not a regular file ({_kind(st.st_mode)})")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise IgnoreFileError(path, f"cannot be read ({exc.strerror})",
                              "make it readable by you, or remove it") from None
    try:
        st = os.fstat(fd)  # what was opened, not what lstat saw (it may have been swapped)
        if not stat.S_ISREG(st.st_mode):
            raise IgnoreFileError(path, f"is not a regular file ({_kind(st.st_mode)})")
        if st.st_size > MAX_BYTES:
            raise IgnoreFileError(path, f"is {st.st_size} bytes, more than the {MAX_BYTES} an ignore file may have")
        chunks, total = [], 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_BYTES:  # grew while being read
                raise IgnoreFileError(path, f"is more than the {MAX_BYTES} bytes an ignore file may have")
    except OSError as exc:
        raise IgnoreFileError(path, f"cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if b"\0" in data:
        raise IgnoreFileError(path, "holds NUL bytes: it is not a text file of patterns")
    return data


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _repeats(regex: str) -> tuple[int, int]:
    """(unbounded repeats, those of them that can cross `/`) in a regular expression made by
    pathspec: `[^/]*` stays within a name, `.*` / `.+` do not. A `*` inside a character class
    counts too (an over-count only makes the limits stricter)."""
    total = cross = 0
    i = 0
    while i < len(regex):
        c = regex[i]
        if c == "\\":
            i += 2
            continue
        if c in "*+":
            total += 1
            cross += i > 0 and regex[i - 1] == "." and (i < 2 or regex[i - 2] != "\\")
        i += 1
    return total, cross


def parse_patterns(path: str, data: bytes):
    """A pathspec GitIgnoreSpec for `data`, the contents of the ignore file `path`.
    Raises IgnoreFileError naming the first unusable line. Pure: no I/O."""
    import warnings

    import pathspec
    from ..display import shown

    text = data.decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    count = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pathspec's FutureWarnings on odd classes must not become errors
        for lineno, line in enumerate(lines, 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            count += 1
            where = f"line {lineno}: pattern {shown(line, 80)!s}"
            if count > MAX_PATTERNS:
                raise IgnoreFileError(path, f"has more than {MAX_PATTERNS} patterns")
            if len(line) > MAX_PATTERN_CHARS:
                raise IgnoreFileError(path, f"line {lineno}: a pattern of {len(line)} characters "
                                            f"(at most {MAX_PATTERN_CHARS})")
            try:
                one = pathspec.GitIgnoreSpec.from_lines([line])
            except Exception as exc:  # noqa: BLE001 - hostile input to a third-party parser: any failure is "invalid"
                raise IgnoreFileError(path, f"{where} is invalid ({shown(str(exc), 120)})") from None
            for pattern in one.patterns:
                regex = getattr(pattern, "regex", None)
                if regex is None:
                    continue
                total, cross = _repeats(regex.pattern)
                if total > MAX_REPEATS or cross > MAX_CROSS:
                    raise IgnoreFileError(
                        path, f"{where} has too many wildcards to match in bounded time (at most {MAX_REPEATS} `*`, "
                              f"of which at most {MAX_CROSS} `**/`, counting the implicit `**/` in front of a "
                              "pattern without `/`)", "split it into simpler patterns, or remove the file")
        return pathspec.GitIgnoreSpec.from_lines(lines)


def ignore_spec(root: str):
    """(file name, pathspec) of the first ignore file found in `root`, or (None, None).

    Raises IgnoreFileError when that file is unusable (see the module docstring)."""
    for name in IGNORE_FILES:
        path = os.path.join(root, name)
        data = _read_ignore_file(path)
        if data is not None:
            return name, parse_patterns(path, data)
    return None, None


class _Matcher:
    """spec.match_file within a time budget shared by the whole tree."""

    def __init__(self, spec, path: str, budget: float):
        self.spec = spec
        self.path = path
        self.deadline = time.monotonic() + budget
        self.budget = budget

    def __call__(self, rel: str) -> bool:
        if self.spec is None:
            return False
        hit = self.spec.match_file(rel)
        if time.monotonic() > self.deadline:
            raise IgnoreFileError(self.path, f"matching its patterns against the workspace took more than "
                                             f"{self.budget:g} s", "use fewer or simpler patterns (plain names of the "
                                             "big directories work best), or remove the file")
        return hit


def build_copy(src: str, dst: str, exclude: set[str], budget: float = MATCH_BUDGET) -> dict:
    """Copy `src` to `dst` (created, 0700), skipping ignored paths and `exclude` (absolute
    paths). Returns counts for the report. Raises IgnoreFileError (nothing left at `dst`)
    for an unusable ignore file, OSError for a failed copy."""
    name, spec = ignore_spec(src)  # before anything is created
    matches = _Matcher(spec, os.path.join(src, name or ""), budget)
    os.mkdir(dst, 0o700)
    try:
        return _copy_tree(src, dst, exclude, matches)
    except IgnoreFileError:
        remove_copy(dst)
        raise


def _copy_tree(src: str, dst: str, exclude: set[str], matches: _Matcher) -> dict:
    copied = skipped = 0
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        rel_dir = os.path.relpath(dirpath, src)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        keep = []
        for d in dirnames:
            full = os.path.join(dirpath, d)
            rel = rel_dir + d
            if full in exclude or matches(rel + "/"):
                skipped += 1
                continue
            if os.path.islink(full):
                os.symlink(os.readlink(full), os.path.join(dst, rel))
                continue
            os.mkdir(os.path.join(dst, rel), 0o755)
            keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            full = os.path.join(dirpath, f)
            rel = rel_dir + f
            if full in exclude or matches(rel):
                skipped += 1
                continue
            target = os.path.join(dst, rel)
            if os.path.islink(full):
                os.symlink(os.readlink(full), target)
            elif os.path.isfile(full):
                shutil.copy2(full, target, follow_symlinks=False)
            copied += 1
    return {"copied": copied, "skipped": skipped}


def remove_copy(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
