"""Names a policy may use for environment variables: plain names and `*` patterns. Pure."""

from __future__ import annotations

PATTERN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_*")


def is_env_name(name: str) -> bool:
    return bool(name) and not name[0].isdigit() and all(c.isalnum() or c == "_" for c in name) and name.isascii()

def check_pattern(text: object) -> str | None:
    """Why `text` is not a valid name pattern, or None."""
    if not isinstance(text, str) or not text:
        return "expected a non-empty variable name or pattern such as 'MY_*'"
    if not set(text) <= PATTERN_CHARS:
        return "expected letters, digits, '_' and '*' (a pattern such as 'MY_*' or '*_TOKEN')"
    return None
