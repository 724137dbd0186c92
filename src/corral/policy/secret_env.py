"""Which of the launcher's environment variables look like credentials (pure, no I/O).

A variable is withheld from the sandbox when its NAME matches `SECRET_NAMES` (and not
`NOT_SECRET_NAMES`) or the policy's `process.secret_env`, or when its VALUE holds a known
token format: every content signature of `workspace.secrets.SIGNATURES` (one table for files
and variables: GitHub, GitLab, Slack, Stripe, Anthropic, OpenAI, Google, npm, PyPI, Hugging
Face tokens, AWS key IDs, PEM private keys) plus `ENV_SIGNATURES`, the forms only a variable
holds whole (JWTs, URLs with `user:password@`). `process.pass_env` (CLI `--pass-env`) lets a
variable through whatever it looks like.

Decided elsewhere, before this runs: `process.unset_env` removes variables outright, and a
variable bound by a credential (`[[credentials]] from_env`, srt's `envVars` mask, CLI
`--mask-env`) is replaced by its placeholder. A variable the policy sets (`[process.env]`,
a credential's `env`) is never "withheld": the policy's value is what the command sees.

Patterns: `*` matches any run of characters; names compare case-insensitively. Cost per run:
one `upper()` and a few C-level prefix/suffix/substring tests per variable, then one search
per literal of the signatures over all values joined (regexes compiled only for the rows
whose literal occurs).

Nothing returned from here holds a value: only names and why each was withheld.
"""

from __future__ import annotations

from .names import PATTERN_CHARS, check_pattern  # noqa: F401 - part of this module's interface

from ..workspace import secrets as _secrets

# ----------------------------------------------------------------------------- names

# pattern, why. Names a credential usually goes by; the exact names document the well-known ones
# (most of them match a pattern as well).
SECRET_NAMES: tuple[tuple[str, str], ...] = (
    ("*TOKEN", "named like a token"),
    ("*_KEY", "named like a key"),
    ("*APIKEY", "named like an API key"),
    ("*ACCESS_KEY*", "named like an access key"),
    ("*PRIVATE_KEY*", "named like a private key"),
    ("*SECRET*", "named like a secret"),
    ("*PASSWORD*", "named like a password"),
    ("*PASSWD*", "named like a password"),
    ("*_PASS", "named like a password"),
    ("*_PWD", "named like a password"),
    ("*_PAT", "named like a personal access token"),
    ("*_AUTH", "named like a login"),
    ("*_COOKIE", "named like a session cookie"),
    ("COOKIE", "named like a session cookie"),
    ("*AUTHORIZATION*", "named like an HTTP authorization"),
    ("*PASSPHRASE*", "named like a passphrase"),
    ("*CREDENTIAL*", "named like a credential"),
    ("*CREDS", "named like credentials"),
    ("GIT_CONFIG_PARAMETERS", "git configuration from the environment (can carry http.extraHeader credentials)"),
    ("AWS_ACCESS_KEY_ID", "AWS access key"),
    ("AWS_SECRET_ACCESS_KEY", "AWS secret key"),
    ("AWS_SESSION_TOKEN", "AWS session token"),
    ("AWS_SECURITY_TOKEN", "AWS session token"),
    ("GITHUB_TOKEN", "GitHub token"),
    ("GH_TOKEN", "GitHub token"),
    ("GH_ENTERPRISE_TOKEN", "GitHub token"),
    ("GITLAB_TOKEN", "GitLab token"),
    ("NPM_TOKEN", "npm token"),
    ("NODE_AUTH_TOKEN", "npm token"),
    ("PYPI_TOKEN", "PyPI token"),
    ("TWINE_PASSWORD", "PyPI password or token"),
    ("OPENAI_API_KEY", "OpenAI API key"),
    ("ANTHROPIC_API_KEY", "Anthropic API key"),
    ("CLAUDE_CODE_OAUTH_TOKEN", "Claude Code login"),
    ("HF_TOKEN", "Hugging Face token"),
    ("HUGGING_FACE_HUB_TOKEN", "Hugging Face token"),
    ("DOCKER_AUTH_CONFIG", "registry logins"),
)

