"""Plan -> bubblewrap argv. Pure: knows nothing about policy files or the host.

bwrap applies its options strictly in order, so the argv is the mount order of the Plan.
"""

from __future__ import annotations

from .plan import Plan

NAMESPACES = ("--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
              "--unshare-cgroup", "--unshare-net")


def mount_args(plan: Plan) -> list[str]:
    out: list[str] = []
    for m in plan.mounts:
        if m.op in ("ro-bind", "bind"):
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
               new_session: bool = True) -> list[str]:
    argv = [plan.bwrap, *NAMESPACES, "--die-with-parent", "--cap-drop", "ALL"]
    if new_session:
        argv.append("--new-session")
    if plan.disable_userns:
        argv += ["--disable-userns", "--assert-userns-disabled"]
    argv += mount_args(plan)
    argv += ["--chdir", plan.cwd]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    if status_fd is not None:
        argv += ["--json-status-fd", str(status_fd)]
    argv.append("--")
    argv += plan.argv
    return argv
