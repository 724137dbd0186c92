"""The `corral` command line, run as the current user (root in CI)."""

from __future__ import annotations

import json
import os
import tomllib

import pytest

import helpers


def corral(me, ws, *args, **kw):
    return helpers.run(me, list(args), ws.proj, **kw)


def test_options_stop_at_first_non_option(me, ws):
    p = corral(me, ws, "run", "python3", "-c", "print(1)")
    assert (p.returncode, p.stdout) == (0, "1\n"), p.stderr


def test_dash_c_runs_shell_string(me, ws):
    p = corral(me, ws, "run", "-c", "echo $((1+2))")
    assert (p.returncode, p.stdout) == (0, "3\n"), p.stderr


def test_srt_style_without_run(me, ws):
    p = corral(me, ws, "--", "echo", "hi")
    assert (p.returncode, p.stdout) == (0, "hi\n"), p.stderr


def test_dry_run_prints_plan_and_runs_nothing(me, ws):
    p = corral(me, ws, "run", "--dry-run", "--", "touch", "created-by-dry-run")
    assert p.returncode == 0, p.stderr
    bwrap_part = p.stdout.split("\n\n", 1)[0]
    argv = " ".join(line.strip().rstrip("\\").strip() for line in bwrap_part.splitlines()[1:])
    for needle in ("--unshare-pid", "--die-with-parent", "--cap-drop ALL", "--new-session", "--seccomp 3"):
        assert needle in argv, needle
    assert "# network: none" in p.stdout  # corral's loopback-only namespace, not bwrap's (offline.py)
    assert "# seccomp filter" in p.stdout
    seccomp_part = p.stdout.split("# seccomp filter", 1)[1]
    assert "socket" in seccomp_part and "io_uring" in seccomp_part
    assert not (ws.proj / "created-by-dry-run").exists()
    assert not any(n.startswith(".bashrc") for n in os.listdir(ws.proj))  # no placeholders made
    assert helpers.corral_tmpdirs() == set() or all(d not in p.stdout for d in helpers.corral_tmpdirs())


def test_policy_show_is_toml(me, ws):
    p = corral(me, ws, "policy", "show")
    assert p.returncode == 0, p.stderr
    tomllib.loads(p.stdout)


def test_policy_show_converts_srt_settings(me, ws):
    s = ws.settings(denyRead=[str(ws.proj / "secret-dir")], allowWrite=[str(ws.outside)])
    p = corral(me, ws, "policy", "show", str(s))
    assert p.returncode == 0, p.stderr
    doc = tomllib.loads(p.stdout)
    assert str(ws.proj / "secret-dir") in json.dumps(doc)
    assert str(ws.outside) in json.dumps(doc)


@pytest.mark.parametrize("args", [["run", "--bogus", "--", "true"], ["--frobnicate", "true"], ["run"]])
def test_usage_errors_exit_2(me, ws, args):
    p = corral(me, ws, *args)
    assert p.returncode == 2
    assert p.stderr.startswith("corral: ") and "Traceback" not in p.stderr


def test_stdin_passes_through(me, ws):
    p = corral(me, ws, "run", "--", "cat", input="abc\n")
    assert p.stdout == "abc\n"


def test_doctor(me, ws):
    p = corral(me, ws, "doctor")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "bubblewrap" in p.stdout


def test_as_user(me, ws):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    user = helpers.user_launcher()
    p = corral(me, ws, "run", "--as-user", helpers.TEST_USER, "--", "sh", "-c", "id -u; echo made > by-user.txt")
    assert p.stdout.split()[:1] == [str(user.uid)], (p.returncode, p.stderr)
    made = ws.proj / "by-user.txt"
    if made.exists():  # if the cwd was writable for that user, the file is theirs, never root's
        assert made.stat().st_uid == user.uid


def test_as_user_refused_when_not_root(me, ws):
    if os.geteuid() == 0:
        user = helpers.user_launcher()
        p = helpers.run(user, ["run", "--as-user", "root", "--", "id", "-u"], ws.proj)
    else:
        p = corral(me, ws, "run", "--as-user", "root", "--", "id", "-u")
    assert p.returncode == 125 and p.stdout == ""


def test_dry_run_with_network_shows_the_way_out(tmp_path):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "corral", "run", "--dry-run", "--allow-domain", "example.com",
                        "--", "true"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    argv_part = p.stdout.split("\n\n", 1)[0]
    assert "--unshare-net" not in argv_part and "--ro-bind-data" in argv_part
    assert "data       /etc/resolv.conf (generated)" in p.stdout
    assert "# allowed: example.com" in p.stdout
    plain = subprocess.run([sys.executable, "-m", "corral", "run", "--dry-run", "--", "true"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=30)
    # No network: corral's offline namespace (its resolver refuses every name), not bwrap's own.
    assert "--unshare-net" not in plain.stdout.split("\n\n", 1)[0] and "# network: none" in plain.stdout


BAD_MOUNT = r"""
import os, sys
from corral import Sandbox
from corral._values import replace
from corral.errors import SetupError
from corral.sandbox.launch import run_foreground
from corral.sandbox.plan import Mount

sb = Sandbox(cwd=sys.argv[1])
plan = sb.plan(["sh", "-c", sys.argv[2]])
if sys.argv[3] == "bad":  # a mount bwrap cannot do: it fails after reporting its child pid
    plan = replace(plan, mounts=plan.mounts + (Mount("ro-bind", "/tmp/x-corral-missing-mount", "/nonexistent-src"),))
try:
    print("STATUS", run_foreground(plan, tty=False), flush=True)
except SetupError as exc:
    print("SETUP", str(exc).splitlines()[0], flush=True)
"""


@pytest.mark.parametrize("case, script, expect", [
    ("bad", "exit 0", "SETUP bubblewrap could not set up the sandbox"),
    ("good", "exit 1", "STATUS 1"),  # the command's own 1 stays the command's
    ("good", "kill -9 $$", "STATUS 137"),
])
def test_bwrap_setup_failure_after_clone_is_corral_error(launcher, ws, case, script, expect):
    """A mount bwrap fails on (after it reported its child pid) is corral's error (the CLI's
    125), not the command's exit status 1; the command's own exits and signals are unchanged."""
    import subprocess
    import sys as _sys

    path = ws.write(ws.base / "badmount.py", BAD_MOUNT)
    ws.chown()
    p = subprocess.run([*launcher.prefix, _sys.executable, str(path), str(ws.proj), script, case],
                       cwd=str(ws.proj), env=launcher.env, capture_output=True, text=True, timeout=60)
    assert expect in p.stdout, (p.stdout, p.stderr)
