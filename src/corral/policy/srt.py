"""Load an Anthropic sandbox-runtime (`srt` 0.0.83) JSON settings file into a corral Policy.

corral accepts srt's settings file as it is. Loading happens in three steps:

1. Validation. The whole of srt's zod schema (`dist/sandbox/sandbox-config.js`) is copied
   below as data in `_SCHEMA` and checked by one walker, `_walk`. That covers every key, its
   type, enums, min/max, `.strict()`, the domain-pattern and address rules, absolute binary
   paths, `mandatoryDenySearchDepth` 1..10, and the required `network` and `filesystem`.
   srt's cross-field `superRefine` rules come after that, in `_CROSS_FIELD_RULES`.
   corral is stricter than srt in one deliberate way. zod's non-strict objects silently
   drop keys they do not know, so a typo such as `denyRaed` loses a deny without a word.
   corral refuses every unknown key instead, and suggests the closest known one.
   Like zod's `.optional()`, `null` is not "absent": `"httpProxyPort": null` is a type
   error in srt, so it is one here too.
2. Refusal. A valid setting that corral cannot honour raises `UnsupportedFeature` (see
   `_REFUSED` and `_MASK_REFUSED`): an external proxy (`httpProxyPort`, `socksProxyPort`,
   `mitmProxy`), `allowPlaintextHeaderSet`, `ambiguousRequestTarget`, AWS re-signing
   (`awsPairs`, `sigv4`) and, on masked entries, `decode`, `maskClaims` and
   `maskDuplicates: true`. Ignoring them would silently give the sandbox more, or other,
   rights than the file asks for.
3. Mapping into `Policy`. Settings that do not apply on Linux, or that corral already
   covers more strictly, are accepted and listed in `ACCEPTED_WITHOUT_EFFECT` with the
   reason. The credential boundary maps as follows:
   - `network.tlsTerminate` -> `TlsPolicy(terminate=("*",))`: every CONNECT carrying TLS is
     terminated except `excludeDomains`; the CA is `caCertPath`/`caKeyPath` when given, else
     ephemeral (a new one per run, as srt does).
   - `requireHostMatch`, `refuseOpaqueTunnels`, `stripResponseHeaders` -> the NetworkPolicy
     fields of those names; `requireHostMatch` keeps srt's default (false), not corral's.
   - `credentials.envVars[]` / `files[]` with `mode: "mask"` -> `CredentialSpec`s bound to
     `injectHosts` (default: the hosts of `network.allowedDomains`, ports dropped, as srt
     does). One deliberate difference: an absent `onExtractNoMatch` means "deny" (withhold
     the credential), where srt's "warn" passes the real value into the sandbox.

Credential locations: `FilesystemPolicy.deny_credentials` stays True. corral always denies
reads of well-known credential locations (~/.ssh, ~/.aws, ...) on top of what the file lists.
srt has no such default, so the result is stricter, never looser.

Imports: only `json` at module level. `difflib` (for suggestions), `ipaddress` (for IP
literals), `re` and the proxy's host-pattern parser (for masked credentials) are imported on
the paths that need them. Validation uses no regular expressions: srt's patterns are short
enough to check by hand, and `extract` is JavaScript regex syntax, which Python's `re` would
misjudge. A masked entry's `extract` is matched by corral with Python's `re`, so it must also
compile there (checked when mapping; the rare JavaScript-only spelling is refused).
"""

from __future__ import annotations


from ..errors import PolicyError, UnsupportedFeature
from . import paths
from .model import (
    CredentialSpec,
    FilesystemPolicy,
    LaunchContext,
    NetworkPolicy,
    ParentProxy,
    Policy,
    ProcessPolicy,
    TlsPolicy,
)

__all__ = ["ACCEPTED_WITHOUT_EFFECT", "convert", "load_srt_settings", "validate"]


# ---------------------------------------------------------------------------------------------
# Accepted settings that change nothing in corral (rendered into the docs).
# ---------------------------------------------------------------------------------------------

ACCEPTED_WITHOUT_EFFECT: dict[str, str] = {
    "enableWeakerNetworkIsolation": "macOS only (lets the sandbox reach com.apple.trustd.agent)",
    "allowAppleEvents": "macOS only (Apple Events / Launch Services)",
    "allowPty": "macOS only (srt ignores it on Linux)",
    "mandatoryDenySearchDepth": "corral protects dangerous files (.bashrc, .git/hooks, ...) at any "
    "depth, which is stricter than any depth srt allows (1..10)",
    "ripgrep": "srt uses ripgrep to find dangerous files; corral scans the tree itself",
    "seccomp": "corral installs its own seccomp filter and does not use srt's apply-seccomp binary",
    "socatPath": "corral runs no socat bridge: its proxy listens inside the sandbox's network "
    "namespace",
    "javaAgentJarPath": "corral sets JAVA_TOOL_OPTIONS proxy properties, and transparent mode "
    "catches JVMs that ignore them",
    "windows": "Windows only",
    "ignoreViolations": "only filters which violations srt reports; it never relaxes enforcement",
    "network.allowLocalBinding": "the Linux sandbox has its own loopback, so binding always works "
    "and never reaches the host's localhost (srt ignores it on Linux too)",
    "network.allowMachLookup": "macOS only (XPC/Mach service names)",
    "credentials.*[].extract/onExtractNoMatch/decode/maskClaims/maskDuplicates/injectHosts": "on a "
    '"deny" entry srt accepts and ignores these; so does corral',
}


# ---------------------------------------------------------------------------------------------
# Schema nodes: plain data. `_walk` is the one validator that interprets them.
# ---------------------------------------------------------------------------------------------


class _Node:
    expect = "a value"


class Str(_Node):
    """z.string(), with .min()/.max() (counted in UTF-16 units, like JavaScript) and a refine."""

    def __init__(self, min_len=0, max_len=None, check=None, expect="a string"):
        self.min_len, self.max_len, self.check = min_len, max_len, check
        self.expect = "a non-empty string" if min_len and expect == "a string" else expect


class Int(_Node):
    """z.number().int() with optional .min()/.max()."""

    def __init__(self, lo=None, hi=None):
        self.lo, self.hi = lo, hi
        if lo is not None and hi is not None:
            self.expect = f"an integer from {lo} to {hi}"
        elif lo is not None or hi is not None:
            self.expect = f"an integer >= {lo}" if lo is not None else f"an integer <= {hi}"
        else:
            self.expect = "an integer"


class Bool(_Node):
    expect = "true or false"


class Enum(_Node):
    def __init__(self, *values):
        self.values = values

    @property
    def expect(self) -> str:  # only for messages: `json` is imported when one is written
        from json import dumps

        return "one of " + ", ".join(dumps(v) for v in self.values)


class Array(_Node):
    def __init__(self, item, min_len=0, expect="an array"):
        self.item, self.min_len, self.expect = item, min_len, expect


class Tuple(_Node):
    """z.tuple([...]): an array of exactly len(items) elements, then an optional refine."""

    def __init__(self, items, check=None, expect="an array"):
        self.items, self.check, self.expect = items, check, expect


class Record(_Node):
    """z.record(z.string(), value): an object with arbitrary keys."""

    def __init__(self, value, expect="an object"):
        self.value, self.expect = value, expect


class Obj(_Node):
    """z.object(fields). `srt_strict` records zod's .strict(); corral is strict everywhere."""

    def __init__(self, fields, required=(), srt_strict=False, check=None, expect="an object"):
        self.fields, self.required, self.srt_strict = fields, frozenset(required), srt_strict
        self.check, self.expect = check, expect


