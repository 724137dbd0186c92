"""No network, said at once: the responder of a run without any allowed domain.

A run without network lives in a namespace with only `lo`, made by corral's namespace helper
(`sandbox/netns.py`, `offline=True`: no nftables, no routes, one rtnetlink message). The helper
then stays, as this module's responder: one process, one select loop, no asyncio. It answers

* DNS on 127.0.0.1:53 (the sandbox's resolv.conf): NXDOMAIN for every name, so getaddrinfo
  says "not found" (EAI_NONAME) at once, and clients do not retry as they do on the
  "temporary failure" (EAI_AGAIN) of an unreachable resolver;
* HTTP on 127.0.0.1:3128 (HTTP_PROXY and HTTPS_PROXY inside): `403 Forbidden` to every request
  and CONNECT, with a body saying that the run has no network, so npm, apt, git and curl stop
  at the first answer;

and records each name asked for, which corral prints in one line after the run. Nothing is
ever forwarded: the namespace has no route but loopback (a connection to any other address
fails with ENETUNREACH at once), and if the responder dies, the sandbox still has no way out.

The decisions (what a packet or a request head asks for, the environment, the end line) are
pure functions below; `serve` is the only I/O.
"""

from __future__ import annotations

from .offline_env import (  # noqa: F401 - re-exported: the responder's view of the sandbox
    DNS_PORT, HTTP_PORT, LAUNCHER_PROXY_VARS, NO_RETRY_ENV, environment, nsswitch_conf, resolv_conf)

import os

MAX_NAMES = 1000  # distinct names kept; more are counted
MAX_CONNECTIONS = 64  # open HTTP connections at once; the oldest is dropped past that
MAX_HEAD = 16384  # bytes of a request head read before answering anyway
IDLE_SECONDS = 30.0
SHOWN_NAMES = 8  # names printed in the end line; the rest are counted

_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")
BODY = b"corral: network access is not allowed for this run (no allowed domains); allow it with --allow-domain\n"


def host_name(raw: str) -> str | None:
    """A name worth recording (lowercase, no trailing dot, no leading `_service._proto.`
    labels), or None for what cannot be a host (`in-addr.arpa` questions, odd characters)."""
    name = raw.strip().lower().rstrip(".")
    while name.startswith("_") and "." in name:
        name = name.split(".", 1)[1]
    if not name or name.endswith((".in-addr.arpa", ".ip6.arpa")) or name == "localhost":
        return None
    if name.startswith("[") and name.endswith("]") and 4 <= len(name) <= 47:
        return name if set(name[1:-1]) <= frozenset("0123456789abcdef:.") else None
    return name if len(name) <= 253 and set(name) <= _HOST_CHARS and name[0] not in ".-" else None


def request_host(head: bytes) -> str | None:
    """The host a proxy request head asks for: `CONNECT host:port`, or an absolute URI's host
    (else the Host header). The port is kept when it is not 80 or 443."""
    line, _, rest = head.partition(b"\n")
    parts = line.decode("latin-1").strip().split()
    if len(parts) < 2:
        return None
    method, target = parts[0].upper(), parts[1]
    if method != "CONNECT":
        if "://" in target:
            target = target.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
        else:
            target = ""
            for header in rest.decode("latin-1").splitlines():
                key, _, value = header.partition(":")
                if key.strip().lower() == "host":
                    target = value.strip()
                    break
    host, port = target, ""
    if target.startswith("["):
        host, _, after = target.partition("]")
        host += "]"
        port = after[1:] if after.startswith(":") else ""
    elif target.count(":") == 1:
        host, port = target.split(":")
    name = host_name(host)
    if name is None:
        return None
    return name if port in ("", "80", "443") else f"{name}:{port}"


