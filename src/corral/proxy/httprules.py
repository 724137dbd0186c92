"""Which HTTP requests may be sent to a host: method and path rules.

Rules of this module: every decision about an HTTP request inside a connection the domain
rules (`rules.py`) already allowed lives here, and it does no I/O. HTTP rules only narrow:
a request must pass the domain rules first, then `HttpRules.decide(method, host, path)`.
CONNECT is not an HTTP rule matter (the domain rules decide tunnels); rules cannot name it.

A rule, in its compact string form::

    [allow|deny] METHODS HOST/PATH[?KEY=VALUE[&KEY=VALUE...]]

    GET,HEAD github.com/**                                   any path, GET and HEAD only
    deny POST github.com/**/git-receive-pack                 git push (with or without .git)
    deny * github.com/**/info/refs?service=git-receive-pack  push discovery
    * api.example.com/v1/**                                  every method under /v1

- METHODS: `*` or comma-separated methods, matched case-insensitively (`post` is POST).
- HOST: an exact name, `*.suffix` (names under suffix, not suffix itself), an IP address,
  or `*` (every host). No port: HTTP rules name hosts, the domain rules name ports.
- PATH: segments separated by `/`. A segment `**` matches any number of segments (also
  none); `*` alone matches one segment; `*` inside a segment (`*.git`) matches any run of
  characters within that segment; everything else is literal. Allow rules compare paths
  case-sensitively; deny rules case-insensitively (a server that ignores case must not let
  `/GIT-RECEIVE-PACK` past `deny POST github.com/**/git-receive-pack`), query conditions too.
  `*.git` means a segment ending in `.git`: GitHub also serves `/org/repo/git-receive-pack`,
  so a rule meant to refuse pushes names `**/git-receive-pack`, not `*/*.git/...`.
- The query is ignored unless the rule has a `?KEY=VALUE` condition. Git's push discovery
  is `GET /org/repo.git/info/refs?service=git-receive-pack`: the path alone cannot tell it
  from fetch discovery, so a condition can name the service. A deny rule's condition holds
  when *any* occurrence of KEY has VALUE; an allow rule's condition holds only when KEY is
  present and *every* occurrence has VALUE (`?service=a&service=b` cannot slip past either).
  Blocking `git-receive-pack` by path alone already stops a push; denying the discovery too
  makes git fail at once with the 403 message instead of after packing.

How a request is decided (`HttpRules.decide`), in this order:

1. TRACE and TRACK are always refused (405): they echo request headers, credentials included.
2. The path is normalised (`normalize_path`); a malformed one is refused (400).
3. Deny beats allow: the first deny rule that matches (in the order given) refuses (403).
4. The first allow rule that matches allows.
5. A host named by at least one allow rule is default-deny: anything no allow rule covers is
   refused (403). So `GET github.com/**` alone means only GETs reach github.com.
6. Every other host follows `default` ("allow" or "deny").

Path normalisation, before matching (an attacker picks whichever spelling the rules miss):

- Only printable ASCII; NUL, CR, LF, spaces, `#` and non-ASCII are refused.
- Percent-escapes must be well formed; escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`)
  are decoded (`%2e%2e` is `..`), the rest keep their escape with upper-case hex.
- Empty segments are dropped (`//a/` is `/a`; a trailing slash does not matter), `.` segments
  removed, `..` segments resolved; a path that climbs above the root is refused.
- Encoded slashes: servers disagree on whether `%2F` (and `%5C`, and a raw `\\`) separate
  segments. The request is judged under every reading; if the readings get different
  decisions, it is refused (400) — `/org/repo.git%2Fgit-receive-pack` cannot dodge a deny
  rule — and otherwise it goes through, so npm's `/@scope%2fname` still works.
- Path parameters and trailing dots: some servers drop `;params` from a segment (`..;` is
  `..` to Tomcat) or trailing dots (`pack.` is `pack` to Windows). Where a path has them, it
  is also read with them dropped (before dot segments are resolved), and judged the same way:
  `/o/r/git-receive-pack;x` cannot dodge a deny rule either.
"""

from __future__ import annotations