class PathEntry(_Node):
    """A filesystem entry: a non-empty path, or the strict object {"path": ..., "literal": true}."""

    expect = 'a path, or {"path": "<path>", "literal": true}'


class Never(_Node):
    """A key srt knows but that no JSON value can satisfy (a library-only callback)."""

    def __init__(self, why):
        self.why = why


class _Invalid(Exception):
    """Raised by the validator; `convert` turns it into PolicyError with the file name."""

    def __init__(self, key, value, why):
        super().__init__(key, value, why)
        self.key, self.value, self.why = key, value, why


# ---------------------------------------------------------------------------------------------
# The walker.
# ---------------------------------------------------------------------------------------------


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _child(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _record_child(key: str, name: str) -> str:
    # Record keys are free text ("github.com:22"); quote them so the path stays readable.
    from json import dumps

    return f"{key}[{dumps(name)}]"


def _utf16_len(text: str) -> int:
    # zod's .min/.max count JavaScript string length, which is UTF-16 code units.
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _is_int(value) -> bool:
    # JSON has one number type; JavaScript's Number.isInteger(443.0) is true. bool is not a number.
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and value.is_integer()


def _walk(node: _Node, value, key: str) -> None:
    def bad(why=None):
        raise _Invalid(key, value, why or f"expected {node.expect}, got {_json_type(value)}")

    if isinstance(node, Str):
        if not isinstance(value, str):
            bad()
        if _utf16_len(value) < node.min_len:
            bad("must not be empty")
        if node.max_len is not None and _utf16_len(value) > node.max_len:
            bad(f"must be at most {node.max_len} characters")
        problem = node.check(value) if node.check else None
        if problem:
            bad(problem)
    elif isinstance(node, Int):
        if not _is_int(value):
            bad()
        if (node.lo is not None and value < node.lo) or (node.hi is not None and value > node.hi):
            bad(f"out of range: expected {node.expect}")
    elif isinstance(node, Bool):
        if not isinstance(value, bool):
            bad()
    elif isinstance(node, Enum):
        if not isinstance(value, str) or value not in node.values:
            bad(f"expected {node.expect}")
    elif isinstance(node, Array):
        if not isinstance(value, list):
            bad()
        if len(value) < node.min_len:
            bad(f"must list at least {node.min_len} entr{'y' if node.min_len == 1 else 'ies'}")
        for i, item in enumerate(value):
            _walk(node.item, item, f"{key}[{i}]")
    elif isinstance(node, Tuple):
        if not isinstance(value, list) or len(value) != len(node.items):
            bad(f"expected {node.expect}")
        for i, (item_node, item) in enumerate(zip(node.items, value)):
            _walk(item_node, item, f"{key}[{i}]")
        problem = node.check(value) if node.check else None
        if problem:
            bad(problem)
    elif isinstance(node, Record):
        if not isinstance(value, dict):
            bad()
        for name, item in value.items():
            _walk(node.value, item, _record_child(key, name))
    elif isinstance(node, Obj):
        _walk_object(node, value, key)
    elif isinstance(node, PathEntry):
        _walk_path_entry(value, key)
    elif isinstance(node, Never):
        bad(node.why)
    else:  # pragma: no cover - a schema construction error
        raise TypeError(f"unknown schema node {node!r}")


def _walk_object(node: Obj, value, key: str) -> None:
    if not isinstance(value, dict):
        raise _Invalid(key, value, f"expected {node.expect}, got {_json_type(value)}")
    # Unknown keys first: a typo ("denyRaed") is the likely cause of a "missing" key after it.
    for name, item in value.items():
        if name not in node.fields:
            raise _Invalid(_child(key, name), item, _unknown_key_why(name, node, key))
    for name in node.fields:
        if name in node.required and name not in value:
            expect = node.fields[name].expect
            raise _Invalid(_child(key, name), None, f"missing: srt requires this key ({expect})")
    for name, item in value.items():
        _walk(node.fields[name], item, _child(key, name))
    problem = node.check(value) if node.check else None
    if problem:
        raise _Invalid(key, value, problem)


def _unknown_key_why(name: str, node: Obj, key: str) -> str:
    import difflib  # only on this error path

    where = f"in {key}" if key else "at the top level"
    close = difflib.get_close_matches(name, list(node.fields), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(node.fields)}"
    # srt's non-strict objects would drop the key silently; say why corral refuses instead.
    strictness = "" if node.srt_strict else " (srt would silently ignore it; corral refuses it)"
    if key == "git":  # srt's git block only has safeDirectories
        hint += "; a git ref policy (repositories, pushable refs) is [git] in a native TOML policy (docs/policy.md)"
    return f"unknown key {where}{strictness}{hint}"


def _walk_path_entry(value, key: str) -> None:
    if isinstance(value, str):
        if not value:
            raise _Invalid(key, value, "path must not be empty")
        return
    if not isinstance(value, dict):
        raise _Invalid(key, value, f"expected {PathEntry.expect}, got {_json_type(value)}")
    # The object form is zod .strict(): only "path" and "literal", both required.
    for name, item in value.items():
        if name not in ("path", "literal"):
            raise _Invalid(_child(key, name), item, f'unknown key; expected {PathEntry.expect}')
    if "path" not in value:
        raise _Invalid(_child(key, "path"), None, f"missing; expected {PathEntry.expect}")
    if value.get("literal") is not True:
        raise _Invalid(
            _child(key, "literal"),
            value.get("literal"),
            'must be true: the object form marks a path that is never read as a glob '
            f"(expected {PathEntry.expect})",
        )
    if not isinstance(value["path"], str) or not value["path"]:
        raise _Invalid(_child(key, "path"), value["path"], "expected a non-empty path string")


# ---------------------------------------------------------------------------------------------
# Refinements copied from srt (domain-pattern.js, address.js, sandbox-config.js), regex-free.
# ---------------------------------------------------------------------------------------------

_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_ALPHA = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ZONE_CHARS = _ALPHA | _DIGITS | frozenset("-.:")  # node's isIPv6 zone id: %[0-9a-zA-Z-.:]+

DOMAIN_PATTERN_MESSAGE = (
    'invalid domain pattern: expected a domain ("example.com"), a wildcard ("*.example.com") or '
    'a bracketed IPv6 literal ("[::1]", "[2001:db8::1]:443"); overly broad patterns like "*.com" '
    'or "*" are not allowed'
)
ALLOWED_ENTRY_MESSAGE = DOMAIN_PATTERN_MESSAGE + '; an optional ":port" suffix (1-65535) is allowed'
DENIED_ENTRY_MESSAGE = (
    ALLOWED_ENTRY_MESSAGE + '; in deniedDomains a bare "*" (deny all) is also accepted, e.g. "*:22"'
)


def _is_ipv4(text: str) -> bool:
    """node's net.isIPv4: strict dotted quad, no leading zeros."""
    import ipaddress

    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _is_ipv6(text: str) -> bool:
    """node's net.isIPv6, zone id included (`fe80::1%eth0`)."""
    import ipaddress

    address, pct, zone = text.partition("%")
    if pct and (not zone or not set(zone) <= _ZONE_CHARS):
        return False
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return True


def _is_ip(text: str) -> int:
    return 4 if _is_ipv4(text) else 6 if _is_ipv6(text) else 0


def _drop_zone(host: str) -> str:
    return host.partition("%")[0]


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _parse_port(suffix: str):
    """`^[1-9][0-9]{0,4}$` and <= 65535, else None."""
    if not 1 <= len(suffix) <= 5 or suffix[0] == "0" or not set(suffix) <= _DIGITS:
        return None
    port = int(suffix)
    return port if port <= 65535 else None


def _whatwg_ipv4(host: str):
    """The WHATWG URL IPv4 parser ("127.1", "0x7f.0.0.1"): dotted quad, or None on failure."""
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if len(parts) > 4:
        return None
    numbers = []
    for part in parts:
        if part[:2] in ("0x", "0X"):
            digits, base = part[2:], 16
        elif len(part) > 1 and part[0] == "0":
            digits, base = part[1:], 8
        else:
            digits, base = part, 10
        if part == "":
            return None
        allowed = _HEX if base == 16 else frozenset("01234567") if base == 8 else _DIGITS
        if not set(digits) <= allowed:
            return None
        numbers.append(int(digits, base) if digits else 0)
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    value = numbers[-1] + sum(n * 256 ** (3 - i) for i, n in enumerate(numbers[:-1]))
    return ".".join(str((value >> shift) & 255) for shift in (24, 16, 8, 0))


def _ends_in_number(host: str) -> bool:
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    last = parts[-1]
    if last and set(last) <= _DIGITS:
        return True
    return last[:2] in ("0x", "0X") and set(last[2:]) <= _HEX


# WHATWG "forbidden domain code points" (a superset of the forbidden host code points).
_FORBIDDEN_HOST = frozenset("\x00\t\n\r #/:<>?@[\\]^|")
_FORBIDDEN_DOMAIN = _FORBIDDEN_HOST | frozenset("%\x7f") | frozenset(chr(c) for c in range(0x20))


def _whatwg_domain(host: str):
    """How a WHATWG URL parser spells a (non-bracketed) special-scheme host, or None if invalid.

    An approximation of the URL standard's host parser (percent-decoding, IDNA, IPv4 forms)
    that is good enough to tell valid from invalid, which is all the schema needs.
    """
    if "%" in host:
        host = _percent_decode(host)
    if not host or any(c in _FORBIDDEN_DOMAIN for c in host):
        return None
    if host.isascii():
        host = host.lower()
    else:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return None
    if _ends_in_number(host):
        return _whatwg_ipv4(host)
    return host


def _percent_decode(text: str) -> str:
    out, i = bytearray(), 0
    raw = text.encode("utf-8")
    while i < len(raw):
        escape = raw[i + 1 : i + 3].decode("latin-1")
        if raw[i] == 0x25 and len(escape) == 2 and set(escape) <= _HEX:
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "replace")


