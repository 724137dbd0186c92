"""The `corral` command line: a thin client of the library.

Option parsing stops at the first non-option (`corral run python3 -c 'print(1)'` runs
python3), like srt with `--`. corral's own failures exit 125 with one line on stderr;
otherwise the exit status is the command's (128+N when it died of signal N).
"""

from __future__ import annotations

import os
import sys

from . import _timing

USAGE = """\
corral: run a command (an AI agent's shell command, an MCP server, a script) with the least
privilege it needs, enforced by the kernel (bubblewrap, seccomp): it cannot read your
credentials, writes only where you allow, cannot plant rc files or git hooks for later, and
reaches only the hosts you allow, through corral's egress proxy (no network by default).
srt (sandbox-runtime) settings files work as they are.

usage: corral run [OPTIONS] [--] COMMAND [ARGS...]
       corral run [OPTIONS] -c 'SHELL STRING'
       corral [OPTIONS] [--] COMMAND [ARGS...]   (srt's spelling of `corral run`)
       corral COMMAND --help                     (each command's own options)

commands:
  run       run a command in the sandbox (options below; they stop at the first non-option)
  policy    `policy show [FILE]`: the effective policy as TOML (srt JSON is converted)
  scan      list the secret files in a directory that no sandboxed command may read
  changes   what an overlay session (--workspace overlay) changed; --diff for a diff
  apply     copy an overlay session's changes into the real workspace
  discard   delete an overlay session
  sessions  list the overlay sessions
  audit     the egress proxy's log of connections and requests, as a table
  proxy     run only the egress proxy, for containers and VMs
  container `container args [--engine podman|docker] [RUN OPTIONS] [--] CMD`: the hardened
            podman/docker command line for the policy, for your own image or CI
  mcp       an MCP server (stdio) whose tools run in the sandbox; `mcp wrap -- CMD`: a
            third-party MCP server inside the sandbox (`corral mcp --help`)
  k8s       `k8s render`: the policy as Kubernetes manifests (agent pod or agent-sandbox
            template, a separate egress proxy, NetworkPolicies); `k8s session`: a late-bound
            session for a warm agent (`corral k8s --help`)
  doctor    can this machine sandbox? each check corral relies on, with the fix (--json)
  --version print corral's version

run options:
  -s, --settings FILE     policy file: native TOML or srt settings JSON
                          (default: ~/.config/corral/policy.toml, else built-in defaults)
  -c STRING               run STRING with bash -c
  --allow-write PATH      also allow writes to PATH
  --allow-read PATH       re-allow reads of PATH inside a denied directory
  --deny-read PATH        deny reads of PATH (a glob such as '**/*.pem' works too)
  --deny-write PATH       deny writes to PATH
  --allow-domain DOMAIN   also allow network access to DOMAIN (example.com, *.example.com,
                          host:port, an IP or CIDR); starts the egress proxy
  --allow-preset NAME     also allow the names a package ecosystem needs: pypi, npm, debian,
                          ubuntu, github, crates, go (`corral audit --suggest` proposes them)
  --pass-env NAME         let variable NAME (or a pattern: 'MY_*') reach the command although it
                          looks like a credential (such variables are withheld by default)
  --unset-env NAME        remove variable NAME from the command's environment
  --mask-env NAME@HOST[,HOST]
                          bind variable NAME to HOSTs: the command sees a placeholder, the proxy
                          sends the real value to those hosts only (they must also be allowed)
  --workspace MODE        the working directory as: bind (default), ro, tmpfs (empty scratch),
                          copy (filtered staging copy), overlay (writes kept for review)
  --session NAME          overlay session to use or create (default: a new one per run)
  --output DIR            a writable directory for results, outside the project
  --as-user USER[:GID]    when launched as root, run the sandbox as this unprivileged user
  --memory SIZE           memory limit of the whole sandbox (512m, 2g); killed: exit 137
  --cpus N                CPU share (1.5 = one and a half CPUs)
  --pids N                at most N processes at once
  --timeout DURATION      wall-time limit (30s, 10m, 1h); then SIGTERM, SIGKILL; exit 124
  --tty / --no-tty        force or disable a private pseudo-terminal (default: when stdin
                          and stdout are terminals)
  --backend NAME          the wall: bwrap (default), runc, crun, gvisor, podman, docker, or
                          auto (bwrap when it works here, else refuse with the fix)
                          (the same policy on each; --dry-run shows what each enforces)
  --allow-weaker          with auto: where bwrap cannot run, use the weaker landlock wall
                          (said in one line; allow_weaker = true in the policy file)
  --image IMAGE           podman/docker: the image to run; runc/crun/gvisor: a root filesystem
                          directory instead of the host's read-only view
  --dry-run               print the bwrap command (or config.json, or the engine's command line),
                          the seccomp rules and the enforcement report; run nothing
  -q, --quiet             fewer messages from corral
  -d, --debug             show tracebacks for corral's own errors
  -h, --help              this help

exit status: the command's own (128+N if it died of signal N); 127 command not found,
126 not executable; 124 time limit, 137 memory limit; 2 usage error; 125 corral failed
"""

