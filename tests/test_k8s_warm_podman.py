"""Warm pools and late-bound sessions, for real: `corral k8s render --format agent-sandbox
--warm-pool 2` -> two warm agent pods (what agent-sandbox's controller makes of the SandboxWarmPool)
and the proxy pod under `podman kube play --network none`, root and rootless (tests/kubeplay.py
lists every change the harness makes: changes 9 and 10 are the warm-pool ones).

The story: the warm pods start holding no session (every request gets 407); two sessions with two
policies are bound later with `corral k8s session`, without restarting any pod, by writing their
keys into the proxy's sessions ConfigMap volume (a hostPath laid out and updated the way the
kubelet updates a ConfigMap volume); the harness passes each session's env file to the commands it
runs in its warm pod (`podman exec --env-file`). Session s-a terminates TLS (upstream A over HTTPS,
credential CRED_A); session s-b does not (upstream B over plain HTTP, CRED_B with
allow_plaintext). Each reaches only its own upstream with only its own credential; a placeholder
or a password of one session does not work in the other; a removed session gets 407 again; no
credential value is ever in the env files or the pods.

The warm pods always carry the `trust` initContainer (a session bound later may terminate TLS):
one `kube play` per launcher, one test function, ~6 s each."""

from __future__ import annotations

import http.server
import os
import re
import secrets
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import helpers
import pytest
import tlsservers
from tlsservers import HttpsServer, make_ca

import kubeplay
from test_k8s_podman import IMAGE, build_image

yaml = pytest.importorskip("yaml", reason="PyYAML (the k8s extra) renders and reads the manifests")

UP_A, UP_B = "up-a.test", "up-b.test"


class NamedCA:
    """The test CA, minting upstream A's leaf for its name."""

    def __init__(self, ca):
        self.ca = ca

    def leaf(self):
        return self.ca.leaf(dns=(UP_A,), ips=("127.0.0.1",))


