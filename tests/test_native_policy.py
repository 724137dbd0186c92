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
        ("[process]\nrun_as = \"0:5\"\n", "process.run_as", "non-zero"),
        ("[process]\nrun_as = -3\n", "process.run_as", "non-zero"),
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
    ("[network]\ndenied_reasons = { 'x.com' = 'r' }\n", "network", "denied_reasons"),  # native words, never srt's
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


# --------------------------------------------------------------------------------------------
# The credential boundary: [network] filtering keys, [network.tls], [[credentials]], [[endpoints]]
# --------------------------------------------------------------------------------------------

from corral.policy.model import CredentialSpec, Endpoint, TlsPolicy  # noqa: E402

SPEC_EXAMPLE = """
[network]
allowed_domains = ["github.com", "127.0.0.1:8443"]
http_rules = ["GET,HEAD github.com/**", "deny POST github.com/*/*.git/git-receive-pack",
              "deny GET github.com/*/*.git/info/refs?service=git-receive-pack"]
require_host_match = true      # default true when terminating

[network.tls]
terminate = ["*"]
exclude = ["pinned.example"]
ca = "user"
extra_ca = ["/path/test-ca.pem"]

[[credentials]]
name = "GITHUB_TOKEN"
from_env = "GITHUB_TOKEN"
hosts = ["github.com"]
header = "Authorization: Bearer {value}"
in_body = false
allow_plaintext = false

[[credentials]]
name = "ANTHROPIC_API_KEY"
from_env = "ANTHROPIC_API_KEY"
hosts = ["api.anthropic.com"]
header = "x-api-key: {value}"
env = false

[[endpoints]]
name = "anthropic"
upstream = "https://api.anthropic.com"
credential = "ANTHROPIC_API_KEY"
env = "ANTHROPIC_BASE_URL"
"""


def test_spec_example_loads():
    p = load_toml(SPEC_EXAMPLE, "p.toml", CTX)
    net = p.network
    assert net.http_rules == ("allow GET,HEAD github.com/**", "deny POST github.com/*/*.git/git-receive-pack",
                              "deny GET github.com/*/*.git/info/refs?service=git-receive-pack")
    assert net.require_host_match and not net.refuse_opaque_tunnels
    assert net.tls == TlsPolicy(terminate=("*",), exclude=("pinned.example",), ca="user",
                                extra_ca=("/path/test-ca.pem",))
    assert p.credentials == (
        CredentialSpec(name="GITHUB_TOKEN", hosts=("github.com",), from_env="GITHUB_TOKEN", env="GITHUB_TOKEN",
                       header="Authorization: Bearer {value}"),
        CredentialSpec(name="ANTHROPIC_API_KEY", hosts=("api.anthropic.com",), from_env="ANTHROPIC_API_KEY",
                       env=None, header="x-api-key: {value}"),
    )
    assert [c.origin for c in p.credentials] == ["p.toml:credentials[0]", "p.toml:credentials[1]"]
    assert p.endpoints == (Endpoint(name="anthropic", upstream="https://api.anthropic.com",
                                    credential="ANTHROPIC_API_KEY", env="ANTHROPIC_BASE_URL"),)
    assert p.endpoints[0].origin == "p.toml:endpoints[0]"
    assert not net.proxy  # the network is on through allowed_domains already


def test_boundary_defaults():
    p = load_toml("", "p.toml", CTX)
    net = p.network
    assert net.tls == TlsPolicy() and not net.tls.enabled
    assert net.http_rules == () and net.require_host_match and not net.refuse_opaque_tunnels
    assert net.strip_response_headers == () and p.credentials == () and p.endpoints == ()


CRED = '[[credentials]]\nname = "T"\nfrom_env = "T"\nhosts = ["api.example.com"]\n'

