"""Network rules of a policy, compiled and checked (errors name the file and the entry)."""

from __future__ import annotations

from ..errors import PolicyError


def compile_rules(net, source: str = "<policy>"):
    from ..proxy.rules import Rules

    try:
        return Rules(allowed=net.allowed_domains, denied=net.denied_domains, reasons=dict(net.denied_reasons),
                     denied_addresses=net.denied_addresses)
    except ValueError as exc:
        raise PolicyError(source, "network", None, str(exc)) from None
