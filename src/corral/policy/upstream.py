"""The parent (corporate) proxy: its URL, NO_PROXY matching, and the launcher's environment.

Pure: nothing here opens a socket or reads a file; the environment is passed in.

When the policy does not opt out (native `parent_proxy = false`), the launcher's
`HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` (upper case first, then lower case, as srt reads
them) fill what the policy's parent proxy does not say, field by field, like srt 0.0.83:
a native `[network.parent_proxy]` table is taken as the whole truth (no environment then).
The sandbox never sees these variables: it gets corral's own proxy in them.
"""

from __future__ import annotations


URL_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
NO_PROXY_VARIABLES = ("NO_PROXY", "no_proxy")
# What the launcher's proxy settings may be called; none of them reaches the sandbox as is.
PROXY_VARIABLES = (*URL_VARIABLES, *NO_PROXY_VARIABLES, "ALL_PROXY", "all_proxy")
DEFAULT_PORT = 80  # a proxy URL without a port: the http:// default, as srt, Go and urllib read it


def split_proxy_url(url: str) -> tuple[str, int, str | None]:
    """(host, port, userinfo or None) of a parent proxy URL; ValueError says what is wrong.

    `http://[user[:password]@]host[:port][/]`; a URL without a scheme (`proxy:3128`) is read as
    http:// (curl and srt do the same). The userinfo stays percent-encoded."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("empty proxy URL")
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "http", text
    scheme = scheme.lower()
    if scheme == "https":
        raise ValueError("a TLS connection to the parent proxy (https://) is not supported; use its http:// port")
    if scheme != "http":
        raise ValueError(f"unsupported scheme {scheme}:// (the parent proxy must be an http:// proxy)")
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    userinfo, at, hostport = authority.rpartition("@")
    if any(c.isspace() or not c.isprintable() for c in authority):
        raise ValueError("contains whitespace or control characters")
    if hostport.startswith("["):
        host, close, port = hostport[1:].partition("]")
        if not close or (port and not port.startswith(":")):
            raise ValueError("an IPv6 address must be bracketed as in http://[fd00::1]:3128")
        port = port[1:]
    else:
        host, _, port = hostport.partition(":")
    if not host:
        raise ValueError("no proxy host in the URL")
    if port:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"invalid port {port!r}: expected a number from 1 to 65535")
        number = int(port)
    else:
        number = DEFAULT_PORT
    return host.lower(), number, userinfo if at else None


def redact(url: str) -> str:
    """The URL without its password, for messages (`http://user:***@proxy:3128`)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, sep, rest = "", "", url
    authority, slash, path = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        authority = f"{user}:***@{hostport}" if colon else f"{user}@{hostport}"
    return f"{scheme}{sep}{authority}{slash}{path}"


def split_no_proxy(text: str) -> tuple[str, ...]:
    """A NO_PROXY value (comma- or space-separated) as its entries."""
    return tuple(e for e in text.replace(" ", ",").split(",") if e.strip())


def _loopback(host: str, ip) -> bool:
    if ip is not None:
        from ..proxy.addresses import classify

        return classify(ip) == "loopback"
    return host == "localhost" or host.endswith(".localhost")


def bypasses(no_proxy, host: str, loopback_direct: bool = True) -> bool:
    """Whether a connection to canonical `host` skips the parent proxy (pure, table-tested).

    Entries: `*` (everything); a name, `.name` or `*.name` (that name and every name under
    it); an IP address; a CIDR range (`10.0.0.0/8`); `[v6]` brackets and a `:port` suffix are
    accepted and the port ignored (srt and Go match by host only). Unparsable entries match
    nothing."""
    from ..proxy.addresses import in_networks, parse_ip
    from ..proxy.rules import parse_network

    ip = parse_ip(host)
    if loopback_direct and _loopback(host, ip):
        return True
    for raw in no_proxy:
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if entry.startswith("["):
            entry = entry[1:].partition("]")[0]
        if "/" in entry:
            if ip is None:
                continue
            try:
                if in_networks(ip, (parse_network(entry),)):
                    return True
            except ValueError:
                pass
            continue
        literal = parse_ip(entry)
        if literal is None and entry.count(":") == 1:
            entry = entry.partition(":")[0]  # host:port
            literal = parse_ip(entry)
        if literal is not None:
            if ip is not None and literal == ip:
                return True
            continue
        if ip is not None:
            continue
        entry = entry.removeprefix("*").lstrip(".").rstrip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False