# (id, toml, attribute path on Policy, expected)
BOUNDARY_MAPPINGS = [
    ("strip_response_headers lower-cased once", '[network]\nstrip_response_headers = ["Set-Cookie", "set-cookie"]\n',
     "network.strip_response_headers", ("set-cookie",)),
    ("refuse_opaque_tunnels", "[network]\nrefuse_opaque_tunnels = true\n", "network.refuse_opaque_tunnels", True),
    ("require_host_match false", "[network]\nrequire_host_match = false\n", "network.require_host_match", False),
    ("http rule action kept", "[network]\nhttp_rules = [' deny  POST a.com/** ']\n", "network.http_rules",
     ("deny  POST a.com/**",)),
    ("ca files", '[network.tls]\nca_cert = "~/ca.pem"\nca_key = "ca.key"\n', "network.tls",
     TlsPolicy(ca="files", ca_cert="/home/u/ca.pem", ca_key="/w/proj/ca.key")),
    ("ephemeral CA, tunnels and timeout", '[network.tls]\nterminate = ["api.example.com", "*.corp.example"]\n'
     'ca = "ephemeral"\nmax_tunnels = 65536\nhandshake_timeout = 3\n', "network.tls",
     TlsPolicy(terminate=("api.example.com", "*.corp.example"), ca="ephemeral", max_tunnels=65536,
               handshake_timeout=3.0)),
    ("fractional timeout", "[network.tls]\nhandshake_timeout = 0.25\n", "network.tls.handshake_timeout", 0.25),
    ("env defaults to the name", CRED, "credentials.0.env", "T"),
    ("env false: no variable", CRED + "env = false\n", "credentials.0.env", None),
    ("env renamed", CRED + 'env = "OTHER"\n', "credentials.0.env", "OTHER"),
    ("header absent: swapped where the client puts it", CRED, "credentials.0.header", None),
    ("from_file and mask_file expanded", '[[credentials]]\nname = "NPM"\nfrom_file = "~/.npmrc"\n'
     'extract = "_authToken=(\\\\S+)"\non_no_match = "error"\nmask_file = "~/.npmrc"\nhosts = ["registry.npmjs.org"]\n',
     "credentials",
     (CredentialSpec(name="NPM", hosts=("registry.npmjs.org",), from_file="/home/u/.npmrc", env="NPM",
                     extract="_authToken=(\\S+)", on_no_match="error", mask_file="/home/u/.npmrc"),)),
    ("from_command", '[[credentials]]\nname = "K"\nfrom_command = ["pass", "show", ""]\nhosts = ["a.example.com"]\n',
     "credentials.0.from_command", ("pass", "show", "")),
    ("basic_user, in_body, allow_plaintext", CRED + 'basic_user = "x-access-token"\nin_body = true\n'
     'allow_plaintext = true\n', "credentials.0",
     CredentialSpec(name="T", hosts=("api.example.com",), from_env="T", env="T", basic_user="x-access-token",
                    in_body=True, allow_plaintext=True)),
    ("extract without on_no_match: deny", CRED + 'extract = "t=(.+)"\n', "credentials.0.on_no_match", "deny"),
    ("hosts: names, wildcards, IPs", '[[credentials]]\nname = "T"\nfrom_env = "T"\n'
     'hosts = ["a.example.com", "*.b.example.com", "127.0.0.1", "::1", "a.example.com"]\n',
     "credentials.0.hosts", ("a.example.com", "*.b.example.com", "127.0.0.1", "::1")),
    ("credential hosts need not be allowed domains", '[network]\nallowed_domains = ["x.example.com"]\n' + CRED,
     "credentials.0.hosts", ("api.example.com",)),
    ("endpoints turn the proxy on", '[[endpoints]]\nname = "e"\nupstream = "https://api.example.com/v1"\n',
     "network.proxy", True),
    ("endpoint without credential or env", '[[endpoints]]\nname = "my-api_2"\nupstream = "https://api.example.com/v1"\n',
     "endpoints", (Endpoint(name="my-api_2", upstream="https://api.example.com/v1"),)),
    ("endpoint host covered by a wildcard", '[[credentials]]\nname = "T"\nfrom_env = "T"\nhosts = ["*.example.com"]\n'
     '[[endpoints]]\nname = "e"\nupstream = "https://API.example.com:8443/x"\ncredential = "T"\n',
     "endpoints.0.credential", "T"),
    ("endpoint on an IPv6 literal", '[[credentials]]\nname = "T"\nfrom_env = "T"\nhosts = ["::1"]\n'
     '[[endpoints]]\nname = "e"\nupstream = "https://[::1]:8443"\ncredential = "T"\n', "endpoints.0.upstream",
     "https://[::1]:8443"),
]


