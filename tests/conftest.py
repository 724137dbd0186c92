"""Fixtures for the corral security suite.

Every security test takes `launcher` and runs twice: `root` (corral started by the current
user, root in CI) and `user` (an unprivileged `corral-test` user via setpriv). When the suite
is not run as root, `user` is the current user and `root` is skipped. Each launcher, and the
pytest process, has private XDG_STATE/CACHE/DATA/CONFIG_HOME directories (helpers.private_xdg).
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import helpers  # noqa: E402

_launchers: dict[str, helpers.Launcher] = {}


def pytest_configure(config):
    """In-process tests (scan caches, CA, audit log, sessions) use private XDG directories too:
    the suite never writes the real ~/.local/state, ~/.cache, ~/.local/share or ~/.config."""
    os.environ.update(helpers.private_xdg("pytest", os.geteuid(), os.getegid()))


def pytest_unconfigure(config):
    helpers.remove_private_root()


def _get_launcher(name: str) -> helpers.Launcher:
    if name not in _launchers:
        _launchers[name] = helpers.current_launcher("root") if name == "root" else helpers.user_launcher()
    return _launchers[name]


@pytest.fixture(params=["root", "user"])
def launcher(request) -> helpers.Launcher:
    if request.param == "root" and os.geteuid() != 0:
        pytest.skip("needs root")
    try:
        return _get_launcher(request.param)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def me() -> helpers.Launcher:
    """The current user, for CLI tests that need not run twice."""
    return _get_launcher("root") if os.geteuid() == 0 else _get_launcher("user")


@pytest.fixture
def ws(request):
    launcher = request.getfixturevalue("launcher") if "launcher" in request.fixturenames else request.getfixturevalue("me")
    workspace = helpers.make_workspace(launcher)
    yield workspace
    helpers.rmtree(workspace.base)


@pytest.fixture
def quarantine_cleanup(launcher):
    """Quarantine paths to delete after the test (appended to by the test)."""
    paths: list[str] = []
    yield paths
    for p in paths:
        # remove the whole per-run directory: <root>/<run id>
        root = str(launcher.quarantine_root)
        if p.startswith(root + "/"):
            run_dir = os.path.join(root, p[len(root) + 1:].split("/")[0])
            helpers.rmtree(run_dir)


@pytest.fixture
def server():
    """A threaded HTTP server on 127.0.0.1 recording what it was asked (test_network.Server)."""
    from test_network import Server

    s = Server()
    yield s
    s.close()


@pytest.fixture
def other():
    """A second server that the tests never allow: it must never see a request."""
    from test_network import Server

    s = Server()
    yield s
    s.close()
