"""Plan -> Landlock rules, for hosts that refuse user namespaces. Pure: the launcher's edge
(`sandbox/landlockrun.py`) lists directories for `rules()` and makes the system calls.

No namespaces at all: the command runs in the host's mount, pid and network namespaces, as the
launching user, restricted by a Landlock domain (filesystem paths, TCP ports, scopes), corral's
seccomp deny list (plus what Landlock does not cover: UDP, raw and other socket families,
TCP Fast Open), no_new_privs and a new session.

Landlock only *allows*: a right granted on a directory holds for everything beneath it. "The
host minus the denied paths" is therefore spelled as rules on the siblings of each denied path,
on every level down to it (`carve`): a denied ~/.ssh grants /bin, /etc, ..., /home/u/proj,
/home/u/.bashrc, ... one rule each, and never /home/u itself. The same walk takes the protected
paths out of the writable roots. The cost: a directory on the way to a denied or protected
path carries no right of its own, so nothing new can be created directly in it (the workspace
root always holds protected placeholders; `.git` holds its config and hooks).
"""

from __future__ import annotations

import os

from .._values import frozen

# -- the kernel's values (include/uapi/linux/landlock.h) -----------------------------------------
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15  # ABI 2, 3, 5
NET_BIND_TCP, NET_CONNECT_TCP = 1, 2  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1, 2  # ABI 6

MIN_ABI = 4  # corral always restricts TCP (to its proxy, or to nothing): network rules need ABI 4
MAX_ABI = 7  # the highest this renderer knows (7 adds audit flags, no new right)

READ = EXECUTE | READ_FILE | READ_DIR
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # the only rights a file rule may carry
# Never granted: device nodes (MAKE_CHAR, MAKE_BLOCK).
WRITE = WRITE_FILE | TRUNCATE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO | MAKE_SYM | REFER

# The devices a program needs (bwrap's --dev has these): read, write and their ioctls.
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx",
           "/dev/pts")


def handled_fs(abi: int) -> int:
    rights = (1 << 13) - 1  # ABI 1: EXECUTE .. MAKE_SYM
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def attr_size(abi: int) -> int:
    """sizeof(struct landlock_ruleset_attr) as the kernel of that ABI knows it."""
    return 24 if abi >= 6 else 16 if abi >= 4 else 8


@frozen
class PathRule:
    path: str
    access: int  # rights for a directory; a file's rule keeps only FILE_RIGHTS (for_file)
    why: str = ""

    def for_file(self) -> int:
        return self.access & FILE_RIGHTS


@frozen
class Rules:
    """One Landlock domain: what it handles, and what it allows."""

    abi: int
    handled_fs: int
    handled_net: int
    scoped: int
    paths: tuple[PathRule, ...]
    connect_ports: tuple[int, ...]  # TCP connect allowed to these ports (any address: Landlock knows ports only)

    def lines(self) -> list[str]:
        out = [f"# landlock: ABI {self.abi}; handled fs 0x{self.handled_fs:x}, net 0x{self.handled_net:x}, "
               f"scoped 0x{self.scoped:x}; TCP connect to {', '.join(map(str, self.connect_ports)) or 'nothing'}; "
               "TCP bind nothing"]
        for r in self.paths:
            out.append(f"# landlock:   {_rights(r.access)} {r.path}{'  # ' + r.why if r.why else ''}")
        return out


def _rights(access: int) -> str:
    if access & WRITE and access & READ:
        return "rw"
    return "w " if access & WRITE else "r "


class AbiTooOld(Exception):
    pass


def check_abi(abi: int) -> None:
    if abi < MIN_ABI:
        said = "Landlock is not enabled" if abi <= 0 else f"the kernel offers Landlock ABI {abi}"
        raise AbiTooOld(f"the landlock backend needs Landlock ABI {MIN_ABI} (TCP rules, Linux >= 6.7); {said}")


