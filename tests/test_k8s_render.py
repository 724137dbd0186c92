"""`corral k8s render` / `corral k8s session`: the pure renderer (golden files, decision tables)
and the command line (no credential value in any output, strict refusals, clear errors)."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest
import yaml

import helpers
from corral.backends import k8s
from corral.backends import report as R
from corral.policy.model import LaunchContext
from corral.policy.native import load_toml
from corral.policy.srt import load_srt_settings

GOLDEN = Path(__file__).parent / "data" / "k8s" / "golden"
CTX = LaunchContext(cwd="/work/proj", home="/home/u", uid=1000, gid=1000)
FAKE_CA = "-----BEGIN CERTIFICATE-----\nMIIBfakeCAforGoldenFiles\n-----END CERTIFICATE-----\n"
INPUTS = k8s.Inputs(ca_cert_pem=FAKE_CA, ca_cert_path="/home/u/ca/ca.pem", ca_key_path="/home/u/ca/ca-key.pem")

SRT = """{"network": {"allowedDomains": ["example.com", "*.npmjs.org", "10.20.0.5"], "deniedDomains": []},
          "filesystem": {"allowWrite": ["."], "denyRead": ["~/.ssh"], "denyWrite": []}}"""
NATIVE = """
[filesystem]
allow_write = ["."]

[network]
allowed_domains = ["api.github.com", "registry.npmjs.org"]
http_rules = ["deny DELETE api.github.com/*"]

[[credentials]]
name = "GITHUB_TOKEN"
from_env = "GITHUB_TOKEN"
hosts = ["api.github.com"]
env = "GITHUB_TOKEN"

[[credentials]]
name = "NPM"
from_file = "~/.npmrc"
extract = "_authToken=(\\\\S+)"
hosts = ["registry.npmjs.org"]
env = "NPM_TOKEN"

