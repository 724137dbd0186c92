"""Git's smart-HTTP protocol at the proxy: which repository a request is for, whether it may
reach it, and whether a push's ref updates are allowed (`[git]`, `policy.git`).

Rules of this module: every decision about git requests lives here, and it does no I/O. The
proxy (`http_session`) feeds it what it reads; `Gate` asks `GitRules.check` first.

Smart HTTP has four request shapes (`<repo>` is the URL path of the repository)::

    GET  <repo>/info/refs?service=git-upload-pack     fetch/clone discovery
    POST <repo>/git-upload-pack                        fetch/clone
    GET  <repo>/info/refs?service=git-receive-pack    push discovery
    POST <repo>/git-receive-pack                       push: ref-update commands, then the pack

A push body starts with pkt-lines (4 hex digits of length, then the payload), optionally
`shallow <oid>` lines, then one command per ref, `<old-oid> <new-oid> <ref>` (the first one
followed by NUL and the client's capabilities), then a flush-pkt `0000`; the pack follows.
`CommandReader` reads just that much (gunzipping when the body is gzip-encoded) and never
the pack; `decide_push` judges the commands. A refusal is answered the way git reports a
server's refusal (`refusal_body`): a report-status with `ng <ref> <reason>` per ref, inside
side-band channel 1 when the client asked for side-band, with the reason also on channel 2,
so `git push` prints ` ! [remote rejected] main -> main (corral: ...)` and `remote: corral: ...`.

How a request is decided (`GitRules.check`), for requests the proxy reads in clear:

1. Not smart HTTP (any other path): not a git matter, except WebDAV methods (git's old
   `http-push`) on a host a repository pattern names, which are refused.
2. The path is normalised like an HTTP rule's (`httprules.normalize_path`); when readings
   disagree (an encoded slash), the request is refused.
3. The repository (`host/owner/repo`, lower-case, `.git` dropped) is looked up in
   `[git] repositories`, first match wins. A push to a repository not listed is refused; a
   fetch too, unless `fetch_unlisted`.
4. A push's commands are judged by `decide_push` (all refs or none: one refusal refuses the push).
"""

from __future__ import annotations

import zlib

from .._values import frozen

UPLOAD = "git-upload-pack"
RECEIVE = "git-receive-pack"
# git's old WebDAV push (`git http-push`); none of these is ever a smart-HTTP request.
WEBDAV_METHODS = frozenset(("PROPFIND", "PROPPATCH", "MKCOL", "LOCK", "UNLOCK", "MOVE", "COPY"))
# Path segments that make a PUT or DELETE look like a write into a repository over WebDAV.
WEBDAV_REPO_SEGMENTS = frozenset(("refs", "objects", "info", "head", "packed-refs"))

MAX_COMMAND_BYTES = 1 << 20  # the decoded command list (a push of ~10,000 refs)
MAX_RAW_BYTES = 2 << 20  # body bytes held (still encoded) while the commands are read
MAX_COMMANDS = 10000


class GitProtocolError(ValueError):
    """A push body whose commands cannot be read: the push is refused (fail closed)."""


@frozen
class RefUpdate:
    old: str
    new: str
    ref: str

    @property
    def action(self) -> str:
        if set(self.new) == {"0"}:
            return "delete"
        if set(self.old) == {"0"}:
            return "create"
        return "update"

    def audit(self) -> dict:
        return {"ref": self.ref, "old": self.old, "new": self.new}


@frozen
class GitRequest:
    service: str  # UPLOAD or RECEIVE ("dumb" fetches are UPLOAD too)
    repo: str  # "host/owner/repo", lower-case, without ".git"
    discovery: bool  # GET info/refs


@frozen
class GitVerdict:
    allowed: bool
    status: int  # 403 / 400 for a refusal
    reason: str
    rule: str = ""
    request: GitRequest | None = None
    push: object = None  # the GitRepository whose push rules judge the body (POST receive-pack)


@frozen
class PushDecision:
    allowed: bool
    ref: str = ""  # the first refused ref
    rule: str = ""
    reason: str = ""
    refused: tuple = ()  # (ref, reason) of every refused ref, in order


# ---------------------------------------------------------------------------------------------
# Patterns
# ---------------------------------------------------------------------------------------------


