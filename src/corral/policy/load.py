"""Find and read the policy in force: an explicit file, the user's file, or the built-in one."""

from __future__ import annotations

import os

from ..errors import PolicyError
from .defaults import default_policy
from .model import LaunchContext, Policy


def user_policy_path(ctx: LaunchContext, environ=os.environ) -> str:
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(ctx.home, ".config")
    return os.path.join(base, "corral", "policy.toml")


def load(path: str | None, ctx: LaunchContext, environ=os.environ) -> Policy:
    """`path` None: the user's policy.toml if present, else the built-in defaults.
    A file that is named explicitly must exist and be valid (never a silent fallback)."""
    if path is None:
        candidate = user_policy_path(ctx, environ)
        if not os.path.exists(candidate):
            return default_policy(ctx)
        path = candidate
    source = os.path.abspath(path)
    try:
        with open(source, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise PolicyError(source, "", None, f"cannot read policy file: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError(source, "", None, "policy file is not UTF-8 text") from None
    if not text.strip():
        raise PolicyError(source, "", None, "policy file is empty; refusing to fall back to defaults")
    if source.endswith(".json") or text.lstrip().startswith("{"):
        from .srt import load_srt_settings

        return load_srt_settings(text, source, ctx)
    from .native import load_toml

    return load_toml(text, source, ctx)
