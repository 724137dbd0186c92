"""Shared helpers for the corral security suite: launchers, workspaces, running corral."""

from __future__ import annotations

import glob
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

TEST_USER = "corral-test"
CORRAL = [sys.executable, "-m", "corral"]
QUARANTINED_RE = re.compile(r"^corral: quarantined (\S+) .*-> (\S+)$", re.M)


@dataclass(frozen=True)
class Launcher:
    """How corral is started: as the current user (root in CI) or as an unprivileged user."""

    name: str
    uid: int
    gid: int
    home: str
    prefix: tuple[str, ...] = ()  # e.g. setpriv ...
    env: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def argv(self, args) -> list[str]:
        return [*self.prefix, *CORRAL, *args]

    @property
    def state_home(self) -> Path:
        """The launcher's private XDG_STATE_HOME (never the real ~/.local/state)."""
        return Path(self.env["XDG_STATE_HOME"])

    @property
    def quarantine_root(self) -> Path:
        return self.state_home / "corral" / "quarantine"


# ---------------------------------------------------------------- private XDG directories
# The suite never touches the launcher's real state, caches, data or config: every launcher
# (and the pytest process itself, see conftest.pytest_configure) gets its own XDG_STATE_HOME,
# XDG_CACHE_HOME, XDG_DATA_HOME and XDG_CONFIG_HOME under one per-session directory,
# /tmp/ct-xdg-XXXX/<owner>/, owned by whoever uses it. (Not /tmp/corral-*: tests look for
# corral's own leftovers there.)

XDG_DIRS = {"XDG_STATE_HOME": "state", "XDG_CACHE_HOME": "cache", "XDG_DATA_HOME": "data",
            "XDG_CONFIG_HOME": "config"}
_private_root: Path | None = None


def private_root() -> Path:
    """The per-session directory holding every launcher's private XDG directories."""
    global _private_root
    if _private_root is None:
        _private_root = Path(tempfile.mkdtemp(prefix="ct-xdg-", dir="/tmp"))
        _private_root.chmod(0o755)  # the unprivileged launcher must reach its own subdirectory
    return _private_root


def private_xdg(owner: str, uid: int, gid: int) -> dict[str, str]:
    """{XDG_*_HOME: path} of fresh directories (mode 0700, owned by uid:gid) for `owner`."""
    base = private_root() / owner
    made = [base, *(base / sub for sub in XDG_DIRS.values())]
    for d in made:
        d.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(d, uid, gid)
    return {var: str(base / sub) for var, sub in XDG_DIRS.items()}


def remove_private_root() -> None:
    global _private_root
    if _private_root is not None:
        root, _private_root = _private_root, None
        # overlayfs work dirs and locked test directories may be mode 000: open them first
        for dirpath, dirs, _files in os.walk(root):
            for d in dirs:
                full = os.path.join(dirpath, d)
                if not os.path.islink(full):
                    try:
                        os.chmod(full, 0o700)
                    except OSError:
                        pass
        shutil.rmtree(root, ignore_errors=True)


def current_launcher(name: str) -> Launcher:
    env = dict(os.environ)
    env.update(private_xdg(name, os.geteuid(), os.getegid()))
    home = env.get("HOME") or pwd.getpwuid(os.geteuid()).pw_dir
    return Launcher(name, os.geteuid(), os.getegid(), home, (), env)


def ensure_test_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        pass
    proc = subprocess.run(["useradd", "-m", "-s", "/bin/bash", TEST_USER], capture_output=True, text=True)
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        raise RuntimeError(f"cannot create user {TEST_USER}: {proc.stderr.strip()}") from None