SUBCOMMANDS = ("run", "policy", "doctor", "audit", "proxy", "scan", "changes", "apply", "discard", "sessions",
               "container", "mcp", "k8s", "help")
from .runopts import (  # noqa: E402,F401 - the run options are shared with doctor, mcp, container args
    FLAG_OPTS, REPEATABLE, VALUE_OPTS, Options, _network_extras, _shell, _stderr_line, build_policy, launch_context,
    missing_writable, parse_run_args)


def cmd_run(args: list[str]) -> int:
    from .errors import CommandLineError

    opts = parse_run_args(args)
    if opts.help:
        sys.stdout.write(USAGE)
        return 0
    if opts.version:
        return cmd_version()
    if not opts.command:
        raise CommandLineError("no command given (usage: corral run [OPTIONS] [--] COMMAND [ARGS...])")
    ctx = launch_context()
    policy = build_policy(opts, ctx)
    _timing.mark("policy")
    report = None if opts.quiet else _stderr_line
    if opts.mask_env and report is not None:
        from .policy.secret_env import mask_warnings

        for line in mask_warnings(policy, opts.mask_env, os.environ):
            report(line)
    from .orchestrate import Orchestrator

    tty = True if opts.tty else False if opts.no_tty else None
    # One path for the CLI and the library: the overlay session, credentials, namespaces and
    # proxy (the proxy in a forked process: its imports overlap with the command), the plan,
    # the backend's enforcement report, the launch.
    with Orchestrator(policy, ctx, backend=opts.backend, session=opts.session, output=opts.output or "",
                      report=report, in_child=True, dry_run=opts.dry_run) as orch:
        if opts.dry_run:
            plan = orch.plan(opts.command)
            limits = orch.limits(plan)
            return dry_run(plan, policy.network.allowed_domains, limits, orch)
        status = orch.run_foreground(opts.command, tty=tty)
        session = orch.session
    if session is not None and report is not None:
        report(f"corral: the run's writes are in overlay session {session[0]!r}: review with `corral changes "
               f"{session[0]}`, then `corral apply {session[0]}` or `corral discard {session[0]}`")
    return status


from .orchestrate import SECRET_WHY, secrets_notice  # noqa: E402,F401 - part of the CLI's interface


def dry_run(plan, allowed=(), limits=None, orch=None) -> int:
    import shlex

    from .backends.bwrap import bwrap_argv
    from .sandbox.seccomp import describe

    out = sys.stdout
    backend = orch.backend if orch is not None else None
    if backend is None or backend.kind == "bwrap":
        argv = bwrap_argv(plan, seccomp_fd=3, status_fd=4)
        out.write("# bwrap command (fd 3: seccomp program, fd 4: status pipe)\n")
        if plan.tmp_overlay is not None:
            out.write("# (--bind /tmp /tmp binds corral's overlay of /tmp, prepared in a private mount namespace "
                      "before\n#  bwrap starts: run as printed, without corral, it would bind the host's /tmp "
                      "writable)\n")
        out.write(" \\\n  ".join(shlex.quote(a) for a in argv) + "\n\n")
    else:
        out.write(orch.rendered(plan) + "\n")
    out.write("# mounts, in order\n")
    for m in plan.mounts:
        src = " (generated)" if m.op == "data" else f" {m.src}" if m.src and m.src != m.dest else ""
        out.write(f"{m.op:<10} {m.dest}{src}  # {m.why}\n")
    if plan.placeholders:
        out.write("\n# placeholders created on the host for the run, removed after it\n")
        for ph in plan.placeholders:
            out.write(f"{ph.kind:<4} {ph.path}\n")
    out.write("\n# seccomp filter\n")
    for line in describe(plan.seccomp):
        out.write(line + "\n")
    if plan.network is not None:
        out.write("\n# network: the sandbox joins corral's loopback-only network namespace (no --unshare-net);\n"
                  "# HTTP proxy 127.0.0.1:3128, SOCKS5 127.0.0.1:1080"
                  + (", transparent redirect to :15001, resolver 127.0.0.1:53" if plan.network.transparent else "")
                  + "\n# allowed: " + (", ".join(allowed) if allowed else "(nothing)") + "\n")
    if plan.offline:
        out.write("\n# network: none; the sandbox joins corral's loopback-only network namespace (no --unshare-net),\n"
                  "# where corral refuses every name (NXDOMAIN, 127.0.0.1:53) and proxy request (403, "
                  "127.0.0.1:3128)\n")
    if limits is not None:
        out.write("\n# limits: how each is enforced for this launcher\n")
        for line in limits.describe():
            out.write(line + "\n")
    if plan.identity is not None:
        ident = plan.identity
        out.write(f"\n# the command runs as uid {ident.uid}, gid {ident.gid} ({ident.why}), never host uid 0\n")
        for m in plan.idmaps:
            out.write(f"idmapped   {m.path}  # owner {m.disk[0]}:{m.disk[1]} on disk, "
                      f"{m.shown[0]}:{m.shown[1]} inside (new files land as {m.disk[0]}:{m.disk[1]})\n")
        for sk in plan.skeletons:
            out.write(f"skeleton   {sk.top}  # not searchable by uid {ident.uid}: shown holding only "
                      + ", ".join(p for p, _ in sk.keep) + "\n")
    out.write(f"\n# environment: TMPDIR={plan.tmpdir}; values of other variables are not shown\n")
    if plan.withheld_env:
        from .display import shown

        out.write("# withheld (they look like credentials; --pass-env NAME lets one through):\n")
        for name, why in plan.withheld_env:
            out.write(f"withheld   {shown(name, 80)}  # {why}\n")
    if orch is not None:
        out.write("\n" + "\n".join(orch.enforcement(plan, limits).lines()) + "\n")
    return 0


