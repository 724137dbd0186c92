"""corral.policy.srt: loading srt 0.0.83 settings files (validation, refusal, mapping)."""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import subprocess
import sys

import pytest

from corral.errors import PolicyError, UnsupportedFeature
from corral.policy import srt
from corral.policy.model import CredentialSpec, LaunchContext, PathRule, TlsPolicy
from corral.policy.srt import ACCEPTED_WITHOUT_EFFECT, convert, load_srt_settings, validate

CTX = LaunchContext(cwd="/work/p", home="/home/u", uid=1000, gid=1000)
SRC = "settings.json"
MINIMAL = {
    "network": {"allowedDomains": [], "deniedDomains": []},
    "filesystem": {"denyRead": [], "allowWrite": [], "denyWrite": []},
}
# The example of shared/notes/srt-0.0.83-behaviour.md, with allowedDomains emptied.
BEHAVIOUR_EXAMPLE = """{
  "network": { "allowedDomains": [], "deniedDomains": ["bad.example.com"] },
  "filesystem": { "denyRead": ["/tmp/w/demo/secret"], "allowWrite": [".", "/tmp/w/demo/out"], "denyWrite": [] }
}"""


def settings(**patch):
    """MINIMAL with dotted keys replaced: settings(**{"network.allowedDomains": ["a.com"]})."""
    data = copy.deepcopy(MINIMAL)
    for dotted, value in patch.items():
        node = data
        keys = dotted.split(".")
        for part in keys[:-1]:
            node = node.setdefault(part, {})
        node[keys[-1]] = value
    return data


def load(data) -> object:
    return convert(data, SRC, CTX)


def rules(*pairs):
    return tuple(PathRule(path, glob, f"{SRC}:{origin}") for path, glob, origin in pairs)


# --------------------------------------------------------------------------------------------
# Valid files
# --------------------------------------------------------------------------------------------


def test_minimal_settings_give_the_default_policy_with_this_source():
    policy = load_srt_settings(json.dumps(MINIMAL), SRC, CTX)
    assert policy.sources == (SRC,)
    assert policy.filesystem.deny_read == () and policy.filesystem.allow_write == ()
    assert policy.filesystem.deny_credentials is True
    assert policy.network.allowed_domains == () and policy.network.denied_domains == ()
    assert policy.process.unset_env == () and policy.process.set_env == ()


def test_behaviour_example_without_network():
    policy = load_srt_settings(BEHAVIOUR_EXAMPLE, SRC, CTX)
    assert policy.filesystem.deny_read == rules(("/tmp/w/demo/secret", False, "filesystem.denyRead[0]"))
    assert policy.filesystem.allow_write == rules(
        ("/work/p", False, "filesystem.allowWrite[0]"),
        ("/tmp/w/demo/out", False, "filesystem.allowWrite[1]"),
    )
    assert policy.network.denied_domains == ("bad.example.com",)


# (name, patch, attribute path on Policy, expected value)
MAPPINGS = [
    ("denyRead ~ expands to home", {"filesystem.denyRead": ["~/.ssh"]}, "filesystem.deny_read",
     rules(("/home/u/.ssh", False, "filesystem.denyRead[0]"))),
    ("allowWrite ./ expands to cwd", {"filesystem.allowWrite": ["./out"]}, "filesystem.allow_write",
     rules(("/work/p/out", False, "filesystem.allowWrite[0]"))),
    ("denyWrite keeps order", {"filesystem.denyWrite": ["/b", "/a"]}, "filesystem.deny_write",
     rules(("/b", False, "filesystem.denyWrite[0]"), ("/a", False, "filesystem.denyWrite[1]"))),
    ("allowRead", {"filesystem.allowRead": ["~/proj"]}, "filesystem.allow_read",
     rules(("/home/u/proj", False, "filesystem.allowRead[0]"))),
    ("denyRead glob", {"filesystem.denyRead": ["**/*.pem"]}, "filesystem.deny_read",
     rules(("/work/p/**/*.pem", True, "filesystem.denyRead[0]"))),
    ("literal object form is never a glob",
     {"filesystem.denyRead": [{"path": "~/odd[1]*", "literal": True}]}, "filesystem.deny_read",
     rules(("/home/u/odd[1]*", False, "filesystem.denyRead[0]"))),
    ("allowGitConfig", {"filesystem.allowGitConfig": True}, "filesystem.allow_git_config", True),
    ("deny_credentials always on", {}, "filesystem.deny_credentials", True),
    ("deniedDomains kept", {"network.deniedDomains": ["*", "*:22", "evil.com", "[::1]:80"]},
     "network.denied_domains", ("*", "*:22", "evil.com", "[::1]:80")),
    ("allowAllUnixSockets", {"network.allowAllUnixSockets": True}, "network.allow_unix_sockets", True),
    ("allowAllUnixSockets false", {"network.allowAllUnixSockets": False}, "network.allow_unix_sockets", False),
    ("allowNestedUserNamespaces", {"allowNestedUserNamespaces": True}, "process.allow_nested_userns", True),
    ("bwrapPath", {"bwrapPath": "/opt/bw/bwrap"}, "process.bwrap_path", "/opt/bw/bwrap"),
    ("credential env deny unsets the variable",
     {"credentials": {"envVars": [{"name": "GH_TOKEN", "mode": "deny"}, {"name": "AWS_KEY", "mode": "deny"},
                                  {"name": "GH_TOKEN", "mode": "deny"}]}},
     "process.unset_env", ("GH_TOKEN", "AWS_KEY")),
    ("credential file deny joins denyRead after it",
     {"filesystem.denyRead": ["/secret"],
      "credentials": {"files": [{"path": "~/.aws/credentials", "mode": "deny"}, {"path": "~/.config/*.tok", "mode": "deny"}]}},
     "filesystem.deny_read",
     rules(("/secret", False, "filesystem.denyRead[0]"),
           ("/home/u/.aws/credentials", False, "credentials.files[0].path"),
           ("/home/u/.config/*.tok", True, "credentials.files[1].path"))),
    ("deny entries may carry the mask-only options (ignored, like srt)",
     {"credentials": {"envVars": [{"name": "T", "mode": "deny", "extract": "t=(\\w+)", "decode": "jwt",
                                   "maskClaims": ["sub"], "onExtractNoMatch": "error"}]}},
     "process.unset_env", ("T",)),
    ("git safe directories", {"git": {"safeDirectories": ["/repo/", "~/src", "/repo", "/"]}}, "process.set_env",
     (("GIT_CONFIG_COUNT", "6"),
      ("GIT_CONFIG_KEY_0", "safe.directory"), ("GIT_CONFIG_VALUE_0", "/repo"),
      ("GIT_CONFIG_KEY_1", "safe.directory"), ("GIT_CONFIG_VALUE_1", "/repo/*"),
      ("GIT_CONFIG_KEY_2", "safe.directory"), ("GIT_CONFIG_VALUE_2", "~/src"),
      ("GIT_CONFIG_KEY_3", "safe.directory"), ("GIT_CONFIG_VALUE_3", "~/src/*"),
      ("GIT_CONFIG_KEY_4", "safe.directory"), ("GIT_CONFIG_VALUE_4", "/"),
      ("GIT_CONFIG_KEY_5", "safe.directory"), ("GIT_CONFIG_VALUE_5", "/*"))),
    ("many git safe directories collapse to *", {"git": {"safeDirectories": [f"/r{i}" for i in range(9)]}},
     "process.set_env",
     (("GIT_CONFIG_COUNT", "1"), ("GIT_CONFIG_KEY_0", "safe.directory"), ("GIT_CONFIG_VALUE_0", "*"))),
    ("git {} defaults to no safe directories", {"git": {}}, "process.set_env", ()),
]


