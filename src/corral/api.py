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
        return cls(policy.filesystem, policy.network, policy.process, policy.sources)

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

    def __init__(self, policy: model.Policy | None = None, cwd: str | None = None):
        self.cwd = os.path.abspath(cwd or os.getcwd())
        self.policy = policy if policy is not None else Policy.load(cwd=self.cwd)
        self._wrapped: list = []

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def plan(self, argv: list[str]):
        """The Plan for `argv` (what `corral run --dry-run` prints)."""
        from .sandbox.plan import build_plan

        return build_plan(self.policy, _context(self.cwd), list(argv), dict(os.environ))

    def run(self, argv: list[str], **kwargs):
        """Like `subprocess.run(argv, **kwargs)`, sandboxed. Returns CompletedProcess."""
        import subprocess

        from .sandbox.launch import Run, exit_status

        if "cwd" in kwargs or "env" in kwargs or "pass_fds" in kwargs:
            raise TypeError("cwd, env and pass_fds are set by the Sandbox (use Sandbox(cwd=...) and the policy)")
        plan = self.plan(argv)
        run = Run(plan)
        full = run.prepare(new_session=True)
        try:
            proc = subprocess.Popen(full, env=dict(plan.env), pass_fds=run.pass_fds,
                                    **{k: v for k, v in kwargs.items() if k not in ("input", "timeout", "check", "capture_output")},
                                    **({"stdout": subprocess.PIPE, "stderr": subprocess.PIPE} if kwargs.get("capture_output") else {}))
        except BaseException:
            run.abort()
            raise
        run.started(proc.pid)
        try:
            out, err = proc.communicate(kwargs.get("input"), timeout=kwargs.get("timeout"))
        except BaseException:
            proc.kill()
            proc.wait()
            run.pid = 0
            run.abort()
            raise
        run.pid = 0
        code = run.finish(exit_status(_raw_status(proc.returncode)))
        result = subprocess.CompletedProcess(list(argv), code, out, err)
        if kwargs.get("check"):
            result.check_returncode()
        return result

    def wrap(self, argv: list[str]) -> list[str]:
        """An argv that runs `argv` sandboxed when executed by any runner (no fd passing
        needed); the seccomp program is handed to bwrap by a tiny `sh` trampoline."""
        from .sandbox.launch import Run

        plan = self.plan(argv)
        run = Run(plan)
        full = run.prepare(new_session=True)
        seccomp_fd, status_fd = run.pass_fds
        program = os.read(seccomp_fd, 1 << 20)
        run._close_pass_fds()
        os.close(run.status_r)  # the wrapped command's runner owns its lifetime, not us
        run.status_r = -1
        path = f"{plan.tmpdir}.bpf"
        with open(path, "wb") as fh:
            fh.write(program)
        self._wrapped.append((run, path))
        i = full.index("--seccomp")
        full[i + 1] = "9"
        j = full.index("--json-status-fd")
        del full[j : j + 2]
        return ["/bin/sh", "-c", 'exec 9<"$0" && exec "$@"', path, *full]

    def close(self) -> None:
        """Remove host-side state of wrapped commands and quarantine what they planted."""
        while self._wrapped:
            run, path = self._wrapped.pop()
            try:
                os.unlink(path)
            except OSError:
                pass
            run.finish(0)


def _raw_status(returncode: int) -> int:
    """subprocess reports death by signal N as -N; turn it back into a wait status."""
    if returncode < 0:
        return -returncode  # WIFSIGNALED form: the low 7 bits hold the signal
    return returncode << 8
