"""Network rules of a policy, compiled and checked (errors name the file and the entry)."""

from __future__ import annotations

_LAST: list = []  # (policy, rules) of the last compile: loading validates, the session reuses it


def compile_rules(net, source: str = "<policy>"):
    from ..proxy.rules import Rules

    if _LAST and _LAST[0][0] is net:
        return _LAST[0][1]
    try:
        rules = Rules(allowed=net.allowed_domains, denied=net.denied_domains, reasons=dict(net.denied_reasons),
                     denied_addresses=net.denied_addresses, trusted=net.trust_resolution,
                     words="srt" if net.srt_words else "native")
    except ValueError as exc:
        from .vocabulary import network_error

        raise network_error(source, str(exc)) from None
    _LAST[:] = [(net, rules)]
    return rules
