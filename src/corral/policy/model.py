"""The policy value types.

A `Policy` is what the user asked for, after validation and with every path made absolute
(`~` and relative paths expanded against the launch context), but before looking at the
filesystem. It is immutable and has no behaviour beyond `replace`-style helpers; turning it
into mounts is `sandbox.plan`'s job.
"""

from __future__ import annotations

from .._values import field, frozen, replace


@frozen
class PathRule:
    """One filesystem entry: a literal path or a gitignore-style glob (`**/*.pem`)."""

    path: str  # absolute (or, for globs, an absolute pattern such as /work/proj/**/*.pem)
    glob: bool = False
    origin: str = field(default="", compare=False)  # where it came from, for messages: "<file>:filesystem.denyRead[0]", "<built-in>"


@frozen
class FilesystemPolicy:
    deny_read: tuple[PathRule, ...] = ()
    allow_read: tuple[PathRule, ...] = ()
    allow_write: tuple[PathRule, ...] = ()
    deny_write: tuple[PathRule, ...] = ()
    allow_git_config: bool = False
    # Deny reads of well-known credential locations (~/.ssh, ~/.aws, ...) on top of deny_read.
    deny_credentials: bool = True
    # Deny reads of secret files found in the workspace (any depth) and home (`corral scan`):
    # True checks names and contents on every run (new and changed files are read; the rest
    # comes from a stat-keyed cache); "names" checks names on every run and takes content
    # findings from the last full scan (for very large trees); False turns it off.
    deny_secrets: bool | str = True
    # How the working directory is seen: bind | ro | tmpfs | copy | overlay (WORKSPACE_MODES).
    workspace: str = "bind"
    # /tmp writable inside through an overlay whose writes vanish with the run (False: read-only).
    tmp_overlay: bool = True


WORKSPACE_MODES = ("bind", "ro", "tmpfs", "copy", "overlay")


@frozen
class ParentProxy:
    """A corporate proxy that corral's own upstream connections go through (CONNECT).

    `no_proxy` entries follow the NO_PROXY conventions (see `policy.upstream.bypasses`): `*`,
    names (`corp`, `.corp`, `*.corp`: the name and every name under it), IP addresses and CIDR
    ranges; a `:port` is ignored. With `loopback_direct`, localhost and loopback addresses are
    always reached directly: a corporate proxy's loopback is not the launcher's."""

    http: str | None = None  # "http://proxy.corp:3128"
    https: str | None = None
    no_proxy: tuple[str, ...] = ()  # destinations reached directly
    loopback_direct: bool = True
    origin: str = field(default="", compare=False)  # "HTTPS_PROXY", "<file>:network.parent_proxy"

    @property
    def url(self) -> str | None:
        """The one URL used: corral tunnels every upstream connection with CONNECT, so the
        HTTPS proxy is preferred, as clients do for CONNECT."""
        return self.https or self.http

    def for_host(self, host: str) -> tuple[str, int] | None:
        """(proxy host, port) for a connection to canonical `host`, or None to dial it directly."""
        from .upstream import bypasses, split_proxy_url

        url = self.url
        if not url or bypasses(self.no_proxy, host, self.loopback_direct):
            return None
        return split_proxy_url(url)[:2]

    def authorization(self) -> bytes | None:
        """`Proxy-Authorization` for the parent proxy, from user:password in its URL (or None)."""
        url = self.url
        if not url:
            return None
        from .upstream import split_proxy_url

        userinfo = split_proxy_url(url)[2]
        if userinfo is None:
            return None
        import base64
        from urllib.parse import unquote

        user, _, password = userinfo.partition(":")
        return b"Basic " + base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode())


@frozen
class TlsPolicy:
    """TLS termination: the proxy reads (and may rewrite) HTTPS to the terminated hosts.

    A host is terminated when `terminate` covers it (`"*"`: every allowed host) or a credential
    is bound to it, and `exclude` does not cover it; everything else stays an opaque tunnel."""

    terminate: tuple[str, ...] = ()  # host patterns; ("*",) = all
    exclude: tuple[str, ...] = ()  # pinned / mTLS hosts: opaque tunnels under the domain rules
    ca: str = "user"  # "user" (per-user CA under the XDG data dir) | "ephemeral" | "files"
    ca_cert: str | None = None  # with ca = "files"
    ca_key: str | None = None
    extra_ca: tuple[str, ...] = ()  # PEM files trusted inside the sandbox and for upstreams
    max_tunnels: int = 256  # terminated connections at once
    handshake_timeout: float = 10.0  # seconds
    # Also terminate the hosts credentials and HTTP rules apply to. srt settings without
    # tlsTerminate turn it off: srt then injects over plain HTTP only (allowPlaintextInject).
    auto: bool = True

    @property
    def enabled(self) -> bool:
        return bool(self.terminate)


