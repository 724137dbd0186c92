"""corral's native TOML policy format (documented key by key in docs/policy.md).

Every key is optional; an absent key keeps the built-in default. The schema below is the
single source of truth: loading, validation messages and the docs all follow it.

Credentials (`[[credentials]]`) are only described here: where the value comes from and where
it may go. Nothing in this module reads a credential's value; that happens at launch.
"""

from __future__ import annotations

from .names import is_env_name as _is_env_name

from .._values import replace

from ..errors import PolicyError, UnsupportedFeature
from . import paths
from .defaults import default_policy
from .model import CredentialSpec, Endpoint, LaunchContext, PathRule, Policy, TlsPolicy

# table -> key -> kind. Kinds are checked by `_check` below.
SCHEMA: dict[str, dict[str, str]] = {
    "filesystem": {
        "deny_read": "paths",
        "allow_read": "paths",
        "allow_write": "paths",
        "deny_write": "paths",
        "allow_git_config": "bool",
        "deny_credentials": "bool",
        "deny_secrets": "denysecrets",
        "workspace": "workspace",
        "tmp_overlay": "bool",
    },
    "network": {
        "allowed_domains": "strings",
        "denied_domains": "strings",
        "denied_reasons": "strtable",
        "denied_addresses": "strings",
        "strict_allowlist": "bool",
        "transparent": "bool",
        "proxy": "bool",
        "audit_log": "optpath",
        "parent_proxy": "parentproxy",
        "trust_resolution": "strings",
        "allow_presets": "presets",
        "allow_unix_sockets": "bool",
        "http_rules": "httprules",
        "require_host_match": "bool",
        "refuse_opaque_tunnels": "bool",
        "strip_response_headers": "headernames",
        "tls": "tls",
    },
    "process": {
        "allow_nested_userns": "bool",
        "run_as": "user",
        "bwrap": "abspath",
        "unset_env": "names",
        "pass_env": "envpatterns",
        "secret_env": "envpatterns",
        "env": "envtable",
    },
}
# [network.tls]
TLS_SCHEMA: dict[str, str] = {
    "terminate": "terminate",
    "exclude": "hosts",
    "ca": "camode",
    "ca_cert": "file",
    "ca_key": "file",
    "extra_ca": "files",
    "max_tunnels": "tunnels",
    "handshake_timeout": "seconds",
    "auto": "flag",
}
# [[credentials]]: `name` and `hosts` are required, and exactly one of the from_* keys.
CREDENTIAL_SCHEMA: dict[str, str] = {
    "name": "name",
    "from_env": "name",
    "from_file": "file",
    "from_command": "argv",
    "hosts": "hosts",
    "header": "header",
    "basic_user": "basicuser",
    "in_body": "bool",
    "allow_plaintext": "bool",
    "extract": "regex",
    "on_no_match": "onnomatch",
    "env": "envopt",
    "mask_file": "file",
}
CREDENTIAL_SOURCES = ("from_env", "from_file", "from_command")
# [[endpoints]]: `name` and `upstream` are required.
ENDPOINT_SCHEMA: dict[str, str] = {
    "name": "endpointname",
    "upstream": "httpsurl",
    "credential": "name",
    "env": "name",
}
ARRAYS = {"credentials": CREDENTIAL_SCHEMA, "endpoints": ENDPOINT_SCHEMA}  # [[name]] tables
# [limits]: memory, pids, cpus, timeout, nofile, fsize (policy.limits parses them) and strict.
LIMITS_KEYS = ("memory", "pids", "cpus", "timeout", "nofile", "fsize", "strict")
TOP_LEVEL = {"version": "version", **{name: "table" for name in SCHEMA}, **{name: "tables" for name in ARRAYS},
             "limits": "table", "git": "table", "backend": "backend", "strict": "strict", "container": "table",
             "allow_weaker": "strict"}
CONTAINER_KEYS = ("image",)

ON_NO_MATCH = ("deny", "warn", "error")
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_ENDPOINT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")



