"""`corral mcp`: a stdio MCP server (the official Python SDK) whose tools run in corral's sandbox.

The thin edge: the SDK's server, one `Sandbox` for the server's life (its proxy and
namespaces serve every call), output collection and the audit line of each call. What the
tools accept and return is decided in `mcp_core.py`. Imported only by `corral mcp`, so the
SDK (and pydantic) are imported here at module level and nowhere on the `corral run` path.

Nothing may reach stdout but the protocol: corral's notices go to stderr, the commands run
with stdin from /dev/null and their output collected from pipes.
"""

# No `from __future__ import annotations`: the SDK reads the tools' annotations at run time.

import os
import subprocess
import threading
import time
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from . import mcp_core as core


class Blocked(BaseModel):
    destination: str = Field(description="host:port (or a name) the sandbox was refused")
    attempts: int
    reason: str


class RunResult(BaseModel):
    exit_status: int = Field(description="the command's exit status; 128+N: killed by signal N; 124: timed out")
    timed_out: bool
    stdout: str = Field(description="standard output (UTF-8, clipped: see stdout_truncated)")
    stderr: str = Field(description="standard error (UTF-8, clipped: see stderr_truncated)")
    stdout_truncated: bool
    stderr_truncated: bool
    stdout_bytes: int = Field(description="bytes the command wrote to stdout in all")
    stderr_bytes: int = Field(description="bytes the command wrote to stderr in all")
    blocked: list[Blocked] = Field(description="network destinations the sandbox was refused during the command")
    blocked_summary: str = Field(description="one line on what was refused, empty if nothing")
    run_id: str = Field(description="the key of this command's events in corral's audit log (`corral audit`)")
    cwd: str = Field(description="the directory the command ran in")
    duration_ms: int


ToolOutput = Annotated[CallToolResult, RunResult]
CwdArg = Annotated[str | None, Field(description="a directory inside the workspace (relative to it, or "
                                                 "absolute); default: the workspace")]
TimeoutArg = Annotated[int | None, Field(ge=1, le=core.MAX_TIMEOUT_S, description="seconds before the command "
                                         f"is killed (exit status 124); default {core.DEFAULT_TIMEOUT_S}")]