@pytest.mark.parametrize("name,patch,attr,expected", MAPPINGS, ids=[m[0] for m in MAPPINGS])
def test_mapping(name, patch, attr, expected):
    value = load(settings(**patch))
    for part in attr.split("."):
        value = getattr(value, part)
    assert value == expected


# Settings accepted without effect (each one's reason is in ACCEPTED_WITHOUT_EFFECT).
ACCEPTED = [
    {"enableWeakerNetworkIsolation": True},
    {"allowAppleEvents": True},
    {"allowPty": True},
    {"mandatoryDenySearchDepth": 10},
    {"mandatoryDenySearchDepth": 1},
    {"ripgrep": {"command": "/usr/bin/rg", "args": ["--hidden"], "argv0": "rg"}},
    {"seccomp": {"applyPath": "/opt/apply-seccomp", "argv0": "apply-seccomp"}},
    {"socatPath": "/usr/bin/socat"},
    {"javaAgentJarPath": "/opt/agent.jar"},
    {"windows": {"backend": "srt-win", "sandboxUser": "srt-sandbox", "proxyPortRange": [60080, 60089],
                 "sublayerGuid": "12345678-1234-1234-1234-123456789abc", "srtWin": {"path": "C:\\srt-win.exe"}}},
    {"ignoreViolations": {"*": ["/tmp"], "npm *": []}},
    {"network.allowLocalBinding": True},
    {"network.allowMachLookup": ["com.1password.*", "*"]},
    {"network.allowUnixSockets": []},
    {"network.refuseOpaqueTunnels": False, "network.requireHostMatch": False,
     "network.allowPlaintextHeaderSet": False, "network.stripResponseHeaders": []},
    {"credentials": {"allowPlaintextInject": True, "awsPairs": []}},
    {"credentials": {}},
    {"filesystem.disabled": False},
    {"enableWeakerNestedSandbox": False},
]


@pytest.mark.parametrize("patch", ACCEPTED, ids=lambda p: ",".join(p))
def test_accepted_without_effect(patch):
    assert load(settings(**patch)) == load(MINIMAL)  # nothing changes


def test_accepted_without_effect_table_names_real_keys():
    for key, reason in ACCEPTED_WITHOUT_EFFECT.items():
        assert reason and isinstance(reason, str)
        head = key.split("[")[0].split(".*")[0]
        node = srt._SCHEMA
        for part in head.split("."):
            assert part in node.fields, key
            node = node.fields[part]


# --------------------------------------------------------------------------------------------
# Invalid files: PolicyError naming the exact key path and the value.
# --------------------------------------------------------------------------------------------

