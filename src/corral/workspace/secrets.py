"""What counts as a secret: file names, content signatures and env templates (pure, no I/O).

Rules of this module:

* Every decision about whether a file is a secret lives here, as data: `NAME_RULES` (names
  and paths, env templates included), `SIGNATURES` (token formats found in contents) and
  `PLACEHOLDER_WORDS`. The walker (`secretscan.py`) lists and reads files and asks; it never
  decides.
* Nothing returned from here holds a secret value. A content match carries the line number
  and a redacted preview (`redact()`: the first and last four characters at most); a check of
  a named file names the key that holds the value, never the value.
* False positives cost trust, so a token must sit on token boundaries, look random (Shannon
  entropy) and not look like a placeholder (`xxxx`, `<your-key>`, `${VAR}`, AWS's documented
  `...EXAMPLE` keys). A PEM header counts only when a base64 body follows it.

Names match case-insensitively, on the file name alone (`*` stays within the name), or on
`parent/name` for files that are secrets only in a known directory (`.aws/credentials`).
A rule with a check reads the file before deciding (`.npmrc` is a secret only when it holds
a token; `*.pem` only when it holds a private key, so certifi's `cacert.pem` is not one).
"""

from __future__ import annotations

from .._values import frozen

# ----------------------------------------------------------------------------- names

