#!/usr/bin/env python3
"""In-sandbox client for bench/terminate (stdlib only: ssl + raw sockets).

    terminate_client.py MODE PORT [--direct]

Runs inside a sandbox and reaches the host's HTTPS benchmark server on
127.0.0.1:PORT through the sandbox's HTTP proxy, which it finds in the
environment (HTTPS_PROXY / https_proxy, else HTTP_PROXY / http_proxy;
http://[user:pass@]host:port, the userinfo percent-decoded and sent as
Proxy-Authorization: Basic). Each connection is `CONNECT 127.0.0.1:PORT`,
then TLS inside the tunnel with ssl.create_default_context() (which reads
SSL_CERT_FILE, the bundle the tool points the sandbox at) and server_hostname
"127.0.0.1", certificate and name verified. With TLS termination on, the
certificate the client sees is the tool's leaf, not the server's: the JSON
line carries its issuer, and bench/terminate checks that it is not the bench
CA (which would mean the tunnel was not terminated).

NO_PROXY is deliberately ignored: the target is loopback, and srt lists
loopback in NO_PROXY, so honouring it would dial the sandbox's own empty
loopback.

Modes:
  newconn    50 sequential CONNECT + TLS handshakes, one GET /small each
             (Connection: close)                                    req/s
  keepalive  one CONNECT + TLS handshake, then 200 sequential GET /small
             on that keep-alive connection                          req/s
  download   one CONNECT + TLS handshake, then GET /big (100 MiB)   MiB/s

Before the timed part, the client makes one untimed tunnel (CONNECT, TLS,
GET /small, Connection: close) and reports its duration as "first_s": it
carries each tool's one-off costs (srt 0.0.83 generates its RSA-2048 leaf
key in JavaScript on the first tunnel, ~0.3 s; both tools mint the leaf for
127.0.0.1 then). The figures include every later CONNECT and handshake,
like bench/proxy_client.py. (Mode "first" makes only that tunnel.)

--direct talks TLS to 127.0.0.1:PORT without any proxy (host-side
reference; the caller sets SSL_CERT_FILE to the bench CA).

Prints one JSON line. Timing starts after imports, environment parsing and
the creation of the SSL context, so sandbox start-up is excluded. Exit
status 0 on success, 1 on failure (the JSON line then has "ok": false and
"error").
"""

import json
import os
import ssl
import sys
import time

# Same directory: the proxy benchmark's client holds the plain-socket HTTP/1.1 plumbing.
from proxy_client import (  # noqa: E402
    KEEPALIVE_REQUESTS,
    NEWCONN_REQUESTS,
    TARGET_HOST,
    Conn as _PlainConn,
    Fail,
    basic,
    dial,
    get_response,
)
from proxy_client import BUF, proxy_from_env as _proxy_from_env  # noqa: E402


def proxy_from_env():
    return _proxy_from_env(("HTTPS_PROXY", "HTTP_PROXY"), ("http",))


class Conn(_PlainConn):
    """A TLS socket with the read-ahead buffer for header parsing."""

    def read_to_eof(self):
        got = len(self.pending)
        self.pending = b""
        while True:
            try:
                n = self.sock.recv_into(self.view, BUF)
            except ssl.SSLError as exc:  # an unclean TLS close after the body
                if "EOF" in str(exc) or "UNEXPECTED_EOF" in str(exc):
                    return got
                raise
            if n == 0:
                return got
            got += n


def _der_issuer_cn(der):
    """The issuer's commonName of a DER certificate, found without a parser:
    the first CN in the certificate is the issuer's (issuer precedes
    subject). Good enough for a diagnostic."""
    oid = b"\x06\x03\x55\x04\x03"  # 2.5.4.3 commonName
    i = der.find(oid)
    if i < 0:
        return "(no commonName)"
    j = i + len(oid)
    n = der[j + 1]
    return repr(der[j + 2:j + 2 + n].decode("utf-8", "replace"))


def _name(rdns):
    """'O=x, CN=y' from getpeercert()'s nested tuples."""
    return ", ".join("%s=%s" % kv for rdn in rdns for kv in rdn)