# (id, settings, key, value, text expected in the reason)
INVALID = [
    ("misspelled key", {"network": MINIMAL["network"],
                        "filesystem": {"denyRaed": [], "allowWrite": [], "denyWrite": []}},
     "filesystem.denyRaed", [], "did you mean 'denyRead'"),
    ("unknown top-level key", settings(netwrok={}), "netwrok", {}, "did you mean 'network'"),
    ("unknown key in strict credentials", settings(credentials={"injectHosts": []}),
     "credentials.injectHosts", [], "unknown key"),
    ("missing network", {"filesystem": MINIMAL["filesystem"]}, "network", None, "missing"),
    ("missing filesystem.denyWrite", settings(filesystem={"denyRead": [], "allowWrite": []}),
     "filesystem.denyWrite", None, "missing"),
    ("missing deniedDomains", settings(network={"allowedDomains": []}), "network.deniedDomains", None, "missing"),
    ("wrong type", settings(**{"filesystem.denyRead": "/secret"}), "filesystem.denyRead", "/secret", "expected an array"),
    ("wrong element type", settings(**{"filesystem.allowWrite": [".", 3]}), "filesystem.allowWrite[1]", 3,
     "expected a path"),
    ("empty path", settings(**{"filesystem.denyWrite": [""]}), "filesystem.denyWrite[0]", "", "empty"),
    ("literal false", settings(**{"filesystem.denyRead": [{"path": "/x", "literal": False}]}),
     "filesystem.denyRead[0].literal", False, "must be true"),
    ("literal object extra key", settings(**{"filesystem.denyRead": [{"path": "/x", "literal": True, "glob": 1}]}),
     "filesystem.denyRead[0].glob", 1, "unknown key"),
    ("literal object empty path", settings(**{"filesystem.denyRead": [{"path": "", "literal": True}]}),
     "filesystem.denyRead[0].path", "", "non-empty"),
    ("boolean as string", settings(allowPty="yes"), "allowPty", "yes", "true or false"),
    ("* in allowedDomains", settings(**{"network.allowedDomains": ["github.com", "npmjs.org", "*"]}),
     "network.allowedDomains[2]", "*", "overly broad"),
    ("*.com in allowedDomains", settings(**{"network.allowedDomains": ["*.com"]}),
     "network.allowedDomains[0]", "*.com", "overly broad"),
    ("url in allowedDomains", settings(**{"network.allowedDomains": ["https://a.com"]}),
     "network.allowedDomains[0]", "https://a.com", "invalid domain pattern"),
    ("dotless name", settings(**{"network.allowedDomains": ["ip6-localhost"]}),
     "network.allowedDomains[0]", "ip6-localhost", "invalid domain pattern"),
    ("unbracketed IPv6", settings(**{"network.deniedDomains": ["2001:db8::1:443"]}),
     "network.deniedDomains[0]", "2001:db8::1:443", "bracketed"),
    ("port 0", settings(**{"network.deniedDomains": ["a.com:0"]}), "network.deniedDomains[0]", "a.com:0", "port"),
    ("bad httpProxyPort", settings(**{"network.httpProxyPort": 70000}), "network.httpProxyPort", 70000,
     "from 1 to 65535"),
    ("fractional port", settings(**{"network.socksProxyPort": 1080.5}), "network.socksProxyPort", 1080.5,
     "integer"),
    ("null is not absent", settings(**{"network.httpProxyPort": None}), "network.httpProxyPort", None,
     "got null"),
    ("bad CIDR", settings(**{"network.deniedResolvedAddresses": ["10.0.0.0/33"]}),
     "network.deniedResolvedAddresses[0]", "10.0.0.0/33", "CIDR"),
    ("bad mach name", settings(**{"network.allowMachLookup": ["a*b"]}), "network.allowMachLookup[0]", "a*b",
     "trailing"),
    ("bad ambiguousRequestTarget", settings(**{"network.ambiguousRequestTarget": "drop"}),
     "network.ambiguousRequestTarget", "drop", '"refuse", "asSpelled", "normalize"'),
    ("empty mitm domains", settings(**{"network.mitmProxy": {"socketPath": "/s", "domains": []}}),
     "network.mitmProxy.domains", [], "at least 1"),
    ("tlsTerminate cert without key", settings(**{"network.tlsTerminate": {"caCertPath": "/ca.pem"}}),
     "network.tlsTerminate", {"caCertPath": "/ca.pem"}, "together"),
    ("tlsTerminate handshake too short", settings(**{"network.tlsTerminate": {"handshakeTimeoutMs": 99}}),
     "network.tlsTerminate.handshakeTimeoutMs", 99, "from 100 to 600000"),
    ("bad parentProxy url", settings(**{"network.parentProxy": {"https": "http://a b"}}),
     "network.parentProxy.https", "http://a b", "URL"),
    ("filterRequest cannot be JSON", settings(**{"network.filterRequest": "allow"}),
     "network.filterRequest", "allow", "library-only"),
    ("relative bwrapPath", settings(bwrapPath="bin/bwrap"), "bwrapPath", "bin/bwrap", "absolute"),
    ("relative socatPath", settings(socatPath="socat"), "socatPath", "socat", "absolute"),
    ("mandatoryDenySearchDepth 11", settings(mandatoryDenySearchDepth=11), "mandatoryDenySearchDepth", 11,
     "from 1 to 10"),
    ("mandatoryDenySearchDepth 0", settings(mandatoryDenySearchDepth=0), "mandatoryDenySearchDepth", 0,
     "from 1 to 10"),
    ("mandatoryDenySearchDepth bool", settings(mandatoryDenySearchDepth=True), "mandatoryDenySearchDepth", True,
     "integer"),
    ("unknown credential mode", settings(credentials={"envVars": [{"name": "A", "mode": "deny"},
                                                                   {"name": "B", "mode": "hide"}]}),
     "credentials.envVars[1].mode", "hide", '"deny", "mask"'),
    ("bad env var name", settings(credentials={"envVars": [{"name": "-u", "mode": "deny"}]}),
     "credentials.envVars[0].name", "-u", "letter or underscore"),
    ("credential file without mode", settings(credentials={"files": [{"path": "~/.netrc"}]}),
     "credentials.files[0].mode", None, "missing"),
    ("extract without group", settings(credentials={"envVars": [{"name": "A", "mode": "deny", "extract": "a+"}]}),
     "credentials.envVars[0].extract", "a+", "capturing group"),
    ("extract invalid regex", settings(credentials={"envVars": [{"name": "A", "mode": "deny", "extract": "(a"}]}),
     "credentials.envVars[0].extract", "(a", "not a valid"),
    ("maskClaims without decode", settings(credentials={"envVars": [{"name": "A", "mode": "deny", "maskClaims": ["s"]}]}),
     "credentials.envVars[0].maskClaims", ["s"], "requires decode"),
    ("injectHosts not reachable", settings(credentials={"files": [{"path": "/t", "mode": "deny", "injectHosts": ["a.com"]}]}),
     "credentials.files[0].injectHosts[0]", "a.com", "allowedDomains"),
    ("mask without tlsTerminate", settings(credentials={"envVars": [{"name": "A", "mode": "mask"}]}),
     "credentials", {"envVars": [{"name": "A", "mode": "mask"}]}, "tlsTerminate"),
    ("awsPairs needs masked vars", settings(credentials={"awsPairs": [{"accessKeyIdVar": "A", "secretAccessKeyVar": "B"}]}),
     "credentials.awsPairs[0].accessKeyIdVar", "A", 'mode "mask"'),
    ("bad sigv4 policy", settings(credentials={"sigv4": {"streaming": "allow"}}), "credentials.sigv4.streaming",
     "allow", '"deny", "passthrough"'),
    ("inert slashed deny glob", settings(**{"filesystem.denyRead": ["~/keys/*/"]}), "filesystem.denyRead[0]",
     "~/keys/*/", "match no path"),
    ("windows port range too wide", settings(windows={"proxyPortRange": [1000, 1065]}),
     "windows.proxyPortRange", [1000, 1065], "at most 64"),
    ("windows sandboxUser too long", settings(windows={"sandboxUser": "u" * 21}), "windows.sandboxUser",
     "u" * 21, "at most 20"),
    ("windows bad guid", settings(windows={"sublayerGuid": "nope"}), "windows.sublayerGuid", "nope", "UUID"),
    ("ripgrep without command", settings(ripgrep={"args": []}), "ripgrep.command", None, "missing"),
    ("ignoreViolations not a list", settings(ignoreViolations={"*": "/tmp"}), 'ignoreViolations["*"]', "/tmp",
     "expected an array"),
    ("deniedDomainReasons empty reason", settings(**{"network.deniedDomainReasons": {"a.com": ""}}),
     'network.deniedDomainReasons["a.com"]', "", "empty"),
    ("top level array", [], "", [], "top level"),
    # corral-only refusals of valid srt: paths.rule rejects these spellings.
    ("~user path", settings(**{"filesystem.denyRead": ["~bob/.ssh"]}), "filesystem.denyRead[0]", "~bob/.ssh",
     "~user"),
    ("root wildcard glob", settings(**{"filesystem.denyRead": ["/*/secret"]}), "filesystem.denyRead[0]",
     "/*/secret", "whole filesystem"),
    ("~user in literal form", settings(**{"filesystem.allowWrite": [{"path": "~bob", "literal": True}]}),
     "filesystem.allowWrite[0].path", "~bob", "~user"),
]