from itertools import combinations

from .._values import frozen
from .addresses import normalize_host, parse_ip
from .rules import Pattern, parse_pattern

ALLOW = "allow"
DENY_RULE = "deny-rule"  # a deny rule matched
NOT_ALLOWED = "not-allowed"  # the host has allow rules, none matched
DEFAULT_DENY = "default-deny"  # no rule for the host, default = "deny"
BAD_REQUEST = "bad-request"  # malformed method, host or path
REFUSED_METHOD = "refused-method"  # TRACE, TRACK

STATUS = {ALLOW: 200, DENY_RULE: 403, NOT_ALLOWED: 403, DEFAULT_DENY: 403, BAD_REQUEST: 400, REFUSED_METHOD: 405}

# Methods refused whatever the rules say, and why.
REFUSED_METHODS = {
    "TRACE": "TRACE echoes the request back, credentials injected by the proxy included",
    "TRACK": "TRACK (IIS's TRACE) echoes the request back, credentials injected by the proxy included",
}

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_HEX = frozenset("0123456789abcdefABCDEF")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Spellings some server may read as a segment separator, each a reading of its own.
_AMBIGUOUS_SEPARATORS = ("%2F", "%5C", "\\")


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


@frozen
class HttpDecision:
    allowed: bool
    rule_text: str  # the rule that decided, as written; "" when none did
    reason: str  # human- and model-readable, for the 403 body and the audit log
    code: str  # ALLOW, DENY_RULE, NOT_ALLOWED, DEFAULT_DENY, BAD_REQUEST or REFUSED_METHOD

    @property
    def status(self) -> int:
        """The HTTP status to answer a refused request with (200 when allowed)."""
        return STATUS[self.code]


@frozen
class HttpRule:
    """One compiled rule; build it with `parse_rule`."""

    action: str  # "allow" or "deny"
    methods: frozenset | str  # upper-case methods, or "*"
    host: Pattern  # kind "name", "wildcard", "ip" or "any"
    path: str  # the canonical path pattern, e.g. "/*/*.git/git-receive-pack"
    query: tuple  # ((key, value), ...) conditions; () ignores the query
    text: str  # as written, for messages and the audit log
    segments: tuple  # compiled path: "**" or a tuple of the parts between `*`s

    def matches(self, method: str, name: str, segments: tuple, query: str) -> bool:
        """Whether this rule covers an upper-case `method` to canonical host `name`.

        A deny rule ignores letter case in the path and the query condition (see the module
        docstring): its own segments are stored lower-case."""
        deny = self.action == "deny"
        if deny:
            segments = tuple(seg.lower() for seg in segments)
        return (
            (self.methods == "*" or method in self.methods)
            and host_in(self.host, name)
            and _glob(self.segments, segments)
            and _query_holds(self.query, query, every=not deny, fold=deny)
        )


# ---------------------------------------------------------------------------------------------
# Hosts
# ---------------------------------------------------------------------------------------------


def parse_host_pattern(text: str) -> Pattern:
    """An exact name, `*.suffix`, an IP address or `*`; no port, no CIDR range."""
    if "/" in text:
        raise ValueError("expected a host name, '*.suffix' or an IP address, not a range or path")
    pattern = parse_pattern(text, denied=True)  # denied=True: no breadth checks, no file reads
    if pattern.port is not None:
        raise ValueError("no port here: HTTP rules and credentials name hosts (ports are for the domain rules)")
    return pattern


def host_in(pattern: Pattern, name: str) -> bool:
    """Whether `pattern` covers `name`, a host already canonical (`normalize_host`)."""
    if pattern.kind == "any":
        return True
    if pattern.kind == "wildcard":
        return name.endswith("." + pattern.host)
    return name == pattern.host


