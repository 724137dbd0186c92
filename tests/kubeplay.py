"""Run corral's rendered Kubernetes manifests (`corral k8s render --format pod`) for real with
`podman kube play --network none`, root and rootless, on the private stores of tests/podman_env.py.

What the harness changes from the rendered documents, and why (docs/kubernetes.md repeats it):

1. The proxy Deployment becomes a Pod named after it (its pod template, labels kept): `kube play`
   would make a Deployment's pod under another name; one replica is what a test needs.
2. No cluster network: podman gives a `--network none` pod only its loopback, and cannot join a
   prepared namespace (`pods presently do not support network mode path`). The Service and its
   cluster IP are stood in for by two relays over a Unix socket in a hostPath directory (the
   socket directory is mounted only in the relays, never in the agent container):
   - the proxy pod gets a container `net-in`: listens on `/run/corral-net/proxy.sock`, forwards to
     127.0.0.1:3128, where the proxy container listens exactly as rendered (`tcp:0.0.0.0:3128`);
   - the agent pod gets a container `net-out`: listens on 127.0.0.1:3128 in the agent pod (the
     address given to the renderer with `--proxy-address 127.0.0.1:3128`), forwards to that socket.
   Both relays are python3 in the same image, run as uid 65532 with the rendered proxy's
   securityContext. The Service and the NetworkPolicies are passed to `kube play`, which ignores them.
3. Secrets: podman 4.3.1 `kube play` reads a Secret volume from a `podman secret` whose content is
   a Secret manifest, but panics (nil pointer in VolumeFromSecret) unless the volume says
   `optional`, and then writes the values still base64-encoded: unusable for a credential file. Each
   Secret volume (`N-credentials`, `N-ca`) becomes a hostPath directory the test fills from values it
   makes (files mode 0440, owned by the proxy's uid 65532 as the pod sees it), never printed.
4. The workspace claim: `kube play` binds a persistentVolumeClaim to the podman volume of the same
   name (podman's own behaviour, not a change); the harness creates that volume bound to a test
   directory (`podman volume create -o type=none -o device=DIR -o o=bind`) owned by the agent's uid.
5. Test upstreams (the tests' stand-in for the internet): the proxy pod gets `/etc/hosts` (hostPath,
   read-only) naming the upstreams 127.0.0.1, and one relay container `up-PORT` per upstream that
   listens on 127.0.0.1:PORT in the proxy pod and forwards to a hostPath Unix socket where the test
   process relays to its server on the host's 127.0.0.1. (`hostAliases` is ignored by podman 4.3.)
6. (No change: the renderer declares no containerPort, which podman 4.3.1 would refuse under
   `--network none`: "PortMappings can only be used with Bridge or slirp4netns networking".)
7. Rootless only: the containers' `resources` are dropped. Rootless podman on this machine
   (hybrid cgroups, nothing delegated) fails the pod with "cannot set memory limit: container
   could not join or create cgroup"; root podman keeps them.
8. The agent pod (when it has initContainers, i.e. the `trust` bundle builder) gets
   `restartPolicy: OnFailure` (rendered: none, i.e. Kubernetes' Always). Kubernetes runs an init
   container to completion once; podman 4.3.1 applies the pod's restart policy to init containers
   too, so under Always it restarts the exited `trust` container in a loop (hundreds of times
   while the pod runs), and each run truncates and rewrites the trust bundle the agent reads
   (curl: "(77) error setting certificate file", now and then), `kube play` waits ~20 s for the
   init container to stay exited, and with podman's default init type ("once") removing it fails
   ("container state improper"). Under OnFailure the agent container is not restarted when it
   exits 0, which no test relies on.
9. `--format agent-sandbox` (tests/test_k8s_warm_podman.py): podman knows no CRDs, so the harness
   does what agent-sandbox's controller does for a SandboxWarmPool of N replicas: N Pods
   `NAME-warm-0..N-1` from the SandboxTemplate's podTemplate (metadata labels and spec as
   rendered); the SandboxTemplate and SandboxWarmPool documents are not played. Each warm pod gets
   its own `net-out` relay (change 2).
10. Live ConfigMaps (the warm-pool test's sessions ConfigMap): `kube play` copies a ConfigMap's
   data into a podman volume once, at play time, so later changes never reach the pod. A
   ConfigMap the test changes while the pods run is mounted instead from a hostPath directory the
   harness lays out the way the kubelet lays out a ConfigMap volume (each key a symlink to
   `..data/KEY`, `..data` a symlink to a timestamped directory, files 0644) and updates the way
   the kubelet does (a new timestamped directory, then `..data` swapped by an atomic rename, then
   the key symlinks added or removed): `Cluster.update_configmap`.
Other ConfigMaps go to `kube play` in the same YAML, unchanged (podman 4.3 mounts configMap volumes).
Nothing else is changed: commands, env, securityContext, volumes and images are as rendered.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import time
from pathlib import Path

import helpers

PROXY_PORT = 3128
PROXY_UID = 65532
NET_MOUNT = "/run/corral-net"
UPSTREAM_MOUNT = "/run/corral-upstream"
SOCKET = "proxy.sock"

# A TCP/Unix relay for the stand-in containers: python3 LISTEN CONNECT (tcp:HOST:PORT | unix:PATH).
RELAY = r"""
import os, socket, sys, threading
def where(s):
    kind, _, rest = s.partition(":")
    if kind == "unix":
        return socket.AF_UNIX, rest
    host, _, port = rest.rpartition(":")
    return socket.AF_INET, (host, int(port))