def load_toml(text: str, source: str, ctx: LaunchContext) -> Policy:
    import tomllib  # lazy: only paid when a TOML policy is actually read

    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise PolicyError(source, "", None, "invalid TOML: arrays or tables nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(source, "", None, f"invalid TOML: {exc}") from None
    return from_mapping(data, source, ctx)


def from_mapping(data: dict, source: str, ctx: LaunchContext) -> Policy:
    for key, value in data.items():
        kind = TOP_LEVEL.get(key)
        if kind is None:
            raise PolicyError(source, key, value, f"unknown key{_suggest(key, TOP_LEVEL)}")
        if kind == "table" and not isinstance(value, dict):
            raise PolicyError(source, key, value, "expected a table ([section])")
        if kind == "tables" and not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
            raise PolicyError(source, key, value, f"expected an array of tables ([[{key}]])")
        if kind == "version" and value != 1:
            raise PolicyError(source, key, value, "only version = 1 is supported")
        if kind == "backend":
            from ..backends import KINDS, unknown

            # "k8s": the policy is meant for `corral k8s render`; `corral run` refuses it (backends.get).
            if value not in KINDS and value not in ("auto", "k8s"):
                raise PolicyError(source, key, value, unknown(value))
        if kind == "strict" and not isinstance(value, bool):
            raise PolicyError(source, key, value, "expected true or false")
    policy = default_policy(ctx)
    fs = policy.filesystem
    net = policy.network
    proc = policy.process
    fs_changes: dict = {}
    net_changes: dict = {}
    proc_changes: dict = {}
    for table, keys in SCHEMA.items():
        section = data.get(table, {})
        for key, value in section.items():
            kind = keys.get(key)
            path = f"{table}.{key}"
            if kind is None:
                raise PolicyError(source, path, value, f"unknown key{_suggest(key, keys)}")
            converted = _check(kind, value, source, path, ctx)
            target = {"filesystem": fs_changes, "network": net_changes, "process": proc_changes}[table]
            target[key] = converted
    if "denied_reasons" in net_changes:
        net_changes["denied_reasons"] = tuple(net_changes["denied_reasons"])
    if "bwrap" in proc_changes:
        proc_changes["bwrap_path"] = proc_changes.pop("bwrap")
    if "env" in proc_changes:
        proc_changes["set_env"] = proc_changes.pop("env")
    if "parent_proxy" in net_changes:  # a table is the whole truth; false: no parent proxy at all
        net_changes["parent_proxy_env"] = False
    if net_changes.get("allow_presets"):
        from .presets import domains

        extra = [d for d in domains(net_changes["allow_presets"]) if d not in net_changes.get("allowed_domains", ())]
        net_changes["allowed_domains"] = net_changes.get("allowed_domains", ()) + tuple(extra)
    network = replace(net, **net_changes)
    if (network.allowed_domains or network.denied_domains or network.denied_addresses or network.denied_reasons
            or network.trust_resolution):
        from .network import compile_rules

        compile_rules(network, source)
    credentials = _credentials(data.get("credentials", []), source, ctx)
    endpoints = _endpoints(data.get("endpoints", []), credentials, source, ctx)
    if endpoints and not network.enabled:
        network = replace(network, proxy=True)  # endpoints are served by the proxy
    return replace(
        policy,
        filesystem=replace(fs, **fs_changes),
        network=network,
        process=replace(proc, **proc_changes),
        sources=(source,),
        credentials=credentials,
        endpoints=endpoints,
        limits=_limits(data.get("limits", {}), policy.limits, source),
        git=_git(data["git"], source) if "git" in data else None,
        backend=_backend(data, policy.backend, source),
    )


def _git(table: dict, source: str):
    from .git import parse  # only when a policy has [git]

    return parse(table, source)


def _backend(data: dict, base, source: str):
    container = data.get("container", {})
    for name, value in container.items():
        if name not in CONTAINER_KEYS:
            raise PolicyError(source, f"container.{name}", value, f"unknown key{_suggest(name, CONTAINER_KEYS)}")
        if not isinstance(value, str) or not value.strip():
            raise PolicyError(source, f"container.{name}", value, "expected an image name (or a root filesystem "
                                                                   "directory for the OCI backends)")
    if "backend" not in data and "strict" not in data and "allow_weaker" not in data and not container:
        return base
    weaker = data.get("allow_weaker", base.allow_weaker)
    return replace(base, name=data.get("backend", base.name), strict=data.get("strict", base.strict),
                   image=container.get("image", base.image), origin=source, allow_weaker=weaker,
                   allowed_by=f"allow_weaker = true in {source}" if data.get("allow_weaker") is True else base.allowed_by)


def _limits(table: dict, base, source: str):
    if not table:
        return base
    from . import limits

    fields = {}
    for name, value in table.items():
        key = f"limits.{name}"
        if name not in LIMITS_KEYS:
            raise PolicyError(source, key, value, f"unknown key{_suggest(name, LIMITS_KEYS)}")
        if name == "strict":
            if not isinstance(value, bool):
                raise PolicyError(source, key, value, "expected true or false")
            fields[name] = value
            continue
        try:
            fields[name] = limits.parse(name, value)
        except ValueError as exc:
            raise PolicyError(source, key, value, str(exc)) from None
    return replace(base, **fields)


def _table(value, schema: dict, source: str, key: str, ctx: LaunchContext) -> dict:
    """A sub-table's keys checked against `schema` (kind per key); absent keys stay absent."""
    if not isinstance(value, dict):
        raise PolicyError(source, key, value, "expected a table")
    out = {}
    for name, item in value.items():
        kind = schema.get(name)
        if kind is None:
            raise PolicyError(source, f"{key}.{name}", item, f"unknown key{_suggest(name, schema)}")
        out[name] = _check(kind, item, source, f"{key}.{name}", ctx)
    return out


def _tls(value, source: str, key: str, ctx: LaunchContext) -> TlsPolicy:
    fields = _table(value, TLS_SCHEMA, source, key, ctx)
    if ("ca_cert" in fields) != ("ca_key" in fields):
        missing = "ca_key" if "ca_cert" in fields else "ca_cert"
        raise PolicyError(source, f"{key}.{missing}", None, "missing: ca_cert and ca_key go together")
    if "ca_cert" in fields:
        if "ca" in fields:
            raise PolicyError(source, f"{key}.ca", fields["ca"],
                              "give either ca or ca_cert and ca_key (those mean a CA from files)")
        fields["ca"] = "files"
    return TlsPolicy(**fields)


def _named_table(table, schema: dict, required: str, why: str, seen: dict, source: str, key: str,
                 ctx: LaunchContext) -> dict:
    """One entry of an array of tables with a unique `name` and one more required key."""
    fields = _table(table, schema, source, key, ctx)
    for must in ("name", required):
        if must not in fields:
            raise PolicyError(source, f"{key}.{must}", None, f"missing: {why}")
    name = fields["name"]
    if name in seen:
        raise PolicyError(source, f"{key}.name", name, f"already the name of {seen[name]}")
    seen[name] = key
    return fields


def _credentials(tables: list, source: str, ctx: LaunchContext) -> tuple:
    specs: list[CredentialSpec] = []
    seen: dict[str, str] = {}
    env_owner: dict[str, str] = {}
    for i, table in enumerate(tables):
        key = f"credentials[{i}]"
        fields = _named_table(table, CREDENTIAL_SCHEMA, "hosts", "every credential needs a name and the "
                              "hosts it may be sent to", seen, source, key, ctx)
        name = fields["name"]
        given = [k for k in CREDENTIAL_SOURCES if k in fields]
        if len(given) != 1:
            where = f"{key}.{given[1]}" if given else key
            raise PolicyError(source, where, fields[given[1]] if given else table,
                              "give exactly one of from_env, from_file, from_command")
        if not fields["hosts"]:
            raise PolicyError(source, f"{key}.hosts", [], "empty: list the hosts the credential may be sent to")
        if "header" in fields and "basic_user" in fields:
            raise PolicyError(source, f"{key}.basic_user", fields["basic_user"],
                              "give either header or basic_user (basic auth is the Authorization header)")
        if "on_no_match" in fields and "extract" not in fields:
            raise PolicyError(source, f"{key}.on_no_match", fields["on_no_match"],
                              "only applies with extract (what to do when it matches nothing)")
        env = fields.pop("env", name)  # the variable holding the placeholder; false: none
        # A variable set by two entries would hold only one of them: refuse the clash.
        if env and env in env_owner:
            raise PolicyError(source, f"{key}.env", env, f"already set by {env_owner[env]}")
        if env:
            env_owner[env] = key
        fields["env"] = env or None
        specs.append(CredentialSpec(**fields, origin=f"{source}:{key}"))
    return tuple(specs)


def _endpoints(tables: list, credentials: tuple, source: str, ctx: LaunchContext) -> tuple:
    by_name = {c.name: c for c in credentials}
    env_owner = {c.env: f"credentials[{i}]" for i, c in enumerate(credentials) if c.env}
    out: list[Endpoint] = []
    seen: dict[str, str] = {}
    for i, table in enumerate(tables):
        key = f"endpoints[{i}]"
        fields = _named_table(table, ENDPOINT_SCHEMA, "upstream", "every endpoint needs a name and an "
                              "upstream URL", seen, source, key, ctx)
        name = fields["name"]
        cred_name = fields.get("credential")
        if cred_name is not None:
            cred = by_name.get(cred_name)
            if cred is None:
                known = f"; known: {', '.join(by_name)}" if by_name else " (there are no [[credentials]])"
                raise PolicyError(source, f"{key}.credential", cred_name, f"no [[credentials]] entry of that name{known}")
            _check_upstream_covered(fields["upstream"], cred, source, f"{key}.credential")
        env = fields.get("env")
        if env is not None:
            if env in env_owner:
                raise PolicyError(source, f"{key}.env", env, f"already set by {env_owner[env]}")
            env_owner[env] = key
        out.append(Endpoint(**fields, origin=f"{source}:{key}"))
    return tuple(out)


def _upstream_host(url: str) -> str:
    from ..proxy.urls import split_authority

    authority = url[len("https://"):].partition("/")[0]
    return split_authority(authority, 443)[0]


def _check_upstream_covered(url: str, cred: CredentialSpec, source: str, key: str) -> None:
    from ..proxy.addresses import normalize_host
    from ..proxy.httprules import host_in, parse_host_pattern

    host = normalize_host(_upstream_host(url))
    if not any(host_in(parse_host_pattern(h), host) for h in cred.hosts):
        raise PolicyError(source, key, cred.name, (
            f"that credential's hosts {list(cred.hosts)} do not cover the upstream's host "
            f"{host!r}: add it to them, or the credential could not be sent there"
        ))


def _check(kind: str, value, source: str, key: str, ctx: LaunchContext):
    if kind == "bool":
        if not isinstance(value, bool):
            raise PolicyError(source, key, value, "expected true or false")
        return value
    if kind in ("paths", "strings", "names"):
        if not isinstance(value, list):
            raise PolicyError(source, key, value, "expected a list")
        out = []
        for i, item in enumerate(value):
            item_key = f"{key}[{i}]"
            if kind == "paths":
                out.append(_path_rule(item, source, item_key, ctx))
                continue
            if not isinstance(item, str) or not item:
                raise PolicyError(source, item_key, item, "expected a non-empty string")
            if kind == "names" and not _is_env_name(item):
                raise PolicyError(source, item_key, item, "not a valid environment variable name")
            out.append(item)
        return tuple(out)
    if kind == "envpatterns":
        from .names import check_pattern

        if not isinstance(value, list):
            raise PolicyError(source, key, value, "expected a list of names or patterns such as 'MY_*'")
        for i, item in enumerate(value):
            why = check_pattern(item)
            if why is not None:
                raise PolicyError(source, f"{key}[{i}]", item, why)
        return tuple(dict.fromkeys(value))
    if kind == "abspath":
        if not isinstance(value, str) or not value.startswith("/"):
            raise PolicyError(source, key, value, "expected an absolute path")
        return value
    if kind == "user":
        return parse_user(value, source, key)
    if kind == "denysecrets":
        if value is True or value is False or value == "names":
            return value
        raise PolicyError(source, key, value, 'expected true, false or "names"')
    if kind == "workspace":
        from .model import WORKSPACE_MODES

        if value not in WORKSPACE_MODES:
            raise PolicyError(source, key, value, f"expected one of {', '.join(WORKSPACE_MODES)}")
        return value
    if kind == "strtable":
        if not isinstance(value, dict):
            raise PolicyError(source, key, value, 'expected a table of "entry" = "text"')
        for name, val in value.items():
            if not isinstance(val, str) or not val:
                raise PolicyError(source, f"{key}.{name}", val, "expected a non-empty string")
        return tuple(value.items())
    if kind == "optpath":
        if not isinstance(value, str) or (value and not value.startswith("/")):
            raise PolicyError(source, key, value, 'expected an absolute path, or "" for no audit log')
        return value
    if kind == "parentproxy":
        from .model import ParentProxy

        if value is False:
            return None  # no parent proxy, not even the launcher's HTTPS_PROXY
        if value is True:
            raise PolicyError(source, key, value, "expected a table with http, https and no_proxy, or false "
                              "(the launcher's HTTPS_PROXY/HTTP_PROXY/NO_PROXY apply when the key is absent)")
        if not isinstance(value, dict):
            raise PolicyError(source, key, value, "expected a table with http, https and no_proxy, or false")
        fields = {}
        for name, val in value.items():
            if name in ("http", "https"):
                from .upstream import redact, split_proxy_url

                if not isinstance(val, str) or not val.startswith("http"):
                    raise PolicyError(source, f"{key}.{name}", val, "expected an http:// URL")
                try:
                    split_proxy_url(val)
                except ValueError as exc:
                    raise PolicyError(source, f"{key}.{name}", redact(val), str(exc)) from None
                fields[name] = val
            elif name == "no_proxy":
                if isinstance(val, str):
                    val = [v.strip() for v in val.split(",") if v.strip()]
                if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
                    raise PolicyError(source, f"{key}.{name}", val, "expected a list of names")
                fields[name] = tuple(val)
            else:
                raise PolicyError(source, f"{key}.{name}", val, "unknown key (expected http, https, no_proxy)")
        return ParentProxy(**fields, origin=f"{source}:{key}")
    if kind == "presets":
        from .presets import PRESETS, known

        if not isinstance(value, list):
            raise PolicyError(source, key, value, f"expected a list of preset names ({known()})")
        for i, item in enumerate(value):
            if not isinstance(item, str) or item not in PRESETS:
                raise PolicyError(source, f"{key}[{i}]", item, f"unknown preset; known presets: {known()}")
        return tuple(dict.fromkeys(value))
    if kind == "envtable":
        if not isinstance(value, dict):
            raise PolicyError(source, key, value, "expected a table of NAME = \"value\"")
        pairs = []
        for name, val in value.items():
            if not _is_env_name(name):
                raise PolicyError(source, f"{key}.{name}", val, "not a valid environment variable name")
            if not isinstance(val, str) or "\x00" in val:
                raise PolicyError(source, f"{key}.{name}", val, "expected a string without NUL bytes")
            pairs.append((name, val))
        return tuple(pairs)
    if kind == "tls":
        return _tls(value, source, key, ctx)
    return _check_boundary(kind, value, source, key, ctx)


def _check_boundary(kind: str, value, source: str, key: str, ctx: LaunchContext):
    """The kinds of the credential-boundary keys ([network.tls], [[credentials]], [[endpoints]])."""
    if kind == "flag":
        if not isinstance(value, bool):
            raise PolicyError(source, key, value, "expected true or false")
        return value
    if kind in ("httprules", "headernames", "terminate", "hosts", "files", "argv"):
        if not isinstance(value, list):
            raise PolicyError(source, key, value, "expected a list")
        if kind == "argv" and not value:
            raise PolicyError(source, key, value, "expected a non-empty list: the command and its arguments")
        item_kind = {"httprules": "httprule", "headernames": "headername", "terminate": "host*",
                     "hosts": "host", "files": "file", "argv": "arg"}[kind]
        items = [_check_boundary(item_kind, item, source, f"{key}[{i}]", ctx) for i, item in enumerate(value)]
        if kind == "argv" and not items[0]:
            raise PolicyError(source, f"{key}[0]", items[0], "the command must not be empty")
        return tuple(dict.fromkeys(items)) if kind in ("headernames", "terminate", "hosts") else tuple(items)
    if kind == "arg":
        if not isinstance(value, str) or "\x00" in value:
            raise PolicyError(source, key, value, "expected a string without NUL bytes")
        return value
    if not isinstance(value, str) and kind not in ("tunnels", "seconds", "envopt"):
        raise PolicyError(source, key, value, "expected a string")
    if kind == "name":
        if not _is_env_name(value):
            raise PolicyError(source, key, value, "expected a name of letters, digits and '_', not starting "
                              "with a digit")
        return value
    if kind == "envopt":
        if value is False or (isinstance(value, str) and _is_env_name(value)):
            return value
        raise PolicyError(source, key, value, "expected a variable name, or false for no variable")
    if kind == "httprule":
        from ..proxy.httprules import parse_rule

        text = value.strip()
        # The action is optional (allow); store it so the rule means the same to every reader.
        words = text.split()
        if not words:
            raise PolicyError(source, key, value, "an empty rule; write e.g. 'deny POST github.com/**'")
        if words[0].lower() not in ("allow", "deny"):
            text = "allow " + text
        try:
            parse_rule(text)
        except ValueError as exc:
            raise PolicyError(source, key, value, str(exc)) from None
        return text
    if kind == "headername":
        if not value or not set(value) <= _TCHAR:
            raise PolicyError(source, key, value, "expected a header name, as in 'set-cookie'")
        return value.lower()
    if kind in ("host", "host*"):
        from ..proxy.httprules import parse_host_pattern

        try:
            pattern = parse_host_pattern(value)
        except ValueError as exc:
            raise PolicyError(source, key, value, str(exc)) from None
        if pattern.kind == "any" and kind == "host":
            raise PolicyError(source, key, value, "'*' (every host) is not allowed here: list the hosts")
        if pattern.kind == "wildcard" and "." not in pattern.host:
            raise PolicyError(source, key, value, "a whole top-level domain: list the hosts")
        return value
    if kind == "file":
        if not value or "\x00" in value:
            raise PolicyError(source, key, value, "expected a non-empty path")
        if paths.is_glob(value):
            raise PolicyError(source, key, value, "expected one file, not a glob (* ? [)")
        try:
            return paths.expand(value, ctx)
        except ValueError as exc:
            raise PolicyError(source, key, value, str(exc)) from None
    if kind == "camode":
        if value not in ("user", "ephemeral"):
            raise PolicyError(source, key, value, 'expected "user" or "ephemeral" (or give ca_cert and ca_key)')
        return value
    if kind == "tunnels":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65536:
            raise PolicyError(source, key, value, "expected an integer from 1 to 65536")
        return value
    if kind == "seconds":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise PolicyError(source, key, value, "expected a number of seconds > 0")
        return float(value)
    if kind == "header":
        return _header_template(value, source, key)
    if kind == "basicuser":
        if not all(" " <= c <= "~" for c in value) or ":" in value:
            raise PolicyError(source, key, value, "expected printable ASCII without ':'")
        return value
    if kind == "regex":
        import re  # only when a policy has extract

        try:
            groups = re.compile(value).groups
        except re.error as exc:
            raise PolicyError(source, key, value, f"not a valid regular expression: {exc}") from None
        if groups < 1:
            raise PolicyError(source, key, value, "needs a capturing group: group 1 is the secret, as in "
                              "'_authToken=(\\S+)'")
        return value
    if kind == "onnomatch":
        if value not in ON_NO_MATCH:
            raise PolicyError(source, key, value, 'expected "deny", "warn" or "error"')
        return value
    if kind == "endpointname":
        if not value or not set(value) <= _ENDPOINT_CHARS:
            raise PolicyError(source, key, value, "expected lower-case letters, digits, '_' and '-'")
        return value
    if kind == "httpsurl":
        return _https_url(value, source, key)
    raise AssertionError(kind)


def _header_template(value: str, source: str, key: str) -> str:
    from ..proxy.credentials import FORBIDDEN_HEADERS

    example = "as in 'x-api-key: {value}' or 'Authorization: Bearer {value}'"
    if not all(" " <= c <= "~" for c in value):
        raise PolicyError(source, key, value, f"expected printable ASCII, {example}")
    name, colon, rest = value.partition(":")
    if not colon or not name or not set(name) <= _TCHAR:
        raise PolicyError(source, key, value, f"expected 'Header-Name: ...{{value}}...', {example}")
    if name.lower() in FORBIDDEN_HEADERS:
        raise PolicyError(source, key, value, f"{name!r} carries framing or routing, not credentials")
    if rest.count("{value}") != 1:
        raise PolicyError(source, key, value, f"needs exactly one '{{value}}', {example}")
    return value


def _https_url(value: str, source: str, key: str) -> str:
    from ..proxy.addresses import normalize_host
    from ..proxy.urls import split_authority

    example = "as in 'https://api.anthropic.com' or 'https://host:8443/prefix'"
    if not value.startswith("https://"):
        raise PolicyError(source, key, value, f"expected an https:// URL, {example}")
    rest = value[len("https://"):]
    if "?" in rest or "#" in rest:
        raise PolicyError(source, key, value, f"no query or fragment, {example}")
    authority, _, path = rest.partition("/")
    if "@" in authority:
        raise PolicyError(source, key, value, "no user name or password in the URL: use [[credentials]]")
    if not all(" " < c <= "~" for c in path):
        raise PolicyError(source, key, value, "the path must be printable ASCII without spaces (percent-encode)")
    try:
        normalize_host(split_authority(authority, 443)[0])
    except ValueError as exc:
        raise PolicyError(source, key, value, f"{exc}, {example}") from None
    return value


def _path_rule(item, source: str, key: str, ctx: LaunchContext) -> PathRule:
    literal = False
    raw = item
    if isinstance(item, dict):
        extra = set(item) - {"path", "literal"}
        if extra:
            raise PolicyError(source, f"{key}.{sorted(extra)[0]}", item, "unknown key (expected 'path' and 'literal')")
        raw = item.get("path")
        literal = item.get("literal", False)
        if not isinstance(literal, bool):
            raise PolicyError(source, f"{key}.literal", literal, "expected true or false")
    if not isinstance(raw, str):
        raise PolicyError(source, key, item, 'expected a path string or { path = "...", literal = true }')
    try:
        return paths.rule(raw, ctx, f"{source}:{key}", literal=literal)
    except ValueError as exc:
        raise PolicyError(source, key, raw, str(exc)) from None


def parse_user(value, source: str, key: str) -> tuple[int, int]:
    """`1000`, `"1000:1000"` or a user name from the password database; `"root"` (or 0) is the
    by-name opt-in to running as host uid 0 when launched by root (see sandbox.identity)."""
    if value in ("root", 0, "0", "0:0"):
        return (0, 0)
    if isinstance(value, bool):
        raise PolicyError(source, key, value, "expected a uid, 'uid:gid' or a user name")
    if isinstance(value, int):
        uid, gid = value, value
    elif isinstance(value, str) and value:
        uid_s, _, gid_s = value.partition(":")
        if uid_s.isdigit():
            uid = int(uid_s)
            gid = int(gid_s) if gid_s.isdigit() else uid
            if gid_s and not gid_s.isdigit():
                raise PolicyError(source, key, value, "gid must be a number")
        else:
            import pwd

            try:
                entry = pwd.getpwnam(uid_s)
            except KeyError:
                raise PolicyError(source, key, value, "no such user") from None
            uid = entry.pw_uid
            gid = int(gid_s) if gid_s.isdigit() else entry.pw_gid
    else:
        raise PolicyError(source, key, value, "expected a uid, 'uid:gid' or a user name")
    if uid <= 0 or gid <= 0:
        raise PolicyError(source, key, value, 'must be an unprivileged (non-zero) uid and gid, or "root"')
    return uid, gid



def _suggest(key: str, known) -> str:
    import difflib  # error path only

    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
