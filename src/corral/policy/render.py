"""Render a Policy as native TOML (what `corral policy show` prints; loadable again).

A policy holds no secrets, only where credentials come from, so everything is printed."""

from __future__ import annotations

import json

from .defaults import credential_paths
from .model import LIMIT_KEYS, CredentialSpec, Endpoint, LaunchContext, Limits, PathRule, Policy, TlsPolicy
from ..workspace import protected


def _str(value: str) -> str:
    # JSON string escaping is valid TOML basic-string escaping for all we emit.
    return json.dumps(value, ensure_ascii=False)


def _path(rule: PathRule) -> str:
    if not rule.glob and any(c in rule.path for c in "*?["):
        return "{ path = %s, literal = true }" % _str(rule.path)
    return _str(rule.path)


def _list(items: list[str]) -> str:
    if not items:
        return "[]"
    return "[\n" + "".join(f"  {item},\n" for item in items) + "]"


def to_toml(policy: Policy, ctx: LaunchContext) -> str:
    fs, net, proc = policy.filesystem, policy.network, policy.process
    src = ", ".join(policy.sources) or "built-in defaults"
    lines = [
        f"# Effective corral policy (from {src}), paths resolved for cwd {ctx.cwd}",
        "version = 1",
        *([f"backend = {_str(policy.backend.name)}"] if policy.backend.name != "bwrap" else []),
        *(["strict = true"] if policy.backend.strict else []),
        *(["allow_weaker = true"] if policy.backend.allow_weaker else []),
        "",
        "[filesystem]",
        f"deny_read = {_list([_path(r) for r in fs.deny_read])}",
        f"allow_read = {_list([_path(r) for r in fs.allow_read])}",
        f"allow_write = {_list([_path(r) for r in fs.allow_write])}",
        f"deny_write = {_list([_path(r) for r in fs.deny_write])}",
        f"allow_git_config = {str(fs.allow_git_config).lower()}",
        f"deny_credentials = {str(fs.deny_credentials).lower()}",
        f"deny_secrets = {_str(fs.deny_secrets) if isinstance(fs.deny_secrets, str) else str(fs.deny_secrets).lower()}",
        f"workspace = {_str(fs.workspace)}",
        f"tmp_overlay = {str(fs.tmp_overlay).lower()}",
    ]
    if fs.deny_credentials:
        lines.append("# deny_credentials = true also denies reads of:")
        lines.extend(f"#   {p}" for p in credential_paths(ctx))
    lines.append("# Always protected (read-only; cannot be created in the workspace root or a writable HOME;")
    lines.append("# quarantined when created elsewhere): " + " ".join(sorted(protected.RC_FILES | protected.CONFIG_FILES | protected.CONFIG_DIRS)))
    lines.append("#   .git/hooks .git/config .claude/{commands,agents,settings.json,settings.local.json}, gitfiles,")
    lines.append("#   and the policy files in use" + (": " + ", ".join(policy.sources) if policy.sources else ""))
    lines += _network(net)
    lines += [
        "",
        "[process]",
        f"allow_nested_userns = {str(proc.allow_nested_userns).lower()}",
    ]
    if proc.run_as:
        lines.append('run_as = "root"' if proc.run_as == (0, 0) else f'run_as = "{proc.run_as[0]}:{proc.run_as[1]}"')
    if proc.bwrap_path:
        lines.append(f"bwrap = {_str(proc.bwrap_path)}")
    lines.append(f"unset_env = {_list([_str(n) for n in proc.unset_env])}")
    lines.append(f"pass_env = {_list([_str(n) for n in proc.pass_env])}")
    lines.append(f"secret_env = {_list([_str(n) for n in proc.secret_env])}")
    lines += _secret_env_comment()
    if proc.set_env:
        lines += ["", "[process.env]"]
        lines += [f"{name} = {_str(value)}" for name, value in proc.set_env]
    if policy.limits != Limits():
        lines += ["", "[limits]", *_limits(policy.limits)]
    if policy.git is not None:
        lines += ["", "[git]", *_git(policy.git)]
    if policy.backend.image:
        lines += ["", "[container]", f"image = {_str(policy.backend.image)}"]
    for cred in policy.credentials:
        lines += ["", "[[credentials]]", *_credential(cred)]
    for endpoint in policy.endpoints:
        lines += ["", "[[endpoints]]", *_endpoint(endpoint)]
    return "\n".join(lines) + "\n"


def _network(net) -> list[str]:
    lines = [
        "",
        "[network]",
        f"allowed_domains = {_list([_str(d) for d in net.allowed_domains])}",
        f"denied_domains = {_list([_str(d) for d in net.denied_domains])}",
        f"denied_addresses = {_list([_str(d) for d in net.denied_addresses])}",
        f"trust_resolution = {_list([_str(d) for d in net.trust_resolution])}",
        f"strict_allowlist = {str(net.strict_allowlist).lower()}",
        f"transparent = {str(net.transparent).lower()}",
        f"proxy = {str(net.proxy).lower()}",
        f"allow_unix_sockets = {str(net.allow_unix_sockets).lower()}",
        f"http_rules = {_list([_str(r) for r in net.http_rules])}",
        f"require_host_match = {_bool(net.require_host_match)}",
        f"refuse_opaque_tunnels = {_bool(net.refuse_opaque_tunnels)}",
        f"strip_response_headers = {_list([_str(h) for h in net.strip_response_headers])}",
    ]
    if net.audit_log is not None:
        lines.append(f"audit_log = {_str(net.audit_log)}")
    if net.denied_reasons:
        lines.append("denied_reasons = { " + ", ".join(f"{_str(k)} = {_str(v)}" for k, v in net.denied_reasons) + " }")
    if net.allow_presets:
        shown = ", ".join(_str(n) for n in net.allow_presets)
        lines.append(f"# allow_presets = [{shown}] (their names are in allowed_domains above)")
    if net.parent_proxy is None and not net.parent_proxy_env:
        lines.append("parent_proxy = false")
    elif net.parent_proxy is None:
        lines.append("# parent_proxy: the launcher's HTTPS_PROXY/HTTP_PROXY/NO_PROXY, if set")
    if net.parent_proxy is not None:
        from .upstream import redact

        pp = net.parent_proxy
        lines += ["", "[network.parent_proxy]"]
        if pp.origin:
            lines.append(f"# from {pp.origin}" + ("; what it leaves out: the launcher's HTTPS_PROXY/HTTP_PROXY/NO_PROXY"
                                                   if net.parent_proxy_env else ""))
        # The password (if any) is not shown.
        lines += [f"{k} = {_str(redact(v))}" for k, v in (("http", pp.http), ("https", pp.https)) if v]
        lines.append(f"no_proxy = {_list([_str(n) for n in pp.no_proxy])}")
    if net.tls != TlsPolicy():
        lines += ["", "[network.tls]", *_tls(net.tls)]
    return lines