ABI_FIX = ("boot a kernel >= 6.7 with Landlock enabled (CONFIG_SECURITY_LANDLOCK=y, `lsm=...,landlock` on the "
           "kernel command line), or choose --backend bwrap where user namespaces are allowed")


def _under(path: str, root: str) -> bool:
    return root == "/" or path == root or path.startswith(root.rstrip("/") + "/")


def carve(root: str, excluded, listdir) -> list[str]:
    """Paths whose subtrees together cover `root` minus the `excluded` subtrees: `root` itself
    when nothing excluded lies in it, else (recursively) each of its entries. `listdir(path)`
    -> names (OSError: nothing granted there)."""
    inside = [e for e in excluded if _under(e, root)]
    if not inside:
        return [root]
    if root in inside:
        return []
    try:
        names = sorted(listdir(root))
    except OSError:
        return []
    out = []
    for name in names:
        out += carve(os.path.join(root, name), inside, listdir)
    return out


def denied_reads(plan) -> list[str]:
    """The paths the plan hides (bwrap: /dev/null or an empty tmpfs over each)."""
    return sorted({m.dest for m in plan.mounts if m.op == "dev-null" or (
        m.op == "tmpfs" and m.dest not in ("/dev/shm", plan.tmpdir))})


def unwritable(plan) -> list[str]:
    """Paths inside the writable roots that stay read-only: protected files, placeholders,
    deny_write (bwrap: read-only binds)."""
    return sorted({m.dest for m in plan.mounts if m.op in ("pre-ro-bind", "ro-bind") and m.dest != "/"
                   and any(_under(m.dest, r) for r in plan.writable_roots)})


def refusal(plan, root_is_host_root: bool = True) -> str:
    """Why this plan cannot run on Landlock at all ("" when it can). `root_is_host_root`: uid 0
    is the host's root (False: uid 0 of a user namespace a user made, that user on the host)."""
    ws = plan.workspace
    if ws is not None and ws.mode not in ("bind", "ro"):
        return (f"the landlock backend cannot give the workspace mode {ws.mode!r} (it needs a mount namespace); "
                "use workspace = \"bind\" or \"ro\", or --backend bwrap")
    if plan.run_as == (0, 0) and root_is_host_root:
        return ("the landlock backend does not run commands as root (no user namespace to take root's "
                "capabilities away); run from a directory owned by an unprivileged user or pass --as-user USER")
    if plan.idmaps or plan.overlay_layers:
        return ("the landlock backend cannot show the workspace as the sandbox uid's (idmapped mounts need a mount "
                "namespace); run corral as the workspace's owner, or pass --as-user OWNER")
    return ""


