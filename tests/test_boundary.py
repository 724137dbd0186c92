"""corral.sandbox.boundary: reading credential sources, placeholders, masked files, TLS set-up,
endpoints, and the Plan built with a Boundary (the real values never enter it).

Fake secrets are built at run time, never written out as token-looking literals. Policies use
an ephemeral CA unless a test is about the per-user one (then XDG_DATA_HOME is a temp dir).
"""

from __future__ import annotations

import os
import re

import pytest

from corral._values import replace
from corral.errors import PolicyError, SetupError
from corral.policy.model import (
    CredentialSpec,
    Endpoint,
    FilesystemPolicy,
    LaunchContext,
    NetworkPolicy,
    Policy,
    TlsPolicy,
)
from corral.proxy import tlsca
from corral.proxy.credentials import Credential
from corral.sandbox import boundary as bnd
from corral.sandbox.plan import HostFS, build_plan
from corral.workspace.scan import ProtectedScan

REAL = "tok-test-" + "7f" * 16
REAL2 = "tok-test-" + "a9" * 16
NPM1 = "npm-test-" + "11" * 12
NPM2 = "npm-test-" + "22" * 12
PH_RE = r"corral-ph-{slug}-[0-9a-f]{{32}}"
EPHEMERAL_TLS = TlsPolicy(terminate=("*",), ca="ephemeral")


def ph_re(slug: str) -> re.Pattern:
    return re.compile(PH_RE.format(slug=re.escape(slug)))


@pytest.fixture
def ctx(tmp_path):
    (tmp_path / "proj").mkdir()
    (tmp_path / "home").mkdir()
    return LaunchContext(cwd=str(tmp_path / "proj"), home=str(tmp_path / "home"), uid=os.getuid(), gid=os.getgid())


def spec(name="GH_TOKEN", hosts=("api.github.com",), **kw) -> CredentialSpec:
    if not any(k in kw for k in ("from_env", "from_file", "from_command")):
        kw["from_env"] = name
    kw.setdefault("env", name)
    return CredentialSpec(name=name, hosts=tuple(hosts), **kw)


def policy(*specs, tls=EPHEMERAL_TLS, endpoints=(), **net) -> Policy:
    net.setdefault("allowed_domains", ("api.github.com",))
    return Policy(network=NetworkPolicy(tls=tls, **net), credentials=tuple(specs), endpoints=tuple(endpoints))


def placeholder_of(b, name: str) -> str:
    (ph,) = [p for p, c in b.bindings.items() if c.name == name]
    return ph


def value_of(b, name: str) -> str:
    return b.bindings[placeholder_of(b, name)].value


def no_real_value(b, *values) -> None:
    """Nothing the sandbox is handed (env, files shown, warnings) holds a real value."""
    shown = repr(b.env) + repr(b.files) + repr(b.unset) + repr(b.hide) + repr(b.warnings)
    shown += repr(b.bindings) + repr(b.injector) + repr(b.gate)
    for v in values:
        assert v not in shown


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------


def test_from_env_is_withheld_and_replaced_by_a_placeholder(ctx):
    b = bnd.resolve(policy(spec()), {"GH_TOKEN": REAL, "OTHER": "x"}, ctx)
    ph = placeholder_of(b, "GH_TOKEN")
    assert ph_re("gh-token").fullmatch(ph)
    assert b.unset == ["GH_TOKEN"]
    assert b.env["GH_TOKEN"] == ph
    assert value_of(b, "GH_TOKEN") == REAL
    cred = b.bindings[ph]
    assert isinstance(cred, Credential) and cred.hosts == ("api.github.com",)
    assert cred.anywhere  # no header and no basic_user: swapped where the client puts it
    assert b.warnings == [] and b.hide == []
    assert b.active
    no_real_value(b, REAL)
    # The gate the proxy gets swaps this placeholder, for this host only.
    v = b.gate.check("GET", "api.github.com", 443, "/", [(b"authorization", f"token {ph}".encode())], tls=True)
    assert v.allowed and v.injected == ("GH_TOKEN",)
    assert v.headers == [(b"authorization", f"token {REAL}".encode())]
    leak = b.gate.check("GET", "evil.example", 443, "/", [(b"authorization", f"token {ph}".encode())], tls=True)
    assert not leak.allowed and leak.exfiltration