# pattern, kind, check, why. Patterns: a file name (`*` within the name), `parent/name`, or
# `dir/` (the whole directory is a secret; it is reported once and not descended). The first
# matching row wins, so templates come before `.env.*`. Check "" means the name decides;
# "template" rows are env templates: reported with kind "template" (not a secret, not
# denied) when every value is empty or a placeholder, else a secret like `.env`.
NAME_RULES: tuple[tuple[str, str, str, str], ...] = (
    (".env.example", "dotenv", "template", "env template"),
    (".env.sample", "dotenv", "template", "env template"),
    (".env.template", "dotenv", "template", "env template"),
    (".env.tpl", "dotenv", "template", "env template"),
    (".env.dist", "dotenv", "template", "env template"),
    (".env.defaults", "dotenv", "template", "env template"),
    (".env", "dotenv", "", "environment file (API keys, passwords)"),
    (".env.*", "dotenv", "", "environment file (API keys, passwords)"),
    ("example.env", "dotenv", "template", "env template"),
    ("sample.env", "dotenv", "template", "env template"),
    ("template.env", "dotenv", "template", "env template"),
    ("*.env", "dotenv", "", "environment file (prod.env, staging.env: API keys, passwords)"),
    ("env.production", "dotenv", "", "environment file (API keys, passwords)"),
    ("env.prod", "dotenv", "", "environment file (API keys, passwords)"),
    ("env.staging", "dotenv", "", "environment file (API keys, passwords)"),
    ("env.development", "dotenv", "", "environment file (API keys, passwords)"),
    ("env.local", "dotenv", "", "environment file (API keys, passwords)"),
    (".envrc", "dotenv", "envrc", "direnv file exporting a secret"),
    (".dev.vars", "dotenv", "", "Cloudflare Wrangler local secrets"),
    (".streamlit/secrets.toml", "app-secrets", "", "Streamlit secrets"),
    ("secrets.toml", "app-secrets", "", "secrets file"),
    ("secrets.yml", "app-secrets", "", "secrets file"),
    ("secrets.yaml", "app-secrets", "", "secrets file"),
    ("secrets.json", "app-secrets", "", "secrets file"),
    (".secrets", "app-secrets", "", "secrets file"),
    ("*.tfvars", "terraform-vars", "", "Terraform variables (passwords, keys)"),
    ("*.tfvars.json", "terraform-vars", "", "Terraform variables (passwords, keys)"),
    ("*.pem", "private-key", "pem", "PEM file holding a private key"),
    ("*.key", "private-key", "key", "private key file"),
    ("id_rsa", "ssh-key", "", "SSH private key"),
    ("id_dsa", "ssh-key", "", "SSH private key"),
    ("id_ecdsa", "ssh-key", "", "SSH private key"),
    ("id_ed25519", "ssh-key", "", "SSH private key"),
    ("id_ecdsa_sk", "ssh-key", "", "SSH private key (security key handle)"),
    ("id_ed25519_sk", "ssh-key", "", "SSH private key (security key handle)"),
    ("*.ppk", "ssh-key", "", "PuTTY private key"),
    ("*.p12", "pkcs12", "", "PKCS#12 bundle (certificate and private key)"),
    ("*.pfx", "pkcs12", "", "PKCS#12 bundle (certificate and private key)"),
    ("*.jks", "keystore", "", "Java keystore"),
    ("*.keystore", "keystore", "", "keystore"),
    ("*.kdbx", "password-db", "", "KeePass database"),
    (".netrc", "netrc", "", "machine logins and passwords"),
    ("_netrc", "netrc", "", "machine logins and passwords"),
    (".pgpass", "pgpass", "", "PostgreSQL passwords"),
    (".my.cnf", "mysql-password", "password", "MySQL client password"),
    (".s3cfg", "aws-credentials", "", "s3cmd access and secret keys"),
    (".htpasswd", "htpasswd", "", "HTTP password hashes"),
    ("*.tfstate", "terraform-state", "", "Terraform state (holds resource secrets in clear)"),
    ("*.tfstate.backup", "terraform-state", "", "Terraform state (holds resource secrets in clear)"),
    (".vault-token", "vault-token", "", "HashiCorp Vault token"),
    ("*service-account*.json", "gcp-service-account", "", "cloud service-account key"),
    ("*service_account*.json", "gcp-service-account", "", "cloud service-account key"),
    ("application_default_credentials.json", "gcloud-credentials", "", "gcloud application-default credentials"),
    ("credentials.json", "credentials-file", "", "OAuth or cloud credentials"),
    ("client_secret*.json", "oauth-client-secret", "", "OAuth client secret"),
    (".git-credentials", "git-credentials", "", "git passwords and tokens in clear"),
    (".npmrc", "npm-token", "npmrc", "npm registry token"),
    (".pypirc", "pypi-token", "pypirc", "PyPI upload password or token"),
    (".yarnrc.yml", "npm-token", "yarnrc", "Yarn registry token"),
    ("kubeconfig", "kubeconfig", "", "Kubernetes cluster credentials"),
    ("*.kubeconfig", "kubeconfig", "", "Kubernetes cluster credentials"),
    (".aws/credentials", "aws-credentials", "", "AWS access keys"),
    (".kube/config", "kubeconfig", "", "Kubernetes cluster credentials"),
    (".docker/config.json", "docker-auth", "docker", "registry logins"),
    ("gh/hosts.yml", "github-token", "oauth", "GitHub CLI token"),
    (".config/hub", "github-token", "oauth", "hub GitHub token"),
    (".git/config", "git-credentials", "url", "credentials in a remote URL"),
    (".cargo/credentials", "cargo-token", "", "crates.io token"),
    (".cargo/credentials.toml", "cargo-token", "", "crates.io token"),
    (".gem/credentials", "rubygems-token", "", "RubyGems API key"),
    (".terraform.d/credentials.tfrc.json", "terraform-token", "", "Terraform Cloud token"),
    ("gcloud/credentials.db", "gcloud-credentials", "", "gcloud credential store"),
    ("gcloud/access_tokens.db", "gcloud-credentials", "", "gcloud access tokens"),
    (".azure/", "azure-credentials", "", "Azure CLI tokens and profiles"),
    (".claude/.credentials.json", "agent-credentials", "", "Claude Code login"),
    (".codex/auth.json", "agent-credentials", "", "Codex login"),
    ("huggingface/token", "huggingface-token", "", "Hugging Face token"),
    ("huggingface/stored_tokens", "huggingface-token", "", "Hugging Face tokens"),
    (".huggingface/token", "huggingface-token", "", "Hugging Face token"),
    ("containers/auth.json", "docker-auth", "", "podman/buildah registry logins"),
    ("composer/auth.json", "composer-auth", "", "Composer repository logins"),
    (".composer/auth.json", "composer-auth", "", "Composer repository logins"),
    ("settings-security.xml", "maven-master-password", "", "Maven master password"),
    (".boto", "aws-credentials", "", "boto/gsutil keys"),
    (".databrickscfg", "databricks-token", "", "Databricks tokens"),
    (".gnupg/", "gpg-keys", "", "GnuPG keyring"),
)

