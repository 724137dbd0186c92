"""The library API: `Policy` to describe, `Sandbox` to run.

    from corral import Policy, Sandbox

    policy = Policy.load("policy.toml")          # or Policy.default(), Policy.from_srt(...)
    with Sandbox(policy) as sb:
        result = sb.run(["python3", "-c", "print(1)"], capture_output=True, text=True)

`Sandbox.run` takes the keyword arguments of `subprocess.run`. `Sandbox.wrap(argv)` returns an
argv that runs the command sandboxed when started by any process runner; its host-side
state (placeholders, the seccomp program) lives until the Sandbox is closed.
"""

from __future__ import annotations

import os

from .policy import model
from .policy.model import LaunchContext


def _context(cwd: str | None) -> LaunchContext:
    import pwd

    home = os.environ.get("HOME") or pwd.getpwuid(os.geteuid()).pw_dir
    return LaunchContext(cwd=os.path.abspath(cwd or os.getcwd()), home=os.path.normpath(home),
                         uid=os.geteuid(), gid=os.getegid())


class Policy(model.Policy):
    """A corral policy. Construct with `default()`, `load()`, `from_toml()` or `from_srt()`."""

    @classmethod
    def _wrap(cls, policy: model.Policy) -> "Policy":
        return cls(policy.filesystem, policy.network, policy.process, policy.sources, policy.credentials,
                   policy.endpoints, policy.limits)

    @classmethod
    def default(cls, cwd: str | None = None) -> "Policy":
        from .policy.defaults import default_policy

        return cls._wrap(default_policy(_context(cwd)))

    @classmethod
    def load(cls, path: str | None = None, cwd: str | None = None) -> "Policy":
        """An explicit file (TOML or srt JSON), else ~/.config/corral/policy.toml, else defaults."""
        from .policy.load import load

        return cls._wrap(load(path, _context(cwd)))

    @classmethod
    def from_toml(cls, text: str, cwd: str | None = None, source: str = "<string>") -> "Policy":
        from .policy.native import load_toml

        return cls._wrap(load_toml(text, source, _context(cwd)))

    @classmethod
    def from_srt(cls, settings, cwd: str | None = None, source: str = "<srt settings>") -> "Policy":
        """srt 0.0.83 settings, as a JSON string or an already parsed dict."""
        from .policy import srt

        ctx = _context(cwd)
        if isinstance(settings, str):
            return cls._wrap(srt.load_srt_settings(settings, source, ctx))
        return cls._wrap(srt.convert(settings, source, ctx))

    def to_toml(self, cwd: str | None = None) -> str:
        from .policy.render import to_toml

        return to_toml(self, _context(cwd))