[limits]
memory = "2g"
cpus = 1.5
timeout = "30m"
pids = 512
"""

CASES = {
    "pod-srt": (SRT, "json", k8s.Options(image="debian:bookworm", command=("sleep", "infinity"))),
    "pod-credentials-gvisor": (NATIVE, "toml", k8s.Options(image="agent:1", runtime_class="gvisor",
                                                           namespace="agents", seccomp="corral",
                                                           workspace_claim="ws")),
    "agent-sandbox-warm": (NATIVE, "toml", k8s.Options(image="agent:1", format="agent-sandbox", warm_pool=3,
                                                       runtime_class="gvisor", namespace="agents")),
}


def policy_of(text: str, kind: str):
    if kind == "json":
        return load_srt_settings(text, "/work/proj/settings.json", CTX)
    return load_toml(text, "/work/proj/corral.toml", CTX)


def rendered(case: str) -> k8s.Rendered:
    text, kind, opts = CASES[case]
    policy = policy_of(text, kind)
    return k8s.render(policy, CTX, opts, INPUTS if k8s.needs_ca(policy, opts) else k8s.Inputs())


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case):
    out = rendered(case)
    text = k8s.to_yaml(out.documents) + "# report\n" + "".join(f"{line}\n" for line in out.report.lines()) \
        + "# secrets\n" + "".join(f"# {s.name}: {s.command}\n" for s in out.secrets) \
        + "".join(f"# note: {n}\n" for n in out.notes)
    path = GOLDEN / f"{case}.yaml"
    if os.environ.get("CORRAL_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.read_text() == text, f"{path} differs (CORRAL_UPDATE_GOLDEN=1 rewrites it; review the diff)"


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendering_is_a_pure_function(case):
    assert k8s.to_yaml(rendered(case).documents) == k8s.to_yaml(rendered(case).documents)


@pytest.mark.parametrize("case", sorted(CASES))
def test_manifests_validate_and_meet_restricted(case):
    import k8s_validate

    docs = list(yaml.safe_load_all(k8s.to_yaml(rendered(case).documents)))
    assert k8s_validate.validate(docs) == []
    assert k8s_validate.restricted_errors(docs) == []
    assert len([d for d in docs if k8s_validate.pod_specs(d)]) == 2  # the agent's and the proxy's


def pod_spec(doc):
    kind = doc["kind"]
    if kind == "Pod":
        return doc["spec"]
    if kind in ("Deployment", "SandboxTemplate"):
        return doc["spec"].get("template", doc["spec"].get("podTemplate"))["spec"]
    return None


def docs_of(case):
    return {(d["kind"], d["metadata"]["name"]): d for d in rendered(case).documents}


def agent_spec(case):
    for doc in rendered(case).documents:
        if doc["kind"] in ("Pod", "SandboxTemplate"):
            return pod_spec(doc)
    raise AssertionError("no agent workload")


# -- what the agent gets, and does not ------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_agent_has_no_credential_no_token_no_dns(case):
    spec = agent_spec(case)
    assert spec["automountServiceAccountToken"] is False
    assert spec["dnsPolicy"] == "None" and spec["dnsConfig"]["nameservers"] == ["127.0.0.1"]
    text = k8s.to_yaml([spec])
    assert "secretKeyRef" not in text and "secret:" not in text and "envFrom" not in text
    for c in spec["containers"] + spec.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True and sc["runAsUser"] != 0


def test_pod_gets_placeholders_the_proxy_derives():
    from corral.proxy.credentials import session_placeholder

    env = {e["name"]: e["value"] for e in agent_spec("pod-credentials-gvisor")["containers"][0]["env"]}
    assert env["GITHUB_TOKEN"] == session_placeholder("open", "corral", "GITHUB_TOKEN")
    assert env["NPM_TOKEN"] == session_placeholder("open", "corral", "NPM")
    assert env["GITHUB_TOKEN"].startswith("corral-ph-")
    assert env["SSL_CERT_FILE"] == k8s.TRUST_BUNDLE


def test_warm_pool_template_holds_no_session():
    env = {e["name"] for e in agent_spec("agent-sandbox-warm")["containers"][0]["env"]}
    assert "GITHUB_TOKEN" not in env and "NPM_TOKEN" not in env
    docs = docs_of("agent-sandbox-warm")
    assert docs[("ConfigMap", "corral-proxy-sessions")]["data"] == {}
    assert docs[("SandboxWarmPool", "corral")]["spec"] == {"replicas": 3, "sandboxTemplateRef": {"name": "corral"}}
    template = docs[("SandboxTemplate", "corral")]["spec"]
    assert template["envVarsInjectionPolicy"] == "Disallowed"
    # The controller's default policy opens the internet: the template carries corral's instead.
    assert template["networkPolicyManagement"] == "Managed"
    assert template["networkPolicy"]["egress"] == docs[("NetworkPolicy", "corral-agent")]["spec"]["egress"]
    assert "activeDeadlineSeconds" not in agent_spec("agent-sandbox-warm")


def test_warm_pool_is_ready_for_sessions_that_terminate_tls():
    # The base policy terminates nothing, but a session bound later may: the CA and the trust are there from the start.
    policy = policy_of(SRT, "json")
    opts = k8s.Options(image="x", format="agent-sandbox")
    assert not k8s.terminates_tls(policy) and k8s.needs_ca(policy, opts)
    with pytest.raises(k8s.RenderError, match="CA"):
        k8s.render(policy, CTX, opts)
    docs = {(d["kind"], d["metadata"]["name"]): d for d in k8s.render(policy, CTX, opts, INPUTS).documents}
    assert docs[("ConfigMap", "corral-ca")]["data"]["ca.crt"] == FAKE_CA
    spec = docs[("SandboxTemplate", "corral")]["spec"]["podTemplate"]["spec"]
    assert spec["initContainers"][0]["name"] == "trust"
    proxy = docs[("Deployment", "corral-proxy")]["spec"]["template"]["spec"]
    assert any(v.get("secret", {}).get("secretName") == "corral-ca-key" for v in proxy["volumes"])
    assert not k8s.needs_ca(policy, k8s.Options(image="x"))


def test_limits_become_resources_and_deadline():
    spec = agent_spec("pod-credentials-gvisor")
    assert spec["containers"][0]["resources"] == {"requests": {"cpu": "1500m", "memory": "2Gi"},
                                                  "limits": {"cpu": "1500m", "memory": "2Gi"}}
    assert spec["activeDeadlineSeconds"] == 1800
    assert spec["runtimeClassName"] == "gvisor"
    assert spec["securityContext"]["seccompProfile"]["type"] == "Localhost"


def test_workspace_volume_follows_the_policy():
    ro = load_toml('[filesystem]\nworkspace = "ro"\n', "/work/proj/p.toml", CTX)
    rw = load_toml('[filesystem]\nallow_write = ["."]\n', "/work/proj/p.toml", CTX)
    other = load_toml('[filesystem]\nallow_write = ["/srv/out"]\n', "/work/proj/p.toml", CTX)
    opts = k8s.Options(image="x", workspace_claim="ws")
    for policy, read_only in ((ro, True), (rw, False), (other, True)):
        spec = k8s.render(policy, CTX, opts).documents[-1]["spec"]
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "workspace")
        claim = next(v for v in spec["volumes"] if v["name"] == "workspace")["persistentVolumeClaim"]
        assert mount["readOnly"] is read_only and claim["readOnly"] is read_only
    assert next(v for v in k8s.render(rw, CTX, k8s.Options(image="x")).documents[-1]["spec"]["volumes"]
                if v["name"] == "tmp") == {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "512Mi"}}


# -- the proxy and the NetworkPolicies -------------------------------------------------------------


def test_secret_only_in_the_proxy_and_never_rendered():
    docs = docs_of("pod-credentials-gvisor")
    assert not any(kind == "Secret" for kind, _ in docs)
    proxy = docs[("Deployment", "corral-proxy")]["spec"]["template"]["spec"]
    secrets = {v["secret"]["secretName"] for v in proxy["volumes"] if "secret" in v}
    assert secrets == {"corral-credentials", "corral-ca-key"}
    assert proxy["containers"][0]["command"][:5] == ["corral", "proxy", "--listen", "tcp:0.0.0.0:3128", "--sessions"]
    session = docs[("ConfigMap", "corral-proxy-sessions")]["data"]
    assert session["corral.token"] == "open\n"
    policy = load_toml(session["corral.toml"], "/etc/corral/sessions/corral.toml",
                       LaunchContext(cwd="/", home="/tmp", uid=65532, gid=65532))
    assert {c.name: c.from_file for c in policy.credentials} == {
        "GITHUB_TOKEN": "/var/run/corral/credentials/GITHUB_TOKEN", "NPM": "/var/run/corral/credentials/NPM"}
    assert policy.credentials[1].extract == "_authToken=(\\S+)"
    assert policy.network.tls.ca == "files" and policy.network.tls.ca_key == "/etc/corral/ca-key/tls.key"
    assert policy.network.http_rules == ("deny DELETE api.github.com/*",)


def test_network_policies():
    docs = docs_of("pod-srt")
    agent = docs[("NetworkPolicy", "corral-agent")]["spec"]
    assert agent["policyTypes"] == ["Ingress", "Egress"] and agent["ingress"] == []
    assert agent["egress"] == [{"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "corral",
                                                                          "corral.dev/role": "proxy"}}}],
                                "ports": [{"protocol": "TCP", "port": 3128}]}]
    proxy = docs[("NetworkPolicy", "corral-proxy")]["spec"]
    world = proxy["egress"][1]["to"][0]["ipBlock"]
    assert world["cidr"] == "0.0.0.0/0" and "169.254.0.0/16" in world["except"] and "10.0.0.0/8" in world["except"]
    assert "fc00::/7" in proxy["egress"][1]["to"][1]["ipBlock"]["except"]
    # The policy allows 10.20.0.5: that address (only) is opened for the proxy.
    assert proxy["egress"][2] == {"to": [{"ipBlock": {"cidr": "10.20.0.5/32"}}]}
    router = docs_of("agent-sandbox-warm")[("NetworkPolicy", "corral-agent")]["spec"]["ingress"]
    assert router[0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "agent-sandbox-system"}


def test_private_cidrs_are_never_reached_and_egress_cidrs_are():
    opts = k8s.Options(image="x", private_cidrs=("203.0.113.0/24", "2001:db8::/32"), egress_cidrs=("10.9.0.0/16",))
    docs = {(d["kind"], d["metadata"]["name"]): d for d in k8s.render(policy_of(SRT, "json"), CTX, opts).documents}
    egress = docs[("NetworkPolicy", "corral-proxy")]["spec"]["egress"]
    v4, v6 = egress[1]["to"][0]["ipBlock"], egress[1]["to"][1]["ipBlock"]
    assert "203.0.113.0/24" in v4["except"] and "2001:db8::/32" not in v4["except"]
    assert "2001:db8::/32" in v6["except"] and "203.0.113.0/24" not in v6["except"]
    assert egress[2] == {"to": [{"ipBlock": {"cidr": "10.20.0.5/32"}}, {"ipBlock": {"cidr": "10.9.0.0/16"}}]}


def test_runtime_class_rendered_only_for_gvisor():
    assert docs_of("pod-credentials-gvisor")[("RuntimeClass", "gvisor")]["handler"] == "runsc"
    kata = k8s.render(policy_of(SRT, "json"), CTX, k8s.Options(image="x", runtime_class="kata-qemu"))
    assert not any(d["kind"] == "RuntimeClass" for d in kata.documents)
    assert any("kata-qemu" in n for n in kata.notes)
    assert not any(d["kind"] == "RuntimeClass" for d in rendered("pod-srt").documents)


def test_seccomp_localhost_profile_is_corrals_deny_list():
    import json

    docs = docs_of("pod-credentials-gvisor")
    profile = agent_spec("pod-credentials-gvisor")["securityContext"]["seccompProfile"]["localhostProfile"]
    data = docs[("ConfigMap", "corral-seccomp")]["data"]
    (name, text), = data.items()
    assert profile == f"corral/{name}"
    body = json.loads(text)
    assert body["defaultAction"] == "SCMP_ACT_ALLOW"
    assert {n for s in body["syscalls"] for n in s["names"]} >= {"ptrace", "mount", "bpf", "unshare"}


# -- decisions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("allowed,opened", [
    (("example.com",), []),
    (("10.1.2.3",), ["10.1.2.3/32"]),
    (("10.1.0.0/16", "8.8.8.8"), ["10.1.0.0/16"]),
    (("169.254.169.254",), ["169.254.169.254/32"]),
    (("192.168.1.5:8080",), ["192.168.1.5/32"]),
    (("[fd00::1]:443",), ["fd00::1/128"]),
    (("*.corp.example",), []),
])
def test_private_allowances(allowed, opened):
    assert k8s.private_allowances(allowed) == opened


@pytest.mark.parametrize("n,text", [(2 << 30, "2Gi"), (512 << 20, "512Mi"), (1536, "1536"), (1000, "1000"),
                                    (3 << 10, "3Ki")])
def test_quantity_bytes(n, text):
    assert k8s.quantity_bytes(n) == text


@pytest.mark.parametrize("cpus,text", [(1.5, "1500m"), (2, "2"), (0.25, "250m"), (0.0001, "1m")])
def test_quantity_cpus(cpus, text):
    assert k8s.quantity_cpus(cpus) == text


@pytest.mark.parametrize("toml,tls", [
    ("", False),
    ('[network]\nallowed_domains = ["a.com"]\n', False),
    ('[network]\nallowed_domains = ["a.com"]\nhttp_rules = ["deny POST a.com/*"]\n', True),
    ('[network]\nallowed_domains = ["a.com"]\n[network.tls]\nterminate = ["*"]\n', True),
    ('[network]\nallowed_domains = ["a.com"]\nhttp_rules = ["deny POST a.com/*"]\n[network.tls]\nauto = false\n',
     False),
])
def test_terminates_tls(toml, tls):
    assert k8s.terminates_tls(load_toml(toml or "version = 1\n", "/work/proj/p.toml", CTX)) is tls


@pytest.mark.parametrize("change,field,state", [
    ({}, "seccomp", R.PARTIAL),
    ({"seccomp": "corral"}, "seccomp", R.ENFORCED),
    ({"seccomp": "corral", "runtime_class": "gvisor"}, "seccomp", R.PARTIAL),
    ({"runtime_class": "gvisor"}, "kernel", R.ENFORCED),
    ({}, "kernel", R.NOT_REQUESTED),
    ({}, "network", R.ENFORCED),
    ({}, "protected paths", R.NOT_ENFORCED),
])
def test_report_rows(change, field, state):
    policy = policy_of(SRT, "json")
    rep = k8s.report(policy, CTX, k8s.Options(image="x", **change))
    assert rep.get(field).state == state


def test_report_names_what_kubernetes_cannot_express():
    rep = rendered("agent-sandbox-warm").report
    assert rep.get("pids limit").state == R.NOT_ENFORCED
    assert rep.get("time limit").state == R.NOT_ENFORCED  # warm: the clock would start before the claim
    assert rendered("pod-credentials-gvisor").report.get("time limit").state == R.ENFORCED
    masked = load_toml('[[credentials]]\nname = "N"\nfrom_file = "~/.npmrc"\nmask_file = "~/.npmrc"\n'
                       'hosts = ["registry.npmjs.org"]\n', "/work/proj/p.toml", CTX)
    assert k8s.report(masked, CTX, k8s.Options(image="x")).get("credential files").state == R.NOT_ENFORCED
    inside = load_toml('[filesystem]\ndeny_read = ["./secrets"]\n', "/work/proj/p.toml", CTX)
    assert k8s.report(inside, CTX, k8s.Options(image="x")).get("read denials").state == R.NOT_ENFORCED


@pytest.mark.parametrize("opts,words", [
    (dict(format="helm"), "--format"),
    (dict(seccomp="unconfined"), "--seccomp"),
    (dict(warm_pool=2), "--warm-pool needs --format agent-sandbox"),
    (dict(uid=0), "--uid 0"),
])
def test_render_refuses_bad_options(opts, words):
    with pytest.raises(k8s.RenderError, match=words):
        k8s.render(policy_of(SRT, "json"), CTX, k8s.Options(image="x", **opts))


# -- the command line ------------------------------------------------------------------------------

SECRET = "ghp_" + "Zx9" * 12  # a value the launcher's environment holds


def _cli_policy(tmp: Path) -> Path:
    npmrc = tmp / "npmrc"
    npmrc.write_text(f"//registry.npmjs.org/:_authToken=npm_{SECRET}\n")
    path = tmp / "corral.toml"
    path.write_text(NATIVE.replace("~/.npmrc", str(npmrc)))
    return path


@pytest.fixture
def ws(launcher):
    ws = helpers.make_workspace(launcher)
    yield ws
    helpers.rmtree(ws.base)


def test_cli_output_never_holds_a_credential(launcher, ws):
    tmp_path = ws.proj
    policy = _cli_policy(tmp_path)
    ws.chown()
    out = helpers.run(launcher, ["k8s", "render", "--settings", str(policy), "--image", "agent:1", "--report"],
                      cwd=tmp_path, env_extra={"GITHUB_TOKEN": SECRET})
    assert out.returncode == 0, out.stderr
    both = out.stdout + out.stderr
    for form in (SECRET, base64.b64encode(SECRET.encode()).decode(), base64.b64encode(
            f"npm_{SECRET}".encode()).decode()[:20], SECRET[::-1]):
        assert form not in both
    docs = list(yaml.safe_load_all(out.stdout))
    assert [d["kind"] for d in docs].count("Secret") == 0
    # The operator is told how to make the Secrets from their own environment, without the values.
    assert 'kubectl create secret generic corral-credentials \\\n    --from-file=GITHUB_TOKEN=<(printf %s "${GITHUB_TOKEN}")' \
        in out.stderr
    assert f"--from-file=NPM={tmp_path}/npmrc" in out.stderr
    assert "kubectl create secret tls corral-ca-key" in out.stderr
    # corral's CA for the cluster is its own, not the per-user CA that local sandboxes trust.
    ca = Path(launcher.env["XDG_DATA_HOME"]) / "corral" / "k8s" / "default.corral" / "ca" / "ca.pem"
    configmap = next(d for d in docs if d["metadata"]["name"] == "corral-ca")
    assert configmap["data"]["ca.crt"] == ca.read_text()
    assert "PRIVATE KEY" not in out.stdout


def test_cli_strict_refuses_gaps(me, tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('strict = true\n[filesystem]\nallow_write = ["."]\n[network]\nallowed_domains = ["a.com"]\n')
    out = helpers.run(me, ["k8s", "render", "--settings", str(path), "--image", "x"], cwd=tmp_path)
    assert out.returncode == 125 and out.stdout == ""
    assert "protected paths: not enforced" in out.stderr and "strict = true: refusing" in out.stderr
    # With the gaps closed (a read-only workspace, corral's seccomp profile) it renders.
    path.write_text('strict = true\n[filesystem]\nworkspace = "ro"\n[network]\nallowed_domains = ["a.com"]\n')
    out = helpers.run(me, ["k8s", "render", "--settings", str(path), "--image", "x", "--seccomp", "corral"],
                      cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "kind: Pod" in out.stdout


@pytest.mark.parametrize("args,words", [
    (["render"], "--image is required"),
    (["render", "--image", "x", "--format", "helm"], "--format 'helm'"),
    (["render", "--image", "x", "--warm-pool", "2"], "--warm-pool needs --format agent-sandbox"),
    (["render", "--image", "x", "--name", "Bad_Name"], "--name 'Bad_Name': expected a DNS label"),
    (["render", "--image", "x", "--egress-cidr", "10.0.0.0/33"], "--egress-cidr '10.0.0.0/33'"),
    (["render", "--image", "x", "--private-cidr", "pods"], "--private-cidr 'pods'"),
    (["render", "--image", "x", "--proxy-address", "proxy"], "expected HOST:PORT"),
    (["render", "--image", "x", "--uid", "zero"], "--uid 'zero': expected a whole number"),
    (["render", "--image", "x", "stray"], "put the agent's command after --"),
    (["session", "s1", "--env-file", "e"], "--proxy-address HOST:PORT is required"),
    (["session", "s1", "--proxy-address", "10.0.0.1:3128"], "--env-file PATH is required"),
    (["session", "S 1", "--proxy-address", "10.0.0.1:3128", "--env-file", "e"], "expected a DNS label"),
    (["deploy"], "expected render or session"),
])
def test_cli_errors_are_one_line(me, tmp_path, args, words):
    out = helpers.run(me, ["k8s", *args], cwd=tmp_path)
    assert out.returncode == 2, out
    assert words in out.stderr and "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1
    assert out.stdout == ""


def test_cli_policy_error_names_the_file(me, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[network]\nallowed_domain = ["a.com"]\n')
    out = helpers.run(me, ["k8s", "render", "--settings", str(path), "--image", "x"], cwd=tmp_path)
    assert out.returncode != 0 and str(path) in out.stderr and "allowed_domain" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_session(launcher, ws):
    from corral.proxy.credentials import session_placeholder

    tmp_path = ws.proj
    policy = _cli_policy(tmp_path)
    ws.chown()
    env_file = tmp_path / "s1.env"
    out = helpers.run(launcher, ["k8s", "session", "s1", "--settings", str(policy), "--proxy-address",
                                 "10.96.0.10:3128", "--env-file", str(env_file)], cwd=tmp_path,
                      env_extra={"GITHUB_TOKEN": SECRET})
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600 and env_file.stat().st_uid == launcher.uid
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if not line.startswith("#"))
    user_pass = env["HTTPS_PROXY"].split("//", 1)[1].split("@", 1)[0]
    user, password = user_pass.split(":", 1)
    assert user == "s1" and env["HTTPS_PROXY"].endswith("@10.96.0.10:3128")
    assert env["ALL_PROXY"].startswith("socks5h://s1:")
    doc = yaml.safe_load(out.stdout)
    assert doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "corral-proxy-sessions"
    token_line = doc["data"]["s1.token"].strip()
    assert token_line == "sha256:" + hashlib.sha256(password.encode()).hexdigest()
    assert env["GITHUB_TOKEN"] == session_placeholder(token_line, "s1", "GITHUB_TOKEN")
    assert env["NPM_TOKEN"] == session_placeholder(token_line, "s1", "NPM")
    # The password is only in the env file; no value anywhere on stdout or stderr.
    for text in (out.stdout, out.stderr):
        assert password not in text and SECRET not in text
    assert "[[credentials]]" in doc["data"]["s1.toml"]


def test_kubernetes_is_not_a_run_backend(me, tmp_path):
    out = helpers.run(me, ["run", "--backend", "k8s", "--", "true"], cwd=tmp_path)
    assert out.returncode == 2 and "corral k8s render" in out.stderr and "Traceback" not in out.stderr
    # A policy meant for the cluster says so; `corral run` refuses it, `corral k8s render` takes it.
    path = tmp_path / "cluster.toml"
    path.write_text('backend = "k8s"\n[network]\nallowed_domains = ["a.com"]\n')
    out = helpers.run(me, ["run", "-s", str(path), "--", "true"], cwd=tmp_path)
    assert out.returncode == 125 and f"{path}: backend = 'k8s'" in out.stderr and "corral k8s render" in out.stderr
    out = helpers.run(me, ["k8s", "render", "-s", str(path), "--image", "x"], cwd=tmp_path)
    assert out.returncode == 0 and "kind: Pod" in out.stdout
    path.write_text('backend = "kubernetes"\n')
    out = helpers.run(me, ["k8s", "render", "-s", str(path), "--image", "x"], cwd=tmp_path)
    assert out.returncode != 0 and 'backend = "k8s"' in out.stderr


def test_extra_cas_are_named_by_content():
    # A session bound later names the same file only when it trusts the same certificate.
    a, b = FAKE_CA, FAKE_CA.replace("fake", "other")
    assert k8s.extra_ca_name(a) == k8s.extra_ca_name(a) != k8s.extra_ca_name(b)
    inputs = k8s.Inputs(ca_cert_pem=FAKE_CA, extra_ca=(("/x/a.pem", a), ("/x/b.pem", b)))
    out = k8s.render(policy_of(NATIVE, "toml"), CTX, k8s.Options(image="x"), inputs)
    data = next(d for d in out.documents if d["metadata"]["name"] == "corral-ca")["data"]
    assert set(data) == {"ca.crt", k8s.extra_ca_name(a), k8s.extra_ca_name(b)}
    session = next(d for d in out.documents if d["metadata"]["name"] == "corral-proxy-sessions")["data"]
    assert f"/etc/corral/ca/{k8s.extra_ca_name(b)}" in session["corral.toml"]