@frozen
class NameMatch:
    kind: str
    why: str
    check: str = ""  # "": the name decides; else the file is read and `check_named` decides
    pattern: str = ""


def _rows():
    by_parent: dict[str, dict[str, NameMatch]] = {}
    dirs: dict[str, NameMatch] = {}
    base: list[tuple[str, NameMatch]] = []
    for pattern, kind, check, why in NAME_RULES:
        match = NameMatch(kind, why, check, pattern)
        if pattern.endswith("/"):
            dirs[pattern[:-1].lower()] = match
        elif "/" in pattern:
            parent, _, name = pattern.rpartition("/")
            by_parent.setdefault(parent.rpartition("/")[2].lower(), {})[name.lower()] = match
        else:
            base.append((pattern, match))
    return by_parent, dirs, base


_BY_PARENT, DIR_RULES, _BASE_RULES = _rows()
_compiled: dict[str, object] = {}


def _needles() -> tuple[frozenset[str], tuple[str, ...]]:
    """What a directory listing ("\n" + names joined by "\n" + "\n", lowercased) must
    contain for a name rule to possibly match: the exact names, and for each `*` pattern its
    longest literal part, with the newline that anchors it where it is anchored."""
    exact = frozenset(p.lower() for p, _m in _BASE_RULES if "*" not in p)
    needles = []
    for pattern, _m in _BASE_RULES:
        if "*" in pattern:
            parts = pattern.lower().split("*")
            parts[0] = "\n" + parts[0]
            parts[-1] += "\n"
            needles.append(max(parts, key=lambda s: len(s.strip("\n"))))
    return exact, tuple(needles)


_EXACT_NAMES, _NEEDLES = _needles()
_LOWER_RULES = tuple((p.lower(), m) for p, m in _BASE_RULES)


def _name_regex():
    """One anchored regex for every name pattern: group `r<i>` is row i of `_BASE_RULES`."""
    rx = _compiled.get("names")
    if rx is None:
        import re

        alts = []
        for i, (pattern, _m) in enumerate(_BASE_RULES):
            body = ".*".join(re.escape(part) for part in pattern.split("*"))
            alts.append(f"(?P<r{i}>{body})")
        rx = _compiled["names"] = re.compile("(?:" + "|".join(alts) + r")\Z", re.IGNORECASE | re.DOTALL)
    return rx


def classify_name(relpath: str, is_dir: bool = False) -> NameMatch | None:
    """The rule a path (relative, `/`-separated) matches by its name, or None."""
    parent, _, name = relpath.rstrip("/").rpartition("/")
    low = name.lower()
    if is_dir:
        return DIR_RULES.get(low)
    rules = _BY_PARENT.get(parent.rpartition("/")[2].lower())
    if rules is not None and low in rules:
        return rules[low]
    # First rule in table order, like the alternation of _name_regex(), without compiling it
    # (~7 ms at start-up for one process that classifies a handful of names).
    for pattern, match in _LOWER_RULES:
        if _glob(pattern, low):
            return match
    return None


