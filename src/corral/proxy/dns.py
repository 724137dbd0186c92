"""The sandbox's DNS resolver, sans-IO: bytes in, bytes out.

Rules of this module:

* It never forwards anything. A name is either answered with a synthetic address from a
  `SyntheticPool` (the caller decided the name is allowed) or refused with NXDOMAIN; nothing
  a sandboxed process puts in a query ever leaves the sandbox, so DNS cannot be used to
  exfiltrate data.
* It does no I/O and knows no policy: `parse_query` turns a UDP payload into a `Query` or
  raises `DnsError`; `answer`, `nxdomain`, `refused`, `servfail` and `error_reply` build the
  reply. Which of them to call is the caller's decision.
* Parsing is strict where leniency could change the meaning of a name (labels must be
  printable ASCII without dots, compression pointers must go strictly backwards) and lenient
  elsewhere (answer/authority records in a query are skipped, trailing bytes are ignored).
* Replies are built to fit: at most 512 bytes, or the EDNS payload size the client
  advertised (capped at 1232). Records that do not fit are dropped rather than setting TC,
  since this resolver does not serve TCP.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address

from .._values import frozen

__all__ = [
    "DnsError",
    "Query",
    "SyntheticPool",
    "answer",
    "error_reply",
    "formerr",
    "nxdomain",
    "parse_query",
    "refused",
    "servfail",
]

# Record types (the ones a stub resolver commonly asks for, and OPT).
TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_PTR = 12
TYPE_MX = 15
TYPE_TXT = 16
TYPE_AAAA = 28
TYPE_SRV = 33
TYPE_OPT = 41
TYPE_SVCB = 64
TYPE_HTTPS = 65
TYPE_ANY = 255

CLASS_IN = 1
CLASS_ANY = 255

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5

# Header flag bits.
FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
FLAG_AD = 0x0020
FLAG_CD = 0x0010
OPCODE_MASK = 0x7800

HEADER_SIZE = 12
MAX_NAME_WIRE = 255  # RFC 1035 3.1, including the length octets and the root label
MAX_LABEL = 63
MAX_UDP_PLAIN = 512  # without EDNS (RFC 1035 4.2.1)
MAX_UDP_EDNS = 1232  # what we advertise and the most we send (DNS flag day 2020)

# The flags copied from a query into its reply: recursion desired and checking disabled.
_ECHOED_FLAGS = FLAG_RD | FLAG_CD

_HEADER = struct.Struct(">HHHHHH")
_RR_FIXED = struct.Struct(">HHIH")  # type, class, ttl, rdlength
_QUESTION_FIXED = struct.Struct(">HH")  # qtype, qclass
_RECORD_TYPE = {4: TYPE_A, 6: TYPE_AAAA}  # address family -> record type
_OPT_RR = b"\x00" + _RR_FIXED.pack(TYPE_OPT, MAX_UDP_EDNS, 0, 0)


class DnsError(ValueError):
    """A packet that is not a query we answer. `rcode` is the reply it deserves (`error_reply`)."""

    def __init__(self, message: str, rcode: int = RCODE_FORMERR):
        self.rcode = rcode
        super().__init__(message)


@frozen
class Query:
    id: int
    flags: int  # as received; RD and CD are echoed in the reply
    qname: str  # lowercase, no trailing dot; "" for the root
    qtype: int
    qclass: int = CLASS_IN
    edns: bool = False  # the query carried an OPT record (the reply then carries one too)
    edns_payload: int = 0  # the UDP payload size the client advertised in OPT, 0 without EDNS
    # The question section exactly as received (original letter case, uncompressed), so that
    # the reply echoes it byte for byte; empty for a Query built by hand.
    question: bytes = b""


# --- parsing -------------------------------------------------------------------------------


def _read_name(packet: bytes, offset: int, strict: bool) -> tuple[list[bytes], int]:
    """Read a possibly compressed name at `offset`; return (labels, offset after the name).

    Every compression pointer must point strictly before the start of the name or label run
    that contained it; targets therefore strictly decrease and a loop is impossible.
    `strict` also requires labels of printable ASCII without dots (for the question name).
    """
    labels: list[bytes] = []
    wire_len = 1  # the root label
    end = -1
    pos = offset
    floor = offset  # pointers must target below this
    size = len(packet)
    while True:
        if pos >= size:
            raise DnsError("name runs past the end of the packet")
        length = packet[pos]
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= size:
                raise DnsError("compression pointer cut off by the end of the packet")
            target = ((length & 0x3F) << 8) | packet[pos + 1]
            if end < 0:
                end = pos + 2
            if target >= floor:
                raise DnsError(f"compression pointer at offset {pos} to {target} is a loop or points forward")
            pos = floor = target
            continue
        if kind:
            raise DnsError(f"unsupported label type {length:#04x} at offset {pos}")
        if length == 0:
            return labels, (end if end >= 0 else pos + 1)
        # length <= 63 is implied by kind == 0
        wire_len += length + 1
        if wire_len > MAX_NAME_WIRE:
            raise DnsError(f"name longer than {MAX_NAME_WIRE} bytes")
        label = packet[pos + 1 : pos + 1 + length]
        if len(label) != length:
            raise DnsError("label runs past the end of the packet")
        if strict:
            for byte in label:
                if byte < 0x21 or byte > 0x7E or byte == 0x2E:
                    raise DnsError(f"label {label!r} has a byte outside printable ASCII (or a dot)")
        labels.append(label)
        pos += 1 + length


def _skip_rr(packet: bytes, offset: int) -> tuple[int, int, int, int]:
    """Skip one resource record; return (offset after it, type, class, name label count)."""
    labels, pos = _read_name(packet, offset, strict=False)
    fixed_end = pos + _RR_FIXED.size
    if fixed_end > len(packet):
        raise DnsError("resource record cut off by the end of the packet")
    rtype, rclass, _ttl, rdlength = _RR_FIXED.unpack_from(packet, pos)
    end = fixed_end + rdlength
    if end > len(packet):
        raise DnsError("resource record data cut off by the end of the packet")
    return end, rtype, rclass, len(labels)


def parse_query(packet: bytes) -> Query:
    """Parse a UDP DNS query; raise `DnsError` (with the rcode it deserves) if we won't answer it."""
    if len(packet) < HEADER_SIZE:
        raise DnsError(f"packet of {len(packet)} bytes is shorter than a DNS header")
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(packet, 0)
    if flags & FLAG_QR:
        raise DnsError("packet is a response, not a query")
    if flags & OPCODE_MASK:
        raise DnsError(f"opcode {(flags & OPCODE_MASK) >> 11} is not supported", RCODE_NOTIMP)
    if qdcount != 1:
        raise DnsError(f"query has {qdcount} questions; exactly 1 is supported")
    labels, pos = _read_name(packet, HEADER_SIZE, strict=True)
    if pos + _QUESTION_FIXED.size > len(packet):
        raise DnsError("question cut off by the end of the packet")
    qtype, qclass = _QUESTION_FIXED.unpack_from(packet, pos)
    pos += _QUESTION_FIXED.size
    question = _encode_labels(labels) + packet[pos - _QUESTION_FIXED.size : pos]
    for _ in range(ancount + nscount):
        pos = _skip_rr(packet, pos)[0]
    edns = False
    edns_payload = 0
    for _ in range(arcount):
        pos, rtype, rclass, nlabels = _skip_rr(packet, pos)
        if rtype == TYPE_OPT:
            if edns:
                raise DnsError("query carries more than one OPT record")
            if nlabels:
                raise DnsError("OPT record with a name other than the root")
            edns = True
            edns_payload = rclass
    qname = b".".join(labels).lower().decode("ascii")
    return Query(qid, flags, qname, qtype, qclass, edns, edns_payload, question)


