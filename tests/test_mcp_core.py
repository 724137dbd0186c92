"""mcp_core: the MCP tools' pure decisions (arguments -> argv, cwd, output clipping, results)."""

from __future__ import annotations

import pytest

from corral import mcp_core as core
from corral.mcp_core import ArgumentError


@pytest.mark.parametrize("argv, shell, expected", [
    (["ls", "-la"], None, ["ls", "-la"]),
    (["printf", ""], None, ["printf", ""]),            # empty arguments after the program are fine
    (None, "echo hi | wc -c", ["/bin/bash", "-c", "echo hi | wc -c"]),
])
def test_command_argv(argv, shell, expected):
    assert core.command_argv(argv, shell) == expected


@pytest.mark.parametrize("argv, shell, words", [
    (["ls"], "ls", "not both"),
    (None, None, "exactly one"),
    ([], None, "non-empty list"),
    ("ls -la", None, "non-empty list"),
    ([""], None, "argv[0]: must not be empty"),
    (["ls", 3], None, "argv[1]: expected a string"),
    (["a\0b"], None, "NUL"),
    (None, "", "shell: must not be empty"),
    (None, "x" * (core.MAX_ARG_CHARS + 1), "more than"),
    (["x"] * (core.MAX_ARGS + 1), None, "arguments, more than"),
])
def test_command_argv_refusals_name_the_argument(argv, shell, words):
    with pytest.raises(ArgumentError) as err:
        core.command_argv(argv, shell)
    assert words in str(err.value)


def _realpath(links):
    """A realpath over a fake tree: `links` maps a path prefix to its target."""
    import posixpath

    def real(path):
        path = posixpath.normpath(path)
        for src, dst in links.items():
            if path == src or path.startswith(src + "/"):
                return posixpath.normpath(dst + path[len(src):])
        return path

    return real


@pytest.mark.parametrize("cwd, expected", [
    (None, "/w"), (".", "/w"), ("sub", "/w/sub"), ("sub/../sub2", "/w/sub2"), ("/w/sub", "/w/sub"),
    ("/w", "/w"), ("inlink", "/w/real"),
])
def test_cwd_inside_the_workspace(cwd, expected):
    assert core.resolve_cwd(cwd, "/w", _realpath({"/w/inlink": "/w/real", "/w/out": "/etc"})) == expected


@pytest.mark.parametrize("cwd", ["/etc", "..", "../w2", "/w2", "/", "out", "out/ssh", "sub/../../etc"])
def test_cwd_outside_the_workspace_is_refused(cwd):
    with pytest.raises(ArgumentError, match="outside the workspace"):
        core.resolve_cwd(cwd, "/w", _realpath({"/w/out": "/etc"}))


def test_in_directory_execs_the_argv_unparsed():
    argv = ["echo", "$(id)", "a b"]
    assert core.in_directory(argv, "/w", "/w") == argv
    wrapped = core.in_directory(argv, "/w/s d", "/w")
    assert wrapped[:3] == ["/bin/sh", "-c", 'cd -- "$1" && shift && exec "$@"']
    assert wrapped[4:] == ["/w/s d", *argv]  # the path and every argument stay positional parameters


@pytest.mark.parametrize("value, expected", [(None, core.DEFAULT_TIMEOUT_S), (1, 1), (3600, 3600), (1.5, 2)])
def test_timeout(value, expected):
    assert core.timeout_seconds(value) == expected


@pytest.mark.parametrize("status, ms, limit, expected", [
    (124, 2050, 2.0, True),    # the server's --timeout stopped it
    (124, 10, 2.0, False),     # the command exited 124 by itself, before the limit
    (124, 5000, None, False),  # no limit: a 124 is the command's own
    (0, 5000, 2.0, False),
    (137, 5000, 2.0, False),
])
def test_limit_timed_out(status, ms, limit, expected):
    assert core.limit_timed_out(status, ms, limit) is expected


@pytest.mark.parametrize("value", [0, -1, 3601, True, "10", float("nan")])
def test_timeout_refused(value):
    with pytest.raises(ArgumentError, match="timeout_s"):
        core.timeout_seconds(value)


GIT = core.GIT


