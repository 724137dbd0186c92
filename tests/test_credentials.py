"""The credential boundary end to end (issue 4): real sandboxes, real clients, real TLS servers.

Credentials stay outside the sandbox: inside, a variable (or a masked file) holds a placeholder
`corral-ph-<name>-<32 hex>`; corral's egress proxy terminates TLS with its own CA and swaps
the placeholder for the real value only in requests to the credential's bound hosts, only over
TLS. Every test below runs for both launchers (root and the unprivileged `corral-test` user),
passes the real secret through the launcher's environment (or a file / command on the host),
and asserts on host-side effects: what the HTTPS servers on 127.0.0.1 received, the audit log,
the files left in the workspace. The real value must never show up inside the sandbox, in
corral's output, in the audit log or in anything the sandbox wrote.

The `test_tlsservers_*` tests at the top check the host-side fixtures themselves (no corral).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

import helpers
from test_network import PY, Server, out_of, results
from tlsservers import (
    GIT_FILE_TEXT,
    GIT_ID,
    SSE_EVENTS,
    HttpsServer,
    basic_password,
    git_refs,
    make_ca,
    make_git_root,
    presented_token,
    read_ws_frame,
    ws_frame,
)

PH_RE = re.compile(r"corral-ph-[a-z0-9-]+-[0-9a-f]{32}")
CURL = "curl -sS --max-time 30"
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def real(name: str) -> str:
    """A fresh fake secret (built at run time, never a token-looking literal in the source)."""
    return f"ct-real-{name}-{secrets.token_hex(16)}"


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def test_ca():
    ca = make_ca()
    yield ca
    ca.cleanup()


@pytest.fixture
def tls_server(test_ca):
    s = HttpsServer(test_ca)
    yield s
    s.close()


@pytest.fixture
def tls_other(test_ca):
    """A second HTTPS server: reached as `localhost`, never bound to a credential."""
    s = HttpsServer(test_ca)
    yield s
    s.close()


@pytest.fixture
def rogue_server(test_ca):
    """An HTTPS server whose certificate the test CA did NOT sign."""
    s = HttpsServer(test_ca, untrusted=True)
    yield s
    s.close()


@pytest.fixture
def plain_server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def git_token():
    return real("git")


@pytest.fixture
def git_root():
    root = make_git_root()
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def git_server(test_ca, git_root, git_token):
    s = HttpsServer(test_ca, git_root=git_root, git_token=git_token)
    yield s
    s.close()


# ---------------------------------------------------------------------------------------------
# running corral with a credential policy
# ---------------------------------------------------------------------------------------------


def state_dir(ws) -> Path:
    state = ws.base / "state"
    if not state.exists():
        state.mkdir()
        ws.chown()
    return state


def audit_file(ws) -> Path:
    return ws.base / "state" / "corral" / "audit.jsonl"


def audit(ws) -> list[dict]:
    p = audit_file(ws)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def https_records(ws, port=None) -> list[dict]:
    return [r for r in audit(ws) if r.get("proto") == "https" and (port is None or r.get("port") == port)]


def srt(ws, allowed, *, ca=None, tls=True, exclude=None, env_vars=(), files=(), plaintext=None,
        host_match=None) -> dict:
    """srt-format settings: the workspace writable, `allowed` reachable, TLS termination on."""
    net: dict = {"allowedDomains": list(allowed), "deniedDomains": []}
    if tls:
        term: dict = {}
        if ca is not None:
            term["extraCaCertPaths"] = [str(ca.path)]
        if exclude:
            term["excludeDomains"] = list(exclude)
        net["tlsTerminate"] = term
    if host_match is not None:
        net["requireHostMatch"] = host_match
    body = {"network": net,
            "filesystem": {"denyRead": [], "allowRead": [], "allowWrite": [str(ws.proj)], "denyWrite": []}}
    creds: dict = {}
    if env_vars:
        creds["envVars"] = list(env_vars)
    if files:
        creds["files"] = list(files)
    if plaintext is not None:
        creds["allowPlaintextInject"] = plaintext
    if creds:
        body["credentials"] = creds
    return body


def mask_env(name: str, hosts=("127.0.0.1",)) -> dict:
    return {"name": name, "mode": "mask", "injectHosts": list(hosts)}


def toml_list(items) -> str:
    return "[" + ", ".join(json.dumps(str(i)) for i in items) + "]"


def native(ws, allowed, *, ca=None, terminate=("*",), http_rules=(), extra="") -> str:
    """A native TOML policy (credentials / endpoints go in `extra`)."""
    lines = ["[filesystem]", f"allow_write = {toml_list([ws.proj])}", "", "[network]",
             f"allowed_domains = {toml_list(allowed)}"]
    if http_rules:
        lines.append(f"http_rules = {toml_list(http_rules)}")
    lines += ["", "[network.tls]", f"terminate = {toml_list(terminate)}"]
    if ca is not None:
        lines.append(f"extra_ca = {toml_list([ca.path])}")
    return "\n".join(lines) + "\n\n" + extra


def cred_run(ws, script: str, settings, *, env_extra=None, timeout=180, name=None):
    """`corral run --settings FILE -c script` with the test's own XDG_STATE_HOME. `settings`: a
    dict (srt JSON) or TOML text. The settings file lives outside the working directory."""
    state = state_dir(ws)
    if isinstance(settings, dict):
        path = ws.write(ws.base / (name or "settings.json"), json.dumps(settings, indent=1))
    else:
        path = ws.write(ws.base / (name or "policy.toml"), settings)
    env = {"XDG_STATE_HOME": str(state), "GIT_TERMINAL_PROMPT": "0", **(env_extra or {})}
    return helpers.run(ws.launcher, ["run", "--settings", str(path), "-c", script], ws.proj,
                       timeout=timeout, env_extra=env)


def masked_run(ws, script: str, server, ca, gh: str):
    """`script` with GH_TOKEN (real value `gh`) masked for 127.0.0.1, reaching `server`."""
    return cred_run(ws, script, srt(ws, [server.hostport], ca=ca, env_vars=[mask_env("GH_TOKEN")]),
                    env_extra={"GH_TOKEN": gh})


def written_by_sandbox(ws) -> str:
    """Everything under proj/ and the state directory (audit log, quarantine), as text."""
    out = []
    for top in (ws.proj, ws.base / "state"):
        for root, _dirs, files in os.walk(top):
            for n in files:
                try:
                    out.append(Path(root, n).read_bytes().decode("latin-1"))
                except OSError:
                    pass
    return "\n".join(out)


def assert_no_leak(ws, p, *values) -> None:
    """No real value in corral's stdout/stderr, the audit log, or any file the run left behind."""
    raw_audit = audit_file(ws).read_text() if audit_file(ws).exists() else ""
    files = written_by_sandbox(ws)
    for v in values:
        assert v not in p.stdout, f"secret in stdout: {out_of(p)}"
        assert v not in p.stderr, f"secret in stderr: {out_of(p)}"
        assert v not in raw_audit, f"secret in the audit log: {raw_audit}"
        assert v not in files, "secret in a file the sandbox wrote (or quarantined)"


def lines_of(text: str, prefix: str) -> list[str]:
    return [line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)]


def one(text: str, prefix: str) -> str:
    found = lines_of(text, prefix)
    assert len(found) == 1, (prefix, text)
    return found[0]


# A CONNECT helper for raw clients inside the sandbox (WebSocket, certificate inspection).
CTCONNECT = r'''
import base64, os, socket, urllib.parse

def connect(host, port, timeout=30):
    u = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
    s = socket.create_connection((u.hostname, u.port), timeout=timeout)
    auth = base64.b64encode(f"{urllib.parse.unquote(u.username)}:{urllib.parse.unquote(u.password)}".encode()).decode()
    s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\nProxy-Authorization: Basic {auth}\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        c = s.recv(1)  # byte by byte: nothing of the TLS stream may be read here
        if not c:
            raise OSError("proxy closed the CONNECT")
        head += c
    return s, int(head.split()[1])
'''


# ---------------------------------------------------------------------------------------------
# 0. the host-side fixtures work (no corral involved)
# ---------------------------------------------------------------------------------------------


def _read_head(f) -> tuple[int, dict]:
    status = int(f.readline().split()[1])
    headers = {}
    while True:
        h = f.readline()
        if h in (b"\r\n", b"\n", b""):
            return status, headers
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()


