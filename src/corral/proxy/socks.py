"""SOCKS5 (RFC 1928) with username/password auth (RFC 1929), server side, sans-IO.

Rules of this module:

* Everything that moves the SOCKS5 handshake from one state to the next is in this file,
  and nothing else is: it does no I/O and makes no policy decision. The caller feeds bytes
  in, gets events out, decides (is this password right? may this host be reached?) and
  tells the state machine its verdict with `auth_result` and `reply`.
* Output has one channel: every byte for the client (method selection, auth verdict,
  replies, error replies) is queued and taken with `data_to_send()`. Write it after every
  `feed`, `auth_result` and `reply`.
* Input after the CONNECT request belongs to the relayed stream, not to SOCKS: it is kept in
  `leftover` (bytes) and must be forwarded upstream before anything read later.
* No message is buffered past `MAX_BUFFER` bytes while it is incomplete or while the caller
  has not yet given a verdict; past that the handshake fails. A protocol error produces a
  `Failure` event, queues the error reply the protocol allows (if any) and closes the state
  machine: the caller then sends `data_to_send()` and closes the connection.
* Only CONNECT is supported; BIND and UDP ASSOCIATE are refused (UDP would bypass the
  resolver and the proxy's per-connection decisions).

Flow: GREETING -> [AUTH -> AUTH_PENDING] -> REQUEST -> REPLY_PENDING -> ESTABLISHED, or
CLOSED from anywhere on an error, a failed auth or a non-success reply.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

from .._values import frozen

__all__ = [
    "Auth",
    "Failure",
    "Greeting",
    "Request",
    "Socks5Server",
    "build_reply",
    "client_auth",
    "client_greeting",
    "client_request",
]

VERSION = 5
AUTH_VERSION = 1  # RFC 1929 sub-negotiation version

METHOD_NO_AUTH = 0x00
METHOD_GSSAPI = 0x01
METHOD_USERPASS = 0x02
METHOD_NO_ACCEPTABLE = 0xFF

CMD_CONNECT = 0x01
CMD_BIND = 0x02
CMD_UDP_ASSOCIATE = 0x03

ATYP_IPV4 = 0x01
ATYP_DOMAIN = 0x03
ATYP_IPV6 = 0x04

SUCCEEDED = 0
GENERAL_FAILURE = 1
NOT_ALLOWED = 2
NETWORK_UNREACHABLE = 3
HOST_UNREACHABLE = 4
CONNECTION_REFUSED = 5
TTL_EXPIRED = 6
COMMAND_NOT_SUPPORTED = 7
ADDRESS_TYPE_NOT_SUPPORTED = 8

REPLY_MESSAGES = {
    SUCCEEDED: "succeeded",
    GENERAL_FAILURE: "general SOCKS server failure",
    NOT_ALLOWED: "connection not allowed by ruleset",
    NETWORK_UNREACHABLE: "network unreachable",
    HOST_UNREACHABLE: "host unreachable",
    CONNECTION_REFUSED: "connection refused",
    TTL_EXPIRED: "TTL expired",
    COMMAND_NOT_SUPPORTED: "command not supported",
    ADDRESS_TYPE_NOT_SUPPORTED: "address type not supported",
}

COMMAND_NAMES = {CMD_CONNECT: "CONNECT", CMD_BIND: "BIND", CMD_UDP_ASSOCIATE: "UDP ASSOCIATE"}

# The longest legitimate message is the RFC 1929 request: 3 + 255 + 255 = 513 bytes.
MAX_BUFFER = 600

# States.
GREETING = "greeting"
AUTH = "auth"  # waiting for the username/password message
AUTH_PENDING = "auth-pending"  # Auth delivered, waiting for auth_result()
REQUEST = "request"
REPLY_PENDING = "reply-pending"  # Request delivered, waiting for reply()
ESTABLISHED = "established"
CLOSED = "closed"

_AUTH_OK = bytes((AUTH_VERSION, 0))
_AUTH_FAILED = bytes((AUTH_VERSION, 1))
_NO_ACCEPTABLE = bytes((VERSION, METHOD_NO_ACCEPTABLE))
_PORT = struct.Struct(">H")


@frozen
class Greeting:
    methods: tuple[int, ...]  # as offered by the client, in its order


@frozen
class Auth:
    username: bytes  # RFC 1929 credentials are opaque octets; compare with hmac.compare_digest
    password: bytes


def _auth_repr(self) -> str:
    return f"Auth(username={self.username!r}, password=<{len(self.password)} bytes>)"


Auth.__repr__ = _auth_repr  # keep passwords out of logs and tracebacks


@frozen
class Request:
    command: int
    host: str  # the domain name as sent, or the canonical text form of the IP address
    port: int
    atyp: int


@frozen
class Failure:
    reply_code: int  # the SOCKS reply code that describes it (also sent, in the request stage)
    message: str


class Socks5Server:
    """The server side of one SOCKS5 handshake.

    `feed(data)` returns the events the new bytes complete. After `Greeting` the method
    selection is already queued; after `Auth` call `auth_result(ok)`; after `Request` call
    `reply(code)`, then relay `leftover` and the rest of the stream.
    """

    __slots__ = ("require_auth", "state", "method", "leftover", "_buf", "_out")

    def __init__(self, require_auth: bool):
        self.require_auth = require_auth
        self.state = GREETING
        self.method: int | None = None  # the authentication method chosen
        self.leftover = b""  # bytes received after the request: the start of the relayed stream
        self._buf = bytearray()
        self._out = bytearray()

    # --- input ---

    def feed(self, data: bytes) -> list:
        """Add bytes from the client; return the events they complete (possibly none)."""
        if self.state == CLOSED:
            return []
        if self.state in (REPLY_PENDING, ESTABLISHED):
            self.leftover += data
            return []
        self._buf += data
        return self._run()

    def _run(self) -> list:
        events: list = []
        while self.state in _PARSERS:
            got = _PARSERS[self.state](self)
            if not got:
                break  # need more bytes
            events.extend(got)
            if self.state == CLOSED:
                return events
        if len(self._buf) > MAX_BUFFER:
            send = _AUTH_FAILED if self.state == AUTH_PENDING else b""
            events.append(self._fail(GENERAL_FAILURE, f"client sent more than {MAX_BUFFER} bytes without a complete message", send))
        return events

    def _fail(self, code: int, message: str, send: bytes = b"") -> Failure:
        self._out += send
        self._buf.clear()
        self.state = CLOSED
        return Failure(code, message)

    def _parse_greeting(self) -> list:
        buf = self._buf
        if not buf:
            return []
        if buf[0] != VERSION:
            return [self._fail(GENERAL_FAILURE, f"not SOCKS5: version byte {buf[0]:#04x}")]
        if len(buf) < 2:
            return []
        count = buf[1]
        if count == 0:
            return [self._fail(GENERAL_FAILURE, "greeting offers no authentication method", _NO_ACCEPTABLE)]
        if len(buf) < 2 + count:
            return []
        methods = tuple(buf[2 : 2 + count])
        del buf[: 2 + count]
        greeting = Greeting(methods)
        if METHOD_USERPASS in methods and (self.require_auth or METHOD_NO_AUTH not in methods):
            method = METHOD_USERPASS
        elif METHOD_NO_AUTH in methods and not self.require_auth:
            method = METHOD_NO_AUTH
        else:
            need = "username/password (0x02)" if self.require_auth else "no-auth (0x00) or username/password (0x02)"
            return [greeting, self._fail(NOT_ALLOWED, f"client offers methods {list(methods)}; this proxy needs {need}", _NO_ACCEPTABLE)]
        self.method = method
        self._out += bytes((VERSION, method))
        self.state = AUTH if method == METHOD_USERPASS else REQUEST
        return [greeting]

    def _parse_auth(self) -> list:
        buf = self._buf
        if not buf:
            return []
        if buf[0] != AUTH_VERSION:
            return [self._fail(GENERAL_FAILURE, f"username/password message with version {buf[0]:#04x}, not 0x01", _AUTH_FAILED)]
        if len(buf) < 2:
            return []
        ulen = buf[1]
        if len(buf) < 3 + ulen:
            return []
        plen = buf[2 + ulen]
        end = 3 + ulen + plen
        if len(buf) < end:
            return []
        auth = Auth(bytes(buf[2 : 2 + ulen]), bytes(buf[3 + ulen : end]))
        del buf[:end]
        self.state = AUTH_PENDING
        return [auth]

    def _parse_request(self) -> list:
        buf = self._buf
        if not buf:
            return []
        if buf[0] != VERSION:
            return [self._request_failure(GENERAL_FAILURE, f"request with version byte {buf[0]:#04x}, not 0x05")]
        if len(buf) < 2:
            return []
        command = buf[1]
        if command != CMD_CONNECT:
            name = COMMAND_NAMES.get(command, f"{command:#04x}")
            return [self._request_failure(COMMAND_NOT_SUPPORTED, f"command {name} is not supported; only CONNECT")]
        if len(buf) < 4:
            return []
        atyp = buf[3]
        if atyp == ATYP_IPV4:
            end = 4 + 4
            if len(buf) < end + 2:
                return []
            host = str(IPv4Address(bytes(buf[4:end])))
        elif atyp == ATYP_IPV6:
            end = 4 + 16
            if len(buf) < end + 2:
                return []
            host = str(IPv6Address(bytes(buf[4:end])))
        elif atyp == ATYP_DOMAIN:
            if len(buf) < 5:
                return []
            size = buf[4]
            if size == 0:
                return [self._request_failure(GENERAL_FAILURE, "empty domain name")]
            end = 5 + size
            if len(buf) < end + 2:
                return []
            raw = bytes(buf[5:end])
            if any(byte < 0x21 or byte > 0x7E for byte in raw):
                return [self._request_failure(GENERAL_FAILURE, f"domain name {raw!r} has NUL, space or non-printable bytes")]
            host = raw.decode("ascii")
        else:
            return [self._request_failure(ADDRESS_TYPE_NOT_SUPPORTED, f"address type {atyp:#04x} is not supported")]
        (port,) = _PORT.unpack_from(buf, end)
        if port == 0:
            return [self._request_failure(GENERAL_FAILURE, f"port 0 requested for {host}")]
        self.leftover = bytes(buf[end + 2 :])
        buf.clear()
        self.state = REPLY_PENDING
        return [Request(command, host, port, atyp)]

    def _request_failure(self, code: int, message: str) -> Failure:
        return self._fail(code, message, build_reply(code))

    # --- the caller's verdicts ---

    def auth_result(self, ok: bool) -> list:
        """Answer the `Auth` event; returns the events completed by input already buffered."""
        if self.state != AUTH_PENDING:
            raise RuntimeError(f"auth_result() called in state {self.state!r}, not after an Auth event")
        if not ok:
            self._out += _AUTH_FAILED
            self._buf.clear()
            self.state = CLOSED
            return []
        self._out += _AUTH_OK
        self.state = REQUEST
        return self._run()

    def reply(self, code: int, bind: tuple[str, int] = ("0.0.0.0", 0)) -> None:
        """Answer the `Request` event: queue the reply; SUCCEEDED starts the relay, others close."""
        if self.state != REPLY_PENDING:
            raise RuntimeError(f"reply() called in state {self.state!r}, not after a Request event")
        self._out += build_reply(code, bind)
        self.state = ESTABLISHED if code == SUCCEEDED else CLOSED

    # --- output ---

    def data_to_send(self) -> bytes:
        """Take (and clear) the bytes queued for the client."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def __repr__(self) -> str:
        return f"Socks5Server(state={self.state!r}, method={self.method!r})"