# --- building replies ----------------------------------------------------------------------


def _encode_labels(labels: list[bytes]) -> bytes:
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


def _encode_name(name: str) -> bytes:
    name = name.rstrip(".")
    labels = [label.encode("ascii") for label in name.split(".")] if name else []
    if any(not label or len(label) > MAX_LABEL for label in labels):
        raise ValueError(f"cannot encode DNS name {name!r}")
    wire = _encode_labels(labels)
    if len(wire) > MAX_NAME_WIRE:
        raise ValueError(f"DNS name {name!r} is longer than {MAX_NAME_WIRE} bytes")
    return wire


def _question(query: Query) -> bytes:
    if query.question:
        return query.question
    return _encode_name(query.qname) + _QUESTION_FIXED.pack(query.qtype, query.qclass)


def _reply(query: Query, rcode: int, authoritative: bool, records: tuple[bytes, ...] = ()) -> bytes:
    question = _question(query)
    limit = max(MAX_UDP_PLAIN, min(query.edns_payload, MAX_UDP_EDNS)) if query.edns else MAX_UDP_PLAIN
    room = limit - HEADER_SIZE - len(question) - (len(_OPT_RR) if query.edns else 0)
    kept = []
    for record in records:
        if len(record) > room:
            break
        kept.append(record)
        room -= len(record)
    flags = FLAG_QR | (query.flags & _ECHOED_FLAGS) | FLAG_RA | rcode
    if authoritative:
        flags |= FLAG_AA
    header = _HEADER.pack(query.id, flags, 1, len(kept), 0, 1 if query.edns else 0)
    return header + question + b"".join(kept) + (_OPT_RR if query.edns else b"")