class Sandbox:
    """Runs commands under one policy, in one working directory."""

    def __init__(self, policy: model.Policy | None = None, cwd: str | None = None, *,
                 workspace: str | None = None, session: str | None = None, output: str | None = None,
                 backend: str | None = None):
        """`workspace`: bind | ro | tmpfs | copy | overlay (default: the policy's);
        `session`: the overlay session's name (default: one per Sandbox); `output`: a
        writable results directory; `backend`: bwrap (default), runc, crun, gvisor, podman,
        docker (default: the policy's `backend`)."""
        from .orchestrate import Orchestrator

        self.cwd = os.path.abspath(cwd or os.getcwd())
        policy = policy if policy is not None else Policy.load(cwd=self.cwd)
        if workspace is not None:
            from .errors import PolicyError

            if workspace not in model.WORKSPACE_MODES:
                raise PolicyError("<api>", "workspace", workspace, f"expected one of {', '.join(model.WORKSPACE_MODES)}")
            policy = policy.with_filesystem(workspace=workspace)
        # The same orchestration as `corral run`, kept for every command of this Sandbox: one
        # proxy, one set of placeholders, one overlay session. No responder without network
        # (the library's commands get bubblewrap's empty network namespace instead).
        self._orch = Orchestrator(policy, _context(self.cwd), backend=backend, session=session,
                                  session_prefix="sandbox", output=output or "", offline=False)
        self.output = self._orch.output
        self._wrapped: list = []
        self._wrapped_dirs: list[str] = []  # private directories of wrapped commands' files

    @property
    def policy(self):
        return self._orch.policy

    @policy.setter
    def policy(self, value) -> None:
        self._orch.policy = value

    @property
    def session(self):
        """(name, upper, work) of the overlay session, or None."""
        return self._orch.session

    @property
    def _network(self):
        return self._orch.namespaces

    @property
    def session_name(self) -> str | None:
        return self.session[0] if self.session else None

    def _network_session(self):
        return self._orch.start_namespaces()

    def _credential_boundary(self):
        return self._orch.boundary

    def allow_domain(self, *patterns: str) -> None:
        """Allow more destinations; applies to new connections of running and later commands."""
        from .errors import PolicyError

        if self.policy.network.strict_allowlist:
            raise PolicyError("<api>", "network.strict_allowlist", True, "run-time allowances are refused")
        self._change_network(allowed_domains=self.policy.network.allowed_domains + patterns)
        self._network.allow(patterns)

    def deny_domain(self, *patterns: str) -> None:
        """Deny destinations (deny beats allow); applies to new connections at once."""
        self._change_network(denied_domains=self.policy.network.denied_domains + patterns)
        self._network.deny(patterns)

    def _change_network(self, **changes) -> None:
        from .policy.network import compile_rules

        policy = self.policy.with_network(**changes)
        compile_rules(policy.network, "<api>")  # refuse bad patterns before anything changes
        if self._network is not None and self._network.policy is None:
            from .errors import UsageError

            raise UsageError("this Sandbox started without a network namespace (its overlay came "
                             "first); create it with network.proxy = true to change allowances later")
        if self._network is None:
            self.policy = policy.with_network(proxy=True)
            self._network_session()
        else:
            self.policy = policy

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def plan(self, argv: list[str]):
        """The Plan for `argv` (what `corral run --dry-run` prints)."""
        return self._orch.plan(argv)

    def enforcement(self, argv: list[str]):
        """What this Sandbox's backend enforces of `argv`'s plan, field by field."""
        plan = self.plan(argv)
        return self._orch.enforcement(plan, self._orch.limits(plan, refuse=False))

    def run(self, argv: list[str], **kwargs):
        """Like `subprocess.run(argv, **kwargs)`, sandboxed. Returns CompletedProcess."""
        import subprocess

        from .sandbox.launch import Run, exit_status

        if "cwd" in kwargs or "env" in kwargs or "pass_fds" in kwargs:
            raise TypeError("cwd, env and pass_fds are set by the Sandbox (use Sandbox(cwd=...) and the policy)")
        network = self._network_session()
        plan = self.plan(argv)
        limits = self._orch.limits(plan)  # refused (strict) or planned before anything starts
        self._orch.check(plan, limits)
        run = Run(plan, network, limits, self._orch.backend, self.policy.backend.image)
        full = run.prepare(new_session=True)
        from .sandbox.libc import load_libc

        load_libc()
        if network is not None:
            network.ns  # noqa: B018 - wait for the namespace before forking

        def preexec():  # between fork and exec: namespaces, view, uid (as the CLI's child does)
            run.child_enter()
            run.child_drop()

        try:
            proc = subprocess.Popen(full, env=dict(plan.env), pass_fds=run.pass_fds, preexec_fn=preexec,
                                    **{k: v for k, v in kwargs.items() if k not in ("input", "timeout", "check", "capture_output")},
                                    **({"stdout": subprocess.PIPE, "stderr": subprocess.PIPE} if kwargs.get("capture_output") else {}))
        except BaseException:
            run.abort()
            raise
        run.started(proc.pid)
        if run.limits is not None:  # limits hook: the wall-clock timer
            run.limits.started(proc.pid)
        try:
            out, err = proc.communicate(kwargs.get("input"), timeout=kwargs.get("timeout"))
        except BaseException as exc:
            proc.kill()
            proc.wait()
            run.pid = 0
            run.abort()
            if isinstance(exc, subprocess.TimeoutExpired):  # the same keys as a result's
                exc.run_id, exc.blocked = plan.run_id, _blocked(run.run_info, network)
            raise
        finally:
            if network is not None and run.run_info is not None:
                network.remove_run(run.run_info)
        run.pid = 0
        code = run.finish(exit_status(_raw_status(proc.returncode)))
        result = subprocess.CompletedProcess(list(argv), code, out, err)
        # The proxy's audit events of this command carry its run id ("run"); what it was refused.
        result.run_id = plan.run_id
        result.blocked = _blocked(run.run_info, network)
        if kwargs.get("check"):
            result.check_returncode()
        return result

    def wrap(self, argv: list[str]) -> list[str]:
        """An argv that runs `argv` sandboxed when executed by any runner (no fd passing
        needed); the seccomp program is handed to bwrap by a tiny `sh` trampoline."""
        from .sandbox.launch import Run

        if self._orch.backend.kind != "bwrap":
            from .errors import UsageError

            raise UsageError(f"wrap() renders bubblewrap's argv; the {self._orch.backend.name} backend needs "
                             "Sandbox.run or `corral run`")
        if self.policy.limits.any:  # limits hook: another runner cannot join the run's cgroups
            from .errors import UsageError

            raise UsageError("resource limits ([limits]) need Sandbox.run or `corral run`; wrap() cannot apply them")
        plan = self.plan(argv)
        network = self._network_session()
        run = Run(plan, network)
        full = run.prepare(new_session=True)
        seccomp_fd, status_fd, *data_fds = run.pass_fds
        # A runner cannot pass our descriptors: the data goes into files, in a fresh private
        # directory (an unguessable name, 0700, made exclusively): nobody can plant or swap them.
        import tempfile

        private = tempfile.mkdtemp(prefix="corral-wrap-")
        if plan.run_as and os.geteuid() == 0:
            os.chown(private, *plan.run_as)  # the trampoline opens them after dropping to that uid
        self._wrapped_dirs.append(private)

        def write_private(name: str, data_from) -> str:
            path = os.path.join(private, name)
            fd_out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            with os.fdopen(fd_out, "wb") as fh:
                for chunk in data_from:
                    fh.write(chunk)
            return path

        def chunks(fd):
            while chunk := os.read(fd, 1 << 20):
                yield chunk

        for fd in data_fds:
            i = full.index(str(fd), full.index("--ro-bind-data"))
            data_path = write_private(f"{fd}.data", chunks(fd))
            start = i - 3 if full[i - 3] == "--perms" else i - 1  # --perms only goes with data mounts
            full[start:i + 1] = ["--ro-bind", data_path]
            self._wrapped.append((None, data_path))
        program = os.read(seccomp_fd, 1 << 20)
        run._close_pass_fds()
        os.close(run.status_r)  # the wrapped command's runner owns its lifetime, not us
        run.status_r = -1
        path = write_private("seccomp.bpf", [program])
        self._wrapped.append((run, path))
        i = full.index("--seccomp")
        full[i + 1] = "9"
        j = full.index("--json-status-fd")
        del full[j : j + 2]
        k = full.index("--chdir")
        for name in dict.fromkeys([*self.policy.process.unset_env, *(n for n, _why in plan.withheld_env)]):
            full[k:k] = ["--unsetenv", name]  # the runner's environment: what the plan left out stays out
        boundary = self._credential_boundary()
        if boundary is not None:
            # The runner's environment holds the real values: withhold them, set the placeholders.
            k = full.index("--chdir")
            for name in boundary.unset:
                full[k:k] = ["--unsetenv", name]
            for name, value in boundary.env.items():
                full[k:k] = ["--setenv", name, value]
        prefix = []
        if network is not None:
            # The runner starts this argv with its own environment: carry the proxy settings.
            from .sandbox.netenv import proxy_environment

            k = full.index("--chdir")
            for name, value in proxy_environment(plan.network, self.policy.network).items():
                full[k:k] = ["--setenv", name, value]
            network.start()
            if not plan.identity and not plan.child_mount_ns:
                me = os.getpid()
                prefix = ["nsenter", f"--user=/proc/{me}/fd/{network.ns.user_fd}",
                          f"--net=/proc/{me}/fd/{network.ns.net_fd}", "--preserve-credentials", "--"]
        if plan.identity or plan.child_mount_ns:
            # The view prepared before bwrap (a root launch's sandbox uid and idmapped areas,
            # /tmp's overlay): a runner cannot do that part, so a small trampoline does.
            import sys

            from .sandbox.wrapped import spec

            prefix = [sys.executable, "-I", "-m", "corral.sandbox.wrapped",
                      spec(plan, network.ns if network is not None else None), "--"]
        return [*prefix, "/bin/sh", "-c", 'exec 9<"$0" && exec "$@"', path, *full]

    def close(self) -> None:
        """Remove host-side state of wrapped commands and quarantine what they planted."""
        failed = None
        while self._wrapped:
            run, path = self._wrapped.pop()
            try:
                os.unlink(path)
            except OSError:
                pass
            if run is not None:
                try:
                    run.finish(0)
                except Exception as exc:  # noqa: BLE001 - finish every run, then report the first failure
                    failed = failed or exc
        while self._wrapped_dirs:
            try:
                os.rmdir(self._wrapped_dirs.pop())
            except OSError:
                pass
        if failed is not None:
            self._finish_close()
            raise failed
        self._finish_close()

    def _finish_close(self) -> None:
        self._orch.close()


def _blocked(info, network) -> tuple[list[tuple[str, int, str]], str]:
    """What the proxy refused this run: [(host:port, attempts, reason)] and its summary line."""
    if info is None or network is None or network.proxy is None or not info.blocked:
        return [], ""
    items = sorted(info.blocked.items(), key=lambda kv: -kv[1])
    return [(key, n, info.why.get(key, "")) for key, n in items], network.proxy.blocked_summary(info)


def _raw_status(returncode: int) -> int:
    """subprocess reports death by signal N as -N; turn it back into a wait status."""
    if returncode < 0:
        return -returncode  # WIFSIGNALED form: the low 7 bits hold the signal
    return returncode << 8
