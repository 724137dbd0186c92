"""Harness recipes of docs/harnesses.md, with the real harness: Claude Code (the CLI that the
Claude Agent SDK for Python ships) run headless against a scripted model on 127.0.0.1
(tests/fake_anthropic.py) that answers with one tool call. The tool's result, as the harness
sends it back to the model, shows where the command really ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import helpers
from fake_anthropic import FakeAnthropic

HERE = Path(__file__).resolve().parent


def claude_binary() -> str:
    sdk = pytest.importorskip("claude_agent_sdk", reason="the Claude Agent SDK (test extra) is not installed")
    path = Path(sdk.__file__).parent / "_bundled" / "claude"
    if not os.access(path, os.X_OK):
        pytest.skip(f"the Claude Agent SDK has no bundled CLI at {path}")
    return str(path)


def corral_exe() -> str:
    return str(Path(sys.executable).parent / "corral")


def harness_home(ws) -> tuple[Path, str]:
    home = ws.base / "home"
    (home / ".ssh").mkdir(parents=True)
    secret = helpers.marker()
    (home / ".ssh" / "id_ed25519").write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{secret}\n")
    ws.chown()
    return home, secret


def run_claude(launcher, ws, home, fake, extra_env=None, extra_args=()):
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           **{k: v for k, v in launcher.env.items() if k.startswith("XDG_")},
           "ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": "sk-ant-test-not-a-key",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1", "IS_SANDBOX": "1",
           **(extra_env or {})}
    proc = subprocess.run([*launcher.prefix, claude_binary(), "-p", "do the task", "--output-format", "json",
                           *extra_args], cwd=ws.proj, env=env, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    results = fake.tool_results()
    assert len(results) == 1, (results, proc.stdout[-2000:])
    return results[0]


def write_prefix(ws) -> Path:
    """The recipe's wrapper: Claude Code runs `$CLAUDE_CODE_SHELL_PREFIX '<command string>'`."""
    prefix = ws.base / "corral-shell-prefix"
    prefix.write_text(f'#!/bin/sh\nexec {corral_exe()} run -q -c "$1"\n')
    prefix.chmod(0o755)
    ws.chown()
    return prefix


def test_claude_code_shell_prefix_runs_every_bash_command_in_corral(launcher, ws):
    home, secret = harness_home(ws)
    victim = ws.outside / "victim.txt"
    command = (f"echo ran-$((6*7)); id -u; cat ~/.ssh/id_ed25519; echo pwned > {victim}; "
               "echo evil >> ~/.bashrc; cat /proc/1/comm")
    fake = FakeAnthropic(command)
    try:
        out = run_claude(launcher, ws, home, fake, {"CLAUDE_CODE_SHELL_PREFIX": str(write_prefix(ws))},
                         ["--permission-mode", "bypassPermissions"])
    finally:
        fake.close()
    lines = out.splitlines()
    assert lines[0] == "ran-42", out
    assert int(lines[1]) != 0  # never host root, even when the harness runs as root
    assert secret not in out and "id_ed25519" in out  # cat ran, and was refused
    assert lines[-1] == "bwrap"  # pid 1 is the sandbox's own (bubblewrap's), not the host's init
    assert victim.read_text() == "original\n"
    assert not (home / ".bashrc").exists()


def test_claude_code_mcp_json_with_corral_mcp_and_corral_mcp_wrap(launcher, ws):
    """`.mcp.json` entries for `corral mcp` (its run tool) and for a third-party server
    wrapped with `corral mcp wrap`: the model's tool calls reach both through the harness."""
    home, secret = harness_home(ws)
    corral = corral_exe()
    config = {"mcpServers": {
        "corral": {"command": corral, "args": ["mcp", "-q"]},
        "files": {"command": corral, "args": ["mcp", "wrap", "-q", "--", sys.executable,
                                              str(HERE / "mcp_files_server.py")]},
    }}
    cfg = ws.base / "mcp.json"  # (.mcp.json in a project is the same format)
    cfg.write_text(json.dumps(config))
    ws.chown()
    cases = [("mcp__corral__run", {"shell": "echo via-corral-mcp; id -u; cat ~/.ssh/id_ed25519"}),
             ("mcp__files__read_file", {"path": "~/.ssh/id_ed25519"})]
    for tool, tool_input in cases:
        fake = FakeAnthropic(tool=tool, tool_input=tool_input)
        try:
            # ENABLE_TOOL_SEARCH=false: MCP tools in the first request (else they are deferred behind ToolSearch)
            out = run_claude(launcher, ws, home, fake, {"ENABLE_TOOL_SEARCH": "false"}, extra_args=["--mcp-config", str(cfg), "--strict-mcp-config",
                                                                   "--permission-mode", "bypassPermissions"])
        finally:
            fake.close()
        assert secret not in out, (tool, out)
        if tool == "mcp__corral__run":
            # Claude Code hands the model the structured content (the outputSchema's JSON)
            result = json.loads(out)
            assert result["stdout"].startswith("via-corral-mcp\n") and result["exit_status"] == 1, out
            assert int(result["stdout"].split()[1]) != 0 and len(result["run_id"]) == 12
        else:
            assert "ERROR" in out, out


