"""Messages that help (issue 11, point 6): what a new user reads when something goes wrong.

Commands that could not be executed exit 127/126 as shells do, usage errors exit 2 with one
line, every command answers --help, a closed pipe ends quietly, secret files hidden at
start-up are counted in one line, and errors speak the vocabulary of the input.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

import helpers
from corral.sandbox.diagnose import RAN, SETUP_FAILED, START_FAILED, classify_exit, start_failure
from corral.sandbox.plan import Mount

# ---------------------------------------------------------------- exit 127 / 126 (pure parts)

CHILD = b'{ "child-pid": 7, "mnt-namespace": 1 }\n'


@pytest.mark.parametrize("status_json, status, setup_done, expect", [
    (CHILD + b'{ "exit-code": 1 }\n', 1, True, RAN),  # the command's own 1
    (CHILD + b'{ "exit-code": 0 }\n', 0, None, RAN),
    (CHILD, 137, None, RAN),  # killed by a signal: nothing more reported
    (CHILD, 1, True, START_FAILED),  # built (seccomp pipe read), execvp failed
    (CHILD, 1, False, SETUP_FAILED),  # a mount failed: the pipe is still full
    (CHILD, 1, None, SETUP_FAILED),  # unknown: the old, safe reading
    (b"", 1, True, SETUP_FAILED),  # no child at all
])
def test_classify_exit_table(status_json, status, setup_done, expect):
    assert classify_exit(status_json, status, setup_done) == expect


def _fake_stat(files: dict[str, int]):
    def fake(path):
        if path not in files:
            raise FileNotFoundError(path)
        return os.stat_result((files[path], 0, 0, 1, 0, 0, 0, 0, 0, 0))
    return fake


EXE, PLAIN, DIR = stat.S_IFREG | 0o755, stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755


@pytest.mark.parametrize("name, files, mounts, status, words", [
    ("notacommand", {}, (), 127, "corral: notacommand: command not found"),
    ("./nope", {}, (), 127, "corral: ./nope: no such file or directory"),
    ("/w/script", {"/w/script": PLAIN}, (), 126, "corral: /w/script: permission denied (not executable)"),
    ("./d", {"/w/d": DIR}, (), 126, "corral: ./d: is a directory"),
    ("tool", {"/opt/bin/tool": EXE}, (Mount("tmpfs", "/opt", why="deny_read"),), 127,
     "corral: tool: command not found in the sandbox (/opt/bin/tool is hidden by the policy: deny_read)"),
    ("tool", {"/opt/bin/tool": EXE}, (Mount("tmpfs", "/opt"), Mount("ro-bind", "/opt/bin", "/opt/bin")), 126,
     "cannot be executed in the sandbox"),
    ("tool", {"/usr/bin/tool": PLAIN, "/opt/bin/tool": PLAIN}, (), 126, "permission denied"),
    ("bad\x1b[31mname", {}, (), 127, "corral: bad\\x1b[31mname: command not found"),
])
def test_start_failure_table(name, files, mounts, status, words):
    got_status, line = start_failure(name, "/usr/bin:/opt/bin", "/w", mounts, stat=_fake_stat(files))
    assert got_status == status and words in line, line
    assert "\x1b" not in line


# ---------------------------------------------------------------- exit 127 / 126 (real sandboxes)

def test_missing_command_exits_127_command_not_found(launcher, ws):
    p = helpers.run(launcher, ["run", "--", "notacommand-xyz"], ws.proj)
    assert p.returncode == 127, p.stderr
    assert "corral: notacommand-xyz: command not found" in p.stderr
    assert "bubblewrap could not set up" not in p.stderr and "Traceback" not in p.stderr


def test_missing_relative_path_exits_127(launcher, ws):
    p = helpers.run(launcher, ["run", "--", "./no-such-script"], ws.proj)
    assert p.returncode == 127, p.stderr
    assert "corral: ./no-such-script: no such file or directory" in p.stderr


def test_file_without_exec_bit_exits_126(launcher, ws):
    ws.write("notes.sh", "echo hi\n", mode=0o644)
    p = helpers.run(launcher, ["run", "--", "./notes.sh"], ws.proj)
    assert p.returncode == 126, p.stderr
    assert "corral: ./notes.sh: permission denied" in p.stderr


def test_command_own_127_and_1_are_the_commands(launcher, ws):
    p = helpers.run(launcher, ["run", "--", "sh", "-c", "exit 127"], ws.proj)
    assert p.returncode == 127 and "corral:" not in p.stderr, p.stderr
    p = helpers.run(launcher, ["run", "--", "sh", "-c", "exit 1"], ws.proj)
    assert p.returncode == 1 and "corral:" not in p.stderr, p.stderr


def test_command_hidden_by_deny_read_is_not_found(launcher, ws):
    tool = ws.write(ws.outside / "bin" / "mytool", "#!/bin/sh\necho ran\n", mode=0o755)
    ws.chown()
    env = {"PATH": f"{tool.parent}:/usr/bin:/bin"}
    ok = helpers.run(launcher, ["run", "--", "mytool"], ws.proj, env_extra=env)
    assert (ok.returncode, ok.stdout) == (0, "ran\n"), ok.stderr
    p = helpers.run(launcher, ["run", "--deny-read", str(tool.parent), "--", "mytool"], ws.proj, env_extra=env)
    assert p.returncode == 127, p.stderr
    assert "corral: mytool: command not found in the sandbox" in p.stderr and "hidden by the policy" in p.stderr


# ---------------------------------------------------------------- usage and help

def corral(me, ws, *args, **kw):
    return helpers.run(me, list(args), ws.proj, **kw)


SUBCOMMANDS = ("run", "policy", "scan", "changes", "apply", "discard", "sessions", "audit", "proxy", "doctor")


def test_top_level_help_describes_every_command(me, ws):
    p = corral(me, ws, "--help")
    assert p.returncode == 0 and p.stderr == ""
    assert "least" in p.stdout and "privilege" in p.stdout  # a description, not just a synopsis
    commands = p.stdout.split("commands:", 1)[1].split("\n\n", 1)[0]
    for sub in SUBCOMMANDS:
        assert f"\n  {sub} " in "\n" + commands, sub


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_every_subcommand_answers_help(me, ws, sub):
    for flag in ("--help", "-h"):
        p = corral(me, ws, sub, flag)
        assert p.returncode == 0, (sub, p.stderr)
        assert "usage: corral" in p.stdout and p.stderr == ""
    assert corral(me, ws, "help", sub).stdout == corral(me, ws, sub, "--help").stdout


@pytest.mark.parametrize("args", [
    [], ["run"], ["run", "--bogus", "--", "true"], ["--frobnicate", "true"], ["run", "--allow-write"],
    ["run", "--workspace", "bogus", "--", "true"], ["run", "--memory", "lots", "--", "true"],
    ["policy"], ["policy", "frob"], ["policy", "show", "a", "b"], ["scan", "--bogus"], ["changes"],
    ["changes", "--bogus", "x"], ["apply"], ["discard"], ["sessions", "extra"], ["audit", "--bogus"],
    ["audit", "--run"], ["proxy"], ["proxy", "--bogus"], ["doctor", "--bogus"],
])
def test_usage_errors_exit_2_with_one_line(me, ws, args):
    p = corral(me, ws, *args)
    assert p.returncode == 2, (args, p.returncode, p.stderr)
    assert p.stderr.startswith("corral: ") and p.stderr.count("\n") == 1, p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""
    assert "--help" in p.stderr or "usage:" in p.stderr


def test_corral_failures_still_exit_125(me, ws):
    p = corral(me, ws, "run", "-s", str(ws.base / "missing.toml"), "--", "true")
    assert p.returncode == 125 and p.stderr.startswith("corral: "), p.stderr


# ---------------------------------------------------------------- a closed pipe

def _piped(me, ws, args, lines=1):
    """`corral ARGS | head -n LINES`: corral's status and stderr."""
    # Without PYTHONUNBUFFERED: unbuffered, Python drops the rest of a short write silently.
    env = {k: v for k, v in me.env.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(me.argv(args), cwd=str(ws.proj), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    first = [proc.stdout.readline() for _ in range(lines)]
    proc.stdout.close()  # the reader goes away, as `head` does
    err = proc.stderr.read().decode()
    return proc.wait(timeout=60), first, err


def test_closed_pipe_ends_quietly(me, ws):
    # Enough output to overflow a pipe buffer: a policy with many entries, and a long audit log.
    many = "\n".join(f'"{ws.proj}/d{i:05d}",' for i in range(20000))
    pol = ws.write(ws.base / "big.toml", f"[filesystem]\ndeny_read = [\n{many}\n]\n")
    status, first, err = _piped(me, ws, ["policy", "show", str(pol)])
    assert first[0] and "Traceback" not in err and "BrokenPipe" not in err, err
    assert err == "" and status == 141
    log = ws.base / "audit.jsonl"
    log.write_text("".join(
        f'{{"time": 1700000000, "run": "r{i}", "proto": "http", "host": "h{i}.example", "port": 80, '
        f'"decision": "block", "reason": "not allowed"}}\n' for i in range(20000)))
    ws.chown()
    status, first, err = _piped(me, ws, ["audit", "--file", str(log)])
    assert first[0] and err == "" and status == 141, err


def test_dry_run_into_closed_pipe_ends_quietly(me, ws):
    status, first, err = _piped(me, ws, ["run", "--dry-run", "--", "true"])
    assert first[0] and "Traceback" not in err and "Exception ignored" not in err, err
    assert status in (0, 141)


# ---------------------------------------------------------------- hidden secret files: one line

def _secret_mount(path):
    return Mount("dev-null", path, "/dev/null", why="secret file found by `corral scan` (deny_secrets)")


@pytest.mark.parametrize("paths, expect", [
    ([], ""),
    (["/w/.env"], "corral: 1 secret file in the workspace is hidden (.env): `corral scan` lists them; "
                  "re-open one with --allow-read PATH"),
    (["/w/config/prod.key", "/w/.env", "/w/a/id_rsa", "/w/z.pem"],
     "corral: 4 secret files in the workspace are hidden (.env, a/id_rsa, config/prod.key, ...)"),
    (["/w/.env", "/h/.config/x/token.json"], "corral: 2 secret files are hidden (.env, ~/.config/x/token.json)"),
    (["/w/evil\x1b]0;x\x07.env"], "(evil\\x1b]0;x\\x07.env)"),
])
def test_secrets_notice_table(paths, expect):
    from corral.cli import secrets_notice

    mounts = [Mount("ro-bind", "/", "/", why="root"), *map(_secret_mount, paths),
              Mount("dev-null", "/w/other", "/dev/null", why="deny_read (policy)")]
    line = secrets_notice(mounts, "/w", "/h")
    assert (expect in line) if expect else line == "", line
    assert "\x1b" not in line and line.count("\n") == 0


def test_hidden_secret_files_get_one_startup_line(launcher, ws):
    ws.write(".env", "API_KEY=sk-live-0123456789abcdefghijklmnopqrstuv\n")
    ws.write("config/id_rsa", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n")
    p = helpers.run(launcher, ["run", "--", "cat", ".env"], ws.proj)
    assert p.returncode != 0 and "sk-live" not in p.stdout + p.stderr
    lines = [ln for ln in p.stderr.splitlines() if "secret file" in ln]
    assert lines == ["corral: 2 secret files in the workspace are hidden (.env, config/id_rsa): `corral scan` "
                     "lists them; re-open one with --allow-read PATH"], p.stderr
    quiet = helpers.run(launcher, ["run", "-q", "--", "true"], ws.proj)
    assert quiet.returncode == 0 and "secret file" not in quiet.stderr
    # (The status of this run is not asserted: the post-run check of a re-opened file is another matter.)
    reopened = helpers.run(launcher, ["run", "--allow-read", ".env", "--", "true"], ws.proj)
    assert "corral: 1 secret file in the workspace is hidden (config/id_rsa)" in reopened.stderr, reopened.stderr


# ---------------------------------------------------------------- writable paths that do not exist

def test_allow_write_of_missing_path_is_a_usage_error(launcher, ws):
    missing = ws.outside / "not" / "there"
    p = helpers.run(launcher, ["run", "--allow-write", str(missing), "--", "true"], ws.proj)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith(f"corral: --allow-write {missing}: no such file or directory (create it first")
    assert not missing.exists()


def test_missing_allow_write_in_native_policy_is_an_error_in_srt_a_warning(launcher, ws):
    missing = ws.outside / "gone"
    native = ws.write(ws.base / "p.toml", f'[filesystem]\nallow_write = [".", "{missing}"]\n')
    p = helpers.run(launcher, ["run", "-s", str(native), "--", "true"], ws.proj)
    assert p.returncode == 125, p.stderr
    assert f"{native}: filesystem.allow_write[1] = '{missing}': no such file or directory" in p.stderr
    srt = ws.settings("s.json", allowWrite=[str(ws.proj), str(missing)])
    p = helpers.run(launcher, ["run", "-s", str(srt), "--", "true"], ws.proj)
    assert p.returncode == 0, p.stderr
    assert f"filesystem.allowWrite[1] = '{missing}' does not exist: ignored, as srt does" in p.stderr


# ---------------------------------------------------------------- the input's vocabulary

@pytest.mark.parametrize("source, message, expect", [
    ("<cli> --allow-domain", "allowedDomains entry '*': overly broad: '*' would allow every host",
     "--allow-domain *: overly broad: '*' would allow every host"),
    ("/p/policy.toml", "allowedDomains entry '*.com': overly broad",
     "/p/policy.toml: network.allowed_domains: entry '*.com': overly broad"),
    ("/p/policy.toml", "deniedDomainReasons key 'b.com': not an entry of deniedDomains",
     "/p/policy.toml: network: denied_reasons key 'b.com': not an entry of denied_domains"),
    ("/p/settings.json", "allowedDomains entry '*': overly broad",
     "/p/settings.json: network: allowedDomains entry '*': overly broad"),
    ("<api>", "deniedResolvedAddresses entry 'x': bad", "<api>: network.denied_addresses: entry 'x': bad"),
])
def test_network_errors_speak_the_inputs_vocabulary(source, message, expect):
    from corral.policy.vocabulary import network_error

    assert str(network_error(source, message)) == expect


def test_cli_and_native_errors_never_say_srt_keys(me, ws):
    p = corral(me, ws, "run", "--allow-domain", "*", "--", "true")
    assert p.returncode == 2 and p.stderr.startswith("corral: --allow-domain *: overly broad"), p.stderr
    assert "allowedDomains" not in p.stderr
    native = ws.write(ws.base / "n.toml", '[network]\nallowed_domains = ["*.com"]\n')
    p = corral(me, ws, "run", "-s", str(native), "--", "true")
    assert p.returncode == 125 and "network.allowed_domains" in p.stderr and "allowedDomains" not in p.stderr
    srt = ws.settings("n.json", allowedDomains=["*.com"])
    p = corral(me, ws, "run", "-s", str(srt), "--", "true")
    assert p.returncode == 125 and "allowedDomains" in p.stderr, p.stderr


# ---------------------------------------------------------------- corral doctor

DOCTOR_CHECKS = ("bubblewrap", "user namespaces", "Landlock", "seccomp filters", "egress proxy namespace", "nftables",
                 "overlay in a user namespace", "cgroups for limits", "TLS termination",
                 *(f"backend {name}" for name in ("runc", "crun", "gvisor", "podman", "docker")))


def test_doctor_reports_only_what_corral_uses(launcher, ws):
    p = helpers.run(launcher, ["doctor"], ws.proj)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = [line.split(":", 1)[0].split(None, 1) for line in p.stdout.splitlines()]
    states = {what: state for state, what in rows}
    assert set(states) == set(DOCTOR_CHECKS) | ({"idmapped mounts"} if launcher.is_root else set()), p.stdout
    assert "Landlock: ABI " in p.stdout  # the weaker wall's kernel side, with its ABI
    assert all(state in ("ok", "warn", "FAIL") for state in states.values())
    assert "bubblewrap 0." in p.stdout  # the version, not only the path
    for line in p.stdout.splitlines():
        if not line.startswith("ok"):
            assert "fix:" in line, line  # a failed check says what to do


def test_doctor_overlay_probe_leaves_nothing_behind(me, ws):
    before = {n for n in os.listdir("/tmp") if n.startswith("corral-doctor-")}
    p = corral(me, ws, "doctor")
    assert p.returncode == 0
    assert {n for n in os.listdir("/tmp") if n.startswith("corral-doctor-")} == before
