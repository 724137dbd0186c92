"""Kubernetes: a policy rendered as manifests (pure).

`render(policy, ctx, options, inputs)` returns the documents (plain dicts, in apply order), the
enforcement report and what the operator must create by hand (the Secrets: referenced by name,
never rendered). The shape, as the threat model asks:

- the agent (a Pod, or an agent-sandbox SandboxTemplate + SandboxWarmPool) holds no credential and
  no session policy: the proxy variables, placeholders, corral's CA, a restricted securityContext,
  no service-account token, no DNS (names resolve at the proxy), limits as resources;
- a separate egress proxy (Deployment + Service) runs `corral proxy --sessions`: the policy is a
  session file in a ConfigMap, the real credentials a Secret mounted only there, and its CA;
- NetworkPolicies: the agent reaches only the proxy's port; the proxy reaches the internet, not
  the cluster's private ranges or the metadata address unless the policy allows them;
- a RuntimeClass for gVisor when asked.

A warm pool is safe because the agent pod is the same for every session: a session (its policy
and credentials) is bound late, at the proxy, by the per-session proxy password
(`corral k8s session`, `proxy/sessions.py`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math

from .._values import field, frozen, replace
from . import report as R

PROXY_PORT = 3128
SESSIONS_DIR = "/etc/corral/sessions"
CREDENTIALS_DIR = "/var/run/corral/credentials"
CA_SECRET_DIR = "/etc/corral/ca-key"  # the proxy's CA certificate and key (a kubernetes.io/tls Secret)
CA_DIR = "/etc/corral/ca"  # corral's CA certificate (public), and extra CAs
TRUST_DIR = "/etc/corral/trust"  # the agent's bundle: the image's CAs + corral's
TRUST_BUNDLE = f"{TRUST_DIR}/ca-bundle.pem"
WORKSPACE = "/workspace"
AGENT_HOME = "/home/agent"
PROXY_UID = 65532
FORMATS = ("pod", "agent-sandbox")
SECCOMP_CHOICES = ("runtime-default", "corral")
AGENT_SANDBOX_GROUP = "extensions.agents.x-k8s.io/v1beta1"
# Where agent-sandbox's router runs (its install manifests); the SDK reaches sandboxes through it.
ROUTER = {"namespace": "agent-sandbox-system", "labels": {"app": "sandbox-router"}}
# Known RuntimeClass handlers: rendered when asked by name.
RUNTIME_HANDLERS = {"gvisor": "runsc"}
# The proxy may not reach these unless the policy allows an address in them (the cluster's pods
# and services, node and link-local addresses, the metadata service at 169.254.169.254).
PRIVATE_V4 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10",
              "127.0.0.0/8", "0.0.0.0/8")
PRIVATE_V6 = ("fc00::/7", "fe80::/10", "::1/128", "::ffff:0:0/96")
HTTP_PROXY_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "GRPC_PROXY", "grpc_proxy")
SOCKS_PROXY_NAMES = ("ALL_PROXY", "all_proxy")
TRUST_SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                        "/etc/ssl/ca-bundle.pem", "/etc/ssl/cert.pem")


@frozen
class Options:
    """What `corral k8s render` was asked for (the policy aside)."""

    image: str
    name: str = "corral"
    namespace: str | None = None
    format: str = "pod"  # FORMATS
    runtime_class: str | None = None  # "gvisor" (a RuntimeClass is rendered) or the name of one that exists
    proxy_image: str = "corral:0.1.0"
    proxy_replicas: int = 1
    proxy_address: str | None = None  # HOST:PORT the agent uses; None: the Service, by its cluster IP
    warm_pool: int | None = None  # agent-sandbox: SandboxWarmPool replicas
    workspace_claim: str | None = None  # a PersistentVolumeClaim; None: an emptyDir
    uid: int = 1000
    seccomp: str = "runtime-default"  # SECCOMP_CHOICES
    egress_cidrs: tuple[str, ...] = ()  # private ranges the proxy may reach besides the policy's addresses
    private_cidrs: tuple[str, ...] = ()  # the cluster's ranges outside the usual private ones (never reached)
    command: tuple[str, ...] = ()


@frozen
class Inputs:
    """What the edge read for the renderer: corral's CA certificate (PEM) when the proxy terminates
    TLS, the extra CAs' contents, and where the CA's files are (for the operator's command)."""

    ca_cert_pem: str | None = None
    ca_cert_path: str | None = None
    ca_key_path: str | None = None
    extra_ca: tuple[tuple[str, str], ...] = ()  # (original path, PEM)


@frozen
class SecretToCreate:
    """A Secret the manifests reference and the operator makes from their own environment."""

    name: str
    command: str  # a bash command line (values come from variables, files and commands, never argv)
    why: str


@frozen
class Rendered:
    documents: tuple[dict, ...]
    report: R.Report
    secrets: tuple[SecretToCreate, ...] = ()
    notes: tuple[str, ...] = field(default=())


class RenderError(ValueError):
    """Options the renderer cannot honour (the edge names the flag)."""


# ---------------------------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------------------------


def terminates_tls(policy) -> bool:
    """Does the proxy terminate TLS for this policy (and so need a CA the agent trusts)?"""
    net, tls = policy.network, policy.network.tls
    inspects = bool(policy.credentials or net.http_rules or getattr(policy, "git", None) is not None)
    return tls.enabled or (tls.auto and inspects)


def needs_ca(policy, opts: Options) -> bool:
    """Does the deployment carry corral's CA (proxy: the key; agent: the trust)? Always for warm
    pools: a session bound later may terminate TLS, and the pods cannot be changed then."""
    return terminates_tls(policy) or opts.format == "agent-sandbox"


def workspace_writable(policy, ctx) -> bool:
    """Writable in the pod when the policy makes the working directory writable (bind mode)."""
    fs = policy.filesystem
    if fs.workspace == "ro":
        return False
    cwd = ctx.cwd.rstrip("/") or "/"
    return any(not r.glob and (cwd == r.path.rstrip("/") or cwd.startswith(r.path.rstrip("/") + "/"))
               for r in fs.allow_write)


def private_allowances(allowed) -> list[str]:
    """The policy's allowed IP addresses and ranges that the proxy's NetworkPolicy must open
    (private ones; public ones are open already)."""
    out = []
    for entry in allowed:
        if entry.startswith("["):  # [v6]:port
            text = entry[1:].split("]", 1)[0]
        elif entry.count(":") == 1:  # v4:port or name:port
            text = entry.split(":", 1)[0]
        else:
            text = entry
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            continue
        if net.is_private or net.is_link_local or net.is_loopback or net.is_reserved:
            out.append(str(net))
    return sorted(set(out))


def quantity_bytes(n: int) -> str:
    for unit, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def quantity_cpus(cpus: float) -> str:
    milli = max(1, round(cpus * 1000))
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def service_env_prefix(name: str) -> str:
    """Kubernetes' service environment variables for Service `name` (`{NAME}_SERVICE_HOST`)."""
    return name.upper().replace("-", "_")


def _placeholder(token_line: str, session: str, name: str) -> str:
    from ..proxy.credentials import session_placeholder

    return session_placeholder(token_line, session, name)


# ---------------------------------------------------------------------------------------------
# The proxy side
# ---------------------------------------------------------------------------------------------


def extra_ca_name(pem: str) -> str:
    """The key of an extra CA in ConfigMap NAME-ca: named by its content, so that a session
    bound later names the same file only when it trusts the same certificate."""
    return f"extra-{hashlib.sha256(pem.encode()).hexdigest()[:12]}.crt"


def proxy_policy(policy, ca: bool, extra_names: tuple[str, ...] = ()):
    """The policy as the proxy pod loads it: network rules, HTTP rules, [git], credentials read
    from the Secret's files, TLS with the mounted CA; nothing about the agent's filesystem."""
    from ..policy.model import FilesystemPolicy, Limits, Policy

    creds = tuple(replace(c, from_env=None, from_command=(), from_file=f"{CREDENTIALS_DIR}/{c.name}",
                          mask_file=None, env_template=None, origin="")
                  for c in policy.credentials)
    net = policy.network
    tls = net.tls
    if ca:
        tls = replace(tls, ca="files", ca_cert=f"{CA_SECRET_DIR}/tls.crt", ca_key=f"{CA_SECRET_DIR}/tls.key",
                      extra_ca=tuple(f"{CA_DIR}/{n}" for n in extra_names))
    else:
        tls = replace(tls, extra_ca=())
    net = replace(net, tls=tls, audit_log=None, parent_proxy_env=False, transparent=False)
    return Policy(filesystem=FilesystemPolicy(deny_credentials=False, deny_secrets=False), network=net,
                  credentials=creds, endpoints=(), limits=Limits(), git=policy.git, sources=())


def proxy_policy_toml(policy, ctx, ca: bool, extra_names: tuple[str, ...] = ()) -> str:
    from ..policy.render import proxy_toml

    import posixpath

    origin = ", ".join(posixpath.basename(s) for s in policy.sources) or "corral's defaults"
    return proxy_toml(proxy_policy(policy, ca, extra_names), f"corral egress proxy session, from {origin} "
                      "(rendered by `corral k8s`): the network rules and credentials only")


def secret_command(name: str, namespace: str | None, policy) -> str:
    """`kubectl create secret` for the credentials: values come from variables (printf is a
    shell builtin: the value never shows in a process list), files or commands; never typed."""
    import shlex

    parts = ["kubectl", "create", "secret", "generic", name]
    if namespace:
        parts += ["-n", namespace]
    line = " ".join(shlex.quote(p) for p in parts)
    for c in policy.credentials:
        if c.from_env:
            source = f"<(printf %s \"${{{c.from_env}}}\")"
        elif c.from_file:
            source = shlex.quote(c.from_file)
        else:
            source = "<(" + " ".join(shlex.quote(a) for a in c.from_command) + ")"
        line += f" \\\n    --from-file={shlex.quote(c.name)}={source}"
    return line


def ca_command(name: str, namespace: str | None, inputs: Inputs) -> str:
    import shlex

    parts = ["kubectl", "create", "secret", "tls", name]
    if namespace:
        parts += ["-n", namespace]
    parts += [f"--cert={inputs.ca_cert_path or 'CA.pem'}", f"--key={inputs.ca_key_path or 'CA-KEY.pem'}"]
    return " ".join(shlex.quote(p) for p in parts)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _meta(name: str, opts: Options, labels: dict | None = None) -> dict:
    meta = {"name": name}
    if opts.namespace:
        meta["namespace"] = opts.namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta


def _labels(opts: Options, role: str) -> dict:
    return {"app.kubernetes.io/name": "corral", "app.kubernetes.io/instance": opts.name,
            "app.kubernetes.io/component": role, "corral.dev/role": role}


def _selector(opts: Options, role: str) -> dict:
    return {"app.kubernetes.io/instance": opts.name, "corral.dev/role": role}


def _seccomp(opts: Options, profile_name: str | None) -> dict:
    if opts.seccomp == "corral":
        return {"type": "Localhost", "localhostProfile": f"corral/{profile_name}"}
    return {"type": "RuntimeDefault"}


def _container_security(uid: int, seccomp: dict) -> dict:
    return {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": dict(seccomp)}


def _pod_security(uid: int, seccomp: dict) -> dict:
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
            "seccompProfile": dict(seccomp)}


def _env(pairs) -> list[dict]:
    return [{"name": k, "value": v} for k, v in pairs]


def proxy_variables(address: str, auth: str = "") -> list[tuple[str, str]]:
    """The variables clients find the proxy by (CORRAL_PROXY last); `auth`: "user:password@"."""
    http, socks = f"http://{auth}{address}", f"socks5h://{auth}{address}"
    return [(n, http) for n in HTTP_PROXY_NAMES] + [(n, socks) for n in SOCKS_PROXY_NAMES] + [("CORRAL_PROXY", http)]


def agent_environment(policy, opts: Options, tls: bool, session: str | None) -> list[tuple[str, str]]:
    """The agent's variables: where the proxy is, corral's CA, and, for a pod bound to one
    session, the credentials' placeholders (never a value)."""
    svc = service_env_prefix(f"{opts.name}-proxy")
    *env, corral = proxy_variables(opts.proxy_address or f"$({svc}_SERVICE_HOST):$({svc}_SERVICE_PORT)")
    env += [("NO_PROXY", "localhost,127.0.0.1,::1"), ("no_proxy", "localhost,127.0.0.1,::1"),
            ("NODE_USE_ENV_PROXY", "1"), corral, ("HOME", AGENT_HOME), ("TMPDIR", "/tmp")]
    if tls:
        env += [(n, TRUST_BUNDLE) for n in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                                            "GIT_SSL_CAINFO", "PIP_CERT")]
        env.append(("NODE_EXTRA_CA_CERTS", f"{CA_DIR}/ca.crt"))
    if session is not None:
        for c in policy.credentials:
            if c.env:
                env.append((c.env, _placeholder("open", session, c.name)))
    names = {k for k, _ in env}
    env += [(k, v) for k, v in policy.process.set_env if k not in names]
    return env


