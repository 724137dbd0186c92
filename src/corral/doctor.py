"""`corral doctor`: can this machine sandbox? Each check does the real thing (in a forked
child) and, when it fails, says the cause and the fix."""

from __future__ import annotations

import os

from ._values import field, frozen
from .sandbox.diagnose import _read, in_child, userns_problem

SCHEMA = 1  # `corral doctor --json`: bumped only when a field changes meaning or goes away
OK, WARN, FAIL = "ok", "warn", "fail"


@frozen
class Check:
    """One check: `id` is stable (harnesses key on it), `name` the text output's label.
    state: ok | warn (optional: something only some runs need) | fail (corral's default wall
    cannot run). `detail`: what works, or the exact cause; `fix`: the command or change that
    fixes a failed check. `data`: the facts behind it (versions, sysctls), for --json."""

    id: str
    name: str
    state: str
    detail: str
    fix: str = ""
    data: dict = field(default_factory=dict)

    def line(self) -> str:
        label = {OK: "ok  ", WARN: "warn", FAIL: "FAIL"}[self.state]
        return f"{label}  {self.name}: {self.detail}" + (f" (fix: {self.fix})" if self.fix else "")

    def as_json(self) -> dict:
        return {"id": self.id, "name": self.name, "state": self.state, "ok": self.state == OK,
                "detail": self.detail, "fix": self.fix or None, "data": dict(self.data)}


def _from_row(id_: str, row: tuple[str, bool, str], optional: bool = False, data=None) -> Check:
    """A (what, ok, detail) row, whose detail may end with `(fix: ...)`, as a Check."""
    what, good, detail = row
    fix = ""
    if not good and "(fix: " in detail:
        detail, _, fix = detail.partition(" (fix: ")
        fix = fix[:-1] if fix.endswith(")") else fix
    return Check(id_, what, OK if good else WARN if optional else FAIL, detail, fix, data or {})


def checks() -> list[Check]:
    """Every check of `corral doctor`, in the order printed. Each probe does the real thing
    (in a forked child where it changes the process)."""
    from ._which import find_executable

    out = []
    bwrap = find_executable("bwrap")
    version = _bwrap_version(bwrap) if bwrap else ""
    out.append(Check("bwrap", "bubblewrap", OK, f"{bwrap}, {version}", data={"path": bwrap, "version": version})
               if bwrap else
               Check("bwrap", "bubblewrap", FAIL, "not found on PATH",
                     "sudo apt-get install bubblewrap, or dnf install bubblewrap", {"path": None, "version": None}))
    out.append(_userns_check())
    out.append(_landlock_check())
    out.append(_seccomp_check())
    out.extend(_network_checks())
    out.append(_from_row("overlay", _overlay_check()))
    if os.geteuid() == 0:
        out.append(_from_row("idmap", _idmap_check()))
    out.append(_from_row("cgroups", _cgroup_check(), optional=True))  # limits fall back to rlimits
    out.extend(_runtime_checks())
    out.append(_from_row("tls", _tls_check()))
    return out


def doctor() -> list[tuple[str, bool, str]]:
    """The checks as (what, ok, detail) rows (a failed check's detail ends with its fix)."""
    return [(c.name, c.state == OK, c.line().split(": ", 1)[1]) for c in checks()]


USERNS_SYSCTLS = ("/proc/sys/user/max_user_namespaces", "/proc/sys/kernel/unprivileged_userns_clone",
                  "/proc/sys/kernel/apparmor_restrict_unprivileged_userns")


def _userns_check() -> Check:
    from .sandbox.diagnose import container, seccomp_filtered

    uid_map = " ".join((_read("/proc/self/uid_map") or "").split())
    data = {"sysctl": {p.removeprefix("/proc/sys/").replace("/", "."): _read(p) for p in USERNS_SYSCTLS},
            "uid_map": uid_map, "nested": uid_map != "0 0 4294967295", "seccomp_filter": seccomp_filtered(),
            "container": container() or None}
    problem = userns_problem()
    if problem is None:
        return Check("userns", "user namespaces", OK, "available", data=data)
    return Check("userns", "user namespaces", FAIL, problem.cause, problem.fix, data)


