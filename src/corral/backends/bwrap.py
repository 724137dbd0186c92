"""Plan -> bubblewrap argv. Pure: knows nothing about policy files or the host.

bwrap applies its options strictly in order, so the argv is the mount order of the Plan.
"""

from __future__ import annotations

TYPE_CHECKING = False  # (typing itself costs ~5 ms of every start)

if TYPE_CHECKING:  # the renderer reads a Plan; it never builds one
    from ..sandbox.plan import Plan

NAMESPACES = ("--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
              "--unshare-cgroup", "--unshare-net")


def mount_args(plan: Plan, data_fds: dict[int, int] | None = None) -> list[str]:
    """`data_fds` maps the index of each "data" mount to the descriptor its content is read from."""
    out: list[str] = []
    for i, m in enumerate(plan.mounts):
        if m.op.startswith("pre-"):
            continue  # bound by corral's child before bwrap starts (sandbox.mountprep.premount)
        if m.op == "data":
            fd = (data_fds or {}).get(i)
            # Readable by every uid inside (bwrap's default is 0600: a program that drops to
            # another user would lose the resolver and the CA bundle). The content is never secret.
            out += ["--perms", f"{m.perms if m.perms is not None else 0o644:04o}",
                    "--ro-bind-data", "FD" if fd is None else str(fd), m.dest]
        elif m.op in ("ro-bind", "bind"):
            out += [f"--{m.op}", m.src, m.dest]
        elif m.op == "dev-null":
            out += ["--ro-bind", "/dev/null", m.dest]
        elif m.op in ("dev", "proc", "remount-ro"):
            out += [f"--{m.op}", m.dest]
        elif m.op == "tmpfs":
            if m.perms is not None:
                out += ["--perms", f"{m.perms:04o}"]
            out += ["--tmpfs", m.dest]
        else:
            raise AssertionError(f"unknown mount op {m.op}")
    return out


def bwrap_argv(plan: Plan, *, seccomp_fd: int | None, status_fd: int | None,
               new_session: bool = True, data_fds: dict[int, int] | None = None,
               ids: tuple[int, int] | None = None) -> list[str]:
    """`ids`: the uid/gid the command must see. Needed with a network plan: bwrap then starts
    inside corral's namespace, where the launching user is mapped differently."""
    if plan.network is None and not plan.offline:
        argv = [plan.bwrap, *NAMESPACES]
    else:  # the network namespace is corral's, already joined; the rest is bwrap's own
        argv = [plan.bwrap, *(ns for ns in NAMESPACES if ns != "--unshare-net")]
    if ids is not None:
        argv += ["--uid", str(ids[0]), "--gid", str(ids[1])]
    argv += ["--die-with-parent", "--cap-drop", "ALL"]
    if new_session:
        argv.append("--new-session")
    if plan.disable_userns:
        argv += ["--disable-userns", "--assert-userns-disabled"]
    argv += mount_args(plan, data_fds)
    argv += ["--chdir", plan.cwd]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    if status_fd is not None:
        argv += ["--json-status-fd", str(status_fd)]
    argv.append("--")
    argv += plan.argv
    return argv


def report(name: str, plan, facts, limits=None):
    """bubblewrap enforces every row as the common table states it."""
    from . import report as R

    items = R.common_items(plan, limits)
    if facts.runtime is None:
        items.insert(0, R.Item("runtime", "bwrap", R.NOT_ENFORCED, "bubblewrap is not installed (fix: sudo apt-get "
                                                                    "install bubblewrap)"))
    return R.Report(name, tuple(items))