@frozen
class CredentialSpec:
    """A credential the sandbox uses without holding it (resolved at launch, never stored).

    Exactly one source: `from_env` (a variable of the launcher's environment), `from_file` (a
    file; with `extract`, the spans regex group 1 captures), `from_command` (argv; its stdout).
    Inside the sandbox, `env` (when set) holds a placeholder, and `mask_file` (when set) is
    shown as a read-only copy with placeholders instead of the secret(s)."""

    name: str  # identifier in messages and audit events
    hosts: tuple[str, ...]  # host patterns the value may be sent to
    from_env: str | None = None
    from_file: str | None = None
    from_command: tuple[str, ...] = ()
    extract: str | None = None  # regex; group 1 is the secret (every distinct capture)
    on_no_match: str = "deny"  # extract matched nothing: "deny" (withhold) | "warn" (pass real value) | "error"
    env: str | None = None  # variable inside the sandbox holding the placeholder (None: none)
    env_template: str | None = None  # the variable's full value with `extract` spans masked (env source)
    mask_file: str | None = None  # file shown inside with placeholders
    header: str | None = None  # "x-api-key: {value}"; None with basic_user None: swap where the client put it
    basic_user: str | None = None  # Authorization: Basic base64(basic_user:value)
    in_body: bool = False
    allow_plaintext: bool = False
    origin: str = field(default="", compare=False)  # "<file>:credentials.envVars[0]"


@frozen
class Endpoint:
    """A base-URL endpoint: plain HTTP inside the sandbox, verified TLS to `upstream`."""

    name: str
    upstream: str  # "https://api.anthropic.com" (a path prefix is kept)
    credential: str | None = None  # a CredentialSpec name, bound to the upstream's host
    env: str | None = None  # variable set inside to the endpoint's base URL
    origin: str = field(default="", compare=False)


@frozen
class NetworkPolicy:
    # Empty allowed_domains and proxy = False: the sandbox has no network at all.
    allowed_domains: tuple[str, ...] = ()
    denied_domains: tuple[str, ...] = ()
    denied_reasons: tuple[tuple[str, str], ...] = ()  # deniedDomains entry -> words for the block
    denied_addresses: tuple[str, ...] = ()  # IPs/CIDRs an allowed name must never resolve to
    strict_allowlist: bool = False  # refuse run-time allowances (Sandbox.allow_domain)
    parent_proxy: ParentProxy | None = None
    # Fill what parent_proxy does not say from the launcher's HTTPS_PROXY/HTTP_PROXY/NO_PROXY
    # (policy.upstream.with_environment); native `parent_proxy = false` or a table turns it off.
    parent_proxy_env: bool = True
    # Names whose local resolution is trusted even when private or loopback (split-horizon DNS).
    trust_resolution: tuple[str, ...] = ()
    allow_presets: tuple[str, ...] = ()  # preset names (policy.presets); their domains are in allowed_domains
    transparent: bool = True  # redirect programs that ignore the proxy variables
    proxy: bool = False  # start the proxy even with nothing allowed (audit what is tried)
    audit_log: str | None = None  # None: $XDG_STATE_HOME/corral/audit.jsonl; "": no log
    allow_unix_sockets: bool = False  # lift the seccomp block on socket(AF_UNIX)
    tls: TlsPolicy = field(default_factory=TlsPolicy)
    http_rules: tuple[str, ...] = ()  # httprules compact strings: "deny POST github.com/*/*.git/git-receive-pack"
    require_host_match: bool = True  # terminated requests: Host must agree with SNI/CONNECT (else 421)
    refuse_opaque_tunnels: bool = False  # refuse CONNECTs that are not terminated TLS
    strip_response_headers: tuple[str, ...] = ()
    srt_words: bool = field(default=False, compare=False)  # read from srt JSON: refusals name srt keys

    @property
    def enabled(self) -> bool:
        return bool(self.allowed_domains) or self.proxy


@frozen
class ProcessPolicy:
    allow_nested_userns: bool = False
    # When launched as root: run the sandbox as this unprivileged host uid/gid instead.
    run_as: tuple[int, int] | None = None
    bwrap_path: str | None = None
    unset_env: tuple[str, ...] = ()  # variables removed from the sandbox's environment
    set_env: tuple[tuple[str, str], ...] = ()  # variables set inside (after unset)
    # Variables that look like credentials are withheld (policy.secret_env); these name patterns
    # (`*` any run, case-insensitive) pass whatever they look like; `secret_env` withholds more.
    pass_env: tuple[str, ...] = ()
    secret_env: tuple[str, ...] = ()


