"""Bare repositories behind the test git server, and [git] policies for them: shared by the
git ref policy tests (tests/test_git_policy.py, `corral run`) and the MCP git tools tests
(tests/test_mcp_git.py, `corral mcp`).

The server itself (`git_root`, `git_server`, `git_token`, `test_ca`) is tests/test_credentials.py's.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from test_credentials import toml_list

SAFE = {**os.environ, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory", "GIT_CONFIG_VALUE_0": "*"}
REPOS = ("acme/widgets", "acme/tools", "other/secret")

GIT_POLICY = """repositories = [{ match = "127.0.0.1/acme/tools", push = ["agent/*"], delete = true },
                "127.0.0.1/acme/*"]
push = ["agent/*"]
"""


def refs(root, repo: str) -> dict[str, str]:
    """{ref: id} of the bare repository `repo` below `root`, read on the host."""
    out = subprocess.run(["git", "-C", str(root / f"{repo}.git"), "for-each-ref", "--format=%(refname) %(objectname)"],
                         capture_output=True, text=True, env=SAFE, check=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


@pytest.fixture
def repos(git_root):
    """acme/widgets, acme/tools and other/secret: bare copies of the fixture's repo.git."""
    for repo in REPOS:
        (git_root / repo).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "-q", "--bare", str(git_root / "repo.git"), str(git_root / f"{repo}.git")],
                       check=True, env=SAFE, capture_output=True)
        subprocess.run(["git", "-C", str(git_root / f"{repo}.git"), "config", "http.receivepack", "true"],
                       check=True, env=SAFE)
    return git_root


def policy(ws, server, ca, git: str, *, basic_user: str | None = None) -> str:
    """A native policy: the workspace writable, the git server allowed and terminated, the
    credential GIT_TOKEN (from the launcher's environment) bound to 127.0.0.1, and `git` as
    the [git] block. `basic_user`: the proxy sends the token as Basic auth itself (a URL
    without the placeholder in it works, as for the MCP git tools)."""
    cred = ["[[credentials]]", 'name = "GIT_TOKEN"', 'from_env = "GIT_TOKEN"', 'hosts = ["127.0.0.1"]']
    if basic_user is not None:
        cred.append(f"basic_user = {toml_list([basic_user])[1:-1]}")
    return "\n".join([
        "[filesystem]", f"allow_write = {toml_list([ws.proj])}", "",
        "[network]", f"allowed_domains = {toml_list([server.hostport])}", "",
        "[network.tls]", f"extra_ca = {toml_list([ca.path])}", "",   # terminated: the git host is ruled
        *cred, "",
        "[git]", git, ""])