def test_tlsservers_selftest_echo_big_and_verification(test_ca, tls_server, rogue_server):
    import requests

    token = real("selftest")
    r = requests.get(tls_server.url("/echo?q=1"), headers={"Authorization": f"Bearer {token}"},
                     verify=str(test_ca.path), timeout=30)
    assert r.status_code == 200
    doc = r.json()
    assert doc["path"] == "/echo?q=1" and ["Authorization", f"Bearer {token}"] in doc["headers"]
    assert r.headers["X-Echo-Authorization"] == f"Bearer {token}"
    got = tls_server.got("/echo")
    assert len(got) == 1 and got[0].header("authorization") == f"Bearer {token}"
    assert token in tls_server.everything()
    # the leaf covers localhost too
    assert requests.get(tls_server.url("/echo", host="localhost"), verify=str(test_ca.path), timeout=30).ok
    big = requests.get(tls_server.url("/big?n=200000"), verify=str(test_ca.path), timeout=30)
    assert len(big.content) == 200000
    assert requests.post(tls_server.url("/echo"), data=b"x" * 10, verify=str(test_ca.path), timeout=30).json()["body"] == "x" * 10
    # the rogue server is not trusted by the test CA, and its handler never runs
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(rogue_server.url("/echo"), verify=str(test_ca.path), timeout=30)
    assert helpers.wait_for(lambda: rogue_server.handshake_errors, timeout=10)  # recorded by the server thread
    assert rogue_server.got() == []
    assert rogue_server.fingerprint != tls_server.fingerprint
    # ca.pem is world-readable (corral running as corral-test reads it)
    assert os.stat(test_ca.path).st_mode & 0o004 and os.stat(test_ca.path.parent).st_mode & 0o001


def test_tlsservers_selftest_sse_is_spaced(test_ca, tls_server):
    ctx = test_ca.client_context()
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET /sse HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            f = s.makefile("rb")
            status, headers = _read_head(f)
            assert status == 200 and headers["content-type"] == "text/event-stream"
            times = []
            for line in iter(f.readline, b""):
                if line.startswith(b"data: "):
                    times.append(time.monotonic())
    assert len(times) == SSE_EVENTS
    assert times[-1] - times[0] >= 0.6


