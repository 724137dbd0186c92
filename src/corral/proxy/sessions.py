"""Late-bound sessions: `corral proxy --sessions DIR`, one egress proxy for many agents.

On a cluster the agent pods are started before anyone knows whose session they will serve
(warm pools), so they hold no credential and no policy. The proxy binds both late: a client
authenticates as user NAME with NAME's password (HTTP `Proxy-Authorization: Basic`, SOCKS5
username/password) and that connection is held to NAME's `runs.Scope`: NAME's domain rules,
HTTP rules, credentials, git rules and TLS termination. The audit log's `run` is NAME.

Rules of this module:

* The directory is the only source. A session is two files: `NAME.toml` or `NAME.json` (a
  corral policy, native or srt) and `NAME.token`: `sha256:<64 lowercase hex digits>` (the
  SHA-256 of the session's proxy password: the directory, a ConfigMap, never holds the
  password) or `open` (the one session of connections that present no proxy credentials).
  Entries starting with "." are not sessions (Kubernetes volumes keep `..data` and
  `..2024_...` there); symlinks are followed.
* Reading names and token lines is pure (`group_entries`, `parse_token`: table-tested);
  `SessionStore` is the edge that lists, stats and loads.
* Nothing here prints a password, a token line or a credential's value. A session that fails
  to load is refused with one stderr line (file, key, value, fix) and the others keep working;
  a session whose files are removed refuses new connections at once, while established ones
  finish under the scope they started with.
* A session is loaded again when the files its credentials and CAs come from change (a
  Kubernetes Secret rotated in place), noticed on the same schedule as the directory.
* The directory is looked at when clients arrive, at most once every `CHECK_EVERY` seconds,
  and at once (at most every `UNKNOWN_EVERY` seconds) when a client names an unknown session.
  Loading runs on the proxy's event loop: a `from_command` credential blocks it while it runs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import sys
import time

NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # a DNS label: usable as a ConfigMap key
POLICY_SUFFIXES = (".toml", ".json")
TOKEN_SUFFIX = ".token"
OPEN = "open"
SHA256_PREFIX = "sha256:"
_HEX64 = re.compile(r"[0-9a-f]{64}")
CHECK_EVERY = 1.0  # seconds between looks at the directory while clients arrive
UNKNOWN_EVERY = 0.2  # ... when a client names a session not known (yet)
MAX_TOKEN_FILE = 4096
TOKEN_FIX = ("fix: write one line, sha256:$(printf %s \"$PASSWORD\" | sha256sum | cut -d' ' -f1), "
             "or open")


# -- pure: names and token lines ---------------------------------------------------------------

def parse_token(text: str) -> str:
    """The token line of a `NAME.token` file's text: "open" or "sha256:<64 lowercase hex>".
    ValueError says what is wrong without repeating the text (it may be a password)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise ValueError(f"expected one line, found {len(lines)}")
    line = lines[0]
    if line == OPEN:
        return line
    if line.startswith(SHA256_PREFIX):
        digest = line[len(SHA256_PREFIX):]
        if _HEX64.fullmatch(digest):
            return line
        if _HEX64.fullmatch(digest.lower()):
            raise ValueError("the SHA-256 must be written in lowercase hex digits")
        raise ValueError(f"expected 64 hex digits after sha256:, got {len(digest)} characters")
    return _not_a_token(line)


def _not_a_token(line: str):
    if line.lower() == OPEN:
        raise ValueError("expected open in lowercase")
    raise ValueError(f"expected sha256:<64 lowercase hex digits> (the SHA-256 of the session's proxy password) "
                     f"or open, got a line of {len(line)} characters that is neither (never the password itself)")


def digest_of(token_line: str) -> bytes | None:
    """The SHA-256 a token line holds; None for the open session."""
    return None if token_line == OPEN else bytes.fromhex(token_line[len(SHA256_PREFIX):])


