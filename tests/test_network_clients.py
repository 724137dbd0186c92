"""The egress proxy with real clients: the library API, ssh/git, pip, npm, chunked streaming,
concurrent runs and the `corral audit` command line.

Every test runs for both launchers (root and the unprivileged `corral-test` user). Servers
listen on the host's 127.0.0.1 only and are started by the test; every assertion looks at the
host side (what a server received, the audit log, files written into the workspace).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

import helpers
from test_network import PY, audit, net_run, out_of, py_run, results, state_dir
from test_network import curl as _curl




def _state(ws) -> Path:
    """The test's own XDG_STATE_HOME, owned by the launcher (the proxy writes the audit log there)."""
    state = state_dir(ws)
    state.mkdir(exist_ok=True)
    ws.chown()
    return state


def _audit_file(ws) -> Path:
    return state_dir(ws) / "corral" / "audit.jsonl"


# ---------------------------------------------------------------------------------------
# 1. the library: one Sandbox, one proxy, many runs; allow/deny at run time
# ---------------------------------------------------------------------------------------

LIBRARY = r"""
import json, os, subprocess, sys
from corral import Policy, Sandbox

proj, A, B = sys.argv[1], sys.argv[2], sys.argv[3]

def cmd(*urls):
    return ["bash", "-c", "readlink /proc/self/ns/net; " + "; ".join(
        f"curl -sS --max-time 20 -o /dev/null -w '%{{http_code}}\\n' {u}" for u in urls)]

def parse(r):
    lines = r.stdout.splitlines()
    return {"rc": r.returncode, "ns": lines[0] if lines else None, "codes": lines[1:], "err": r.stderr[-500:]}

def session(sb):
    n = sb._network
    return {"proxy": id(n.proxy), "net_fd": n.ns.net_fd, "ns": os.readlink(f"/proc/self/fd/{n.ns.net_fd}")}

def run(sb, *urls):
    return parse(sb.run(cmd(*urls), capture_output=True, text=True, timeout=60))

res = {"host_ns": os.readlink("/proc/self/ns/net")}
policy = Policy.from_toml(f'[network]\nallowed_domains=["{A}"]\n', cwd=proj)
with Sandbox(policy, cwd=proj) as sb:
    res["a1"] = run(sb, f"http://{A}/a1")
    res["before"] = session(sb)
    res["b1"] = run(sb, f"http://{B}/b1")
    sb.allow_domain(B)
    res["b2"] = run(sb, f"http://{B}/b2")
    # an argv for any process runner: same namespace, same proxy, the current rules
    argv = sb.wrap(cmd(f"http://{A}/w1", f"http://{B}/w2"))
    res["w"] = parse(subprocess.run(argv, capture_output=True, text=True, timeout=60))
    res["a2"] = run(sb, f"http://{A}/a2")
    sb.deny_domain(A)
    res["a3"] = run(sb, f"http://{A}/a3")
    res["b3"] = run(sb, f"http://{B}/b3")
    res["after"] = session(sb)
print("RESULT " + json.dumps(res), flush=True)
"""


def _run_library_script(launcher, ws, code, *args, timeout=240):
    state = _state(ws)
    script = ws.write(ws.base / f"lib_{helpers.marker()[-8:]}.py", code)
    env = {**launcher.env, "XDG_STATE_HOME": str(state)}
    p = subprocess.run([*launcher.prefix, sys.executable, str(script), *map(str, args)],
                       cwd=str(ws.proj), env=env, capture_output=True, text=True, timeout=timeout)
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    assert p.returncode == 0 and line, out_of(p)
    return json.loads(line[0][len("RESULT "):])


