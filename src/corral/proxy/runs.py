"""Which run a proxied connection belongs to (cheap to import: no asyncio)."""

from __future__ import annotations


class Scope:
    """What one run's connections are held to instead of the proxy's own (a late-bound
    session of `corral proxy --sessions`): its compiled domain rules, its gate (HTTP rules,
    credentials, git) and its TLS terminator. `Proxy` has the same three attributes, so
    `proxy.scope_of(run)` answers either."""

    __slots__ = ("rules", "gate", "terminator")

    def __init__(self, rules, gate=None, terminator=None):
        self.rules, self.gate, self.terminator = rules, gate, terminator


class RunInfo:
    """One sandboxed command (or session) as the proxy knows it: credentials, what it was
    refused, and its `Scope` (None: the proxy's own rules, gate and terminator)."""

    __slots__ = ("run_id", "command", "user", "token", "blocked", "blocked_other", "why", "scope")

    def __init__(self, run_id: str, command: str, user: str, token: str, scope: Scope | None = None):
        self.run_id, self.command, self.user, self.token, self.scope = run_id, command, user, token, scope
        self.blocked: dict[str, int] = {}  # "host:port" -> attempts (at most MAX_BLOCKED_NAMES of them)
        self.blocked_other = 0  # attempts on names past that
        self.why: dict[str, str] = {}  # "host:port" -> the reason of its first refusal


_SECRETISH = ("token", "secret", "passw", "bearer", "authorization", "api_key", "apikey", "api-key",
              "private", "credential", "cookie", "key=")


def describe_command(argv, limit: int = 160) -> str:
    """The command for the audit log: arguments that look like credentials are redacted
    (a token passed on a command line must not end up in a log file)."""
    out = []
    redact_next = False
    for arg in argv:
        low = arg.lower()
        if redact_next:
            out.append("<redacted>")
            redact_next = False
            continue
        if any(word in low for word in _SECRETISH) or _looks_random(arg):
            out.append(arg.split("=", 1)[0] + "=<redacted>" if "=" in arg and arg.startswith("-") else "<redacted>")
            redact_next = arg.startswith("-") and "=" not in arg
            continue
        out.append(arg)
    text = " ".join(out)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _looks_random(arg: str) -> bool:
    """Long runs of letters and digits mixed, as API keys are (not paths or words)."""
    for sep in "=:@/?&":
        arg = arg.replace(sep, " ")
    for word in arg.split():
        if len(word) >= 24 and any(c.isdigit() for c in word) and any(c.isalpha() for c in word):
            return True
    return False
