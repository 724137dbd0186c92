"""Resource limits: parsing (pure), the enforcement decision over fake cgroup layouts (pure),
and real runs as root and as the unprivileged launcher: a fork loop and a memory hog stay
inside their limits and are reported, the wall-time limit exits 124, and no cgroup of a run is
left behind (also when corral itself is SIGKILLed)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

import helpers
from corral.errors import PolicyError
from corral.policy import limits as L
from corral.policy.model import LaunchContext, Limits
from corral.policy.native import load_toml
from corral.policy.render import to_toml
from corral.sandbox.limits import (
    CgroupDir,
    Facts,
    Hierarchy,
    PIDS_OVERHEAD,
    plan_limits,
)

CTX = LaunchContext(cwd="/w/proj", home="/home/u", uid=1000, gid=1000)
G = 1 << 30
M = 1 << 20

# -- parsing ---------------------------------------------------------------------------------

SIZES = [
    ("2g", 2 * G), ("2G", 2 * G), ("2GiB", 2 * G), ("2gb", 2 * G), ("512m", 512 * M), ("1.5g", 3 * G // 2),
    ("64k", 64 << 10), ("100000", 100000), (4096, 4096), ("1t", 1 << 40), (" 8 m ", 8 * M),
]


@pytest.mark.parametrize("text,expected", SIZES)
def test_parse_size(text, expected):
    assert L.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "g", "2x", "2 gigs", "-1m", "0", True, None, [], "1.2.3m", "nan"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        L.parse_size(text)


DURATIONS = [
    ("10m", 600.0), ("30s", 30.0), ("1h30m", 5400.0), ("2.5s", 2.5), ("500ms", 0.5), ("90", 90.0), (90, 90.0),
    (1.5, 1.5), ("1d", 86400.0), ("1h 2m 3s", 3723.0),
]


@pytest.mark.parametrize("text,expected", DURATIONS)
def test_parse_duration(text, expected):
    assert L.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "m", "10x", "-5s", "0", 0, True, "1y", "inf", float("nan"), "400d"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError):
        L.parse_duration(text)


@pytest.mark.parametrize("n,text", [(2 * G, "2g"), (3 * G // 2, "1536m"), (64 << 10, "64k"), (1000, "1000")])
def test_format_size_is_exact(n, text):
    assert L.format_size(n) == text
    assert L.parse_size(text) == n


@pytest.mark.parametrize("s,text", [(600.0, "10m"), (5400.0, "1h30m"), (2.5, "2.5s"), (30.0, "30s"), (3723.0, "1h2m3s")])
def test_format_duration_round_trips(s, text):
    assert L.format_duration(s) == text
    assert L.parse_duration(text) == s


def test_limits_table_loads_and_renders_back():
    p = load_toml('[limits]\nmemory = "2g"\npids = 100\ncpus = 1.5\ntimeout = "10m"\nnofile = 1024\n'
                  'fsize = "1g"\nstrict = true\n', "p.toml", CTX)
    assert p.limits == Limits(memory=2 * G, pids=100, cpus=1.5, timeout=600.0, nofile=1024, fsize=G, strict=True)
    text = to_toml(p, CTX)
    assert '[limits]\nmemory = "2g"\npids = 100\ncpus = 1.5\ntimeout = "10m"\nnofile = 1024\nfsize = "1g"\n' \
           'strict = true\n' in text
    assert load_toml(text, "again.toml", CTX).limits == p.limits


def test_no_limits_table_renders_nothing():
    assert "[limits]" not in to_toml(load_toml("", "p.toml", CTX), CTX)


@pytest.mark.parametrize("line,key,words", [
    ('memory = "2x"', "limits.memory", 'expected a size such as "512m"'),
    ('memory = "1k"', "limits.memory", "out of range"),
    ("pids = 0", "limits.pids", "out of range"),
    ('pids = "many"', "limits.pids", "whole number"),
    ("cpus = 0", "limits.cpus", "out of range"),
    ('cpus = "fast"', "limits.cpus", "number of CPUs"),
    ('timeout = "soon"', "limits.timeout", "expected a duration"),
    ("nofile = 3", "limits.nofile", "out of range"),
    ("strict = 1", "limits.strict", "true or false"),
    ("memroy = 1", "limits.memroy", "did you mean 'memory'"),
])
def test_limits_errors_name_file_key_value_and_fix(line, key, words):
    with pytest.raises(PolicyError) as err:
        load_toml(f"[limits]\n{line}\n", "/p/policy.toml", CTX)
    msg = str(err.value)
    assert msg.startswith(f"/p/policy.toml: {key} = ") and words in msg and "\n" not in msg


# -- the enforcement decision over fake layouts ----------------------------------------------------

V1 = ("memory", "pids", "cpu")
MEMSW = frozenset({"memory.memsw.limit_in_bytes"})


def v1(ctrl, own, writable, delegated=None, files=frozenset()):
    cands = [CgroupDir(own, writable, frozenset({ctrl}), files)]
    if delegated:
        cands.append(CgroupDir(delegated, True, frozenset({ctrl}), files))
    return Hierarchy(1, f"/sys/fs/cgroup/{ctrl}", frozenset({ctrl}), tuple(cands))


ROOT_V1 = (v1("memory", "/sys/fs/cgroup/memory/job", True, files=MEMSW), v1("pids", "/sys/fs/cgroup/pids", True),
           v1("cpu", "/sys/fs/cgroup/cpu", True))
USER_V1 = tuple(v1(c, f"/sys/fs/cgroup/{c}", False) for c in V1)
DELEGATED_V1 = tuple(v1(c, f"/sys/fs/cgroup/{c}", False, f"/sys/fs/cgroup/{c}/corral/1001") for c in V1)
V2_DELEGATED = (Hierarchy(2, "/sys/fs/cgroup", frozenset(V1), (
    CgroupDir("/sys/fs/cgroup/user.slice/u", True, frozenset(V1), frozenset({"memory.swap.max"})),
    CgroupDir("/sys/fs/cgroup", False, frozenset(V1)))),)
V2_EMPTY = (Hierarchy(2, "/sys/fs/cgroup/unified", frozenset({"hugetlb"}), (
    CgroupDir("/sys/fs/cgroup/unified", True, frozenset())),),)
HARD = (("RLIMIT_NOFILE", 20000), ("RLIMIT_FSIZE", -1))
ALL = Limits(memory=64 * M, pids=20, cpus=0.5, timeout=2.0, nofile=100, fsize=G)

# (case, uid, sandbox uid, layout, how each limit ends up: key -> (full?, words in how/why))
LAYOUTS = [
    ("root, v1 (this machine)", 0, 0, ROOT_V1 + V2_EMPTY, {
        "memory": (True, "cgroup v1 memory: memory.limit_in_bytes = 67108864, memory.memsw.limit_in_bytes = 67108864"),
        "pids": (True, f"pids.max = {20 + PIDS_OVERHEAD}"),
        "cpus": (True, "cpu.cfs_period_us = 100000, cpu.cfs_quota_us = 50000"),
        "timeout": (True, "timer in corral"), "nofile": (True, "RLIMIT_NOFILE = 100"),
        "fsize": (True, "RLIMIT_FSIZE = 1073741824")}),
    ("user, v1, nothing delegated", 1001, 1001, USER_V1 + V2_EMPTY, {
        "memory": (False, "RLIMIT_AS"), "pids": (False, "RLIMIT_NPROC"), "cpus": (False, "no rlimit limits a CPU share"),
        "timeout": (True, "timer"), "nofile": (True, "RLIMIT_NOFILE"), "fsize": (True, "RLIMIT_FSIZE")}),
    ("user, v1, root delegated corral/1001", 1001, 1001, DELEGATED_V1, {
        "memory": (True, "/sys/fs/cgroup/memory/corral/1001"), "pids": (True, "/sys/fs/cgroup/pids/corral/1001"),
        "cpus": (True, "/sys/fs/cgroup/cpu/corral/1001")}),
    ("user, v2 delegated subtree", 1001, 1001, V2_DELEGATED, {
        "memory": (True, "cgroup v2 memory: memory.max = 67108864, memory.swap.max = 0"),
        "pids": (True, "cgroup v2 pids: pids.max = 22"), "cpus": (True, "cpu.max = 50000 100000")}),
    ("v2 delegated beats v1", 1001, 1001, DELEGATED_V1 + V2_DELEGATED, {"memory": (True, "cgroup v2")}),
    ("v2 without controllers falls back to v1", 0, 0, V2_EMPTY + ROOT_V1, {"memory": (True, "cgroup v1")}),
    ("nothing mounted", 1001, 1001, (), {
        "memory": (False, "no memory cgroup controller is mounted"), "cpus": (False, "no cpu cgroup controller")}),
    ("root without writable cgroups: NPROC does not apply", 0, 0, USER_V1, {
        "pids": (False, "RLIMIT_NPROC does not apply to uid 0")}),
    ("root launching for a user without cgroups: NPROC counts that user", 0, 1001, USER_V1, {
        "pids": (False, "RLIMIT_NPROC")}),
]


@pytest.mark.parametrize("case,uid,sandbox_uid,layout,expect", LAYOUTS, ids=[c[0] for c in LAYOUTS])
def test_enforcement_decision(case, uid, sandbox_uid, layout, expect):
    lp = plan_limits(ALL, Facts(uid, sandbox_uid, layout, HARD, processes=5))
    items = {e.key: e for e in lp.items}
    assert list(items) == ["memory", "pids", "cpus", "timeout", "nofile", "fsize"]
    for key, (full, words) in expect.items():
        e = items[key]
        assert e.full is full, (key, e)
        assert words in (e.how if full else f"{e.why}; {e.how}"), (key, e)
    assert {k for k, e in items.items() if not e.full} == {e.key for e in lp.unenforced}


def test_v1_groups_one_cgroup_per_controller_v2_one_for_all():
    root = plan_limits(ALL, Facts(0, 0, ROOT_V1, HARD))
    assert [c.controllers for c in root.cgroups] == [("memory",), ("pids",), ("cpu",)]
    assert root.cgroups[0].files == (("memory.limit_in_bytes", str(64 * M)), ("memory.memsw.limit_in_bytes", str(64 * M)))
    user = plan_limits(ALL, Facts(1001, 1001, V2_DELEGATED, HARD))
    assert [(c.version, c.base, c.controllers) for c in user.cgroups] == [
        (2, "/sys/fs/cgroup/user.slice/u", ("memory", "pids", "cpu"))]


def test_rlimit_fallbacks_for_an_unprivileged_launcher():
    lp = plan_limits(ALL, Facts(1001, 1001, USER_V1, HARD, processes=5))
    assert dict(lp.rlimits) == {"RLIMIT_AS": 64 * M, "RLIMIT_NPROC": 5 + 1 + PIDS_OVERHEAD + 20,
                                "RLIMIT_NOFILE": 100, "RLIMIT_FSIZE": G}
    assert lp.cgroups == ()


def test_nofile_above_the_inherited_hard_limit_is_capped_not_raised():
    lp = plan_limits(Limits(nofile=1 << 20), Facts(0, 0, (), HARD))
    assert lp.rlimits == (("RLIMIT_NOFILE", 20000),) and lp.items[0].full
    assert "already lower" in lp.items[0].how


def test_warning_names_each_unenforced_limit_in_one_line():
    lp = plan_limits(ALL, Facts(1001, 1001, USER_V1, HARD))
    line = lp.warning()
    assert "\n" not in line and line.startswith("corral: limits not enforced for this launcher: ")
    for part in ("memory 64m (no memory cgroup writable by uid 1001", "pids 20 (", "cpus 0.5 ("):
        assert part in line
    assert "timeout" not in line and "nofile" not in line
    assert plan_limits(ALL, Facts(0, 0, ROOT_V1, HARD)).warning() == ""


def test_strict_refuses_only_what_is_not_enforced():
    strict = Limits(memory=64 * M, timeout=5.0, strict=True)
    err = plan_limits(strict, Facts(1001, 1001, USER_V1, HARD)).refusal()
    assert err is not None and "memory 64m" in str(err) and "timeout" not in str(err)
    assert "limits.strict = false" in str(err)
    assert plan_limits(strict, Facts(0, 0, ROOT_V1, HARD)).refusal() is None
    assert plan_limits(Limits(timeout=5.0, strict=True), Facts(1001, 1001, USER_V1, HARD)).refusal() is None


# -- CLI ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag,value,words", [
    ("--memory", "lots", "--memory lots: expected a size"),
    ("--cpus", "-1", "--cpus -1: out of range"),
    ("--pids", "x", "--pids x: expected a whole number"),
    ("--timeout", "forever", "--timeout forever: expected a duration"),
])
def test_bad_limit_flags_are_one_line(me, ws, flag, value, words):
    r = helpers.run(me, ["run", flag, value, "--", "true"], ws.proj)
    assert r.returncode == 2  # a usage error
    assert r.stderr.startswith(f"corral: {words}") and r.stderr.count("\n") == 1, r.stderr


def test_dry_run_reports_how_each_limit_is_enforced(launcher, ws):
    r = helpers.run(launcher, ["run", "--dry-run", "--memory", "64m", "--pids", "20", "--timeout", "10m", "--", "true"],
                    ws.proj)
    assert r.returncode == 0, r.stderr
    section = r.stdout.split("# limits: how each is enforced for this launcher\n", 1)[1]
    assert "timeout 10m" in section and "timer in corral" in section
    if launcher.is_root:
        assert "cgroup v1 memory" in section or "cgroup v2 memory" in section
    else:
        assert section.startswith("memory 64m       NOT ENFORCED: no memory cgroup writable by uid ")
    assert not run_cgroups()


# -- real runs -------------------------------------------------------------------------------------

def run_cgroups() -> set[str]:
    """Every run cgroup (corral-<run id>) in any hierarchy."""
    found = set()
    for root, dirs, _files in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if d.startswith("corral-"):
                found.add(os.path.join(root, d))
    return found


def user_has_cgroups(launcher) -> bool:
    return launcher.is_root


FORK_LOOP = """
import subprocess, sys
started = 0
for i in range(200):
    try:
        subprocess.Popen(["sleep", "13.25"])
        started += 1
    except OSError:
        pass
