"""The built-in policy and the well-known credential locations (data, no I/O)."""

from __future__ import annotations

from .model import FilesystemPolicy, LaunchContext, PathRule, Policy

BUILTIN = "<built-in>"

# Relative to HOME. Denied whenever `filesystem.deny_credentials` is true (the default).
HOME_CREDENTIALS = (
    ".ssh", ".gnupg", ".aws", ".azure", ".kube", ".config/gcloud", ".config/gh", ".config/hub",
    ".docker/config.json", ".git-credentials", ".netrc", ".npmrc", ".pypirc", ".pgpass",
    ".my.cnf", ".vault-token", ".terraform.d/credentials.tfrc.json", ".cargo/credentials",
    ".cargo/credentials.toml", ".gem/credentials", ".password-store", ".local/share/keyrings",
    ".config/op", ".bash_history", ".zsh_history", ".python_history", ".psql_history",
    ".mysql_history", ".lesshst", ".viminfo",
    # agents and their tools (Linux locations)
    ".claude/.credentials.json", ".codex/auth.json", ".config/github-copilot", ".copilot/config.json",
    ".config/glab-cli", ".cache/huggingface/token", ".cache/huggingface/stored_tokens",
    ".huggingface/token",
    # registries and build tools (.npmrc, .pypirc, .yarnrc.yml, .m2/settings.xml,
    # .gradle/gradle.properties, .bundle/config are shown masked: see secrets.LINE_MASKS)
    ".yarnrc", ".yarnrc.yml", ".config/containers/auth.json", ".m2/settings.xml",
    ".m2/settings-security.xml", ".gradle/gradle.properties", ".composer/auth.json",
    ".config/composer/auth.json", ".bundle/config", ".local/share/gem/credentials",
    # cloud CLIs
    ".oci", ".config/doctl", ".s3cfg", ".boto", ".databrickscfg", ".config/rclone/rclone.conf",
    ".config/hcloud", ".fly", ".config/heroku",
)
# Where tools keep a credential when an environment variable says so (file paths).
CREDENTIAL_ENV_FILES = (
    ("HF_HOME", "token"), ("HF_TOKEN_PATH", ""), ("REGISTRY_AUTH_FILE", ""), ("DOCKER_CONFIG", "config.json"),
    ("CLAUDE_CONFIG_DIR", ".credentials.json"), ("CODEX_HOME", "auth.json"), ("AWS_SHARED_CREDENTIALS_FILE", ""),
    ("KUBECONFIG", ""), ("GH_CONFIG_DIR", "hosts.yml"), ("CARGO_HOME", "credentials.toml"),
    ("CARGO_HOME", "credentials"), ("GRADLE_USER_HOME", "gradle.properties"), ("COMPOSER_HOME", "auth.json"),
    ("CLOUDSDK_CONFIG", ""), ("AZURE_CONFIG_DIR", ""), ("PGPASSFILE", ""), ("NETRC", ""),
    ("NPM_CONFIG_USERCONFIG", ""), ("XDG_RUNTIME_DIR", "containers/auth.json"),
)
KERBEROS_PREFIX = "krb5cc"  # /tmp/krb5cc_<uid>[_XXXXXX]: file credential caches (any user's)
# Host secrets that root (and only root) could otherwise read.
SYSTEM_CREDENTIALS = (
    "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers",
    "/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_dsa_key", "/root/.ssh", "/root/.gnupg", "/root/.aws", "/root/.kube",
    "/root/.docker/config.json", "/root/.git-credentials", "/root/.netrc", "/root/.npmrc",
    "/root/.pypirc", "/root/.config/gcloud", "/root/.config/gh", "/root/.azure",
    "/root/.bash_history", "/var/lib/sss", "/etc/krb5.keytab",
)


def credential_paths(ctx: LaunchContext, environ=None, tmp_names=()) -> list[str]:
    """The credential locations to deny: HOME_CREDENTIALS, SYSTEM_CREDENTIALS, the files the
    launcher's environment points at (CREDENTIAL_ENV_FILES, KRB5CCNAME) and the Kerberos caches
    among `tmp_names` (the names in /tmp)."""
    home = ctx.home.rstrip("/") or "/"
    paths = [f"{home}/{rel}" if home != "/" else f"/{rel}" for rel in HOME_CREDENTIALS]
    paths.extend(SYSTEM_CREDENTIALS)
    environ = environ or {}
    for var, rel in CREDENTIAL_ENV_FILES:
        for value in (environ.get(var) or "").split(":" if var == "KUBECONFIG" else "\0"):
            if value.startswith("/"):
                paths.append(f"{value.rstrip('/')}/{rel}" if rel else value)
    cache = environ.get("KRB5CCNAME") or ""
    kind, colon, rest = cache.partition(":")
    cache = rest if colon and kind.upper() in ("FILE", "DIR") else cache
    if cache.startswith("/"):
        paths.append(cache)
    paths.extend(f"/tmp/{n}" for n in sorted(tmp_names) if n.startswith(KERBEROS_PREFIX))
    seen: set[str] = set()
    return [p for p in paths if not (p in seen or seen.add(p))]


def default_policy(ctx: LaunchContext) -> Policy:
    """No network, writes only to the working directory (and the private TMPDIR every run
    gets), reads denied on the credential locations above. Launched from `/`, the working
    directory is the whole system: nothing is writable then (grant paths explicitly)."""
    import os

    writable = () if os.path.realpath(ctx.cwd) == "/" else (PathRule(ctx.cwd, False, BUILTIN),)
    return Policy(filesystem=FilesystemPolicy(allow_write=writable), sources=())
