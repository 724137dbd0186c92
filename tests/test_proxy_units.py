"""Pure pieces of the proxy path: request targets, the sandbox's proxy variables, audit
records and command redaction. (The end-to-end behaviour is in test_network.py.)"""

import json

import pytest

from corral.policy.model import NetworkPolicy, ParentProxy
from corral.proxy import audit
from corral.proxy.runs import describe_command
from corral.proxy.urls import split_absolute, split_authority
from corral.sandbox.netenv import proxy_environment
from corral.sandbox.plan import NetPlan


@pytest.mark.parametrize("target,expected", [
    ("http://example.com/a?b=1", ("example.com", 80, "/a?b=1")),
    ("http://example.com:8080", ("example.com", 8080, "/")),
    ("HTTP://[::1]:81/x#frag", ("::1", 81, "/x")),
    ("http://allowed.test@evil.test/", ("evil.test", 80, "/")),  # the host follows the last "@"
    ("http://a:b@c@127.0.0.1:9/p", ("127.0.0.1", 9, "/p")),
    ("http://example.com?q", ("example.com", 80, "/?q")),
])
def test_absolute_targets(target, expected):
    assert split_absolute(target) == expected


@pytest.mark.parametrize("target,fragment", [
    ("/index.html", "origin-form"),
    ("*", "origin-form"),
    ("https://example.com/", "CONNECT"),
    ("ftp://example.com/", "scheme"),
    ("example.com/x", "not an absolute URI"),
    ("http://:80/", "no host"),
    ("http://h:0/", "invalid port"),
    ("http://h:99999/", "invalid port"),
    ("http://::1/", "IPv6 address without brackets"),
])
def test_bad_targets(target, fragment):
    with pytest.raises(ValueError, match=fragment):
        split_absolute(target)


@pytest.mark.parametrize("authority,expected", [
    ("example.com:443", ("example.com", 443)),
    ("[2001:db8::1]:8443", ("2001:db8::1", 8443)),
])
def test_connect_authority(authority, expected):
    assert split_authority(authority, default_port=None) == expected


@pytest.mark.parametrize("authority", ["example.com", "a@b:443", "x:443/p", "[::1", "[::1]x", ""])
def test_connect_authority_refused(authority):
    with pytest.raises(ValueError):
        split_authority(authority, default_port=None)


NET = NetPlan(transparent=True, user="corral-r1", token="t0k")


@pytest.mark.parametrize("allowed,no_proxy", [
    ((), "localhost,127.0.0.1,::1"),
    (("example.com",), "localhost,127.0.0.1,::1"),
    (("127.0.0.1:8080",), "localhost,::1"),  # must reach the host through the proxy
    (("localhost",), "127.0.0.1,::1"),
    (("[::1]:9",), "localhost,127.0.0.1"),
    (("2130706433:80",), "localhost,::1"),  # any spelling of loopback counts
])
def test_no_proxy_keeps_explicit_loopback_on_the_proxy(allowed, no_proxy):
    env = proxy_environment(NET, NetworkPolicy(allowed_domains=allowed))
    assert env["NO_PROXY"] == env["no_proxy"] == no_proxy


def test_proxy_variables_carry_run_credentials():
    env = proxy_environment(NET, NetworkPolicy(allowed_domains=("example.com",)))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert env[name] == "http://corral-r1:t0k@127.0.0.1:3128"
    assert env["ALL_PROXY"] == env["all_proxy"] == "socks5h://corral-r1:t0k@127.0.0.1:1080"
    assert env["NODE_USE_ENV_PROXY"] == "1"
    assert "-Dhttps.proxyHost=127.0.0.1" in env["JAVA_TOOL_OPTIONS"]
    assert "ProxyCommand=" in env["GIT_SSH_COMMAND"] and "connect_stdio.py" in env["GIT_SSH_COMMAND"]