def group_entries(entries) -> tuple[dict[str, tuple[str, str]], list[tuple[str, str]]]:
    """The sessions a directory's entry names make: ({NAME: (policy file, token file)},
    [(NAME or file, problem)]). Entries starting with "." and files of other suffixes are not
    sessions; a session lacking its token or policy, or with two policies, is a problem."""
    found: dict[str, dict[str, list[str]]] = {}
    problems: list[tuple[str, str]] = []
    for entry in sorted(entries):
        if entry.startswith("."):  # `..data`, `..2024_05_01...` (Kubernetes), dotfiles, editors' files
            continue
        stem, dot, suffix = entry.rpartition(".")
        suffix = dot + suffix
        if not dot or suffix not in POLICY_SUFFIXES + (TOKEN_SUFFIX,):
            continue
        if not NAME.fullmatch(stem):
            problems.append((entry, f"{entry}: the session name {stem[:80]!r} is not a DNS label (a-z, 0-9 and "
                                    "'-' inside, at most 63 characters); fix: rename the file"))
            continue
        kind = "token" if suffix == TOKEN_SUFFIX else "policy"
        found.setdefault(stem, {"token": [], "policy": []})[kind].append(entry)
    sessions = {}
    for name, files in found.items():
        policies, tokens = files["policy"], files["token"]
        if len(policies) > 1:
            problems.append((name, f"{' and '.join(policies)}: two policies for session {name}; fix: remove one"))
        elif not policies:
            problems.append((name, f"{tokens[0]}: no {name}.toml or {name}.json beside it; fix: add the session's "
                                   "policy, or remove the token file"))
        elif not tokens:
            problems.append((name, f"{policies[0]}: no {name}.token beside it; fix: add {name}.token with "
                                   "sha256:<SHA-256 of the session's proxy password> or open"))
        else:
            sessions[name] = (policies[0], tokens[0])
    return sessions, problems


# -- the edge: the directory, loaded --------------------------------------------------------------

class Session:
    """One loaded session: its token line's digest (None: open) and its run (with its scope)."""

    __slots__ = ("name", "digest", "run", "summary", "stamp", "sources", "source_stamp")

    def __init__(self, name: str, digest: bytes | None, run, summary: str, stamp, sources=(), source_stamp=()):
        self.name, self.digest, self.run, self.summary, self.stamp = name, digest, run, summary, stamp
        # The files its credentials and CAs are read from (a Kubernetes Secret's, rotated in place),
        # as they were just before they were read: when one changes, the session is loaded again.
        self.sources, self.source_stamp = tuple(sources), tuple(source_stamp)


def file_stamps(paths) -> tuple:
    """What identifies each file's content now (symlinks followed; None when it is missing)."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def source_files(policy) -> list[str]:
    """The files a session's policy reads its secrets and CAs from."""
    paths = [c.from_file for c in policy.credentials if c.from_file]
    tls = policy.network.tls
    if tls.ca == "files":
        paths += [tls.ca_cert, tls.ca_key]
    paths += list(tls.extra_ca)
    return [p for p in paths if p]


