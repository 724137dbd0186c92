"""`corral proxy --sessions DIR`: one egress proxy, many late-bound sessions (issue 15, warm pools).

Real parts only: `corral proxy --sessions DIR --listen tcp:127.0.0.1:PORT` as a subprocess (root and
the unprivileged launcher), two HTTPS servers on 127.0.0.1 with certificates the test CA mints
(server A reached as `localhost`, server B as `127.0.0.1`), curl as the client. Each session's
proxy password is known only to the test (the token files hold its SHA-256); its credential's
real value lives only in the proxy's environment or a file beside it (a Kubernetes Secret), and
curl sends the placeholder derived from the token line.

The pure parsing of the directory (names, token lines, `..data` entries) is table-tested at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from corral.proxy import sessions as store
from corral.proxy.credentials import session_placeholder
from tlsservers import HttpsServer, TestCA, _pem_key, make_ca

CURL_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"}  # no *_proxy, no NO_PROXY


@pytest.fixture(scope="module")
def test_ca():
    ca = make_ca("ct-sess-ca-")
    yield ca
    ca.cleanup()


@pytest.fixture
def server_a(test_ca):
    s = HttpsServer(test_ca)
    yield s
    s.close()


@pytest.fixture
def server_b(test_ca):
    s = HttpsServer(test_ca)
    yield s
    s.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token_line(password: str) -> str:
    return "sha256:" + hashlib.sha256(password.encode()).hexdigest()


def expected_placeholder(line: str, session: str, name: str, slug: str) -> str:
    """The placeholder a session's creator derives, computed here from the documented formula."""
    return f"corral-ph-{slug}-" + hashlib.sha256(f"{line}\0{session}\0{name}".encode()).hexdigest()[:32]


