"""corral's rendered Kubernetes manifests run for real: `corral k8s render --format pod` ->
`podman kube play --network none` (tests/kubeplay.py lists every change the harness makes),
root and rootless, on the image of scripts/build-k8s-image.sh (no registry). Conformance probes
from inside the agent pod: the allowed upstream reached through the proxy pod, a denied host
refused by corral, no route around the proxy, the credential injected by the proxy and absent
from the agent, the agent's securityContext as podman honours it, and the rendered fields podman
ignores (measured, so the docs cannot drift from this podman)."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import helpers
import pytest
from podman_env import podman_env
from tlsservers import HttpsServer, _pem_key, make_ca

import kubeplay

yaml = pytest.importorskip("yaml", reason="PyYAML (the k8s extra) renders and reads the manifests")

REPO = Path(__file__).resolve().parent.parent
IMAGE = "localhost/corral:dev"
UPSTREAM = "allowed.test"
CRED = "GITHUB_TOKEN"
_built: set[tuple[str, int]] = set()


def build_image(launcher) -> dict[str, str]:
    env = podman_env(launcher, "debian")
    if (launcher.name, launcher.uid) not in _built:
        p = subprocess.run([*launcher.prefix, "/usr/bin/env", *(f"{k}={v}" for k, v in {**launcher.env, **env}.items()),
                            str(REPO / "scripts" / "build-k8s-image.sh"), "--python", sys.executable],
                           capture_output=True, text=True, timeout=600, cwd="/")
        assert p.returncode == 0, p.stderr
        _built.add((launcher.name, launcher.uid))
    return env


class NamedCA:
    """The test CA, minting the upstream's leaf for UPSTREAM (HttpsServer asks ca.leaf())."""

    def __init__(self, ca):
        self.ca = ca

    def leaf(self):
        return self.ca.leaf(dns=(UPSTREAM,), ips=("127.0.0.1",))


def render(policy: Path, name: str, *extra: str, cwd="/") -> list[dict]:
    argv = [*helpers.CORRAL, "k8s", "render", "-s", str(policy), "--format", "pod", "--name", name,
            "--image", IMAGE, "--proxy-image", IMAGE, "--proxy-address", f"127.0.0.1:{kubeplay.PROXY_PORT}",
            "--workspace-claim", f"{name}-ws", *extra, "--", "sleep", "600"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=str(cwd))
    assert p.returncode == 0, p.stderr
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def secret_of(docs, where: str) -> str:
    """The name of the Secret the proxy mounts at `where` (or whose mount the policy reads `where` in)."""
    spec = kubeplay.by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
    volumes = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    session = kubeplay.by_kind(docs, "ConfigMap")[0]["data"]
    for vol, secret in volumes.items():
        path = mounts[vol]
        if path == where or (not where.startswith("/") and f"{path}/{where}" in "".join(session.values())):
            return secret
    raise AssertionError(f"no Secret mounted for {where} in the proxy: {volumes} {mounts}")


@pytest.fixture
def k8s(launcher):
    """A rendered agent + proxy running under podman as `launcher`; yields (cluster, upstream, value)."""
    env = build_image(launcher)
    base = Path(tempfile.mkdtemp(prefix="ct-k8s-", dir="/var/tmp"))
    base.chmod(0o755)  # rootless runc resolves the hostPath sources as the launcher
    test_ca, corral_ca = make_ca("ct-k8s-up-"), make_ca("ct-k8s-ca-")
    server = HttpsServer(NamedCA(test_ca))
    try:
        ca_key = corral_ca.private / "ca-key.pem"
        ca_key.write_bytes(_pem_key(corral_ca.key))
        policy = base / "policy.toml"
        policy.write_text(f"""
[network]
allowed_domains = ["{UPSTREAM}:{server.port}"]
trust_resolution = ["{UPSTREAM}"]

[network.tls]
ca_cert = "{corral_ca.path}"
ca_key = "{ca_key}"
extra_ca = ["{test_ca.path}"]

[[credentials]]
name = "{CRED}"
from_env = "{CRED}"
hosts = ["{UPSTREAM}"]
""")
        name = f"ct{secrets.token_hex(3)}"
        workspace = base / "ws"
        workspace.mkdir()
        docs = render(policy, name, cwd=workspace)  # rendered from the project: its workspace is writable
        value = f"ct-real-k8s-{secrets.token_hex(16)}"  # made here, never printed
        (workspace / "README.txt").write_text("readme\n")
        cluster = kubeplay.Cluster(
            launcher, env, docs, base / "run", workspace=workspace,
            secrets={secret_of(docs, "/var/run/corral/credentials"): {CRED: value.encode()},
                     secret_of(docs, "tls.key"): {"tls.crt": corral_ca.cert_pem, "tls.key": ca_key.read_bytes()}},
            upstreams={UPSTREAM: (server.port, server.port)})
        with cluster:
            yield cluster, server, value
    finally:
        server.close()
        test_ca.cleanup()
        corral_ca.cleanup()
        helpers.rmtree(base)


