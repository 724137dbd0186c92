"""Resource limits for one run: which mechanism enforces each limit, and the edges that do it.

Rules of this module:
- `plan_limits(limits, facts)` is pure: from the policy's `Limits` and what was observed about
  the launcher (uid, cgroup hierarchies and which directories it may write) it decides, per
  limit, the mechanism (cgroup v2 file, cgroup v1 controller, rlimit, wall-clock timer) or
  why the limit cannot be enforced. `--dry-run` prints that decision; tests hand in fake facts.
- `probe()` is the only place that looks at /proc and /sys/fs/cgroup for that decision.
- `Cgroups` makes the run's cgroups before the command starts and removes them after it (the
  reaper removes them too when corral is SIGKILLed); the child joins them between fork and
  exec (`join_and_limit`), so nothing of the command ever runs outside its limits.

cgroup v1 needs one directory per controller; v2 one directory for all. A v2 cgroup must be
made under an ancestor whose `cgroup.subtree_control` already enables the controller (the
"no internal processes" rule forbids enabling it in the cgroup corral itself runs in).
"""

from __future__ import annotations

import os
import signal

from .._values import frozen, replace
from ..errors import SetupError
from ..policy.limits import show
from ..policy.model import LIMIT_KEYS, Limits

CGROUP_KEYS = ("memory", "pids", "cpus")  # limits only a cgroup enforces fully
CONTROLLER = {"memory": "memory", "pids": "pids", "cpus": "cpu"}
PIDS_OVERHEAD = 2  # bwrap outside the sandbox and the sandbox's init (pid 1) count too
CPU_PERIOD_US = 100_000
KILL_GRACE = 2.0  # seconds between SIGTERM to the command and SIGKILL to the sandbox
EXIT_TIMEOUT = 124  # as timeout(1)
EXIT_KILLED = 137  # 128 + SIGKILL, as the shell reports it
DELEGATED_DIR = "corral"  # a root-delegated v1 subtree: <controller mount>/corral/<uid>
UNLIMITED = -1  # resource.RLIM_INFINITY


@frozen
class CgroupDir:
    """A directory a run's cgroup could be made in, as observed."""

    path: str
    writable: bool  # a child can be made here and joined (directory and cgroup.procs writable)
    enabled: frozenset = frozenset()  # controllers a child gets: v1 the mount's, v2 subtree_control
    files: frozenset = frozenset()  # optional interface files seen (memory.memsw.limit_in_bytes, ...)


@frozen
class Hierarchy:
    """One mounted cgroup hierarchy (v1: a controller's; v2: the unified one)."""

    version: int
    mount: str
    controllers: frozenset  # v1: the mount's controllers; v2: the root's cgroup.controllers
    candidates: tuple = ()  # CgroupDir, in order of preference (v1: own cgroup, delegated dir; v2: ancestors)


@frozen
class Facts:
    uid: int  # the launcher's effective uid
    sandbox_uid: int  # the uid the sandbox runs as (run_as when root launches for a user)
    hierarchies: tuple = ()  # Hierarchy
    hard: tuple = ()  # (rlimit name, hard limit or UNLIMITED) as inherited
    processes: int = 0  # processes sandbox_uid runs now (the RLIMIT_NPROC fallback counts them)


@frozen
class Enforcement:
    key: str  # memory | pids | cpus | timeout | nofile | fsize
    value: str  # as the user writes it: "2g"
    how: str  # the mechanism, or the fallback ("" when nothing enforces it)
    full: bool  # enforced as asked
    why: str = ""  # when not full: why not


@frozen
class CgroupSpec:
    """One cgroup to make for the run: under `base`, these files written in order."""

    version: int
    base: str
    controllers: tuple[str, ...]
    files: tuple[tuple[str, str], ...]


