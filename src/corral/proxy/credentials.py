"""Credentials the sandbox uses without ever holding them.

Rules of this module: every decision about where a credential's real value may go lives here,
and it does no I/O (its callers pass headers and bytes in and send what comes back). A secret
value never appears in a repr, a reason or an error; the only places it leaves this module are
the request headers and request bodies built for the hosts it is bound to.

The scheme:

- Each credential variable in the sandbox holds a placeholder (`new_placeholder`), random and
  new every run; the real value stays in the proxy's memory.
- `Injector.prepare_request` runs on every request the proxy can read (plain HTTP, or HTTPS it
  terminates), in this order:
  1. TRACE and TRACK are blocked: they echo the request, injected credential included.
  2. A placeholder on its way to a host its credential is not bound to blocks the request and
     is flagged as an exfiltration attempt (`exfiltration=True`). Headers, the request target
     and the body prefix are searched in any letter case and every form `forms` knows
     (escaped characters, hex, UTF-16, base64 and base32 at every offset, so
     `Basic base64(user:placeholder)` is caught whatever the user name), also inside
     percent-encoding (twice). This is an alarm, not the boundary: a determined
     program can encode a placeholder in ways no search sees, but the placeholder is worth
     nothing; the real value was never in the sandbox.
  3. A request to a bound host over plaintext is blocked unless every credential bound to that
     host sets `allow_plaintext`.
  4. For each credential bound to the host, every client-sent header of the credential's
     header name is removed (replaced, never merged) and one header is put back: the client's
     own one with the placeholder swapped for the value, if it carried the placeholder (raw,
     as in `Bearer <placeholder>`, or inside `Basic base64(user:<placeholder>)`); else the
     credential's template rendered (`Authorization: Bearer {value}`, `x-api-key: {value}`,
     or `Authorization: Basic base64(basic_user:{value})`). Placeholders elsewhere in a
     request to a bound host are left alone (they are worthless there). When two credentials
     bound to the host send the same header, the one the client presented wins, else the one
     bound most specifically (exact name over `*.suffix`, longer suffix first).
  5. Bodies are rewritten only for credentials with `in_body` (`InjectResult.substitute_body`;
     stream the body through `Injector.body_substituter(host)`). Beware: a body sent to a
     bound host may be stored and published there (a gist, an issue), so `in_body` hands the
     secret to anything the sandbox can write on that host.
- Responses pass through `Injector.redactor()` / `redact()` / `redact_headers()`: every real
  value, in every form `forms` knows, goes back to the placeholder (or, inside a longer
  base64/base32 text, to the encoding of `*`s), also when a value is split across chunks.
  Compressed bodies hide values from it: the proxy should ask bound hosts for identity
  encoding.
"""

from __future__ import annotations

import binascii
import os

from .._values import frozen
from .addresses import normalize_host
from .httprules import host_in, parse_host_pattern, refuse_method

MIN_REDACT_LENGTH = 8  # shorter values are injected but not redacted: that would hit innocent bytes
MIN_PLACEHOLDER_LENGTH = 16
PLACEHOLDER_PREFIX = "corral-ph-"
DEFAULT_HEADER = "Authorization: Bearer {value}"
ANYWHERE = "*"  # header mode: swap the placeholder wherever the client put it in the headers

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_PLACEHOLDER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset(b"0123456789abcdefABCDEF")
# Headers a credential may not be sent in: framing, routing and hop-by-hop headers.
FORBIDDEN_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
    "keep-alive", "proxy-authorization", "proxy-authenticate", "proxy-connection", "expect",
})


def _printable_ascii(text: str) -> bool:
    return all(" " <= c <= "~" for c in text)


def _b64(data: bytes, urlsafe: bool = False) -> bytes:
    encoded = binascii.b2a_base64(data, newline=False)
    return encoded.translate(_URLSAFE) if urlsafe else encoded


_URLSAFE = bytes.maketrans(b"+/", b"-_")


# ---------------------------------------------------------------------------------------------
# Credentials and placeholders
# ---------------------------------------------------------------------------------------------


