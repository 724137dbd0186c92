"""The egress proxy end to end: real sandboxes, real clients, real servers on the host's 127.0.0.1.

Every test runs for both launchers (root, user). Host-side servers listen on 127.0.0.1 only;
the documentation addresses 203.0.113.5 / 198.51.100.7 are used only to show that a
connection to them is refused inside the sandbox (nothing is ever sent to them). Each test
gets its own XDG_STATE_HOME, so the audit log it reads holds only its own records.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import os
import re
import shutil
import socketserver
import subprocess
import threading
from pathlib import Path

import pytest

import helpers

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
DOC_TCP = ("203.0.113.5", 443)  # TEST-NET-3: never reached
DOC_UDP = ("198.51.100.7", 9999)  # TEST-NET-2: never reached
SYNTHETIC = ipaddress.ip_network("198.18.0.0/15")
SUMMARY_RE = re.compile(r"^corral: blocked network access to (.*)$", re.M)


def out_of(proc) -> str:
    return proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------
# host-side servers
# ---------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _body_for(self):
        srv = self.server.owner
        if self.path.startswith("/blob/"):  # a large deterministic body: /blob/<bytes>
            n = int(self.path.split("/")[2])
            return 200, (b"0123456789abcdef" * (n // 16 + 1))[:n]
        if srv.root is not None and self.path.startswith("/repo.git/"):
            p = (srv.root / self.path.lstrip("/").split("?", 1)[0]).resolve()
            if p.is_relative_to(srv.root) and p.is_file():
                return 200, p.read_bytes()
            return 404, b"not found\n"
        return 200, f"{srv.body} path={self.path}\n".encode()

    def do_GET(self):
        srv = self.server.owner
        with srv.lock:
            srv.hits.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
        status, body = self._body_for()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET


class _ThreadingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 2048


class Server:
    """A threaded HTTP server on 127.0.0.1:<ephemeral> that records what it was asked."""

    def __init__(self, root: Path | None = None):
        self.body = helpers.marker()
        self.root = root.resolve() if root else None
        self.hits: list[dict] = []
        self.lock = threading.Lock()
        self.httpd = _ThreadingServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        with self.lock:
            return [h["path"] for h in self.hits]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# The `server` and `other` fixtures (instances of Server) live in conftest.py.


# ---------------------------------------------------------------------------------------
# running a sandbox with a network policy
# ---------------------------------------------------------------------------------------

# A small client library written into the workspace for scripts that speak raw HTTP to the
# proxy (so that no client library normalises or fixes up what is sent).
CTNET = r'''
import base64, json, os, socket, urllib.parse

def creds():
    u = urllib.parse.urlsplit(os.environ["HTTP_PROXY"])
    return urllib.parse.unquote(u.username), urllib.parse.unquote(u.password)

def auth_header():
    user, token = creds()
    return "Proxy-Authorization: Basic " + base64.b64encode(f"{user}:{token}".encode()).decode() + "\r\n"

def connect(timeout=15):
    return socket.create_connection(("127.0.0.1", 3128), timeout=timeout)

def read_response(f):
    line = f.readline()
    if not line:
        return {"status": None, "error": "EOF"}
    parts = line.decode("latin-1").split(" ", 2)
    headers = {}
    while True:
        h = f.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    else:
        body = f.read()
    return {"status": int(parts[1]), "headers": headers, "body": body.decode("utf-8", "replace")}

def exchange(raw, timeout=15):
    s = connect(timeout)
    try:
        try:
            s.sendall(raw)
        except OSError as e:
            pass  # the proxy may answer and close before reading everything: read the answer
        try:
            return read_response(s.makefile("rb"))
        except OSError as e:
            return {"status": None, "error": type(e).__name__}
    finally:
        s.close()

def get(target, extra="", auth=True):
    head = f"GET {target} HTTP/1.1\r\nHost: ct\r\n" + (auth_header() if auth else "") + extra + "Connection: close\r\n\r\n"
    return exchange(head.encode())

def out(label, obj):
    print(json.dumps({"label": label, **obj}), flush=True)
'''


def state_dir(ws) -> Path:
    return ws.base / "state"


def net_run(ws, script: str, allowed=(), denied=(), opts=(), timeout=90, env_extra=None):
    """`corral run [opts] --settings S -c script` with its own XDG_STATE_HOME."""
    state = state_dir(ws)
    state.mkdir(exist_ok=True)
    (ws.proj / "ctnet.py").write_text(CTNET)
    # srt semantics: only allowWrite paths are writable, so grant the workspace explicitly
    s = ws.settings(allowedDomains=list(allowed), deniedDomains=list(denied), allowWrite=[str(ws.proj)])
    env = {"XDG_STATE_HOME": str(state), "GIT_TERMINAL_PROMPT": "0", **(env_extra or {})}
    return helpers.run(ws.launcher, ["run", *opts, "--settings", str(s), "-c", script], ws.proj,
                       timeout=timeout, env_extra=env)


def py_run(ws, code: str, *args, **kw):
    """Run a python script (written into the workspace) inside the sandbox."""
    name = f"ct_{helpers.marker()[-8:]}.py"
    ws.write(name, code)
    argv = " ".join([PY, name, *map(str, args)])
    return net_run(ws, argv, **kw)


def audit_path(ws) -> Path:
    return state_dir(ws) / "corral" / "audit.jsonl"


def audit(ws) -> list[dict]:
    p = audit_path(ws)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def results(proc) -> dict[str, dict]:
    """The JSON lines a script printed with ctnet.out, by label."""
    found = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            found[rec.pop("label")] = rec
    return found


def summary(stderr: str) -> list[str]:
    return SUMMARY_RE.findall(stderr)


def curl(*args: str) -> str:
    return " ".join(["curl", "-sS", "--max-time", "20", *args])


# ---------------------------------------------------------------------------------------
# 1. HTTP proxy
# ---------------------------------------------------------------------------------------


def test_http_proxy_allowed_and_blocked(launcher, ws, server, other):
    script = (f'{curl("-o", "allowed.out", "-w", "%{http_code}", server.url("/ok"))}; echo " rc=$?"; '
              f'{curl("-D", "blocked.hdr", "-o", "blocked.out", "-w", "%{http_code}", other.url("/no"))}; echo " rc=$?"')
    p = net_run(ws, script, allowed=[server.hostport])
    assert p.returncode == 0, out_of(p)
    assert p.stdout.split("\n")[:2] == ["200 rc=0", "403 rc=0"], out_of(p)
    assert (ws.proj / "allowed.out").read_text() == f"{server.body} path=/ok\n"
    # the server saw exactly that request, addressed to itself, without the proxy credentials
    assert server.paths() == ["/ok"]
    hdrs = server.hits[0]["headers"]
    assert hdrs["host"] == server.hostport
    assert "proxy-authorization" not in hdrs
    assert not any("corral-" in v for v in hdrs.values()), hdrs
    # the other port: refused by the proxy, never dialled
    assert other.paths() == []
    blocked_hdr = (ws.proj / "blocked.hdr").read_text().lower()
    assert "x-corral-decision: blocked" in blocked_hdr, blocked_hdr
    assert other.hostport in (ws.proj / "blocked.out").read_text()
    # one summary line at exit, naming the blocked destination only
    lines = summary(p.stderr)
    assert len(lines) == 1, p.stderr
    assert other.hostport in lines[0] and server.hostport not in lines[0]


def test_exit_summary_absent_with_quiet(launcher, ws, server, other):
    p = net_run(ws, f'{curl("-o", "/dev/null", "-w", "%{http_code}", other.url())}', allowed=[server.hostport],
                opts=["-q"])
    assert p.stdout == "403", out_of(p)
    assert "blocked network access" not in p.stderr, p.stderr
    assert other.paths() == []
    # quiet only silences the message: the block is still audited
    assert [(r["host"], r["port"], r["decision"]) for r in audit(ws)] == [("127.0.0.1", other.port, "block")]


def test_wrong_proxy_credentials_refused(launcher, ws, server):
    code = ("import ctnet\n"
            "u, t = ctnet.creds()\n"
            "bad = 'Proxy-Authorization: Basic ' + __import__('base64').b64encode(f'{u}:wrong{t}'.encode()).decode() + '\\r\\n'\n"
            f"ctnet.out('bad', ctnet.get('{server.url('/bad')}', extra=bad, auth=False))\n"
            f"ctnet.out('good', ctnet.get('{server.url('/good')}'))\n")
    p = py_run(ws, code, allowed=[server.hostport])
    r = results(p)
    assert r["bad"]["status"] == 407, out_of(p)
    assert r["good"]["status"] == 200, out_of(p)
    assert server.paths() == ["/good"]


# ---------------------------------------------------------------------------------------
# 2. CONNECT tunnels
# ---------------------------------------------------------------------------------------


def test_connect_tunnel_curl(launcher, ws, server, other):
    script = (f'{curl("-p", "-o", "t.out", server.url("/tunnel"))}; echo "a=$?"; '
              f'{curl("-p", "-o", "/dev/null", other.url("/tunnel"))} 2>blocked.err; echo "b=$?"')
    p = net_run(ws, script, allowed=[server.hostport])
    assert "a=0" in p.stdout, out_of(p)
    assert (ws.proj / "t.out").read_text() == f"{server.body} path=/tunnel\n"
    assert server.paths() == ["/tunnel"]
    assert "b=56" in p.stdout, out_of(p)  # CURLE_RECV_ERROR: the CONNECT was answered 403
    assert "403" in (ws.proj / "blocked.err").read_text()
    assert other.paths() == []
    protos = [(r["proto"], r["port"], r["decision"]) for r in audit(ws)]
    assert protos == [("connect", server.port, "allow"), ("connect", other.port, "block")], protos


def test_connect_tunnel_raw(launcher, ws, server, other):
    code = f"""
