"""Plan -> OCI runtime bundle (config.json + data files) for runc, crun and runsc (gVisor).

Pure: the launcher (`sandbox/ocirun.py`) writes what this returns and prepares the root view.

The root filesystem is the host's own view, read-only, with no image and no registry: the
launcher binds "/" recursively (read-only) onto the bundle's `rootfs`, in its private mount
namespace, after corral's own preparation (protected paths, idmapped areas, /tmp's overlay),
so the view carries all of it. Or a root filesystem directory the user names (`--image DIR`).
The plan's mounts follow in order, as bind, tmpfs, proc and devpts mounts. The container joins
no network namespace of its own: it stays in corral's (loopback + the proxy's listeners, or
the offline responder), where the runtime was started. Capabilities are empty, no_new_privs is
set, and corral's seccomp deny list is rendered as an OCI seccomp profile.
"""

from __future__ import annotations

import json

from .._values import frozen
from ..sandbox.seccomp import SOCK_TYPE_MASK, rules
from . import report as R

OCI_VERSION = "1.0.2"
RUNTIMES = {"runc": "runc", "crun": "crun", "gvisor": "runsc"}
ARCHES = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}
# /proc entries hidden or read-only, as the runtimes' own defaults do.
MASKED = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap")
READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
DEV_MOUNTS = (
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755",
                                                                             "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
)


@frozen
class Bundle:
    """Where the launcher puts things, and the host facts the config depends on."""

    path: str  # the bundle directory (config.json, data/)
    runtime: str  # "runc" | "crun" | "gvisor"
    launched_by_root: bool
    init: str | None = None  # catatonit or tini, run as pid 1 ahead of the command
    image: str | None = None  # a root filesystem directory instead of the host's view
    arch: str = "x86_64"
    # Masks left out: host paths the launching user cannot open anyway (unprivileged gVisor:
    # its gofer opens each mount point as that user, and cannot open /etc/gshadow to cover it).
    skip: tuple[str, ...] = ()
    # Is the runtime itself inside corral's user namespace? (Always when unprivileged; launched
    # by root, when corral's namespace has one: with network, or an overlay.) None: unprivileged only.
    in_userns: bool | None = None
    terminal: bool = False  # corral relays a pty: the runtime gives the command a terminal of its own

    @property
    def nested_userns(self) -> bool:
        return (self.in_userns if self.in_userns is not None else not self.launched_by_root) and \
            self.runtime != "gvisor"

    @property
    def rootfs(self) -> str:
        return self.image or f"{self.path}/rootfs"


