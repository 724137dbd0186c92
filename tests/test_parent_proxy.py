"""corral's upstream connections through a corporate parent proxy (CONNECT), with
`Proxy-Authorization: Basic` from the user:password in the parent proxy's URL.

Everything runs on 127.0.0.1 in this process: a tiny threaded CONNECT proxy written here (it
records each CONNECT line, its headers and the bytes it tunnels), corral's `Proxy` on its own
thread, a real HTTPS server (tests/tlsservers.py) and a plain HTTP server; curl is the client.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

import tlsservers
from corral._values import replace
from corral.policy.model import NetworkPolicy, ParentProxy
from corral.policy.network import compile_rules
from corral.proxy import tlsca
from corral.proxy.audit import AuditLog
from corral.proxy.credentials import Credential, Injector
from corral.proxy.gate import Gate
from corral.proxy.server import Proxy
from corral.proxy.terminate import Terminator

assert shutil.which("curl"), "curl is not installed (scripts/install.sh installs it)"

TIMEOUT = 15
REAL = "par-test-" + "6b" * 16
PH = "corral-ph-tok-" + "0" * 30 + "99"
PW = "parent-pw-" + "3c" * 6  # the parent proxy's password


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ---------------------------------------------------------------------------------------------
# The parent proxy
# ---------------------------------------------------------------------------------------------


class ConnectProxy:
    """A CONNECT-only proxy on 127.0.0.1. `require`: the exact Proxy-Authorization it accepts
    (else 407). Records (request line, {lower-case header: value}) per CONNECT and every byte
    it tunnels from the client to the target."""

    def __init__(self, require: str | None = None):
        self.require = require
        self.names: dict[str, str] = {}  # names this parent resolves itself (to 127.0.0.1 servers)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.connects: list[tuple[str, dict]] = []
        self.upstream_bytes = bytearray()
        self.lock = threading.Lock()
        self.stopping = False
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _handle(self, conn: socket.socket):
        conn.settimeout(TIMEOUT)
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            head, _, rest = head.partition(b"\r\n\r\n")
            line, *header_lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for h in header_lines:
                name, _, value = h.partition(":")
                headers[name.strip().lower()] = value.strip()
            with self.lock:
                self.connects.append((line, headers))
            if self.require is not None and headers.get("proxy-authorization") != self.require:
                conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Proxy-Authenticate: Basic realm=\"parent\"\r\nContent-Length: 0\r\n\r\n")
                return
            method, target, _ = line.split(" ", 2)
            if method != "CONNECT":
                conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host, _, port = target.rpartition(":")
            try:
                upstream = socket.create_connection((self.names.get(host, host.strip("[]")), int(port)),
                                                    timeout=TIMEOUT)
            except OSError:
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            with upstream:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    self._record(rest)
                    upstream.sendall(rest)
                back = threading.Thread(target=self._copy, args=(upstream, conn, False), daemon=True)
                back.start()
                self._copy(conn, upstream, True)
                back.join(TIMEOUT)

    def _record(self, data: bytes):
        with self.lock:
            if len(self.upstream_bytes) < (4 << 20):
                self.upstream_bytes += data

    def _copy(self, src: socket.socket, dst: socket.socket, record: bool):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if record:
                    self._record(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self):
        self.stopping = True
        self.thread.join(TIMEOUT)
        self.listener.close()
        for t in self.threads:
            t.join(TIMEOUT)


# ---------------------------------------------------------------------------------------------
# Servers, corral's proxy, curl
# ---------------------------------------------------------------------------------------------


class _PlainHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.paths.append(self.path)
        body = f"plain ok {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def test_ca():
    ca = tlsservers.make_ca("ct-parent-ca-")
    yield ca
    ca.cleanup()


@pytest.fixture(scope="module")
def https_server(test_ca):
    s = tlsservers.HttpsServer(test_ca)
    yield s
    s.close()


@pytest.fixture
def plain_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PlainHandler)
    httpd.daemon_threads = True
    httpd.paths = []
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def parent():
    p = ConnectProxy(require=basic("user", PW))
    yield p
    p.close()


class Corral:
    def __init__(self, allowed, parent_proxy, audit_path, terminator=None, gate=None):
        rules = compile_rules(NetworkPolicy(allowed_domains=tuple(allowed)))
        if parent_proxy is not None:  # the servers here are on loopback: route it through the parent too
            parent_proxy = replace(parent_proxy, loopback_direct=False)
        self.audit_path = audit_path
        self.proxy = Proxy(rules, audit=AuditLog(str(audit_path)), parent_proxy=parent_proxy)
        self.proxy.terminator = terminator
        self.proxy.gate = gate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.proxy.start({"http": self.listener})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.proxy.stop()
        self.listener.close()

    def records(self) -> list[dict]:
        try:
            with open(self.audit_path) as fh:
                return [json.loads(line) for line in fh if line.strip()]
        except FileNotFoundError:
            return []

    def wait_for(self, pred, n: int = 1) -> list[dict]:
        """The audit records matching `pred`, once there are `n` (a connection is recorded when
        it ends, which may be just after curl has exited)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            found = [x for x in self.records() if pred(x)]
            if len(found) >= n or time.monotonic() > deadline:
                return found
            time.sleep(0.02)