def user_launcher() -> Launcher:
    if os.geteuid() != 0:
        return current_launcher("user")
    pw = ensure_test_user()
    os.makedirs(pw.pw_dir, exist_ok=True)
    os.chown(pw.pw_dir, pw.pw_uid, pw.pw_gid)
    prefix = ("setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--")
    env = {"HOME": pw.pw_dir, "USER": TEST_USER, "LOGNAME": TEST_USER,
           "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           **private_xdg("user", pw.pw_uid, pw.pw_gid)}
    launcher = Launcher("user", pw.pw_uid, pw.pw_gid, pw.pw_dir, prefix, env)
    probe = subprocess.run(launcher.argv(["--version"]), env=env, capture_output=True, text=True)
    if probe.returncode != 0:
        raise RuntimeError(
            f"the venv python {sys.executable} cannot run corral as {TEST_USER} "
            f"(uid {pw.pw_uid}): {probe.stderr.strip() or probe.returncode}; make the venv and "
            "its base interpreter readable and executable by other users"
        )
    return launcher


def run(launcher: Launcher, args, cwd, input=None, timeout=30, pass_fds=(), env_extra=None,
        **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        launcher.argv(args), cwd=str(cwd), env={**launcher.env, **(env_extra or {})}, input=input, text=True,
        capture_output=True, timeout=timeout, pass_fds=pass_fds, **kw,
    )


def popen(launcher: Launcher, args, cwd, **kw) -> subprocess.Popen:
    return subprocess.Popen(launcher.argv(args), cwd=str(cwd), env=launcher.env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@dataclass
class Workspace:
    """base/ holds proj/ (the sandbox cwd) and outside/ (a sibling that must stay untouched)."""

    base: Path
    proj: Path
    outside: Path
    launcher: Launcher

    def write(self, rel_or_abs, text="", mode=None) -> Path:
        p = Path(rel_or_abs)
        p = p if p.is_absolute() else self.proj / p
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        if mode is not None:
            p.chmod(mode)
        self.chown()
        return p

    def settings(self, name="settings.json", **sections) -> Path:
        body = {"network": {"allowedDomains": [], "deniedDomains": []},
                "filesystem": {"denyRead": [], "allowRead": [], "allowWrite": [], "denyWrite": []}}
        for key, value in sections.items():
            if key in ("allowedDomains", "deniedDomains"):
                body["network"][key] = value
            else:
                body["filesystem"][key] = value
        return self.write(name, json.dumps(body))

    def chown(self) -> None:
        if os.geteuid() == 0:
            for root, dirs, files in os.walk(self.base):
                for n in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
                    os.lchown(n, self.launcher.uid, self.launcher.gid)

    def sh(self, script: str, *opts, **kw) -> subprocess.CompletedProcess:
        """Run `bash -c script` in the sandbox with cwd = proj."""
        return run(self.launcher, ["run", *opts, "-c", script], self.proj, **kw)

    def listing(self) -> set[str]:
        out = set()
        for root, dirs, files in os.walk(self.proj):
            for n in dirs + files:
                out.add(os.path.relpath(os.path.join(root, n), self.proj))
        return out


def make_workspace(launcher: Launcher) -> Workspace:
    base = Path(tempfile.mkdtemp(prefix="ct-", dir="/tmp"))
    base.chmod(0o755)
    proj, outside = base / "proj", base / "outside"
    proj.mkdir()
    outside.mkdir()
    (proj / "README.txt").write_text("readme\n")
    (proj / "src").mkdir()
    (proj / "src" / "main.py").write_text("print('hi')\n")
    (outside / "victim.txt").write_text("original\n")
    subprocess.run(["git", "init", "-q", str(proj)], check=True, capture_output=True)
    ws = Workspace(base, proj, outside, launcher)
    ws.chown()
    return ws


def quarantined(stderr: str) -> dict[str, str]:
    """{original path: quarantine path} from corral's report lines."""
    return {m.group(1): m.group(2) for m in QUARANTINED_RE.finditer(stderr)}


def marker() -> str:
    return "CT-SECRET-" + secrets.token_hex(8)


def corral_tmpdirs() -> set[str]:
    return set(glob.glob("/tmp/corral-*"))


def pids_with_arg(arg: str) -> list[int]:
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if arg.encode() in cmd:
            found.append(int(d))
    return found


def wait_for(pred, timeout=3.0, step=0.05) -> bool:
    end = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() > end:
            return False
        time.sleep(step)


def rmtree(path) -> None:
    shutil.rmtree(path, ignore_errors=True)
