"""Real networks (issue 11, point 3): the launcher's proxy variables as corral's parent proxy,
split-horizon DNS trusted by name, allowlist presets, and `corral audit --suggest`.

Table tests for the pure parts; real runs (root and unprivileged) with a CONNECT parent proxy
(tests/test_parent_proxy.ConnectProxy) and an HTTP server, both on 127.0.0.1. A name that the
host's resolver maps to 127.0.0.1 comes from a test /etc/hosts bound over the real one in a
private mount namespace made for the one corral process (needs root; the unprivileged launch
drops to corral-test inside that namespace).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from ipaddress import ip_address

import pytest

import helpers
from corral.policy import presets
from corral.policy.model import NetworkPolicy, ParentProxy
from corral.policy.proxyenv import from_environment, with_environment
from corral.policy.upstream import bypasses, redact, split_proxy_url
from corral.proxy import audit
from corral.proxy.rules import Rules

PW = "parent-secret-" + "5d" * 6


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ---------------------------------------------------------------------------------------------
# Parent proxy URLs, NO_PROXY and the launcher's environment (pure)
# ---------------------------------------------------------------------------------------------

URLS = [
    ("http://proxy.corp:3128", ("proxy.corp", 3128, None)),
    ("http://u:p%40ss@proxy.corp:8080/", ("proxy.corp", 8080, "u:p%40ss")),
    ("http://dom%5Cuser@10.0.0.5", ("10.0.0.5", 80, "dom%5Cuser")),
    ("proxy.corp:3128", ("proxy.corp", 3128, None)),  # schemeless, as curl reads it
    ("HTTP://Proxy.Corp:3128", ("proxy.corp", 3128, None)),
    ("http://[fd00::1]:3128", ("fd00::1", 3128, None)),
    ("http://a:b@c@proxy:1", ("proxy", 1, "a:b@c")),  # the last '@' ends the userinfo
]


@pytest.mark.parametrize("url,expected", URLS)
def test_proxy_url_parts(url, expected):
    assert split_proxy_url(url) == expected


@pytest.mark.parametrize("url,fragment", [
    ("https://proxy.corp:443", "(https://) is not supported"),
    ("socks5://proxy.corp:1080", "unsupported scheme socks5://"),
    ("http://proxy.corp:0", "invalid port"),
    ("http://proxy.corp:99999", "invalid port"),
    ("http://:3128", "no proxy host"),
    ("http://[fd00::1", "bracketed"),
    ("http://pro xy:1", "whitespace"),
    ("", "empty"),
])
def test_bad_proxy_urls_say_why(url, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        split_proxy_url(url)


@pytest.mark.parametrize("url,shown", [
    ("http://user:secret@proxy:3128", "http://user:***@proxy:3128"),
    ("http://user@proxy:3128/", "http://user@proxy:3128/"),
    ("proxy:3128", "proxy:3128"),
    ("http://a:b@c@proxy:1", "http://a:***@proxy:1"),
])
def test_redact_hides_the_password(url, shown):
    assert redact(url) == shown


NO_PROXY = [
    # entries, host, loopback_direct, bypass?
    (("*",), "pypi.org", True, True),
    ((".corp",), "git.corp", True, True),
    ((".corp",), "corp", True, True),
    (("corp",), "a.b.corp", True, True),
    (("*.corp",), "git.corp", True, True),
    (("corp",), "notcorp", True, False),
    (("corp",), "corp.example", True, False),
    (("git.corp:8080",), "git.corp", True, True),  # the port is ignored (srt, Go)
    (("10.0.0.0/8",), "10.1.2.3", True, True),
    (("10.0.0.0/8",), "11.1.2.3", True, False),
    (("10.0.0.0/8",), "ten.corp", True, False),  # a range matches addresses, not names
    (("10.1.2.3",), "10.1.2.3", True, True),
    (("10.1.2.3:443",), "10.1.2.3", True, True),
    (("[fd00::1]:443",), "fd00::1", True, True),
    (("fd00::/8",), "fd00::1", True, True),
    (("bogus/99",), "1.2.3.4", True, False),  # unparsable: matches nothing
    ((), "pypi.org", True, False),
    ((), "localhost", True, True),  # loopback never goes to the parent...
    ((), "127.0.0.1", True, True),
    ((), "::1", True, True),
    ((), "api.localhost", True, True),
    ((), "127.0.0.1", False, False),  # ...unless asked for
    ((" PyPI.org ",), "pypi.org", True, True),
]


@pytest.mark.parametrize("entries,host,loopback,expected", NO_PROXY)
def test_no_proxy_matching(entries, host, loopback, expected):
    assert bypasses(entries, host, loopback) is expected


ENV = [
    # environment, expected (http, https, no_proxy, origin) of the parent, warnings
    ({}, None, 0),
    ({"HTTPS_PROXY": "http://u:pw@proxy:3128"}, (None, "http://u:pw@proxy:3128", (), "HTTPS_PROXY"), 0),
    ({"https_proxy": "proxy:3128"}, (None, "http://proxy:3128", (), "https_proxy"), 0),
    ({"HTTPS_PROXY": "http://up:1", "https_proxy": "http://low:1"}, (None, "http://up:1", (), "HTTPS_PROXY"), 0),
    ({"http_proxy": "http://h:1", "NO_PROXY": "localhost,.corp, 10.0.0.0/8"},
     ("http://h:1", None, ("localhost", ".corp", "10.0.0.0/8"), "http_proxy"), 0),
    ({"no_proxy": ".corp"}, None, 0),  # NO_PROXY alone: no parent
    ({"HTTPS_PROXY": "socks5://h:1080"}, None, 1),
    ({"HTTPS_PROXY": "socks5://h:1080", "HTTP_PROXY": "http://h:3128"}, ("http://h:3128", None, (), "HTTP_PROXY"), 1),
    ({"HTTPS_PROXY": "", "HTTP_PROXY": "http://h:3128"}, ("http://h:3128", None, (), "HTTP_PROXY"), 0),
]


@pytest.mark.parametrize("environ,expected,warnings", ENV)
def test_parent_proxy_from_the_environment(environ, expected, warnings):
    net, lines = with_environment(NetworkPolicy(allowed_domains=("a.org",)), environ)
    assert len(lines) == warnings
    assert not any("pw" in line or "secret" in line for line in lines)
    pp = net.parent_proxy
    assert (None if pp is None else (pp.http, pp.https, pp.no_proxy, pp.origin)) == expected
    assert net.parent_proxy_env is False  # applied once


def test_a_warning_never_shows_the_password():
    _, lines = from_environment({"HTTPS_PROXY": "ftp://user:hunter2-pw@proxy:21"})
    assert len(lines) == 1 and "hunter2" not in lines[0] and "user:***@proxy:21" in lines[0]


def test_opt_out_and_explicit_tables_ignore_the_environment():
    env = {"HTTPS_PROXY": "http://env:1", "NO_PROXY": ".env"}
    off = NetworkPolicy(parent_proxy_env=False)
    assert with_environment(off, env)[0].parent_proxy is None
    table = NetworkPolicy(parent_proxy=ParentProxy(http="http://table:2"), parent_proxy_env=False)
    assert with_environment(table, env)[0].parent_proxy.url == "http://table:2"
    # srt's parentProxy: what it leaves out comes from the environment, field by field
    partial = NetworkPolicy(parent_proxy=ParentProxy(http="http://srt:3"))
    pp = with_environment(partial, env)[0].parent_proxy
    assert (pp.http, pp.https, pp.no_proxy) == ("http://srt:3", "http://env:1", (".env",))


def test_credentials_in_the_environment_become_proxy_authorization():
    net, _ = with_environment(NetworkPolicy(), {"HTTPS_PROXY": "http://dom%5Cme:p%3Aw@proxy:3128"})
    assert net.parent_proxy.authorization() == basic("dom\\me", "p:w").encode()
    assert net.parent_proxy.for_host("pypi.org") == ("proxy", 3128)
    assert net.parent_proxy.for_host("127.0.0.1") is None


def test_native_parent_proxy_false_and_table(tmp_path):
    from corral.policy.model import LaunchContext
    from corral.policy.native import load_toml

    ctx = LaunchContext(cwd=str(tmp_path), home=str(tmp_path), uid=1000, gid=1000)
    assert load_toml("[network]\nparent_proxy = false\n", "p.toml", ctx).network.parent_proxy_env is False
    net = load_toml("[network.parent_proxy]\nhttp = 'http://p:1'\n", "p.toml", ctx).network
    assert net.parent_proxy_env is False and net.parent_proxy.url == "http://p:1"
    assert load_toml("[network]\n", "p.toml", ctx).network.parent_proxy_env is True
    from corral.errors import PolicyError

    with pytest.raises(PolicyError, match=re.escape("(https://) is not supported")):
        load_toml("[network.parent_proxy]\nhttp = 'https://u:pw@p:1'\n", "p.toml", ctx)
    try:
        load_toml("[network.parent_proxy]\nhttp = 'https://u:pw@p:1'\n", "p.toml", ctx)
    except PolicyError as exc:
        assert "pw" not in str(exc)


# ---------------------------------------------------------------------------------------------
# trust_resolution (pure)
# ---------------------------------------------------------------------------------------------

TRUST_RULES = Rules(allowed=["pypi.org", "*.corp.example", "corp.example", "other.org", "10.9.0.0/16"],
                    denied=["10.6.6.6"], denied_addresses=["10.7.0.0/16"],
                    trusted=["pypi.org", "*.corp.example"])

TRUST = [
    # host, addresses, allowed, reason fragment
    ("pypi.org", ["10.1.2.3"], True, ""),
    ("pypi.org", ["127.0.0.5"], True, ""),
    ("pypi.org", ["192.168.1.1", "fd00::5"], True, ""),
    ("pypi.org", ["100.64.0.1"], True, ""),
    ("pypi.org", ["169.254.10.1"], True, ""),  # link-local (a gateway)
    ("pypi.org", ["169.254.169.254"], False, "pypi.org resolved to 169.254.169.254 (a metadata address): refused"),
    ("pypi.org", ["0.0.0.0"], False, "(an unspecified/this-network address)"),
    ("pypi.org", ["224.0.0.1"], False, "(a multicast address)"),
    ("pypi.org", ["10.6.6.6"], False, "denied by deniedDomains entry '10.6.6.6'"),  # deny beats trust
    ("pypi.org", ["10.7.1.1"], False, "deniedResolvedAddresses entry '10.7.0.0/16'"),
    ("mirror.corp.example", ["10.1.2.3"], True, ""),
    ("a.b.corp.example", ["127.0.0.1"], True, ""),
    # the trust is for those names only: the same addresses for any other name are refused
    ("other.org", ["10.1.2.3"], False,
     'other.org resolved to 10.1.2.3 (a private address): refused; if your DNS is split-horizon, trust it by name: '
     'trust_resolution = ["other.org"]'),
    ("other.org", ["127.0.0.1"], False, 'trust_resolution = ["other.org"]'),
    ("corp.example", ["10.1.2.3"], False, "(a private address)"),  # *.corp.example is not corp.example
    # an address literal is judged as an address: never by a name's trust
    ("10.9.1.1", ["10.9.1.1"], True, ""),
]


@pytest.mark.parametrize("host,addrs,allowed,fragment", TRUST)
def test_trust_resolution(host, addrs, allowed, fragment):
    d = TRUST_RULES.check_resolved(host, 443, [ip_address(a) for a in addrs])
    assert d.allowed is allowed, d
    assert fragment in d.reason


def test_the_refusal_message_is_exactly_the_documented_one():
    d = Rules(allowed=["pypi.org"]).check_resolved("pypi.org", 443, [ip_address("10.1.2.3")])
    assert d.reason == ('pypi.org resolved to 10.1.2.3 (a private address): refused; if your DNS is split-horizon, '
                        'trust it by name: trust_resolution = ["pypi.org"]')


@pytest.mark.parametrize("entry,fragment", [
    ("10.0.0.0/8", "lists names"), ("1.2.3.4", "lists names"), ("pypi.org:443", "without a port"),
    ("*.com", "overly broad"), ("", "empty"),
])
def test_bad_trust_entries(entry, fragment):
    with pytest.raises(ValueError, match=fragment):
        Rules(trusted=[entry])


def test_trust_survives_run_time_allowances():
    rules = Rules(allowed=["a.org"], trusted=["b.org"]).with_allowed(["b.org"])
    assert rules.check_resolved("b.org", 443, [ip_address("10.0.0.1")]).allowed


# ---------------------------------------------------------------------------------------------
# Presets (pure)
# ---------------------------------------------------------------------------------------------

def test_presets_are_valid_allowlist_entries():
    for name, (_, names) in presets.PRESETS.items():
        Rules(allowed=names)  # every entry compiles
        assert names and len(set(names)) == len(names), name
    assert {"pypi", "npm", "debian", "github", "crates", "go"} <= set(presets.PRESETS)


@pytest.mark.parametrize("names,expected", [
    (["pypi"], ("pypi.org", "files.pythonhosted.org")),
    (["crates", "crates"], ("crates.io", "index.crates.io", "static.crates.io")),
    (["go", "pypi"], ("proxy.golang.org", "sum.golang.org", "pypi.org", "files.pythonhosted.org")),
])
def test_preset_domains(names, expected):
    assert presets.domains(names) == expected


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown preset 'pip'; known presets: pypi, npm"):
        presets.domains(["pip"])


def test_native_allow_presets(tmp_path):
    from corral.errors import PolicyError
    from corral.policy.model import LaunchContext
    from corral.policy.native import load_toml

    ctx = LaunchContext(cwd=str(tmp_path), home=str(tmp_path), uid=1000, gid=1000)
    net = load_toml('[network]\nallowed_domains = ["pypi.org", "x.org"]\nallow_presets = ["pypi", "npm"]\n',
                    "p.toml", ctx).network
    assert net.allowed_domains == ("pypi.org", "x.org", "files.pythonhosted.org", "registry.npmjs.org",
                                   "registry.yarnpkg.com")
    assert net.allow_presets == ("pypi", "npm")
    with pytest.raises(PolicyError, match=r"allow_presets\[0\].*known presets: pypi"):
        load_toml('[network]\nallow_presets = ["cargo"]\n', "p.toml", ctx)


# ---------------------------------------------------------------------------------------------
# audit --suggest grouping (pure)
# ---------------------------------------------------------------------------------------------

def _block(run, host, port=443, proto="connect", reason=None, rule="", **kw):
    where = host if port is None else f"{host}:{port}"
    return {"run": run, "command": "pip install x", "proto": proto, "host": host, "port": port,
            "decision": "block", "rule": rule, "reason": reason or f"{where} is not in allowedDomains", **kw}


RECORDS = [
    _block("aaaa1111", "old.example"),
    {"run": "bbbb2222", "proto": "connect", "host": "ok.example", "port": 443, "decision": "allow"},
    _block("bbbb2222", "pypi.org", count=3),
    _block("bbbb2222", "files.pythonhosted.org"),
    _block("bbbb2222", "api.example.com"),
    _block("bbbb2222", "api.example.com", 8443),  # covered by the bare name
    _block("bbbb2222", "odd.example", 8443),
    _block("bbbb2222", "dnsonly.example", None, proto="dns", reason="dnsonly.example is not in allowedDomains"),
    _block("bbbb2222", "github.com"),
    _block("bbbb2222", "mirror.corp", reason='mirror.corp resolved to 10.1.2.3 (a private address): refused; '
                                              'if your DNS is split-horizon, trust it by name: trust_resolution = '
                                              '["mirror.corp"]'),
    _block("bbbb2222", "evil.example", reason="denied by deniedDomains entry 'evil.example'", rule="evil.example"),
    _block("bbbb2222", "paste.example", reason="credential exfiltration", exfiltration=True),
    {"run": "bbbb2222", "proto": "socks5", "decision": "block", "reason": "wrong proxy credentials"},  # no host
    {"run": "cccc3333", "proto": "connect", "host": "fine.example", "port": 443, "decision": "allow"},
]


def test_suggest_groups_the_last_blocked_run():
    s = audit.suggest(RECORDS)
    assert s.run == "bbbb2222" and s.command == "pip install x"
    assert s.presets == {"pypi": ["pypi.org", "files.pythonhosted.org"], "github": ["github.com"]}
    assert s.domains == ["api.example.com", "odd.example:8443", "dnsonly.example"]
    assert s.trust == ["mirror.corp"]
    assert set(s.other) == {"evil.example:443", "paste.example:443"}
    assert s.blocked["pypi.org:443"] == 3
    text = audit.format_suggestion(s)
    assert text.splitlines()[1:9] == [
        "# flags for corral run:",
        "--allow-preset pypi",
        "--allow-preset github",
        "--allow-domain api.example.com",
        "--allow-domain odd.example:8443",
        "--allow-domain dnsonly.example",
        "# or in the policy file (native TOML):",
        "[network]",
    ]
    assert 'allow_presets = ["pypi", "github"]' in text
    assert 'allowed_domains = ["api.example.com", "odd.example:8443", "dnsonly.example"]' in text
    assert 'trust_resolution = ["mirror.corp"]' in text
    assert "# not suggested: evil.example:443: denied by deniedDomains entry 'evil.example'" in text


def test_suggest_a_chosen_run_by_prefix():
    s = audit.suggest(RECORDS, "aaaa")
    assert s.run == "aaaa1111" and s.domains == ["old.example"] and not s.presets
    assert audit.suggest(RECORDS, "cccc3333") is None  # no blocks
    assert audit.suggest(RECORDS, "zzzz") is None
    with pytest.raises(ValueError, match="ambiguous"):
        audit.suggest([_block("ab1", "a.example"), _block("ab2", "b.example")], "ab")


def test_suggest_escapes_what_the_sandbox_chose():
    recs = [_block("r1", "evil\x1b[31m.example\n", command="x"), _block("r1", "ok.example")]
    recs[0]["command"] = "curl\x1b]0;pwned\x07"
    text = audit.format_suggestion(audit.suggest(recs))
    assert "\x1b" not in text and "\x07" not in text and text.count("\n") == len(text.splitlines())
    assert "--allow-domain ok.example" in text
    assert "not a valid host name" in text


# ---------------------------------------------------------------------------------------------
# Real runs
# ---------------------------------------------------------------------------------------------

from test_parent_proxy import ConnectProxy  # noqa: E402

NAME = "registry.corral-test.example"  # resolves nowhere but at the test parent proxy


@pytest.fixture
def state(ws):
    """A private XDG_STATE_HOME for the run (its audit log is read back)."""
    path = ws.base / "state"
    path.mkdir()
    ws.chown()
    return path


def _curl(url: str) -> str:
    return f"curl -sS --max-time 20 -o - -w '\\nHTTP %{{http_code}}\\n' {url}"


def test_launcher_https_proxy_becomes_the_parent_with_its_credentials(launcher, ws, server, state):
    parent = ConnectProxy(require=basic("agent", PW))
    parent.names[NAME] = "127.0.0.1"
    try:
        env = {"HTTPS_PROXY": f"http://agent:{PW}@127.0.0.1:{parent.port}", "NO_PROXY": "internal.corp",
               "XDG_STATE_HOME": str(state)}
        r = ws.sh(_curl(f"http://{NAME}:{server.port}/via-parent") + "; env", "--allow-domain", NAME,
                  env_extra=env, timeout=60)
        assert r.returncode == 0, r.stderr
        assert server.body in r.stdout and "HTTP 200" in r.stdout
        assert server.paths() == ["/via-parent"]
        # the parent saw the CONNECT for the name (unresolved here), with the launcher's credentials
        assert [(line, h.get("proxy-authorization")) for line, h in parent.connects] == [
            (f"CONNECT {NAME}:{server.port} HTTP/1.1", basic("agent", PW))]
        # the sandbox saw only corral's own proxy: not the parent, not its password, not NO_PROXY's entry
        assert PW not in r.stdout and f":{parent.port}" not in r.stdout and "internal.corp" not in r.stdout
        assert "HTTPS_PROXY=http://corral-" in r.stdout
        assert PW not in r.stderr
        log = (state / "corral" / "audit.jsonl").read_text()
        assert PW not in log and f"via 127.0.0.1:{parent.port}" in log
    finally:
        parent.close()


def test_policy_parent_proxy_false_ignores_the_launcher_proxy(launcher, ws, server, state):
    parent = ConnectProxy(require=None)
    parent.names[NAME] = "127.0.0.1"
    try:
        policy = ws.write("p.toml", f'[network]\nallowed_domains = ["{NAME}"]\nparent_proxy = false\n')
        r = ws.sh(_curl(f"http://{NAME}:{server.port}/x"), "--settings", str(policy),
                  env_extra={"HTTPS_PROXY": f"http://127.0.0.1:{parent.port}", "XDG_STATE_HOME": str(state)},
                  timeout=60)
        assert "HTTP 502" in r.stdout, (r.stdout, r.stderr)  # corral resolves it itself: it does not resolve
        assert parent.connects == [] and server.paths() == []
    finally:
        parent.close()


def _with_hosts(launcher, hosts_file, args) -> list[str]:
    """corral's argv in a private mount namespace whose /etc/hosts is `hosts_file`."""
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts_file), *launcher.argv(args)]