class Setup:
    """The sessions directory, the proxy's CA (files, as a ConfigMap/Secret would mount them),
    the secrets the proxy reads, and the running proxy."""

    def __init__(self, ws, test_ca: TestCA, server_a, server_b):
        self.ws, self.test_ca, self.a, self.b = ws, test_ca, server_a, server_b
        self.dir = ws.base / "sessions"
        self.dir.mkdir()
        self.proxy_ca = TestCA(ws.base / "proxy-ca", common_name="corral sessions proxy CA")
        self.ca_key = ws.write(ws.base / "proxy-ca" / "private" / "ca.key", _pem_key(self.proxy_ca.key).decode(),
                               mode=0o600)
        self.real_a = f"ct-real-a-{secrets.token_hex(16)}"
        self.real_b = f"ct-real-b-{secrets.token_hex(16)}"
        self.secret_file = ws.write(ws.base / "secrets" / "a-token", self.real_a + "\n", mode=0o600)
        self.passwords = {"a": secrets.token_urlsafe(18), "b": secrets.token_urlsafe(18)}
        self.port = _free_port()
        self.proc = None
        self.err_path = ws.base / "proxy.err"
        self.out_path = ws.base / "proxy.out"

    # -- session files ------------------------------------------------------------------------
    def tls_toml(self) -> str:
        return (f'[network.tls]\nterminate = ["*"]\nca_cert = "{self.proxy_ca.path}"\nca_key = "{self.ca_key}"\n'
                f'extra_ca = ["{self.test_ca.path}"]\n')

    def policy_a(self, allowed=None) -> str:
        allowed = allowed or [f"localhost:{self.a.port}"]
        return (f"[network]\nallowed_domains = {json.dumps(allowed)}\n\n{self.tls_toml()}\n"
                f'[[credentials]]\nname = "A_TOKEN"\nfrom_file = "{self.secret_file}"\nhosts = ["localhost"]\n')

    def policy_b(self) -> str:  # srt JSON
        return json.dumps({
            "network": {"allowedDomains": [f"127.0.0.1:{self.b.port}"], "deniedDomains": [],
                        "tlsTerminate": {"caCertPath": str(self.proxy_ca.path), "caKeyPath": str(self.ca_key),
                                         "extraCaCertPaths": [str(self.test_ca.path)]}},
            "filesystem": {"denyRead": [], "allowWrite": [], "denyWrite": []},
            "credentials": {"envVars": [{"name": "B_TOKEN", "mode": "mask", "injectHosts": ["127.0.0.1"]}]},
        })

    def add(self, name: str, policy: str, suffix: str = ".toml", token: str | None = None) -> None:
        """Policy first, token last (as a careful operator would; the store copes either way)."""
        self.ws.write(self.dir / f"{name}{suffix}", policy)
        self.ws.write(self.dir / f"{name}.token", (token or token_line(self.passwords[name])) + "\n")

    def placeholder(self, session: str) -> str:
        name, slug = {"a": ("A_TOKEN", "a-token"), "b": ("B_TOKEN", "b-token")}[session]
        return expected_placeholder(token_line(self.passwords[session]), session, name, slug)

    # -- the proxy ------------------------------------------------------------------------------
    def start(self):
        launcher = self.ws.launcher
        err = open(self.err_path, "w")
        out = open(self.out_path, "w")
        self.proc = subprocess.Popen(
            launcher.argv(["proxy", "--sessions", str(self.dir), "--listen", f"tcp:127.0.0.1:{self.port}",
                           "--audit", "-"]),
            cwd=str(self.ws.proj), env={**launcher.env, "B_TOKEN": self.real_b}, stdin=subprocess.DEVNULL,
            stdout=out, stderr=err)
        err.close()
        out.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.stderr()
            if "listening on" in self.stderr():
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"corral proxy --sessions did not start: {self.stderr()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stderr(self) -> str:
        return self.err_path.read_text() if self.err_path.exists() else ""

    def audit(self) -> list[dict]:
        return [json.loads(line) for line in self.out_path.read_text().splitlines() if line.strip()]

    # -- the client -----------------------------------------------------------------------------
    def curl(self, url: str, user: str | None = None, password: str | None = None, bearer: str | None = None,
             scheme: str = "http"):
        """(status, CONNECT status, curl's exit code); the proxy's CA is trusted. `scheme`:
        "socks5h" for SOCKS5 (username/password when `user` is given)."""
        argv = ["curl", "-sS", "--max-time", "20", "--proxy", f"{scheme}://127.0.0.1:{self.port}", "--cacert",
                str(self.proxy_ca.path), "-o", "/dev/null", "-w", "%{http_code} %{http_connect}"]
        if user is not None:
            argv += ["--proxy-user", f"{user}:{password if password is not None else self.passwords[user]}"]
        if bearer is not None:
            argv += ["-H", f"Authorization: Bearer {bearer}"]
        p = subprocess.run(argv + [url], capture_output=True, text=True, timeout=30, env=CURL_ENV)
        code, _, connect = p.stdout.partition(" ")
        return int(code or 0), int(connect or 0), p.returncode

    def until(self, url: str, want: int, user=None, bearer=None, timeout: float = 6.0):
        """Retry until the response (or CONNECT) status is `want` (a reload is picked up within a
        second or two)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.curl(url, user, bearer=bearer)
            if want in got[:2] or time.monotonic() > deadline:
                return got
            time.sleep(0.2)


@pytest.fixture
def setup(ws, test_ca, server_a, server_b):
    s = Setup(ws, test_ca, server_a, server_b)
    yield s
    s.stop()
    s.proxy_ca.cleanup()


def _auth(server) -> list[str]:
    return [r.header("authorization") for r in server.got("/echo")]


# -- two sessions, two policies, one proxy ----------------------------------------------------------


def test_each_session_reaches_only_its_own_hosts_with_only_its_own_credentials(launcher, setup):
    s = setup
    s.add("a", s.policy_a())
    s.add("b", s.policy_b(), ".json")
    s.start()
    url_a, url_b = s.a.url("/echo", host="localhost"), s.b.url("/echo")
    ph_a, ph_b = s.placeholder("a"), s.placeholder("b")

    # a: host A, its credential injected (curl sent the derived placeholder, the server saw the value)
    assert s.curl(url_a, "a", bearer=ph_a)[0] == 200, s.stderr()
    assert _auth(s.a) == [f"Bearer {s.real_a}"]
    # a: host B is refused at CONNECT
    status, connect, _ = s.curl(url_b, "a", bearer=ph_a)
    assert connect == 403 and status != 200
    assert s.b.got() == []
    # b: the reverse
    assert s.curl(url_b, "b", bearer=ph_b)[0] == 200, s.stderr()
    assert _auth(s.b) == [f"Bearer {s.real_b}"]
    status, connect, _ = s.curl(url_a, "b", bearer=ph_b)
    assert connect == 403 and len(s.a.got()) == 1
    # a's placeholder presented in b is not injected: b's injector knows only b's
    assert s.curl(url_b, "b", bearer=ph_a)[0] == 200
    assert _auth(s.b)[-1] == f"Bearer {ph_a}"
    # wrong password, another session's password, no credentials (no open session): 407
    assert s.curl(url_a, "a", password="not-the-password")[1] == 407
    assert s.curl(url_a, "a", password=s.passwords["b"])[1] == 407
    assert s.curl(url_b, "nosuch", password="x")[1] == 407
    assert s.curl(url_b)[1] == 407
    assert s.curl(f"http://127.0.0.1:{s.b.port}/plain")[0] == 407  # a plain-HTTP request too
    # SOCKS5: the same sessions, by username/password
    assert s.curl(url_a, "a", bearer=ph_a, scheme="socks5h")[0] == 200, s.stderr()
    assert _auth(s.a)[-1] == f"Bearer {s.real_a}"
    assert s.curl(url_b, "a", bearer=ph_a, scheme="socks5h")[2] != 0  # refused: curl fails
    assert s.curl(url_b, "a", password="wrong", scheme="socks5h")[2] != 0
    assert s.curl(url_b, scheme="socks5h")[2] != 0
    assert s.curl(url_b, "b", bearer=ph_b, scheme="socks5h")[0] == 200
    assert len(s.b.got("/echo")) == 3 and len(s.a.got("/echo")) == 2
    s.stop()

    err = s.stderr()
    assert "sessions from" in err and ": 2 (a, b)" in err, err
    assert "session a loaded: 1 allowed hosts, credentials A_TOKEN (from " in err, err
    assert "session b loaded: 1 allowed hosts, credentials B_TOKEN (from $B_TOKEN)" in err, err
    assert "Traceback" not in err
    records = s.audit()
    assert {(r.get("run"), r.get("host")) for r in records
            if r.get("proto") == "https" and r.get("decision") == "allow"} == {("a", "localhost"), ("b", "127.0.0.1")}
    assert {(r.get("run"), r.get("host")) for r in records if r.get("decision") == "block"} >= {
        ("a", "127.0.0.1"), ("b", "localhost")}
    # Never a password, a real value or a token line in what the proxy says or logs;
    # the token files hold the SHA-256, never the password.
    said = err + s.out_path.read_text()
    for secret in (*s.passwords.values(), s.real_a, s.real_b, token_line(s.passwords["a"])):
        assert secret not in said
    for path in s.dir.iterdir():
        text = path.read_text()
        assert not any(pw in text for pw in s.passwords.values()), path


def test_connection_without_credentials_gets_the_open_session_only(launcher, setup):
    s = setup
    s.add("a", s.policy_a())
    s.add("anon", f'[network]\nallowed_domains = ["127.0.0.1:{s.b.port}"]\n\n{s.tls_toml()}', token="open")
    s.start()
    assert s.curl(s.b.url("/echo"))[0] == 200, s.stderr()
    assert s.curl(s.a.url("/echo", host="localhost"))[1] == 403  # the open session's rules, not a's
    assert s.curl(s.a.url("/echo", host="localhost"), "a", bearer=s.placeholder("a"))[0] == 200
    assert _auth(s.a) == [f"Bearer {s.real_a}"]
    assert s.curl(s.b.url("/echo"), "a", password="wrong")[1] == 407  # wrong credentials: not the open one
    assert s.curl(s.b.url("/echo"), "anon", password="anything")[1] == 407  # open means no credentials


def test_two_open_sessions_are_both_refused(launcher, setup):
    s = setup
    s.add("a", s.policy_a())
    for name in ("x", "y"):
        s.add(name, f'[network]\nallowed_domains = ["127.0.0.1:{s.b.port}"]\n', token="open")
    s.start()
    assert s.curl(s.b.url("/echo"))[1] == 407
    assert s.curl(s.a.url("/echo", host="localhost"), "a", bearer=s.placeholder("a"))[0] == 200
    err = s.stderr()
    line = [ln for ln in err.splitlines() if "x.token" in ln]
    assert len(line) == 1 and "y.token" in line[0] and "open" in line[0] and "fix:" in line[0], err


def test_sessions_added_changed_broken_and_removed_while_running(launcher, setup):
    s = setup
    s.add("a", s.policy_a())
    s.start()
    url_a, url_b = s.a.url("/echo", host="localhost"), s.b.url("/echo")
    assert s.curl(url_b, "b")[1] == 407  # not there yet
    # added without a restart: a client naming it makes the proxy look at once
    s.add("b", s.policy_b(), ".json")
    assert s.until(url_b, 200, "b", bearer=s.placeholder("b"))[0] == 200, s.stderr()
    assert _auth(s.b)[-1] == f"Bearer {s.real_b}"
    # a broken session file: one line naming the file, key and value; the others keep working
    s.ws.write(s.dir / "c.toml", "[network]\nallowed_domains = 5\n")
    s.ws.write(s.dir / "c.token", "open\n")
    s.ws.write(s.dir / "d.token", "this-is-not-a-digest\n")
    s.ws.write(s.dir / "d.toml", "[network]\n")
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline and "d.token" not in s.stderr():
        s.curl(url_b, "b")
        time.sleep(0.2)
    err = s.stderr()
    c_lines = [ln for ln in err.splitlines() if "c.toml" in ln]
    assert len(c_lines) == 1 and "session c refused" in c_lines[0] and "allowed_domains" in c_lines[0] \
        and "5" in c_lines[0], err
    d_lines = [ln for ln in err.splitlines() if "d.token" in ln]
    assert len(d_lines) == 1 and "fix:" in d_lines[0] and "this-is-not-a-digest" not in err, err
    assert "Traceback" not in err
    assert s.curl(url_a, "a", bearer=s.placeholder("a"))[0] == 200
    assert s.curl(url_b, "b", bearer=s.placeholder("b"))[0] == 200
    assert s.curl(url_b)[1] == 407  # the broken open session c is refused, not half-served
    # changed: a may now reach B too (picked up within a second or so)
    s.ws.write(s.dir / "a.toml", s.policy_a([f"localhost:{s.a.port}", f"127.0.0.1:{s.b.port}"]))
    assert s.until(url_b, 200, "a")[0] == 200, s.stderr()
    assert _auth(s.b)[-1] is None  # b's credential is not a's: nothing injected for a at B
    # removed: new connections get 407
    (s.dir / "a.toml").unlink()
    (s.dir / "a.token").unlink()
    assert s.until(url_a, 407, "a")[1] == 407, s.stderr()
    assert s.curl(url_b, "b", bearer=s.placeholder("b"))[0] == 200
    s.stop()
    err = s.stderr()
    assert "session b loaded" in err and "session a reloaded" in err and "session a removed" in err, err


def test_rotated_credential_file_is_picked_up_without_touching_the_session(launcher, setup):
    """A Kubernetes Secret rotated in place (the kubelet writes a new file and swaps a link):
    the session's next connections carry the new value; nothing in the sessions directory changed."""
    s = setup
    s.add("a", s.policy_a())
    s.start()
    url_a, ph_a = s.a.url("/echo", host="localhost"), s.placeholder("a")
    assert s.curl(url_a, "a", bearer=ph_a)[0] == 200, s.stderr()
    assert _auth(s.a) == [f"Bearer {s.real_a}"]
    rotated = f"ct-rotated-a-{secrets.token_hex(16)}"
    fresh = s.ws.write(s.secret_file.parent / "a-token.new", rotated + "\n", mode=0o600)
    os.replace(fresh, s.secret_file)  # a new inode, as a Secret volume's swap gives
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        assert s.curl(url_a, "a", bearer=ph_a)[0] == 200, s.stderr()
        if _auth(s.a)[-1] == f"Bearer {rotated}":
            break
        time.sleep(0.3)
    assert _auth(s.a)[-1] == f"Bearer {rotated}", s.stderr()
    # the old value is no longer sent, and the placeholder did not change
    assert s.curl(url_a, "a", bearer=ph_a)[0] == 200 and _auth(s.a)[-1] == f"Bearer {rotated}"
    s.stop()
    err = s.stderr()
    assert "session a reloaded (its credential or CA files changed)" in err, err
    assert rotated not in err and s.real_a not in err and rotated not in s.out_path.read_text()


