"""Strict reading of the numbers and lines that frame and route a request.

Rules of this module:

* h11 parses every request the proxy reads; this module refuses what h11 accepts but a strict
  RFC 9112 reader would not, and whatever two readers could read two ways (a Content-Length of
  2^64+5, `0080`, a bare LF, a folded header line, an overflowing chunk size, a port of
  `+80`, `0x50` or `99999`). It never rewrites what h11 parsed: it only says no.
* Every number that frames or routes a request is read here, one way: Content-Length
  (`content_length`), chunk sizes (`ChunkedFraming`), ports (`parse_port`).
* A refusal is `Refused(reason)` (a ValueError): the caller answers 400, closes the connection,
  forwards nothing of the request and audits the reason. A reason quotes at most a short,
  printable piece of the value it refuses.
* No I/O, and no import of h11 at module level (`RequestReader` takes it from the connection it
  wraps): the `corral run` path imports this module only when a request arrives.
"""

from __future__ import annotations

import re

MAX_CONTENT_LENGTH = 2**63 - 1  # fits every reader that keeps lengths in a signed 64-bit integer
MAX_CHUNK_SIZE = 2**63 - 1
CHUNK_SIZE_DIGITS = 16  # hex digits, leading zeros included
MAX_CHUNK_LINE = 4096  # a chunk-size line with its extensions, CRLF included
MAX_TRAILERS = 32 * 1024
HTTP_VERSIONS = (b"1.0", b"1.1")


class Refused(ValueError):
    """A request the proxy must not forward; `str()` is the reason, fit for the client and the audit log.
    `request`: the h11 Request it was found in, when its head could be parsed."""

    request = None