def answer(query: Query, addresses: list[IPv4Address | IPv6Address], ttl: int = 5) -> bytes:
    """NOERROR with A records (qtype A), AAAA records (qtype AAAA) or both (qtype ANY);
    NODATA (no records) for any other type or a class other than IN (or ANY).

    Only addresses of the asked family are used; the answer name is a pointer to the question.
    """
    if not 0 <= ttl < 2**31:
        raise ValueError(f"TTL {ttl} out of range")
    qtype = query.qtype if query.qclass in (CLASS_IN, CLASS_ANY) else None
    records = tuple(
        b"\xc0\x0c" + _RR_FIXED.pack(rtype, CLASS_IN, ttl, len(addr.packed)) + addr.packed
        for addr in addresses
        for rtype in (_RECORD_TYPE[addr.version],)
        if qtype == rtype or qtype == TYPE_ANY
    )
    return _reply(query, RCODE_NOERROR, True, records)


def nxdomain(query: Query) -> bytes:
    """The name does not exist (authoritatively: this resolver is the sandbox's whole DNS)."""
    return _reply(query, RCODE_NXDOMAIN, True)


def refused(query: Query) -> bytes:
    return _reply(query, RCODE_REFUSED, False)


def servfail(query: Query) -> bytes:
    return _reply(query, RCODE_SERVFAIL, False)


def error_reply(packet: bytes, rcode: int) -> bytes | None:
    """Best-effort error reply (header only) to a packet `parse_query` rejected.

    Returns None when there is nothing safe to answer: fewer than 12 bytes, or a packet that
    is itself a response (answering responses lets two resolvers ping-pong forever).
    """
    if len(packet) < HEADER_SIZE:
        return None
    qid, flags = struct.unpack_from(">HH", packet, 0)
    if flags & FLAG_QR:
        return None
    flags = FLAG_QR | (flags & (OPCODE_MASK | _ECHOED_FLAGS)) | FLAG_RA | (rcode & 0xF)
    return _HEADER.pack(qid, flags, 0, 0, 0, 0)


def formerr(packet: bytes) -> bytes | None:
    """FORMERR echoing the query id; None when `error_reply` would not answer."""
    return error_reply(packet, RCODE_FORMERR)


# --- synthetic addresses -------------------------------------------------------------------


class SyntheticPool:
    """Names <-> synthetic IPv4 addresses for one run.

    Allocation is sequential from the first host after the network address and `reserved`
    further hosts (198.18.0.1 is the sandbox's loopback source address), up to but excluding
    the broadcast address. The same name keeps its address while it is mapped. When the pool
    is full the least recently used name (by `address_for` or `name_for`) gives up its
    address; with the default /15 that is 131069 names, far beyond one run's needs, so a
    recycled address is never one a client could still hold from a 5 s TTL in practice.
    Not thread-safe: it belongs to the proxy's event loop.
    """

    __slots__ = ("network", "_base", "_first", "_capacity", "_next", "_by_name", "_by_offset")

    def __init__(self, network: str = "198.18.0.0/15", reserved: int = 1):
        net = IPv4Network(network)
        if reserved < 0:
            raise ValueError(f"reserved must be >= 0, not {reserved}")
        self.network = net
        self._base = int(net.network_address)
        self._first = 1 + reserved  # offset of the first allocatable host
        self._capacity = net.num_addresses - 1 - self._first  # the broadcast address is skipped
        if self._capacity < 1:
            raise ValueError(f"{net} has no room for synthetic addresses after {reserved} reserved")
        self._next = 0
        self._by_name: dict[str, int] = {}  # name -> offset; dict order is LRU order, oldest first
        self._by_offset: dict[int, str] = {}

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._by_name)

    def address_for(self, name: str) -> IPv4Address:
        name = name.lower().rstrip(".")
        offset = self._by_name.pop(name, None)
        if offset is None:
            if self._next < self._capacity:
                offset = self._first + self._next
                self._next += 1
            else:
                oldest = next(iter(self._by_name))
                offset = self._by_name.pop(oldest)
            self._by_offset[offset] = name
        self._by_name[name] = offset
        return IPv4Address(self._base + offset)

    def name_for(self, ip: IPv4Address | IPv6Address | str) -> str | None:
        addr = _as_address(ip)
        if addr is None or addr.version != 4:
            return None
        name = self._by_offset.get(int(addr) - self._base)
        if name is not None:
            self._by_name[name] = self._by_name.pop(name)  # mark as recently used
        return name

    def __contains__(self, ip: object) -> bool:
        addr = _as_address(ip)
        return addr is not None and addr.version == 4 and addr in self.network

    def __repr__(self) -> str:
        return f"SyntheticPool({str(self.network)!r}, {len(self)}/{self._capacity} mapped)"


def _as_address(ip: object) -> IPv4Address | IPv6Address | None:
    if isinstance(ip, (IPv4Address, IPv6Address)):
        return ip
    if isinstance(ip, str):
        try:
            return ip_address(ip)
        except ValueError:
            return None
    return None