@pytest.mark.parametrize("env, expected", [("INSIDE_NAME", {"INSIDE_NAME"}), (None, set())])
def test_from_env_into_another_variable_or_none(ctx, env, expected):
    b = bnd.resolve(policy(spec(env=env)), {"GH_TOKEN": REAL}, ctx)
    assert b.unset == ["GH_TOKEN"]
    assert set(b.env) - set(tlsca.TRUST_ENV_VARS) == expected
    assert len(b.bindings) == 1  # the proxy still has it
    no_real_value(b, REAL)


def test_header_and_basic_user_are_passed_on(ctx):
    specs = (spec("API_KEY", hosts=("api.example.com",), header="x-api-key: {value}"),
             spec("GIT_TOKEN", hosts=("github.com",), basic_user="x-access-token"))
    b = bnd.resolve(policy(*specs), {"API_KEY": REAL, "GIT_TOKEN": REAL2}, ctx)
    api = b.bindings[placeholder_of(b, "API_KEY")]
    git = b.bindings[placeholder_of(b, "GIT_TOKEN")]
    assert api.header == "x-api-key: {value}" and not api.anywhere
    assert git.basic_user == "x-access-token"
    v = b.gate.check("GET", "api.example.com", 443, "/", [], tls=True)
    assert v.headers == [(b"x-api-key", REAL.encode())]


def test_from_file_whole_content_stripped_and_masked(ctx, tmp_path):
    path = tmp_path / "token.txt"
    path.write_text(f"  {REAL}\n")
    b = bnd.resolve(policy(spec("FILE_TOKEN", from_file=str(path), mask_file=str(path))), {}, ctx)
    ph = placeholder_of(b, "FILE_TOKEN")
    assert value_of(b, "FILE_TOKEN") == REAL
    assert b.env["FILE_TOKEN"] == ph
    assert b.unset == []
    masked = [(p, c) for p, c, _ in b.files if p == str(path)]
    assert masked == [(str(path), f"  {ph}\n")]  # the surrounding whitespace is kept
    no_real_value(b, REAL)


def test_from_command_output(ctx):
    b = bnd.resolve(policy(spec("CMD_TOKEN", from_command=("printf", "%s\n", REAL))), {}, ctx)
    assert value_of(b, "CMD_TOKEN") == REAL
    assert ph_re("cmd-token").fullmatch(b.env["CMD_TOKEN"])
    assert b.unset == []


def test_failing_command_does_not_show_its_stderr(ctx):
    noisy = "stderr-" + "5e" * 10
    cmd = ("sh", "-c", f"echo {noisy} >&2; echo {REAL}; exit 3")
    with pytest.raises(SetupError) as err:
        bnd.resolve(policy(spec("CMD_TOKEN", from_command=cmd)), {}, ctx)
    text = str(err.value)
    assert "CMD_TOKEN" in text and "status 3" in text
    assert noisy not in text and REAL not in text
    assert noisy not in err.value.cause + err.value.fix


@pytest.mark.parametrize("cmd, why", [
    (("/nonexistent/corral-test-command",), "not found"),
    (("printf", "\\377\\376 not utf-8"), "non-UTF-8"),
])
def test_command_errors(ctx, cmd, why):
    with pytest.raises(SetupError, match=why):
        bnd.resolve(policy(spec("CMD_TOKEN", from_command=cmd)), {}, ctx)


def test_unreadable_or_binary_file_is_an_error(ctx, tmp_path):
    binary = tmp_path / "bin.dat"
    binary.write_bytes(b"\xff\xfe" + b"x" * 20)
    with pytest.raises(SetupError, match="not UTF-8"):
        bnd.resolve(policy(spec("F", from_file=str(binary))), {}, ctx)
    directory = tmp_path / "a-dir"
    directory.mkdir()
    with pytest.raises(SetupError, match="cannot read"):
        bnd.resolve(policy(spec("F", from_file=str(directory))), {}, ctx)


