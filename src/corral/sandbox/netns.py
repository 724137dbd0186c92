"""The sandbox's network namespace: only loopback, and corral's listeners inside it.

A short-lived child unshares a user + network namespace, brings `lo` up with routes that
send every destination to it, installs nftables rules that redirect all TCP (and DNS) that
is not loopback-to-loopback to corral's transparent listener, and creates the listening
sockets *inside* that namespace. It hands the sockets and namespace handles to corral over
SCM_RIGHTS and exits. corral's proxy accepts on those sockets from the host side, so no
relay process and no host port exist; the sandbox later joins the namespace in a nested user
namespace without capabilities over it (it cannot flush the rules or take `lo` down).

If corral dies, the listeners close with it and the sandbox has no way out at all.
"""

from __future__ import annotations

import os

from ..errors import SetupError

from .libc import CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUSER, enter, load_libc, setns  # noqa: F401 - re-exported
from .libc import kill_and_reap
from .libc import write_file as _write

# `socket` is imported where it is used: sandbox/offline.py uses this module's helpers on the
# path of a run without network, which needs no socket in corral's own process.
MS_REC, MS_PRIVATE = 0x4000, 1 << 18

# Addresses inside the namespace. 198.18.0.0/15 is reserved for benchmarking (RFC 2544), so it
# never collides with real destinations; the resolver hands out synthetic names from it.
SOURCE_ADDRESS = "198.18.0.1"
HTTP_PORT = 3128
SOCKS_PORT = 1080
TRANSPARENT_PORT = 15001
DNS_PORT = 53

NFT_RULES = """\
table inet corral {
  chain to_proxy {
    type nat hook output priority -100; policy accept;
    ip daddr 127.0.0.0/8 return
    ip6 daddr ::1 return
    meta l4proto tcp redirect to :%(transparent)d
    udp dport 53 redirect to :%(dns)d
  }
  chain only_loopback {
    type filter hook output priority 0; policy drop;
    ct state established,related accept
    ip daddr { 127.0.0.0/8, %(source)s } accept
    ip6 daddr ::1 accept
  }
}
"""

NFT_SEARCH = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


class Namespace:
    """Handles to one prepared namespace: keep it open while sandboxes use it. `net_fd` and
    `mnt_fd` are -1 when that namespace was not asked for."""

    def __init__(self, user_fd: int, net_fd: int, listeners: dict[str, socket.socket], mnt_fd: int = -1):
        self.user_fd = user_fd
        self.net_fd = net_fd
        self.mnt_fd = mnt_fd
        self.listeners = listeners

    def close(self) -> None:
        for fd in (self.user_fd, self.net_fd, self.mnt_fd):
            if fd >= 0:
                os.close(fd)
        self.user_fd = self.net_fd = self.mnt_fd = -1
        for sock in self.listeners.values():
            sock.close()
        self.listeners = {}


def find_nft() -> str | None:
    for d in NFT_SEARCH:
        cand = f"{d}/nft"
        if os.access(cand, os.X_OK):
            return cand
    return None


def create(transparent: bool = True, network: bool = True, overlays=()) -> Namespace:
    """Make the namespace and its listeners, or raise SetupError saying why not."""
    return start(transparent, network, overlays).result()


class Pending:
    """A namespace being set up by its helper; `result()` waits for it. Starting early lets
    the helper's work (nftables, sockets) overlap with corral's own plan building."""

    def __init__(self, sock: socket.socket, pid: int):
        self.sock, self.pid = sock, pid
        self._ns: Namespace | None = None

    def result(self) -> Namespace:
        if self._ns is None:
            try:
                self._ns = _receive(self.sock)
            finally:
                self._reap()
        return self._ns

    def _reap(self, kill: bool = False) -> None:
        if self.pid:
            self.sock.close()
            kill_and_reap(self.pid, kill)
            self.pid = 0

    def cancel(self) -> None:
        self._reap(kill=True)


def start(transparent: bool = True, network: bool = True, overlays=(), endpoint_ports=()) -> Pending:
    """Fork the helper and write its id maps; the rest of its work runs in the background.

    `overlays`: (lower, upper, work, target) tuples mounted as overlayfs in a new mount
    namespace that the sandbox then joins (bwrap 0.8 cannot mount overlays itself)."""
    for layer in overlays:
        for path in layer:
            if any(c in path for c in ",:\\") or "\n" in path:
                raise SetupError(f"cannot use {path!r} in an overlay mount (',', ':' or '\\' in the path)",
                                 "use a workspace and XDG_STATE_HOME whose paths avoid those characters")
    nft = find_nft() if (transparent and network) else None
    if transparent and network and nft is None:
        raise SetupError(
            "transparent networking needs nftables (the `nft` command), which is not installed",
            "install it (apt-get install nftables), or set network.transparent = false to "
            "reach the network only through the proxy variables",
        )
    import socket

    load_libc()  # once, before fork: the helper and later sandbox children need it
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            parent_sock.close()
            _child(child_sock, nft, network, tuple(overlays), tuple(endpoint_ports))
            code = 0
        except BaseException as exc:  # report anything, never unwind into corral's code
            try:
                child_sock.send(b"E" + f"{type(exc).__name__}: {exc}".encode(errors="replace")[:900])
            except OSError:
                pass
        finally:
            os._exit(code)
    child_sock.close()
    pending = Pending(parent_sock, pid)
    try:
        _map_ids(parent_sock, pid)
    except BaseException:
        pending._reap()
        raise
    return pending


def _map_ids(sock: socket.socket, pid: int) -> None:
    msg = sock.recv(1024)
    if msg.startswith(b"E") or not msg:
        raise _setup_error(msg[1:].decode(errors="replace") or "the namespace helper died")
    assert msg == b"U", msg
    try:
        write_id_maps(pid)
    except OSError as exc:
        sock.send(b"X")
        raise _setup_error(f"writing the namespace's id maps failed: {exc}") from None
    sock.send(b"M")