def agent_pod_spec(policy, ctx, opts: Options, tls: bool, session: str | None, profile: str | None,
                   deadline: bool) -> dict:
    seccomp = _seccomp(opts, profile)
    writable = workspace_writable(policy, ctx)
    container = {"name": "agent", "image": opts.image}
    if opts.command:
        container["command"] = list(opts.command)
    container["workingDir"] = WORKSPACE
    container["env"] = _env(agent_environment(policy, opts, tls, session))
    container["securityContext"] = _container_security(opts.uid, seccomp)
    container["resources"] = resources(policy.limits)
    mounts = [{"name": "workspace", "mountPath": WORKSPACE, "readOnly": not writable},
              {"name": "tmp", "mountPath": "/tmp"}, {"name": "home", "mountPath": AGENT_HOME}]
    volumes = [{"name": "workspace", **({"persistentVolumeClaim": {"claimName": opts.workspace_claim,
                                                                      "readOnly": not writable}}
                                         if opts.workspace_claim else {"emptyDir": {}})},
               {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "512Mi"}},
               {"name": "home", "emptyDir": {"sizeLimit": "1Gi"}}]
    spec = {"automountServiceAccountToken": False, "enableServiceLinks": opts.proxy_address is None,
            "dnsPolicy": "None", "dnsConfig": {"nameservers": ["127.0.0.1"]},
            "securityContext": _pod_security(opts.uid, seccomp), "terminationGracePeriodSeconds": 10}
    if opts.runtime_class:
        spec["runtimeClassName"] = opts.runtime_class
    if deadline and policy.limits.timeout is not None:
        spec["activeDeadlineSeconds"] = max(1, math.ceil(policy.limits.timeout))
    if tls:
        mounts += [{"name": "corral-ca", "mountPath": CA_DIR, "readOnly": True},
                   {"name": "trust", "mountPath": TRUST_DIR, "readOnly": True}]
        volumes += [{"name": "corral-ca", "configMap": {"name": f"{opts.name}-ca"}},
                    {"name": "trust", "emptyDir": {"sizeLimit": "16Mi"}}]
        # The agent trusts the image's CAs (hosts the proxy does not terminate) and corral's.
        script = ("for f in " + " ".join(TRUST_SYSTEM_BUNDLES) + "; do if [ -f \"$f\" ]; then cat \"$f\"; break; "
                  f"fi; done > {TRUST_BUNDLE} && cat {CA_DIR}/*.crt >> {TRUST_BUNDLE}")
        spec["initContainers"] = [{
            "name": "trust", "image": opts.image, "command": ["sh", "-c", script],
            "securityContext": _container_security(opts.uid, seccomp),
            "volumeMounts": [{"name": "corral-ca", "mountPath": CA_DIR, "readOnly": True},
                             {"name": "trust", "mountPath": TRUST_DIR}]}]
    container["volumeMounts"] = mounts
    spec["containers"] = [container]
    spec["volumes"] = volumes
    return spec