POLICY_USAGE = """\
usage: corral policy show [FILE | -s FILE]
  Print the effective policy as TOML: FILE (native TOML or srt settings JSON, converted),
  else ~/.config/corral/policy.toml, else the built-in defaults, with every default filled in.
"""


def cmd_policy(args: list[str]) -> int:
    from .errors import CommandLineError

    if args and args[0] in ("-h", "--help") or args[1:2] in (["-h"], ["--help"]):
        sys.stdout.write(POLICY_USAGE)
        return 0
    if not args:
        raise CommandLineError("policy: which policy command? (expected 'show')")
    if args[0] != "show":
        raise CommandLineError(f"unknown policy command {args[0]!r} (expected 'show')")
    rest = args[1:]
    settings = None
    if rest and rest[0] in ("-s", "--settings"):
        rest = rest[1:]
        if not rest:
            raise CommandLineError(f"option {args[1]} needs a value")
    if len(rest) > 1 or rest and rest[0].startswith("-") and rest[0] != "-":
        raise CommandLineError(f"policy show: unexpected {rest[-1] if len(rest) > 1 else rest[0]!r} "
                         "(expected at most one FILE)")
    if rest:
        settings = rest[0]
    from .policy import load
    from .policy.render import to_toml

    ctx = launch_context()
    policy = _network_extras(load.load(settings, ctx), (), _stderr_line)
    sys.stdout.write(to_toml(policy, ctx))
    return 0


def _take_options(args: list[str], flags: set[str], values: set[str], usage: str) -> dict:
    from .errors import CommandLineError

    out: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            sys.stdout.write(usage)
            raise SystemExit(0)
        name, eq, inline = arg.partition("=")
        if name in flags and not eq:
            out[name] = True
        elif name in values:
            if eq:
                out[name] = inline
            elif i + 1 < len(args):
                i += 1
                out[name] = args[i]
            else:
                raise CommandLineError(f"option {name} needs a value")
        else:
            raise CommandLineError(f"unknown option {arg!r}")
        i += 1
    return out


AUDIT_USAGE = """\
usage: corral audit [--follow] [--blocked] [--json] [--run ID] [--file PATH]
       corral audit --suggest [--run ID] [--file PATH]
  Show the egress proxy's audit log ($XDG_STATE_HOME/corral/audit.jsonl) as a table.
  --suggest prints the allowances (flags and a TOML snippet) that would have let a run's
  blocked requests through: the last run with a block, or run ID (a prefix will do).
"""


