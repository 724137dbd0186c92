"""LangChain's shell tool (`ShellToolMiddleware`) with its persistent shell inside corral.

    from langchain.agents import create_agent
    from langchain.agents.middleware import ShellToolMiddleware
    from corral.integrations.langchain import CorralExecutionPolicy

    shell = ShellToolMiddleware(workspace_root="/path/to/project",
                                execution_policy=CorralExecutionPolicy(options=("--settings", "agent.toml")))
    agent = create_agent(model, tools=[], middleware=[shell])

The shell is `corral run --no-tty -q [OPTIONS] -- /bin/bash` started in the workspace: one
sandbox for the session, so every command the agent sends runs under the policy, and state
(cwd, variables) persists between commands as with LangChain's host policy. Importing this
module imports LangChain; corral itself never does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from langchain.agents.middleware import _execution

__all__ = ["CorralExecutionPolicy"]


@dataclass
class CorralExecutionPolicy(_execution.BaseExecutionPolicy):
    """Run the persistent shell in corral's sandbox.

    `options`: `corral run` options (`--settings FILE`, `--allow-domain HOST`, ...);
    `corral`: the argv that starts corral (default: this interpreter's `-m corral`)."""

    options: Sequence[str] = ()
    corral: Sequence[str] | None = None

    def command(self, workspace: Path, command: Sequence[str]) -> list[str]:
        base = list(self.corral) if self.corral else [sys.executable, "-m", "corral"]
        return [*base, "run", "--no-tty", "-q", *self.options, "--", *command]

    def spawn(self, *, workspace: Path, env: Mapping[str, str], command: Sequence[str]) -> subprocess.Popen[str]:
        # corral withholds credential-looking variables itself; the host's environment is its input.
        return _execution._launch_subprocess(self.command(workspace, command), env={**os.environ, **env},
                                             cwd=workspace, preexec_fn=None, start_new_session=True)
