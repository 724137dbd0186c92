"""`corral proxy`: the egress proxy alone, on a Unix socket or a TCP port."""

from __future__ import annotations

import os
import socket
import sys

from ..errors import CommandLineError as UsageError  # a bad --listen value: exit 2, as every usage error
from ..errors import SetupError


def listener(spec: str) -> socket.socket:
    kind, _, rest = spec.partition(":")
    if kind == "unix" and rest:
        path = os.path.abspath(rest)
        if os.path.lexists(path):
            import stat

            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise SetupError(f"{path} exists and is not a socket", "choose another --listen path")
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # only the owner may connect
        try:
            sock.bind(path)
        finally:
            os.umask(old)
    elif kind == "tcp" and rest:
        from .urls import split_authority

        try:
            host, port = split_authority(rest, default_port=None)
        except ValueError as exc:
            raise UsageError(f"--listen {spec!r}: {exc}") from None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise SetupError(f"cannot listen on {host}:{port}: {exc.strerror}", "pick a free port") from None
    else:
        raise UsageError(f"--listen {spec!r}: expected unix:PATH or tcp:HOST:PORT")
    sock.listen(1024)
    return sock


def serve(spec: str, net, audit_path: str | None, boundary=None) -> int:
    from ..sandbox.netlink import interface_addresses
    from ..policy.network import compile_rules
    from ..sandbox.namespaces import _ips
    from .audit import AuditLog, default_path
    from .server import Proxy

    rules = compile_rules(net)
    sock = listener(spec)
    path = audit_path if audit_path is not None else (default_path() if net.audit_log is None else net.audit_log)
    proxy = Proxy(rules, AuditLog(path or None), host_addresses=list(_ips(interface_addresses())),
                  parent_proxy=net.parent_proxy)
    sys.stderr.write(f"corral proxy: listening on {spec} (HTTP, CONNECT, SOCKS5); "
                     f"{len(rules.allowed)} allowed, {len(rules.denied)} denied entries\n")
    if boundary is not None:
        boundary.configure(proxy)
        proxy.endpoints = {}  # endpoints listen inside a sandbox's namespace only
        for name, value in boundary.env.items():
            if value.startswith("corral-ph-") or "corral-ph-" in value:
                sys.stderr.write(f"corral proxy: credential placeholder: {name}={value}\n")
        for line in boundary.warnings:
            sys.stderr.write(line + "\n")
    return _run(proxy, sock, spec)


def serve_sessions(spec: str, directory: str, audit_path: str | None, ctx, environ: dict, parent_proxy=None) -> int:
    """`corral proxy --sessions DIR`: every client is held to the session its proxy credentials
    name (`sessions.SessionStore`); nothing is allowed outside a session."""
    from ..sandbox.namespaces import _ips
    from ..sandbox.netlink import interface_addresses
    from .audit import AuditLog, default_path
    from .rules import Rules
    from .server import Proxy
    from .sessions import SessionStore

    held: list[str] = []  # the first look's lines, said after the listening line
    store = SessionStore(directory, ctx, environ, write=held.append)
    sock = listener(spec)
    store.refresh()
    path = audit_path if audit_path is not None else default_path(environ)
    proxy = Proxy(Rules(), AuditLog(path or None), host_addresses=list(_ips(interface_addresses())),
                  parent_proxy=parent_proxy)
    proxy.require_credentials = True
    proxy.sessions = store
    names = store.names()
    sys.stderr.write(f"corral proxy: listening on {spec} (HTTP, CONNECT, SOCKS5); sessions from {store.directory}: "
                     f"{len(names)}{' (' + ', '.join(names) + ')' if names else ''}\n")
    for line in held:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()
    from .sessions import _stderr_line

    store.write = _stderr_line
    return _run(proxy, sock, spec)


def _run(proxy, sock, spec: str) -> int:
    import asyncio
    import signal

    async def main():
        loop = asyncio.get_running_loop()
        serving = asyncio.ensure_future(proxy.serve({"any": sock}))
        await asyncio.sleep(0)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, proxy._stopping.set)
        await serving

    try:
        asyncio.run(main())
    finally:
        sock.close()
        if spec.startswith("unix:"):
            try:
                os.unlink(os.path.abspath(spec[5:]))
            except OSError:
                pass
    return 0
