"""Run a Plan: the only module that spawns processes.

Process layout for one run:

    corral ──fork──> reaper (own session; cleans up if corral is SIGKILLed)
       └──fork/exec──> bwrap (--die-with-parent) ──> init (pid 1) ──> command

The seccomp program reaches bwrap through a pipe (no file on disk), bwrap reports the
sandbox's pid through `--json-status-fd`, and every other descriptor is closed before exec.
"""

from __future__ import annotations

import os
# `_signal`, not `signal`: the same functions and numbers without `enum` (~1 ms of every start).
import _signal as signal

from .._which import find_executable
from ..errors import SetupError
from ..backends.bwrap import bwrap_argv
from .hostprep import Cleanup, stderr_report
from .libc import close_all_but
from .plan import Plan

FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def refuse_datagram_stdio() -> None:
    """stdin/stdout/stderr are the only descriptors the command inherits. An AF_UNIX datagram
    socket among them could `sendto` any host socket path (journald, /dev/log), which the
    seccomp filter refuses to make inside: refuse to start with one, unless AF_UNIX is allowed."""
    import stat

    for fd in (0, 1, 2):
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
        except OSError:
            continue
        import socket

        s = socket.socket(fileno=os.dup(fd))
        try:
            kind = (s.family, s.type)
        finally:
            s.close()
        if kind == (socket.AF_UNIX, socket.SOCK_DGRAM):
            raise SetupError(
                f"descriptor {fd} (stdin, stdout or stderr) is a Unix datagram socket: the command could "
                "send to any host socket path through it",
                "give corral pipes, a terminal or a stream socket, or allow Unix sockets in the policy "
                "(network.allow_unix_sockets)")


def resolve_bwrap(plan: Plan) -> str:
    exe = find_executable(plan.bwrap)
    if exe is None:
        raise SetupError(
            f"bubblewrap ({plan.bwrap}) is not installed or not executable",
            "install it: sudo apt-get install bubblewrap (Debian/Ubuntu) or dnf install bubblewrap",
        )
    return exe


