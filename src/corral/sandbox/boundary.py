"""The credential boundary of one launch: real values for the proxy, placeholders for the sandbox.

`resolve` reads each credential's source (the launcher's environment, a file, a command's
output), gives it a placeholder that is new every run, and returns a `Boundary`:

- what the sandbox sees: variables (placeholders, endpoint base URLs, CA-bundle paths),
  variables withheld, files shown instead of the real ones (masked copies, the trust bundle
  mounted over the system bundle paths);
- what the proxy gets: the `Injector` (real values, in memory only), the TLS terminator, the
  HTTP rules and the endpoints.

The real values never enter a Plan, an argv, an environment or a file: the Plan carries the
placeholders only, and the proxy (a forked child of the launcher, or a thread of the library)
holds the Injector.
"""

from __future__ import annotations

import os

from ..errors import PolicyError, SetupError

COMMAND_TIMEOUT = 30.0


class Boundary:
    def __init__(self):
        self.env: dict[str, str] = {}  # set inside the sandbox
        self.unset: list[str] = []  # withheld from the sandbox
        self.files: list[tuple[str, str, str]] = []  # (path, content shown instead, why), read-only
        self.hide: list[str] = []  # files made unreadable: credential source files, withheld masks
        self.warnings: list[str] = []
        self.injector = None
        self.bindings: dict = {}  # placeholder -> proxy.credentials.Credential
        self.terminator = None
        self.gate = None
        self.endpoints: dict[int, object] = {}  # listen port -> proxy.endpoints.Endpoint

    @property
    def active(self) -> bool:
        return bool(self.bindings or self.terminator or self.gate or self.endpoints)

    def configure(self, proxy) -> None:
        """Hand the proxy what it enforces."""
        proxy.gate = self.gate
        proxy.terminator = self.terminator
        proxy.endpoints = dict(self.endpoints)

    def scrub(self, text: str) -> str:
        """`text` with every real value replaced by its placeholder: a value the launcher's
        shell expanded into an argument, or that sits in another variable too, is not let in."""
        from ..proxy.credentials import MIN_REDACT_LENGTH

        for placeholder, cred in self.bindings.items():
            # A very short value would also match innocent text (a PATH entry, a flag).
            if len(cred.value) >= MIN_REDACT_LENGTH and cred.value in text:
                text = text.replace(cred.value, placeholder)
        return text


def needed(policy) -> bool:
    net = policy.network
    return bool(policy.credentials or policy.endpoints or net.tls.enabled or net.http_rules
                or getattr(policy, "git", None) is not None)


def resolve(policy, environ: dict, ctx, placeholder=None, cas: dict | None = None) -> Boundary:
    """Read the credentials' sources and set up TLS; raise PolicyError/SetupError naming the problem.

    `placeholder`: name -> placeholder (default `new_placeholder`, random per run; a late-bound
    session's are derived, `credentials.session_placeholder`). `cas`: a cache of certificate
    authorities shared by several calls (the sessions of one proxy), so a CA's files are read once."""
    from ..proxy.credentials import MIN_REDACT_LENGTH, Credential, Injector, new_placeholder

    if placeholder is None:
        placeholder = new_placeholder
    b = Boundary()
    net = policy.network
    for spec in policy.credentials:
        text = _read_source(spec, environ, b)
        if text is None:
            if spec.from_env or spec.from_file:
                where = f"${spec.from_env}" if spec.from_env else spec.from_file
                b.warnings.append(f"corral: warning: credential {spec.name}: {where} is not set here, so nothing "
                                  f"is injected for {', '.join(spec.hosts) or 'its hosts'} (requests there go "
                                  "without it; set it in the launcher's environment)")
            continue
        values, shown = _extract(spec, text, b)
        if values is None:
            continue
        names = [spec.name] + [f"{spec.name}_{i}" for i in range(2, len(values) + 1)]
        placeholders = {}
        for name, value in zip(names, values):
            header = spec.header
            if header is None and spec.basic_user is None:
                header = "*"  # swap the placeholder wherever the client puts it
            try:
                cred = Credential(name, value, spec.hosts, header=header, basic_user=spec.basic_user,
                                  in_body=spec.in_body, allow_plaintext=spec.allow_plaintext, family=spec.name)
            except ValueError as exc:
                raise PolicyError(spec.origin or "<policy>", f"credentials.{spec.name}", None, str(exc)) from None
            stand_in = placeholder(name)
            b.bindings[stand_in] = cred
            if len(value) < MIN_REDACT_LENGTH:
                b.warnings.append(f"corral: warning: credential {name} is shorter than {MIN_REDACT_LENGTH} "
                                  "characters: it is injected, but responses echoing it are not redacted")
            placeholders[value] = stand_in
        masked = shown(placeholders)
        if spec.env:
            b.env[spec.env] = masked if spec.from_env else placeholders[values[0]]
        if spec.mask_file:
            b.files.append((spec.mask_file, masked, f"credential {spec.name} masked: placeholders, not the secret"))
    if b.bindings:
        try:
            b.injector = Injector(b.bindings)
        except ValueError as exc:
            raise PolicyError(policy.sources[0] if policy.sources else "<policy>", "credentials", None, str(exc)) from None
    rules = None
    if net.http_rules:
        from ..proxy.httprules import HttpRules

        try:
            rules = HttpRules(net.http_rules)
        except ValueError as exc:
            raise PolicyError(policy.sources[0] if policy.sources else "<policy>", "network.http_rules", None,
                              str(exc)) from None
    git = None
    if getattr(policy, "git", None) is not None:
        from ..proxy.gitpolicy import GitRules

        git = GitRules(policy.git)
    if rules is not None or b.injector is not None or git is not None:
        from ..proxy.gate import Gate

        b.gate = Gate(rules, b.injector, net.require_host_match, net.strip_response_headers, git)
    elif net.strip_response_headers:
        from ..proxy.gate import Gate

        b.gate = Gate(None, None, False, net.strip_response_headers)
    if net.tls.enabled or (net.tls.auto and b.gate is not None and b.gate.inspecting):
        _setup_tls(policy, ctx, b, environ, cas)
    if policy.endpoints:
        _setup_endpoints(policy, b)
    return b