class SessionStore:
    """The sessions of a directory, as the proxy serves them (`Proxy.sessions`).

    `run_for(user, token)` is `Proxy._run_for` for late-bound sessions. `write`: where the
    one-line messages go (stderr)."""

    def __init__(self, directory: str, ctx, environ: dict, write=None, clock=time.monotonic):
        from ..errors import SetupError

        self.directory = os.path.abspath(directory)
        if not os.path.isdir(self.directory):
            raise SetupError(f"--sessions {directory}: not a directory",
                             "give the directory holding NAME.toml (or NAME.json) and NAME.token files")
        self.ctx, self.environ = ctx, environ
        self.write = write or _stderr_line
        self.clock = clock
        self.sessions: dict[str, Session] = {}  # the sessions served now
        self.open: Session | None = None
        self._state: dict[str, tuple] = {}  # NAME -> (stamp of its files, Session or None)
        self._listing: dict | None = None
        self._problems: set[str] = set()  # the problem lines printed and still true
        self._checked = self._unknown = float("-inf")
        self._cas: dict = {}  # certificate authorities by their files (boundary.resolve's cache)
        self._terminators: dict = {}  # (CA, extra CAs) -> the first Terminator made for them

    # -- per connection -----------------------------------------------------------------------
    def run_for(self, user: str | None, token: str | None):
        """The run of the session these proxy credentials name; the open session's (or False)
        without credentials; False for wrong ones (answered 407)."""
        now = self.clock()
        if now - self._checked >= CHECK_EVERY:
            self.refresh(now)
        if user is None:
            return self.open.run if self.open is not None else False
        session = self.sessions.get(user)
        if session is None and now - self._unknown >= UNKNOWN_EVERY:
            self._unknown = now
            self.refresh(now)
            session = self.sessions.get(user)
        if session is None or session.digest is None or token is None:
            return False
        presented = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        if not hmac.compare_digest(presented, session.digest):
            return False
        return session.run

    # -- the directory ----------------------------------------------------------------------
    def _scan(self) -> dict:
        """{entry: stamp} of the entries that may be sessions' files (symlinks followed), plus
        the `..data` link's target (a Kubernetes volume's atomic swap)."""
        out: dict = {}
        try:
            entries = os.listdir(self.directory)
        except OSError as exc:
            self._problem(f"corral proxy: cannot list the sessions directory {self.directory}: {exc.strerror}; "
                          "every session is refused until it can be read (fix: its permissions)")
            return out
        for entry in entries:
            if entry.startswith(".") or not entry.endswith(POLICY_SUFFIXES + (TOKEN_SUFFIX,)):
                continue
            try:
                st = os.stat(os.path.join(self.directory, entry))
            except OSError:  # a dangling link mid-swap, or removed since the listing
                continue
            out[entry] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        try:
            out["..data"] = os.readlink(os.path.join(self.directory, "..data"))
        except OSError:
            pass
        return out

    def refresh(self, now: float | None = None) -> None:
        """Look at the directory; load what changed, drop what went, say so (one line each)."""
        self._checked = self.clock() if now is None else now
        listing = self._scan()
        rotated = {name for name, (_, session) in self._state.items()
                   if session is not None and session.sources and file_stamps(session.sources) != session.source_stamp}
        if listing == self._listing and not rotated:
            return
        self._listing = listing
        groups, problems = group_entries(k for k in listing if k != "..data")
        lines = {f"corral proxy: {self.directory}/{text}" if who.endswith(POLICY_SUFFIXES + (TOKEN_SUFFIX,))
                 else f"corral proxy: session {who} refused: {self.directory}/{text}" for who, text in problems}
        state: dict[str, tuple] = {}
        for name, (policy_file, token_file) in groups.items():
            stamp = (policy_file, listing[policy_file], token_file, listing[token_file])
            old = self._state.get(name)
            if old is not None and old[0] == stamp and name not in rotated:
                state[name] = old
                continue
            session = self._load(name, policy_file, token_file, stamp, reloaded=old is not None and old[1] is not None,
                                 why=" (its credential or CA files changed)" if name in rotated and old[0] == stamp
                                 else "")
            state[name] = (stamp, session)
        for name, (_, session) in self._state.items():
            if session is not None and (name not in state or state[name][1] is None):
                self.write(f"corral proxy: session {name} removed: new connections presenting it get 407; "
                           "established ones finish")
        self._state = state
        opens = [name for name, (_, s) in state.items() if s is not None and s.digest is None]
        if len(opens) > 1:
            files = " and ".join(f"{self.directory}/{state[n][0][2]}" for n in opens)
            lines.add(f"corral proxy: sessions {', '.join(opens)} refused: {files} all say open, and at most one "
                      "session may take the connections that present no proxy credentials; fix: give all but one "
                      "a sha256: line")
        for line in sorted(lines - self._problems):
            self._problem(line)
        self._problems = lines
        self.sessions = {name: s for name, (_, s) in state.items()
                         if s is not None and not (len(opens) > 1 and name in opens)}
        self.open = self.sessions.get(opens[0]) if len(opens) == 1 else None

    def _problem(self, line: str) -> None:
        self.write(line)

    def _load(self, name: str, policy_file: str, token_file: str, stamp, reloaded: bool,
              why: str = "") -> Session | None:
        from ..errors import CorralError

        try:
            session, notes = self._build(name, policy_file, token_file, stamp)
        except CorralError as exc:
            self.write(f"corral proxy: session {name} refused: {exc}")
            return None
        except Exception as exc:  # a bug must not take the other sessions down: say it, refuse this one
            from ..display import shown

            self.write(f"corral proxy: session {name} refused: internal error while loading it: "
                       f"{type(exc).__name__}: {shown(str(exc), 200)}")
            return None
        self.write(f"corral proxy: session {name} {'reloaded' + why if reloaded else 'loaded'}: {session.summary}")
        for note in notes:
            self.write(f"corral proxy: session {name}: {note}")
        return session

    def _build(self, name: str, policy_file: str, token_file: str, stamp) -> tuple[Session, list[str]]:
        from functools import partial

        from ..errors import SetupError
        from ..policy import load
        from ..policy.network import compile_rules
        from ..sandbox import boundary
        from .credentials import session_placeholder
        from .runs import RunInfo, Scope

        token_path = os.path.join(self.directory, token_file)
        try:
            with open(token_path, "rb") as fh:
                raw = fh.read(MAX_TOKEN_FILE + 1)
        except OSError as exc:
            raise SetupError(f"{token_path}: cannot read it: {exc.strerror}", "fix its permissions") from None
        try:
            if len(raw) > MAX_TOKEN_FILE:
                raise ValueError(f"over {MAX_TOKEN_FILE} bytes; expected one line")
            line = parse_token(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
            raise SetupError(f"{token_path}: {why}", TOKEN_FIX.removeprefix("fix: ")) from None
        policy_path = os.path.join(self.directory, policy_file)
        policy = load.load(policy_path, self.ctx, self.environ)
        rules = compile_rules(policy.network, policy_path)
        sources = source_files(policy)
        source_stamp = file_stamps(sources)  # before they are read: a change meanwhile reloads once more
        gate = terminator = None
        notes: list[str] = []
        credentials = []
        if boundary.needed(policy):
            b = boundary.resolve(policy, self.environ, self.ctx, placeholder=partial(session_placeholder, line, name),
                                 cas=self._cas)
            gate, terminator = b.gate, b.terminator
            notes += [w.removeprefix("corral: ") for w in b.warnings]
            bound = {cred.family for cred in b.bindings.values()}
            credentials = [f"{spec.name} ({_source(spec)})" for spec in policy.credentials if spec.name in bound]
        if policy.endpoints:
            notes.append("warning: [[endpoints]] are not served by corral proxy --sessions (they listen inside a "
                         "sandbox); the session's client reaches their upstreams through the proxy")
        if terminator is not None:
            key = (terminator.ca, terminator.extra_ca)
            first = self._terminators.get(key)
            if first is None:
                terminator.warm()  # the first client must not pay for the first mint
                self._terminators[key] = terminator
            else:
                terminator.adopt(first)
        run = RunInfo(name, "", name, "", Scope(rules, gate, terminator))
        parts = [f"{len(rules.allowed)} allowed hosts",
                 f"credentials {', '.join(credentials)}" if credentials else "no credentials"]
        if gate is not None and gate.http_rules is not None:
            parts.append("HTTP rules")
        if gate is not None and gate.git is not None:
            parts.append("git rules")
        if terminator is not None:
            parts.append("TLS termination")
        if line == OPEN:
            parts.append("open (connections without proxy credentials)")
        return Session(name, digest_of(line), run, ", ".join(parts), stamp, sources, source_stamp), notes

    def names(self) -> list[str]:
        return sorted(self.sessions)


def _source(spec) -> str:
    if spec.from_env:
        return f"from ${spec.from_env}"
    if spec.from_file:
        return f"from {spec.from_file}"
    if spec.from_command:
        return f"from command {os.path.basename(spec.from_command[0])}"
    return "from the policy"


def _stderr_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