@pytest.fixture
def hosts(ws):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("binding a test /etc/hosts in a private mount namespace needs root and unshare")
    path = ws.base / "hosts"
    path.write_text("127.0.0.1 localhost\n127.0.0.1 mirror.corral-test.example\n127.0.0.1 other.corral-test.example\n")
    path.chmod(0o644)
    return path


def _run_with_hosts(launcher, ws, hosts, args, env) -> subprocess.CompletedProcess:
    return subprocess.run(_with_hosts(launcher, hosts, args), cwd=str(ws.proj), env={**launcher.env, **env},
                          text=True, capture_output=True, timeout=90)


def test_split_horizon_name_is_refused_with_the_fix_then_trusted_by_name_only(launcher, ws, server, state, hosts):
    mirror, other = "mirror.corral-test.example", "other.corral-test.example"
    env = {"XDG_STATE_HOME": str(state)}
    script = _curl(f"http://{mirror}:{server.port}/m") + "; " + _curl(f"http://{other}:{server.port}/o")
    # Without trust: both names resolve (on the host) to 127.0.0.1, and both are refused.
    plain = ws.write("plain.toml", f'[network]\nallowed_domains = ["{mirror}", "{other}"]\n')
    r = _run_with_hosts(launcher, ws, hosts, ["run", "--settings", str(plain), "-c", script], env)
    assert r.stdout.count("HTTP 403") == 2, (r.stdout, r.stderr)
    assert (f'{mirror} resolved to 127.0.0.1 (a loopback address): refused; if your DNS is split-horizon, '
            f'trust it by name: trust_resolution = ["{mirror}"]') in r.stdout
    assert server.paths() == []
    # Trusting the one name opens that name only: the same address stays closed to the other.
    trusted = ws.write("trust.toml", f'[network]\nallowed_domains = ["{mirror}", "{other}"]\n'
                                     f'trust_resolution = ["{mirror}"]\n')
    r = _run_with_hosts(launcher, ws, hosts, ["run", "--settings", str(trusted), "-c", script], env)
    assert server.body in r.stdout and r.stdout.count("HTTP 200") == 1 and r.stdout.count("HTTP 403") == 1, (
        r.stdout, r.stderr)
    assert server.paths() == ["/m"]
    assert f'trust_resolution = ["{other}"]' in r.stdout