def test_missing_sources_are_skipped(ctx, tmp_path):
    specs = (spec("FROM_ENV", from_env="NOT_SET_ANYWHERE"),
             spec("FROM_FILE", from_file=str(tmp_path / "missing.txt"), mask_file=str(tmp_path / "missing.txt")),
             spec("PRESENT", hosts=("api.example.com",)))
    b = bnd.resolve(policy(*specs), {"PRESENT": REAL}, ctx)
    assert sorted(c.name for c in b.bindings.values()) == ["PRESENT"]
    assert b.unset == ["PRESENT"]
    assert "FROM_ENV" not in b.env and "FROM_FILE" not in b.env
    assert [p for p, _, _ in b.files if "missing" in p] == []
    assert b.hide == []


def test_nothing_present_means_no_injector(ctx):
    b = bnd.resolve(policy(spec()), {}, ctx)
    assert b.bindings == {} and b.injector is None and b.gate is None
    assert b.terminator is not None  # TLS termination was asked for on its own
    assert b.active


def test_short_value_is_kept_outside_with_a_warning_without_the_value(ctx):
    short = "abc12"
    b = bnd.resolve(policy(spec()), {"GH_TOKEN": short}, ctx)
    assert PH_RE.format(slug="gh-token") and b.env["GH_TOKEN"] != short
    assert short not in repr(b.env) and "GH_TOKEN" not in b.env.values()
    (warning,) = b.warnings
    assert "GH_TOKEN" in warning and "not redacted" in warning and short not in warning


def test_control_characters_in_a_value_are_a_policy_error_without_the_value(ctx):
    bad = "tok-" + "7f" * 8 + "\x01x"
    with pytest.raises(PolicyError) as err:
        bnd.resolve(policy(spec()), {"GH_TOKEN": bad}, ctx)
    assert "GH_TOKEN" in str(err.value) and bad not in str(err.value)


# ---------------------------------------------------------------------------------------------
# extract
# ---------------------------------------------------------------------------------------------

NPMRC = (
    f"//registry.npmjs.org/:_authToken={NPM1}\n"
    "registry=https://registry.npmjs.org/\n"
    f"//npm.corp.example/:_authToken={NPM2}\n"
    f"//mirror.example/:_authToken={NPM1}\n"
)


def test_extract_every_distinct_capture_gets_a_credential(ctx, tmp_path):
    path = tmp_path / ".npmrc"
    path.write_text(NPMRC)
    s = spec("NPM", hosts=("registry.npmjs.org", "npm.corp.example"), from_file=str(path), mask_file=str(path),
             extract=r"_authToken=(\S+)")
    b = bnd.resolve(policy(s), {}, ctx)
    assert sorted(c.name for c in b.bindings.values()) == ["NPM", "NPM_2"]
    assert value_of(b, "NPM") == NPM1 and value_of(b, "NPM_2") == NPM2
    ph1, ph2 = placeholder_of(b, "NPM"), placeholder_of(b, "NPM_2")
    assert ph1 != ph2 and ph_re("npm").fullmatch(ph1) and ph_re("npm-2").fullmatch(ph2)
    assert b.env["NPM"] == ph1  # the variable holds the first capture's placeholder
    (shown,) = [c for p, c, _ in b.files if p == str(path)]
    assert shown == NPMRC.replace(NPM1, ph1).replace(NPM2, ph2)  # repeated captures: the same placeholder
    assert shown.count(ph1) == 2
    no_real_value(b, NPM1, NPM2)
    # each one is bound to the credential's hosts
    for ph, real in ((ph1, NPM1), (ph2, NPM2)):
        v = b.gate.check("GET", "npm.corp.example", 443, "/", [(b"authorization", f"Bearer {ph}".encode())], tls=True)
        assert v.headers == [(b"authorization", f"Bearer {real}".encode())]


