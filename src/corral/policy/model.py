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


@frozen
class NetworkPolicy:
    # Until the egress proxy exists, any allowance here is refused at load time.
    allowed_domains: tuple[str, ...] = ()
    denied_domains: tuple[str, ...] = ()
    allow_unix_sockets: bool = False  # lift the seccomp block on socket(AF_UNIX)


@frozen
class ProcessPolicy:
    allow_nested_userns: bool = False
    # When launched as root: run the sandbox as this unprivileged host uid/gid instead.
    run_as: tuple[int, int] | None = None
    bwrap_path: str | None = None
    unset_env: tuple[str, ...] = ()  # variables removed from the sandbox's environment
    set_env: tuple[tuple[str, str], ...] = ()  # variables set inside (after unset)


@frozen
class Policy:
    filesystem: FilesystemPolicy = field(default_factory=FilesystemPolicy)
    network: NetworkPolicy = field(default_factory=NetworkPolicy)
    process: ProcessPolicy = field(default_factory=ProcessPolicy)
    # The files this policy was read from; they are protected from writes like rc files.
    sources: tuple[str, ...] = ()

    def with_filesystem(self, **changes) -> "Policy":
        return replace(self, filesystem=replace(self.filesystem, **changes))

    def with_network(self, **changes) -> "Policy":
        return replace(self, network=replace(self.network, **changes))

    def with_process(self, **changes) -> "Policy":
        return replace(self, process=replace(self.process, **changes))


@frozen
class LaunchContext:
    """Where and as whom a policy is applied; used to expand `~` and relative paths."""

    cwd: str
    home: str
    uid: int
    gid: int