# Names that match a pattern above but hold no secret: paths to files and directories, terminal
# and keyboard settings, agents' sockets (a capability, not a value: seccomp refuses AF_UNIX
# sockets unless `allow_unix_sockets`), public keys. Their values are still checked.
NOT_SECRET_NAMES: tuple[str, ...] = (
    "*_FILE", "*_PATH", "*_DIR", "*_DIRS", "*_PUBLIC_KEY", "*_PUBLISHABLE_KEY",
    "GPG_TTY", "GPG_AGENT_INFO", "SSH_AUTH_SOCK", "SSH_AGENT_PID",
    "KEYBOARD*", "*KEYMAP*", "TOKENIZERS_PARALLELISM",
    "XDG_*", "TERM*", "COLORTERM", "PWD", "OLDPWD",
)

# ----------------------------------------------------------------------------- values

# Same shape as workspace.secrets.SIGNATURES: kind, why, literals (the row runs only if one occurs),
# regex (group 1: the secret part), check ("token": entropy and placeholder checks; "userinfo":
# `user:password` whose password is not empty, a placeholder or a dev default; "header": the
# match decides). The workspace table's connection-string row covers the usual schemes; the
# URL row here covers any scheme (a variable holds one URL, not a file's worth of text).
ENV_SIGNATURES: tuple[tuple[str, str, tuple[bytes, ...], bytes, str], ...] = (
    ("jwt", "JSON Web Token", (b"eyJ",),
     rb"(?<![A-Za-z0-9_-])(eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)", "token"),
    ("url-password", "URL with a password", (b"://",),
     rb"[A-Za-z][A-Za-z0-9+.-]*://([^/?#@\s\x00]*:[^/?#@\s\x00]*)@", "userinfo"),
)
_VALUE_ROWS = tuple(_secrets.SIGNATURES) + ENV_SIGNATURES


def _gates() -> tuple[tuple[bytes, tuple[int, ...]], ...]:
    gates: dict[bytes, list[int]] = {}
    for i, row in enumerate(_VALUE_ROWS):
        for lit in row[2]:
            gates.setdefault(lit, []).append(i)
    return tuple((lit, tuple(rows)) for lit, rows in gates.items())


_GATES = _gates()
_compiled: dict[int, object] = {}


def _row_regex(i: int):
    rx = _compiled.get(i)
    if rx is None:
        import re

        rx = _compiled[i] = re.compile(_VALUE_ROWS[i][3])
    return rx


def _value_ok(check: str, secret: str) -> bool:
    """Whether a signature's match is a real secret (not a placeholder or an example)."""
    if check == "token":
        return _secrets.token_ok(secret)
    if check == "userinfo":
        user, _, password = secret.partition(":")
        low = password.lower()
        return not (_secrets.is_placeholder(password) or low in _DEFAULT_PASSWORDS or low == user.lower())
    return True  # "header", "pem" (and any other): the match alone decides in a variable


_DEFAULT_PASSWORDS = getattr(_secrets, "DEFAULT_PASSWORDS", frozenset())


def value_findings(values: list[str]) -> dict[int, str]:
    """{index in `values`: why} for the values that hold a known token format."""
    if not values:
        return {}
    blob = "\0".join(values).encode("utf-8", "surrogateescape")
    find = blob.find
    rows = sorted({i for lit, r in _GATES if find(lit) != -1 for i in r})
    out: dict[int, str] = {}
    for i in rows:
        _kind, why, _lits, _rx, check = _VALUE_ROWS[i]
        for m in _row_regex(i).finditer(blob):
            index = blob.count(b"\0", 0, m.start())
            if index in out:
                continue
            if _value_ok(check, m.group(1).decode("utf-8", "replace")):
                out[index] = why
    return out


# ----------------------------------------------------------------------------- patterns