def test_library_one_proxy_many_runs_runtime_allow_deny(launcher, ws, server, other):
    A, B = server, other
    r = _run_library_script(launcher, ws, LIBRARY, ws.proj, A.hostport, B.hostport)
    labels = ("a1", "b1", "b2", "w", "a2", "a3", "b3")
    codes = {k: (r[k]["rc"], r[k]["codes"]) for k in labels}
    assert codes == {"a1": (0, ["200"]), "b1": (0, ["403"]), "b2": (0, ["200"]), "w": (0, ["200", "200"]),
                     "a2": (0, ["200"]), "a3": (0, ["403"]), "b3": (0, ["200"])}, (codes, r)
    # one proxy object and one namespace served every run (sb.run and sb.wrap alike)
    assert r["before"] == r["after"], r
    assert {r[k]["ns"] for k in labels} == {r["before"]["ns"]}, r
    assert r["before"]["ns"].startswith("net:[") and r["before"]["ns"] != r["host_ns"], r
    # host side: exactly the allowed requests arrived
    assert A.paths() == ["/a1", "/w1", "/a2"], A.paths()
    assert B.paths() == ["/b2", "/w2", "/b3"], B.paths()
    recs = [x for x in audit(ws) if x.get("proto") == "http"]
    got = [(x["port"], x["path"], x["decision"]) for x in recs]
    assert got == [(A.port, "/a1", "allow"), (B.port, "/b1", "block"), (B.port, "/b2", "allow"),
                   (A.port, "/w1", "allow"), (B.port, "/w2", "allow"), (A.port, "/a2", "allow"),
                   (A.port, "/a3", "block"), (B.port, "/b3", "allow")], got
    assert "deni" in recs[6].get("reason", ""), recs[6]  # refused by the deny, not for lack of an allow
    assert "deni" not in recs[1].get("reason", ""), recs[1]
    # each command is attributed separately (the wrapped one made two requests)
    assert len({x["run"] for x in recs}) == 7, recs
    assert recs[3]["run"] == recs[4]["run"]


# ---------------------------------------------------------------------------------------
# 2. git over ssh: GIT_SSH_COMMAND tunnels through the proxy
# ---------------------------------------------------------------------------------------


class BannerServer:
    """A TCP server that greets like an ssh server and records what the client sends."""

    BANNER = b"SSH-2.0-CorralTest\r\n"

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        data = b""
        try:
            conn.sendall(self.BANNER)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                conn.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = conn.recv(4096)
                except socket.timeout:
                    break
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        finally:
            conn.close()
            with self.lock:
                self.received.append(data)

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def banner():
    s = BannerServer()
    yield s
    s.close()


@pytest.mark.parametrize("mode", ["allowed", "blocked"])
def test_git_over_ssh_through_proxy(launcher, ws, banner, server, mode):
    allowed = [banner.hostport] if mode == "allowed" else [server.hostport]
    script = ('printf "%s\\n" "GSC=$GIT_SSH_COMMAND"; '
              f"timeout 40 git ls-remote ssh://git@127.0.0.1:{banner.port}/repo.git >ls.out 2>ls.err; echo rc=$?")
    p = net_run(ws, script, allowed=allowed, timeout=90)
    assert "rc=" in p.stdout, out_of(p)
    gsc = [x for x in p.stdout.splitlines() if x.startswith("GSC=")][0]
    assert "ProxyCommand" in gsc and "connect_stdio" in gsc, gsc
    rc = int(p.stdout.split("rc=")[1].split()[0])
    assert rc != 0, out_of(p)  # the fake server speaks no more than a banner
    err = (ws.proj / "ls.err").read_text()
    if mode == "allowed":  # the handler thread records what it read when the connection ends
        helpers.wait_for(lambda: len(banner.received) > 0, timeout=5)
    recs = [(x["proto"], x["host"], x["port"], x["decision"]) for x in audit(ws)]
    if mode == "allowed":
        assert len(banner.received) == 1, (banner.received, err)
        assert banner.received[0].startswith(b"SSH-2.0-OpenSSH"), (banner.received, err)
        assert ("connect", "127.0.0.1", banner.port, "allow") in recs, recs
    else:
        assert banner.received == [], banner.received
        assert ("connect", "127.0.0.1", banner.port, "block") in recs, recs
        assert not any(x[2] == banner.port and x[3] == "allow" for x in recs), recs
        assert "403" in err, err


# ---------------------------------------------------------------------------------------
# 3. pip through the proxy
# ---------------------------------------------------------------------------------------