class Credential:
    """A secret, the hosts it may be sent to, and how it is sent. Its repr hides the value.

    `header`: a template with one `{value}` (`"x-api-key: {value}"`); `basic_user`: send
    `Authorization: Basic base64(basic_user:value)` instead (git over https:
    `basic_user="x-access-token"`); neither, and not `in_body`: `Authorization: Bearer {value}`.
    `header="*"` (`ANYWHERE`): send nothing of its own; swap the placeholder for the value in
    whichever request header the client put it (raw, or inside `Basic base64(user:...)`), as
    srt's masked credentials work.
    `in_body`: also swap the placeholder for the value in request bodies to bound hosts.
    `allow_plaintext`: may be sent over plain http.
    """

    __slots__ = ("name", "value", "hosts", "header", "basic_user", "in_body", "allow_plaintext",
                 "patterns", "header_name", "anywhere", "family", "_display", "_prefix", "_suffix")

    def __init__(self, name, value, hosts, header=None, basic_user=None, in_body=False, allow_plaintext=False,
                 family=None):
        put = object.__setattr__
        if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS or name[0].isdigit():
            raise ValueError(f"credential name {name!r}: expected a variable name (letters, digits, '_')")
        where = f"credential {name}"
        if not isinstance(value, str):
            raise ValueError(f"{where}: the value must be a string, got {type(value).__name__}")
        if not _printable_ascii(value) or value != value.strip():
            raise ValueError(f"{where}: the value has control, non-ASCII or surrounding space characters")
        if not value:
            raise ValueError(f"{where}: the value is empty")
        hosts = (hosts,) if isinstance(hosts, str) else tuple(hosts)
        if not hosts:
            raise ValueError(f"{where}: no hosts; a credential is bound to the hosts it may be sent to")
        patterns = []
        for text in hosts:
            try:
                pattern = parse_host_pattern(text) if isinstance(text, str) else None
            except ValueError as exc:
                raise ValueError(f"{where}: host {text!r}: {exc}") from None
            if pattern is None:
                raise ValueError(f"{where}: host {text!r}: expected a string")
            if pattern.kind == "any":
                raise ValueError(f"{where}: host '*' would send the secret everywhere; list its hosts")
            if pattern.kind == "wildcard" and "." not in pattern.host:
                raise ValueError(f"{where}: host {text!r} is a whole top-level domain; list its hosts")
            patterns.append(pattern)
        if header is not None and basic_user is not None:
            raise ValueError(f"{where}: give either header or basic_user (basic auth is the Authorization header)")
        if basic_user is not None:
            if not isinstance(basic_user, str) or not _printable_ascii(basic_user) or ":" in basic_user:
                raise ValueError(f"{where}: basic_user must be printable ASCII without ':'")
            template = None
            display, prefix, suffix = b"Authorization", b"Basic ", b""
        elif header == ANYWHERE:
            template = ANYWHERE
            display = prefix = suffix = None
        else:
            template = header if header is not None else (None if in_body else DEFAULT_HEADER)
            display = prefix = suffix = None
            if template is not None:
                display, prefix, suffix = _parse_template(where, template)
        put(self, "name", name)
        put(self, "value", value)
        put(self, "hosts", hosts)
        put(self, "header", template)
        put(self, "basic_user", basic_user)
        put(self, "in_body", bool(in_body))
        put(self, "allow_plaintext", bool(allow_plaintext))
        put(self, "patterns", tuple(patterns))
        put(self, "header_name", display.lower() if display else None)  # lower-case bytes; None: no own header
        put(self, "anywhere", template == ANYWHERE)
        # Values taken from one source (several `extract` captures) may share a header: the
        # one whose placeholder the client presents is sent, else the first.
        put(self, "family", family or name)
        put(self, "_display", display)
        put(self, "_prefix", prefix)
        put(self, "_suffix", suffix)

    def __setattr__(self, name, value):
        raise AttributeError("Credential is immutable")

    __delattr__ = __setattr__

    def __repr__(self):
        how = f"basic_user={self.basic_user!r}" if self.basic_user is not None else f"header={self.header!r}"
        return (
            f"Credential(name={self.name!r}, value=<hidden>, hosts={self.hosts!r}, {how}, "
            f"in_body={self.in_body}, allow_plaintext={self.allow_plaintext})"
        )

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a Credential is not pickled: its value stays in the proxy's memory")

    def bound_by(self, name: str):
        """The most specific of this credential's patterns covering canonical host `name`, or None."""
        hits = [p for p in self.patterns if host_in(p, name)]
        return min(hits, key=_specificity) if hits else None

    def basic_credentials(self, secret: str) -> bytes:
        """`basic_user:secret`, the text base64-encoded in a Basic Authorization header."""
        return f"{self.basic_user}:{secret}".encode("ascii")

    def render(self, secret: str | None = None) -> tuple[bytes, bytes]:
        """The (name, value) header this credential sends, with `secret` (default: the real value)."""
        if self._display is None:
            raise ValueError(f"credential {self.name} is sent in request bodies only; it has no header")
        secret = self.value if secret is None else secret
        if self.basic_user is not None:
            middle = _b64(self.basic_credentials(secret))
        else:
            middle = secret.encode("ascii")
        return self._display, self._prefix + middle + self._suffix