@pytest.mark.parametrize("name,data,key,value,why", INVALID, ids=[c[0] for c in INVALID])
def test_invalid(name, data, key, value, why):
    with pytest.raises(PolicyError) as info:
        load(data)
    err = info.value
    assert not isinstance(err, UnsupportedFeature)
    assert (err.key, err.value) == (key, value)
    message = str(err)
    assert message.startswith(f"{SRC}: ")
    if key:
        assert f"{key} = {value!r}" in message
    assert why in err.why


@pytest.mark.parametrize(
    "text,why",
    [
        ("", "empty settings file"),
        ("  \n\t", "empty settings file"),
        ('{\n  "network": {,\n}', "invalid JSON: Expecting property name enclosed in double quotes at line 2 column 15"),
        ('{"network": {}} trailing', "invalid JSON: Extra data at line 1 column 17"),
        ('{"mandatoryDenySearchDepth": NaN}', "invalid JSON: NaN is not a JSON value"),
        ("[1, 2]", "expected a JSON object at the top level, got an array"),
        ("null", "expected a JSON object at the top level, got null"),
    ],
)
def test_unparseable_files(text, why):
    with pytest.raises(PolicyError) as info:
        load_srt_settings(text, SRC, CTX)
    assert info.value.key == ""
    assert why in str(info.value)
    assert str(info.value).startswith(f"{SRC}: ")


# --------------------------------------------------------------------------------------------
# Valid but not available yet: UnsupportedFeature naming the key.
# --------------------------------------------------------------------------------------------

UNSUPPORTED = [
    ({"network.allowUnixSockets": ["/var/run/docker.sock"]}, "network.allowUnixSockets", "allowAllUnixSockets"),
    ({"network.httpProxyPort": 3128}, "network.httpProxyPort", "not supported yet"),
    ({"network.socksProxyPort": 1080}, "network.socksProxyPort", "not supported yet"),
    ({"network.mitmProxy": {"socketPath": "/m.sock", "domains": ["a.com"]}}, "network.mitmProxy", "not supported yet"),
    ({"network.allowPlaintextHeaderSet": True}, "network.allowPlaintextHeaderSet", "not supported yet"),
    ({"network.ambiguousRequestTarget": "normalize"}, "network.ambiguousRequestTarget", "not supported yet"),
    ({"credentials": {"sigv4": {"presigned": "deny"}}}, "credentials.sigv4", "SigV4"),
    ({"credentials": {"envVars": [{"name": "A", "mode": "mask"}, {"name": "B", "mode": "mask"}],
                      "awsPairs": [{"accessKeyIdVar": "A", "secretAccessKeyVar": "B"}],
                      "allowPlaintextInject": True}}, "credentials.awsPairs", "SigV4"),
    ({"network.allowedDomains": ["a.com"], "network.tlsTerminate": {},
      "credentials": {"envVars": [{"name": "K", "mode": "deny"}, {"name": "T", "mode": "mask", "decode": "jwt"}]}},
     "credentials.envVars[1].decode", "JWT"),
    ({"network.allowedDomains": ["a.com"], "network.tlsTerminate": {},
      "credentials": {"files": [{"path": "~/.t", "mode": "mask", "decode": "jwt", "maskClaims": ["sub"]}]}},
     "credentials.files[0].decode", "JWT"),
    ({"network.allowedDomains": ["a.com"], "network.tlsTerminate": {},
      "credentials": {"files": [{"path": "~/.t", "mode": "mask", "extract": "t=(\\w+)", "maskDuplicates": True}]}},
     "credentials.files[0].maskDuplicates", "not implemented"),
    # Valid JavaScript that Python's re cannot compile (corral matches extract with re).
    ({"network.allowedDomains": ["a.com"], "network.tlsTerminate": {},
      "credentials": {"envVars": [{"name": "T", "mode": "mask", "extract": "t=(?<tok>\\w+)"}]}},
     "credentials.envVars[0].extract", "Python's re cannot compile it"),
    ({"filesystem.disabled": True}, "filesystem.disabled", "always enforces"),
    ({"enableWeakerNestedSandbox": True}, "enableWeakerNestedSandbox", "weaker nested"),
]


