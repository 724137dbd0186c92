"""Which run a proxied connection belongs to (cheap to import: no asyncio)."""

from __future__ import annotations


class RunInfo:
    """One sandboxed command as the proxy knows it: credentials and what it was refused."""

    __slots__ = ("run_id", "command", "user", "token", "blocked")

    def __init__(self, run_id: str, command: str, user: str, token: str):
        self.run_id, self.command, self.user, self.token = run_id, command, user, token
        self.blocked: dict[str, int] = {}
