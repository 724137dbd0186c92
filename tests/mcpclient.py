"""The MCP SDK's own stdio client against `corral mcp` (and `corral mcp wrap`), launched as a
test launcher (root or the unprivileged user): shared by tests/test_mcp.py and
tests/test_mcp_git.py."""

from __future__ import annotations

import tempfile
from contextlib import asynccontextmanager

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client


@asynccontextmanager
async def session(launcher, args, cwd, env=None, stderr_out: list | None = None):
    """A ClientSession with `corral <args>` launched as `launcher`; stderr kept in a file
    (`s.errlog`), checked for tracebacks at the end and appended to `stderr_out` if given."""
    argv = launcher.argv(args)
    errlog = tempfile.TemporaryFile("w+")
    params = StdioServerParameters(command=argv[0], args=argv[1:], cwd=str(cwd),
                                   env={**launcher.env, **(env or {})})
    try:
        async with stdio_client(params, errlog=errlog) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                s.errlog = errlog
                yield s
    finally:
        errlog.seek(0)
        text = errlog.read()
        errlog.close()
        if stderr_out is not None:
            stderr_out.append(text)
        assert "Traceback" not in text, text


def run_async(fn, *args):
    return anyio.run(fn, *args)