def write_id_maps(pid: int) -> None:
    """The id maps of the helper's new user namespace (also sandbox/offline.py's helper)."""
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        # Root maps every id onto itself so that bwrap, inside, may still look up paths
        # owned by other users (capabilities only apply to inodes with mapped owners).
        _write(f"/proc/{pid}/uid_map", "0 0 4294967295\n")
        _write(f"/proc/{pid}/gid_map", "0 0 4294967295\n")
    else:
        # Mapped to 0 inside, so the `nft` we exec keeps its capabilities over the
        # namespace; bwrap is then told the real uid/gid (see Namespace.inner_ids).
        _write(f"/proc/{pid}/setgroups", "deny\n")
        _write(f"/proc/{pid}/uid_map", f"0 {uid} 1\n")
        _write(f"/proc/{pid}/gid_map", f"0 {gid} 1\n")


def _receive(sock: socket.socket) -> Namespace:
    import socket

    msg, fds, _flags, _addr = socket.recv_fds(sock, 1024, 10)
    if not msg.startswith(b"OK"):
        for fd in fds:
            os.close(fd)
        raise _setup_error(msg[1:].decode(errors="replace") or "the namespace helper died")
    for fd in fds:
        os.set_inheritable(fd, False)  # SCM_RIGHTS descriptors arrive without close-on-exec
    # "OK:<namespaces>:<listeners>", descriptors in that order: user first, then the rest.
    _, kinds, names = msg.decode().split(":")
    fds = list(fds)
    handles = {kind: fds.pop(0) for kind in kinds.split(",")}
    listeners = {}
    for name, fd in zip([n for n in names.split(",") if n], fds):
        listeners[name] = socket.socket(fileno=fd)
        listeners[name].setblocking(False)
    return Namespace(handles["user"], handles.get("net", -1), listeners, handles.get("mnt", -1))


def _setup_error(why: str) -> SetupError:
    from .diagnose import userns_problem

    problem = userns_problem()
    fix = problem.fix if problem else "run `corral doctor` to see what the machine refuses"
    return SetupError(f"cannot create the sandbox's namespaces: {why}", fix)



def _child(sock: socket.socket, nft: str | None, network: bool, overlays, endpoint_ports=()) -> None:  # pragma: no cover
    import ctypes
    import socket

    libc = load_libc()
    flags = CLONE_NEWUSER | (CLONE_NEWNET if network else 0) | (CLONE_NEWNS if overlays else 0)
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")
    sock.send(b"U")
    if sock.recv(16) != b"M":
        raise OSError("id maps were not written")
    listeners = []
    if network:
        from . import netlink

        netlink.configure_loopback(SOURCE_ADDRESS)
        if nft:
            _run_nft(nft, NFT_RULES % {"transparent": TRANSPARENT_PORT, "dns": DNS_PORT, "source": SOURCE_ADDRESS})
        listeners = [
            ("http", _listen(socket.AF_INET, "127.0.0.1", HTTP_PORT)),
            ("socks", _listen(socket.AF_INET, "127.0.0.1", SOCKS_PORT)),
        ]
        if nft:
            listeners.append(("transparent", _listen(socket.AF_INET6, "::", TRANSPARENT_PORT)))
            dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            dns.bind(("127.0.0.1", DNS_PORT))
            listeners.append(("dns", dns))
        for port in endpoint_ports:  # base-URL endpoints: plain HTTP to corral, TLS beyond
            listeners.append((f"endpoint{port}", _listen(socket.AF_INET, "127.0.0.1", port)))
    if overlays:
        _mount_overlays(libc, overlays)
    kinds = ["user"] + (["net"] if network else []) + (["mnt"] if overlays else [])
    fds = [os.open(f"/proc/self/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC) for kind in kinds]
    names = ",".join(name for name, _ in listeners)
    socket.send_fds(sock, [f"OK:{','.join(kinds)}:{names}".encode()], [*fds, *(s.fileno() for _, s in listeners)])


def _mount_overlays(libc, overlays) -> None:  # pragma: no cover - child
    import ctypes

    # Our copy of the mount tree must not propagate anything back to the host.
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"making mounts private: {os.strerror(err)}")
    for lower, upper, work, target in overlays:
        # userxattr: whiteouts and opaque markers as user.* xattrs, which a user namespace may
        # write (trusted.* needs the initial namespace's CAP_SYS_ADMIN).
        options = f"lowerdir={lower},upperdir={upper},workdir={work},userxattr".encode()
        if libc.mount(b"overlay", target.encode(), b"overlay", 0, options) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"mounting the overlay on {target}: {os.strerror(err)}")


def _listen(family: int, host: str, port: int) -> socket.socket:
    import socket

    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # one socket for v4 and v6
    s.bind((host, port))
    s.listen(1024)
    return s


def _run_nft(nft: str, rules: str) -> None:  # pragma: no cover - child
    r, w = os.pipe()
    os.write(w, rules.encode())  # small: fits the pipe buffer
    os.close(w)
    err_r, err_w = os.pipe()
    pid = os.posix_spawn(nft, [nft, "-f", "-"], {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                         file_actions=[(os.POSIX_SPAWN_DUP2, r, 0), (os.POSIX_SPAWN_DUP2, err_w, 2),
                                       (os.POSIX_SPAWN_DUP2, err_w, 1)])
    os.close(r)
    os.close(err_w)
    out = b""
    while chunk := os.read(err_r, 4096):
        out += chunk
    os.close(err_r)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise OSError(f"nft failed to install the redirect rules: {out.decode(errors='replace').strip()}")
