"""A run without network fails fast and says so (sandbox/offline.py).

Names are refused at once as "not found" (EAI_NONAME, never the EAI_AGAIN clients retry),
proxy requests get a 403 at once, connections elsewhere fail at once, and corral prints one
line naming what was refused. Every sandboxed test runs for both launchers; nothing here
reaches a real registry: the sandbox has no route but its own loopback, and the only servers
are corral's responder inside and the test's own on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import pytest

import helpers
from corral.sandbox import offline

END = "corral: no network for this run: refused "

# ---------------------------------------------------------------------------- pure decisions

REQUEST_HOSTS = [
    (b"CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n", "pypi.org"),
    (b"CONNECT Registry.NPMjs.org.:443 HTTP/1.1\r\n\r\n", "registry.npmjs.org"),
    (b"CONNECT example.com:8443 HTTP/1.1\r\n\r\n", "example.com:8443"),
    (b"GET http://deb.debian.org/debian/dists/x HTTP/1.1\r\nHost: deb.debian.org\r\n\r\n", "deb.debian.org"),
    (b"GET http://user:pw@example.org:8080/p?q HTTP/1.1\r\n\r\n", "example.org:8080"),
    (b"GET / HTTP/1.1\r\nHost: origin.example\r\n\r\n", "origin.example"),
    (b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n", "[2001:db8::1]"),
    (b"CONNECT 93.184.216.34:443 HTTP/1.1\r\n\r\n", "93.184.216.34"),
    (b"CONNECT evil\x1b[31m.com:443 HTTP/1.1\r\n\r\n", None),  # not a host name: not recorded
    (b"CONNECT a,b.com:443 HTTP/1.1\r\n\r\n", None),
    (b"garbage\r\n\r\n", None),
    (b"", None),
]


@pytest.mark.parametrize("head,host", REQUEST_HOSTS)
def test_request_host_names_what_a_proxy_request_asked_for(head, host):
    assert offline.request_host(head) == host


HOST_NAMES = [
    ("PyPI.org.", "pypi.org"),
    ("_http._tcp.deb.debian.org", "deb.debian.org"),  # apt's SRV question names the host
    ("4.3.2.1.in-addr.arpa", None),
    ("localhost", None),
    ("", None),
    ("-x.com", None),
    ("a b.com", None),
    ("x" * 254, None),
]


@pytest.mark.parametrize("raw,name", HOST_NAMES)
def test_host_name_keeps_only_host_names(raw, name):
    assert offline.host_name(raw) == name


def test_dns_reply_is_nxdomain_and_names_the_question():
    query = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
             b"\x04pypi\x03org\x00\x00\x01\x00\x01")
    reply, name = offline.dns_reply(query)
    assert name == "pypi.org"
    assert reply[:2] == b"\x12\x34" and reply[3] & 0x0F == 3  # same id, rcode NXDOMAIN
    assert reply[2] & 0x80  # a response
    assert offline.dns_reply(b"\x00")[0] is None  # too short to answer at all


def test_summary_escapes_counts_and_suggests_presets():
    assert offline.summary([]) == ""
    names = [f"h{i}.example" for i in range(12)]
    line = offline.summary(names, extra=3, presets=lambda n: ["npm"] if n == "h0.example" else [])
    assert line.startswith(END + "h0.example, h1.example")
    assert "and 7 more" in line  # 12 - 8 shown + 3 not kept
    assert line.endswith("(allow with --allow-domain NAME, or --allow-preset npm)")
    assert "\x1b" not in offline.summary(["a\x1b[2Jb"])


def test_refused_names_are_bounded_and_deduplicated():
    r = offline.Refused(limit=2)
    for n in ("a.com", "a.com", "b.com", "c.com", None, "d.com"):
        r.add(n)
    assert offline.decode(r.encode()) == (["a.com", "b.com"], 2)


def test_environment_points_proxies_at_the_refusal_and_keeps_a_chosen_retry_count():
    env = offline.environment({})
    assert env["HTTPS_PROXY"] == env["http_proxy"] == f"http://127.0.0.1:{offline.HTTP_PORT}"
    assert env["PIP_RETRIES"] == "0"
    assert "PIP_RETRIES" not in offline.environment({"PIP_RETRIES": "3"})


def test_nsswitch_resolves_hosts_from_files_then_corral_only():
    text = "passwd: files systemd\nhosts: files mdns4_minimal [NOTFOUND=return] resolve dns myhostname\n"
    out = offline.nsswitch_conf(text)
    assert "passwd: files systemd" in out
    assert [line for line in out.splitlines() if line.startswith("hosts:")] == ["hosts: files dns"]
    assert offline.nsswitch_conf(None, dns=False) == "hosts: files\n"


# ---------------------------------------------------------------------------- sandboxed runs

GAI = r"""
import socket, sys, time
t = time.monotonic()
try:
    socket.getaddrinfo(sys.argv[1], 443)
    print("resolved")
