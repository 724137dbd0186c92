"""corral.proxy.addresses and corral.proxy.rules: address spellings, classes, patterns, decisions."""

from __future__ import annotations

import os
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import pytest

from corral.proxy import rules as rules_mod
from corral.proxy.addresses import classify, embedded_ipv4, in_networks, normalize_host, parse_ip
from corral.proxy.rules import Decision, Pattern, Rules, is_public_suffix, parse_network, parse_pattern

# ---------------------------------------------------------------------------------------------
# addresses.parse_ip: every spelling an attacker may use
# ---------------------------------------------------------------------------------------------

PARSE_IP = [
    ("127.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),  # inet_aton: a.b -> a.0.0.b
    ("127.0.1", "127.0.0.1"),  # a.b.c -> a.b.0.c
    ("1.2.3", "1.2.0.3"),
    ("2130706433", "127.0.0.1"),  # one decimal number
    ("0x7f000001", "127.0.0.1"),
    ("0X7F000001", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0x7f.0x0.0x0.0x1", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),  # octal
    ("0177.01", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),  # one trailing dot
    ("0", "0.0.0.0"),
    ("0x", "0.0.0.0"),  # glibc and WHATWG read a bare 0x as 0
    ("4294967295", "255.255.255.255"),
    ("169.254.43518", "169.254.169.254"),  # metadata, short form
    ("::1", "::1"),
    ("[::1]", "::1"),
    ("[0:0:0:0:0:0:0:1]", "::1"),
    ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
    ("fe80::1%eth0", "fe80::1"),  # zone id dropped
    ("[fe80::1%25eth0]", "fe80::1"),
    ("::ffff:127.0.0.1", "127.0.0.1"),  # IPv4-mapped comes back as IPv4
    ("::ffff:7f00:1", "127.0.0.1"),
    ("[::ffff:169.254.169.254]", "169.254.169.254"),
    # not addresses
    ("example.com", None),
    ("example.123", None),
    ("localhost", None),
    ("4294967296", None),  # > 2**32-1
    ("256.0.0.1", None),
    ("1.2.3.4.5", None),
    ("1.2.3.256", None),
    ("1.2.65536", None),
    ("08", None),  # invalid octal
    ("0x7g", None),
    ("1..2", None),
    (".1.2.3", None),
    ("127.0.0.1..", None),
    ("", None),
    ("[127.0.0.1]", None),  # brackets only hold IPv6
    ("[::1", None),
    ("::1]", None),
    ("fe80::1%", None),
    ("::1::2", None),
    ("1.2.3.4 ", None),
    ("\u0661.2.3.4", None),  # Arabic-Indic digit: int() would accept it
    ("+1.2.3.4", None),
]


@pytest.mark.parametrize("text,expected", PARSE_IP)
def test_parse_ip_spellings(text, expected):
    ip = parse_ip(text)
    assert (None if ip is None else str(ip)) == expected


def test_parse_ip_mapped_is_ipv4_object():
    assert type(parse_ip("::ffff:10.0.0.1")) is IPv4Address
    assert type(parse_ip("::1")) is IPv6Address


# ---------------------------------------------------------------------------------------------
# addresses.normalize_host
# ---------------------------------------------------------------------------------------------

NORMALIZE_OK = [
    ("Example.COM", "example.com"),
    ("example.com.", "example.com"),
    ("LOCALHOST.", "localhost"),
    ("a_b-c.example.com", "a_b-c.example.com"),
    ("[::1]", "::1"),
    ("[2001:DB8::0:1]", "2001:db8::1"),
    ("0x7f.1", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),
    ("::ffff:127.0.0.1", "127.0.0.1"),
    ("bücher.de", "xn--bcher-kva.de"),
    ("BÜCHER.de", "xn--bcher-kva.de"),
    ("ex\u00adample.com", "example.com"),  # soft hyphen is mapped away by IDNA
    ("example\u3002com", "example.com"),  # ideographic full stop is a dot
    ("\uff11\uff12\uff17.0.0.1", "127.0.0.1"),  # full-width digits become an address
    ("a" * 63 + ".com", "a" * 63 + ".com"),
    (".".join(["a" * 49] * 5) + ".a", ".".join(["a" * 49] * 5) + ".a"),  # 251 characters
]


@pytest.mark.parametrize("host,expected", NORMALIZE_OK)
def test_normalize_host(host, expected):
    assert normalize_host(host) == expected


NORMALIZE_BAD = [
    ("", "empty host name"),
    (".", "empty host name"),
    (None, "expected a string"),
    ("a..b", "empty label"),
    (".example.com", "empty label"),
    ("example.com..", "empty label"),
    ("exa mple.com", "invalid character"),
    ("user@example.com", "invalid character(s) '@'"),
    ("example.com:80", "invalid character(s) ':'"),
    ("*.example.com", "invalid character(s) '*'"),
    ("example.com/x", "invalid character"),
    ("a" * 64 + ".com", "64 characters long; the limit is 63"),
    (".".join(["a" * 50] * 5) + ".com", "the limit is 253"),
    ("[1.2.3.4]", "brackets may only hold an IPv6 address"),
    ("[example.com]", "brackets"),
    ("example.123", "last label is a number"),
    ("1.2.3.4.5", "last label is a number"),
    ("08", "last label is a number"),
    ("xn--a.\udcff.com", "internationalised"),
    ("a\uff0fb.com", "invalid character(s) '/'"),  # full-width solidus maps to '/'
]


@pytest.mark.parametrize("host,message", NORMALIZE_BAD)
def test_normalize_host_refuses(host, message):
    with pytest.raises(ValueError) as err:
        normalize_host(host)
    assert message in str(err.value)


# ---------------------------------------------------------------------------------------------
# addresses.classify: the table of refused address classes, embedded IPv4 forms unwrapped
# ---------------------------------------------------------------------------------------------

CLASSIFY = [
    ("8.8.8.8", None),
    ("1.1.1.1", None),
    ("2606:4700:4700::1111", None),
    ("172.32.0.1", None),  # just outside 172.16/12
    ("100.128.0.1", None),  # just outside 100.64/10
    ("169.254.169.254", "metadata"),
    ("100.100.100.200", "metadata"),
    ("fd00:ec2::254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("0.0.0.0", "unspecified/this-network"),
    ("0.1.2.3", "unspecified/this-network"),
    ("::", "unspecified/this-network"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("100.64.0.1", "cgnat"),
    ("100.127.255.255", "cgnat"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("192.0.0.8", "reserved"),
    ("198.18.0.1", "reserved"),
    ("198.19.255.255", "reserved"),
    ("192.0.2.1", "reserved"),
    ("198.51.100.1", "reserved"),
    ("203.0.113.1", "reserved"),
    ("2001:db8::1", "reserved"),
    ("100::1", "reserved"),
    ("fec0::1", "reserved"),
    # embedded IPv4, judged by the IPv4 inside
    ("::ffff:127.0.0.1", "loopback"),
    (IPv6Address("::ffff:127.0.0.1"), "loopback"),  # an address object, not re-parsed text
    ("::ffff:169.254.169.254", "metadata"),
    ("::ffff:8.8.8.8", None),
    ("::127.0.0.1", "loopback"),  # IPv4-compatible
    ("::10.0.0.1", "private"),
    ("64:ff9b::7f00:1", "loopback"),  # NAT64
    ("64:ff9b::a9fe:a9fe", "metadata"),
    ("64:ff9b::808:808", None),
    ("64:ff9b:1:7f00:0:100::", "loopback"),  # NAT64 local use, /48 layout
    ("64:ff9b:1::a00:1", "private"),  # NAT64 local use, /96 layout
    ("64:ff9b:1::5db8:d822", None),  # 93.184.216.34, /96 layout: no other layout is possible
    ("64:ff9b:1:5db8:d8:2200::", "unspecified/this-network"),  # public at /48, but 0.0.0.0 at /96
    ("2002:7f00:1::", "loopback"),  # 6to4
    ("2002:a9fe:a9fe::1", "metadata"),
    ("2002:808:808::1", None),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo: client = ~80ff:fffe = 127.0.0.1
    ("2001:0:4136:e378:8000:63bf:f5ff:fdfe", "private"),  # client 10.0.2.1
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", None),  # client 8.8.8.8
]


@pytest.mark.parametrize("ip,expected", CLASSIFY)
def test_classify(ip, expected):
    assert classify(ip) == expected


def test_classify_rejects_names():
    with pytest.raises(ValueError, match="not an IP address"):
        classify("example.com")


EMBEDDED = [
    ("8.8.8.8", []),
    ("2606:4700::1111", []),
    ("::1", []),  # not IPv4-compatible 0.0.0.1
    ("::", []),
    ("::ffff:1.2.3.4", ["1.2.3.4"]),
    ("::1.2.3.4", ["1.2.3.4"]),
    ("64:ff9b::102:304", ["1.2.3.4"]),
    ("2002:102:304::", ["1.2.3.4"]),
    ("2001:0:4136:e378:8000:63bf:fefd:fcfb", ["1.2.3.4"]),
    ("64:ff9b:1:102:3:400::", ["1.2.3.4", "2.3.4.0", "3.4.0.0", "0.0.0.0"]),  # /48 /56 /64 /96
    ("64:ff9b:1::102:304", ["1.2.3.4"]),  # only the /96 layout leaves the other bits zero
    ("64:ff9b:1:102:ff03:400::", ["0.0.0.0"]),  # non-zero "u" octet: only /96
]


@pytest.mark.parametrize("ip,expected", EMBEDDED)
def test_embedded_ipv4(ip, expected):
    assert [str(x) for x in embedded_ipv4(ip_address(ip))] == expected


IN_NETWORKS = [
    ("10.1.2.3", ["10.0.0.0/8"], True),
    ("11.1.2.3", ["10.0.0.0/8"], False),
    ("10.1.2.3", ["fd00::/8"], False),  # version mismatch is no error
    ("fd00::1", ["10.0.0.0/8"], False),
    ("fd00::1", ["10.0.0.0/8", "fd00::/8"], True),
    ("::ffff:10.1.2.3", ["10.0.0.0/8"], True),  # mapped address, IPv4 range
    ("10.1.2.3", ["::ffff:10.0.0.0/104"], True),  # IPv4 address, mapped range
    ("11.1.2.3", ["::ffff:10.0.0.0/104"], False),
    ("10.1.2.3", [], False),
]


@pytest.mark.parametrize("ip,nets,expected", IN_NETWORKS)
def test_in_networks(ip, nets, expected):
    networks = [IPv4Network(n) if ":" not in n else IPv6Network(n) for n in nets]
    assert in_networks(ip, networks) is expected
    assert in_networks(ip_address(ip), networks) is expected


# ---------------------------------------------------------------------------------------------
# rules.parse_pattern: the grammar
# ---------------------------------------------------------------------------------------------

V4 = IPv4Network
V6 = IPv6Network
PATTERNS = [
    # text, denied, kind, host, network, port
    ("example.com", False, "name", "example.com", None, None),
    ("Example.COM.", False, "name", "example.com", None, None),
    ("example.com:8443", False, "name", "example.com", None, 8443),
    ("bücher.de", False, "name", "xn--bcher-kva.de", None, None),
    ("localhost", False, "name", "localhost", None, None),
    ("localhost:8080", False, "name", "localhost", None, 8080),
    ("*.example.com", False, "wildcard", "example.com", None, None),
    ("*.example.com:443", False, "wildcard", "example.com", None, 443),
    ("*.example.github.io", False, "wildcard", "example.github.io", None, None),
    ("127.0.0.1", False, "ip", "127.0.0.1", V4("127.0.0.1/32"), None),
    ("127.0.0.1:8080", False, "ip", "127.0.0.1", V4("127.0.0.1/32"), 8080),
    ("127.1", False, "ip", "127.0.0.1", V4("127.0.0.1/32"), None),
    ("0x7f000001:80", False, "ip", "127.0.0.1", V4("127.0.0.1/32"), 80),
    ("::1", False, "ip", "::1", V6("::1/128"), None),
    ("[::1]", False, "ip", "::1", V6("::1/128"), None),
    ("[::1]:8080", False, "ip", "::1", V6("::1/128"), 8080),
    ("::1:8080", False, "ip", "::1:8080", V6("::1:8080/128"), None),  # unbracketed: no port
    ("[::ffff:127.0.0.1]:80", False, "ip", "127.0.0.1", V4("127.0.0.1/32"), 80),
    ("10.0.0.0/8", False, "cidr", "", V4("10.0.0.0/8"), None),
    ("10.0.0.0/8:5432", False, "cidr", "", V4("10.0.0.0/8"), 5432),
    ("192.168.1.0/24", False, "cidr", "", V4("192.168.1.0/24"), None),
    ("2001:db8::/32", False, "cidr", "", V6("2001:db8::/32"), None),
    ("[2001:db8::/48]:443", False, "cidr", "", V6("2001:db8::/48"), 443),
    ("::ffff:10.0.0.0/104", False, "cidr", "", V6("::ffff:10.0.0.0/104"), None),
    ("example.com:65535", False, "name", "example.com", None, 65535),
    # deny-only forms
    ("*", True, "any", "", None, None),
    ("*:22", True, "any", "", None, 22),
    ("*.com", True, "wildcard", "com", None, None),
    ("*.co.uk", True, "wildcard", "co.uk", None, None),
    ("0.0.0.0/0", True, "cidr", "", V4("0.0.0.0/0"), None),
    ("::/0", True, "cidr", "", V6("::/0"), None),
    ("fd00::/8", True, "cidr", "", V6("fd00::/8"), None),
]


@pytest.mark.parametrize("text,denied,kind,host,network,port", PATTERNS)
def test_parse_pattern(text, denied, kind, host, network, port):
    p = parse_pattern(text, denied=denied)
    assert (p.text, p.kind, p.host, p.network, p.port) == (text, kind, host, network, port)


PATTERN_ERRORS = [
    # text, denied, message fragment
    ("", False, "empty pattern"),
    (" example.com", False, "whitespace"),
    ("example .com", True, "whitespace"),
    ("example.com\n", False, "whitespace"),
    ("http://example.com", False, "drop the scheme"),
    ("example.com/path", False, "paths are not allowed"),
    ("example.com:443/path", False, "paths are not allowed"),
    ("a..b", False, "invalid host name: empty label"),
    ("a..b", True, "empty label"),
    ("*.*.com", False, "only one leading '*.'"),
    ("*.*.example.com", True, "only one leading '*.'"),
    ("foo*.com", False, "whole leading label"),
    ("*example.com", False, "whole leading label"),
    ("a.*.com", True, "whole leading label"),
    ("*", False, "overly broad: '*'"),
    ("*:443", False, "overly broad: '*'"),
    ("*.com", False, "overly broad: '*.com' would allow every name in a top-level domain"),
    ("*.localhost", False, "overly broad"),
    ("*.co.uk", False, "'co.uk' is a public suffix"),
    ("*.github.io", False, "'github.io' is a public suffix"),
    ("*.co.uk:443", False, "public suffix"),
    ("*.10.0.0.1", False, "not to IP addresses"),
    ("*.10.0.0.0/8", False, "not to IP addresses"),
    ("*.", False, "invalid domain after '*.'"),
    ("ip6-localhost", False, "needs a dot"),
    ("intranet", True, "needs a dot"),
    ("0.0.0.0/0", False, "overly broad"),
    ("::/0", False, "overly broad"),
    ("8.0.0.0/7", False, "8.0.0.0/7 is /7"),
    ("fd00::/8", False, "fd00::/8 is /8"),
    ("2001:db8::/31", False, "overly broad"),
    ("::ffff:0:0/96", False, "must be /104 or narrower"),  # all of IPv4, mapped
    ("64:ff9b::/96", False, "overlaps 64:ff9b::/96"),  # all of IPv4 via NAT64
    ("2002::/16", False, "2002::/16 is /16"),  # all of IPv4 via 6to4
    ("2001::/32", False, "overlaps 2001::/32"),  # all of IPv4 via Teredo
    ("64:ff9b:1::/64", False, "must be /104 or narrower"),
    ("10.0.0.1/8", False, "host bits set in 10.0.0.1/8; did you mean 10.0.0.0/8?"),
    ("10.0.0.1/8", True, "host bits set"),
    ("fd00::1/8", True, "did you mean fd00::/8?"),
    ("10.0.0.0/33", False, "invalid prefix length '33'"),
    ("10.0.0.0/", False, "invalid prefix length"),
    ("10.0.0.0/x", False, "invalid prefix length"),
    ("[::1]/128", False, "unexpected '/128' after ']'"),
    ("example.com:0", False, "invalid port '0'"),
    ("example.com:65536", False, "invalid port '65536'"),
    ("example.com:080", False, "invalid port '080'"),
    ("example.com:", False, "invalid port ''"),
    ("example.com:http", False, "invalid port 'http'"),
    (":443", False, "empty host"),
    ("[::1", False, "without a closing ']'"),
    ("[127.0.0.1]:80", False, "brackets may only hold an IPv6"),
    ("[::1]x", False, "unexpected 'x' after ']'"),
    ("[::1]:0", False, "invalid port"),
    ("[zz::1]", False, "invalid character"),
    ("example.123", False, "last label is a number"),
    ("user@example.com", False, "invalid character(s) '@'"),
]


@pytest.mark.parametrize("text,denied,message", PATTERN_ERRORS)
def test_parse_pattern_refuses(text, denied, message):
    with pytest.raises(ValueError) as err:
        parse_pattern(text, denied=denied)
    assert message in str(err.value)


def test_parse_pattern_refuses_non_strings():
    with pytest.raises(ValueError, match="expected a string, got int"):
        parse_pattern(443, denied=False)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("10.0.0.0/8", V4("10.0.0.0/8")),
        ("192.168.1.10", V4("192.168.1.10/32")),
        ("0177.0.0.0/8", V4("127.0.0.0/8")),
        ("fc00::/7", V6("fc00::/7")),
        ("::1", V6("::1/128")),
        ("::ffff:127.0.0.1", V4("127.0.0.1/32")),
        ("0.0.0.0/0", V4("0.0.0.0/0")),
    ],
)
def test_parse_network(text, expected):
    assert parse_network(text) == expected


# ---------------------------------------------------------------------------------------------
# Public suffixes: Debian's list when installed, else the built-in fallback
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_suffixes(monkeypatch):
    monkeypatch.setattr(rules_mod, "_suffixes", None)
    return monkeypatch


HAS_PSL = os.path.exists(rules_mod.PUBLIC_SUFFIX_LIST)


@pytest.mark.skipif(not HAS_PSL, reason="apt-get install publicsuffix")
@pytest.mark.parametrize(
    "name,expected",
    [
        ("com", True),
        ("co.uk", True),
        ("github.io", True),
        ("s3.amazonaws.com", True),
        ("kawasaki.jp", False),  # listed only as "*.kawasaki.jp"...
        ("foo.kawasaki.jp", True),  # ...so each name under it is a suffix
        ("city.kawasaki.jp", False),  # except "!city.kawasaki.jp"
        ("www.ck", False),  # "!www.ck" exception to "*.ck"
        ("foo.ck", True),
        ("xn--55qx5d.cn", True),  # 公司.cn, listed in Unicode
        ("xn--czrs0t.xn--55qx5d.cn", False),  # 商店.公司.cn
        ("xn--.cn", False),  # undecodable punycode
        ("example.com", False),
        ("example.co.uk", False),
        ("example.github.io", False),
    ],
)
def test_public_suffix_list(fresh_suffixes, name, expected):
    assert is_public_suffix(name) is expected
    assert rules_mod._public_suffixes()[0] is not rules_mod.FALLBACK_PUBLIC_SUFFIXES


@pytest.mark.skipif(not HAS_PSL, reason="apt-get install publicsuffix")
@pytest.mark.parametrize(
    "text,ok",
    [("*.foo.ck", False), ("*.www.ck", True), ("*.kawasaki.jp", False), ("*.city.kawasaki.jp", True),
     ("*.xn--55qx5d.cn", False), ("*.公司.cn", False), ("*.xn--czrs0t.xn--55qx5d.cn", True),
     ("*.appspot.com", False), ("*.s3.amazonaws.com", False), ("*.example.co.uk", True)],
)
def test_wildcard_against_public_suffix_list(fresh_suffixes, text, ok):
    if ok:
        assert parse_pattern(text, denied=False).kind == "wildcard"
    else:
        with pytest.raises(ValueError, match="public suffix"):
            parse_pattern(text, denied=False)


@pytest.mark.parametrize(
    "name,expected",
    [("co.uk", True), ("github.io", True), ("herokuapp.com", True), ("cloudfront.net", True), ("com.au", True),
     ("org", True), ("example.co.uk", False), ("foo.ck", False), ("example.com", False)],
)
def test_public_suffix_fallback(fresh_suffixes, tmp_path, name, expected):
    fresh_suffixes.setattr(rules_mod, "PUBLIC_SUFFIX_LIST", str(tmp_path / "missing.dat"))
    assert is_public_suffix(name) is expected
    assert rules_mod._public_suffixes()[0] is rules_mod.FALLBACK_PUBLIC_SUFFIXES
    assert len(rules_mod.FALLBACK_PUBLIC_SUFFIXES) >= 30


def test_public_suffix_list_format(fresh_suffixes, tmp_path):
    psl = tmp_path / "psl.dat"
    psl.write_text(
        "// comment\n\nexample\ncorp.example trailing words\n*.wild.example\n!ok.wild.example\n公司.cn\n",
        encoding="utf-8",
    )
    fresh_suffixes.setattr(rules_mod, "PUBLIC_SUFFIX_LIST", str(psl))
    names = ("corp.example", "x.wild.example", "ok.wild.example", "xn--55qx5d.cn", "co.uk")
    assert [is_public_suffix(n) for n in names] == [True, True, False, True, False]
    with pytest.raises(ValueError, match="public suffix"):
        parse_pattern("*.corp.example", denied=False)
    assert parse_pattern("*.co.uk", denied=False).host == "co.uk"  # not in this list


def test_public_suffix_list_read_lazily_once(fresh_suffixes, tmp_path):
    fresh_suffixes.setattr(rules_mod, "PUBLIC_SUFFIX_LIST", str(tmp_path / "missing.dat"))
    Rules(["example.com", "10.0.0.0/8"], ["*.com"])
    assert rules_mod._suffixes is None  # no wildcard allowance, no read
    Rules(["*.example.com"])
    loaded = rules_mod._suffixes
    assert loaded[0] is rules_mod.FALLBACK_PUBLIC_SUFFIXES
    fresh_suffixes.setattr(rules_mod, "PUBLIC_SUFFIX_LIST", "/usr/share/publicsuffix/public_suffix_list.dat")
    Rules(["*.example.org"])
    assert rules_mod._suffixes is loaded  # read once per process


# ---------------------------------------------------------------------------------------------
# Rules.decide: the name-level decision
# ---------------------------------------------------------------------------------------------

RULES = Rules(
    allowed=[
        "example.com", "*.github.com", "api.openai.com:443", "*.pypi.org:443", "localhost",
        "127.0.0.1:8765", "10.0.0.0/8", "[::1]:9000", "bad.example.com", "*.corp.example.org",
        "2001:db8::/48",
    ],
    denied=["bad.example.com", "*.evil.corp.example.org", "10.6.6.0/24", "*:22", "secret.corp.example.org:443"],
    reasons={"*:22": "SSH is not allowed; use HTTPS", "secret.corp.example.org:443": "holds customer data"},
)

DECIDE = [
    # host, port, allowed, code, rule
    ("example.com", 443, True, "allow", "example.com"),
    ("EXAMPLE.com.", 80, True, "allow", "example.com"),
    ("www.example.com", 443, False, "not-allowed", ""),  # exact name does not cover subdomains
    ("example.org", 443, False, "not-allowed", ""),
    ("notexample.com", 443, False, "not-allowed", ""),
    ("github.com", 443, False, "not-allowed", ""),  # wildcard does not cover the apex
    ("api.github.com", 443, True, "allow", "*.github.com"),
    ("a.b.c.github.com", 8080, True, "allow", "*.github.com"),  # any depth, any port
    ("evilgithub.com", 443, False, "not-allowed", ""),
    ("github.com.evil.net", 443, False, "not-allowed", ""),
    ("api.openai.com", 443, True, "allow", "api.openai.com:443"),
    ("api.openai.com", 80, False, "not-allowed", ""),  # port enforced
    ("files.pypi.org", 443, True, "allow", "*.pypi.org:443"),
    ("files.pypi.org", 80, False, "not-allowed", ""),
    ("bad.example.com", 443, False, "deny-rule", "bad.example.com"),  # deny beats allow
    ("x.evil.corp.example.org", 443, False, "deny-rule", "*.evil.corp.example.org"),
    ("evil.corp.example.org", 443, True, "allow", "*.corp.example.org"),  # deny wildcard skips apex
    ("secret.corp.example.org", 443, False, "deny-rule", "secret.corp.example.org:443"),
    ("secret.corp.example.org", 80, True, "allow", "*.corp.example.org"),
    ("example.com", 22, False, "deny-rule", "*:22"),
    ("10.1.2.3", 22, False, "deny-rule", "*:22"),  # `*` deny also covers IP literals
    ("10.1.2.3", 5432, True, "allow", "10.0.0.0/8"),
    ("012.1.2.3", 5432, True, "allow", "10.0.0.0/8"),  # octal spelling of 10.1.2.3
    ("167838211", 80, True, "allow", "10.0.0.0/8"),  # decimal spelling of 10.1.2.3
    ("::ffff:10.1.2.3", 80, True, "allow", "10.0.0.0/8"),
    ("10.6.6.6", 443, False, "deny-rule", "10.6.6.0/24"),
    ("11.0.0.1", 443, False, "not-allowed", ""),
    ("127.0.0.1", 8765, True, "allow", "127.0.0.1:8765"),
    ("127.1", 8765, True, "allow", "127.0.0.1:8765"),
    ("0x7f000001", 8765, True, "allow", "127.0.0.1:8765"),
    ("127.0.0.1", 8766, False, "not-allowed", ""),
    ("localhost", 1234, True, "allow", "localhost"),
    ("localhost.", 1234, True, "allow", "localhost"),
    ("127.0.0.2", 8765, False, "not-allowed", ""),
    ("[::1]", 9000, True, "allow", "[::1]:9000"),
    ("::1", 9000, True, "allow", "[::1]:9000"),
    ("0:0::1", 9000, True, "allow", "[::1]:9000"),
    ("::1", 9001, False, "not-allowed", ""),
    ("2001:db8:0:1::5", 443, True, "allow", "2001:db8::/48"),
    ("2001:db8:1::5", 443, False, "not-allowed", ""),
    ("1.2.3.4", 443, False, "not-allowed", ""),
    # bad hosts
    ("", 443, False, "bad-host", ""),
    ("a..b", 443, False, "bad-host", ""),
    ("example.com:443", 443, False, "bad-host", ""),
    ("example.123", 443, False, "bad-host", ""),
    ("example.com", 0, False, "bad-host", ""),
    ("example.com", 65536, False, "bad-host", ""),
    ("example.com", "443", False, "bad-host", ""),
    ("example.com", True, False, "bad-host", ""),
]


@pytest.mark.parametrize("host,port,allowed,code,rule", DECIDE)
def test_decide(host, port, allowed, code, rule):
    d = RULES.decide(host, port)
    assert (d.allowed, d.code, d.rule) == (allowed, code, rule)


REASONS = [
    ("example.org", 443, "example.org:443 is not in allowedDomains"),
    ("::2", 443, "[::2]:443 is not in allowedDomains"),
    ("example.com", 443, "allowed by allowedDomains entry 'example.com'"),
    ("bad.example.com", 443, "denied by deniedDomains entry 'bad.example.com'"),
    ("example.com", 22, "SSH is not allowed; use HTTPS"),  # configured reason
    ("secret.corp.example.org", 443, "holds customer data"),
    ("a..b", 443, "invalid host 'a..b': empty label (two dots in a row, or a leading dot)"),
    ("example.com", 0, "invalid port 0"),
]


@pytest.mark.parametrize("host,port,reason", REASONS)
def test_decide_reasons(host, port, reason):
    assert RULES.decide(host, port).reason == reason


DECIDE_NAME = [
    # host, allowed, code, rule: "may this name be reached on some port?" (DNS answers)
    ("example.com", True, "allow", "example.com"),
    ("api.openai.com", True, "allow", "api.openai.com:443"),  # allowed on one port is enough
    ("files.pypi.org", True, "allow", "*.pypi.org:443"),
    ("secret.corp.example.org", True, "allow", "*.corp.example.org"),  # denied on 443 only
    ("bad.example.com", False, "deny-rule", "bad.example.com"),
    ("x.evil.corp.example.org", False, "deny-rule", "*.evil.corp.example.org"),
    ("github.com", False, "not-allowed", ""),
    ("localhost", True, "allow", "localhost"),
    ("127.0.0.1", True, "allow", "127.0.0.1:8765"),
    ("a..b", False, "bad-host", ""),
]


@pytest.mark.parametrize("host,allowed,code,rule", DECIDE_NAME)
def test_decide_name(host, allowed, code, rule):
    d = RULES.decide_name(host)
    assert (d.allowed, d.code, d.rule) == (allowed, code, rule)


def test_decide_name_deny_all():
    r = Rules(["example.com"], ["*"], {"*": "offline"})
    assert r.decide_name("example.com") == Decision(False, "*", "offline", "deny-rule")
    assert Rules(["example.com"], ["*:22"]).decide_name("example.com").allowed is True


def test_decision_value():
    d = Rules(["example.com"]).decide("example.com", 443)
    assert d == Decision(True, "example.com", "allowed by allowedDomains entry 'example.com'", "allow")
    with pytest.raises(AttributeError):
        d.allowed = False


def test_most_specific_deny_reason_wins():
    r = Rules(["a.example.com"], ["*", "a.example.com"], {"*": "offline", "a.example.com": "that one is bad"})
    assert RULES.decide("x.example.com", 443).code == "not-allowed"
    assert r.decide("a.example.com", 443).reason == "that one is bad"
    assert r.decide("b.example.com", 443).reason == "offline"


def test_many_patterns_indexed():
    names = [f"host{i}.example.com" for i in range(100)] + [f"*.zone{i}.example.net" for i in range(100)]
    r = Rules(names)
    assert len(r._allow.exact) == 100 and len(r._allow.wild) == 100
    assert r.decide("host99.example.com", 443).rule == "host99.example.com"
    assert r.decide("a.b.zone42.example.net", 443).rule == "*.zone42.example.net"
    assert r.decide("zone42.example.net", 443).code == "not-allowed"


# ---------------------------------------------------------------------------------------------
# srt's "Allowing localhost / 127.0.0.1" table (shared/notes/srt-0.0.83-behaviour.md)
# ---------------------------------------------------------------------------------------------


def through_proxy(rules: Rules, host: str, port: int) -> int:
    """The proxy's whole verdict, as the HTTP status srt gave: name check, then the dial check."""
    d = rules.decide(host, port)
    if d.allowed:
        ip = parse_ip(host)
        d = rules.check_resolved(host, port, [ip] if ip else [ip_address("127.0.0.1"), ip_address("::1")])
    return 200 if d.allowed else 403


SRT_LOCALHOST = [
    (["localhost"], [], "localhost", 8765, 200),
    (["localhost"], [], "127.0.0.1", 8765, 403),
    (["127.0.0.1:8765"], [], "127.0.0.1", 8765, 200),
    (["127.0.0.1:8765"], [], "localhost", 8765, 403),
    (["127.0.0.1:9999"], [], "127.0.0.1", 8765, 403),
    (["127.0.0.1"], ["127.0.0.1"], "127.0.0.1", 8765, 403),
]


@pytest.mark.parametrize("allowed,denied,host,port,status", SRT_LOCALHOST)
def test_srt_localhost_table(allowed, denied, host, port, status):
    assert through_proxy(Rules(allowed, denied), host, port) == status


@pytest.mark.parametrize("allowed", [["*"], ["ip6-localhost"]])
def test_srt_localhost_table_rejected_configs(allowed):
    with pytest.raises(ValueError, match=f"allowedDomains entry '{allowed[0]}'"):
        Rules(allowed)


# ---------------------------------------------------------------------------------------------
# Rules.check_resolved: SSRF and DNS-rebinding guard
# ---------------------------------------------------------------------------------------------

RESOLVED_RULES = Rules(
    allowed=["example.com", "localhost", "internal.example.com", "10.0.0.0/8:5432", "192.168.1.5",
             "db.example.com", "*.example.net", "7.7.7.7"],
    denied=["10.9.9.9", "1.2.3.0/24:443", "8.8.4.4"],
    reasons={"8.8.4.4": "no other resolvers"},
    denied_addresses=["9.9.9.0/24", "2001:4860::/32"],
)
OWN = frozenset({ip_address("203.0.114.7"), ip_address("fd00::7"), "198.51.99.1"})

CHECK_RESOLVED = [
    # host, port, addrs, allowed, code, reason fragment
    ("example.com", 443, ["93.184.216.34"], True, "allow", "allowed by allowedDomains entry 'example.com'"),
    ("example.com", 443, ["93.184.216.34", "2606:2800:220:1::1"], True, "allow", ""),
    ("example.com", 443, ["127.0.0.1"], False, "ssrf", "127.0.0.1 (a loopback address)"),
    ("example.com", 443, ["::1"], False, "ssrf", "::1 (a loopback address)"),
    ("example.com", 443, ["93.184.216.34", "10.1.2.3"], False, "ssrf", "10.1.2.3 (a private address)"),
    ("example.com", 443, ["169.254.169.254"], False, "ssrf", "169.254.169.254 (a metadata address)"),
    ("example.com", 443, ["::ffff:169.254.169.254"], False, "ssrf", "169.254.169.254 (a metadata address)"),
    ("example.com", 443, ["64:ff9b::a9fe:a9fe"], False, "ssrf", "64:ff9b::a9fe:a9fe (a metadata address)"),
    ("example.com", 443, ["2002:7f00:1::"], False, "ssrf", "2002:7f00:1:: (a loopback address)"),
    ("example.com", 443, ["fe80::1%eth0"], False, "ssrf", "fe80::1 (a link-local address)"),
    ("example.com", 443, ["0.0.0.0"], False, "ssrf", "0.0.0.0 (an unspecified/this-network address)"),
    ("example.com", 443, ["100.64.1.1"], False, "ssrf", "(a cgnat address)"),
    ("example.com", 443, ["224.0.0.1"], False, "ssrf", "(a multicast address)"),
    ("example.com", 443, ["255.255.255.255"], False, "ssrf", "(a broadcast address)"),
    ("example.com", 443, ["240.1.1.1"], False, "ssrf", "(a reserved address)"),
    ("example.com", 443, ["fd12::1"], False, "ssrf", "fd12::1 (a private address)"),
    ("example.com", 443, [], False, "bad-host", "example.com did not resolve to any address"),
    ("example.com", 443, ["not-an-ip"], False, "ssrf", "not an IP address"),
    # this host's own addresses
    ("example.com", 443, ["203.0.114.7"], False, "ssrf", "203.0.114.7 (this host's own address)"),
    ("example.com", 443, ["198.51.99.1"], False, "ssrf", "(this host's own address)"),  # given as text
    ("example.com", 443, ["::ffff:203.0.114.7"], False, "ssrf", "203.0.114.7 (this host's own address)"),
    ("example.com", 443, ["2002:cb00:7207::1"], False, "ssrf", "(this host's own address)"),  # 6to4 of it
    # deniedResolvedAddresses and deny IP entries act on resolved addresses
    ("example.com", 443, ["9.9.9.9"], False, "ssrf",
     "resolves to denied address 9.9.9.9 (deniedResolvedAddresses entry '9.9.9.0/24')"),
    ("example.com", 443, ["64:ff9b::909:909"], False, "ssrf", "deniedResolvedAddresses entry '9.9.9.0/24'"),
    ("example.com", 443, ["2001:4860::8888"], False, "ssrf", "deniedResolvedAddresses entry '2001:4860::/32'"),
    ("example.com", 443, ["10.9.9.9"], False, "ssrf", "denied by deniedDomains entry '10.9.9.9'"),
    ("example.com", 443, ["1.2.3.4"], False, "ssrf",
     "resolves to 1.2.3.4, denied by deniedDomains entry '1.2.3.0/24:443'"),
    ("example.com", 80, ["1.2.3.4"], True, "allow", ""),  # that deny entry is for port 443 only
    ("example.com", 443, ["8.8.4.4"], False, "ssrf", "no other resolvers"),  # configured reason
    # an explicitly allowed address overrides the class, with its port
    ("db.example.com", 5432, ["10.1.2.3"], True, "allow", ""),
    ("db.example.com", 5433, ["10.1.2.3"], False, "ssrf", "10.1.2.3 (a private address)"),
    ("db.example.com", 5432, ["10.9.9.9"], False, "ssrf", "denied by deniedDomains entry '10.9.9.9'"),  # deny beats
    ("db.example.com", 443, ["192.168.1.5"], True, "allow", ""),
    ("db.example.com", 443, ["192.168.1.6"], False, "ssrf", "192.168.1.6 (a private address)"),
    ("db.example.com", 443, ["::ffff:192.168.1.5"], True, "allow", ""),  # same address, mapped
    ("db.example.com", 443, ["64:ff9b::c0a8:105"], False, "ssrf", "(a private address)"),  # other form: exact only
    ("a.example.net", 5432, ["10.0.0.1", "93.184.216.34"], True, "allow", ""),
    ("a.example.net", 5432, ["10.0.0.1", "127.0.0.1"], False, "ssrf", "127.0.0.1 (a loopback address)"),
    # localhost, explicitly allowed: loopback is fine, nothing else is
    ("localhost", 8080, ["127.0.0.1", "::1"], True, "allow", ""),
    ("localhost", 8080, ["127.0.0.53"], True, "allow", ""),
    ("localhost", 8080, ["127.0.0.1", "169.254.169.254"], False, "ssrf", "(a metadata address)"),
    ("localhost", 8080, ["192.168.7.7"], False, "ssrf", "(a private address)"),
    # IP literals: addrs is the literal itself
    ("10.1.2.3", 5432, ["10.1.2.3"], True, "allow", ""),
    ("192.168.1.5", 80, ["192.168.1.5"], True, "allow", ""),
    ("7.7.7.7", 80, ["7.7.7.7"], True, "allow", ""),
    # the name-level decision is repeated
    ("other.com", 443, ["93.184.216.34"], False, "not-allowed", "is not in allowedDomains"),
    ("10.9.9.9", 443, ["10.9.9.9"], False, "deny-rule", "denied by deniedDomains entry '10.9.9.9'"),
    ("a..b", 443, ["93.184.216.34"], False, "bad-host", "invalid host"),
]


@pytest.mark.parametrize("host,port,addrs,allowed,code,reason", CHECK_RESOLVED)
def test_check_resolved(host, port, addrs, allowed, code, reason):
    parsed = [a if a == "not-an-ip" else ip_address(a.partition("%")[0]) for a in addrs]
    for given in (addrs, parsed):  # text and address objects alike
        d = RESOLVED_RULES.check_resolved(host, port, given, OWN)
        assert (d.allowed, d.code) == (allowed, code)
        assert reason in d.reason


def test_check_resolved_without_host_addrs():
    assert RESOLVED_RULES.check_resolved("example.com", 443, ["203.0.114.7"]).allowed is True
    assert RESOLVED_RULES.check_resolved("example.com", 443, ["203.0.114.7"], OWN).allowed is False


def test_check_resolved_rule_names_the_entry():
    assert RESOLVED_RULES.check_resolved("example.com", 443, ["9.9.9.9"]).rule == "9.9.9.0/24"
    assert RESOLVED_RULES.check_resolved("example.com", 443, ["10.9.9.9"]).rule == "10.9.9.9"
    assert RESOLVED_RULES.check_resolved("example.com", 443, ["10.1.1.1"]).rule == ""
    assert RESOLVED_RULES.check_resolved("db.example.com", 5432, ["10.1.1.1"]).rule == "db.example.com"


def test_localhost_loopback_needs_explicit_localhost():
    r = Rules(["*.example.com"])
    assert r.decide("localhost", 80).code == "not-allowed"
    assert r.check_resolved("x.example.com", 80, ["127.0.0.1"]).code == "ssrf"


# ---------------------------------------------------------------------------------------------
# Construction, run-time changes, NO_PROXY helper
# ---------------------------------------------------------------------------------------------

CONSTRUCT_ERRORS = [
    (dict(allowed=["example.com", "*.com"]), "allowedDomains entry '*.com': overly broad"),
    (dict(allowed=["http://example.com"]), "allowedDomains entry 'http://example.com': a pattern is a host, not a URL"),
    (dict(denied=["foo*.com"]), "deniedDomains entry 'foo*.com':"),
    (dict(denied=["x.com"], reasons={"y.com": "why"}),
     "deniedDomainReasons key 'y.com': not an entry of deniedDomains"),
    (dict(denied=["x.com"], reasons={"x.com": ""}), "deniedDomainReasons['x.com']: expected a non-empty string"),
    (dict(denied_addresses=["10.0.0.0/8", "example.com"]),
     "deniedResolvedAddresses entry 'example.com': expected an IP address or CIDR"),
    (dict(denied_addresses=["10.0.0.1/8"]), "deniedResolvedAddresses entry '10.0.0.1/8': host bits set"),
    (dict(denied_addresses=[10]), "deniedResolvedAddresses entry 10: expected a string"),
]


@pytest.mark.parametrize("kwargs,message", CONSTRUCT_ERRORS)
def test_rules_construction_errors(kwargs, message):
    with pytest.raises(ValueError) as err:
        Rules(**kwargs)
    assert message in str(err.value)
    with pytest.raises(ValueError):
        Rules.compile(**kwargs)


def test_rules_accepts_a_single_string():
    assert [p.text for p in Rules("example.com").allowed] == ["example.com"]


def test_with_allowed_and_with_denied_return_new_rules():
    base = Rules(["example.com"], ["bad.example.com"], {"bad.example.com": "bad"}, ["9.9.9.9"])
    more = base.with_allowed(["127.0.0.1:8080", "example.com"])
    assert [p.text for p in more.allowed] == ["example.com", "127.0.0.1:8080"]  # no duplicate
    assert base.decide("127.0.0.1", 8080).allowed is False  # the original is unchanged
    assert more.decide("127.0.0.1", 8080).allowed is True
    assert more.decide("bad.example.com", 443).reason == "bad"
    assert more.check_resolved("example.com", 443, ["9.9.9.9"]).code == "ssrf"
    less = more.with_denied("example.com")
    assert less.decide("example.com", 443).code == "deny-rule"
    assert more.decide("example.com", 443).code == "allow"
    with pytest.raises(ValueError, match="allowedDomains entry '\\*'"):
        base.with_allowed(["*"])
    with pytest.raises(AttributeError, match="immutable"):
        base.allowed = ()
    with pytest.raises(TypeError):
        base.reasons["x"] = "y"


LOOPBACK_ALLOWANCES = [
    (["127.0.0.1:8765", "example.com", "10.0.0.0/8", "localhost"], ["127.0.0.1:8765"]),
    (["127.0.0.0/8", "[::1]:80", "::2"], ["127.0.0.0/8", "[::1]:80"]),
    (["127.5.5.5", "::ffff:127.0.0.0/104", "fd00::/32"], ["127.5.5.5", "::ffff:127.0.0.0/104"]),
    (["example.com"], []),
]


@pytest.mark.parametrize("allowed,expected", LOOPBACK_ALLOWANCES)
def test_loopback_allowances(allowed, expected):
    found = Rules(allowed).loopback_allowances()
    assert [p.text for p in found] == expected
    assert all(isinstance(p, Pattern) for p in found)


def test_importing_rules_is_cheap_and_opens_nothing():
    code = (
        "import sys, corral; before = set(sys.modules); import corral.proxy.rules; "
        "print(sorted(m for m in set(sys.modules) - before if m in "
        "('socket', 'ssl', 're', 'dataclasses', 'inspect', 'selectors', 'asyncio')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
