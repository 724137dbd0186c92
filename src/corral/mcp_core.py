"""What `corral mcp`'s tools decide, without I/O: arguments to argv, output clipping, results.

Every rule of the MCP tools lives here as data or as a pure function (the SDK edge is
`mcp_server.py`): which arguments a tool takes and how they become the argv run in the
sandbox, where a `cwd` may point, how much output is returned, what a result and its audit
event hold. Nothing here widens the server's policy: no argument names a path to open up,
a domain to allow or an environment variable to pass.
"""

from __future__ import annotations

import posixpath
import re

MAX_STREAM_BYTES = 32 * 1024  # per stream returned to the client: the first HEAD and the last TAIL bytes
HEAD_BYTES = 24 * 1024
TAIL_BYTES = MAX_STREAM_BYTES - HEAD_BYTES
DEFAULT_TIMEOUT_S = 120
MAX_TIMEOUT_S = 3600
MAX_ARGS = 4096  # arguments in one argv
MAX_ARG_CHARS = 128 * 1024  # characters in one argument or shell string

TIMED_OUT_STATUS = 124  # as `corral run --timeout` and timeout(1)


class ArgumentError(ValueError):
    """A tool's arguments are refused; the message names the argument, the value and the fix."""


# -- the tools, as data: name -> (title, description). Fixed strings: nothing from the workspace.

TOOLS = {
    "run": ("Run a command in corral's sandbox",
            "Run one command inside corral's sandbox (the wall this server was started with: bubblewrap + "
            "seccomp by default) under the policy this server was started with, in the server's workspace. Give either `argv` (a list: program and "
            "arguments, no shell) or `shell` (a string for bash -c), not both. Optional `cwd`: a directory "
            "inside the workspace (relative to it, or absolute); other directories are refused. Optional "
            "`timeout_s` (1-3600, default 120): the command is killed then and exit_status is 124. "
            "stdin is empty. Returns exit_status (128+N: killed by signal N), stdout and stderr (each "
            "clipped to 32 KiB: the first 24 KiB and the last 8 KiB, with *_truncated and *_bytes telling "
            "so), the network destinations the sandbox refused, and run_id, the key of this command's "
            "events in `corral audit`. The sandbox cannot read credentials, writes only where the policy "
            "allows, and reaches only allowed hosts; no argument changes that."),
    "git_clone": ("git clone inside the sandbox",
                  "Clone a repository with git running inside corral's sandbox (never on the host). `url`: "
                  "https://, http:// or ssh:// only. `directory`: where to clone, relative to the workspace "
                  "(default: git's choice from the URL). Credentials are added on the wire by corral's proxy "
                  "for the hosts the policy binds them to; git inside never sees them, and the policy's "
                  "network and git rules apply."),
    "git_fetch": ("git fetch inside the sandbox",
                  "Run `git fetch` inside corral's sandbox in `cwd` (a repository inside the workspace, "
                  "default: the workspace). `remote`: a remote name or URL (default origin); `refspecs`: "
                  "optional list. Credentials are added on the wire by corral's proxy; git inside never "
                  "sees them."),
    "git_push": ("git push inside the sandbox",
                 "Run `git push` inside corral's sandbox in `cwd` (a repository inside the workspace). "
                 "`remote`: a remote name or URL (default origin); `refspecs`: what to push (e.g. "
                 "[\"agent/fix\"] or [\"HEAD:refs/heads/agent/fix\"]); force pushes (a leading +) are not "
                 "offered. `set_upstream`: pass -u. Credentials are added on the wire by corral's proxy, "
                 "which also applies the policy's rules on which repositories and refs may be pushed."),
    "git_status": ("git status inside the sandbox",
                   "Run `git status --short --branch` inside corral's sandbox in `cwd` (a repository "
                   "inside the workspace, default: the workspace). Repository configuration (hooks, "
                   "fsmonitor) runs only inside the sandbox, never on the host."),
}

RESOURCES = {
    "corral://policy": ("policy", "The effective policy of this server, as TOML (`corral policy show`). "
                                  "Names credential sources, never their values.", "application/toml"),
    "corral://audit/recent": ("audit", "The most recent events of corral's audit log (tool calls and the "
                                       "egress proxy's connections and requests), one JSON object a line, "
                                       "oldest first.", "application/x-ndjson"),
}
RECENT_AUDIT = 200  # events in corral://audit/recent


# -- arguments -> argv ----------------------------------------------------------------------