def _canonicalize_host(host: str):
    """srt's canonicalizeHost (parent-proxy.js): the host as `new URL` spells it, or None."""
    import ipaddress

    bare = _strip_brackets(host)
    if _is_ipv6(bare):
        try:
            address = ipaddress.IPv6Address(bare)  # a zone id makes URL parsing fail
        except ValueError:
            return None
        return str(address.ipv4_mapped) if address.ipv4_mapped else address.compressed
    domain = _whatwg_domain(bare)
    return domain[:-1] if domain and domain.endswith(".") else domain


def _split_domain_port(pattern: str):
    """srt's splitDomainPatternPort: (hostPattern, port or None)."""
    if pattern.startswith("["):
        close = pattern.find("]")
        if close == -1:
            return pattern, None
        inner = _drop_zone(pattern[1:close])
        host = _canonicalize_host(inner)
        host = inner if host is None else host
        rest = pattern[close + 1 :]
        if rest == "":
            return host, None
        port = _parse_port(rest[1:] if rest.startswith(":") else "")
        # `[::1]junk` / `[::1]:0` stay whole, so the host check rejects them.
        return (pattern, None) if port is None else (host, port)
    idx = pattern.rfind(":")
    if idx == -1:
        return pattern, None
    if pattern.find(":") != idx:
        # Two or more colons without brackets: an IPv6 literal (or garbage); never split.
        host = _drop_zone(pattern)
        canonical = _canonicalize_host(host)
        return (host if canonical is None else canonical), None
    port = _parse_port(pattern[idx + 1 :])
    return (pattern, None) if port is None else (pattern[:idx], port)


def _is_valid_domain_pattern(val: str) -> bool:
    """srt's isValidDomainPattern, rule for rule (it checks no other characters)."""
    if _is_ip(val) == 6:
        return True
    if "://" in val or "/" in val or ":" in val:
        return False
    if val == "localhost":
        return True
    if val.startswith("*."):
        # "*.com" is too broad: at least two labels after the wildcard.
        domain = val[2:]
        if "." not in domain or domain.startswith(".") or domain.endswith("."):
            return False
        return all(domain.split("."))
    if "*" in val:
        return False
    return "." in val and not val.startswith(".") and not val.endswith(".")


def _has_valid_ipv6_bracketing(val: str) -> bool:
    # Two or more colons means IPv6, which must be bracketed: `2001:db8::1:443` is ambiguous.
    return val.count(":") < 2 or val.startswith("[")


def _check_domain_pattern(val: str):
    return None if _is_valid_domain_pattern(val) else DOMAIN_PATTERN_MESSAGE


def _check_allowed_entry(val: str):
    ok = _has_valid_ipv6_bracketing(val) and _is_valid_domain_pattern(_split_domain_port(val)[0])
    return None if ok else ALLOWED_ENTRY_MESSAGE


def _check_denied_entry(val: str):
    if _has_valid_ipv6_bracketing(val):
        host = _split_domain_port(val)[0]
        if host == "*" or _is_valid_domain_pattern(host):
            return None
    return DENIED_ENTRY_MESSAGE


def _check_address_range(entry: str):
    """srt's parseAddressRange: an IP literal or CIDR (IPv6 unbracketed)."""
    import ipaddress

    why = 'expected an IP address or CIDR range, e.g. "10.0.0.0/8", "192.168.1.10", "fc00::/7"'
    address, slash, prefix_text = entry.partition("/")
    address = _drop_zone(address)
    family = _is_ip(address)
    if not family:
        return why
    max_prefix = 32 if family == 4 else 128
    prefix = max_prefix
    if slash:
        if not 1 <= len(prefix_text) <= 3 or not set(prefix_text) <= _DIGITS:
            return why
        prefix = int(prefix_text)
        if prefix > max_prefix:
            return why
    # An IPv4-mapped range stands for the IPv4 range; it cannot be wider than ::ffff:0:0/96.
    if family == 6 and ipaddress.IPv6Address(address).ipv4_mapped and prefix < 96:
        return why + " (an IPv4-mapped IPv6 range needs a prefix of at least 96)"
    return None


def _check_absolute(val: str):
    # Relative binary paths would be resolved through PATH/cwd: srt refuses them (hijacking).
    return None if val.startswith("/") else "binary path must be absolute"


def _check_env_name(val: str):
    # ^[A-Za-z_][A-Za-z0-9_]*$ : a POSIX name can never be read as a flag by bwrap --unsetenv.
    first = _ALPHA | {"_"}
    if val and val[0] in first and set(val) <= first | _DIGITS:
        return None
    return (
        "environment variable name must start with a letter or underscore and contain only "
        "letters, digits and underscores"
    )


def _check_mach_name(val: str):
    prefix = val[:-1] if val.endswith("*") else val
    return 'wildcards are only allowed as a single trailing "*"' if "*" in prefix else None


def _check_uuid(val: str):
    groups = val.split("-")
    if [len(g) for g in groups] == [8, 4, 4, 4, 12] and all(set(g) <= _HEX for g in groups):
        return None
    return "expected a UUID (8-4-4-4-12 hex digits)"


_SPECIAL_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp", "file"})


