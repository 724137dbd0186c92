"""The trampoline of `Sandbox.wrap()`: `python -I -m corral.sandbox.wrapped SPEC -- BWRAP...`.

A wrapped argv is started by someone else's process runner, which cannot prepare the view
the plan needs before bwrap starts (a root launch's idmapped writable areas, skeletons, an
overlay on idmapped layers; /tmp's overlay for everyone) nor join corral's namespaces. This small program does
that part of `launch.Run.child_enter/child_drop`, then execs bwrap. SPEC is JSON made by
`spec()`; the namespaces are reached through /proc/<corral pid>/fd/<n>, as nsenter does.
"""

from __future__ import annotations

import json
import os
import sys


def spec(plan, ns=None) -> str:
    pid = os.getpid()
    data = {
        "idmaps": [[m.path, list(m.disk), list(m.shown)] for m in plan.idmaps],
        "layers": [[m.path, list(m.disk), list(m.shown)] for m in plan.overlay_layers],
        "skeletons": [[s.top, [list(k) for k in s.keep]] for s in plan.skeletons],
        "upper": plan.workspace.upper if plan.overlay_layers else "",
        "work": plan.workspace.work if plan.overlay_layers else "",
        "run_as": list(plan.run_as) if plan.run_as else None,
        "tmp": [plan.tmp_overlay.path, plan.tmp_overlay.upper, list(plan.tmp_overlay.keep)] if plan.tmp_overlay else None,
        "pre": [list(p) for p in plan.premounts],
        "ns": {} if ns is None else {k: f"/proc/{pid}/fd/{fd}" for k, fd in
                                     (("user", ns.user_fd), ("net", ns.net_fd), ("mnt", ns.mnt_fd)) if fd >= 0},
    }
    return json.dumps(data, separators=(",", ":"))


def main(argv: list[str]) -> int:
    from .identity import IdMap, Skeleton, TmpOverlay
    from .mountprep import overlay_tmp, premount, prepare, private_mount_ns, self_userns, userns
    from .libc import CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUSER, setns

    data = json.loads(argv[0])
    cmd = argv[2:] if argv[1:2] == ["--"] else argv[1:]
    idmaps = tuple(IdMap(p, tuple(d), tuple(s)) for p, d, s in data["idmaps"])
    layers = tuple(IdMap(p, tuple(d), tuple(s)) for p, d, s in data["layers"])
    skeletons = tuple(Skeleton(t, tuple(tuple(k) for k in keep)) for t, keep in data["skeletons"])
    tmp = TmpOverlay(data["tmp"][0], data["tmp"][1], tuple(data["tmp"][2])) if data.get("tmp") else None
    pre = tuple((p, bool(ro)) for p, ro in data.get("pre", ()))
    nsfd = {k: os.open(v, os.O_RDONLY | os.O_CLOEXEC) for k, v in data["ns"].items()}
    if os.geteuid() != 0:  # unprivileged: corral's user namespace, or our own, then /tmp's overlay
        for key, flag in (("user", CLONE_NEWUSER), ("net", CLONE_NEWNET), ("mnt", CLONE_NEWNS)):
            if key in nsfd:
                setns(nsfd[key], flag)
        if tmp is not None or pre:
            if "user" in nsfd:
                private_mount_ns()
            else:
                self_userns(os.getuid(), os.getgid())
            if tmp is not None:
                overlay_tmp(tmp, userxattr=True)
            premount(pre)
        os.execvp(cmd[0], cmd)
    fds = {}
    for m in (*idmaps, *layers):
        if (m.disk, m.shown) not in fds:
            fds[(m.disk, m.shown)] = userns(m.disk, m.shown)
    if "mnt" in nsfd:
        setns(nsfd["mnt"], CLONE_NEWNS)
    if idmaps or layers or skeletons or tmp is not None or pre:
        prepare(idmaps, skeletons, fds, layers, data["upper"], data["work"], tmp, pre)
    for key, flag in (("user", CLONE_NEWUSER), ("net", CLONE_NEWNET)):
        if key in nsfd:
            setns(nsfd[key], flag)
    if data["run_as"]:
        uid, gid = data["run_as"]
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    os.execvp(cmd[0], cmd)
    return 127


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except OSError as exc:
        sys.stderr.write(f"corral: cannot prepare the wrapped sandbox: {exc}\n")
        sys.exit(125)
