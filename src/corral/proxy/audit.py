"""The audit log: one JSON line per connection and per HTTP request, bounded.

Records hold names, addresses, decisions and byte counts; never a header value, a body, a
URL query or proxy credentials (the query string may carry tokens, so only the path is kept).

The sandbox decides how many events happen (a loop of DNS queries for a refused name makes
thousands a second), so what is written is bounded three ways (`Limiter`, pure, and `AuditLog`):

- **Aggregation.** The first of identical events (same run, kind, host, port, decision, rule,
  reason, method, path: everything but the time) is written at once; the repeats within the
  next `WINDOW` seconds are counted and written as one line with `"count": N` (N events) when
  the window ends, and at the latest when the proxy stops. Events that carry their own
  measurements (bytes, duration, credentials injected or redacted, placeholders) are never
  merged.
- **Rate.** Each run may write `RATE` lines a second (bursts of `BURST`); past that, events are
  only counted, and one line `{"proto": "audit", "decision": "suppressed", "count": N}` says
  how many were dropped once the run may write again (or when the proxy stops). The end-of-run
  summary of blocked hosts is kept by the proxy itself, whatever the log dropped.
- **Size.** When a write would take the file past `max_bytes` (`MAX_BYTES`, 10 MiB, or the
  environment variable `CORRAL_AUDIT_MAX_BYTES` of the process that starts the proxy), it is
  rotated: `audit.jsonl` -> `audit.jsonl.1` -> ... -> `audit.jsonl.KEEP` (the oldest is dropped).
  Several corral processes may share the file: each line is one `write(2)` on an O_APPEND
  descriptor, and rotation happens under an `flock` on `audit.jsonl.lock` after checking that
  no other process rotated first; a process whose file was rotated away reopens the new one.
  (Each process checks the size before its own write, so racing writers may take a file
  past the cap by one line each.) The path `-` (`corral proxy --audit -`) is standard output,
  never rotated.
"""

from __future__ import annotations

import json
import os
import threading
import time

FIELDS = ("time", "run", "command", "proto", "host", "port", "address", "decision", "rule",
          "reason", "method", "path", "status", "injected", "placeholders", "redacted", "exfiltration", "up", "down",
          "ms", "repo", "refs", "count")
# Per-event measurements: a record carrying one is never merged with another.
MEASURED = ("up", "down", "ms", "redacted", "injected", "placeholders", "exfiltration", "refs")

MAX_BYTES = 10 * 1024 * 1024
KEEP = 3  # rotated files kept beside the current one
WINDOW = 5.0  # seconds over which identical events are counted into one line
RATE = 100  # lines a second a run may write...
BURST = 1000  # ...after a burst of this many
MAX_BYTES_ENV = "CORRAL_AUDIT_MAX_BYTES"
STDOUT = "-"  # the path that means standard output (`corral proxy --audit -`)


def default_path(environ=os.environ) -> str:
    state = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "corral", "audit.jsonl")


def rotated_paths(path: str, keep: int = KEEP) -> list[str]:
    """The rotated files of `path`, oldest first (`path.KEEP` ... `path.1`)."""
    return [f"{path}.{i}" for i in range(keep, 0, -1)]


def timestamp(now: float | None = None) -> str:
    now = time.time() if now is None else now
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def event_key(record: dict) -> str | None:
    """What makes two events the same for aggregation; None for events never merged."""
    if any(record.get(k) not in (None, "", 0, False, [], ()) for k in MEASURED):
        return None
    return json.dumps({k: v for k, v in record.items() if k != "time"}, sort_keys=True, default=str)


