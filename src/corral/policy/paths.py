"""Expansion of user-written paths against a launch context (pure: no filesystem access)."""

from __future__ import annotations

import os.path

from .model import LaunchContext, PathRule

GLOB_CHARS = frozenset("*?[")


def is_glob(text: str) -> bool:
    return any(c in GLOB_CHARS for c in text)


def expand(raw: str, ctx: LaunchContext) -> str:
    """`~`, `~/x` -> HOME-based; relative -> cwd-based; always normalised, never resolved."""
    if raw == "~" or raw.startswith("~/"):
        raw = ctx.home + raw[1:]
    elif raw.startswith("~"):
        # ~user is not supported: it would depend on the password database of the host.
        raise ValueError("'~user' paths are not supported; use an absolute path")
    if not raw.startswith("/"):
        raw = os.path.join(ctx.cwd, raw)
    path = os.path.normpath(raw)
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    return path


def rule(raw: str, ctx: LaunchContext, origin: str, literal: bool = False) -> PathRule:
    """Build a PathRule; raises ValueError with a reason for bad input."""
    if not isinstance(raw, str) or not raw:
        raise ValueError("expected a non-empty path")
    if "\x00" in raw:
        raise ValueError("a path cannot contain a NUL byte")
    glob = not literal and is_glob(raw)
    if glob:
        # A trailing "/**" means "this directory and everything below": treat as the directory.
        if raw.endswith("/**") and not is_glob(raw[:-3]):
            return PathRule(expand(raw[:-3] or "/", ctx), False, origin)
        if raw.startswith("/") and is_glob(raw.split("/")[1]):
            raise ValueError("a glob whose first component is a wildcard would scan the whole filesystem")
    return PathRule(expand(raw, ctx), glob, origin)