lf, la = where(sys.argv[1]); cf, ca = where(sys.argv[2])
if lf == socket.AF_UNIX and os.path.lexists(la):
    os.unlink(la)
lsock = socket.socket(lf)
if lf == socket.AF_INET:
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lsock.bind(la); lsock.listen(128)
print("relay: " + sys.argv[1] + " -> " + sys.argv[2], file=sys.stderr, flush=True)
def pipe(a, b):
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    try:
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass
def serve(c):
    u = socket.socket(cf)
    try:
        u.connect(ca)
    except OSError as exc:
        print("relay: " + sys.argv[2] + ": " + str(exc), file=sys.stderr, flush=True); c.close(); return
    t = threading.Thread(target=pipe, args=(u, c), daemon=True); t.start(); pipe(c, u); t.join(); c.close(); u.close()
while True:
    c, _ = lsock.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def by_kind(docs, kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def _relay(name: str, image: str, listen: str, connect: str, mounts: list[dict], security: dict) -> dict:
    return {"name": name, "image": image, "command": ["python3", "-c", RELAY.strip() + "\n", listen, connect],
            "securityContext": copy.deepcopy(security), "volumeMounts": mounts}


SANDBOX_KINDS = ("SandboxTemplate", "SandboxWarmPool")


def warm_pods(docs) -> list[dict]:
    """Change 9 (pure): the SandboxTemplate + SandboxWarmPool become the Pods agent-sandbox's
    controller would create for the pool (one per replica, `NAME-warm-I`, the podTemplate as
    rendered). Documents of other kinds are returned unchanged."""
    docs = copy.deepcopy(list(docs))
    templates, pools = by_kind(docs, "SandboxTemplate"), by_kind(docs, "SandboxWarmPool")
    assert len(templates) == 1 and len(pools) == 1, [d.get("kind") for d in docs]
    template, pool = templates[0], pools[0]
    assert pool["spec"]["sandboxTemplateRef"]["name"] == template["metadata"]["name"], pool
    pod_template = template["spec"]["podTemplate"]
    pods = []
    for i in range(pool["spec"]["replicas"]):
        meta = {"name": f"{pool['metadata']['name']}-warm-{i}",
                "labels": dict(pod_template.get("metadata", {}).get("labels", {}))}
        if "namespace" in template["metadata"]:
            meta["namespace"] = template["metadata"]["namespace"]
        pods.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(pod_template["spec"])})
    return [d for d in docs if d.get("kind") not in SANDBOX_KINDS] + pods


