"""The options of `corral run` (shared by `corral mcp`, `corral container args` and `corral
doctor --backend`): parsing stops at the first non-option, like srt with `--`; the policy file
(or defaults) plus the command line's shortcuts make the Policy."""

from __future__ import annotations

import os
import sys


VALUE_OPTS = {
    "-s": "settings", "--settings": "settings", "--policy": "settings",
    "-c": "command_string",
    "--allow-write": "allow_write", "--allow-read": "allow_read",
    "--deny-read": "deny_read", "--deny-write": "deny_write",
    "--allow-domain": "allow_domain", "--allow-preset": "allow_preset", "--as-user": "as_user",
    "--workspace": "workspace", "--session": "session", "--output": "output",
    "--memory": "memory", "--cpus": "cpus", "--pids": "pids", "--timeout": "timeout",
    "--pass-env": "pass_env", "--unset-env": "unset_env", "--mask-env": "mask_env",
    "--backend": "backend", "--image": "image",
}
FLAG_OPTS = {
    "--dry-run": "dry_run", "-d": "debug", "--debug": "debug", "-q": "quiet", "--quiet": "quiet",
    "--tty": "tty", "--no-tty": "no_tty", "-h": "help", "--help": "help", "-V": "version",
    "--version": "version", "--allow-weaker": "allow_weaker",
}
REPEATABLE = {"allow_write", "allow_read", "deny_read", "deny_write", "allow_domain", "pass_env", "unset_env",
              "mask_env", "allow_preset"}


class Options:
    def __init__(self) -> None:
        self.settings: str | None = None
        self.command_string: str | None = None
        self.allow_write: list[str] = []
        self.allow_read: list[str] = []
        self.deny_read: list[str] = []
        self.deny_write: list[str] = []
        self.allow_domain: list[str] = []
        self.allow_preset: list[str] = []
        self.pass_env: list[str] = []
        self.unset_env: list[str] = []
        self.mask_env: list[str] = []
        self.workspace: str | None = None
        self.session: str | None = None
        self.output: str | None = None
        self.as_user: str | None = None
        self.backend: str | None = None
        self.image: str | None = None
        self.memory = self.cpus = self.pids = self.timeout = None  # limits, as typed
        self.dry_run = self.debug = self.quiet = self.tty = self.no_tty = False
        self.allow_weaker = False  # --backend auto may fall back to the landlock wall
        self.help = self.version = False
        self.command: list[str] = []


def parse_run_args(args: list[str]) -> Options:
    from .errors import CommandLineError

    opts = Options()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in FLAG_OPTS and not eq:
            setattr(opts, FLAG_OPTS[name], True)
            i += 1
            continue
        if name in VALUE_OPTS:
            if eq:
                value = inline
                i += 1
            elif len(arg) > 2 and not arg.startswith("--"):
                value = arg[2:]
                i += 1
            else:
                if i + 1 >= len(args):
                    raise CommandLineError(f"option {name} needs a value")
                value = args[i + 1]
                i += 2
            attr = VALUE_OPTS[name]
            if attr in REPEATABLE:
                getattr(opts, attr).append(value)
            else:
                setattr(opts, attr, value)
            continue
        if len(arg) > 2 and arg[1] != "-" and arg[:2] in VALUE_OPTS:
            pass
        raise CommandLineError(f"unknown option {arg!r} (put the command after '--' if it is the command's own)")
    opts.command = args[i:]
    if opts.command_string is not None:
        opts.command = [_shell(), "-c", opts.command_string, *opts.command]
    return opts


def _shell() -> str:
    for cand in ("/bin/bash", "/usr/bin/bash", "/bin/sh"):
        if os.access(cand, os.X_OK):
            return cand
    return "/bin/sh"


def launch_context():
    from .errors import SetupError
    from .policy.model import LaunchContext

    try:
        cwd = os.getcwd()
    except OSError as exc:
        raise SetupError(f"cannot determine the working directory: {exc.strerror}", "cd into an existing directory") from None
    home = os.environ.get("HOME")
    if not home:
        import pwd

        home = pwd.getpwuid(os.geteuid()).pw_dir
    return LaunchContext(cwd=cwd, home=os.path.normpath(home), uid=os.geteuid(), gid=os.getegid())