def agent_env(cluster) -> dict[str, str]:
    spec = kubeplay.by_kind(cluster.rendered, "Pod")[0]["spec"]
    return {e["name"]: e["value"] for e in spec["containers"][0]["env"]}


def test_allowed_upstream_reached_through_the_proxy_pod_and_credential_injected(k8s):
    cluster, server, value = k8s
    placeholder = agent_env(cluster)[CRED]
    assert placeholder.startswith("corral-ph-") and value not in placeholder
    p = cluster.exec(f'curl -sS --max-time 20 -H "Authorization: Bearer ${CRED}" https://{UPSTREAM}:{server.port}/echo')
    assert p.returncode == 0, p.stderr + "\n" + cluster.all_logs()
    got = server.got("/echo")
    assert len(got) == 1, got
    # the upstream saw the real value; the agent sent (and holds) only the placeholder
    assert got[0].header("Authorization") == f"Bearer {value}"
    assert value not in p.stdout  # the echo is redacted back to the placeholder
    # the agent verified corral's certificate through the rendered trust bundle (no -k above)
    assert server.snis == [UPSTREAM]


def test_denied_host_refused_by_corral(k8s):
    cluster, server, _ = k8s
    p = cluster.exec("curl -s -o /dev/null -w '%{http_connect} %{http_code}' --max-time 20 https://denied.test/; echo; "
                     "curl -s -o /dev/null -w '%{http_code}' --max-time 20 http://denied.test/")
    connect, plain = p.stdout.split("\n")[0].split()[0], p.stdout.split("\n")[1].strip()
    assert (connect, plain) == ("403", "403"), p.stdout + p.stderr
    # another port of the allowed name is not allowed either
    p = cluster.exec(f"curl -s -o /dev/null -w '%{{http_connect}}' --max-time 20 https://{UPSTREAM}:1/")
    assert p.stdout.strip() == "403", p.stdout + p.stderr
    assert server.got() == []


def test_no_route_around_the_proxy(k8s):
    """Egress bypass: the agent pod has only its loopback (no route, no DNS); the upstream's host
    address and a routable address are unreachable without the proxy."""
    cluster, server, _ = k8s
    probe = f"""
import socket
for host, port in (("127.0.0.1", {server.port}), ("203.0.113.5", 443), ("10.0.2.2", 22)):
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((host, port)); print(host, "CONNECTED")
    except OSError as exc:
        print(host, type(exc).__name__)
try:
    socket.getaddrinfo("{UPSTREAM}", 443); print("dns RESOLVED")
except OSError as exc:
    print("dns", type(exc).__name__)
"""
    p = cluster.exec("python3 -", input=probe)
    assert p.returncode == 0, p.stderr
    assert "CONNECTED" not in p.stdout and "RESOLVED" not in p.stdout, p.stdout
    p = cluster.exec("ls /sys/class/net; tail -n +2 /proc/net/route | wc -l; "
                     f"curl -sS --noproxy '*' --max-time 5 https://{UPSTREAM}:{server.port}/ 2>&1; echo rc=$?")
    lines = p.stdout.split("\n")
    assert lines[0] == "lo" and lines[1] == "0", p.stdout
    assert "Could not resolve host" in p.stdout and "rc=6" in p.stdout, p.stdout
    assert server.got() == []


def test_credential_absent_from_the_agent(k8s):
    """Credential theft: the value is in the proxy pod only; the agent's env, /proc/*/environ and
    files hold the placeholder, and the Secret is not mounted in the agent."""
    cluster, _, value = k8s
    script = (f'env | grep -c -F "$1" || true; cat /proc/[0-9]*/environ 2>/dev/null | tr "\\0" "\\n" | grep -c -F "$1" || true; '
              f'grep -rslF "$1" --exclude-dir=proc --exclude-dir=sys / 2>/dev/null | head -3; '
              f'ls /var/run/corral/credentials 2>&1; env | grep "^{CRED}="')
    p = cluster.podman("exec", "-i", cluster.container(cluster.agent, "agent"), "bash", "-c", script, "probe", value,
                       timeout=120)
    out = p.stdout.split("\n")
    assert out[0] == "0" and out[1] == "0", "the real value is in the agent's environment"
    assert "No such file or directory" in p.stdout and value not in p.stdout
    assert f"{CRED}=corral-ph-" in p.stdout
    # the proxy pod has it (as a file the proxy reads), as rendered
    q = cluster.podman("exec", cluster.container(cluster.proxy, "proxy"), "ls", "/var/run/corral/credentials")
    assert q.stdout.split() == [CRED], q.stdout + q.stderr