def test_through_the_parent_the_local_resolution_is_not_consulted(launcher, ws, server, state, hosts):
    """A name the local resolver maps to loopback is handed to the parent as a name, not refused."""
    mirror = "mirror.corral-test.example"
    parent = ConnectProxy(require=basic("u", PW))
    parent.names[mirror] = "127.0.0.1"
    try:
        env = {"XDG_STATE_HOME": str(state), "http_proxy": f"http://u:{PW}@127.0.0.1:{parent.port}"}
        r = _run_with_hosts(launcher, ws, hosts, ["run", "--allow-domain", mirror, "-c",
                                                  _curl(f"http://{mirror}:{server.port}/p")], env)
        assert "HTTP 200" in r.stdout and server.body in r.stdout, (r.stdout, r.stderr)
        assert [line for line, _ in parent.connects] == [f"CONNECT {mirror}:{server.port} HTTP/1.1"]
        assert server.paths() == ["/p"]
    finally:
        parent.close()


def test_allow_preset_flag_and_audit_suggest(launcher, ws, state):
    """Blocked HTTPS, plain HTTP and DNS-only names of a real run come back as allowances; the
    preset flag then allows exactly the preset's names (checked by the proxy's decision, nothing
    leaves this machine: the preset names are never dialled)."""
    env = {"XDG_STATE_HOME": str(state)}
    script = ("curl -sS --max-time 10 -o /dev/null -w '%{http_code}\\n' https://pypi.org/simple/ ; "
              "curl -sS --max-time 10 -o /dev/null -w '%{http_code}\\n' http://files.pythonhosted.org/x ; "
              "curl -sS --max-time 10 -o /dev/null -w '%{http_code}\\n' http://blocked.corral-test.example:8080/ ; "
              "getent hosts dnsonly.corral-test.example ; echo getent=$?")
    r = ws.sh(script, "--allow-domain", "allowed.corral-test.example", env_extra=env, timeout=60)
    assert "getent=2" in r.stdout, (r.stdout, r.stderr)  # NXDOMAIN at once
    s = helpers.run(launcher, ["audit", "--suggest"], ws.proj, env_extra=env)
    assert s.returncode == 0, s.stderr
    lines = s.stdout.splitlines()
    assert "--allow-preset pypi" in lines
    assert "--allow-domain blocked.corral-test.example:8080" in lines
    assert "--allow-domain dnsonly.corral-test.example" in lines
    assert "[network]" in lines and 'allow_presets = ["pypi"]' in lines
    assert "--allow-domain pypi.org" not in lines
    run_id = lines[0].split()[2]
    again = helpers.run(launcher, ["audit", "--suggest", "--run", run_id[:6]], ws.proj, env_extra=env)
    assert again.stdout == s.stdout
    missing = helpers.run(launcher, ["audit", "--suggest", "--run", "ffffffffffff"], ws.proj, env_extra=env)
    assert missing.returncode == 1 and "ffffffffffff has" in missing.stderr
    # The preset then opens exactly its names: the proxy's answer for them is no longer a refusal.
    dry = helpers.run(launcher, ["run", "--allow-preset", "pypi", "--dry-run", "--", "true"], ws.proj, env_extra=env)
    assert dry.returncode == 0, dry.stderr
    assert "pypi.org, files.pythonhosted.org" in dry.stdout
    bad = helpers.run(launcher, ["run", "--allow-preset", "pip", "--", "true"], ws.proj, env_extra=env)
    assert bad.returncode in (2, 125) and "known presets: pypi, npm, debian" in bad.stderr
    assert bad.stderr.count("\n") == 1