print("started", started)
"""


def test_fork_loop_is_bounded_by_the_pids_limit(launcher, ws):
    before = run_cgroups()
    r = helpers.run(launcher, ["run", "--pids", "20", "--", "/usr/bin/python3", "-c", FORK_LOOP], ws.proj, timeout=60)
    assert r.returncode == 0, r.stderr
    started = int(r.stdout.split("started")[1])
    # A cgroup counts the sandbox exactly; the RLIMIT_NPROC fallback counts every process of the
    # uid, sampled when corral starts (its helpers and anything else the uid runs then, which may
    # exit during the run): approximate by a few, documented so, but bounded (the loop tries 200).
    assert 0 < started <= (20 if user_has_cgroups(launcher) else 26), r.stdout
    if user_has_cgroups(launcher):
        assert "corral: pids limit 20 reached (fork refused " in r.stderr
    else:
        assert "pids 20 (" in r.stderr and "RLIMIT_NPROC" in r.stderr  # said what enforces it, and why
    # The host is fine: the sandbox's processes went with it, and we can still fork.
    assert helpers.wait_for(lambda: not helpers.pids_with_arg("13.25"), timeout=10)
    assert subprocess.run(["true"]).returncode == 0
    assert run_cgroups() <= before


HOG = "b = bytearray(512 << 20); b[::4096] = b'x' * len(b[::4096]); print('survived')"


def test_memory_hog_is_stopped_by_the_memory_limit(launcher, ws):
    before = run_cgroups()
    r = helpers.run(launcher, ["run", "--memory", "64m", "--", "/usr/bin/python3", "-c", HOG], ws.proj, timeout=60)
    assert "survived" not in r.stdout
    if user_has_cgroups(launcher):
        assert r.returncode == 137, r.stderr
        assert r.stderr.strip().splitlines()[-1] == "corral: the command was killed: memory limit 64m reached"
    else:  # no cgroup: RLIMIT_AS per process, said so
        assert r.returncode == 1 and "MemoryError" in r.stderr
        assert "memory 64m (" in r.stderr and "RLIMIT_AS 64m per process" in r.stderr
    assert run_cgroups() <= before


def test_wall_time_limit_exits_124(launcher, ws):
    start = time.monotonic()
    r = helpers.run(launcher, ["run", "--timeout", "2s", "--", "sleep", "30"], ws.proj, timeout=60)
    elapsed = time.monotonic() - start
    assert r.returncode == 124, r.stderr
    assert r.stderr.strip() == "corral: time limit 2s reached"
    assert elapsed < 20  # generous: SIGTERM at 2 s, SIGKILL at 4 s


def test_wall_time_limit_kills_a_command_that_ignores_sigterm(launcher, ws):
    r = helpers.run(launcher, ["run", "--timeout", "1s", "--", "bash", "-c", "trap '' TERM; sleep 30; echo late"],
                    ws.proj, timeout=60)
    assert r.returncode == 124 and "late" not in r.stdout
    assert r.stderr.strip().splitlines()[-1] == "corral: time limit 1s reached"


def test_file_size_limit_is_named_when_it_kills(launcher, ws):
    r = helpers.run(launcher, ["run", "-s", str(ws.write("lim.toml", '[limits]\nfsize = "1m"\nnofile = 64\n')), "--",
                               "bash", "-c", "ulimit -n; head -c 2000000 /dev/zero > big"], ws.proj)
    assert r.stdout.strip() == "64"
    assert r.returncode == 128 + signal.SIGXFSZ, r.stderr
    assert "corral: the command was killed: file size limit 1m reached" in r.stderr
    assert (ws.proj / "big").stat().st_size == 1 << 20


def test_strict_limits_refuse_or_are_enforced(launcher, ws):
    policy = ws.write("strict.toml", '[limits]\nmemory = "64m"\nstrict = true\n')
    r = helpers.run(launcher, ["run", "-s", str(policy), "--", "/usr/bin/python3", "-c", HOG], ws.proj, timeout=60)
    dry = helpers.run(launcher, ["run", "--dry-run", "-s", str(policy), "--", "true"], ws.proj)
    assert dry.returncode == 0 and "strict = true: the run is refused while" in dry.stdout
    if user_has_cgroups(launcher):  # enforceable here: then enforced
        assert r.returncode == 137 and "memory limit 64m reached" in r.stderr
    else:
        assert r.returncode == 125 and "survived" not in r.stdout
        assert r.stderr.startswith("corral: limits.strict = true and these limits cannot be enforced: memory 64m (")
        assert r.stderr.count("\n") == 1
        assert "memory 64m       NOT ENFORCED: no memory cgroup writable by uid" in dry.stdout


def test_run_cgroups_are_removed_when_corral_is_sigkilled(launcher, ws, delegated):
    before = run_cgroups()
    proc = helpers.popen(launcher, ["run", "--memory", "64m", "--pids", "50", "--cpus", "0.5", "--",
                                    "sleep", "31.75"], ws.proj)
    try:
        assert helpers.wait_for(lambda: len(run_cgroups() - before) == 3 and sleeping("31.75"), timeout=15)
        mine = run_cgroups() - before
        by_ctrl = {c: next(p for p in mine if p.startswith(f"/sys/fs/cgroup/{c}/")) for c in ("memory", "pids", "cpu")}
        assert open(f"{by_ctrl['memory']}/memory.limit_in_bytes").read().strip() == str(64 * M)
        assert open(f"{by_ctrl['pids']}/pids.max").read().strip() == str(50 + PIDS_OVERHEAD)
        assert open(f"{by_ctrl['cpu']}/cpu.cfs_quota_us").read().strip() == "50000"
        sleeper = sleeping("31.75")[0]
        for path in by_ctrl.values():  # the command runs inside every one of them
            assert str(sleeper) in open(f"{path}/cgroup.procs").read().split()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert helpers.wait_for(lambda: not (run_cgroups() - before), timeout=15), run_cgroups() - before
        assert not sleeping("31.75")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def sleeping(arg: str) -> list[int]:
    """The `sleep ARG` processes (not corral or bwrap, whose argv holds ARG too)."""
    out = []
    for pid in helpers.pids_with_arg(arg):
        try:
            if open(f"/proc/{pid}/comm").read().strip() == "sleep":
                out.append(pid)
        except OSError:
            pass
    return out


@pytest.fixture
def delegated(launcher):
    """What root does once so a user's limits work: a v1 subtree per controller it owns."""
    if os.geteuid() != 0:
        pytest.skip("delegating a cgroup needs root")
    made = []
    for ctrl in ("memory", "pids", "cpu"):
        top = f"/sys/fs/cgroup/{ctrl}/corral"
        if not os.path.isdir(top):
            os.mkdir(top)
            made.append(top)
        mine = f"{top}/{launcher.uid}"
        if not os.path.isdir(mine):
            os.mkdir(mine)
            made.append(mine)
        for path in (mine, f"{mine}/cgroup.procs", f"{mine}/tasks"):
            os.chown(path, launcher.uid, launcher.gid)
    yield
    for path in reversed(made):
        try:
            os.rmdir(path)
        except OSError:
            pass


