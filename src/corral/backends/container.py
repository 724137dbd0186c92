"""Plan -> a container engine's command line (podman, docker): the guide's hardened flag set.

Pure: the launcher (`sandbox/containerrun.py`) writes the files this names (seccomp profile,
environment file, generated data files) and executes the argv; `corral container args`
prints it for users who bring their own image or CI.

    ENGINE run --rm -i [-t] --name NAME --pull never --cap-drop ALL
      --security-opt no-new-privileges --security-opt seccomp=PROFILE (corral's deny list)
      --read-only --tmpfs /tmp --network host|none --user UID:GID [--userns keep-id]
      [--memory/--cpus/--pids-limit/--ulimit from the policy's limits]
      -v SRC:DEST:rw|ro ... (the plan's binds: workspace, grants, protected paths read-only)
      -v /dev/null:DEST:ro ... (denied files inside mounted areas)
      --env-file FILE (values never on a command line) -w CWD -- IMAGE COMMAND...

The image has its own root: the plan's masks of host paths outside the mounted areas do not
apply (nothing of the host is there to hide). Network: the container runs in the network
namespace of the engine's caller with `--network host`, which is corral's (loopback and the
proxy's listeners) when root runs podman from corral's child; rootless podman and docker
cannot be put there (`network_mode` says why), so they get `--network none`, and a run that
needs the proxy is refused.
"""

from __future__ import annotations

from .._values import frozen
from . import report as R

ENGINES = ("podman", "docker")
AUTO = "auto"
PROXY_SOCKET = "/run/corral/proxy.sock"  # where `corral container args --proxy unix:PATH` binds it
# Mounts the engine makes itself (its own /dev, /proc, /dev/shm), or that an image replaces.
ENGINE_OWN = ("/dev", "/proc", "/dev/shm", "/tmp")


@frozen
class Target:
    """Where and how the engine runs the plan: everything the argv depends on beyond the plan."""

    engine: str  # "podman" | "docker"
    program: str  # the engine's program (path, or the bare name)
    image: str | None  # the image to run (None: refused by argv)
    launched_by_root: bool = True
    engine_rootless: bool = False  # podman run by an unprivileged user (its own user namespace)
    network: str = AUTO  # "host" | "none" | a user's choice; AUTO: `network_mode(plan, target)`
    user: tuple[int, int] | None = None  # --user UID:GID (None: from the plan / the launcher)
    seccomp: str = "<seccomp.json>"  # the profile's path (written by the launcher)
    datadir: str = ""  # where generated files go (env file, data mounts); "": none (printed args)
    container: str = ""  # --name (a run's: the reaper removes it by name)
    cidfile: str = ""  # --cidfile: written when the engine created the container
    tty: bool = False  # -t: the engine allocates a terminal (stdin and stdout are terminals)
    init: bool = False  # --init: a minimal init as pid 1 forwards signals (catatonit / tini)
    runtime: str | None = None  # podman --runtime (runc where crun refuses hybrid cgroups)
    limits: object = None  # policy.model.Limits, or None
    placeholders: bool = True  # corral created the plan's placeholders (a run), or not (printed args)
    env: str = "file"  # "file": --env-file; "args": --env NAME=VALUE (printed), "names": --env NAME
    extra_env: tuple[tuple[str, str], ...] = ()  # set after the plan's (printed args: the proxy)
    extra: tuple[str, ...] = ()  # more engine flags before the image (printed args: the proxy socket)

    @classmethod
    def for_run(cls, name: str, facts, image: str | None, **kw) -> "Target":
        """The target of a `corral run --backend podman|docker` (or its --dry-run)."""
        return cls(engine=name, program=facts.runtime or name, image=image, launched_by_root=facts.launched_by_root,
                   engine_rootless=facts.engine_rootless, init=bool(facts.init), **kw)


# -- decisions (pure, table-tested) -----------------------------------------------------------------

def network_mode(plan, target: Target) -> tuple[str, str]:
    """(--network value, refusal): refusal is "" or why the plan's network cannot be given."""
    if target.network != AUTO:
        return target.network, ""
    wants = plan.network is not None
    if target.engine == "docker":
        if wants:
            return "none", ("docker starts containers from its daemon, outside corral's network namespace, so "
                            "corral's proxy cannot be the container's only way out")
        return "none", ""
    if not target.launched_by_root or target.engine_rootless:
        if wants:
            return "none", ("rootless podman runs containers in its own user namespace, which cannot join "
                            "corral's network namespace (where the proxy is the only way out)")
        return "none", ""
    if wants or plan.offline:
        return "host", ""  # podman runs in corral's network namespace: the container stays there
    return "none", ""