def cmd_audit(args: list[str]) -> int:
    from .proxy import audit

    opts = _take_options(args, {"--follow", "-f", "--blocked", "--json", "--suggest"}, {"--run", "--file"},
                         AUDIT_USAGE)
    path = opts.get("--file") or audit.default_path()
    if opts.get("--suggest"):
        return _audit_suggest(audit, path, opts)
    follow = opts.get("--follow") or opts.get("-f")
    out = sys.stdout
    if not opts.get("--json"):
        out.write(audit.header() + "\n")
    try:
        for rec in audit.read_records(path, follow=bool(follow)):
            if opts.get("--blocked") and rec.get("decision") != "block":
                continue
            if opts.get("--run") and str(rec.get("run", "")) != opts["--run"]:
                continue
            if opts.get("--json"):
                import json

                out.write(json.dumps(rec, separators=(",", ":")) + "\n")
            else:
                out.write(audit.format_row(rec) + "\n")
            if follow:
                out.flush()
    except KeyboardInterrupt:
        return 0
    return 0


def _audit_suggest(audit, path: str, opts: dict) -> int:
    from .display import shown
    from .errors import CommandLineError

    for flag in ("--follow", "-f", "--blocked", "--json"):
        if opts.get(flag):
            raise CommandLineError(f"--suggest does not go with {flag}")
    try:
        found = audit.suggest(audit.read_records(path), opts.get("--run"))
    except ValueError as exc:
        raise CommandLineError(str(exc)) from None
    if found is None:
        which = f"run {shown(opts['--run'])!s} has" if opts.get("--run") else "no run has"
        sys.stderr.write(f"corral: {which} blocked requests in {shown(path)} (or its rotated files)\n")
        return 1
    sys.stdout.write(audit.format_suggestion(found))
    return 0


PROXY_USAGE = """\
usage: corral proxy --listen unix:PATH|tcp:HOST:PORT [--policy FILE] [--audit PATH|-]
       corral proxy --listen unix:PATH|tcp:HOST:PORT --sessions DIR [--audit PATH|-]
  Run only the egress proxy (HTTP, CONNECT and SOCKS5 on one listener) under a policy's
  network rules, for containers and VMs that reach it through a socket or port. With
  credentials, TLS termination or HTTP rules in the policy, those apply too: the
  placeholders to hand to the client are printed on stderr, and the client must trust
  corral's CA (the per-user one: $XDG_DATA_HOME/corral/ca/ca.pem).
  --sessions DIR: late-bound sessions (one proxy, many agents): NAME.toml or NAME.json (a
  policy) and NAME.token (sha256:<hex of the password> or open) per session; a client
  authenticates as user NAME and is held to NAME's policy. Reloaded while running.
  --audit -: the audit log's JSON lines on stdout.
"""


def cmd_proxy(args: list[str]) -> int:
    from .errors import CommandLineError

    opts = _take_options(args, set(), {"--listen", "--policy", "--settings", "-s", "--audit", "--sessions"},
                         PROXY_USAGE)
    listen = opts.get("--listen")
    if not listen:
        raise CommandLineError("--listen is required (unix:PATH or tcp:127.0.0.1:PORT)")
    from .policy import load

    ctx = launch_context()
    if "--sessions" in opts:
        given = [o for o in ("--policy", "--settings", "-s") if o in opts]
        if given:
            raise CommandLineError(f"--sessions and {given[0]} exclude each other: with --sessions each session's "
                                   "policy is its NAME.toml or NAME.json in the directory")
        from .policy.defaults import default_policy
        from .policy.proxyenv import with_environment
        from .proxy.standalone import serve_sessions

        net, warnings = with_environment(default_policy(ctx).network, os.environ)  # HTTPS_PROXY: the parent
        for line in warnings:
            _stderr_line(line)
        return serve_sessions(listen, opts["--sessions"], opts.get("--audit"), ctx, dict(os.environ),
                              net.parent_proxy)
    policy = load.load(opts.get("--policy") or opts.get("--settings") or opts.get("-s"), ctx)
    from .policy.proxyenv import with_environment

    net, warnings = with_environment(policy.network, os.environ)  # the launcher's HTTPS_PROXY as the parent
    for line in warnings:
        _stderr_line(line)
    policy = policy.with_network(parent_proxy=net.parent_proxy, parent_proxy_env=False)
    from .proxy.standalone import serve
    from .sandbox import boundary as credential_boundary

    boundary = None
    if credential_boundary.needed(policy):
        boundary = credential_boundary.resolve(policy, dict(os.environ), ctx)
    return serve(listen, policy.network, opts.get("--audit"), boundary)