def _glob(pattern: str, name: str) -> bool:
    """`*` matches any run of characters (including "/" and "."); both sides lowercased."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return name == pattern
    head, tail = parts[0], parts[-1]
    if len(name) < len(head) + len(tail) or not name.startswith(head) or not name.endswith(tail):
        return False
    pos, end = len(head), len(name) - len(tail)
    for middle in parts[1:-1]:
        pos = name.find(middle, pos, end)
        if pos < 0:
            return False
        pos += len(middle)
    return True


def match_names(parent: str, names: list[str]) -> list[tuple[str, NameMatch]]:
    """Every (name, rule) among the file names of one directory (`parent`: the directory's
    path relative to the walk, "" at its top).

    The walker's hot path on large trees: one lowercased join of the listing, one set test
    and one search for the literal parts of the `*` patterns, all in C; names are classified
    one by one only in the rare directory where something could match."""
    text = "\n" + "\n".join(names).lower() + "\n"
    # Plain substring tests, each a fast C search: no regex (and no `re` import on the start
    # path of every run), and quicker than one alternation over a long listing.
    if (
        parent.rpartition("/")[2].lower() not in _BY_PARENT
        and _EXACT_NAMES.isdisjoint(text.split("\n"))
        and not any(needle in text for needle in _NEEDLES)
    ):
        return []
    out: list[tuple[str, NameMatch]] = []
    for name in names:
        rule = classify_name(f"{parent}/{name}" if parent else name)
        if rule is not None:
            out.append((name, rule))
    return out


def deny_globs() -> list[str]:
    """NAME_RULES as gitignore-style globs (what `rg --files -g` or a deny_read list takes)."""
    globs = []
    for pattern, *_ in NAME_RULES:
        if pattern.endswith("/"):
            globs.append(f"**/{pattern}**")
        elif "/" in pattern:
            globs.append(f"**/{pattern}")
        else:
            globs.append(pattern)
    return globs


# ----------------------------------------------------------------------------- placeholders

PLACEHOLDER_WORDS = (
    "xxxx", "example", "your", "placeholder", "changeme", "change_me", "change-me", "dummy",
    "redacted", "sample", "insert", "replace", "fake", "todo", "****", "...", "0000000",
    "1234567", "abcdefg", "<", ">", "${", "{{", "%(",
)


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    from math import log2

    n = len(text)
    if not n:
        return 0.0
    counts: dict[str, int] = {}
    for c in text:
        counts[c] = counts.get(c, 0) + 1
    return -sum(k / n * log2(k / n) for k in counts.values())


def is_placeholder(value: str) -> bool:
    """A value that stands for a secret without being one: empty, `${VAR}`, `<your-key>`,
    `xxxx`, `changeme`, AWS's `...EXAMPLE` keys, one repeated character."""
    v = value.strip().strip("'\"").strip()
    if not v:
        return True
    low = v.lower()
    if v[0] == "$" or any(w in low for w in PLACEHOLDER_WORDS):
        return True
    return len(set(low)) <= 2


def looks_random(value: str, min_len: int = 16, min_entropy: float = 3.5) -> bool:
    return len(value) >= min_len and not is_placeholder(value) and entropy(value) >= min_entropy


def redact(token: str) -> str:
    """`ghp_****wxyz`: the first and last four characters of a long token, else stars."""
    return f"{token[:4]}****{token[-4:]}" if len(token) >= 20 else "****"


# ----------------------------------------------------------------------------- contents