import ctnet
s = ctnet.connect()
s.sendall(("CONNECT {server.hostport} HTTP/1.1\\r\\nHost: {server.hostport}\\r\\n" + ctnet.auth_header() + "\\r\\n").encode())
f = s.makefile("rb")
line = f.readline().decode()
while f.readline() not in (b"\\r\\n", b""):
    pass
s.sendall(b"GET /raw-tunnel HTTP/1.1\\r\\nHost: {server.hostport}\\r\\nConnection: close\\r\\n\\r\\n")
ctnet.out("allowed", {{"connect": line.strip(), "inner": ctnet.read_response(f)}})
s.close()
raw = ("CONNECT {other.hostport} HTTP/1.1\\r\\nHost: x\\r\\n" + ctnet.auth_header() + "\\r\\n").encode()
ctnet.out("blocked", ctnet.exchange(raw))
"""
    p = py_run(ws, code, allowed=[server.hostport])
    r = results(p)
    assert r["allowed"]["connect"].startswith("HTTP/1.1 200"), out_of(p)
    assert r["allowed"]["inner"]["status"] == 200
    assert r["allowed"]["inner"]["body"] == f"{server.body} path=/raw-tunnel\n"
    assert r["blocked"]["status"] == 403, out_of(p)
    assert r["blocked"]["headers"]["x-corral-decision"].startswith("blocked")
    assert other.hostport in r["blocked"]["body"]
    assert server.paths() == ["/raw-tunnel"] and other.paths() == []


# ---------------------------------------------------------------------------------------
# 3. SOCKS5
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["socks5-hostname", "all_proxy-with-credentials"])
def test_socks5(launcher, ws, server, other, how):
    via = "--socks5-hostname 127.0.0.1:1080" if how == "socks5-hostname" else '-x "$ALL_PROXY"'
    script = (f'{curl(via, "-o", "s.out", server.url("/socks"))}; echo "a=$?"; '
              f'{curl(via, "-o", "/dev/null", other.url("/socks"))} 2>blocked.err; echo "b=$?"')
    p = net_run(ws, script, allowed=[server.hostport])
    assert "a=0" in p.stdout, out_of(p)
    assert (ws.proj / "s.out").read_text() == f"{server.body} path=/socks\n"
    assert "b=97" in p.stdout, out_of(p)  # CURLE_PROXY
    err = (ws.proj / "blocked.err").read_text()
    assert "SOCKS5" in err and err.rstrip().endswith("(2)"), err  # reply 0x02: not allowed by ruleset
    assert server.paths() == ["/socks"] and other.paths() == []
    recs = [(r["proto"], r.get("port"), r["decision"]) for r in audit(ws)]
    assert recs == [("socks5", server.port, "allow"), ("socks5", other.port, "block")], recs


# ---------------------------------------------------------------------------------------
# 4. Python clients through the environment's proxy
# ---------------------------------------------------------------------------------------

URLLIB = """
import sys, urllib.request, urllib.error, json
for label, url in (("allowed", sys.argv[1]), ("blocked", sys.argv[2])):
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            print(json.dumps({"label": label, "status": r.status, "body": r.read().decode()}))
    except urllib.error.HTTPError as e:
        print(json.dumps({"label": label, "status": e.code, "decision": e.headers.get("X-Corral-Decision"),
                          "body": e.read().decode()}))