DOCTOR_USAGE = """\
usage: corral doctor [--json] [--backend NAME] [-s FILE]
  Check what corral relies on here (bubblewrap, user namespaces, Landlock, seccomp, the egress
  proxy's namespace and nftables, overlay and idmapped mounts, cgroups for limits, each other
  wall's program, TLS trust): one line each, with the cause and the fix when a check fails.
  Exit status 1 when something corral needs is missing (warn: only some runs need it).
  --json           one JSON document instead (stable, for harnesses: docs/doctor.md)
  --backend NAME   also check that wall (runc, crun, gvisor, podman, docker, or auto: the one
                   `--backend auto` picks here): its program and version, a real `true` run
                   behind it, and the enforcement report of the policy (-s FILE, else the
                   default policy): what it enforces, field by field
"""


def cmd_doctor(args: list[str]) -> int:
    from .doctor import FAIL, as_json, backend_checks, checks

    opts = _take_options(args, {"--json"}, {"--backend", "-s", "--settings"}, DOCTOR_USAGE)
    base = checks()
    name = opts.get("--backend")
    rows = backend_checks(name, opts.get("-s") or opts.get("--settings")) if name is not None else []
    if opts.get("--json"):
        import json

        doc = as_json(base, name, rows)
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
        return 0 if doc["ok"] else 1
    for check in [*base, *rows]:
        sys.stdout.write(check.line() + "\n")
    return 1 if any(c.state == FAIL for c in [*base, *rows]) else 0


def cmd_container(args: list[str]) -> int:
    from .container_cli import main as container_main

    return container_main(args, parse_run_args, launch_context, build_policy)


def cmd_version() -> int:
    from . import __version__

    sys.stdout.write(f"corral {__version__}\n")
    return 0


# The commands whose usage a usage error points to (`corral COMMAND --help`).
HELP_TOPICS = ("run", "policy", "doctor", "audit", "proxy", "scan", "changes", "apply", "discard", "sessions",
               "container", "mcp", "k8s")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args[: args.index("--")] if "--" in args else "--debug" in args or "-d" in args[:1]
    try:
        status = _dispatch(args, debug)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then caught below
        return status
    except BrokenPipeError:
        # The reader went away (`corral changes --diff | head -1`): stop quietly, as a
        # program killed by SIGPIPE would (128 + 13); nothing more may reach the closed pipe.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass
        return 141


def _dispatch(args: list[str], debug: bool) -> int:
    try:
        if not args:
            sys.stderr.write("corral: no command given; usage: corral run [OPTIONS] [--] COMMAND [ARGS...] "
                             "(`corral --help` lists every command)\n")
            return 2
        if args[0] in ("-h", "--help", "help"):
            if args[0] == "help" and args[1:2] and args[1] in HELP_TOPICS:
                return _dispatch([args[1], "--help"], debug)
            sys.stdout.write(USAGE)
            return 0
        if args[0] in ("-V", "--version"):
            return cmd_version()
        head = args[0]
        if head == "run":
            try:
                return cmd_run(args[1:])
            finally:
                _timing.mark("exit")
                _timing.report()
        if head == "policy":
            return cmd_policy(args[1:])
        if head == "doctor":
            return cmd_doctor(args[1:])
        if head == "audit":
            return cmd_audit(args[1:])
        if head == "scan":
            from .workspace.scan_cli import main as scan_main

            return scan_main(args[1:])
        if head in ("changes", "apply", "discard", "sessions"):
            from .workspace import session_cli

            return getattr(session_cli, f"{head}_main")(args[1:])
        if head == "proxy":
            return cmd_proxy(args[1:])
        if head == "container":
            return cmd_container(args[1:])
        if head == "k8s":
            from .k8s_cli import main as k8s_main

            return k8s_main(args[1:])
        if head == "mcp":
            from .mcp_cli import main as mcp_main

            return mcp_main(args[1:], cmd_run)
        # srt-style: `corral [OPTIONS] [--] COMMAND` means `corral run ...`
        try:
            return cmd_run(args)
        finally:
            _timing.mark("exit")
            _timing.report()
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise
    except Exception as exc:  # noqa: BLE001 - the CLI's one place to turn errors into a line
        from .errors import CommandLineError, CorralError, PolicyError

        if debug:
            import traceback

            traceback.print_exc()
        if isinstance(exc, CommandLineError) or isinstance(exc, PolicyError) and exc.source.startswith("<cli>"):
            # Usage errors (a malformed command line, a bad option value) exit 2, as getopt-style
            # tools do; 125 stays corral's own failures.
            topic = args[0] if args and args[0] in HELP_TOPICS else "run"
            sys.stderr.write(f"corral: {exc}; see `corral {topic} --help`\n")
            return 2
        if isinstance(exc, CorralError):
            sys.stderr.write(f"corral: {exc}\n")
        else:
            sys.stderr.write(f"corral: internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)\n")
        return 125