class Limiter:
    """Decides which records are written (pure: the caller passes the clock's `now`).

    `admit(record, now)` and `due(now)` return the records to write now, in order;
    `drain(now)` returns everything still held (when the log closes).
    """

    __slots__ = ("window", "rate", "burst", "_pending", "_buckets", "_suppressed")

    def __init__(self, window: float = WINDOW, rate: float = RATE, burst: int = BURST):
        self.window, self.rate, self.burst = window, rate, burst
        self._pending: dict[str, list] = {}  # key -> [first seen, record, repeats]; oldest first
        self._buckets: dict = {}  # run -> [tokens, last refill]
        self._suppressed: dict = {}  # run -> [count, command]

    def _take(self, run, now: float) -> bool:
        bucket = self._buckets.get(run)
        if bucket is None:
            if len(self._buckets) >= 4096:
                self._buckets.clear()
            bucket = self._buckets[run] = [float(self.burst), now]
        bucket[0] = min(float(self.burst), bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if bucket[0] >= 1:
            bucket[0] -= 1
            return True
        return False

    def _summary(self, run) -> dict:
        count, command, _ = self._suppressed.pop(run)
        return {"time": timestamp(), "run": run, "command": command, "proto": "audit", "decision": "suppressed",
                "count": count,
                "reason": f"{count} events over the audit rate limit ({self.rate:g} lines/s) were not written"}

    def admit(self, record: dict, now: float) -> list[dict]:
        out = self.due(now)
        key = event_key(record)
        if key is not None and key in self._pending:
            self._pending[key][2] += 1
            return out
        run = record.get("run")
        if not self._take(run, now):
            held = self._suppressed.setdefault(run, [0, record.get("command"), now])
            held[0] += 1
            return out
        if key is not None:
            self._pending[key] = [now, record, 0]
        out.append(record)
        return out

    def due(self, now: float, everything: bool = False) -> list[dict]:
        """Counts whose window ended (all with `everything`), and the count of events a run had
        suppressed, once a window after the first of them (one summary line a window at most)."""
        out, done = [], []
        for key, (first, record, repeats) in self._pending.items():
            if not everything and now - first < self.window:
                break  # insertion order is time order: the rest are younger
            done.append(key)
            if repeats:
                out.append({**record, "time": timestamp(), "count": repeats})
        for key in done:
            del self._pending[key]
        for run, (_, _, since) in list(self._suppressed.items()):
            if everything or now - since >= self.window:
                out.append(self._summary(run))
        return out

    def drain(self, now: float) -> list[dict]:
        return self.due(now, everything=True)

    @property
    def holding(self) -> bool:
        return bool(self._pending or self._suppressed)


def _env_max_bytes(environ=os.environ) -> int:
    text = environ.get(MAX_BYTES_ENV, "").strip()
    if not text:
        return MAX_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1024:
        import sys

        print(f"corral: warning: {MAX_BYTES_ENV}={text[:40]!r} is not a byte count of at least 1024; "
              f"using {MAX_BYTES}", file=sys.stderr)
        return MAX_BYTES
    return value


class AuditLog:
    """Appends records, aggregated, rate-limited and rotated (see the module docstring); each
    line is one `write(2)` on an O_APPEND descriptor, so concurrent corral processes sharing
    the file never interleave inside a line. Safe to call from several threads."""

    FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC

    def __init__(self, path: str | None, *, max_bytes: int | None = None, keep: int = KEEP,
                 limiter: Limiter | None = None, clock=time.monotonic):
        self.path = path
        self.fd = -1
        self.max_bytes = _env_max_bytes() if max_bytes is None else max_bytes
        self.keep = max(1, keep)
        self.limiter = limiter or Limiter()
        self.clock = clock
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self.rotates = path != STDOUT
        if path == STDOUT:  # `--audit -`: JSON lines on stdout, for a pod's log collector; never rotated
            self.fd = os.dup(1)
        elif path:
            try:
                os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
                self.fd = os.open(path, self.FLAGS, 0o600)
            except OSError as exc:
                import sys

                print(f"corral: warning: cannot write the audit log {path}: {exc.strerror} "
                      "(set network.audit_log to a writable path)", file=sys.stderr)

    def write(self, record: dict) -> None:
        if self.fd < 0:
            return
        record.setdefault("time", timestamp())
        with self._lock:
            for rec in self.limiter.admit(record, self.clock()):
                self._append(rec)
            self._arm()

    def flush(self) -> None:
        """Write the counts whose window ended (a timer calls this while counts are held)."""
        with self._lock:
            self._timer = None
            if self.fd < 0:
                return
            for rec in self.limiter.due(self.clock()):
                self._append(rec)
            self._arm()

    def _arm(self) -> None:
        if self._timer is None and self.limiter.holding:
            self._timer = threading.Timer(self.limiter.window / 2, self.flush)
            self._timer.daemon = True
            self._timer.start()

    def _append(self, record: dict) -> None:
        line = (json.dumps({k: record[k] for k in FIELDS if record.get(k) not in (None, "")},
                           separators=(",", ":")) + "\n").encode()
        try:
            if self.rotates:
                self._rotate_if_needed(len(line))
            os.write(self.fd, line)
        except OSError:
            pass  # a full disk must not take the proxy down

    def _rotate_if_needed(self, n: int) -> None:
        size = os.fstat(self.fd).st_size
        if size == 0 or size + n <= self.max_bytes:
            return
        import fcntl

        lock = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            mine = os.fstat(self.fd)
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if (current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino)
                    and current.st_size + n > self.max_bytes):
                older = rotated_paths(self.path, self.keep)
                for src, dst in zip(older[1:], older):  # .KEEP-1 -> .KEEP, ..., .1 -> .2
                    try:
                        os.replace(src, dst)
                    except FileNotFoundError:
                        pass
                os.replace(self.path, older[-1])
            # rotated now, or by another process before us: append to the file at `path`
            fd = os.open(self.path, self.FLAGS, 0o600)
            os.close(self.fd)
            self.fd = fd
        finally:
            os.close(lock)

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self.fd >= 0:
                for rec in self.limiter.drain(self.clock()):
                    self._append(rec)
                os.close(self.fd)
                self.fd = -1