def test_kubernetes_volume_layout_and_atomic_swap(launcher, setup):
    """A ConfigMap volume: keys are symlinks into `..data`, a link to a timestamped directory
    that the kubelet swaps atomically on update."""
    s = setup
    first = s.dir / "..2024_01_01_00_00_00.000000001"
    s.ws.write(first / "a.toml", s.policy_a())
    s.ws.write(first / "a.token", token_line(s.passwords["a"]) + "\n")
    (s.dir / "..data").symlink_to(first.name)
    for key in ("a.toml", "a.token"):
        (s.dir / key).symlink_to(f"..data/{key}")
    s.ws.chown()
    s.start()
    url_a, url_b = s.a.url("/echo", host="localhost"), s.b.url("/echo")
    assert s.curl(url_a, "a", bearer=s.placeholder("a"))[0] == 200, s.stderr()
    assert s.curl(url_b, "a")[1] == 403
    second = s.dir / "..2024_01_01_00_00_01.000000002"
    s.ws.write(second / "a.toml", s.policy_a([f"localhost:{s.a.port}", f"127.0.0.1:{s.b.port}"]))
    s.ws.write(second / "a.token", token_line(s.passwords["a"]) + "\n")
    (s.dir / "..data_tmp").symlink_to(second.name)
    s.ws.chown()
    os.rename(s.dir / "..data_tmp", s.dir / "..data")
    subprocess.run(["rm", "-rf", str(first)], check=True)
    assert s.until(url_b, 200, "a")[0] == 200, s.stderr()
    assert "..data" not in s.stderr() and "..2024" not in s.stderr()