@pytest.mark.parametrize("patch,key,why", UNSUPPORTED, ids=[u[1] for u in UNSUPPORTED])
def test_unsupported(patch, key, why):
    with pytest.raises(UnsupportedFeature) as info:
        load(settings(**patch))
    assert info.value.key == key
    assert why in info.value.why
    assert str(info.value).startswith(f"{SRC}: {key} = ")


def test_schema_errors_come_before_refusals():
    # An invalid file is reported as invalid even when it also asks for something unsupported.
    data = settings(**{"network.allowedDomains": ["*"], "network.httpProxyPort": 3128})
    with pytest.raises(PolicyError) as info:
        load(data)
    assert not isinstance(info.value, UnsupportedFeature)


def test_network_keys_map_to_the_policy():
    policy = load(settings(network={
        "allowedDomains": ["github.com", "*.npmjs.org", "127.0.0.1:8080"],
        "deniedDomains": ["evil.github.com", "*:22"],
        "deniedDomainReasons": {"*:22": "no ssh"},
        "strictAllowlist": True,
        "deniedResolvedAddresses": ["203.0.113.0/24"],
        "parentProxy": {"http": "http://proxy.corp:8080", "noProxy": "internal.corp, .lan"},
    }))
    net = policy.network
    assert net.allowed_domains == ("github.com", "*.npmjs.org", "127.0.0.1:8080")
    assert net.denied_domains == ("evil.github.com", "*:22")
    assert dict(net.denied_reasons) == {"*:22": "no ssh"}
    assert net.strict_allowlist and net.denied_addresses == ("203.0.113.0/24",)
    assert net.parent_proxy.for_host("x.com") == ("proxy.corp", 8080)
    assert net.parent_proxy.for_host("a.internal.corp") is None
    assert net.enabled and net.transparent


def test_public_suffix_wildcard_refused_with_key():
    with pytest.raises(PolicyError) as info:
        load(settings(**{"network.allowedDomains": ["*.co.uk"]}))
    assert "*.co.uk" in str(info.value) and str(info.value).startswith(f"{SRC}: ")


def test_validate_accepts_srt_quirks():
    # Faithful to srt's isValidDomainPattern, which checks no characters beyond dots and "*".
    validate(settings(**{"network.allowedDomains": ["*.*.example.com", "[example.com]:443", "127.0.0.1:8765"]}))
    validate(settings(**{"network.parentProxy": {"http": "localhost:3128"}}))  # a URL to WHATWG


def test_imports_stay_light():
    code = "import sys, corral.policy.srt; print(sorted({'difflib', 'ipaddress'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------
# The credential boundary: tlsTerminate, request filtering knobs, masked credentials.
# --------------------------------------------------------------------------------------------

TLS = {"network.tlsTerminate": {}}
GH = {"network.allowedDomains": ["github.com", "*.npmjs.org:443", "127.0.0.1:8443", "[::1]:8080"], **TLS}


def mask_env(*entries, **extra):
    return {"credentials": {"envVars": list(entries), **extra}}


def mask_file(*entries, **extra):
    return {"credentials": {"files": list(entries), **extra}}


