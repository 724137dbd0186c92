"""Which destinations the sandbox may reach.

Rules of this module: every decision about whether a destination may be reached lives here,
and it does no network I/O (the one file it may read is the public suffix list, once, lazily,
to refuse `*.co.uk`). A destination is judged twice:

1. `Rules.decide(host, port)`: the name as asked for, before any DNS lookup. Deny beats allow;
   names are matched only by name patterns, IP literals only by IP/CIDR patterns.
2. `Rules.check_resolved(host, port, addrs)`: the addresses the proxy is about to dial. An
   allowed name must not lead to loopback, private, metadata, ... addresses (SSRF and DNS
   rebinding) unless that very address is allowed by an IP/CIDR entry, or the name is one
   whose resolution the policy trusts (`trust_resolution`, split-horizon DNS): then its
   private, loopback, link-local, CGNAT and own-host addresses are accepted, for that name
   only; metadata and the other classes never are, and deny entries still apply.

The semantics mirror srt 0.0.83's allowedDomains / deniedDomains / deniedDomainReasons /
deniedResolvedAddresses, so messages use those names.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from types import MappingProxyType

from .._values import frozen
from .addresses import classify, embedded_ipv4, in_networks, normalize_host, parse_ip

ALLOW = "allow"
DENY_RULE = "deny-rule"
NOT_ALLOWED = "not-allowed"
SSRF = "ssrf"
BAD_HOST = "bad-host"

_DIGITS = frozenset("0123456789")
_ANY_PORT = -1  # in lookups: a pattern for any port matches


def _port_ok(pattern_port: int | None, port: int | None) -> bool:
    return pattern_port is None or pattern_port == port or port == _ANY_PORT


@frozen
class Decision:
    allowed: bool
    rule: str  # the pattern (or deniedResolvedAddresses entry) that decided; "" when none
    reason: str  # human- and model-readable
    code: str  # ALLOW, DENY_RULE, NOT_ALLOWED, SSRF or BAD_HOST


@frozen
class Pattern:
    """One compiled allowedDomains / deniedDomains entry."""

    text: str  # as written, for messages, audit and deniedDomainReasons lookups
    kind: str  # "name", "wildcard", "ip", "cidr" or "any" (deny only)
    host: str = ""  # canonical name; for "wildcard" the parent domain without "*."
    network: IPv4Network | IPv6Network | None = None  # for "ip" (a /32 or /128) and "cidr"
    port: int | None = None  # None: every port

    def covers(self, ip, port: int) -> bool:
        """Whether this IP/CIDR pattern covers address `ip` on `port`."""
        return self.network is not None and _port_ok(self.port, port) and in_networks(ip, (self.network,))


# ---------------------------------------------------------------------------------------------
# Pattern grammar
# ---------------------------------------------------------------------------------------------

# An allowed IPv6 range over one of these reaches IPv4 hosts through the embedded address, so
# it must pin the first 8 bits of that IPv4 address, like an allowed IPv4 range (at most /8).
# (6to4, 2002::/16, needs no row: the /32 limit on IPv6 ranges already pins 16 bits.)
_EMBEDDING_RANGES = (
    (IPv6Network("::ffff:0:0/96"), 104),  # IPv4-mapped
    (IPv6Network("::/96"), 104),  # IPv4-compatible
    (IPv6Network("64:ff9b::/96"), 104),  # NAT64
    (IPv6Network("64:ff9b:1::/48"), 104),  # NAT64 local use: the IPv4 may sit anywhere
    (IPv6Network("2001::/32"), 104),  # Teredo client
)
_LOOPBACK = (IPv4Network("127.0.0.0/8"), IPv6Network("::1/128"), IPv6Network("::ffff:127.0.0.0/104"))
# Address classes a trusted name (trust_resolution) may resolve to: what split-horizon DNS, a
# gateway or an internal mirror hands out. Metadata, unspecified, multicast, broadcast and
# reserved addresses are never a mirror: a name resolving there is refused all the same.
TRUSTABLE = frozenset({"private", "loopback", "link-local", "cgnat", "this host's own"})
TRUST_HINT = "if your DNS is split-horizon, trust it by name"


def parse_pattern(text: str, *, denied: bool) -> Pattern:
    """Compile one entry; ValueError says what is wrong with it."""
    if not isinstance(text, str):
        raise ValueError(f"expected a string, got {type(text).__name__}")
    if not text:
        raise ValueError("empty pattern")
    if any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError("contains whitespace or control characters")
    if "://" in text:
        raise ValueError("a pattern is a host, not a URL: drop the scheme ('example.com', not 'https://example.com')")
    host, port = _split_port(text)
    if not host:
        raise ValueError("empty host")
    if host == "*":
        if not denied:
            raise ValueError("overly broad: '*' would allow every host")
        return Pattern(text, "any", port=port)
    if "*" in host:
        return _wildcard(text, host, port, denied)
    if "/" in host:
        network = parse_network(host)
        if not denied:
            _check_breadth(network)
        return Pattern(text, "cidr", network=network, port=port)
    ip = parse_ip(host)
    if ip is None:
        try:
            name = normalize_host(host)
        except ValueError as exc:
            raise ValueError(f"invalid host name: {exc}") from None
        ip = parse_ip(name)  # IDNA can turn full-width digits into an address
        if ip is None:
            if "." not in name and name != "localhost":
                raise ValueError("a name needs a dot; only 'localhost' may go without")
            return Pattern(text, "name", host=name, port=port)
    network = IPv4Network(ip) if ip.version == 4 else IPv6Network(ip)
    return Pattern(text, "ip", host=str(ip), network=network, port=port)


def _split_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        close = text.find("]")
        if close == -1:
            raise ValueError("'[' without a closing ']'")
        inside, rest = text[1:close], text[close + 1 :]
        if ":" not in inside:
            raise ValueError("brackets may only hold an IPv6 address or range")
        if rest and not rest.startswith(":"):
            raise ValueError(f"unexpected {rest!r} after ']'; expected nothing or ':port'")
        return inside, _parse_port(rest[1:]) if rest else None
    if text.count(":") >= 2:
        return text, None  # unbracketed IPv6 never carries a port: `::1:443` is an address
    host, colon, port = text.partition(":")
    return host, _parse_port(port) if colon else None


def _parse_port(text: str) -> int:
    if "/" in text:
        raise ValueError("paths are not allowed: a pattern is a host with an optional ':port'")
    if not 1 <= len(text) <= 5 or not set(text) <= _DIGITS or text[0] == "0" or int(text) > 65535:
        raise ValueError(f"invalid port {text!r}: expected a number from 1 to 65535")
    return int(text)


def _wildcard(text: str, host: str, port: int | None, denied: bool) -> Pattern:
    if not host.startswith("*."):
        raise ValueError("'*' is only allowed as a whole leading label, as in '*.example.com'")
    parent = host[2:]
    if "*" in parent:
        raise ValueError("only one leading '*.' is allowed, as in '*.example.com'")
    if "/" in parent or parse_ip(parent) is not None:
        raise ValueError("a wildcard applies to names, not to IP addresses (use a CIDR range)")
    try:
        parent = normalize_host(parent)
    except ValueError as exc:
        raise ValueError(f"invalid domain after '*.': {exc}") from None
    if parse_ip(parent) is not None:
        raise ValueError("a wildcard applies to names, not to IP addresses (use a CIDR range)")
    if not denied:
        _check_suffix(parent)
    return Pattern(text, "wildcard", host=parent, port=port)


def _check_suffix(parent: str) -> None:
    """Refuse to allow `*.<parent>` when the names under `parent` belong to unrelated owners."""
    if "." not in parent:
        raise ValueError(f"overly broad: '*.{parent}' would allow every name in a top-level domain")
    if is_public_suffix(parent):
        what = f"{parent!r} is a public suffix"
    elif _has_public_children(parent):
        what = f"the names under {parent!r} are public suffixes"
    else:
        return
    raise ValueError(
        f"overly broad: {what}, so '*.{parent}' would allow sites of unrelated owners; "
        f"list the names you need ('name.{parent}', '*.name.{parent}')"
    )


def parse_network(text: str) -> IPv4Network | IPv6Network:
    """An IP address or CIDR range (`10.0.0.0/8`, `fd00::/8`); host bits must be zero."""
    address, slash, bits = text.partition("/")
    if ":" in address:
        try:  # kept as IPv6: `::ffff:10.0.0.0/104` is a range of mapped addresses
            ip = IPv6Address(address)
        except ValueError:
            ip = None
    else:
        ip = parse_ip(address)
    if ip is None:
        if slash:
            raise ValueError("paths are not allowed: a '/' may only follow an IP address, as in '10.0.0.0/8'")
        raise ValueError("expected an IP address or CIDR range, e.g. '10.0.0.0/8' or 'fd00::/8'")
    if not slash:
        ip = parse_ip(str(ip))  # a single mapped address is the IPv4 address
        return IPv4Network(ip) if ip.version == 4 else IPv6Network(ip)
    cls = IPv4Network if ip.version == 4 else IPv6Network
    if not 1 <= len(bits) <= 3 or not set(bits) <= _DIGITS or int(bits) > ip.max_prefixlen:
        raise ValueError(f"invalid prefix length {bits!r}: expected 0 to {ip.max_prefixlen}")
    try:
        return cls((ip, int(bits)))
    except ValueError:
        raise ValueError(f"host bits set in {text}; did you mean {cls((ip, int(bits)), strict=False)}?") from None


def _check_breadth(network: IPv4Network | IPv6Network) -> None:
    widest = 8 if network.version == 4 else 32
    if network.prefixlen < widest:
        raise ValueError(
            f"overly broad: the widest range that may be allowed is /8 for IPv4 and /32 for IPv6 "
            f"({network} is /{network.prefixlen})"
        )
    if network.version == 6:
        for embedding, narrowest in _EMBEDDING_RANGES:
            if network.overlaps(embedding) and network.prefixlen < narrowest:
                raise ValueError(
                    f"overly broad: {network} overlaps {embedding}, whose addresses stand for IPv4 "
                    f"addresses; it must be /{narrowest} or narrower"
                )


# ---------------------------------------------------------------------------------------------
# Public suffixes (`*.co.uk` is as broad as `*.com`)
# ---------------------------------------------------------------------------------------------

PUBLIC_SUFFIX_LIST = "/usr/share/publicsuffix/public_suffix_list.dat"  # Debian package `publicsuffix`
FALLBACK_PUBLIC_SUFFIXES = frozenset({
    "co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "com.au", "net.au", "org.au", "co.jp",
    "ne.jp", "or.jp", "co.nz", "co.za", "co.in", "co.kr", "com.br", "com.cn", "com.mx", "com.tw",
    "com.sg", "com.hk", "com.tr", "github.io", "gitlab.io", "herokuapp.com", "appspot.com",
    "cloudfront.net", "azurewebsites.net", "blogspot.com", "netlify.app", "vercel.app",
    "pages.dev", "workers.dev", "web.app", "firebaseapp.com", "s3.amazonaws.com",
    "elasticbeanstalk.com", "readthedocs.io", "ngrok.io", "onrender.com", "fly.dev",
})

_suffixes: tuple[frozenset, frozenset, frozenset] | None = None  # (exact, "*." parents, "!" exceptions)


def _parse_suffix_list(lines) -> tuple[frozenset, frozenset, frozenset]:
    exact, wild, exceptions = set(), set(), set()
    for line in lines:
        words = line.split(None, 1)  # a rule ends at the first whitespace
        if not words or words[0].startswith("//"):
            continue
        rule, target = words[0], exact
        if rule.startswith("!"):
            rule, target = rule[1:], exceptions
        elif rule.startswith("*."):
            rule, target = rule[2:], wild
        target.add(rule.lower())  # Unicode rules stay Unicode: see _forms()
    return frozenset(exact), frozenset(wild), frozenset(exceptions)


def _public_suffixes() -> tuple[frozenset, frozenset, frozenset]:
    global _suffixes
    if _suffixes is None:
        try:
            with open(PUBLIC_SUFFIX_LIST, encoding="utf-8") as lines:
                _suffixes = _parse_suffix_list(lines)
        except (OSError, UnicodeError):
            _suffixes = (FALLBACK_PUBLIC_SUFFIXES, frozenset(), frozenset())
    return _suffixes


def _forms(name: str) -> tuple[str, ...]:
    """`name` and, for punycode, its Unicode spelling: the list has ~500 Unicode rules, and
    decoding the one name asked about is far cheaper than IDNA-encoding all of them."""
    if "xn--" not in name:
        return (name,)
    try:
        return (name, name.encode("ascii").decode("idna"))
    except UnicodeError:
        return (name,)


def is_public_suffix(name: str) -> bool:
    """Whether anyone may register names directly under canonical `name` (`com`, `co.uk`, `github.io`)."""
    if "." not in name:
        return True  # the list's implicit "*" rule: every top-level domain
    exact, wild, exceptions = _public_suffixes()
    for form in _forms(name):
        if form in exceptions:
            return False
        if form in exact or form.partition(".")[2] in wild:
            return True
    return False


def _has_public_children(name: str) -> bool:
    """Whether the list says every name directly under `name` is a public suffix (`*.kawasaki.jp`)."""
    wild = _public_suffixes()[1]
    return any(form in wild for form in _forms(name))


# ---------------------------------------------------------------------------------------------
# The rule set
# ---------------------------------------------------------------------------------------------


class _Index:
    """Patterns by kind: exact names in a dict, wildcards by parent, networks most specific first."""

    __slots__ = ("exact", "wild", "nets", "any")

    def __init__(self, patterns: tuple[Pattern, ...]):
        self.exact: dict[str, list[Pattern]] = {}
        self.wild: dict[str, list[Pattern]] = {}
        nets, self.any = [], tuple(p for p in patterns if p.kind == "any")
        for p in patterns:
            if p.kind == "name":
                self.exact.setdefault(p.host, []).append(p)
            elif p.kind == "wildcard":
                self.wild.setdefault(p.host, []).append(p)
            elif p.network is not None:
                nets.append(p)
        # Most specific first, so the reported entry (and its reason) is the closest one.
        self.nets = tuple(sorted(nets, key=lambda p: p.network.max_prefixlen - p.network.prefixlen))

    def match(self, name: str, ip, port: int | None) -> Pattern | None:
        """The first pattern for `name` (or `ip`); port None: port-less patterns only."""
        if ip is not None:
            hit = self.match_ip(ip, port)
        else:
            hit = _first(self.exact.get(name, ()), port)
            rest = name
            while hit is None and "." in rest:  # a.b.example.com -> b.example.com, example.com, com
                rest = rest.partition(".")[2]
                hit = _first(self.wild.get(rest, ()), port)
        return hit if hit is not None else _first(self.any, port)

    def match_ip(self, ip, port: int | None) -> Pattern | None:
        for p in self.nets:
            if p.covers(ip, port):
                return p
        return None


def _first(patterns, port: int | None) -> Pattern | None:
    for p in patterns:
        if _port_ok(p.port, port):
            return p
    return None


# The keys refusals name, in the words of the policy's input: srt JSON or corral's own.
KEYS = {"srt": ("allowedDomains", "deniedDomains"), "native": ("allowed_domains", "denied_domains")}


def _as_list(texts) -> tuple:
    return (texts,) if isinstance(texts, str) else tuple(texts)


def _compile(texts, *, denied: bool) -> tuple[Pattern, ...]:
    key = "deniedDomains" if denied else "allowedDomains"
    patterns = []
    for text in texts:
        try:
            patterns.append(parse_pattern(text, denied=denied))
        except ValueError as exc:
            raise ValueError(f"{key} entry {text!r}: {exc}") from None
    return tuple(patterns)


def _compile_trusted(entries) -> tuple[Pattern, ...]:
    patterns = []
    for text in entries:
        try:
            pattern = parse_pattern(text, denied=False)
            if pattern.kind not in ("name", "wildcard"):
                raise ValueError("trust_resolution lists names ('pypi.org', '*.corp.example'); "
                                 "allow an address itself in allowed_domains")
            if pattern.port is not None:
                raise ValueError("trust_resolution lists names without a port")
        except ValueError as exc:
            raise ValueError(f"trust_resolution entry {text!r}: {exc}") from None
        patterns.append(pattern)
    return tuple(patterns)


def _compile_addresses(entries) -> tuple[tuple[str, IPv4Network | IPv6Network], ...]:
    nets = []
    for entry in entries:
        try:
            if not isinstance(entry, str):
                raise ValueError(f"expected a string, got {type(entry).__name__}")
            nets.append((entry, parse_network(entry)))
        except ValueError as exc:
            raise ValueError(f"deniedResolvedAddresses entry {entry!r}: {exc}") from None
    return tuple(nets)


def _normalized(host: str):
    """The canonical host, or the refusal of an invalid one."""
    try:
        return normalize_host(host)
    except ValueError as exc:
        return Decision(False, "", f"invalid host {host!r}: {exc}", BAD_HOST)


def _where(name: str, ip, port) -> str:
    return f"[{name}]:{port}" if ip is not None and ip.version == 6 else f"{name}:{port}"


def _to_ip(value):
    if isinstance(value, (IPv4Address, IPv6Address)):
        return (value.ipv4_mapped or value) if value.version == 6 else value
    return parse_ip(value) if isinstance(value, str) else None


class Rules:
    """A compiled, immutable rule set; build a changed one with `with_allowed` / `with_denied`."""

    __slots__ = ("allowed", "denied", "reasons", "denied_addresses", "trusted", "words", "_allow", "_deny", "_trust")

    def __init__(self, allowed=(), denied=(), reasons=None, denied_addresses=(), trusted=(), words="srt"):
        self._init(
            _compile(_as_list(allowed), denied=False),
            _compile(_as_list(denied), denied=True),
            reasons,
            _compile_addresses(_as_list(denied_addresses)),
            _compile_trusted(_as_list(trusted)),
            words,
        )

    @classmethod
    def compile(cls, allowed=(), denied=(), reasons=None, denied_addresses=(), trusted=()) -> Rules:
        return cls(allowed, denied, reasons, denied_addresses, trusted)

    def _init(self, allowed, denied, reasons, denied_addresses, trusted=(), words="srt"):
        reasons = dict(reasons or {})
        denied_texts = {p.text for p in denied}
        for key, why in reasons.items():
            if key not in denied_texts:
                raise ValueError(
                    f"deniedDomainReasons key {key!r}: not an entry of deniedDomains (keys must match an entry exactly)"
                )
            if not isinstance(why, str) or not why:
                raise ValueError(f"deniedDomainReasons[{key!r}]: expected a non-empty string")
        put = object.__setattr__
        put(self, "allowed", allowed)
        put(self, "denied", denied)
        put(self, "reasons", MappingProxyType(reasons))
        put(self, "denied_addresses", denied_addresses)  # (text, network) pairs
        put(self, "trusted", trusted)  # trust_resolution patterns
        put(self, "words", words)  # the key names refusals use: "srt" (allowedDomains) or "native"
        put(self, "_allow", _Index(allowed))
        put(self, "_deny", _Index(denied))
        put(self, "_trust", _Index(trusted))

    def __setattr__(self, name, value):
        raise AttributeError("Rules is immutable; use with_allowed() / with_denied()")

    def __repr__(self):
        return f"Rules(allowed={[p.text for p in self.allowed]}, denied={[p.text for p in self.denied]})"

    def _changed(self, allowed, denied) -> Rules:
        new = object.__new__(Rules)
        new._init(allowed, denied, self.reasons, self.denied_addresses, self.trusted, self.words)
        return new

    def with_allowed(self, texts) -> Rules:
        known = {p.text for p in self.allowed}
        extra = _compile([t for t in _as_list(texts) if t not in known], denied=False)
        return self._changed(self.allowed + extra, self.denied)

    def with_denied(self, texts) -> Rules:
        known = {p.text for p in self.denied}
        extra = _compile([t for t in _as_list(texts) if t not in known], denied=True)
        return self._changed(self.allowed, self.denied + extra)

    def loopback_allowances(self) -> list[Pattern]:
        """Allowed IP/CIDR entries that reach loopback (those addresses must not be in NO_PROXY)."""
        return [
            p for p in self.allowed
            if p.network is not None
            and any(p.network.version == n.version and p.network.overlaps(n) for n in _LOOPBACK)
        ]

    def _deny_reason(self, hit: Pattern) -> str:
        return self.reasons.get(hit.text) or f"denied by {KEYS[self.words][1]} entry {hit.text!r}"

    def decide(self, host: str, port: int) -> Decision:
        """The decision on a name or IP literal, before any DNS lookup."""
        name = _normalized(host)
        if isinstance(name, Decision):
            return name
        if type(port) is not int or not 1 <= port <= 65535:
            return Decision(False, "", f"invalid port {port!r}", BAD_HOST)
        ip = parse_ip(name)
        return self._judge(name, ip, port, port)

    def decide_name(self, host: str) -> Decision:
        """Whether `host` may be reached on some port (for DNS answers, before any port is known).

        A deny entry with a port does not deny the name on every port, so it does not count;
        an allow entry counts whatever its port. `decide` still judges each connection.
        """
        name = _normalized(host)
        if isinstance(name, Decision):
            return name
        return self._judge(name, parse_ip(name), None, _ANY_PORT)

    def _judge(self, name: str, ip, deny_port, allow_port) -> Decision:
        """Deny beats allow. A refusal names the port only when one was asked about."""
        hit = self._deny.match(name, ip, deny_port)
        if hit is not None:
            return Decision(False, hit.text, self._deny_reason(hit), DENY_RULE)
        hit = self._allow.match(name, ip, allow_port)
        if hit is not None:
            return Decision(True, hit.text, f"allowed by {KEYS[self.words][0]} entry {hit.text!r}", ALLOW)
        where = _where(name, ip, deny_port) if deny_port is not None else name
        return Decision(False, "", f"{where} is not in {KEYS[self.words][0]}", NOT_ALLOWED)

    def check_resolved(self, host: str, port: int, addrs, host_addrs=frozenset()) -> Decision:
        """The decision on dialing `addrs`, the addresses `host` resolved to (or the literal itself).

        `host_addrs` are this machine's own interface addresses. The name-level decision is
        repeated first, so this alone is a complete check.
        """
        first = self.decide(host, port)
        if not first.allowed:
            return first
        name = normalize_host(host)
        if not addrs:
            return Decision(False, "", f"{name} did not resolve to any address", BAD_HOST)
        own = {ip for ip in map(_to_ip, host_addrs) if ip is not None}
        # decide() allowed it, and only an explicit `localhost` entry matches the name localhost.
        loopback_ok = name == "localhost"
        literal = parse_ip(name) is not None
        trusted = not literal and self._trust.match(name, None, None) is not None
        for value in addrs:
            ip = _to_ip(value)
            if ip is None:
                return Decision(False, "", f"{name} resolved to {value!r}, which is not an IP address", SSRF)
            refusal = self._refuse_address(ip, port, own, loopback_ok, None if literal else name, trusted)
            if refusal is not None:
                return refusal
        return first

    def trusts(self, host: str) -> bool:
        """Whether the policy trusts the local resolution of name `host` (trust_resolution)."""
        name = _normalized(host)
        return not isinstance(name, Decision) and self._trust.match(name, None, None) is not None

    def _refuse_address(self, ip, port: int, own: set, loopback_ok: bool, name: str | None = None,
                        trusted: bool = False) -> Decision | None:
        forms = (ip, *embedded_ipv4(ip))  # deny on any form that reaches a denied host
        for form in forms:
            for text, network in self.denied_addresses:
                if in_networks(form, (network,)):
                    why = f"resolves to denied address {ip} (deniedResolvedAddresses entry {text!r})"
                    return Decision(False, text, why, SSRF)
            hit = self._deny.match_ip(form, port)
            if hit is not None:
                why = self.reasons.get(hit.text) or f"resolves to {ip}, denied by deniedDomains entry {hit.text!r}"
                return Decision(False, hit.text, why, SSRF)
        category = classify(ip)
        if category is None and any(form in own for form in forms):
            category = "this host's own"
        if category is None or (loopback_ok and category == "loopback"):
            return None
        if self._allow.match_ip(ip, port) is not None:
            return None  # this very address is explicitly allowed (allow only on the exact form)
        if trusted and category in TRUSTABLE:
            return None  # split-horizon DNS the policy trusts for this name
        return Decision(False, "", resolved_refusal(name, ip, category), SSRF)


def resolved_refusal(name: str | None, ip, category: str) -> str:
    """The reason a name's resolution (or an address) is refused; for a name, how to trust it."""
    if name is None:
        return f"resolves to {category} address {ip}"
    what = category if category == "this host's own" else f"{'an' if category[0] in 'aeiou' else 'a'} {category}"
    text = f"{name} resolved to {ip} ({what} address): refused"
    if category in TRUSTABLE:
        return f'{text}; {TRUST_HINT}: trust_resolution = ["{name}"]'
    if category == "metadata":
        return f"{text}; a name never leads to cloud metadata (allow the address itself if you mean it)"
    return text
