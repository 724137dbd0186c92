"""Plan building is pure given a HostFS: table-driven tests on the mount order it produces."""

from __future__ import annotations

import pytest

from corral.policy.model import FilesystemPolicy, LaunchContext, PathRule, Policy, ProcessPolicy
from corral.backends.bwrap import bwrap_argv
from corral.sandbox.plan import HostFS, build_plan
from corral.workspace.scan import ProtectedScan

CTX = LaunchContext(cwd="/w/proj", home="/home/u", uid=1000, gid=1000)


class FakeFS(HostFS):
    """A tiny in-memory tree: path -> 'dir' | 'file'."""

    def __init__(self, entries: dict[str, str], protected: dict[str, bool] | None = None):
        self.entries = {"/": "dir", **entries}
        self.protected = protected or {}
        self.scanned_roots: list[str] = []

    def realpath(self, path):
        return path

    def kind(self, path):
        return self.entries.get(path)

    def may_create_in(self, directory):
        return self.entries.get(directory) == "dir"

    def secret_files(self, workspace, home, content="full"):
        return [p for p, k in self.entries.items() if k == "file" and p.rsplit("/", 1)[-1] == ".env"]

    def lexists(self, path):
        return path in self.entries

    def scan_protected(self, roots, skip, allow_git_config):
        self.scanned_roots = list(roots)
        result = ProtectedScan()
        for path, is_dir in self.protected.items():
            if any(path.startswith(r + "/") for r in roots):
                result.found[path] = (1, is_dir)
        return result

    def expand_globs(self, patterns):
        return [p for p in self.entries if p.endswith(".pem")]

    def mounts_under(self, path):
        return [p for p, k in self.entries.items() if k == "mount" and p.startswith(path + "/")]


def rules(*paths):
    return tuple(PathRule(p, False, "test") for p in paths)


def plan_for(fs_policy: FilesystemPolicy, entries, protected=None, **kw):
    fs = FakeFS(entries, protected)
    policy = Policy(filesystem=fs_policy, process=ProcessPolicy(**kw))
    return build_plan(policy, CTX, ["true"], {"PATH": "/usr/bin"}, fs=fs, run_id="r1"), fs


def ops(plan):
    return [(m.op, m.dest) for m in plan.mounts]


BASE = {"/w": "dir", "/w/proj": "dir", "/home": "dir", "/home/u": "dir"}


def test_base_mounts_come_first_and_tmpdir_is_private():
    plan, _ = plan_for(FilesystemPolicy(allow_write=rules("/w/proj"), deny_credentials=False), BASE)
    assert ops(plan)[:3] == [("ro-bind", "/"), ("dev", "/dev"), ("proc", "/proc")]
    assert ("tmpfs", "/tmp/corral-r1") in ops(plan)
    assert dict(plan.env)["TMPDIR"] == "/tmp/corral-r1"


@pytest.mark.parametrize(
    "policy, entries, expected_in_order",
    [
        # deny_read dir inside a writable dir: bind first, then tmpfs, then remount-ro last
        (FilesystemPolicy(allow_write=rules("/w/proj"), deny_read=rules("/w/proj/sec"), deny_credentials=False),
         {**BASE, "/w/proj/sec": "dir"},
         [("bind", "/w/proj"), ("tmpfs", "/w/proj/sec"), ("remount-ro", "/w/proj/sec")]),
        # allow_read re-opens inside a denied dir, before the denied dir turns read-only
        (FilesystemPolicy(deny_read=rules("/home/u"), allow_read=rules("/home/u/pub"), allow_write=(), deny_credentials=False),
         {**BASE, "/home/u/pub": "dir"},
         [("tmpfs", "/home/u"), ("ro-bind", "/home/u/pub"), ("remount-ro", "/home/u")]),
        # deny_write inside allow_write
        (FilesystemPolicy(allow_write=rules("/w/proj"), deny_write=rules("/w/proj/ro"), deny_credentials=False),
         {**BASE, "/w/proj/ro": "dir"},
         [("bind", "/w/proj"), ("pre-ro-bind", "/w/proj/ro")]),
        # a denied file is /dev/null
        (FilesystemPolicy(allow_write=rules("/w/proj"), deny_read=rules("/w/proj/k.txt"), deny_credentials=False),
         {**BASE, "/w/proj/k.txt": "file"},
         [("bind", "/w/proj"), ("dev-null", "/w/proj/k.txt")]),
    ],
)
def test_mount_order(policy, entries, expected_in_order):
    plan, _ = plan_for(policy, entries)
    got = ops(plan)
    positions = [got.index(item) for item in expected_in_order]
    assert positions == sorted(positions), got


