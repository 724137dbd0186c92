"""The namespaces corral prepares for sandboxes, and the proxy serving them.

A session holds one user namespace with, as needed, a loopback-only network namespace (and
the egress proxy accepting on its listeners) and a mount namespace with the workspace's
overlay. The CLI makes one per command; a library `Sandbox` makes one for all its commands.
"""

from __future__ import annotations

from ..errors import PolicyError
from ..policy.network import compile_rules


class NamespaceSession:
    """`net`: the network policy (None: no network namespace, no proxy). `overlays`: overlay
    mounts (lower, upper, work, target) for the mount namespace.

    `in_child`: serve from a forked process instead of a thread. The CLI does that: the
    proxy's imports (asyncio alone is ~50 ms) then overlap with the command instead of
    delaying corral's exit, and a proxy that dies takes its listeners (the only way out)
    with it."""

    def __init__(self, net=None, in_child: bool = False, report=None, overlays=(), boundary=None,
                 offline: bool = False, host: bool = False):
        self.policy = net
        # `host`: no namespace at all, the proxy listens on random host loopback ports and
        # requires each run's credentials (the landlock backend, sandbox/landlockrun.py).
        self.host = host
        # No network: a loopback-only namespace whose helper stays to refuse names and proxy
        # requests at once, and to tell which were asked for (sandbox/offline.py).
        self.offline = offline and net is None
        self.rules = compile_rules(net) if net is not None else None
        self.boundary = boundary  # sandbox.boundary.Boundary: what the proxy enforces for credentials
        ports = sorted(boundary.endpoints) if boundary is not None and net is not None else ()
        if host:
            from .landlockrun import host_listeners

            self._pending = host_listeners()
        elif self.offline:
            from . import offline as nonet

            self._pending = nonet.start(overlays)
        else:
            from . import netns

            self._pending = netns.start(transparent=net.transparent if net is not None else False,
                                        network=net is not None, overlays=overlays, endpoint_ports=ports)
        self._ns = None
        self.proxy = None
        self.in_child = in_child
        self.report = report  # where the child prints the blocked-hosts summary (None: quiet)
        self.child = None  # (pid, ready_fd, lifeline_fd)
        self.runs = []
        self._started = False

    @property
    def ns(self):
        if self._ns is None:
            self._ns = self._pending.result()
        return self._ns

    def start(self) -> None:
        """Start serving (after the first sandbox was forked: no thread exists at fork time)."""
        if self._started or self.policy is None:
            return
        self._started = True
        if self.in_child:
            self._start_child()
            return
        self._configure().start(self.ns.listeners)

    def _start_child(self) -> None:
        import os

        ready_r, ready_w = os.pipe()
        life_r, life_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the proxy process
            code = 0
            try:
                from .libc import close_all_but

                # Keep only what the proxy needs: an inherited pipe end (the reaper's, say)
                # would keep its reader waiting for an EOF that never comes.
                close_all_but({0, 1, 2, ready_w, life_r, *(s.fileno() for s in self.ns.listeners.values())})
                self._child_main(ready_w, life_r)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        os.close(ready_w)
        os.close(life_r)
        # Fail closed: from now on only the proxy process holds the listeners.
        for sock in self.ns.listeners.values():
            sock.close()
        self.child = (pid, ready_r, life_w)

    def _child_main(self, ready_w: int, life_r: int) -> None:  # pragma: no cover - child
        import asyncio
        import os
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_IGN)  # the parent decides when the proxy stops
        _set_name("corral-proxy")
        if self.boundary is not None and self.boundary.bindings:
            _not_dumpable()
        proxy = self._configure()

        async def main():
            loop = asyncio.get_running_loop()
            serving = asyncio.ensure_future(proxy.serve(self.ns.listeners))
            await asyncio.sleep(0)
            os.write(ready_w, b"R")
            os.close(ready_w)
            gone = loop.create_future()
            loop.add_reader(life_r, lambda: gone.done() or gone.set_result(None))
            await gone
            proxy._stopping.set()
            await serving

        asyncio.run(main())
        if self.report is not None:
            for info in self.runs:
                line = proxy.blocked_summary(info)
                if line:
                    self.report(line)

    def _configure(self):
        from ..proxy.audit import AuditLog, default_path
        from .netlink import interface_addresses

        net = self.policy
        audit_path = default_path() if net.audit_log is None else net.audit_log
        synthetic = None
        if net.transparent:
            from ..proxy.dns import SyntheticPool

            synthetic = SyntheticPool()
        proxy = self.proxy or self._make_proxy()
        for info in self.runs:
            proxy.register(info)
        proxy.audit = AuditLog(audit_path or None)
        proxy.dialer.host_addresses = frozenset(_ips(interface_addresses()))
        proxy.synthetic = synthetic
        if self.boundary is not None:
            self.boundary.configure(proxy)
        return proxy

    def _make_proxy(self):
        from ..proxy.server import Proxy

        self.proxy = Proxy(self.rules, parent_proxy=self.policy.parent_proxy)
        self.proxy.require_credentials = self.host
        return self.proxy

    def add_run(self, plan, command: str):
        from ..proxy.runs import RunInfo

        info = RunInfo(plan.run_id, command, plan.network.user, plan.network.token)
        self.runs.append(info)
        if self.proxy is not None:
            self.proxy.register(info)
        return info

    def remove_run(self, info) -> None:
        if info in self.runs:
            self.runs.remove(info)
        if self.proxy is not None:
            self.proxy.remove_run(info)

    def allow(self, patterns) -> None:
        if self.policy is not None and self.policy.strict_allowlist:
            raise PolicyError("<api>", "network.strict_allowlist", True, "run-time allowances are refused")
        self._change(lambda r: r.with_allowed(patterns))

    def deny(self, patterns) -> None:
        self._change(lambda r: r.with_denied(patterns))

    def _change(self, fn) -> None:
        proxy = self.proxy or self._make_proxy()
        try:
            proxy.set_rules(fn(proxy.rules))
        except ValueError as exc:
            raise PolicyError("<api>", "network", None, str(exc)) from None

    def blocked_summary(self, info) -> str:
        """In-process mode only; a child proxy prints its own summary when it stops."""
        if self.in_child or self.proxy is None:
            return ""
        return self.proxy.blocked_summary(info)

    def offline_summary(self, run_id: str = "", command: str = "") -> str:
        """The end-of-run line of a run without network: the names it was refused ("" if none).
        With `run_id`, each name also goes to the audit log, so `corral audit --suggest` sees
        the run (one line per name: the responder keeps no counts)."""
        if not self.offline or self._ns is None or self._ns.responder is None:
            return ""
        from .offline import preset_finder, summary

        names, extra = self._ns.responder.refused()
        if names and run_id:
            from ..proxy.audit import AuditLog, default_path

            log = AuditLog(default_path())
            try:
                for name in names:
                    host, _, port = name.rpartition(":") if name.count(":") == 1 else (name, "", "")
                    log.write({"run": run_id, "command": command, "proto": "dns" if not port else "http",
                               "host": host or name, **({"port": int(port)} if port.isdigit() else {}),
                               "decision": "block", "reason": "no network for this run"})
            finally:
                log.close()
        return summary(names, extra, preset_finder()) if names else ""

    def close(self) -> None:
        if self.child is not None:
            import os
            import signal

            pid, ready_r, life_w = self.child
            self.child = None
            os.set_blocking(ready_r, False)
            try:
                ready = os.read(ready_r, 1) == b"R"
            except BlockingIOError:
                ready = False
            os.close(ready_r)
            if not ready:
                # Still starting up: it has served nothing, so there is nothing to report.
                os.kill(pid, signal.SIGKILL)
            os.close(life_w)
            _, status = os.waitpid(pid, 0)
            if ready and status != 0 and self.report is not None:
                self.report("corral: the egress proxy stopped unexpectedly during the run; the sandbox "
                            "lost its network from then on (fail closed); see the messages above")
        elif self.proxy is not None:
            self.proxy.stop()
        if self._ns is not None:
            self._ns.close()
        else:
            self._pending.cancel()


def _ips(texts):
    import ipaddress

    for t in texts:
        try:
            yield ipaddress.ip_address(t.split("%")[0])
        except ValueError:
            pass


def _not_dumpable() -> None:
    """The proxy holds real credential values: no core dump of it, and no ptrace or
    /proc/PID/mem for other processes of the same user (PR_SET_DUMPABLE 0)."""
    import resource

    from .libc import load_libc

    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):
        pass
    load_libc().prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE


def _set_name(name: str) -> None:
    from .libc import set_name

    set_name(name)
