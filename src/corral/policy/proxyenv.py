"""The launcher's HTTPS_PROXY / HTTP_PROXY / NO_PROXY as the policy's parent proxy (see
`policy.upstream` for the URL and NO_PROXY rules). Pure: the environment is passed in."""

from __future__ import annotations

from .._values import replace
from .model import ParentProxy
from .upstream import NO_PROXY_VARIABLES, redact, split_no_proxy, split_proxy_url


def from_environment(environ) -> tuple[dict, list[str]]:
    """{'http', 'https', 'no_proxy', 'origin'} taken from the launcher's variables, and one
    warning per variable that cannot be used (its password never shown)."""
    found: dict = {}
    warnings: list[str] = []
    for field, names in (("https", ("HTTPS_PROXY", "https_proxy")), ("http", ("HTTP_PROXY", "http_proxy"))):
        for name in names:
            value = (environ.get(name) or "").strip()
            if not value:
                continue
            try:
                split_proxy_url(value)
            except ValueError as exc:
                from ..display import shown

                warnings.append(f"corral: ignoring the parent proxy in {name} ({shown(redact(value), 120)}): {exc}; "
                                "set [network.parent_proxy] in the policy, or parent_proxy = false")
                break
            found[field] = value if "://" in value else "http://" + value
            found.setdefault("origin", name)
            break
    for name in NO_PROXY_VARIABLES:
        value = (environ.get(name) or "").strip()
        if value:
            found["no_proxy"] = split_no_proxy(value)
            break
    return found, warnings


def with_environment(net, environ):
    """(the network policy with its parent proxy as it applies to this launch, warnings)."""
    if not net.parent_proxy_env:
        return net, []
    env, warnings = from_environment(environ)
    base = net.parent_proxy or ParentProxy()
    http, https = base.http or env.get("http"), base.https or env.get("https")
    parent = None
    if http or https:
        origin = base.origin if (base.http or base.https) else env.get("origin", "")
        parent = replace(base, http=http, https=https, no_proxy=base.no_proxy or env.get("no_proxy", ()),
                         origin=origin)
    return replace(net, parent_proxy=parent, parent_proxy_env=False), warnings