def _parse_template(where: str, template) -> tuple[bytes, bytes, bytes]:
    if not isinstance(template, str) or not _printable_ascii(template):
        raise ValueError(f"{where}: header template must be printable ASCII, as in 'x-api-key: {{value}}'")
    name, colon, rest = template.partition(":")
    if not colon or not name or not set(name) <= _TCHAR:
        raise ValueError(f"{where}: header template {template!r}: expected 'Header-Name: ...{{value}}...'")
    if name.lower() in FORBIDDEN_HEADERS:
        raise ValueError(f"{where}: header {name!r} carries framing or routing, not credentials")
    rest = rest.strip()
    if rest.count("{value}") != 1:
        raise ValueError(f"{where}: header template {template!r} needs exactly one '{{value}}'")
    prefix, _, suffix = rest.partition("{value}")
    return name.encode("ascii"), prefix.encode("ascii"), suffix.encode("ascii")


def _specificity(pattern) -> tuple:
    # exact names and addresses first, then wildcards with the longest suffix first
    return (0 if pattern.kind in ("name", "ip") else 1, -len(pattern.host))


def _slug(name: str) -> str:
    slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in str(name).lower())
    return "-".join(part for part in slug.split("-") if part)[:24].strip("-") or "secret"


def new_placeholder(name: str) -> str:
    """A fresh random stand-in for credential `name`: `corral-ph-<slug>-<32 hex digits>`."""
    return f"{PLACEHOLDER_PREFIX}{_slug(name)}-{os.urandom(16).hex()}"


def session_placeholder(token_line: str, session: str, name: str) -> str:
    """The stand-in for credential `name` in late-bound session `session` (`corral proxy
    --sessions`): derived, not random, so that whoever wrote the session's token line can hand
    the agent its placeholders without asking the proxy. `corral-ph-<slug>-` + the first 32
    hex digits of SHA-256 of "token_line NUL session NUL name". Not a secret: a placeholder
    is worth nothing outside its own session (another session's injector does not know it)."""
    import hashlib

    digest = hashlib.sha256(f"{token_line}\0{session}\0{name}".encode()).hexdigest()[:32]
    return f"{PLACEHOLDER_PREFIX}{_slug(name)}-{digest}"


# ---------------------------------------------------------------------------------------------
# Finding placeholders
# ---------------------------------------------------------------------------------------------


def _percent_decode(data: bytes) -> bytes:
    if b"%" not in data:
        return data
    first, *rest = data.split(b"%")
    out = [first]
    for part in rest:
        if len(part) >= 2 and part[0] in _HEX and part[1] in _HEX:
            out.append(bytes((int(part[:2], 16),)))
            out.append(part[2:])
        else:
            out.append(b"%")
            out.append(part)
    return b"".join(out)


def base64_fragments(data: bytes) -> tuple[bytes, ...]:
    """Base64 text that appears in the encoding of anything containing `data`, at each alignment.

    Base64 encodes 3 bytes at a time, so where `data` sits (the length of `user:` before it)
    decides how it is encoded. For each of the 3 alignments, the characters that encode only
    bits of `data` are the same whatever surrounds them (standard and URL-safe alphabets).
    """
    from .forms import base64_cores

    out = []
    for core in base64_cores(data):
        if core:
            out += [core, core.translate(_URLSAFE)]
    return tuple(dict.fromkeys(out))