def test_extract_from_env_masks_only_the_span(ctx):
    url = f"https://bot:{REAL}@git.example/repo.git"
    s = spec("REPO_URL", hosts=("git.example",), extract=r"https://[^:]+:([^@]+)@")
    b = bnd.resolve(policy(s), {"REPO_URL": url}, ctx)
    ph = placeholder_of(b, "REPO_URL")
    assert b.env["REPO_URL"] == f"https://bot:{ph}@git.example/repo.git"
    assert b.unset == ["REPO_URL"]
    assert value_of(b, "REPO_URL") == REAL


def test_extract_from_command(ctx):
    s = spec("CMD", hosts=("api.example.com",), from_command=("printf", f"user=me\\ntoken={REAL}\\n"),
             extract=r"token=(\S+)")
    b = bnd.resolve(policy(s), {}, ctx)
    assert value_of(b, "CMD") == REAL
    assert len(b.bindings) == 1


def test_extract_empty_captures_are_ignored(ctx):
    s = spec("E", hosts=("api.example.com",), extract=r"key=([\w-]*)")
    b = bnd.resolve(policy(s), {"E": f"key= key={REAL}"}, ctx)
    assert [c.value for c in b.bindings.values()] == [REAL]


@pytest.mark.parametrize("source", ["env", "file"])
def test_on_no_match_deny_withholds(ctx, tmp_path, source):
    path = tmp_path / "cfg.txt"
    path.write_text(f"nothing to see {REAL}\n")
    kw = {"from_file": str(path), "mask_file": str(path)} if source == "file" else {"from_env": "CFG"}
    s = spec("CFG", extract=r"token=(\S+)", origin="p.toml:credentials[0]", **kw)
    b = bnd.resolve(policy(s), {"CFG": f"nothing to see {REAL}"}, ctx)
    assert b.bindings == {} and "CFG" not in b.env
    assert len(b.warnings) == 1 and "withheld" in b.warnings[0] and "p.toml:credentials[0]" in b.warnings[0]
    if source == "file":
        assert b.hide == [str(path)] and b.unset == []
        assert [p for p, _, _ in b.files if p == str(path)] == []
    else:
        assert b.unset == ["CFG"] and b.hide == []
    no_real_value(b, REAL)


@pytest.mark.parametrize("source", ["env", "file"])
def test_on_no_match_warn_passes_the_real_value(ctx, tmp_path, source):
    path = tmp_path / "cfg.txt"
    path.write_text("no token here\n")
    kw = {"from_file": str(path), "mask_file": str(path)} if source == "file" else {"from_env": "CFG"}
    b = bnd.resolve(policy(spec("CFG", extract=r"token=(\S+)", on_no_match="warn", **kw)), {"CFG": "no token"}, ctx)
    assert b.bindings == {} and b.unset == [] and b.hide == [] and "CFG" not in b.env
    assert len(b.warnings) == 1 and "real value" in b.warnings[0]
    assert [p for p, _, _ in b.files if p == str(path)] == []


def test_on_no_match_error_refuses_to_start(ctx):
    with pytest.raises(SetupError, match="matched nothing"):
        bnd.resolve(policy(spec("CFG", extract=r"token=(\S+)", on_no_match="error")), {"CFG": "no token"}, ctx)


# ---------------------------------------------------------------------------------------------
# Placeholders and scrub
# ---------------------------------------------------------------------------------------------


def test_placeholders_are_new_every_resolve(ctx):
    p = policy(spec(), spec("OTHER", hosts=("api.example.com",)))
    environ = {"GH_TOKEN": REAL, "OTHER": REAL2}
    first, second = bnd.resolve(p, environ, ctx), bnd.resolve(p, environ, ctx)
    assert set(first.bindings).isdisjoint(second.bindings)
    assert first.env["GH_TOKEN"] != second.env["GH_TOKEN"]
    assert value_of(first, "GH_TOKEN") == value_of(second, "GH_TOKEN") == REAL
    assert len(set(first.bindings)) == 2