class Run:
    """One sandboxed command from spawn to cleanup.

    `prepare()` does the host-side setup and returns the bwrap argv and the descriptors it
    needs; any spawner (corral's own fork/exec, or subprocess for the library) starts it,
    reports the pid with `started()`, and calls `finish()` with the exit status.
    """

    def __init__(self, plan: Plan, namespaces=None, limits=None, backend=None, image: str | None = None):
        self.plan = plan
        # The wall: bubblewrap (None), or a per-kind launcher (sandbox/ocirun.py for OCI runtimes).
        self.kind = None
        if backend is not None and backend.kind == "oci":
            from .ocirun import OciLaunch

            self.kind = OciLaunch(self, backend, image)
        elif backend is not None and backend.kind == "landlock":
            from .landlockrun import LandlockLaunch

            self.kind = LandlockLaunch(self, backend, image)
        elif backend is not None and backend.kind != "bwrap":
            from .containerrun import ContainerLaunch

            self.kind = ContainerLaunch(self, backend, image)
        self.namespaces = namespaces  # a NamespaceSession when the plan needs corral's namespaces
        self.limits = None  # limits hook: a limits.RunLimits when the run has resource limits
        if limits is not None:
            from .limits import RunLimits

            self.limits = RunLimits(limits, plan.run_id)
        self.run_info = None
        self.cleanup = Cleanup(plan)
        self.pid = 0
        self.reaper_pid = 0
        self.reaper_fd = -1
        self.status_r = -1
        self.setup_probe = -1  # the seccomp pipe's read end: emptied once bwrap built the sandbox
        self.pass_fds: tuple[int, ...] = ()
        self.userns_fds: dict = {}  # (disk ids, shown ids) -> user namespace for idmapped mounts
        # Asked once, here: in the child, after entering a user namespace, geteuid() says 0.
        self.launched_by_root = os.geteuid() == 0

    def prepare(self, new_session: bool = True) -> list[str]:
        exe = resolve_bwrap(self.plan) if self.kind is None else ""
        if not self.plan.seccomp.allow_unix_sockets:
            refuse_datagram_stdio()
        program = b""
        if self.kind is None:
            from .seccomp import compile_filter

            program = compile_filter(self.plan.seccomp)
        ws = self.plan.workspace
        if ws is not None and ws.staging:
            from ..workspace.staging import build_copy

            try:
                build_copy(ws.path, ws.staging, set(ws.left_out))
            except OSError as exc:
                from ..workspace.staging import remove_copy

                remove_copy(ws.staging)
                raise SetupError(f"cannot build the staging copy of {ws.path}: {exc}",
                                 "check free space in /tmp and read access to the workspace") from None
        if ws is not None and ws.output:
            os.makedirs(ws.output, exist_ok=True)
        self.cleanup.create_placeholders()
        try:
            self._make_idmaps()
            self._start_reaper()
            if self.limits is not None:  # limits hook: the reaper removes the cgroups if corral dies
                for path in self.limits.create():
                    self._tell_reaper(f"cgroup {path}\n")
            if self.kind is not None:
                self.kind.tty = not new_session
                argv = self.kind.prepare()
                for line in self.kind.reaper_lines():
                    self._tell_reaper(line)
        except BaseException:
            self.abort()
            raise
        if self.kind is not None:
            self._check_namespaces()
            if self.plan.network is not None:
                from ..proxy.runs import describe_command

                self.run_info = self.namespaces.add_run(self.plan, describe_command(self.plan.argv))
            return argv
        try:
            self.status_r, status_w = os.pipe()
            seccomp_r = _pipe_with(program)
            if len(program) < 60000:  # a pipe (not a memfd): FIONREAD tells what bwrap left in it
                self.setup_probe = os.dup(seccomp_r)
        except BaseException:
            self.abort()
            raise
        data_fds = {i: _pipe_with(m.src.encode()) for i, m in enumerate(self.plan.mounts) if m.op == "data"}
        self.pass_fds = (seccomp_r, status_w, *data_fds.values())
        ids = None
        self._check_namespaces()
        if self.namespaces is not None or (self.plan.child_mount_ns and os.geteuid() != 0):
            # bwrap starts inside corral's user namespace (or the child's own, for /tmp's
            # overlay), where the launching user is mapped differently: tell it which ids the
            # command must see.
            run_as = self.plan.run_as if os.geteuid() == 0 else None
            ids = run_as or (os.geteuid(), os.getegid())
        if self.plan.network is not None:
            from ..proxy.runs import describe_command

            self.run_info = self.namespaces.add_run(self.plan, describe_command(self.plan.argv))
        argv = bwrap_argv(self.plan, seccomp_fd=seccomp_r, status_fd=status_w, new_session=new_session,
                          data_fds=data_fds, ids=ids)
        argv[0] = exe
        return argv

    def forward_signal(self, signum: int) -> None:
        """Deliver a signal sent to corral to the command (see _forward_signals)."""
        if not self.pid:
            return
        if self.kind is not None:
            forward = getattr(self.kind, "forward_signal", None)
            if forward is not None:
                forward(self.pid, signum)
            else:
                os.kill(self.pid, signum)
            return
        targets = [g for c in _children(self.pid) for g in _children(c)]  # bwrap -> its init -> the command
        for target in targets or [self.pid]:
            try:
                os.kill(target, signum)
            except ProcessLookupError:
                pass

    def _check_namespaces(self) -> None:
        ws = self.plan.workspace
        needs_namespaces = self.plan.network is not None or self.plan.offline or (
            ws is not None and ws.mode == "overlay" and not self.plan.overlay_layers)
        if needs_namespaces and self.namespaces is None:
            self.abort()
            raise SetupError("this plan needs corral's namespaces (network proxy or overlay), none were given")

    def blocked_summary(self) -> str:
        if self.plan.offline and self.namespaces is not None:
            from ..proxy.runs import describe_command

            # offline hook: the names refused, said and audited (`corral audit --suggest` reads them)
            return self.namespaces.offline_summary(self.plan.run_id, describe_command(self.plan.argv))
        if self.run_info is None or self.namespaces is None:
            return ""
        return self.namespaces.blocked_summary(self.run_info)

    def started(self, pid: int) -> None:
        self.pid = pid
        self._close_pass_fds()
        self._tell_reaper(f"bwrap {pid}\n")  # the wall's process: bwrap, the runtime or the engine
        if self.namespaces is not None:
            self.namespaces.start()

    def finish(self, status: int, report=stderr_report) -> int:
        """`status` is the exit status as the shell reports it (128+N for signal N)."""
        self._close_pass_fds()
        outcome = self._read_status(status) if self.kind is None else self.kind.outcome(status)
        if self.limits is not None:  # limits hook: name the limit hit, remove the cgroups
            status = self.limits.finish(status, report)
        try:
            self.cleanup.run(report)  # CleanupIncomplete: the run must not look successful (125)
        finally:
            if self.kind is not None:
                self.kind.cleanup()
            self._release_reaper()
        if outcome == "setup" and self.kind is not None:
            raise self.kind.failure(status)
        if outcome == "start":  # built, but the command could not be executed: 127/126, as shells do
            from .diagnose import start_failure

            env = dict(self.plan.env)
            status, line = start_failure(self.plan.argv[0] if self.plan.argv else "", env.get("PATH", ""),
                                         self.plan.cwd, self.plan.mounts)
            report(line)
        elif outcome == "setup":
            from .diagnose import diagnose_failure

            raise diagnose_failure(self.plan, status)
        return status

    def abort(self, report=stderr_report) -> None:
        """Setup failed or corral is unwinding: kill what runs, clean what was made."""
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = 0
        if self.limits is not None:  # limits hook
            self.limits.abort()
        self._close_pass_fds()
        if self.status_r >= 0:
            os.close(self.status_r)
            self.status_r = -1
        self._close_setup_probe()
        try:
            self.cleanup.run(report)
        except SetupError:
            pass  # each path was reported; the error being unwound is the one to show
        finally:
            if self.kind is not None:
                self.kind.cleanup()
            self._release_reaper()

    # In the forked child, between fork and exec of bwrap (the CLI's `_spawn` and the library's
    # preexec_fn both call these): first enter, then drop.
    def child_enter(self) -> None:
        """Join the run's cgroups, build the prepared view, join corral's namespaces; then the
        wall's own steps (an OCI runtime's root view)."""
        if getattr(self.kind, "own_namespaces", False):
            self.kind.child()  # a container engine: it joins only what it needs (sandbox/containerrun.py)
            return
        self._child_view()
        if self.kind is not None:
            try:
                self.kind.child()
            except OSError as exc:
                raise OSError(exc.errno, f"[wall] {exc}") from None

    def _child_view(self) -> None:
        if self.limits is not None:  # limits hook: join the cgroups with the launcher's credentials
            self.limits.child.join()
        from .libc import enter

        ns = self.namespaces.ns if self.namespaces is not None else None
        plan = self.plan
        if not self.launched_by_root:
            # Unprivileged: join corral's user namespace (user first: it grants the right to
            # join the others), or make one of our own, to mount /tmp's overlay before bwrap.
            # The rlimits first: a user namespace records RLIMIT_NPROC when it is made.
            if self.limits is not None:
                self.limits.child.set_rlimits()
            if ns is not None:
                enter(ns)
            if not plan.child_mount_ns:
                return
            from . import mountprep

            if ns is not None:
                mountprep.private_mount_ns()
            else:
                mountprep.self_userns(os.getuid(), os.getgid())
            if plan.tmp_overlay is not None:
                mountprep.overlay_tmp(plan.tmp_overlay, userxattr=True)
            mountprep.premount(plan.premounts)
            return
        if not plan.child_mount_ns:
            if ns is not None:
                enter(ns)
            return
        # Root with a view to prepare: still in the initial user namespace, build the view on
        # the overlay's mount namespace (if any), then join the user and network namespaces.
        if ns is not None and ns.mnt_fd >= 0:
            from .libc import CLONE_NEWNS, setns

            setns(ns.mnt_fd, CLONE_NEWNS)
        from .mountprep import prepare

        prepare(plan.idmaps, plan.skeletons, self.userns_fds, plan.overlay_layers,
                plan.workspace.upper if plan.overlay_layers else "", plan.workspace.work if plan.overlay_layers else "",
                plan.tmp_overlay, plan.premounts)
        if ns is not None:
            enter(ns, mount=False)

    def child_drop(self) -> None:
        """Become the sandbox uid (launched by root), then set the rlimits."""
        if not self.launched_by_root:
            return  # the rlimits were set before entering any user namespace (child_enter)
        run_as = self.plan.run_as
        if run_as and (self.kind is None or self.kind.drops_uid):
            os.setgroups([])
            os.setgid(run_as[1])
            os.setuid(run_as[0])
        if self.limits is not None:  # limits hook: rlimits last (RLIMIT_NPROC counts the final uid)
            self.limits.child.set_rlimits()

    # -- internals ----------------------------------------------------------------------
    def _make_idmaps(self) -> None:
        if not (self.plan.idmaps or self.plan.overlay_layers):
            return
        from .mountprep import userns

        for m in (*self.plan.idmaps, *self.plan.overlay_layers):
            key = (m.disk, m.shown)
            if key not in self.userns_fds:
                try:
                    self.userns_fds[key] = userns(m.disk, m.shown)
                except OSError as exc:
                    raise _drop_refused(self.plan, str(exc)) from None

    def _close_pass_fds(self) -> None:
        for fd in self.pass_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.pass_fds = ()
        if self.userns_fds:
            from .mountprep import reap

            for fd in self.userns_fds.values():
                os.close(fd)
            self.userns_fds = {}
            reap()

    def _close_setup_probe(self, look: bool = False) -> bool | None:
        """Close the probe; with `look`, whether bwrap read the seccomp program (None: unknown)."""
        if self.setup_probe < 0:
            return None
        try:
            if not look:
                return None
            import array
            import fcntl
            import termios

            left = array.array("i", [0])
            fcntl.ioctl(self.setup_probe, termios.FIONREAD, left)
            return left[0] == 0
        except OSError:
            return None
        finally:
            os.close(self.setup_probe)
            self.setup_probe = -1

    def _read_status(self, status: int) -> str:
        """"ran" when bwrap set the sandbox up and ran the command, "setup" when it could not
        build the sandbox (it printed why), "start" when it built it but could not execute
        the command (`diagnose.classify_exit`)."""
        if self.status_r < 0:
            self._close_setup_probe()
            return "ran"
        os.set_blocking(self.status_r, False)
        data = b""
        try:
            while chunk := os.read(self.status_r, 65536):
                data += chunk
        except BlockingIOError:
            pass
        os.close(self.status_r)
        self.status_r = -1
        # Only a failed start needs the probe (and its imports): status 1 without an exit code.
        setup_done = self._close_setup_probe(look=status == 1 and b'"exit-code"' not in data)
        if b'"exit-code"' in data:
            return "ran"  # the common case, without importing diagnose
        from .diagnose import classify_exit

        return classify_exit(data, status, setup_done)

    def _start_reaper(self) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(w)
                _reaper_main(r, self.cleanup)
            finally:
                os._exit(0)
        os.close(r)
        self.reaper_pid, self.reaper_fd = pid, w

    def _tell_reaper(self, msg: str) -> None:
        try:
            os.write(self.reaper_fd, msg.encode())
        except OSError:
            pass

    def _release_reaper(self) -> None:
        if self.reaper_fd >= 0:
            self._tell_reaper("done\n")
            os.close(self.reaper_fd)
            self.reaper_fd = -1
        if self.reaper_pid:
            try:
                os.waitpid(self.reaper_pid, 0)
            except ChildProcessError:
                pass
            self.reaper_pid = 0