_forms_cache: dict = {}


def _placeholder_patterns(placeholder: str):
    """The PatternSet finding one placeholder in any form (see `forms`), in any letter case."""
    patterns = _forms_cache.get(placeholder)
    if patterns is None:
        from . import forms

        raw = placeholder.encode("ascii")
        entries = [(forms.char_units(raw, fold=True), None), (forms.hex_units(raw), None),
                   (forms.utf16_units(raw, fold=True), None), (forms.utf16_units(raw, True, fold=True), None)]
        for text in dict.fromkeys((raw, raw.lower(), raw.upper())):
            entries += [(forms.wrapped(core, b64=True), None) for core in forms.base64_cores(text)]
            entries += [(forms.wrapped(core), None) for core in forms.base32_cores(text)]
        patterns = forms.PatternSet(_unique(entries))
        if len(_forms_cache) >= 1024:
            _forms_cache.clear()
        _forms_cache[placeholder] = patterns
    return patterns


def _unique(entries: list) -> list:
    seen, out = set(), []
    for form, new in entries:
        if form and form not in seen:
            seen.add(form)
            out.append((form, new))
    return out


def find_placeholders(data: bytes, known: dict) -> list:
    """The credentials (values of `known`, placeholder -> Credential) whose placeholder `data` carries.

    In any letter case and any form `forms` knows (characters raw or percent-, JSON- or
    HTML-escaped, hex, UTF-16, base64 and base32 at any alignment and in either alphabet), also
    inside percent-encoding (once or twice). Each credential once, in `known`'s order.
    """
    if not data or not known:
        return []
    data = bytes(data)
    once = _percent_decode(data)
    spaces = tuple(dict.fromkeys((data, once, _percent_decode(once))))
    found = []
    for placeholder, cred in known.items():
        patterns = _placeholder_patterns(placeholder)
        if cred not in found and any(patterns.search(text) for text in spaces):
            found.append(cred)
    return found


# ---------------------------------------------------------------------------------------------
# Streaming replacement
# ---------------------------------------------------------------------------------------------


class StreamReplacer:
    """Replaces byte strings in a stream, also across chunk boundaries.

    Keeps back only a tail that could be the start of a match (at most len(longest)-1 bytes),
    so a stream of events (server-sent events) is not delayed by it; `flush()` at the end
    returns the rest, replaced. Earliest match first; at one position the longest. Its repr
    never shows what it replaces.
    """

    __slots__ = ("_pairs", "_keep", "_tail", "_firsts", "count")

    def __init__(self, pairs):
        self._pairs = tuple((old, new) for old, new in dict(pairs).items() if old)
        self._keep = max((len(old) for old, _ in self._pairs), default=1) - 1
        self._firsts = frozenset(old[0] for old, _ in self._pairs)
        self._tail = b""
        self.count = 0  # replacements made (for the audit log)

    def _hold_from(self, buf: bytes) -> int:
        """Where the tail that may begin a match starts (len(buf): nothing to hold)."""
        for j in range(max(0, len(buf) - self._keep), len(buf)):
            if buf[j] in self._firsts:
                tail = buf[j:]
                if any(old.startswith(tail) for old, _ in self._pairs):
                    return j
        return len(buf)

    def __repr__(self):
        return f"{type(self).__name__}({len(self._pairs)} patterns, {len(self._tail)} bytes held)"

    def _next(self, buf: bytes, start: int):
        best = None
        for old, new in self._pairs:
            pos = buf.find(old, start)
            if pos != -1 and (best is None or pos < best[0] or (pos == best[0] and len(old) > len(best[1]))):
                best = (pos, old, new)
        return best

    def _run(self, buf: bytes, final: bool) -> bytes:
        keep_from = len(buf) if final else self._hold_from(buf)
        out, i = [], 0
        while True:
            hit = self._next(buf, i)
            if hit is None or hit[0] >= keep_from:
                break
            pos, old, new = hit
            self.count += 1
            out.append(buf[i:pos])
            out.append(new)
            i = pos + len(old)
        cut = max(i, keep_from)
        out.append(buf[i:cut])
        self._tail = buf[cut:]
        return b"".join(out)

    def feed(self, chunk: bytes) -> bytes:
        """The replaced bytes that are safe to send now (possibly fewer than were fed)."""
        if not self._pairs:
            return bytes(chunk)
        return self._run(self._tail + bytes(chunk), final=False)

    def flush(self) -> bytes:
        """The rest, at the end of the stream."""
        return self._run(self._tail, final=True) if self._pairs else b""