def ref_matches(pattern: str, ref: str, fold: bool = False) -> bool:
    """`*` matches any run of characters (`/` too), as in git's refspecs."""
    if fold:
        pattern, ref = pattern.lower(), ref.lower()
    parts = pattern.split("*")
    if len(parts) == 1:
        return ref == pattern
    first, *middle, last = parts
    if len(ref) < len(first) + len(last) or not ref.startswith(first) or not ref.endswith(last):
        return False
    pos, end = len(first), len(ref) - len(last)
    for part in middle:
        pos = ref.find(part, pos, end)
        if pos == -1:
            return False
        pos += len(part)
    return True


def _compile_repo(match: str):
    from .httprules import parse_host_pattern

    host, _, path = match.partition("/")
    segments = tuple("**" if s == "**" else tuple(s.split("*")) for s in path.split("/"))
    return parse_host_pattern(host), segments


def valid_ref(ref: str) -> bool:
    """The part of git's check-ref-format a proxy needs: a name under refs/ that git itself
    would accept, so the name judged is the name the server stores."""
    if not ref.startswith("refs/") or len(ref) > 1024 or ref.endswith(("/", ".", ".lock")):
        return False
    if ".." in ref or "//" in ref or "@{" in ref or "/." in ref:
        return False
    return all(" " < c <= "~" and c not in "~^:?*[\\" for c in ref)


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------


def classify(method: str, host: str, target: str) -> tuple[GitRequest | None, ...]:
    """The git request `target` is, under each reading of its path (`httprules.normalize_path`);
    None where it is not smart HTTP. ValueError for a malformed path."""
    from .addresses import normalize_host
    from .httprules import _query_values, normalize_path

    name = normalize_host(host)
    readings, query = normalize_path(target)
    method = method.upper()
    services = _query_values(query, "service", fold=True)
    out = []
    for segments in readings:
        low = tuple(s.lower() for s in segments)
        req = None
        if len(low) >= 2 and low[-2:] == ("info", "refs") and method in ("GET", "HEAD"):
            service = RECEIVE if RECEIVE in services else UPLOAD  # no service: a dumb fetch
            req = GitRequest(service, _repo(name, low[:-2]), True)
        elif low and low[-1] in (UPLOAD, RECEIVE):
            req = GitRequest(low[-1], _repo(name, low[:-1]), False)
        out.append(req)
    return tuple(out)


def _repo(host: str, segments: tuple) -> str:
    segments = list(segments)
    if segments and segments[-1].endswith(".git") and len(segments[-1]) > 4:
        segments[-1] = segments[-1][:-4]
    return "/".join([host, *segments])


class GitRules:
    """A compiled `GitPolicy`: `check` judges a request, `covers` names the git hosts."""

    def __init__(self, policy):
        self.policy = policy
        self.repos = tuple((repo, *_compile_repo(repo.match)) for repo in policy.repositories)

    def covers(self, host: str) -> bool:
        """Whether a repository pattern names `host` (its traffic must be read: terminated)."""
        from .addresses import normalize_host
        from .httprules import host_in

        try:
            name = normalize_host(host)
        except ValueError:
            return True
        return any(host_in(pattern, name) for _repo, pattern, _segs in self.repos)

    def repository(self, repo: str):
        """The first entry covering `repo` ("host/owner/name"), or None."""
        from .httprules import _glob, host_in

        host, _, path = repo.partition("/")
        segments = tuple(s for s in path.split("/") if s)
        for entry, pattern, segs in self.repos:
            if host_in(pattern, host) and _glob(segs, segments):
                return entry
        return None

    def check(self, method: str, host: str, target: str) -> GitVerdict | None:
        """None: not a git request (nothing to say); else the verdict on it."""
        method = method.upper()
        try:
            readings = classify(method, host, target)
        except ValueError as exc:
            if self.covers(host):
                return GitVerdict(False, 400, f"invalid request path: {exc}", "git")
            return None
        if method in WEBDAV_METHODS or method in ("PUT", "DELETE"):
            if self.covers(host) and (method in WEBDAV_METHODS or _webdav_write(target)):
                return GitVerdict(False, 403, f"{method} {target.split('?')[0][:200]} looks like git's WebDAV push "
                                  "(git http-push), which the git policy cannot read", "git")
        if all(r is None for r in readings):
            return None
        verdicts = [self._judge(r) if r is not None else None for r in readings]
        first = verdicts[0]
        for other in verdicts[1:]:
            if (other is None) != (first is None) or (other is not None and (other.allowed, other.rule, other.request)
                                                       != (first.allowed, first.rule, first.request)):
                return GitVerdict(False, 400, f"ambiguous git request path {target.split('?')[0][:200]!r}: an "
                                  "encoded slash, ';' or trailing dot changes the repository it names", "git")
        return first

    def _judge(self, req: GitRequest) -> GitVerdict:
        entry = self.repository(req.repo)
        what = "push to" if req.service == RECEIVE else "fetch from"
        if entry is None:
            if req.service == UPLOAD and self.policy.fetch_unlisted:
                return GitVerdict(True, 200, f"{req.repo} is not listed; git.fetch_unlisted lets fetches pass",
                                  "git.fetch_unlisted", req)
            hint = "" if req.service == RECEIVE else " (git.fetch_unlisted = true lets fetches of it pass)"
            return GitVerdict(False, 403, f"git {what} {req.repo} refused: the repository is not in "
                              f"git.repositories{hint}", "git.repositories", req)
        if req.service == RECEIVE and not req.discovery:
            return GitVerdict(True, 200, f"git push to {req.repo}: ref updates checked by {entry.origin}",
                              entry.origin, req, entry)
        return GitVerdict(True, 200, f"git {what} {req.repo} allowed by {entry.origin}", entry.origin, req)