def rules(plan, abi: int, ports=(), listdir=None) -> Rules:
    """The Landlock domain of `plan` at `abi` (the kernel's; check_abi first). `ports`: the
    proxy's host loopback ports the command may connect to (none: no network)."""
    abi = min(abi, MAX_ABI)
    listdir = listdir or os.listdir
    denied = denied_reads(plan)
    paths: list[PathRule] = []
    for p in carve("/", [*denied, "/dev"], listdir):
        paths.append(PathRule(p, READ, "host, read-only"))
    for dev in DEVICES:
        paths.append(PathRule(dev, READ | WRITE_FILE | TRUNCATE | IOCTL_DEV, "device"))
    keep = unwritable(plan)
    roots = [r for r in (*plan.writable_roots, plan.tmpdir) if r]
    for root in sorted(set(roots)):
        for p in carve(root, [*keep, *denied], listdir):
            paths.append(PathRule(p, READ | WRITE, "writable" if root != plan.tmpdir else "private TMPDIR"))
    for p in keep:  # readable, when the read walk left them out (a writable root in a denied subtree)
        if not any(_under(p, d) for d in denied):
            paths.append(PathRule(p, READ, "protected: read-only"))
    handled = handled_fs(abi)
    paths = [PathRule(r.path, r.access & handled, r.why) for r in paths]
    return Rules(abi, handled, NET_BIND_TCP | NET_CONNECT_TCP,
                 (SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if abi >= 6 else 0, tuple(paths),
                 tuple(sorted(set(ports))))


# -- what seccomp adds where Landlock has no rule -----------------------------------------------------
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
IPPROTO_TCP = 6
MSG_FASTOPEN = 0x20000000


def extra_seccomp():
    """Rules for the sockets Landlock does not restrict (it knows TCP only): UDP and raw IP
    sockets, every family but Unix, IP and netlink (packet, vsock, bluetooth, ...), SCTP/MPTCP
    over IP, and TCP Fast Open (a connect hidden in sendto/sendmsg)."""
    from ..sandbox.seccomp import Cond, Rule, SOCK_STREAM, SOCK_TYPE_MASK

    eperm = "errno:EPERM"
    out = [Rule("socket", eperm, (Cond(0, "ne", AF_UNIX, "AF_UNIX"), Cond(0, "ne", AF_INET, "AF_INET"),
                                  Cond(0, "ne", AF_INET6, "AF_INET6"), Cond(0, "ne", AF_NETLINK, "AF_NETLINK")),
                "only Unix, IP and netlink sockets (Landlock restricts TCP only)")]
    for fam, name in ((AF_INET, "AF_INET"), (AF_INET6, "AF_INET6")):
        out.append(Rule("socket", eperm, (Cond(0, "eq", fam, name),
                                          Cond(1, "ne", SOCK_STREAM, "SOCK_STREAM", SOCK_TYPE_MASK)),
                        "UDP and raw IP sockets: Landlock does not restrict them"))
        out.append(Rule("socket", eperm, (Cond(0, "eq", fam, name), Cond(2, "ne", 0, "0"),
                                          Cond(2, "ne", IPPROTO_TCP, "IPPROTO_TCP")),
                        "stream protocols other than TCP (SCTP, MPTCP): Landlock does not restrict them"))
    out.append(Rule("sendto", eperm, (Cond(3, "mask_any", MSG_FASTOPEN, "MSG_FASTOPEN"),), "TCP Fast Open"))
    out.append(Rule("sendmsg", eperm, (Cond(2, "mask_any", MSG_FASTOPEN, "MSG_FASTOPEN"),), "TCP Fast Open"))
    out.append(Rule("sendmmsg", eperm, (Cond(3, "mask_any", MSG_FASTOPEN, "MSG_FASTOPEN"),), "TCP Fast Open"))
    return tuple(out)


# -- the proxy on host loopback ports --------------------------------------------------------------------
def on_host_ports(plan, http_port: int, socks_port: int, net_policy):
    """The plan with its proxy variables naming the host loopback ports corral's proxy listens
    on for this run (the landlock backend has no network namespace of its own)."""
    from .._values import replace
    from ..sandbox.netenv import proxy_environment

    if plan.network is None:
        return plan
    net = replace(plan.network, http_port=http_port, socks_port=socks_port)
    old = proxy_environment(plan.network, net_policy)
    new = proxy_environment(net, net_policy)
    env = tuple((k, new[k] if k in new and v == old.get(k) else v) for k, v in plan.env)
    return replace(plan, network=net, env=env)


# -- the enforcement report -----------------------------------------------------------------------------
def report(name: str, plan, facts, limits=None):
    from . import report as R

    abi = facts.landlock_abi
    items = R.common_items(plan, limits)
    hidden = len(denied_reads(plan))
    protected = sum(1 for m in plan.mounts if m.op == "pre-ro-bind")
    writable = ", ".join(plan.writable_roots) or "nothing"
    rows = {
        "filesystem view": R.Item(
            "filesystem view", f"host read-only; writable: {writable}", R.PARTIAL,
            f"Landlock path rules (ABI {abi}), the host's view: no private /tmp, /dev/shm or /proc; "
            "no new file directly in a directory holding a protected path"),
        "read denials": R.Item("read denials", f"{hidden} paths unreadable", R.PARTIAL,
                               "Landlock: contents unreadable, names and sizes still visible"),
        "protected paths": R.Item(
            "protected paths", f"{protected} read-only, new ones quarantined after the run", R.ENFORCED,
            "no Landlock write right on them or on the directories holding them; placeholders; the post-run check"),
        "network": (R.Item("network", "only through corral's proxy", R.PARTIAL,
                           "Landlock TCP rules know ports, not addresses: the proxy's port number on another "
                           "address is reachable; no transparent mode, no DNS") if plan.network is not None else
                    R.Item("network", "none", R.ENFORCED,
                           "Landlock refuses every TCP connect and bind; seccomp refuses UDP, raw and other sockets")),
        "capabilities": R.Item("capabilities", "none", R.ENFORCED,
                               "the command runs as an unprivileged uid (never root on this backend)"),
        "no_new_privs": R.Item("no_new_privs", "yes", R.ENFORCED, "prctl(PR_SET_NO_NEW_PRIVS) before exec"),
        "seccomp deny list": R.Item(
            "seccomp deny list", f"{len(R_rules(plan)) + len(extra_seccomp())} rules", R.ENFORCED,
            "cBPF program installed by corral's child right before exec; plus UDP, raw and other socket "
            "families, TCP Fast Open"),
        "user namespace": R.Item("user namespace", "yes", R.NOT_ENFORCED, "none; new ones refused by seccomp"),
        "pid namespace": R.Item(
            "pid namespace", "yes", R.PARTIAL if abi >= 6 else R.NOT_ENFORCED,
            "host processes visible in /proc; "
            + ("not signalable (Landlock scope) nor traceable" if abi >= 6 else
               f"ABI {abi}: the launching user's processes CAN be signalled (the scope needs ABI 6)")),
        "signals": R.Item("signals", "forwarded to the command", R.ENFORCED, "corral -> the command (its parent)"),
        "tty": R.Item("tty", "a private pseudo-terminal when stdin and stdout are terminals", R.ENFORCED,
                      "corral relays the pty, new session; TIOCSTI refused"),
    }
    items = [rows.get(i.field, i) for i in items]
    unix = "refused by seccomp" if not plan.seccomp.allow_unix_sockets else (
        "allowed by the policy; abstract sockets outside the sandbox unreachable (Landlock scope)" if abi >= 6 else
        f"allowed by the policy; at ABI {abi} abstract sockets of the host are reachable (scope needs ABI 6)")
    items.insert(4, R.Item("unix sockets", "no" if not plan.seccomp.allow_unix_sockets else "allowed",
                           R.ENFORCED if (not plan.seccomp.allow_unix_sockets or abi >= 6) else R.PARTIAL, unix))
    if plan.network is not None and plan.network.transparent:
        items.insert(5, R.Item("transparent networking", "yes", R.NOT_ENFORCED,
                               "direct connections are refused, not proxied (no network namespace)"))
    try:
        check_abi(abi)
    except AbiTooOld as exc:
        items.insert(0, R.Item("landlock", f"ABI >= {MIN_ABI}", R.NOT_ENFORCED, f"{exc} (fix: {ABI_FIX})"))
    else:
        items.insert(0, R.Item("landlock", f"ABI {abi}", R.ENFORCED, "the highest the kernel offers"
                               + ("" if abi <= MAX_ABI else f" (rules of ABI {MAX_ABI})")))
    why = refusal(plan, root_is_host_root=facts.root_is_host_root)
    if why:
        items.insert(0, R.Item("runtime", "landlock", R.NOT_ENFORCED, why))
    return R.Report(name, tuple(items))


def R_rules(plan):  # noqa: N802 - the seccomp table's rows for this plan
    from ..sandbox.seccomp import rules as table

    return table(plan.seccomp)
