"""One orchestration path, for the CLI and the library alike.

An `Orchestrator` holds what a policy needs around its commands: the overlay session (and
its shared lock), the credential boundary (real values resolved once, placeholders for the
sandbox), corral's namespaces with the egress proxy or the offline responder, the limits
and the backend. `corral run` makes one for its one command; a library `Sandbox` keeps one
for all of its commands (one proxy, one set of placeholders). Everything below it is a
plain value (Plan, enforcement report) or the launcher (`sandbox/launch.py`).

    policy (+ launch context) ──> Orchestrator ──plan()──> Plan ──backend──> Report, argv/config
                                        │                                        │
                                        └──── namespaces, proxy, session ──> launch.Run
"""

from __future__ import annotations

import os

from .errors import SetupError


class Orchestrator:
    """`report`: where start-up notices go (None: quiet). `in_child`: the proxy serves from a
    forked process (the CLI; the library serves from a thread). `offline`: without network,
    corral's responder refuses names and proxy requests and tells which were asked for.
    `backend`: a name from `corral.backends.NAMES` (default: the policy's, else bwrap)."""

    def __init__(self, policy, ctx, *, backend: str | None = None, session: str | None = None,
                 session_prefix: str = "run", output: str = "", report=None, in_child: bool = False,
                 offline: bool = True, dry_run: bool = False, environ: dict | None = None):
        self.policy = policy
        self.ctx = ctx
        self.report = report
        self.in_child = in_child
        self.offline = offline
        self.dry_run = dry_run
        self.environ = dict(os.environ if environ is None else environ)
        self.output = os.path.abspath(output) if output else ""
        from .backends import select

        if (backend or policy.backend.name) == "auto":
            backend = resolve_auto(policy, report)
        self.backend = select(backend, policy)
        if policy.process.run_as and ctx.uid != 0 and policy.process.run_as[0] != ctx.uid:
            raise SetupError("--as-user / process.run_as needs corral to be launched as root", "drop the option")
        self.session = None  # (name, upper, work) in the overlay mode
        self._lock = None  # the overlay session's shared lock: `apply`/`discard` wait while mounted
        if policy.filesystem.workspace == "overlay":
            from .workspace.sessions import open_session

            opened = open_session(session or f"{session_prefix}-{os.urandom(6).hex()}", os.path.realpath(ctx.cwd))
            self._lock = opened.lock(exclusive=False)
            self._lock.__enter__()
            self.session = (opened.name, opened.upper, opened.work)
        self._boundary = None
        self.namespace_root = False  # launched as uid 0 of a user namespace that is not host root
        self.namespaces = None  # sandbox.namespaces.NamespaceSession, made by start_namespaces()

    # -- the pieces, each made once ---------------------------------------------------------------
    @property
    def boundary(self):
        """The credential boundary: resolved before the proxy forks (it inherits the real values;
        the sandbox only ever sees placeholders)."""
        if self._boundary is None:
            from .sandbox import boundary

            if boundary.needed(self.policy):
                self._boundary = boundary.resolve(self.policy, self.environ, self.ctx)
                if self.report is not None:
                    for line in self._boundary.warnings:
                        self.report(line)
        return self._boundary

    def needs_namespaces(self) -> bool:
        if self.backend.kind == "landlock":  # no namespace: the proxy on host loopback ports, if any
            return bool(self.policy.network.enabled)
        return bool(self.policy.network.enabled or self.offline or self._overlays())

    def _overlays(self):
        if self.session is None:
            return []
        from .sandbox.plan import helper_overlays

        return helper_overlays(self.policy, self.ctx, self.session)

    def start_namespaces(self):
        """corral's namespaces (started early: the helper works while the plan is built)."""
        if self.namespaces is None and not self.dry_run and self.needs_namespaces():
            from .sandbox.namespaces import NamespaceSession

            if self.policy.network.enabled and self.policy.network.parent_proxy_env:
                # The launcher's HTTPS_PROXY/HTTP_PROXY/NO_PROXY as the parent proxy, unless the
                # policy names one or opts out (`corral run` applied it already, saying why not).
                from .policy.proxyenv import with_environment

                net, _unusable = with_environment(self.policy.network, self.environ)
                self.policy = self.policy.with_network(parent_proxy=net.parent_proxy, parent_proxy_env=False)

            net = self.policy.network if self.policy.network.enabled else None
            self.namespaces = NamespaceSession(net, in_child=self.in_child, report=self.report,
                                               overlays=self._overlays(), boundary=self.boundary,
                                               offline=self.offline and net is None,
                                               host=self.backend.kind == "landlock")
        return self.namespaces

    # -- one command -------------------------------------------------------------------------------
    def plan(self, argv: list[str], run_id: str | None = None):
        from .sandbox.plan import build_plan

        if self.output:
            try:
                os.makedirs(self.output, exist_ok=True)
            except OSError as exc:
                raise SetupError(f"cannot create the output directory {self.output}: {exc.strerror}",
                                 "pick another --output") from None
        offline = self.offline and not self.policy.network.enabled and (self.dry_run or self.namespaces is not None)
        plan = build_plan(self.policy, self.ctx, list(argv), self.environ, run_id=run_id or os.urandom(6).hex(),
                          session=self.session, output=self.output, boundary=self.boundary, offline=offline)
        if self.backend.kind == "landlock" and self.namespaces is not None:
            from .backends.landlock import on_host_ports

            ls = self.namespaces.ns.listeners  # the proxy's random host loopback ports
            plan = on_host_ports(plan, ls["http"].getsockname()[1], ls["socks"].getsockname()[1], self.policy.network)
        return plan

    def limits(self, plan, refuse: bool = True):
        """The run's limits plan: refused here (strict) or one line on what is not enforced."""
        if not self.policy.limits.any:
            return None
        from .sandbox.limits import prepare

        run_as = plan.run_as if self.ctx.uid == 0 else None
        return prepare(self.policy.limits, run_as[0] if run_as else None,
                       None if self.dry_run else self.report, refuse=refuse and not self.dry_run)

    def enforcement(self, plan, limits=None, version: bool = True, tty: bool | None = None):
        """What the backend enforces of this plan, field by field (backends/report.py).
        `version`: ask the runtime its version (a process start: runsc's costs ~16 ms), for
        reports that show it; a run only needs the gaps."""
        from .sandbox.hostfacts import gather

        facts = gather(self.backend.name, self.policy, plan, version=version)
        if tty is not None:  # this run's terminal (None: not known, as for --dry-run)
            from ._values import replace

            facts = replace(facts, tty=tty)
        return self.backend.report(plan, facts, limits)

    def check(self, plan, limits=None, tty: bool | None = None):
        """The enforcement report; under `strict = true` a field the backend cannot enforce
        refuses the run; otherwise each gap is said once on stderr (never dropped silently)."""
        if self.backend.kind == "bwrap":
            return None  # bwrap enforces every row; limits said or refused their own gaps (limits.prepare)
        report = self.enforcement(plan, limits, version=False, tty=tty)
        gaps = report.gaps()
        if any(i.field == "runtime" and i.state == "not enforced" for i in gaps) or (
                self.backend.kind == "container" and not self.policy.backend.image):
            return report  # the wall cannot run this at all: the launcher refuses it with the cause, in one line
        if gaps and self.policy.backend.strict:
            first = gaps[0]
            raise SetupError(f"the {report.backend} backend cannot enforce {first.field}: {first.how} "
                             f"(strict = true refuses the run)",
                             "choose another --backend (`corral doctor --backend NAME` lists what each "
                             "enforces), or remove strict = true to run with the gap said")
        if gaps and self.report is not None and self.backend.name != "bwrap":
            self.report(report.gaps_line())
        return report

    def rendered(self, plan) -> str:
        """What the backend runs for `plan`, as text (`--dry-run`): config.json, or an engine's
        command line. Paths of the run's bundle read <bundle>."""
        from .sandbox.hostfacts import gather

        if self.backend.kind == "landlock":
            from .sandbox.landlockrun import render_text

            return f"# {self.backend.name}: the Landlock domain of the run\n" + render_text(plan)
        facts = gather(self.backend.name, self.policy, plan)
        if self.backend.kind == "oci":
            from .backends import oci

            bundle = oci.Bundle("<bundle>", self.backend.name, self.ctx.uid == 0, facts.init, self.policy.backend.image,
                                os.uname().machine)
            config, _files = oci.render(plan, bundle)
            return f"# {self.backend.name}: config.json of the run's bundle\n" + oci.config_json(config).decode()
        from .backends import container

        try:
            argv = container.argv(self.backend.name, plan, container.Target.for_run(self.backend.name, facts,
                                                                                  self.policy.backend.image))
        except SetupError as exc:  # --dry-run still shows the report; the run itself would be refused
            return f"# {self.backend.name}: this run would be refused: {exc}\n"
        import shlex

        return f"# {self.backend.name} command\n" + " \\\n  ".join(shlex.quote(a) for a in argv) + "\n"

    def notices(self, plan) -> None:
        """The start-up lines of one run: what the plan hides, withholds or changes."""
        if self.report is None:
            return
        for line in plan.notices:
            self.report(line)
        hidden = secrets_notice(plan.mounts, self.ctx.cwd, self.ctx.home)
        if hidden:
            self.report(hidden)
        if plan.withheld_env:
            from .policy.secret_env import notice

            self.report(notice(name for name, _why in plan.withheld_env))

    def run_foreground(self, argv: list[str], tty: bool | None = None, run_id: str | None = None) -> int:
        """The CLI's run: stdio inherited (or a pty relayed), signals forwarded; the exit status."""
        from . import _timing

        if self.ctx.uid == 0 and self.backend.kind == "landlock" and self.policy.process.run_as is None:
            from .sandbox.diagnose import root_host_uid

            if root_host_uid() not in (0, None):
                # uid 0 of a user namespace that a user made (`unshare -r`): that "root" is the user,
                # with no privilege on the host. On Landlock (no drop possible there) it runs as itself.
                self.policy = self.policy.with_process(run_as=(0, 0))
                self.namespace_root = True
        if self.ctx.uid == 0 and self.backend.kind in ("bwrap", "landlock") and not self.namespace_root:
            from .sandbox.diagnose import nested_root_problem

            run_as = self.policy.process.run_as
            problem = nested_root_problem(run_as[0] if run_as else 65533, userns=self.backend.kind == "bwrap")
            if problem is not None:
                raise problem
        if self.ctx.uid == 0:
            from .sandbox.plan import prefetch_identity

            prefetch_identity(self.policy, self.ctx)
        self.start_namespaces()
        _timing.mark("namespaces")
        plan = self.plan(argv, run_id)
        _timing.mark("plan")
        limits = self.limits(plan)
        if tty is None:
            try:
                tty = os.isatty(0) and os.isatty(1)
            except OSError:
                tty = False
        self.check(plan, limits, tty)
        self.notices(plan)
        from .sandbox.launch import run_foreground

        return run_foreground(plan, tty=tty, namespaces=self.namespaces, report_blocked=self.report,
                              limits=limits, backend=self.backend, image=self.policy.backend.image)

    def close(self) -> None:
        if self.namespaces is not None:
            self.namespaces.close()
            self.namespaces = None
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.__exit__(None, None, None)

    def __enter__(self) -> "Orchestrator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def resolve_auto(policy, report=None) -> str:
    """`--backend auto`: the wall this machine runs (backends/auto.py decides on the probe); the
    weaker wall is said in one stderr line even when quiet (never a silent downgrade); a
    refusal is a SetupError with the diagnosis and the fix."""
    from .backends.auto import choose
    from .sandbox.hostfacts import auto_probe

    bp = policy.backend
    choice = choose(auto_probe(policy), bp.allow_weaker, bp.allowed_by or "allow_weaker = true")
    if choice.backend is None:
        raise SetupError(choice.cause, choice.fix)
    if choice.notice:
        if report is not None:
            report(choice.notice)
        else:
            import sys

            sys.stderr.write(choice.notice + "\n")
            sys.stderr.flush()
    return choice.backend