def resources(limits) -> dict:
    caps = {}
    if limits.cpus is not None:
        caps["cpu"] = quantity_cpus(limits.cpus)
    if limits.memory is not None:
        caps["memory"] = quantity_bytes(limits.memory)
    return {"requests": dict(caps), "limits": dict(caps)} if caps else {}


def proxy_deployment(policy, opts: Options, tls: bool, sessions_cm: str) -> dict:
    seccomp = {"type": "RuntimeDefault"}
    labels = _labels(opts, "proxy")
    env = [("HOME", "/tmp"), ("XDG_DATA_HOME", "/tmp/data"), ("XDG_STATE_HOME", "/tmp/state"),
           ("XDG_CACHE_HOME", "/tmp/cache"), ("XDG_CONFIG_HOME", "/tmp/config")]
    mounts = [{"name": "sessions", "mountPath": SESSIONS_DIR, "readOnly": True},
              {"name": "tmp", "mountPath": "/tmp"}]
    volumes = [{"name": "sessions", "configMap": {"name": sessions_cm}},
               {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]
    if policy.credentials:
        mounts.append({"name": "credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True})
        volumes.append({"name": "credentials", "secret": {"secretName": f"{opts.name}-credentials",
                                                           "defaultMode": 0o440}})
    if tls:
        mounts += [{"name": "ca-key", "mountPath": CA_SECRET_DIR, "readOnly": True},
                   {"name": "corral-ca", "mountPath": CA_DIR, "readOnly": True}]
        volumes += [{"name": "ca-key", "secret": {"secretName": f"{opts.name}-ca-key", "defaultMode": 0o440}},
                    {"name": "corral-ca", "configMap": {"name": f"{opts.name}-ca"}}]
    container = {
        "name": "proxy", "image": opts.proxy_image,
        "command": ["corral", "proxy", "--listen", f"tcp:0.0.0.0:{PROXY_PORT}", "--sessions", SESSIONS_DIR,
                    "--audit", "-"],
        # No `ports`: a containerPort is informational in Kubernetes (Service, probe and NetworkPolicy
        # use the number), and `podman kube play --network none` refuses any.
        "env": _env(env),
        "readinessProbe": {"tcpSocket": {"port": PROXY_PORT}, "periodSeconds": 5},
        "securityContext": _container_security(PROXY_UID, seccomp),
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "volumeMounts": mounts,
    }
    pod = {"automountServiceAccountToken": False, "enableServiceLinks": False,
           "securityContext": _pod_security(PROXY_UID, seccomp), "containers": [container], "volumes": volumes}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(f"{opts.name}-proxy", opts, labels),
            "spec": {"replicas": opts.proxy_replicas, "selector": {"matchLabels": _selector(opts, "proxy")},
                     "template": {"metadata": {"labels": labels}, "spec": pod}}}


def network_policies(policy, opts: Options) -> list[dict]:
    agent_sel = {"matchLabels": _selector(opts, "agent")}
    proxy_sel = {"matchLabels": _selector(opts, "proxy")}
    agent_ingress = []
    if opts.format == "agent-sandbox":
        agent_ingress = [{"from": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": ROUTER["namespace"]}}, "podSelector": {"matchLabels": ROUTER["labels"]}}]}]
    agent = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": _meta(f"{opts.name}-agent", opts, _labels(opts, "agent")),
             "spec": {"podSelector": agent_sel, "policyTypes": ["Ingress", "Egress"], "ingress": agent_ingress,
                      "egress": [{"to": [{"podSelector": proxy_sel}],
                                  "ports": [{"protocol": "TCP", "port": PROXY_PORT}]}]}}
    egress = [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                       "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
               "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
              {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": _except(PRIVATE_V4, opts.private_cidrs, 4)}},
                      {"ipBlock": {"cidr": "::/0", "except": _except(PRIVATE_V6, opts.private_cidrs, 6)}}]}]
    opened = sorted(set(private_allowances(policy.network.allowed_domains)) | set(opts.egress_cidrs))
    if opened:
        egress.append({"to": [{"ipBlock": {"cidr": c}} for c in opened]})
    proxy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": _meta(f"{opts.name}-proxy", opts, _labels(opts, "proxy")),
             "spec": {"podSelector": proxy_sel, "policyTypes": ["Ingress", "Egress"],
                      "ingress": [{"from": [{"podSelector": agent_sel}],
                                   "ports": [{"protocol": "TCP", "port": PROXY_PORT}]}],
                      "egress": egress}}
    return [agent, proxy]


def _except(base, extra, version: int) -> list[str]:
    out = list(base)
    for cidr in extra:
        if ipaddress.ip_network(cidr, strict=False).version == version and cidr not in out:
            out.append(cidr)
    return out


def seccomp_profile(policy) -> tuple[str, str]:
    """(file name, JSON) of corral's deny list as a kubelet Localhost profile."""
    import json

    from ..sandbox.seccomp import SeccompOptions
    from .oci import seccomp_profile as oci_profile

    profile = oci_profile(SeccompOptions(allow_unix_sockets=policy.network.allow_unix_sockets,
                                         allow_nested_userns=policy.process.allow_nested_userns))
    text = json.dumps(profile, indent=1, sort_keys=True) + "\n"
    return f"corral-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json", text


def render(policy, ctx, opts: Options, inputs: Inputs = Inputs()) -> Rendered:
    if opts.format not in FORMATS:
        raise RenderError(f"--format {opts.format!r}: expected one of {', '.join(FORMATS)}")
    if opts.seccomp not in SECCOMP_CHOICES:
        raise RenderError(f"--seccomp {opts.seccomp!r}: expected one of {', '.join(SECCOMP_CHOICES)}")
    if opts.warm_pool is not None and opts.format != "agent-sandbox":
        raise RenderError("--warm-pool needs --format agent-sandbox (a SandboxWarmPool pre-starts sandboxes)")
    if opts.uid == 0:
        raise RenderError("--uid 0: the restricted profile runs pods as a non-root user; pick another uid")
    tls = needs_ca(policy, opts)
    if tls and not inputs.ca_cert_pem:
        raise RenderError("the policy terminates TLS, but no CA certificate was given to render")
    docs: list[dict] = []
    notes: list[str] = []
    secrets: list[SecretToCreate] = []
    if opts.runtime_class in RUNTIME_HANDLERS:
        docs.append({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                     "metadata": {"name": opts.runtime_class, "labels": {"app.kubernetes.io/name": "corral"}},
                     "handler": RUNTIME_HANDLERS[opts.runtime_class]})
    elif opts.runtime_class:
        notes.append(f"RuntimeClass {opts.runtime_class!r} is referenced, not rendered: it must exist on the cluster")
    pod_format = opts.format == "pod"
    session = opts.name if pod_format else None
    extra_names = tuple(extra_ca_name(pem) for _, pem in inputs.extra_ca)
    sessions_cm = f"{opts.name}-proxy-sessions"
    data = {}
    if pod_format:
        data = {f"{opts.name}.toml": proxy_policy_toml(policy, ctx, tls, extra_names), f"{opts.name}.token": "open\n"}
    docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(sessions_cm, opts, _labels(opts, "proxy")),
                 "data": data})
    if tls:
        ca_data = {"ca.crt": inputs.ca_cert_pem}
        ca_data.update({n: pem for n, (_, pem) in zip(extra_names, inputs.extra_ca)})
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(f"{opts.name}-ca", opts,
                                                                                 _labels(opts, "proxy")),
                     "data": ca_data})
        secrets.append(SecretToCreate(f"{opts.name}-ca-key", ca_command(f"{opts.name}-ca-key", opts.namespace, inputs),
                                      "the proxy's CA (certificate and key) for TLS termination"))
    if policy.credentials:
        secrets.append(SecretToCreate(f"{opts.name}-credentials",
                                      secret_command(f"{opts.name}-credentials", opts.namespace, policy),
                                      "the real credentials, mounted only in the proxy"))
    profile = None
    if opts.seccomp == "corral":
        profile, text = seccomp_profile(policy)
        docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": _meta(f"{opts.name}-seccomp", opts, _labels(opts, "agent")),
                     "data": {profile: text}})
        notes.append(f"install {profile} from ConfigMap {opts.name}-seccomp on every node as "
                     f"/var/lib/kubelet/seccomp/corral/{profile} (pods using it fail to start until it is there)")
    docs += network_policies(policy, opts)
    docs.append({"apiVersion": "v1", "kind": "Service", "metadata": _meta(f"{opts.name}-proxy", opts,
                                                                            _labels(opts, "proxy")),
                 "spec": {"type": "ClusterIP", "selector": _selector(opts, "proxy"),
                          "ports": [{"name": "proxy", "port": PROXY_PORT, "targetPort": PROXY_PORT, "protocol": "TCP"}]}})
    docs.append(proxy_deployment(policy, opts, tls, sessions_cm))
    labels = _labels(opts, "agent")
    spec = agent_pod_spec(policy, ctx, opts, tls, session, profile, deadline=pod_format)
    if pod_format:
        docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": _meta(f"{opts.name}-agent", opts, labels),
                     "spec": spec})
    else:
        router = network_policies(policy, opts)[0]["spec"]
        docs.append({"apiVersion": AGENT_SANDBOX_GROUP, "kind": "SandboxTemplate",
                     "metadata": _meta(opts.name, opts, labels),
                     "spec": {"podTemplate": {"metadata": {"labels": labels}, "spec": spec},
                              "networkPolicyManagement": "Managed",
                              "networkPolicy": {"ingress": router["ingress"], "egress": router["egress"]},
                              "envVarsInjectionPolicy": "Disallowed"}})
        if opts.warm_pool is not None:
            docs.append({"apiVersion": AGENT_SANDBOX_GROUP, "kind": "SandboxWarmPool",
                         "metadata": _meta(opts.name, opts, labels),
                         "spec": {"replicas": opts.warm_pool, "sandboxTemplateRef": {"name": opts.name}}})
    return Rendered(tuple(docs), report(policy, ctx, opts, tls), tuple(secrets), tuple(notes))