_PARSERS = {
    GREETING: Socks5Server._parse_greeting,
    AUTH: Socks5Server._parse_auth,
    REQUEST: Socks5Server._parse_request,
}


# --- wire builders (server reply; client messages for tests and benchmarks) -----------------


def _encode_address(host: str) -> bytes:
    """ATYP + address for an IP literal or a domain name."""
    try:
        addr = ip_address(host)
    except ValueError:
        raw = host.encode("ascii")
        if not 1 <= len(raw) <= 255:
            raise ValueError(f"SOCKS5 domain name must be 1-255 bytes, got {len(raw)}") from None
        return bytes((ATYP_DOMAIN, len(raw))) + raw
    return bytes((ATYP_IPV4 if addr.version == 4 else ATYP_IPV6,)) + addr.packed


def build_reply(code: int, bind: tuple[str, int] = ("0.0.0.0", 0)) -> bytes:
    """The server's reply: VER REP RSV ATYP BND.ADDR BND.PORT."""
    if not 0 <= code <= 0xFF:
        raise ValueError(f"reply code {code} out of range")
    host, port = bind
    return bytes((VERSION, code, 0)) + _encode_address(host) + _PORT.pack(port)


def client_greeting(methods: tuple[int, ...] = (METHOD_NO_AUTH,)) -> bytes:
    return bytes((VERSION, len(methods), *methods))


def client_auth(username: bytes | str, password: bytes | str) -> bytes:
    user = username.encode() if isinstance(username, str) else username
    pwd = password.encode() if isinstance(password, str) else password
    return bytes((AUTH_VERSION, len(user))) + user + bytes((len(pwd),)) + pwd


def client_request(host: str, port: int, command: int = CMD_CONNECT) -> bytes:
    return bytes((VERSION, command, 0)) + _encode_address(host) + _PORT.pack(port)