@frozen
class LimitsPlan:
    limits: Limits
    items: tuple = ()  # Enforcement, in LIMIT_KEYS order
    cgroups: tuple = ()  # CgroupSpec
    rlimits: tuple = ()  # (name, value) set soft = hard in the child before exec
    timeout: float | None = None

    @property
    def unenforced(self) -> tuple:
        return tuple(e for e in self.items if not e.full)

    def describe(self) -> list[str]:
        """The enforcement report (`--dry-run`)."""
        out = []
        for e in self.items:
            what = f"{e.key} {e.value}"
            if e.full:
                out.append(f"{what:<16} {e.how}")
            else:
                out.append(f"{what:<16} NOT ENFORCED: {e.why}" + (f"; fallback: {e.how}" if e.how else ""))
        if self.limits.strict:
            out.append("strict = true: the run is refused while any limit above is not enforced")
        return out

    def warning(self) -> str:
        """One line naming each limit not (fully) enforced, and why; "" when all are."""
        parts = []
        for e in self.unenforced:
            parts.append(f"{e.key} {e.value} ({e.why}" + (f"; only {e.how}" if e.how else "") + ")")
        if not parts:
            return ""
        return "corral: limits not enforced for this launcher: " + ", ".join(parts)

    def refusal(self) -> SetupError | None:
        if not self.limits.strict or not self.unenforced:
            return None
        names = ", ".join(f"{e.key} {e.value} ({e.why})" for e in self.unenforced)
        return SetupError(f"limits.strict = true and these limits cannot be enforced: {names}",
                          "have root delegate a cgroup (docs/policy.md, [limits]), run as root, "
                          "or set limits.strict = false")


# -- the decision (pure) ----------------------------------------------------------------------

def plan_limits(limits: Limits, facts: Facts) -> LimitsPlan:
    items = []
    rlimits: list[tuple[str, int]] = []
    by_base: dict[tuple[int, str], list] = {}  # (version, base) -> [controllers, files]
    hard = dict(facts.hard)
    for key in LIMIT_KEYS:
        value = getattr(limits, key)
        if value is None:
            continue
        shown = show(key, value)
        if key in CGROUP_KEYS:
            found = _base_for(CONTROLLER[key], facts)
            if isinstance(found, tuple):
                hierarchy, where = found
                files = _cgroup_files(key, value, hierarchy.version, where.files)
                slot = by_base.setdefault((hierarchy.version, where.path), [[], []])
                slot[0].append(CONTROLLER[key])
                slot[1].extend(files)
                how = (f"cgroup v{hierarchy.version} {CONTROLLER[key]}: "
                       + ", ".join(f"{f} = {v}" for f, v in files) + f" (in {where.path})")
                if key == "pids":
                    how += f"; the sandbox's own {PIDS_OVERHEAD} processes added"
                items.append(Enforcement(key, shown, how, True))
                continue
            fallback = _fallback(key, value, facts, hard)
            how = ""
            if fallback is not None:
                rlimits.append(fallback[0])
                how = fallback[1]
            elif key == "pids" and facts.sandbox_uid == 0:
                found += "; RLIMIT_NPROC does not apply to uid 0"
            elif key == "cpus":
                found += "; no rlimit limits a CPU share"
            items.append(Enforcement(key, shown, how, False, found))
        elif key == "timeout":
            items.append(Enforcement(key, shown, f"timer in corral: SIGTERM to the command, SIGKILL "
                                     f"after {KILL_GRACE:g} s; exit {EXIT_TIMEOUT}", True))
        else:
            name = {"nofile": "RLIMIT_NOFILE", "fsize": "RLIMIT_FSIZE"}[key]
            ceiling = hard.get(name, UNLIMITED)
            if ceiling != UNLIMITED and value > ceiling:
                rlimits.append((name, ceiling))
                how = f"{name} = {ceiling} (the inherited hard limit is already lower)"
            else:
                rlimits.append((name, value))
                how = f"{name} = {value} (per process)"
            items.append(Enforcement(key, shown, how, True))
    cgroups = tuple(CgroupSpec(version, base, tuple(ctrls), tuple(files))
                    for (version, base), (ctrls, files) in by_base.items())
    return LimitsPlan(limits, tuple(items), cgroups, tuple(rlimits), limits.timeout)


def _base_for(controller: str, facts: Facts):
    """(Hierarchy, CgroupDir) to make the run's cgroup in, or a string saying why there is none.
    A v2 hierarchy that delegates the controller wins over v1."""
    reasons = []
    for version in (2, 1):
        for h in facts.hierarchies:
            if h.version != version or controller not in h.controllers:
                continue
            for cand in h.candidates:
                if cand.writable and controller in cand.enabled:
                    return h, cand
            if version == 2:
                reasons.append(f"no writable cgroup v2 directory under {h.mount} enables {controller} for "
                               f"its children")
            else:
                reasons.append(f"no {controller} cgroup writable by uid {facts.uid}; root can delegate "
                               f"{h.mount}/{DELEGATED_DIR}/{facts.uid}")
    if not reasons:
        return f"no {controller} cgroup controller is mounted"
    return reasons[-1]