def render(plan, bundle: Bundle) -> tuple[dict, tuple[tuple[str, bytes, int], ...]]:
    """(config.json as a dict, data files as (path, content, mode)). Pure."""
    files = []
    mounts = []
    host_view = bundle.image is None
    bound = [m.dest for m in plan.mounts if m.op in ("bind", "ro-bind") and m.dest != "/"]
    uid, gid = identity(plan, bundle)
    for i, m in enumerate(plan.mounts):
        if m.op.startswith("pre-"):
            continue  # made by corral's child before the runtime starts: part of the root view
        if m.op in ("ro-bind", "bind") and m.dest == "/" and i == 0:
            continue  # the root view itself
        if m.dest in bundle.skip and m.op in ("dev-null", "tmpfs"):
            continue
        if not host_view and m.op in ("ro-bind", "dev-null", "tmpfs") and not _under_any(m.dest, bound) \
                and m.dest not in ("/tmp", "/dev/shm"):
            continue  # hides a host path that an image does not have
        if m.op in ("ro-bind", "bind"):
            mounts.append(_bind(m.src, m.dest, m.op == "ro-bind"))
            if m.op == "bind" and (bundle.runtime == "gvisor" or bundle.runtime == "crun" and not bundle.launched_by_root):
                # Rootless crun 1.8 binds a writable area without the mounts under it (corral's
                # read-only protections and pins, made before the runtime): restate each one.
                # gVisor's kernel sees none of the host's mounts: unless they are its own mount
                # points too, its gofer unlinks or renames over them (a mount point is such only
                # in the namespace that holds it), replacing the policy file or .git/config.
                mounts.extend(_bind(p.dest, p.dest, p.op == "pre-ro-bind") for p in plan.mounts
                              if p.op in ("pre-bind", "pre-ro-bind") and _under_any(p.dest, [m.dest]))
        elif m.op == "dev-null":
            mounts.append(_bind("/dev/null", m.dest, True))
        elif m.op == "dev":
            mounts.extend(dict(d, options=list(d["options"])) for d in DEV_MOUNTS)
        elif m.op == "proc":
            mounts.append({"destination": m.dest, "type": "proc", "source": "proc",
                           "options": ["nosuid", "noexec", "nodev"]})
        elif m.op == "tmpfs":
            mode = m.perms if m.perms is not None else 0o755
            # Owned by the command, as bubblewrap makes them: the private TMPDIR (0700) is its own.
            owner = [f"uid={uid}", f"gid={gid}"] if (uid, gid) != (0, 0) else []
            mounts.append({"destination": m.dest, "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", f"mode={mode:o}", *owner]})
        elif m.op == "data":
            name = f"{bundle.path}/data/{i}"
            files.append((name, m.src.encode(), m.perms if m.perms is not None else 0o644))
            mounts.append(_bind(name, m.dest, True))
        elif m.op == "remount-ro":
            _remount_ro(mounts, m.dest, bundle)
        else:
            raise AssertionError(f"unknown mount op {m.op}")
    namespaces = [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}]
    linux: dict = {}
    if bundle.nested_userns:
        # corral's user namespace maps the launching user to 0; a nested one keeps the
        # command's capabilities away from corral's network namespace. (runsc --rootless
        # refuses one: its sandbox is already a user namespace of its own.)
        namespaces.insert(0, {"type": "user"})
        # (Launched by root, corral's namespace maps every id onto itself: so does this one, and
        # the runtime then knows to bind devices rather than make them.)
        size = 4294967295 if bundle.launched_by_root else 1
        linux["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": size}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": 0, "size": size}]
    if plan.network is None and not plan.offline:
        namespaces.append({"type": "network"})  # no corral namespace to stay in: an empty one
    linux["namespaces"] = namespaces
    linux["maskedPaths"] = list(MASKED)
    linux["readonlyPaths"] = list(READONLY)
    linux["seccomp"] = seccomp_profile(plan.seccomp, bundle.arch, gvisor=bundle.runtime == "gvisor")
    args = list(plan.argv)
    if bundle.init:
        args = [bundle.init, "--", *args]
    config = {
        "ociVersion": OCI_VERSION,
        "process": {
            # With a pty, the runtime makes the command's terminal (its controlling terminal, in a
            # session of its own) and relays it to its stdio, corral's pty; else stdio as given.
            "terminal": bundle.terminal,
            "user": {"uid": uid, "gid": gid, "additionalGids": []},
            "args": args,
            "env": [f"{k}={v}" for k, v in plan.env],
            "cwd": plan.cwd,
            "capabilities": {k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")},
            "noNewPrivileges": True,
        },
        "root": {"path": bundle.rootfs, "readonly": True},
        "mounts": mounts,
        "linux": linux,
    }
    return config, tuple(files)


def identity(plan, bundle: Bundle) -> tuple[int, int]:
    """Who the command is: launched by root, the plan's sandbox uid (never 0 unless the user
    chose `--as-user root`); otherwise 0 in a user namespace that maps it to the launcher."""
    if bundle.launched_by_root:
        return plan.run_as if plan.run_as else (0, 0)
    return 0, 0


def config_json(config: dict) -> bytes:
    return json.dumps(config, indent=1, sort_keys=True).encode()


def _remount_ro(mounts: list, dest: str, bundle: Bundle) -> None:
    """Make the hiding tmpfs at `dest` read-only, with the plan's mounts inside it. Not as a
    bind of `dest` onto itself: a bind's source is the HOST's directory (runtimes read it in
    their own mount namespace, outside the container), which would undo the hiding."""
    for mount in reversed(mounts):
        if mount["destination"] == dest and mount["type"] == "tmpfs":
            mount["options"] = ["ro", *mount["options"]]
            return
    raise AssertionError(f"remount-ro of {dest}: no tmpfs there")


def _bind(src: str, dest: str, ro: bool) -> dict:
    options = ["rbind", "ro" if ro else "rw", "nosuid"]
    if not dest.startswith("/dev/") or src != "/dev/null":
        options.append("nodev")
    return {"destination": dest, "type": "bind", "source": src, "options": options}


def _under_any(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


# -- seccomp -----------------------------------------------------------------------------------------

MASK32 = 0xFFFFFFFF


def seccomp_profile(options, arch: str = "x86_64", gvisor: bool = False) -> dict:
    """corral's deny list (`sandbox/seccomp.rules`) as an OCI seccomp profile: default allow,
    each rule an entry; arguments compared on their low 32 bits (SCMP_CMP_MASKED_EQ), as the
    kernel reads `int` arguments (a 64-bit compare lets `socket(0x100000001, ...)` through)."""
    entries = []
    for rule in rules(options):
        if gvisor and rule.action == "errno:ENOSYS":
            # runsc applies the profile in its own kernel and answers every refusal with EPERM,
            # where libc falls back only on ENOSYS; namespaces made inside gVisor are its own.
            continue
        action, errno_ret = _action(rule.action)
        for args in _alternatives(rule.when):
            entry = {"names": [rule.syscall], "action": action}
            if errno_ret is not None:
                entry["errnoRet"] = errno_ret
            if args:
                entry["args"] = args
            entries.append(entry)
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": [ARCHES.get(arch, "SCMP_ARCH_X86_64")],
            "syscalls": entries}


def _action(action: str) -> tuple[str, int | None]:
    if action == "kill":
        return "SCMP_ACT_KILL_PROCESS", None
    import errno

    return "SCMP_ACT_ERRNO", getattr(errno, action.split(":", 1)[1])


def _alternatives(conds) -> list[list[dict]]:
    """The conditions (all must hold) as alternatives of OCI argument lists (any may match):
    "mask_any" becomes one alternative per bit; "ne" under a mask, every other masked value."""
    alts: list[list[dict]] = [[]]
    for c in conds:
        if c.op == "eq":
            options = [[_masked(c.arg, c.mask, c.value)]]
        elif c.op == "mask_any":
            options = [[_masked(c.arg, bit, bit)] for bit in _bits(c.value)]
        elif c.op == "ne":
            options = [[_masked(c.arg, c.mask, v)] for v in range(c.mask + 1) if v != c.value] \
                if c.mask <= SOCK_TYPE_MASK else None
            if options is None:
                raise ValueError(f"seccomp: cannot render 'ne' under mask {c.mask:#x} as OCI")
        else:
            raise ValueError(f"seccomp: unknown condition {c.op}")
        alts = [a + o for a in alts for o in options]
    # Two conditions on the same argument ("ne" twice): keep the alternatives that agree.
    merged = []
    for alt in alts:
        by_arg: dict[int, dict] = {}
        ok = True
        for arg in alt:
            prev = by_arg.get(arg["index"])
            if prev is not None and prev != arg:
                ok = False
                break
            by_arg[arg["index"]] = arg
        if ok and list(by_arg.values()) not in merged:
            merged.append(list(by_arg.values()))
    return merged


def _masked(index: int, mask: int, value: int) -> dict:
    return {"index": index, "value": mask & MASK32, "valueTwo": value & MASK32, "op": "SCMP_CMP_MASKED_EQ"}


def _bits(value: int) -> list[int]:
    return [1 << i for i in range(32) if value & (1 << i)]


# -- enforcement report ------------------------------------------------------------------------------

def report(name: str, plan, facts, limits=None) -> R.Report:
    gvisor = name == "gvisor"
    root = facts.launched_by_root
    items = R.common_items(plan, limits)
    how = {
        "filesystem view": (R.ENFORCED, "the host's view read-only as the container's root, the plan's mounts in "
                                        "the runtime's mount namespace" + (" (served by gVisor's gofer)" if gvisor else "")),
        "network": (R.ENFORCED, "the container stays in corral's network namespace: loopback and the proxy's "
                                "listeners" + (" (gVisor's host network stack inside it)" if gvisor else "")),
        "capabilities": (R.ENFORCED, "empty sets in config.json"),
        "no_new_privs": (R.ENFORCED, "noNewPrivileges" + (" (gVisor's kernel)" if gvisor else "")),
        "seccomp deny list": (R.ENFORCED, "OCI seccomp profile (libseccomp)") if not gvisor else
        (R.ENFORCED, "applied by gVisor's kernel (--oci-seccomp); every refusal answers EPERM, and clone3 is "
                     "left to gVisor, whose namespaces are its own, not the host's"),
        "user namespace": (R.ENFORCED, f"runs as uid {plan.run_as[0]} in corral's user namespace" if root and plan.run_as
                           else "gVisor's sandbox in corral's user namespace: uid 0 inside, the launching user "
                                "outside, no capabilities" if gvisor
                           else "a nested user namespace: uid 0 inside, the launching user outside, no capabilities"),
        "pid namespace": (R.ENFORCED, "the runtime's" + (", gVisor's kernel" if gvisor else "")),
        "signals": (R.ENFORCED, f"forwarded by the runtime to {facts.init.rsplit('/', 1)[-1]} (pid 1), then the command")
        if facts.init else (R.PARTIAL, "the command is pid 1: signals it does not handle are ignored "
                                       "(fix: apt-get install catatonit)"),
        "tty": (R.NOT_REQUESTED, "no terminal for this run") if gvisor and facts.tty is False else
        (R.PARTIAL, "runsc 20240729 hands the command its terminal intermittently (about 1 run in 10 here sees "
                    "stdin/stdout as no terminal)") if gvisor else
        (R.ENFORCED, "the runtime's own pseudo-terminal (the command's controlling terminal, in a new session), "
                     "relayed to corral's"),
        "kernel": (R.ENFORCED, "gVisor's user-space kernel (runsc): the host kernel is not reachable directly")
        if gvisor else (R.NOT_REQUESTED, "the host kernel, shared (as with bwrap)"),
    }
    out = []
    for item in items:
        if item.field in how:
            state, text = how[item.field]
            item = R.Item(item.field, item.requested, state, text)
        elif item.field.endswith(" limit") and item.state != R.NOT_REQUESTED and gvisor and item.state == R.ENFORCED:
            item = R.Item(item.field, item.requested, R.PARTIAL,
                          item.how + "; on gVisor it applies to the whole sandbox (sentry and gofer)")
        out.append(item)
    if facts.runtime is None:
        out.insert(0, R.Item("runtime", RUNTIMES[name], R.NOT_ENFORCED,
                             f"{RUNTIMES[name]} is not installed (fix: sudo apt-get install {RUNTIMES[name]})"))
    else:
        out.insert(0, R.Item("runtime", RUNTIMES[name], R.ENFORCED, f"{facts.runtime} {facts.runtime_version}".strip()))
    return R.Report(name, tuple(out))