def _landlock_check() -> Check:
    """The weaker wall (`--backend landlock`, `--backend auto` with allow_weaker): optional."""
    from .backends import KINDS
    from .sandbox.diagnose import landlock_abi

    abi = landlock_abi()
    data = {"abi": abi, "backend": "landlock" in KINDS}
    if abi == 0:
        return Check("landlock", "Landlock", WARN, "not enabled in this kernel: no weaker wall where user "
                     "namespaces are refused", "a kernel with CONFIG_SECURITY_LANDLOCK=y and landlock in lsm= "
                     "(Linux >= 5.13; >= 6.7 for the network rules)", data)
    what = [f"ABI {abi}", "filesystem rules"]
    if abi >= 4:
        what.append("TCP connect/bind rules")
    if abi >= 6:
        what.append("abstract-socket and signal scopes")
    if abi < 4:
        return Check("landlock", "Landlock", WARN, f"ABI {abi}: filesystem rules only; the weaker wall's "
                     "network rules need ABI 4", "Linux >= 6.7", data)
    return Check("landlock", "Landlock", OK, ", ".join(what), data=data)


def _seccomp_check() -> Check:
    seccomp = _read("/proc/sys/kernel/seccomp/actions_avail")
    actions = seccomp.split() if seccomp else []
    data = {"actions": actions}
    if not seccomp:
        return Check("seccomp", "seccomp filters", FAIL, "not available", "a kernel built with "
                     "CONFIG_SECCOMP_FILTER", data)
    if "kill_process" in actions and "errno" in actions:
        return Check("seccomp", "seccomp filters", OK, "kill_process available", data=data)
    return Check("seccomp", "seccomp filters", FAIL, f"actions {seccomp}: corral needs errno and kill_process",
                 "Linux >= 4.14", data)


def _network_checks() -> list[Check]:
    """The proxy's namespace, built for real; nftables (transparent mode) told apart from it."""
    from .sandbox.netns import find_nft

    nft = find_nft()
    version = _bwrap_version(nft).removeprefix("version unknown") if nft else ""
    ns = _from_row("netns", _network_check())
    if ns.state == OK:
        return [ns, Check("nftables", "nftables", OK, f"{nft}, {version}".rstrip(", ") + ": transparent mode's "
                          "redirect rules installed", data={"path": nft, "version": version or None})]
    plain = _from_row("netns", _network_check(transparent=False))
    if plain.state == OK:  # only the redirect failed: transparent mode is lost, the proxy works
        why = ns.detail if nft else "the nft command is not installed"
        return [plain, Check("nftables", "nftables", WARN, f"{why}: no transparent mode (clients must honour "
                             "HTTPS_PROXY)", "sudo apt-get install nftables, or set network.transparent = false",
                             {"path": nft, "version": version or None})]
    return [ns, Check("nftables", "nftables", WARN, "not checked: the namespace it works in cannot be made",
                      "see egress proxy namespace", {"path": nft, "version": version or None})]


RUNTIMES = ("runc", "crun", "gvisor", "podman", "docker")


def _runtime_checks() -> list[Check]:
    """Each other wall's program and version (optional: bwrap is the default)."""
    from .sandbox.hostfacts import gather

    out = []
    for name in RUNTIMES:
        facts = gather(name, version=True)
        label = f"backend {name}"
        if facts.runtime is None:
            out.append(Check(f"runtime.{name}", label, WARN, "not installed", _install_hint(name),
                             {"path": None, "version": None}))
        elif name == "docker" and not facts.engine_reachable:
            out.append(Check(f"runtime.{name}", label, WARN, f"{facts.runtime}: no engine answers (only the "
                             "client is installed)", "start dockerd, or set DOCKER_HOST",
                             {"path": facts.runtime, "version": facts.runtime_version or None}))
        else:
            out.append(Check(f"runtime.{name}", label, OK, f"{facts.runtime}, {facts.runtime_version or 'version unknown'}"
                             + f" (`corral doctor --backend {name}` tries a run)",
                             data={"path": facts.runtime, "version": facts.runtime_version or None}))
    return out


def _bwrap_version(path: str) -> str:
    import subprocess

    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "version unknown"
    return out or "version unknown"


def _overlay_probe(base: str) -> None:
    """An overlay mounted in a user namespace of our own, as `--workspace overlay` does; on a
    tmpfs over `base`, in the probe's own mount namespace (the host directory stays empty)."""
    import ctypes

    from .sandbox.libc import load_libc
    from .sandbox.mountprep import self_userns

    self_userns(os.getuid(), os.getgid())
    libc = load_libc()
    if libc.mount(b"tmpfs", base.encode(), b"tmpfs", 0, b"mode=0700") != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mounting a tmpfs: {os.strerror(err)}")
    for d in ("lower", "upper", "work", "merged"):
        os.mkdir(os.path.join(base, d))
    opts = f"lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work,userxattr".encode()
    if libc.mount(b"overlay", f"{base}/merged".encode(), b"overlay", 0, opts) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mounting overlayfs: {os.strerror(err)}")


