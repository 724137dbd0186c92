"""TLS termination: the sandbox's HTTPS to chosen hosts is decrypted by the proxy, checked and
forwarded over a second, verified TLS connection.

After a CONNECT (or SOCKS5, or a redirected connection) to an allowed host the proxy peeks at
the first bytes (`Proxy.tunnel`). A TLS ClientHello to a host that is terminated gets a leaf
certificate minted by corral's CA for the name the client asked for (SNI, else the host
connected to); the upstream's own certificate is verified against the system store plus the
configured extra CAs, and a failure is answered with 502, never skipped.
"""

from __future__ import annotations

# asyncio is imported where it is used: the launcher builds a Terminator before it forks the
# proxy process, and must not pay ~35 ms for an event loop it never runs.
TLS_HANDSHAKE = 0x16  # the record type a ClientHello arrives in


class Terminator:
    """Which hosts are terminated, and the TLS contexts for both sides. One per proxy (and
    one per late-bound session that terminates, `sessions.py`).

    `terminate`/`exclude`: host patterns (`"*"` is every host); `ca`: a
    `tlsca.CertificateAuthority`; `extra_ca`: PEM files trusted for upstreams too."""

    def __init__(self, ca, terminate=(), exclude=(), extra_ca=(), max_tunnels: int = 256,
                 handshake_timeout: float = 10.0, refuse_opaque: bool = False):
        self.ca = ca
        self.terminate = _patterns(terminate)
        self.exclude = _patterns(exclude)
        self.extra_ca = tuple(extra_ca)
        self.max_tunnels = max_tunnels
        self.handshake_timeout = handshake_timeout
        self.refuse_opaque = refuse_opaque
        self.active = 0
        self._minter = None
        self._upstream = None

    def covers(self, host: str, must_inspect: bool = False) -> bool:
        """Whether `host`'s TLS is terminated (`must_inspect`: a rule or credential applies)."""
        from .addresses import normalize_host
        from .httprules import host_in

        try:
            name = normalize_host(host)
        except ValueError:
            return False
        if any(host_in(p, name) for p in self.exclude):
            return False
        return must_inspect or any(host_in(p, name) for p in self.terminate)

    def excluded(self, host: str) -> bool:
        from .addresses import normalize_host
        from .httprules import host_in

        try:
            name = normalize_host(host)
        except ValueError:
            return False
        return any(host_in(p, name) for p in self.exclude)

    @property
    def minter(self):
        if self._minter is None:
            from .tlsca import LeafMinter

            self._minter = LeafMinter(self.ca)
        return self._minter

    def server_context(self, name: str):
        ctx = self.minter.context_for(name)
        ctx.sni_callback = self._on_sni
        return ctx

    def _on_sni(self, obj, server_name, ctx):
        obj.corral_sni = server_name
        if server_name:
            try:
                obj.context = self.server_context(server_name)
            except ValueError:
                import ssl

                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        return None

    @property
    def upstream_context(self):
        if self._upstream is None:
            from .tlsca import upstream_context

            self._upstream = upstream_context(self.extra_ca + _launcher_extra_cas())
        return self._upstream

    def adopt(self, other: Terminator) -> None:
        """Use `other`'s leaf minter and upstream context: terminators with the same CA and
        extra CAs (the sessions of one proxy) share the leaves minted and the trust store read."""
        if other.ca is not self.ca or other.extra_ca != self.extra_ca:
            raise ValueError("only a terminator with the same CA and extra CAs can be adopted")
        self._minter = other.minter
        self._upstream = other.upstream_context

    def warm(self) -> None:
        """Pay for imports, the first mint and the upstream context before the first client."""
        import h11  # noqa: F401 - the first request must not pay for it

        _ = self.minter
        _ = self.upstream_context


def _patterns(texts):
    from .httprules import parse_host_pattern

    out = []
    for text in texts:
        host = text.strip()
        if host.startswith("[") and "]" in host:
            host = host[1:host.index("]")]
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]  # srt patterns may carry a port; termination is per host
        out.append(parse_host_pattern(host))
    return tuple(out)


def _launcher_extra_cas() -> tuple:
    """CA files the launcher's environment adds for Node (srt honours it for its upstreams)."""
    import os

    extra = os.environ.get("NODE_EXTRA_CA_CERTS")
    return (extra,) if extra and os.path.isfile(extra) else ()


async def open_upstream_tls(terminator, sock, host: str, port: int, timeout: float):
    """TLS to the real server over `sock`, its certificate verified for `host`."""
    import asyncio

    from .streams import TlsStream

    # No session resumption: CPython copies a TLS 1.3 session (~0.3 ms) to hand it out, more
    # than resuming saves (one signature check).
    stream = TlsStream(sock, terminator.upstream_context, server_side=False, server_hostname=host)
    async with asyncio.timeout(timeout):
        await stream.handshake()
    return stream


async def serve(proxy, run, proto: str, client, upstream, first: bytes, host: str, port: int,
                address: str, rule: str, start: float) -> None:
    """Terminate the TLS of one CONNECT-ed (or SOCKS, or redirected) connection to an allowed
    host; `first`: the client's first bytes (its ClientHello, or the start of it)."""
    import asyncio
    import ssl

    from .http_session import HttpSession, Origin
    from .streams import TlsStream

    scope = proxy.scope_of(run)
    term = scope.terminator
    if term.active >= term.max_tunnels:
        proxy.record(run, proto=proto, host=host, port=port, decision="block", status=503,
                     reason=f"the limit of {term.max_tunnels} TLS-terminated connections at once is reached "
                            "(network.tls.max_tunnels)")
        upstream.close()
        return
    term.active += 1
    up_stream = None
    try:
        try:
            tls_client = TlsStream(client, term.server_context(host), server_side=True, first=first)
            async with asyncio.timeout(term.handshake_timeout):
                await tls_client.handshake()
        except (ssl.SSLError, OSError, ValueError, asyncio.TimeoutError) as exc:
            # A client that pins its certificates refuses ours: say which host to exclude.
            proxy.record(run, proto="https", host=host, port=port, decision="error",
                         reason=f"TLS handshake with the sandboxed client failed: {_why(exc)} (a client that pins "
                                f"certificates needs the host excluded from termination)")
            upstream.close()
            return
        sni = tls_client.server_name
        failure = None
        try:
            up_stream = await open_upstream_tls(term, upstream, host, port, term.handshake_timeout)
        except (ssl.SSLError, OSError, asyncio.TimeoutError) as exc:
            upstream.close()
            failure = f"TLS to {host}:{port} failed: {_why(exc)}"

        async def reopen():
            from .dial import DialFailed

            if failure is not None:  # answered 502 (with the reason) once the request is read
                raise DialFailed(failure)
            sock, addr, why = await proxy.dialer.dial(host, port, scope.rules)
            try:
                stream = await open_upstream_tls(term, sock, host, port, term.handshake_timeout)
            except (ssl.SSLError, asyncio.TimeoutError) as exc:
                sock.close()
                raise DialFailed(f"TLS to {host}:{port} failed: {_why(exc)}") from None
            return stream, addr, why

        origin = Origin(run, "https", host, port, reopen, tls=True, sni=sni, upstream=up_stream,
                        address=address, rule=rule)
        await HttpSession(proxy, tls_client, origin).run(b"")
    finally:
        term.active -= 1
        if up_stream is not None:
            up_stream.close()


def _why(exc) -> str:
    import asyncio
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text[:300]

