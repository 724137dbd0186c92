"""`corral k8s render` and `corral k8s session`: the policy as Kubernetes manifests, and a session
bound late at the egress proxy. This edge reads the policy, the CA and the environment; the
manifests come from the pure renderer `backends/k8s.py`."""

from __future__ import annotations

import os
import sys

USAGE = """\
usage: corral k8s render [--settings FILE] [--image IMAGE] [--runtime-class gvisor|NAME]
                         [--namespace NS] [--format pod|agent-sandbox] [--name NAME]
                         [--proxy-image IMAGE] [--proxy-replicas N] [--proxy-address HOST:PORT]
                         [--warm-pool N] [--workspace-claim PVC] [--uid UID]
                         [--seccomp runtime-default|corral] [--egress-cidr CIDR]...
                         [--private-cidr CIDR]... [--report]
                         [-- COMMAND [ARGS...]]
       corral k8s session SESSION --proxy-address HOST:PORT --env-file PATH [--settings FILE]
                         [--name NAME] [--namespace NS]
  render: the policy as manifests on stdout (YAML, one document each): the agent (a Pod, or an
  agent-sandbox SandboxTemplate and, with --warm-pool, a SandboxWarmPool) with no credential, a
  restricted securityContext and no route but the egress proxy; the proxy (Deployment + Service
  running `corral proxy --sessions`, the policy in a ConfigMap, the credentials in a Secret
  mounted only there); NetworkPolicies; a RuntimeClass for gVisor. The Secrets are never
  rendered: the commands that create them from your environment are printed on stderr.
  session: a session for a warm agent (agent-sandbox): its policy for the proxy's sessions
  ConfigMap on stdout (apply with `kubectl apply --server-side --field-manager corral-session-
  SESSION -f -`), and the agent's variables (the session's proxy password, the placeholders)
  written to --env-file (mode 0600) for the harness to pass to the agent's commands.

render options:
  -s, --settings FILE      the policy (srt JSON or native TOML; default: yours or corral's);
                           relative paths and "." mean the directory you render from
  --image IMAGE            the agent's image (or [container] image in the policy)
  --format pod|agent-sandbox   a Pod bound to one session (default), or a SandboxTemplate
                           whose pods hold no session (bind them with `corral k8s session`)
  --warm-pool N            agent-sandbox: a SandboxWarmPool of N pre-started sandboxes
  --runtime-class NAME     gvisor (the RuntimeClass is rendered, handler runsc) or an existing one
  --namespace NS, --name NAME   where, and the prefix of every object (default corral)
  --proxy-image IMAGE      an image with corral on PATH (scripts/build-k8s-image.sh)
  --proxy-replicas N       the proxy Deployment's replicas (default 1)
  --proxy-address IP:PORT  where the agent reaches the proxy (default: the proxy Service, by
                           its cluster IP from Kubernetes' service variables; no DNS needed)
  --workspace-claim PVC    the workspace volume (default an emptyDir)
  --uid UID                the agent's uid (default 1000; never 0)
  --seccomp runtime-default|corral   the runtime's default profile, or corral's deny list as
                           a Localhost profile (ConfigMap NAME-seccomp; install it on the nodes)
  --egress-cidr CIDR       a private range the proxy may reach (repeatable)
  --private-cidr CIDR      a range of your cluster's that is not a usual private one (pods,
                           services, nodes): the proxy never reaches it (repeatable)
  --report                 print the enforcement report on stderr
"""

VALUES = {"--settings", "-s", "--policy", "--image", "--runtime-class", "--namespace", "-n", "--format", "--name",
          "--proxy-image", "--proxy-replicas", "--proxy-address", "--warm-pool", "--workspace-claim", "--uid",
          "--seccomp", "--egress-cidr", "--private-cidr", "--env-file"}
FLAGS = {"--report"}


def main(args: list[str]) -> int:
    from .errors import CommandLineError

    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    if args[0] == "render":
        return render_main(args[1:])
    if args[0] == "session":
        return session_main(args[1:])
    raise CommandLineError(f"corral k8s {args[0]!r}: expected render or session")


def _parse(args: list[str]) -> tuple[dict, list[str], tuple[str, ...]]:
    """(options, positional words, the command after --)."""
    from .errors import CommandLineError

    opts: dict = {"--egress-cidr": [], "--private-cidr": []}
    words: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return opts, words, tuple(args[i + 1:])
        if arg in ("-h", "--help"):
            sys.stdout.write(USAGE)
            raise SystemExit(0)
        name, eq, inline = arg.partition("=")
        if name in FLAGS and not eq:
            opts[name] = True
        elif name in VALUES:
            if not eq:
                if i + 1 >= len(args):
                    raise CommandLineError(f"option {name} needs a value")
                i += 1
                inline = args[i]
            if name in ("--egress-cidr", "--private-cidr"):
                opts[name].append(inline)
            else:
                opts[name] = inline
        elif arg.startswith("-"):
            raise CommandLineError(f"unknown option {arg!r}")
        else:
            words.append(arg)
        i += 1
    return opts, words, ()