def test_sessions_and_policy_options_exclude_each_other(launcher, ws):
    import helpers

    p = helpers.run(launcher, ["proxy", "--listen", "tcp:127.0.0.1:9", "--sessions", str(ws.base), "--policy",
                               str(ws.base / "p.toml")], ws.proj)
    assert p.returncode == 2 and "--sessions and --policy exclude each other" in p.stderr, p.stderr
    p = helpers.run(launcher, ["proxy", "--listen", "tcp:127.0.0.1:9", "--sessions", str(ws.base / "nope")],
                    ws.proj)
    assert p.returncode == 125 and "not a directory" in p.stderr and "Traceback" not in p.stderr, p.stderr


# -- pure: the directory's names and token lines -------------------------------------------------

DIGEST = "0" * 63 + "f"


@pytest.mark.parametrize("text,want", [
    ("open\n", "open"),
    ("  open  ", "open"),
    (f"sha256:{DIGEST}\n", f"sha256:{DIGEST}"),
    (f"\nsha256:{DIGEST}\n\n", f"sha256:{DIGEST}"),
    (f"sha256:{DIGEST.upper()}", "lowercase"),
    ("sha256:abc", "64 hex digits"),
    (f"sha256:{DIGEST}\nopen\n", "one line, found 2"),
    ("", "one line, found 0"),
    ("OPEN", "lowercase"),
    ("hunter2-my-password", "neither"),
    (f"sha512:{DIGEST}", "neither"),
])
def test_token_lines(text, want):
    if want.startswith(("open", "sha256:")):
        assert store.parse_token(text) == want
    else:
        with pytest.raises(ValueError) as err:
            store.parse_token(text)
        assert want in str(err.value)
        assert "hunter2" not in str(err.value)  # never repeats what may be a password


