"""Private podman stores and the test images for the suite (tests/test_backend_container.py,
tests/conformance.py): nothing system-wide, no registry.

Each launcher (root "r", the unprivileged user "u") gets its own store and configuration under
/var/tmp/ctp/{r,u} (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF, XDG_RUNTIME_DIR), cached between
sessions: scripts/build-test-image.sh keeps an image whose label matches its inputs' hash.

Images: "busybox" (localhost/corral-test:busybox, a busybox-static root, 0.3 s) and "debian"
(localhost/corral-test:debian, mmdebstrap bookworm with bash, python3, git, curl, util-linux,
procps: what the conformance suite's scripts use). The Debian tarball is made once, as root
(mmdebstrap needs it), cached in /var/tmp by its key, and imported by each launcher.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import helpers

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "build-test-image.sh"
IMAGES = {"busybox": "localhost/corral-test:busybox", "debian": "localhost/corral-test:debian"}
# Short on purpose: with a store path of ~38 characters rootless podman 4.3 waits 20 s for conmon
# after every container (conmon timeout).
STORE_BASE = Path("/var/tmp/ctp")

_ready: dict[tuple[str, int, str], dict[str, str]] = {}
_tarball: list[str] = []


def debian_tarball() -> str:
    """The cached Debian root filesystem tarball, made now (as root) when missing: once per session."""
    if _tarball:
        return _tarball[0]
    if shutil.which("mmdebstrap") is None and os.geteuid() == 0:
        pytest.skip("mmdebstrap is not installed (apt-get install mmdebstrap): the Debian test image needs it")
    p = subprocess.run([str(SCRIPT), "--debian", "--cached"], capture_output=True, text=True, timeout=600, cwd="/")
    if p.returncode != 0 and os.geteuid() != 0:
        pytest.skip(f"the Debian test image is not built: {p.stderr.strip()}")
    assert p.returncode == 0, p.stderr
    _tarball.append(p.stdout.strip())
    return _tarball[0]


def podman_env(launcher: helpers.Launcher, flavour: str = "busybox") -> dict[str, str]:
    """The engine's environment for `launcher` (its private store), with IMAGES[flavour] in it."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install podman runc uidmap)")
    key = (launcher.name, launcher.uid, flavour)
    if key in _ready:
        return _ready[key]
    if flavour == "debian":
        debian_tarball()
    base = STORE_BASE / launcher.name[0]  # r, u
    base.mkdir(parents=True, exist_ok=True)
    STORE_BASE.chmod(0o755)
    (base / "containers.conf").write_text(
        '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n')
    (base / "storage.conf").write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{base}/store"\n'
                                       f'runroot = "{base}/runroot"\nrootless_storage_path = "{base}/store"\n')
    run_dir = base / "run"
    run_dir.mkdir(mode=0o700, exist_ok=True)
    env = {"CONTAINERS_CONF": str(base / "containers.conf"), "CONTAINERS_STORAGE_CONF": str(base / "storage.conf"),
           "XDG_RUNTIME_DIR": str(run_dir)}
    if os.geteuid() == 0 and launcher.uid != 0:
        for path in (base, base / "containers.conf", base / "storage.conf", run_dir):
            os.lchown(path, launcher.uid, launcher.gid)
    flags = ["--debian"] if flavour == "debian" else []
    build = subprocess.run([*launcher.prefix, "/usr/bin/env", *(f"{k}={v}" for k, v in {**launcher.env, **env}.items()),
                            str(SCRIPT), *flags], capture_output=True, text=True, timeout=300, cwd="/")
    assert build.returncode == 0, build.stderr
    _ready[key] = env
    return env