@pytest.mark.parametrize("tool, args, expected", [
    ("git_status", {}, [*GIT, "status", "--short", "--branch"]),
    ("git_clone", {"url": "https://h.example/o/r.git"}, [*GIT, "clone", "--", "https://h.example/o/r.git"]),
    ("git_clone", {"url": "ssh://git@h.example/o/r", "directory": "r2"},
     [*GIT, "clone", "--", "ssh://git@h.example/o/r", "r2"]),
    ("git_fetch", {}, [*GIT, "fetch", "--", "origin"]),
    ("git_fetch", {"remote": "upstream", "refspecs": ["main", "refs/heads/a:refs/remotes/u/a"]},
     [*GIT, "fetch", "--", "upstream", "main", "refs/heads/a:refs/remotes/u/a"]),
    ("git_push", {"refspecs": ["agent/fix"]}, [*GIT, "push", "--", "origin", "agent/fix"]),
    ("git_push", {"refspecs": ["HEAD:refs/heads/agent/x"], "set_upstream": True, "remote": "https://h/o/r"},
     [*GIT, "push", "-u", "--", "https://h/o/r", "HEAD:refs/heads/agent/x"]),
])
def test_git_argv(tool, args, expected):
    assert core.git_argv(tool, args) == expected


@pytest.mark.parametrize("tool, args, words", [
    ("git_clone", {"url": "ext::sh -c touch% /tmp/x"}, "not an https://"),
    ("git_clone", {"url": "file:///etc"}, "not an https://"),
    ("git_clone", {"url": "--upload-pack=touch /tmp/x"}, "not an https://"),
    ("git_clone", {"url": "https://h/r", "directory": "--template=/x"}, "starts with '-'"),
    ("git_fetch", {"remote": "--upload-pack=sh"}, "neither a remote name"),
    ("git_fetch", {"remote": "../../x"}, "neither a remote name"),
    ("git_push", {"refspecs": []}, "name what to push"),
    ("git_push", {}, "name what to push"),
    ("git_push", {"refspecs": ["+main"]}, "forced update"),
    ("git_push", {"refspecs": ["--force"]}, "starts with '-'"),
    ("git_push", {"refspecs": [":main"]}, "deletions are not offered"),
    ("git_push", {"refspecs": ["a b"]}, "not a plain refspec"),
    ("git_push", {"refspecs": ["HEAD~1:main"]}, "not a plain refspec"),
    ("git_push", {"refspecs": "main"}, "expected a list"),
    ("git_rm", {}, "unknown git tool"),
])
def test_git_argv_refusals(tool, args, words):
    with pytest.raises(ArgumentError) as err:
        core.git_argv(tool, args)
    assert words in str(err.value)


def test_clip_keeps_everything_under_the_limit():
    c = core.Clip(head=10, tail=5)
    for part in (b"abc", b"def", b"ghi"):
        c.feed(part)
    assert (c.text(), c.truncated, c.total) == ("abcdefghi", False, 9)
    c.feed(b"jklmn")  # 14 bytes: head 10 + tail 4, nothing lost yet
    assert (c.text(), c.truncated) == ("abcdefghijklmn", False)


def test_clip_keeps_head_and_tail_and_says_how_much_was_left_out():
    c = core.Clip(head=4, tail=3)
    for i in range(100):
        c.feed(bytes([65 + i % 26]) * 100)
    assert c.truncated and c.total == 10000
    text = c.text()
    assert text.startswith("AAAA\n[corral: 9993 bytes omitted; 10000 in all]\n")
    assert text.endswith("VVV")


def test_clip_decodes_invalid_utf8_without_failing():
    c = core.Clip(head=4, tail=0)
    c.feed("é€".encode()[:4] + b"\xff\xfe")
    assert "\ufffd" in c.text() and c.truncated


def test_result_text_and_structure():
    out, err = core.Clip(), core.Clip()
    out.feed(b"hello\n")
    result = core.run_result(status=3, timed_out=False, out=out, err=err, run_id="abc", cwd="/w", duration_ms=5,
                             blocked=[("example.com:443", 2, "not allowed")], blocked_summary="corral: blocked x")
    assert result["blocked"] == [{"destination": "example.com:443", "attempts": 2, "reason": "not allowed"}]
    assert core.result_text(result) == "exit status 3; run abc\n--- stdout ---\nhello\ncorral: blocked x"


def test_audit_event_of_a_refused_call():
    ev = core.audit_event("run", "ls", refused="cwd: '/etc' is outside")
    assert ev["decision"] == "block" and ev["proto"] == "mcp" and ev["host"] == "run" and ev["run"] is None


def test_tool_descriptions_are_fixed_strings():
    # No templating: nothing from the workspace or the environment can reach a description.
    for title, description in core.TOOLS.values():
        assert "{" not in description and "%" not in description
        assert 40 < len(description) < 1200 and title