# (name, patch, attribute path on Policy, expected value)
BOUNDARY_MAPPINGS = [
    ("no tlsTerminate: no termination", {}, "network.tls", TlsPolicy(auto=False)),
    ("tlsTerminate {} terminates everything with an ephemeral CA", TLS, "network.tls",
     TlsPolicy(terminate=("*",), ca="ephemeral")),
    ("tlsTerminate with every key",
     {"network.tlsTerminate": {"caCertPath": "~/ca.pem", "caKeyPath": "./ca-key.pem",
                               "excludeDomains": ["pinned.example", "*.bank.example"],
                               "extraCaCertPaths": ["/etc/test-ca.pem", "~/more.pem"],
                               "maxTunnels": 12, "handshakeTimeoutMs": 2500}},
     "network.tls",
     TlsPolicy(terminate=("*",), exclude=("pinned.example", "*.bank.example"), ca="files",
               ca_cert="/home/u/ca.pem", ca_key="/work/p/ca-key.pem",
               extra_ca=("/etc/test-ca.pem", "/home/u/more.pem"), max_tunnels=12, handshake_timeout=2.5)),
    ("maxTunnels as a JSON float", {"network.tlsTerminate": {"maxTunnels": 8.0}}, "network.tls.max_tunnels", 8),
    ("requireHostMatch absent: srt's default false", {}, "network.require_host_match", False),
    ("requireHostMatch true", {"network.requireHostMatch": True}, "network.require_host_match", True),
    ("refuseOpaqueTunnels", {"network.refuseOpaqueTunnels": True}, "network.refuse_opaque_tunnels", True),
    ("stripResponseHeaders lower-cased, once each",
     {"network.stripResponseHeaders": ["Set-Cookie", "x-Debug", "set-cookie"]},
     "network.strip_response_headers", ("set-cookie", "x-debug")),
    ("no credentials", {}, "credentials", ()),
    ("deny entries make no CredentialSpec", mask_env({"name": "A", "mode": "deny"}), "credentials", ()),
    ("masked env var with injectHosts",
     {**GH, **mask_env({"name": "GH_TOKEN", "mode": "mask", "injectHosts": ["github.com"]})}, "credentials",
     (CredentialSpec(name="GH_TOKEN", hosts=("github.com",), from_env="GH_TOKEN", env="GH_TOKEN"),)),
    ("masked env var defaults to allowedDomains without ports or brackets",
     {**GH, **mask_env({"name": "T", "mode": "mask"})}, "credentials.0.hosts",
     ("github.com", "*.npmjs.org", "127.0.0.1", "::1")),
    ("allowedDomains hosts listed once", {"network.allowedDomains": ["a.example.com:443", "a.example.com:8443"],
                                          **TLS, **mask_env({"name": "T", "mode": "mask"})},
     "credentials.0.hosts", ("a.example.com",)),
    ("IPv6 injectHosts", {"network.allowedDomains": ["[::1]:8443"], **TLS,
                          **mask_env({"name": "T", "mode": "mask", "injectHosts": ["::1"]})},
     "credentials.0.hosts", ("::1",)),
    ("onExtractNoMatch absent means deny (srt: warn)",
     {**GH, **mask_env({"name": "T", "mode": "mask", "extract": "t=(\\w+)"})}, "credentials.0.on_no_match", "deny"),
    ("explicit onExtractNoMatch warn is honoured",
     {**GH, **mask_env({"name": "T", "mode": "mask", "extract": "t=(\\w+)", "onExtractNoMatch": "warn"})},
     "credentials.0.on_no_match", "warn"),
    ("onExtractNoMatch error", {**GH, **mask_env({"name": "T", "mode": "mask", "extract": "(x)",
                                                  "onExtractNoMatch": "error"})},
     "credentials.0.on_no_match", "error"),
    ("onExtractNoMatch without extract is ignored, as srt does",
     {**GH, **mask_env({"name": "T", "mode": "mask", "onExtractNoMatch": "warn"})}, "credentials.0.on_no_match", "deny"),
    ("extract kept as written", {**GH, **mask_env({"name": "T", "mode": "mask", "extract": "t=(\\w+)"})},
     "credentials.0.extract", "t=(\\w+)"),
    ("allowPlaintextInject without tlsTerminate",
     {"network.allowedDomains": ["a.example.com"],
      **mask_env({"name": "T", "mode": "mask"}, allowPlaintextInject=True)},
     "credentials",
     (CredentialSpec(name="T", hosts=("a.example.com",), from_env="T", env="T", allow_plaintext=True),)),
    ("origin names the entry", {**GH, **mask_env({"name": "A", "mode": "deny"}, {"name": "B", "mode": "mask"})},
     "credentials.0.origin", f"{SRC}:credentials.envVars[1]"),
    ("masked file", {**GH, **mask_file({"path": "~/.npmrc", "mode": "mask", "extract": "_authToken=(\\S+)",
                                         "injectHosts": ["127.0.0.1"]})},
     "credentials",
     (CredentialSpec(name="FILE_0__npmrc", hosts=("127.0.0.1",), from_file="/home/u/.npmrc",
                     mask_file="/home/u/.npmrc", extract="_authToken=(\\S+)"),)),
    ("masked file names are identifiers",
     {**GH, **mask_file({"path": "/x", "mode": "deny"}, {"path": "./cfg/my-tok.en.json", "mode": "mask"})},
     "credentials.0.name", "FILE_1_my_tok_en_json"),
    ("masked file origin", {**GH, **mask_file({"path": "./t", "mode": "mask"})},
     "credentials.0.origin", f"{SRC}:credentials.files[0]"),
    ("masked file is not a read deny", {**GH, **mask_file({"path": "./t", "mode": "mask"})},
     "filesystem.deny_read", ()),
    ("masked env var is not unset", {**GH, **mask_env({"name": "T", "mode": "mask"})}, "process.unset_env", ()),
    ("env vars come before files", {**GH, **mask_env({"name": "T", "mode": "mask"}),
                                    "credentials.files": [{"path": "/t", "mode": "mask"}]},
     "credentials.1.from_file", "/t"),
    ("maskDuplicates false is accepted", {**GH, **mask_file({"path": "/t", "mode": "mask", "maskDuplicates": False})},
     "credentials.0.from_file", "/t"),
    ("masking leaves the network as the domain lists say", {**GH, **mask_env({"name": "T", "mode": "mask"})},
     "network.proxy", False),
]


def _attr(value, attr: str):
    for part in attr.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)
    return value


@pytest.mark.parametrize("name,patch,attr,expected", BOUNDARY_MAPPINGS, ids=[m[0] for m in BOUNDARY_MAPPINGS])
def test_boundary_mapping(name, patch, attr, expected):
    assert _attr(load(settings(**patch)), attr) == expected


def test_spec_example_maps():
    text = json.dumps({
        "network": {"allowedDomains": ["127.0.0.1:8443", "localhost"], "deniedDomains": [],
                    "tlsTerminate": {"caCertPath": "/path/ca.pem", "caKeyPath": "/path/ca-key.pem",
                                     "excludeDomains": ["pinned.example"],
                                     "extraCaCertPaths": ["/path/test-ca.pem"]},
                    "requireHostMatch": True},
        "filesystem": {"denyRead": [], "allowRead": [], "allowWrite": ["/proj"], "denyWrite": []},
        "credentials": {
            "envVars": [{"name": "GH_TOKEN", "mode": "mask", "injectHosts": ["127.0.0.1"]}],
            "files": [{"path": "~/.npmrc", "mode": "mask", "extract": "_authToken=(\\S+)",
                       "injectHosts": ["127.0.0.1"]}],
            "allowPlaintextInject": False,
        },
    })
    policy = load_srt_settings(text, SRC, CTX)
    assert policy.network.tls == TlsPolicy(terminate=("*",), exclude=("pinned.example",), ca="files",
                                           ca_cert="/path/ca.pem", ca_key="/path/ca-key.pem",
                                           extra_ca=("/path/test-ca.pem",))
    assert policy.network.require_host_match is True
    assert [c.name for c in policy.credentials] == ["GH_TOKEN", "FILE_0__npmrc"]
    assert all(c.hosts == ("127.0.0.1",) and not c.allow_plaintext for c in policy.credentials)
    assert policy.credentials[1].from_file == policy.credentials[1].mask_file == "/home/u/.npmrc"
    assert policy.credentials[0].env == "GH_TOKEN" and policy.credentials[1].env is None