class Tools:
    """The server's state: one Sandbox, one lock (one command at a time), the audit log."""

    def __init__(self, policy, ctx, sandbox, audit_path: str, shell_path: str, quiet: bool = False):
        self.policy, self.ctx, self.sandbox = policy, ctx, sandbox
        self.root = os.path.realpath(ctx.cwd)
        self.shell_path = shell_path
        self.audit_path = audit_path
        from .proxy.audit import AuditLog

        self.audit = AuditLog(audit_path or None)
        self.lock = threading.Lock()

    # -- running ------------------------------------------------------------------------------
    def execute(self, tool: str, argv: list[str], cwd_arg, timeout) -> CallToolResult:
        summary = core.describe_call(tool, argv)
        try:
            cwd = core.resolve_cwd(cwd_arg, self.root)
            if self.policy.filesystem.workspace in ("bind", "ro") and not os.path.isdir(cwd):
                raise core.ArgumentError(f"cwd: {cwd_arg!r} is not a directory in the workspace")
            timeout = core.timeout_seconds(timeout)
        except core.ArgumentError as exc:
            self.audit.write(core.audit_event(tool, summary, refused=str(exc)))
            raise ToolError(str(exc)) from None
        full = core.in_directory(argv, cwd, self.root)
        with self.lock:
            result = self._run(full, cwd, timeout)
        self.audit.write(core.audit_event(tool, summary, run_id=result["run_id"], status=result["exit_status"],
                                          duration_ms=result["duration_ms"]))
        return CallToolResult(content=[TextContent(type="text", text=core.result_text(result))],
                              structured_content=result, is_error=False)

    def _run(self, argv: list[str], cwd: str, timeout: int) -> dict:
        from .errors import CorralError

        clips = (core.Clip(), core.Clip())
        pipes = [os.pipe(), os.pipe()]
        readers = [threading.Thread(target=_drain, args=(r, clip), daemon=True)
                   for (r, _w), clip in zip(pipes, clips)]
        for t in readers:
            t.start()
        started = time.monotonic()
        timed_out = False
        try:
            done = self.sandbox.run(argv, stdin=subprocess.DEVNULL, stdout=pipes[0][1], stderr=pipes[1][1],
                                    timeout=timeout)
            status, run_id, (blocked, summary) = done.returncode, done.run_id, done.blocked
        except subprocess.TimeoutExpired as exc:
            timed_out = True
            status, run_id, (blocked, summary) = core.TIMED_OUT_STATUS, exc.run_id, exc.blocked
        except CorralError as exc:
            self.audit.write(core.audit_event("run", core.describe_call("run", argv), refused=f"corral: {exc}"))
            raise ToolError(f"corral could not run the command: {exc}") from None
        except OSError as exc:
            raise ToolError(f"corral could not run the command: {exc.strerror or exc}") from None
        finally:
            for _r, w in pipes:
                os.close(w)
            for t in readers:
                t.join(5)
            for r, _w in pipes:
                os.close(r)
        elapsed = int((time.monotonic() - started) * 1000)
        timed_out = timed_out or core.limit_timed_out(status, elapsed, self.policy.limits.timeout)
        return core.run_result(status=status, timed_out=timed_out, out=clips[0], err=clips[1], run_id=run_id,
                               cwd=cwd, duration_ms=elapsed, blocked=blocked, blocked_summary=summary)

    # -- resources ----------------------------------------------------------------------------
    def policy_toml(self) -> str:
        from .policy.render import to_toml

        return to_toml(self.policy, self.ctx)

    def recent_audit(self) -> str:
        import collections
        import json

        from .proxy.audit import read_records

        if not self.audit_path:
            return ""
        self.audit.flush()
        try:
            recent = collections.deque(read_records(self.audit_path, rotated=False), maxlen=core.RECENT_AUDIT)
        except OSError:
            return ""
        return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in recent)


def _drain(fd: int, clip) -> None:
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data:
            return
        clip.feed(data)


def _guard(fn):
    """Any failure becomes a one-line tool error (never a traceback on the wire or in the log)."""
    import functools

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ToolError:
            raise
        except core.ArgumentError as exc:
            raise ToolError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the tool boundary: one line, no traceback
            raise ToolError(f"corral: internal error: {type(exc).__name__}: {exc}") from None

    return call


