"""`corral container args`: the hardened engine command line for a policy, printed for users
who run the container themselves (their own image, CI). corral starts nothing: the egress
proxy is `corral proxy --listen unix:PATH` (or tcp:HOST:PORT), which the container reaches
through the bound socket (or a network of the user's with a route to it and nowhere else)."""

from __future__ import annotations

import os
import sys

USAGE = """\
usage: corral container args [--engine podman|docker] [--proxy unix:PATH|http://HOST:PORT]
                             [--network NAME] [RUN OPTIONS] [--] COMMAND [ARGS...]
  Print the whole `podman run` (or `docker run`) command line that enforces the policy (the
  run options of `corral run`, --image IMAGE or the policy's [container] image): no
  capabilities, no_new_privs, corral's seccomp deny list (written to corral's cache), a
  read-only root, the workspace and grants as binds, denied and protected files inside them
  masked or read-only, the policy's limits, --network none.
  Network: start the proxy yourself, `corral proxy --listen unix:$PWD/proxy.sock --policy FILE`;
  --proxy unix:PATH binds that socket at /run/corral/proxy.sock (the container keeps
  --network none: the socket is its only way out; CORRAL_PROXY_SOCKET names it). --proxy
  http://HOST:PORT sets HTTP(S)_PROXY/ALL_PROXY to it and needs --network NAME, a network of
  yours with a route to the proxy and nowhere else.
  Not covered here (use `corral run --backend podman` for them): placeholders and the
  quarantine of planted files, the post-run checks, credential injection on the wire unless
  the proxy you started has them.
"""

PROXY_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "GRPC_PROXY", "grpc_proxy",
               "DOCKER_HTTP_PROXY", "DOCKER_HTTPS_PROXY", "ALL_PROXY", "all_proxy", "FTP_PROXY", "ftp_proxy",
               "NO_PROXY", "no_proxy", "RSYNC_PROXY", "NODE_USE_ENV_PROXY", "JAVA_TOOL_OPTIONS", "GIT_SSH_COMMAND",
               "CORRAL_PROXY")


def parse(args: list[str]) -> tuple[dict, list[str]]:
    """(own options, the rest: run options and the command). Own options come first."""
    from .errors import CommandLineError

    own = {"--engine": "podman", "--proxy": None, "--network": None}
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name not in own:
            break
        if not eq:
            if i + 1 >= len(args):
                raise CommandLineError(f"{name} needs a value")
            value = args[i + 1]
            i += 1
        own[name] = value
        i += 1
    if own["--engine"] not in ("podman", "docker"):
        raise CommandLineError(f"--engine {own['--engine']!r}: expected podman or docker")
    proxy = own["--proxy"]
    if proxy is not None and not (proxy.startswith("unix:/") or proxy.startswith("http://")):
        raise CommandLineError(f"--proxy {proxy!r}: expected unix:/ABSOLUTE/PATH or http://HOST:PORT")
    if proxy is not None and proxy.startswith("http://") and not own["--network"]:
        raise CommandLineError("--proxy http://HOST:PORT needs --network NAME (a network with a route to the "
                               "proxy and nowhere else; `none` has no route at all)")
    return own, args[i:]


def env_for(plan, environ) -> tuple[tuple[str, str], ...]:
    """The variables corral sets or changes (the rest is the image's business), without the
    per-run proxy of `corral run` and without paths to files only `corral run` generates."""
    out = []
    tmp = plan.tmpdir.rstrip("/") + "/"
    for k, v in plan.env:
        if k in PROXY_NAMES or environ.get(k) == v or tmp in v:
            continue
        out.append((k, v))
    return tuple(out)


def seccomp_file(plan) -> str:
    """corral's deny list as a profile in corral's cache (content-named: written once)."""
    import hashlib

    from .backends.container import seccomp_json

    data = seccomp_json(plan, os.uname().machine)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(cache, "corral", f"seccomp-{hashlib.sha256(data).hexdigest()[:16]}.json")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    return path


def main(args: list[str], parse_run_args, launch_context, build_policy) -> int:
    """`parse_run_args`, `launch_context`, `build_policy`: the CLI's own (cli.py passes them)."""
    from .errors import CommandLineError

    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if args[0] != "args":
        raise CommandLineError(f"unknown container command {args[0]!r} (expected: args)")
    own, rest = parse(args[1:])
    opts = parse_run_args(rest)
    if opts.help:
        sys.stdout.write(USAGE)
        return 0
    if not opts.command:
        raise CommandLineError("no command given (usage: corral container args [OPTIONS] [--] COMMAND [ARGS...])")
    engine = own["--engine"]
    ctx = launch_context()
    policy = build_policy(opts, ctx)
    image = opts.image or policy.backend.image
    if not image:
        raise CommandLineError("--image IMAGE is required (or image = \"...\" in the policy's [container] table)")
    from .orchestrate import Orchestrator

    with Orchestrator(policy, ctx, backend=engine, dry_run=True, offline=False) as orch:
        plan = orch.plan(opts.command)
    from .backends.container import PROXY_SOCKET, Target, argv

    proxy = own["--proxy"]
    extra_env = list(env_for(plan, os.environ))
    extra: tuple[str, ...] = ()
    network = own["--network"] or "none"
    if proxy is not None and proxy.startswith("unix:"):
        path = proxy[len("unix:"):]
        extra = ("-v", f"{path}:{PROXY_SOCKET}")
        extra_env.append(("CORRAL_PROXY_SOCKET", PROXY_SOCKET))
    elif proxy is not None:
        url = proxy.rstrip("/")
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            extra_env.append((name, url))
        socks = "socks5h://" + url[len("http://"):]
        extra_env += [("ALL_PROXY", socks), ("all_proxy", socks)]
    elif policy.network.enabled:
        sys.stderr.write("corral: the policy allows network access, which corral's proxy gives: run `corral proxy "
                         "--listen unix:PATH --policy FILE` and add --proxy unix:PATH (without it the container "
                         "has no network at all)\n")
    root = ctx.uid == 0
    target = Target(engine=engine, program=engine, image=image, launched_by_root=root,
                    engine_rootless=engine == "podman" and not root, network=network,
                    user=None if root or engine == "podman" else (ctx.uid, ctx.gid),
                    seccomp=seccomp_file(plan), init=True, limits=policy.limits if policy.limits.any else None,
                    placeholders=False, env="args", extra_env=tuple(extra_env), extra=extra)
    plan = _without_env(plan)
    import shlex

    sys.stdout.write(shlex.join(argv(engine, plan, target)) + "\n")
    return 0


def _without_env(plan):
    """The plan with no environment of its own: `Target.extra_env` carries what is printed."""
    from ._values import replace

    return replace(plan, env=())