def proxy_toml(policy: Policy, header: str) -> str:
    """Only what an egress proxy reads (`corral proxy --sessions`): the network rules, TLS,
    [git] and the credentials; the sandbox's filesystem and process settings are left out."""
    lines = [f"# {header}", "version = 1", *_network(policy.network)]
    if policy.git is not None:
        lines += ["", "[git]", *_git(policy.git)]
    for cred in policy.credentials:
        lines += ["", "[[credentials]]", *_credential(cred)]
    return "\n".join(lines) + "\n"


def _secret_env_comment() -> list[str]:
    from .secret_env import NOT_SECRET_NAMES, SECRET_NAMES

    return [
        "# Withheld unless pass_env names them (or a credential binds them): variables named",
        "#   " + " ".join(p for p, _ in SECRET_NAMES if "*" in p) + ",",
        "#   " + " ".join(p for p, _ in SECRET_NAMES if "*" not in p) + ",",
        "#   but not " + " ".join(NOT_SECRET_NAMES) + ";",
        "#   and variables holding a known token format, a JWT, a private key or a URL with a password.",
    ]


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _tls(tls: TlsPolicy) -> list[str]:
    lines = [
        f"terminate = {_list([_str(h) for h in tls.terminate])}",
        f"exclude = {_list([_str(h) for h in tls.exclude])}",
    ]
    if tls.ca == "files":
        lines += [f"ca_cert = {_str(tls.ca_cert)}", f"ca_key = {_str(tls.ca_key)}"]
    else:
        lines.append(f"ca = {_str(tls.ca)}")
    lines += [
        f"extra_ca = {_list([_str(p) for p in tls.extra_ca])}",
        f"max_tunnels = {tls.max_tunnels}",
        f"handshake_timeout = {float(tls.handshake_timeout)!r}",
    ]
    if not tls.auto:
        lines.append("auto = false")
    return lines


def _limits(limits: Limits) -> list[str]:
    from .limits import show

    lines = []
    for key in LIMIT_KEYS:
        value = getattr(limits, key)
        if value is not None:
            text = show(key, value)
            lines.append(f"{key} = {text if key in ('pids', 'nofile', 'cpus') else _str(text)}")
    lines.append(f"strict = {_bool(limits.strict)}")
    return lines


def _git(git) -> list[str]:
    def refs(items) -> str:
        return "[" + ", ".join(_str(r) for r in items) + "]"

    lines = [f"fetch_unlisted = {_bool(git.fetch_unlisted)}", "repositories = ["]
    for repo in git.repositories:
        lines.append(f"  {{ match = {_str(repo.match)}, push = {refs(repo.push)}, tags = {refs(repo.tags)}, "
                     f"delete = {_bool(repo.delete)}, protected = {refs(repo.protected)}, "
                     f"push_protected = {_bool(repo.push_protected)} }},")
    lines.append("]")
    return lines


def _credential(cred: CredentialSpec) -> list[str]:
    lines = [f"name = {_str(cred.name)}"]
    if cred.from_env is not None:
        lines.append(f"from_env = {_str(cred.from_env)}")
    if cred.from_file is not None:
        lines.append(f"from_file = {_str(cred.from_file)}")
    if cred.from_command:
        lines.append(f"from_command = [{', '.join(_str(a) for a in cred.from_command)}]")
    lines.append(f"hosts = {_list([_str(h) for h in cred.hosts])}")
    if cred.header is not None:
        lines.append(f"header = {_str(cred.header)}")
    if cred.basic_user is not None:
        lines.append(f"basic_user = {_str(cred.basic_user)}")
    lines += [f"in_body = {_bool(cred.in_body)}", f"allow_plaintext = {_bool(cred.allow_plaintext)}"]
    if cred.extract is not None:
        lines += [f"extract = {_str(cred.extract)}", f"on_no_match = {_str(cred.on_no_match)}"]
    lines.append(f"env = {_str(cred.env) if cred.env else 'false'}")
    if cred.mask_file is not None:
        lines.append(f"mask_file = {_str(cred.mask_file)}")
    return lines


def _endpoint(endpoint: Endpoint) -> list[str]:
    lines = [f"name = {_str(endpoint.name)}", f"upstream = {_str(endpoint.upstream)}"]
    if endpoint.credential is not None:
        lines.append(f"credential = {_str(endpoint.credential)}")
    if endpoint.env is not None:
        lines.append(f"env = {_str(endpoint.env)}")
    return lines