def _check_url(val: str):
    """zod's .url(): `new URL(val)` must not throw. A close approximation of WHATWG parsing."""
    why = 'expected an absolute URL, e.g. "http://proxy.example.com:3128"'
    text = val.strip("".join(chr(c) for c in range(0x21))).replace("\t", "").replace("\n", "")
    text = text.replace("\r", "")
    scheme, colon, rest = text.partition(":")
    scheme_chars = _ALPHA | _DIGITS | frozenset("+-.")
    if not colon or not scheme or scheme[0] not in _ALPHA or not set(scheme) <= scheme_chars:
        return why
    scheme = scheme.lower()
    if scheme == "file":
        return None  # file URLs (host usually empty) essentially always parse
    special = scheme in _SPECIAL_SCHEMES
    if special:
        rest = rest.lstrip("/\\")
    elif rest.startswith("//"):
        rest = rest[2:]
    else:
        return None  # an opaque URL ("mailto:x"): always parses
    ends = [rest.find(c) for c in ("/", "?", "#") + (("\\",) if special else ())]
    ends = [e for e in ends if e != -1]
    authority = rest[: min(ends)] if ends else rest
    _userinfo, at, authority = authority.rpartition("@")
    if authority.startswith("["):
        close = authority.find("]")
        host, port_text = authority[: close + 1], authority[close + 1 :]
        if close == -1 or (port_text and not port_text.startswith(":")):
            return why
        port_text = port_text[1:]
        import ipaddress

        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return why
        if address.scope_id is not None:
            return why  # a URL cannot carry a zone id
    else:
        host, colon, port_text = authority.partition(":")
        if special and _whatwg_domain(host) is None:
            return why
        if not host and (at or colon):
            return why  # credentials or a port need a host
        if not special and any(c in _FORBIDDEN_HOST for c in host):
            return why
    if port_text and (not set(port_text) <= _DIGITS or int(port_text) > 65535):
        return why
    return None


def _check_js_regex(pattern: str):
    """`extract`: must compile as a JavaScript RegExp (no flags) with at least one capture group.

    There is no JavaScript engine here, so this is a hand-written scanner for the syntax
    errors V8 reports in that mode (Annex B): unbalanced parentheses, an unterminated class,
    a trailing backslash, an invalid group, a quantifier with nothing to repeat, a
    {n,m} out of order, a class range out of order, and bad or duplicate group names.
    It then counts capturing groups, as srt does.
    """
    problem, groups = _scan_js_regex(pattern)
    if problem:
        return f"extract is not a valid JavaScript regular expression: {problem}"
    if groups < 1:
        return (
            "extract must contain at least one capturing group: group 1 is the credential "
            'value to mask (e.g. "token:\\s*(\\S+)")'
        )
    return None


def _scan_js_regex(p: str):
    n = len(p)
    # Named groups make `\k<name>` a real reference (checked below) instead of a literal "k".
    names = []
    i = 0
    stack = []  # kinds of the open groups
    groups = 0
    can_repeat = False  # whether the previous atom may take a quantifier
    refs = []

    def read_quantifier(j):
        """`{n}`, `{n,}`, `{n,m}` at p[j] -> (end index, lo, hi) or None (then `{` is a literal)."""
        k = j + 1
        start = k
        while k < n and p[k] in _DIGITS:
            k += 1
        if k == start:
            return None
        lo = int(p[start:k])
        if k < n and p[k] == ",":
            k += 1
            start = k
            while k < n and p[k] in _DIGITS:
                k += 1
            hi = int(p[start:k]) if k > start else float("inf")
        else:
            hi = lo
        if k < n and p[k] == "}":
            return k + 1, lo, hi
        return None

    while i < n:
        c = p[i]
        if c == "\\":
            if i + 1 >= n:
                return "\\ at end of pattern", 0
            nxt = p[i + 1]
            end = p.find(">", i + 3) if p.startswith("<", i + 2) else -1
            if nxt == "k":  # \k<name>: a reference when the pattern has named groups
                refs.append(p[i + 3 : end] if end != -1 else None)
            i = end + 1 if nxt == "k" and end != -1 else i + 2
            can_repeat = nxt not in "bB"  # \b and \B are assertions
            continue
        if c == "[":
            i += 1
            if i < n and p[i] == "^":
                i += 1
            prev = None  # the last plain class character, for the range-order check
            while i < n and p[i] != "]":
                if p[i] == "\\":
                    if i + 1 >= n:
                        return "\\ at end of pattern", 0
                    # Escapes that name one plain character count for ranges; \d, \x41 ... don't.
                    prev = p[i + 1] if p[i + 1] not in "dDwWsSbBcxuk0123456789" else None
                    i += 2
                    continue
                if p[i] == "-" and prev is not None and i + 1 < n and p[i + 1] != "]":
                    # A range prev-X; compared when X is a plain character too.
                    if p[i + 1] != "\\" and p[i + 1] < prev:
                        return "range out of order in character class", 0
                    i += 2 if p[i + 1] != "\\" else 3
                    prev = None
                    continue
                prev = p[i]
                i += 1
            if i >= n:
                return "unterminated character class", 0
            i += 1
            can_repeat = True
            continue
        if c == "(":
            if p.startswith("(?", i):
                kind = p[i + 2 : i + 3]
                if kind == ":":
                    stack.append("group")
                    i += 3
                elif kind in ("=", "!"):
                    stack.append("lookahead")
                    i += 3
                elif kind == "<" and p[i + 3 : i + 4] in ("=", "!"):
                    stack.append("lookbehind")
                    i += 4
                elif kind == "<":
                    end = p.find(">", i + 3)
                    name = p[i + 3 : end] if end != -1 else ""
                    if not name or not name.replace("$", "_").isidentifier():
                        return "invalid capture group name", 0
                    if name in names:
                        return "duplicate capture group name", 0
                    names.append(name)
                    groups += 1
                    stack.append("group")
                    i = end + 1
                else:
                    return "invalid group", 0
            else:
                groups += 1
                stack.append("group")
                i += 1
            can_repeat = False
            continue
        if c == ")":
            if not stack:
                return "unmatched ')'", 0
            # Annex B lets a lookahead take a quantifier, but not a lookbehind.
            can_repeat = stack.pop() != "lookbehind"
            i += 1
            continue
        if c in "*+?" or (c == "{" and read_quantifier(i)):
            if not can_repeat:
                return "nothing to repeat", 0
            if c == "{":
                i, lo, hi = read_quantifier(i)
                if hi < lo:
                    return "numbers out of order in {} quantifier", 0
            else:
                i += 1
            if i < n and p[i] == "?":
                i += 1  # lazy
            can_repeat = False
            continue
        can_repeat = c not in "^$|"
        i += 1
    if stack:
        return "unterminated group", 0
    if names and any(ref is None or ref not in names for ref in refs):
        return "invalid named capture referenced", 0
    return None, groups


# ---------------------------------------------------------------------------------------------
# srt 0.0.83's schema, as data (same order and names as sandbox-config.js).
# ---------------------------------------------------------------------------------------------

_DOMAIN = Str(check=_check_domain_pattern, expect="a domain pattern string")
_PATH = Str(min_len=1, expect="a non-empty path string")
_BINARY = Str(min_len=1, check=_check_absolute, expect="an absolute path string")
_ENV_NAME = Str(check=_check_env_name, expect="an environment variable name")
_PATHS = Array(PathEntry(), expect="an array of paths (use [] for none)")
_PORT = Int(1, 65535)

