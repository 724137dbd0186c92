"""The launcher's part for the landlock backend: no namespaces at all.

    corral ──fork──> child: cgroups, rlimits, chdir, new session, no_new_privs, the Landlock
                     domain of `backends/landlock.py`, corral's seccomp filter ──exec──> command

The proxy (when the policy has network) listens on two random host loopback ports
(`host_listeners`, served by `namespaces.NamespaceSession(host=True)`), requires the run's
credentials, and is the one TCP port pair the command may connect to. Placeholders, the post-run
quarantine and the reaper are `Run`'s, as on every backend.
"""

from __future__ import annotations

import os

from ..errors import SetupError

# landlock_create_ruleset, landlock_add_rule, landlock_restrict_self: the same numbers on every
# architecture (the generic syscall table).
NR_CREATE, NR_ADD, NR_RESTRICT = 444, 445, 446
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH, RULE_NET_PORT = 1, 2
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
PR_SET_CHILD_SUBREAPER = 36

_ABI = None


def abi() -> int:
    """The kernel's Landlock ABI (0: not available)."""
    global _ABI
    if _ABI is None:
        import ctypes

        from .libc import load_libc

        libc = load_libc()
        libc.syscall.restype = ctypes.c_long
        r = libc.syscall(ctypes.c_long(NR_CREATE), None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
        _ABI = int(r) if r > 0 else 0
    return _ABI


class _HostPending:
    """netns.Pending's interface for listeners made at once on the host."""

    def __init__(self):
        from .netns import Namespace, _listen
        import socket

        self._ns = Namespace(-1, -1, {"http": _listen(socket.AF_INET, "127.0.0.1", 0),
                                      "socks": _listen(socket.AF_INET, "127.0.0.1", 0)})

    def result(self):
        return self._ns

    def cancel(self) -> None:
        self._ns.close()


def host_listeners() -> _HostPending:
    return _HostPending()


def listdir_no_symlinks(path: str) -> list[str]:
    """The entries a rule may be put on: a symlink carries no right of its own (access through
    it is checked on its target's path)."""
    out = []
    with os.scandir(path) as it:
        for e in it:
            if not e.is_symlink():
                out.append(e.name)
    return out


def _children_of_self() -> list[int]:
    out = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return out
    for t in tasks:
        try:
            with open(f"/proc/self/task/{t}/children") as fh:
                out += [int(x) for x in fh.read().split()]
        except (OSError, ValueError):
            pass
    return out


def _filters(pid) -> int:
    """How many seccomp filters `pid` runs under (-1: unknown)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            text = fh.read()
    except OSError:
        return -1
    for line in text.splitlines():
        if line.startswith("Seccomp_filters:"):
            return int(line.split()[1])
    if "\nSeccomp:\t2\n" in text:
        return 1  # (kernels before 5.9 do not count them)
    return 0 if "\nSeccomp:" in text else -1


def _sandboxed(pid: int, own: int) -> bool:
    """Does `pid` carry the run's mark: one seccomp filter more than corral runs under (in a
    container, corral and its other children may have the engine's filter already)?"""
    return _filters(pid) > own >= 0


def resolve(argv0: str, path: str) -> str:
    if "/" in argv0:
        return argv0
    for d in path.split(":"):
        cand = os.path.join(d or ".", argv0)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return argv0


def render_text(plan) -> str:
    """`--dry-run`: the rules this plan gets on this kernel."""
    from ..backends import landlock

    found = abi()
    ports = (plan.network.http_port, plan.network.socks_port) if plan.network is not None else ()
    rules = landlock.rules(plan, max(found, landlock.MIN_ABI), ports, listdir_no_symlinks)
    return "\n".join(rules.lines()) + "\n"


class LandlockLaunch:
    """One run behind Landlock; `Run` calls prepare() on the host, child() in the forked child
    (instead of its own namespaces and view: `own_namespaces`), outcome() after the exit."""

    drops_uid = True  # launched by root: Run.child_drop becomes the sandbox uid
    own_namespaces = True  # none: Run.child_enter leaves the child to child()

    def __init__(self, run, backend, image: str | None = None):
        self.run = run
        self.backend = backend
        self.tty = False
        self._calls = None
        self._own_filters = -1

    def prepare(self) -> list[str]:
        import ctypes
        import struct

        from ..backends import landlock
        from .libc import load_libc
        from .seccomp import compile_filter

        plan = self.run.plan
        found = abi()
        try:
            landlock.check_abi(found)
        except landlock.AbiTooOld as exc:
            raise SetupError(str(exc), landlock.ABI_FIX) from None
        from .diagnose import root_host_uid

        host_root = root_host_uid() == 0
        why = landlock.refusal(plan, root_is_host_root=host_root)
        if why:
            raise SetupError(why.split("; ", 1)[0], why.split("; ", 1)[1] if "; " in why else "choose --backend bwrap")
        if self.run.launched_by_root and not plan.run_as and host_root:
            raise SetupError("the landlock backend does not run commands as root",
                             "pass --as-user USER, or choose --backend bwrap")
        if self.run.namespaces is not None and self.run.namespaces.boundary is not None \
                and self.run.namespaces.boundary.endpoints:
            raise SetupError("the landlock backend cannot serve credential base-URL endpoints (they need corral's "
                             "network namespace)", "use the proxy variables for that credential, or --backend bwrap")
        ports = ()
        if plan.network is not None:
            ports = (plan.network.http_port, plan.network.socks_port)
        rules = landlock.rules(plan, found, ports, listdir_no_symlinks)
        program = compile_filter(plan.seccomp, extra=landlock.extra_seccomp())
        libc = load_libc()
        libc.syscall.restype = ctypes.c_long

        class Fprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        buf = ctypes.create_string_buffer(program, len(program))
        fprog = Fprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
        size = landlock.attr_size(rules.abi)
        attr = struct.pack("<QQQ", rules.handled_fs, rules.handled_net, rules.scoped)[:size]
        self._calls = (libc, ctypes, struct, rules, attr, buf, fprog)
        # No pid namespace: what the command leaves running when it exits is reparented to corral
        # (not to init), and killed then (`_kill_leftovers`).
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        self._own_filters = _filters("self")
        env = dict(plan.env)
        return [resolve(plan.argv[0], env.get("PATH", "/usr/bin:/bin")), *plan.argv[1:]]

    # -- in the forked child ---------------------------------------------------------------------------
    def child(self) -> None:
        run, plan = self.run, self.run.plan
        if run.limits is not None:
            run.limits.child.join()
            if not run.launched_by_root:
                run.limits.child.set_rlimits()  # (root: after the uid change, Run.child_drop)
        if not self.tty:
            os.setsid()  # no controlling terminal: TIOCSTI has nothing to push into
        os.chdir(plan.cwd)
        libc, ctypes, struct, rules, attr, buf, fprog = self._calls

        def check(r, what):
            if r < 0:
                err = ctypes.get_errno()
                raise OSError(err, f"[wall] {what}: {os.strerror(err)}")
            return r

        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        fd = check(libc.syscall(ctypes.c_long(NR_CREATE), attr, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0)),
                   "landlock_create_ruleset")
        try:
            import stat

            for r in rules.paths:
                try:
                    pfd = os.open(r.path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
                except OSError:
                    continue  # gone since the walk: nothing to grant
                try:
                    mode = os.fstat(pfd).st_mode
                    if stat.S_ISLNK(mode):
                        continue
                    access = r.access if stat.S_ISDIR(mode) else r.for_file()
                    if not access:
                        continue
                    rule = struct.pack("<Qi", access, pfd)
                    check(libc.syscall(ctypes.c_long(NR_ADD), fd, ctypes.c_int(RULE_PATH_BENEATH), rule,
                                       ctypes.c_uint32(0)), f"landlock_add_rule {r.path}")
                finally:
                    os.close(pfd)
            for port in rules.connect_ports:
                rule = struct.pack("<QQ", 2, port)  # LANDLOCK_ACCESS_NET_CONNECT_TCP
                check(libc.syscall(ctypes.c_long(NR_ADD), fd, ctypes.c_int(RULE_NET_PORT), rule, ctypes.c_uint32(0)),
                      f"landlock_add_rule port {port}")
            check(libc.syscall(ctypes.c_long(NR_RESTRICT), fd, ctypes.c_uint32(0)), "landlock_restrict_self")
        finally:
            os.close(fd)
        check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp filter")

    def forward_signal(self, pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)  # the command itself: corral's own child
        except ProcessLookupError:
            pass

    # -- after the command exited --------------------------------------------------------------------
    def outcome(self, status: int) -> str:
        self._kill_leftovers()
        self._empty_tmpdir()
        return "ran"

    def _kill_leftovers(self) -> None:
        """Kill the processes the command left behind (reparented to corral, its subreaper):
        corral's children that carry the run's mark (one seccomp filter more than corral), other
        than corral's own reaper and proxy, until none is left."""
        import signal

        keep = {self.run.reaper_pid}
        ns = self.run.namespaces
        if ns is not None and ns.child is not None:
            keep.add(ns.child[0])
        for _ in range(200):
            left = [p for p in _children_of_self() if p not in keep and _sandboxed(p, self._own_filters)]
            if not left:
                return
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for p in left:
                try:
                    os.waitpid(p, 0)
                except ChildProcessError:
                    pass

    def failure(self, status: int) -> SetupError:
        return SetupError(f"the landlock backend could not start the command (exit {status})",
                          "run `corral doctor --backend landlock`")

    def reaper_lines(self) -> list[str]:
        return [f"rmtree {self.run.plan.tmpdir}\n"] if self.run.plan.tmpdir else []

    def _empty_tmpdir(self) -> None:
        """$TMPDIR is a host directory here (bwrap: a tmpfs): emptied, so that the placeholder
        cleanup removes it."""
        import shutil

        d = self.run.plan.tmpdir
        if not d:
            return
        try:
            names = os.listdir(d)
        except OSError:
            return
        for name in names:
            p = os.path.join(d, name)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                try:
                    os.unlink(p)
                except OSError:
                    pass

    def cleanup(self) -> None:
        self._calls = None
