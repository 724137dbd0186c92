"""A network session: one namespace and one proxy, shared by the runs that use it.

The CLI makes one per command; a library `Sandbox` makes one for all its commands.
"""

from __future__ import annotations

from ..errors import PolicyError


def compile_rules(net, source: str = "<policy>"):
    from ..proxy.rules import Rules

    try:
        return Rules(allowed=net.allowed_domains, denied=net.denied_domains, reasons=dict(net.denied_reasons),
                     denied_addresses=net.denied_addresses)
    except ValueError as exc:
        raise PolicyError(source, "network", None, str(exc)) from None


class NetworkSession:
    def __init__(self, net, environ=None):
        from . import netns

        self.policy = net
        self.rules = compile_rules(net)
        self.ns = netns.create(transparent=net.transparent)
        self.proxy = None
        self._started = False

    def start(self) -> None:
        """Start serving (after the first sandbox was forked: no thread exists at fork time)."""
        if self._started:
            return
        from ..proxy.audit import AuditLog, default_path
        from ..proxy.server import Proxy
        from .netlink import interface_addresses

        net = self.policy
        audit_path = default_path() if net.audit_log is None else net.audit_log
        synthetic = None
        if net.transparent:
            from ..proxy.dns import SyntheticPool

            synthetic = SyntheticPool()
        proxy = self.proxy or self._make_proxy()
        proxy.audit = AuditLog(audit_path or None)
        proxy.dialer.host_addresses = frozenset(_ips(interface_addresses()))
        proxy.synthetic = synthetic
        proxy.start(self.ns.listeners)
        self._started = True

    def _make_proxy(self):
        from ..proxy.server import Proxy

        self.proxy = Proxy(self.rules, parent_proxy=self.policy.parent_proxy, strict=self.policy.strict_allowlist)
        return self.proxy

    def add_run(self, plan, command: str):
        proxy = self.proxy or self._make_proxy()
        return proxy.add_run(plan.run_id, command, plan.network.user, plan.network.token)

    def remove_run(self, info) -> None:
        if self.proxy is not None:
            self.proxy.remove_run(info)

    def allow(self, patterns) -> None:
        self._change(lambda r: r.with_allowed(patterns))

    def deny(self, patterns) -> None:
        self._change(lambda r: r.with_denied(patterns))

    def _change(self, fn) -> None:
        proxy = self.proxy or self._make_proxy()
        try:
            proxy.set_rules(fn(proxy.rules))
        except ValueError as exc:
            raise PolicyError("<api>", "network", None, str(exc)) from None

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        self.ns.close()


def _ips(texts):
    import ipaddress

    for t in texts:
        try:
            yield ipaddress.ip_address(t.split("%")[0])
        except ValueError:
            pass