def _cgroup_files(key: str, value, version: int, present: frozenset) -> list[tuple[str, str]]:
    if key == "memory":
        if version == 2:
            files = [("memory.max", str(value))]
            if "memory.swap.max" in present:
                files.append(("memory.swap.max", "0"))
            return files
        files = [("memory.limit_in_bytes", str(value))]
        if "memory.memsw.limit_in_bytes" in present:  # memory + swap: no way around the limit through swap
            files.append(("memory.memsw.limit_in_bytes", str(value)))
        return files
    if key == "pids":
        return [("pids.max", str(value + PIDS_OVERHEAD))]
    quota = max(1000, round(value * CPU_PERIOD_US))
    if version == 2:
        return [("cpu.max", f"{quota} {CPU_PERIOD_US}")]
    return [("cpu.cfs_period_us", str(CPU_PERIOD_US)), ("cpu.cfs_quota_us", str(quota))]


def _fallback(key: str, value, facts: Facts, hard: dict):
    """((rlimit, value), description) that approximates a cgroup limit, or None."""
    if key == "memory":
        return ("RLIMIT_AS", value), f"RLIMIT_AS {show('memory', value)} per process, not the sandbox's total"
    if key == "pids" and facts.sandbox_uid != 0:
        # Every process of the uid counts: those running now (corral included), corral's reaper
        # (started later), bwrap's two, then the command's.
        n = facts.processes + 1 + PIDS_OVERHEAD + value
        return ("RLIMIT_NPROC", n), (f"RLIMIT_NPROC {n}, which counts all {facts.processes} processes uid "
                                     f"{facts.sandbox_uid} runs now too")
    return None


# -- what the launcher may do (the only I/O for the decision) -----------------------------------

def probe(sandbox_uid: int | None = None, need_cgroups: bool = True) -> Facts:
    import resource

    uid = os.geteuid()
    sandbox_uid = uid if sandbox_uid is None else sandbox_uid
    hard = []
    for name in ("RLIMIT_NOFILE", "RLIMIT_FSIZE", "RLIMIT_AS", "RLIMIT_NPROC"):
        h = resource.getrlimit(getattr(resource, name))[1]
        hard.append((name, UNLIMITED if h == resource.RLIM_INFINITY else h))
    hierarchies = _hierarchies(uid) if need_cgroups else ()
    return Facts(uid, sandbox_uid, tuple(hierarchies), tuple(hard))


def _hierarchies(uid: int) -> list[Hierarchy]:
    own: dict[str, str] = {}  # controller (or "" for v2) -> path in its hierarchy
    try:
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                for c in ctrls.split(",") if ctrls else [""]:
                    own[c] = path
        with open("/proc/self/mountinfo") as fh:
            mounts = fh.read().splitlines()
    except OSError:
        return []
    out = []
    for line in mounts:
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(rfields) < 3 or rfields[0] not in ("cgroup", "cgroup2") or len(fields) < 5:
            continue
        root, mount = fields[3], _unescape(fields[4])
        if rfields[0] == "cgroup2":
            if "" not in own:
                continue
            out.append(_v2(mount, _within(mount, root, own[""])))
            continue
        ctrls = frozenset(o for o in rfields[2].split(",") if o in ("memory", "pids", "cpu"))
        key = next((c for c in ctrls if c in own), None)
        if key is None:
            continue
        here = _within(mount, root, own[key])
        cands = [_observe(here, ctrls)]
        delegated = os.path.join(mount, DELEGATED_DIR, str(uid))
        if delegated != here and os.path.isdir(delegated):
            cands.append(_observe(delegated, ctrls))
        out.append(Hierarchy(1, mount, ctrls, tuple(cands)))
    return out


def _v2(mount: str, here: str) -> Hierarchy:
    controllers = frozenset(_read(os.path.join(mount, "cgroup.controllers")).split())
    cands = []
    d = os.path.dirname(here) if here != mount else here  # own cgroup holds corral: its parent first
    while True:
        enabled = frozenset(_read(os.path.join(d, "cgroup.subtree_control")).split())
        cands.append(_observe(d, enabled))
        if d == mount or not d.startswith(mount):
            break
        d = os.path.dirname(d)
    return Hierarchy(2, mount, controllers, tuple(cands))


