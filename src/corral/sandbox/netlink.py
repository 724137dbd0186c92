"""Just enough rtnetlink to set up a loopback-only namespace and list the host's addresses.

Spawning `ip` three times would cost more than the whole namespace setup; these are four
fixed-format messages (see rtnetlink(7)).
"""

from __future__ import annotations

import socket
import struct

RTM_NEWLINK, RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE = 16, 20, 22, 24
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 0x1, 0x4, 0x200, 0x400, 0x300
IFF_UP = 0x1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_OIF, RTA_PREFSRC = 4, 7
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
LOOPBACK_INDEX = 1  # `lo` is always the first interface of a new namespace


def _attr(kind: int, payload: bytes) -> bytes:
    data = struct.pack("HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


class _Netlink:
    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.seq = 0

    def request(self, kind: int, body: bytes, flags: int = NLM_F_CREATE | NLM_F_EXCL) -> None:
        self.seq += 1
        header = struct.pack("IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, self.seq, 0)
        self.sock.send(header + body)
        reply = self.sock.recv(65536)
        length, rtype, _, _, _ = struct.unpack_from("IHHII", reply)
        if rtype == NLMSG_ERROR:
            err, = struct.unpack_from("i", reply, 16)
            if err:
                import os

                raise OSError(-err, f"rtnetlink message {kind}: {os.strerror(-err)}")

    def close(self) -> None:
        self.sock.close()


def loopback_up() -> None:
    """`lo` up, nothing else: a namespace where only loopback is reachable (one message)."""
    nl = _Netlink()
    try:
        nl.request(RTM_NEWLINK, struct.pack("BxHiII", socket.AF_UNSPEC, 0, LOOPBACK_INDEX, IFF_UP, IFF_UP), flags=0)
    finally:
        nl.close()


def configure_loopback(source_v4: str) -> None:
    """`lo` up, a global /32 for IPv4 (a source address for non-loopback destinations), and
    default routes over `lo` for IPv4 and IPv6, so every connect() reaches the redirect."""
    nl = _Netlink()
    try:
        nl.request(RTM_NEWLINK, struct.pack("BxHiII", socket.AF_UNSPEC, 0, LOOPBACK_INDEX, IFF_UP, IFF_UP), flags=0)
        addr = socket.inet_aton(source_v4)
        nl.request(RTM_NEWADDR, struct.pack("BBBBi", socket.AF_INET, 32, 0, RT_SCOPE_UNIVERSE, LOOPBACK_INDEX)
                   + _attr(IFA_LOCAL, addr) + _attr(IFA_ADDRESS, addr))
        oif = _attr(RTA_OIF, struct.pack("i", LOOPBACK_INDEX))
        nl.request(RTM_NEWROUTE, struct.pack("BBBBBBBBI", socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT,
                                             RT_SCOPE_LINK, RTN_UNICAST, 0) + oif + _attr(RTA_PREFSRC, addr))
        nl.request(RTM_NEWROUTE, struct.pack("BBBBBBBBI", socket.AF_INET6, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT,
                                             RT_SCOPE_UNIVERSE, RTN_UNICAST, 0) + oif)
    finally:
        nl.close()


def interface_addresses() -> list[str]:
    """Every address configured on the host's interfaces (for the "this host" SSRF check)."""
    nl = _Netlink()
    out: list[str] = []
    try:
        nl.seq += 1
        body = struct.pack("BBBBi", socket.AF_UNSPEC, 0, 0, 0, 0)
        nl.sock.send(struct.pack("IHHII", 16 + len(body), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, nl.seq, 0) + body)
        done = False
        while not done:
            data = nl.sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, rtype, _, _, _ = struct.unpack_from("IHHII", data, off)
                if length < 16:
                    done = True
                    break
                if rtype in (NLMSG_DONE, NLMSG_ERROR):
                    done = True
                    break
                if rtype == RTM_NEWADDR:
                    family = data[off + 16]
                    a = off + 24
                    while a + 4 <= off + length:
                        alen, atype = struct.unpack_from("HH", data, a)
                        if alen < 4:
                            break
                        if atype in (IFA_ADDRESS, IFA_LOCAL):
                            raw = data[a + 4:a + alen]
                            if family == socket.AF_INET and len(raw) == 4:
                                out.append(socket.inet_ntop(socket.AF_INET, raw))
                            elif family == socket.AF_INET6 and len(raw) == 16:
                                out.append(socket.inet_ntop(socket.AF_INET6, raw))
                        a += (alen + 3) & ~3
                off += (length + 3) & ~3
    finally:
        nl.close()
    return sorted(set(out))