"""

REQUESTS = """
import sys, json, requests
for label, url in (("allowed", sys.argv[1]), ("blocked", sys.argv[2])):
    r = requests.get(url, timeout=20)
    print(json.dumps({"label": label, "status": r.status_code, "decision": r.headers.get("X-Corral-Decision"),
                      "body": r.text}))
"""


def _has_requests() -> bool:
    return subprocess.run([PY, "-c", "import requests"], capture_output=True).returncode == 0


@pytest.mark.parametrize("client", ["urllib", "requests"])
def test_python_clients_use_env_proxy(launcher, ws, server, other, client):
    if client == "requests" and not _has_requests():
        pytest.skip(f"`requests` is not importable by {PY}")
    p = py_run(ws, URLLIB if client == "urllib" else REQUESTS, server.url("/py"), other.url("/py"),
               allowed=[server.hostport])
    r = results(p)
    assert r["allowed"] == {"status": 200, "body": f"{server.body} path=/py\n", **({"decision": None} if client == "requests" else {})}, out_of(p)
    assert r["blocked"]["status"] == 403, out_of(p)
    assert r["blocked"]["decision"].startswith("blocked"), r["blocked"]
    assert other.hostport in r["blocked"]["body"]
    assert server.paths() == ["/py"] and other.paths() == []


# ---------------------------------------------------------------------------------------
# 5. transparent mode
# ---------------------------------------------------------------------------------------

TRANSPARENT_PROBE = """
import errno, json, socket, sys, threading, time

def direct(host, port):
    t0 = time.monotonic()
    try:
        s = socket.create_connection((host, port), timeout=8)
        s.settimeout(8)
        try:
            s.sendall(b"hello")
        except OSError:
            pass
        data = s.recv(100)
        res = "EOF" if not data else "DATA"
    except OSError as e:
        res = errno.errorcode.get(e.errno, type(e).__name__)
    return res, time.monotonic() - t0

srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen()
def serve():
    c, _ = srv.accept()
    c.sendall(b"inside:" + c.recv(100))
    c.close()
threading.Thread(target=serve, daemon=True).start()
c = socket.create_connection(("127.0.0.1", srv.getsockname()[1]), timeout=5)
c.sendall(b"ping")
print(json.dumps({"label": "loopback", "reply": c.recv(100).decode()}))
res, secs = direct(sys.argv[1], int(sys.argv[2]))
print(json.dumps({"label": "direct", "result": res, "secs": secs}))
"""


def _assert_transparent_blocked(ws, r, p):
    assert r["direct"]["result"] in ("ECONNRESET", "ECONNREFUSED", "EOF"), out_of(p)
    assert r["direct"]["secs"] < 5, r["direct"]
    recs = [x for x in audit(ws) if x.get("proto") == "transparent"]
    assert [(x["host"], x["port"], x["decision"]) for x in recs] == [(*DOC_TCP, "block")], audit(ws)


def test_transparent_loopback_is_own_and_direct_connect_blocked(launcher, ws, server):
    ws.write("probe.py", TRANSPARENT_PROBE)
    p = net_run(ws, f"{PY} probe.py {DOC_TCP[0]} {DOC_TCP[1]}", allowed=[server.hostport])
    r = results(p)
    assert r["loopback"]["reply"] == "inside:ping", out_of(p)
    _assert_transparent_blocked(ws, r, p)
    assert server.paths() == []
    assert DOC_TCP[0] in "".join(summary(p.stderr)), p.stderr


def test_direct_connect_to_allowed_host_port_hits_sandbox_loopback(launcher, ws, server):
    # 127.0.0.1 inside is the sandbox's own: allowing the host's 127.0.0.1:PORT does not make a
    # direct (proxy-less) connection reach the host.
    code = ("import socket, errno\ns = socket.socket()\ns.settimeout(3)\n"
            f"try:\n s.connect(('127.0.0.1', {server.port}))\n print('CONNECTED')\n"
            "except OSError as e:\n print(errno.errorcode.get(e.errno, e))\n")
    p = py_run(ws, code, allowed=[server.hostport])
    assert p.stdout.strip() == "ECONNREFUSED", out_of(p)
    assert server.paths() == []


# ---------------------------------------------------------------------------------------
# 6. DNS
# ---------------------------------------------------------------------------------------

DNS_PROBE = r"""
import json, socket, struct, sys