def _int(opts: dict, name: str, default, low: int = 0):
    from .errors import CommandLineError

    value = opts.get(name)
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise CommandLineError(f"{name} {value!r}: expected a whole number") from None
    if n < low:
        raise CommandLineError(f"{name} {value!r}: expected a number >= {low}")
    return n


def _dns_label(value: str, flag: str, most: int = 42) -> str:
    """A DNS label; object names get at most 42 characters (they prefix '-proxy-sessions')."""
    import re

    from .errors import CommandLineError

    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,%d}[a-z0-9])?" % (most - 2), value):
        raise CommandLineError(f"{flag} {value!r}: expected a DNS label of at most {most} characters (lowercase "
                               "letters, digits and '-', starting and ending with a letter or digit)")
    return value


def _cidr(value: str, flag: str = "--egress-cidr") -> str:
    import ipaddress

    from .errors import CommandLineError

    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise CommandLineError(f"{flag} {value!r}: expected an address range such as 10.20.0.0/16") from None


def _address(value: str | None, flag: str = "--proxy-address") -> str | None:
    from .errors import CommandLineError

    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandLineError(f"{flag} {value!r}: expected HOST:PORT (the agent has no DNS: use an IP address)")
    return value


def _load(opts: dict):
    from .policy import load
    from .runopts import launch_context

    ctx = launch_context()
    path = opts.get("--settings") or opts.get("-s") or opts.get("--policy")
    return load.load(path, ctx), ctx


def _ca_inputs(policy, name: str, namespace: str | None):
    """Read corral's CA for the cluster: the policy's CA files, or one made for this deployment
    under $XDG_DATA_HOME/corral/k8s/ (never the per-user CA that local sandboxes trust)."""
    from .backends.k8s import Inputs
    from .errors import SetupError
    from .proxy import tlsca

    tls = policy.network.tls
    if tls.ca == "files":
        cert_path, key_path = tls.ca_cert, tls.ca_key
        tlsca.CertificateAuthority.from_files(cert_path, key_path)  # an unusable CA is refused now
    else:
        base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
        data_dir = os.path.join(base, "corral", "k8s", f"{namespace or 'default'}.{name}")
        tlsca.CertificateAuthority.load_or_create(data_dir)
        cert_path = os.path.join(data_dir, "ca", tlsca.CA_CERT_FILE)
        key_path = os.path.join(data_dir, "ca", tlsca.CA_KEY_FILE)
    try:
        with open(cert_path, encoding="ascii") as fh:
            pem = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SetupError(f"cannot read the CA certificate {cert_path}: {exc}", "check the policy's tls.ca_cert") from None
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise SetupError(f"{cert_path} is not a PEM certificate", "give a PEM file as tls.ca_cert")
    return Inputs(ca_cert_pem=pem, ca_cert_path=cert_path, ca_key_path=key_path, extra_ca=_read_extra_ca(policy))


def _read_extra_ca(policy) -> tuple[tuple[str, str], ...]:
    from .errors import SetupError

    extra = []
    for path in policy.network.tls.extra_ca:
        try:
            with open(path, encoding="ascii") as fh:
                extra.append((path, fh.read()))
        except (OSError, UnicodeDecodeError) as exc:
            raise SetupError(f"cannot read extra CA {path}: {exc}", "fix network.tls.extra_ca") from None
    return tuple(extra)


def render_main(args: list[str]) -> int:
    from .backends import k8s
    from .errors import CommandLineError

    opts, words, command = _parse(args)
    if words:
        raise CommandLineError(f"unexpected {words[0]!r} (put the agent's command after --)")
    if "--env-file" in opts:
        raise CommandLineError("--env-file belongs to `corral k8s session`")
    policy, ctx = _load(opts)
    image = opts.get("--image") or policy.backend.image
    if not image:
        raise CommandLineError("--image is required (the agent's image; or set [container] image in the policy)")
    name = _dns_label(opts.get("--name", "corral"), "--name")
    namespace = opts.get("--namespace") or opts.get("-n")
    if namespace is not None:
        _dns_label(namespace, "--namespace", 63)
    runtime_class = opts.get("--runtime-class")
    if runtime_class is not None:
        for part in runtime_class.split("."):  # a DNS subdomain
            _dns_label(part, "--runtime-class", 63)
    try:
        options = k8s.Options(
            image=image, name=name, namespace=namespace, format=opts.get("--format", "pod"),
            runtime_class=runtime_class, proxy_image=opts.get("--proxy-image", k8s.Options.proxy_image),
            proxy_replicas=_int(opts, "--proxy-replicas", 1, 1), proxy_address=_address(opts.get("--proxy-address")),
            warm_pool=_int(opts, "--warm-pool", None), workspace_claim=opts.get("--workspace-claim"),
            uid=_int(opts, "--uid", 1000, 1), seccomp=opts.get("--seccomp", "runtime-default"),
            egress_cidrs=tuple(_cidr(c) for c in opts["--egress-cidr"]),
            private_cidrs=tuple(_cidr(c, "--private-cidr") for c in opts["--private-cidr"]), command=command)
        inputs = _ca_inputs(policy, name, namespace) if k8s.needs_ca(policy, options) else k8s.Inputs()
        out = k8s.render(policy, ctx, options, inputs)
    except k8s.RenderError as exc:
        raise CommandLineError(str(exc)) from None
    rep = out.report
    if opts.get("--report"):
        for line in rep.lines():
            sys.stderr.write(line + "\n")
    if rep.gaps():
        sys.stderr.write(rep.gaps_line("`corral k8s render --report`", "refuses to render them") + "\n")
        if policy.backend.strict:
            sys.stderr.write("corral: strict = true: refusing to render manifests that do not enforce the whole "
                             "policy (fix the gaps above, or set strict = false)\n")
            return 125
    sys.stdout.write(k8s.to_yaml(out.documents))
    for secret in out.secrets:
        sys.stderr.write(f"corral k8s: create Secret {secret.name} ({secret.why}) before applying, in bash:\n"
                         f"  {secret.command}\n")
    for note in out.notes:
        sys.stderr.write(f"corral k8s: {note}\n")
    if "--proxy-image" not in opts:
        sys.stderr.write(f"corral k8s: the proxy runs image {options.proxy_image}, a name to replace: build it with "
                         "scripts/build-k8s-image.sh, push it, and pass --proxy-image\n")
    kinds = ", ".join(d["kind"] for d in out.documents)
    sys.stderr.write(f"corral k8s: {len(out.documents)} documents ({kinds}); "
                     + ("create the Secrets above, then " if out.secrets else "")
                     + "apply them with kubectl apply -f FILE\n")
    return 0