def _read_source(spec, environ: dict, b: Boundary) -> str | None:
    if spec.from_env:
        value = environ.get(spec.from_env)
        if value is None:
            return None  # nothing to protect and nothing to send
        b.unset.append(spec.from_env)  # replaced by a placeholder (in spec.env) or withheld
        return value
    if spec.from_file:
        if spec.mask_file != spec.from_file:
            b.hide.append(spec.from_file)  # the source file itself is never readable inside
        try:
            with open(spec.from_file, "rb") as fh:
                data = fh.read(1 << 20)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SetupError(f"credential {spec.name}: cannot read {spec.from_file}: {exc.strerror}",
                             "fix the file's permissions or the policy's from_file") from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise SetupError(f"credential {spec.name}: {spec.from_file} is not UTF-8 text",
                             "mask a text file, or use extract on a text one") from None
    if spec.from_command:
        import subprocess

        try:
            out = subprocess.run(list(spec.from_command), stdin=subprocess.DEVNULL, capture_output=True,
                                 timeout=COMMAND_TIMEOUT, check=False)
        except FileNotFoundError:
            raise SetupError(f"credential {spec.name}: command {spec.from_command[0]!r} not found",
                             "fix from_command in the policy") from None
        except subprocess.TimeoutExpired:
            raise SetupError(f"credential {spec.name}: command {spec.from_command[0]!r} took over "
                             f"{COMMAND_TIMEOUT:.0f} s", "check the command (is it waiting for input?)") from None
        if out.returncode != 0:
            # Its stderr is not shown: a password manager may print anything there.
            raise SetupError(f"credential {spec.name}: command {spec.from_command[0]!r} exited with "
                             f"status {out.returncode}", "run it yourself to see why")
        try:
            return out.stdout.decode("utf-8")
        except UnicodeDecodeError:
            raise SetupError(f"credential {spec.name}: command {spec.from_command[0]!r} printed non-UTF-8 "
                             "output", "fix from_command") from None
    return None


def _extract(spec, text: str, b: Boundary):
    """(the secret values, a function building the text shown inside from {value: placeholder})."""
    if not spec.extract:
        value = text.strip()
        if not value:
            return None, None
        lead = text[: len(text) - len(text.lstrip())]
        trail = text[len(text.rstrip()):]
        return [value], lambda ph: lead + ph[value] + trail
    import re

    pattern = re.compile(spec.extract)
    spans, values = [], []
    for m in pattern.finditer(text):
        if m.group(1) is None or not m.group(1):
            continue
        spans.append(m.span(1))
        if m.group(1) not in values:
            values.append(m.group(1))
    if not values:
        where = f"credential {spec.name} ({spec.origin})" if spec.origin else f"credential {spec.name}"
        if spec.on_no_match == "error":
            raise SetupError(f"{where}: extract {spec.extract!r} matched nothing", "fix the regular expression")
        if spec.on_no_match == "warn":
            b.warnings.append(f"corral: warning: {where}: extract matched nothing; the sandbox gets the "
                              "real value (onExtractNoMatch: warn)")
            if spec.from_env:
                b.unset.remove(spec.from_env)
            return None, None
        b.warnings.append(f"corral: warning: {where}: extract matched nothing; withheld from the sandbox")
        if spec.mask_file:
            b.hide.append(spec.mask_file)
        return None, None

    def shown(ph: dict) -> str:
        out, last = [], 0
        for start, end in spans:
            out.append(text[last:start])
            out.append(ph[text[start:end]])
            last = end
        out.append(text[last:])
        return "".join(out)

    return values, shown


