"""Request targets: the upstream is the host in the absolute URI, never the Host header."""

from __future__ import annotations


def split_authority(authority: str, default_port: int | None) -> tuple[str, int]:
    """`host:port`, `[v6]:port`; userinfo is refused (it only serves to confuse)."""
    if not authority or "@" in authority or any(c in authority for c in " \t\r\n/\\?#"):
        raise ValueError(f"invalid authority {authority!r}")
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise ValueError(f"invalid authority {authority!r}")
        host, rest = authority[1:end], authority[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"invalid authority {authority!r}")
        port_text = rest[1:] if rest else ""
    else:
        host, sep, port_text = authority.rpartition(":")
        if not sep:
            host, port_text = authority, ""
        if ":" in host:
            raise ValueError(f"IPv6 address without brackets in {authority!r}")
    if not host:
        raise ValueError(f"no host in {authority!r}")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"invalid port in {authority!r}")
        return host, int(port_text)
    if default_port is None:
        raise ValueError(f"a port is required in {authority!r}")
    return host, default_port


def split_absolute(target: str) -> tuple[str, int, str]:
    """`http://host[:port]/path?query` -> (host, port, origin-form path)."""
    if target.startswith("/") or target == "*":
        raise ValueError("origin-form request to a proxy: send an absolute URI (http://host/path)")
    scheme, sep, rest = target.partition("://")
    if not sep:
        raise ValueError(f"not an absolute URI: {target[:100]!r}")
    if scheme.lower() != "http":
        raise ValueError(f"scheme {scheme!r} is not proxied as a plain request (use CONNECT for https)")
    cut = len(rest)
    for ch in "/?#":
        i = rest.find(ch)
        if 0 <= i < cut:
            cut = i
    authority, path = rest[:cut], rest[cut:]
    # The host is what follows the last "@": in "http://allowed.com@evil.com/" it is evil.com.
    # Userinfo is dropped, never forwarded.
    authority = authority.rpartition("@")[2]
    host, port = split_authority(authority, 80)
    path = path.split("#", 1)[0]
    if not path.startswith("/"):
        path = "/" + path
    return host, port, path