def test_scrub_replaces_every_real_value(ctx):
    b = bnd.resolve(policy(spec(), spec("OTHER", hosts=("api.example.com",))), {"GH_TOKEN": REAL, "OTHER": REAL2}, ctx)
    ph, ph2 = placeholder_of(b, "GH_TOKEN"), placeholder_of(b, "OTHER")
    text = f"curl -H 'Authorization: token {REAL}' https://x/?a={REAL2}&b={REAL}"
    assert b.scrub(text) == f"curl -H 'Authorization: token {ph}' https://x/?a={ph2}&b={ph}"
    assert b.scrub("nothing secret") == "nothing secret"
    assert bnd.Boundary().scrub(REAL) == REAL  # nothing bound: nothing to scrub


# ---------------------------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------------------------


def test_trust_bundle_and_variables(ctx, tmp_path):
    extra = tmp_path / "extra-ca.pem"
    extra_ca = tlsca.CertificateAuthority.ephemeral()
    extra.write_bytes(extra_ca.cert_pem)
    tls = replace(EPHEMERAL_TLS, extra_ca=(str(extra),))
    b = bnd.resolve(policy(spec(), tls=tls), {"GH_TOKEN": REAL}, ctx)
    system = [p for p in tlsca.SYSTEM_BUNDLE_PATHS if os.path.isfile(p)]
    assert system, "this test needs a system CA bundle"
    for name in tlsca.TRUST_ENV_VARS:
        assert b.env[name] == system[0]
        assert os.path.isfile(b.env[name])
    bundles = {p: c for p, c, _ in b.files if p in tlsca.SYSTEM_BUNDLE_PATHS}
    assert set(bundles) == set(system)  # mounted over every system bundle path there is
    for content in bundles.values():
        assert b.terminator.ca.cert_pem.decode() in content
        assert extra_ca.cert_pem.decode() in content
        with open(system[0]) as fh:
            assert content.startswith(fh.read(2000))  # the system's CAs are kept
    assert b.terminator.extra_ca == (str(extra),)
    assert b.terminator.covers("anything.example")


def test_credentials_alone_turn_termination_on(ctx):
    b = bnd.resolve(policy(spec(), tls=TlsPolicy(ca="ephemeral")), {"GH_TOKEN": REAL}, ctx)
    assert b.terminator is not None
    assert b.terminator.covers("api.github.com", b.gate.must_inspect("api.github.com"))
    assert not b.terminator.covers("example.com", b.gate.must_inspect("example.com"))
    assert set(tlsca.TRUST_ENV_VARS) <= set(b.env)


def test_no_tls_no_credentials_no_boundary(ctx):
    p = policy(tls=TlsPolicy())
    assert not bnd.needed(p)
    b = bnd.resolve(p, {}, ctx)
    assert not b.active and b.env == {} and b.files == []
    assert bnd.needed(policy(tls=TlsPolicy(), http_rules=("allow GET github.com/**",)))
    assert bnd.needed(policy(spec(), tls=TlsPolicy()))


def test_missing_extra_ca_is_a_policy_error(ctx, tmp_path):
    tls = replace(EPHEMERAL_TLS, extra_ca=(str(tmp_path / "nope.pem"),))
    with pytest.raises(PolicyError, match="no such file"):
        bnd.resolve(policy(tls=tls), {}, ctx)


def test_user_ca_is_created_under_xdg_data_home(ctx, tmp_path, monkeypatch):
    # The launch environment decides (the same one build_plan hides the CA directory by).
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    b = bnd.resolve(policy(tls=TlsPolicy(terminate=("*",))), env, ctx)
    ca_dir = tmp_path / "data" / "corral" / "ca"
    assert (ca_dir / "ca.pem").read_bytes() == b.terminator.ca.cert_pem
    assert (ca_dir / "ca-key.pem").stat().st_mode & 0o077 == 0
    assert bnd.ca_dir(ctx, {"XDG_DATA_HOME": str(tmp_path / "data")}) == str(ca_dir)
    again = bnd.resolve(policy(tls=TlsPolicy(terminate=("*",))), env, ctx)
    assert again.terminator.ca.cert_pem == b.terminator.ca.cert_pem  # reused, not remade