class Patterns:
    """A set of `*` patterns, matched case-insensitively with C-level string tests."""

    __slots__ = ("exact", "prefixes", "suffixes", "contains", "globs", "any")

    def __init__(self, patterns) -> None:
        exact, prefixes, suffixes, contains, globs = set(), [], [], [], []
        self.any = False
        for raw in patterns:
            p = raw.upper()
            stars = p.count("*")
            if not p.strip("*"):
                self.any = True
            elif stars == 0:
                exact.add(p)
            elif stars == 1 and p.endswith("*"):
                prefixes.append(p[:-1])
            elif stars == 1 and p.startswith("*"):
                suffixes.append(p[1:])
            elif stars == 2 and p.startswith("*") and p.endswith("*"):
                contains.append(p[1:-1])
            else:
                globs.append(p)
        self.exact = frozenset(exact)
        self.prefixes = tuple(prefixes)
        self.suffixes = tuple(suffixes)
        self.contains = tuple(contains)
        self.globs = tuple(globs)

    def match(self, upper: str) -> bool:
        """`upper`: the name, upper-cased."""
        return (self.any or upper in self.exact or upper.startswith(self.prefixes) or upper.endswith(self.suffixes)
                or any(c in upper for c in self.contains) or any(_secrets._glob(g, upper) for g in self.globs))


_BUILTIN = Patterns(p for p, _ in SECRET_NAMES if "*" in p)
_BUILTIN_EXACT = {p: why for p, why in SECRET_NAMES if "*" not in p}
_BUILTIN_WHY = tuple((Patterns([p]), why) for p, why in SECRET_NAMES if "*" in p)
_NOT_SECRET = Patterns(NOT_SECRET_NAMES)


def name_reason(name: str, extra: Patterns | None = None) -> str | None:
    """Why a variable's name marks it as a credential, or None. The well-known exact names win
    over NOT_SECRET_NAMES; the policy's `secret_env` patterns (`extra`) win over both."""
    upper = name.upper()
    if extra is not None and extra.match(upper):
        return "named in process.secret_env"
    why = _BUILTIN_EXACT.get(upper)
    if why is not None:
        return why
    if _NOT_SECRET.match(upper) or not _BUILTIN.match(upper):
        return None
    for pattern, why in _BUILTIN_WHY:
        if pattern.match(upper):
            return why
    return "named like a credential"


def withheld(environ, pass_env=(), secret_env=()) -> dict[str, str]:
    """{name: why} of the variables in `environ` that must not reach the command, in the order
    of `environ`. `pass_env`: patterns let through whatever they look like; `secret_env`: more
    name patterns to withhold."""
    passed = Patterns(pass_env) if pass_env else None
    if passed is not None and passed.any:
        return {}
    extra = Patterns(secret_env) if secret_env else None
    found: dict[str, str] = {}
    rest_names: list[str] = []
    rest_values: list[str] = []
    for name, value in environ.items():
        if passed is not None and passed.match(name.upper()):
            continue
        why = name_reason(name, extra)
        if why is not None:
            found[name] = why
        else:
            rest_names.append(name)
            rest_values.append(value)
    for index, why in value_findings(rest_values).items():
        found[rest_names[index]] = f"value: {why}"
    if len(found) > 1:
        order = {name: i for i, name in enumerate(environ)}
        found = dict(sorted(found.items(), key=lambda kv: order[kv[0]]))
    return found


def notice(names) -> str:
    """The one line printed before the run: the names (escaped), never a value."""
    from ..display import shown

    names = sorted(names)
    listed = ", ".join(shown(n, 80) for n in names)
    if len(names) == 1:
        n = shown(names[0], 80)
        return (f"corral: withheld 1 variable that looks like a credential: {listed} (pass it with --pass-env {n}, "
                f"or bind it to its hosts with --mask-env {n}@HOST)")
    return (f"corral: withheld {len(names)} variables that look like credentials: {listed} (pass one with "
            "--pass-env NAME, or bind it to its hosts with --mask-env NAME@HOST)")


# ----------------------------------------------------------------------------- CLI options


