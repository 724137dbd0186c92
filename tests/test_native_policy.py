"""The native TOML format: every key, and errors that name file, key, value and reason."""

from __future__ import annotations

import pytest

from corral.errors import PolicyError, UnsupportedFeature
from corral.policy.model import LaunchContext
from corral.policy.native import load_toml
from corral.policy.render import to_toml

CTX = LaunchContext(cwd="/w/proj", home="/home/u", uid=1000, gid=1000)


def test_full_policy_loads():
    p = load_toml(
        """
version = 1
[filesystem]
deny_read = ["~/secrets", "**/*.pem", { path = "/odd[1]", literal = true }]
allow_read = ["~/secrets/pub"]
allow_write = [".", "/tmp/out"]
deny_write = ["./vendor"]
allow_git_config = true
deny_credentials = false
[network]
denied_domains = ["evil.example"]
allow_unix_sockets = true
[process]
allow_nested_userns = true
run_as = "1234:1235"
bwrap = "/usr/bin/bwrap"
unset_env = ["AWS_SECRET_ACCESS_KEY"]
[process.env]
FOO = "bar"
""",
        "p.toml",
        CTX,
    )
    fs = p.filesystem
    assert [r.path for r in fs.deny_read] == ["/home/u/secrets", "/w/proj/**/*.pem", "/odd[1]"]
    assert [r.glob for r in fs.deny_read] == [False, True, False]
    assert [r.path for r in fs.allow_write] == ["/w/proj", "/tmp/out"]
    assert fs.deny_write[0].path == "/w/proj/vendor"
    assert fs.allow_git_config and not fs.deny_credentials
    assert p.network.allow_unix_sockets
    assert p.process.run_as == (1234, 1235)
    assert p.process.set_env == (("FOO", "bar"),)
    assert p.sources == ("p.toml",)


def test_absent_keys_keep_defaults():
    p = load_toml("[filesystem]\ndeny_read = ['x']\n", "p.toml", CTX)
    assert [r.path for r in p.filesystem.allow_write] == ["/w/proj"]
    assert p.filesystem.deny_credentials


@pytest.mark.parametrize(
    "text, key, fragment",
    [
        ("[filesystem]\nallow_wirte = ['.']\n", "filesystem.allow_wirte", "did you mean 'allow_write'"),
        ("[filesytem]\n", "filesytem", "did you mean 'filesystem'"),
        ("[filesystem]\ndeny_read = 'x'\n", "filesystem.deny_read", "expected a list"),
        ("[filesystem]\ndeny_read = [1]\n", "filesystem.deny_read[0]", "expected a path"),
        ("[filesystem]\ndeny_read = ['/*/x']\n", "filesystem.deny_read[0]", "whole filesystem"),
        ("[filesystem]\nallow_git_config = 'yes'\n", "filesystem.allow_git_config", "true or false"),
        ("[process]\nrun_as = 0\n", "process.run_as", "non-zero"),
        ("[process]\nbwrap = 'bwrap'\n", "process.bwrap", "absolute"),
        ("[process]\nunset_env = ['1BAD']\n", "process.unset_env[0]", "environment variable"),
        ("version = 2\n", "version", "version = 1"),
    ],
)
def test_errors_name_file_key_and_reason(text, key, fragment):
    with pytest.raises(PolicyError) as err:
        load_toml(text, "/etc/p.toml", CTX)
    msg = str(err.value)
    assert msg.startswith("/etc/p.toml: ") and key in msg and fragment in msg


def test_network_table_loads():
    policy = load_toml(
        "[network]\nallowed_domains = ['github.com', '*.pypi.org:443']\ndenied_domains = ['gist.github.com']\n"
        "denied_reasons = { 'gist.github.com' = 'no gists' }\ntransparent = false\naudit_log = ''\n"
        "[network.parent_proxy]\nhttp = 'http://proxy.corp:3128'\nno_proxy = ['.corp']\n", "p.toml", CTX)
    net = policy.network
    assert net.allowed_domains == ("github.com", "*.pypi.org:443") and not net.transparent
    assert dict(net.denied_reasons) == {"gist.github.com": "no gists"} and net.audit_log == ""
    assert net.parent_proxy.for_host("a.com") == ("proxy.corp", 3128)


@pytest.mark.parametrize("text,key,fragment", [
    ("[network]\nallowed_domains = ['*']\n", "network", "overly broad"),
    ("[network]\nallowed_domains = ['*.co.uk']\n", "network", "*.co.uk"),
    ("[network]\ndenied_reasons = { 'x.com' = 'r' }\n", "network", "deniedDomainReasons"),
    ("[network]\naudit_log = 'rel/path'\n", "network.audit_log", "absolute"),
    ("[network.parent_proxy]\nhttp = 'proxy:3128'\n", "network.parent_proxy.http", "http://"),
])
def test_network_errors_name_the_key(text, key, fragment):
    with pytest.raises(PolicyError) as err:
        load_toml(text, "p.toml", CTX)
    assert str(err.value).startswith("p.toml: ") and key in str(err.value) and fragment in str(err.value)


def test_invalid_toml_names_the_file():
    with pytest.raises(PolicyError, match="p.toml: invalid TOML"):
        load_toml("[filesystem\n", "p.toml", CTX)


def test_render_round_trips():
    p = load_toml("[filesystem]\ndeny_read = ['**/*.pem', { path = '/odd[1]', literal = true }]\n", "p.toml", CTX)
    again = load_toml(to_toml(p, CTX), "p.toml", CTX)
    assert again.filesystem == p.filesystem


@pytest.mark.parametrize("value,expected", [("true", True), ("false", False), ('"names"', "names")])
def test_deny_secrets_values(value, expected):
    assert load_toml(f"[filesystem]\ndeny_secrets = {value}\n", "p.toml", CTX).filesystem.deny_secrets == expected


@pytest.mark.parametrize("text,key,fragment", [
    ('[filesystem]\ndeny_secrets = "some"\n', "filesystem.deny_secrets", '"names"'),
    ('[filesystem]\nworkspace = "nfs"\n', "filesystem.workspace", "overlay"),
])
def test_workspace_keys_errors(text, key, fragment):
    with pytest.raises(PolicyError) as err:
        load_toml(text, "p.toml", CTX)
    assert key in str(err.value) and fragment in str(err.value)


def test_workspace_and_network_render_round_trip():
    p = load_toml('[filesystem]\nworkspace = "overlay"\ndeny_secrets = "names"\n[network]\n'
                  'allowed_domains = ["a.example.com"]\ndenied_domains = ["b.example.com"]\n'
                  'denied_reasons = { "b.example.com" = "no" }\ntransparent = false\naudit_log = ""\n'
                  '[network.parent_proxy]\nhttp = "http://proxy.corp:3128"\nno_proxy = [".corp"]\n', "p.toml", CTX)
    again = load_toml(to_toml(p, CTX), "p.toml", CTX)
    assert again.filesystem == p.filesystem and again.network == p.network
