"""Base-URL endpoints: plain HTTP inside the sandbox, verified TLS to the real API.

A tool pointed at `ANTHROPIC_BASE_URL=http://127.0.0.1:3200` needs no proxy support and no
trust in corral's CA: the proxy listens there (inside the sandbox's network namespace),
forwards each request to the endpoint's upstream over TLS it verifies, and the credential
bound to the upstream is injected on the way. The upstream is reachable through its endpoint
even when the domain rules do not list it (deny rules and address checks still apply).
"""

from __future__ import annotations

FIRST_PORT = 3200  # endpoint i listens on FIRST_PORT + i


class Endpoint:
    def __init__(self, name: str, host: str, port: int, listen_port: int, upstream_tls):
        self.name = name
        self.host = host
        self.port = port
        self.listen_port = listen_port
        self.tls = upstream_tls  # a terminate.Terminator (only its upstream side is used)
        self._rules = None  # (proxy rules, the same with the upstream allowed)

    def rules_for(self, rules):
        if self._rules is None or self._rules[0] is not rules:
            self._rules = (rules, rules.with_allowed([f"{_bracket(self.host)}:{self.port}"]))
        return self._rules[1]

    def origin(self, proxy, run):
        from .http_session import Origin

        async def open_upstream():
            import ssl

            from .dial import DialFailed
            from .terminate import _why, open_upstream_tls

            sock, address, rule = await proxy.dialer.dial(self.host, self.port, self.rules_for(proxy.scope_of(run).rules))
            try:
                stream = await open_upstream_tls(self.tls, sock, self.host, self.port, self.tls.handshake_timeout)
            except (ssl.SSLError, OSError, TimeoutError) as exc:
                sock.close()
                raise DialFailed(f"TLS to {self.host}:{self.port} failed: {_why(exc)}") from None
            return stream, address, f"endpoint {self.name}"

        return Origin(run, "endpoint", self.host, self.port, open_upstream, tls=True)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
