"""`corral mcp`'s git tools against the git ref policy, end to end (issue 14).

The MCP SDK's own stdio client drives `corral mcp --settings POLICY`; the policy binds the
token to the git host (`basic_user`: the proxy sends it, git inside holds only a placeholder)
and has a [git] block. The server is a real smart-HTTP git server (`git http-backend` behind
an HTTPS server on 127.0.0.1 that requires the token, tests/tlsservers.py). As root and as
the unprivileged `corral-test` user.

Asserted on the host: what really moved on the server (its refs, the requests it received),
the tool results (a refused push is a git failure, `exit_status` != 0 with git's own words
naming the ref and the rule: see docs/mcp.md, Results), the audit log joined to each tool
call's run id; and the token is never in a tool result (text or structured), in the server's
stderr, in the audit log (file and `corral://audit/recent`) or in any file the sandbox wrote.
"""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from gitrepos import GIT_POLICY, REPOS, SAFE, policy, refs, repos  # noqa: F401 - fixture
from test_credentials import (  # noqa: F401 - fixtures
    PH_RE,
    audit,
    audit_file,
    git_root,
    git_server,
    git_token,
    state_dir,
    test_ca,
    written_by_sandbox,
)
from tlsservers import GIT_FILE_TEXT, GIT_ID, presented_token

pytest.importorskip("mcp")
from mcpclient import run_async, session  # noqa: E402


def _result(res) -> dict:
    """A git tool's result: a command that ran (never an MCP tool error), text and structure."""
    text = res.content[0].text if res.content else ""
    assert not res.is_error, text
    sc = res.structured_content
    assert sc is not None and sc["run_id"] in text, text
    return sc


