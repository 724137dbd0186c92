"""Tests for the sans-IO protocol modules of the proxy: `proxy/dns.py` and `proxy/socks.py`.

Queries and SOCKS messages are built here byte by byte (not with the modules' own builders,
except where a test says so), and replies are parsed back by the small parsers below.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from corral.proxy import dns, socks

# --- DNS helpers -----------------------------------------------------------------------------


def wire_name(name: str) -> bytes:
    labels = [label.encode("latin-1") for label in name.rstrip(".").split(".")] if name.strip(".") else []
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


def opt_rr(payload: int = 4096, options: bytes = b"") -> bytes:
    return b"\x00" + struct.pack(">HHIH", 41, payload, 0, len(options)) + options


def build_query(name: str, qtype: int = 1, qid: int = 0x1234, flags: int = 0x0100, qclass: int = 1, edns: bool = False, qdcount: int = 1) -> bytes:
    additional = opt_rr() if edns else b""
    header = struct.pack(">HHHHHH", qid, flags, qdcount, 0, 0, 1 if edns else 0)
    return header + wire_name(name) + struct.pack(">HH", qtype, qclass) + additional


def read_name(packet: bytes, pos: int) -> tuple[str, int]:
    labels, end, jumps = [], None, 0
    while True:
        length = packet[pos]
        if length & 0xC0 == 0xC0:
            jumps += 1
            assert jumps < 20, "pointer loop in reply"
            if end is None:
                end = pos + 2
            pos = ((length & 0x3F) << 8) | packet[pos + 1]
            continue
        if length == 0:
            return ".".join(labels), (end if end is not None else pos + 1)
        labels.append(packet[pos + 1 : pos + 1 + length].decode("ascii"))
        pos += 1 + length


def parse_response(packet: bytes) -> dict:
    qid, flags, qd, an, ns, ar = struct.unpack_from(">HHHHHH", packet, 0)
    pos = 12
    questions = []
    for _ in range(qd):
        name, pos = read_name(packet, pos)
        qtype, qclass = struct.unpack_from(">HH", packet, pos)
        pos += 4
        questions.append((name, qtype, qclass))
    sections = []
    for count in (an, ns, ar):
        records = []
        for _ in range(count):
            name_offset = pos
            name, pos = read_name(packet, pos)
            rtype, rclass, ttl, rdlen = struct.unpack_from(">HHIH", packet, pos)
            pos += 10
            rdata = packet[pos : pos + rdlen]
            assert len(rdata) == rdlen, "rdata cut off"
            pos += rdlen
            records.append({"name": name, "type": rtype, "class": rclass, "ttl": ttl, "rdata": rdata, "raw_name": packet[name_offset : name_offset + 2]})
        sections.append(records)
    assert pos == len(packet), "trailing bytes in reply"
    return {
        "id": qid,
        "flags": flags,
        "rcode": flags & 0xF,
        "qr": bool(flags & 0x8000),
        "aa": bool(flags & 0x0400),
        "tc": bool(flags & 0x0200),
        "rd": bool(flags & 0x0100),
        "ra": bool(flags & 0x0080),
        "questions": questions,
        "answers": sections[0],
        "authority": sections[1],
        "additional": sections[2],
    }


# A query captured from `dig GitHub.COM AAAA` (EDNS with a COOKIE option; flags RD+AD).
DIG_EDNS_QUERY = (
    b"Xo\x01 \x00\x01\x00\x00\x00\x00\x00\x01\x06GitHub\x03COM\x00\x00\x1c\x00\x01"
    b"\x00\x00)\x04\xd0\x00\x00\x00\x00\x00\x0c\x00\n\x00\x08\xd3Q\x17\xe3\x14\x97=\x9a"
)
# A query written out by hand: id 0xabcd, RD, one question example.com A IN.
HAND_QUERY = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"


# --- DNS: parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "packet, qid, qname, qtype, edns, payload",
    [
        (HAND_QUERY, 0xABCD, "example.com", dns.TYPE_A, False, 0),
        (DIG_EDNS_QUERY, 0x586F, "github.com", dns.TYPE_AAAA, True, 1232),
        (build_query("WWW.Example.COM.", dns.TYPE_A, qid=7), 7, "www.example.com", dns.TYPE_A, False, 0),
        (build_query("_sip._tcp.example.org", dns.TYPE_SRV), 0x1234, "_sip._tcp.example.org", dns.TYPE_SRV, False, 0),
        (build_query(".", dns.TYPE_NS), 0x1234, "", dns.TYPE_NS, False, 0),
        (build_query("api.example.com", dns.TYPE_HTTPS, edns=True), 0x1234, "api.example.com", dns.TYPE_HTTPS, True, 4096),
    ],
)
def test_parse_query_reads_the_question(packet, qid, qname, qtype, edns, payload):
    query = dns.parse_query(packet)
    assert (query.id, query.qname, query.qtype, query.qclass) == (qid, qname, qtype, dns.CLASS_IN)
    assert (query.edns, query.edns_payload) == (edns, payload)
    assert query.flags & dns.FLAG_RD


def _header(flags=0x0100, qd=1, an=0, ns=0, ar=0, qid=0x4242) -> bytes:
    return struct.pack(">HHHHHH", qid, flags, qd, an, ns, ar)


_Q_A = struct.pack(">HH", 1, 1)
_LONG_NAME = ".".join(["a" * 63] * 4)  # 4 * 64 + 1 = 257 bytes on the wire

MALFORMED = [
    ("empty", b"", dns.RCODE_FORMERR, "shorter than a DNS header"),
    ("truncated header", HAND_QUERY[:11], dns.RCODE_FORMERR, "shorter than a DNS header"),
    ("header only", HAND_QUERY[:12], dns.RCODE_FORMERR, "past the end"),
    ("truncated label", HAND_QUERY[:16], dns.RCODE_FORMERR, "past the end"),
    ("truncated qtype", HAND_QUERY[:-3], dns.RCODE_FORMERR, "question cut off"),
    ("response bit set", build_query("example.com", flags=0x8100), dns.RCODE_FORMERR, "is a response"),
    ("opcode STATUS", build_query("example.com", flags=0x1100), dns.RCODE_NOTIMP, "opcode 2"),
    ("opcode UPDATE", build_query("example.com", flags=0x2800), dns.RCODE_NOTIMP, "opcode 5"),
    ("no question", _header(qd=0), dns.RCODE_FORMERR, "0 questions"),
    ("two questions", build_query("example.com", qdcount=2) + wire_name("b.com") + _Q_A, dns.RCODE_FORMERR, "2 questions"),
    ("pointer to itself", _header() + b"\xc0\x0c" + _Q_A, dns.RCODE_FORMERR, "loop"),
    ("pointer forward", _header() + b"\x01a\xc0\x10\x01b\x00" + _Q_A, dns.RCODE_FORMERR, "loop or points forward"),
    (
        # question ok; answer record name: label run at 29 then a pointer back to 29 (a loop)
        "pointer loop in a later record",
        _header(an=1) + wire_name("example.com") + _Q_A + b"\x01x\xc0\x1d" + struct.pack(">HHIH", 1, 1, 0, 0),
        dns.RCODE_FORMERR,
        "loop",
    ),
    ("pointer cut off", _header() + b"\x01a\xc0", dns.RCODE_FORMERR, "pointer cut off"),
    ("label longer than 63 (0x40 type)", _header() + b"\x40" + b"a" * 64 + b"\x00" + _Q_A, dns.RCODE_FORMERR, "label type"),
    ("label longer than 63 (0x80 type)", _header() + b"\x80" + b"a" * 128 + b"\x00" + _Q_A, dns.RCODE_FORMERR, "label type"),
    ("name longer than 255", build_query(_LONG_NAME), dns.RCODE_FORMERR, "longer than 255"),
    ("NUL in label", _header() + b"\x03a\x00b\x03com\x00" + _Q_A, dns.RCODE_FORMERR, "printable"),
    ("space in label", _header() + b"\x03a b\x03com\x00" + _Q_A, dns.RCODE_FORMERR, "printable"),
    ("high byte in label", _header() + b"\x03a\xc3b\x03com\x00" + _Q_A, dns.RCODE_FORMERR, "printable"),
    ("dot inside a label", _header() + b"\x0bgithub.com.\x00" + _Q_A, dns.RCODE_FORMERR, "dot"),
    ("OPT rdata cut off", build_query("example.com", edns=True)[:-1] + b"\x05", dns.RCODE_FORMERR, "cut off"),
    ("OPT count without record", _header(ar=1) + wire_name("example.com") + _Q_A, dns.RCODE_FORMERR, "past the end"),
    ("two OPT records", _header(ar=2) + wire_name("example.com") + _Q_A + opt_rr() + opt_rr(), dns.RCODE_FORMERR, "more than one OPT"),
    ("OPT with a name", _header(ar=1) + wire_name("example.com") + _Q_A + b"\xc0\x0c" + opt_rr()[1:], dns.RCODE_FORMERR, "OPT record with a name"),
]


@pytest.mark.parametrize("packet, rcode, why", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_query_is_rejected(packet, rcode, why):
    with pytest.raises(dns.DnsError, match=why) as info:
        dns.parse_query(packet)
    assert info.value.rcode == rcode


def test_name_of_exactly_255_bytes_is_accepted():
    name = ".".join(["a" * 63] * 3 + ["b" * 61])  # 3 * 64 + 62 + 1 = 255
    assert len(wire_name(name)) == 255
    assert dns.parse_query(build_query(name)).qname == name


def test_compressed_name_in_a_later_record_pointing_back_is_accepted():
    # An additional record named by a pointer to the question (legal), then a real OPT.
    packet = _header(ar=2) + wire_name("example.com") + _Q_A + b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + b"\x01\x02\x03\x04" + opt_rr(1400)
    query = dns.parse_query(packet)
    assert (query.qname, query.edns, query.edns_payload) == ("example.com", True, 1400)


def test_trailing_bytes_after_the_question_are_ignored():
    assert dns.parse_query(HAND_QUERY + b"\xff\xff").qname == "example.com"


# --- DNS: replies ----------------------------------------------------------------------------


def test_a_query_is_answered_with_a_synthetic_address():
    pool = dns.SyntheticPool()
    query = dns.parse_query(HAND_QUERY)
    addr = pool.address_for(query.qname)
    reply = parse_response(dns.answer(query, [addr]))
    assert reply["id"] == 0xABCD
    assert (reply["qr"], reply["aa"], reply["ra"], reply["rd"], reply["tc"]) == (True, True, True, True, False)
    assert reply["rcode"] == dns.RCODE_NOERROR
    assert reply["questions"] == [("example.com", dns.TYPE_A, dns.CLASS_IN)]
    [record] = reply["answers"]
    assert record["raw_name"] == b"\xc0\x0c"  # compressed to the question
    assert (record["name"], record["type"], record["class"], record["ttl"]) == ("example.com", dns.TYPE_A, dns.CLASS_IN, 5)
    assert IPv4Address(record["rdata"]) == addr == IPv4Address("198.18.0.2")
    assert reply["authority"] == reply["additional"] == []


ADDRESSES = [IPv4Address("198.18.0.2"), IPv6Address("2001:db8::1"), IPv4Address("198.18.0.3")]


@pytest.mark.parametrize(
    "qtype, expected",
    [
        (dns.TYPE_A, [ADDRESSES[0], ADDRESSES[2]]),
        (dns.TYPE_AAAA, [ADDRESSES[1]]),
        (dns.TYPE_TXT, []),
        (dns.TYPE_MX, []),
        (dns.TYPE_HTTPS, []),
        (dns.TYPE_ANY, ADDRESSES),
    ],
)
def test_answer_carries_only_records_of_the_asked_type(qtype, expected):
    reply = parse_response(dns.answer(dns.parse_query(build_query("svc.example.com", qtype)), ADDRESSES, ttl=30))
    assert reply["rcode"] == dns.RCODE_NOERROR and reply["aa"]
    assert [ip_address(r["rdata"]) for r in reply["answers"]] == expected
    assert [r["type"] for r in reply["answers"]] == [dns.TYPE_A if a.version == 4 else dns.TYPE_AAAA for a in expected]
    assert all(r["class"] == dns.CLASS_IN and r["ttl"] == 30 for r in reply["answers"])


def test_aaaa_query_for_a_synthetic_name_is_nodata():
    query = dns.parse_query(build_query("example.com", dns.TYPE_AAAA, edns=True))
    reply = parse_response(dns.answer(query, [dns.SyntheticPool().address_for("example.com")]))
    assert reply["rcode"] == dns.RCODE_NOERROR
    assert reply["answers"] == []
    assert reply["questions"] == [("example.com", dns.TYPE_AAAA, dns.CLASS_IN)]


def test_non_in_class_gets_no_records():
    query = dns.parse_query(build_query("example.com", dns.TYPE_A, qclass=3))  # CHAOS
    assert parse_response(dns.answer(query, [IPv4Address("198.18.0.2")]))["answers"] == []


@pytest.mark.parametrize(
    "build, rcode, aa",
    [(dns.nxdomain, dns.RCODE_NXDOMAIN, True), (dns.refused, dns.RCODE_REFUSED, False), (dns.servfail, dns.RCODE_SERVFAIL, False)],
)
@pytest.mark.parametrize("edns", [False, True])
def test_negative_replies(build, rcode, aa, edns):
    query = dns.parse_query(build_query("exfil-4142.attacker.example", dns.TYPE_A, qid=0xBEEF, edns=edns))
    reply = parse_response(build(query))
    assert (reply["id"], reply["rcode"], reply["qr"], reply["aa"], reply["rd"]) == (0xBEEF, rcode, True, aa, True)
    assert reply["questions"] == [("exfil-4142.attacker.example", dns.TYPE_A, dns.CLASS_IN)]
    assert reply["answers"] == reply["authority"] == []
    assert [r["type"] for r in reply["additional"]] == ([dns.TYPE_OPT] if edns else [])


def test_edns_query_gets_an_opt_record_back():
    query = dns.parse_query(DIG_EDNS_QUERY)
    reply = parse_response(dns.answer(query, []))
    [opt] = reply["additional"]
    assert (opt["name"], opt["type"], opt["class"], opt["rdata"]) == ("", dns.TYPE_OPT, dns.MAX_UDP_EDNS, b"")


def test_question_is_echoed_in_its_original_case():
    query = dns.parse_query(DIG_EDNS_QUERY)
    assert query.qname == "github.com"
    reply = parse_response(dns.nxdomain(query))
    assert reply["questions"] == [("GitHub.COM", dns.TYPE_AAAA, dns.CLASS_IN)]


def test_reply_flags_echo_rd_but_not_ad_or_opcode():
    query = dns.parse_query(build_query("example.com", flags=0x0000))  # RD clear
    reply = parse_response(dns.answer(query, [IPv4Address("198.18.0.2")]))
    assert not reply["rd"]
    ad_query = dns.parse_query(DIG_EDNS_QUERY)  # RD + AD
    flags = parse_response(dns.answer(ad_query, []))["flags"]
    assert flags & dns.FLAG_RD and not flags & dns.FLAG_AD


def test_hand_built_query_object_is_answerable():
    query = dns.Query(id=9, flags=dns.FLAG_RD, qname="example.net", qtype=dns.TYPE_A)
    reply = parse_response(dns.answer(query, [IPv4Address("198.18.0.9")]))
    assert reply["questions"] == [("example.net", dns.TYPE_A, dns.CLASS_IN)]
    assert reply["answers"][0]["rdata"] == bytes([198, 18, 0, 9])


@pytest.mark.parametrize("edns, limit", [(False, 512), (True, dns.MAX_UDP_EDNS)])
def test_reply_never_exceeds_the_udp_limit(edns, limit):
    name = ".".join(["a" * 50] * 4)
    query = dns.parse_query(build_query(name, dns.TYPE_A, edns=edns))
    many = [IPv4Address(0xC6120000 + i) for i in range(1, 200)]
    packet = dns.answer(query, many)
    assert len(packet) <= limit
    reply = parse_response(packet)
    assert 0 < len(reply["answers"]) < len(many)
    assert not reply["tc"]


def test_ttl_out_of_range_is_refused():
    with pytest.raises(ValueError):
        dns.answer(dns.parse_query(HAND_QUERY), [], ttl=-1)


@pytest.mark.parametrize(
    "packet, expected",
    [
        (b"", None),
        (HAND_QUERY[:11], None),
        (HAND_QUERY[:12], struct.pack(">HHHHHH", 0xABCD, 0x8181, 0, 0, 0, 0)),
        (b"\x00\x07\x01\x00" + b"\xff" * 40, struct.pack(">HHHHHH", 7, 0x8181, 0, 0, 0, 0)),
        (build_query("x.com", flags=0x8180), None),  # a response: never answered
    ],
)
def test_formerr(packet, expected):
    assert dns.formerr(packet) == expected


def test_error_reply_uses_the_rcode_of_the_error_and_keeps_the_opcode():
    packet = build_query("example.com", flags=0x1100, qid=0x0102)  # opcode 2
    with pytest.raises(dns.DnsError) as info:
        dns.parse_query(packet)
    reply = dns.error_reply(packet, info.value.rcode)
    qid, flags = struct.unpack(">HH", reply[:4])
    assert qid == 0x0102 and flags & 0xF == dns.RCODE_NOTIMP and flags & dns.OPCODE_MASK == 0x1000 and flags & dns.FLAG_QR


# --- DNS: synthetic pool ---------------------------------------------------------------------


def test_pool_allocates_sequentially_after_the_reserved_hosts_and_is_stable():
    pool = dns.SyntheticPool()
    first = pool.address_for("a.example.com")
    second = pool.address_for("b.example.com")
    assert (first, second) == (IPv4Address("198.18.0.2"), IPv4Address("198.18.0.3"))
    assert pool.address_for("a.example.com") == first
    assert pool.address_for("A.Example.COM.") == first  # names are normalised
    assert len(pool) == 2


def test_pool_reverse_mapping():
    pool = dns.SyntheticPool()
    addr = pool.address_for("api.github.com")
    assert pool.name_for(addr) == "api.github.com"
    assert pool.name_for(str(addr)) == "api.github.com"
    for unknown in (IPv4Address("198.18.0.1"), IPv4Address("198.18.9.9"), IPv4Address("8.8.8.8"), IPv6Address("::1"), "not an ip"):
        assert pool.name_for(unknown) is None


@pytest.mark.parametrize(
    "ip, inside",
    [
        ("198.18.0.0", True),
        ("198.18.0.1", True),
        ("198.19.255.255", True),
        ("198.17.255.255", False),
        ("198.20.0.0", False),
        ("127.0.0.1", False),
        ("::ffff:198.18.0.2", False),
        ("not an ip", False),
        (IPv4Address("198.18.3.4"), True),
        (IPv6Address("::c612:2"), False),  # same low 32 bits as 198.18.0.2, wrong family
        (0xC6120002, False),
    ],
)
def test_pool_contains(ip, inside):
    assert (ip in dns.SyntheticPool()) is inside


def test_small_pool_never_hands_out_network_reserved_or_broadcast():
    pool = dns.SyntheticPool("10.9.0.0/29", reserved=1)  # hosts .2 .. .6
    assert pool.capacity == 5
    got = {pool.address_for(f"n{i}.example") for i in range(5)}
    assert got == {IPv4Address(f"10.9.0.{i}") for i in range(2, 7)}


def test_full_pool_recycles_the_least_recently_used_name():
    pool = dns.SyntheticPool("10.9.0.0/29", reserved=2)  # hosts .3 .. .6
    a, b, c, d = (pool.address_for(n) for n in ("a", "b", "c", "d"))
    assert (a, d) == (IPv4Address("10.9.0.3"), IPv4Address("10.9.0.6"))
    pool.address_for("a")  # touch a by name: order b c d a
    assert pool.name_for(b) == "b"  # touch b by address: order c d a b
    e = pool.address_for("e")  # evicts c, the least recently used
    assert e == c
    assert pool.name_for(c) == "e"
    assert pool.name_for(b) == "b" and pool.name_for(a) == "a"  # order d e a b
    f = pool.address_for("f")  # evicts d
    assert f == d and pool.name_for(d) == "f"
    assert pool.address_for("c") == e  # c comes back on the oldest entry's address: e's
    assert [pool.name_for(x) for x in (a, b, c, d)] == ["a", "b", "c", "f"]
    assert len(pool) == 4


@pytest.mark.parametrize("network, reserved", [("10.0.0.0/31", 1), ("10.0.0.0/30", 2), ("2001:db8::/64", 1), ("10.0.0.1/24", 1), ("10.0.0.0/24", -1)])
def test_pool_rejects_unusable_networks(network, reserved):
    with pytest.raises(ValueError):
        dns.SyntheticPool(network, reserved)


# --- DNS: cross-check with dig ---------------------------------------------------------------


@pytest.fixture
def resolver():
    """A throwaway UDP resolver on 127.0.0.1 answering *.allowed.test, NXDOMAIN otherwise."""
    pool = dns.SyntheticPool()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                packet, peer = sock.recvfrom(4096)
            except socket.timeout:
                continue
            try:
                query = dns.parse_query(packet)
            except dns.DnsError as err:
                reply = dns.error_reply(packet, err.rcode)
            else:
                if query.qname == "allowed.test" or query.qname.endswith(".allowed.test"):
                    reply = dns.answer(query, [pool.address_for(query.qname)])
                else:
                    reply = dns.nxdomain(query)
            if reply:
                sock.sendto(reply, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1], pool
    stop.set()
    thread.join()
    sock.close()


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig (dnsutils) is not installed")
@pytest.mark.parametrize("edns", ["+edns", "+noedns"])
def test_dig_agrees_with_the_resolver(resolver, edns):
    port, pool = resolver

    def dig(*args):
        out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=2", edns, *args], capture_output=True, text=True, timeout=20)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    out = dig("+short", "WWW.Allowed.Test", "A")
    assert out.split() == [str(pool.address_for("www.allowed.test"))]
    out = dig("www.allowed.test", "AAAA")
    assert "status: NOERROR" in out and "ANSWER: 0" in out and "WARNING" not in out
    out = dig("exfil.attacker.example", "A")
    assert "status: NXDOMAIN" in out and "flags: qr aa rd ra" in out
    if edns == "+edns":
        assert "OPT PSEUDOSECTION" in out


# --- SOCKS5 helpers --------------------------------------------------------------------------


def feed_bytewise(server: socks.Socks5Server, data: bytes) -> list:
    events = []
    for i in range(len(data)):
        events += server.feed(data[i : i + 1])
    return events


def parse_socks_reply(data: bytes) -> tuple[int, str, int]:
    assert data[0] == 5 and data[2] == 0
    atyp = data[3]
    if atyp == 1:
        host, rest = str(IPv4Address(data[4:8])), data[8:]
    elif atyp == 4:
        host, rest = str(IPv6Address(data[4:20])), data[20:]
    else:
        size = data[4]
        host, rest = data[5 : 5 + size].decode(), data[5 + size :]
    assert len(rest) == 2, "reply has trailing bytes"
    return data[1], host, struct.unpack(">H", rest)[0]


GREET_NOAUTH = b"\x05\x01\x00"
CONNECT_EXAMPLE = b"\x05\x01\x00\x03\x0bexample.com\x01\xbb"


# --- SOCKS5: method selection ----------------------------------------------------------------


@pytest.mark.parametrize(
    "require_auth, methods, chosen",
    [
        (False, [0x00], 0x00),
        (False, [0x02, 0x00], 0x00),  # no-auth preferred
        (False, [0x02], 0x02),  # only user/pass offered: accepted, Auth follows
        (False, [0x01], None),  # GSSAPI only
        (False, [0x80, 0xFE], None),
        (True, [0x00, 0x02], 0x02),
        (True, [0x02], 0x02),
        (True, [0x00], None),  # no-auth is not enough
        (True, [0x00, 0x01], None),
    ],
)
def test_method_selection(require_auth, methods, chosen):
    server = socks.Socks5Server(require_auth=require_auth)
    events = server.feed(bytes([5, len(methods), *methods]))
    assert events[0] == socks.Greeting(tuple(methods))
    if chosen is None:
        assert [type(e) for e in events] == [socks.Greeting, socks.Failure]
        assert events[1].reply_code == socks.NOT_ALLOWED
        assert server.data_to_send() == b"\x05\xff"
        assert server.state == socks.CLOSED
    else:
        assert events == [socks.Greeting(tuple(methods))]
        assert server.data_to_send() == bytes([5, chosen])
        assert server.method == chosen
        assert server.state == (socks.AUTH if chosen == 2 else socks.REQUEST)


# --- SOCKS5: whole handshakes ----------------------------------------------------------------


def test_no_auth_connect_fed_byte_by_byte():
    server = socks.Socks5Server(require_auth=False)
    assert feed_bytewise(server, GREET_NOAUTH) == [socks.Greeting((0,))]
    assert server.data_to_send() == b"\x05\x00"
    assert server.data_to_send() == b""  # drained
    events = feed_bytewise(server, CONNECT_EXAMPLE)
    assert events == [socks.Request(socks.CMD_CONNECT, "example.com", 443, socks.ATYP_DOMAIN)]
    assert server.data_to_send() == b"" and server.leftover == b""
    server.reply(socks.SUCCEEDED, ("198.18.0.1", 40000))
    assert parse_socks_reply(server.data_to_send()) == (0, "198.18.0.1", 40000)
    assert server.state == socks.ESTABLISHED


def test_auth_connect_fed_byte_by_byte():
    server = socks.Socks5Server(require_auth=True)
    data = b"\x05\x02\x00\x02" + b"\x01\x05alice\x06s3cr3t" + b"\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x50"
    events = feed_bytewise(server, data[:4]) + feed_bytewise(server, data[4:18])
    assert events == [socks.Greeting((0, 2)), socks.Auth(b"alice", b"s3cr3t")]
    assert server.data_to_send() == b"\x05\x02"
    assert server.auth_result(True) == []
    assert server.data_to_send() == b"\x01\x00"
    assert feed_bytewise(server, data[18:]) == [socks.Request(socks.CMD_CONNECT, "10.0.0.1", 80, socks.ATYP_IPV4)]


def test_no_auth_server_accepts_userpass_only_client_and_delivers_auth():
    server = socks.Socks5Server(require_auth=False)
    events = server.feed(socks.client_greeting((socks.METHOD_USERPASS,)) + socks.client_auth("u", ""))
    assert events == [socks.Greeting((2,)), socks.Auth(b"u", b"")]
    assert server.data_to_send() == b"\x05\x02"


def test_pipelined_handshake_waits_for_the_auth_verdict():
    server = socks.Socks5Server(require_auth=True)
    data = socks.client_greeting((2,)) + socks.client_auth(b"tok", b"pw") + socks.client_request("example.com", 443) + b"\x16\x03\x01"
    assert server.feed(data) == [socks.Greeting((2,)), socks.Auth(b"tok", b"pw")]
    assert server.state == socks.AUTH_PENDING
    assert server.auth_result(True) == [socks.Request(1, "example.com", 443, socks.ATYP_DOMAIN)]
    assert server.leftover == b"\x16\x03\x01"
    assert server.data_to_send() == b"\x05\x02\x01\x00"


def test_failed_auth_closes_without_reading_the_request():
    server = socks.Socks5Server(require_auth=True)
    server.feed(b"\x05\x01\x02\x01\x01u\x01p" + CONNECT_EXAMPLE)
    assert server.auth_result(False) == []
    assert server.data_to_send() == b"\x05\x02\x01\x01"
    assert server.state == socks.CLOSED
    assert server.feed(CONNECT_EXAMPLE) == []
    with pytest.raises(RuntimeError):
        server.reply(socks.SUCCEEDED)


def test_longest_legal_auth_message_fits_the_buffer_limit():
    server = socks.Socks5Server(require_auth=True)
    events = feed_bytewise(server, b"\x05\x01\x02" + socks.client_auth(b"u" * 255, b"p" * 255))
    assert events[-1] == socks.Auth(b"u" * 255, b"p" * 255)


def test_auth_repr_hides_the_password():
    text = repr(socks.Auth(b"alice", b"hunter2"))
    assert "hunter2" not in text and "alice" in text


# --- SOCKS5: requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address, host, atyp",
    [
        (b"\x01\x7f\x00\x00\x01", "127.0.0.1", socks.ATYP_IPV4),
        (b"\x01\xc6\x12\x00\x05", "198.18.0.5", socks.ATYP_IPV4),
        (b"\x04" + bytes(15) + b"\x01", "::1", socks.ATYP_IPV6),
        (b"\x04" + IPv6Address("2001:0db8:0000:0000:0000:0000:0000:0001").packed, "2001:db8::1", socks.ATYP_IPV6),
        (b"\x04" + IPv6Address("::ffff:127.0.0.1").packed, "::ffff:7f00:1", socks.ATYP_IPV6),
        (b"\x03\x0bExample.COM", "Example.COM", socks.ATYP_DOMAIN),  # as sent: policy normalises
        (b"\x03\x09127.0.0.1", "127.0.0.1", socks.ATYP_DOMAIN),  # an IP literal sent as a name
        (b"\x03\xff" + b"a" * 255, "a" * 255, socks.ATYP_DOMAIN),
    ],
)
def test_request_address_types(address, host, atyp):
    server = socks.Socks5Server(require_auth=False)
    events = server.feed(GREET_NOAUTH + b"\x05\x01\x00" + address + b"\x1f\x90")
    assert events[-1] == socks.Request(socks.CMD_CONNECT, host, 8080, atyp)
    # and the same bytes split at every position
    server = socks.Socks5Server(require_auth=False)
    assert feed_bytewise(server, GREET_NOAUTH + b"\x05\x01\x00" + address + b"\x1f\x90")[-1] == events[-1]


REQUEST_FAILURES = [
    ("BIND", b"\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50", socks.COMMAND_NOT_SUPPORTED, "BIND"),
    ("UDP ASSOCIATE", b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00", socks.COMMAND_NOT_SUPPORTED, "UDP ASSOCIATE"),
    ("unknown command", b"\x05\x09", socks.COMMAND_NOT_SUPPORTED, "0x09"),
    ("bad request version", b"\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50", socks.GENERAL_FAILURE, "version"),
    ("atyp 0x02", b"\x05\x01\x00\x02", socks.ADDRESS_TYPE_NOT_SUPPORTED, "address type"),
    ("atyp 0x00", b"\x05\x01\x00\x00\x01\x02\x03\x04\x00\x50", socks.ADDRESS_TYPE_NOT_SUPPORTED, "address type"),
    ("empty domain", b"\x05\x01\x00\x03\x00\x00\x50", socks.GENERAL_FAILURE, "empty domain"),
    ("NUL in domain", b"\x05\x01\x00\x03\x0cexample.com\x00\x00\x50", socks.GENERAL_FAILURE, "NUL"),
    ("NUL-truncation trick", b"\x05\x01\x00\x03\x16allowed.com\x00evil.com\x00\x00\x00\x50", socks.GENERAL_FAILURE, "NUL"),
    ("space in domain", b"\x05\x01\x00\x03\x05a b.c\x00\x50", socks.GENERAL_FAILURE, "non-printable"),
    ("newline in domain", b"\x05\x01\x00\x03\x05a\nb.c\x00\x50", socks.GENERAL_FAILURE, "non-printable"),
    ("UTF-8 in domain", b"\x05\x01\x00\x03\x05\xc3\xa9.fr\x00\x50", socks.GENERAL_FAILURE, "non-printable"),
    ("DEL in domain", b"\x05\x01\x00\x03\x01\x7f\x00\x50", socks.GENERAL_FAILURE, "non-printable"),
    ("port 0 on a name", b"\x05\x01\x00\x03\x0bexample.com\x00\x00", socks.GENERAL_FAILURE, "port 0"),
    ("port 0 on an address", b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x00", socks.GENERAL_FAILURE, "port 0"),
]


@pytest.mark.parametrize("request_bytes, code, why", [f[1:] for f in REQUEST_FAILURES], ids=[f[0] for f in REQUEST_FAILURES])
def test_bad_request_fails_with_the_right_reply(request_bytes, code, why):
    server = socks.Socks5Server(require_auth=False)
    server.feed(GREET_NOAUTH)
    server.data_to_send()
    events = server.feed(request_bytes)
    assert len(events) == 1 and isinstance(events[0], socks.Failure)
    assert events[0].reply_code == code and why in events[0].message
    assert parse_socks_reply(server.data_to_send()) == (code, "0.0.0.0", 0)
    assert server.state == socks.CLOSED
    assert server.feed(CONNECT_EXAMPLE) == []


GREETING_FAILURES = [
    ("SOCKS4", b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00", b""),
    ("HTTP", b"GET / HTTP/1.1\r\n", b""),
    ("TLS", b"\x16\x03\x01\x02\x00", b""),
    ("zero methods", b"\x05\x00", b"\x05\xff"),
]


@pytest.mark.parametrize("data, sent", [f[1:] for f in GREETING_FAILURES], ids=[f[0] for f in GREETING_FAILURES])
def test_bad_greeting(data, sent):
    server = socks.Socks5Server(require_auth=False)
    events = server.feed(data)
    assert [type(e) for e in events] == [socks.Failure]
    assert server.data_to_send() == sent
    assert server.state == socks.CLOSED


def test_bad_auth_version_fails():
    server = socks.Socks5Server(require_auth=True)
    events = server.feed(b"\x05\x01\x02\x05\x01\x00")
    assert isinstance(events[-1], socks.Failure) and "version" in events[-1].message
    assert server.data_to_send() == b"\x05\x02\x01\x01"


# --- SOCKS5: leftover and limits -------------------------------------------------------------


def test_bytes_after_the_request_are_leftover_for_the_relay():
    server = socks.Socks5Server(require_auth=False)
    events = server.feed(GREET_NOAUTH + CONNECT_EXAMPLE + b"GET / HTTP/1.1\r\n")
    assert events[-1].host == "example.com"
    assert server.leftover == b"GET / HTTP/1.1\r\n"
    assert server.feed(b"Host: example.com\r\n") == []  # still before reply: appended
    assert server.leftover == b"GET / HTTP/1.1\r\nHost: example.com\r\n"
    server.reply(socks.SUCCEEDED)
    assert server.feed(b"\r\n") == []
    assert server.leftover.endswith(b"\r\n\r\n")


def test_incomplete_request_is_not_leftover():
    server = socks.Socks5Server(require_auth=False)
    assert server.feed(GREET_NOAUTH + CONNECT_EXAMPLE[:-1]) == [socks.Greeting((0,))]
    assert server.leftover == b"" and server.state == socks.REQUEST
    assert server.feed(CONNECT_EXAMPLE[-1:] + b"x")[0].port == 443
    assert server.leftover == b"x"


@pytest.mark.parametrize("chunk", [1, 100, 10_000])
def test_oversized_input_while_waiting_for_a_verdict_fails(chunk):
    server = socks.Socks5Server(require_auth=True)
    server.feed(b"\x05\x01\x02\x01\x01u\x01p")
    events = []
    junk = b"\x05" * 10_000
    for i in range(0, len(junk), chunk):
        events += server.feed(junk[i : i + chunk])
        assert len(server._buf) <= socks.MAX_BUFFER
        if events:
            break
    assert [type(e) for e in events] == [socks.Failure]
    assert events[0].reply_code == socks.GENERAL_FAILURE
    assert server.data_to_send() == b"\x05\x02\x01\x01"
    assert server.state == socks.CLOSED


def test_huge_garbage_is_rejected_without_buffering():
    server = socks.Socks5Server(require_auth=False)
    events = server.feed(b"\x00" * 1_000_000)
    assert [type(e) for e in events] == [socks.Failure]
    assert len(server._buf) == 0


# --- SOCKS5: replies and misuse --------------------------------------------------------------


def test_reply_code_constants_match_rfc_1928():
    assert [
        socks.SUCCEEDED,
        socks.GENERAL_FAILURE,
        socks.NOT_ALLOWED,
        socks.NETWORK_UNREACHABLE,
        socks.HOST_UNREACHABLE,
        socks.CONNECTION_REFUSED,
        socks.TTL_EXPIRED,
        socks.COMMAND_NOT_SUPPORTED,
        socks.ADDRESS_TYPE_NOT_SUPPORTED,
    ] == list(range(9))
    assert sorted(socks.REPLY_MESSAGES) == list(range(9))


@pytest.mark.parametrize(
    "code, bind, expected",
    [
        (socks.SUCCEEDED, ("0.0.0.0", 0), b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00"),
        (socks.NOT_ALLOWED, ("10.1.2.3", 1080), b"\x05\x02\x00\x01\x0a\x01\x02\x03\x04\x38"),
        (socks.HOST_UNREACHABLE, ("::1", 443), b"\x05\x04\x00\x04" + bytes(15) + b"\x01\x01\xbb"),
        (socks.SUCCEEDED, ("proxy.local", 1), b"\x05\x00\x00\x03\x0bproxy.local\x00\x01"),
    ],
)
def test_build_reply(code, bind, expected):
    assert socks.build_reply(code, bind) == expected
    server = socks.Socks5Server(require_auth=False)
    server.feed(GREET_NOAUTH + CONNECT_EXAMPLE)
    server.data_to_send()
    server.reply(code, bind)
    assert server.data_to_send() == expected
    assert server.state == (socks.ESTABLISHED if code == socks.SUCCEEDED else socks.CLOSED)


def test_verdicts_out_of_order_are_errors():
    server = socks.Socks5Server(require_auth=False)
    with pytest.raises(RuntimeError):
        server.reply(socks.SUCCEEDED)
    with pytest.raises(RuntimeError):
        server.auth_result(True)
    server.feed(GREET_NOAUTH + CONNECT_EXAMPLE)
    with pytest.raises(RuntimeError):
        server.auth_result(True)
    server.reply(socks.SUCCEEDED)
    with pytest.raises(RuntimeError):
        server.reply(socks.SUCCEEDED)


@pytest.mark.parametrize(
    "host, port, expected",
    [
        ("example.com", 443, CONNECT_EXAMPLE),
        ("10.0.0.1", 80, b"\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x50"),
        ("2001:db8::1", 22, b"\x05\x01\x00\x04" + IPv6Address("2001:db8::1").packed + b"\x00\x16"),
    ],
)
def test_client_request_builder(host, port, expected):
    assert socks.client_request(host, port) == expected


def test_client_request_builder_rejects_overlong_names():
    with pytest.raises(ValueError):
        socks.client_request("a" * 256, 80)