def mask_spec(raw: str, source: str = "<cli>", key: str = "--mask-env"):
    """`VAR@HOST[,HOST]` as a CredentialSpec: VAR's value swapped in wherever the client puts
    the placeholder, in requests to those hosts (like srt's envVars mask)."""
    from ..errors import PolicyError
    from .model import CredentialSpec
    from .names import is_env_name as _is_env_name
    from .native import _check_boundary

    var, at, hosts = raw.partition("@")
    if not at or not var or not hosts:
        raise PolicyError(source, key, raw, "expected VAR@HOST[,HOST...], as in GITHUB_TOKEN@api.github.com")
    if not _is_env_name(var):
        raise PolicyError(source, key, raw, f"{var!r} is not a valid environment variable name")
    names = [h.strip() for h in hosts.split(",")]
    if not all(names):
        raise PolicyError(source, key, raw, "an empty host: expected VAR@HOST[,HOST...]")
    checked = tuple(dict.fromkeys(_check_boundary("host", h, source, key, None) for h in names))
    return CredentialSpec(name=var, hosts=checked, from_env=var, env=var, origin=f"{source}:{key}")


def apply_cli(policy, pass_env=(), unset_env=(), mask_env=()):
    """The policy with `--pass-env`, `--unset-env` and `--mask-env` added (errors name the flag)."""
    from .._values import replace
    from ..errors import PolicyError
    from .names import is_env_name as _is_env_name

    for raw in pass_env:
        why = check_pattern(raw)
        if why is not None:
            raise PolicyError("<cli>", "--pass-env", raw, why)
    for raw in unset_env:
        if not _is_env_name(raw):
            raise PolicyError("<cli>", "--unset-env", raw, "not a valid environment variable name")
    proc = policy.process
    if pass_env or unset_env:
        policy = policy.with_process(pass_env=proc.pass_env + tuple(pass_env),
                                     unset_env=proc.unset_env + tuple(n for n in unset_env if n not in proc.unset_env))
    if mask_env:
        specs = list(policy.credentials)
        for raw in mask_env:
            spec = mask_spec(raw)
            for other in specs:
                if spec.name in (other.name, other.from_env, other.env):
                    raise PolicyError("<cli>", "--mask-env", raw, f"{spec.name} is already bound by "
                                      f"{other.origin or 'the policy'}: give it once")
            for ep in policy.endpoints:
                if ep.env == spec.name:
                    raise PolicyError("<cli>", "--mask-env", raw, f"{spec.name} is already set by {ep.origin}")
            specs.append(spec)
        policy = replace(policy, credentials=tuple(specs))
        if not policy.network.tls.auto:
            # srt settings without tlsTerminate: asking for injection on the command line turns on
            # TLS termination of the bound hosts (injection only happens over terminated TLS).
            policy = policy.with_network(tls=replace(policy.network.tls, auto=True))
    return policy


def mask_warnings(policy, mask_env, environ) -> list[str]:
    """One line per `--mask-env` host the network rules do not allow (binding a credential to a
    host does not allow the host) and per variable that is not set."""
    from ..display import shown

    lines = []
    rules = None
    for raw in mask_env:
        var, _, hosts = raw.partition("@")
        if var not in environ:
            lines.append(f"corral: warning: --mask-env {shown(raw)}: {shown(var)} is not set: nothing to bind")
        refused = []
        for host in dict.fromkeys(h.strip() for h in hosts.split(",")):
            if not policy.network.enabled:
                refused.append(host)
                continue
            if rules is None:
                from .network import compile_rules

                rules = compile_rules(policy.network, "<cli>")
            probe = "x" + host[1:] if host.startswith("*.") else host
            if not rules.decide_name(probe).allowed:
                refused.append(host)
        if refused:
            flags = " ".join(f"--allow-domain {shown(h)}" for h in refused)
            lines.append(f"corral: warning: --mask-env {shown(raw)}: binding a credential does not allow its "
                         f"hosts, and {', '.join(map(shown, refused))} "
                         f"{'is' if len(refused) == 1 else 'are'} not allowed: add {flags}")
    return lines