# ---------------------------------------------------------------------------------------------
# The enforcement report
# ---------------------------------------------------------------------------------------------


def report(policy, ctx, opts: Options, tls: bool = False) -> R.Report:
    E, P, N, NR = R.ENFORCED, R.PARTIAL, R.NOT_ENFORCED, R.NOT_REQUESTED
    fs, net, limits = policy.filesystem, policy.network, policy.limits
    writable = workspace_writable(policy, ctx)
    gvisor = opts.runtime_class == "gvisor"
    items = [
        R.Item("filesystem view", f"image read-only; writable: {WORKSPACE + ', ' if writable else ''}/tmp, "
               f"{AGENT_HOME} (emptyDir)", E,
               "readOnlyRootFilesystem; the workspace volume " + ("read-write" if writable else "read-only")
               + "; the host's files are not in the pod"),
    ]
    inside = [r.path for r in fs.deny_read if r.path == ctx.cwd or r.path.startswith(ctx.cwd.rstrip("/") + "/")]
    if inside:
        items.append(R.Item("read denials", f"{len(inside)} paths inside the workspace", N,
                            "Kubernetes volumes cannot hide files inside the workspace volume; keep secrets out "
                            "of it"))
    else:
        items.append(R.Item("read denials", f"{len(fs.deny_read)} host paths", E if fs.deny_read else NR,
                            "the pod sees its image and volumes only, none of the host's files"))
    items.append(R.Item("protected paths", ".git/hooks, .git/config, rc files in the workspace" if writable
                        else "workspace read-only", N if writable else E,
                        "not read-only inside a writable workspace volume, no quarantine after the run; review "
                        "the workspace before trusting its hooks" if writable else "the workspace volume is read-only"))
    cni = "needs a CNI that enforces NetworkPolicy"
    if net.enabled or policy.credentials:
        items.append(R.Item("network", "only through corral's proxy", E,
                            "NetworkPolicy: the agent reaches only the proxy Service's port, no DNS (programs that "
                            "ignore the proxy variables get no route: no transparent redirect in a pod); the proxy "
                            f"reaches the internet but not private ranges or 169.254.169.254 ({cni})"))
    else:
        items.append(R.Item("network", "none", E, f"NetworkPolicy: the agent reaches only the proxy, which allows "
                            f"nothing ({cni})"))
    items += [
        R.Item("credentials", f"{len(policy.credentials)} injected by the proxy" if policy.credentials else "none",
               E if policy.credentials else NR,
               "a Secret mounted only in the proxy pod; the agent gets placeholders" if policy.credentials else ""),
        R.Item("capabilities", "none", E, "capabilities.drop [ALL]"),
        R.Item("no_new_privs", "yes", E, "allowPrivilegeEscalation: false"),
        R.Item("user", f"uid {opts.uid}", E, "runAsNonRoot, runAsUser"),
        R.Item("seccomp", "corral's deny list",
               (P if opts.seccomp != "corral" or gvisor else E),
               ("the runtime's default profile (RuntimeDefault), not corral's list; --seccomp corral renders it"
                if opts.seccomp != "corral" else "a Localhost profile, installed on every node")
               + ("; under gVisor applied only when runsc runs with --oci-seccomp" if gvisor else "")),
        R.Item("service account token", "none", E, "automountServiceAccountToken: false"),
        R.Item("kernel", "gVisor" if gvisor else "-", E if gvisor else NR,
               "RuntimeClass gvisor (handler runsc): a user-space kernel in front of the node's" if gvisor else
               (f"RuntimeClass {opts.runtime_class}" if opts.runtime_class else
                "the node's kernel, shared (runc); --runtime-class gvisor puts gVisor in front of it")),
    ]
    cred_gaps = [c.name for c in policy.credentials if c.mask_file]
    if cred_gaps:
        items.append(R.Item("credential files", ", ".join(cred_gaps), N,
                            "masked files are not rendered into the pod: the agent gets the placeholder variable "
                            "only"))
    if policy.endpoints:
        items.append(R.Item("base-URL endpoints", ", ".join(e.name for e in policy.endpoints), N,
                            "not rendered: clients use the proxy variables"))
    if fs.workspace in ("copy", "overlay", "tmpfs"):
        items.append(R.Item("workspace mode", fs.workspace, N if fs.workspace == "overlay" else P,
                            "the workspace is a volume; no review-then-apply on Kubernetes"
                            if fs.workspace == "overlay" else "an emptyDir (its writes vanish with the pod)"))
    for key, label in R.LIMIT_FIELDS.items():
        value = getattr(limits, key)
        if value is None:
            continue
        if key in ("memory", "cpus"):
            shown = quantity_bytes(value) if key == "memory" else f"{value:g}"
            items.append(R.Item(label, shown, E, "resources.limits (and requests)"))
        elif key == "timeout":
            if opts.format == "pod":
                items.append(R.Item(label, f"{value:g} s", E, "activeDeadlineSeconds"))
            else:
                items.append(R.Item(label, f"{value:g} s", N, "a warm sandbox's clock starts before its claim: set "
                                    "the SandboxClaim's lifecycle.shutdownTime"))
        elif key == "pids":
            items.append(R.Item(label, str(value), N, "the kubelet's podPidsLimit is node-wide, not per pod"))
        else:
            items.append(R.Item(label, str(value), N, "no per-container rlimits in Kubernetes"))
    if tls:
        items.append(R.Item("TLS termination", "corral's CA", E, "the CA key in a Secret mounted only in the proxy; "
                            "the agent trusts the certificate (an initContainer adds it to the image's bundle)"))
    return R.Report("k8s" + (f"/{opts.runtime_class}" if opts.runtime_class else ""), tuple(items))


# ---------------------------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------------------------


def to_yaml(documents) -> str:
    """One YAML document per manifest; multi-line strings as literal blocks."""
    try:
        import yaml
    except ImportError:
        from ..errors import SetupError

        raise SetupError("corral k8s needs PyYAML to write manifests", "pip install 'corral[k8s]' "
                         "(scripts/install.sh installs it)") from None

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value):
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump_all(list(documents), Dumper=Dumper, sort_keys=False, default_flow_style=False,
                         allow_unicode=True, width=120)
