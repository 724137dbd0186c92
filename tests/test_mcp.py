"""`corral mcp` and `corral mcp wrap`, driven by the MCP SDK's own stdio client, as root and as
an unprivileged user (the `launcher` fixture). Real sandboxes, a real proxy, servers on
127.0.0.1 only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import helpers

anyio = pytest.importorskip("anyio")
mcp = pytest.importorskip("mcp")
from mcpclient import run_async, session  # noqa: E402

HERE = Path(__file__).resolve().parent
TOOLS = ["run", "git_clone", "git_fetch", "git_push", "git_status"]


def private_home(ws) -> tuple[Path, str]:
    """A HOME for this test only, holding an SSH key with a marker."""
    home = ws.base / "home"
    (home / ".ssh").mkdir(parents=True)
    secret = helpers.marker()
    (home / ".ssh" / "id_ed25519").write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{secret}\n")
    (home / ".ssh" / "id_ed25519").chmod(0o600)
    ws.chown()
    return home, secret


def call(s, tool, args):
    return s.call_tool(tool, args)


# ------------------------------------------------------------------- protocol and run tool

def test_mcp_server_lists_tools_and_runs_argv_and_shell(launcher, ws):
    async def main():
        async with session(launcher, ["mcp"], ws.proj) as s:
            listed = await s.list_tools()
            assert [t.name for t in listed.tools] == TOOLS
            for t in listed.tools:
                assert t.output_schema and "exit_status" in t.output_schema["properties"]
                assert t.description and str(ws.proj) not in t.description
            res = await s.call_tool("run", {"argv": ["sh", "-c", "echo out; echo err >&2; id -u; exit 3"]})
            assert not res.is_error
            sc = res.structured_content
            assert sc["exit_status"] == 3 and sc["stdout"].startswith("out\n") and sc["stderr"] == "err\n"
            assert int(sc["stdout"].split()[1]) != 0  # never host uid 0, also for a root launch
            assert len(sc["run_id"]) == 12 and sc["run_id"] in res.content[0].text
            assert "exit status 3" in res.content[0].text
            res = await s.call_tool("run", {"shell": "pwd; echo $((6*7))", "cwd": "src"})
            assert res.structured_content["stdout"] == f"{ws.proj}/src\n42\n"
            first = sc["run_id"]
            res = await s.call_tool("run", {"argv": ["true"]})
            assert res.structured_content["exit_status"] == 0 and res.structured_content["run_id"] != first
            resources = {str(r.uri) for r in (await s.list_resources()).resources}
            assert resources == {"corral://policy", "corral://audit/recent"}
            policy = (await s.read_resource("corral://policy")).contents[0].text
            assert "[filesystem]" in policy and str(ws.proj) in policy

    run_async(main)


BAD_CALLS = [
    ("run", {"argv": ["ls"], "shell": "ls"}, "not both"),
    ("run", {}, "exactly one"),
    ("run", {"argv": "ls -la"}, "argv"),
    ("run", {"argv": []}, "non-empty list"),
    ("run", {"argv": ["ls"], "timeout_s": 0}, "timeout_s"),
    ("run", {"argv": ["ls"], "timeout_s": "soon"}, "timeout_s"),
    ("run", {"argv": ["ls"], "cwd": "/etc"}, "outside the workspace"),
    ("run", {"argv": ["ls"], "cwd": ".."}, "outside the workspace"),
    ("run", {"argv": ["ls"], "cwd": "escape"}, "outside the workspace"),  # a symlink to outside/
    ("run", {"argv": ["ls"], "cwd": "README.txt"}, "not a directory"),
    ("run", {"argv": ["ls"], "surprise": 1}, ""),  # unknown arguments: ignored or refused, never a crash
    ("git_clone", {"url": "ext::sh -c id"}, "not an https://"),
    ("git_clone", {"url": "https://127.0.0.1:9/r", "directory": "../outside/r"}, "outside the workspace"),
    ("git_push", {"refspecs": ["+main"]}, "forced update"),
    ("git_push", {"refspecs": ["--mirror"]}, "starts with '-'"),
    ("git_fetch", {"remote": "--upload-pack=touch x"}, "neither a remote name"),
    ("nosuchtool", {}, "nosuchtool"),
]


def test_bad_arguments_are_mcp_errors_not_tracebacks(launcher, ws):
    (ws.proj / "escape").symlink_to(ws.outside)
    ws.chown()

    async def main():
        async with session(launcher, ["mcp"], ws.proj) as s:
            for tool, args, words in BAD_CALLS:
                try:
                    res = await s.call_tool(tool, args)
                except mcp.McpError as exc:  # a protocol error is acceptable too
                    assert words in str(exc), (tool, args, exc)
                    continue
                if args.get("surprise"):
                    assert res.is_error or res.structured_content["exit_status"] == 0
                    continue
                text = res.content[0].text
                assert res.is_error, (tool, args, text)
                assert words in text and "Traceback" not in text, (tool, args, text)
            # the server still serves after all of that
            res = await s.call_tool("run", {"argv": ["echo", "alive"]})
            assert res.structured_content["stdout"] == "alive\n"

    run_async(main)


def test_run_tool_cannot_read_ssh_key_or_write_outside_or_read_the_protocol(launcher, ws):
    home, secret = private_home(ws)
    victim = ws.outside / "victim.txt"

    async def main():
        async with session(launcher, ["mcp"], ws.proj, env={"HOME": str(home)}) as s:
            res = await s.call_tool("run", {"shell": f"cat {home}/.ssh/id_ed25519 ~/.ssh/id_ed25519; "
                                                     f"ls -la ~/.ssh; grep -r CT-SECRET {home} ~ 2>/dev/null | head -3"})
            assert secret not in json.dumps(res.structured_content) and secret not in res.content[0].text
            assert "id_ed25519" in res.structured_content["stderr"]  # cat ran, and was refused
            res = await s.call_tool("run", {"shell": f"echo pwned > {victim}; echo pwned > {ws.outside}/new; "
                                                     "echo evil >> ~/.bashrc; echo evil > .bashrc"})
            assert res.structured_content["exit_status"] != 0
            # stdin is /dev/null: a command cannot read (or steal) the protocol stream
            res = await s.call_tool("run", {"argv": ["cat"], "timeout_s": 10})
            assert res.structured_content["exit_status"] == 0 and res.structured_content["stdout"] == ""
            assert not res.structured_content["timed_out"]
            res = await s.call_tool("run", {"argv": ["echo", "still serving"]})
            assert res.structured_content["stdout"] == "still serving\n"

    run_async(main)
    assert victim.read_text() == "original\n"
    assert not (ws.outside / "new").exists()
    assert not (home / ".bashrc").exists() and not (ws.proj / ".bashrc").exists()


def test_timeout_and_output_limits(launcher, ws):
    async def main():
        async with session(launcher, ["mcp"], ws.proj) as s:
            t0 = time.monotonic()
            res = await s.call_tool("run", {"shell": "echo started; sleep 30", "timeout_s": 1})
            assert time.monotonic() - t0 < 15
            sc = res.structured_content
            assert sc["exit_status"] == 124 and sc["timed_out"] and sc["stdout"] == "started\n"
            assert "timed out" in res.content[0].text
            res = await s.call_tool("run", {"shell": "head -c 5000000 /dev/zero | tr '\\0' x; echo; echo END"})
            sc = res.structured_content
            assert sc["exit_status"] == 0 and sc["stdout_truncated"] and sc["stdout_bytes"] == 5000005
            assert len(sc["stdout"]) < 40 * 1024 and sc["stdout"].endswith("x\nEND\n")
            assert "bytes omitted" in sc["stdout"]

    run_async(main)


def test_server_timeout_option_limits_each_call_and_says_so(launcher, ws):
    """`corral mcp --timeout 2s`: every call is stopped after 2 s (not the server), and the
    result says it timed out; a command that exits 124 by itself has not."""
    async def main():
        async with session(launcher, ["mcp", "--timeout", "2s"], ws.proj) as s:
            t0 = time.monotonic()
            slow = (await s.call_tool("run", {"shell": "echo started; sleep 30"})).structured_content
            took = time.monotonic() - t0
            own = (await s.call_tool("run", {"shell": "exit 124"})).structured_content
            return slow, took, own

    slow, took, own = run_async(main)
    assert took < 15 and slow["exit_status"] == 124 and slow["timed_out"] and slow["stdout"] == "started\n", slow
    assert own["exit_status"] == 124 and not own["timed_out"], own


def test_each_call_is_audited_and_joined_to_its_network_events(launcher, ws, server, other):
    settings = ws.settings(allowedDomains=[server.hostport], allowWrite=[str(ws.proj)])
    fetch = ("import urllib.request,sys\n"
             "for u in sys.argv[1:]:\n"
             "    try: print(urllib.request.urlopen(u, timeout=10).status)\n"
             "    except Exception as e: print('refused', e)\n")
    ws.write("fetch.py", fetch)

    async def main():
        async with session(launcher, ["mcp", "--settings", str(settings)], ws.proj) as s:
            res = await s.call_tool("run", {"argv": ["/usr/bin/python3", "fetch.py", server.url("/mcp-hello"),
                                                     other.url("/nope")]})
            sc = res.structured_content
            assert sc["stdout"].splitlines()[0] == "200", sc
            assert [b["destination"] for b in sc["blocked"]] == [other.hostport]
            assert other.hostport in sc["blocked_summary"] and sc["blocked_summary"] in res.content[0].text
            run_id = sc["run_id"]
            await s.call_tool("run", {"argv": ["ls"], "cwd": "/"})  # refused: audited too
            audit = (await s.read_resource("corral://audit/recent")).contents[0].text
            return run_id, [json.loads(line) for line in audit.splitlines()]

    run_id, records = run_async(main)
    assert server.paths() == ["/mcp-hello"] and other.paths() == []
    mine = [r for r in records if r.get("run") == run_id]
    tool = [r for r in mine if r.get("proto") == "mcp"]
    assert len(tool) == 1 and tool[0]["host"] == "run" and tool[0]["status"] == 0 and "fetch.py" in tool[0]["command"]
    net = [r for r in mine if r.get("proto") != "mcp"]
    assert any(r.get("path") == "/mcp-hello" and r.get("decision") == "allow" for r in net), mine
    assert any(r.get("decision") == "block" and str(r.get("port")) == str(other.port) for r in net), mine
    refused = [r for r in records if r.get("proto") == "mcp" and r.get("decision") == "block"]
    assert refused and "outside the workspace" in refused[-1]["reason"]


@pytest.mark.parametrize("backend", ["runc", "crun", "gvisor"])
def test_backend_option_is_the_wall_of_every_call_not_silently_bubblewrap(launcher, ws, backend):
    """`corral mcp --backend X` must run its tools under X, as `corral run --backend X` does
    (it once built its Sandbox without the option: every call ran under bubblewrap, silently)."""
    from conformance import missing

    why = missing(backend)
    if why:
        pytest.skip(why)
    probe = {"shell": "cat /proc/1/comm; uname -r; echo made > made.txt; echo x > " + str(ws.outside / "new")}

    async def main():
        async with session(launcher, ["mcp", "--backend", backend], ws.proj) as s:
            status = (await s.call_tool("git_status", {})).structured_content
            assert status["exit_status"] == 0 and status["stdout"].startswith("## "), status  # git works there too
            return (await s.call_tool("run", probe)).structured_content

    sc = run_async(main)
    comm, release = sc["stdout"].splitlines()[:2]
    assert comm != "bwrap", sc  # bubblewrap is pid 1 of corral's own wall; the OCI runs start catatonit
    assert (release == "4.4.0") == (backend == "gvisor"), sc  # gVisor's kernel says 4.4.0
    assert (ws.proj / "made.txt").read_text() == "made\n"
    assert not (ws.outside / "new").exists()  # refused, or written to /tmp's throw-away overlay


def test_git_tools_run_git_inside_the_sandbox_not_on_the_host(launcher, ws):
    """A hostile repository config (core.fsmonitor runs a command on every `git status`) must
    not run on the host: git_status runs git in the sandbox, where outside/ is read-only."""
    pwned = ws.outside / "fsmonitor-ran"
    subprocess.run(["git", "config", "--file", str(ws.proj / ".git" / "config"), "core.fsmonitor", f"touch {pwned}; false"], check=True)
    ws.chown()

    async def main():
        async with session(launcher, ["mcp"], ws.proj) as s:
            res = await s.call_tool("git_status", {})
            assert not res.is_error
            assert res.structured_content["stdout"].startswith("## "), res.structured_content
            res = await s.call_tool("git_push", {"refspecs": ["HEAD:refs/heads/agent/x"],
                                                 "remote": "https://127.0.0.1:9/o/r.git", "timeout_s": 30})
            assert res.structured_content["exit_status"] != 0  # no network for this server: git says so

    run_async(main)
    assert not pwned.exists()


# ------------------------------------------------------------------- corral mcp wrap

def test_wrap_passes_a_third_party_server_through_and_walls_it_in(launcher, ws):
    home, secret = private_home(ws)
    ws.write(".env", "API_TOKEN=sk-live-abcdefghijklmnopqrstuvwxyz0123456789\n")  # hidden: a notice on stderr
    server = [sys.executable, str(HERE / "mcp_files_server.py")]

    async def main():
        async with session(launcher, ["mcp", "wrap", "--", *server], ws.proj, env={"HOME": str(home)}) as s:
            names = [t.name for t in (await s.list_tools()).tools]
            assert names == ["read_file", "write_file", "whoami"]
            res = await s.call_tool("read_file", {"path": "~/.ssh/id_ed25519"})
            assert secret not in res.content[0].text and "ERROR" in res.content[0].text
            res = await s.call_tool("read_file", {"path": str(ws.proj / ".env")})
            assert "sk-live" not in res.content[0].text
            # refused, or written to /tmp's throw-away overlay: either way the host file stays (checked below)
            await s.call_tool("write_file", {"path": str(ws.outside / "victim.txt"), "text": "pwned"})
            res = await s.call_tool("write_file", {"path": str(home / ".bashrc"), "text": "evil"})
            res = await s.call_tool("write_file", {"path": "made-by-server.txt", "text": "ok"})
            assert res.content[0].text == "written"
            res = await s.call_tool("whoami", {})
            assert "uid=0 " not in res.content[0].text

    run_async(main)
    assert (ws.outside / "victim.txt").read_text() == "original\n"
    assert (ws.proj / "made-by-server.txt").read_text() == "ok"
    assert not (home / ".bashrc").exists()


def test_wrap_stdout_is_the_servers_byte_for_byte(launcher, ws):
    ws.write(".env", "API_TOKEN=sk-live-abcdefghijklmnopqrstuvwxyz0123456789\n")  # makes corral say something
    data = b"".join(json.dumps({"jsonrpc": "2.0", "id": i, "method": "x\u00e9\r"}).encode() + b"\n"
                    for i in range(2000))
    proc = subprocess.run(launcher.argv(["mcp", "wrap", "--allow-domain", "127.0.0.1:9", "--", "cat"]),
                          cwd=ws.proj, env=launcher.env, input=data, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == data
    assert b"corral:" in proc.stderr  # the notice went to stderr


def test_wrap_ends_cleanly_on_stdin_eof_and_on_sigterm(launcher, ws):
    marker = helpers.marker()
    # stdin EOF: the server (cat) ends, corral with it
    proc = subprocess.run(launcher.argv(["mcp", "wrap", "--", "cat"]), cwd=ws.proj, env=launcher.env,
                          input=b"", capture_output=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout == b""
    # SIGTERM: the harness stops the server
    p = subprocess.Popen(launcher.argv(["mcp", "wrap", "--", "sh", "-c", f"echo ready; sleep 60 # {marker}"]),
                         cwd=ws.proj, env=launcher.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=15)
    assert p.returncode in (143, 128 + 15, -15, 0), p.returncode
    assert helpers.wait_for(lambda: not helpers.pids_with_arg(f"echo ready; sleep 60 # {marker}"), timeout=5)


def test_mcp_usage_errors(me, ws):
    for args, words in ((["mcp", "-c", "ls"], "does not take -c"), (["mcp", "--", "ls"], "mcp wrap"),
                        (["mcp", "wrap"], "no server command"), (["mcp", "wrap", "--tty", "--", "cat"], "--tty"),
                        (["mcp", "--bogus"], "unknown option")):
        proc = helpers.run(me, args, ws.proj, input="")
        assert proc.returncode == 2 and words in proc.stderr and proc.stdout == "", (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    proc = helpers.run(me, ["mcp", "--help"], ws.proj)
    assert proc.returncode == 0 and "corral mcp wrap" in proc.stdout


def _rpc_lines(proc, messages):
    for m in messages:
        proc.stdin.write((json.dumps(m) + "\n").encode())
    proc.stdin.flush()


INIT = [{"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"}]


@pytest.mark.parametrize("how", ["eof", "sigterm"])
def test_mcp_server_stops_cleanly_and_its_stdout_is_only_the_protocol(launcher, ws, how):
    settings = ws.settings(allowedDomains=["127.0.0.1:9"], allowWrite=[str(ws.proj)])  # the proxy runs too
    proc = subprocess.Popen(launcher.argv(["mcp", "--settings", str(settings)]), cwd=ws.proj, env=launcher.env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _rpc_lines(proc, [*INIT, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                  "params": {"name": "run", "arguments": {"shell": "echo hi; sleep 0.2"}}}])
        replies = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert [r["id"] for r in replies] == [1, 2]
        assert replies[1]["result"]["structuredContent"]["stdout"] == "hi\n"
        run_id = replies[1]["result"]["structuredContent"]["run_id"]
        if how == "eof":
            proc.stdin.close()
        else:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        rest = proc.stdout.read()
        for line in rest.splitlines():  # anything further is JSON-RPC, never corral's words
            assert json.loads(line)["jsonrpc"] == "2.0"
        err = proc.stderr.read().decode()
        assert "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # (other corral runs on this machine may come and go in /tmp: look for this run's own)
    assert helpers.wait_for(lambda: not any(run_id in d for d in helpers.corral_tmpdirs()), timeout=5)