class StreamRedactor:
    """Real values, in every form `forms` knows, back to placeholders (or to `*`s where only part
    of an encoding could be replaced), also across chunk boundaries; holds back only a tail that
    could begin such a form. Same interface as StreamReplacer: feed, flush, count."""

    __slots__ = ("_scanner",)

    def __init__(self, patterns):
        from .forms import Scanner

        self._scanner = Scanner(patterns)

    @property
    def count(self) -> int:
        """Replacements made (for the audit log); the proxy resets it after reading."""
        return self._scanner.count

    @count.setter
    def count(self, n: int) -> None:
        self._scanner.count = n

    def feed(self, chunk: bytes) -> bytes:
        return self._scanner.feed(chunk)

    def flush(self) -> bytes:
        return self._scanner.flush()

    def could_begin(self, tail: bytes) -> bool:
        """Whether `tail` could be the beginning of a form this redactor replaces."""
        return self._scanner.could_begin(tail)

    def __repr__(self):
        return repr(self._scanner).replace("Scanner", type(self).__name__, 1)


# ---------------------------------------------------------------------------------------------
# The injector
# ---------------------------------------------------------------------------------------------


@frozen
class InjectResult:
    headers: list  # the headers to send: (name, value) bytes pairs; may hold real values
    action: str  # "forward" or "block"
    reason: str  # never a secret value
    injected: tuple = ()  # names of the credentials put into the headers
    exfiltration: bool = False  # a placeholder was on its way to a host it is not bound to
    substitute_body: bool = False  # stream the body through Injector.body_substituter(host)
    status: int = 200  # for "block": the status to answer the client with (403, 405 or 400)
    target: bytes | None = None  # the request target to send instead (a placeholder swapped in it)
    involved: tuple = ()  # names of the credentials whose placeholders the request carried (audit)

    @property
    def blocked(self) -> bool:
        return self.action == "block"


def _result_repr(self) -> str:
    names = [n.decode("latin-1") for n, _ in self.headers]
    return (
        f"InjectResult(headers=<{len(names)} headers: {', '.join(names)}>, action={self.action!r}, "
        f"reason={self.reason!r}, injected={self.injected!r}, exfiltration={self.exfiltration}, "
        f"substitute_body={self.substitute_body}, status={self.status})"
    )


InjectResult.__repr__ = _result_repr  # headers may hold real values: names only


def _block(headers, reason: str, status: int = 403, exfiltration: bool = False, involved=()) -> InjectResult:
    return InjectResult(list(headers), "block", reason, (), exfiltration, False, status, involved=tuple(involved))


def _substitute(value: bytes, placeholder: bytes, secret: bytes) -> bytes | None:
    """`value` with the placeholder swapped for the secret, raw or inside `Basic <base64>`; None if absent."""
    if placeholder in value:
        return value.replace(placeholder, secret)
    scheme, _, encoded = value.strip().partition(b" ")
    if scheme.lower() == b"basic" and encoded:
        try:
            decoded = binascii.a2b_base64(encoded.strip(), strict_mode=True)
        except (binascii.Error, ValueError):
            return None
        if placeholder in decoded:
            return scheme + b" " + _b64(decoded.replace(placeholder, secret))
    return None