def _attr(value, attr: str):
    for part in attr.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)
    return value


@pytest.mark.parametrize("name,text,attr,expected", BOUNDARY_MAPPINGS, ids=[m[0] for m in BOUNDARY_MAPPINGS])
def test_boundary_mapping(name, text, attr, expected):
    assert _attr(load_toml(text, "p.toml", CTX), attr) == expected


TLS = "[network.tls]\n"
C = "[[credentials]]\n"
E = "[[endpoints]]\n"
UP = 'upstream = "https://api.example.com"\n'

# (id, toml, key, value, text expected in the reason)
BOUNDARY_ERRORS = [
    ("http_rules not a list", "[network]\nhttp_rules = 'GET a.com/**'\n", "network.http_rules", "GET a.com/**",
     "expected a list"),
    ("http rule without path", "[network]\nhttp_rules = ['GET a.com/**', 'GET github.com']\n",
     "network.http_rules[1]", "GET github.com", "no path"),
    ("http rule with port", "[network]\nhttp_rules = ['deny POST a.com:443/**']\n", "network.http_rules[0]",
     "deny POST a.com:443/**", "no port"),
    ("http rule with scheme", "[network]\nhttp_rules = ['GET https://a.com/**']\n", "network.http_rules[0]",
     "GET https://a.com/**", "drop the scheme"),
    ("http rule not a string", "[network]\nhttp_rules = [1]\n", "network.http_rules[0]", 1, "expected a string"),
    ("require_host_match not bool", "[network]\nrequire_host_match = 'yes'\n", "network.require_host_match", "yes",
     "true or false"),
    ("refuse_opaque_tunnels not bool", "[network]\nrefuse_opaque_tunnels = 1\n", "network.refuse_opaque_tunnels", 1,
     "true or false"),
    ("strip_response_headers not a name", "[network]\nstrip_response_headers = ['set-cookie:']\n",
     "network.strip_response_headers[0]", "set-cookie:", "header name"),
    ("strip_response_headers empty name", "[network]\nstrip_response_headers = ['']\n",
     "network.strip_response_headers[0]", "", "header name"),
    ("tls not a table", "[network]\ntls = 1\n", "network.tls", 1, "expected a table"),
    ("tls unknown key", TLS + "terminat = ['*']\n", "network.tls.terminat", ["*"], "did you mean 'terminate'"),
    ("terminate not a list", TLS + "terminate = '*'\n", "network.tls.terminate", "*", "expected a list"),
    ("terminate with port", TLS + "terminate = ['a.com:443']\n", "network.tls.terminate[0]", "a.com:443", "no port"),
    ("terminate a TLD", TLS + "terminate = ['*.com']\n", "network.tls.terminate[0]", "*.com", "top-level"),
    ("exclude everything", TLS + "exclude = ['*']\n", "network.tls.exclude[0]", "*", "'*'"),
    ("exclude a path", TLS + "exclude = ['a.com/x']\n", "network.tls.exclude[0]", "a.com/x", "not a range or path"),
    ("ca unknown", TLS + "ca = 'system'\n", "network.tls.ca", "system", '"user" or "ephemeral"'),
    ("ca_cert without ca_key", TLS + "ca_cert = '/ca.pem'\n", "network.tls.ca_key", None, "go together"),
    ("ca_key without ca_cert", TLS + "ca_key = '/ca.key'\n", "network.tls.ca_cert", None, "go together"),
    ("ca and ca files", TLS + "ca = 'user'\nca_cert = '/c'\nca_key = '/k'\n", "network.tls.ca", "user",
     "either ca or ca_cert"),
    ("ca_cert glob", TLS + "ca_cert = '/ca/*.pem'\nca_key = '/k'\n", "network.tls.ca_cert", "/ca/*.pem", "not a glob"),
    ("ca_key ~user", TLS + "ca_cert = '/c'\nca_key = '~bob/k'\n", "network.tls.ca_key", "~bob/k", "~user"),
    ("ca_cert not a string", TLS + "ca_cert = 1\nca_key = '/k'\n", "network.tls.ca_cert", 1, "expected a string"),
    ("extra_ca not a list", TLS + "extra_ca = '/x.pem'\n", "network.tls.extra_ca", "/x.pem", "expected a list"),
    ("extra_ca empty path", TLS + "extra_ca = ['/a.pem', '']\n", "network.tls.extra_ca[1]", "", "non-empty path"),
    ("max_tunnels 0", TLS + "max_tunnels = 0\n", "network.tls.max_tunnels", 0, "1 to 65536"),
    ("max_tunnels too many", TLS + "max_tunnels = 65537\n", "network.tls.max_tunnels", 65537, "1 to 65536"),
    ("max_tunnels bool", TLS + "max_tunnels = true\n", "network.tls.max_tunnels", True, "1 to 65536"),
    ("max_tunnels float", TLS + "max_tunnels = 1.5\n", "network.tls.max_tunnels", 1.5, "1 to 65536"),
    ("handshake_timeout 0", TLS + "handshake_timeout = 0\n", "network.tls.handshake_timeout", 0, "> 0"),
    ("handshake_timeout negative", TLS + "handshake_timeout = -1.0\n", "network.tls.handshake_timeout", -1.0, "> 0"),
    ("handshake_timeout inf", TLS + "handshake_timeout = inf\n", "network.tls.handshake_timeout", float("inf"), "> 0"),
    ("handshake_timeout nan", TLS + "handshake_timeout = nan\n", "network.tls.handshake_timeout", float("nan"), "> 0"),
    ("handshake_timeout string", TLS + "handshake_timeout = '10'\n", "network.tls.handshake_timeout", "10", "> 0"),
    ("credentials as a table", "[credentials]\nname = 'T'\n", "credentials", {"name": "T"}, "[[credentials]]"),
    ("credentials not tables", "credentials = [1]\n", "credentials", [1], "array of tables"),
    ("credential unknown key", CRED + "hostz = []\n", "credentials[0].hostz", [], "did you mean 'hosts'"),
    ("credential without name", C + "from_env = 'T'\nhosts = ['a.com']\n", "credentials[0].name", None, "missing"),
    ("credential without hosts", C + "name = 'T'\nfrom_env = 'T'\n", "credentials[0].hosts", None, "missing"),
    ("credential name", C + "name = '1T'\nfrom_env = 'T'\nhosts = ['a.com']\n", "credentials[0].name", "1T",
     "letters, digits and '_'"),
    ("credential name with dash", C + "name = 'MY-KEY'\nfrom_env = 'T'\nhosts = ['a.com']\n", "credentials[0].name",
     "MY-KEY", "letters, digits and '_'"),
    ("credential name twice", CRED + CRED.replace('from_env = "T"', 'from_env = "U"') + 'env = "U"\n',
     "credentials[1].name", "T", "already the name of credentials[0]"),
    ("credential without source", C + "name = 'T'\nhosts = ['a.com']\n", "credentials[0]",
     {"name": "T", "hosts": ["a.com"]}, "exactly one of from_env, from_file, from_command"),
    ("credential with two sources", CRED + "from_file = '/t'\n", "credentials[0].from_file", "/t",
     "exactly one of"),
    ("from_env not a name", C + "name = 'T'\nfrom_env = 'A B'\nhosts = ['a.com']\n", "credentials[0].from_env",
     "A B", "letters"),
    ("from_command empty", C + "name = 'T'\nfrom_command = []\nhosts = ['a.com']\n", "credentials[0].from_command",
     [], "non-empty"),
    ("from_command empty program", C + "name = 'T'\nfrom_command = ['', 'x']\nhosts = ['a.com']\n",
     "credentials[0].from_command[0]", "", "must not be empty"),
    ("from_command a string", C + "name = 'T'\nfrom_command = 'pass show x'\nhosts = ['a.com']\n",
     "credentials[0].from_command", "pass show x", "expected a list"),
    ("from_command argument not a string", C + "name = 'T'\nfrom_command = ['pass', 1]\nhosts = ['a.com']\n",
     "credentials[0].from_command[1]", 1, "expected a string"),
    ("from_file glob", C + "name = 'T'\nfrom_file = '~/*.tok'\nhosts = ['a.com']\n", "credentials[0].from_file",
     "~/*.tok", "not a glob"),
    ("hosts empty", C + "name = 'T'\nfrom_env = 'T'\nhosts = []\n", "credentials[0].hosts", [], "empty"),
    ("hosts not a list", C + "name = 'T'\nfrom_env = 'T'\nhosts = 'a.com'\n", "credentials[0].hosts", "a.com",
     "expected a list"),
    ("hosts *", C + "name = 'T'\nfrom_env = 'T'\nhosts = ['a.com', '*']\n", "credentials[0].hosts[1]", "*", "'*'"),
    ("hosts with port", C + "name = 'T'\nfrom_env = 'T'\nhosts = ['a.com:443']\n", "credentials[0].hosts[0]",
     "a.com:443", "no port"),
    ("hosts a TLD", C + "name = 'T'\nfrom_env = 'T'\nhosts = ['*.com']\n", "credentials[0].hosts[0]", "*.com",
     "top-level"),
    ("hosts a URL", C + "name = 'T'\nfrom_env = 'T'\nhosts = ['https://a.com']\n", "credentials[0].hosts[0]",
     "https://a.com", "not a range or path"),
    ("header without {value}", CRED + "header = 'x-api-key: value'\n", "credentials[0].header", "x-api-key: value",
     "exactly one '{value}'"),
    ("header with two {value}", CRED + "header = 'x-k: {value}{value}'\n", "credentials[0].header",
     "x-k: {value}{value}", "exactly one '{value}'"),
    ("header without a name", CRED + "header = 'Bearer {value}'\n", "credentials[0].header", "Bearer {value}",
     "Header-Name"),
    ("header name with a space", CRED + "header = 'x key: {value}'\n", "credentials[0].header", "x key: {value}",
     "Header-Name"),
    ("header Host", CRED + "header = 'Host: {value}'\n", "credentials[0].header", "Host: {value}", "framing"),
    ("header not ASCII", CRED + "header = 'x-k: é{value}'\n", "credentials[0].header", "x-k: é{value}",
     "printable ASCII"),
    ("header and basic_user", CRED + "header = 'x-k: {value}'\nbasic_user = 'u'\n", "credentials[0].basic_user", "u",
     "either header or basic_user"),
    ("basic_user with colon", CRED + "basic_user = 'a:b'\n", "credentials[0].basic_user", "a:b", "without ':'"),
    ("in_body not bool", CRED + "in_body = 'no'\n", "credentials[0].in_body", "no", "true or false"),
    ("allow_plaintext not bool", CRED + "allow_plaintext = 1\n", "credentials[0].allow_plaintext", 1, "true or false"),
    ("extract invalid", CRED + "extract = '(a'\n", "credentials[0].extract", "(a", "not a valid regular expression"),
    ("extract without group", CRED + "extract = 'a+'\n", "credentials[0].extract", "a+", "capturing group"),
    ("extract not a string", CRED + "extract = 1\n", "credentials[0].extract", 1, "expected a string"),
    ("on_no_match unknown", CRED + "extract = '(a)'\non_no_match = 'skip'\n", "credentials[0].on_no_match", "skip",
     '"deny", "warn" or "error"'),
    ("on_no_match without extract", CRED + "on_no_match = 'warn'\n", "credentials[0].on_no_match", "warn",
     "only applies with extract"),
    ("env true", CRED + "env = true\n", "credentials[0].env", True, "or false"),
    ("env not a name", CRED + "env = '1X'\n", "credentials[0].env", "1X", "or false"),
    ("env set twice", CRED + C + "name = 'U'\nfrom_env = 'U'\nhosts = ['a.com']\nenv = 'T'\n", "credentials[1].env",
     "T", "already set by credentials[0]"),
    ("mask_file glob", CRED + "mask_file = '~/.config/*'\n", "credentials[0].mask_file", "~/.config/*", "not a glob"),
    ("endpoints as a table", "[endpoints]\nname = 'e'\n", "endpoints", {"name": "e"}, "[[endpoints]]"),
    ("endpoint unknown key", E + "name = 'e'\nupstrem = 'https://a.com'\n", "endpoints[0].upstrem", "https://a.com",
     "did you mean 'upstream'"),
    ("endpoint without name", E + UP, "endpoints[0].name", None, "missing"),
    ("endpoint without upstream", E + "name = 'e'\n", "endpoints[0].upstream", None, "missing"),
    ("endpoint name upper-case", E + "name = 'Anthropic'\n" + UP, "endpoints[0].name", "Anthropic", "lower-case"),
    ("endpoint name empty", E + "name = ''\n" + UP, "endpoints[0].name", "", "lower-case"),
    ("endpoint name twice", E + "name = 'e'\n" + UP + E + "name = 'e'\n" + UP, "endpoints[1].name", "e",
     "already the name of endpoints[0]"),
    ("upstream http", E + "name = 'e'\nupstream = 'http://a.com'\n", "endpoints[0].upstream", "http://a.com",
     "https://"),
    ("upstream query", E + "name = 'e'\nupstream = 'https://a.com/v1?k=1'\n", "endpoints[0].upstream",
     "https://a.com/v1?k=1", "no query"),
    ("upstream fragment", E + "name = 'e'\nupstream = 'https://a.com/#x'\n", "endpoints[0].upstream",
     "https://a.com/#x", "no query or fragment"),
    ("upstream userinfo", E + "name = 'e'\nupstream = 'https://u:p@a.com'\n", "endpoints[0].upstream",
     "https://u:p@a.com", "no user name"),
    ("upstream bad port", E + "name = 'e'\nupstream = 'https://a.com:99999'\n", "endpoints[0].upstream",
     "https://a.com:99999", "invalid port"),
    ("upstream without host", E + "name = 'e'\nupstream = 'https://'\n", "endpoints[0].upstream", "https://",
     "invalid authority"),
    ("upstream bad host", E + "name = 'e'\nupstream = 'https://a b.com'\n", "endpoints[0].upstream",
     "https://a b.com", "invalid authority"),
    ("upstream path with space", E + "name = 'e'\nupstream = 'https://a.com/a b'\n", "endpoints[0].upstream",
     "https://a.com/a b", "printable ASCII"),
    ("upstream not a string", E + "name = 'e'\nupstream = 1\n", "endpoints[0].upstream", 1, "expected a string"),
    ("endpoint credential unknown", CRED + E + "name = 'e'\n" + UP + "credential = 'X'\n",
     "endpoints[0].credential", "X", "no [[credentials]] entry of that name; known: T"),
    ("endpoint credential without credentials", E + "name = 'e'\n" + UP + "credential = 'X'\n",
     "endpoints[0].credential", "X", "there are no [[credentials]]"),
    ("endpoint credential not bound to upstream", CRED + E + "name = 'e'\nupstream = 'https://evil.example.com'\n"
     "credential = 'T'\n", "endpoints[0].credential", "T", "do not cover the upstream's host 'evil.example.com'"),
    ("endpoint wildcard does not cover the parent", C + "name = 'T'\nfrom_env = 'T'\nhosts = ['*.example.com']\n"
     + E + "name = 'e'\nupstream = 'https://example.com'\ncredential = 'T'\n", "endpoints[0].credential", "T",
     "do not cover"),
    ("endpoint env not a name", E + "name = 'e'\n" + UP + "env = 'A-B'\n", "endpoints[0].env", "A-B", "letters"),
    ("endpoint env clashes with a credential", CRED + E + "name = 'e'\n" + UP + "env = 'T'\n", "endpoints[0].env",
     "T", "already set by credentials[0]"),
    ("endpoint env clashes with an endpoint", E + "name = 'e'\n" + UP + "env = 'U'\n" + E + "name = 'f'\n" + UP
     + "env = 'U'\n", "endpoints[1].env", "U", "already set by endpoints[0]"),
]