# -- reading, for `corral audit` --------------------------------------------------------------

def _parse(line: str):
    try:
        rec = json.loads(line)
    except ValueError:
        return None  # a torn or foreign line: skip it rather than stop
    return rec if isinstance(rec, dict) else None


def read_records(path: str, follow: bool = False, poll: float = 0.25, rotated: bool = True):
    """Yield parsed records: the rotated files' (oldest first, with `rotated`), then the current
    file's; with `follow`, keep waiting for new lines like `tail -f`, across rotations."""
    if rotated:
        for old in rotated_paths(path):
            try:
                with open(old, encoding="utf-8", errors="replace") as fh:
                    for line in fh:
                        rec = _parse(line) if line.endswith("\n") else None
                        if rec is not None:
                            yield rec
            except OSError:
                continue
    try:
        fh = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        if not follow:
            return
        while not os.path.exists(path):
            time.sleep(poll)
        fh = open(path, encoding="utf-8", errors="replace")
    try:
        partial = ""
        while True:
            line = fh.readline()
            if not line:
                if not follow:
                    return
                if _rotated_away(fh, path):  # everything of the old file is read: go on with the new one
                    fh.close()
                    fh = open(path, encoding="utf-8", errors="replace")
                    partial = ""
                    continue
                time.sleep(poll)
                continue
            if not line.endswith("\n"):
                partial += line
                continue
            line, partial = partial + line, ""
            rec = _parse(line)
            if rec is not None:
                yield rec
    finally:
        fh.close()


def _rotated_away(fh, path: str) -> bool:
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fh.fileno())
    return (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino)


COLUMNS = (("time", 12), ("run", 12), ("proto", 11), ("decision", 8), ("host", 30), ("port", 5),
           ("address", 15), ("up", 9), ("down", 9), ("why", 40))


def _text(value) -> str:
    """A field as shown in the table: names the sandbox chose are escaped (`display.shown`)."""
    from ..display import shown

    if value is None:
        return ""
    return shown(value if isinstance(value, str) else str(value))


def format_row(rec: dict) -> str:
    t = _text(rec.get("time"))
    method = rec.get("method")
    values = {
        "time": t[11:23] if len(t) >= 23 else t,
        "run": _text(rec.get("run"))[:12],
        "proto": _text(rec.get("proto")),
        "decision": _text(rec.get("decision")),
        "host": _text(rec.get("host")) + (f" {_text(method)} {_text(rec.get('path'))}" if method else ""),
        "port": _text(rec.get("port")),
        "address": _text(rec.get("address")),
        "up": _size(rec.get("up")),
        "down": _size(rec.get("down")),
        "why": _why(rec),
    }
    return "  ".join(values[name][:width].ljust(width) if i < len(COLUMNS) - 1 else values[name]
                     for i, (name, width) in enumerate(COLUMNS)).rstrip()


def _why(rec: dict) -> str:
    why = _text(rec.get("reason") or rec.get("rule") or "")
    if rec.get("exfiltration"):
        why = "EXFILTRATION ATTEMPT: " + why
    extra = []
    if rec.get("count") and rec.get("decision") != "suppressed":
        extra.append(f"and {_text(rec['count'])} more like it")
    if rec.get("injected"):
        extra.append("injected " + ",".join(_text(n) for n in rec["injected"]))
    if rec.get("redacted"):
        extra.append(f"redacted {_text(rec['redacted'])}")
    return "; ".join([why] + extra) if why and extra else why or "; ".join(extra)


def header() -> str:
    return "  ".join(name.upper().ljust(width) for name, width in COLUMNS).rstrip()