class Injector:
    """Swaps placeholders for real values in requests to bound hosts, and back in responses.

    `bindings`: placeholder -> Credential, one placeholder per credential.
    """

    __slots__ = ("_bindings", "_placeholder", "_patterns", "_values", "_bound")

    def __init__(self, bindings: dict):
        names, creds, placeholder_of = set(), [], {}
        for placeholder, cred in dict(bindings).items():
            if not isinstance(cred, Credential):
                raise ValueError(f"binding for a placeholder: expected a Credential, got {type(cred).__name__}")
            if not isinstance(placeholder, str) or len(placeholder) < MIN_PLACEHOLDER_LENGTH or not (
                set(placeholder) <= _PLACEHOLDER_CHARS
            ):
                raise ValueError(
                    f"credential {cred.name}: a placeholder is at least {MIN_PLACEHOLDER_LENGTH} characters "
                    "of A-Z a-z 0-9 - . _ ~ (use new_placeholder)"
                )
            if cred.name in names:
                raise ValueError(f"credential {cred.name}: bound twice (one placeholder per credential)")
            if placeholder in cred.value or cred.value in placeholder:
                raise ValueError(f"credential {cred.name}: the placeholder and the value overlap")
            names.add(cred.name)
            creds.append(cred)
            placeholder_of[cred.name] = placeholder
        _check_conflicts(creds)
        put = object.__setattr__
        put(self, "_bindings", dict(bindings))
        put(self, "_placeholder", placeholder_of)
        put(self, "_patterns", None)  # compiled on first use (tens of ms per credential)
        put(self, "_values", [(c.value.encode("ascii"), placeholder_of[c.name].encode("ascii"))
                              for c in creds if len(c.value) >= MIN_REDACT_LENGTH])
        put(self, "_bound", {})  # host as given -> bound(host): asked for on every request

    def __setattr__(self, name, value):
        raise AttributeError("Injector is immutable")

    def __repr__(self):
        return f"Injector({sorted(self._placeholder)})"

    def bound(self, host: str) -> list:
        """Credentials bound to `host`, most specifically bound first."""
        found = self._bound.get(host)
        if found is None:
            try:
                name = normalize_host(host)
            except ValueError:
                return []
            hits = [(c.bound_by(name), i, c) for i, c in enumerate(self._bindings.values())]
            hits = sorted((h for h in hits if h[0] is not None), key=lambda h: (_specificity(h[0]), h[1]))
            found = [c for _, _, c in hits]
            if len(self._bound) >= 4096:  # the sandbox picks the names: keep the memory bounded
                self._bound.clear()
            self._bound[host] = found
        return list(found)

    def prepare_request(self, method, host, scheme_is_tls, headers, body_prefix=None, *, target=b"") -> InjectResult:
        """The headers to send upstream, or why the request is blocked (see the module docstring).

        `target`: the request target (path and query), searched for placeholders too;
        `body_prefix`: as much of the body as the caller has read (only that is searched).
        """
        headers = [(bytes(n), bytes(v)) for n, v in headers]
        why = refuse_method(method)
        if why is not None:
            return _block(headers, f"{method} is refused: {why}", 405)
        try:
            name = normalize_host(host)
        except ValueError as exc:
            return _block(headers, f"invalid host {host!r}: {exc}", 400)
        bound = self.bound(name)
        bound_names = {c.name for c in bound}
        if isinstance(target, str):
            target = target.encode("latin-1", "replace")
        carried = b"\r\n".join([target or b"", *(n + b": " + v for n, v in headers), body_prefix or b""])
        foreign = [c for c in find_placeholders(carried, self._bindings) if c.name not in bound_names]
        if foreign:
            listed = ", ".join(f"{c.name} (bound to {', '.join(c.hosts)})" for c in foreign)
            return _block(
                headers,
                f"request to {name} carries the placeholder of credential {listed}: blocked as an exfiltration attempt",
                403,
                exfiltration=True,
                involved=[c.name for c in foreign],
            )
        if not bound:
            return InjectResult(headers, "forward", f"no credential is bound to {name}")
        if not scheme_is_tls:
            # A credential that only swaps placeholders is at stake only when one is present.
            carried_here = {c.name for c in find_placeholders(carried, {self._placeholder[c.name]: c for c in bound})}
            plain = [c.name for c in bound if not c.allow_plaintext and (not c.anywhere or c.name in carried_here)]
            if plain:
                return _block(
                    headers,
                    f"would send credential {', '.join(plain)} in plaintext to {name}: use https "
                    "(or set allow_plaintext on the credential)",
                    403,
                )
        injected = []
        done: set[bytes] = set()
        for cred in bound:
            if cred.header_name is None or cred.header_name in done:
                continue
            done.add(cred.header_name)
            candidates = [c for c in bound if c.header_name == cred.header_name]
            headers, used = self._inject(headers, cred.header_name, candidates)
            injected.append(used)
        swappers = [c for c in bound if c.anywhere]
        new_target = None
        if swappers:
            headers, swapped = self._swap_anywhere(headers, swappers)
            injected += swapped
            # Also in the URL (`?key=<placeholder>`, as some APIs take keys); only to bound hosts.
            for cred in swappers:
                ph = self._placeholder[cred.name].encode("ascii")
                current = new_target if new_target is not None else target
                if current and ph in current:
                    new_target = current.replace(ph, cred.value.encode("ascii"))
                    if cred.name not in injected:
                        injected.append(cred.name)
        body = any(c.in_body for c in bound)
        what = ", ".join(injected) if injected else "none in headers"
        return InjectResult(headers, "forward", f"credentials for {name}: {what}", tuple(injected), False, body,
                            target=new_target)

    def _inject(self, headers: list, header_name: bytes, candidates: list) -> tuple[list, str]:
        at, sent = None, None
        kept = []
        for n, v in headers:
            if n.strip().lower() != header_name:
                kept.append((n, v))
                continue
            if at is None:
                at = len(kept)
            for cred in candidates:
                if sent is None:
                    swapped = _substitute(v, self._placeholder[cred.name].encode("ascii"), cred.value.encode("ascii"))
                    if swapped is not None:
                        sent = (cred, (n, swapped))
        if sent is None:
            cred = candidates[0]
            sent = (cred, cred.render())
        kept.insert(len(kept) if at is None else at, sent[1])
        return kept, sent[0].name

    def _swap_anywhere(self, headers: list, creds: list) -> tuple[list, list]:
        used = []
        for cred in creds:
            placeholder = self._placeholder[cred.name].encode("ascii")
            secret = cred.value.encode("ascii")
            out = []
            for n, v in headers:
                swapped = _substitute(v, placeholder, secret)
                if swapped is not None:
                    v = swapped
                    if cred.name not in used:
                        used.append(cred.name)
                out.append((n, v))
            headers = out
        return headers, used

    def placeholder(self, name: str) -> str | None:
        """The placeholder of credential `name` (not secret: for the audit log)."""
        return self._placeholder.get(name)

    def body_substituter(self, host: str) -> StreamReplacer | None:
        """Placeholder -> value in a request body to `host`, for its `in_body` credentials; None if none."""
        pairs = [
            (self._placeholder[c.name].encode("ascii"), c.value.encode("ascii")) for c in self.bound(host) if c.in_body
        ]
        return StreamReplacer(pairs) if pairs else None

    def _redactions(self):
        if self._patterns is None:
            creds = list(self._bindings.values())
            object.__setattr__(self, "_patterns", _redaction_patterns(creds, self._placeholder))
        return self._patterns

    def redactor(self) -> StreamRedactor:
        """A fresh stream redactor for one response body."""
        return StreamRedactor(self._redactions())

    def redact(self, data: bytes) -> bytes:
        """`data` with every real value (and its encodings) replaced by its placeholder."""
        r = self.redactor()
        return r.feed(data) + r.flush()

    def redact_headers(self, headers) -> list:
        """Response headers with every real value replaced by its placeholder."""
        out = []
        for n, v in headers:
            v = bytes(v)
            if self._values and self._redactions().search(v):
                v = _rebase64(v, self._values)
            out.append((bytes(n), self.redact(v)))
        return out


