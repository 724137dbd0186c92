"""The egress proxy: accept -> parse -> decide (pure rules) -> dial what was checked -> relay -> audit.

One asyncio loop serves every listener it is given: the HTTP proxy (absolute-form requests and
CONNECT), SOCKS5, the transparent listener (redirected connections) and the DNS resolver.
Sockets are used directly; tunnels are relayed with splice. What happens inside one HTTP
connection (requests checked and forwarded one by one) is `http_session`'s.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import threading
import time

from .audit import AuditLog
from .dial import Blocked, DialFailed, Dialer
from .http_session import HEAD_TIMEOUT, IDLE_TIMEOUT, HttpSession, Origin, hostport
from .runs import RunInfo

FIRST_BYTES_WAIT = 0.5  # a client that sends nothing in this long waits for the server (ssh): relayed
TLS_FIRST_BYTES_WAIT = 2.0
SERVER_SPEAKS_FIRST = frozenset((21, 22, 25, 110, 143, 587, 3306))  # ftp ssh smtp pop3 imap submission mysql
RECV = 256 * 1024
MAX_BLOCKED_NAMES = 1000  # distinct blocked destinations a run's end-of-run summary keeps count of


class Proxy:
    """Serves listeners on its own event loop (in a thread, or in the caller's)."""

    def __init__(self, rules, audit: AuditLog | None = None, host_addresses=(), parent_proxy=None,
                 synthetic=None):
        self.dialer = Dialer(rules, host_addresses, parent_proxy)
        self.audit = audit or AuditLog(None)
        self.gate = None  # gate.Gate: HTTP rules and credentials for the requests it can read
        self.terminator = None  # terminate.Terminator: TLS termination, when on
        self.endpoints: dict[int, object] = {}  # listening port -> endpoints.Endpoint
        self.synthetic = synthetic
        self.runs: dict[str, RunInfo] = {}  # by user name
        self.default_run: RunInfo | None = None
        self.sessions = None  # sessions.SessionStore: runs bound late, from a directory (`--sessions`)
        # Listeners on host loopback ports (the landlock backend): any local process can connect,
        # so a connection without its run's credentials is refused (407) instead of taken for
        # the default run.
        self.require_credentials = False
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._tasks: set = set()

    # -- runs and rules (callable from any thread) -----------------------------------------
    @property
    def rules(self):
        return self.dialer.rules

    def set_rules(self, rules) -> None:
        """New connections use these rules; established ones keep what they were allowed."""
        self.dialer.rules = rules

    def add_run(self, run_id: str, command: str, user: str | None = None, token: str | None = None) -> RunInfo:
        user = user or f"corral-{run_id}"
        info = RunInfo(run_id, command, user, token or base64.b32encode(os.urandom(15)).decode().lower())
        self.register(info)
        return info

    def register(self, info: RunInfo) -> None:
        with self._lock:
            self.runs[info.user] = info
            if self.default_run is None:
                self.default_run = info

    def remove_run(self, info: RunInfo) -> None:
        with self._lock:
            self.runs.pop(info.user, None)
            if self.default_run is info:
                self.default_run = next(iter(self.runs.values()), None)

    def _run_for(self, user: str | None, token: str | None) -> RunInfo | None | bool:
        """The run a connection belongs to; False when it presented wrong credentials."""
        if self.sessions is not None:
            return self.sessions.run_for(user, token)
        if user is None:
            return False if self.require_credentials else self.default_run
        info = self.runs.get(user)
        if info is None or token is None or not _same(info.token, token):
            return False
        return info

    def scope_of(self, run: RunInfo | None):
        """What `run`'s connections are held to: its own `runs.Scope`, else the proxy itself
        (which has the same `rules`, `gate` and `terminator`)."""
        if run is None or run.scope is None:
            return self
        return run.scope

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, listeners: dict[str, socket.socket]) -> None:
        """Serve in a daemon thread until stop()."""
        self._thread = threading.Thread(target=self._thread_main, args=(listeners,), name="corral-proxy", daemon=True)
        self._thread.start()

    def _thread_main(self, listeners) -> None:
        try:
            asyncio.run(self.serve(listeners))
        except BaseException:  # pragma: no cover - reported, never silent
            import traceback

            traceback.print_exc()

    def stop(self, timeout: float = 2.0) -> None:
        if self._thread is None:
            return
        self._ready.wait(timeout)
        if self._loop is not None and self._stopping is not None:
            try:
                self._loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:
                pass
        self._thread.join(timeout)
        self._thread = None

    async def serve(self, listeners: dict[str, socket.socket]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        _raise_fd_limit()
        handlers = {"http": self._http_client, "socks": self._http_client, "any": self._http_client,
                    "transparent": self._transparent_client}
        if self.terminator is not None:
            self.terminator.warm()
        accepting = []
        for name, sock in listeners.items():
            sock.setblocking(False)
            if name == "dns":
                from .resolver import serve_dns

                accepting.append(asyncio.ensure_future(serve_dns(self, sock)))
            elif name.startswith("endpoint"):
                accepting.append(asyncio.ensure_future(self._accept(sock, self._endpoint_client, name)))
            else:
                accepting.append(asyncio.ensure_future(self._accept(sock, handlers[name], name)))
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            for task in accepting:
                task.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*accepting, *self._tasks, return_exceptions=True)
            self.audit.close()

    async def _accept(self, listener: socket.socket, handler, name: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, addr = await loop.sock_accept(listener)
            except (ConnectionAbortedError, InterruptedError):
                continue
            except OSError as exc:
                if exc.errno in (23, 24):  # ENFILE/EMFILE: wait for descriptors to free up
                    await asyncio.sleep(0.05)
                    continue
                raise
            client.setblocking(False)
            if client.family != socket.AF_UNIX:
                # Small answers must not wait for the client's delayed ACK (Nagle).
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(self._guard(handler, client, name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _guard(self, handler, client: socket.socket, name: str) -> None:
        """One client's failure must never reach the others."""
        try:
            await handler(client, name)
        except (asyncio.CancelledError, ConnectionError, TimeoutError, asyncio.TimeoutError):
            if os.environ.get("CORRAL_DEBUG"):
                import traceback; traceback.print_exc()
        except Exception as exc:  # a bug in one connection: log it, keep serving
            import sys

            from ..display import shown

            print(f"corral proxy: internal error on a {name} connection: {type(exc).__name__}: {shown(str(exc), 300)}",
                  file=sys.stderr)
        finally:
            client.close()

    # -- auditing ------------------------------------------------------------------------------
    def record(self, run: RunInfo | None, **fields) -> None:
        if fields.get("path"):
            fields["path"] = fields["path"].split("?", 1)[0]  # queries may carry tokens
        if run is not None:
            fields.setdefault("run", run.run_id)
            fields.setdefault("command", run.command)
            if fields.get("decision") == "block":
                key = hostport(fields.get("host", "?"), fields.get("port"))
                if key in run.blocked or len(run.blocked) < MAX_BLOCKED_NAMES:  # the sandbox picks the names
                    run.blocked[key] = run.blocked.get(key, 0) + 1
                    run.why.setdefault(key, str(fields.get("reason") or ""))
                else:
                    run.blocked_other += 1
        self.audit.write(fields)

    # -- HTTP proxy (and SOCKS5, sniffed by its first byte) --------------------------------------
    async def _http_client(self, client: socket.socket, name: str) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(HEAD_TIMEOUT):
            first = await loop.sock_recv(client, RECV)
        if not first:
            return
        if first[0] == 5:
            from .socks_session import socks_session

            await socks_session(self, client, first)
            return
        from .streams import SockStream

        await HttpSession(self, SockStream(client, loop)).run(first)

    # -- base-URL endpoints -----------------------------------------------------------------------
    async def _endpoint_client(self, client: socket.socket, name: str) -> None:
        from .streams import SockStream

        port = client.getsockname()[1]
        origin = self.endpoint_at("127.0.0.1", port, self.default_run)
        if origin is None:
            return
        await HttpSession(self, SockStream(client), origin).run(b"")

    def endpoint_at(self, host: str, port: int, run):
        """The Origin of the endpoint listening at host:port inside the sandbox, or None."""
        endpoint = self.endpoints.get(port)
        if endpoint is None or host not in ("127.0.0.1", "localhost"):
            return None
        return endpoint.origin(self, run)
    # -- transparent ------------------------------------------------------------------------------
    async def _transparent_client(self, client: socket.socket, name: str) -> None:
        run = self.default_run
        start = time.monotonic()
        try:
            ip, port = original_destination(client)
        except OSError:  # connected to the transparent port itself: nothing was redirected
            self.record(run, proto="transparent", decision="block", reason="no original destination")
            _reset(client)
            return
        if ip.startswith("::ffff:"):
            ip = ip[7:]
        host = ip
        if self.synthetic is not None:
            import ipaddress

            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                addr = None
            if addr is not None and addr in self.synthetic:
                host = self.synthetic.name_for(addr)
                if host is None:
                    self.record(run, proto="transparent", host=ip, port=port, decision="block",
                                reason="synthetic address that the resolver never handed out")
                    _reset(client)
                    return
        try:
            upstream, address, rule = await self.dialer.dial(host, port, self.scope_of(run).rules)
        except Blocked as b:
            self.record(run, proto="transparent", host=host, port=port, decision="block", rule=b.decision.rule,
                        reason=b.decision.reason)
            _reset(client)
            return
        except DialFailed as f:
            self.record(run, proto="transparent", host=host, port=port, decision="error", reason=str(f))
            _reset(client)
            return
        await self.tunnel(run, "transparent", client, upstream, b"", host, port, address, rule, start)

    def tunnel_refusal(self, host: str, scope=None) -> str:
        """Why a tunnel to `host` is refused before it is dialled ("" when it is not).
        `scope`: `scope_of(run)` (None: the proxy's own)."""
        if scope is None:
            scope = self
        term, gate = scope.terminator, scope.gate
        ruled = gate is not None and gate.ruled(host)
        if term is None:
            return "HTTP rules apply to this host, but TLS termination is off" if ruled else ""
        if term.excluded(host) and (ruled or term.refuse_opaque):
            return ("the host is excluded from TLS termination, but HTTP rules apply to it"
                    if ruled else "the host is excluded from TLS termination and opaque tunnels are refused")
        return ""

    async def tunnel(self, run, proto: str, client, upstream, first: bytes, host: str, port: int,
                     address: str, rule: str, start: float) -> None:
        """An allowed connection: terminate its TLS, read its plain HTTP, or relay it opaquely,
        as the policy says and its first bytes tell."""
        scope = self.scope_of(run)
        refusal = self.tunnel_refusal(host, scope)
        if refusal:
            upstream.close()
            self.record(run, proto=proto, host=host, port=port, decision="block", reason=refusal)
            return
        term, gate = scope.terminator, scope.gate
        terminate = term is not None and term.covers(host, gate is not None and gate.must_inspect(host))
        inspect = gate is not None and gate.inspecting
        if terminate or inspect:
            if not first:
                # A TLS client speaks at once; a slow machine gets more time before a
                # terminated host's connection is taken for one where the server speaks first.
                wait = TLS_FIRST_BYTES_WAIT if terminate and port not in SERVER_SPEAKS_FIRST else FIRST_BYTES_WAIT
                first = await self._first_bytes(client, wait)
                if first is None:  # the client hung up
                    upstream.close()
                    return
            if terminate and first[:1] == b"\x16":  # a TLS handshake record
                from .terminate import serve

                await serve(self, run, proto, client, upstream, first, host, port, address, rule, start)
                return
            if inspect and _looks_like_http(first):
                await self._plain_http(run, client, upstream, first, host, port, address, rule)
                return
            ruled = gate is not None and gate.ruled(host)
            if ruled or (term is not None and term.refuse_opaque):
                why = "HTTP rules apply to the host" if ruled else "opaque tunnels are refused"
                upstream.close()
                self.record(run, proto=proto, host=host, port=port, decision="block", status=403,
                            reason=f"the connection carries neither TLS nor HTTP and cannot be inspected; {why}")
                return
        await self.relay_opaque(run, proto, client, upstream, first, host, port, address, rule, start)

    async def _first_bytes(self, client, wait: float) -> bytes | None:
        """What the client sends first; b"" when it waits for the server to speak (ssh, smtp)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(wait):
                data = await loop.sock_recv(client, 16384)
        except asyncio.TimeoutError:
            return b""
        except OSError:
            return None
        return data or None

    async def _plain_http(self, run, client, upstream, first: bytes, host: str, port: int, address: str,
                          rule: str) -> None:
        """Plain HTTP inside a tunnel (SOCKS, CONNECT, a redirected port 80): read like any
        request the proxy sees, so credentials and HTTP rules hold there too."""
        from .streams import SockStream

        scope = self.scope_of(run)

        async def reopen():
            sock, addr, why = await self.dialer.dial(host, port, scope.rules)  # the rules in force now
            return SockStream(sock), addr, why

        origin = Origin(run, "http", host, port, reopen, tls=False, upstream=SockStream(upstream), address=address,
                        rule=rule)
        await HttpSession(self, SockStream(client), origin).run(first)

    async def relay_opaque(self, run, proto: str, client, upstream, first: bytes, host: str, port: int,
                           address: str, rule: str, start: float) -> None:
        """Relay until both sides are done, close the upstream, and audit it. `first`: bytes the
        client sent before the tunnel was set up."""
        from .relay import relay

        try:
            up, down = await relay(client, upstream, a_first=first, idle_timeout=IDLE_TIMEOUT)
        finally:
            upstream.close()
        self.record(run, proto=proto, host=host, port=port, address=address, decision="allow",
                    rule=rule, up=up, down=down, ms=int((time.monotonic() - start) * 1000))

    # -- summary ----------------------------------------------------------------------------------
    def blocked_summary(self, run: RunInfo) -> str:
        if not run.blocked:
            return ""
        from ..display import shown

        items = sorted(run.blocked.items(), key=lambda kv: -kv[1])
        parts, allow = [], {}
        for key, n in items[:8]:
            why = run.why.get(key, "")
            if why.endswith(("is not in allowedDomains", "is not in allowed_domains")):
                host, _, port = key.rpartition(":") if key.count(":") == 1 else (key, "", "")
                allow[host if port in ("", "80", "443") else key] = None  # the usual ports: the name
                why = "not allowed"
            if key.startswith("?"):  # no destination could be read: malformed requests, reasons vary
                why = "malformed requests" if n > 1 else why
                label = "requests it could not read"
            else:
                label = shown(key, 100)
            detail = ", ".join(x for x in (shown(why, 120) if why else "", f"{n} attempts" if n > 1 else "") if x)
            parts.append(label + (f" ({detail})" if detail else ""))
        others = len(items) - 8 if len(items) > 8 else 0
        more = f" and {others} more" if others else ""
        if run.blocked_other:
            more += f" (and {run.blocked_other} attempts on further names)"
        if not allow:  # denied by a rule, malformed, refused addresses: no allowance to suggest
            return f"corral: blocked network access to {', '.join(parts)}{more} (see `corral audit --blocked`)"
        hint = "allow with " + " ".join(f"--allow-domain {shown(h, 100)}" for h in list(allow)[:3])
        return (f"corral: blocked network access to {', '.join(parts)}{more} ({hint}; "
                "`corral audit --suggest` prints what would allow them)")


# -- helpers ------------------------------------------------------------------------------------

_HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"PATCH ", b"DELETE ", b"HEAD ", b"OPTIONS ", b"TRACE ", b"TRACK ",
                 b"PROPFIND ", b"MKCOL ", b"COPY ", b"MOVE ", b"LOCK ", b"UNLOCK ", b"REPORT ", b"SEARCH ")


def _looks_like_http(data: bytes) -> bool:
    return data.startswith(_HTTP_METHODS)


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


def _reset(sock: socket.socket) -> None:
    """Close with RST, so a blocked transparent connection fails at once."""
    import struct

    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 65536), hard))
        except (ValueError, OSError):
            pass


def original_destination(sock: socket.socket) -> tuple[str, int]:
    """Where a redirected connection was going (SO_ORIGINAL_DST, v4 or v6)."""
    try:
        raw = sock.getsockopt(socket.SOL_IP, 80, 16)
        port, = struct.unpack_from("!H", raw, 2)
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    except OSError:
        raw = sock.getsockopt(socket.IPPROTO_IPV6, 80, 28)
        port, = struct.unpack_from("!H", raw, 2)
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port