def test_deny_write_wins_over_allow_write_at_the_same_path():
    policy = FilesystemPolicy(allow_write=rules("/w/proj"), deny_write=rules("/w/proj"), deny_credentials=False)
    plan, _ = plan_for(policy, BASE)
    assert ("bind", "/w/proj") not in ops(plan)
    assert ("ro-bind", "/w/proj") in ops(plan)
    assert plan.placeholders == (plan.placeholders[-1],)  # only the TMPDIR: the root is not writable


def test_missing_paths_are_not_mounted():
    policy = FilesystemPolicy(allow_write=rules("/nope"), deny_read=rules("/nada"), deny_credentials=False)
    plan, _ = plan_for(policy, BASE)
    assert not any(dest in ("/nope", "/nada") for _, dest in ops(plan))


def test_protected_files_found_in_writable_areas_become_read_only():
    policy = FilesystemPolicy(allow_write=rules("/w/proj"), deny_credentials=False)
    plan, fs = plan_for(policy, {**BASE, "/w/proj/sub": "dir"}, protected={"/w/proj/sub/.bashrc": False})
    assert fs.scanned_roots == ["/w/proj"]
    # inside a writable area: bound read-only by corral's child before bwrap (new mount API)
    assert ("pre-ro-bind", "/w/proj/sub/.bashrc") in ops(plan)
    assert "/w/proj/sub/.bashrc" in plan.protected_before


def test_missing_protected_names_in_the_workspace_root_get_placeholders():
    policy = FilesystemPolicy(allow_write=rules("/w/proj"), deny_credentials=False)
    plan, _ = plan_for(policy, {**BASE, "/w/proj/.git": "dir"})
    paths = {p.path: p.kind for p in plan.placeholders}
    assert paths["/w/proj/.bashrc"] == "file"
    assert paths["/w/proj/.vscode"] == "dir"
    assert paths["/w/proj/.git/hooks"] == "dir"
    assert paths["/w/proj/.git/config"] == "file"
    assert "/home/u/.bashrc" not in paths  # HOME is not writable here
    for path in paths:
        if path != plan.tmpdir:
            assert ("pre-ro-bind", path) in ops(plan)


def test_allow_git_config_leaves_git_config_writable():
    policy = FilesystemPolicy(allow_write=rules("/w/proj"), allow_git_config=True, deny_credentials=False)
    plan, _ = plan_for(policy, {**BASE, "/w/proj/.git": "dir"})
    assert "/w/proj/.git/config" not in {p.path for p in plan.placeholders}


def test_globs_expand_to_hidden_files():
    policy = FilesystemPolicy(allow_write=rules("/w/proj"), deny_read=(PathRule("/w/proj/**/*.pem", True, "t"),), deny_credentials=False)
    plan, _ = plan_for(policy, {**BASE, "/w/proj/a": "dir", "/w/proj/a/k.pem": "file"})
    assert ("dev-null", "/w/proj/a/k.pem") in ops(plan)


def test_credentials_denied_by_default_when_present():
    plan, _ = plan_for(FilesystemPolicy(allow_write=rules("/w/proj")), {**BASE, "/home/u/.ssh": "dir", "/home/u/.netrc": "file"})
    assert ("tmpfs", "/home/u/.ssh") in ops(plan)
    assert ("dev-null", "/home/u/.netrc") in ops(plan)