def adapt(docs, *, net_dir: str, secret_dirs: dict[str, str], hosts_file: str | None = None,
          upstream_dir: str | None = None, upstream_ports=(), drop_resources: bool = False,
          configmap_dirs: dict[str, str] | None = None) -> list[dict]:
    """The documents `kube play` gets (pure): the changes of the module docstring, nothing else.
    Several agent Pods (warm_pods) each get the same changes."""
    docs = copy.deepcopy(list(docs))
    deployments = by_kind(docs, "Deployment")
    agents = by_kind(docs, "Pod")
    assert len(deployments) == 1 and agents, [d.get("kind") for d in docs]
    deploy = deployments[0]
    template = deploy["spec"]["template"]
    proxy = {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": deploy["metadata"]["name"], "labels": dict(template["metadata"].get("labels", {}))},
             "spec": template["spec"]}
    pspec = proxy["spec"]
    proxy_c = next(c for c in pspec["containers"] if c["name"] == "proxy")
    image, security = proxy_c["image"], proxy_c["securityContext"]
    # 6. the rendered proxy declares no port (podman refuses port mappings without a network)
    assert not any("ports" in c for c in pspec["containers"]), "the renderer declares a containerPort again"
    specs = (pspec, *(a["spec"] for a in agents))
    # 7. rootless: no cgroup limits
    if drop_resources:
        for spec in specs:
            for c in spec["containers"] + spec.get("initContainers", []):
                c.pop("resources", None)
    # 8. init containers run once (podman applies the pod's restart policy to them)
    for agent in agents:
        if agent["spec"].get("initContainers"):
            agent["spec"]["restartPolicy"] = "OnFailure"
    # 3. Secret volumes -> hostPath directories; 10. live ConfigMaps -> hostPath directories
    for spec in specs:
        for vol in spec.get("volumes", []):
            if "secret" in vol:
                name = vol.pop("secret")["secretName"]
                if name not in secret_dirs:
                    raise AssertionError(f"the manifests mount Secret {name!r}: give its files to the harness")
                vol["hostPath"] = {"path": secret_dirs[name], "type": "Directory"}
            elif "configMap" in vol and vol["configMap"]["name"] in (configmap_dirs or {}):
                vol["hostPath"] = {"path": configmap_dirs[vol.pop("configMap")["name"]], "type": "Directory"}
    # 2. the cluster network: net-in (proxy pod) and net-out (each agent pod) over a hostPath socket
    pspec["volumes"].append({"name": "corral-net", "hostPath": {"path": net_dir, "type": "Directory"}})
    net_mount = [{"name": "corral-net", "mountPath": NET_MOUNT}]
    pspec["containers"].append(_relay("net-in", image, f"unix:{NET_MOUNT}/{SOCKET}",
                                      f"tcp:127.0.0.1:{PROXY_PORT}", net_mount, security))
    for agent in agents:
        aspec = agent["spec"]
        aspec.setdefault("volumes", []).append({"name": "corral-net",
                                                "hostPath": {"path": net_dir, "type": "Directory"}})
        aspec["containers"].append(_relay("net-out", image, f"tcp:127.0.0.1:{PROXY_PORT}",
                                          f"unix:{NET_MOUNT}/{SOCKET}", net_mount, security))
    # 5. the tests' upstreams, reached from the proxy pod's loopback
    if hosts_file:
        pspec["volumes"].append({"name": "corral-hosts", "hostPath": {"path": hosts_file, "type": "File"}})
        proxy_c.setdefault("volumeMounts", []).append({"name": "corral-hosts", "mountPath": "/etc/hosts",
                                                       "readOnly": True})
    if upstream_ports:
        pspec["volumes"].append({"name": "corral-upstream", "hostPath": {"path": upstream_dir, "type": "Directory"}})
        for port in upstream_ports:
            pspec["containers"].append(_relay(f"up-{port}", image, f"tcp:127.0.0.1:{port}",
                                              f"unix:{UPSTREAM_MOUNT}/{port}.sock",
                                              [{"name": "corral-upstream", "mountPath": UPSTREAM_MOUNT}], security))
    out = [d for d in docs if d.get("kind") not in ("Deployment", "Pod")]
    return [*out, proxy, *agents]


