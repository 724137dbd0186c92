"""The audit log: one JSON line per connection and per HTTP request.

Records hold names, addresses, decisions and byte counts; never a header value, a body, a
URL query or proxy credentials (the query string may carry tokens, so only the path is kept).
"""

from __future__ import annotations

import json
import os
import time

FIELDS = ("time", "run", "command", "proto", "host", "port", "address", "decision", "rule",
          "reason", "method", "path", "status", "injected", "placeholders", "redacted", "exfiltration", "up", "down", "ms")


def default_path(environ=os.environ) -> str:
    state = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "corral", "audit.jsonl")


class AuditLog:
    """Appends records; each write is one `write(2)` on an O_APPEND descriptor, so concurrent
    corral processes sharing the file never interleave inside a line."""

    def __init__(self, path: str | None):
        self.path = path
        self.fd = -1
        if path:
            try:
                os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
                self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                import sys

                print(f"corral: warning: cannot write the audit log {path}: {exc.strerror} "
                      "(set network.audit_log to a writable path)", file=sys.stderr)

    def write(self, record: dict) -> None:
        if self.fd < 0:
            return
        record.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z")
        line = json.dumps({k: record[k] for k in FIELDS if record.get(k) not in (None, "")},
                          separators=(",", ":"), ensure_ascii=False) + "\n"
        try:
            os.write(self.fd, line.encode())
        except OSError:
            pass  # a full disk must not take the proxy down

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# -- reading, for `corral audit` --------------------------------------------------------------

def read_records(path: str, follow: bool = False, poll: float = 0.25):
    """Yield parsed records; with `follow`, keep waiting for new lines like `tail -f`."""
    try:
        fh = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        if not follow:
            return
        while not os.path.exists(path):
            time.sleep(poll)
        fh = open(path, encoding="utf-8", errors="replace")
    with fh:
        partial = ""
        while True:
            line = fh.readline()
            if not line:
                if not follow:
                    return
                time.sleep(poll)
                continue
            if not line.endswith("\n"):
                partial += line
                continue
            line, partial = partial + line, ""
            try:
                yield json.loads(line)
            except ValueError:
                continue  # a torn or foreign line: skip it rather than stop


COLUMNS = (("time", 12), ("run", 12), ("proto", 11), ("decision", 8), ("host", 30), ("port", 5),
           ("address", 15), ("up", 9), ("down", 9), ("why", 40))


def format_row(rec: dict) -> str:
    t = rec.get("time", "")
    values = {
        "time": t[11:23] if len(t) >= 23 else t,
        "run": str(rec.get("run", ""))[:12],
        "proto": rec.get("proto", ""),
        "decision": rec.get("decision", ""),
        "host": rec.get("host", "") + (f" {rec['method']} {rec.get('path', '')}" if rec.get("method") else ""),
        "port": str(rec.get("port", "")),
        "address": rec.get("address", ""),
        "up": _size(rec.get("up")),
        "down": _size(rec.get("down")),
        "why": _why(rec),
    }
    return "  ".join(values[name][:width].ljust(width) if i < len(COLUMNS) - 1 else values[name]
                     for i, (name, width) in enumerate(COLUMNS)).rstrip()


def _why(rec: dict) -> str:
    why = rec.get("reason") or rec.get("rule") or ""
    if rec.get("exfiltration"):
        why = "EXFILTRATION ATTEMPT: " + why
    extra = []
    if rec.get("injected"):
        extra.append("injected " + ",".join(rec["injected"]))
    if rec.get("redacted"):
        extra.append(f"redacted {rec['redacted']}")
    return "; ".join([why] + extra) if why and extra else why or "; ".join(extra)


def header() -> str:
    return "  ".join(name.upper().ljust(width) for name, width in COLUMNS).rstrip()


def _size(n) -> str:
    if n is None or n == "":
        return ""
    n = int(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)
