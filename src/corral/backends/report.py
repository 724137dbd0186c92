"""The enforcement report: field by field, what the policy asked for and what a backend
enforces of it. Pure values; every backend builds one, `--dry-run` and `corral doctor
--backend NAME` print it, `strict = true` refuses a run with a gap."""

from __future__ import annotations

from .._values import frozen

ENFORCED, PARTIAL, NOT_ENFORCED, NOT_REQUESTED = "enforced", "partial", "not enforced", "not requested"


@frozen
class Item:
    field: str  # "memory limit", "read denials", ...
    requested: str  # what the policy asks, in words ("2g", "12 paths", "yes")
    state: str  # ENFORCED | PARTIAL | NOT_ENFORCED | NOT_REQUESTED
    how: str = ""  # by what, or why not ("not enforced: rootless, cgroup v1")

    @property
    def gap(self) -> bool:
        return self.state in (PARTIAL, NOT_ENFORCED)


@frozen
class Report:
    backend: str
    items: tuple[Item, ...]

    def gaps(self) -> list[Item]:
        return [i for i in self.items if i.gap]

    def get(self, field: str) -> Item | None:
        return next((i for i in self.items if i.field == field), None)

    def lines(self) -> list[str]:
        width = max((len(i.field) for i in self.items), default=0)
        out = [f"# enforcement report: backend {self.backend}"]
        for i in self.items:
            out.append(f"#   {i.field:<{width}}  {i.state:<13} {i.requested}{' — ' + i.how if i.how else ''}")
        return out

    def gaps_line(self, shown_by: str = "`corral run --dry-run`", refused: str = "refuses such runs") -> str:
        gaps = self.gaps()
        said = "; ".join(f"{i.field}: {i.state}{' (' + i.how + ')' if i.how else ''}" for i in gaps)
        return f"corral: on the {self.backend} backend, {said} ({shown_by} shows the whole report; strict = true {refused})"

    def as_dict(self) -> dict:
        return {"backend": self.backend,
                "items": [{"field": i.field, "requested": i.requested, "state": i.state, "how": i.how}
                          for i in self.items]}


# -- what a plan asks for, the same on every backend ------------------------------------------------

LIMIT_FIELDS = {"memory": "memory limit", "pids": "pids limit", "cpus": "cpu limit", "timeout": "time limit",
                "nofile": "open files limit", "fsize": "file size limit"}


def common_items(plan, limits=None) -> list[Item]:
    """The report's rows as bubblewrap enforces them; other backends restate the rows they
    enforce differently. `limits`: the run's sandbox.limits.LimitsPlan (None: no limits)."""
    hidden = sum(1 for m in plan.mounts if m.op == "dev-null" or (m.op == "tmpfs" and m.dest not in
                                                                   ("/dev/shm", plan.tmpdir)))
    protected = sum(1 for m in plan.mounts if m.op == "pre-ro-bind")
    writable = ", ".join(plan.writable_roots) or "nothing"
    if plan.network is not None:
        net = "only through corral's proxy" + (" (transparent: direct connections and DNS too)"
                                               if plan.network.transparent else "")
    else:
        net = "none (corral's responder refuses names and proxy requests)" if plan.offline else "none"
    from ..sandbox.seccomp import rules

    items = [
        Item("filesystem view", f"host read-only; writable: {writable}", ENFORCED,
             "bind mounts in a new mount namespace (bubblewrap)"),
        Item("read denials", f"{hidden} paths hidden", ENFORCED, "/dev/null or an empty tmpfs over each"),
        Item("protected paths", f"{protected} read-only, new ones quarantined after the run", ENFORCED,
             "read-only binds made before the sandbox starts; the post-run check"),
        Item("network", net, ENFORCED, "corral's network namespace: loopback and the proxy's listeners only"),
        Item("capabilities", "none", ENFORCED, "--cap-drop ALL"),
        Item("no_new_privs", "yes", ENFORCED, "set by bubblewrap"),
        Item("seccomp deny list", f"{len(rules(plan.seccomp))} rules", ENFORCED, "cBPF program, arguments on 32 bits"),
        Item("user namespace", "yes", ENFORCED, "bubblewrap's, nested user namespaces refused"),
        Item("pid namespace", "yes", ENFORCED, "bubblewrap's init as pid 1"),
        Item("signals", "forwarded to the command", ENFORCED, "corral -> bubblewrap -> its init -> the command"),
        Item("tty", "a private pseudo-terminal when stdin and stdout are terminals", ENFORCED,
             "corral relays the pty; TIOCSTI refused"),
        Item("kernel", "-", NOT_REQUESTED, "the host kernel, shared"),
    ]
    for e in (limits.items if limits is not None else ()):
        state = ENFORCED if e.full else (PARTIAL if e.how else NOT_ENFORCED)
        items.append(Item(LIMIT_FIELDS.get(e.key, e.key), e.value, state, e.how or getattr(e, "why", "")))
    return items