def shown(value) -> str:
    """A short, printable quotation of a refused value."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1")
    text = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in value[:40])
    return repr(text + ("..." if len(value) > 40 else ""))


# -- numbers ---------------------------------------------------------------------------------------

# hex digits, then optional extensions (not parsed, as h11 does; no control character but HTAB).
# Nothing between the digits and ";" or CRLF: h11 takes "5 " and refuses "5 ;x", RFC 9112 the
# other way round; only the spelling both take is taken here.
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]+)(?:;[^\x00-\x08\x0a-\x1f\x7f]*)?")


def parse_port(text: str) -> int:
    """A port: 1..65535 in plain ASCII decimal, no sign, no leading zero, nothing around it."""
    from .urls import parse_port as port

    try:
        return port(text)
    except ValueError as exc:
        raise Refused(str(exc)) from None


def content_length(values) -> int | None:
    """The body length that the Content-Length field lines (`values`: their raw values) give,
    or None when there is none. Each line may be a comma list; every element must be plain
    decimal digits (no sign, no inner space, no leading zero), at most MAX_CONTENT_LENGTH,
    and all of them the same."""
    found = None
    for value in values:
        for item in bytes(value).split(b","):
            item = item.strip(b" \t")
            if not item.isdigit():  # bytes.isdigit: ASCII digits only
                raise Refused(f"invalid Content-Length {shown(item)} (expected plain decimal digits)")
            if len(item) > 1 and item.startswith(b"0"):
                raise Refused(f"Content-Length {shown(item)} has a leading zero")
            if len(item) > len(str(MAX_CONTENT_LENGTH)) or int(item) > MAX_CONTENT_LENGTH:
                raise Refused(f"Content-Length {shown(item)} is over {MAX_CONTENT_LENGTH}")
            if found is not None and found != item:
                raise Refused(f"conflicting Content-Length values {shown(found)} and {shown(item)}")
            found = item
    return None if found is None else int(found)


def chunk_size(line: bytes) -> int:
    """The size a chunk-size line gives (`line`: without its CRLF): hex digits, at most
    CHUNK_SIZE_DIGITS of them (leading zeros included) and at most MAX_CHUNK_SIZE, then
    optional `;extensions` without control characters."""
    match = _CHUNK_LINE.fullmatch(line)
    if match is None:
        raise Refused(f"invalid chunk size line {shown(line)} (expected hex digits, then ';extensions')")
    digits = match[1]
    if len(digits) > CHUNK_SIZE_DIGITS:
        raise Refused(f"chunk size {shown(digits)} has more than {CHUNK_SIZE_DIGITS} hex digits")
    size = int(digits, 16)
    if size > MAX_CHUNK_SIZE:
        raise Refused(f"chunk size {shown(digits)} is over {MAX_CHUNK_SIZE}")
    return size


# -- the request head --------------------------------------------------------------------------------

# Spellings of a head's lines that h11 accepts and a strict reader refuses, as data: a pattern
# over the raw head bytes and the reason it is refused.
HEAD_RULES = (
    (re.compile(rb"(?<!\r)\n"), "a line of the request head ends in a bare LF, not CRLF"),
    (re.compile(rb"\r(?!\n)"), "a bare CR in the request head"),
    (re.compile(rb"\r\n[ \t]"), "a folded header line (obs-fold) in the request head"),
    (re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"), "a control character in the request head"),
)


def check_head_lines(raw: bytes) -> None:
    """`raw`: the bytes h11 took as one request head. Refused unless every line ends in CRLF,
    nothing is folded, and the head ends at its first empty line (where a strict reader ends it)."""
    for pattern, reason in HEAD_RULES:
        if pattern.search(raw):
            raise Refused(reason)
    end = raw.find(b"\r\n\r\n")
    if end < 0 or end + 4 != len(raw):
        raise Refused("the request head does not end at its first empty line")


def _values(headers, name: bytes) -> list:
    return [v for n, v in headers if n == name]


def check_request(method: bytes, http_version: bytes, headers) -> tuple[str, int]:
    """How the body of a request h11 parsed is framed: ("chunked", 0) or ("length", n).

    Refused: an HTTP version other than 1.0 and 1.1; a bad Content-Length; a Transfer-Encoding
    other than exactly `chunked`, or one in HTTP/1.0, or beside a Content-Length; a CONNECT
    with a body; a Host field that is not one valid `host[:port]`."""
    if http_version not in HTTP_VERSIONS:
        raise Refused(f"HTTP version {shown(http_version)} is not supported (HTTP/1.0 and HTTP/1.1 are)")
    length = content_length(_values(headers, b"content-length"))
    codings = _values(headers, b"transfer-encoding")
    if codings:
        if length is not None:
            raise Refused("both Content-Length and Transfer-Encoding (request smuggling attempt?)")
        if http_version != b"1.1":
            raise Refused("Transfer-Encoding in an HTTP/1.0 request")
        if len(codings) > 1 or codings[0].strip(b" \t").lower() != b"chunked":
            raise Refused(f"Transfer-Encoding {shown(b', '.join(codings))} (only 'chunked' is supported)")
    if method == b"CONNECT" and (codings or length):
        raise Refused("a CONNECT request with a body")
    hosts = _values(headers, b"host")
    if len(hosts) > 1:
        raise Refused("more than one Host field")
    if hosts:
        from .urls import split_authority

        try:
            split_authority(hosts[0].decode("latin-1").strip(" \t"), 80)
        except ValueError as exc:
            raise Refused(f"bad Host field: {exc}") from None
    return ("chunked", 0) if codings else ("length", length or 0)


# -- chunked bodies ---------------------------------------------------------------------------------

class ChunkedFraming:
    """Follows a chunked body byte for byte beside h11 and refuses what `chunk_size` refuses,
    bare LFs and oversized lines; afterwards it knows exactly where the body ended.

    `feed(data)` takes the bytes after the head in order (including any that follow the body);
    `done` tells the body is complete, `extra` how many bytes fed came after it."""

    __slots__ = ("state", "left", "line", "trailers", "extra")

    def __init__(self):
        self.state = "size"  # size -> data -> crlf -> size ... -> trailer -> done
        self.left = 0  # data bytes left in this chunk; CR/LF left to see in "crlf"
        self.line = bytearray()
        self.trailers = 0
        self.extra = 0

    @property
    def done(self) -> bool:
        return self.state == "done"

    def feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n:
            state = self.state
            if state == "done":
                self.extra += n - i
                return
            if state == "data":
                step = min(self.left, n - i)
                i += step
                self.left -= step
                if not self.left:
                    self.state, self.left = "crlf", 0
                continue
            if state == "crlf":
                if data[i] != b"\r\n"[self.left]:
                    raise Refused(f"chunk data not followed by CRLF (found {shown(data[i:i + 8])})")
                i += 1
                self.left += 1
                if self.left == 2:
                    self.state = "size"
                continue
            # "size" or "trailer": a line, searched in place (tiny chunks must not cost a copy each)
            limit = (MAX_CHUNK_LINE if state == "size" else MAX_TRAILERS - self.trailers) - len(self.line)
            end = data.find(b"\n", i, i + limit)
            if end < 0:
                if n - i >= limit:
                    raise Refused("chunk size line too long" if state == "size" else "chunked trailer section too long")
                self.line += data[i:]
                return
            self.line += data[i:end + 1]
            i = end + 1
            self._end_of_line(bytes(self.line))
            self.line.clear()

    def _end_of_line(self, line: bytes) -> None:
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            raise Refused("a line of the chunked body ends in a bare LF or holds a bare CR")
        if self.state == "size":
            size = chunk_size(line[:-2])
            self.state, self.left = ("data", size) if size else ("trailer", 0)
            return
        self.trailers += len(line)
        if line == b"\r\n":
            self.state = "done"


# -- the proxy's reading of one client connection ---------------------------------------------------

class RequestReader:
    """An h11 server connection's input side, with the strict checks in front: the proxy feeds
    client bytes to `receive_data` and takes events from `next_event`, as it would from h11.

    At each `Request` the raw head h11 consumed is checked (`check_head_lines`) and the head's
    fields (`check_request`); a chunked body is followed by `ChunkedFraming`, and at its
    `EndOfMessage` h11 and the framing must agree on where the body ended. Any disagreement or
    refusal raises `Refused` (h11's own errors stay `h11.RemoteProtocolError`)."""

    __slots__ = ("conn", "h11", "chunks")

    def __init__(self, conn):
        import h11

        self.conn, self.h11, self.chunks = conn, h11, None

    def receive_data(self, data: bytes) -> None:
        if self.chunks is not None and data:
            self.chunks.feed(data)
        self.conn.receive_data(data)

    def next_event(self):
        h11, conn = self.h11, self.conn
        before = conn.trailing_data[0] if conn.their_state is h11.IDLE else None
        event = conn.next_event()
        if isinstance(event, h11.Request):
            rest = conn.trailing_data[0]
            self.chunks = None
            try:
                if before is not None:
                    check_head_lines(before[:len(before) - len(rest)])
                framing, _length = check_request(event.method, event.http_version, event.headers)
                if framing == "chunked":
                    chunks = ChunkedFraming()
                    chunks.feed(rest)
                    self.chunks = chunks
            except Refused as exc:
                exc.request = event  # for the audit line: its method and target
                raise
        elif isinstance(event, h11.EndOfMessage) and self.chunks is not None:
            chunks, self.chunks = self.chunks, None
            if not chunks.done or chunks.extra != len(conn.trailing_data[0]):
                raise Refused("the proxy's two readings of the chunked body disagree on where it ends")
        return event