def test_delegated_cgroup_enforces_limits_for_the_user(launcher, ws, delegated):
    before = run_cgroups()
    policy = ws.write("strict.toml", '[limits]\nmemory = "64m"\npids = 20\nstrict = true\n')
    r = helpers.run(launcher, ["run", "-s", str(policy), "--", "/usr/bin/python3", "-c", HOG], ws.proj, timeout=60)
    assert r.returncode == 137, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "corral: the command was killed: memory limit 64m reached"
    r = helpers.run(launcher, ["run", "-s", str(policy), "--", "/usr/bin/python3", "-c", FORK_LOOP], ws.proj, timeout=60)
    assert r.returncode == 0 and 0 < int(r.stdout.split("started")[1]) <= 20
    assert "corral: pids limit 20 reached" in r.stderr
    assert run_cgroups() <= before


LIBRARY = """
import sys
from corral import Policy, Sandbox
policy = Policy.from_toml('[limits]\\nmemory = "64m"\\ntimeout = "1s"\\n')
with Sandbox(policy) as sb:
    hog = sb.run(["/usr/bin/python3", "-c", sys.argv[1]], capture_output=True, text=True)
    slow = sb.run(["sleep", "30"])
    try:
        sb.wrap(["true"])
    except Exception as exc:
        print("wrap:", exc)
print("hog", hog.returncode, "slow", slow.returncode)
"""