def _wheel_bytes() -> bytes:
    files = {
        "ctpkg/__init__.py": b"VALUE = 'corral-test'\n",
        "ctpkg-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: ctpkg\nVersion: 0.1\n",
        "ctpkg-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: corral-test\nRoot-Is-Purelib: true\n"
                                     b"Tag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("ctpkg-0.1.dist-info/RECORD,,")
    files["ctpkg-0.1.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


class FileServer:
    """http.server's SimpleHTTPRequestHandler over a directory, recording the paths asked for."""

    def __init__(self, root: Path, routes: dict | None = None):
        owner = self
        self.paths: list[str] = []
        self.lock = threading.Lock()
        self.routes = routes or {}  # exact path -> (content type, bytes), served before the directory

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(root), **kw)

            def log_message(self, *args):
                pass

            def do_GET(self):
                with owner.lock:
                    owner.paths.append(self.path)
                route = owner.routes.get(self.path.split("?", 1)[0])
                if route is None:
                    return super().do_GET()
                ctype, body = route
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Srv(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.httpd = Srv(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def seen(self) -> list[str]:
        with self.lock:
            return list(self.paths)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


WHEEL = "ctpkg-0.1-py3-none-any.whl"


@pytest.fixture
def pypi(ws):
    root = ws.base / "pypi"
    (root / "simple" / "ctpkg").mkdir(parents=True)
    (root / "files").mkdir()
    data = _wheel_bytes()
    (root / "files" / WHEEL).write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    (root / "simple" / "index.html").write_text('<!DOCTYPE html><html><body><a href="ctpkg/">ctpkg</a></body></html>\n')
    (root / "simple" / "ctpkg" / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="../../files/{WHEEL}#sha256={sha}">{WHEEL}</a></body></html>\n')
    s = FileServer(root)
    s.wheel = data
    yield s
    s.close()


def _pip_python(launcher) -> list[str]:
    """A python whose pip the launcher can run: the system one, else the venv's."""
    for cand in ([PY, "-m", "pip"], [sys.executable, "-m", "pip"]):
        probe = subprocess.run([*launcher.prefix, *cand, "--version"], env=launcher.env, capture_output=True,
                               text=True, timeout=60, cwd="/")
        if probe.returncode == 0:
            return cand
    pytest.skip(f"no pip runnable as {launcher.name}")


@pytest.mark.parametrize("mode", ["allowed", "blocked"])
def test_pip_download_through_proxy(launcher, ws, pypi, server, mode):
    pip = " ".join(_pip_python(launcher))
    index = f"http://127.0.0.1:{pypi.port}/simple/"
    script = (f"{pip} download --no-deps --no-cache-dir --disable-pip-version-check --retries 0 --timeout 15 "
              f"--index-url {index} -d out ctpkg; echo rc=$?")
    allowed = [pypi.hostport] if mode == "allowed" else [server.hostport]
    p = net_run(ws, script, allowed=allowed, timeout=180)
    assert "rc=" in p.stdout, out_of(p)
    rc = int(p.stdout.split("rc=")[1].split()[0])
    recs = [(x["proto"], x["port"], x.get("path"), x["decision"]) for x in audit(ws)]
    got = ws.proj / "out" / WHEEL
    if mode == "allowed":
        assert rc == 0, out_of(p)
        assert got.read_bytes() == pypi.wheel
        seen = pypi.seen()
        assert "/simple/ctpkg/" in seen and f"/files/{WHEEL}" in seen, seen
        assert ("http", pypi.port, "/simple/ctpkg/", "allow") in recs, recs
        assert ("http", pypi.port, f"/files/{WHEEL}", "allow") in recs, recs
    else:
        assert rc != 0, out_of(p)
        assert not got.exists()
        assert pypi.seen() == []
        assert any(x[1] == pypi.port and x[3] == "block" for x in recs), recs
        assert not any(x[1] == pypi.port and x[3] == "allow" for x in recs), recs


# ---------------------------------------------------------------------------------------
# 4. npm through the proxy
# ---------------------------------------------------------------------------------------


@pytest.fixture
def npm_registry(ws):
    root = ws.base / "npmreg"
    root.mkdir()
    s = FileServer(root)
    base = f"http://127.0.0.1:{s.port}"
    doc = {
        "_id": "ctpkg", "name": "ctpkg", "description": "corral test package",
        "dist-tags": {"latest": "0.1.0"},
        "versions": {"0.1.0": {"name": "ctpkg", "version": "0.1.0", "_id": "ctpkg@0.1.0",
                               "dist": {"tarball": f"{base}/ctpkg/-/ctpkg-0.1.0.tgz",
                                        "shasum": "0" * 40}}},
        "time": {"created": "2020-01-01T00:00:00.000Z", "modified": "2020-01-01T00:00:00.000Z",
                 "0.1.0": "2020-01-01T00:00:00.000Z"},
    }
    s.routes["/ctpkg"] = ("application/json", json.dumps(doc).encode())
    yield s
    s.close()


@pytest.mark.parametrize("mode", ["allowed", "blocked"])
def test_npm_view_through_proxy(launcher, ws, npm_registry, server, mode):
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    reg = npm_registry
    script = ('export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false; '
              f'timeout 60 npm view ctpkg version --registry http://127.0.0.1:{reg.port}/ '
              '--cache "$TMPDIR/npmcache" --fetch-retries 0 >npm.out 2>npm.err; echo rc=$?')
    allowed = [reg.hostport] if mode == "allowed" else [server.hostport]
    p = net_run(ws, script, allowed=allowed, timeout=120)
    assert "rc=" in p.stdout, out_of(p)
    rc = int(p.stdout.split("rc=")[1].split()[0])
    out = (ws.proj / "npm.out").read_text()
    err = (ws.proj / "npm.err").read_text()
    recs = [(x["proto"], x["port"], x.get("path"), x["decision"]) for x in audit(ws)]
    if mode == "allowed":
        assert rc == 0 and out.strip() == "0.1.0", (out, err, out_of(p))
        assert "/ctpkg" in reg.seen(), reg.seen()
        # npm used the HTTP_PROXY variable: the request is audited as proxied http, not transparent
        assert ("http", reg.port, "/ctpkg", "allow") in recs, recs
    else:
        assert rc != 0 and "0.1.0" not in out, (out, err)
        assert reg.seen() == []
        assert ("http", reg.port, "/ctpkg", "block") in recs, recs
        assert "403" in err, err


# ---------------------------------------------------------------------------------------
# 5. chunked request and response bodies, streamed
# ---------------------------------------------------------------------------------------


class ChunkedUpstream:
    """Raw-socket server: reads one request with a chunked body, records the decoded body,
    replies with a chunked body sent in several chunks with pauses between them."""

    CHUNKS = [b"first-chunk;", b"x" * 5000 + b";", b"third;", "\u00e9t\u00e9-unicode;".encode(), b"last"]
    PAUSE = 0.3

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.requests: list[dict] = []
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        try:
            conn.settimeout(15)
            f = conn.makefile("rb")
            request_line = f.readline().decode("latin-1").rstrip("\r\n")
            headers = {}
            while True:
                h = f.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            body = b""
            if "chunked" in headers.get("transfer-encoding", "").lower():
                while True:
                    size = int(f.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while f.readline() not in (b"\r\n", b"\n", b""):  # trailers
                            pass
                        break
                    body += f.read(size)
                    f.readline()
            elif "content-length" in headers:
                body = f.read(int(headers["content-length"]))
            self.requests.append({"line": request_line, "headers": headers, "body": body})
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                         b"Connection: close\r\n\r\n")
            for chunk in self.CHUNKS:
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                time.sleep(self.PAUSE)
            conn.sendall(b"0\r\n\r\n")
        except Exception as exc:  # recorded: the test reports it
            self.errors.append(repr(exc))
        finally:
            conn.close()

    def close(self):
        self.sock.close()


CHUNKED_CLIENT = r'''
import base64, json, sys, time, ctnet
target = sys.argv[1]
body_chunks = [b"alpha-", b"B" * 70000, b"-gamma-", "\u00fcnicode".encode(), b"-end"]
s = ctnet.connect(timeout=30)
head = (f"POST http://{target}/upload HTTP/1.1\r\nHost: {target}\r\n" + ctnet.auth_header() +
        "Transfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n")
s.sendall(head.encode())
for c in body_chunks:
    s.sendall(b"%x\r\n%s\r\n" % (len(c), c))
    time.sleep(0.05)
s.sendall(b"0\r\n\r\n")
f = s.makefile("rb")
status = f.readline().decode("latin-1").strip()
headers = {}
while True:
    h = f.readline()
    if h in (b"\r\n", b""):
        break
    k, _, v = h.decode("latin-1").partition(":")
    headers[k.strip().lower()] = v.strip()
arrivals, data = [], b""
if "chunked" in headers.get("transfer-encoding", ""):
    while True:
        size = int(f.readline().split(b";")[0].strip(), 16)
        if size == 0:
            break
        data += f.read(size)
        f.readline()
        arrivals.append([len(data), time.monotonic()])
else:
    while True:
        piece = f.read1(65536)
        if not piece:
            break
        data += piece
        arrivals.append([len(data), time.monotonic()])
sent = b"".join(body_chunks)
print(json.dumps({"label": "chunked", "status": status, "headers": headers,
                  "body_b64": base64.b64encode(data).decode(), "arrivals": arrivals,
                  "sent_sha": __import__("hashlib").sha256(sent).hexdigest(), "sent_len": len(sent)}), flush=True)
'''


@pytest.fixture
def chunked_upstream():
    s = ChunkedUpstream()
    yield s
    s.close()


def test_chunked_bodies_streamed_both_ways(launcher, ws, chunked_upstream):
    up = chunked_upstream
    p = py_run(ws, CHUNKED_CLIENT, up.hostport, allowed=[up.hostport], timeout=120)
    r = results(p).get("chunked")
    assert r is not None, out_of(p)
    assert up.errors == [], up.errors
    assert r["status"].startswith("HTTP/1.1 200"), r
    # the upstream got exactly the body the client sent in chunks
    assert len(up.requests) == 1, up.requests
    req = up.requests[0]
    assert req["line"] == "POST /upload HTTP/1.1", req["line"]
    sent = b"alpha-" + b"B" * 70000 + b"-gamma-" + "\u00fcnicode".encode() + b"-end"
    assert req["body"] == sent, (len(req["body"]), req["body"][:80])
    assert hashlib.sha256(sent).hexdigest() == r["sent_sha"]
    # the client got exactly the concatenated chunks of the response
    assert base64.b64decode(r["body_b64"]) == b"".join(ChunkedUpstream.CHUNKS)
    # ... streamed, not buffered: the first bytes arrived long before the last ones
    arrivals = r["arrivals"]
    assert len(arrivals) >= 2, arrivals
    spread = arrivals[-1][1] - arrivals[0][1]
    assert spread >= ChunkedUpstream.PAUSE * 2, arrivals
    recs = [x for x in audit(ws) if x.get("proto") == "http"]
    assert [(x["port"], x["method"], x["path"], x["decision"], x.get("status")) for x in recs] == \
        [(up.port, "POST", "/upload", "allow", 200)], recs
    assert recs[0].get("up", 0) >= len(sent), recs[0]


# ---------------------------------------------------------------------------------------
# 6. concurrent runs keep their own policies
# ---------------------------------------------------------------------------------------

LOOP = r"""
me=$1 other=$2 a=$3 b=$4 sync=$5
echo "PROXY=$HTTP_PROXY"
touch "$sync/ready.$me"
for _ in $(seq 600); do [ -e "$sync/ready.$other" ] && break; sleep 0.05; done
[ -e "$sync/ready.$other" ] && echo "overlap=yes"
for i in $(seq 20); do
  ca=$(curl -s --max-time 20 -o /dev/null -w '%{http_code}' "http://$a/r$me-a$i")
  cb=$(curl -s --max-time 20 -o /dev/null -w '%{http_code}' "http://$b/r$me-b$i")
  echo "$i $ca $cb"
  sleep 0.02
done
"""


@pytest.mark.parametrize("cwd", ["separate", "shared"])
def test_concurrent_runs_keep_their_own_policy(launcher, ws, server, other, cwd):
    # "shared": both runs in one directory, so they also share its protected-file placeholders
    # (they used to race on creating them: `cannot create placeholder .../.bashrc: File exists`).
    A, B = server, other
    state = _state(ws)
    proj2, sync = (ws.base / "proj2" if cwd == "separate" else ws.proj), ws.base / "sync"
    proj2.mkdir(exist_ok=True)
    sync.mkdir()
    ws.write(ws.base / "loop.sh", LOOP)
    s1 = ws.settings("s1.json", allowedDomains=[A.hostport], allowWrite=[str(ws.proj), str(sync)])
    s2 = ws.settings("s2.json", allowedDomains=[B.hostport], allowWrite=[str(proj2), str(sync)])
    env = {**launcher.env, "XDG_STATE_HOME": str(state)}
    procs = []
    for n, s, run_cwd in ((1, s1, ws.proj), (2, s2, proj2)):
        argv = launcher.argv(["run", "--settings", str(s), "--", "bash", str(ws.base / "loop.sh"), str(n),
                              str(3 - n), A.hostport, B.hostport, str(sync)])
        procs.append(subprocess.Popen(argv, cwd=str(run_cwd), env=env, text=True, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=180)
            outs.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    runs = {}
    for n, (rc, out, err) in zip((1, 2), outs):
        assert rc == 0, outs
        assert "overlap=yes" in out, (n, out, err)
        rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
        assert [int(r[0]) for r in rows] == list(range(1, 21)), (n, out)
        expect = ("200", "403") if n == 1 else ("403", "200")
        assert {(r[1], r[2]) for r in rows} == {expect}, (n, out, err)
        runs[n] = [x for x in out.splitlines() if x.startswith("PROXY=")][0].split("corral-", 1)[1].split(":")[0]
    assert sorted(A.paths()) == sorted(f"/r1-a{i}" for i in range(1, 21)), A.paths()
    assert sorted(B.paths()) == sorted(f"/r2-b{i}" for i in range(1, 21)), B.paths()
    recs = audit(ws)
    assert runs[1] != runs[2]
    for n, allowed_port, blocked_port in ((1, A.port, B.port), (2, B.port, A.port)):
        mine = [(x["port"], x["decision"]) for x in recs if x["run"] == runs[n]]
        assert sorted(mine) == sorted([(allowed_port, "allow")] * 20 + [(blocked_port, "block")] * 20), (n, mine)
    assert {x["run"] for x in recs} == {runs[1], runs[2]}


# ---------------------------------------------------------------------------------------
# 7. `corral audit`
# ---------------------------------------------------------------------------------------

BLOCKED_NAME = "blocked-ct.example.org"


def test_audit_cli(launcher, ws, server):
    state = _state(ws)
    env = {"XDG_STATE_HOME": str(state)}
    p1 = net_run(ws, f'{_curl("-o", "/dev/null", "-w", "%{http_code}", server.url("/first"))}; echo; '
                     f'{_curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{BLOCKED_NAME}/nope")}; echo',
                 allowed=[server.hostport])
    assert p1.stdout.split() == ["200", "403"], out_of(p1)
    p2 = net_run(ws, _curl("-o", "/dev/null", "-w", "%{http_code}", server.url("/second")), allowed=[server.hostport])
    assert p2.stdout == "200", out_of(p2)
    recs = audit(ws)
    assert [(x["host"], x.get("path"), x["decision"]) for x in recs] == [
        ("127.0.0.1", "/first", "allow"), (BLOCKED_NAME, "/nope", "block"), ("127.0.0.1", "/second", "allow")], recs
    run1, run2 = recs[0]["run"], recs[2]["run"]
    assert recs[1]["run"] == run1 and run1 != run2
    path = str(_audit_file(ws))

    def cli(*args):
        p = helpers.run(launcher, ["audit", *args], ws.proj, timeout=60, env_extra=env)
        assert p.returncode == 0, out_of(p)
        return p.stdout

    table = cli("--file", path).splitlines()
    assert table[0].split()[:4] == ["TIME", "RUN", "PROTO", "DECISION"], table
    rows = table[1:]
    assert len(rows) == 3, table
    # columns: time, run, proto, decision, host (+ method and path), port, ...
    assert [r.split()[1:8] for r in rows] == [
        [run1[:12], "http", "allow", "127.0.0.1", "GET", "/first", str(server.port)],
        [run1[:12], "http", "block", BLOCKED_NAME, "GET", "/no", "80"],  # the host column is 30 wide
        [run2[:12], "http", "allow", "127.0.0.1", "GET", "/second", str(server.port)],
    ], rows
    assert rows[1].endswith("is not in allowedDomains"), rows[1]
    # the default path comes from XDG_STATE_HOME
    assert cli() == "\n".join(table) + "\n"

    blocked = cli("--file", path, "--blocked").splitlines()
    assert blocked == [table[0], rows[1]], blocked

    as_json = [json.loads(line) for line in cli("--file", path, "--json").splitlines()]
    assert as_json == recs

    only1 = [json.loads(line) for line in cli("--file", path, "--json", "--run", run1).splitlines()]
    assert only1 == recs[:2], only1
    only2 = cli("--file", path, "--run", run2).splitlines()
    assert only2 == [table[0], rows[2]], only2
    assert cli("--file", path, "--json", "--run", run2, "--blocked") == ""
    assert cli("--file", path, "--json", "--run", "no-such-run") == ""