class Opener:
    def __init__(self, px, port, ctx):
        self.px, self.port, self.ctx = px, port, ctx
        self.peer = None

    def open(self):
        """A TLS connection to 127.0.0.1:PORT, through a CONNECT tunnel
        unless direct (px None)."""
        s = self.tunnel()
        try:
            t = self.ctx.wrap_socket(s, server_hostname=TARGET_HOST)
        except ssl.SSLCertVerificationError as exc:
            s.close()
            raise Fail("TLS handshake through the tunnel failed: %s (%s)"
                       % (exc, self.diagnose()))
        except ssl.SSLError as exc:
            s.close()
            raise Fail("TLS handshake through the tunnel failed: %s" % exc)
        if self.peer is None:
            cert = t.getpeercert() or {}
            self.peer = {"issuer": _name(cert.get("issuer", ())),
                         "subject": _name(cert.get("subject", ())),
                         "san": [list(x) for x in cert.get("subjectAltName",
                                                            ())],
                         "tls": t.version(), "cipher": t.cipher()[0],
                         "alpn": t.selected_alpn_protocol()}
        return Conn(t)

    def diagnose(self):
        """After a verification failure: who issued the certificate the
        client was shown (one more tunnel, unverified, for the message)."""
        try:
            s = self.tunnel()
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with ctx.wrap_socket(s, server_hostname=TARGET_HOST) as t:
                der = t.getpeercert(True)
            issuer = _der_issuer_cn(der)
        except Exception as exc:  # a diagnostic only
            issuer = "unknown (%s: %s)" % (type(exc).__name__, exc)
        return "the certificate shown was issued by %s; SSL_CERT_FILE=%s" % (
            issuer, os.environ.get("SSL_CERT_FILE"))

    def tunnel(self):
        """A TCP connection to 127.0.0.1:PORT: a CONNECT tunnel through the
        proxy, or direct when there is no proxy."""
        port = self.port
        if self.px is None:
            s = dial(TARGET_HOST, port)
        else:
            s = dial(self.px["host"], self.px["port"])
            s.sendall(("CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n"
                       % (TARGET_HOST, port, TARGET_HOST, port,
                          basic(self.px))).encode())
            # Read the reply byte-wise up to CRLFCRLF: nothing of the TLS
            # stream that follows may be consumed here.
            data = b""
            while not data.endswith(b"\r\n\r\n"):
                ch = s.recv(1)
                if not ch:
                    raise Fail("CONNECT: proxy closed the connection "
                               "(got %r)" % data[:300])
                data += ch
                if len(data) > 65536:
                    raise Fail("CONNECT: reply head too long")
            line = data.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split(" ", 2)
            if len(parts) < 2 or parts[1] != "200":
                s.close()
                raise Fail("CONNECT refused: %r" % data[:300])
        return s


def get(path, port, close=False):
    return ("GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n"
            % (path, TARGET_HOST, port,
               "Connection: close\r\n" if close else "")).encode()


def run(mode, port, direct):
    out = {"mode": mode, "direct": direct}
    px = None
    if not direct:
        px = proxy_from_env()
        if not px:
            raise Fail("no HTTP proxy in HTTPS_PROXY/https_proxy/HTTP_PROXY")
        out["proxy"] = "http://%s:%d (%s)" % (px["host"], px["port"],
                                              px["var"])
    out["ssl_cert_file"] = os.environ.get("SSL_CERT_FILE")
    ctx = ssl.create_default_context()
    ctx.set_alpn_protocols(["http/1.1"])
    op = Opener(px, port, ctx)

    # The first tunnel of a run pays each tool's one-off costs (srt
    # generates its RSA leaf key then; both mint the leaf for 127.0.0.1):
    # it is timed on its own and left out of the figure.
    if not direct or mode == "first":
        t = time.perf_counter()
        c = op.open()
        c.send(get("/small", port, close=True))
        get_response(c, "first GET /small", allow_close=True)
        c.close()
        out["first_s"] = time.perf_counter() - t

    t0 = time.perf_counter()
    if mode == "download":
        c = op.open()
        c.send(get("/big", port))
        n = get_response(c, "GET /big")
        elapsed = time.perf_counter() - t0
        c.close()
        out.update(bytes=n, elapsed_s=elapsed, mib_s=n / (1 << 20) / elapsed)
    elif mode == "keepalive":
        c = op.open()
        total = 0
        for i in range(KEEPALIVE_REQUESTS):
            c.send(get("/small", port))
            total += get_response(c, "GET /small #%d" % (i + 1))
        elapsed = time.perf_counter() - t0
        c.close()
        out.update(requests=KEEPALIVE_REQUESTS, bytes=total,
                   elapsed_s=elapsed, req_s=KEEPALIVE_REQUESTS / elapsed)
    elif mode == "newconn":
        total = 0
        for i in range(NEWCONN_REQUESTS):
            c = op.open()
            c.send(get("/small", port, close=True))
            total += get_response(c, "GET /small conn #%d" % (i + 1),
                                  allow_close=True)
            c.close()
        elapsed = time.perf_counter() - t0
        out.update(requests=NEWCONN_REQUESTS, bytes=total,
                   elapsed_s=elapsed, req_s=NEWCONN_REQUESTS / elapsed)
    elif mode == "first":
        out.update(ms=out["first_s"] * 1000)
    else:
        raise Fail("unknown mode %r" % mode)
    out["peer"] = op.peer
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
               "error": "%s: %s" % (type(exc).__name__, exc),
               "ssl_cert_file": os.environ.get("SSL_CERT_FILE")}
        print(json.dumps(out))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