def _observe(path: str, enabled: frozenset) -> CgroupDir:
    writable = os.access(path, os.W_OK | os.X_OK) and os.access(os.path.join(path, "cgroup.procs"), os.W_OK)
    files = frozenset(f for f in ("memory.memsw.limit_in_bytes", "memory.swap.max")
                      if os.path.exists(os.path.join(path, f)))
    return CgroupDir(path, writable, enabled, files)


def _within(mount: str, root: str, path: str) -> str:
    """The directory of cgroup `path` in a hierarchy mounted at `mount` from `root`."""
    if root != "/" and (path == root or path.startswith(root + "/")):
        path = path[len(root):] or "/"
    return os.path.normpath(mount + "/" + path.lstrip("/"))


def _unescape(text: str) -> str:
    return text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def _count_processes(uid: int) -> int:
    n = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n


def prepare(limits: Limits, sandbox_uid: int | None, report=None, refuse: bool = True) -> LimitsPlan:
    """Probe, decide, tell the user what is not enforced (one line) or refuse (strict; not
    with `refuse=False`, for --dry-run, which prints the decision instead)."""
    need = any(getattr(limits, k) is not None for k in CGROUP_KEYS)
    facts = probe(sandbox_uid, need)
    lp = plan_limits(limits, facts)
    if any(name == "RLIMIT_NPROC" for name, _ in lp.rlimits):  # the fallback counts what runs now (a /proc scan)
        lp = plan_limits(limits, replace(facts, processes=_count_processes(facts.sandbox_uid)))
    refusal = lp.refusal() if refuse else None
    if refusal is not None:
        raise refusal
    line = lp.warning()
    if line and report is not None:
        report(line)
    return lp


# -- the run's cgroups (edge) -------------------------------------------------------------------

class Cgroups:
    """The cgroups of one run: made before the spawn, joined by the child, removed after."""

    def __init__(self, plan: LimitsPlan, name: str):
        self.plan = plan
        self.name = name
        self.dirs: list[tuple[CgroupSpec, str]] = []

    def create(self) -> list[str]:
        for spec in self.plan.cgroups:
            path = os.path.join(spec.base, self.name)
            try:
                os.mkdir(path, 0o755)
            except OSError as exc:
                self.remove()
                raise SetupError(f"cannot create the run's {'+'.join(spec.controllers)} cgroup {path}: "
                                 f"{exc.strerror}", "check that the cgroup is still writable, or drop the "
                                 "limit") from None
            self.dirs.append((spec, path))
            for fname, value in spec.files:
                try:
                    _write(os.path.join(path, fname), value)
                except OSError as exc:
                    self.remove()
                    raise SetupError(f"cannot set {fname} = {value} in {path}: {exc.strerror}",
                                     "lower or drop the limit (a parent cgroup may allow less)") from None
        return [p for _, p in self.dirs]

    @property
    def procs_files(self) -> tuple[str, ...]:
        return tuple(os.path.join(p, "cgroup.procs") for _, p in self.dirs)

    def outcome(self, status: int, report) -> int:
        """After the run: tell which limit was hit; the status becomes 137 for a memory kill."""
        memory = self.plan.limits.memory
        pids = self.plan.limits.pids
        for spec, path in self.dirs:
            if memory is not None and "memory" in spec.controllers:
                kills = _counter(os.path.join(path, "memory.events" if spec.version == 2 else "memory.oom_control"),
                                 "oom_kill")
                if kills and status == EXIT_KILLED:
                    report(f"corral: the command was killed: memory limit {show('memory', memory)} reached")
                elif kills:
                    report(f"corral: memory limit {show('memory', memory)} reached: {kills} process(es) of the "
                           "command killed")
            if pids is not None and "pids" in spec.controllers:
                refused = _counter(os.path.join(path, "pids.events"), "max")
                if refused:
                    report(f"corral: pids limit {pids} reached (fork refused {refused} times)")
        return status

    def remove(self) -> None:
        remove_dirs([p for _, p in reversed(self.dirs)])
        self.dirs.clear()