def _webdav_write(target: str) -> bool:
    path = target.split("?", 1)[0].lower()
    return any(seg in WEBDAV_REPO_SEGMENTS for seg in path.split("/"))


# ---------------------------------------------------------------------------------------------
# Pushes
# ---------------------------------------------------------------------------------------------


def decide_push(repo, updates) -> PushDecision:
    """Whether every ref update of a push is allowed for `repo` (a `GitRepository`); the push
    is judged whole: the first refused ref refuses it, and every refused ref is listed."""
    refused = []
    first = None
    for update in updates:
        why = refuse_update(repo, update)
        if why is not None:
            refused.append((update.ref, why[1]))
            if first is None:
                first = (update.ref, *why)
    if first is None:
        return PushDecision(True)
    return PushDecision(False, first[0], first[1], first[2], tuple(refused))


def refuse_update(repo, update: RefUpdate) -> tuple[str, str] | None:
    """(rule, reason) refusing one ref update, or None when it is allowed. In this order: a ref
    name git would not accept; tags (`tags`); protected branches (`protected`, compared
    ignoring case: a server on a case-insensitive filesystem stores MAIN as main); deletions
    (`delete`); the refs that may be pushed (`push`)."""
    ref, where = update.ref, repo.origin
    if not valid_ref(ref):
        return f"{where}: ref name", f"{ref[:200]!r} is not a valid ref name"
    deleting = update.action == "delete"
    if ref.startswith("refs/tags/"):
        if not any(ref_matches(p, ref) for p in repo.tags):
            allowed = f"only {list(repo.tags)}" if repo.tags else "none"
            return f"{where}.tags", f"pushing tag {ref} is not allowed (git tags: {allowed})"
        if deleting and not repo.delete:
            return f"{where}.delete", f"deleting {ref} is not allowed (git delete = false)"
        return None
    for pattern in repo.protected:
        if ref_matches(pattern, ref, fold=True) and not repo.push_protected:
            return (f"{where}.protected", f"{ref} is a protected branch (git protected {pattern!r}; "
                    "push_protected = false)")
    if deleting and not repo.delete:
        return f"{where}.delete", f"deleting {ref} is not allowed (git delete = false)"
    if not any(ref_matches(p, ref) for p in repo.push):
        allowed = f"only {list(repo.push)}" if repo.push else "nothing (fetch only)"
        return f"{where}.push", f"pushing {ref} is not allowed (git push: {allowed})"
    return None


