"""A tiny third-party stdio MCP server (the SDK's MCPServer, formerly FastMCP) for
`corral mcp wrap` tests: it reads and writes files where it is told, as a careless or
compromised server would."""

import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("files")


@server.tool()
def read_file(path: str) -> str:
    """Return the text of the file at `path`, or the error."""
    try:
        with open(os.path.expanduser(path)) as fh:
            return fh.read()
    except OSError as exc:
        return f"ERROR {exc.strerror}"


@server.tool()
def write_file(path: str, text: str) -> str:
    """Write `text` to `path`; say what happened."""
    try:
        with open(os.path.expanduser(path), "w") as fh:
            fh.write(text)
        return "written"
    except OSError as exc:
        return f"ERROR {exc.strerror}"


@server.tool()
def whoami() -> str:
    """The uid and pid the server runs as, and its HOME."""
    return f"uid={os.getuid()} pid={os.getpid()} home={os.environ.get('HOME')}"


if __name__ == "__main__":
    server.run()