def _setup_tls(policy, ctx, b: Boundary, environ: dict, cas: dict | None = None) -> None:
    from ..proxy.terminate import Terminator
    from ..proxy import tlsca

    tls = policy.network.tls
    where = policy.sources[0] if policy.sources else "<policy>"
    key = _ca_key(tls, ctx, environ) if cas is not None else None
    ca = cas.get(key) if key is not None else None
    if ca is not None:
        if tls.ca == "files":
            b.hide.append(tls.ca_key)
    elif tls.ca == "files":
        ca = tlsca.CertificateAuthority.from_files(tls.ca_cert, tls.ca_key)
        b.hide.append(tls.ca_key)  # with the key a sandbox could sign what sandboxes trust
    elif tls.ca == "ephemeral":
        ca = tlsca.CertificateAuthority.ephemeral()
    else:
        ca = tlsca.CertificateAuthority.load_or_create(os.path.dirname(ca_dir(ctx, environ)))
    if key is not None:
        cas[key] = ca
    for path in tls.extra_ca:
        if not os.path.isfile(path):
            raise PolicyError(where, "network.tls.extra_ca (srt: network.tlsTerminate.extraCaCertPaths)", path,
                              "no such file")
    b.terminator = Terminator(ca, tls.terminate, tls.exclude, tls.extra_ca, tls.max_tunnels,
                              tls.handshake_timeout, policy.network.refuse_opaque_tunnels)
    bundle = tlsca.trust_bundle(ca, tls.extra_ca).decode("ascii", "replace")
    bundle += "".join(c for c in _launcher_certificates(environ) if c.strip() not in bundle)
    system = [p for p in tlsca.SYSTEM_BUNDLE_PATHS if os.path.isfile(p)]
    if not system:
        raise SetupError("TLS termination needs a system CA bundle to mount the sandbox's bundle over "
                         f"(none of {', '.join(tlsca.SYSTEM_BUNDLE_PATHS)} exists)",
                         "install ca-certificates")
    for path in system:
        b.files.append((path, bundle, "CA bundle: the system's CAs and corral's (TLS termination)"))
    for name in tlsca.TRUST_ENV_VARS:
        b.env[name] = system[0]


def _ca_key(tls, ctx, environ: dict):
    """What identifies a CA for the `cas` cache (its files as they are now), or None (ephemeral)."""
    if tls.ca == "ephemeral":
        return None
    if tls.ca == "files":
        paths = (tls.ca_cert, tls.ca_key)
    else:
        from ..proxy.tlsca import CA_CERT_FILE, CA_KEY_FILE

        folder = ca_dir(ctx, environ)
        paths = (os.path.join(folder, CA_CERT_FILE), os.path.join(folder, CA_KEY_FILE))
    stamp = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            return None  # read (or made) by the CA's own code, which says what is wrong
        stamp.append((os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns))
    return (tls.ca, *stamp)


def _launcher_certificates(environ: dict) -> list[str]:
    """The certificates the launcher's own CA variables add (a corporate or test CA): the
    sandbox's variables now point at corral's bundle, so what they trusted goes into it."""
    from ..proxy import tlsca

    seen = {os.path.realpath(p) for p in tlsca.SYSTEM_BUNDLE_PATHS if os.path.isfile(p)}
    out = []
    for name in tlsca.TRUST_ENV_VARS:
        path = environ.get(name)
        if not path or not os.path.isfile(path) or os.path.realpath(path) in seen:
            continue
        seen.add(os.path.realpath(path))
        try:
            with open(path, encoding="ascii", errors="replace") as fh:
                text = fh.read(8 << 20)
        except OSError:
            continue
        out += _pem_certificates(text)
    return out


def _pem_certificates(text: str) -> list[str]:
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    blocks = []
    at = text.find(begin)
    while at != -1:
        stop = text.find(end, at)
        if stop == -1:
            break
        blocks.append(text[at:stop + len(end)] + "\n")
        at = text.find(begin, stop)
    return blocks


def ca_dir(ctx, environ) -> str:
    """Where the per-user CA lives (build_plan denies the same path to every sandbox)."""
    base = environ.get("XDG_DATA_HOME") or os.path.join(ctx.home, ".local", "share")
    return os.path.join(base, "corral", "ca")


def _setup_endpoints(policy, b: Boundary) -> None:
    from urllib.parse import urlsplit

    from ..proxy.endpoints import FIRST_PORT, Endpoint
    from ..proxy.terminate import Terminator

    tls = policy.network.tls
    upstream_tls = b.terminator or Terminator(None, (), (), tls.extra_ca, tls.max_tunnels, tls.handshake_timeout)
    for i, ep in enumerate(policy.endpoints):
        url = urlsplit(ep.upstream)
        port = url.port or 443
        listen = FIRST_PORT + i
        b.endpoints[listen] = Endpoint(ep.name, url.hostname, port, listen, upstream_tls)
        if ep.env:
            b.env[ep.env] = f"http://127.0.0.1:{listen}{url.path.rstrip('/')}"