def build_server(tools: Tools) -> MCPServer:
    from . import __version__

    server = MCPServer("corral", version=__version__, log_level="WARNING",
                       instructions="Every tool runs its command inside corral's sandbox under this server's "
                                    "fixed policy (resource corral://policy); the audit log is corral://audit/recent.")
    mutating = ToolAnnotations(destructive_hint=True, open_world_hint=True, read_only_hint=False)

    @_guard
    def run(argv: Annotated[list[str] | None, Field(description="program and arguments, e.g. [\"ls\", \"-la\"] "
                                                               "(give argv or shell)")] = None,
            shell: Annotated[str | None, Field(description="a shell command line for bash -c (give argv or "
                                                           "shell)")] = None,
            cwd: CwdArg = None, timeout_s: TimeoutArg = None) -> ToolOutput:
        return tools.execute("run", core.command_argv(argv, shell, tools.shell_path), cwd, timeout_s)

    @_guard
    def git_clone(url: Annotated[str, Field(description="https://, http:// or ssh:// URL of the repository")],
                  directory: Annotated[str | None, Field(description="where to clone, relative to the workspace")] = None,
                  timeout_s: TimeoutArg = None) -> ToolOutput:
        if directory is not None:
            core.resolve_cwd(directory.rstrip("/") or ".", tools.root, realpath=_realpath_parent)
        argv = core.git_argv("git_clone", {"url": url, "directory": directory})
        return tools.execute("git_clone", argv, None, timeout_s)

    @_guard
    def git_fetch(remote: Annotated[str | None, Field(description="remote name or URL (default origin)")] = None,
                  refspecs: Annotated[list[str] | None, Field(description="refspecs to fetch")] = None,
                  cwd: CwdArg = None, timeout_s: TimeoutArg = None) -> ToolOutput:
        argv = core.git_argv("git_fetch", {"remote": remote, "refspecs": refspecs})
        return tools.execute("git_fetch", argv, cwd, timeout_s)

    @_guard
    def git_push(refspecs: Annotated[list[str], Field(description="what to push, e.g. [\"agent/fix\"]")],
                 remote: Annotated[str | None, Field(description="remote name or URL (default origin)")] = None,
                 set_upstream: Annotated[bool, Field(description="pass -u")] = False,
                 cwd: CwdArg = None, timeout_s: TimeoutArg = None) -> ToolOutput:
        argv = core.git_argv("git_push", {"remote": remote, "refspecs": refspecs, "set_upstream": set_upstream})
        return tools.execute("git_push", argv, cwd, timeout_s)

    @_guard
    def git_status(cwd: CwdArg = None, timeout_s: TimeoutArg = None) -> ToolOutput:
        return tools.execute("git_status", core.git_argv("git_status", {}), cwd, timeout_s)

    for fn in (run, git_clone, git_fetch, git_push, git_status):  # the order tools/list shows
        title, description = core.TOOLS[fn.__name__]
        annotations = (ToolAnnotations(read_only_hint=True, open_world_hint=False) if fn is git_status
                       else mutating)
        server.add_tool(fn, name=fn.__name__, title=title, description=description, annotations=annotations,
                        structured_output=True)

    readers = {"corral://policy": tools.policy_toml, "corral://audit/recent": tools.recent_audit}
    for uri, (name, description, mime) in core.RESOURCES.items():
        server.resource(uri, name=name, description=description, mime_type=mime)(_resource(readers[uri]))
    return server


def _resource(read):
    def resource() -> str:
        try:
            return read()
        except Exception as exc:  # noqa: BLE001 - one line, no traceback
            from mcp.server.mcpserver.exceptions import ResourceError

            raise ResourceError(f"corral: cannot read the resource: {type(exc).__name__}: {exc}") from None

    return resource


def _realpath_parent(path: str) -> str:
    """realpath of a path that may not exist yet: its deepest existing ancestor resolved."""
    head, tail = os.path.split(os.path.normpath(path))
    if os.path.lexists(path) or not tail:
        return os.path.realpath(path)
    return os.path.join(_realpath_parent(head), tail)


def serve(policy, ctx, opts) -> int:
    """Serve on stdio until the client closes stdin (or SIGTERM/SIGINT/SIGHUP); always closes the Sandbox."""
    import signal

    from . import runopts as cli
    from .api import Sandbox
    from .proxy.audit import default_path

    sandbox = Sandbox(policy, ctx.cwd, session=opts.session, output=opts.output, backend=opts.backend)
    audit_path = default_path() if policy.network.audit_log is None else policy.network.audit_log
    tools = Tools(sandbox.policy, ctx, sandbox, audit_path, cli._shell(), quiet=opts.quiet)

    async def main():
        import anyio

        server = build_server(tools)
        async with anyio.create_task_group() as group:
            async def on_signal():
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP, signal.SIGINT) as signals:
                    async for _signum in signals:
                        # The SDK's stdin reader is a thread no cancellation reaches: close what
                        # is ours and leave. A command still running is stopped by its bwrap
                        # (--die-with-parent) and cleaned up by its run's reaper.
                        if tools.lock.acquire(timeout=0):
                            close()
                        os._exit(0)

            group.start_soon(on_signal)
            await server.run_stdio_async()
            group.cancel_scope.cancel()  # stdin ended

    def close():
        try:
            tools.audit.close()
        finally:
            sandbox.close()

    import anyio

    try:
        anyio.run(main)
    except KeyboardInterrupt:
        pass
    finally:
        close()
    return 0
