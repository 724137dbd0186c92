"""Byte streams the HTTP session reads and writes: a plain socket, or TLS over one.

TLS runs in memory (`ssl.MemoryBIO` + `SSLObject`) on the proxy's own non-blocking sockets,
so one code path serves plain HTTP, terminated HTTPS (both sides) and base-URL endpoints.
Only a plain socket can use splice; `SockStream.sock` says which one a stream is.
"""

from __future__ import annotations

import asyncio
import socket

RECV = 256 * 1024


class SockStream:
    """A connected non-blocking socket."""

    tls = False

    def __init__(self, sock: socket.socket, loop=None):
        self.sock = sock
        self.loop = loop or asyncio.get_running_loop()

    async def recv(self, n: int = RECV) -> bytes:
        return await self.loop.sock_recv(self.sock, n)

    def recv_nowait(self, n: int = RECV) -> bytes | None:
        """What can be read without waiting; None when nothing is there yet."""
        try:
            return self.sock.recv(n)
        except (BlockingIOError, InterruptedError):
            return None

    async def send(self, data: bytes) -> None:
        if data:
            await self.loop.sock_sendall(self.sock, data)

    async def shutdown_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()

    def still_open(self) -> bool:
        try:
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False


class TlsStream:
    """TLS over a non-blocking socket, with the record layer in memory.

    `first`: bytes already read from the socket (a ClientHello the proxy peeked at)."""

    tls = True

    def __init__(self, sock: socket.socket, context, server_side: bool, server_hostname=None,
                 first: bytes = b"", loop=None, session=None):
        import ssl

        self._ssl = ssl
        self.sock = sock
        self.loop = loop or asyncio.get_running_loop()
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        if first:
            self.incoming.write(first)
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=server_side,
                                    server_hostname=server_hostname, session=session)
        self._eof = False
        # Towards servers: ACK at once. A server that writes in pieces (TLS 1.3 session tickets
        # after the handshake, a head then a body) would otherwise wait on our delayed ACK
        # (Nagle), ~40 ms each time.
        self.quickack = not server_side

    @property
    def server_name(self):
        """The SNI name a client sent (server side), after the handshake's SNI callback."""
        return getattr(self.obj, "corral_sni", None)

    async def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            await self.loop.sock_sendall(self.sock, data)

    async def _fill(self) -> bool:
        return self._feed(await self.loop.sock_recv(self.sock, RECV))

    async def handshake(self) -> None:
        ssl = self._ssl
        while True:
            try:
                self.obj.do_handshake()
                await self._flush()
                return
            except ssl.SSLError as exc:
                if not isinstance(exc, ssl.SSLWantReadError):
                    try:  # the alert OpenSSL wrote tells the peer why
                        await self._flush()
                    except OSError:
                        pass
                    raise
                await self._flush()
                if not await self._fill():
                    raise ConnectionResetError("the peer closed the connection during the TLS handshake")

    def recv_nowait(self, n: int = RECV) -> bytes | None:
        """What can be read without waiting; None when nothing is there yet (or when the
        TLS layer owes the peer bytes first: `recv` then does the full dance)."""
        while True:
            data = self._read_buffered(n)
            if data is not None:
                return data
            if self.outgoing.pending:
                return None
            try:
                raw = self.sock.recv(RECV)
            except (BlockingIOError, InterruptedError):
                return None
            self._feed(raw)

    async def recv(self, n: int = RECV) -> bytes:
        while True:
            data = self._read_buffered(n)
            if data is not None:
                return data
            await self._flush()  # TLS 1.3 may owe the peer a key update or ticket reply
            self._feed(await self.loop.sock_recv(self.sock, RECV))

    def _feed(self, raw: bytes) -> bool:
        """Hand bytes read from the socket to TLS (b"": the peer closed); False at EOF."""
        if not raw:
            self.incoming.write_eof()
            return False
        if self.quickack:
            _quickack(self.sock)
        self.incoming.write(raw)
        return True

    def _read_buffered(self, n: int) -> bytes | None:
        """Plaintext TLS can give without more input (b"" at the end), or None."""
        ssl = self._ssl
        if self._eof:
            return b""
        try:
            data = self.obj.read(n)
        except ssl.SSLWantReadError:
            return None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            self._eof = True
            return b""
        if not data:
            self._eof = True
            return data
        # One read gives one TLS record (16 KiB at most): take what is already buffered too,
        # so the layers above see large chunks instead of many small ones.
        parts = [data]
        size = len(data)
        while size < n:
            try:
                more = self.obj.read(n - size)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            if not more:
                break
            parts.append(more)
            size += len(more)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def send(self, data: bytes) -> None:
        if not data:
            return
        view = memoryview(data)
        while view:
            written = self.obj.write(view[:RECV])
            view = view[written:]
            await self._flush()

    async def shutdown_write(self) -> None:
        """Send close_notify (TLS cannot half-close the socket underneath)."""
        try:
            self.obj.unwrap()
        except (self._ssl.SSLError, ValueError, OSError):
            pass
        try:
            await self._flush()
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()

    def still_open(self) -> bool:
        if self._eof or self.incoming.pending:
            return not self._eof
        try:
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False


def _quickack(sock) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    except OSError:
        pass


async def pump(src, dst, idle_timeout: float) -> int:
    """Copy src -> dst until src ends; then end dst's write side. Returns the byte count."""
    count = 0
    try:
        while True:
            async with asyncio.timeout(idle_timeout):
                data = await src.recv()
            if not data:
                break
            count += len(data)
            await dst.send(data)
    except (OSError, asyncio.TimeoutError):
        pass
    finally:
        await dst.shutdown_write()
    return count


async def relay_streams(a, b, idle_timeout: float) -> tuple[int, int]:
    """Both directions until both are done (used after a protocol switch, e.g. WebSocket)."""
    up, down = await asyncio.gather(pump(a, b, idle_timeout), pump(b, a, idle_timeout))
    return up, down