def remove_dirs(paths, patience: float = 3.0) -> list[str]:
    """rmdir each cgroup; a just-reaped run can leave it busy for a moment (retry), and a
    process still inside after a while is killed (it can only be the run's). Returns leftovers."""
    import time

    left = []
    for path in paths:
        deadline = time.monotonic() + patience
        delay = 0.001
        while True:
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != 16 or time.monotonic() > deadline:  # EBUSY
                    left.append(path)
                    break
            if delay > 0.05:
                _kill_members(path)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
    return left


def _kill_members(path: str) -> None:
    for pid in _read(os.path.join(path, "cgroup.procs")).split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError, ValueError):
            pass


def _counter(path: str, name: str) -> int:
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return 0


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


# -- in the child, between fork and exec ---------------------------------------------------------

class ChildSetup:
    """What the forked child does before exec: join the run's cgroups (first, while it still
    has the launcher's credentials) and set the rlimits (last, after any uid change)."""

    def __init__(self, procs_files: tuple[str, ...], rlimits: tuple):
        import resource  # imported here, never after the fork

        self.procs_files = procs_files
        self.rlimits = tuple((getattr(resource, name), value) for name, value in rlimits)
        self._setrlimit = resource.setrlimit

    def join(self) -> None:
        me = str(os.getpid())
        for path in self.procs_files:
            try:
                _write(path, me)
            except OSError as exc:  # not an OSError: that would read as a failure to prepare the view
                raise RuntimeError(f"cannot join the run's cgroup {os.path.dirname(path)}: {exc.strerror}") from None

    def set_rlimits(self) -> None:
        for res, value in self.rlimits:
            self._setrlimit(res, (value, value))


# -- the wall-clock limit -------------------------------------------------------------------------

class Timer:
    """After `timeout` s: SIGTERM to the command's processes (bwrap's descendants), then SIGKILL
    to bwrap after KILL_GRACE (its death takes the sandbox down). A thread, so that it works
    for the library too (signal handlers belong to the main thread)."""

    def __init__(self, pid: int, timeout: float):
        import threading

        self.pid = pid
        self.timeout = timeout
        self.fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="corral-timeout", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        if self._stop.wait(self.timeout):
            return
        self.fired = True
        for pid in _descendants(self.pid):
            _kill(pid, signal.SIGTERM)
        if self._stop.wait(KILL_GRACE):
            return
        _kill(self.pid, signal.SIGKILL)
        for pid in _descendants(self.pid):
            _kill(pid, signal.SIGKILL)

    def outcome(self, status: int, report) -> int:
        if not self.fired:
            return status
        report(f"corral: time limit {show('timeout', self.timeout)} reached")
        return EXIT_TIMEOUT


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def file_size_outcome(limits: Limits, status: int, report) -> int:
    """RLIMIT_FSIZE kills with SIGXFSZ: say which limit that was."""
    if limits.fsize is not None and status == 128 + signal.SIGXFSZ:
        report(f"corral: the command was killed: file size limit {show('fsize', limits.fsize)} reached")
    return status


# -- one run, as launch.Run drives it ---------------------------------------------------------------

class RunLimits:
    """The limits of one run: `create()` before the spawn (returns the cgroup directories, for
    the reaper), `child` for the forked child, `started(pid)` arms the timer, `finish(status)`
    reports what was hit, removes the cgroups and returns the run's exit status."""

    def __init__(self, plan: LimitsPlan, run_id: str):
        self.plan = plan
        self.cgroups = Cgroups(plan, f"corral-{run_id or os.urandom(6).hex()}")
        self.timer: Timer | None = None
        self.child: ChildSetup | None = None

    def create(self) -> list[str]:
        dirs = self.cgroups.create()
        self.child = ChildSetup(self.cgroups.procs_files, self.plan.rlimits)
        return dirs

    def started(self, pid: int) -> None:
        if self.plan.timeout is not None:
            self.timer = Timer(pid, self.plan.timeout)
            self.timer.start()

    def finish(self, status: int, report) -> int:
        if self.timer is not None:
            self.timer.cancel()
        report = report or (lambda _line: None)
        status = self.cgroups.outcome(status, report)
        self.cgroups.remove()
        if self.timer is not None and self.timer.fired:
            return self.timer.outcome(status, report)
        return file_size_outcome(self.plan.limits, status, report)

    def abort(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.cgroups.remove()