@pytest.mark.parametrize("name,text,key,value,why", BOUNDARY_ERRORS, ids=[c[0] for c in BOUNDARY_ERRORS])
def test_boundary_errors(name, text, key, value, why):
    with pytest.raises(PolicyError) as info:
        load_toml(text, "/etc/p.toml", CTX)
    err = info.value
    assert not isinstance(err, UnsupportedFeature)
    assert err.key == key
    assert str(err).startswith(f"/etc/p.toml: {key} = {value!r}: "), str(err)
    assert why in err.why


def test_boundary_render_round_trips():
    text = SPEC_EXAMPLE + """
[[credentials]]
name = "NPM"
from_file = "~/.npmrc"
extract = '_authToken=(\\S+)'
on_no_match = "warn"
mask_file = "~/.npmrc"
hosts = ["registry.npmjs.org", "::1"]
basic_user = "x"
in_body = true
allow_plaintext = true

[[credentials]]
name = "CMD"
from_command = ["sh", "-c", "echo \\"$X\\""]
hosts = ["*.example.com"]

[[endpoints]]
name = "local"
upstream = "https://a.example.com:8443/base/"
credential = "CMD"
"""
    text = text.replace("[network.tls]\n", "[network.tls]\nca_cert = '/c.pem'\nca_key = '~/c.key'\n"
                        "max_tunnels = 9\nhandshake_timeout = 0.5\n").replace('ca = "user"\n', "")
    text = text.replace("[network]\n", "[network]\nrefuse_opaque_tunnels = true\nstrip_response_headers = ['X-A']\n")
    p = load_toml(text, "p.toml", CTX)
    assert p.network.tls.ca == "files" and len(p.credentials) == 4
    rendered = to_toml(p, CTX)
    again = load_toml(rendered, "p.toml", CTX)
    assert again.network == p.network
    assert again.credentials == p.credentials and again.endpoints == p.endpoints


