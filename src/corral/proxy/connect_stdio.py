"""ssh ProxyCommand: open a CONNECT tunnel through corral's proxy and join it to stdio.

Runs inside the sandbox (`python3 -S -I connect_stdio.py HOST PORT`), stdlib only.
"""

import base64
import os
import select
import socket
import sys
from urllib.parse import unquote, urlsplit


def main() -> int:
    host, port = sys.argv[1], sys.argv[2]
    proxy = urlsplit(os.environ.get("CORRAL_PROXY") or os.environ.get("HTTPS_PROXY") or "")
    if not proxy.hostname:
        print("corral: no proxy in CORRAL_PROXY/HTTPS_PROXY", file=sys.stderr)
        return 1
    sock = socket.create_connection((proxy.hostname, proxy.port or 3128))
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    if proxy.username:
        creds = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
        head += f"Proxy-Authorization: Basic {base64.b64encode(creds).decode()}\r\n"
    sock.sendall((head + "\r\n").encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    status, _, rest = reply.partition(b"\r\n\r\n")
    if b" 200 " not in status.split(b"\r\n")[0] + b" ":
        print(f"corral: {status.decode(errors='replace').splitlines()[0] if status else 'proxy closed'}", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    if rest:
        out.write(rest)
        out.flush()
    stdin = sys.stdin.buffer.fileno()
    fds = [stdin, sock]
    while fds:
        ready, _, _ = select.select(fds, [], [])
        if stdin in ready:
            data = os.read(stdin, 65536)
            if data:
                sock.sendall(data)
            else:
                sock.shutdown(socket.SHUT_WR)
                fds.remove(stdin)
        if sock in ready:
            data = sock.recv(65536)
            if not data:
                break
            out.write(data)
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