def _overlay_check() -> tuple[str, bool, str]:
    import tempfile

    base = tempfile.mkdtemp(prefix="corral-doctor-")
    try:
        why = in_child(lambda: _overlay_probe(base))
    finally:
        os.rmdir(base)
    if not why:
        return ("overlay in a user namespace", True, "works (--workspace overlay, /tmp's overlay)")
    return ("overlay in a user namespace", False, f"{why} (fix: Linux >= 5.11 for overlayfs in user "
            "namespaces; meanwhile use --workspace copy or ro)")


def _idmap_check() -> tuple[str, bool, str]:
    """Root launches run the command as an unprivileged uid and need idmapped mounts of the
    writable areas: probe one of the working directory, on its own filesystem."""
    import ctypes

    from .sandbox import mountprep as mp

    cwd = os.getcwd()
    try:
        fd = mp.userns((0, 0), (65533, 65533))
    except OSError as exc:
        return ("idmapped mounts", False, f"cannot make the mapping's user namespace: {exc}")

    def probe() -> None:
        from .sandbox.libc import load_libc

        libc = load_libc()
        if libc.unshare(mp.CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        tree = libc.syscall(mp.SYS_OPEN_TREE, -100, cwd.encode(), mp.OPEN_TREE_CLONE | mp.OPEN_TREE_CLOEXEC)
        if tree < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"open_tree: {os.strerror(err)}")
        attr = (ctypes.c_uint64 * 4)(mp.MOUNT_ATTR_IDMAP, 0, 0, fd)
        if libc.syscall(mp.SYS_MOUNT_SETATTR, tree, b"", mp.AT_EMPTY_PATH, attr, 32) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"mount_setattr(MOUNT_ATTR_IDMAP): {os.strerror(err)}")

    try:
        why = in_child(probe)
    finally:
        os.close(fd)
        mp.reap()
    if not why:
        return ("idmapped mounts", True, f"work on the filesystem of {cwd} (root launches run as uid 65533)")
    return ("idmapped mounts", False, f"not on the filesystem of {cwd}: {why} (fix: Linux >= 5.12 with ext4, "
            "xfs or btrfs (tmpfs >= 6.3); or run corral as the user who owns the project, or pass --as-user)")


def _cgroup_check() -> tuple[str, bool, str]:
    """Which limits this launcher can enforce with cgroups (--memory, --cpus, --pids)."""
    from .policy.model import Limits
    from .sandbox.limits import plan_limits, probe

    try:
        plan = plan_limits(Limits(memory=1 << 30, cpus=1.0, pids=100), probe())
    except OSError as exc:
        return ("cgroups for limits", False, f"cannot read the cgroup hierarchy: {exc}")
    missing = [e for e in plan.items if not e.full]
    if not missing:
        return ("cgroups for limits", True, "--memory, --cpus and --pids enforced by a cgroup per run")
    names = ", ".join(f"--{e.key} ({e.why})" for e in missing)
    return ("cgroups for limits", False, f"not enforced for this launcher: {names}; rlimit fallbacks where "
            "they help (fix: see docs/policy.md [limits])")


def _tls_check() -> tuple[str, bool, str]:
    """TLS termination needs a system CA bundle to mount the sandbox's bundle over."""
    from .proxy.tlsca import SYSTEM_BUNDLE_PATHS

    found = [p for p in SYSTEM_BUNDLE_PATHS if os.path.isfile(p)]
    if not found:
        return ("TLS termination", False, "no system CA bundle: credentials bound to HTTPS hosts cannot be "
                "injected (fix: sudo apt-get install ca-certificates)")
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    ca = os.path.join(base, "corral", "ca", "ca.pem")
    state = f"per-user CA {ca}" if os.path.isfile(ca) else "per-user CA made on first use"
    return ("TLS termination", True, f"bundle mounted over {', '.join(found)}; {state}")


def _network_check(transparent: bool = True) -> tuple[str, bool, str]:
    """Build the sandbox's network namespace for real (lo, routes, nftables, listeners)."""
    from .errors import SetupError
    from .sandbox import netns

    try:
        ns = netns.create(transparent=transparent)
    except SetupError as exc:
        return ("egress proxy namespace", False, str(exc) + ("" if exc.fix else
                                                             " (fix: install nftables, or set transparent = false)"))
    ns.close()
    return ("egress proxy namespace", True, "loopback-only namespace, " + (
        "nftables redirect (transparent mode), " if transparent else "") + "listeners")