def _text_arg(name: str, value, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ArgumentError(f"{name}: expected a string, got {type(value).__name__}")
    if not value and not allow_empty:
        raise ArgumentError(f"{name}: must not be empty")
    if "\0" in value:
        raise ArgumentError(f"{name}: contains a NUL character, which no command argument can hold")
    if len(value) > MAX_ARG_CHARS:
        raise ArgumentError(f"{name}: {len(value)} characters, more than the {MAX_ARG_CHARS} allowed")
    return value


def command_argv(argv, shell, shell_path: str = "/bin/bash") -> list[str]:
    """The `run` tool's command: `argv` (a list) XOR `shell` (a string for bash -c)."""
    if (argv is None) == (shell is None):
        raise ArgumentError("give exactly one of `argv` (a list of strings) or `shell` (a string)"
                            + (", not both" if argv is not None else ""))
    if shell is not None:
        return [shell_path, "-c", _text_arg("shell", shell)]
    if not isinstance(argv, list) or not argv:
        raise ArgumentError("argv: expected a non-empty list of strings, e.g. [\"ls\", \"-la\"]")
    if len(argv) > MAX_ARGS:
        raise ArgumentError(f"argv: {len(argv)} arguments, more than the {MAX_ARGS} allowed")
    out = [_text_arg(f"argv[{i}]", a, allow_empty=i > 0) for i, a in enumerate(argv)]
    return out


def timeout_seconds(value) -> int:
    if value is None:
        return DEFAULT_TIMEOUT_S
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ArgumentError(f"timeout_s: expected a number of seconds, got {value!r}")
    if not 1 <= value <= MAX_TIMEOUT_S:
        raise ArgumentError(f"timeout_s: {value!r} is outside 1-{MAX_TIMEOUT_S} seconds")
    return int(value) if float(value).is_integer() else int(value) + 1


def limit_timed_out(status: int, duration_ms: int, limit_s: float | None) -> bool:
    """Whether a command was stopped by the server's own wall-time limit (`corral mcp
    --timeout`, `[limits] timeout`): it exits 124 then too, as a command may by itself, so
    the status counts only once the limit has passed."""
    return limit_s is not None and status == TIMED_OUT_STATUS and duration_ms >= limit_s * 1000


def resolve_cwd(cwd, workspace: str, realpath=posixpath.realpath) -> str:
    """The directory a command runs in: the workspace, or a directory inside it. `cwd` is
    relative to the workspace or absolute; symlinks are resolved (`realpath`), so a link inside
    the workspace that points outside is refused too."""
    root = realpath(workspace)
    if cwd is None or cwd in ("", "."):
        return root
    cwd = _text_arg("cwd", cwd)
    target = realpath(posixpath.join(workspace, cwd))  # an absolute cwd replaces the workspace
    if target != root and not target.startswith(root.rstrip("/") + "/"):
        raise ArgumentError(f"cwd: {cwd!r} is outside the workspace {root} (give a directory inside it, "
                            "relative to it or absolute)")
    return target


def in_directory(argv: list[str], cwd: str, root: str) -> list[str]:
    """Run `argv` in `cwd` (the sandbox starts in the workspace `root`): a tiny sh that changes
    directory and execs the command unchanged (no word of it is parsed by a shell)."""
    if cwd == root:
        return argv
    return ["/bin/sh", "-c", 'cd -- "$1" && shift && exec "$@"', "corral-cwd", cwd, *argv]


_REMOTE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
_URL = re.compile(r"(https?|ssh)://[^\s\x00-\x1f\x7f]+")
_REFSPEC = re.compile(r"[^\s\x00-\x1f\x7f~^:?*\[\\]+(?::[^\s\x00-\x1f\x7f~^:?*\[\\]*)?")
GIT = ["env", "GIT_TERMINAL_PROMPT=0", "GIT_PAGER=cat", "git"]  # never wait for a password at a prompt


def _remote(value) -> str:
    value = _text_arg("remote", "origin" if value is None else value)
    if _URL.fullmatch(value) or (_REMOTE_NAME.fullmatch(value) and ".." not in value):
        return value
    raise ArgumentError(f"remote: {value!r} is neither a remote name (letters, digits, . _ / -) nor an "
                        "https://, http:// or ssh:// URL")


def _refspecs(values, *, push: bool) -> list[str]:
    if values is None:
        return []
    if not isinstance(values, list):
        raise ArgumentError("refspecs: expected a list of strings, e.g. [\"agent/fix\"]")
    out = []
    for i, spec in enumerate(values):
        spec = _text_arg(f"refspecs[{i}]", spec)
        if spec.startswith("-"):
            raise ArgumentError(f"refspecs[{i}]: {spec!r} starts with '-' (options are not accepted here)")
        if spec.startswith("+"):
            raise ArgumentError(f"refspecs[{i}]: {spec!r} is a forced update (leading '+'), which these "
                                "tools do not offer")
        if not _REFSPEC.fullmatch(spec) or (push and spec.startswith(":")):
            raise ArgumentError(f"refspecs[{i}]: {spec!r} is not a plain refspec (SRC or SRC:DST, no "
                                "spaces, control characters or glob/revision syntax"
                                + ("; deletions are not offered" if push and spec.startswith(":") else "") + ")")
        out.append(spec)
    return out


def git_argv(tool: str, args: dict) -> list[str]:
    """The argv of a git tool (run inside the sandbox); ArgumentError for anything else."""
    if tool == "git_status":
        return [*GIT, "status", "--short", "--branch"]
    if tool == "git_clone":
        url = _text_arg("url", args.get("url"))
        if not _URL.fullmatch(url):
            raise ArgumentError(f"url: {url!r} is not an https://, http:// or ssh:// URL")
        directory = args.get("directory")
        tail = []
        if directory is not None:
            directory = _text_arg("directory", directory)
            if directory.startswith("-"):
                raise ArgumentError(f"directory: {directory!r} starts with '-'")
            tail = [directory]
        return [*GIT, "clone", "--", url, *tail]
    if tool == "git_fetch":
        return [*GIT, "fetch", "--", _remote(args.get("remote")), *_refspecs(args.get("refspecs"), push=False)]
    if tool == "git_push":
        refspecs = _refspecs(args.get("refspecs"), push=True)
        if not refspecs:
            raise ArgumentError("refspecs: name what to push, e.g. [\"agent/fix\"] or "
                                "[\"HEAD:refs/heads/agent/fix\"]")
        upstream = ["-u"] if args.get("set_upstream") else []
        return [*GIT, "push", *upstream, "--", _remote(args.get("remote")), *refspecs]
    raise ArgumentError(f"unknown git tool {tool!r}")


# -- output ---------------------------------------------------------------------------------

class Clip:
    """Keeps the first `head` and the last `tail` bytes of a stream and counts the rest."""

    __slots__ = ("head", "tail", "_head", "_tail", "total")

    def __init__(self, head: int = HEAD_BYTES, tail: int = TAIL_BYTES):
        self.head, self.tail = head, tail
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if data and self.tail:
            self._tail += data
            if len(self._tail) > self.tail:
                del self._tail[: len(self._tail) - self.tail]

    @property
    def truncated(self) -> bool:
        return self.total > len(self._head) + len(self._tail)

    def text(self) -> str:
        head = self._head.decode("utf-8", "replace")
        if not self.truncated:
            return head + self._tail.decode("utf-8", "replace")
        omitted = self.total - len(self._head) - len(self._tail)
        return (head + f"\n[corral: {omitted} bytes omitted; {self.total} in all]\n"
                + self._tail.decode("utf-8", "replace"))


def run_result(*, status: int, timed_out: bool, out: Clip, err: Clip, run_id: str, cwd: str,
               duration_ms: int, blocked=(), blocked_summary: str = "") -> dict:
    """The structured result of `run` and the git tools (the outputSchema's shape)."""
    return {
        "exit_status": status,
        "timed_out": timed_out,
        "stdout": out.text(),
        "stderr": err.text(),
        "stdout_truncated": out.truncated,
        "stderr_truncated": err.truncated,
        "stdout_bytes": out.total,
        "stderr_bytes": err.total,
        "blocked": [{"destination": d, "attempts": n, "reason": why} for d, n, why in blocked],
        "blocked_summary": blocked_summary,
        "run_id": run_id,
        "cwd": cwd,
        "duration_ms": duration_ms,
    }


def result_text(result: dict) -> str:
    """The text content of a result: what a model reads."""
    status = result["exit_status"]
    head = f"exit status {status}" + (" (timed out)" if result["timed_out"] else "")
    parts = [head + f"; run {result['run_id']}"]
    for stream in ("stdout", "stderr"):
        if result[stream]:
            note = f" ({result[stream + '_bytes']} bytes, clipped)" if result[stream + "_truncated"] else ""
            parts.append(f"--- {stream}{note} ---\n{result[stream].rstrip(chr(10))}")
    if result["blocked_summary"]:
        parts.append(result["blocked_summary"])
    return "\n".join(parts)


def describe_call(tool: str, argv: list[str], limit: int = 160) -> str:
    """The arguments summary of a tool call for the audit log (credential-looking words redacted)."""
    from .proxy.runs import describe_command

    return describe_command(argv, limit)


def audit_event(tool: str, summary: str, *, run_id: str = "", status: int | None = None,
                duration_ms: int | None = None, refused: str = "") -> dict:
    """One audit-log line for a tool call: proto "mcp", the tool's name in `host` (the table's
    destination column), the arguments summary in `command`; `run` joins it to the network
    events of the command it ran."""
    return {"run": run_id or None, "command": summary, "proto": "mcp", "host": tool,
            "decision": "block" if refused else "allow", "reason": refused or None,
            "status": status, "ms": duration_ms}