def build_policy(opts: Options, ctx):
    """The policy file (or defaults) plus the CLI shortcuts."""
    from .errors import PolicyError, UnsupportedFeature
    from .policy import load, paths
    from .policy.native import parse_user

    policy = load.load(opts.settings, ctx)
    if opts.allow_domain:
        from .policy.network import compile_rules

        policy = policy.with_network(allowed_domains=policy.network.allowed_domains + tuple(opts.allow_domain))
        compile_rules(policy.network, "<cli> --allow-domain")
    policy = _network_extras(policy, opts.allow_preset, None if opts.quiet else _stderr_line)
    fs = policy.filesystem
    changes = {}
    for attr in ("allow_write", "allow_read", "deny_read", "deny_write"):
        values = getattr(opts, attr)
        if values:
            rules = []
            for raw in values:
                try:
                    rules.append(paths.rule(raw, ctx, f"--{attr.replace('_', '-')}"))
                except ValueError as exc:
                    raise PolicyError("<cli>", f"--{attr.replace('_', '-')}", raw, str(exc)) from None
            changes[attr] = getattr(fs, attr) + tuple(rules)
    if changes:
        policy = policy.with_filesystem(**changes)
    if opts.image is not None:
        policy = policy.with_backend(image=opts.image)
    if opts.allow_weaker:
        policy = policy.with_backend(allow_weaker=True, allowed_by="--allow-weaker")
    if opts.as_user is not None:
        policy = policy.with_process(run_as=parse_user(opts.as_user, "<cli>", "--as-user"))
    if opts.workspace is not None:
        from .policy.model import WORKSPACE_MODES

        if opts.workspace not in WORKSPACE_MODES:
            raise PolicyError("<cli>", "--workspace", opts.workspace, f"expected one of {', '.join(WORKSPACE_MODES)}")
        policy = policy.with_filesystem(workspace=opts.workspace)
    limits = {key: getattr(opts, key) for key in ("memory", "cpus", "pids", "timeout") if getattr(opts, key) is not None}
    if limits:
        from .policy.limits import parse as parse_limit

        for key, raw in limits.items():
            try:
                limits[key] = parse_limit(key, raw)
            except ValueError as exc:
                raise PolicyError("<cli>", f"--{key}", raw, str(exc)) from None
        policy = policy.with_limits(**limits)
    if opts.pass_env or opts.unset_env or opts.mask_env:
        from .policy.secret_env import apply_cli

        policy = apply_cli(policy, opts.pass_env, opts.unset_env, opts.mask_env)
    if opts.session is not None and policy.filesystem.workspace != "overlay":
        raise PolicyError("<cli>", "--session", opts.session, "sessions belong to --workspace overlay")
    for line in missing_writable(policy.filesystem.allow_write, os.path.lexists):
        if not opts.quiet:
            _stderr_line(line)
    return policy


def missing_writable(rules, exists) -> list[str]:
    """Writable paths that do not exist (nothing to bind: writes there would be refused).
    `--allow-write` and native TOML `allow_write`: an error naming the path and the fix;
    srt JSON `allowWrite` (srt skips missing paths): the warning lines returned. Pure but for
    `exists`."""
    from .display import shown
    from .errors import PolicyError

    warnings = []
    for r in rules:
        if r.glob or r.origin == "<built-in>" or exists(r.path):
            continue
        if r.origin.startswith("--allow-write"):
            raise PolicyError("<cli>", "--allow-write", r.path, "no such file or directory (create it first, "
                                                               "or fix the path)")
        source, _, key = r.origin.rpartition(":")
        if ".allowWrite[" in key:
            warnings.append(f"corral: {shown(source)}: {key} = '{shown(r.path)}' does not exist: ignored, as srt "
                            "does (create it first to allow writes there)")
        elif ".allow_write[" in key:
            raise PolicyError(source, key, r.path, "no such file or directory (create it first, fix the path, "
                                                   "or remove the entry)")
    return warnings


def _network_extras(policy, presets=(), report=None):
    """--allow-preset names, and the launcher's HTTPS_PROXY/HTTP_PROXY/NO_PROXY as the parent
    proxy (unless the policy opts out); `report` gets the line on a variable that cannot be used."""
    if presets:
        from .errors import PolicyError
        from .policy import presets as table
        from .policy.network import compile_rules

        try:
            extra = table.domains(presets)
        except ValueError as exc:
            raise PolicyError("<cli>", "--allow-preset", next(p for p in presets if p not in table.PRESETS),
                              f"unknown preset; known presets: {table.known()}") from None
        net = policy.network
        policy = policy.with_network(
            allowed_domains=net.allowed_domains + tuple(d for d in extra if d not in net.allowed_domains),
            allow_presets=net.allow_presets + tuple(p for p in presets if p not in net.allow_presets))
        compile_rules(policy.network, "<cli> --allow-preset")
    if policy.network.enabled and policy.network.parent_proxy_env:
        from .policy.proxyenv import with_environment

        net, warnings = with_environment(policy.network, os.environ)
        policy = policy.with_network(parent_proxy=net.parent_proxy, parent_proxy_env=False)
        for line in warnings if report is not None else ():
            report(line)
    return policy


def _stderr_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