def test_boundary_policy_renders_and_loads_as_native_toml():
    from corral.policy.native import load_toml
    from corral.policy.render import to_toml

    policy = load(settings(**{
        "network.allowedDomains": ["github.com", "[::1]:8443"], "network.requireHostMatch": False,
        "network.refuseOpaqueTunnels": True, "network.stripResponseHeaders": ["Set-Cookie"],
        "network.tlsTerminate": {"caCertPath": "~/ca.pem", "caKeyPath": "~/ca.key", "excludeDomains": ["::1"],
                                 "extraCaCertPaths": ["/e.pem"], "maxTunnels": 3, "handshakeTimeoutMs": 150},
        "credentials": {"envVars": [{"name": "T", "mode": "mask", "extract": "t=(\\w+)", "onExtractNoMatch": "warn"}],
                        "files": [{"path": "~/.npmrc", "mode": "mask", "injectHosts": ["github.com"]}]},
    }))
    again = load_toml(to_toml(policy, CTX), SRC, CTX)
    assert again.network == policy.network
    assert again.credentials == policy.credentials


# (id, patch, key, value, text expected in the reason): valid srt that corral cannot map.
BOUNDARY_ERRORS = [
    ("mask without injectHosts or allowedDomains", {**TLS, **mask_env({"name": "T", "mode": "mask"})},
     "credentials.envVars[0].injectHosts", None, "allowedDomains"),
    ("masked file without injectHosts or allowedDomains", {**TLS, **mask_file({"path": "/t", "mode": "mask"})},
     "credentials.files[0].injectHosts", None, "allowedDomains"),
    ("masked file glob", {**GH, **mask_file({"path": "~/.config/*.tok", "mode": "mask"})},
     "credentials.files[0].path", "~/.config/*.tok", "must be one path"),
    ("masked file with brackets", {**GH, **mask_file({"path": "/t[1]", "mode": "mask"})},
     "credentials.files[0].path", "/t[1]", "must be one path"),
    ("masked file ~user", {**GH, **mask_file({"path": "~bob/.npmrc", "mode": "mask"})},
     "credentials.files[0].path", "~bob/.npmrc", "~user"),
    ("env var both denied and masked", {**GH, **mask_env({"name": "T", "mode": "mask"}, {"name": "T", "mode": "deny"})},
     "credentials.envVars[0].name", "T", 'mode "deny"'),
    ("env var masked twice", {**GH, **mask_env({"name": "T", "mode": "mask"}, {"name": "T", "mode": "mask"})},
     "credentials.envVars[1].name", "T", "already masked by credentials.envVars[0]"),
    ("file masked twice", {**GH, **mask_file({"path": "~/t", "mode": "mask"}, {"path": "/home/u/t", "mode": "mask"})},
     "credentials.files[1].path", "/home/u/t", "already masked by credentials.files[0]"),
    ("file both denied and masked", {**GH, **mask_file({"path": "/t", "mode": "deny"}, {"path": "/t", "mode": "mask"})},
     "credentials.files[1].path", "/t", 'mode "deny"'),
    ("injectHosts corral cannot use",
     {"network.allowedDomains": ["*.a.example.com"], **TLS,
      **mask_env({"name": "T", "mode": "mask", "injectHosts": ["*.*.a.example.com"]})},
     "credentials.envVars[0].injectHosts[0]", "*.*.a.example.com", "only one leading"),
    ("excludeDomains corral cannot use", {"network.tlsTerminate": {"excludeDomains": ["*.*.a.example.com"]}},
     "network.tlsTerminate.excludeDomains[0]", "*.*.a.example.com", "only one leading"),
    ("caCertPath ~user", {"network.tlsTerminate": {"caCertPath": "~bob/ca.pem", "caKeyPath": "/k"}},
     "network.tlsTerminate.caCertPath", "~bob/ca.pem", "~user"),
    ("extraCaCertPaths ~user", {"network.tlsTerminate": {"extraCaCertPaths": ["/a.pem", "~bob/ca.pem"]}},
     "network.tlsTerminate.extraCaCertPaths[1]", "~bob/ca.pem", "~user"),
    ("stripResponseHeaders not a header name", {"network.stripResponseHeaders": ["x-a", "set-cookie:"]},
     "network.stripResponseHeaders[1]", "set-cookie:", "never match"),
]


@pytest.mark.parametrize("name,patch,key,value,why", BOUNDARY_ERRORS, ids=[c[0] for c in BOUNDARY_ERRORS])
def test_boundary_errors(name, patch, key, value, why):
    data = settings(**patch)
    validate(data, SRC)  # valid srt settings: the mapping refuses them
    with pytest.raises(PolicyError) as info:
        load(data)
    err = info.value
    assert not isinstance(err, UnsupportedFeature)
    assert (err.key, err.value) == (key, value)
    assert str(err).startswith(f"{SRC}: {key} = {value!r}: ")
    assert why in err.why


def test_masking_without_tls_is_still_refused():
    data = settings(**{"network.allowedDomains": ["a.example.com"], **mask_env({"name": "T", "mode": "mask"})})
    with pytest.raises(PolicyError) as info:
        load(data)
    assert info.value.key == "credentials" and "tlsTerminate" in info.value.why


def test_loading_reads_no_credential(monkeypatch, tmp_path):
    # Sources are recorded, never read: a missing variable or file is no load-time error.
    monkeypatch.delenv("CORRAL_TEST_ABSENT", raising=False)
    policy = load(settings(**GH, **mask_env({"name": "CORRAL_TEST_ABSENT", "mode": "mask"}),
                           **{"credentials.files": [{"path": str(tmp_path / "missing"), "mode": "mask"}]}))
    assert [c.name for c in policy.credentials] == ["CORRAL_TEST_ABSENT", "FILE_0_missing"]