def query(name, server, qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(q, server)
    try:
        data, src = s.recvfrom(4096)
    except socket.timeout:
        return {"timeout": True}
    rid, flags, qd, an = struct.unpack(">HHHH", data[:8])
    addrs = []
    if an:
        # the answers follow the question; each A record ends with 4 bytes of rdata
        pos = 12
        while data[pos]:
            pos += data[pos] + 1
        pos += 5
        for _ in range(an):
            pos += 2 if data[pos] & 0xC0 == 0xC0 else 0
            rtype, rclass, ttl, rdlen = struct.unpack(">HHIH", data[pos:pos + 10])
            pos += 10
            if rtype == 1:
                addrs.append(socket.inet_ntoa(data[pos:pos + 4]))
            pos += rdlen
    return {"id_ok": rid == qid, "rcode": flags & 0xF, "addrs": addrs, "src": list(src)}

for i, (label, name, server) in enumerate((("ext-allowed", sys.argv[1], ("8.8.8.8", 53)),
                                           ("ext-denied", sys.argv[2], ("8.8.8.8", 53)),
                                           ("local-denied", sys.argv[2], ("127.0.0.1", 53)))):
    print(json.dumps({"label": label, **query(name, server, 0x4200 + i)}))
with open("/proc/net/dev") as f:
    ifaces = sorted(line.split(":")[0].strip() for line in f.readlines()[2:])
print(json.dumps({"label": "ifaces", "names": ifaces}))
"""


def test_dns_getent(launcher, ws):
    denied = "blocked-ct.example.org"
    p = net_run(ws, f"getent hosts example.com; echo a=$?; getent hosts {denied}; echo b=$?; cat /etc/resolv.conf",
                allowed=["example.com"])
    lines = p.stdout.splitlines()
    addr, name = lines[0].split()
    assert name == "example.com", out_of(p)
    assert ipaddress.ip_address(addr) in SYNTHETIC
    assert lines[1:3] == ["a=0", "b=2"], out_of(p)
    assert "nameserver 127.0.0.1" in p.stdout
    recs = [(r["proto"], r["host"], r["decision"]) for r in audit(ws)]
    # every answer is a decision on record: the allowed name and the refused one
    assert recs and set(recs) == {("dns", "example.com", "allow"), ("dns", denied, "block")}, recs
    allowed = [r for r in audit(ws) if r["decision"] == "allow"]
    assert all(r["address"] == addr for r in allowed), allowed


def test_dns_to_external_resolver_is_answered_locally(launcher, ws):
    denied = "blocked-ct.example.org"
    ws.write("dnsprobe.py", DNS_PROBE)
    p = net_run(ws, f"{PY} dnsprobe.py example.com {denied}", allowed=["example.com"])
    r = results(p)
    ext = r["ext-allowed"]
    assert ext.get("timeout") is None, out_of(p)
    assert ext["id_ok"] and ext["rcode"] == 0 and len(ext["addrs"]) == 1, ext
    assert ipaddress.ip_address(ext["addrs"][0]) in SYNTHETIC
    assert ext["src"] == ["8.8.8.8", 53]  # the redirect is transparent to the client
    for label in ("ext-denied", "local-denied"):
        assert r[label].get("timeout") is None and r[label]["id_ok"], r[label]
        assert r[label]["rcode"] == 3 and r[label]["addrs"] == [], r[label]  # NXDOMAIN
    assert r["ifaces"]["names"] == ["lo"]  # nothing to leave by


# ---------------------------------------------------------------------------------------
# 7. no other UDP, no ICMP, no raw sockets
# ---------------------------------------------------------------------------------------

UDP_ICMP_PROBE = r"""
import errno, json, socket, struct, sys

def name(e):
    return errno.errorcode.get(e.errno, type(e).__name__)

dst = (sys.argv[1], int(sys.argv[2]))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.5)
try:
    s.sendto(b"leak", dst)
    s.recvfrom(100)
    res = "REPLY"
except socket.timeout:
    res = "TIMEOUT"
except OSError as e:
    res = name(e)
print(json.dumps({"label": "udp", "result": res}))

def raw(family, kind, proto):
    try:
        socket.socket(family, kind, proto).close()
        return "OPENED"
    except OSError as e:
        return name(e)