_CREDENTIAL_COMMON = {
    "mode": Enum("deny", "mask"),
    "extract": Str(check=_check_js_regex, expect="a regular expression string"),
    "onExtractNoMatch": Enum("warn", "deny", "error"),
    "decode": Enum("jwt"),
    "maskClaims": Array(Str(min_len=1), expect="an array of claim names"),
    "injectHosts": Array(_DOMAIN, expect="an array of domain patterns"),
}
_CREDENTIAL_FILE = Obj(
    {"path": _PATH, **_CREDENTIAL_COMMON, "maskDuplicates": Bool()}, required=("path", "mode")
)
_CREDENTIAL_ENV = Obj({"name": _ENV_NAME, **_CREDENTIAL_COMMON}, required=("name", "mode"))
_SIGV4_POLICY = Enum("deny", "passthrough")


def _check_ca_pair(tls: dict):
    if (not tls.get("caCertPath")) != (not tls.get("caKeyPath")):
        return "caCertPath and caKeyPath must be provided together"
    return None


def _check_port_range(pair: list):
    lo, hi = pair
    if lo <= hi and hi - lo <= 64:
        return None
    return "low must be <= high and the range at most 64 wide"


_NETWORK = Obj(
    {
        "allowedDomains": Array(
            Str(check=_check_allowed_entry, expect="a domain pattern string"),
            expect="an array of domain patterns (use [] for no network)",
        ),
        "deniedDomains": Array(
            Str(check=_check_denied_entry, expect="a domain pattern string"),
            expect="an array of domain patterns (use [] for none)",
        ),
        "deniedDomainReasons": Record(
            Str(min_len=1), expect="an object mapping deniedDomains entries to reasons"
        ),
        "strictAllowlist": Bool(),
        "deniedResolvedAddresses": Array(
            Str(check=_check_address_range, expect="an IP address or CIDR string"),
            expect="an array of IP addresses or CIDR ranges",
        ),
        "allowUnixSockets": Array(Str(), expect="an array of socket paths"),
        "allowAllUnixSockets": Bool(),
        "allowLocalBinding": Bool(),
        "allowMachLookup": Array(Str(check=_check_mach_name), expect="an array of service names"),
        "httpProxyPort": _PORT,
        "socksProxyPort": _PORT,
        "mitmProxy": Obj(
            {
                "socketPath": Str(min_len=1),
                "domains": Array(_DOMAIN, min_len=1, expect="a non-empty array of domain patterns"),
            },
            required=("socketPath", "domains"),
        ),
        "filterRequest": Never(
            "filterRequest is a library-only callback (a JavaScript function); a JSON settings "
            "file cannot set it, and srt refuses it there too"
        ),
        "allowPlaintextHeaderSet": Bool(),
        "stripResponseHeaders": Array(Str(min_len=1), expect="an array of header names"),
        "refuseOpaqueTunnels": Bool(),
        "requireHostMatch": Bool(),
        "ambiguousRequestTarget": Enum("refuse", "asSpelled", "normalize"),
        "tlsTerminate": Obj(
            {
                "caCertPath": Str(min_len=1),
                "caKeyPath": Str(min_len=1),
                "excludeDomains": Array(_DOMAIN, expect="an array of domain patterns"),
                "extraCaCertPaths": Array(Str(min_len=1), expect="an array of paths"),
                "maxTunnels": Int(1, 65536),
                "handshakeTimeoutMs": Int(100, 600000),
            },
            check=_check_ca_pair,
        ),
        "parentProxy": Obj(
            {
                "http": Str(check=_check_url, expect="a URL string"),
                "https": Str(check=_check_url, expect="a URL string"),
                "noProxy": Str(),
            }
        ),
    },
    required=("allowedDomains", "deniedDomains"),
    expect="an object with allowedDomains and deniedDomains",
)

_FILESYSTEM = Obj(
    {
        "disabled": Bool(),
        "denyRead": _PATHS,
        "allowRead": _PATHS,
        "allowWrite": _PATHS,
        "denyWrite": _PATHS,
        "allowGitConfig": Bool(),
    },
    required=("denyRead", "allowWrite", "denyWrite"),
    expect="an object with denyRead, allowWrite and denyWrite",
)

_CREDENTIALS = Obj(
    {
        "files": Array(_CREDENTIAL_FILE, expect="an array of credential file entries"),
        "envVars": Array(_CREDENTIAL_ENV, expect="an array of environment variable entries"),
        "allowPlaintextInject": Bool(),
        "awsPairs": Array(
            Obj(
                {
                    "accessKeyIdVar": _ENV_NAME,
                    "secretAccessKeyVar": _ENV_NAME,
                    "sessionTokenVar": _ENV_NAME,
                },
                required=("accessKeyIdVar", "secretAccessKeyVar"),
                srt_strict=True,
            ),
            expect="an array of AWS pair entries",
        ),
        "sigv4": Obj(
            {"streaming": _SIGV4_POLICY, "presigned": _SIGV4_POLICY, "sigv4a": _SIGV4_POLICY},
            srt_strict=True,
        ),
    },
    srt_strict=True,
)

_SCHEMA = Obj(
    {
        "network": _NETWORK,
        "filesystem": _FILESYSTEM,
        "credentials": _CREDENTIALS,
        "ignoreViolations": Record(
            Array(Str(), expect="an array of paths"),
            expect="an object mapping command patterns to arrays of paths",
        ),
        "enableWeakerNestedSandbox": Bool(),
        "allowNestedUserNamespaces": Bool(),
        "enableWeakerNetworkIsolation": Bool(),
        "allowAppleEvents": Bool(),
        "ripgrep": Obj(
            {"command": Str(), "args": Array(Str(), expect="an array of strings"), "argv0": Str()},
            required=("command",),
        ),
        "mandatoryDenySearchDepth": Int(1, 10),
        "allowPty": Bool(),
        "seccomp": Obj({"applyPath": Str(), "argv0": Str()}),
        "bwrapPath": _BINARY,
        "socatPath": _BINARY,
        "javaAgentJarPath": _BINARY,
        "windows": Obj(
            {
                "backend": Enum("mxc", "srt-win"),
                "sandboxUser": Str(min_len=1, max_len=20),
                "sublayerGuid": Str(check=_check_uuid, expect="a UUID string"),
                "wfpSublayerGuid": Str(check=_check_uuid, expect="a UUID string"),
                # z.tuple([int().min(1), int().max(65535)]): srt bounds each end on one side only.
                "proxyPortRange": Tuple(
                    (Int(lo=1), Int(hi=65535)),
                    check=_check_port_range,
                    expect="an array [low, high]",
                ),
                "srtWin": Obj({"path": Str(min_len=1)}, required=("path",)),
            }
        ),
        "git": Obj({"safeDirectories": Array(Str(), expect="an array of directories")}),
    },
    required=("network", "filesystem"),
    expect="an object",
)


# ---------------------------------------------------------------------------------------------
# Cross-field rules (srt's superRefine), run once the shape is known to be right.
# Each yields (key, value, why) for the first problem it finds.
# ---------------------------------------------------------------------------------------------

_GLOB_CHARS = frozenset("*?[]")  # srt's containsGlobChars on Linux (note: "]" too)


def _inert_slashed_deny_glob(value: str):
    """A rooted deny glob ending in "/" matches nothing: srt refuses it rather than fail open."""
    if not value.endswith("/") or not set(value) & _GLOB_CHARS:
        return None
    if not (value.startswith("/") or value.startswith("~")):
        return None  # a relative spelling is resolved first, which drops the slash
    return (
        f'deny glob {value!r} ends in "/", so as a pattern it can match no path; write '
        f'{value.rstrip("/")!r}, or add a "**" segment to match at any depth'
    )