def test_library_runs_apply_the_limits(launcher, ws):
    r = subprocess.run([*launcher.prefix, helpers.sys.executable, "-c", LIBRARY, HOG], cwd=ws.proj,
                       env=launcher.env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    hog = 137 if user_has_cgroups(launcher) else 1
    assert f"hog {hog} slow 124" in r.stdout
    assert "wrap: resource limits ([limits]) need Sandbox.run" in r.stdout
    assert "corral: time limit 1s reached" in r.stderr


@pytest.mark.parametrize("mount,root,path,expected", [
    ("/sys/fs/cgroup/memory", "/", "/process_api/x", "/sys/fs/cgroup/memory/process_api/x"),
    ("/sys/fs/cgroup/memory", "/", "/", "/sys/fs/cgroup/memory"),
    ("/sys/fs/cgroup", "/docker/abc", "/docker/abc/sub", "/sys/fs/cgroup/sub"),  # a container's cgroup namespace root
    ("/sys/fs/cgroup", "/docker/abc", "/docker/abc", "/sys/fs/cgroup"),
])
def test_cgroup_directory_of_a_path_in_a_mounted_hierarchy(mount, root, path, expected):
    from corral.sandbox.limits import _within

    assert _within(mount, root, path) == expected


def test_probe_sees_this_machines_hierarchies():
    from corral.sandbox.limits import probe

    facts = probe()
    by_ctrl = {c: h for h in facts.hierarchies for c in h.controllers}
    own = {line.split(":")[1]: line.split(":")[2].strip() for line in open("/proc/self/cgroup") if line.split(":")[1]}
    for ctrl in ("memory", "pids", "cpu"):
        h = by_ctrl.get(ctrl)
        if h is None or h.version != 1:
            continue
        path = next(p for names, p in own.items() if ctrl in names.split(","))
        assert h.candidates[0].path == os.path.normpath(f"{h.mount}/{path}")
        assert h.candidates[0].writable == (os.geteuid() == 0 and os.access(h.candidates[0].path, os.W_OK))
