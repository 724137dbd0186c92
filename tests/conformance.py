"""Helpers for the conformance suite (tests/test_conformance.py): which backends this machine
runs, and `corral run --backend X --settings FILE -c SCRIPT` with an srt-format policy."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import helpers
from corral.backends import NAMES


@functools.cache
def _docker_engine() -> str | None:
    """None when a docker engine answers, else why not."""
    exe = shutil.which("docker")
    if exe is None:
        return "docker is not installed"
    try:
        p = subprocess.run([exe, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker info failed: {exc}"
    return None if p.returncode == 0 else "docker: only the client is installed, no engine answers (`docker info` fails)"


@functools.cache
def missing(name: str) -> str | None:
    """Why backend `name` cannot run on this machine (pytest.skip's reason), or None."""
    if name == "bwrap":
        own = os.path.join(os.path.dirname(sys.executable), "bwrap")
        return None if shutil.which("bwrap") or os.path.exists(own) else "bwrap is not installed"
    if name in ("runc", "crun", "gvisor"):
        from corral.sandbox.ocirun import runtime_path

        return None if runtime_path(name) else f"{'runsc' if name == 'gvisor' else name} is not installed"
    if name == "podman":
        return None if shutil.which("podman") else "podman is not installed"
    if name == "docker":
        return _docker_engine()
    if name == "landlock":  # a root launch needs a user-owned workspace there; the root takes no new file
        return "landlock: the suite runs in tests/test_backend_landlock.py (user-owned workspace, its own variants)"
    return f"unknown backend {name}"


def backend_param(request) -> str:
    """The `backend` fixture's body: skip what this machine lacks."""
    name = request.param
    why = missing(name)
    if why is not None:
        pytest.skip(f"backend {name}: {why}")
    return name


def engine(ws, backend: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """(options, environment) a backend needs beyond the common ones: podman runs the Debian test
    image (scripts/build-test-image.sh --debian) from the launcher's private store."""
    if backend != "podman":
        return (), {}
    from podman_env import IMAGES, podman_env

    return ("--image", IMAGES["debian"]), podman_env(ws.launcher, "debian")


def rootless_engine(ws, backend: str) -> bool:
    """Does this run get rootless podman (its own user namespace, --network none)?"""
    return backend == "podman" and not ws.launcher.is_root


def refused_rootless(ws, backend: str, p) -> bool:
    """Rootless podman cannot put the container in corral's network namespace, so a run that
    needs the proxy is refused by design: exit 125, the reason and the fix, the command never
    started. True (after asserting exactly that) when this is such a run; False otherwise."""
    if not rootless_engine(ws, backend):
        return False
    out = p.stdout + p.stderr
    assert p.returncode == 125, out
    assert "rootless podman" in p.stderr and "cannot join corral's network namespace" in p.stderr, out
    assert "fix:" in p.stderr and "Traceback" not in out, out
    assert p.stdout == "", out  # nothing of the command ran
    return True


PARAMS = list(NAMES)


def policy(ws, *, allowed=(), denied=(), deny_read=(), allow_write=None, extra=None, where=None) -> Path:
    """An srt settings file: the workspace writable (srt grants only allowWrite paths)."""
    body = {"network": {"allowedDomains": list(allowed), "deniedDomains": list(denied)},
            "filesystem": {"denyRead": list(deny_read), "allowRead": [],
                           "allowWrite": [str(ws.proj)] if allow_write is None else list(allow_write),
                           "denyWrite": []}}
    for key, value in (extra or {}).items():
        section, _, name = key.partition(".")
        body.setdefault(section, {})[name] = value
    return ws.write(where or (ws.base / "policy.json"), json.dumps(body, indent=1))


def state(ws) -> Path:
    s = ws.base / "state"
    if not s.exists():
        s.mkdir()
        ws.chown()
    return s


def home(ws) -> Path:
    """The test's private HOME (outside the workspace), owned by the launcher."""
    h = ws.base / "home"
    if not h.exists():
        h.mkdir()
        ws.chown()
    return h


def run(ws, backend: str, script: str, settings: Path | None = None, *, opts=(), env_extra=None, input=None,
        timeout=60) -> subprocess.CompletedProcess:
    settings = settings or policy(ws)
    more, engine_env = engine(ws, backend)
    env = {**engine_env, "XDG_STATE_HOME": str(state(ws)), "HOME": str(home(ws)), **(env_extra or {})}
    return helpers.run(ws.launcher, ["run", "--backend", backend, *more, "--settings", str(settings), *opts,
                                     "-c", script], ws.proj, input=input, timeout=timeout, env_extra=env)


def popen(ws, backend: str, script: str, settings: Path | None = None, **kw) -> subprocess.Popen:
    settings = settings or policy(ws)
    more, engine_env = engine(ws, backend)
    env = {**ws.launcher.env, **engine_env, "XDG_STATE_HOME": str(state(ws)), "HOME": str(home(ws))}
    return subprocess.Popen(ws.launcher.argv(["run", "--backend", backend, *more, "--settings", str(settings),
                                              "-c", script]),
                            cwd=str(ws.proj), env=env, text=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def dry_report(ws, backend: str, settings: Path | None = None) -> str:
    """The enforcement report lines of `corral run --dry-run --backend X`."""
    p = run(ws, backend, "true", settings, opts=("--dry-run",))
    assert p.returncode == 0, p.stdout + p.stderr
    return "\n".join(line for line in (p.stdout + p.stderr).splitlines() if line.startswith("#   ")
                     or "enforcement report" in line)


def syscall_probe(nr_by_arch: dict[str, int], args: str = "0, 0, 0, 0, 0") -> str:
    """A python3 one-liner that calls syscall NR(args) by number and prints 'rc=<r> errno=<e>'."""
    nr = nr_by_arch[os.uname().machine]
    return ("python3 -c 'import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); "
            f"r = libc.syscall({nr}, {args}); print(\"rc=%d errno=%d\" % (r, ctypes.get_errno()))'")