@pytest.fixture
def corral(tmp_path):
    started = []

    def start(allowed, parent_proxy, **kw):
        c = Corral(allowed, parent_proxy, tmp_path / f"audit-{len(started)}.jsonl", **kw)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


def curl(tmp_path, *args) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}  # no proxy variables
    return subprocess.run(["curl", "-q", "-sS", "--max-time", str(TIMEOUT), *args], capture_output=True, text=True,
                          env=env, timeout=TIMEOUT + 5)


# ---------------------------------------------------------------------------------------------
# Opaque tunnels and plain HTTP
# ---------------------------------------------------------------------------------------------


def test_https_tunnel_goes_through_the_parent_with_proxy_authorization(tmp_path, test_ca, https_server, parent,
                                                                        corral):
    c = corral([https_server.hostport], ParentProxy(http=parent.url(f"user:{PW}")))
    before = len(https_server.got("/echo"))
    r = curl(tmp_path, "-x", c.url, "--cacert", str(test_ca.path), https_server.url("/echo?via=parent"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["path"] == "/echo?via=parent"
    assert len(https_server.got("/echo")) == before + 1
    assert parent.connects == [(f"CONNECT 127.0.0.1:{https_server.port} HTTP/1.1",
                                {"host": f"127.0.0.1:{https_server.port}",
                                 "proxy-authorization": basic("user", PW)})]
    (rec,) = c.wait_for(lambda x: x.get("proto") == "connect")
    assert rec["decision"] == "allow" and rec["address"] == f"via 127.0.0.1:{parent.port}"
    assert PW not in json.dumps(c.records())  # the parent's password is never logged


def test_userinfo_is_percent_decoded(tmp_path, test_ca, https_server, corral):
    parent = ConnectProxy(require=basic("dom\\us@r", "p:w d"))
    try:
        c = corral([https_server.hostport], ParentProxy(https=parent.url("dom%5Cus%40r:p%3Aw%20d")))
        r = curl(tmp_path, "-x", c.url, "--cacert", str(test_ca.path), https_server.url("/encoded"))
        assert r.returncode == 0, r.stderr
        assert r.stdout == "ok /encoded\n"
        assert [h.get("proxy-authorization") for _, h in parent.connects] == [basic("dom\\us@r", "p:w d")]
    finally:
        parent.close()


def test_parent_without_userinfo_gets_no_proxy_authorization(tmp_path, test_ca, https_server, corral):
    parent = ConnectProxy(require=None)
    try:
        c = corral([https_server.hostport], ParentProxy(http=parent.url()))
        r = curl(tmp_path, "-x", c.url, "--cacert", str(test_ca.path), https_server.url("/anon"))
        assert r.returncode == 0, r.stderr
        assert r.stdout == "ok /anon\n"
        assert len(parent.connects) == 1
        assert "proxy-authorization" not in parent.connects[0][1]
    finally:
        parent.close()


def test_wrong_parent_password_is_a_502_and_nothing_reaches_the_server(tmp_path, test_ca, https_server, parent,
                                                                        corral):
    c = corral([https_server.hostport], ParentProxy(http=parent.url("user:wrong")))
    before = len(https_server.got())
    r = curl(tmp_path, "-x", c.url, "--cacert", str(test_ca.path), "-o", "/dev/null", "-w", "%{http_connect}",
             https_server.url("/never"))
    assert r.returncode != 0
    assert r.stdout == "502"
    assert [h.get("proxy-authorization") for _, h in parent.connects] == [basic("user", "wrong")]
    assert len(https_server.got()) == before
    (rec,) = c.wait_for(lambda x: x.get("proto") == "connect")
    assert rec["decision"] == "error" and "407" in rec["reason"]
    assert "wrong" not in rec["reason"]


def test_plain_http_request_is_tunnelled_through_the_parent(tmp_path, plain_server, parent, corral):
    port = plain_server.server_address[1]
    c = corral([f"127.0.0.1:{port}"], ParentProxy(http=parent.url(f"user:{PW}")))
    r = curl(tmp_path, "-x", c.url, f"http://127.0.0.1:{port}/plain")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "plain ok /plain\n"
    assert plain_server.paths == ["/plain"]
    assert parent.connects == [(f"CONNECT 127.0.0.1:{port} HTTP/1.1",
                                {"host": f"127.0.0.1:{port}", "proxy-authorization": basic("user", PW)})]
    assert b"GET /plain HTTP/1.1" in parent.upstream_bytes


def test_no_proxy_hosts_are_reached_directly(tmp_path, test_ca, https_server, parent, corral):
    c = corral([https_server.hostport], ParentProxy(http=parent.url(f"user:{PW}"), no_proxy=("127.0.0.1",)))
    r = curl(tmp_path, "-x", c.url, "--cacert", str(test_ca.path), https_server.url("/direct"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ok /direct\n"
    assert parent.connects == []


def test_domain_rules_still_apply_before_the_parent(tmp_path, test_ca, https_server, parent, corral):
    c = corral(["example.com"], ParentProxy(http=parent.url(f"user:{PW}")))
    r = curl(tmp_path, "-x", c.url, "--cacert", str(test_ca.path), "-o", "/dev/null", "-w", "%{http_connect}",
             https_server.url("/blocked"))
    assert r.returncode != 0 and r.stdout == "403"
    assert parent.connects == []


# ---------------------------------------------------------------------------------------------
# TLS termination through the parent
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def corral_ca(tmp_path):
    ca = tlsca.CertificateAuthority.ephemeral()
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(tlsca.trust_bundle(ca, ()))
    return ca, bundle


def test_terminated_request_reaches_the_server_through_the_parent(tmp_path, test_ca, https_server, parent, corral,
                                                                   corral_ca):
    ca, bundle = corral_ca
    term = Terminator(ca, terminate=("*",), extra_ca=(str(test_ca.path),))
    c = corral([https_server.hostport], ParentProxy(http=parent.url(f"user:{PW}")), terminator=term)
    r = curl(tmp_path, "-x", c.url, "--cacert", str(bundle), "-w", "\n%{http_code}", https_server.url("/echo?t=1"))
    assert r.returncode == 0, r.stderr
    body, _, code = r.stdout.rpartition("\n")
    assert code == "200" and json.loads(body)["path"] == "/echo?t=1"
    assert [line for line, _ in parent.connects] == [f"CONNECT 127.0.0.1:{https_server.port} HTTP/1.1"]
    assert parent.connects[0][1]["proxy-authorization"] == basic("user", PW)
    # curl talked to corral's leaf: the test CA alone does not verify it
    r2 = curl(tmp_path, "-x", c.url, "--cacert", str(test_ca.path), https_server.url("/echo"))
    assert r2.returncode == 60, r2.stderr  # CURLE_PEER_FAILED_VERIFICATION
    https_recs = c.wait_for(lambda x: x.get("proto") == "https" and x.get("decision") == "allow")
    assert [(x["method"], x["path"], x["status"], x["address"]) for x in https_recs] == [
        ("GET", "/echo", 200, f"via 127.0.0.1:{parent.port}")]


def test_credential_injected_through_the_parent_never_crosses_it_in_clear(tmp_path, test_ca, https_server, parent,
                                                                           corral, corral_ca):
    ca, bundle = corral_ca
    term = Terminator(ca, terminate=(), extra_ca=(str(test_ca.path),))  # terminated because bound
    gate = Gate(None, Injector({PH: Credential("TOK", REAL, ("127.0.0.1",), header="*")}), require_host_match=True)
    c = corral([https_server.hostport], ParentProxy(http=parent.url(f"user:{PW}")), terminator=term, gate=gate)
    head_file = tmp_path / "head.txt"
    r = curl(tmp_path, "-x", c.url, "--cacert", str(bundle), "-D", str(head_file), "-H", f"Authorization: Bearer {PH}",
             https_server.url("/echo"))
    assert r.returncode == 0, r.stderr
    (seen,) = [x for x in https_server.got("/echo") if x.header("Authorization", "").endswith(REAL)]
    assert seen.header("Authorization") == f"Bearer {REAL}"
    # the echo is redacted back to the placeholder on the way to the client
    head = head_file.read_text()
    assert REAL not in r.stdout and REAL not in head
    echoed = {k.lower(): v for k, v in json.loads(r.stdout)["headers"]}
    assert echoed["authorization"] == f"Bearer {PH}"
    assert f"x-echo-authorization: bearer {PH}".lower() in head.lower()
    # the parent saw only TLS: neither the value nor the placeholder crossed it in clear
    assert parent.upstream_bytes[:1] == b"\x16"
    assert REAL.encode() not in parent.upstream_bytes and PH.encode() not in parent.upstream_bytes
    (rec,) = c.wait_for(lambda x: x.get("proto") == "https" and x.get("path") == "/echo")
    assert rec["injected"] == ["TOK"] and rec["redacted"] >= 1
    assert REAL not in json.dumps(c.records())


def test_unverifiable_upstream_through_the_parent_is_a_502(tmp_path, test_ca, parent, corral, corral_ca):
    """Going through a parent proxy never weakens upstream verification."""
    ca, bundle = corral_ca
    rogue = tlsservers.HttpsServer(test_ca, untrusted=True)
    try:
        term = Terminator(ca, terminate=("*",), extra_ca=(str(test_ca.path),))
        c = corral([rogue.hostport], ParentProxy(http=parent.url(f"user:{PW}")), terminator=term)
        r = curl(tmp_path, "-x", c.url, "--cacert", str(bundle), "-o", "/dev/null", "-w", "%{http_code}",
                 rogue.url("/x"))
        assert r.stdout == "502", r.stderr
        assert rogue.got() == []
        assert len(parent.connects) == 1
        errors = c.wait_for(lambda x: x.get("decision") == "error")
        assert errors and any("certificate verify" in x["reason"] or "verification" in x["reason"] for x in errors)
    finally:
        rogue.close()


def test_a_name_only_the_parent_resolves_is_handed_to_the_parent(parent):
    """Behind a corporate proxy only the proxy may resolve outside names: the dial must not
    stop at the local resolver's failure (the parent resolves and connects)."""
    import asyncio

    from corral.policy.model import NetworkPolicy, ParentProxy
    from corral.policy.network import compile_rules
    from corral.proxy.dial import DialFailed, Dialer

    name = "only-the-parent-resolves.invalid"
    dialer = Dialer(compile_rules(NetworkPolicy(allowed_domains=(name,))),
                    parent_proxy=ParentProxy(http=parent.url("user:pw")))
    with pytest.raises(DialFailed, match="parent proxy refused"):  # the parent cannot reach it either
        asyncio.run(dialer.dial(name, 443))
    assert [line for line, _ in parent.connects] == [f"CONNECT {name}:443 HTTP/1.1"]
    assert parent.connects[0][1]["proxy-authorization"] == basic("user", "pw")
    # Without a parent the same name is refused at once, naming the resolver.
    alone = Dialer(compile_rules(NetworkPolicy(allowed_domains=(name,))))
    with pytest.raises(DialFailed, match="cannot resolve"):
        asyncio.run(alone.dial(name, 443))