# ---------------------------------------------------------------------------------------------
# Endpoints and native TOML
# ---------------------------------------------------------------------------------------------


def test_endpoints_listen_from_3200(ctx):
    eps = (Endpoint("anthropic", "https://api.anthropic.com", "API_KEY", "ANTHROPIC_BASE_URL"),
           Endpoint("other", "https://llm.example:8443/v1/", None, "OTHER_BASE_URL"),
           Endpoint("quiet", "https://quiet.example"))
    b = bnd.resolve(policy(spec("API_KEY", hosts=("api.anthropic.com",)), endpoints=eps), {"API_KEY": REAL}, ctx)
    assert sorted(b.endpoints) == [3200, 3201, 3202]
    assert (b.endpoints[3200].host, b.endpoints[3200].port) == ("api.anthropic.com", 443)
    assert (b.endpoints[3201].host, b.endpoints[3201].port) == ("llm.example", 8443)
    assert b.env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:3200"
    assert b.env["OTHER_BASE_URL"] == "http://127.0.0.1:3201/v1"
    assert all(ep.tls is b.terminator for ep in b.endpoints.values())


def test_endpoint_without_termination_still_verifies_upstream(ctx):
    b = bnd.resolve(policy(endpoints=(Endpoint("e", "https://api.example.com"),), tls=TlsPolicy()), {}, ctx)
    assert b.terminator is None
    ep = b.endpoints[3200]
    assert ep.tls is not None and ep.tls.ca is None
    import ssl

    assert ep.tls.upstream_context.verify_mode == ssl.CERT_REQUIRED and ep.tls.upstream_context.check_hostname


def test_native_toml_policy(ctx, tmp_path):
    from corral.policy.native import load_toml

    path = tmp_path / "home" / ".npmrc"
    path.write_text(NPMRC)
    text = f"""
[network]
allowed_domains = ["api.github.com", "registry.npmjs.org"]
http_rules = ["GET,HEAD api.github.com/**"]

[network.tls]
terminate = ["*"]
ca = "ephemeral"

[[credentials]]
name = "GITHUB_TOKEN"
from_env = "GH_TOKEN"
hosts = ["api.github.com"]
header = "Authorization: Bearer {{value}}"

[[credentials]]
name = "NPM"
from_file = "~/.npmrc"
mask_file = "~/.npmrc"
extract = '_authToken=(\\S+)'
env = false
hosts = ["registry.npmjs.org", "npm.corp.example"]
"""
    p = load_toml(text, str(tmp_path / "p.toml"), ctx)
    b = bnd.resolve(p, {"GH_TOKEN": REAL}, ctx)
    assert sorted(c.name for c in b.bindings.values()) == ["GITHUB_TOKEN", "NPM", "NPM_2"]
    assert b.unset == ["GH_TOKEN"]
    assert ph_re("github-token").fullmatch(b.env["GITHUB_TOKEN"])
    assert "NPM" not in b.env
    (shown,) = [c for f, c, _ in b.files if f == str(path)]
    assert NPM1 not in shown and NPM2 not in shown and shown.count("corral-ph-npm-") == 3
    v = b.gate.check("POST", "api.github.com", 443, "/repos", [], tls=True)
    assert not v.allowed and v.status == 403  # the HTTP rule: GET and HEAD only
    v = b.gate.check("GET", "api.github.com", 443, "/user", [], tls=True, origin_form=True,
                     sni="api.github.com", host_header="api.github.com")
    assert v.allowed and v.injected == ("GITHUB_TOKEN",)
    assert b.gate.require_host_match
    assert b.gate.check("GET", "api.github.com", 443, "/", [], tls=True, origin_form=True, sni="api.github.com",
                        host_header="evil.example").status == 421