def _check_conflicts(creds: list) -> None:
    """Two credentials may not send the same header to the same host pattern."""
    seen: dict[tuple, str] = {}
    for cred in creds:
        if cred.header_name is None:
            continue
        for pattern in cred.patterns:
            key = (cred.header_name, pattern.kind, pattern.host)
            other, family = seen.setdefault(key, (cred.name, cred.family))
            if other != cred.name and family != cred.family:
                raise ValueError(
                    f"credentials {other} and {cred.name} both send header "
                    f"{cred.header_name.decode()!r} to {pattern.text!r}; bind them to different hosts"
                )


FILLER = b"*"  # what stands in for a value inside an encoding only part of which is replaced


def _refill(filler: bytes, fold: bool = False):
    """Replacement for a base64/base32 core: `filler`'s characters in place of the core's, line breaks kept."""
    def put(match: bytes) -> bytes:
        fill = filler.lower() if fold and match != match.upper() else filler
        it = iter(fill)
        return bytes(b if b in (10, 13) else next(it) for b in match)
    return put


def _hex_case(new: bytes):
    return lambda match: new.upper() if match != match.lower() else new


def _redaction_patterns(creds: list, placeholder_of: dict):
    """Every form a response may echo a value in, and what replaces it (see `forms`).

    Whole encodings of the value come back as the same encoding of its placeholder (a padded
    base64 value, `Basic base64(user:value)`, hex, UTF-16, escaped characters). Inside a longer
    base64 or base32 text only the characters that encode the value alone are known: they are
    replaced by the encoding of `*`s at the same alignment, so the text keeps its length and
    decodes to `*` where the value was (a few bits of its ends, shared with its neighbours,
    remain).
    """
    from . import forms

    entries = []
    for cred in creds:
        if len(cred.value) < MIN_REDACT_LENGTH:
            continue
        value, ph = cred.value.encode("ascii"), placeholder_of[cred.name].encode("ascii")
        whole = [(_b64(value), _b64(ph)), (_b64(value, True), _b64(ph, True))]
        if cred.basic_user is not None:
            real, fake = cred.basic_credentials(cred.value), cred.basic_credentials(placeholder_of[cred.name])
            whole += [(_b64(real), _b64(fake)), (_b64(real, True), _b64(fake, True))]
        entries += [(forms.literal_units(old), new) for old, new in whole]
        entries.append((forms.char_units(value), ph))
        entries.append((forms.hex_units(value), _hex_case(ph.hex().encode())))
        entries.append((forms.utf16_units(value), ph.decode().encode("utf-16-le")))
        entries.append((forms.utf16_units(value, True), ph.decode().encode("utf-16-be")))
        filler = FILLER * len(value)
        for core, fill in zip(forms.base64_cores(value), forms.base64_cores(filler)):
            entries.append((forms.wrapped(core, b64=True), _refill(fill)))
        for core, fill in zip(forms.base32_cores(value), forms.base32_cores(filler)):
            entries.append((forms.wrapped(core), _refill(fill)))
    return forms.PatternSet(_unique(entries))


