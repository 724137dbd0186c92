"""One SOCKS5 client: the sans-IO handshake in `socks`, the dial and relay shared with HTTP."""

from __future__ import annotations

import asyncio
import time

from . import socks
from .dial import Blocked, DialFailed

HANDSHAKE_TIMEOUT = 30.0


async def socks_session(proxy, client, first: bytes) -> None:
    loop = asyncio.get_running_loop()
    require, run = proxy.require_credentials, proxy.default_run
    if proxy.sessions is not None:
        # Late-bound sessions: credentials offered pick the session; none, the open one (if any).
        run = proxy.sessions.run_for(None, None) or None
        offered = first[2:2 + first[1]] if len(first) > 1 else b""
        require = run is None or socks.METHOD_USERPASS in offered
    server = socks.Socks5Server(require_auth=require)
    events = server.feed(first)
    while True:
        for event in events:
            if isinstance(event, socks.Failure):
                await loop.sock_sendall(client, server.data_to_send())
                proxy.record(run, proto="socks5", decision="error", reason=f"protocol error: {event.message}")
                return
            if isinstance(event, socks.Auth):
                found = proxy._run_for(event.username.decode("utf-8", "replace"),
                                       event.password.decode("utf-8", "replace"))
                events = server.auth_result(found is not False)
                await loop.sock_sendall(client, server.data_to_send())
                if found is False:
                    # A late-bound proxy's refusal belongs to no session (not the open one).
                    proxy.record(None if proxy.sessions is not None else run, proto="socks5", decision="block",
                                 reason="wrong proxy credentials")
                    return
                run = found or run
                break
            if isinstance(event, socks.Request):
                await _connect(proxy, loop, client, server, run, event)
                return
        else:
            out = server.data_to_send()
            if out:
                await loop.sock_sendall(client, out)
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                data = await loop.sock_recv(client, 4096)
            if not data:
                return
            events = server.feed(data)
            continue
        out = server.data_to_send()
        if out:
            await loop.sock_sendall(client, out)


async def _connect(proxy, loop, client, server, run, request) -> None:
    host, port = request.host, request.port
    start = time.monotonic()
    try:
        upstream, address, rule = await proxy.dialer.dial(host, port, proxy.scope_of(run).rules)
    except Blocked as b:
        server.reply(socks.NOT_ALLOWED)
        await loop.sock_sendall(client, server.data_to_send())
        proxy.record(run, proto="socks5", host=host, port=port, decision="block", rule=b.decision.rule,
                     reason=b.decision.reason)
        return
    except DialFailed as f:
        server.reply(socks.HOST_UNREACHABLE)
        await loop.sock_sendall(client, server.data_to_send())
        proxy.record(run, proto="socks5", host=host, port=port, decision="error", reason=str(f))
        return
    try:
        bound = upstream.getsockname()
        server.reply(socks.SUCCEEDED, ("0.0.0.0", 0) if ":" in bound[0] else (bound[0], bound[1]))
        await loop.sock_sendall(client, server.data_to_send())
    except BaseException:
        upstream.close()
        raise
    await proxy.tunnel(run, "socks5", client, upstream, server.leftover, host, port, address, rule, start)