# kind, why, literals (the file is searched only if one occurs), regex (group 1: the token),
# validator: "token" (entropy and placeholder checks on group 1), "pem" (a base64 body must
# follow), "header" (the match alone decides). Specific rows first: overlapping later matches
# are dropped.
SIGNATURES: tuple[tuple[str, str, tuple[bytes, ...], bytes, str], ...] = (
    ("private-key", "private key in a JSON credential", (b"PRIVATE KEY",),
     rb'"private_key"\s*:\s*"(-----BEGIN [A-Z ]*PRIVATE KEY-----)', "pem"),
    ("private-key", "PEM private key block", (b"PRIVATE KEY",),
     rb"(-----BEGIN (?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP|SSH2 ENCRYPTED) )?PRIVATE KEY(?: BLOCK)?-----)", "pem"),
    ("private-key", "PuTTY private key", (b"PuTTY-User-Key-File-",),
     rb"(PuTTY-User-Key-File-[23]: [a-z0-9-]+)", "header"),
    ("aws-access-key", "AWS access key ID", (b"AKIA", b"ASIA"),
     rb"(?<![A-Za-z0-9/+])((?:AKIA|ASIA)[A-Z0-9]{16})(?![A-Za-z0-9/+])", "token"),
    ("aws-secret-key", "AWS secret access key",
     (b"ecret_access_key", b"ECRET_ACCESS_KEY", b"ecretAccessKey"),
     rb"(?i:secret_?access_?key)[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])", "token"),
    ("github-token", "GitHub token", (b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"),
     rb"(?<![A-Za-z0-9_])(gh[pousr]_[A-Za-z0-9]{36,251})(?![A-Za-z0-9_])", "token"),
    ("github-token", "GitHub fine-grained token", (b"github_pat_",),
     rb"(?<![A-Za-z0-9_])(github_pat_[A-Za-z0-9_]{80,251})(?![A-Za-z0-9_])", "token"),
    ("gitlab-token", "GitLab personal access token", (b"glpat-",),
     rb"(?<![A-Za-z0-9_-])(glpat-[A-Za-z0-9_-]{20,})(?![A-Za-z0-9_-])", "token"),
    ("slack-token", "Slack token", (b"xox",),
     rb"(?<![A-Za-z0-9_-])(xox[abposr]-[0-9]+-[0-9A-Za-z-]{10,})(?![A-Za-z0-9_-])", "token"),
    ("slack-webhook", "Slack incoming webhook URL", (b"hooks.slack.com",),
     rb"hooks\.slack\.com/services/(T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{20,})", "token"),
    ("stripe-key", "Stripe live secret key", (b"_live_",),
     rb"(?<![A-Za-z0-9_])((?:sk|rk)_live_[0-9A-Za-z]{24,})(?![A-Za-z0-9_])", "token"),
    ("anthropic-key", "Anthropic API key", (b"sk-",),
     rb"(?<![A-Za-z0-9_-])(sk-ant-(?:api03|admin01|oat01|ort01)-[A-Za-z0-9_-]{32,})(?![A-Za-z0-9_-])", "token"),
    ("openai-key", "OpenAI API key", (b"sk-",),
     rb"(?<![A-Za-z0-9_-])(sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}|sk-[A-Za-z0-9]{48})(?![A-Za-z0-9_-])", "token"),
    ("google-api-key", "Google API key", (b"AIza",),
     rb"(?<![A-Za-z0-9_-])(AIza[0-9A-Za-z_-]{35})(?![A-Za-z0-9_-])", "token"),
    ("npm-token", "npm access token", (b"npm_",),
     rb"(?<![A-Za-z0-9_])(npm_[A-Za-z0-9]{36})(?![A-Za-z0-9_])", "token"),
    ("pypi-token", "PyPI API token", (b"pypi-AgEIcHlwaS5vcmc",),
     rb"(pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,})", "token"),
    ("huggingface-token", "Hugging Face token", (b"hf_",),
     rb"(?<![A-Za-z0-9_])(hf_[A-Za-z0-9]{34,40})(?![A-Za-z0-9_])", "token"),
    # scheme://user:password@host; group 1 is the password (checked like a token, but a
    # dev default such as postgres:postgres or user:password is a placeholder)
    ("connection-string", "connection string with a password", (b"://",),
     rb"(?i:\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|"
     rb"clickhouse|cockroachdb|couchdbs?|neo4j(?:\+s)?|nats|ldaps?|smtps?|s?ftp|https?|"
     rb"jdbc:[a-z0-9]+)://)([^\s:@/'\"<>]{1,128}:[^\s@/'\"<>]{1,256})@[A-Za-z0-9.\[\]_-]", "userinfo"),
)
# Passwords that sample configurations use: not secrets.
DEFAULT_PASSWORDS = frozenset({
    "password", "pass", "passwd", "pwd", "secret", "test", "testing", "admin", "root", "user",
    "guest", "postgres", "mysql", "redis", "rabbitmq", "mongo", "example", "demo", "dev", "local",
    "localhost", "corral-withheld",
})
TOKEN_MIN_ENTROPY = 3.0
PEM_BODY_MIN_ENTROPY = 3.5
MAX_MATCHES = 50  # per file


@frozen
class ContentMatch:
    kind: str
    why: str
    line: int
    preview: str  # redacted: never the secret itself


def _signatures():
    """The compiled table, and each distinct literal with the rows it gates."""
    sigs = _compiled.get("sigs")
    if sigs is None:
        import re

        sigs = _compiled["sigs"] = [
            (kind, why, re.compile(rx), check) for kind, why, _lits, rx, check in SIGNATURES
        ]
        gates: dict[bytes, list[int]] = {}
        for i, row in enumerate(SIGNATURES):
            for lit in row[2]:
                gates.setdefault(lit, []).append(i)
        _compiled["gates"] = tuple((lit, tuple(rows)) for lit, rows in gates.items())
        _compiled["b64"] = re.compile(rb"[A-Za-z0-9+/]{40,}")
    return sigs


def _pem_body_ok(data, start: int, end: int) -> bool:
    """A real key has a base64 body right after its header (also inside JSON, `\\n`-joined)."""
    m = _compiled["b64"].search(data, start, min(end, start + 600))
    if m is None:
        return False
    body = m.group().decode("ascii")
    return not is_placeholder(body) and entropy(body) >= PEM_BODY_MIN_ENTROPY


def token_ok(token: str) -> bool:
    return not is_placeholder(token) and entropy(token) >= TOKEN_MIN_ENTROPY


def scan_text(data: bytes | bytearray, end: int | None = None) -> list[ContentMatch]:
    """Every content signature in `data[:end]`, at most MAX_MATCHES, with redacted previews.

    Cost on a clean file: one substring search per distinct literal of SIGNATURES (C speed);
    a row's regex runs only when one of its literals occurs."""
    if end is None:
        end = len(data)
    sigs = _signatures()
    find = data.find
    rows = [r for lit, r in _compiled["gates"] if find(lit, 0, end) != -1]
    if not rows:
        return []
    out: list[ContentMatch] = []
    spans: list[tuple[int, int]] = []
    for i in sorted({i for r in rows for i in r}):
        kind, why, rx, check = sigs[i]
        for m in rx.finditer(data, 0, end):
            s, e = m.span()
            if any(s < pe and ps < e for ps, pe in spans):
                continue
            token = m.group(1).decode("ascii", "replace")
            if check == "token":
                if not token_ok(token):
                    continue
                preview = redact(token)
            elif check == "userinfo":
                user, _, password = token.partition(":")
                low = password.lower()
                if is_placeholder(password) or low in DEFAULT_PASSWORDS or low == user.lower():
                    continue
                preview = f"{user[:4]}:****"
            elif check == "pem":
                if not _pem_body_ok(data, e, end):
                    continue
                preview = token
            else:
                preview = token
            spans.append((s, e))
            out.append(ContentMatch(kind, why, data.count(b"\n", 0, s) + 1, preview))
            if len(out) >= MAX_MATCHES:
                break
    out.sort(key=lambda c: c.line)
    return out


# ----------------------------------------------------------------------------- named-file checks

SECRET_KEY_WORDS = (
    "secret", "token", "passw", "pwd", "apikey", "api_key", "private", "credential", "auth",
    "access_key", "signing", "encryption_key", "salt", "dsn",
)


def _env_pairs(text: str):
    """(line, key, value) of KEY=VALUE lines (dotenv syntax: `export`, quotes, comments)."""
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] == "#" or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, _, value = line.partition("=")
        key = key.strip()
        value = value.strip()
        if value[:1] in ("'", '"'):
            q = value[0]
            value = value[1:].partition(q)[0]
        else:
            value = value.partition(" #")[0].strip()
        yield lineno, key, value