def test_library_sandbox_takes_the_launcher_proxy_as_parent_too(me, ws, server, state):
    """`Sandbox` as `corral run`: the launcher's HTTPS_PROXY is the parent proxy."""
    import sys

    parent = ConnectProxy(require=basic("agent", PW))
    parent.names[NAME] = "127.0.0.1"
    try:
        code = ("import subprocess, sys; from corral import Policy, Sandbox\n"
                f"sb = Sandbox(Policy.from_toml('[network]\\nallowed_domains = [\"{NAME}\"]'))\n"
                f"r = sb.run({_curl(f'http://{NAME}:{server.port}/lib-parent')!r}.split(), capture_output=True, text=True)\n"
                "sb.close(); print(r.returncode, r.stdout)\n")
        env = {**me.env, "HTTPS_PROXY": f"http://agent:{PW}@127.0.0.1:{parent.port}", "XDG_STATE_HOME": str(state)}
        p = subprocess.run([*me.prefix, sys.executable, "-c", code], cwd=ws.proj, env=env, capture_output=True,
                           text=True, timeout=60)
        assert server.paths() == ["/lib-parent"], p.stdout + p.stderr
        assert [line for line, _h in parent.connects] == [f"CONNECT {NAME}:{server.port} HTTP/1.1"]
    finally:
        parent.close()