def test_endpoints_only_render_round_trips():
    p = load_toml('[[endpoints]]\nname = "e"\nupstream = "https://api.example.com"\n', "p.toml", CTX)
    again = load_toml(to_toml(p, CTX), "p.toml", CTX)
    assert again.network == p.network and again.endpoints == p.endpoints


def test_loading_reads_no_credential(monkeypatch):
    # Sources are recorded, never read or run: the command would fail if it were run.
    monkeypatch.delenv("CORRAL_TEST_ABSENT", raising=False)
    p = load_toml('[[credentials]]\nname = "A"\nfrom_env = "CORRAL_TEST_ABSENT"\nhosts = ["a.example.com"]\n'
                  '[[credentials]]\nname = "B"\nfrom_file = "/nonexistent/x"\nhosts = ["a.example.com"]\n'
                  '[[credentials]]\nname = "C"\nfrom_command = ["/nonexistent/cmd"]\nhosts = ["a.example.com"]\n',
                  "p.toml", CTX)
    assert [c.name for c in p.credentials] == ["A", "B", "C"]


def test_importing_the_loaders_stays_light():
    import subprocess
    import sys

    code = ("import sys, corral.policy.native, corral.policy.srt, corral.policy.render; "
            "print(sorted({'re', 'tomllib', 'corral.proxy.httprules', 'corral.proxy.credentials'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "corral.proxy" not in out.stdout and "tomllib" not in out.stdout


@pytest.mark.parametrize("value", ['"root"', "0", '"0"'])
def test_run_as_root_is_the_named_opt_in(value):
    p = load_toml(f"[process]\nrun_as = {value}\n", "p.toml", CTX)
    assert p.process.run_as == (0, 0)
