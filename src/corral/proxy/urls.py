"""Request targets: the upstream is the host in the absolute URI, never the Host header."""

from __future__ import annotations

import re

_PORT = re.compile(r"[1-9][0-9]{0,4}", re.ASCII)


def parse_port(text: str) -> int:
    """A port: 1..65535 in plain ASCII decimal, no sign, no leading zero, nothing around it."""
    if not _PORT.fullmatch(text) or int(text) > 65535:
        from ..display import shown

        raise ValueError(f"invalid port {shown(text)} (expected 1 to 65535 in plain decimal)")
    return int(text)


def split_authority(authority: str, default_port: int | None) -> tuple[str, int]:
    """`host:port`, `[v6]:port`; userinfo is refused (it only serves to confuse), and so is
    anything two readers could take for different destinations: a port that is not 1..65535 in
    plain decimal (`:+80`, `:080`, `:0x50`, `:99999`, an empty `host:`), a percent-encoded host."""
    if not authority or any(c in authority for c in "@% \t\r\n/\\?#") or not authority.isprintable():
        raise ValueError(f"invalid authority {authority!r}")
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise ValueError(f"invalid authority {authority!r}")
        host, rest = authority[1:end], authority[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"invalid authority {authority!r}")
        sep, port_text = rest[:1], rest[1:]
    else:
        host, sep, port_text = authority.rpartition(":")
        if not sep:
            host = authority
        if ":" in host:
            raise ValueError(f"IPv6 address without brackets in {authority!r}")
    if not host:
        raise ValueError(f"no host in {authority!r}")
    if sep:
        try:
            return host, parse_port(port_text)
        except ValueError as exc:
            raise ValueError(f"{exc} in {authority!r}") from None
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
