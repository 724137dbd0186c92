"""What happens to one HTTP request the proxy can read (plain HTTP, terminated HTTPS, an
endpoint): host agreement, HTTP rules, then credentials. Pure: no I/O.

The destination `host` is always the one the connection really goes to (the absolute-form
URI's host, the CONNECT target, the endpoint's upstream), never the client's Host header,
which only decides `require_host_match`.
"""

from __future__ import annotations

from .._values import frozen


@frozen
class Verdict:
    allowed: bool
    status: int  # for a refusal: 403, 405, 400 or 421
    reason: str  # never a secret value
    rule: str = ""  # the HTTP rule that decided, as written
    headers: list = None  # what to send upstream (may hold real values); None when refused
    injected: tuple = ()  # credential names put into the headers
    exfiltration: bool = False
    substitute_body: bool = False  # stream the body through the injector's body substituter
    redact: bool = False  # the response may echo a real value: redact it
    foreign: dict = None  # placeholder -> Credential that must not appear in this request's body
    target: str | None = None  # the request target to send instead (may hold a real value)
    placeholders: tuple = ()  # of the credentials injected, or carried towards the wrong host (audit)
    git: object = None  # gitpolicy.GitVerdict of an allowed git request (its `push`: read the commands)


def _verdict_repr(self) -> str:  # headers may hold real values: never shown
    return (f"Verdict(allowed={self.allowed}, status={self.status}, reason={self.reason!r}, rule={self.rule!r}, "
            f"injected={self.injected!r}, exfiltration={self.exfiltration})")


Verdict.__repr__ = _verdict_repr


class Gate:
    """`http_rules`: an `HttpRules` or None; `injector`: an `Injector` or None; `git`: a
    `gitpolicy.GitRules` or None."""

    def __init__(self, http_rules=None, injector=None, require_host_match: bool = False,
                 strip_response_headers=(), git=None):
        self.http_rules = http_rules
        self.injector = injector
        self.git = git
        self.require_host_match = require_host_match
        self.strip = frozenset(h.lower().encode() if isinstance(h, str) else h.lower()
                               for h in strip_response_headers)

    @property
    def inspecting(self) -> bool:
        return self.http_rules is not None or self.injector is not None or self.git is not None

    def must_inspect(self, host: str) -> bool:
        """Whether `host`'s requests should be read: an HTTP rule or a credential applies to it."""
        return self.ruled(host) or (self.injector is not None and bool(self.injector.bound(host)))

    def ruled(self, host: str) -> bool:
        """Whether an HTTP rule applies to `host`: then traffic that cannot be read is refused
        (a credential alone does not need that: its placeholder is worthless unread). A host a
        `[git]` repository pattern names is ruled too: a push to it must be read."""
        if self.git is not None and self.git.covers(host):
            return True
        return self.http_rules is not None and self.http_rules.covers(host)

    def check(self, method: str, host: str, port: int, target: str, headers: list, *, tls: bool,
              origin_form: bool = False, sni: str | None = None, host_header: str | None = None) -> Verdict:
        """`origin_form`: the request came over a terminated connection to `host`, so its Host
        header must name `host` when `require_host_match` (and `sni`, when the client sent one)."""
        if origin_form and self.require_host_match:
            why = _host_mismatch(host, port, sni, host_header)
            if why:
                return Verdict(False, 421, why)
        if self.http_rules is not None:
            decision = self.http_rules.decide(method, host, target)
            if not decision.allowed:
                return Verdict(False, decision.status, decision.reason, decision.rule_text)
            rule = decision.rule_text
        else:
            rule = ""
        git = self.git.check(method, host, target) if self.git is not None else None
        if git is not None:
            if not git.allowed:
                return Verdict(False, git.status, git.reason, git.rule, git=git)
            rule = f"{rule}; {git.rule}" if rule else git.rule
        verdict = self._credentials(method, host, target, headers, tls, rule)
        if git is not None and verdict.allowed:
            from .._values import replace

            verdict = replace(verdict, git=git)
        return verdict

    def _credentials(self, method: str, host: str, target: str, headers: list, tls: bool, rule: str) -> Verdict:
        injector = self.injector
        if injector is None:
            from .httprules import refuse_method

            why = refuse_method(method)
            if why is not None and (self.http_rules is not None or self.git is not None):
                return Verdict(False, 405, f"{method} is refused: {why}")
            return Verdict(True, 200, "", rule, list(headers))
        result = injector.prepare_request(method, host, tls, headers, None, target=target)
        if result.blocked:
            return Verdict(False, result.status, result.reason, rule, None, (), result.exfiltration,
                           placeholders=_placeholders(injector, result.involved))
        bound = injector.bound(host)
        foreign = {p: c for p, c in injector._bindings.items() if c not in bound}
        target = result.target.decode("latin-1") if result.target is not None else None
        return Verdict(True, 200, result.reason, rule, result.headers, result.injected, False,
                       result.substitute_body, bool(bound), foreign or None, target,
                       _placeholders(injector, result.injected))


def _placeholders(injector, names) -> tuple:
    return tuple(p for p in (injector.placeholder(n) for n in names) if p)


def _host_mismatch(host: str, port: int, sni: str | None, host_header: str | None) -> str:
    from .addresses import normalize_host
    from .httprules import host_match

    if host_header is None:
        return "the request has no Host header (require_host_match)"
    if sni:
        try:
            same = normalize_host(sni) == normalize_host(host)
        except ValueError:
            same = False
        if not same:
            return f"TLS server name {sni!r} is not the host connected to ({host}) (require_host_match)"
    # Compared with the connected host itself (clients send no SNI for IP literals).
    if not host_match(host, host_header, port):
        return f"Host header {host_header!r} does not name {host} (require_host_match: no domain fronting)"
    return ""