def test_tlsservers_selftest_websocket(test_ca, tls_server):
    ctx = test_ca.client_context()
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(f"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
            f = s.makefile("rb")
            status, headers = _read_head(f)
            assert status == 101
            want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC11B85").encode()).digest())
            assert headers["sec-websocket-accept"] == want.decode()
            s.sendall(ws_frame(1, b"hello-ws", mask=True))
            assert read_ws_frame(f) == (1, b"hello-ws")
            s.sendall(ws_frame(8, b"\x03\xe8", mask=True))
            assert read_ws_frame(f)[0] == 8
    assert tls_server.ws_messages == [b"hello-ws"]
    assert tls_server.snis == ["localhost"]


def test_tlsservers_selftest_git_smart_http(test_ca, git_root, git_server, git_token, tmp_path):
    env = {**os.environ, "GIT_SSL_CAINFO": str(test_ca.path), "GIT_TERMINAL_PROMPT": "0", "HOME": str(tmp_path),
           "GIT_CONFIG_NOSYSTEM": "1"}
    base = f"127.0.0.1:{git_server.port}/repo.git"
    ok = subprocess.run(["git", "-c", "credential.helper=", "clone", "-q", f"https://x-access-token:{git_token}@{base}",
                         str(tmp_path / "cl")], env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "cl" / "hello.txt").read_text() == GIT_FILE_TEXT
    bad = subprocess.run(["git", "-c", "credential.helper=", "clone", "-q", f"https://x-access-token:wrong-value@{base}",
                          str(tmp_path / "cl2")], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "Authentication failed" in bad.stderr
    bearer = subprocess.run(["git", "-c", "credential.helper=", "-c", f"http.extraHeader=Authorization: Bearer {git_token}",
                             "ls-remote", f"https://{base}"], env=env, capture_output=True, text=True, timeout=120)
    assert bearer.returncode == 0 and "refs/heads/main" in bearer.stdout, bearer.stderr
    before = git_refs(git_root)
    (tmp_path / "cl" / "new.txt").write_text("new\n")
    g = ["git", *GIT_ID, "-C", str(tmp_path / "cl"), "-c", "credential.helper="]
    subprocess.run([*g, "add", "new.txt"], env=env, check=True)
    subprocess.run([*g, "commit", "-q", "-m", "new"], env=env, check=True)
    push = subprocess.run([*g, "push", "origin", "HEAD:refs/heads/main"], env=env, capture_output=True, text=True, timeout=120)
    assert push.returncode == 0, push.stderr
    assert git_refs(git_root) != before
    routes = [(r.method, r.path) for r in git_server.got()]
    assert ("POST", "/repo.git/git-upload-pack") in routes and ("POST", "/repo.git/git-receive-pack") in routes
    authed = [r for r in git_server.got() if r.header("Authorization")]
    assert {presented_token(r.header("Authorization")) for r in authed} == {git_token, "wrong-value"}
    assert basic_password("Basic " + base64.b64encode(b"u:p").decode()) == "p"


# ---------------------------------------------------------------------------------------------
# 1. the real value is nowhere inside; placeholders are fresh per run
# ---------------------------------------------------------------------------------------------

INSPECT = r'''
echo "PH=$GH_TOKEN"
echo "--env"; env
echo "--self"; cat /proc/self/environ | tr '\0' '\n'
echo "--pid1"; cat /proc/1/environ | tr '\0' '\n'
echo "--all"; for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do cat "$f" 2>/dev/null | tr '\0' '\n'; echo; done
echo "--grep"; grep -o '_authToken=.*' "$CREDFILE"; echo "grep_rc=$?"
echo "--cat"; cat "$CREDFILE"; echo "cat_rc=$?"
echo "--end"
FILETOK=$(sed -n 's/.*_authToken=//p' "$CREDFILE")
curl -sS --max-time 30 -o env.json -w 'envcode=%{http_code}\n' "$URL/echo?via=env" -H "Authorization: Bearer $GH_TOKEN"
curl -sS --max-time 30 -o file.json -w 'filecode=%{http_code}\n' "$URL/echo?via=file" -H "Authorization: Bearer $FILETOK"
'''


def test_secret_is_nowhere_inside_and_placeholders_are_fresh(launcher, ws, test_ca, tls_server):
    gh, npm = real("gh"), real("npm")
    cred_dir = ws.base / "creds"
    npmrc_text = (f"registry=https://127.0.0.1:{tls_server.port}/\n"
                  f"//127.0.0.1:{tls_server.port}/:_authToken={npm}\nalways-auth=true\n")
    cred_file = ws.write(cred_dir / ".npmrc", npmrc_text, mode=0o600)
    settings = srt(ws, [tls_server.hostport], ca=test_ca, env_vars=[mask_env("GH_TOKEN")],
                   files=[{"path": str(cred_file), "mode": "mask", "extract": r"_authToken=(\S+)",
                           "injectHosts": ["127.0.0.1"]}])
    ws.write(ws.base / "inspect.sh", INSPECT)
    env = {"GH_TOKEN": gh, "CREDFILE": str(cred_file), "URL": f"https://127.0.0.1:{tls_server.port}"}
    phs = []
    for _ in range(2):
        p = cred_run(ws, f"bash {ws.base / 'inspect.sh'}", settings, env_extra=env)
        assert p.returncode == 0, out_of(p)
        # the secrets are nowhere in what the sandbox could see, nor in what corral printed/logged
        assert_no_leak(ws, p, gh, npm)
        ph = one(p.stdout, "PH=")
        assert PH_RE.fullmatch(ph), ph
        section = p.stdout.split("--env\n", 1)[1].split("--self\n", 1)
        assert f"GH_TOKEN={ph}" in section[0].splitlines(), section[0]
        assert f"GH_TOKEN={ph}" in section[1].split("--pid1\n")[0].splitlines()
        # the masked file: same text with the placeholder instead of the token
        grep = p.stdout.split("--grep\n", 1)[1].split("--cat\n", 1)[0]
        assert "grep_rc=0" in grep, grep
        file_ph = one(grep, "_authToken=")
        assert PH_RE.fullmatch(file_ph) and file_ph != ph, grep
        cat = p.stdout.split("--cat\n", 1)[1].split("--end\n", 1)[0]
        assert cat == npmrc_text.replace(npm, file_ph) + "cat_rc=0\n", cat
        assert "envcode=200" in p.stdout and "filecode=200" in p.stdout, out_of(p)
        phs.append((ph, file_ph))
    # placeholders are new every run
    assert phs[0][0] != phs[1][0] and phs[0][1] != phs[1][1], phs
    # host side: the server got the real values (injected from both the variable and the file)
    got = [(r.path, r.header("authorization")) for r in tls_server.got("/echo")]
    assert got == [("/echo?via=env", f"Bearer {gh}"), ("/echo?via=file", f"Bearer {npm}")] * 2, got
    assert "corral-ph-" not in tls_server.everything()
    # the host file is untouched
    assert cred_file.read_text() == npmrc_text
    # the audit log has the injections (by name, never by value)
    recs = https_records(ws, tls_server.port)
    assert len(recs) == 4 and all(r["decision"] == "allow" for r in recs), recs
    assert all(r.get("injected") for r in recs), recs
    assert sum("GH_TOKEN" in r["injected"] for r in recs) == 2, recs


def test_leak_check_sees_an_unmasked_secret(launcher, ws, tls_server):
    # The harness itself can fail: without a credentials section a variable passed on purpose
    # (GH_TOKEN looks like a credential: withheld unless --pass-env) reaches the command unchanged,
    # and the same inspection script shows the real value everywhere it is checked.
    gh = real("gh")
    settings = srt(ws, [tls_server.hostport], tls=False)
    path = ws.write(ws.base / "settings.json", json.dumps(settings))
    p = helpers.run(ws.launcher, ["run", "--settings", str(path), "--pass-env", "GH_TOKEN", "-c",
                                  'echo "PH=$GH_TOKEN"; cat /proc/self/environ | tr "\\0" "\\n"'], ws.proj,
                    timeout=180, env_extra={"XDG_STATE_HOME": str(state_dir(ws)), "GH_TOKEN": gh})
    assert p.returncode == 0, out_of(p)
    assert one(p.stdout, "PH=") == gh
    assert f"GH_TOKEN={gh}" in p.stdout.splitlines()  # /proc/self/environ is read the way INSPECT does
    with pytest.raises(AssertionError, match="secret in stdout"):
        assert_no_leak(ws, p, gh)


def test_deny_mode_hides_variable_and_file(launcher, ws):
    gh, tok = real("gh"), real("file")
    cred_file = ws.write(ws.base / "creds" / "token.txt", tok + "\n", mode=0o600)
    settings = srt(ws, [], tls=False, env_vars=[{"name": "GH_TOKEN", "mode": "deny"}],
                   files=[{"path": str(cred_file), "mode": "deny"}])
    script = (f'echo "set=${{GH_TOKEN+yes}}"; env | grep -c "^GH_TOKEN=" ; '
              f'cat /proc/self/environ | tr "\\0" "\\n" | grep -c GH_TOKEN; cat {cred_file}; echo "cat=$?"')
    p = cred_run(ws, script, settings, env_extra={"GH_TOKEN": gh})
    assert p.returncode == 0, out_of(p)
    assert one(p.stdout, "set=") == "", out_of(p)
    assert p.stdout.splitlines()[1:3] == ["0", "0"], out_of(p)
    assert one(p.stdout, "cat=") != "0", out_of(p)
    assert_no_leak(ws, p, gh, tok)


# ---------------------------------------------------------------------------------------------
# 2. clients: injection on the way out, redaction on the way back
# ---------------------------------------------------------------------------------------------

REQUESTS_CLIENT = r'''
import json, os, sys, requests
try:
    r = requests.get(sys.argv[1], headers={"Authorization": "Bearer " + os.environ["GH_TOKEN"]}, timeout=30)
    print(json.dumps({"label": "r", "status": r.status_code, "echo_auth": r.headers.get("X-Echo-Authorization"),
                      "body": r.text}))
except Exception as e:
    print(json.dumps({"label": "r", "error": repr(e)}))
'''

NODE_CLIENT = r'''
const http = require('http'), https = require('https'), tls = require('tls'), net = require('net');
const [host, port, path] = [process.argv[2], Number(process.argv[3]), process.argv[4]];
const proxy = new URL(process.env.HTTPS_PROXY || process.env.https_proxy);
const auth = 'Basic ' + Buffer.from(decodeURIComponent(proxy.username) + ':' + decodeURIComponent(proxy.password)).toString('base64');
const done = (o) => { console.log(JSON.stringify({label: 'r', ...o})); process.exit(0); };
setTimeout(() => done({error: 'timeout'}), 40000);
// Node 20 ignores HTTPS_PROXY: tunnel with CONNECT, then TLS trusting NODE_EXTRA_CA_CERTS (no `ca` here)
const req = http.request({host: proxy.hostname, port: Number(proxy.port), method: 'CONNECT', path: `${host}:${port}`,
                          headers: {'Proxy-Authorization': auth, Host: `${host}:${port}`}});
req.on('error', (e) => done({error: 'connect: ' + (e.code || e.message)}));
req.on('connect', (res, socket) => {
  if (res.statusCode !== 200) return done({error: 'CONNECT ' + res.statusCode});
  const r = https.request({host, port, path, method: 'GET', headers: {Authorization: 'Bearer ' + process.env.GH_TOKEN},
      createConnection: () => tls.connect({socket, host, servername: net.isIP(host) ? undefined : host})}, (resp) => {
    let body = '';
    resp.setEncoding('utf8');
    resp.on('data', (d) => body += d);
    resp.on('end', () => done({status: resp.statusCode, echo_auth: resp.headers['x-echo-authorization'] || null, body}));
  });
  r.on('error', (e) => done({error: 'https: ' + (e.code || e.message)}));
  r.end();
});
req.end();
'''


def _client_result(ws, p, client) -> dict:
    if client == "curl":
        code = one(p.stdout, "code=")
        hdr = (ws.proj / "hdr.txt").read_text() if (ws.proj / "hdr.txt").exists() else ""
        echo = [line.split(":", 1)[1].strip() for line in hdr.splitlines() if line.lower().startswith("x-echo-authorization:")]
        body = (ws.proj / "body.json").read_text() if (ws.proj / "body.json").exists() else ""
        return {"status": int(code), "echo_auth": echo[0] if echo else None, "body": body}
    r = results(p).get("r")
    assert r is not None, out_of(p)
    return r


@pytest.mark.parametrize("client", ["curl", "requests", "node"])
def test_client_gets_injection_and_redaction(launcher, ws, test_ca, tls_server, client):
    # scripts/install.sh installs both: a missing one is a broken setup, not a reason to skip
    assert client != "node" or shutil.which("node"), "node is not installed (scripts/install.sh installs it)"
    assert client != "requests" or not subprocess.run([PY, "-c", "import requests"], capture_output=True).returncode, \
        "python3-requests is not installed (scripts/install.sh installs it)"
    gh = real("gh")
    url = tls_server.url("/echo")
    if client == "curl":  # no --cacert: trust comes from corral's variables and mounted bundle
        script = f'{CURL} -D hdr.txt -o body.json -w "code=%{{http_code}}\\n" {url} -H "Authorization: Bearer $GH_TOKEN"'
    elif client == "requests":
        ws.write("client.py", REQUESTS_CLIENT)
        script = f"{PY} client.py {url}"
    else:
        ws.write("client.js", NODE_CLIENT)
        script = f"node client.js 127.0.0.1 {tls_server.port} /echo"
    script = f'echo "PH=$GH_TOKEN"; {script}'
    p = masked_run(ws, script, tls_server, test_ca, gh)
    ph = one(p.stdout, "PH=")
    r = _client_result(ws, p, client)
    assert r.get("status") == 200, (r, out_of(p))
    # host side: the server got the real value, and never a placeholder
    got = tls_server.got("/echo")
    assert [g.header("authorization") for g in got] == [f"Bearer {gh}"], [g.headers for g in got]
    assert "corral-ph-" not in tls_server.everything()
    # the echoed value came back redacted to this run's placeholder, in the body and a header
    doc = json.loads(r["body"])
    auth = [v for k, v in doc["headers"] if k.lower() == "authorization"]
    assert auth == [f"Bearer {ph}"], doc
    assert r["echo_auth"] == f"Bearer {ph}", r
    assert_no_leak(ws, p, gh)
    recs = https_records(ws, tls_server.port)
    assert [(x["host"], x["method"], x["path"], x["decision"], x.get("status")) for x in recs] == \
        [("127.0.0.1", "GET", "/echo", "allow", 200)], recs
    assert recs[0].get("injected") == ["GH_TOKEN"], recs
    assert recs[0].get("redacted", 0) >= 1, recs


def test_redaction_across_response_chunks(launcher, ws, test_ca, tls_server):
    gh = real("gh")
    script = (f'echo "PH=$GH_TOKEN"; {CURL} -o split.txt -w "code=%{{http_code}}\\n" {tls_server.url("/echo-split")} '
              '-H "Authorization: Bearer $GH_TOKEN"')
    p = masked_run(ws, script, tls_server, test_ca, gh)
    assert one(p.stdout, "code=") == "200", out_of(p)
    assert [g.header("authorization") for g in tls_server.got()] == [f"Bearer {gh}"]
    # the server sent the real value cut in two chunks; the sandbox got this run's placeholder whole
    assert (ws.proj / "split.txt").read_text() == f"auth=Bearer {one(p.stdout, 'PH=')}\n"
    assert_no_leak(ws, p, gh)
    assert gh[: len(gh) // 2] not in (ws.proj / "split.txt").read_text()


def test_trust_env_and_system_bundle_path(launcher, ws, test_ca, tls_server):
    gh = real("gh")
    names = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO")
    url = tls_server.url("/echo")
    script = "; ".join([
        *(f'echo "{n}=${n}"' for n in names),
        f'{CURL} --cacert {SYSTEM_BUNDLE} -o /dev/null -w "a=%{{http_code}}\\n" "{url}?a" -H "Authorization: Bearer $GH_TOKEN"',
        # no variables at all: curl's compiled-in default is the system bundle, which corral covers
        f'env -u SSL_CERT_FILE -u CURL_CA_BUNDLE -u REQUESTS_CA_BUNDLE {CURL} -o /dev/null -w "b=%{{http_code}}\\n" '
        f'"{url}?b" -H "Authorization: Bearer $GH_TOKEN"',
    ])
    p = masked_run(ws, script, tls_server, test_ca, gh)
    for n in names:
        assert one(p.stdout, f"{n}=").startswith("/"), out_of(p)
    assert one(p.stdout, "a=") == "200" and one(p.stdout, "b=") == "200", out_of(p)
    assert [(g.path, g.header("authorization")) for g in tls_server.got()] == \
        [("/echo?a", f"Bearer {gh}"), ("/echo?b", f"Bearer {gh}")]
    assert_no_leak(ws, p, gh)


def test_http2_offer_gets_http11(launcher, ws, test_ca, tls_server):
    gh = real("gh")
    script = (f'{CURL} --http2 -o /dev/null -w "v=%{{http_version}} code=%{{http_code}}\\n" {tls_server.url("/echo")} '
              '-H "Authorization: Bearer $GH_TOKEN"; echo "rc=$?"')
    p = masked_run(ws, script, tls_server, test_ca, gh)
    assert one(p.stdout, "v=") == "1.1 code=200", out_of(p)
    assert one(p.stdout, "rc=") == "0"
    assert [g.header("authorization") for g in tls_server.got("/echo")] == [f"Bearer {gh}"]
    assert_no_leak(ws, p, gh)


WS_CLIENT = r'''
import base64, hashlib, json, os, ssl, struct, sys
from ctconnect import connect

def frame(opcode, payload):
    key = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

def read_frame(f):
    b = f.read(2)
    n = b[1] & 0x7F
    if n == 126:
        n = struct.unpack(">H", f.read(2))[0]
    return b[0] & 0x0F, f.read(n)

port, message = int(sys.argv[1]), sys.argv[2].encode()
s, status = connect("127.0.0.1", port)
if status != 200:
    print(json.dumps({"label": "ws", "error": f"CONNECT {status}"}))
    sys.exit()
tls = ssl.create_default_context().wrap_socket(s, server_hostname="127.0.0.1")  # trusts SSL_CERT_FILE
key = base64.b64encode(os.urandom(16)).decode()
tls.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
             f"Authorization: Bearer {os.environ['GH_TOKEN']}\r\n\r\n").encode())
f = tls.makefile("rb")
status = int(f.readline().split()[1])
headers = {}
while True:
    h = f.readline()
    if h in (b"\r\n", b""):
        break
    k, _, v = h.decode().partition(":")
    headers[k.strip().lower()] = v.strip()
want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC11B85").encode()).digest()).decode()
res = {"label": "ws", "status": status, "accept_ok": headers.get("sec-websocket-accept") == want}
if status == 101:
    tls.sendall(frame(1, message))
    res["echo"] = read_frame(f)[1].decode()
    tls.sendall(frame(8, b"\x03\xe8"))
    res["close"] = read_frame(f)[0]
print(json.dumps(res))
'''


def test_websocket_through_termination(launcher, ws, test_ca, tls_server):
    gh = real("gh")
    message = "hello-ws-" + secrets.token_hex(4)
    ws.write("ctconnect.py", CTCONNECT)
    ws.write("wsclient.py", WS_CLIENT)
    p = cred_run(ws, f"{PY} wsclient.py {tls_server.port} {message}",
                 srt(ws, [tls_server.hostport], ca=test_ca, env_vars=[mask_env("GH_TOKEN")]), env_extra={"GH_TOKEN": gh})
    r = results(p).get("ws")
    assert r is not None, out_of(p)
    assert r == {"status": 101, "accept_ok": True, "echo": message, "close": 8}, (r, out_of(p))
    # host side: the upgrade request carried the real value; the frame arrived as sent
    up = tls_server.got("/ws")
    assert len(up) == 1 and up[0].header("authorization") == f"Bearer {gh}", [u.headers for u in up]
    assert tls_server.ws_messages == [message.encode()]
    assert_no_leak(ws, p, gh)


# ---------------------------------------------------------------------------------------------
# 3. where the real value must not go
# ---------------------------------------------------------------------------------------------


def test_placeholder_to_unbound_host_is_exfiltration(launcher, ws, test_ca, tls_server, tls_other, plain_server):
    gh = real("gh")
    # the credential is bound to 127.0.0.1 only; the other servers are allowed as `localhost`
    allowed = [tls_server.hostport, f"localhost:{tls_other.port}", f"localhost:{plain_server.port}"]
    other = f"https://localhost:{tls_other.port}"
    attempts = {
        "header": f'"{other}/echo?a=header" -H "Authorization: Bearer $GH_TOKEN"',
        "query": f'"{other}/echo?a=query&t=$GH_TOKEN"',
        "basic": f'-u "x-access-token:$GH_TOKEN" "{other}/echo?a=basic"',
        "body": f'-d "token=$GH_TOKEN" "{other}/echo?a=body"',
        "base64": f'-H "X-B: $(printf %s "$GH_TOKEN" | base64 -w0)" "{other}/echo?a=base64"',
        "plain": f'"http://localhost:{plain_server.port}/plain" -H "Authorization: Bearer $GH_TOKEN"',
        # controls: the other host is reachable without the placeholder; the bound host injects
        "control-other": f'"{other}/echo?a=control"',
        "control-bound": f'"{tls_server.url("/echo")}" -H "Authorization: Bearer $GH_TOKEN"',
    }
    script = "\n".join(f'{CURL} -o /dev/null -w "{label}=%{{http_code}}\\n" {args}' for label, args in attempts.items())
    p = cred_run(ws, script, srt(ws, allowed, ca=test_ca, env_vars=[mask_env("GH_TOKEN")]), env_extra={"GH_TOKEN": gh})
    codes = {label: one(p.stdout, f"{label}=") for label in attempts}
    assert codes == {**{k: "403" for k in attempts if not k.startswith("control")},
                     "control-other": "200", "control-bound": "200"}, (codes, out_of(p))
    # host side: the other servers saw only the control request, and never the placeholder or the value
    # first: the placeholder (and of course the value) never arrived there, in any form
    assert "corral-ph-" not in tls_other.everything() and gh not in tls_other.everything(), tls_other.everything()
    assert plain_server.paths() == []
    assert [g.header("authorization") for g in tls_server.got()] == [f"Bearer {gh}"]
    exfil = [r for r in audit(ws) if r.get("exfiltration")]
    assert len(exfil) == 6, audit(ws)
    assert all(r["decision"] == "block" and r["host"] == "localhost" for r in exfil), exfil
    assert {r["port"] for r in exfil} == {tls_other.port, plain_server.port}, exfil
    assert_no_leak(ws, p, gh)
    # ... and no blocked request reached it at all, not even its head
    assert tls_other.paths() == ["/echo?a=control"], \
        f"the foreign server received (the head of) blocked requests: {tls_other.everything()}"


SPLIT_BODY_CLIENT = r'''
import json, os, ssl, sys, time
from ctconnect import connect
port = int(sys.argv[1])
s, status = connect("localhost", port)
tls = ssl.create_default_context().wrap_socket(s, server_hostname="localhost")
body = ("token=" + os.environ["GH_TOKEN"]).encode()
tls.sendall((f"POST /echo?a=split HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
             f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode())
# the placeholder straddles two writes, 0.5 s apart
for piece in (body[:20], body[20:]):
    time.sleep(0.5)
    try:
        tls.sendall(piece)
    except OSError:
        break
try:
    line = tls.makefile("rb").readline().decode("latin-1").strip()
except OSError as e:
    line = repr(e)
print(json.dumps({"label": "split", "connect": status, "status": line}))
'''


def test_placeholder_split_across_body_writes_never_leaves(launcher, ws, test_ca, tls_server, tls_other):
    gh = real("gh")
    ws.write("ctconnect.py", CTCONNECT)
    ws.write("split.py", SPLIT_BODY_CLIENT)
    # bound to 127.0.0.1 (which must be allowed too); the foreign server is reached as localhost
    settings = srt(ws, [tls_server.hostport, f"localhost:{tls_other.port}"], ca=test_ca, env_vars=[mask_env("GH_TOKEN")])
    p = cred_run(ws, f"{PY} split.py {tls_other.port}", settings, env_extra={"GH_TOKEN": gh})
    r = results(p).get("split")
    assert r is not None and r["connect"] == 200, out_of(p)
    assert r["status"].startswith("HTTP/1.1 403"), (r, out_of(p))
    exfil = [x for x in audit(ws) if x.get("exfiltration")]
    assert [(x["host"], x["decision"]) for x in exfil] == [("localhost", "block")], audit(ws)
    assert_no_leak(ws, p, gh)
    # not a single character of the placeholder reached the foreign host (the client sent 14 of
    # them before the rest), and no blocked request reached it at all
    received = tls_other.everything()
    assert "corral-ph" not in received, f"the foreign server received part of the placeholder: {received!r}"
    assert tls_other.got() == [], f"the foreign server received (the head of) the blocked request: {received!r}"


def test_plaintext_to_bound_host_is_refused(launcher, ws, test_ca, plain_server):
    gh = real("gh")
    settings = srt(ws, [plain_server.hostport], ca=test_ca, env_vars=[mask_env("GH_TOKEN")], plaintext=False)
    script = (f'{CURL} -o /dev/null -w "with=%{{http_code}}\\n" {plain_server.url("/with")} -H "Authorization: Bearer $GH_TOKEN"\n'
              f'{CURL} -o /dev/null -w "without=%{{http_code}}\\n" {plain_server.url("/without")}')
    p = cred_run(ws, script, settings, env_extra={"GH_TOKEN": gh})
    assert (one(p.stdout, "with="), one(p.stdout, "without=")) == ("403", "200"), (out_of(p), audit(ws))
    assert plain_server.paths() == ["/without"]
    assert not any("corral-ph-" in v or gh in v for h in plain_server.hits for v in h["headers"].values())
    blocked = [r for r in audit(ws) if r.get("decision") == "block"]
    assert [(r["port"], r.get("path")) for r in blocked] == [(plain_server.port, "/with")], audit(ws)
    assert_no_leak(ws, p, gh)


def test_trace_and_track_refused(launcher, ws, test_ca, tls_server):
    gh = real("gh")
    script = "\n".join(f'{CURL} -X {m} -o /dev/null -w "{m}=%{{http_code}}\\n" {tls_server.url("/echo")} '
                       '-H "Authorization: Bearer $GH_TOKEN"' for m in ("TRACE", "TRACK", "GET"))
    p = masked_run(ws, script, tls_server, test_ca, gh)
    assert [one(p.stdout, f"{m}=") for m in ("TRACE", "TRACK", "GET")] == ["405", "405", "200"], out_of(p)
    assert [g.method for g in tls_server.got()] == ["GET"]
    recs = https_records(ws, tls_server.port)
    assert [(r["method"], r["decision"], r.get("status")) for r in recs] == \
        [("TRACE", "block", 405), ("TRACK", "block", 405), ("GET", "allow", 200)], recs
    assert_no_leak(ws, p, gh)


@pytest.mark.parametrize("trust", ["test-ca-only", "rogue-ca-trusted"])
def test_unverifiable_upstream_is_never_trusted(launcher, ws, test_ca, rogue_server, trust):
    gh = real("gh")
    script = (f'{CURL} -o /dev/null -w "code=%{{http_code}} connect=%{{http_connect}}\\n" {rogue_server.url("/echo")} '
              '-H "Authorization: Bearer $GH_TOKEN"; echo "rc=$?"')
    settings = srt(ws, [rogue_server.hostport], ca=test_ca, env_vars=[mask_env("GH_TOKEN")])
    if trust == "rogue-ca-trusted":  # the control: the same server is fine once its CA is trusted
        settings["network"]["tlsTerminate"]["extraCaCertPaths"].append(str(rogue_server.rogue.path))
    p = cred_run(ws, script, settings, env_extra={"GH_TOKEN": gh})
    line = one(p.stdout, "code=")
    if trust == "rogue-ca-trusted":
        assert line.startswith("200 "), out_of(p)
        assert [g.header("authorization") for g in rogue_server.got()] == [f"Bearer {gh}"]
        assert_no_leak(ws, p, gh)
        return
    assert "502" in line, out_of(p)  # 502 inside the tunnel (or, at the latest, on the CONNECT)
    # host side: the handler never ran a request; nothing of the credential reached the server
    assert rogue_server.got() == [], rogue_server.paths()
    assert gh not in rogue_server.everything()
    recs = [r for r in audit(ws) if r.get("port") == rogue_server.port]
    assert recs and any(r["decision"] == "error" for r in recs), recs
    assert not any(r["decision"] == "allow" and r.get("proto") == "https" for r in recs), recs
    assert_no_leak(ws, p, gh)


CERT_PROBE = r'''
import hashlib, json, ssl, sys
from ctconnect import connect
port = int(sys.argv[1])
for name in ("127.0.0.1", "localhost"):
    s, status = connect(name, port)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # only to look at what is presented
    tls = ctx.wrap_socket(s, server_hostname=name)
    der = tls.getpeercert(binary_form=True)
    tls.sendall(f"GET /echo?probe={name} HTTP/1.1\r\nHost: {name}:{port}\r\nConnection: close\r\n\r\n".encode())
    reply = tls.recv(12).decode("latin-1")
    print(json.dumps({"label": name, "connect": status, "fp": hashlib.sha256(der).hexdigest(), "reply": reply}))
    tls.close()
'''


def test_excluded_domain_is_an_opaque_tunnel(launcher, ws, test_ca, tls_server):
    # One server, two names: 127.0.0.1 is excluded from termination, localhost is terminated.
    ws.write("ctconnect.py", CTCONNECT)
    ws.write("probe.py", CERT_PROBE)
    port = tls_server.port
    script = "\n".join([
        f"{PY} probe.py {port}",
        f'{CURL} --cacert {test_ca.path} -o /dev/null -w "ex_ca=%{{http_code}}\\n" https://127.0.0.1:{port}/echo?c=1; echo "ex_ca_rc=$?"',
        f'{CURL} --cacert {test_ca.path} -o /dev/null -w "term_ca=%{{http_code}}\\n" https://localhost:{port}/echo?c=2; echo "term_ca_rc=$?"',
        f'{CURL} -o /dev/null -w "term=%{{http_code}}\\n" https://localhost:{port}/echo?c=3; echo "term_rc=$?"',
    ])
    settings = srt(ws, [tls_server.hostport, f"localhost:{port}"], ca=test_ca, exclude=["127.0.0.1"])
    p = cred_run(ws, script, settings)
    r = results(p)
    assert "127.0.0.1" in r and "localhost" in r, out_of(p)
    # excluded: the client sees the server's own certificate; terminated: corral's
    assert r["127.0.0.1"]["fp"] == tls_server.fingerprint, r
    assert r["localhost"]["fp"] != tls_server.fingerprint, r
    assert r["127.0.0.1"]["reply"].startswith("HTTP/1.1 200") and r["localhost"]["reply"].startswith("HTTP/1.1 200"), r
    # trusting only the test CA works for the opaque tunnel and fails for the terminated name
    assert (one(p.stdout, "ex_ca="), one(p.stdout, "ex_ca_rc=")) == ("200", "0"), out_of(p)
    assert one(p.stdout, "term_ca_rc=") == "60", out_of(p)  # CURLE_PEER_FAILED_VERIFICATION
    assert (one(p.stdout, "term="), one(p.stdout, "term_rc=")) == ("200", "0"), out_of(p)
    assert sorted(tls_server.paths()) == sorted(["/echo?probe=127.0.0.1", "/echo?probe=localhost", "/echo?c=1", "/echo?c=3"])
    # the audit log: tunnels for the excluded name, terminated requests for the other
    recs = audit(ws)
    assert not any(x.get("proto") == "https" and x.get("host") == "127.0.0.1" for x in recs), recs
    assert any(x.get("proto") == "connect" and x.get("host") == "127.0.0.1" and x["decision"] == "allow" for x in recs), recs
    assert any(x.get("proto") == "https" and x.get("host") == "localhost" and x.get("path") == "/echo" for x in recs), recs


def test_host_header_must_match_the_tunnel(launcher, ws, test_ca, tls_server):
    gh = real("gh")
    port = tls_server.port
    attempts = {
        "mismatch": f'https://127.0.0.1:{port}/echo?m=1 -H "Host: localhost:{port}"',
        "to-bound": f'https://localhost:{port}/echo?m=2 -H "Host: 127.0.0.1:{port}" -H "Authorization: Bearer $GH_TOKEN"',
        "from-bound": f'https://127.0.0.1:{port}/echo?m=3 -H "Host: localhost:{port}" -H "Authorization: Bearer $GH_TOKEN"',
        "control": f'https://127.0.0.1:{port}/echo?m=4 -H "Authorization: Bearer $GH_TOKEN"',
    }
    script = "\n".join(f'{CURL} -o /dev/null -w "{k}=%{{http_code}}\\n" {v}' for k, v in attempts.items())
    settings = srt(ws, [tls_server.hostport, f"localhost:{port}"], ca=test_ca, env_vars=[mask_env("GH_TOKEN")],
                   host_match=True)
    p = cred_run(ws, script, settings, env_extra={"GH_TOKEN": gh})
    codes = {k: one(p.stdout, f"{k}=") for k in attempts}
    assert codes["mismatch"] == "421" and codes["control"] == "200", (codes, out_of(p))
    # with a placeholder aboard, a mismatch may also be judged as exfiltration first: never forwarded
    assert codes["to-bound"] in ("421", "403") and codes["from-bound"] in ("421", "403"), (codes, out_of(p))
    assert tls_server.paths() == ["/echo?m=4"], tls_server.paths()
    assert tls_server.got()[0].header("authorization") == f"Bearer {gh}"
    recs = https_records(ws, port)
    assert any(r.get("status") == 421 and r["decision"] == "block" for r in recs), recs
    assert_no_leak(ws, p, gh)


# ---------------------------------------------------------------------------------------------
# 4. git over https
# ---------------------------------------------------------------------------------------------


def test_git_clone_and_fetch_with_masked_token(launcher, ws, test_ca, git_server, git_token):
    base = f"127.0.0.1:{git_server.port}/repo.git"
    script = "\n".join([
        f'git -c credential.helper= clone -q "https://x-access-token:$GIT_TOKEN@{base}" cl; echo "clone=$?"',
        'git -C cl -c credential.helper= fetch -q origin; echo "fetch=$?"',
        f'git -c credential.helper= -c http.extraHeader="Authorization: Bearer $GIT_TOKEN" ls-remote https://{base} '
        '| grep -c refs/heads/main; echo "lsremote=$?"',
    ])
    p = cred_run(ws, script, srt(ws, [git_server.hostport], ca=test_ca, env_vars=[mask_env("GIT_TOKEN")]),
                 env_extra={"GIT_TOKEN": git_token})
    for step in ("clone", "fetch", "lsremote"):
        assert one(p.stdout, f"{step}=") == "0", out_of(p)
    assert (ws.proj / "cl" / "hello.txt").read_text() == GIT_FILE_TEXT
    # host side: every authenticated request presented the real token (Basic and Bearer)
    reqs = git_server.got()
    authed = [r for r in reqs if r.header("authorization")]
    assert authed and {presented_token(r.header("authorization")) for r in authed} == {git_token}, \
        [(r.path, r.header("authorization")) for r in reqs]
    assert any(r.header("authorization").startswith("Basic ") for r in authed)
    assert any(r.header("authorization").startswith("Bearer ") for r in authed)
    routes = [(r.method, r.path) for r in authed]
    assert ("POST", "/repo.git/git-upload-pack") in routes, routes
    assert "corral-ph-" not in git_server.everything()
    recs = https_records(ws, git_server.port)
    assert any(r.get("injected") == ["GIT_TOKEN"] and r["path"] == "/repo.git/git-upload-pack" for r in recs), recs
    assert_no_leak(ws, p, git_token)


PUSH_RULES = ["deny POST 127.0.0.1/*.git/git-receive-pack",
              "deny GET 127.0.0.1/*.git/info/refs?service=git-receive-pack"]


@pytest.mark.parametrize("rules", ["deny-push", "no-rules"])
def test_git_push_refused_by_http_rules(launcher, ws, test_ca, git_root, git_server, git_token, rules):
    extra = '[[credentials]]\nname = "GIT_TOKEN"\nfrom_env = "GIT_TOKEN"\nhosts = ["127.0.0.1"]\n'
    policy = native(ws, [git_server.hostport], ca=test_ca, http_rules=PUSH_RULES if rules == "deny-push" else (),
                    extra=extra)
    base = f"127.0.0.1:{git_server.port}/repo.git"
    script = "\n".join([
        f'git -c credential.helper= clone -q "https://x-access-token:$GIT_TOKEN@{base}" cl; echo "clone=$?"',
        "cd cl && echo pushed > pushed.txt && git add pushed.txt && "
        f"git {' '.join(GIT_ID)} commit -q -m push; echo \"commit=$?\"",
        'git -c credential.helper= push origin HEAD:refs/heads/main > ../push.out 2>&1; echo "push=$?"',
    ])
    before = git_refs(git_root)
    p = cred_run(ws, script, policy, env_extra={"GIT_TOKEN": git_token})
    assert one(p.stdout, "clone=") == "0" and one(p.stdout, "commit=") == "0", out_of(p)
    push_out = (ws.proj / "push.out").read_text()
    receive = [r for r in git_server.got() if "receive-pack" in r.path]
    if rules == "deny-push":
        assert one(p.stdout, "push=") != "0", (push_out, out_of(p))
        assert "403" in push_out, push_out
        # the server never saw a push request, and its branch did not move
        assert receive == [], [(r.method, r.path) for r in receive]
        assert git_refs(git_root) == before
        blocked = [r for r in audit(ws) if r.get("decision") == "block" and r.get("proto") == "https"]
        assert blocked and all("receive-pack" in r.get("rule", "") for r in blocked), audit(ws)
        assert all(r.get("status") == 403 for r in blocked), blocked
    else:  # the control: without the rules the same push goes through (the server accepts pushes)
        assert one(p.stdout, "push=") == "0", (push_out, out_of(p))
        assert ("POST", "/repo.git/git-receive-pack") in [(r.method, r.path) for r in receive]
        assert git_refs(git_root) != before
    authed = [r for r in git_server.got() if r.header("authorization")]
    assert authed and {presented_token(r.header("authorization")) for r in authed} == {git_token}
    assert_no_leak(ws, p, git_token)


# The rule the docs give for refusing pushes, and the one they gave before issue 10 (which
# names only `*.git` repositories: a .git-less URL, which GitHub serves too, slipped past it).
DOCUMENTED_PUSH_RULES = ["allow GET,HEAD,POST 127.0.0.1/**", "deny POST 127.0.0.1/**/git-receive-pack",
                         "deny * 127.0.0.1/**/info/refs?service=git-receive-pack"]
STAR_DOT_GIT_RULES = ["allow GET,HEAD,POST 127.0.0.1/**", "deny POST 127.0.0.1/*.git/git-receive-pack",
                      "deny GET 127.0.0.1/*.git/info/refs?service=git-receive-pack"]


@pytest.mark.parametrize("rules", ["documented", "star-dot-git"])
def test_push_through_a_gitless_url_is_refused(launcher, ws, test_ca, git_root, git_server, git_token, rules):
    (git_root / "repo").symlink_to("repo.git")  # the server answers for /repo/... as for /repo.git/...
    extra = '[[credentials]]\nname = "GIT_TOKEN"\nfrom_env = "GIT_TOKEN"\nhosts = ["127.0.0.1"]\n'
    policy = native(ws, [git_server.hostport], ca=test_ca, extra=extra,
                    http_rules=DOCUMENTED_PUSH_RULES if rules == "documented" else STAR_DOT_GIT_RULES)
    base = f"127.0.0.1:{git_server.port}/repo"
    script = "\n".join([
        f'git -c credential.helper= clone -q "https://x-access-token:$GIT_TOKEN@{base}" cl; echo "clone=$?"',
        "cd cl && echo pushed > pushed.txt && git add pushed.txt && "
        f"git {' '.join(GIT_ID)} commit -q -m push; echo \"commit=$?\"",
        'git -c credential.helper= push origin HEAD:refs/heads/main > ../push.out 2>&1; echo "push=$?"',
    ])
    before = git_refs(git_root)
    p = cred_run(ws, script, policy, env_extra={"GIT_TOKEN": git_token})
    assert one(p.stdout, "clone=") == "0" and one(p.stdout, "commit=") == "0", out_of(p)
    push_out = (ws.proj / "push.out").read_text()
    receive = [(r.method, r.path) for r in git_server.got() if "receive-pack" in r.path]
    if rules == "documented":
        assert one(p.stdout, "push=") != "0" and "403" in push_out, (push_out, out_of(p))
        assert receive == [] and git_refs(git_root) == before, receive
        blocked = [r for r in audit(ws) if r.get("decision") == "block" and r.get("proto") == "https"]
        assert blocked and all("receive-pack" in r.get("rule", "") for r in blocked), audit(ws)
    else:  # the control: a rule naming only `*.git` lets the .git-less push through
        assert one(p.stdout, "push=") == "0", (push_out, out_of(p))
        assert ("POST", "/repo/git-receive-pack") in receive and git_refs(git_root) != before
    assert_no_leak(ws, p, git_token)


# ---------------------------------------------------------------------------------------------
# 5. native TOML: base-URL endpoints, credentials from a command
# ---------------------------------------------------------------------------------------------

SSE_READER = r'''
import json, socket, sys, time, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
s = socket.create_connection((u.hostname, u.port), timeout=30)  # the endpoint is plain HTTP inside
s.sendall(f"GET {u.path.rstrip('/')}/sse HTTP/1.1\r\nHost: {u.netloc}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n".encode())
f = s.makefile("rb", buffering=0)
status = f.readline().decode().strip()
headers = {}
while True:
    h = f.readline()
    if h in (b"\r\n", b""):
        break
    k, _, v = h.decode().partition(":")
    headers[k.strip().lower()] = v.strip()
events, buf = [], b""
def take(data):
    global buf
    buf += data
    while b"\n\n" in buf:
        ev, buf = buf.split(b"\n\n", 1)
        events.append([ev.decode(), time.monotonic()])
if "chunked" in headers.get("transfer-encoding", ""):
    while True:
        size = int(f.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            break
        data = b""
        while len(data) < size:
            piece = f.read(size - len(data))
            if not piece:
                break
            data += piece
        f.readline()
        take(data)
else:
    while True:
        piece = f.read(4096)
        if not piece:
            break
        take(piece)
print(json.dumps({"label": "sse", "status": status, "ctype": headers.get("content-type"), "events": events}))
'''


def test_base_url_endpoint_injects_and_streams(launcher, ws, test_ca, tls_server):
    key = real("api")
    extra = "\n".join([
        "[[credentials]]", 'name = "API_KEY"', 'from_env = "API_KEY"', 'hosts = ["127.0.0.1"]',
        'header = "x-api-key: {value}"', "",
        "[[endpoints]]", 'name = "api"', f'upstream = "https://127.0.0.1:{tls_server.port}"',
        'credential = "API_KEY"', 'env = "API_BASE_URL"', ""])
    policy = native(ws, [tls_server.hostport], ca=test_ca, terminate=(), extra=extra)
    ws.write("sse.py", SSE_READER)
    script = "\n".join([
        'echo "BASE=$API_BASE_URL"', 'echo "KEY=$API_KEY"',
        # --noproxy: the endpoint listens on the sandbox's own loopback
        f'{CURL} --noproxy "*" -o echo.json -w "code=%{{http_code}}\\n" "$API_BASE_URL/echo"',
        f'{PY} sse.py "$API_BASE_URL"',
    ])
    p = cred_run(ws, script, policy, env_extra={"API_KEY": key})
    base = one(p.stdout, "BASE=")
    assert base.startswith("http://127.0.0.1:"), out_of(p)
    assert PH_RE.fullmatch(one(p.stdout, "KEY=")), out_of(p)
    assert one(p.stdout, "code=") == "200", out_of(p)
    # host side: the TLS server got the header corral added, with the real value
    echo = tls_server.got("/echo")
    assert len(echo) == 1 and echo[0].header_all("x-api-key") == [key], [e.headers for e in echo]
    assert "corral-ph-" not in tls_server.everything()
    # the echoed key came back redacted
    body = (ws.proj / "echo.json").read_text()
    assert key not in body and json.loads(body)["path"] == "/echo", body
    # server-sent events arrive as they are sent, not buffered until the end
    sse = results(p).get("sse")
    assert sse is not None, out_of(p)
    assert sse["status"].startswith("HTTP/1.1 200") and sse["ctype"].startswith("text/event-stream"), sse
    events = sse["events"]
    assert [e[0].split("\n")[-1] for e in events] == [f"data: event {i}" for i in range(SSE_EVENTS)], events
    assert events[-1][1] - events[0][1] >= 0.6, events
    got = tls_server.got("/sse")
    assert len(got) == 1 and got[0].header("x-api-key") == key
    assert_no_leak(ws, p, key)


def test_credential_from_command(launcher, ws, test_ca, tls_server):
    value = real("cmd")
    extra = "\n".join([
        "[[credentials]]", 'name = "CMD_TOKEN"', f'from_command = ["printf", "%s", "{value}"]',
        'hosts = ["127.0.0.1"]', ""])
    # the policy file holds the value (in the command line): keep it out of the workspace
    policy = native(ws, [tls_server.hostport], ca=test_ca, extra=extra)
    script = (f'echo "PH=$CMD_TOKEN"; {CURL} -o /dev/null -w "code=%{{http_code}}\\n" {tls_server.url("/echo")} '
              '-H "Authorization: Bearer $CMD_TOKEN"; '
              'for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do cat "$f" 2>/dev/null | tr "\\0" "\\n"; done')
    p = cred_run(ws, script, policy)
    assert PH_RE.fullmatch(one(p.stdout, "PH=")), out_of(p)
    assert one(p.stdout, "code=") == "200", out_of(p)
    assert [g.header("authorization") for g in tls_server.got("/echo")] == [f"Bearer {value}"]
    recs = https_records(ws, tls_server.port)
    assert [r.get("injected") for r in recs] == [["CMD_TOKEN"]], recs
    assert any(line.startswith("CMD_TOKEN=corral-ph-") for line in p.stdout.splitlines()), out_of(p)
    assert_no_leak(ws, p, value)


# ---------------------------------------------------------------------------------------
# The CA the user brings, srt's plaintext-only mode, rules on hosts that are not terminated
# ---------------------------------------------------------------------------------------

def test_own_ca_signs_the_leaves_and_its_key_is_unreadable_inside(launcher, ws, test_ca, tls_server):
    """srt's caCertPath/caKeyPath: the sandbox sees leaves issued by that CA, and cannot read
    its key (with it, the sandbox could sign certificates sandboxes trust)."""
    from tlsservers import TestCA, _pem_key

    own = TestCA(ws.base / "own-ca", common_name="corral test own CA")
    key_path = ws.base / "own-ca" / "ca-key.pem"
    key_path.write_bytes(_pem_key(own.key))
    key_path.chmod(0o600)
    ws.chown()
    settings = srt(ws, [tls_server.hostport], ca=test_ca)
    settings["network"]["tlsTerminate"].update(caCertPath=str(own.path), caKeyPath=str(key_path))
    script = (f'{CURL} -o /dev/null -w "code=%{{http_code}}\\n" --cacert {own.path} {tls_server.url("/echo")}\n'
              f'cat {key_path} >/dev/null 2>&1 && echo "key=readable" || echo "key=refused"\n'
              f'grep -c "PRIVATE KEY" {key_path} 2>/dev/null; true')
    p = cred_run(ws, script, settings)
    assert one(p.stdout, "code=") == "200", out_of(p)  # only the own CA was trusted: it issued the leaf
    assert one(p.stdout, "key=") == "refused", out_of(p)
    assert "PRIVATE KEY" not in p.stdout and _pem_key(own.key).decode() not in p.stdout
    assert [g.path for g in tls_server.got()] == ["/echo"]


def test_srt_plaintext_inject_without_tls_terminate(launcher, ws, test_ca, tls_server, plain_server):
    """srt without tlsTerminate, allowPlaintextInject: true: plain HTTP gets the real value;
    HTTPS to the bound host is an ordinary opaque tunnel (not terminated, not refused)."""
    gh = real("gh")
    settings = srt(ws, [tls_server.hostport, plain_server.hostport], tls=False,
                   env_vars=[mask_env("GH_TOKEN")], plaintext=True)
    script = (f'{CURL} -o /dev/null -w "plain=%{{http_code}}\\n" {plain_server.url("/p")} -H "Authorization: Bearer $GH_TOKEN"\n'
              f'{CURL} -o /dev/null -w "tls=%{{http_code}}\\n" --cacert {test_ca.path} {tls_server.url("/echo")} '
              '-H "Authorization: Bearer $GH_TOKEN"')
    p = cred_run(ws, script, settings, env_extra={"GH_TOKEN": gh})
    assert (one(p.stdout, "plain="), one(p.stdout, "tls=")) == ("200", "200"), (out_of(p), audit(ws))
    assert [h["headers"].get("authorization") for h in plain_server.hits] == [f"Bearer {gh}"]
    # the tunnel was opaque: the test server saw the placeholder the client sent, not the value
    (got,) = tls_server.got()
    assert PH_RE.fullmatch(got.header("authorization").split(" ", 1)[1]), got.header("authorization")
    protos = {(r.get("proto"), r.get("port")) for r in audit(ws) if r.get("decision") == "allow"}
    assert ("connect", tls_server.port) in protos and ("https", tls_server.port) not in protos, audit(ws)
    assert_no_leak(ws, p, gh)


def test_http_rules_refuse_a_host_whose_tls_is_not_terminated(launcher, ws, test_ca, tls_server):
    """An HTTP rule cannot be enforced inside an opaque tunnel: a ruled host excluded from
    termination is refused at CONNECT, and the server never sees a connection's request."""
    policy = native(ws, [tls_server.hostport], ca=test_ca, http_rules=["GET 127.0.0.1/**"],
                    extra='exclude = ["127.0.0.1"]\n')
    script = (f'{CURL} -o /dev/null -w "code=%{{http_code}} connect=%{{http_connect}}\\n" '
              f'--cacert {test_ca.path} {tls_server.url("/echo")}; true')
    p = cred_run(ws, script, policy)
    assert "connect=403" in one(p.stdout, "code="), out_of(p)
    assert tls_server.got() == []
    blocked = [r for r in audit(ws) if r.get("decision") == "block" and r.get("port") == tls_server.port]
    assert blocked and "HTTP rules" in blocked[0]["reason"], audit(ws)


def test_plain_http_inside_a_socks_tunnel_is_read_too(launcher, ws, test_ca, plain_server):
    """Plain HTTP through SOCKS5 (or CONNECT, or a redirected port 80) is read like proxied HTTP:
    a placeholder on its way to an unbound host is blocked there too, and a bound host gets the
    value when plaintext is allowed."""
    gh = real("gh")
    other = Server()
    try:
        settings = srt(ws, [plain_server.hostport, other.hostport], tls=False,
                       env_vars=[mask_env("GH_TOKEN", hosts=(f"localhost",))], plaintext=True)
        bound_url = f"http://localhost:{plain_server.port}/bound"
        script = (f'{CURL} -x "$ALL_PROXY" -o /dev/null -w "leak=%{{http_code}}\\n" {other.url("/leak")} '
                  '-H "X-Token: $GH_TOKEN"\n'
                  f'{CURL} -x "$ALL_PROXY" -o /dev/null -w "bound=%{{http_code}}\\n" {bound_url} '
                  '-H "Authorization: Bearer $GH_TOKEN"')
        settings["network"]["allowedDomains"].append(f"localhost:{plain_server.port}")
        p = cred_run(ws, script, settings, env_extra={"GH_TOKEN": gh})
        assert one(p.stdout, "leak=") == "403", (out_of(p), audit(ws))
        assert other.hits == []
        assert one(p.stdout, "bound=") == "200", (out_of(p), audit(ws))
        assert [h["headers"].get("authorization") for h in plain_server.hits] == [f"Bearer {gh}"]
        socks = [r for r in audit(ws) if r.get("proto") == "http" and r.get("port") in (other.port, plain_server.port)]
        assert [(r["port"], r["decision"], bool(r.get("exfiltration"))) for r in socks] == \
            [(other.port, "block", True), (plain_server.port, "allow", False)], audit(ws)
        assert_no_leak(ws, p, gh)
    finally:
        other.close()


def test_launcher_trusted_ca_is_kept_inside_for_excluded_hosts(launcher, ws, test_ca, tls_server):
    """The launcher trusts a CA through SSL_CERT_FILE (no extraCaCertPaths): corral's bundle,
    which the sandbox's SSL_CERT_FILE now names, keeps it, so an excluded (opaque) host still
    verifies inside; and the proxy uses it for the upstreams it terminates."""
    port = tls_server.port
    settings = srt(ws, [tls_server.hostport, f"localhost:{port}"], exclude=["127.0.0.1"])
    script = (f'{CURL} -o /dev/null -w "excluded=%{{http_code}}\\n" https://127.0.0.1:{port}/echo?e=1; true\n'
              f'{CURL} -o /dev/null -w "terminated=%{{http_code}}\\n" https://localhost:{port}/echo?t=1; true')
    p = cred_run(ws, script, settings, env_extra={"SSL_CERT_FILE": str(test_ca.path)})
    assert (one(p.stdout, "excluded="), one(p.stdout, "terminated=")) == ("200", "200"), (out_of(p), audit(ws))
    assert sorted(tls_server.paths()) == ["/echo?e=1", "/echo?t=1"]


def test_the_proxy_holding_values_is_not_dumpable(launcher, ws, test_ca, tls_server):
    """While a run with a masked credential is going, its proxy process (which holds the real
    value) makes no core dump and, for an unprivileged launcher, its /proc files are root's:
    other processes of the same user cannot read its memory or environment."""
    gh = real("gh")
    settings = srt(ws, [tls_server.hostport], ca=test_ca, env_vars=[mask_env("GH_TOKEN")])
    path = ws.write(ws.base / "settings.json", json.dumps(settings))
    state = state_dir(ws)
    env = {"XDG_STATE_HOME": str(state), "GH_TOKEN": gh}
    proc = subprocess.Popen(launcher.argv(["run", "-q", "--settings", str(path), "--", "sleep", "4"]),
                            cwd=str(ws.proj), env={**launcher.env, **env}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        found = []

        def proxy_pids():
            found[:] = [int(d) for d in os.listdir("/proc") if d.isdigit() and _comm(d) == "corral-proxy"
                        and _under(int(d), proc.pid)]
            return found

        assert helpers.wait_for(proxy_pids, timeout=10), "no corral-proxy process under the run"
        (pid,) = found
        limits = Path(f"/proc/{pid}/limits").read_text()
        assert re.search(r"Max core file size\s+0\s+0", limits), limits
        if launcher.uid != 0:
            assert os.stat(f"/proc/{pid}/environ").st_uid == 0  # not dumpable: root's, not the user's
    finally:
        proc.wait(timeout=30)


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _under(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False