def _rule_deny_globs(cfg):
    fs = cfg["filesystem"]
    if fs.get("disabled"):
        return
    for list_name in ("denyRead", "denyWrite"):
        for i, entry in enumerate(fs[list_name]):
            why = _inert_slashed_deny_glob(entry) if isinstance(entry, str) else None
            if why:
                yield f"filesystem.{list_name}[{i}]", entry, why


def _matches_domain(hostname: str, pattern: str) -> bool:
    h = hostname.lower()
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        if _is_ip(_strip_brackets(h)):
            return False
        return h.endswith("." + pattern[2:].lower())
    return h == pattern.lower()


def _host_covered(inject_host: str, patterns: list) -> bool:
    """srt's isInjectHostCoveredByAllowedDomains: every host inject_host names is in patterns."""
    if not inject_host.startswith("*."):
        return any(_matches_domain(inject_host, p) for p in patterns)
    base = inject_host[2:].lower()
    return any(
        p.startswith("*.") and (base == p[2:].lower() or base.endswith("." + p[2:].lower()))
        for p in patterns
    )


def _rule_credentials(cfg):
    creds = cfg.get("credentials")
    if creds is None:
        return
    allowed = [_split_domain_port(d)[0] for d in cfg["network"]["allowedDomains"]]
    exclude = (cfg["network"].get("tlsTerminate") or {}).get("excludeDomains") or []
    fs_enforced = not cfg["filesystem"].get("disabled")
    has_masked = False
    for list_name in ("envVars", "files"):
        for i, entry in enumerate(creds.get(list_name, [])):
            key = f"credentials.{list_name}[{i}]"
            inject = entry.get("injectHosts")
            for j, host in enumerate(inject or []):
                if not _host_covered(host, allowed):
                    yield f"{key}.injectHosts[{j}]", host, (
                        "not reachable via network.allowedDomains: add it (or a covering "
                        "wildcard) there, or remove it from injectHosts"
                    )
            if entry["mode"] == "mask":
                has_masked = True
                if exclude and inject:
                    for j, host in enumerate(inject):
                        if _host_covered(host, exclude):
                            yield f"{key}.injectHosts[{j}]", host, (
                                "entirely covered by network.tlsTerminate.excludeDomains; "
                                "injection only runs on TLS-terminated connections"
                            )
                elif exclude and allowed and all(_host_covered(p, exclude) for p in allowed):
                    yield key, entry, (
                        "masked credential without injectHosts defaults to "
                        "network.allowedDomains, but tlsTerminate.excludeDomains covers all of "
                        "them, so it could never be injected"
                    )
                if inject is not None and not inject:
                    yield key, entry, (
                        "injectHosts is explicitly empty: the credential would be masked but "
                        "never injected; omit injectHosts or list the hosts"
                    )
            claims = entry.get("maskClaims")
            if claims is not None and "decode" not in entry:
                yield f"{key}.maskClaims", claims, 'maskClaims requires decode (e.g. "jwt")'
            if claims is not None and not claims:
                yield f"{key}.maskClaims", claims, "explicitly empty: omit it or list claims"
            if list_name == "files":
                path = entry["path"]
                if entry["mode"] == "mask" and path.endswith("/"):
                    yield f"{key}.path", path, (
                        'mode "mask" applies to a single file, not a directory; use mode "deny"'
                    )
                is_deny = fs_enforced and entry["mode"] == "deny"
                why = _inert_slashed_deny_glob(path) if is_deny else None
                if why:
                    yield f"{key}.path", path, why
    yield from _rule_aws_pairs(creds)
    plaintext_ok = creds.get("allowPlaintextInject")
    if has_masked and "tlsTerminate" not in cfg["network"] and not plaintext_ok:
        yield "credentials", creds, (
            "credential masking requires network.tlsTerminate (or, not recommended, "
            "credentials.allowPlaintextInject: true)"
        )


def _rule_aws_pairs(creds):
    env = {}
    for entry in creds.get("envVars", []):
        env.setdefault(entry["name"], entry)  # srt's .find(): the first entry of that name
    seen = set()
    for i, pair in enumerate(creds.get("awsPairs", [])):
        for slot in ("accessKeyIdVar", "secretAccessKeyVar", "sessionTokenVar"):
            if slot not in pair:
                continue
            name, key = pair[slot], f"credentials.awsPairs[{i}].{slot}"
            if name in seen:
                yield key, name, "appears in more than one awsPairs slot; each variable fills one"
                continue
            seen.add(name)
            entry = env.get(name)
            if entry is None or entry["mode"] != "mask":
                yield key, name, 'does not name a credentials.envVars entry with mode "mask"'
            elif "extract" in entry or "decode" in entry:
                yield key, name, "an AWS pair member must be masked whole-value (no extract/decode)"


_CROSS_FIELD_RULES = (_rule_deny_globs, _rule_credentials)


def validate(data, source: str = "") -> None:
    """Check parsed JSON against srt 0.0.83's schema; raise PolicyError on the first problem."""
    try:
        if not isinstance(data, dict):
            why = f"expected a JSON object at the top level, got {_json_type(data)}"
            raise _Invalid("", data, why)
        _walk(_SCHEMA, data, "")
        for rule in _CROSS_FIELD_RULES:
            for key, value, why in rule(data):
                raise _Invalid(key, value, why)
    except _Invalid as err:
        raise PolicyError(source, err.key, err.value, err.why) from None


# ---------------------------------------------------------------------------------------------
# Valid settings corral cannot honour yet: refused, never dropped.
# ---------------------------------------------------------------------------------------------

_NO_PROXY = "not supported yet by corral's egress proxy"
_NO_SIGV4 = (
    "AWS SigV4 re-signing is not implemented: a SigV4 signature is computed from the secret, "
    "so masking by substitution cannot fix it up"
)

_ABSENT = object()


def _in_use(value) -> bool:
    """Present and meaningful: true for booleans, non-empty for lists, set for anything else."""
    if value is _ABSENT or value is None or value is False:
        return False
    if isinstance(value, list):
        return bool(value)
    return True


# (dotted key, why). Each is refused when `_in_use` says the file really asks for it.
_REFUSED = (
    ("filesystem.disabled", "not supported: corral always enforces a filesystem policy"),
    ("enableWeakerNestedSandbox", "not supported: corral has no weaker nested-sandbox mode yet"),
    ("network.allowUnixSockets", "a macOS-only path allow-list; corral cannot filter Unix "
     "sockets by path: use network.allowAllUnixSockets: true to allow them all"),
    ("network.httpProxyPort", f"an external HTTP proxy is {_NO_PROXY}"),
    ("network.socksProxyPort", f"an external SOCKS proxy is {_NO_PROXY}"),
    ("network.mitmProxy", f"mitmProxy is {_NO_PROXY}"),
    ("network.allowPlaintextHeaderSet", f"request filtering is {_NO_PROXY}"),
    ("network.ambiguousRequestTarget", f"request filtering is {_NO_PROXY}"),
    ("credentials.awsPairs", _NO_SIGV4),
    ("credentials.sigv4", _NO_SIGV4),
)

# Options of a `mode: "mask"` entry that corral does not implement (on "deny" entries srt
# ignores them, and so does corral).
_MASK_REFUSED = (
    ("decode", 'JWT-aware masking (decode: "jwt") is not implemented; mask the token whole, or '
     "pick it out with extract"),
    ("maskClaims", "claim-level JWT masking is not implemented; mask the token whole, or pick "
     "it out with extract"),
    ("maskDuplicates", "masking further copies of a captured value is not implemented; make "
     "extract capture every occurrence instead"),
)