print(json.dumps({"label": "raw", "icmp": raw(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                  "raw_tcp": raw(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP),
                  "packet": raw(socket.AF_PACKET, socket.SOCK_RAW, 0x0300)}))

# unprivileged ICMP ("ping socket"): either refused or the echo goes nowhere
try:
    p = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    p.settimeout(1.5)
    try:
        p.sendto(struct.pack(">BBHHH", 8, 0, 0, 0, 1) + b"ct", (dst[0], 0))
        p.recvfrom(100)
        res = "REPLY"
    except socket.timeout:
        res = "TIMEOUT"
    except OSError as e:
        res = "send:" + name(e)
except OSError as e:
    res = "socket:" + name(e)
print(json.dumps({"label": "ping", "result": res}))
"""


def test_no_udp_icmp_or_raw_sockets(launcher, ws):
    ws.write("udpprobe.py", UDP_ICMP_PROBE)
    ping = "ping -c1 -W1 {0}; echo ping=$?".format(DOC_UDP[0]) if shutil.which("ping") else "echo ping=absent"
    p = net_run(ws, f"{PY} udpprobe.py {DOC_UDP[0]} {DOC_UDP[1]}; {ping}", allowed=["example.com"])
    r = results(p)
    assert r["udp"]["result"] in ("EPERM", "TIMEOUT"), out_of(p)
    assert r["raw"] == {"icmp": "EPERM", "raw_tcp": "EPERM", "packet": "EPERM"}, r["raw"]
    assert r["ping"]["result"] in ("socket:EACCES", "socket:EPERM", "send:EPERM", "TIMEOUT"), r["ping"]
    if shutil.which("ping"):
        assert "ping=0" not in p.stdout and "ping=" in p.stdout, out_of(p)


# ---------------------------------------------------------------------------------------
# 8. the network setup cannot be undone from inside
# ---------------------------------------------------------------------------------------


def test_cannot_undo_network_setup(launcher, ws, server):
    nft, ip = shutil.which("nft") or "/usr/sbin/nft", shutil.which("ip") or "/usr/sbin/ip"
    if not (os.path.exists(nft) and os.path.exists(ip)):
        pytest.skip("nft and ip are needed")
    ws.write("probe.py", TRANSPARENT_PROBE)
    script = (f"{nft} flush ruleset; echo nft=$?; {nft} delete table inet corral; echo nftdel=$?; "
              f"{ip} link set lo down; echo ipdown=$?; {ip} route flush table local; echo route=$?; "
              f"{ip} link add ct0 type dummy; echo add=$?; "
              f"{PY} probe.py {DOC_TCP[0]} {DOC_TCP[1]}; "
              f'{curl("-o", "after.out", server.url("/after"))}; echo curl=$?')
    p = net_run(ws, script, allowed=[server.hostport])
    for step in ("nft", "nftdel", "ipdown", "route", "add"):
        m = re.search(rf"^{step}=(\d+)$", p.stdout, re.M)
        assert m and m.group(1) != "0", (step, out_of(p))
    r = results(p)
    assert r["loopback"]["reply"] == "inside:ping", out_of(p)  # lo is still up
    _assert_transparent_blocked(ws, r, p)
    assert "curl=0" in p.stdout, out_of(p)
    assert (ws.proj / "after.out").read_text() == f"{server.body} path=/after\n"


# ---------------------------------------------------------------------------------------
# 9. malformed requests and request smuggling
# ---------------------------------------------------------------------------------------

SMUGGLE = """
import ctnet, sys
ok, other, which = sys.argv[1], sys.argv[2], sys.argv[3]
A = ctnet.auth_header()
cases = {
    "cl-te": f"POST http://{ok}/s HTTP/1.1\\r\\nHost: {ok}\\r\\n{A}Content-Length: 4\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n0\\r\\n\\r\\n",
    "origin-form": f"GET / HTTP/1.1\\r\\nHost: {ok}\\r\\n{A}\\r\\n",
    "garbage": "\\x16\\x03\\x01 garbage \\xff\\xfe\\r\\n\\r\\n",
    "no-version": f"GET http://{ok}/nv\\r\\n\\r\\n",
    # 64 KiB of headers: as one line, and as 64 lines of 1 KiB (which the upstream server would accept)
    "big-header": f"GET http://{ok}/big HTTP/1.1\\r\\nHost: {ok}\\r\\n{A}X-Big: " + "a" * 65536 + "\\r\\n\\r\\n",
    "many-headers": f"GET http://{ok}/many HTTP/1.1\\r\\nHost: {ok}\\r\\n{A}" + "".join(f"X-H{i}: " + "b" * 1017 + "\\r\\n" for i in range(64)) + "\\r\\n",
}
for label in which.split(","):
    ctnet.out(label, ctnet.exchange(cases[label].encode("latin-1")))
    ctnet.out(label + "-after", ctnet.get(f"http://{ok}/after-{label}"))
if "cl-te" not in which:
    sys.exit(0)

# keep-alive: two requests on one connection, each judged on its own
s = ctnet.connect()
f = s.makefile("rb")
s.sendall(f"GET http://{ok}/ka1 HTTP/1.1\\r\\nHost: {ok}\\r\\n{A}\\r\\n".encode())
r1 = ctnet.read_response(f)
s.sendall(f"GET http://{other}/ka2 HTTP/1.1\\r\\nHost: {ok}\\r\\n{A}\\r\\n".encode())
r2 = ctnet.read_response(f)
try:
    s.sendall(f"GET http://{ok}/ka3 HTTP/1.1\\r\\nHost: {ok}\\r\\n{A}Connection: close\\r\\n\\r\\n".encode())
    r3 = ctnet.read_response(f)
except OSError as e:
    r3 = {"status": None, "error": type(e).__name__}
ctnet.out("keepalive", {"statuses": [r1["status"], r2["status"], r3["status"]], "bodies": [r.get("body") for r in (r1, r2, r3)],
                        "errors": [r.get("error") for r in (r1, r2, r3)]})

# a Host header naming the allowed server does not redirect a request for another one
ctnet.out("host-header", ctnet.exchange(f"GET http://{other}/hh HTTP/1.1\\r\\nHost: {ok}\\r\\n{A}Connection: close\\r\\n\\r\\n".encode()))
# userinfo: the host is what follows the last "@"
ctnet.out("userinfo", ctnet.get(f"http://{ok}@127.0.0.2:{other.split(':')[1]}/ui"))
ctnet.out("userinfo2", ctnet.get(f"http://{ok}@{other}/ui2"))
"""


def _assert_refused_by_proxy(r, expect, server, p):
    # the answer comes from corral, not from the upstream server
    got = {label: (r[label]["status"], r[label].get("body", "").startswith("corral proxy:")) for label in expect}
    assert got == {label: (status, True) for label, status in expect.items()}, out_of(p)
    for label in expect:  # the proxy keeps serving: a new connection works
        after = r[f"{label}-after"]
        assert after["status"] == 200 and after["body"] == f"{server.body} path=/after-{label}\n", (label, after)


def test_malformed_requests_and_smuggling(launcher, ws, server, other):
    expect = {"cl-te": 400, "origin-form": 400, "garbage": 400, "no-version": 400}
    p = py_run(ws, SMUGGLE, server.hostport, other.hostport, ",".join(expect), allowed=[server.hostport])
    r = results(p)
    assert "userinfo2" in r, out_of(p)  # the script ran to the end
    _assert_refused_by_proxy(r, expect, server, p)
    ka = r["keepalive"]
    assert ka["statuses"][:2] == [200, 403], ka
    assert ka["bodies"][0] == f"{server.body} path=/ka1\n"
    assert other.hostport in ka["bodies"][1]
    # After the 403 the proxy may close the connection (it does today, without announcing it
    # with "Connection: close"); if it keeps it, the third request is served normally.
    ka3 = ka["statuses"][2] == 200
    assert ka3 or ka["errors"][2] in ("ConnectionResetError", "BrokenPipeError", "EOF"), ka
    assert r["host-header"]["status"] == 403, r["host-header"]
    for label, host in (("userinfo", f"127.0.0.2:{other.port}"), ("userinfo2", other.hostport)):
        assert r[label]["status"] == 403, r[label]
        assert host in r[label]["body"], r[label]
    # the server saw only the well-formed allowed requests
    assert sorted(server.paths()) == sorted([f"/after-{label}" for label in expect] + ["/ka1"] + ["/ka3"] * ka3)
    assert other.paths() == []


def test_oversized_request_head_refused_by_proxy(launcher, ws, server, other):
    expect = {"big-header": 431, "many-headers": 431}
    p = py_run(ws, SMUGGLE, server.hostport, other.hostport, ",".join(expect), allowed=[server.hostport])
    r = results(p)
    assert "many-headers-after" in r, out_of(p)
    _assert_refused_by_proxy(r, expect, server, p)
    assert sorted(server.paths()) == sorted(f"/after-{label}" for label in expect)  # never forwarded


# ---------------------------------------------------------------------------------------
# 10. SSRF: names and spellings of loopback
# ---------------------------------------------------------------------------------------


def test_localhost_allowed_explicitly(launcher, ws, server):
    code = ("import ctnet, sys\n"
            f"ctnet.out('name', ctnet.get('http://localhost:{server.port}/lh'))\n"
            # an allowed name does not allow the address it stands for
            f"ctnet.out('ip', ctnet.get('{server.url('/ip')}'))\n")
    ws.write("lh.py", code)
    p = net_run(ws, f'{curl("-o", "lh.out", f"http://localhost:{server.port}/curl")}; echo rc=$?; {PY} lh.py',
                allowed=["localhost"])
    assert "rc=0" in p.stdout, out_of(p)
    assert (ws.proj / "lh.out").read_text() == f"{server.body} path=/curl\n"
    r = results(p)
    assert r["name"]["status"] == 200 and r["name"]["body"] == f"{server.body} path=/lh\n", r["name"]
    assert r["ip"]["status"] == 403, r["ip"]
    assert server.paths() == ["/curl", "/lh"]


def test_denied_beats_allowed(launcher, ws, server):
    code = f"import ctnet\nctnet.out('r', ctnet.get('{server.url('/d')}'))\n"
    p = py_run(ws, code, allowed=[server.hostport], denied=[server.hostport])
    r = results(p)["r"]
    assert r["status"] == 403, out_of(p)
    assert "deny" in r["headers"]["x-corral-decision"], r["headers"]
    assert server.paths() == []


SPELLINGS = ["2130706433", "0x7f000001", "127.1", "0177.0.0.1", "[::ffff:127.0.0.1]"]


@pytest.mark.parametrize("mode", ["allowed", "denied"])
def test_ip_spellings_are_judged_as_127_0_0_1(launcher, ws, server, mode):
    code = "import ctnet, sys\nfor i, h in enumerate(sys.argv[2:]):\n" \
           "    ctnet.out(h, ctnet.get(f'http://{h}:{sys.argv[1]}/sp{i}'))\n"
    kw = {"allowed": [server.hostport]}
    if mode == "denied":
        kw = {"allowed": [f"127.0.0.1:{server.port}", "localhost"], "denied": [server.hostport]}
    p = py_run(ws, code, server.port, *SPELLINGS, **kw)
    r = results(p)
    assert sorted(r) == sorted(SPELLINGS), out_of(p)
    if mode == "allowed":
        for i, h in enumerate(SPELLINGS):
            assert r[h]["status"] == 200 and r[h]["body"] == f"{server.body} path=/sp{i}\n", (h, r[h])
        assert server.paths() == [f"/sp{i}" for i in range(len(SPELLINGS))]
    else:
        for h in SPELLINGS:
            assert r[h]["status"] == 403, (h, r[h])
            assert "deny" in r[h]["headers"]["x-corral-decision"], (h, r[h]["headers"])
        assert server.paths() == []


# ---------------------------------------------------------------------------------------
# 11. load and slow clients
# ---------------------------------------------------------------------------------------

CONCURRENT = """
import asyncio, json, sys, ctnet
N, hostport = int(sys.argv[1]), sys.argv[2]
A = ctnet.auth_header()
connected = 0
all_in = asyncio.Event()

async def one(i):
    global connected
    r, w = await asyncio.open_connection("127.0.0.1", 3128)
    connected += 1
    if connected == N:
        all_in.set()
    await all_in.wait()  # every connection is open before any request is sent
    w.write(f"GET http://{hostport}/c{i} HTTP/1.1\\r\\nHost: {hostport}\\r\\n{A}Connection: close\\r\\n\\r\\n".encode())
    await w.drain()
    data = await r.read()
    w.close()
    head, _, body = data.partition(b"\\r\\n\\r\\n")
    return head.split(b"\\r\\n")[0].decode(), body.decode()

async def main():
    res = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(N)), return_exceptions=True), 120)
    ok = sum(1 for i, x in enumerate(res) if not isinstance(x, BaseException) and x[0].startswith("HTTP/1.1 200")
             and x[1].endswith(f"path=/c{i}\\n"))
    errors = sorted({repr(x)[:120] for x in res if isinstance(x, BaseException)})
    print(json.dumps({"label": "load", "ok": ok, "errors": errors}))