def check_template(data: bytes) -> tuple[str, str]:
    """("template", why) when every value is empty or a placeholder, else ("secret", why
    naming the first key with a real-looking value)."""
    found = scan_text(data)
    if found:
        return "secret", f"template with a real value: line {found[0].line}: {found[0].why}"
    text = data.decode("utf-8", "replace")
    for lineno, key, value in _env_pairs(text):
        low = key.lower()
        if any(w in low for w in SECRET_KEY_WORDS) and looks_random(value):
            return "secret", f"template with a real value: line {lineno}: {key}"
    return "template", "placeholders only"


def _assignments(data: bytes, keys: tuple[str, ...], seps: str = "=:"):
    """(line, key, value) for lines `key = value` / `key: value` whose key ends with one of
    `keys` (npm's `//registry/:_authToken=` included)."""
    text = data.decode("utf-8", "replace")
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        for sep in seps:
            key, found, value = line.partition(sep)
            if found and key.strip().lower().endswith(keys):
                yield lineno, key.strip(), value.strip().strip("'\"")
                break


def _has_value(data: bytes, keys: tuple[str, ...], seps: str = "=:") -> str | None:
    for lineno, key, value in _assignments(data, keys, seps):
        if not is_placeholder(value):
            return f"line {lineno}: {key.rpartition(':')[2] or key}"
    return None