# ---------------------------------------------------------------------------------------------
# The Plan built with a Boundary
# ---------------------------------------------------------------------------------------------


class FakeFS(HostFS):
    """path -> 'dir' | 'file', nothing real is looked at."""

    def __init__(self, entries):
        self.entries = {"/": "dir", **entries}

    def realpath(self, path):
        return path

    def kind(self, path):
        return self.entries.get(path)

    def lexists(self, path):
        return path in self.entries

    def secret_files(self, workspace, home, content="full"):
        return []

    def shared_placeholder(self, path):
        return False

    def scan_protected(self, roots, skip, allow_git_config):
        return ProtectedScan()

    def find_links(self, roots, skip, targets):
        return []

    def expand_globs(self, patterns):
        return []

    def reachable_by(self, path, uid, gid):
        return True

    def owner(self, path):
        return (0, 0)


def test_plan_never_holds_a_real_value(ctx, tmp_path):
    home = ctx.home
    npmrc = os.path.join(home, ".npmrc")
    with open(npmrc, "w") as fh:
        fh.write(NPMRC)
    hidden = os.path.join(home, "cfg.txt")
    with open(hidden, "w") as fh:
        fh.write(f"no token in here but {REAL2}\n")
    data_home = str(tmp_path / "xdg-data")
    ca_dir = os.path.join(data_home, "corral", "ca")
    specs = (
        spec(),
        spec("NPM", hosts=("registry.npmjs.org",), from_file=npmrc, mask_file=npmrc, extract=r"_authToken=(\S+)",
             env=None),
        spec("CFG", hosts=("api.example.com",), from_file=hidden, mask_file=hidden, extract=r"token=(\S+)", env=None),
    )
    p = replace(policy(*specs), filesystem=FilesystemPolicy(allow_write=(), deny_secrets=False))
    environ = {"PATH": "/usr/bin", "HOME": home, "GH_TOKEN": REAL, "COPY": f"x{REAL}y", "XDG_DATA_HOME": data_home,
               "SSL_CERT_FILE": "/launcher/own.pem"}
    b = bnd.resolve(p, environ, ctx)
    ph = placeholder_of(b, "GH_TOKEN")
    entries = {ctx.cwd: "dir", home: "dir", npmrc: "file", hidden: "file", ca_dir: "dir"}
    entries.update({path: "file" for path in tlsca.SYSTEM_BUNDLE_PATHS if os.path.isfile(path)})
    plan = build_plan(p, ctx, ["echo", REAL, f"--token={REAL}", NPM1], environ, fs=FakeFS(entries), run_id="r1",
                      boundary=b)

    for secret in (REAL, REAL2, NPM1, NPM2):
        assert secret not in repr(plan)
    assert plan.argv == ("echo", ph, f"--token={ph}", placeholder_of(b, "NPM"))
    env = dict(plan.env)
    assert env["GH_TOKEN"] == ph and env["COPY"] == f"x{ph}y"
    system = next(p for p in tlsca.SYSTEM_BUNDLE_PATHS if os.path.isfile(p))
    for name in tlsca.TRUST_ENV_VARS:
        assert env[name] == system  # the launcher's own SSL_CERT_FILE is replaced
    mounts = [(m.op, m.dest) for m in plan.mounts]
    data = {m.dest: m.src for m in plan.mounts if m.op == "data"}
    # the masked file: placeholders instead of the secrets, mounted after the deny that covers it
    assert NPMRC.replace(NPM1, placeholder_of(b, "NPM")).replace(NPM2, placeholder_of(b, "NPM_2")) == data[npmrc]
    assert mounts.index(("dev-null", npmrc)) < mounts.index(("data", npmrc))
    # the CA bundle over the system bundle path
    assert b.terminator.ca.cert_pem.decode() in data[system]
    # the withheld file (extract matched nothing) is unreadable, and not replaced
    assert ("dev-null", hidden) in mounts and hidden not in data
    # corral's CA directory is hidden
    ca_mounts = [m for m in plan.mounts if m.dest == ca_dir]
    assert [(m.op, m.why) for m in ca_mounts if m.op != "remount-ro"] == [("tmpfs", "corral's CA (deny always)")]
    assert ("remount-ro", ca_dir) in mounts