except socket.gaierror as e:
    print("EAI_NONAME" if e.errno == socket.EAI_NONAME else "EAI_AGAIN" if e.errno == socket.EAI_AGAIN else e.errno)
print(f"{time.monotonic() - t:.3f}")
"""


def _end_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(END)]
    assert len(lines) == 1, stderr
    return lines[0]


def test_unknown_name_is_not_found_at_once_and_named_at_the_end(launcher, ws):
    r = helpers.run(launcher, ["run", "--", "python3", "-c", GAI, "pypi.org"], ws.proj)
    assert r.returncode == 0, r.stderr
    verdict, seconds = r.stdout.split()
    assert verdict == "EAI_NONAME", r.stdout  # "not found": clients do not retry
    assert float(seconds) < 2
    line = _end_line(r.stderr)
    assert "pypi.org" in line and "--allow-domain" in line


def test_https_through_the_proxy_variables_is_refused_at_once(launcher, ws):
    r = ws.sh("curl -sS https://example.invalid/x; echo rc=$?")
    assert "rc=56" in r.stdout and "403" in r.stderr, (r.stdout, r.stderr)
    assert "example.invalid" in _end_line(r.stderr)


def test_plain_http_is_refused_with_a_body_that_says_why(launcher, ws):
    r = ws.sh("curl -sS -i http://deb.example.invalid/dists/x")
    assert "403" in r.stdout.splitlines()[0]
    assert "network access is not allowed for this run" in r.stdout
    assert "deb.example.invalid" in _end_line(r.stderr)


def test_direct_connection_to_an_address_fails_at_once(launcher, ws):
    script = ("import socket,time\nt=time.monotonic()\ns=socket.socket()\n"
              "try: s.connect(('192.0.2.1', 443)); print('connected')\n"
              "except OSError as e: print(e.errno, round(time.monotonic()-t, 3))\n")
    r = helpers.run(launcher, ["run", "--", "python3", "-c", script], ws.proj)
    errno, seconds = r.stdout.split()
    assert int(errno) in (101, 111), r.stdout  # ENETUNREACH / ECONNREFUSED, never a timeout
    assert float(seconds) < 2


def test_host_loopback_service_stays_out_of_reach(launcher, ws):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    got = []
    t = threading.Thread(target=lambda: got.append(srv.accept()), daemon=True)
    t.start()
    try:
        script = (f"import socket\ns=socket.socket()\ntry: s.connect(('127.0.0.1', {port})); print('connected')\n"
                  "except OSError as e: print('refused', e.errno)\n")
        r = helpers.run(launcher, ["run", "--", "python3", "-c", script], ws.proj)
        assert r.stdout.strip() == "refused 111", r.stdout  # the sandbox's own loopback
        assert not got
    finally:
        srv.close()


def test_sandbox_own_loopback_server_still_works(launcher, ws):
    script = ("import socket\nsrv=socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()\n"
              "c=socket.create_connection(srv.getsockname()); a,_=srv.accept(); c.sendall(b'ok'); print(a.recv(2).decode())\n")
    r = helpers.run(launcher, ["run", "--", "python3", "-c", script], ws.proj)
    assert r.stdout.strip() == "ok", r.stderr
    assert END not in r.stderr  # nothing refused, nothing said


def test_quiet_silences_the_end_line(launcher, ws):
    r = helpers.run(launcher, ["run", "-q", "--", "python3", "-c", GAI, "pypi.org"], ws.proj)
    assert r.stdout.split()[0] == "EAI_NONAME"
    assert END not in r.stderr


def test_launcher_proxy_settings_do_not_reach_the_command(launcher, ws):
    env = {"ALL_PROXY": "socks5://u:sekrit@10.1.2.3:1080", "HTTPS_PROXY": "http://u:sekrit@10.1.2.3:3128",
           "PIP_RETRIES": "2"}
    r = helpers.run(launcher, ["run", "--", "env"], ws.proj, env_extra=env)
    assert "sekrit" not in r.stdout
    assert f"HTTPS_PROXY=http://127.0.0.1:{offline.HTTP_PORT}" in r.stdout
    assert "PIP_RETRIES=2" in r.stdout  # the launcher's own choice is kept


def test_hostile_names_reach_the_terminal_escaped_or_not_at_all(launcher, ws):
    script = ("import socket\nfor h in ('evil\\x1b[2J.example', 'ok.example'):\n"
              "    s=socket.create_connection(('127.0.0.1', %d)); s.sendall(b'CONNECT ' + h.encode() + b':443 HTTP/1.1\\r\\n\\r\\n');"
              " print(s.recv(100)[:12])\n") % offline.HTTP_PORT
    r = helpers.run(launcher, ["run", "--", "python3", "-c", script], ws.proj)
    assert r.stdout.count("403") == 2, r.stdout
    assert "\x1b" not in r.stderr
    assert _end_line(r.stderr) == END + "ok.example (allow with --allow-domain NAME)"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_lookup_and_fetch_fail_at_once(launcher, ws):
    script = ("const t=Date.now();require('dns').lookup('registry.npmjs.org',(e)=>{console.log(e&&e.code);"
              "require('https').get('https://nodejs.example/',()=>{}).on('error',(e)=>console.log(e.code, Date.now()-t))})")
    r = helpers.run(launcher, ["run", "--", "node", "-e", script], ws.proj)
    out = r.stdout.split()
    assert out[0] == "ENOTFOUND" and out[1] == "ENOTFOUND", r.stdout
    assert int(out[2]) < 2000
    line = _end_line(r.stderr)
    assert "registry.npmjs.org" in line and "nodejs.example" in line


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_npm_view_fails_in_seconds_not_minutes(launcher, ws):
    t = time.monotonic()
    r = helpers.run(launcher, ["run", "--", "npm", "view", "left-pad", "version", "--registry",
                               "https://registry.npmjs.org/"], ws.proj, timeout=60)
    took = time.monotonic() - t
    print(f"npm view without network: {took:.2f} s")
    assert r.returncode != 0
    assert "403" in r.stderr
    assert "registry.npmjs.org" in _end_line(r.stderr)
    assert took < 10  # a sanity bound (today: well under 1 s); before: 70 s of retries


def test_pip_download_fails_in_seconds_not_minutes(launcher, ws):
    t = time.monotonic()
    r = helpers.run(launcher, ["run", "--", "env", "PIP_CONFIG_FILE=/dev/null", "python3", "-m", "pip", "download",
                               "requests", "--no-deps", "-d", "x", "--index-url", "https://pypi.org/simple"],
                    ws.proj, timeout=60)
    took = time.monotonic() - t
    print(f"pip download without network: {took:.2f} s")
    assert r.returncode != 0
    assert "pypi.org" in _end_line(r.stderr)
    assert took < 10  # a sanity bound (today: well under 1 s); before: 8 s of retries


def test_refused_names_are_audited_and_suggest_allows_them(launcher, ws):
    """A run without network leaves its refusals in the audit log: `corral audit --suggest`
    then names the allowance (a preset when one covers the name)."""
    name = f"nonet-{os.getpid()}.example.org"
    p = ws.sh(f"python3 -c \"import socket; socket.getaddrinfo('{name}', 443)\"; "
              "python3 -c \"import socket; socket.getaddrinfo('files.pythonhosted.org', 443)\"")
    assert name in p.stderr
    s = helpers.run(launcher, ["audit", "--suggest"], ws.proj)
    assert s.returncode == 0, s.stdout + s.stderr
    assert f"--allow-domain {name}" in s.stdout and "--allow-preset pypi" in s.stdout, s.stdout