def host_match(sni: str | None, host_header: str, port: int = 443) -> bool:
    """Whether a TLS connection's SNI and a request's Host header name the same destination.

    For `require_host_match` (no domain fronting: answer 421 when False). Names compare in
    canonical form (case, trailing dot, IDNA); a port in Host must be `port`, the port the
    client connected to (`Host: api.x.com:443` is SNI `api.x.com` on 443). Without SNI only an
    IP-literal Host matches: clients leave SNI out exactly for IP literals (RFC 6066).
    """
    if not isinstance(host_header, str):
        return False
    name, host_port = _split_host_header(host_header.strip())
    if name is None or (host_port is not None and host_port != port):
        return False
    try:
        host = normalize_host(name)
    except ValueError:
        return False
    if not sni:
        return parse_ip(host) is not None
    try:
        return normalize_host(sni) == host
    except ValueError:
        return False


def _split_host_header(value: str) -> tuple[str | None, int | None]:
    if not value or any(c in value for c in "@/?# \t"):
        return None, None
    if value.startswith("["):
        inside, close, rest = value[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            return None, None
        name, port_text = f"[{inside}]", rest[1:] if rest else None
    elif value.count(":") > 1:
        return None, None  # IPv6 in Host must be bracketed
    else:
        name, colon, port_text = value.partition(":")
        port_text = port_text if colon else None
    if port_text is None:
        return name, None
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        return None, None
    return name, int(port_text)


# ---------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------


def _canonical_escapes(text: str) -> str:
    """Decode escapes of unreserved characters, upper-case the others; ValueError if malformed."""
    if "%" not in text:
        return text
    out, i = [], 0
    while True:
        j = text.find("%", i)
        if j == -1:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        hexdigits = text[j + 1 : j + 3]
        if len(hexdigits) != 2 or not set(hexdigits) <= _HEX:
            raise ValueError(f"malformed percent-escape {text[j:j + 3]!r}")
        char = chr(int(hexdigits, 16))
        out.append(char if char in _UNRESERVED else "%" + hexdigits.upper())
        i = j + 3


def _check_chars(text: str) -> None:
    for c in text:
        if not "!" <= c <= "~":
            what = {"\0": "NUL", "\r": "CR", "\n": "LF", " ": "a space", "\t": "a tab"}.get(c)
            raise ValueError(f"contains {what or repr(c)}: only printable ASCII may appear in a request path")
    if "#" in text:
        raise ValueError("contains '#': a fragment is never sent to a server")


_PARAMS = (";", "%3B")  # what begins a segment's parameters (`/a;v=1/b`), raw or escaped


def _lax(seg: str) -> str:
    """`seg` as a server that drops `;params` and trailing dots reads it (`.` and `..` kept)."""
    for mark in _PARAMS:
        seg = seg.split(mark, 1)[0]
    return seg.rstrip(".") if seg.strip(".") else seg


def _segments(path: str, separators, lax: bool = False) -> tuple:
    """Split canonical `path` on '/' and on `separators`, drop empty and '.' segments, resolve '..';
    with `lax`, drop each segment's `;params` and trailing dots first."""
    for sep in separators:
        path = path.replace(sep, "/")
    out: list[str] = []
    for seg in path.split("/"):
        if lax:
            seg = _lax(seg)
        if seg in ("", "."):
            continue
        if seg == "..":
            if not out:
                raise ValueError("'..' climbs above the root")
            out.pop()
        else:
            out.append(seg)
    return tuple(out)


def normalize_path(target: str) -> tuple[tuple[tuple, ...], str]:
    """(segments under each reading of ambiguous separators, query) for a request target.

    The first reading treats `%2F`, `%5C` and `\\` as ordinary characters; the others treat
    each combination of them as separators. ValueError says what is wrong with `target`.
    """
    if not isinstance(target, str):
        raise ValueError(f"expected a string, got {type(target).__name__}")
    _check_chars(target)
    if not target.startswith("/"):
        raise ValueError("a request path starts with '/'")
    path, _, query = target.partition("?")
    path = _canonical_escapes(path)
    _canonical_escapes(query)  # validated only; conditions decode it themselves
    present = [sep for sep in _AMBIGUOUS_SEPARATORS if sep in path]
    laxes = (False, True) if any(mark in path for mark in _PARAMS) or "./" in path + "/" else (False,)
    readings = [_segments(path, combo, lax) for lax in laxes
                for n in range(len(present) + 1) for combo in combinations(present, n)]
    return tuple(dict.fromkeys(readings)), query


def _decode_query_part(text: str) -> str:
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    raw, i = bytearray(), 0
    while i < len(text):
        escape = text[i + 1 : i + 3]
        if text[i] == "%" and len(escape) == 2 and set(escape) <= _HEX:
            raw.append(int(escape, 16))
            i += 3
        else:
            raw += text[i].encode()
            i += 1
    return raw.decode("utf-8", "replace")


def _query_values(query: str, key: str, fold: bool = False) -> list[str]:
    """Every value of `key` in `query`; `&` and `;` both separate (some servers split on `;`).
    With `fold`, keys compare and values come back lower-case."""
    values = []
    for item in query.replace(";", "&").split("&"):
        k, eq, v = item.partition("=")
        k = _decode_query_part(k)
        if (k.lower() if fold else k) == key:
            v = _decode_query_part(v) if eq else ""
            values.append(v.lower() if fold else v)
    return values


def _query_holds(conditions: tuple, query: str, *, every: bool, fold: bool = False) -> bool:
    for key, value in conditions:
        values = _query_values(query, key, fold)
        if every:
            if not values or any(v != value for v in values):
                return False
        elif value not in values:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Globs
# ---------------------------------------------------------------------------------------------


def _segment_match(parts: tuple, seg: str) -> bool:
    """Whether `seg` matches a segment pattern split on '*' (one part: a literal)."""
    if len(parts) == 1:
        return seg == parts[0]
    first, *middle, last = parts
    if len(seg) < len(first) + len(last) or not seg.startswith(first) or not seg.endswith(last):
        return False
    pos, end = len(first), len(seg) - len(last)
    for part in middle:
        pos = seg.find(part, pos, end)
        if pos == -1:
            return False
        pos += len(part)
    return True


def _glob(pattern: tuple, segments: tuple) -> bool:
    """Wildcard matching over segments, `**` being the star (the classic backtracking loop)."""
    p = s = 0
    star, mark = -1, 0
    while s < len(segments):
        if p < len(pattern) and pattern[p] != "**" and _segment_match(pattern[p], segments[s]):
            p += 1
            s += 1
        elif p < len(pattern) and pattern[p] == "**":
            star, mark = p, s
            p += 1
        elif star != -1:
            p, mark = star + 1, mark + 1
            s = mark
        else:
            return False
    while p < len(pattern) and pattern[p] == "**":
        p += 1
    return p == len(pattern)


# ---------------------------------------------------------------------------------------------
# Rule grammar
# ---------------------------------------------------------------------------------------------


def _parse_methods(text: str, action: str) -> frozenset | str:
    if text == "*":
        return "*"
    methods = set()
    for m in text.split(","):
        if not m:
            raise ValueError(f"empty method in {text!r}: write 'GET,HEAD' (no spaces) or '*'")
        if "*" in m:
            raise ValueError(f"'*' stands alone for every method, not inside {text!r}")
        if not set(m) <= _TCHAR:
            raise ValueError(f"invalid method {m!r}")
        m = m.upper()
        if m == "CONNECT":
            raise ValueError("CONNECT is decided by the domain rules (allowed_domains), not by HTTP rules")
        if m in REFUSED_METHODS and action == "allow":
            raise ValueError(f"{m} is always refused and cannot be allowed: {REFUSED_METHODS[m]}")
        methods.add(m)
    return frozenset(methods)


def _compile_path(path: str) -> tuple[str, tuple]:
    _check_chars(path)
    path = _canonical_escapes(path)
    for sep in _AMBIGUOUS_SEPARATORS:
        if sep in path:
            raise ValueError(
                f"{sep!r} in a path pattern: servers disagree on whether it separates segments, "
                "so requests carrying it are refused whenever the readings decide differently"
            )
    segs = path[1:].split("/")
    if segs and segs[-1] == "":
        segs.pop()  # a trailing slash does not matter, as in requests
    compiled = []
    for seg in segs:
        if seg == "":
            raise ValueError("empty path segment ('//')")
        if seg in (".", ".."):
            raise ValueError(f"{seg!r} segment: write the path as it is after resolving dot segments")
        if seg == "**":
            if compiled and compiled[-1] == "**":
                continue  # '**/**' is '**'
            compiled.append("**")
        elif "**" in seg:
            raise ValueError(f"'**' must be a whole segment, as in '/a/**' (not {seg!r})")
        else:
            compiled.append(tuple(seg.split("*")))
    return "/" + "/".join(segs), tuple(compiled)


def _parse_conditions(text: str) -> tuple:
    conditions = []
    for item in text.split("&"):
        key, eq, value = item.partition("=")
        if not key or not eq:
            raise ValueError(f"query condition {item!r}: expected KEY=VALUE, as in '?service=git-receive-pack'")
        if "*" in item:
            raise ValueError(f"query condition {item!r}: values are literal, '*' is not a wildcard there")
        _canonical_escapes(item)
        conditions.append((_decode_query_part(key), _decode_query_part(value)))
    return tuple(conditions)


def parse_rule(text: str, action: str | None = None) -> HttpRule:
    """Compile `[allow|deny] METHODS HOST/PATH[?K=V]`; `action` applies when the text has none.

    ValueError says what is wrong (without repeating the rule: callers add it).
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a string, got {type(text).__name__}")
    words = text.split()
    if words and words[0].lower() in ("allow", "deny"):
        if action is not None and words[0].lower() != action:
            raise ValueError(f"says {words[0]!r} but is listed as {action!r}")
        action, words = words[0].lower(), words[1:]
    if action not in ("allow", "deny"):
        raise ValueError("no action: start with 'allow' or 'deny', as in 'deny POST github.com/**'")
    if len(words) != 2:
        raise ValueError(
            "expected 'METHODS HOST/PATH', as in 'GET,HEAD github.com/**' or '* api.example.com/v1/**'"
        )
    method_text, target = words
    methods = _parse_methods(method_text, action)
    if "://" in target:
        raise ValueError("drop the scheme: write 'github.com/**', not 'https://github.com/**'")
    if target.startswith("/"):
        raise ValueError("a rule starts with the host, as in 'github.com/**'")
    if target.startswith("["):
        close = target.find("]")
        slash = target.find("/", close if close != -1 else 0)
    else:
        slash = target.find("/")
    if slash == -1:
        raise ValueError(f"no path: write {target + '/**'!r} for every path on {target!r}")
    host_text, rest = target[:slash], target[slash:]
    try:
        host = parse_host_pattern(host_text)
    except ValueError as exc:
        raise ValueError(f"host {host_text!r}: {exc}") from None
    path, question, query = rest.partition("?")
    canonical, segments = _compile_path(path)
    conditions = _parse_conditions(query) if question else ()
    if action == "deny":  # deny rules ignore letter case: compare lower-case with lower-case
        segments = tuple(seg if seg == "**" else tuple(part.lower() for part in seg) for seg in segments)
        conditions = tuple((k.lower(), v.lower()) for k, v in conditions)
    return HttpRule(action, methods, host, canonical, conditions, text.strip(), segments)


# ---------------------------------------------------------------------------------------------
# The rule set
# ---------------------------------------------------------------------------------------------


def refuse_method(method: str) -> str | None:
    """Why `method` is refused whatever the rules say (TRACE, TRACK), or None."""
    return REFUSED_METHODS.get(method.upper()) if isinstance(method, str) else "not a method"


def _describe(rules) -> str:
    return ", ".join(repr(r.text) for r in rules)


class HttpRules:
    """A compiled, immutable set of HTTP rules.

    `rules`: HttpRule objects, or strings carrying their action (`"deny POST github.com/**"`).
    `default`: what hosts no allow rule names get ("allow" or "deny").
    """

    __slots__ = ("rules", "default", "_deny", "_allow")

    def __init__(self, rules=(), default: str = "allow"):
        if default not in ("allow", "deny"):
            raise ValueError(f"default {default!r}: expected 'allow' or 'deny'")
        compiled = []
        for rule in (rules,) if isinstance(rules, str) else rules:
            if not isinstance(rule, HttpRule):
                try:
                    rule = parse_rule(rule)
                except ValueError as exc:
                    raise ValueError(f"HTTP rule {rule!r}: {exc}") from None
            compiled.append(rule)
        put = object.__setattr__
        put(self, "rules", tuple(compiled))
        put(self, "default", default)
        put(self, "_deny", tuple(r for r in compiled if r.action == "deny"))
        put(self, "_allow", tuple(r for r in compiled if r.action == "allow"))

    @classmethod
    def compile(cls, allow=(), deny=(), default: str = "allow") -> HttpRules:
        """From separate lists (a policy's `allow = [...]`, `deny = [...]`)."""
        rules = []
        for action, texts in (("deny", deny), ("allow", allow)):
            for text in (texts,) if isinstance(texts, str) else texts:
                try:
                    rules.append(parse_rule(text, action))
                except ValueError as exc:
                    raise ValueError(f"HTTP {action} rule {text!r}: {exc}") from None
        return cls(rules, default)

    def __setattr__(self, name, value):
        raise AttributeError("HttpRules is immutable")

    def __repr__(self):
        return f"HttpRules({[r.text for r in self.rules]}, default={self.default!r})"

    def covers(self, host: str) -> bool:
        """Whether requests to `host` can be refused by a rule or the default (so need inspecting)."""
        try:
            name = normalize_host(host)
        except ValueError:
            return True
        return self.default == "deny" or any(host_in(r.host, name) for r in self.rules)

    def decide(self, method: str, host: str, path: str) -> HttpDecision:
        """The decision on one request: `path` is the request target (path and query)."""
        if not isinstance(method, str) or not method or not set(method) <= _TCHAR:
            return HttpDecision(False, "", f"invalid method {method!r}", BAD_REQUEST)
        method = method.upper()
        if method in REFUSED_METHODS:
            return HttpDecision(False, "", f"{method} is refused: {REFUSED_METHODS[method]}", REFUSED_METHOD)
        if method == "CONNECT":
            return HttpDecision(False, "", "CONNECT is decided by the domain rules, not HTTP rules", BAD_REQUEST)
        try:
            name = normalize_host(host)
        except ValueError as exc:
            return HttpDecision(False, "", f"invalid host {host!r}: {exc}", BAD_REQUEST)
        if path == "*" and method == "OPTIONS":
            readings, query = ((),), ""  # `OPTIONS *` asks about the server, judged as the root
        else:
            try:
                readings, query = normalize_path(path)
            except ValueError as exc:
                return HttpDecision(False, "", f"invalid request path {path!r}: {exc}", BAD_REQUEST)
        first = self._decide(method, name, readings[0], query)
        for segments in readings[1:]:
            other = self._decide(method, name, segments, query)
            if other.allowed != first.allowed:
                return HttpDecision(
                    False, (first if not first.allowed else other).rule_text,
                    f"ambiguous path {path!r}: whether an encoded slash or backslash separates segments "
                    "changes the decision, so it is refused",
                    BAD_REQUEST,
                )
        return first

    def _decide(self, method: str, name: str, segments: tuple, query: str) -> HttpDecision:
        shown = f"{method} {name}/{'/'.join(segments)}"
        for rule in self._deny:
            if rule.matches(method, name, segments, query):
                return HttpDecision(False, rule.text, f"{shown} is denied by HTTP rule {rule.text!r}", DENY_RULE)
        for rule in self._allow:
            if rule.matches(method, name, segments, query):
                return HttpDecision(True, rule.text, f"allowed by HTTP rule {rule.text!r}", ALLOW)
        ruled = [r for r in self._allow if host_in(r.host, name)]
        if ruled:
            return HttpDecision(
                False, "", f"{shown} matches no HTTP allow rule for {name} (allowed: {_describe(ruled)})", NOT_ALLOWED
            )
        if self.default == "allow":
            return HttpDecision(True, "", f"no HTTP rule for {name}; the default allows", ALLOW)
        return HttpDecision(False, "", f"no HTTP rule allows {shown} (the default is deny)", DEFAULT_DENY)