# --------------------------------------------------------------------------------------------
# Differential check against srt's own zod schema, when node and srt 0.0.83 are installed.
# --------------------------------------------------------------------------------------------

SRT_CONFIG_JS = os.environ.get(
    "SRT_CONFIG_JS",
    "/opt/srt/node_modules/@anthropic-ai/sandbox-runtime/dist/sandbox/sandbox-config.js",
)
NODE_CHECK = """
const { SandboxRuntimeConfigSchema } = await import(process.argv[2]);
let input = '';
for await (const chunk of process.stdin) input += chunk;
console.log(JSON.stringify(JSON.parse(input).map(c => SandboxRuntimeConfigSchema.safeParse(c).success)));
"""


def _differential_cases():
    cases = []

    def add(**patch):
        cases.append(settings(**patch))

    domains = [
        "example.com", "*.example.com", "*.com", "*", "localhost", "LOCALHOST", "ip6-localhost",
        "example.com:443", "example.com:0", "example.com:65536", "example.com:080", "[::1]", "[::1]:443",
        "::1", "[::1]junk", "[::1]:0", "[example.com]", "[abc.com", "*.*.example.com", "foo bar.com",
        "http://a.com", "a.com/x", ".a.com", "a.com.", "[::ffff:1.2.3.4]", "[fe80::1%eth0]", "[1.2.3]",
        "[2130706433]", "[LOCALHOST]", "[*.example.com]:443", "[]", "*:22", "*:0", "*.a.com:22", "é.com",
    ]
    for d in domains:
        add(**{"network.allowedDomains": [d]})
        add(**{"network.deniedDomains": [d]})
        add(**{"network.tlsTerminate": {"excludeDomains": [d]}})
    for a in ["10.0.0.0/8", "fc00::/7", "10.0.0.0/33", "10.0.0.0/", "010.0.0.1", "::ffff:10.0.0.0/104",
              "::ffff:10.0.0.0/95", "fe80::1%en0", "1.2.3.4%x", "[::1]", "a.com", "::/129"]:
        add(**{"network.deniedResolvedAddresses": [a]})
    for u in ["http://proxy:3128", "localhost:3128", "http://", "http://a b/", "https://[::1]:8080",
              "http://[::1", "http://user@/", "http://a:99999", "foo", "mailto:x", "http:a.com", "http://%zz",
              "http://0x7f.1", "http://1.2.3.999", "http://[fe80::1%25eth0]/", "a://@", "file:///etc"]:
        add(**{"network.parentProxy": {"http": u}})
    for r in ["t:(\\S+)", "abc", "(?:x)", "(?<n>x)", "(a", "a)", "[a", "a\\", "*a", "a**(x)", "a*?(x)",
              "a{2}{3}(x)", "a{3,2}(x)", "a{,2}(x)", "{(x)", "(?=a)*(x)", "(?<=a)*(x)", "[z-a](x)",
              "(?<1a>x)", "(?<a>x)(?<a>y)", "(?<a>x)\\k<b>", "(?<a>x)\\k<a>", "\\k<a>(x)", "^*(x)", "\\b+(x)",
              "[](x)", "[^](x)", "[\\d-z](x)", "(?", "(x)$*", "([)])"]:
        add(credentials={"envVars": [{"name": "X", "mode": "deny", "extract": r}]})
    rng = random.Random(83)  # fixed seed: a reproducible fuzz of the hand-written checkers
    for _ in range(300):
        word = "".join(rng.choice(["a", "1", "0", ".", "*", ":", "[", "]", "%", "x", "::", "-", "/"])
                       for _ in range(rng.randint(0, 7)))
        add(**{"network.deniedDomains": [word]})
        regex = "".join(rng.choice("()a?*+[]{}1,\\<>=!:|^$-kb") for _ in range(rng.randint(0, 9)))
        add(credentials={"envVars": [{"name": "X", "mode": "deny", "extract": regex}]})
    for patch in ACCEPTED:
        add(**patch)
    for patch, _, _ in UNSUPPORTED:
        add(**patch)
    for _, patch, _, _ in BOUNDARY_MAPPINGS:
        add(**patch)
    for _, patch, _, _, _ in BOUNDARY_ERRORS:
        add(**patch)  # valid srt: corral refuses them when mapping, not when validating
    for _, data, _, _, _ in INVALID:
        cases.append(data)
    return cases


# Cases where corral is deliberately stricter than srt (srt accepts them, corral refuses).
CORRAL_STRICTER = {"misspelled key", "unknown top-level key", "~user path", "root wildcard glob",
                   "~user in literal form"}


@pytest.mark.skipif(not (shutil.which("node") and os.path.exists(SRT_CONFIG_JS)),
                    reason="node or srt 0.0.83 not installed")
def test_validation_agrees_with_srt_zod_schema(tmp_path):
    script = tmp_path / "check.mjs"
    script.write_text(NODE_CHECK)
    cases = _differential_cases()
    out = subprocess.run(["node", str(script), SRT_CONFIG_JS], input=json.dumps(cases),
                         capture_output=True, text=True, check=True, timeout=120)
    srt_ok = json.loads(out.stdout)
    stricter = [json.dumps(data) for name, data, *_ in INVALID if name in CORRAL_STRICTER]
    disagreements = []
    for data, ok in zip(cases, srt_ok):
        try:
            validate(data, SRC)
            mine = True
        except PolicyError:
            mine = False
        # paths.rule's refusals happen in convert, not validate, so only unknown keys differ here.
        if mine != ok and not (ok and json.dumps(data) in stricter):
            disagreements.append((json.dumps(data), ok, mine))
    assert disagreements == []
