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
)
# Host secrets that root (and only root) could otherwise read.
SYSTEM_CREDENTIALS = (
    "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers",
    "/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_dsa_key", "/root/.ssh", "/root/.gnupg", "/root/.aws", "/root/.kube",
    "/root/.docker/config.json", "/root/.git-credentials", "/root/.netrc", "/root/.npmrc",
    "/root/.pypirc", "/root/.config/gcloud", "/root/.config/gh", "/root/.azure",
    "/root/.bash_history", "/var/lib/sss", "/etc/krb5.keytab",
)


def credential_paths(ctx: LaunchContext) -> list[str]:
    home = ctx.home.rstrip("/") or "/"
    paths = [f"{home}/{rel}" if home != "/" else f"/{rel}" for rel in HOME_CREDENTIALS]
    paths.extend(SYSTEM_CREDENTIALS)
    seen: set[str] = set()
    return [p for p in paths if not (p in seen or seen.add(p))]


def default_policy(ctx: LaunchContext) -> Policy:
    """No network, writes only to the working directory (and the private TMPDIR every run
    gets), reads denied on the credential locations above. Launched from `/`, the working
    directory is the whole system: nothing is writable then (grant paths explicitly)."""
    import os

    writable = () if os.path.realpath(ctx.cwd) == "/" else (PathRule(ctx.cwd, False, BUILTIN),)
    return Policy(filesystem=FilesystemPolicy(allow_write=writable), sources=())
