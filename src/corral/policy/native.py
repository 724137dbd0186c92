"""corral's native TOML policy format (documented key by key in docs/policy.md).

Every key is optional; an absent key keeps the built-in default. The schema below is the
single source of truth: loading, validation messages and the docs all follow it.
"""

from __future__ import annotations

from .._values import replace

from ..errors import PolicyError, UnsupportedFeature
from . import paths
from .defaults import default_policy
from .model import LaunchContext, PathRule, Policy

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
        "allow_unix_sockets": "bool",
    },
    "process": {
        "allow_nested_userns": "bool",
        "run_as": "user",
        "bwrap": "abspath",
        "unset_env": "names",
        "env": "envtable",
    },
}
TOP_LEVEL = {"version": "version", **{name: "table" for name in SCHEMA}}



def load_toml(text: str, source: str, ctx: LaunchContext) -> Policy:
    import tomllib  # lazy: only paid when a TOML policy is actually read

    try:
        data = tomllib.loads(text)
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
        if kind == "version" and value != 1:
            raise PolicyError(source, key, value, "only version = 1 is supported")
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
    network = replace(net, **net_changes)
    if network.allowed_domains or network.denied_domains or network.denied_addresses or network.denied_reasons:
        from .network import compile_rules

        compile_rules(network, source)
    return replace(
        policy,
        filesystem=replace(fs, **fs_changes),
        network=network,
        process=replace(proc, **proc_changes),
        sources=(source,),
    )


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

        if not isinstance(value, dict):
            raise PolicyError(source, key, value, "expected a table with http, https and no_proxy")
        fields = {}
        for name, val in value.items():
            if name in ("http", "https"):
                if not isinstance(val, str) or not val.startswith(("http://", "https://")):
                    raise PolicyError(source, f"{key}.{name}", val, "expected an http:// URL")
                fields[name] = val
            elif name == "no_proxy":
                if isinstance(val, str):
                    val = [v.strip() for v in val.split(",") if v.strip()]
                if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
                    raise PolicyError(source, f"{key}.{name}", val, "expected a list of names")
                fields[name] = tuple(val)
            else:
                raise PolicyError(source, f"{key}.{name}", val, "unknown key (expected http, https, no_proxy)")
        return ParentProxy(**fields)
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
    raise AssertionError(kind)


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
    """`1000`, `"1000:1000"` or a user name from the password database."""
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
        raise PolicyError(source, key, value, "must be an unprivileged (non-zero) uid and gid")
    return uid, gid


def _is_env_name(name: str) -> bool:
    return bool(name) and not name[0].isdigit() and all(c.isalnum() or c == "_" for c in name) and name.isascii()


def _suggest(key: str, known) -> str:
    import difflib  # error path only

    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