def test_bwrap_argv_has_every_namespace_and_hardening_flag():
    plan, _ = plan_for(FilesystemPolicy(allow_write=rules("/w/proj"), deny_credentials=False), BASE)
    argv = bwrap_argv(plan, seccomp_fd=7, status_fd=8)
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup",
                 "--unshare-net", "--die-with-parent", "--new-session", "--disable-userns", "--assert-userns-disabled"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[argv.index("--seccomp") + 1] == "7"
    assert argv[argv.index("--") + 1:] == ["true"]


def test_nested_userns_option_drops_disable_userns():
    plan, _ = plan_for(FilesystemPolicy(allow_write=rules("/w/proj"), deny_credentials=False), BASE, allow_nested_userns=True)
    assert "--disable-userns" not in bwrap_argv(plan, seccomp_fd=3, status_fd=4)
    assert plan.seccomp.allow_nested_userns


def test_protections_inside_writable_areas_are_bound_before_bwrap_not_by_it():
    """Read-only binds of protected paths inside a writable area (and the pins above them) are
    made by corral's child with the new mount API; bwrap's argv leaves them out, and the plan
    says the child prepares a mount namespace."""
    from corral.backends.bwrap import bwrap_argv

    plan, _ = plan_for(FilesystemPolicy(allow_write=rules("/w/proj")),
                       {"/w/proj": "dir", "/w/proj/a": "dir", "/w/proj/a/b": "dir", "/w/proj/a/b/.bashrc": "file"},
                       protected={"/w/proj/a/b/.bashrc": False})
    assert ("/w/proj/a/b/.bashrc", True) in plan.premounts
    assert ("/w/proj/a", False) in plan.premounts and ("/w/proj/a/b", False) in plan.premounts
    order = [p for p, _ in plan.premounts]
    assert order.index("/w/proj/a") < order.index("/w/proj/a/b") < order.index("/w/proj/a/b/.bashrc")
    assert plan.child_mount_ns
    argv = bwrap_argv(plan, seccomp_fd=3, status_fd=4)
    assert "/w/proj/a/b/.bashrc" not in argv and "/w/proj/a" not in argv
    assert argv[argv.index("--bind"):argv.index("--bind") + 3] == ["--bind", "/w/proj", "/w/proj"]


def test_system_start_up_files_in_a_writable_etc_are_protected():
    """A policy that grants /etc: the system-wide start-up files stay read-only and the
    missing ones (ld.so.preload) cannot be created during the run."""
    plan, _ = plan_for(FilesystemPolicy(allow_write=rules("/etc")),
                       {"/w/proj": "dir", "/etc": "dir", "/etc/profile": "file", "/etc/profile.d": "dir"})
    assert ("/etc/profile", True) in plan.premounts and ("/etc/profile.d", True) in plan.premounts
    assert ("/etc/ld.so.preload", "file") in {(p.path, p.kind) for p in plan.placeholders}
    assert ("/etc/ld.so.preload", True) in plan.premounts


@pytest.mark.parametrize("uid, mounted, overlay", [
    (1000, False, True),   # the usual case: /tmp writable through an overlay
    (1000, True, False),   # something mounted under /tmp: the kernel refuses the overlay in a userns
])
def test_tmp_overlay_only_where_the_kernel_allows_it(uid, mounted, overlay):
    from corral.policy.model import LaunchContext

    entries = {"/tmp": "dir", "/work": "dir", "/work/p": "dir", "/home": "dir", "/home/u": "dir"}
    if mounted:
        entries["/tmp/store"] = "mount"
    ctx = LaunchContext(cwd="/work/p", home="/home/u", uid=uid, gid=uid)
    plan = build_plan(Policy(), ctx, ["true"], {"PATH": "/usr/bin"}, fs=FakeFS(entries), run_id="r1")
    assert (plan.tmp_overlay is not None) == overlay
    said = [n for n in plan.notices if "/tmp is read-only for this run" in n]
    assert bool(said) == (mounted and not overlay)
    if said:
        assert "/tmp/store is mounted under it" in said[0]