def to_yaml(docs) -> str:
    """Multi-line strings as literal blocks: podman's YAML parser (go-yaml) misreads PyYAML's
    folded double-quoted scalars ("did not find expected '-' indicator")."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return "".join("---\n" + yaml.dump(d, Dumper=Dumper, sort_keys=False, width=1 << 20) for d in docs)


class HostRelay:
    """On the host: a Unix socket (reached from the proxy pod) relayed to 127.0.0.1:port, by the
    same relay script the stand-in containers run, in a process of its own."""

    def __init__(self, path: Path, port: int):
        import sys

        self.path = str(path)
        self.proc = subprocess.Popen([sys.executable, "-c", RELAY.strip() + "\n", f"unix:{self.path}",
                                      f"tcp:127.0.0.1:{port}"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not helpers.wait_for(lambda: os.path.exists(self.path) or self.proc.poll() is not None, timeout=10):
            self.close()
            raise AssertionError(f"the host relay for 127.0.0.1:{port} did not start")
        assert self.proc.poll() is None, f"the host relay for 127.0.0.1:{port} exited ({self.proc.returncode})"
        os.chmod(self.path, 0o666)  # the relay container's uid (a subuid when rootless) connects

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Cluster:
    """The adapted manifests running under `podman kube play --network none` as `launcher`.

    `secrets`: {Secret name: {key: bytes}} (files made here, never printed); `workspace`: the
    directory the agent's claim is bound to; `upstreams`: {name: (port in the proxy pod, port of
    the test's server on the host's 127.0.0.1)}; `live_configmaps`: names of ConfigMaps the test
    changes while the pods run (change 10, `update_configmap`). Rendered `--format agent-sandbox`
    documents become warm pods (change 9): `agents` lists the agent pods, `agent` is the first.
    Use as a context manager: tears down always."""

    def __init__(self, launcher: helpers.Launcher, env: dict[str, str], docs, base: Path, *,
                 secrets: dict[str, dict[str, bytes]] | None = None, workspace: Path | None = None,
                 upstreams: dict[str, tuple[int, int]] | None = None, timeout: float = 60.0,
                 live_configmaps=()):
        self.launcher, self.env, self.base, self.timeout = launcher, env, Path(base), timeout
        self.rendered = list(docs)
        if by_kind(self.rendered, "SandboxTemplate"):
            self.rendered = warm_pods(self.rendered)
        self.secrets = secrets or {}
        self.workspace = workspace
        self.upstreams = upstreams or {}
        self.relays: list[HostRelay] = []
        self.claims: list[str] = []
        self.played = False
        self.agents = [p["metadata"]["name"] for p in by_kind(self.rendered, "Pod")]
        self.agent = self.agents[0]
        self.proxy = by_kind(self.rendered, "Deployment")[0]["metadata"]["name"]
        self.rootless = launcher.uid != 0
        self.live = {name: None for name in live_configmaps}  # name -> its directory, once prepared
        self._versions = 0

    # -- podman as the launcher --------------------------------------------------------------
    def podman(self, *args, timeout: float = 60, input=None) -> subprocess.CompletedProcess:
        argv = [*self.launcher.prefix, "/usr/bin/env", *(f"{k}={v}" for k, v in {**self.launcher.env, **self.env}.items()),
                "podman", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/", input=input)

    def chown(self, path: Path, uid: int, gid: int) -> None:
        """Give `path` (recursively) to uid:gid as the containers see them."""
        if self.rootless:
            if os.geteuid() == 0:  # first the launcher's own (its user namespace's root), then mapped
                for root, dirs, files in os.walk(path):
                    for n in [root, *(os.path.join(root, x) for x in dirs + files)]:
                        os.lchown(n, self.launcher.uid, self.launcher.gid)
            p = self.podman("unshare", "chown", "-R", f"{uid}:{gid}", str(path))
            assert p.returncode == 0, p.stderr
        else:
            for root, dirs, files in os.walk(path):
                for n in [root, *(os.path.join(root, x) for x in dirs + files)]:
                    os.lchown(n, uid, gid)

    # -- set up --------------------------------------------------------------------------------
    def _prepare(self) -> Path:
        b = self.base
        b.mkdir(parents=True, exist_ok=True)
        b.chmod(0o700)
        if self.rootless:
            os.chown(b, self.launcher.uid, self.launcher.gid)
        net = b / "net"
        net.mkdir(mode=0o700)
        secret_dirs = {}
        for name, files in self.secrets.items():
            d = b / "secrets" / name
            d.mkdir(parents=True, mode=0o750)
            for key, value in files.items():
                f = d / key
                fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o440)
                with os.fdopen(fd, "wb") as out:
                    out.write(value)
            secret_dirs[name] = str(d)
        hosts = up = None
        if self.upstreams:
            hosts = b / "hosts"
            hosts.write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {n}\n" for n in self.upstreams))
            hosts.chmod(0o644)
            up = b / "upstream"
            up.mkdir(mode=0o755)
        if self.rootless:
            for p in b.rglob("*"):
                os.lchown(p, self.launcher.uid, self.launcher.gid)
        self.chown(net, PROXY_UID, PROXY_UID)
        for d in secret_dirs.values():
            self.chown(Path(d), PROXY_UID, PROXY_UID)
        for name in self.live:
            cm = next((c for c in by_kind(self.rendered, "ConfigMap") if c["metadata"]["name"] == name), None)
            assert cm is not None, f"no ConfigMap {name!r} in the rendered documents"
            self.live[name] = b / "configmaps" / name
            self.live[name].mkdir(parents=True, mode=0o755)
            (b / "configmaps").chmod(0o755)
            if self.rootless and os.geteuid() == 0:
                os.lchown(b / "configmaps", self.launcher.uid, self.launcher.gid)
            self.update_configmap(name, cm.get("data") or {})
        for _name, (port, host_port) in self.upstreams.items():
            self.relays.append(HostRelay(up / f"{port}.sock", host_port))
        docs = adapt(self.rendered, net_dir=str(net), secret_dirs=secret_dirs, hosts_file=str(hosts) if hosts else None,
                     upstream_dir=str(up) if up else None, upstream_ports=[p for p, _ in self.upstreams.values()], drop_resources=self.rootless,
                     configmap_dirs={n: str(d) for n, d in self.live.items()})
        for vol in by_kind(docs, "Pod")[-1]["spec"].get("volumes", []):
            claim = vol.get("persistentVolumeClaim", {}).get("claimName")
            if claim and claim not in self.claims:
                assert self.workspace is not None, f"the agent mounts claim {claim!r}: give the harness a workspace"
                sec = by_kind(docs, "Pod")[-1]["spec"].get("securityContext", {})
                self.chown(self.workspace, sec.get("runAsUser", 1000), sec.get("runAsGroup", 1000))
                self.podman("volume", "rm", "-f", claim)
                p = self.podman("volume", "create", "-o", "type=none", "-o", f"device={self.workspace}", "-o", "o=bind",
                                claim)
                assert p.returncode == 0, f"podman volume create {claim}: {p.stderr.strip()}"
                self.claims.append(claim)
        self.yaml = b / "kube.yaml"
        self.yaml.write_text(to_yaml(docs))
        self.yaml.chmod(0o644)
        if self.rootless:
            os.lchown(self.yaml, self.launcher.uid, self.launcher.gid)
        self.documents = docs
        return self.yaml

    def update_configmap(self, name: str, data: dict[str, str]) -> None:
        """Change 10: ConfigMap `name`'s volume now holds `data`, updated the way the kubelet's
        atomic writer updates a ConfigMap volume: the new content in a fresh `..TIMESTAMP`
        directory, `..data` swapped to it with one rename, then the key symlinks (`KEY ->
        ..data/KEY`) added and the removed ones unlinked, then the old directory removed."""
        d = self.live[name]
        self._versions += 1
        version = d / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{os.getpid()}{self._versions:04d}"
        version.mkdir(mode=0o755)
        for key, value in data.items():
            assert "/" not in key and not key.startswith("."), key
            f = version / key
            f.write_text(value)
            f.chmod(0o644)
        old = os.readlink(d / "..data") if (d / "..data").is_symlink() else None
        tmp = d / "..data_tmp"
        os.symlink(version.name, tmp)
        os.rename(tmp, d / "..data")
        for key in data:
            if not (d / key).is_symlink():
                os.symlink(f"..data/{key}", d / key)
        for entry in os.listdir(d):
            if not entry.startswith(".") and entry not in data:
                os.unlink(d / entry)
        if old:
            shutil.rmtree(d / old)
        if self.rootless and os.geteuid() == 0:  # the launcher's, as the rest of the base directory
            for p in [d, *d.rglob("*")]:
                os.lchown(p, self.launcher.uid, self.launcher.gid)

    def __enter__(self) -> "Cluster":
        try:
            self.start()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def start(self) -> None:
        self.started = time.monotonic()
        path = self._prepare()
        p = self.podman("kube", "play", "--network", "none", str(path), timeout=120)
        self.played = True
        if p.returncode != 0:
            raise AssertionError(f"podman kube play failed ({p.returncode}): {p.stderr.strip()}\n{self.all_logs()}")
        self.wait_ready()

    def container(self, pod: str, name: str) -> str:
        return f"{pod}-{name}"

    def logs(self, name: str) -> str:
        p = self.podman("logs", name, timeout=30)
        return (p.stdout + p.stderr).strip()

    def all_logs(self) -> str:
        out = []
        for pod in (self.proxy, *self.agents):
            ps = self.podman("ps", "-a", "--filter", f"pod={pod}", "--format", "{{.Names}} {{.Status}}", timeout=30)
            for line in ps.stdout.splitlines():
                name = line.split()[0]
                if name.endswith("-infra"):
                    continue
                out.append(f"--- podman logs {name} ({' '.join(line.split()[1:])}):\n{self.logs(name)}")
        return "\n".join(out) or "(no containers)"

    def exec(self, script: str, *, container: str = "agent", timeout: float = 60, user: str | None = None,
             input=None, pod: str | None = None, env_file: str | None = None) -> subprocess.CompletedProcess:
        """bash -c script in a container of an agent pod (the first unless `pod`; as its rendered
        user unless `user`); `env_file`: variables added the way a harness passes them to the
        commands it runs (`podman exec --env-file`: values never on a command line)."""
        extra = ["--user", user] if user else []
        if env_file:
            extra += ["--env-file", env_file]
        return self.podman("exec", "-i", *extra, self.container(pod or self.agent, container), "bash", "-c", script,
                           timeout=timeout, input=input)

    def wait_ready(self) -> float:
        """Until each agent pod's first request reaches the proxy through the relays: seconds
        since start."""
        probe = ("curl -s -o /dev/null -w '%{http_code}' --max-time 2 --noproxy '*' "
                 f"http://127.0.0.1:{PROXY_PORT}/ || true")
        end = time.monotonic() + self.timeout
        last = None
        for pod in self.agents:
            while True:
                last = self.exec(probe, timeout=30, pod=pod)
                if last.returncode == 0 and last.stdout.strip() not in ("", "000"):
                    break
                if time.monotonic() > end:
                    raise AssertionError(f"agent pod {pod} did not reach the proxy within {self.timeout:.0f} s "
                                         f"(last probe: {(last.stdout + last.stderr).strip()!r})\n{self.all_logs()}")
                time.sleep(0.1)
        self.ready = time.monotonic() - self.started
        return self.ready

    def down(self) -> None:
        errors = []
        if self.played:
            p = self.podman("kube", "down", str(self.yaml), timeout=120)
            if p.returncode != 0:
                errors.append(p.stderr.strip())
            for pod in (self.proxy, *self.agents):
                self.podman("pod", "rm", "-f", "-t", "0", pod, timeout=60)
            self.played = False
        # podman 4.3.1 makes a volume per ConfigMap and `kube down` leaves it
        for cm in by_kind(self.rendered, "ConfigMap"):
            self.podman("volume", "rm", "-f", cm["metadata"]["name"])
        for claim in self.claims:
            self.podman("volume", "rm", "-f", claim)
        self.claims = []
        for r in self.relays:
            r.close()
        self.relays = []
        if self.rootless and self.base.exists():
            self.podman("unshare", "rm", "-rf", str(self.base))
        if not os.environ.get("KUBEPLAY_KEEP"):
            shutil.rmtree(self.base, ignore_errors=True)