def forbidden(host: str | None) -> bytes:
    body = BODY if host is None else BODY.replace(b"--allow-domain", b"--allow-domain " + host.split(":")[0].encode())
    return (b"HTTP/1.1 403 Forbidden (corral: no network for this run)\r\nContent-Type: text/plain\r\n"
            b"X-Corral-Decision: no-network\r\nConnection: close\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


def dns_reply(packet: bytes) -> tuple[bytes | None, str | None]:
    """(reply, name asked for) for one UDP packet: NXDOMAIN for every question."""
    from ..proxy import dns

    try:
        query = dns.parse_query(packet)
    except dns.DnsError as exc:
        return dns.error_reply(packet, exc.rcode), None
    return dns.nxdomain(query), (host_name(query.qname) if query.qtype != dns.TYPE_PTR else None)


class Refused:
    """The distinct names refused, in first-seen order, bounded."""

    def __init__(self, limit: int = MAX_NAMES):
        self.names: dict[str, None] = {}
        self.extra = 0
        self.limit = limit

    def add(self, name: str | None) -> None:
        if not name or name in self.names:
            return
        if len(self.names) < self.limit:
            self.names[name] = None
        else:
            self.extra += 1

    def encode(self) -> bytes:
        return ("\n".join([str(self.extra), *self.names])).encode()


def decode(data: bytes) -> tuple[list[str], int]:
    first, *names = data.decode(errors="replace").split("\n")
    try:
        extra = int(first)
    except ValueError:
        extra = 0
    return [n for n in names if n], extra


def summary(names: list[str], extra: int = 0, presets=None) -> str:
    """The end-of-run line, or "" when nothing was refused. `presets(name) -> [preset, ...]`
    names the presets that would allow a name (when `--allow-preset` exists)."""
    if not names:
        return ""
    from ..display import shown

    more = len(names) - SHOWN_NAMES + extra
    listed = ", ".join(shown(n, 80) for n in names[:SHOWN_NAMES]) + (f" and {more} more" if more > 0 else "")
    hint = "allow with --allow-domain NAME"
    found: dict[str, None] = {}
    if presets is not None:
        for n in names:
            found.update(dict.fromkeys(presets(n.split(":")[0])))
    if found:
        hint += ", or " + " ".join(f"--allow-preset {p}" for p in found)
    return f"corral: no network for this run: refused {listed} ({hint})"


def preset_finder():
    """`presets.covering`, when the presets table exists in this installation."""
    try:
        from ..policy import presets
    except ImportError:
        return None
    return getattr(presets, "covering", None)


# --- the helper: namespace, then responder ---------------------------------------------------
#
# Pipes, not a socket pair: corral's own process then needs neither `socket` nor SCM_RIGHTS (it
# opens /proc/PID/ns/* of the helper, which stays alive). libc (ctypes) is loaded before the fork,
# as corral needs it anyway to join the namespaces; the helper itself imports only built-in
# modules (`_socket`, `_signal`, `select`), so that it costs the plan building next to it little.


class Namespace:
    """The offline namespace, as `netns.Namespace` (what `libc.enter` joins), plus its responder."""

    def __init__(self, user_fd: int, net_fd: int, mnt_fd: int, responder: Responder):
        self.user_fd, self.net_fd, self.mnt_fd = user_fd, net_fd, mnt_fd
        self.listeners: dict = {}
        self.responder: Responder | None = responder

    def close(self) -> None:
        for fd in (self.user_fd, self.net_fd, self.mnt_fd):
            if fd >= 0:
                os.close(fd)
        self.user_fd = self.net_fd = self.mnt_fd = -1
        if self.responder is not None:
            self.responder.close()
            self.responder = None


class Responder:
    """corral's end of the responder: ask for the names refused so far; stop it."""

    def __init__(self, pid: int, ctl_w: int, reply_r: int):
        self.pid, self.ctl_w, self.reply_r = pid, ctl_w, reply_r

    def refused(self) -> tuple[list[str], int]:
        """The names refused so far, and how many more were not kept; ([], 0) if it is gone."""
        import select

        try:
            os.write(self.ctl_w, b"S")
            data = b""
            poller = select.poll()
            poller.register(self.reply_r, select.POLLIN)
            while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
                if not poller.poll(5000):
                    return [], 0
                chunk = os.read(self.reply_r, 65536)
                if not chunk:
                    return [], 0
                data += chunk
        except OSError:
            return [], 0
        return decode(data[4:])

    def close(self) -> None:
        if self.pid:
            os.close(self.ctl_w)  # the responder's cue to exit
            os.close(self.reply_r)
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0


class Pending:
    """The helper, forked; `result()` finishes its setup (id maps) and returns the namespace."""

    def __init__(self, pid: int, ready_r: int, maps_w: int, ctl_w: int, reply_r: int, mount: bool,
                 userns: bool, parent_maps: bool):
        self.pid, self.ready_r, self.maps_w, self.ctl_w, self.reply_r = pid, ready_r, maps_w, ctl_w, reply_r
        self.mount, self.userns, self.parent_maps = mount, userns, parent_maps
        self._ns: Namespace | None = None

    def result(self) -> Namespace:
        if self._ns is not None:
            return self._ns
        from . import netns

        try:
            if self.parent_maps:
                msg = _read_msg(self.ready_r)
                if msg != b"U":
                    raise netns._setup_error(msg[1:].decode(errors="replace") or "the namespace helper died")
                try:
                    netns.write_id_maps(self.pid)
                except OSError as exc:
                    raise netns._setup_error(f"writing the namespace's id maps failed: {exc}") from None
                os.write(self.maps_w, b"M")
            msg = _read_msg(self.ready_r)
            if msg != b"OK":
                raise netns._setup_error(msg[1:].decode(errors="replace") or "the namespace helper died")
            fds = {kind: os.open(f"/proc/{self.pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
                   for kind in (*(("user",) if self.userns else ()), "net", *(("mnt",) if self.mount else ()))}
        except BaseException:
            self.cancel()
            raise
        os.close(self.ready_r)
        os.close(self.maps_w)
        self._ns = Namespace(fds.get("user", -1), fds["net"], fds.get("mnt", -1),
                             Responder(self.pid, self.ctl_w, self.reply_r))
        self.pid = 0
        return self._ns

    def cancel(self) -> None:
        if self.pid:
            from .libc import kill_and_reap

            for fd in (self.ready_r, self.maps_w, self.ctl_w, self.reply_r):
                os.close(fd)
            kill_and_reap(self.pid)
            self.pid = 0


def _read_msg(fd: int) -> bytes:
    """One message of the helper: a length byte, then the text (an `E` message says why)."""
    head = os.read(fd, 1)
    if not head:
        return b""
    want, data = head[0], b""
    while len(data) < want:
        chunk = os.read(fd, want - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _send_msg(fd: int, msg: bytes) -> None:
    msg = msg[:255]
    os.write(fd, bytes((len(msg),)) + msg)


def start(overlays=()) -> Pending:
    """Fork the helper; it unshares a network namespace (+ mount, for `overlays`, see
    `netns.start`). Launched by root: no user namespace of its own (bwrap makes the sandbox's),
    unless overlays need one, whose id maps `Pending.result()` then writes. Launched by a user:
    a user namespace mapping that user to 0, as `netns` does, written by the helper itself."""
    root = os.geteuid() == 0
    userns = not root or bool(overlays)
    parent_maps = root and userns
    from .libc import load_libc

    load_libc()
    ready_r, ready_w = os.pipe()
    maps_r, maps_w = os.pipe()
    ctl_r, ctl_w = os.pipe()
    reply_r, reply_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the helper
        code = 1
        try:
            for fd in (ready_r, maps_w, ctl_w, reply_r):
                os.close(fd)
            _keep_only({2, ready_w, maps_r, ctl_r, reply_w})
            _helper(ready_w, maps_r, ctl_r, reply_w, tuple(overlays), userns, parent_maps)
            code = 0
        except BaseException as exc:  # report anything, never unwind into corral's code
            try:
                _send_msg(ready_w, b"E" + f"{type(exc).__name__}: {exc}".encode(errors="replace"))
            except OSError:
                pass
        finally:
            os._exit(code)
    for fd in (ready_w, maps_r, ctl_r, reply_w):
        os.close(fd)
    return Pending(pid, ready_r, maps_w, ctl_w, reply_r, bool(overlays), userns, parent_maps)


def _keep_only(keep: set[int]) -> None:  # pragma: no cover - helper
    """The helper outlives corral's moment of forking: it keeps nothing of corral's (a lock, a
    pipe someone waits on), and reads and writes no terminal."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep and fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)


def _helper(ready_w: int, maps_r: int, ctl_r: int, reply_w: int, overlays, userns: bool,
            parent_maps: bool) -> None:  # pragma: no cover
    import _signal
    import _socket as socket

    from .libc import CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUSER, load_libc, set_name

    for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT):
        _signal.signal(sig, _signal.SIG_IGN)  # corral decides when the responder stops
    set_name("corral-offline")
    libc = load_libc()
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare((CLONE_NEWUSER if userns else 0) | CLONE_NEWNET | (CLONE_NEWNS if overlays else 0)) != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")
    if parent_maps:
        _send_msg(ready_w, b"U")
        if os.read(maps_r, 1) != b"M":
            raise OSError("id maps were not written")
    elif userns:  # one id, our own: a process may map itself (no round trip to corral)
        from .libc import write_file

        write_file("/proc/self/setgroups", "deny\n")
        write_file("/proc/self/uid_map", f"0 {uid} 1\n")
        write_file("/proc/self/gid_map", f"0 {gid} 1\n")
    os.close(maps_r)
    if overlays:
        from .netns import _mount_overlays

        _mount_overlays(libc, overlays)
    _loopback_up(socket)  # no address, no route: any other destination is unreachable at once
    dns_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns_sock.bind(("127.0.0.1", DNS_PORT))
    http_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    http_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    http_sock.bind(("127.0.0.1", HTTP_PORT))
    http_sock.listen(128)
    if not userns:
        # Root in the initial namespaces: the sockets are bound, nothing more needs privilege.
        # Parse what the sandbox sends as nobody (corral, root, may still open /proc/PID/ns).
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
    _send_msg(ready_w, b"OK")
    os.close(ready_w)
    serve(ctl_r, reply_w, dns_sock, http_sock)


def _loopback_up(socket) -> None:  # pragma: no cover - helper
    """`lo` up: one rtnetlink message (RTM_NEWLINK, IFF_UP on index 1), as `netlink.py` does."""
    import struct

    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        body = struct.pack("BxHiII", socket.AF_UNSPEC, 0, 1, 1, 1)
        nl.send(struct.pack("IHHII", 16 + len(body), 16, 0x1 | 0x4, 1, 0) + body)
        reply = nl.recv(65536)
        if struct.unpack_from("H", reply, 4)[0] == 2:  # NLMSG_ERROR: 0 is the acknowledgement
            err, = struct.unpack_from("i", reply, 16)
            if err:
                raise OSError(-err, f"bringing lo up: {os.strerror(-err)}")
    finally:
        nl.close()


def serve(ctl_r: int, reply_w: int, dns_sock, http_sock) -> None:  # pragma: no cover - the helper
    """Answer until corral closes `ctl_r`. A byte `S` from corral is answered on `reply_w` with
    the names refused so far (4-byte length, then `Refused.encode`)."""
    import select
    import time

    refused = Refused()
    conns: dict[int, list] = {}  # fd -> [socket, head so far, last activity]
    dns_sock.setblocking(False)
    http_sock.setblocking(False)
    poller = select.poll()
    for fd in (ctl_r, dns_sock.fileno(), http_sock.fileno()):
        poller.register(fd, select.POLLIN)

    def drop(fd: int) -> None:
        conn = conns.pop(fd)
        poller.unregister(fd)
        conn[0].close()

    def answer(fd: int) -> None:
        sock, head, _ = conns[fd]
        host = request_host(bytes(head))
        refused.add(host)
        try:
            sock.settimeout(1.0)
            sock.sendall(forbidden(host))
        except OSError:
            pass
        drop(fd)

    def pump_dns() -> None:
        while True:
            try:
                packet, peer = dns_sock.recvfrom(4096)
            except OSError:  # BlockingIOError: nothing more queued
                return
            reply, name = dns_reply(packet)
            refused.add(name)
            if reply is not None:
                try:
                    dns_sock.sendto(reply, peer)
                except OSError:
                    pass

    def pump_accept() -> None:
        while True:
            try:
                fd, _ = http_sock._accept()
            except OSError:
                return
            sock = type(http_sock)(fileno=fd)
            if len(conns) >= MAX_CONNECTIONS:
                drop(min(conns, key=lambda fd: conns[fd][2]))
            sock.setblocking(False)
            conns[sock.fileno()] = [sock, bytearray(), time.monotonic()]
            poller.register(sock.fileno(), select.POLLIN)

    def pump_conn(fd: int) -> None:
        conn = conns.get(fd)
        if conn is None:
            return
        try:
            data = conn[0].recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if conn[1]:
                answer(fd)  # a head cut short still names its host
            else:
                drop(fd)
            return
        conn[1] += data
        conn[2] = time.monotonic()
        if b"\r\n\r\n" in conn[1] or b"\n\n" in conn[1] or len(conn[1]) >= MAX_HEAD:
            answer(fd)

    while True:
        try:
            events = poller.poll(5000)
        except InterruptedError:
            continue
        for fd, _ in events:
            if fd == ctl_r:
                try:
                    msg = os.read(ctl_r, 16)
                except OSError:
                    msg = b""
                if not msg:
                    return
                # What the command sent before it ended is queued: count it first.
                pump_dns()
                pump_accept()
                for cfd in list(conns):
                    pump_conn(cfd)
                data = refused.encode()[:60000]
                try:
                    os.write(reply_w, len(data).to_bytes(4, "big") + data)
                except OSError:
                    return
            elif fd == dns_sock.fileno():
                pump_dns()
            elif fd == http_sock.fileno():
                pump_accept()
            else:
                pump_conn(fd)
        now = time.monotonic()
        for fd in [fd for fd, c in conns.items() if now - c[2] > IDLE_SECONDS]:
            drop(fd)