@pytest.mark.parametrize("argv,shown", [
    (["curl", "-H", "Authorization: Bearer abc", "https://x/"], "curl -H <redacted> https://x/"),
    (["tool", "--token", "abc", "run"], "tool <redacted> <redacted> run"),
    (["tool", "--api-key=abc"], "tool --api-key=<redacted>"),
    (["git", "push", "https://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/x"], "git push <redacted>"),
    (["sh", "-c", "make test"], "sh -c make test"),
])
def test_commands_are_redacted_for_the_audit_log(argv, shown):
    assert describe_command(argv) == shown


def test_audit_round_trip(tmp_path):
    path = tmp_path / "state" / "audit.jsonl"
    log = audit.AuditLog(str(path))
    log.write({"run": "r1", "proto": "http", "host": "example.com", "port": 80, "decision": "block",
               "reason": "not allowed", "path": "/x", "method": "GET", "ignored": "field"})
    log.write({"run": "r1", "proto": "connect", "host": "api.test", "port": 443, "decision": "allow",
               "up": 2048, "down": 5 * 1024 * 1024})
    log.close()
    assert (path.stat().st_mode & 0o777) == 0o600
    lines = path.read_text().splitlines()
    assert "ignored" not in json.loads(lines[0]) and json.loads(lines[0])["host"] == "example.com"
    records = list(audit.read_records(str(path)))
    assert [r["decision"] for r in records] == ["block", "allow"]
    row = audit.format_row(records[1])
    assert "api.test" in row and "2.0KiB" in row and "5.0MiB" in row


def test_audit_log_unwritable_warns_and_continues(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    log = audit.AuditLog(str(blocker / "audit.jsonl"))
    log.write({"host": "x"})  # no exception
    assert "cannot write the audit log" in capsys.readouterr().err


@pytest.mark.parametrize("pp,host,expected", [
    (ParentProxy(http="http://proxy.corp:8080"), "a.com", ("proxy.corp", 8080)),
    (ParentProxy(https="http://[fd00::1]:3128"), "a.com", ("fd00::1", 3128)),
    (ParentProxy(http="http://proxy.corp", no_proxy=(".corp",)), "git.corp", None),
    (ParentProxy(http="http://proxy.corp", no_proxy=("corp",)), "corp", None),
    (ParentProxy(http="http://proxy.corp", no_proxy=("*",)), "a.com", None),
    (ParentProxy(), "a.com", None),
])
def test_parent_proxy_choice(pp, host, expected):
    assert pp.for_host(host) == expected


def test_missing_nftables_refuses_to_run(monkeypatch):
    from corral.errors import SetupError
    from corral.sandbox import netns

    monkeypatch.setattr(netns, "NFT_SEARCH", ("/nonexistent",))
    with pytest.raises(SetupError) as err:
        netns.start(transparent=True)
    assert "nftables" in str(err.value) and "transparent = false" in str(err.value)


def test_namespace_without_transparent_mode_has_only_the_proxy_listeners(monkeypatch):
    from corral.sandbox import netns

    monkeypatch.setattr(netns, "NFT_SEARCH", ("/nonexistent",))
    ns = netns.create(transparent=False)  # nft is not needed then
    try:
        assert sorted(ns.listeners) == ["http", "socks"]
        assert {s.getsockname() for s in ns.listeners.values()} == {("127.0.0.1", 3128), ("127.0.0.1", 1080)}
    finally:
        ns.close()


def test_strict_allowlist_refuses_run_time_allowances(tmp_path):
    from corral import Policy, Sandbox
    from corral.errors import PolicyError

    policy = Policy.from_srt({"network": {"allowedDomains": ["example.com"], "deniedDomains": [],
                                          "strictAllowlist": True},
                              "filesystem": {"denyRead": [], "allowWrite": [], "denyWrite": []}}, cwd=str(tmp_path))
    sb = Sandbox(policy, cwd=str(tmp_path))
    with pytest.raises(PolicyError, match="strict_allowlist"):
        sb.allow_domain("other.example.org")
    assert sb.policy.network.allowed_domains == ("example.com",)
    sb.close()