def _check_url(data: bytes) -> str | None:
    """A remote URL with credentials: `https://user:password@host`, `https://TOKEN@host`."""
    text = data.decode("utf-8", "replace")
    for lineno, raw in enumerate(text.splitlines(), 1):
        scheme, sep, rest = raw.partition("://")
        if not sep or "@" not in rest:
            continue
        userinfo = rest.split("/", 1)[0].rpartition("@")[0]
        if not userinfo:
            continue
        user, colon, password = userinfo.partition(":")
        if (colon and not is_placeholder(password)) or scan_text(userinfo.encode()) or looks_random(user, 20):
            return f"line {lineno}"
    return None


def _check_pem(data: bytes, key_file: bool) -> str | None:
    if not data:
        return None
    if b"PRIVATE KEY" in data:
        return "holds a private key"
    if b"-----BEGIN " in data:
        return None  # certificates, public keys, CSRs: public material
    if key_file and data[:4] == b"PK\x03\x04":
        return None  # a Keynote document, not a key
    return "unrecognised contents (not a certificate)"


def check_named(check: str, data: bytes) -> tuple[str, str] | None:
    """Decide a name rule that needs the file's contents: ("secret", detail),
    ("template", detail) or None (this file is not a secret)."""
    if check == "template":
        return check_template(data)
    if check == "pem" or check == "key":
        detail = _check_pem(data, check == "key")
    elif check == "npmrc":
        detail = _has_value(data, ("_authtoken", "_auth", "_password", "password"), "=")
    elif check == "pypirc":
        detail = _has_value(data, ("password",))
    elif check == "yarnrc":
        detail = _has_value(data, ("npmauthtoken", "npmauthident"), ":")
    elif check == "password":
        detail = _has_value(data, ("password",))
    elif check == "oauth":
        detail = _has_value(data, ("oauth_token",), ":")
    elif check == "docker":
        import re

        detail = None
        for m in re.finditer(rb'"(auth|identitytoken|registrytoken)"\s*:\s*"([^"]*)"', data):
            if not is_placeholder(m.group(2).decode("utf-8", "replace")):
                detail = f'"{m.group(1).decode()}" holds a login'
                break
    elif check == "url":
        detail = _check_url(data)
    elif check == "envrc":
        detail = _check_envrc(data)
    else:
        raise ValueError(f"unknown check {check!r}")
    return ("secret", detail) if detail else None


