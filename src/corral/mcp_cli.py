"""`corral mcp [RUN OPTIONS]` and `corral mcp wrap [RUN OPTIONS] -- CMD`.

Both take `corral run`'s options (parsed and turned into a policy by runopts.py, not here).
`corral mcp` serves corral's own tools (mcp_server.py, which imports the MCP SDK: only that
command pays for it); `corral mcp wrap` runs a third-party stdio MCP server in the sandbox,
stdin and stdout passed through untouched: it is `corral run --no-tty`, whose notices all go
to stderr.
"""

from __future__ import annotations

import sys

USAGE = """\
usage: corral mcp [RUN OPTIONS]                 serve corral's tools over MCP (stdio)
       corral mcp wrap [RUN OPTIONS] -- CMD...  run a stdio MCP server inside the sandbox

corral mcp: an MCP server on stdin/stdout. Tools: run (a command in the sandbox: argv or
shell, cwd inside the workspace, timeout_s), git_clone, git_fetch, git_push, git_status (git
runs inside the sandbox, credentials are added on the wire by corral's proxy). Resources:
corral://policy (the effective policy, TOML) and corral://audit/recent. One sandbox serves
the server's life (the working directory is the workspace); each call is audited with its
run id. Needs the MCP SDK: pip install 'corral[mcp]'.

corral mcp wrap: `corral run --no-tty` for an MCP server: the protocol passes through stdin
and stdout untouched, corral's messages go to stderr; stdin's end or a signal ends it.
In a harness's .mcp.json, prefix the server's command with `corral mcp wrap [OPTIONS] --`.

RUN OPTIONS: those of `corral run` (see `corral run --help`): -s/--settings FILE,
--allow-write, --allow-read, --deny-read, --deny-write, --allow-domain, --allow-preset,
--pass-env, --unset-env, --mask-env, --workspace, --session, --output, --as-user, --memory,
--cpus, --pids, --timeout, --backend, --image, -q, -d (--timeout and the limits: per call).
"""

# `corral run` options that mean nothing here: (option attribute, why)
NOT_FOR_SERVER = (("command_string", "-c"), ("dry_run", "--dry-run"), ("tty", "--tty"), ("no_tty", "--no-tty"))


def main(args: list[str], run_command) -> int:
    """`run_command`: `corral run` itself (cli.cmd_run), which `mcp wrap` is."""
    from . import runopts as cli
    from .errors import CommandLineError

    if args[:1] == ["wrap"]:
        return wrap(args[1:], run_command)
    opts = cli.parse_run_args(args)
    if opts.help:
        sys.stdout.write(USAGE)
        return 0
    for attr, flag in NOT_FOR_SERVER:
        if getattr(opts, attr):
            raise CommandLineError(f"corral mcp does not take {flag} (the run tool takes argv or shell)")
    if opts.command:
        raise CommandLineError(f"corral mcp takes no command ({opts.command[0]!r}); to serve a third-party "
                               "MCP server in the sandbox use `corral mcp wrap [OPTIONS] -- CMD`")
    try:
        from . import mcp_server
    except ImportError as exc:
        from .errors import SetupError

        raise SetupError(f"corral mcp needs the MCP SDK ({exc.name or 'mcp'} is not installed)",
                         "pip install 'corral[mcp]'") from None
    ctx = cli.launch_context()
    if opts.as_user is not None and ctx.uid != 0:
        from .errors import SetupError

        raise SetupError("--as-user needs corral to be launched as root", "drop the option")
    policy = cli.build_policy(opts, ctx)
    if ctx.uid == 0:
        from .sandbox.plan import prefetch_identity

        prefetch_identity(policy, ctx)
    return mcp_server.serve(policy, ctx, opts)


def wrap(args: list[str], run_command) -> int:
    from . import runopts as cli
    from .errors import CommandLineError

    opts = cli.parse_run_args(args)
    if opts.help:
        sys.stdout.write(USAGE)
        return 0
    for attr, flag in NOT_FOR_SERVER:
        if getattr(opts, attr) and attr != "no_tty":
            raise CommandLineError(f"corral mcp wrap does not take {flag} (stdin and stdout carry the protocol)")
    if not opts.command:
        raise CommandLineError("no server command given (usage: corral mcp wrap [OPTIONS] -- CMD [ARGS...])")
    # No tty ever: the harness talks JSON-RPC over pipes, and a pty would translate bytes.
    return run_command(["--no-tty", *args])