def _size(n) -> str:
    if n is None or n == "":
        return ""
    try:
        n = int(n)
    except (TypeError, ValueError):
        return _text(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


# -- `corral audit --suggest`: the allowances that would have let a run through ------------------

NOT_ALLOWED_TAIL = "is not in allowedDomains"  # rules.Rules._judge's words for "no entry allows it"
NOT_ALLOWED_TAIL_NATIVE = "is not in allowed_domains"  # the same, for native TOML and CLI input
NO_NETWORK = "no network for this run"  # a run without network (sandbox.offline): any allowance helps


class Suggestion:
    """What one run was refused, sorted into what an allowance fixes (pure data; see `suggest`)."""

    def __init__(self, run: str, command: str):
        self.run, self.command = run, command
        self.blocked: dict[str, int] = {}  # "host:port" (or the name, for DNS) -> attempts
        self.presets: dict[str, list[str]] = {}  # preset -> the blocked names it covers
        self.domains: list[str] = []  # allowed_domains entries, outside every preset
        self.trust: list[str] = []  # names whose (private) resolution was refused
        self.other: dict[str, str] = {}  # "host:port" -> why no allowance is suggested


def _entry(host: str, port) -> str:
    """The allowed_domains entry for a blocked destination: the name alone for 80, 443 and DNS."""
    if port in (None, "", 80, 443):
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def suggest(records, run: str | None = None) -> Suggestion | None:
    """The blocked requests of `run` (an id or a unique prefix; default: the last run with a
    block) sorted into presets, allowed_domains entries and trust_resolution names. None when
    there is no such run; ValueError for an ambiguous prefix."""
    from ..policy import presets
    from ..proxy.addresses import normalize_host
    from ..proxy.rules import TRUST_HINT

    by_run: dict[str, list[dict]] = {}
    last = None
    for rec in records:
        if rec.get("decision") != "block" or not rec.get("host"):
            continue
        rid = str(rec.get("run") or "")
        by_run.setdefault(rid, []).append(rec)
        last = rid
    if run is None:
        chosen = last
    elif run in by_run:
        chosen = run
    else:
        matches = [r for r in by_run if r.startswith(run)]
        if len(matches) > 1:
            raise ValueError(f"run {run!r} is ambiguous: {', '.join(sorted(matches)[:5])}")
        chosen = matches[0] if matches else None
    if chosen is None:
        return None
    recs = by_run[chosen]
    out = Suggestion(chosen, str(next((r["command"] for r in recs if r.get("command")), "")))
    entries: dict[str, str] = {}  # allowed_domains entry -> its host
    for rec in recs:
        raw, port = str(rec["host"]), rec.get("port")
        where = f"{raw}:{port}" if port not in (None, "") else raw
        count = rec.get("count") if isinstance(rec.get("count"), int) and rec.get("count") > 0 else 1
        out.blocked[where] = out.blocked.get(where, 0) + count
        reason = str(rec.get("reason") or "")
        try:
            host = normalize_host(raw)
        except ValueError:
            out.other[where] = "not a valid host name"
            continue
        if rec.get("exfiltration") or rec.get("status") == 400:
            out.other[where] = reason or "refused"
        elif TRUST_HINT in reason:
            if host not in out.trust:
                out.trust.append(host)
        elif rec.get("rule") or not (reason.endswith((NOT_ALLOWED_TAIL, NOT_ALLOWED_TAIL_NATIVE)) or reason == NO_NETWORK):
            out.other[where] = reason or f"rule {rec.get('rule')}"
        else:
            entries[_entry(host, port)] = host
    bare = {e for e, h in entries.items() if e == h}  # a bare name covers its other ports too
    for name, host in entries.items():
        if name != host and host in bare:
            continue
        covering = presets.covering(host)
        if covering:
            out.presets.setdefault(covering[0], []).append(name)
        else:
            out.domains.append(name)
    return out


def format_suggestion(s: Suggestion) -> str:
    """Ready-to-paste flags and a TOML snippet; every name the sandbox chose is escaped."""
    from ..display import shown

    def q(text: str) -> str:
        return '"' + shown(text).replace("\\", "\\\\").replace('"', '\\"') + '"'

    items = sorted(s.blocked.items(), key=lambda kv: -kv[1])
    listed = ", ".join(f"{shown(k, 100)} ({n} times)" if n > 1 else shown(k, 100) for k, n in items[:12])
    if len(items) > 12:
        listed += f" and {len(items) - 12} more"
    command = f" ({shown(s.command, 80)})" if s.command else ""
    lines = [f"# run {shown(s.run) or '(none)'}{command}: blocked {listed}"]
    if s.presets or s.domains:
        lines.append("# flags for corral run:")
        lines += [f"--allow-preset {p}" for p in s.presets]
        lines += [f"--allow-domain {shown(d)}" for d in s.domains]
    if s.presets or s.domains or s.trust:
        lines.append("# or in the policy file (native TOML):")
        lines.append("[network]")
        if s.presets:
            lines.append("allow_presets = [" + ", ".join(q(p) for p in s.presets) + "]")
        if s.domains:
            lines.append("allowed_domains = [" + ", ".join(q(d) for d in s.domains) + "]")
        if s.trust:
            lines.append("# these names resolved to private or loopback addresses (split-horizon DNS?):")
            lines.append("trust_resolution = [" + ", ".join(q(t) for t in s.trust) + "]")
    for where, why in s.other.items():
        lines.append(f"# not suggested: {shown(where, 100)}: {shown(why, 200)}")
    return "\n".join(lines) + "\n"