@frozen
class Limits:
    """Resource limits for one run ([limits]); None = not limited. How each is enforced for
    the launching user (cgroup, rlimit, timer) is decided by `sandbox.limits.plan_limits`."""

    memory: int | None = None  # bytes, the sandbox's total (cgroup) or per process (RLIMIT_AS fallback)
    pids: int | None = None  # processes of the command at once
    cpus: float | None = None  # CPU share (1.5 = one and a half CPUs' time)
    timeout: float | None = None  # wall-clock seconds; then SIGTERM, SIGKILL after a grace; exit 124
    nofile: int | None = None  # open files per process (RLIMIT_NOFILE)
    fsize: int | None = None  # largest file a process may write (RLIMIT_FSIZE)
    strict: bool = False  # refuse to run when a limit cannot be fully enforced

    @property
    def any(self) -> bool:
        return any(getattr(self, k) is not None for k in LIMIT_KEYS)


LIMIT_KEYS = ("memory", "pids", "cpus", "timeout", "nofile", "fsize")

# Branches refused to pushes unless `push_protected` ([git]); full ref patterns.
DEFAULT_PROTECTED = ("refs/heads/main", "refs/heads/master", "refs/heads/release/*")


@frozen
class GitRepository:
    """One `[git] repositories` entry: which repositories it covers and what may be pushed
    to them. Ref patterns are full (`refs/heads/agent/*`); `*` matches any run of characters,
    `/` included. Decisions on it are `proxy.gitpolicy`'s."""

    match: str  # "host/owner/repo" pattern, lower-case, without a trailing ".git"
    push: tuple[str, ...] = ()  # refs (not tags) that may be created or updated
    tags: tuple[str, ...] = ()  # tag refs that may be pushed (("refs/tags/*",): every tag)
    delete: bool = False  # deletions of refs that may otherwise be pushed
    protected: tuple[str, ...] = DEFAULT_PROTECTED  # refused whatever `push` says...
    push_protected: bool = False  # ...unless this is true
    origin: str = field(default="", compare=False)  # "git.repositories[0]"


@frozen
class GitPolicy:
    """`[git]`: the repositories smart-HTTP git may reach through the proxy, and per repository
    the refs a push may update (enforced on the requests the proxy reads in clear)."""

    repositories: tuple[GitRepository, ...] = ()
    fetch_unlisted: bool = False  # clones and fetches of repositories not listed pass


@frozen
class BackendPolicy:
    """Which wall enforces the policy (`backend = "gvisor"`), and how strictly (`strict = true`:
    refuse a run when the backend cannot enforce a field; the enforcement report lists them)."""

    name: str = "bwrap"
    strict: bool = False
    image: str | None = None  # [container] image: the image a container engine runs (or an OCI rootfs dir)
    # `backend = "auto"` may fall back to the weaker landlock wall when bubblewrap cannot run
    # (`allow_weaker = true`, `--allow-weaker`); `allowed_by` names where that was allowed.
    allow_weaker: bool = False
    allowed_by: str = field(default="", compare=False)
    origin: str = field(default="", compare=False)


@frozen
class Policy:
    filesystem: FilesystemPolicy = field(default_factory=FilesystemPolicy)
    network: NetworkPolicy = field(default_factory=NetworkPolicy)
    process: ProcessPolicy = field(default_factory=ProcessPolicy)
    # The files this policy was read from; they are protected from writes like rc files.
    sources: tuple[str, ...] = ()
    credentials: tuple[CredentialSpec, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    limits: Limits = field(default_factory=Limits)
    git: GitPolicy | None = None  # [git]: the ref policy of git pushes (native TOML only)
    backend: BackendPolicy = field(default_factory=BackendPolicy)

    def with_filesystem(self, **changes) -> "Policy":
        return replace(self, filesystem=replace(self.filesystem, **changes))

    def with_network(self, **changes) -> "Policy":
        return replace(self, network=replace(self.network, **changes))

    def with_process(self, **changes) -> "Policy":
        return replace(self, process=replace(self.process, **changes))

    def with_limits(self, **changes) -> "Policy":
        return replace(self, limits=replace(self.limits, **changes))

    def with_backend(self, **changes) -> "Policy":
        return replace(self, backend=replace(self.backend, **changes))


@frozen
class LaunchContext:
    """Where and as whom a policy is applied; used to expand `~` and relative paths."""

    cwd: str
    home: str
    uid: int
    gid: int
