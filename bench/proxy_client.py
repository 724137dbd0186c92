#!/usr/bin/env python3
"""In-sandbox client for bench/proxy (stdlib only, raw sockets).

    proxy_client.py MODE PORT [--direct]

Runs inside a sandbox and reaches the host's benchmark server on
127.0.0.1:PORT through the sandbox's egress proxy, which it finds in the
environment:

  HTTP proxy   HTTP_PROXY / http_proxy       http://[user:pass@]host:port
  SOCKS5       ALL_PROXY / all_proxy if its scheme is socks5/socks5h,
               else FTP_PROXY / ftp_proxy (srt 0.0.83 puts its SOCKS URL
               there; its ALL_PROXY is the HTTP proxy)

NO_PROXY is deliberately ignored: the target is loopback, and both tools
list loopback in NO_PROXY (srt does), so honouring it would dial the
sandbox's own empty loopback.

Modes:
  connect    CONNECT 127.0.0.1:PORT, then GET /big inside the tunnel
  http       absolute-form GET http://127.0.0.1:PORT/big through the proxy
  socks      SOCKS5 CONNECT 127.0.0.1:PORT, then GET /big
  keepalive  200 sequential GET /small on one proxy connection (absolute-form)
  newconn    50 sequential new proxy connections, one GET /small each
             (Connection: close)

--direct talks to 127.0.0.1:PORT without any proxy (host-side reference).

Prints one JSON line. Timing starts after imports and environment parsing,
so sandbox start-up is excluded. Exit status 0 on success, 1 on failure
(the JSON line then has "ok": false and "error").
"""

import base64
import json
import os
import socket
import sys
import time
from urllib.parse import unquote, urlsplit

BUF = 1 << 20  # 1 MiB receive buffer
TARGET_HOST = "127.0.0.1"
KEEPALIVE_REQUESTS = 200
NEWCONN_REQUESTS = 50
TIMEOUT = 120.0


class Fail(Exception):
    pass


def proxy_from_env(names, schemes):
    for name in names:
        val = os.environ.get(name) or os.environ.get(name.lower())
        if not val:
            continue
        u = urlsplit(val if "://" in val else "http://" + val)
        if u.scheme.lower() not in schemes:
            continue
        user = unquote(u.username) if u.username is not None else None
        pw = unquote(u.password) if u.password is not None else None
        return {"var": name, "scheme": u.scheme.lower(), "host": u.hostname,
                "port": u.port or (1080 if u.scheme.startswith("socks") else 80),
                "user": user, "password": pw}
    return None