def run_foreground(plan: Plan, tty: bool | None = None, namespaces=None, report_blocked=None,
                   limits=None, backend=None, image: str | None = None) -> int:
    """The CLI's way to run: inherit stdio (or relay a pty), forward signals, return status.
    `namespaces`: the NamespaceSession serving this run (network proxy, overlay), if any;
    `limits`: the run's limits.LimitsPlan, if any."""
    if tty is None:
        try:
            tty = os.isatty(0) and os.isatty(1)
        except OSError:
            tty = False
    from .._timing import mark

    # (an image has its own PATH: the engine says what is missing there)
    missing = _missing_command(plan) if backend is None or backend.kind != "container" else ""
    if missing:  # nowhere on the sandbox's PATH: said at once, as a shell would (bwrap would print it raw)
        stderr_report(missing)
        return 127
    run = Run(plan, namespaces, limits, backend, image)
    argv = run.prepare(new_session=not tty)
    mark("prepare")
    master = slave = None
    try:
        if tty:
            from .pty_relay import copy_winsize

            master, slave = os.openpty()
            copy_winsize(master)
        pid = _spawn(argv, dict(plan.env), run, slave)
        run.started(pid)
        mark("spawn")
        if run.limits is not None:  # limits hook: the wall-clock timer
            run.limits.started(pid)
        if slave is not None:
            os.close(slave)
            slave = None
        previous = _forward_signals(run)
        try:
            if master is not None:
                from .pty_relay import relay

                raw = relay(master, pid)
            else:
                _, raw = os.waitpid(pid, 0)
        finally:
            _restore(previous)
        run.pid = 0
    except BaseException:
        run.abort()
        raise
    finally:
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
    mark("command")
    status = run.finish(exit_status(raw))
    mark("cleanup")
    if report_blocked is not None:
        summary = run.blocked_summary()
        if summary:
            report_blocked(summary)
    return status