def _get(data: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return _ABSENT
        data = data[part]
    return data


def _refuse_unsupported(data: dict, source: str) -> None:
    for key, why in _REFUSED:
        value = _get(data, key)
        if _in_use(value):
            raise UnsupportedFeature(source, key, value, why)
    creds = data.get("credentials", {})
    for list_name in ("envVars", "files"):
        for i, entry in enumerate(creds.get(list_name, [])):
            if entry["mode"] != "mask":
                continue
            for name, why in _MASK_REFUSED:
                if _in_use(entry.get(name, _ABSENT)):
                    raise UnsupportedFeature(source, f"credentials.{list_name}[{i}].{name}", entry[name], why)


# ---------------------------------------------------------------------------------------------
# Mapping into a corral Policy.
# ---------------------------------------------------------------------------------------------

_FS_LISTS = (  # srt key -> FilesystemPolicy field
    ("denyRead", "deny_read"),
    ("allowRead", "allow_read"),
    ("allowWrite", "allow_write"),
    ("denyWrite", "deny_write"),
)

# srt collapses more safe directories than this into a single `safe.directory=*`.
_SAFE_DIRECTORY_WILDCARD_THRESHOLD = 8


def _path_rule(raw: str, key: str, origin_key: str, ctx: LaunchContext, source: str, literal: bool):
    try:
        return paths.rule(raw, ctx, origin=f"{source}:{origin_key}", literal=literal)
    except ValueError as err:
        raise PolicyError(source, key, raw, str(err)) from None


def _fs_rules(entries: list, list_key: str, ctx: LaunchContext, source: str) -> list:
    rules = []
    for i, entry in enumerate(entries):
        key = f"{list_key}[{i}]"
        if isinstance(entry, dict):  # {"path": ..., "literal": true}: never a glob
            rules.append(_path_rule(entry["path"], f"{key}.path", key, ctx, source, literal=True))
        else:
            rules.append(_path_rule(entry, key, key, ctx, source, literal=False))
    return rules


def _git_safe_directory_env(dirs: list) -> tuple:
    """srt's buildGitConfigEnv: `safe.directory` for each dir and `<dir>/*` (git >= 2.46).

    Like srt: backslashes become "/", trailing slashes go (a bare root stays "/"), duplicates
    and empty entries are dropped, and more than 8 directories collapse to "*". Paths stay as
    written: git expands "~/" in safe.directory itself. Numbering starts at 0; srt continues
    from an inherited GIT_CONFIG_COUNT instead, which a load-time policy cannot know.
    """
    cleaned = []
    for d in dirs:
        if not d:
            continue
        d = d.replace("\\", "/").rstrip("/")
        d = d + "/" if d == "" or (len(d) == 2 and d[0] in _ALPHA and d[1] == ":") else d
        if d not in cleaned:
            cleaned.append(d)
    if not cleaned:
        return ()
    values = ["*"] if len(cleaned) > _SAFE_DIRECTORY_WILDCARD_THRESHOLD else [
        v for d in cleaned for v in (d, d + "*" if d.endswith("/") else d + "/*")
    ]
    env = [("GIT_CONFIG_COUNT", str(len(values)))]
    for n, value in enumerate(values):
        env += [(f"GIT_CONFIG_KEY_{n}", "safe.directory"), (f"GIT_CONFIG_VALUE_{n}", value)]
    return tuple(env)


def convert(data: dict, source: str, ctx: LaunchContext) -> Policy:
    """Validate parsed srt settings, refuse what corral cannot honour, and build the Policy."""
    validate(data, source)
    _refuse_unsupported(data, source)

    fs, net, creds = data["filesystem"], data["network"], data.get("credentials", {})
    lists = {
        field: _fs_rules(fs.get(name, []), f"filesystem.{name}", ctx, source)
        for name, field in _FS_LISTS
    }
    # credentials.files with mode "deny" join the read denies. srt reads them like a
    # denyRead string (a glob when it has glob characters), so corral does the same.
    for i, entry in enumerate(creds.get("files", [])):
        if entry["mode"] == "deny":
            key = f"credentials.files[{i}].path"
            rule = _path_rule(entry["path"], key, key, ctx, source, literal=False)
            lists["deny_read"].append(rule)
    denied_env = (e["name"] for e in creds.get("envVars", []) if e["mode"] == "deny")
    unset_env = tuple(dict.fromkeys(denied_env))  # ordered, without duplicates

    return Policy(
        filesystem=FilesystemPolicy(
            **{field: tuple(rules) for field, rules in lists.items()},
            allow_git_config=fs.get("allowGitConfig", False),
            deny_credentials=True,  # always: see the module docstring
        ),
        network=_network(net, source, ctx),
        process=ProcessPolicy(
            allow_nested_userns=data.get("allowNestedUserNamespaces", False),
            bwrap_path=data.get("bwrapPath"),
            unset_env=unset_env,
            set_env=_git_safe_directory_env(data.get("git", {}).get("safeDirectories", [])),
        ),
        sources=(source,),
        credentials=_credentials(data, source, ctx),
    )


def _network(net: dict, source: str, ctx: LaunchContext) -> NetworkPolicy:
    parent = None
    if net.get("parentProxy"):
        pp = net["parentProxy"]
        no_proxy = tuple(v.strip() for v in (pp.get("noProxy") or "").split(",") if v.strip())
        from .upstream import redact, split_proxy_url

        for name in ("http", "https"):
            if pp.get(name):
                try:
                    split_proxy_url(pp[name])
                except ValueError as exc:
                    raise PolicyError(source, f"network.parentProxy.{name}", redact(pp[name]), str(exc)) from None
        # What parentProxy leaves out comes from the launcher's HTTP(S)_PROXY/NO_PROXY, as in srt.
        parent = ParentProxy(http=pp.get("http"), https=pp.get("https"), no_proxy=no_proxy,
                             origin=f"{source}:network.parentProxy")
    policy = NetworkPolicy(
        srt_words=True,
        allowed_domains=tuple(net["allowedDomains"]),
        denied_domains=tuple(net["deniedDomains"]),
        # srt keeps reasons for entries that are not denied; they can never apply, so drop them.
        denied_reasons=tuple((k, v) for k, v in (net.get("deniedDomainReasons") or {}).items()
                             if k in net["deniedDomains"]),
        denied_addresses=tuple(net.get("deniedResolvedAddresses") or ()),
        strict_allowlist=net.get("strictAllowlist", False),
        parent_proxy=parent,
        allow_unix_sockets=net.get("allowAllUnixSockets", False),
        tls=_tls(net["tlsTerminate"], source, ctx) if "tlsTerminate" in net else TlsPolicy(auto=False),
        # srt's default is false; corral's own default (true) applies to native policies only.
        require_host_match=net.get("requireHostMatch", False),
        refuse_opaque_tunnels=net.get("refuseOpaqueTunnels", False),
        strip_response_headers=_header_names(net.get("stripResponseHeaders", []), source),
    )
    if policy.allowed_domains or policy.denied_domains or policy.denied_addresses:
        from .network import compile_rules

        compile_rules(policy, source)
    return policy


def _expand(raw: str, key: str, ctx: LaunchContext, source: str) -> str:
    try:
        return paths.expand(raw, ctx)
    except ValueError as err:
        raise PolicyError(source, key, raw, str(err)) from None


_TCHAR = _ALPHA | _DIGITS | frozenset("!#$%&'*+-.^_`|~")  # RFC 9110 token characters


def _header_names(names: list, source: str) -> tuple:
    # srt takes any non-empty string; one that is not a header name could never match, so a
    # typo ("set-cookie:") would leave the header in place without a word.
    for i, name in enumerate(names):
        if not set(name) <= _TCHAR:
            raise PolicyError(source, f"network.stripResponseHeaders[{i}]", name,
                              "not a header name (letters, digits and !#$%&'*+-.^_`|~): it could "
                              "never match")
    return tuple(dict.fromkeys(name.lower() for name in names))


def _tls(tls: dict, source: str, ctx: LaunchContext) -> TlsPolicy:
    key = "network.tlsTerminate"
    if tls.get("caCertPath"):  # _check_ca_pair: the key is there too
        ca = {
            "ca": "files",
            "ca_cert": _expand(tls["caCertPath"], f"{key}.caCertPath", ctx, source),
            "ca_key": _expand(tls["caKeyPath"], f"{key}.caKeyPath", ctx, source),
        }
    else:
        ca = {"ca": "ephemeral"}  # srt mints a CA per run when none is given
    exclude = tls.get("excludeDomains", [])
    for i, host in enumerate(exclude):
        _host_pattern(host, f"{key}.excludeDomains[{i}]", source)
    extra = tls.get("extraCaCertPaths", [])
    timeout = tls.get("handshakeTimeoutMs")
    return TlsPolicy(
        terminate=("*",),  # srt terminates every CONNECT that carries TLS
        exclude=tuple(exclude),
        extra_ca=tuple(_expand(p, f"{key}.extraCaCertPaths[{i}]", ctx, source) for i, p in enumerate(extra)),
        max_tunnels=int(tls.get("maxTunnels", 256)),
        handshake_timeout=timeout / 1000 if timeout is not None else 10.0,
        **ca,
    )


def _host_pattern(text: str, key: str, source: str):
    """The proxy's reading of a host pattern; srt accepts a few it cannot use (`*.*.a.com`)."""
    from ..proxy.httprules import parse_host_pattern

    try:
        return parse_host_pattern(text)
    except ValueError as err:
        raise PolicyError(source, key, text, f"corral cannot use this host pattern: {err}") from None


def _bare_host(pattern: str) -> str:
    """An allowedDomains entry without its port and brackets: "[::1]:443" -> "::1"."""
    return _drop_zone(_strip_brackets(_split_domain_port(pattern)[0]))


def _inject_hosts(entry: dict, net: dict, key: str, source: str) -> tuple:
    if "injectHosts" in entry:
        raw, where = entry["injectHosts"], f"{key}.injectHosts"
    else:
        # srt's default: every host of allowedDomains, ports dropped.
        raw, where = net["allowedDomains"], "network.allowedDomains"
        if not raw:
            raise PolicyError(source, f"{key}.injectHosts", None, (
                "absent, and network.allowedDomains (the default) is empty: the credential "
                "could never be sent anywhere; list the hosts it is for in injectHosts (and "
                "allow them in network.allowedDomains)"
            ))
    hosts = []
    for j, text in enumerate(raw):
        host = _bare_host(text)
        _host_pattern(host, f"{where}[{j}]", source)  # srt already refuses "*" and "*.com"
        if host not in hosts:
            hosts.append(host)
    return tuple(hosts)


def _python_regex(pattern: str, key: str, source: str) -> None:
    import re  # only for masked entries with extract

    try:
        groups = re.compile(pattern).groups
    except re.error as err:
        groups, problem = 0, f"Python's re cannot compile it ({err})"
    else:
        problem = "Python's re finds no capturing group in it"
    if groups < 1:
        raise UnsupportedFeature(source, key, pattern, (
            f"valid JavaScript, but corral matches extract with Python's re and {problem}; "
            "write it with plain (...) groups and no JavaScript-only syntax such as (?<name>...)"
        ))


def _file_credential_name(i: int, path: str) -> str:
    # Credential names are identifiers (they show up in placeholders and audit events).
    base = path.rsplit("/", 1)[-1]
    return f"FILE_{i}_" + "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in base)


def _credentials(data: dict, source: str, ctx: LaunchContext) -> tuple:
    """`mode: "mask"` entries as CredentialSpecs (values are read at launch, never here)."""
    creds, net = data.get("credentials", {}), data["network"]
    denied_env = {e["name"] for e in creds.get("envVars", []) if e["mode"] == "deny"}
    denied_files = {
        _expand(e["path"], f"credentials.files[{i}].path", ctx, source)
        for i, e in enumerate(creds.get("files", []))
        if e["mode"] == "deny" and not set(e["path"]) & _GLOB_CHARS
    }
    specs, seen = [], {}
    for list_name in ("envVars", "files"):
        for i, entry in enumerate(creds.get(list_name, [])):
            if entry["mode"] != "mask":
                continue
            key = f"credentials.{list_name}[{i}]"
            extract = entry.get("extract")
            if extract is not None:
                _python_regex(extract, f"{key}.extract", source)
            common = {
                "hosts": _inject_hosts(entry, net, key, source),
                "extract": extract,
                # corral fails closed: absent means withhold (srt: "warn", which passes the
                # real value in). srt ignores it without extract, so does corral.
                "on_no_match": entry.get("onExtractNoMatch", "deny") if extract is not None else "deny",
                "allow_plaintext": creds.get("allowPlaintextInject", False),
                "origin": f"{source}:{key}",
            }
            if list_name == "envVars":
                raw = ident = entry["name"]
                where, conflict = f"{key}.name", raw in denied_env
                spec = CredentialSpec(name=raw, from_env=raw, env=raw, **common)
            else:
                raw, where = entry["path"], f"{key}.path"
                if set(raw) & _GLOB_CHARS:
                    # srt would read the name literally; a pattern here is almost surely a slip.
                    raise PolicyError(source, where, raw, (
                        "a masked file must be one path: glob characters (* ? [ ]) are not "
                        'allowed with mode "mask"'
                    ))
                ident = _expand(raw, where, ctx, source)
                conflict = ident in denied_files
                spec = CredentialSpec(name=_file_credential_name(i, ident), from_file=ident,
                                      mask_file=ident, **common)
            if conflict:
                raise PolicyError(source, where, raw, 'also listed with mode "deny": choose one mode')
            if (list_name, ident) in seen:
                raise PolicyError(source, where, raw, f"already masked by {seen[list_name, ident]}")
            seen[list_name, ident] = key
            specs.append(spec)
    return tuple(specs)


def _reject_constant(name: str):
    raise ValueError(name)


def load_srt_settings(text: str, source: str, ctx: LaunchContext) -> Policy:
    """Parse an srt settings file's text (JSON) and convert it; see `convert`."""
    if not text.strip():
        # srt refuses an empty file too: falling back to defaults would drop rules silently.
        raise PolicyError(source, "", None, "empty settings file: expected a JSON object with "
                          "at least network and filesystem")
    from .._json import loads

    try:
        # JavaScript's JSON.parse rejects NaN/Infinity; Python's json accepts them unless told.
        data = loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise PolicyError(source, "", None, "invalid settings: arrays or objects nested too deeply") from None
    except ValueError as err:
        if hasattr(err, "lineno"):  # json.JSONDecodeError
            msg = err.msg[: -len(" at")] if err.msg.endswith(" at") else err.msg  # json's own "… at"
            raise PolicyError(
                source, "", None, f"invalid JSON: {msg} at line {err.lineno} column {err.colno}"
            ) from None
        raise PolicyError(source, "", None, f"invalid JSON: {err} is not a JSON value") from None
    return convert(data, source, ctx)