SECRET_WHY = "secret file found by `corral scan`"


def secrets_notice(mounts, cwd: str, home: str, limit: int = 3) -> str:
    """One start-up line for the secret files `corral scan` found and the run hides: how many,
    up to `limit` names (escaped, relative to the workspace or ~), how to list and re-open
    them. "" when none is hidden. Pure: reads only the plan's mounts."""
    from .display import shown

    paths = [m.dest for m in mounts if m.op in ("dev-null", "tmpfs") and m.why.startswith(SECRET_WHY)]
    if not paths:
        return ""
    base = cwd.rstrip("/") + "/"
    inside = [p for p in paths if p.startswith(base)]

    def label(path: str) -> str:
        if path.startswith(base):
            return path[len(base):]
        if home not in ("", "/") and path.startswith(home.rstrip("/") + "/"):
            return "~/" + path[len(home.rstrip("/")) + 1:]
        return path

    names = sorted(paths, key=lambda p: (not p.startswith(base), p))
    listed = ", ".join(shown(label(p), 80) for p in names[:limit]) + (", ..." if len(names) > limit else "")
    where = " in the workspace" if len(inside) == len(paths) else ""
    count = f"{len(paths)} secret file{'s' if len(paths) != 1 else ''}{where} {'are' if len(paths) != 1 else 'is'}"
    return (f"corral: {count} hidden ({listed}): `corral scan` lists them; "
            "re-open one with --allow-read PATH")
