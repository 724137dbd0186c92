"""`corral doctor`: can this machine sandbox? Each check does the real thing (in a forked
child) and, when it fails, says the cause and the fix."""

from __future__ import annotations

import os

from .sandbox.diagnose import _read, userns_problem


def doctor() -> list[tuple[str, bool, str]]:
    """Checks for `corral doctor`, only of what corral uses: (what, ok, detail); a failed
    check's detail ends with the fix. Each probe does the real thing in a forked child."""
    from ._which import find_executable

    checks = []
    bwrap = find_executable("bwrap")
    checks.append(("bubblewrap", bwrap is not None,
                   f"{bwrap}, {_bwrap_version(bwrap)}" if bwrap else
                   "not found on PATH (fix: sudo apt-get install bubblewrap, or dnf install bubblewrap)"))
    problem = userns_problem()
    checks.append(("user namespaces", problem is None, str(problem) if problem else "available"))
    seccomp = _read("/proc/sys/kernel/seccomp/actions_avail")
    checks.append(("seccomp filters", bool(seccomp),
                   "kill_process available" if seccomp and "kill_process" in seccomp else seccomp or
                   "not available (fix: a kernel built with CONFIG_SECCOMP_FILTER)"))
    checks.append(_network_check())
    checks.append(_overlay_check())
    if os.geteuid() == 0:
        checks.append(_idmap_check())
    checks.append(_cgroup_check())
    checks.append(_tls_check())
    return checks


def _bwrap_version(path: str) -> str:
    import subprocess

    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "version unknown"
    return out or "version unknown"


def _in_child(probe) -> str:
    """Run `probe()` in a forked child; "" when it succeeded, else its one-line reason."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - probe child
        try:
            os.close(r)
            try:
                probe()
                os._exit(0)
            except BaseException as exc:  # noqa: BLE001 - reported to the parent as a line
                os.write(w, str(exc).encode(errors="replace")[:300] or b"failed")
                os._exit(1)
        finally:
            os._exit(2)
    os.close(w)
    why = b""
    while chunk := os.read(r, 512):
        why += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return ""
    return why.decode(errors="replace") or f"the probe failed (status {status})"


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
        why = _in_child(lambda: _overlay_probe(base))
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
        why = _in_child(probe)
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
        return ("TLS termination", False, "no system CA bundle (install ca-certificates); credentials "
                "bound to HTTPS hosts cannot be injected")
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    ca = os.path.join(base, "corral", "ca", "ca.pem")
    state = f"per-user CA {ca}" if os.path.isfile(ca) else "per-user CA made on first use"
    return ("TLS termination", True, f"bundle mounted over {', '.join(found)}; {state}")


def _network_check() -> tuple[str, bool, str]:
    """Build the sandbox's network namespace for real (lo, routes, nftables, listeners)."""
    from .errors import SetupError
    from .sandbox import netns

    try:
        ns = netns.create(transparent=True)
    except SetupError as exc:
        return ("egress proxy namespace", False, str(exc) + ("" if exc.fix else
                                                             " (fix: install nftables, or set transparent = false)"))
    ns.close()
    return ("egress proxy namespace", True, "loopback-only namespace, nftables redirect (transparent mode), "
            "listeners")


def backend_checks(name: str, settings: str | None = None) -> list:
    """`corral doctor --backend NAME`: the wall's program, a real run of `true` behind it, and
    the enforcement report of the policy, as (what, ok, detail) rows; the report's rows follow
    as `report: FIELD` lines (ok unless a field is not enforced)."""
    from .backends import get
    from .runopts import build_policy, launch_context, parse_run_args
    from .errors import CorralError
    from .orchestrate import Orchestrator
    from .sandbox.hostfacts import gather

    get(name)  # an unknown name: the usual one-line refusal
    rows = []
    facts = gather(name, version=True)
    rows.append((f"{name} backend program", facts.runtime is not None,
                 f"{facts.runtime} {facts.runtime_version}".strip() if facts.runtime else
                 f"not installed (fix: {_install_hint(name)})"))
    opts = parse_run_args(["-q", *(["-s", settings] if settings else []), "--backend", name, "--", "true"])
    ctx = launch_context()
    try:
        policy = build_policy(opts, ctx)
    except CorralError as exc:
        return rows + [("policy", False, str(exc))]
    try:
        with Orchestrator(policy, ctx, backend=name, in_child=True, report=None) as orch:
            status = orch.run_foreground(["true"], tty=False)
        rows.append((f"{name}: a real run of `true`", status == 0, "exit 0" if status == 0 else f"exit {status}"))
    except CorralError as exc:
        rows.append((f"{name}: a real run of `true`", False, str(exc)))
    with Orchestrator(policy, ctx, backend=name, dry_run=True) as orch:
        plan = orch.plan(["true"])
        report = orch.enforcement(plan, orch.limits(plan, refuse=False))
    for item in report.items:
        rows.append((f"report: {item.field}", item.state != "not enforced" or item.field == "kernel",
                     f"{item.state}: {item.requested}" + (f" ({item.how})" if item.how else "")))
    return rows


def _install_hint(name: str) -> str:
    pkg = {"gvisor": "runsc", "docker": "docker.io"}.get(name, name)
    return f"sudo apt-get install {pkg}" + (" (or scripts/install-runsc.sh for the newest build)" if name == "gvisor" else "")