asyncio.run(main())
"""


def test_500_concurrent_requests(launcher, ws, server):
    n = 500
    p = py_run(ws, CONCURRENT, n, server.hostport, allowed=[server.hostport], timeout=180)
    r = results(p)
    assert (r["load"]["ok"], r["load"]["errors"]) == (n, []), out_of(p)
    assert sorted(server.paths()) == sorted(f"/c{i}" for i in range(n))
    assert len([x for x in audit(ws) if x["decision"] == "allow"]) == n


SLOW = """
import ctnet, sys, time
ok = sys.argv[1]
slow = [ctnet.connect() for _ in range(20)]
for s in slow:
    s.sendall(f"GET http://{ok}/slow HTTP/1.1\\r\\nHost: {ok}\\r\\n".encode())  # half a head, then nothing
t0 = time.monotonic()
r = ctnet.get(f"http://{ok}/fast")
ctnet.out("fast", {**r, "secs": time.monotonic() - t0})
time.sleep(0.5)
r = ctnet.get(f"http://{ok}/fast2")
ctnet.out("fast2", r)
for s in slow:
    s.close()
"""


def test_slow_client_does_not_block_others(launcher, ws, server):
    p = py_run(ws, SLOW, server.hostport, allowed=[server.hostport])
    r = results(p)
    assert r["fast"]["status"] == 200 and r["fast"]["body"] == f"{server.body} path=/fast\n", out_of(p)
    assert r["fast"]["secs"] < 5
    assert r["fast2"]["status"] == 200
    assert server.paths() == ["/fast", "/fast2"]


# ---------------------------------------------------------------------------------------
# 12. audit log
# ---------------------------------------------------------------------------------------


def test_audit_records_and_no_token(launcher, ws, server, other):
    script = (f'echo "PROXY=$HTTP_PROXY"; {curl("-o", "/dev/null", server.url("/a"))}; '
              f'{curl("-o", "/dev/null", server.url("/b"))}; {curl("-o", "/dev/null", other.url("/c"))}; '
              f'{curl("-o", "/dev/null", "-p", server.url("/d"))}; echo done')
    p = net_run(ws, script, allowed=[server.hostport])
    assert p.stdout.rstrip().endswith("done"), out_of(p)
    m = re.search(r"^PROXY=http://(corral-[^:]+):([^@]+)@127\.0\.0\.1:3128$", p.stdout, re.M)
    assert m, p.stdout
    user, token = m.groups()
    assert len(token) >= 16
    recs = audit(ws)
    got = [(r["proto"], r["host"], r["port"], r["decision"], r.get("path"), r.get("status")) for r in recs]
    assert got == [
        ("http", "127.0.0.1", server.port, "allow", "/a", 200),
        ("http", "127.0.0.1", server.port, "allow", "/b", 200),
        ("http", "127.0.0.1", other.port, "block", "/c", 403),
        ("connect", "127.0.0.1", server.port, "allow", None, None),
    ], got
    run_id = user[len("corral-"):]
    assert {r["run"] for r in recs} == {run_id}
    for r in recs:
        assert set(r) <= {"time", "run", "command", "proto", "host", "port", "address", "decision", "rule", "reason",
                          "method", "path", "status", "up", "down", "ms"}, r
    assert recs[2]["reason"] and recs[0]["rule"] == server.hostport
    text = audit_path(ws).read_text()
    assert token not in text
    assert token not in p.stderr
    assert oct(audit_path(ws).stat().st_mode & 0o777) == "0o600"
    assert audit_path(ws).stat().st_uid == launcher.uid


def test_audit_omits_query_string(launcher, ws, server):
    # audit.py: "never a header value, a body, a URL query or proxy credentials (the query
    # string may carry tokens, so only the path is kept)"
    secret = helpers.marker()
    ws.write("url.txt", server.url(f"/q?token={secret}"))  # not on the command line (which is audited)
    p = net_run(ws, curl("-o", "/dev/null", '"$(cat url.txt)"'), allowed=[server.hostport])
    assert p.returncode == 0, out_of(p)
    assert server.paths() == [f"/q?token={secret}"]  # forwarded intact
    recs = audit(ws)
    assert [r.get("path") for r in recs] == ["/q"], recs
    assert secret not in audit_path(ws).read_text()


# ---------------------------------------------------------------------------------------
# 13. git over (dumb) http
# ---------------------------------------------------------------------------------------


@pytest.fixture
def git_server(ws):
    root = ws.base / "srv"
    work = ws.base / "gitwork"
    root.mkdir()
    work.mkdir()
    git = ["git", "-c", "user.email=ct@example.invalid", "-c", "user.name=ct", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(work)], check=True)
    (work / "hello.txt").write_text("hello from the host repo\n")
    subprocess.run([*git, "-C", str(work), "add", "hello.txt"], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-q", "-m", "init"], check=True)
    subprocess.run([*git, "clone", "-q", "--bare", str(work), str(root / "repo.git")], check=True)
    subprocess.run(["git", "-C", str(root / "repo.git"), "update-server-info"], check=True)
    s = Server(root)
    yield s
    s.close()


def test_git_clone_over_http(launcher, ws, git_server, other):
    script = (f"git clone -q {git_server.url('/repo.git')} cl; echo a=$?; cat cl/hello.txt; "
              f"git clone -q {other.url('/repo.git')} cl2 2>blocked.err; echo b=$?")
    p = net_run(ws, script, allowed=[git_server.hostport])
    assert "a=0" in p.stdout and "hello from the host repo" in p.stdout, out_of(p)
    assert (ws.proj / "cl" / "hello.txt").read_text() == "hello from the host repo\n"
    assert any(x.startswith("/repo.git/info/refs") for x in git_server.paths()), git_server.paths()
    assert "b=128" in p.stdout, out_of(p)
    assert "403" in (ws.proj / "blocked.err").read_text()
    assert not (ws.proj / "cl2" / ".git").exists()
    assert other.paths() == []


# ---------------------------------------------------------------------------------------
# 14. node
# ---------------------------------------------------------------------------------------

NODE = r"""
const http = require('http');
const u = new URL(process.env.HTTP_PROXY);
const auth = 'Basic ' + Buffer.from(decodeURIComponent(u.username) + ':' + decodeURIComponent(u.password)).toString('base64');
function viaProxy(target) {
  return new Promise((resolve) => {
    const req = http.request({host: '127.0.0.1', port: 3128, path: target, headers: {'Proxy-Authorization': auth}}, (res) => {
      let body = '';
      res.on('data', (d) => body += d);
      res.on('end', () => resolve({status: res.statusCode, decision: res.headers['x-corral-decision'] || null, body}));
    });
    req.on('error', (e) => resolve({error: e.code}));
    req.end();
  });
}
(async () => {
  console.log(JSON.stringify({label: 'allowed', ...(await viaProxy(process.argv[2]))}));
  console.log(JSON.stringify({label: 'blocked', ...(await viaProxy(process.argv[3]))}));
  const t0 = Date.now();
  // a referenced timer: keeps node alive until fetch settles (AbortSignal.timeout's is unreferenced)
  const guard = setTimeout(() => { console.log(JSON.stringify({label: 'fetch', result: 'unsettled'})); process.exit(3); }, 9000);
  try {
    await fetch(process.argv[4], {signal: AbortSignal.timeout(8000)});
    console.log(JSON.stringify({label: 'fetch', result: 'ok'}));
  } catch (e) {
    console.log(JSON.stringify({label: 'fetch', result: 'error', cause: String((e.cause && e.cause.code) || e.name), ms: Date.now() - t0}));
  }
  clearTimeout(guard);
})();
"""


def test_node_http_via_proxy_and_direct_fetch_blocked(launcher, ws, server, other):
    # Node 18-22's fetch ignores HTTP_PROXY (NODE_USE_ENV_PROXY needs a newer Node), so fetch
    # connects directly: that goes through the transparent listener and is refused. Through the
    # proxy, node's http module is used with an absolute-form request.
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    ws.write("n.js", NODE)
    p = net_run(ws, f"node n.js {server.url('/node')} {other.url('/node')} http://{DOC_TCP[0]}:{DOC_TCP[1]}/",
                allowed=[server.hostport])
    r = results(p)
    assert "fetch" in r, out_of(p)
    assert r["allowed"] == {"status": 200, "decision": None, "body": f"{server.body} path=/node\n"}, out_of(p)
    assert r["blocked"]["status"] == 403 and r["blocked"]["decision"].startswith("blocked"), r["blocked"]
    # The connection is reset at once (see the audit record below), but in roughly one run in
    # ten Node 20's fetch misses the reset and only fails at its own 8 s abort timeout (Python
    # clients see ECONNRESET within milliseconds every time), so no time bound is asserted here.
    assert r["fetch"]["result"] == "error", r["fetch"]
    assert r["fetch"]["cause"] in ("ECONNRESET", "ECONNREFUSED", "UND_ERR_SOCKET", "TimeoutError"), r["fetch"]
    assert server.paths() == ["/node"] and other.paths() == []
    recs = [(x["proto"], x["host"], x["port"], x["decision"]) for x in audit(ws)]
    assert ("transparent", *DOC_TCP, "block") in recs, recs


# ---------------------------------------------------------------------------------------
# fail closed: if the proxy dies, the sandbox has no way out at all
# ---------------------------------------------------------------------------------------

PROXY_DEATH = r"""
import ctnet, os, socket, sys, time
ok = sys.argv[1]
ctnet.out("before", ctnet.get(f"http://{ok}/before"))
open("first.done", "w").close()
for _ in range(300):  # the test kills the proxy, then creates "go"
    if os.path.exists("go"):
        break
    time.sleep(0.05)