def test_claude_agent_sdk_python_with_the_shell_prefix(launcher, ws):
    """The Claude Agent SDK for Python (query(), ClaudeAgentOptions): the same prefix, set
    through the options' env, as the launcher (root, and the unprivileged user)."""
    claude_binary()
    home, secret = harness_home(ws)
    fake = FakeAnthropic(f"echo sdk-ran; cat ~/.ssh/id_ed25519; echo pwned > {ws.outside / 'victim.txt'}")
    driver = ws.base / "drive_sdk.py"
    driver.write_text(f"""
import anyio
from claude_agent_sdk import ClaudeAgentOptions, query

async def main():
    options = ClaudeAgentOptions(cwd={str(ws.proj)!r}, allowed_tools=["Bash"], permission_mode="bypassPermissions",
                                 env={{"CLAUDE_CODE_SHELL_PREFIX": {str(write_prefix(ws))!r},
                                       "ANTHROPIC_BASE_URL": {fake.url!r}, "ANTHROPIC_API_KEY": "sk-ant-test",
                                       "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "IS_SANDBOX": "1"}})
    async for message in query(prompt="do the task", options=options):
        pass

anyio.run(main)
""")
    ws.chown()
    env = {**launcher.env, "HOME": str(home)}
    try:
        proc = subprocess.run([*launcher.prefix, sys.executable, str(driver)], cwd=ws.proj, env=env,
                              capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = fake.tool_results()
    finally:
        fake.close()
    assert len(results) == 1 and "sdk-ran" in results[0].splitlines(), results
    assert secret not in results[0] and "id_ed25519" in results[0]
    assert (ws.outside / "victim.txt").read_text() == "original\n"


LANGCHAIN_DRIVER = """
import sys
from langchain.agents import create_agent
from langchain.agents.middleware import ShellToolMiddleware
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from corral.integrations.langchain import CorralExecutionPolicy


class ScriptedModel(GenericFakeChatModel):  # a model that answers with one shell call, then text
    def bind_tools(self, tools, **kwargs):
        return self


call = AIMessage(content="", tool_calls=[{"name": "shell", "args": {"command": sys.argv[2]}, "id": "call1"}])
model = ScriptedModel(messages=iter([call, AIMessage(content="done")]))
shell = ShellToolMiddleware(workspace_root=sys.argv[1], execution_policy=CorralExecutionPolicy())
out = create_agent(model, tools=[], middleware=[shell]).invoke({"messages": [{"role": "user", "content": "go"}]})
print("\\n".join(m.content for m in out["messages"] if isinstance(m, ToolMessage)))
"""


def test_langchain_shell_tool_runs_in_corral(launcher, ws):
    pytest.importorskip("langchain.agents.middleware", reason="LangChain (test extra) is not installed")
    home, secret = harness_home(ws)
    driver = ws.base / "drive_langchain.py"
    driver.write_text(LANGCHAIN_DRIVER)
    ws.chown()
    command = f"echo lc-ran; id -u; cat ~/.ssh/id_ed25519; echo pwned > {ws.outside / 'victim.txt'}; cat /proc/1/comm"
    proc = subprocess.run([*launcher.prefix, sys.executable, str(driver), str(ws.proj), command], cwd=ws.proj,
                          env={**launcher.env, "HOME": str(home)}, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    lines = out.splitlines()
    assert lines[0] == "lc-ran" and int(lines[1]) != 0, out
    assert secret not in out and "id_ed25519" in out
    assert "\nbwrap\n" in out  # the sandbox's own pid 1 (bubblewrap's), not the host's init
    assert (ws.outside / "victim.txt").read_text() == "original\n"