class CommandReader:
    """Reads the ref-update commands at the start of a receive-pack body (sans-IO).

    `feed(data)` takes body bytes as they arrive (de-chunked) and returns True once the
    command list is complete (its flush-pkt read); `end()` says the body ended. Raises
    GitProtocolError for anything it cannot read, or a command list over the limits. Only
    the command list is decoded: the pack after it is never looked at."""

    def __init__(self, encoding: str | None = None):
        encoding = (encoding or "identity").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "identity":
            self._inflate = None
        else:
            raise GitProtocolError(f"Content-Encoding {encoding[:40]!r} of a push body is not read by corral "
                                   "(gzip and identity are)")
        self.buffer = bytearray()
        self.raw = 0  # body bytes fed (as received)
        self.decoded = 0  # bytes of the command list read so far (inflated)
        self.updates: list[RefUpdate] = []
        self.capabilities: frozenset = frozenset()
        self.shallow = 0
        self.done = False
        self._oid_len = None

    def feed(self, data: bytes) -> bool:
        if self.done:
            return True
        self.raw += len(data)
        if self._inflate is not None:
            try:  # inflated only as far as the limit: a gzip bomb stops there
                data = self._inflate.decompress(data, max(1, MAX_COMMAND_BYTES + 1 - self.decoded))
            except zlib.error as exc:
                raise GitProtocolError(f"the push body is not valid gzip: {exc}") from None
        self.decoded += len(data)
        self.buffer += data
        self._parse()
        if not self.done and (self.decoded > MAX_COMMAND_BYTES or self.raw > MAX_RAW_BYTES):
            raise GitProtocolError(f"the push's command list is longer than {MAX_COMMAND_BYTES} bytes")
        return self.done

    def end(self) -> None:
        if not self.done:
            raise GitProtocolError("the push body ended before its command list did (no flush-pkt)")

    def _parse(self) -> None:
        buf = self.buffer
        while not self.done and len(buf) >= 4:
            head = bytes(buf[:4])
            try:
                size = int(head, 16)
            except ValueError:
                raise GitProtocolError(f"not a pkt-line length: {head!r}") from None
            if not all(c in b"0123456789abcdefABCDEF" for c in head):
                raise GitProtocolError(f"not a pkt-line length: {head!r}")
            if size == 0:
                del buf[:4]
                self.done = True
                return
            if size < 4:
                raise GitProtocolError(f"unexpected special packet {head.decode()} in a push's command list")
            if len(buf) < size:
                return
            payload = bytes(buf[4:size])
            del buf[:size]
            self._line(payload)

    def _line(self, payload: bytes) -> None:
        line = payload[:-1] if payload.endswith(b"\n") else payload
        if line.startswith(b"shallow ") and not self.updates:
            self.shallow += 1
            return
        if line.startswith(b"push-cert"):
            raise GitProtocolError("signed pushes (push certificates) are not read by corral's git policy")
        line, nul, caps = line.partition(b"\0")
        if nul:
            if self.updates:
                raise GitProtocolError("capabilities after the first command")
            self.capabilities = frozenset(caps.decode("ascii", "replace").split())
        try:
            old, new, ref = line.decode("ascii").split(" ", 2)
        except (UnicodeDecodeError, ValueError):
            raise GitProtocolError(f"not a ref-update command: {line[:120]!r}") from None
        for oid in (old, new):
            if len(oid) not in (40, 64) or not all(c in "0123456789abcdef" for c in oid):
                raise GitProtocolError(f"not an object id: {oid[:80]!r}")
        if len(old) != len(new) or (self._oid_len is not None and len(old) != self._oid_len):
            raise GitProtocolError("object ids of different lengths in one push")
        self._oid_len = len(old)
        if len(self.updates) >= MAX_COMMANDS:
            raise GitProtocolError(f"more than {MAX_COMMANDS} ref updates in one push")
        self.updates.append(RefUpdate(old, new, ref))


# ---------------------------------------------------------------------------------------------
# The answer git prints
# ---------------------------------------------------------------------------------------------


def pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


def _clean(text: str) -> bytes:
    return "".join(c if " " <= c <= "~" else "?" for c in text).encode()


def refusal_body(capabilities, updates, decision: PushDecision, headline: str) -> bytes | None:
    """The receive-pack result refusing every ref of the push (nothing was forwarded), in the
    form the client asked for; None when it asked for no report (answer with an HTTP error)."""
    report = "report-status" in capabilities or "report-status-v2" in capabilities
    band = 65515 if "side-band-64k" in capabilities else 995 if "side-band" in capabilities else 0
    reasons = dict(decision.refused)
    status = b""
    if report:
        status = pkt(b"unpack ok\n")
        for update in updates:
            why = "corral: " + (reasons.get(update.ref) or f"not pushed: {decision.ref} in the same push is refused")
            status += pkt(b"ng " + _clean(update.ref) + b" " + _clean(why) + b"\n")
        status += b"0000"
    if not band:
        return status or None
    out = b""
    for line in headline.splitlines():
        out += pkt(b"\x02" + _clean(line)[:band] + b"\n")
    if report:
        for i in range(0, len(status), band):
            out += pkt(b"\x01" + status[i:i + band])
    else:
        out += pkt(b"\x03" + _clean(headline.splitlines()[0] if headline else "push refused")[:band] + b"\n")
    return out + b"0000"