def session_main(args: list[str]) -> int:
    import hashlib
    import secrets as random

    from .backends import k8s
    from .errors import CommandLineError

    opts, words, command = _parse(args)
    if len(words) != 1 or command:
        raise CommandLineError("expected one session name: corral k8s session SESSION --proxy-address HOST:PORT "
                               "--env-file PATH")
    from .proxy.sessions import NAME

    session = words[0]
    if not NAME.fullmatch(session):
        raise CommandLineError(f"session {session!r}: expected a DNS label (lowercase letters, digits and '-')")
    address = _address(opts.get("--proxy-address"))
    if address is None:
        raise CommandLineError("--proxy-address HOST:PORT is required: the agent has no DNS, so give the proxy "
                               "Service's cluster IP (kubectl get service corral-proxy -o "
                               "jsonpath='{.spec.clusterIP}'):3128")
    env_path = opts.get("--env-file")
    if not env_path:
        raise CommandLineError("--env-file PATH is required: the agent's variables hold the session's proxy "
                               "password, which corral never prints")
    name = _dns_label(opts.get("--name", "corral"), "--name")
    namespace = opts.get("--namespace") or opts.get("-n")
    if namespace is not None:
        _dns_label(namespace, "--namespace", 63)
    policy, ctx = _load(opts)
    tls = k8s.terminates_tls(policy)
    password = random.token_urlsafe(24)
    token_line = "sha256:" + hashlib.sha256(password.encode()).hexdigest()
    extra = tuple(k8s.extra_ca_name(pem) for _, pem in _read_extra_ca(policy)) if tls else ()
    data = {f"{session}.toml": k8s.proxy_policy_toml(policy, ctx, tls, extra), f"{session}.token": token_line + "\n"}
    meta = {"name": f"{name}-proxy-sessions"}
    if namespace:
        meta["namespace"] = namespace
    env = session_environment(policy, session, password, token_line, address)
    fd = os.open(env_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(f"# corral session {session}: pass these to the agent's commands (the proxy password is here)\n")
        fh.writelines(f"{k}={v}\n" for k, v in env)
    sys.stdout.write(k8s.to_yaml([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}]))
    sys.stderr.write(f"corral k8s: session {session}: apply with `kubectl apply --server-side --field-manager "
                     f"corral-session-{session} -f -`; the agent's variables are in {env_path} (mode 0600); "
                     "end the session by deleting its two keys from the ConfigMap\n")
    sys.stderr.write("corral k8s: the proxy answers 407 for this session until the kubelet has updated its "
                     "sessions volume (up to about a minute after the apply): wait for it, or retry on 407\n")
    if extra:
        sys.stderr.write(f"corral k8s: the session trusts extra CAs upstream ({', '.join(extra)}): ConfigMap "
                         f"{name}-ca must hold them (render the base policy with the same extra_ca), or the proxy "
                         "refuses the session naming the missing file\n")
    if policy.credentials:
        sys.stderr.write("corral k8s: the session's credentials come from the proxy's Secret: keys "
                         + ", ".join(c.name for c in policy.credentials) + "\n")
    return 0


def session_environment(policy, session: str, password: str, token_line: str, address: str) -> list[tuple[str, str]]:
    from urllib.parse import quote

    from .backends.k8s import proxy_variables
    from .proxy.credentials import session_placeholder

    env = proxy_variables(address, f"{quote(session, safe='')}:{quote(password, safe='')}@")
    env += [(c.env, session_placeholder(token_line, session, c.name)) for c in policy.credentials if c.env]
    return env