def test_agent_security_context_as_podman_honours_it(k8s):
    cluster, _, _ = k8s
    p = cluster.exec("id -u; id -g; grep -E '^(NoNewPrivs|CapEff|CapBnd|Seccomp):' /proc/self/status; "
                     "touch /rootfile 2>&1; touch /workspace/w 2>&1 && echo ws-writable; "
                     "awk '$2==\"/tmp\"{print $3}' /proc/mounts; cat /etc/resolv.conf; "
                     "ls /var/run/secrets/kubernetes.io 2>&1 | head -1")
    out = p.stdout
    lines = out.split("\n")
    assert lines[:2] == ["1000", "1000"], out
    status = dict(re.findall(r"^(\w+):\s+(\S+)$", out, re.M))
    assert status["NoNewPrivs"] == "1" and int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, out
    assert status["Seccomp"] == "2", out  # podman's default filter (seccompProfile itself is ignored, see below)
    assert "touch: cannot touch '/rootfile': Read-only file system" in out, out
    mount = next(m for m in kubeplay.by_kind(cluster.rendered, "Pod")[0]["spec"]["containers"][0]["volumeMounts"]
                 if m["mountPath"] == "/workspace")
    assert mount["readOnly"] is False and "ws-writable" in out, out  # rendered from the project: writable
    # emptyDir medium: Memory is NOT a tmpfs under podman 4.3 (a directory of the pod's storage)
    assert "tmpfs" not in out, out
    # dnsPolicy None + nameservers [127.0.0.1] is ignored by podman: the host's resolv.conf (unreachable here)
    assert "nameserver 127.0.0.1" not in out, out
    assert "No such file or directory" in out  # no service account token (nothing to mount under podman)


def test_fields_podman_ignores(launcher, tmp_path):
    """Measured, not trusted: runAsNonRoot, seccompProfile and runtimeClassName in a rendered agent
    spec change nothing under podman 4.3 (a cluster enforces them); so corral's docs say so."""
    env = build_image(launcher)
    base = Path(tempfile.mkdtemp(prefix="ct-k8s-", dir="/var/tmp"))
    base.chmod(0o755)  # rootless runc resolves the hostPath sources as the launcher
    try:
        policy = base / "policy.toml"
        policy.write_text('[network]\nallowed_domains = ["example.com"]\n')
        name = f"ct{secrets.token_hex(3)}"
        docs = render(policy, name, "--runtime-class", "gvisor")
        agent = kubeplay.by_kind(docs, "Pod")[0]
        assert agent["spec"]["runtimeClassName"] == "gvisor"
        assert agent["spec"]["securityContext"]["runAsNonRoot"] is True
        # a variant a cluster would refuse to start: no runAsUser with an image whose user is root
        for sc in (agent["spec"]["securityContext"], agent["spec"]["containers"][0]["securityContext"]):
            sc.pop("runAsUser", None)
            sc.pop("runAsGroup", None)
            sc["seccompProfile"] = {"type": "Unconfined"}
        docs = [d for d in docs if d.get("kind") != "RuntimeClass"]
        workspace = base / "ws"
        workspace.mkdir()
        with kubeplay.Cluster(launcher, env, docs, base / "run", workspace=workspace) as cluster:
            p = cluster.exec("id -u; grep ^Seccomp: /proc/self/status")
            assert p.stdout.split("\n")[0] == "0", p.stdout  # runAsNonRoot: not refused, runs as root
            assert "Seccomp:\t2" in p.stdout, p.stdout  # seccompProfile Unconfined: still podman's filter
            i = cluster.podman("pod", "inspect", cluster.agent, "--format", "{{.Name}}")
            assert i.returncode == 0
            r = cluster.podman("inspect", cluster.container(cluster.agent, "agent"), "--format", "{{.OCIRuntime}}")
            assert r.stdout.strip() == "runc", r.stdout  # runtimeClassName gvisor: the store's default runtime
    finally:
        helpers.rmtree(base)
