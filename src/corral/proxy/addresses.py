"""IP address spellings and classes, for the egress proxy's decisions.

Rules of this module: it is pure (no DNS, no sockets), and it is paranoid about spelling. An
attacker picks whichever spelling of 127.0.0.1 the proxy fails to recognise (`2130706433`,
`0x7f.1`, `::ffff:127.0.0.1`, `64:ff9b::7f00:1`), so every spelling that some client, libc or
URL parser reads as an address is parsed here to the one canonical address, and every IPv6
form that carries an IPv4 address inside is unwrapped before it is classified.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

_DIGITS = frozenset("0123456789")
_OCTAL = frozenset("01234567")
_HEX = frozenset("0123456789abcdefABCDEF")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")

# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def parse_ip(text: str) -> IPAddress | None:
    """The address `text` spells, in any form a client may accept, or None for a name.

    IPv4-mapped IPv6 (`::ffff:1.2.3.4`) comes back as the IPv4 address: it is the same
    destination, and rules are written for the IPv4 spelling.
    """
    if not isinstance(text, str) or not text:
        return None
    if text[0] == "[" or text[-1] == "]":
        if not (text[0] == "[" and text[-1] == "]"):
            return None
        return _parse_ipv6(text[1:-1])
    if ":" in text:
        return _parse_ipv6(text)
    return _parse_ipv4(text)


def _parse_ipv6(text: str) -> IPAddress | None:
    address, pct, zone = text.partition("%")
    # A zone id only says which interface; the destination is the address without it.
    if pct and (not zone or not zone.isascii() or not zone.isprintable() or " " in zone):
        return None
    if "%" in zone or ":" not in address:
        return None
    try:
        ip = IPv6Address(address)
    except ValueError:
        return None
    return ip.ipv4_mapped or ip


def _parse_ipv4(text: str) -> IPv4Address | None:
    """inet_aton's forms: 1-4 parts, each decimal, 0x-hex or 0-octal; the last part fills the rest."""
    parts = text.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # one trailing dot, as in a fully qualified name
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        if part[:2] in ("0x", "0X"):
            digits, base, allowed = part[2:], 16, _HEX
        elif len(part) > 1 and part[0] == "0":
            digits, base, allowed = part[1:], 8, _OCTAL
        else:
            digits, base, allowed = part, 10, _DIGITS
        # `0x` alone is 0 (glibc, WHATWG); an empty part or a bad digit (`08`) is no address.
        if not part or not set(digits) <= allowed:
            return None
        numbers.append(int(digits, base) if digits else 0)
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for i, n in enumerate(leading):
        value += n << (8 * (3 - i))
    return IPv4Address(value)


def _ends_in_number(name: str) -> bool:
    # WHATWG URL rule: a host whose last label is a number is parsed as IPv4 or rejected.
    last = name.rpartition(".")[2]
    if last[:2] == "0x":
        return set(last[2:]) <= _HEX
    return bool(last) and set(last) <= _DIGITS


def normalize_host(host: str) -> str:
    """The canonical spelling of a host: a lower-case ASCII name, or an address's canonical text.

    Raises ValueError saying why `host` is neither a valid name nor an address.
    """
    if not isinstance(host, str):
        raise ValueError(f"expected a string, got {type(host).__name__}")
    if not host:
        raise ValueError("empty host name")
    ip = parse_ip(host)
    if ip is not None:
        return str(ip)
    if host[0] == "[" or host[-1] == "]":
        raise ValueError("brackets may only hold an IPv6 address")
    name = host
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"not a valid internationalised name ({exc})") from None
        ip = parse_ip(name)  # IDNA maps full-width digits and dots: `１２７．０．０．１`
        if ip is not None:
            return str(ip)
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ValueError("empty host name")
    bad = sorted(set(name) - _NAME_CHARS)
    if bad:
        shown = "".join(bad)
        raise ValueError(f"invalid character(s) {shown!r}: a host name has only a-z, 0-9, '.', '-', '_'")
    if len(name) > 253:
        raise ValueError(f"name is {len(name)} characters long; the limit is 253")
    for label in name.split("."):
        if not label:
            raise ValueError("empty label (two dots in a row, or a leading dot)")
        if len(label) > 63:
            raise ValueError(f"label {label[:20]}... is {len(label)} characters long; the limit is 63")
    if _ends_in_number(name):
        raise ValueError(
            "the last label is a number, so clients read this as an IPv4 address, but it is not a valid one"
        )
    return name


# ---------------------------------------------------------------------------------------------
# Classification: the address classes the proxy refuses to dial unless explicitly allowed.
# Order matters: the first matching row wins, so specific rows come before their supernets.
# ---------------------------------------------------------------------------------------------

