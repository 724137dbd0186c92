"""Resolve, check, then dial exactly what was checked (no second lookup, no rebinding window).

Through a parent proxy nothing is resolved here: the parent resolves the name it is given."""

from __future__ import annotations

import asyncio
import socket

CONNECT_TIMEOUT = 10.0


class Blocked(Exception):
    def __init__(self, decision):
        super().__init__(decision.reason)
        self.decision = decision


class DialFailed(Exception):
    pass


class Dialer:
    def __init__(self, rules, host_addresses=(), parent_proxy=None):
        self.rules = rules
        self.host_addresses = frozenset(host_addresses)
        self.parent_proxy = parent_proxy  # ParentProxy or None

    def decide(self, host: str, port: int, rules=None):
        decision = (self.rules if rules is None else rules).decide(host, port)
        if not decision.allowed:
            raise Blocked(decision)
        return decision

    async def dial(self, host: str, port: int, rules=None) -> tuple[socket.socket, str, str]:
        """A connected non-blocking socket to an allowed destination, the address used and the
        rule that allowed it. `rules`: instead of the proxy's own (a base-URL endpoint's, a
        session's scope)."""
        from .addresses import normalize_host, parse_ip

        if rules is None:
            rules = self.rules  # one snapshot for the whole decision
        decision = rules.decide(host, port)
        if not decision.allowed:
            raise Blocked(decision)
        name = normalize_host(host)
        literal = parse_ip(name)
        loop = asyncio.get_running_loop()
        parent = self.parent_proxy.for_host(name) if self.parent_proxy is not None else None
        if parent is not None:
            # The parent proxy resolves and dials: the local resolver is not asked, and the
            # parent's own address (private, as corporate proxies are) is trusted because the
            # launcher configured it. The destination was judged by name above; an address
            # literal is also judged as an address, as it is exactly what the parent dials.
            if literal is not None:
                checked = rules.check_resolved(name, port, [literal], self.host_addresses)
                if not checked.allowed:
                    raise Blocked(checked)
            return await self._via_parent(parent, name, port), f"via {parent[0]}:{parent[1]}", decision.rule
        if literal is not None:
            addrs = [literal]
        else:
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP), CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as exc:
                raise DialFailed(f"cannot resolve {name}: {getattr(exc, 'strerror', None) or exc}") from None
            import ipaddress

            addrs = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
        checked = rules.check_resolved(name, port, addrs, self.host_addresses)
        if not checked.allowed:
            raise Blocked(checked)
        last: Exception | None = None
        for addr in addrs:
            family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, (str(addr), port)), CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as exc:
                sock.close()
                last = exc
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock, str(addr), decision.rule
        reason = getattr(last, "strerror", None) or type(last).__name__
        raise DialFailed(f"connecting to {name} port {port} failed: {reason}")

    async def _via_parent(self, parent: tuple[str, int], host: str, port: int) -> socket.socket:
        """Tunnel through the configured corporate proxy with CONNECT."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(parent[0], parent[1], type=socket.SOCK_STREAM)
        except OSError as exc:
            raise DialFailed(f"cannot resolve the parent proxy {parent[0]}: {exc}") from None
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, sockaddr), CONNECT_TIMEOUT)
            authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            auth = self.parent_proxy.authorization()
            extra = b"Proxy-Authorization: " + auth + b"\r\n" if auth else b""
            await loop.sock_sendall(sock, f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n".encode()
                                    + extra + b"\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    chunk = await loop.sock_recv(sock, 1)
                if not chunk or len(head) > 16384:
                    raise DialFailed("the parent proxy closed the connection")
                head += chunk
            status = head.split(b" ", 2)[1:2]
            if status != [b"200"]:
                raise DialFailed(f"the parent proxy refused: {head.splitlines()[0].decode(errors='replace')}")
        except (OSError, asyncio.TimeoutError) as exc:
            sock.close()
            raise DialFailed(f"parent proxy {parent[0]}:{parent[1]}: {exc}") from None
        except DialFailed:
            sock.close()
            raise
        return sock
