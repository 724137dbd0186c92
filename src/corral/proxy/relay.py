"""Copy bytes both ways between two connected sockets until both sides are done.

The data path is `splice(2)`: socket -> pipe -> socket inside the kernel, so tunnel bytes are
never copied into Python. Each direction is a small state machine driven by the event loop's
reader/writer callbacks; a direction that cannot write stops reading (back-pressure).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket

CHUNK = 1 << 20
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = 1031
_FLAGS = 0


def _splice_flags() -> int:
    global _FLAGS
    if not _FLAGS:
        _FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
    return _FLAGS


class _Direction:
    """src -> dst through one pipe. `done` resolves with the byte count."""

    def __init__(self, loop, src: socket.socket, dst: socket.socket, on_bytes):
        self.loop, self.src, self.dst = loop, src, dst
        self.sfd, self.dfd = src.fileno(), dst.fileno()
        self.pr, self.pw = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            import fcntl

            fcntl.fcntl(self.pw, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # the default 64 KiB pipe still works, just with more wake-ups
        self.pending = 0  # bytes sitting in the pipe
        self.count = 0
        self.eof = False
        self.on_bytes = on_bytes
        self.done = loop.create_future()
        self.reading = self.writing = False

    def start(self, initial: bytes = b"") -> None:
        if initial:
            # Bytes already read by the protocol parser go first, the ordinary way.
            try:
                _send_all_nonblocking(self.dst, initial)
            except OSError as exc:
                self._finish(exc)
                return
            self.count += len(initial)
        self._want_read()

    # -- event-loop callbacks -----------------------------------------------------------
    def _readable(self) -> None:
        flags = _splice_flags()
        try:
            n = os.splice(self.sfd, self.pw, CHUNK, flags=flags)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT):
                n = 0  # treat a reset like an end of stream for this direction
            else:
                self._finish(exc)
                return
        if n == 0:
            self.eof = True
            self._stop_read()
            self._drain()
            return
        self.pending += n
        self.count += n
        self._drain()

    def _drain(self) -> None:
        flags = _splice_flags()
        while self.pending:
            try:
                n = os.splice(self.pr, self.dfd, self.pending, flags=flags)
            except BlockingIOError:
                self._stop_read()
                self._want_write()
                return
            except OSError as exc:
                self._finish(exc)
                return
            self.pending -= n
        self._stop_write()
        if self.on_bytes is not None:
            self.on_bytes()
        if self.eof:
            try:
                self.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._finish(None)
        else:
            self._want_read()

    # -- registration -------------------------------------------------------------------
    def _want_read(self) -> None:
        if not self.reading and not self.done.done():
            self.loop.add_reader(self.sfd, self._readable)
            self.reading = True

    def _stop_read(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.sfd)
            self.reading = False

    def _want_write(self) -> None:
        if not self.writing:
            self.loop.add_writer(self.dfd, self._drain)
            self.writing = True

    def _stop_write(self) -> None:
        if self.writing:
            self.loop.remove_writer(self.dfd)
            self.writing = False

    def _finish(self, exc) -> None:
        self._stop_read()
        self._stop_write()
        for fd in (self.pr, self.pw):
            try:
                os.close(fd)
            except OSError:
                pass
        self.pr = self.pw = -1
        if not self.done.done():
            self.done.set_result(self.count)

    def cancel(self) -> None:
        self._finish(None)


def _send_all_nonblocking(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = sock.send(view)
        except BlockingIOError:
            import select

            select.select([], [sock], [], 30)
            continue
        view = view[n:]


async def relay(a: socket.socket, b: socket.socket, a_first: bytes = b"", b_first: bytes = b"",
                idle_timeout: float | None = None) -> tuple[int, int]:
    """Relay until both directions reach end of stream (or one fails). Returns the bytes
    sent a->b and b->a. `a_first`/`b_first`: bytes already read from a/b, delivered first."""
    loop = asyncio.get_running_loop()
    activity = [loop.time()]

    def touched():
        activity[0] = loop.time()

    up = _Direction(loop, a, b, touched)
    down = _Direction(loop, b, a, touched)
    up.start(a_first)
    down.start(b_first)
    both = asyncio.gather(up.done, down.done)
    try:
        if idle_timeout is None:
            return tuple(await both)
        while True:
            try:
                return tuple(await asyncio.wait_for(asyncio.shield(both), idle_timeout))
            except asyncio.TimeoutError:
                if loop.time() - activity[0] >= idle_timeout:
                    return up.count, down.count
    finally:
        up.cancel()
        down.cancel()


async def splice_exact(src: socket.socket, dst: socket.socket, count: int) -> None:
    """Move exactly `count` bytes from src to dst in the kernel (a Content-Length body)."""
    if count <= 0:
        return
    loop = asyncio.get_running_loop()
    flags = _splice_flags()
    sfd, dfd = src.fileno(), dst.fileno()
    pr, pw = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        import fcntl

        fcntl.fcntl(pw, F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass
    done = loop.create_future()
    state = {"left": count, "pending": 0, "reading": False, "writing": False}

    def want(read: bool, write: bool) -> None:
        if read != state["reading"]:
            (loop.add_reader(sfd, step) if read else loop.remove_reader(sfd))
            state["reading"] = read
        if write != state["writing"]:
            (loop.add_writer(dfd, step) if write else loop.remove_writer(dfd))
            state["writing"] = write

    def finish(exc) -> None:
        want(False, False)
        if not done.done():
            done.set_exception(exc) if exc else done.set_result(None)

    def step() -> None:
        while True:
            if state["pending"]:
                try:
                    state["pending"] -= os.splice(pr, dfd, state["pending"], flags=flags)
                except BlockingIOError:
                    return want(False, True)
                except OSError as exc:
                    return finish(exc)
                continue
            if not state["left"]:
                return finish(None)
            try:
                n = os.splice(sfd, pw, min(CHUNK, state["left"]), flags=flags)
            except BlockingIOError:
                return want(True, False)
            except OSError as exc:
                return finish(exc)
            if n == 0:
                return finish(ConnectionError("the upstream closed the connection in the middle of a body"))
            state["left"] -= n
            state["pending"] += n

    try:
        step()
        await done
    finally:
        want(False, False)
        os.close(pr)
        os.close(pw)