@pytest.mark.parametrize("entries,sessions,problems", [
    (["a.toml", "a.token"], {"a": ("a.toml", "a.token")}, []),
    (["b.json", "b.token", "README.md", "notes.txt"], {"b": ("b.json", "b.token")}, []),
    (["..data", "..2024_01_01_00_00_00.1", ".a.toml.swp", "a.toml", "a.token"], {"a": ("a.toml", "a.token")}, []),
    (["a.toml", "a.json", "a.token"], {}, ["two policies"]),
    (["a.token"], {}, ["no a.toml or a.json"]),
    (["a.toml"], {}, ["no a.token"]),
    (["Bad.toml", "Bad.token"], {}, ["not a DNS label", "not a DNS label"]),
    (["-a.toml", "a-.token", "a_b.toml"], {}, ["not a DNS label"] * 3),
    (["x" * 63 + ".toml", "x" * 63 + ".token"], {"x" * 63: ("x" * 63 + ".toml", "x" * 63 + ".token")}, []),
    (["x" * 64 + ".toml"], {}, ["not a DNS label"]),
    (["a-1.toml", "a-1.token", "9.json", "9.token"], {"a-1": ("a-1.toml", "a-1.token"), "9": ("9.json", "9.token")},
     []),
])
def test_directory_entries(entries, sessions, problems):
    got, found = store.group_entries(entries)
    assert got == sessions
    assert len(found) == len(problems)
    for (_, text), want in zip(sorted(found, key=lambda p: p[1]), sorted(problems)):
        assert want in text and "fix:" in text


def test_session_placeholder_is_derived_from_the_token_line_session_and_name():
    line = token_line("pw")
    ph = session_placeholder(line, "a", "GITHUB_TOKEN")
    assert ph == expected_placeholder(line, "a", "GITHUB_TOKEN", "github-token")
    assert ph == session_placeholder(line, "a", "GITHUB_TOKEN")  # deterministic
    assert len({ph, session_placeholder(line, "b", "GITHUB_TOKEN"), session_placeholder(token_line("pw2"), "a",
                "GITHUB_TOKEN"), session_placeholder(line, "a", "OTHER")}) == 4


def test_sessions_module_is_not_imported_by_corral_run(me, ws):
    import sys

    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "corral", "run", "--", "true"], cwd=str(ws.proj),
                         env=me.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "corral.cli" in out.stderr and "corral.proxy.sessions" not in out.stderr