class PlainServer:
    """A threaded plain-HTTP server on 127.0.0.1 that records every request (tlsservers' handler:
    /echo answers with what it received)."""

    def __init__(self):
        self.requests: list[tlsservers.Request] = []
        self.lock = threading.Lock()
        self.routes: dict = {}
        self.git_root = None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), tlsservers._Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def _record(self, req) -> None:
        with self.lock:
            self.requests.append(req)

    def got(self, route: str | None = None) -> list:
        with self.lock:
            return [r for r in self.requests if route is None or r.route == route]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def corral(launcher, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """corral as the operator: the launcher (root, or the unprivileged user), its private XDG dirs."""
    return subprocess.run(launcher.argv(list(args)), capture_output=True, text=True, timeout=60, cwd=str(cwd),
                          env=launcher.env)


def secrets_from_render(stderr: str, values: dict[str, str]) -> dict[str, dict[str, bytes]]:
    """The Secrets `corral k8s render` tells the operator to create (its stderr commands), made
    as files: `kubectl create secret generic N --from-file=KEY=<(printf %s "${VAR}")` reads
    variable VAR (here: `values`), `kubectl create secret tls N --cert=C --key=K` the CA's files."""
    out: dict[str, dict[str, bytes]] = {}
    for command in re.findall(r"create Secret \S+ \(.*?\) before applying, in bash:\n((?:  .*\n?)+)", stderr):
        command = command.replace("\\\n", " ")
        name = re.search(r"kubectl create secret (?:generic|tls) (\S+)", command).group(1)
        if " secret tls " in command:
            cert, key = re.search(r"--cert=(\S+) --key=(\S+)", command).groups()
            out[name] = {"tls.crt": Path(cert).read_bytes(), "tls.key": Path(key).read_bytes()}
        else:
            pairs = re.findall(r'--from-file=(\w+)=<\(printf %s "\$\{(\w+)\}"\)', command)
            assert pairs, command
            out[name] = {key: values[var].encode() for key, var in pairs}
    return out


def read_env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def proxy_user(env: dict[str, str]) -> tuple[str, str]:
    url = urlsplit(env["HTTP_PROXY"])
    return unquote(url.username), unquote(url.password)


def status(cluster, pod: str, env_file: str | None, url: str, *, bearer_var: str | None = None,
           bearer: str | None = None) -> tuple[str, str, str]:
    """(CONNECT status, response status, body) of curl in warm pod `pod`, with the env file's
    variables; the Authorization header from the session's placeholder variable or a literal."""
    header = ""
    if bearer_var:
        header = f'-H "Authorization: Bearer ${bearer_var}"'
    elif bearer:
        header = f'-H "Authorization: Bearer {bearer}"'
    p = cluster.exec(f"curl -sS --max-time 20 {header} -o /tmp/body -w '%{{http_connect}} %{{http_code}}' {url}; "
                     "echo; cat /tmp/body 2>/dev/null; rm -f /tmp/body", pod=pod, env_file=env_file, timeout=60)
    first, _, body = p.stdout.partition("\n")
    connect, _, code = first.strip().partition(" ")
    return connect, code, body + p.stderr


def until(cluster, want: tuple[str, str], *args, timeout: float = 15.0, **kw):
    """Retry until (CONNECT status, response status) is `want` ("*": any); the proxy re-reads
    its directory at most once a second while requests arrive."""
    end = time.monotonic() + timeout
    while True:
        got = status(cluster, *args, **kw)
        if all(w in ("*", g) for w, g in zip(want, got)) or time.monotonic() > end:
            return got
        time.sleep(0.3)


def started(cluster) -> dict[str, str]:
    """Each container's start time and restart count: a restarted pod would change them."""
    out = {}
    for pod, c in [(cluster.proxy, "proxy"), *((a, "agent") for a in cluster.agents)]:
        p = cluster.podman("inspect", cluster.container(pod, c), "--format",
                           "{{.Id}} {{.State.StartedAt}} {{.RestartCount}}")
        assert p.returncode == 0, p.stderr
        out[pod] = p.stdout.strip()
    return out


def test_warm_pods_hold_no_session_and_late_sessions_stay_apart(launcher):
    """Late binding at the proxy: warm pods hold no session and no credential; each session
    bound later reaches only its own upstream with only its own credential; a session's
    placeholder or password is worthless in the other; a removed session is refused."""
    t0 = time.monotonic()
    env = build_image(launcher)
    base = Path(tempfile.mkdtemp(prefix="ct-k8sw-", dir="/var/tmp"))
    base.chmod(0o755)  # rootless runc resolves the hostPath sources as the launcher
    test_ca = make_ca("ct-k8sw-up-")
    server_a, server_b = HttpsServer(NamedCA(test_ca)), PlainServer()
    values = {"CRED_A": f"ct-real-a-{secrets.token_hex(16)}", "CRED_B": f"ct-real-b-{secrets.token_hex(16)}"}
    try:
        op = base / "operator"  # the operator's files: policies, env files (the launcher's)
        op.mkdir()
        if not launcher.is_root:
            os.chown(op, launcher.uid, launcher.gid)
        op.chmod(0o700)
        # 1. the base policy: the credentials the proxy's Secret holds, the CA that verifies
        # upstream A; no allowed host (sessions bring their own rules)
        (op / "base.toml").write_text(f"""
[network]
allowed_domains = []

[network.tls]
extra_ca = ["{test_ca.path}"]

[[credentials]]
name = "CRED_A"
from_env = "CRED_A"
hosts = ["{UP_A}"]

[[credentials]]
name = "CRED_B"
from_env = "CRED_B"
hosts = ["{UP_B}"]
allow_plaintext = true
""")
        (op / "a.toml").write_text(f"""
[network]
allowed_domains = ["{UP_A}:{server_a.port}"]
trust_resolution = ["{UP_A}"]

[network.tls]
extra_ca = ["{test_ca.path}"]

[[credentials]]
name = "CRED_A"
from_env = "CRED_A"
hosts = ["{UP_A}"]
""")
        (op / "b.toml").write_text(f"""
[network]
allowed_domains = ["{UP_B}:{server_b.port}"]
trust_resolution = ["{UP_B}"]

[network.tls]
auto = false

[[credentials]]
name = "CRED_B"
from_env = "CRED_B"
hosts = ["{UP_B}"]
allow_plaintext = true
""")
        for f in op.iterdir():
            f.chmod(0o644)
            if not launcher.is_root:
                os.chown(f, launcher.uid, launcher.gid)
        name = f"ctw{secrets.token_hex(3)}"
        p = corral(launcher, "k8s", "render", "-s", str(op / "base.toml"), "--format", "agent-sandbox",
                   "--warm-pool", "2", "--name", name, "--image", IMAGE, "--proxy-image", IMAGE,
                   "--proxy-address", f"127.0.0.1:{kubeplay.PROXY_PORT}", "--", "sleep", "600", cwd=op)
        assert p.returncode == 0, p.stderr
        docs = [d for d in yaml.safe_load_all(p.stdout) if d]
        template = kubeplay.by_kind(docs, "SandboxTemplate")[0]["spec"]["podTemplate"]["spec"]
        pool = kubeplay.by_kind(docs, "SandboxWarmPool")[0]
        assert pool["spec"]["replicas"] == 2
        sessions_cm = f"{name}-proxy-sessions"
        cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == sessions_cm)
        assert not cm.get("data"), cm  # no session at all in this format, not even an open one
        agent_vars = {e["name"]: e.get("value") for e in template["containers"][0]["env"]}
        assert agent_vars["HTTP_PROXY"] == f"http://127.0.0.1:{kubeplay.PROXY_PORT}", agent_vars  # no proxy user
        assert "CRED_A" not in agent_vars and "CRED_B" not in agent_vars, agent_vars  # no placeholder either
        secret_files = secrets_from_render(p.stderr, values)
        assert sorted(secret_files) == [f"{name}-ca-key", f"{name}-credentials"], p.stderr
        assert sorted(secret_files[f"{name}-credentials"]) == ["CRED_A", "CRED_B"]
        assert not any(v in p.stdout + p.stderr for v in values.values())

        cluster = kubeplay.Cluster(launcher, env, docs, base / "run", secrets=secret_files,
                                   upstreams={UP_A: (server_a.port, server_a.port), UP_B: (server_b.port, server_b.port)},
                                   live_configmaps=[sessions_cm], timeout=120)
        assert cluster.agents == [f"{name}-warm-0", f"{name}-warm-1"]
        warm0, warm1 = cluster.agents
        url_a, url_b = f"https://{UP_A}:{server_a.port}/echo", f"http://{UP_B}:{server_b.port}/echo"
        with cluster:
            t_play = time.monotonic() - t0
            before = started(cluster)
            bundle = "stat -c %y /etc/corral/trust/ca-bundle.pem"  # written once by the trust initContainer
            bundles = [cluster.exec(bundle, pod=pod).stdout for pod in cluster.agents]
            assert all(b.strip() for b in bundles), bundles
            # 2. no session bound: the warm pods' requests get 407, nothing goes out
            for pod in cluster.agents:
                assert status(cluster, pod, None, url_a)[0] == "407", pod
                assert status(cluster, pod, None, url_b)[1] == "407", pod
            assert server_a.got() == [] and server_b.got() == []

            # 3. two sessions bound late: `corral k8s session` per session, keys merged into the
            # sessions ConfigMap (what server-side apply with one field manager each does)
            data: dict[str, str] = {}
            env_files = {}
            for session, settings in (("s-a", "a.toml"), ("s-b", "b.toml")):
                env_files[session] = op / f"{session}.env"
                q = corral(launcher, "k8s", "session", session, "--settings", str(op / settings), "--name", name,
                           "--proxy-address", f"127.0.0.1:{kubeplay.PROXY_PORT}", "--env-file",
                           str(env_files[session]), cwd=op)
                assert q.returncode == 0, q.stderr
                [doc] = [d for d in yaml.safe_load_all(q.stdout) if d]
                assert doc["metadata"]["name"] == sessions_cm and set(doc["data"]) == {f"{session}.toml",
                                                                                      f"{session}.token"}
                user, password = proxy_user(read_env_file(env_files[session]))
                assert user == session and password not in q.stdout + q.stderr
                assert doc["data"][f"{session}.token"].startswith("sha256:")
                data.update(doc["data"])
            cluster.update_configmap(sessions_cm, data)
            env_a, env_b = read_env_file(env_files["s-a"]), read_env_file(env_files["s-b"])
            ph_a, ph_b = env_a["CRED_A"], env_b["CRED_B"]
            assert ph_a.startswith("corral-ph-cred-a-") and ph_b.startswith("corral-ph-cred-b-")
            assert "CRED_B" not in env_a and "CRED_A" not in env_b
            fa, fb = str(env_files["s-a"]), str(env_files["s-b"])

            # s-a in warm pod 0: its upstream over TLS terminated with the deployment's CA, CRED_A injected
            connect, code, body = status(cluster, warm0, fa, url_a, bearer_var="CRED_A")  # the first one works
            assert (connect, code) == ("200", "200"), (connect, code, body, cluster.all_logs())
            got = server_a.got("/echo")
            assert [r.header("Authorization") for r in got] == [f"Bearer {values['CRED_A']}"]
            assert values["CRED_A"] not in body and ph_a in body  # the echo is redacted back
            # s-b in warm pod 1: its upstream over plain HTTP, CRED_B injected
            connect, code, body = status(cluster, warm1, fb, url_b, bearer_var="CRED_B")
            assert code == "200", (connect, code, body, cluster.all_logs())
            assert [r.header("Authorization") for r in server_b.got("/echo")] == [f"Bearer {values['CRED_B']}"]
            assert values["CRED_B"] not in body and ph_b in body
            # each session reaches only its own upstream
            assert status(cluster, warm0, fa, url_b, bearer_var="CRED_A")[1] == "403"
            assert status(cluster, warm1, fb, url_a, bearer_var="CRED_B")[0] == "403"
            assert len(server_a.got()) == 1 and len(server_b.got()) == 1
            # s-a's placeholder sent with s-b's proxy credentials: goes out as it is, never swapped
            connect, code, body = status(cluster, warm1, fb, url_b, bearer=ph_a)
            assert code == "200", (connect, code, body)
            assert server_b.got("/echo")[-1].header("Authorization") == f"Bearer {ph_a}"
            assert values["CRED_A"] not in "".join(r.raw() for r in server_b.got())
            # s-b's password presented as s-a: 407
            _, pw_b = proxy_user(env_b)
            forged = op / "forged.env"
            forged.write_text("".join(f"{k}=http://s-a:{pw_b}@127.0.0.1:{kubeplay.PROXY_PORT}\n"
                                      for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")))
            forged.chmod(0o600)
            if not launcher.is_root:
                os.chown(forged, launcher.uid, launcher.gid)
            assert status(cluster, warm0, str(forged), url_a)[0] == "407"
            assert status(cluster, warm0, str(forged), url_b.replace("/echo", "/forged"))[1] == "407"
            assert server_b.got("/forged") == [] and len(server_a.got()) == 1

            # s-a ends: its keys removed from the ConfigMap; warm pod 0 gets 407 again (once the
            # proxy has looked: at most once a second while requests arrive), s-b works on
            del data["s-a.toml"], data["s-a.token"]
            removed = time.monotonic()
            cluster.update_configmap(sessions_cm, data)
            connect, code, _ = until(cluster, ("407", "*"), warm0, fa, url_a, bearer_var="CRED_A")
            t_removed = time.monotonic() - removed
            assert connect == "407", (connect, code, cluster.logs(cluster.container(cluster.proxy, "proxy")))
            n = len(server_a.got())
            assert status(cluster, warm0, fa, url_a, bearer_var="CRED_A")[0] == "407"
            assert status(cluster, warm0, fa, url_b, bearer_var="CRED_A")[1] == "407"
            assert len(server_a.got()) == n
            connect, code, _ = status(cluster, warm1, fb, url_b, bearer_var="CRED_B")
            assert code == "200"
            assert server_b.got("/echo")[-1].header("Authorization") == f"Bearer {values['CRED_B']}"

            # no pod was restarted for any of this (nor its trust initContainer rerun: kubeplay change 8)
            assert started(cluster) == before
            assert [cluster.exec(bundle, pod=pod).stdout for pod in cluster.agents] == bundles
            # the env files and the warm pods never hold a credential value (the harness's variables
            # included: the probe runs with each session's env file)
            for session, path in env_files.items():
                text = path.read_text()
                assert not any(v in text for v in values.values()), session
                assert (path.stat().st_mode & 0o777) == 0o600
            probe = ('read -r a; read -r b; for v in "$a" "$b"; do '
                     'env | grep -c -F "$v"; cat /proc/[0-9]*/environ 2>/dev/null | tr "\\0" "\\n" | grep -c -F "$v"; '
                     'grep -rlsF "$v" --exclude-dir=proc --exclude-dir=sys / 2>/dev/null | wc -l; done; '
                     'ls /var/run/corral/credentials 2>&1 | head -1')
            for pod, f in ((warm0, fa), (warm1, fb)):
                r = cluster.exec(probe, pod=pod, env_file=f, input=f"{values['CRED_A']}\n{values['CRED_B']}\n",
                                 timeout=180)
                counts = r.stdout.split("\n")[:6]
                assert counts == ["0"] * 6, (pod, r.stdout, r.stderr)
                assert "No such file or directory" in r.stdout, r.stdout
            # the proxy said what happened, with no password, token or value in its logs
            log = cluster.logs(cluster.container(cluster.proxy, "proxy"))
            assert "session s-a loaded" in log and "session s-b loaded" in log and "session s-a removed" in log, log
            secret_words = [*values.values(), proxy_user(env_a)[1], pw_b, data["s-b.token"].strip()]
            assert not any(w in log for w in secret_words), "a secret in the proxy's log"
            t_story = time.monotonic() - t0 - t_play
        print(f"\nwarm pool under podman ({launcher.name}): kube play to ready {cluster.ready:.1f} s, "
              f"set-up + play {t_play:.1f} s, the story {t_story:.1f} s, total {time.monotonic() - t0:.1f} s; "
              f"a removed session refused after {t_removed:.1f} s")
    finally:
        server_a.close()
        server_b.close()
        test_ca.cleanup()
        helpers.rmtree(base)