def test_plan_hides_the_default_ca_directory(ctx):
    ca_dir = os.path.join(ctx.home, ".local", "share", "corral", "ca")
    b = bnd.resolve(policy(spec()), {"GH_TOKEN": REAL}, ctx)
    fs = FakeFS({ctx.cwd: "dir", ctx.home: "dir", ca_dir: "dir"})
    plan = build_plan(policy(spec()), ctx, ["true"], {"PATH": "/usr/bin", "GH_TOKEN": REAL}, fs=fs, boundary=b)
    assert ("tmpfs", ca_dir) in [(m.op, m.dest) for m in plan.mounts]
    assert REAL not in repr(plan)


def test_plan_without_boundary_keeps_the_environment(ctx):
    """The control: without a boundary the value is passed as it is (so the checks above mean something),
    once pass_env lets it through (a variable named like a token is otherwise withheld even then)."""
    fs = FakeFS({ctx.cwd: "dir", ctx.home: "dir"})
    environ = {"PATH": "/usr/bin", "GH_TOKEN": REAL}
    plan = build_plan(policy(spec()), ctx, ["echo", REAL], environ, fs=fs)
    assert "GH_TOKEN" not in dict(plan.env)
    plan = build_plan(policy(spec()).with_process(pass_env=("GH_TOKEN",)), ctx, ["echo", REAL], environ, fs=fs)
    assert dict(plan.env)["GH_TOKEN"] == REAL and plan.argv == ("echo", REAL)


def test_several_captures_share_one_header_template(ctx, tmp_path):
    """Two tokens extracted from one file, sent with one header template: the client's
    placeholder picks its value; no conflict between the captures of one credential."""
    from corral.proxy.credentials import Injector

    path = tmp_path / "home" / ".npmrc"
    path.write_text(f"//a/:_authToken={NPM1}\n//b/:_authToken={NPM2}\n")
    s = spec("NPM", hosts=("registry.npmjs.org",), from_file=str(path), env=None, mask_file=str(path),
             extract=r"_authToken=(\S+)", header="Authorization: Bearer {value}")
    b = bnd.resolve(policy(s), {}, ctx)
    assert isinstance(b.injector, Injector)
    ph2 = placeholder_of(b, "NPM_2")
    sent = b.injector.prepare_request("GET", "registry.npmjs.org", True, [(b"authorization", f"Bearer {ph2}".encode())])
    assert sent.headers == [(b"authorization", f"Bearer {NPM2}".encode())]
    none = b.injector.prepare_request("GET", "registry.npmjs.org", True, [])
    assert none.headers == [(b"Authorization", f"Bearer {NPM1}".encode())]


def test_a_short_value_is_not_scrubbed_out_of_other_text(ctx):
    """Scrubbing a 3-character value would corrupt PATH and friends: only the credential's own
    variable is replaced."""
    b = bnd.resolve(policy(spec()), {"GH_TOKEN": "bin"}, ctx)
    assert b.scrub("/usr/bin:/bin") == "/usr/bin:/bin"
    assert b.env["GH_TOKEN"] != "bin" and "GH_TOKEN" in b.unset


def test_a_credential_whose_source_is_missing_is_said_once():
    from corral.policy.model import CredentialSpec, Policy
    from corral.sandbox import boundary

    spec = CredentialSpec(name="GH", hosts=("api.github.com",), from_env="GH_TOKEN_UNSET", env="GH_TOKEN_UNSET")
    ctx = LaunchContext(cwd="/w", home="/h", uid=1000, gid=1000)
    b = boundary.resolve(Policy(credentials=(spec,)), {}, ctx)
    assert b.warnings == ["corral: warning: credential GH: $GH_TOKEN_UNSET is not set here, so nothing is injected "
                          "for api.github.com (requests there go without it; set it in the launcher's environment)"]