def _check_envrc(data: bytes) -> str | None:
    """An `.envrc` is a shell script: a secret when it holds a token, or assigns a value that
    is not a placeholder or a `$(command)` to a secret-sounding name."""
    found = scan_text(data)
    if found:
        return f"line {found[0].line}: {found[0].why}"
    for lineno, key, value in _env_pairs(data.decode("utf-8", "replace")):
        low = key.lower()
        if any(w in low for w in SECRET_KEY_WORDS) and not is_placeholder(value) and len(value) >= 8:
            return f"line {lineno}: {key}"
    return None


# ----------------------------------------------------------------------------- line masking

WITHHELD = "corral-withheld"
# Credential files shown inside with their secret values replaced by WITHHELD instead of being
# denied whole: the rest (registries, scopes, mirrors, build settings) stays readable. File name
# (or `parent/name`) -> regex whose group `v` is a secret value. After masking, the text must
# hold no token signature and no URL password any more, or the file stays denied whole.
# Not masked (denied whole): files that hold nothing but credentials (.netrc, .pgpass,
# .git-credentials, .gem/credentials, .cargo/credentials*, auth.json files, tokens).
LINE_MASKS: dict[str, str] = {
    ".npmrc": r"(?im)^[ \t]*[^#;\s][^=\n]*?(?:_authtoken|_auth|_password|password)[ \t]*=[ \t]*(?P<v>[^\n]*?)[ \t]*$",
    ".yarnrc": r"(?im)^[ \t]*[^#\s][^\n]*?(?:_authtoken|_auth|_password|password)\"?[ \t]+(?P<v>[^\s\n][^\n]*?)[ \t]*$",
    ".yarnrc.yml": r"(?im)^[ \t]*(?:npmauthtoken|npmauthident|npmpassword)[ \t]*:[ \t]*(?P<v>[^\n]*?)[ \t]*$",
    ".pypirc": r"(?im)^[ \t]*(?:password|token)[ \t]*[=:][ \t]*(?P<v>[^\n]*?)[ \t]*$",
    ".my.cnf": r"(?im)^[ \t]*password[ \t]*=[ \t]*(?P<v>[^\n]*?)[ \t]*$",
    ".m2/settings.xml": r"(?is)<(password|passphrase)>(?P<v>.*?)</\1>",
    ".gradle/gradle.properties": (r"(?im)^[ \t]*[^#!\s][^=:\n]*(?:password|passwd|token|secret|apikey|api_key|"
                                  r"credential|signing\.key|auth)[^=:\n]*[=:][ \t]*(?P<v>[^\n]*?)[ \t]*$"),
    ".bundle/config": r"(?m)^[ \t]*BUNDLE_(?!MIRROR__)[A-Z0-9_]*__[A-Z0-9_]+[ \t]*:[ \t]*(?P<v>[^\n]*?)[ \t]*$",
    ".docker/config.json": r'(?i)"(?:auth|identitytoken|registrytoken|password)"\s*:\s*"(?P<v>[^"]*)"',
}
_URL_PASSWORD = r"(?i)\b[a-z][a-z0-9+.-]*://[^\s:@/'\"<>]+:(?P<v>[^\s@/'\"<>]+)@"


def line_mask_rule(path: str) -> str | None:
    """The LINE_MASKS key that applies to `path` (by name, or parent/name), or None."""
    parent, _, name = path.rpartition("/")
    key = f"{parent.rpartition('/')[2]}/{name}"
    if key in LINE_MASKS:
        return key
    return name if name in LINE_MASKS else None


def mask_lines(path: str, text: str) -> str | None:
    """`text` with the secret values of `path`'s LINE_MASKS rule (and every URL password)
    replaced by WITHHELD; None when the file has no rule or a secret would still show."""
    import re

    key = line_mask_rule(path)
    if key is None:
        return None

    def withhold(m):
        start, end = m.span("v")
        if start == end:
            return m.group(0)
        a = m.start(0)
        return m.group(0)[: start - a] + WITHHELD + m.group(0)[end - a:]

    out = re.sub(LINE_MASKS[key], withhold, text)
    out = re.sub(_URL_PASSWORD, withhold, out)
    if scan_text(out.encode("utf-8", "surrogateescape")):
        return None
    return out