res = {}
for label, addr in (("http", ("127.0.0.1", 3128)), ("socks", ("127.0.0.1", 1080)), ("direct", ("203.0.113.5", 443))):
    try:
        s = socket.create_connection(addr, timeout=3)
        s.sendall(f"GET http://{ok}/after HTTP/1.1\r\nHost: {ok}\r\n\r\n".encode())
        res[label] = "answered:" + s.recv(100).decode("latin-1")
    except OSError as e:
        res[label] = type(e).__name__
ctnet.out("after", res)
"""


def _descendants_named(root_pid: int, comm: str) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            todo.append(child)
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == comm:
                    found.append(child)
            except OSError:
                pass
    return found


def test_dead_proxy_means_no_network(launcher, ws, server):
    import signal
    import time

    (ws.proj / "ctnet.py").write_text(CTNET)
    ws.write("death.py", PROXY_DEATH)
    state = state_dir(ws)
    state.mkdir(exist_ok=True)
    s = ws.settings(allowedDomains=[server.hostport], allowWrite=[str(ws.proj)])
    proc = subprocess.Popen(launcher.argv(["run", "--settings", str(s), "--", PY, "death.py", server.hostport]),
                            cwd=str(ws.proj), env={**launcher.env, "XDG_STATE_HOME": str(state)}, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (ws.proj / "first.done").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proxies = _descendants_named(proc.pid, "corral-proxy")
        assert len(proxies) == 1, proxies
        os.kill(proxies[0], signal.SIGKILL)
        time.sleep(0.2)
        (ws.proj / "go").write_text("")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    r = {}
    for line in out.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            r[rec.pop("label")] = rec
    assert r["before"]["status"] == 200, out + err
    # every way out is gone: the listeners died with the proxy, nothing else leads anywhere
    assert r["after"] == {"http": "ConnectionRefusedError", "socks": "ConnectionRefusedError",
                          "direct": "ConnectionRefusedError"}, out + err
    assert server.paths() == ["/before"]
    assert "egress proxy stopped unexpectedly" in err, err


BIG_KEEPALIVE = r"""
import ctnet, hashlib, json, sys
ok = sys.argv[1]
A = ctnet.auth_header()
s = ctnet.connect()
f = s.makefile("rb")
got = []
for path in ("/blob/3000000", "/small", "/blob/70000", "/blob/10", "/blob/5000001"):
    s.sendall(f"GET http://{ok}{path} HTTP/1.1\r\nHost: {ok}\r\n{A}\r\n".encode())
    r = ctnet.read_response(f)
    got.append([r["status"], len(r["body"]), hashlib.sha256(r["body"].encode("latin-1")).hexdigest()])
ctnet.out("big", {"got": got})
"""


def test_large_bodies_on_a_kept_alive_connection(launcher, ws, server):
    # Large Content-Length bodies are spliced past h11; the connection must stay in step.
    import hashlib

    p = py_run(ws, BIG_KEEPALIVE, server.hostport, allowed=[server.hostport])
    r = results(p)
    assert "big" in r, out_of(p)

    def blob(n):
        return (b"0123456789abcdef" * (n // 16 + 1))[:n]

    small = f"{server.body} path=/small\n".encode()
    expected = [[200, len(b), hashlib.sha256(b).hexdigest()]
                for b in (blob(3000000), small, blob(70000), blob(10), blob(5000001))]
    assert r["big"]["got"] == expected, out_of(p)
    recs = [x for x in audit(ws) if x.get("proto") == "http"]
    assert [x.get("down") for x in recs] == [3000000, len(small), 70000, 10, 5000001], recs