def _missing_command(plan: Plan) -> str:
    """`corral: NAME: command not found` when a bare command name exists in no directory of
    the sandbox's PATH (on the host, which the sandbox sees read-only), else ""."""
    name = plan.argv[0] if plan.argv else ""
    if not name or "/" in name:
        return ""
    path = dict(plan.env).get("PATH", "/usr/bin:/bin")
    dirs = path.split(":")
    ws = plan.workspace
    if any(not d.startswith("/") for d in dirs) or (ws is not None and ws.mode in ("tmpfs", "copy", "overlay")):
        return ""  # the sandbox's view of those differs from the host's: let bwrap look
    for d in dirs:
        if os.path.lexists(os.path.join(d, name)):
            return ""
    from ..display import shown

    return f"corral: {shown(name, 200)}: command not found"


def _pipe_with(data: bytes) -> int:
    if len(data) < 60000:
        r, w = os.pipe()
        try:
            os.write(w, data)  # < 64 KiB: fits the pipe buffer, no blocking
        finally:
            os.close(w)
        return r
    # Larger (a CA bundle): an anonymous memory file, read by bwrap from its start.
    fd = os.memfd_create("corral-data", os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _spawn(argv: list[str], env: dict[str, str], run: Run, tty_slave) -> int:
    """fork/exec bwrap with only stdio and `run.pass_fds` open; errors come back on a pipe.
    The child enters the run's namespaces, view and cgroups, then drops to the sandbox uid
    (`Run.child_enter`, `Run.child_drop`)."""
    pass_fds = run.pass_fds
    if run.namespaces is not None or run.plan.child_mount_ns:
        from .libc import load_libc

        load_libc()  # before fork: the child makes its system calls through it
    if run.namespaces is not None:
        run.namespaces.ns  # noqa: B018 - received here, before fork (the child only uses it)
    err_r, err_w = os.pipe()  # CLOEXEC: closed by a successful exec
    pid = os.fork()
    if pid == 0:
        try:
            os.close(err_r)
            try:
                run.child_enter()
            except OSError as exc:
                os.write(err_w, b"\0" + str(exc).encode(errors="replace")[:500])
                os._exit(126)
            for sig in (*FORWARDED, signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores the last two; exec keeps that
                signal.signal(sig, signal.SIG_DFL)
            if tty_slave is not None:
                keep_err = os.dup(2) if not os.isatty(2) else None
                os.login_tty(tty_slave)  # new session; the pty is the controlling terminal
                if keep_err is not None:
                    os.dup2(keep_err, 2)
                    os.close(keep_err)
            close_all_but({0, 1, 2, err_w, *pass_fds})
            for fd in pass_fds:
                os.set_inheritable(fd, True)
            run.child_drop()
            os.execve(argv[0], argv, env)
        except BaseException as exc:
            try:
                os.write(err_w, str(exc).encode(errors="replace")[:500])
            finally:
                os._exit(127)
    os.close(err_w)
    chunks = []
    while True:
        chunk = os.read(err_r, 512)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(err_r)
    if chunks and chunks[0].startswith(b"\0"):
        os.waitpid(pid, 0)
        why = b"".join(chunks)[1:].decode(errors="replace")
        if "[wall] " in why:  # the backend's own step (an OCI runtime's root view), not the uid's view
            raise SetupError(f"cannot prepare the {run.kind.backend.name} backend's view: "
                             f"{why.split('[wall] ', 1)[1]}", "run `corral doctor --backend "
                             f"{run.kind.backend.name}`, or choose --backend bwrap")
        raise _drop_refused(run.plan, why)
    if chunks:
        os.waitpid(pid, 0)
        raise SetupError(f"cannot start {argv[0]}: {b''.join(chunks).decode(errors='replace')}",
                         "check that it is installed and executable (`corral doctor`)")
    return pid


def _drop_refused(plan: Plan, why: str) -> SetupError:
    """The view for the sandbox uid could not be prepared: refuse (never fall back to uid 0)."""
    import re

    ident = plan.identity
    who = f"uid {ident.uid}, {ident.why}" if ident else "the sandbox uid"
    why = re.sub(r"^\[Errno \d+\] ", "", why)
    if "creating the user namespace" in why:  # not the filesystem: user namespaces are refused here
        from .diagnose import userns_problem

        problem = userns_problem()
        if problem is not None:
            return SetupError(f"cannot prepare the sandbox's view for {who}: {problem.cause}", problem.fix)
    return SetupError(
        f"cannot prepare the sandbox's view for {who}: {why}",
        "the kernel must support idmapped mounts on the writable areas' filesystem (Linux >= 5.12; ext4, "
        "xfs, btrfs; tmpfs >= 6.3); or run from a directory owned by an unprivileged user, or pass "
        "--as-user USER; or, knowingly, --as-user root to run the command as host uid 0 as before")


def _forward_signals(run: Run) -> dict:
    """Signals sent to corral go to the command: to what runs under bubblewrap's init (bwrap
    itself would die of them and take the command down with no chance to clean up), or
    through the wall's runtime (an OCI runtime forwards them to the container's init)."""

    def forward(signum, _frame):
        run.forward_signal(signum)

    previous = {}
    for sig in FORWARDED:
        try:
            previous[sig] = signal.signal(sig, forward)
        except ValueError:  # not the main thread
            break
    return previous


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except (OSError, ValueError):
        return []


def _restore(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _reaper_main(fd: int, cleanup: Cleanup) -> None:
    """Wait for corral to go away; if it did not say 'done', clean up after it."""
    os.setsid()  # survive a kill of corral's process group
    from .libc import set_name

    set_name("corral-reaper")
    for sig in FORWARDED:
        signal.signal(sig, signal.SIG_IGN)
    cleanup.locks = {}  # corral's lock descriptors: closed here, never ours to release
    cleanup.patience = 2.0
    close_all_but({2, fd})
    try:
        devnull = os.open("/dev/null", os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except InterruptedError:
            continue
        if not chunk:
            break
        data += chunk
    if b"done\n" in data:
        return
    for line in data.decode().splitlines():
        if line.startswith("bwrap "):
            _wait_gone(int(line.split()[1]))
    try:
        cleanup.run(stderr_report)
    except SetupError:
        pass  # every path it could not check is on stderr; nobody waits for a status
    for line in data.decode().splitlines():
        if line.startswith("exec "):  # a wall's own cleanup (an OCI runtime's delete --force)
            import json
            import subprocess

            try:
                subprocess.run(json.loads(line[5:]), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=30)
            except (OSError, ValueError, subprocess.SubprocessError):
                pass
        elif line.startswith("rmtree "):
            import shutil

            shutil.rmtree(line[7:], ignore_errors=True)
    cgroups = [line[7:] for line in data.decode().splitlines() if line.startswith("cgroup ")]
    if cgroups:  # limits hook: the run's cgroups go with it
        from .limits import remove_dirs

        remove_dirs(reversed(cgroups))


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    """bwrap dies with its parent (die-with-parent); wait for it, then make sure."""
    import select
    import time

    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(int(timeout * 1000)):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            poller.poll(1000)
    finally:
        os.close(pidfd)
    time.sleep(0.02)  # the sandbox's init takes its pid namespace down right after


def exit_status(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
