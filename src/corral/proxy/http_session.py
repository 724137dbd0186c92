"""One HTTP connection the proxy reads: requests parsed (h11), checked and forwarded one by one.

The forward proxy's clients send absolute-form requests, each to the host it names; a
terminated TLS connection, plain HTTP inside a tunnel and a base-URL endpoint send
origin-form requests to one fixed destination (`Origin`). Each request passes the domain
rules (dialing), then `gate.Gate` (host agreement, HTTP rules, credentials); bodies move past
h11 where they can (splice between plain sockets, large chunks over TLS).
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time

from .dial import Blocked, DialFailed

HEAD_TIMEOUT = 30.0  # a client must send a complete request head within this (slowloris)
IDLE_TIMEOUT = 300.0  # an idle keep-alive connection or tunnel is closed after this
MAX_HEAD = 32 * 1024
MAX_HEADERS = 100
SPLICE_MIN = 64 * 1024  # bodies at least this large (Content-Length) bypass Python: splice
RECV = 256 * 1024
HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-authorization", b"proxy-connection", b"te",
                        b"trailer", b"upgrade", b"proxy-authenticate"))


class Origin:
    """The fixed destination of a connection whose requests come in origin-form: a terminated
    TLS connection (`proto` "https") or a base-URL endpoint ("endpoint").

    `open`: a coroutine function giving a fresh (stream, address, rule) to the destination,
    used when the previous upstream connection has gone away."""

    def __init__(self, run, proto: str, host: str, port: int, open, tls: bool = True, sni=None,
                 upstream=None, address: str = "", rule: str = ""):
        self.run, self.proto, self.host, self.port, self.open = run, proto, host, port, open
        self.tls, self.sni = tls, sni
        self.first = (upstream, address, rule) if upstream is not None else None


class HttpSession:
    """One client connection: requests read, checked and forwarded one by one.

    `client`: a stream (`streams.SockStream` or `TlsStream`). `origin`: None for the forward
    proxy (absolute-form requests, each to the host it names), else an `Origin`."""

    def __init__(self, proxy, client, origin: Origin | None = None):
        import h11

        from . import strict

        self.h11 = h11
        self.strict = strict
        self.proxy = proxy
        self.client = client
        self.origin = origin
        self._fresh_conn(b"")
        self.loop = asyncio.get_running_loop()
        self.upstream = None  # (key, stream, h11 client connection, address)
        self.upstream_rule = ""  # the rule that allowed it
        self.closing = False
        if origin is not None and origin.first is not None:
            stream, address, self.upstream_rule = origin.first
            self.upstream = ((origin.host, origin.port), stream, self._client_conn(), address)

    def _client_conn(self):
        return self.h11.Connection(self.h11.CLIENT, max_incomplete_event_size=MAX_HEAD)

    def _fresh_conn(self, pending: bytes) -> None:
        """New h11 state for the client side, read through the strict checks (`strict.RequestReader`:
        the client's bytes go in there, never straight into `self.conn`)."""
        h11 = self.h11
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.reader = self.strict.RequestReader(self.conn)
        if pending:  # h11 reads b"" as the end of the connection
            self.reader.receive_data(pending)

    async def run(self, first: bytes) -> None:
        h11 = self.h11
        try:
            if first:
                self.reader.receive_data(first)
            while True:
                try:
                    event = await self._next(self.reader, self.client, HEAD_TIMEOUT)
                except (h11.RemoteProtocolError, self.strict.Refused) as exc:
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
    async def _next(self, conn, stream, timeout):
        h11 = self.h11
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = stream.recv_nowait(RECV)  # often already there: no timer, no future
                if data is None:
                    async with asyncio.timeout(timeout):  # cheaper than wait_for: no Task per read
                        data = await stream.recv(RECV)
                if stream is not self.client and data and not stream.tls:
                    # ACK the upstream at once: a server that writes head and body separately
                    # (Nagle) would otherwise wait for our delayed ACK, ~40 ms per response.
                    try:
                        stream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                    except OSError:
                        pass
                conn.receive_data(data)
                continue
            if event is h11.PAUSED:
                return None
            return event

    async def _respond(self, status: int, reason: str, body: str | bytes, extra=(), close: bool = True,
                       ctype: bytes = b"text/plain; charset=utf-8") -> None:
        h11 = self.h11
        payload = body if isinstance(body, bytes) else body.encode("utf-8", "replace")
        headers = [(b"content-type", ctype), (b"content-length", str(len(payload)).encode()), *extra]
        if close:
            headers.append((b"connection", b"close"))
        try:
            data = self.conn.send(h11.Response(status_code=status, headers=headers, reason=_ascii(reason)))
            data += self.conn.send(h11.Data(data=payload)) + self.conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            return
        await self.client.send(data)
        if close:
            await self._linger()

    async def _linger(self) -> None:
        """Half-close, then discard what the client is still sending for a moment: closing
        with unread input would reset the connection and destroy the answer in flight."""
        try:
            await self.client.shutdown_write()
            deadline = self.loop.time() + 1.0
            left = 1 << 20
            while left > 0 and self.loop.time() < deadline:
                async with asyncio.timeout(deadline - self.loop.time()):
                    chunk = await self.client.recv(65536)
                if not chunk:
                    break
                left -= len(chunk)
        except (OSError, asyncio.TimeoutError):
            pass

    async def _protocol_error(self, exc) -> None:
        """A request the proxy cannot or will not read (h11's error or `strict.Refused`): 400 (431
        for an oversized head), the connection closed, one audit line. Nothing of it has left."""
        text = str(exc)
        status = 431 if getattr(exc, "error_status_hint", 400) == 431 or "too long" in text.lower() \
            or "too large" in text.lower() else 400
        fields = {}
        request = getattr(exc, "request", None)
        if request is not None:  # a head h11 parsed and strict refused: say what it was for
            fields = _target_fields(request.method, request.target, self.origin)
            if self.origin is None:
                run = self.proxy._run_for(*self._credentials(request))
                fields["run_info"] = run if run else self.proxy.default_run
        if "unexpectedly closed" in text:  # the client hung up mid-request: not a refusal
            fields["decision"] = "error"
        self._audit_refusal(f"malformed request: {_reason(text)}", status, **fields)
        await self._respond(status, "Bad Request" if status == 400 else "Request Header Fields Too Large",
                            f"corral proxy: malformed request: {text}\n")

    def _audit_refusal(self, reason: str, status: int = 400, run_info=None, **fields) -> None:
        origin = self.origin
        run = origin.run if origin is not None else (run_info or self.proxy.default_run)
        if origin is not None:
            fields.setdefault("host", origin.host)
            fields.setdefault("port", origin.port)
        fields.setdefault("decision", "block")
        self.proxy.record(run, proto=origin.proto if origin is not None else "http", reason=reason, status=status,
                          **fields)

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
        if self.origin is None:
            run = proxy._run_for(*self._credentials(request))
            if run is False:
                await self._respond(407, "Proxy Authentication Required", "corral proxy: wrong proxy credentials\n",
                                    extra=[(b"proxy-authenticate", b'Basic realm="corral"')])
                return False
        else:
            run = self.origin.run
        if len(request.headers) > MAX_HEADERS or sum(len(n) + len(v) + 4 for n, v in request.headers) > MAX_HEAD:
            # h11 bounds only heads that arrive in pieces; one that arrives whole is checked here.
            await self._respond(431, "Request Header Fields Too Large",
                                f"corral proxy: request head over {MAX_HEAD} bytes or {MAX_HEADERS} headers\n")
            return False
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("ascii", "replace")
        # Framing (Content-Length, Transfer-Encoding, Host) was checked by self.reader (strict).
        cl = any(name == b"content-length" for name, _ in request.headers)
        origin = self.origin
        if origin is None:
            if method == "CONNECT":
                await self._connect(run, target)
                return False
            from .urls import split_absolute

            try:
                host, port, path = split_absolute(target)
            except ValueError as exc:
                self._audit_refusal(f"bad request target: {exc}", run_info=run, method=method)
                await self._respond(400, "Bad Request", f"corral proxy: {exc}\n")
                return False
            origin = proxy.endpoint_at(host, port, run)  # a base-URL endpoint reached through the proxy
            if origin is not None:
                host, port = origin.host, origin.port
        else:
            if method == "CONNECT" or not (target.startswith("/") or (method == "OPTIONS" and target == "*")):
                await self._respond(400, "Bad Request", f"corral proxy: expected an origin-form request "
                                    f"(a path) on this connection, got {method} {target[:200]!r}\n")
                return False
            host, port, path = origin.host, origin.port, target
        proto = origin.proto if origin is not None else "http"
        tls_upstream = origin.tls if origin is not None else False
        start = time.monotonic()
        headers_in = request.headers
        verdict = None
        scope = proxy.scope_of(run)
        gate = scope.gate
        if gate is not None and gate.inspecting:
            verdict = gate.check(method, host, port, path, list(request.headers), tls=tls_upstream,
                                 origin_form=origin is not None and origin is self.origin and proto == "https",
                                 sni=origin.sni if origin is not None else None,
                                 host_header=_header(request.headers, b"host"))
            if not verdict.allowed:
                proxy.record(run, proto=proto, host=host, port=port, method=method, path=path, decision="block",
                             rule=verdict.rule, reason=verdict.reason, status=verdict.status,
                             exfiltration=verdict.exfiltration or None,
                             placeholders=list(verdict.placeholders) or None,
                             repo=verdict.git.request.repo if verdict.git is not None and verdict.git.request else None)
                await self._refuse(verdict)
                return await self._discard_body() and self.conn.our_state is h11.DONE
            headers_in = verdict.headers
        pending: list = []  # body events already read (a push's command list), forwarded first
        git_fields: dict = {}
        if verdict is not None and verdict.git is not None:
            git_fields["repo"] = verdict.git.request.repo
            if verdict.git.push is not None:
                outcome = await self._git_push(run, proto, host, port, method, path, request, verdict.git, pending)
                if outcome is not None:
                    return outcome
                git_fields["refs"] = self._git_refs
        sent_target = verdict.target if verdict is not None and verdict.target is not None else path
        try:
            key, stream, up, address, rule = await self._upstream_for(host, port, origin, scope.rules)
        except Blocked as b:
            proxy.record(run, proto=proto, host=host, port=port, method=method, path=path, decision="block",
                         rule=b.decision.rule, reason=b.decision.reason, status=403)
            await self._blocked(host, port, b.decision)
            return await self._discard_body() and self.conn.our_state is h11.DONE
        except DialFailed as f:
            proxy.record(run, proto=proto, host=host, port=port, method=method, path=path, decision="error",
                         reason=str(f), status=502)
            await self._respond(502, "Bad Gateway", f"corral proxy: cannot reach {hostport(host, port)}: {f}\n")
            return False
        if verdict is not None and verdict.rule:
            rule = f"{rule}; {verdict.rule}" if rule else verdict.rule
        upgrade = _header(request.headers, b"upgrade")
        headers = _forward_headers(headers_in, _authority(host, port, tls_upstream), upgrade=upgrade is not None)
        if self.conn.client_is_waiting_for_100_continue:
            await self.client.send(self.conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            headers = [(n, v) for n, v in headers if n != b"expect"]
        injector = gate.injector if gate is not None else None
        redactor = injector.redactor() if verdict is not None and verdict.redact else None
        if redactor is not None:
            # Compressed bodies would hide an echoed value from the redactor.
            headers = [(n, v) for n, v in headers if n != b"accept-encoding"] + [(b"accept-encoding", b"identity")]
        substituter = injector.body_substituter(host) if verdict is not None and verdict.substitute_body else None
        if substituter is not None and cl:
            headers = [(n, v) for n, v in headers if n != b"content-length"] + [(b"transfer-encoding", b"chunked")]
        scan = _BodyScan(verdict.foreign) if verdict is not None and verdict.foreign else None
        up_bytes = down_bytes = 0
        redacted = 0
        status = 0
        try:
            head = up.send(h11.Request(method=request.method, target=sent_target.encode("latin-1"), headers=headers))
            outcome, up_bytes = await self._forward_body(stream, up, head, scan, substituter, pending)
            if outcome == "exfiltration":
                proxy.record(run, proto=proto, host=host, port=port, method=method, path=path,
                             decision="block", status=403, exfiltration=True,
                             placeholders=list(scan.placeholders),
                             reason=f"the request body carries the placeholder of credential "
                                    f"{', '.join(scan.names)}, which is not bound to {host}")
                if self.conn.our_state is h11.SEND_RESPONSE:
                    await self._respond(403, "Forbidden", f"corral proxy: request to {host} blocked: its "
                                        f"body carries a credential placeholder not bound to {host}\n")
                return False
            if outcome == "aborted":
                return False
            if outcome == "refused":  # the body broke off or was malformed: what left cannot complete
                proxy.record(run, proto=proto, host=host, port=port, method=method, path=path, decision="block",
                             status=400, reason=f"malformed request body: {_reason(str(self._refusal))}",
                             up=up_bytes)
                if self.conn.our_state is h11.SEND_RESPONSE:
                    await self._respond(400, "Bad Request", f"corral proxy: malformed request: {self._refusal}\n")
                return False
            while True:  # response
                event = await self._next(up, stream, IDLE_TIMEOUT)
                if isinstance(event, h11.InformationalResponse):
                    if event.status_code == 101 and upgrade is not None:
                        return await self._switch(run, proto, host, port, address, rule, method, path, event, start)
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    out_headers = _response_headers(event.headers, gate.strip if gate is not None else ())
                    if redactor is not None:
                        before = out_headers
                        out_headers = injector.redact_headers(out_headers)
                        redacted += sum(a != b for a, b in zip(before, out_headers))
                    # Over TLS every Content-Length body goes the raw way: head and body leave
                    # in one write (one TLS record run) instead of one per h11 event.
                    length = _spliceable_length(request.method, event, 0 if self.client.tls or stream.tls else SPLICE_MIN)
                    if length is not None and (redactor is None or request.http_version == b"1.1"):
                        await self._raw_response(request, event, out_headers, length, redactor)
                        redacted += _replaced(redactor) if redactor is not None else 0
                        down_bytes = length
                        break
                    if redactor is not None:
                        if request.method != b"HEAD" and status not in (204, 304):
                            # The body's length changes when a value is replaced: h11 re-frames it.
                            out_headers = [(n, v) for n, v in out_headers if n != b"content-length"]
                    await self.client.send(self.conn.send(h11.Response(
                        status_code=event.status_code, reason=event.reason, headers=out_headers)))
                elif isinstance(event, h11.Data):
                    data = bytes(event.data)
                    down_bytes += len(data)
                    if redactor is not None:
                        out = redactor.feed(data)
                        redacted += _replaced(redactor)
                        data = out
                    if data:
                        await self.client.send(self.conn.send(h11.Data(data=data)))
                elif isinstance(event, h11.EndOfMessage):
                    if redactor is not None:
                        rest = redactor.flush()
                        redacted += _replaced(redactor)
                        if rest:
                            await self.client.send(self.conn.send(h11.Data(data=rest)))
                    await self.client.send(self.conn.send(h11.EndOfMessage()))
                    break
                else:
                    raise DialFailed("upstream closed the connection mid-response")
        except (h11.RemoteProtocolError, h11.LocalProtocolError, DialFailed, OSError) as exc:
            self._drop_upstream()
            proxy.record(run, proto=proto, host=host, port=port, address=address, method=method, path=path,
                         decision="error", reason=f"upstream: {exc}", up=up_bytes, down=down_bytes)
            if self.conn.our_state is h11.SEND_RESPONSE:
                await self._respond(502, "Bad Gateway", f"corral proxy: upstream error: {exc}\n")
            return False
        proxy.record(run, proto=proto, host=host, port=port, address=address, method=method, path=path,
                     decision="allow", rule=rule, status=status, up=up_bytes, down=down_bytes,
                     injected=list(verdict.injected) if verdict is not None and verdict.injected else None,
                     placeholders=list(verdict.placeholders) if verdict is not None and verdict.placeholders else None,
                     redacted=redacted or None, ms=int((time.monotonic() - start) * 1000), **git_fields)
        if self.upstream is None or self.upstream[2] is not up:
            return True  # the body was spliced: both sides already have fresh protocol state
        if up.our_state is h11.DONE and up.their_state is h11.DONE:
            up.start_next_cycle()
        else:
            self._drop_upstream()
        return True

    async def _git_push(self, run, proto, host, port, method, path, request, git, pending: list):
        """Read a push's ref-update commands (`gitpolicy.CommandReader`) before anything of the
        request leaves, and judge them (`gitpolicy.decide_push`). None: allowed, the body
        events read so far are in `pending` (forwarded unchanged, the pack streams after
        them). Else the push was refused here, answered as git reports a server's refusal,
        and the request is over: the return value is `_request`'s (keep the connection?)."""
        h11 = self.h11
        from . import gitpolicy

        repo = git.request.repo
        if self.conn.client_is_waiting_for_100_continue:
            await self.client.send(self.conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        reader = None
        try:
            reader = gitpolicy.CommandReader(_header(request.headers, b"content-encoding"))
            while True:
                event = await self._next(self.reader, self.client, IDLE_TIMEOUT)
                pending.append(event)
                if isinstance(event, h11.Data):
                    if reader.feed(bytes(event.data)):
                        break
                elif isinstance(event, h11.EndOfMessage):
                    reader.end()
                    break
                else:
                    raise gitpolicy.GitProtocolError("the push body broke off")
        except (h11.RemoteProtocolError, self.strict.Refused, OSError, asyncio.TimeoutError) as exc:
            self._audit_refusal(f"malformed request body: {_reason(str(exc))}", 400, run_info=run, method=method,
                                path=path, host=host, port=port, repo=repo)
            if self.conn.our_state is h11.SEND_RESPONSE:
                await self._respond(400, "Bad Request", f"corral proxy: malformed request: {_reason(str(exc))}\n")
            return False
        except gitpolicy.GitProtocolError as exc:
            self.proxy.record(run, proto=proto, host=host, port=port, method=method, path=path, decision="block",
                              status=400, rule=git.rule, repo=repo,
                              reason=f"git push refused: its ref-update commands cannot be read: {exc}")
            await self._respond(400, "Bad Request", f"corral proxy: git push to {repo} refused: its ref-update "
                                f"commands cannot be read: {exc}\n")
            return False
        self._git_refs = [u.audit() for u in reader.updates]
        decision = gitpolicy.decide_push(git.push, reader.updates)
        if decision.allowed:
            return None
        self.proxy.record(run, proto=proto, host=host, port=port, method=method, path=path, decision="block",
                          status=200, rule=decision.rule, reason=decision.reason, repo=repo, refs=self._git_refs)
        # Nothing has left; the rest of the body (the pack) is read and dropped, never held.
        if not isinstance(pending[-1], h11.EndOfMessage) and not await self._drain_body():
            return False
        headline = f"corral: {decision.reason}\ncorral: push to {repo} refused by the git policy (rule {decision.rule})"
        body = gitpolicy.refusal_body(reader.capabilities, reader.updates, decision, headline)
        if body is None:
            await self._respond(403, "Forbidden", f"corral proxy: request blocked: {decision.reason} "
                                f"(rule: {decision.rule})\n", close=False)
        else:
            await self._respond(200, "OK", body, ctype=b"application/x-git-receive-pack-result", close=False,
                                extra=[(b"cache-control", b"no-cache")])
        return self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE

    async def _drain_body(self) -> bool:
        """Read the rest of the request body and drop it (no size limit: nothing is kept)."""
        h11 = self.h11
        while True:
            try:
                event = await self._next(self.reader, self.client, IDLE_TIMEOUT)
            except (h11.RemoteProtocolError, self.strict.Refused, OSError, asyncio.TimeoutError):
                return False
            if isinstance(event, h11.EndOfMessage):
                return True
            if not isinstance(event, h11.Data):
                return False

    async def _forward_body(self, stream, up, head: bytes, scan, substituter, pending=()) -> tuple[str, int]:
        """Send the request head and body upstream: "sent", "exfiltration" (nothing of the
        request has left: the head waits for the body's start, the body's last bytes are
        held, so a placeholder split across writes never leaves in parts), "refused" (the
        client's body is malformed: the upstream connection is dropped before the body's end,
        `self._refusal` says why) or "aborted"."""
        h11 = self.h11
        sent = 0
        if scan is None:
            await stream.send(head)
            head = None
        held = b""  # body bytes read and scanned but not forwarded yet (scan only)
        pending = list(pending)
        while True:
            try:
                event = pending.pop(0) if pending else await self._next(self.reader, self.client, IDLE_TIMEOUT)
            except (h11.RemoteProtocolError, self.strict.Refused) as exc:
                self._drop_upstream()
                self._refusal = exc
                return "refused", sent
            if isinstance(event, h11.Data):
                data = bytes(event.data)
                sent += len(data)
                if scan is not None:
                    if scan.found(data):
                        self._drop_upstream()
                        return "exfiltration", sent
                    held += data
                    if head is not None and len(held) < _BodyScan.PREFIX:
                        continue
                    data, held = held[:-_BodyScan.KEEP], held[-_BodyScan.KEEP:]
                if head is not None:
                    await stream.send(head)
                    head = None
                if substituter is not None:
                    data = substituter.feed(data)
                if data:
                    await stream.send(up.send(h11.Data(data=data)))
            elif isinstance(event, h11.EndOfMessage):
                out = head or b""
                data = held
                if substituter is not None:
                    data = substituter.feed(data) + substituter.flush()
                if data:
                    out += up.send(h11.Data(data=data))
                await stream.send(out + up.send(h11.EndOfMessage()))
                return "sent", sent
            else:
                self._drop_upstream()
                return "aborted", sent

    async def _switch(self, run, proto, host, port, address, rule, method, path, response, start) -> bool:
        """The upstream agreed to switch protocols (WebSocket): relay both ways from now on."""
        h11 = self.h11
        from .streams import relay_streams

        key, stream, up, _address = self.upstream
        self.upstream = None
        try:
            await self.client.send(self.conn.send(h11.InformationalResponse(
                status_code=101, reason=response.reason, headers=_response_headers(response.headers, (), upgrade=True))))
            pending_up = bytes(up.trailing_data[0])
            pending_client = bytes(self.conn.trailing_data[0])
            if pending_up:
                await self.client.send(pending_up)
            if pending_client:
                await stream.send(pending_client)
            sent, received = await relay_streams(self.client, stream, IDLE_TIMEOUT)
        finally:
            stream.close()
        self.proxy.record(run, proto=proto, host=host, port=port, address=address, method=method, path=path,
                          decision="allow", rule=rule, status=101, up=sent, down=received,
                          ms=int((time.monotonic() - start) * 1000))
        return False

    async def _refuse(self, verdict) -> None:
        text = f"blocked; status={verdict.status}; reason={verdict.reason}"
        if verdict.rule:
            text += f"; rule={verdict.rule}"
        rule = f" (rule: {verdict.rule})" if verdict.rule else ""
        reasons = {400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed", 421: "Misdirected Request"}
        await self._respond(verdict.status, reasons.get(verdict.status, "Forbidden"),
                            f"corral proxy: request blocked: {verdict.reason}{rule}\n",
                            extra=[(b"x-corral-decision", _ascii(text))], close=False)

    async def _raw_response(self, request, response, headers, length: int, redactor) -> None:
        """Send the head ourselves and move the body past h11, which only framed the heads:
        with splice between plain sockets, else in large chunks (re-framed as chunked when
        redaction may change its length). Afterwards both connections get fresh h11 state
        (fed whatever they had buffered)."""
        h11 = self.h11
        key, stream, up, address = self.upstream
        keep = request.http_version == b"1.1" and not _has_token(request.headers, b"connection", b"close")
        if redactor is not None:
            headers = [(n, v) for n, v in headers if n != b"content-length"] + [(b"transfer-encoding", b"chunked")]
        head = [b"HTTP/1.1 %d %s\r\n" % (response.status_code, response.reason)]
        head += [name + b": " + value + b"\r\n" for name, value in headers]
        if not keep:
            head.append(b"connection: close\r\n")
        head = b"".join(head) + b"\r\n"
        buffered = bytes(up.trailing_data[0][:length])
        left = length - len(buffered)
        if redactor is None and not self.client.tls and not stream.tls:
            await self.client.send(head + buffered)
            from .relay import splice_exact

            await splice_exact(stream.sock, self.client.sock, left)
        else:
            def frame(data: bytes) -> bytes:
                if redactor is None:
                    return data
                data = redactor.feed(data)
                return b"%x\r\n%s\r\n" % (len(data), data) if data else b""

            await self.client.send(head + frame(buffered))
            while left > 0:
                async with asyncio.timeout(IDLE_TIMEOUT):
                    data = await stream.recv(min(RECV, left))
                if not data:
                    raise DialFailed("upstream closed the connection mid-response")
                left -= len(data)
                await self.client.send(frame(data))
            if redactor is not None:
                rest = redactor.flush()
                await self.client.send((b"%x\r\n%s\r\n" % (len(rest), rest) if rest else b"") + b"0\r\n\r\n")
        upstream_keeps = response.http_version == b"1.1" and not _has_token(response.headers, b"connection", b"close")
        if upstream_keeps:
            self.upstream = (key, stream, self._client_conn(), address)
        else:
            self._drop_upstream()
        self._fresh_conn(bytes(self.conn.trailing_data[0]))
        self.closing = not keep

    async def _discard_body(self) -> bool:
        """After an early answer, keep the connection only if the request body is consumed
        (a small body is read and dropped; a large one closes the connection)."""
        h11 = self.h11
        left = 1 << 20
        while True:
            try:
                event = self.reader.next_event()
            except (h11.RemoteProtocolError, self.strict.Refused):
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
                        data = await self.client.recv(RECV)
                except (OSError, asyncio.TimeoutError):
                    return False
                try:
                    self.reader.receive_data(data)
                except self.strict.Refused:
                    return False
                if not data:
                    return False
                continue
            return False

    async def _blocked(self, host: str, port: int, decision) -> None:
        await self._respond(403, "Forbidden", _block_body(host, port, decision),
                            extra=[(b"x-corral-decision", _decision_header(decision))], close=False)

    async def _upstream_for(self, host: str, port: int, origin: Origin | None, rules=None):
        # An endpoint reached through the forward proxy is kept apart from a plain connection
        # to the same host and port.
        key = (host, port) if origin is None or origin is self.origin else (origin.proto, host, port)
        if self.upstream is not None and self.upstream[0] == key and self.upstream[1].still_open():
            if origin is not None:  # a tunnel's or endpoint's destination was decided when it opened
                return (*self.upstream, self.upstream_rule)
            # Re-check the rules: they may have changed since this connection was opened.
            return (*self.upstream, self.proxy.dialer.decide(host, port, rules).rule)
        self._drop_upstream()
        if origin is None:
            from .streams import SockStream

            sock, address, rule = await self.proxy.dialer.dial(host, port, rules)
            stream = SockStream(sock, self.loop)
        else:
            stream, address, rule = await origin.open()
        self.upstream = (key, stream, self._client_conn(), address)
        self.upstream_rule = rule
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
            self._audit_refusal(f"bad CONNECT target: {exc}", run_info=run, method="CONNECT")
            await self._respond(400, "Bad Request", f"corral proxy: bad CONNECT target: {exc}\n")
            return
        start = time.monotonic()
        scope = proxy.scope_of(run)
        refusal = proxy.tunnel_refusal(host, scope)
        if refusal:
            proxy.record(run, proto="connect", host=host, port=port, decision="block", reason=refusal, status=403)
            await self._respond(403, "Forbidden", f"corral proxy: CONNECT to {hostport(host, port)} refused: {refusal}\n")
            return
        try:
            upstream, address, rule = await proxy.dialer.dial(host, port, scope.rules)
        except Blocked as b:
            proxy.record(run, proto="connect", host=host, port=port, decision="block", rule=b.decision.rule,
                         reason=b.decision.reason, status=403)
            await self._respond(403, f"Forbidden: {b.decision.reason}", _block_body(host, port, b.decision),
                                extra=[(b"x-corral-decision", _decision_header(b.decision))])
            return
        except DialFailed as f:
            proxy.record(run, proto="connect", host=host, port=port, decision="error", reason=str(f), status=502)
            await self._respond(502, "Bad Gateway", f"corral proxy: cannot reach {hostport(host, port)}: {f}\n")
            return
        try:
            await self.client.send(self.conn.send(h11.Response(status_code=200, headers=[],
                                                                reason=b"Connection established")))
        except BaseException:
            upstream.close()
            raise
        leftover, _closed = self.conn.trailing_data
        await proxy.tunnel(run, "connect", self.client.sock, upstream, bytes(leftover), host, port, address, rule, start)


class _BodyScan:
    """Looks for placeholders that must not leave in a request body, across chunk boundaries."""

    KEEP = 1024  # longer than any encoded form of a placeholder
    PREFIX = 64 * 1024  # the request head waits until this much of the body was scanned (or its end)

    def __init__(self, foreign: dict):
        self.foreign = foreign
        self.tail = b""
        self.names = []
        self.placeholders = []

    def found(self, data: bytes) -> bool:
        from .credentials import find_placeholders

        hits = find_placeholders(self.tail + data, self.foreign)
        self.tail = (self.tail + data)[-self.KEEP:]
        self.names = [c.name for c in hits]
        self.placeholders = [p for p, c in self.foreign.items() if c in hits]
        return bool(hits)


# -- helpers ------------------------------------------------------------------------------------

def _forward_headers(headers, authority: str, upgrade: bool = False) -> list:
    drop = set(HOP_BY_HOP)
    for name, value in headers:
        if name == b"connection":
            drop.update(v.strip().lower() for v in value.split(b","))
    drop.discard(b"transfer-encoding")  # framing: h11 re-frames the body with it
    out = [(b"host", authority.encode("idna") if not authority.isascii() else authority.encode())]
    out += [(n, v) for n, v in headers if n not in drop and n != b"host"]
    if upgrade:  # a protocol switch (WebSocket) is asked for hop by hop: pass it on
        out += [(b"connection", b"upgrade")] + [(n, v) for n, v in headers if n == b"upgrade"]
    return out


def _response_headers(headers, strip=(), upgrade: bool = False) -> list:
    drop = set(HOP_BY_HOP)
    for name, value in headers:
        if name == b"connection":
            drop.update(v.strip().lower() for v in value.split(b","))
    drop.discard(b"transfer-encoding")
    drop.update(strip)
    out = [(n, v) for n, v in headers if n not in drop]
    if upgrade:
        out += [(b"connection", b"upgrade")] + [(n, v) for n, v in headers if n == b"upgrade"]
    return out


def _header(headers, name: bytes) -> str | None:
    for n, v in headers:
        if n == name:
            return v.decode("latin-1")
    return None


def _replaced(replacer) -> int:
    """Replacements a StreamReplacer made since last asked (0 when it does not count)."""
    n = getattr(replacer, "count", 0)
    if n:
        replacer.count = 0
    return n


def _spliceable_length(method: bytes, response, minimum: int = SPLICE_MIN) -> int | None:
    """The Content-Length of a body worth moving past h11, or None (chunked, small, no body)."""
    if method == b"HEAD" or response.status_code in (204, 304):
        return None
    from .strict import content_length

    if any(name == b"transfer-encoding" for name, _ in response.headers):
        return None
    try:  # the same strict reading as a request's: h11 would take 2^64+5
        length = content_length(value for name, value in response.headers if name == b"content-length")
    except ValueError as exc:
        raise DialFailed(f"the upstream's response: {exc}") from None
    return length if length is not None and length >= minimum else None


def _target_fields(method: bytes, target: bytes, origin) -> dict:
    """Method, host, port and path of a refused request, as far as its target says (audit only)."""
    from .urls import split_absolute, split_authority

    fields = {"method": method.decode("ascii", "replace")}
    text = target.decode("ascii", "replace")
    try:
        if origin is not None:
            fields["path"] = text
        elif method == b"CONNECT":
            fields["host"], fields["port"] = split_authority(text, None)
        else:
            fields["host"], fields["port"], fields["path"] = split_absolute(text)
    except ValueError:
        pass
    return fields


def _reason(text: str) -> str:
    """An error's text fit for the audit log: h11 quotes the offending line (it may hold a
    header's value), so only what comes before a quoted byte string is kept."""
    for mark in (": bytearray(", ": b'", ': b"'):
        text = text.split(mark, 1)[0]
    return text[:200]


def _has_token(headers, name: bytes, token: bytes) -> bool:
    return any(n == name and token in (t.strip().lower() for t in v.split(b",")) for n, v in headers)


def _authority(host: str, port: int, tls: bool = False) -> str:
    h = f"[{host}]" if ":" in host else host
    return h if port == (443 if tls else 80) else f"{h}:{port}"


def hostport(host, port) -> str:
    if port is None:
        return str(host)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _block_body(host: str, port: int, decision) -> str:
    rule = f" (rule: {decision.rule})" if decision.rule else ""
    return f"corral proxy: access to {hostport(host, port)} is blocked: {decision.reason}{rule}\n"


def _decision_header(decision) -> bytes:
    text = f"blocked; code={decision.code}; reason={decision.reason}"
    if decision.rule:
        text += f"; rule={decision.rule}"
    return _ascii(text)


def _ascii(text: str) -> bytes:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text).encode()