def refusal_fix(engine: str) -> str:
    return (f"run corral as root with --backend podman, use --backend bwrap|runc|crun|gvisor, or run "
            f"`corral proxy --listen unix:PATH` and `corral container args --engine {engine} --proxy unix:PATH` "
            "(the container then reaches only that socket)")


def identity(plan, target: Target) -> tuple[tuple[int, int] | None, bool]:
    """((uid, gid) for --user, keep-id): root launches use the plan's sandbox uid (never 0
    unless chosen); rootless podman keeps the launcher's ids (`--userns keep-id`), so writes
    in the workspace land as the launcher."""
    if target.user is not None:
        return target.user, target.engine == "podman" and target.engine_rootless
    if target.launched_by_root:
        return (plan.run_as if plan.run_as else (0, 0)), False
    return None, target.engine == "podman"


def _under_any(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _check_path(path: str) -> str:
    if ":" in path or "," in path or "\n" in path:
        from ..errors import SetupError

        raise SetupError(f"cannot hand the path {path!r} to a container engine (its -v syntax has no way to "
                         "quote ':' or ',')", "rename it, or use --backend bwrap")
    return path


def mounts(plan, target: Target) -> tuple[list[str], list[tuple[str, bytes, int]]]:
    """The plan's mounts as engine flags, and the data files they name (path, content, mode)."""
    out: list[str] = []
    files: list[tuple[str, bytes, int]] = []
    (user, keep_id) = identity(plan, target)
    ids = ""
    if user is not None and user != (0, 0):  # the tmpfs belongs to the command's user
        ids = ",U" if target.engine == "podman" else f",uid={user[0]},gid={user[1]}"
    elif keep_id:  # rootless podman runs the command as the launcher's ids: U gives them the tmpfs
        ids = ",U"
    skip = {p.path for p in plan.placeholders} if not target.placeholders else set()
    # The areas the container receives: the host's binds, the private TMPDIR, a scratch workspace.
    # (Never a hidden directory's tmpfs: what lies under it stays hidden.)
    ws_path = plan.workspace.path if plan.workspace is not None else None
    areas = [m.dest for m in plan.mounts if m.dest not in ("/", *ENGINE_OWN) and (
        m.op in ("bind", "ro-bind") or m.op == "tmpfs" and m.dest in (plan.tmpdir, ws_path))]
    data_dests = [m.dest for m in plan.mounts if m.op == "data"]
    network, _ = network_mode(plan, target)
    for i, m in enumerate(plan.mounts):
        if m.dest in ENGINE_OWN or (i == 0 and m.dest == "/") or m.op in ("dev", "proc"):
            continue
        if m.op == "pre-ro-bind" and m.dest in skip:
            continue  # a placeholder corral did not create (printed args): nothing to bind
        if m.op == "remount-ro":
            continue  # a hidden directory: its tmpfs below is read-only already
        if m.op in ("bind", "ro-bind", "pre-bind", "pre-ro-bind"):
            ro = m.op in ("ro-bind", "pre-ro-bind")
            if m.op != "bind" and m.op != "ro-bind" and not _under_any(m.dest, areas):
                continue
            workspace = (plan.cwd, plan.workspace.path if plan.workspace is not None else plan.cwd)
            if m.op == "ro-bind" and m.dest not in workspace and not _under_any(m.dest, [
                    a for a in areas if a != m.dest]):
                continue  # a host path re-shown read-only (allow_read): the image has its own
            src = m.src if m.op in ("bind", "ro-bind") and m.src else m.dest
            out += ["-v", f"{_check_path(src)}:{_check_path(m.dest)}:{'ro' if ro else 'rw'}"]
        elif m.op == "dev-null":
            if _under_any(m.dest, areas):
                out += ["-v", f"/dev/null:{_check_path(m.dest)}:ro"]
        elif m.op == "tmpfs":
            hidden = m.dest not in (plan.tmpdir, ws_path)
            if hidden and not _under_any(m.dest, areas):
                continue  # hides a host directory the image does not have
            mode = m.perms if m.perms is not None else 0o755
            ro = hidden and not any(_under_any(d, [m.dest]) for d in data_dests)
            out += ["--tmpfs", f"{_check_path(m.dest)}:{'ro' if ro else 'rw'},nosuid,nodev,mode={mode:o}"
                    + ("" if hidden else ids)]
        elif m.op == "data":
            etc = m.dest in ("/etc/resolv.conf",) and network == "host"
            if not target.datadir or not (etc or _under_any(m.dest, areas)):
                continue
            name = f"{target.datadir}/data-{i}"
            files.append((name, m.src.encode(), m.perms if m.perms is not None else 0o644))
            out += ["-v", f"{name}:{_check_path(m.dest)}:ro"]
        else:
            raise AssertionError(f"unknown mount op {m.op}")
    return out, files


def env_file(env) -> tuple[bytes, list[str]]:
    """(the --env-file content, names passed as `--env NAME` because their values span lines:
    the engine takes those from its own environment, which is the plan's)."""
    lines, by_name = [], []
    for k, v in env:
        if "\n" in v or "\r" in v or "\0" in v:
            by_name.append(k)
        else:
            lines.append(f"{k}={v}\n")
    return "".join(lines).encode(), by_name


def limit_flags(limits) -> list[str]:
    if limits is None:
        return []
    out = []
    if limits.memory is not None:
        out += ["--memory", str(limits.memory), "--memory-swap", str(limits.memory)]
    if limits.cpus is not None:
        out += ["--cpus", f"{limits.cpus:g}"]
    if limits.pids is not None:
        out += ["--pids-limit", str(limits.pids)]
    if limits.nofile is not None:
        out += ["--ulimit", f"nofile={limits.nofile}:{limits.nofile}"]
    if limits.fsize is not None:
        out += ["--ulimit", f"fsize={limits.fsize}:{limits.fsize}"]
    return out


def render(name: str, plan, target: Target) -> tuple[list[str], list[tuple[str, bytes, int]]]:
    """(argv, files to write first). Pure. Raises SetupError when the plan cannot be given."""
    from ..errors import SetupError

    if target.image is None:
        raise SetupError(f"the {name} backend needs an image", f"pass --image IMAGE (or set image = \"...\" "
                         "in the policy's [container] table)")
    network, refusal = network_mode(plan, target)
    if refusal:
        raise SetupError(f"the {name} backend cannot give this run its network policy: {refusal}",
                         refusal_fix(target.engine))
    files: list[tuple[str, bytes, int]] = []
    argv = [target.program]
    if target.runtime and target.engine == "podman":
        argv += ["--runtime", target.runtime]
    argv += ["run", "--rm", "-i"]
    if target.tty:
        argv.append("-t")
    if target.container:
        argv += ["--name", target.container]
    if target.cidfile:
        argv += ["--cidfile", target.cidfile]
    if target.init:
        argv.append("--init")
    argv += ["--pull", "never", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
             "--security-opt", f"seccomp={target.seccomp}", "--read-only",
             "--tmpfs", "/tmp:rw,nosuid,nodev,mode=1777", "--network", network]
    user, keep_id = identity(plan, target)
    if keep_id:
        argv += ["--userns", "keep-id"]
    if user is not None:
        argv += ["--user", f"{user[0]}:{user[1]}"]
    argv += limit_flags(target.limits)
    flags, data = mounts(plan, target)
    argv += flags
    files += data
    env = list(plan.env)
    if target.extra_env:
        names = {k for k, _ in target.extra_env}
        env = [(k, v) for k, v in env if k not in names] + list(target.extra_env)
    if target.env == "file":  # (no datadir: --dry-run, which shows no values)
        content, by_name = env_file(env)
        if target.datadir:
            files.append((f"{target.datadir}/env", content, 0o600))
        argv += ["--env-file", f"{target.datadir or '<run directory>'}/env"]
        for k in by_name:
            argv += ["--env", k]
    elif target.env == "names":
        for k, _v in env:
            argv += ["--env", k]
    else:
        for k, v in env:
            argv += ["--env", f"{k}={v}"]
    argv += list(target.extra)
    argv += ["-w", plan.cwd, "--", target.image, *plan.argv]  # `--` before the image: after it, it is the command's
    return argv, files


def argv(name: str, plan, target: Target) -> list[str]:
    """The engine's command line for `plan` (what `--dry-run` and `corral container args` show)."""
    return render(name, plan, target)[0]


def seccomp_json(plan, arch: str = "x86_64") -> bytes:
    """corral's deny list as the engine's seccomp profile (the OCI/Docker JSON format)."""
    import json

    from .oci import seccomp_profile

    return json.dumps(seccomp_profile(plan.seccomp, arch), indent=1, sort_keys=True).encode()


# -- enforcement report ------------------------------------------------------------------------------

def report(name: str, plan, facts, limits=None) -> R.Report:
    target = Target.for_run(name, facts, "<image>")
    network, refusal = network_mode(plan, target)
    root = facts.launched_by_root
    rootless = target.engine == "podman" and (target.engine_rootless or not root)
    user, keep_id = identity(plan, target)
    items = R.common_items(plan, limits)
    if network == "host":
        net = (R.ENFORCED, "podman runs in corral's network namespace (--network host): loopback and the "
                           "proxy's listeners only")
    elif refusal:
        net = (R.NOT_ENFORCED, f"refused: {refusal}")
    elif plan.offline:
        net = (R.PARTIAL, "--network none: an empty network namespace (no way out); corral's responder is not "
                          "there, so names fail without being reported")
    else:
        net = (R.ENFORCED, "--network none: an empty network namespace")
    who = (f"--user {user[0]}:{user[1]}" if user is not None else "the image's user") + (
        " with --userns keep-id: the launcher's ids, other ids unmapped" if keep_id else "")
    how = {
        "filesystem view": (R.ENFORCED, "the image's root, read-only (--read-only), plus the plan's binds (-v); "
                                       "the host's other paths are not there at all"),
        "read denials": (R.ENFORCED, "/dev/null or an empty tmpfs over each denied path inside a mounted area; "
                                     "the rest of the host is not in the image"),
        "protected paths": (R.ENFORCED, "read-only binds (-v PATH:PATH:ro) inside the writable areas; the post-run "
                                        "check quarantines new ones"),
        "network": net,
        "capabilities": (R.ENFORCED, "--cap-drop ALL"),
        "no_new_privs": (R.ENFORCED, "--security-opt no-new-privileges"),
        "seccomp deny list": (R.ENFORCED, "--security-opt seccomp=PROFILE (corral's deny list as the engine's "
                                          "profile; it replaces the engine's default allow list)"),
        "user namespace": ((R.ENFORCED, f"rootless podman's user namespace; {who}") if rootless else
                           (R.PARTIAL, f"no user namespace: {who} is a host uid (no capabilities)")),
        "pid namespace": (R.ENFORCED, "the engine's"),
        "signals": (R.ENFORCED, "podman forwards them (--sig-proxy) to its init (--init), then the command")
        if facts.init else (R.PARTIAL, "the command is pid 1: signals it does not handle are ignored "
                                       "(fix: apt-get install catatonit)"),
        "tty": (R.ENFORCED, "-t when stdin and stdout are terminals: the engine's own pty, relayed through "
                           "corral's"),
        "kernel": (R.NOT_REQUESTED, "the host kernel, shared (as with bwrap)"),
    }
    cgroup_v1 = facts.cgroup_version == 1
    out = []
    for item in items:
        if item.field in how:
            state, text = how[item.field]
            item = R.Item(item.field, item.requested, state, text)
        elif item.field in ("memory limit", "pids limit", "cpu limit"):
            if rootless and cgroup_v1:
                item = R.Item(item.field, item.requested, R.NOT_ENFORCED, "not enforced: rootless, cgroup v1 "
                              "(podman ignores --memory/--pids-limit/--cpus there)")
            else:
                flag = {"memory limit": "--memory", "pids limit": "--pids-limit", "cpu limit": "--cpus"}[item.field]
                item = R.Item(item.field, item.requested, R.ENFORCED, f"{flag} (the engine's cgroup)")
        elif item.field in ("open files limit", "file size limit"):
            item = R.Item(item.field, item.requested, R.ENFORCED, "--ulimit")
        elif item.field == "time limit":
            item = R.Item(item.field, item.requested, R.ENFORCED, "corral's timer stops the engine, which stops "
                          "the container")
        out.append(item)
    if facts.runtime is None:
        fix = "sudo apt-get install podman" if name == "podman" else "install Docker Engine (docker.io)"
        out.insert(0, R.Item("runtime", name, R.NOT_ENFORCED, f"{name} is not installed (fix: {fix})"))
    elif name == "docker" and not facts.engine_reachable:
        out.insert(0, R.Item("runtime", name, R.NOT_ENFORCED,
                             "the Docker daemon does not answer (fix: start it, `sudo systemctl start docker`, or "
                             "set DOCKER_HOST; or use --backend podman)"))
    else:
        out.insert(0, R.Item("runtime", name, R.ENFORCED, f"{facts.runtime} {facts.runtime_version}".strip()
                             + (", rootless" if rootless else "")))
    return R.Report(name, tuple(out))