def test_mcp_git_tools_are_bound_by_the_ref_policy_and_never_see_the_token(launcher, ws, test_ca, repos,
                                                                            git_server, git_token):
    settings = ws.write(ws.base / "policy.toml",
                        policy(ws, git_server, test_ca, GIT_POLICY, basic_user="x-access-token"))
    base = f"https://127.0.0.1:{git_server.port}"
    env = {"XDG_STATE_HOME": str(state_dir(ws)), "GIT_TOKEN": git_token}
    before = {repo: refs(repos, repo) for repo in REPOS}
    seen: list[str] = []  # every tool result, text and structured, as the client received it
    stderr: list[str] = []

    async def call(s, tool, args):
        res = await s.call_tool(tool, args)
        seen.append("\n".join(c.text for c in res.content if hasattr(c, "text")))
        seen.append(json.dumps(res.structured_content))
        return res

    async def main():
        async with session(launcher, ["mcp", "--settings", str(settings)], ws.proj, env=env,
                           stderr_out=stderr) as s:
            out = {}
            out["clone"] = _result(await call(s, "git_clone", {"url": f"{base}/acme/widgets.git", "directory": "cl"}))
            assert out["clone"]["exit_status"] == 0, out["clone"]["stderr"] + repr(git_server.handshake_errors[-3:])
            out["status"] = _result(await call(s, "git_status", {"cwd": "cl"}))
            commit = ["git", *GIT_ID, "commit", "-q", "-m", "from mcp"]
            out["commit"] = _result(await call(s, "run", {"shell": "echo pushed > pushed.txt && git add pushed.txt && "
                                                                    + shlex.join(commit), "cwd": "cl"}))
            out["ahead"] = _result(await call(s, "git_status", {"cwd": "cl"}))
            out["push_agent"] = _result(await call(s, "git_push", {"refspecs": ["HEAD:refs/heads/agent/x"],
                                                                   "cwd": "cl"}))
            out["push_main"] = _result(await call(s, "git_push", {"refspecs": ["HEAD:main"], "cwd": "cl"}))
            out["push_other"] = _result(await call(s, "git_push", {"remote": f"{base}/other/secret.git",
                                                                   "refspecs": ["HEAD:refs/heads/agent/x"],
                                                                   "cwd": "cl"}))
            out["clone_other"] = _result(await call(s, "git_clone", {"url": f"{base}/other/secret.git",
                                                                     "directory": "secret"}))
            await call(s, "run", {"argv": ["git", "tag", "v1"], "cwd": "cl"})
            out["push_tag"] = _result(await call(s, "git_push", {"refspecs": ["v1"], "cwd": "cl"}))
            out["fetch"] = _result(await call(s, "git_fetch", {"cwd": "cl"}))
            # what the sandbox holds: a placeholder in the variable, no token in env or git config
            out["inside"] = _result(await call(s, "run", {"shell": "echo \"inside=$GIT_TOKEN\"; env; git config -l; "
                                                                   "cat .git/config; git log -1 --format=%H",
                                                          "cwd": "cl"}))
            recent = (await s.read_resource("corral://audit/recent")).contents[0].text
            shown = (await s.read_resource("corral://policy")).contents[0].text
            return out, recent, shown

    out, recent, shown = run_async(main)
    assert "[git]" in shown and "GIT_TOKEN" in shown, shown  # the policy names the credential's source
    blob = "\n".join(f"{k}: {json.dumps(v)}" for k, v in out.items())

    # allowed: the clone, status, the commit, the push to agent/x and the fetch
    for ok in ("clone", "status", "commit", "ahead", "push_agent", "fetch", "inside"):
        assert out[ok]["exit_status"] == 0, (ok, out[ok]["stderr"], out[ok]["stdout"], blob)
    assert (ws.proj / "cl" / "hello.txt").read_text() == GIT_FILE_TEXT
    assert out["status"]["stdout"].startswith("## main...origin/main"), out["status"]
    assert "[ahead 1]" in out["ahead"]["stdout"], out["ahead"]
    head = out["inside"]["stdout"].splitlines()[-1]
    host_head = subprocess.run(["git", "-C", str(ws.proj / "cl"), "rev-parse", "HEAD"], capture_output=True,
                               text=True, env=SAFE).stdout.strip()
    assert head == host_head and len(head) == 40

    # refused: git's failure, with the ref and the rule in what the model reads
    expect = {
        "push_main": ("[remote rejected]", "refs/heads/main is a protected branch", "git.repositories[1].protected"),
        "push_other": ("127.0.0.1/other/secret refused", "not in git.repositories"),
        "clone_other": ("127.0.0.1/other/secret refused", "not in git.repositories", "fetch_unlisted"),
        "push_tag": ("[remote rejected]", "pushing tag refs/tags/v1 is not allowed", "git.repositories[1].tags"),
    }
    for name, words in expect.items():
        sc = out[name]
        assert sc["exit_status"] != 0, (name, sc)
        for w in words:
            assert w in sc["stderr"], (name, w, sc["stderr"])
        assert words[-1] in seen[[i for i, t in enumerate(seen) if sc["run_id"] in t][0]]  # in the text content
    assert not (ws.proj / "secret").exists()
    summary = out["push_main"]["blocked_summary"]  # the proxy's refusal, once, in corral's own words
    assert "refs/heads/main is a protected branch" in summary and "corral:" not in summary[7:], summary

    # the server: the allowed push landed, nothing else moved anywhere
    after = {repo: refs(repos, repo) for repo in REPOS}
    assert after["acme/widgets"] == {**before["acme/widgets"], "refs/heads/agent/x": head}, after
    assert after["acme/tools"] == before["acme/tools"] and after["other/secret"] == before["other/secret"]
    posts = [r.path for r in git_server.got() if r.method == "POST" and r.path.endswith("git-receive-pack")]
    assert posts == ["/acme/widgets.git/git-receive-pack"], posts
    assert not [r for r in git_server.got() if r.path.startswith("/other/")]
    # every request that reached it carried the real token, put on the wire by the proxy
    got = git_server.got()
    assert got and {presented_token(r.header("authorization")) for r in got} == {git_token}

    # audit: each tool call is a line, joined by its run id to the git requests it caused
    recs = audit(ws)
    tool = {r["run"]: r for r in recs if r.get("proto") == "mcp" and r.get("run")}
    for name in ("clone", "push_agent", "push_main", "push_other", "push_tag"):
        assert tool[out[name]["run_id"]]["host"] == ("git_clone" if name == "clone" else "git_push"), name
    pushes = {r["run"]: r for r in recs if r.get("refs") and r.get("proto") != "mcp"}
    allowed = pushes[out["push_agent"]["run_id"]]
    assert allowed["decision"] == "allow" and allowed["repo"] == "127.0.0.1/acme/widgets"
    assert allowed["refs"] == [{"ref": "refs/heads/agent/x", "old": "0" * 40, "new": head}], allowed
    main = pushes[out["push_main"]["run_id"]]
    assert main["decision"] == "block" and main["rule"] == "git.repositories[1].protected", main
    assert [x["ref"] for x in main["refs"]] == ["refs/heads/main"]
    assert any(r.get("run") == out["push_other"]["run_id"] and r["decision"] == "block"
               and r.get("repo") == "127.0.0.1/other/secret" and r.get("rule") == "git.repositories" for r in recs)
    # the resource serves the same lines
    served = [json.loads(line) for line in recent.splitlines()]
    assert any(r.get("run") == out["push_main"]["run_id"] and r.get("rule") == "git.repositories[1].protected"
               for r in served), recent

    # the token: a placeholder inside; nowhere in results, the server's stderr, the audit or files
    inside = out["inside"]["stdout"]
    assert PH_RE.fullmatch(inside.splitlines()[0].removeprefix("inside=")), inside
    assert len(seen) > 20 and len(stderr) == 1
    places = {"a tool result": "\n".join(seen), "the server's stderr": stderr[0],
              "corral://audit/recent": recent, "corral://policy": shown, "the audit log": audit_file(ws).read_text(),
              "a file the sandbox wrote": written_by_sandbox(ws)}
    for where, text in places.items():
        assert git_token not in text, f"the token is in {where}"