def dial(host, port):
    s = socket.create_connection((host, port), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Conn:
    """A socket with a small read-ahead buffer for header parsing."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray(BUF)
        self.view = memoryview(self.buf)
        self.pending = b""

    def send(self, data):
        self.sock.sendall(data)

    def read_head(self):
        """Read up to and including CRLFCRLF; return (status, headers dict)."""
        data = self.pending
        while b"\r\n\r\n" not in data:
            n = self.sock.recv_into(self.buf, 65536)
            if n == 0:
                raise Fail("connection closed while reading a response head "
                           "(got %r)" % bytes(data[:200]))
            data += self.buf[:n]
            if len(data) > 65536:
                raise Fail("response head too long")
        head, _, rest = data.partition(b"\r\n\r\n")
        self.pending = rest
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            raise Fail("bad status line %r" % lines[0])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers, lines[0]

    def read_body(self, length):
        """Read exactly `length` bytes (discarding them); return the count."""
        got = min(len(self.pending), length)
        self.pending = self.pending[got:]
        recv_into = self.sock.recv_into
        view = self.view
        while got < length:
            n = recv_into(view, min(BUF, length - got))
            if n == 0:
                break
            got += n
        return got

    def read_line(self):
        while b"\r\n" not in self.pending:
            n = self.sock.recv_into(self.view, 65536)
            if n == 0:
                raise Fail("connection closed inside a chunked body")
            self.pending += self.buf[:n]
        line, _, self.pending = self.pending.partition(b"\r\n")
        return bytes(line)

    def read_chunked(self):
        got = 0
        while True:
            size = int(self.read_line().split(b";")[0].strip(), 16)
            if size == 0:
                while self.read_line():  # trailers, then the empty line
                    pass
                return got
            if self.read_body(size) != size:
                raise Fail("connection closed inside a chunk")
            got += size
            if self.read_line():
                raise Fail("no CRLF after a chunk")

    def read_to_eof(self):
        got = len(self.pending)
        self.pending = b""
        while True:
            n = self.sock.recv_into(self.view, BUF)
            if n == 0:
                return got
            got += n

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def basic(px):
    if px and px["user"] is not None:
        tok = base64.b64encode(("%s:%s" % (px["user"], px["password"] or ""))
                               .encode()).decode()
        return "Proxy-Authorization: Basic %s\r\n" % tok
    return ""


def get_response(c, what, allow_close=False):
    status, headers, line = c.read_head()
    if status != 200:
        raise Fail("%s: %s %r %r" % (what, line, headers, bytes(c.pending[:300])))
    if "content-length" in headers:
        want = int(headers["content-length"])
        got = c.read_body(want)
        if got != want:
            raise Fail("%s: got %d of %d body bytes" % (what, got, want))
        return got
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return c.read_chunked()
    if allow_close:
        return c.read_to_eof()
    raise Fail("%s: no Content-Length (%r)" % (what, headers))


def open_tunnel_http(px, port):
    s = dial(px["host"], px["port"])
    c = Conn(s)
    c.send(("CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n"
            % (TARGET_HOST, port, TARGET_HOST, port, basic(px))).encode())
    status, _, line = c.read_head()
    if status != 200:
        raise Fail("CONNECT refused: %s %r" % (line, bytes(c.pending[:300])))
    if c.pending:
        raise Fail("unexpected bytes after the CONNECT reply")
    return c


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise Fail("SOCKS: connection closed (after %r)" % data)
        data += chunk
    return data


def open_tunnel_socks(px, port):
    s = dial(px["host"], px["port"])
    creds = px["user"] is not None
    s.sendall(b"\x05\x01" + (b"\x02" if creds else b"\x00"))
    ver, method = recv_exact(s, 2)
    if ver != 5 or method == 0xFF:
        raise Fail("SOCKS: no acceptable auth method (ver %d method %d)"
                   % (ver, method))
    if method == 2:
        u = (px["user"] or "").encode()
        p = (px["password"] or "").encode()
        if len(u) > 255 or len(p) > 255:
            raise Fail("SOCKS: username/password longer than 255 bytes")
        s.sendall(b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p)
        aver, astatus = recv_exact(s, 2)
        if astatus != 0:
            raise Fail("SOCKS: authentication failed (status %d)" % astatus)
    elif method != 0:
        raise Fail("SOCKS: server chose unsupported method %d" % method)
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(TARGET_HOST)
              + port.to_bytes(2, "big"))
    ver, rep, _, atyp = recv_exact(s, 4)
    if rep != 0:
        raise Fail("SOCKS: CONNECT refused, reply %d" % rep)
    if atyp == 1:
        recv_exact(s, 4 + 2)
    elif atyp == 4:
        recv_exact(s, 16 + 2)
    elif atyp == 3:
        recv_exact(s, recv_exact(s, 1)[0] + 2)
    else:
        raise Fail("SOCKS: bad ATYP %d in reply" % atyp)
    return Conn(s)


def origin_get(path, port, close=False):
    return ("GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n"
            % (path, TARGET_HOST, port,
               "Connection: close\r\n" if close else "")).encode()


def proxy_get(px, path, port, close=False):
    return ("GET http://%s:%d%s HTTP/1.1\r\nHost: %s:%d\r\n%s%s\r\n"
            % (TARGET_HOST, port, path, TARGET_HOST, port, basic(px),
               "Connection: close\r\n" if close else "")).encode()


def run(mode, port, direct):
    hp = None if direct else proxy_from_env(["HTTP_PROXY"], ("http",))
    sp = None if direct else proxy_from_env(
        ["ALL_PROXY", "FTP_PROXY"], ("socks5", "socks5h"))
    out = {"mode": mode, "direct": direct}
    if mode in ("connect", "http", "keepalive", "newconn") and not direct:
        if not hp:
            raise Fail("no HTTP proxy in HTTP_PROXY/http_proxy")
        out["proxy"] = "%s://%s:%d (%s)" % (hp["scheme"], hp["host"],
                                            hp["port"], hp["var"])
    if mode == "socks" and not direct:
        if not sp:
            raise Fail("no SOCKS5 proxy in ALL_PROXY/FTP_PROXY")
        out["proxy"] = "%s://%s:%d (%s)" % (sp["scheme"], sp["host"],
                                            sp["port"], sp["var"])

    def origin():
        return Conn(dial(TARGET_HOST, port))

    t0 = time.perf_counter()
    if mode in ("connect", "http", "socks"):
        if direct:
            c, req = origin(), origin_get("/big", port)
        elif mode == "connect":
            c, req = open_tunnel_http(hp, port), origin_get("/big", port)
        elif mode == "socks":
            c, req = open_tunnel_socks(sp, port), origin_get("/big", port)
        else:
            c = Conn(dial(hp["host"], hp["port"]))
            req = proxy_get(hp, "/big", port)
        c.send(req)
        n = get_response(c, "GET /big")
        elapsed = time.perf_counter() - t0
        c.close()
        out.update(bytes=n, elapsed_s=elapsed,
                   mib_s=n / (1 << 20) / elapsed)
    elif mode == "keepalive":
        c = origin() if direct else Conn(dial(hp["host"], hp["port"]))
        total = 0
        for i in range(KEEPALIVE_REQUESTS):
            c.send(origin_get("/small", port) if direct
                   else proxy_get(hp, "/small", port))
            total += get_response(c, "GET /small #%d" % (i + 1))
        elapsed = time.perf_counter() - t0
        c.close()
        out.update(requests=KEEPALIVE_REQUESTS, bytes=total,
                   elapsed_s=elapsed, req_s=KEEPALIVE_REQUESTS / elapsed)
    elif mode == "newconn":
        total = 0
        for i in range(NEWCONN_REQUESTS):
            if direct:
                c = origin()
                c.send(origin_get("/small", port, close=True))
            else:
                c = Conn(dial(hp["host"], hp["port"]))
                c.send(proxy_get(hp, "/small", port, close=True))
            total += get_response(c, "GET /small conn #%d" % (i + 1),
                                  allow_close=True)
            c.close()
        elapsed = time.perf_counter() - t0
        out.update(requests=NEWCONN_REQUESTS, bytes=total,
                   elapsed_s=elapsed, req_s=NEWCONN_REQUESTS / elapsed)
    else:
        raise Fail("unknown mode %r" % mode)
    out["ok"] = True
    return out


def main():
    args = [a for a in sys.argv[1:] if a != "--direct"]
    direct = "--direct" in sys.argv[1:]
    if len(args) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    mode, port = args[0], int(args[1])
    try:
        out = run(mode, port, direct)
    except (Fail, OSError, ValueError) as exc:
        out = {"mode": mode, "ok": False,
               "error": "%s: %s" % (type(exc).__name__, exc)}
        print(json.dumps(out))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