ADDRESS_CLASSES: tuple[tuple[str, str], ...] = (
    # Cloud metadata endpoints: credentials for the machine's cloud role live behind these.
    ("169.254.169.254/32", "metadata"),  # AWS, GCP, Azure, OpenStack, DigitalOcean IMDS
    ("169.254.170.2/32", "metadata"),  # AWS ECS task credentials
    ("169.254.170.23/32", "metadata"),  # AWS EKS pod identity
    ("100.100.100.200/32", "metadata"),  # Alibaba Cloud
    ("192.0.0.192/32", "metadata"),  # Oracle Cloud
    ("168.63.129.16/32", "metadata"),  # Azure WireServer (public space, host-only service)
    ("fd00:ec2::254/128", "metadata"),  # AWS IMDS over IPv6
    ("fd00:ec2::23/128", "metadata"),  # AWS EKS pod identity over IPv6
    ("127.0.0.0/8", "loopback"),
    ("::1/128", "loopback"),
    ("0.0.0.0/8", "unspecified/this-network"),
    ("::/128", "unspecified/this-network"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("fc00::/7", "private"),  # unique local addresses
    ("169.254.0.0/16", "link-local"),
    ("fe80::/10", "link-local"),
    ("100.64.0.0/10", "cgnat"),
    ("224.0.0.0/4", "multicast"),
    ("ff00::/8", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("240.0.0.0/4", "reserved"),
    ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
    ("192.88.99.0/24", "reserved"),  # deprecated 6to4 relay anycast
    ("198.18.0.0/15", "reserved"),  # benchmarking
    ("192.0.2.0/24", "reserved"),  # documentation (TEST-NET-1..3)
    ("198.51.100.0/24", "reserved"),
    ("203.0.113.0/24", "reserved"),
    ("2001:db8::/32", "reserved"),  # documentation
    ("3fff::/20", "reserved"),  # documentation (RFC 9637)
    ("2001:2::/48", "reserved"),  # benchmarking
    ("100::/64", "reserved"),  # discard-only
    ("fec0::/10", "reserved"),  # deprecated site-local
)

_compiled_classes: tuple[tuple[IPNetwork, str], ...] | None = None


def _classes() -> tuple[tuple[IPNetwork, str], ...]:
    global _compiled_classes
    if _compiled_classes is None:
        _compiled_classes = tuple((ip_network(net), name) for net, name in ADDRESS_CLASSES)
    return _compiled_classes


_NAT64 = IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = IPv6Network("64:ff9b:1::/48")
_COMPATIBLE = IPv6Network("::/96")
_SIXTOFOUR = IPv6Network("2002::/16")
_TEREDO = IPv6Network("2001::/32")


def embedded_ipv4(ip: IPAddress) -> tuple[IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address stands for (mapped, compatible, 6to4, NAT64, Teredo).

    Traffic to such an address ends up at the IPv4 host inside, so it must be judged by it.
    The NAT64 local-use prefix lets the operator pick where the IPv4 address sits (RFC 6052),
    so every position that is possible for this address is returned: it passes only if all are
    public.
    """
    if ip.version == 4:
        return ()
    if ip.ipv4_mapped:
        return (ip.ipv4_mapped,)
    packed = ip.packed
    if ip in _NAT64:
        return (IPv4Address(packed[12:]),)
    if ip in _NAT64_LOCAL:
        # The RFC 6052 layouts for a /48, /56 and /64 prefix; one is possible only if the "u"
        # octet and the bits after the IPv4 address are zero. The /96 layout is always possible.
        layouts = (
            (packed[6:8] + packed[9:11], packed[11:]),
            (packed[7:8] + packed[9:12], packed[12:]),
            (packed[9:13], packed[13:]),
        )
        found = [IPv4Address(v4) for v4, rest in layouts if packed[8] == 0 and not any(rest)]
        return (*found, IPv4Address(packed[12:]))
    if ip in _SIXTOFOUR:
        return (ip.sixtofour,)
    if ip in _TEREDO:
        return (ip.teredo[1],)  # the client address: the inverted last 32 bits
    if ip in _COMPATIBLE and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d (not :: or ::1)
        return (IPv4Address(packed[12:]),)
    return ()


def _as_ip(ip) -> IPAddress:
    if isinstance(ip, str):
        parsed = parse_ip(ip)
        if parsed is None:
            raise ValueError(f"not an IP address: {ip!r}")
        return parsed
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip


def _lookup(ip: IPAddress) -> str | None:
    for net, name in _classes():
        if net.version == ip.version and ip in net:
            return name
    return None


def classify(ip: IPAddress | str) -> str | None:
    """None for an ordinary public address, else its class ("loopback", "metadata", ...)."""
    ip = _as_ip(ip)
    for inner in embedded_ipv4(ip):
        name = _lookup(inner)
        if name is not None:
            return name
    return _lookup(ip)


def in_networks(ip: IPAddress | str, networks) -> bool:
    """Whether `ip` is in any of `networks`, matching IPv4 against IPv4-mapped IPv6 ranges too."""
    ip = _as_ip(ip)
    mapped = IPv6Address((0xFFFF << 32) | int(ip)) if ip.version == 4 else None
    for net in networks:
        if net.version == ip.version:
            if ip in net:
                return True
        elif mapped is not None and mapped in net:
            return True
    return False