def _rebase64(data: bytes, values: list) -> bytes:
    """`data` with each base64 token that decodes to text holding a real value re-encoded with the
    placeholder in its place (`Basic base64(user:value)` for any user): for header values."""
    import re

    def fix(m) -> bytes:
        token = m.group()
        urlsafe = b"-" in token or b"_" in token
        body = token.rstrip(b"=")
        padded = len(body) != len(token)
        std = body.translate(_FROM_URLSAFE) if urlsafe else body
        for skip in range(4):
            part = std[skip:]
            extra = b""
            if len(part) % 4 == 1:
                part, extra = part[:-1], body[len(body) - 1:]
            try:
                decoded = binascii.a2b_base64(part + b"=" * (-len(part) % 4), strict_mode=True)
            except (binascii.Error, ValueError):
                continue
            hits = [(v, p) for v, p in values if v in decoded]
            if not hits:
                continue
            for v, p in hits:
                decoded = decoded.replace(v, p)
            encoded = _b64(decoded, urlsafe)
            if not padded and len(std[skip:]) % 4:  # written without its padding: so is the new one
                encoded = encoded.rstrip(b"=")
            return body[:skip] + encoded + extra
        return token

    if len(data) > 64 * 1024:
        return data
    return re.sub(rb"[A-Za-z0-9+/_-]{12,}=*", fix, data)


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