def backend_checks(name: str, settings: str | None = None) -> list[Check]:
    """`corral doctor --backend NAME`: the wall's program, a real run of `true` behind it, and
    the enforcement report of the policy; the report's rows follow as `report: FIELD` checks
    (ok unless a field is not enforced). NAME may be `auto`: the wall auto picks here, or the
    refusal's cause and fix."""
    from .backends import get
    from .errors import CorralError
    from .orchestrate import Orchestrator, resolve_auto
    from .runopts import build_policy, launch_context, parse_run_args
    from .sandbox.hostfacts import gather

    rows: list[Check] = []
    opts = parse_run_args(["-q", *(["-s", settings] if settings else []), "--backend", name, "--", "true"])
    ctx = launch_context()
    try:
        policy = build_policy(opts, ctx)
    except CorralError as exc:
        return [Check("policy", "policy", FAIL, str(exc))]
    if name == "auto":
        try:
            name = resolve_auto(policy, report=lambda line: None)
        except CorralError as exc:
            return [Check("backend.auto", "auto backend", FAIL, exc.cause, exc.fix)]
        rows.append(Check("backend.auto", "auto backend", OK, f"{name} on this machine", data={"backend": name}))
    get(name)  # an unknown name: the usual one-line refusal
    facts = gather(name, version=True)
    data = {"path": facts.runtime, "version": facts.runtime_version or None}
    rows.append(Check("backend.program", f"{name} backend program", OK, f"{facts.runtime} {facts.runtime_version}".strip(),
                      data=data) if facts.runtime else
                Check("backend.program", f"{name} backend program", FAIL, "not installed", _install_hint(name), data))
    try:
        with Orchestrator(policy, ctx, backend=name, in_child=True, report=None) as orch:
            status = orch.run_foreground(["true"], tty=False)
        rows.append(Check("backend.run", f"{name}: a real run of `true`", OK if status == 0 else FAIL,
                          f"exit {status}", "" if status == 0 else f"corral run --backend {name} -- true shows why",
                          {"status": status}))
    except CorralError as exc:
        fix = getattr(exc, "fix", "")
        rows.append(Check("backend.run", f"{name}: a real run of `true`", FAIL,
                          getattr(exc, "cause", str(exc)) if fix else str(exc), fix))
    with Orchestrator(policy, ctx, backend=name, dry_run=True) as orch:
        plan = orch.plan(["true"])
        report = orch.enforcement(plan, orch.limits(plan, refuse=False))
    for item in report.items:
        # A row the wall does not enforce is a gap of that wall, said (warn), not a broken machine.
        good = item.state != "not enforced" or item.field == "kernel"
        rows.append(Check(f"report.{item.field.replace(' ', '_')}", f"report: {item.field}", OK if good else WARN,
                          f"{item.state}: {item.requested}" + (f" ({item.how})" if item.how else ""),
                          data={"field": item.field, "requested": item.requested, "state": item.state,
                                "how": item.how or None}))
    return rows


def as_json(base: list[Check], backend: str | None = None, rows: list[Check] | None = None) -> dict:
    """The `corral doctor --json` document (docs/doctor.md describes it field by field)."""
    from . import __version__
    from .sandbox.diagnose import container

    every = list(base) + list(rows or ())
    uid_map = " ".join((_read("/proc/self/uid_map") or "").split())
    doc = {
        "schema": SCHEMA,
        "corral": __version__,
        "ok": not any(c.state == FAIL for c in every),
        "failed": [c.id for c in every if c.state == FAIL],
        "launcher": {"uid": os.geteuid(), "root": os.geteuid() == 0 and uid_map == "0 0 4294967295",
                     "user_namespace": uid_map != "0 0 4294967295", "container": container() or None},
        "auto": _auto_json(),
        "checks": [c.as_json() for c in base],
        "backend": None if backend is None else {"name": backend, "checks": [c.as_json() for c in rows or ()]},
    }
    return doc


def _auto_json() -> dict:
    """What `--backend auto` picks here, without and with the weaker wall allowed."""
    from .backends.auto import choose
    from .sandbox.hostfacts import auto_probe

    probe = auto_probe()
    strict, weaker = choose(probe, False), choose(probe, True)
    return {"backend": strict.backend, "with_allow_weaker": weaker.backend,
            "cause": strict.cause or weaker.cause or None, "fix": strict.fix or None}


def _install_hint(name: str) -> str:
    pkg = {"gvisor": "runsc", "docker": "docker.io"}.get(name, name)
    return f"sudo apt-get install {pkg}" + (" (or scripts/install-runsc.sh for the newest build)" if name == "gvisor" else "")
