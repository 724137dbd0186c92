"""The egress proxy: accept -> parse -> decide (pure rules) -> dial what was checked -> relay -> audit.

One asyncio loop serves every listener it is given: the HTTP proxy (absolute-form requests and
CONNECT), SOCKS5, the transparent listener (redirected connections) and the DNS resolver.
Sockets are used directly (no streams); tunnels are relayed with splice.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import threading
import time

from .audit import AuditLog
from .dial import Blocked, DialFailed, Dialer
from .runs import RunInfo

HEAD_TIMEOUT = 30.0  # a client must send a complete request head within this (slowloris)
IDLE_TIMEOUT = 300.0  # an idle keep-alive connection or tunnel is closed after this
MAX_HEAD = 32 * 1024
MAX_HEADERS = 100
SPLICE_MIN = 64 * 1024  # bodies at least this large (Content-Length) bypass Python: splice
RECV = 256 * 1024
HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-authorization", b"proxy-connection", b"te",
                        b"trailer", b"upgrade", b"proxy-authenticate"))


class Proxy:
    """Serves listeners on its own event loop (in a thread, or in the caller's)."""

    def __init__(self, rules, audit: AuditLog | None = None, host_addresses=(), parent_proxy=None,
                 synthetic=None):
        self.dialer = Dialer(rules, host_addresses, parent_proxy)
        self.audit = audit or AuditLog(None)
        self.synthetic = synthetic
        self.runs: dict[str, RunInfo] = {}  # by user name
        self.default_run: RunInfo | None = None
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
        if user is None:
            return self.default_run
        info = self.runs.get(user)
        if info is None or token is None or not _same(info.token, token):
            return False
        return info

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
        accepting = []
        for name, sock in listeners.items():
            sock.setblocking(False)
            if name == "dns":
                from .resolver import serve_dns

                accepting.append(asyncio.ensure_future(serve_dns(self, sock)))
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
            pass
        except Exception as exc:  # a bug in one connection: log it, keep serving
            import sys

            print(f"corral proxy: internal error on a {name} connection: {type(exc).__name__}: {exc}", file=sys.stderr)
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
                key = _hostport(fields.get("host", "?"), fields.get("port"))
                run.blocked[key] = run.blocked.get(key, 0) + 1
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
        await HttpSession(self, client).run(first)

    # -- transparent ------------------------------------------------------------------------------
    async def _transparent_client(self, client: socket.socket, name: str) -> None:
        from ..sandbox.netns import original_destination

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
            upstream, address, rule = await self.dialer.dial(host, port)
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

    async def tunnel(self, run, proto: str, client, upstream, first: bytes, host: str, port: int,
                     address: str, rule: str, start: float) -> None:
        """Relay an allowed connection until both sides are done, close the upstream, and
        audit it. `first`: bytes the client sent before the tunnel was set up."""
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
        items = sorted(run.blocked.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{k} ({n})" if n > 1 else k for k, n in items[:8])
        more = f" and {len(items) - 8} more" if len(items) > 8 else ""
        return f"corral: blocked network access to {shown}{more} (see `corral audit --blocked`)"


class HttpSession:
    """One client connection to the HTTP proxy: requests checked one by one."""

    def __init__(self, proxy: Proxy, client: socket.socket):
        import h11

        self.h11 = h11
        self.proxy = proxy
        self.client = client
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.loop = asyncio.get_running_loop()
        self.upstream = None  # (key, socket, h11 client connection, address)
        self.closing = False

    async def run(self, first: bytes) -> None:
        h11 = self.h11
        self.conn.receive_data(first)
        try:
            while True:
                try:
                    event = await self._next(self.conn, self.client, HEAD_TIMEOUT)
                except h11.RemoteProtocolError as exc:
                    await self._protocol_error(exc)
                    return
                if not isinstance(event, h11.Request):
                    return  # ConnectionClosed or EOF between requests
                keep = await self._request(event)
                if not keep or self.closing or self.conn.our_state is h11.MUST_CLOSE or self.conn.their_state is h11.MUST_CLOSE:
                    return
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                elif self.conn.our_state is not h11.IDLE:  # IDLE: fresh state after a spliced body
                    return
        finally:
            self._drop_upstream()

    # -- plumbing -----------------------------------------------------------------------------
    async def _next(self, conn, sock, timeout):
        h11 = self.h11
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                async with asyncio.timeout(timeout):  # cheaper than wait_for: no Task per read
                    data = await self.loop.sock_recv(sock, RECV)
                if sock is not self.client and data:
                    # ACK the upstream at once: a server that writes head and body separately
                    # (Nagle) would otherwise wait for our delayed ACK, ~40 ms per response.
                    try:
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                    except OSError:
                        pass
                conn.receive_data(data)
                continue
            if event is h11.PAUSED:
                return None
            return event

    async def _send(self, sock, data: bytes) -> None:
        if data:
            await self.loop.sock_sendall(sock, data)

    async def _respond(self, status: int, reason: str, body: str, extra=(), close: bool = True) -> None:
        h11 = self.h11
        payload = body.encode("utf-8", "replace")
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(payload)).encode()),
                   *extra]
        if close:
            headers.append((b"connection", b"close"))
        try:
            data = self.conn.send(h11.Response(status_code=status, headers=headers, reason=_ascii(reason)))
            data += self.conn.send(h11.Data(data=payload)) + self.conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            return
        await self._send(self.client, data)
        if close:
            await self._linger()

    async def _linger(self) -> None:
        """Half-close, then discard what the client is still sending for a moment: closing
        with unread input would reset the connection and destroy the answer in flight."""
        try:
            self.client.shutdown(socket.SHUT_WR)
            deadline = self.loop.time() + 1.0
            left = 1 << 20
            while left > 0 and self.loop.time() < deadline:
                async with asyncio.timeout(deadline - self.loop.time()):
                    chunk = await self.loop.sock_recv(self.client, 65536)
                if not chunk:
                    break
                left -= len(chunk)
        except (OSError, asyncio.TimeoutError):
            pass

    async def _protocol_error(self, exc) -> None:
        status = getattr(exc, "error_status_hint", 400)
        if "too long" in str(exc).lower() or "too large" in str(exc).lower():
            status = 431
        await self._respond(status, "Bad Request" if status == 400 else "Request Header Fields Too Large",
                            f"corral proxy: malformed request: {exc}\n")

    def _credentials(self, request):
        for name, value in request.headers:
            if name == b"proxy-authorization":
                scheme, _, data = value.partition(b" ")
                if scheme.lower() != b"basic":
                    return "", ""
                try:
                    user, _, token = base64.b64decode(data.strip(), validate=True).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    return "", ""
                return user, token
        return None, None

    # -- one request ------------------------------------------------------------------------------
    async def _request(self, request) -> bool:
        h11 = self.h11
        proxy = self.proxy
        run = proxy._run_for(*self._credentials(request))
        if run is False:
            await self._respond(407, "Proxy Authentication Required", "corral proxy: wrong proxy credentials\n",
                                extra=[(b"proxy-authenticate", b'Basic realm="corral"')])
            return False
        if len(request.headers) > MAX_HEADERS or sum(len(n) + len(v) + 4 for n, v in request.headers) > MAX_HEAD:
            # h11 bounds only heads that arrive in pieces; one that arrives whole is checked here.
            await self._respond(431, "Request Header Fields Too Large",
                                f"corral proxy: request head over {MAX_HEAD} bytes or {MAX_HEADERS} headers\n")
            return False
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("ascii", "replace")
        te = cl = False
        for name, _ in request.headers:
            te |= name == b"transfer-encoding"
            cl |= name == b"content-length"
        if te and cl:
            await self._respond(400, "Bad Request", "corral proxy: both Content-Length and Transfer-Encoding "
                                "(request smuggling attempt?)\n")
            return False
        if method == "CONNECT":
            await self._connect(run, target)
            return False
        from .urls import split_absolute

        try:
            host, port, path = split_absolute(target)
        except ValueError as exc:
            await self._respond(400, "Bad Request", f"corral proxy: {exc}\n")
            return False
        start = time.monotonic()
        try:
            key, sock, up, address, rule = await self._upstream_for(host, port)
        except Blocked as b:
            proxy.record(run, proto="http", host=host, port=port, method=method, path=path, decision="block",
                         rule=b.decision.rule, reason=b.decision.reason, status=403)
            await self._blocked(host, port, b.decision)
            return await self._discard_body() and self.conn.our_state is h11.DONE
        except DialFailed as f:
            proxy.record(run, proto="http", host=host, port=port, method=method, path=path, decision="error",
                         reason=str(f), status=502)
            await self._respond(502, "Bad Gateway", f"corral proxy: cannot reach {_hostport(host, port)}: {f}\n")
            return False
        headers = _forward_headers(request.headers, _authority(host, port))
        if self.conn.client_is_waiting_for_100_continue:
            await self._send(self.client, self.conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            headers = [(n, v) for n, v in headers if n != b"expect"]
        up_bytes = down_bytes = 0
        try:
            await self._send(sock, up.send(h11.Request(method=request.method, target=path.encode(), headers=headers)))
            while True:  # request body
                event = await self._next(self.conn, self.client, IDLE_TIMEOUT)
                if isinstance(event, h11.Data):
                    up_bytes += len(event.data)
                    await self._send(sock, up.send(event))
                elif isinstance(event, h11.EndOfMessage):
                    await self._send(sock, up.send(h11.EndOfMessage()))
                    break
                else:
                    self._drop_upstream()
                    return False
            status = 0
            while True:  # response
                event = await self._next(up, sock, IDLE_TIMEOUT)
                if isinstance(event, h11.InformationalResponse):
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    length = _spliceable_length(request.method, event)
                    if length is not None:
                        await self._splice_response(request, event, length)
                        down_bytes = length
                        break
                    await self._send(self.client, self.conn.send(h11.Response(
                        status_code=event.status_code, reason=event.reason,
                        headers=_response_headers(event.headers))))
                elif isinstance(event, h11.Data):
                    down_bytes += len(event.data)
                    await self._send(self.client, self.conn.send(event))
                elif isinstance(event, h11.EndOfMessage):
                    await self._send(self.client, self.conn.send(h11.EndOfMessage()))
                    break
                else:
                    raise DialFailed("upstream closed the connection mid-response")
        except (h11.RemoteProtocolError, h11.LocalProtocolError, DialFailed, OSError) as exc:
            self._drop_upstream()
            proxy.record(run, proto="http", host=host, port=port, address=address, method=method, path=path,
                         decision="error", reason=f"upstream: {exc}", up=up_bytes, down=down_bytes)
            if self.conn.our_state is h11.SEND_RESPONSE:
                await self._respond(502, "Bad Gateway", f"corral proxy: upstream error: {exc}\n")
            return False
        proxy.record(run, proto="http", host=host, port=port, address=address, method=method, path=path,
                     decision="allow", rule=rule, status=status, up=up_bytes,
                     down=down_bytes, ms=int((time.monotonic() - start) * 1000))
        if self.upstream is None or self.upstream[2] is not up:
            return True  # the body was spliced: both sides already have fresh protocol state
        if up.our_state is h11.DONE and up.their_state is h11.DONE:
            up.start_next_cycle()
        else:
            self._drop_upstream()
        return True

    async def _splice_response(self, request, response, length: int) -> None:
        """Send the head ourselves and move the body with splice; h11 only framed the heads.
        Afterwards both connections get fresh h11 state (fed whatever they had buffered)."""
        h11 = self.h11
        key, sock, up, address = self.upstream
        keep = request.http_version == b"1.1" and not _has_token(request.headers, b"connection", b"close")
        head = [b"HTTP/1.1 %d %s\r\n" % (response.status_code, response.reason)]
        head += [name + b": " + value + b"\r\n" for name, value in _response_headers(response.headers)]
        if not keep:
            head.append(b"connection: close\r\n")
        buffered = bytes(up.trailing_data[0][:length])
        await self._send(self.client, b"".join(head) + b"\r\n" + buffered)
        from .relay import splice_exact

        await splice_exact(sock, self.client, length - len(buffered))
        upstream_keeps = response.http_version == b"1.1" and not _has_token(response.headers, b"connection", b"close")
        if upstream_keeps:
            self.upstream = (key, sock, h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD), address)
        else:
            self._drop_upstream()
        pending = self.conn.trailing_data[0]
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        if pending:
            self.conn.receive_data(bytes(pending))
        self.closing = not keep

    async def _discard_body(self) -> bool:
        """After an early answer, keep the connection only if the request body is consumed
        (a small body is read and dropped; a large one closes the connection)."""
        h11 = self.h11
        left = 1 << 20
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError:
                return False
            if isinstance(event, h11.EndOfMessage):
                return True
            if isinstance(event, h11.Data):
                left -= len(event.data)
                if left < 0:
                    return False
                continue
            if event is h11.NEED_DATA:
                try:
                    async with asyncio.timeout(HEAD_TIMEOUT):
                        data = await self.loop.sock_recv(self.client, RECV)
                except (OSError, asyncio.TimeoutError):
                    return False
                self.conn.receive_data(data)
                if not data:
                    return False
                continue
            return False

    async def _blocked(self, host: str, port: int, decision) -> None:
        await self._respond(403, "Forbidden", _block_body(host, port, decision),
                            extra=[(b"x-corral-decision", _decision_header(decision))], close=False)

    async def _upstream_for(self, host: str, port: int):
        key = (host, port)
        if self.upstream is not None and self.upstream[0] == key and _still_open(self.upstream[1]):
            # Re-check the rules: they may have changed since this connection was opened.
            rule = self.proxy.dialer.decide(host, port).rule
            return (*self.upstream, rule)
        self._drop_upstream()
        sock, address, rule = await self.proxy.dialer.dial(host, port)
        up = self.h11.Connection(self.h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self.upstream = (key, sock, up, address)
        return (*self.upstream, rule)

    def _drop_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream[1].close()
            self.upstream = None

    async def _connect(self, run, target: str) -> None:
        h11 = self.h11
        proxy = self.proxy
        from .urls import split_authority

        try:
            host, port = split_authority(target, default_port=None)
        except ValueError as exc:
            await self._respond(400, "Bad Request", f"corral proxy: bad CONNECT target: {exc}\n")
            return
        start = time.monotonic()
        try:
            upstream, address, rule = await proxy.dialer.dial(host, port)
        except Blocked as b:
            proxy.record(run, proto="connect", host=host, port=port, decision="block", rule=b.decision.rule,
                         reason=b.decision.reason, status=403)
            await self._respond(403, f"Forbidden: {b.decision.reason}", _block_body(host, port, b.decision),
                                extra=[(b"x-corral-decision", _decision_header(b.decision))])
            return
        except DialFailed as f:
            proxy.record(run, proto="connect", host=host, port=port, decision="error", reason=str(f), status=502)
            await self._respond(502, "Bad Gateway", f"corral proxy: cannot reach {_hostport(host, port)}: {f}\n")
            return
        try:
            await self._send(self.client, self.conn.send(h11.Response(status_code=200, headers=[],
                                                                       reason=b"Connection established")))
        except BaseException:
            upstream.close()
            raise
        leftover, _closed = self.conn.trailing_data
        await proxy.tunnel(run, "connect", self.client, upstream, bytes(leftover), host, port, address, rule, start)


# -- helpers ------------------------------------------------------------------------------------

def _forward_headers(headers, authority: str) -> list:
    drop = set(HOP_BY_HOP)
    for name, value in headers:
        if name == b"connection":
            drop.update(v.strip().lower() for v in value.split(b","))
    drop.discard(b"transfer-encoding")  # framing: h11 re-frames the body with it
    out = [(b"host", authority.encode("idna") if not authority.isascii() else authority.encode())]
    out += [(n, v) for n, v in headers if n not in drop and n != b"host"]
    return out


def _response_headers(headers) -> list:
    drop = set(HOP_BY_HOP)
    for name, value in headers:
        if name == b"connection":
            drop.update(v.strip().lower() for v in value.split(b","))
    drop.discard(b"transfer-encoding")
    return [(n, v) for n, v in headers if n not in drop]


def _spliceable_length(method: bytes, response) -> int | None:
    """The Content-Length of a body worth splicing, or None (chunked, small, no body)."""
    if method == b"HEAD" or response.status_code in (204, 304):
        return None
    length = None
    for name, value in response.headers:
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            length = int(value)  # h11 validated it
    return length if length is not None and length >= SPLICE_MIN else None


def _has_token(headers, name: bytes, token: bytes) -> bool:
    return any(n == name and token in (t.strip().lower() for t in v.split(b",")) for n, v in headers)


def _authority(host: str, port: int) -> str:
    h = f"[{host}]" if ":" in host else host
    return h if port == 80 else f"{h}:{port}"


def _hostport(host, port) -> str:
    if port is None:
        return str(host)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _block_body(host: str, port: int, decision) -> str:
    rule = f" (rule: {decision.rule})" if decision.rule else ""
    return f"corral proxy: access to {_hostport(host, port)} is blocked: {decision.reason}{rule}\n"


def _decision_header(decision) -> bytes:
    text = f"blocked; code={decision.code}; reason={decision.reason}"
    if decision.rule:
        text += f"; rule={decision.rule}"
    return _ascii(text)


def _ascii(text: str) -> bytes:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text).encode()


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


def _still_open(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


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
