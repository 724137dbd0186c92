"""Git metadata and agent/editor files: the classifier, the git-config sanitiser (pure, table
driven, checked against git's own parser), and real sandboxes (root and unprivileged) in which
a command plants every known git redirect; a host-side git afterwards must not run it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import helpers
from helpers import quarantined
from corral.workspace import gitmeta, protected
from corral.workspace.scan import scan_protected

GIT = shutil.which("git")

# ------------------------------------------------------------------ classifier (pure)

# (directory path, names it holds (for git-dir detection), entry, is_dir, protected?)
CLASSIFY = [
    ("/w", set(), ".bashrc", False, True),
    ("/w/a/b", set(), ".envrc", False, True),
    ("/w", set(), ".git", True, False),  # a git directory itself: its contents are checked
    ("/w/s", set(), ".git", False, True),  # a gitfile
    ("/w/.git", set(), "config", False, True),
    ("/w/.git", set(), "hooks", True, True),
    ("/w/.git", set(), "commondir", False, True),
    ("/w/.git", set(), "config.worktree", False, True),
    ("/w/.git", set(), "info", True, False),  # see protected.py: info/ selects files only
    ("/w/.git", set(), "HEAD", False, False),
    ("/w/.git/objects/info", set(), "alternates", False, True),
    ("/w/x/objects/info", set(), "alternates", False, True),  # any objects/info: conservative
    ("/w/.git/info", set(), "alternates", False, False),
    # a submodule's git directory, whatever its name and depth
    ("/w/.git/modules/lib/foo", {"HEAD", "objects", "refs"}, "config", False, True),
    ("/w/.git/modules/a/modules/b", {"HEAD", "objects", "refs"}, "hooks", True, True),
    ("/w/.git/modules/lib", set(), "config", False, False),  # not a git directory (no HEAD)
    # a worktree's admin directory
    ("/w/.git/worktrees/wt", {"HEAD", "commondir"}, "commondir", False, True),
    ("/w/.git/worktrees/wt", {"HEAD", "commondir"}, "gitdir", False, True),
    ("/w/.git/worktrees/wt", {"HEAD", "commondir"}, "config.worktree", False, True),
    # a bare repository anywhere
    ("/w/mirror.git", {"HEAD", "objects", "refs"}, "config", False, True),
    ("/w/src", {"HEAD", "objects"}, "config", False, False),  # no refs: not a repository
    ("/w/src", set(), "config", False, False),
    ("/w/.git/logs", {"HEAD", "refs"}, "config", False, False),
    # agents and editors
    ("/w", set(), ".vscode", True, True),
    ("/w", set(), ".devcontainer", True, True),
    ("/w", set(), ".devcontainer.json", False, True),
    ("/w", set(), ".zed", True, True),
    ("/w", set(), ".roo", True, True),
    ("/w", set(), ".opencode", True, True),
    ("/w", set(), "opencode.json", False, True),
    ("/w", set(), ".aider.conf.yml", False, True),
    ("/w/.claude", set(), "skills", True, True),
    ("/w/.claude", set(), "hooks", True, True),
    ("/w/.claude", set(), "settings.json", False, True),
    ("/w/.claude", set(), "todos", True, False),  # the agent's own state stays writable
    ("/w/.cursor", set(), "mcp.json", False, True),
    ("/w/.cursor", set(), "hooks.json", False, True),
    ("/w/.cursor", set(), "rules", True, False),  # instructions, not commands
    ("/w/.codex", set(), "config.toml", False, True),
    ("/w/.codex", set(), "sessions", True, False),
    ("/w/.gemini", set(), "settings.json", False, True),
    ("/w/.gemini", set(), "tmp", True, False),
    ("/w/.github", set(), "hooks", True, True),
    ("/w/.github", set(), "workflows", True, False),
    ("/w/.clinerules", set(), "hooks", True, True),
    ("/w", set(), "AGENTS.md", False, False),
    ("/w", set(), "CLAUDE.md", False, False),
    ("/w", set(), ".gitattributes", False, False),
]


@pytest.mark.parametrize("dir_path,names,name,is_dir,expected", CLASSIFY)
def test_classify_entry_table(dir_path, names, name, is_dir, expected):
    in_git = protected.is_git_dir(os.path.basename(dir_path), names)
    assert protected.classify_entry(dir_path, name, is_dir, in_git) is expected


def test_classify_keeps_its_parent_name_signature():
    assert protected.classify(".git", "config", False)
    assert not protected.classify(".git", "config", False, allow_git_config=True)
    assert protected.classify(".git", "hooks", True, allow_git_config=True)
    assert protected.classify("x", ".git", False) and not protected.classify("x", ".git", True)
    assert protected.classify(".claude", "skills", True)


def test_every_table_entry_says_what_it_starts():
    for pattern, kind, placeholder, why in protected.TABLE:
        assert kind in ("file", "dir") and isinstance(placeholder, bool)
        assert ":" in why and len(why.split(":", 1)[1].strip()) > 5, pattern
    assert len({p for p, *_ in protected.TABLE}) == len(protected.TABLE)


def test_candidate_names_cover_every_protected_name():
    for pattern in protected.ANYWHERE:
        assert pattern in protected.candidate_names("any")
    for (parent, name) in protected.NESTED:
        assert name in protected.candidate_names(parent)
    for name in ("config", "hooks", "commondir", "HEAD", "objects", "refs", "alternates"):
        assert name in protected.candidate_names("x")


def test_root_placeholders_skip_names_an_empty_file_would_break():
    present = {".git", ".git/config", ".git/hooks", ".git/objects/info", ".claude", ".codex", ".cursor"}
    got = dict(protected.root_placeholders(present.__contains__, lambda r: r in present, False))
    assert got[".vscode"] == "dir" and got[".devcontainer"] == "dir"
    assert got[".git/config.worktree"] == "file" and got[".git/objects/info/alternates"] == "file"
    assert got[".claude/skills"] == "dir" and got[".codex/config.toml"] == "file"
    for name in (".git/commondir", ".git/gitdir", "opencode.json", ".cursor/mcp.json", ".git/config",
                 ".git/hooks", ".codex/hooks.json"):
        assert name not in got, name  # empty commondir breaks git; empty JSON is a parse error
    got = dict(protected.root_placeholders(lambda r: False, lambda r: False, False))
    assert got[".claude"] == "dir" and ".git/config" not in got  # no .git: nothing inside it


def test_scan_finds_git_metadata_by_contents(tmp_path):
    if GIT is None:
        pytest.skip("git missing")
    r = tmp_path / "r"
    run = lambda *a, cwd=r: subprocess.run([GIT, *a], cwd=cwd, check=True, capture_output=True)  # noqa: E731
    r.mkdir()
    run("init", "-q")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x")
    run("init", "-q", "--bare", "mirror.git")
    run("init", "-q", "--bare", str(r / ".git/modules/lib/foo"))
    run("worktree", "add", "-q", "wt")
    found = set(scan_protected([str(r)], frozenset(), False).found)
    rel = {os.path.relpath(p, r) for p in found}
    assert {".git/config", ".git/hooks", ".git/modules/lib/foo/config", ".git/modules/lib/foo/hooks",
            ".git/worktrees/wt/commondir", ".git/worktrees/wt/gitdir", "mirror.git/config",
            "mirror.git/hooks", "wt/.git"} <= rel, rel


# ------------------------------------------------------------------ sanitiser (pure)

CLONE_CONFIG = """[core]
\trepositoryformatversion = 0
\tfilemode = true
\tbare = false
\tlogallrefupdates = true
[remote "origin"]
\turl = /tmp/src
\tfetch = +refs/heads/*:refs/remotes/origin/*
[branch "main"]
\tremote = origin
\tmerge = refs/heads/main
"""

# (config text, names removed, names kept)
SANITISE = [
    (CLONE_CONFIG, [], ["core.repositoryformatversion", "remote.origin.url", "branch.main.merge"]),
    ("[core]\n\tfsmonitor = touch /tmp/x\n\thooksPath = /tmp/h\n\tbare = false\n",
     ["core.fsmonitor", "core.hookspath"], ["core.bare"]),
    ('[alias]\n\tst = status\n\tx = "!sh -c evil"\n', ["alias.st", "alias.x"], []),
    ('[filter "lfs"]\n\tclean = evil %f\n[diff "bin"]\n\ttextconv = evil\n',
     ["filter.lfs.clean", "diff.bin.textconv"], []),
    ("[include]\n\tpath = /tmp/evil\n[includeIf \"gitdir:/\"]\n\tpath = /tmp/evil\n",
     ["include.path", "includeif.gitdir:/.path"], []),
    ('[url "ext::sh -c evil"]\n\tinsteadOf = https://\n', ["url.ext::sh -c evil.insteadof"], []),
    ('[remote "o"]\n\turl = ext::sh -c evil\n\tuploadpack = evil\n', ["remote.o.url", "remote.o.uploadpack"], []),
    ('[remote "o"]\n\turl = -oProxyCommand=evil\n', ["remote.o.url"], []),
    ("[core]\n\tsshCommand = evil\n\tpager = evil\n\teditor = evil\n\taskPass = evil\n\tworktree = /home\n",
     ["core.sshcommand", "core.pager", "core.editor", "core.askpass", "core.worktree"], []),
    ("[credential]\n\thelper = evil\n[gpg]\n\tprogram = evil\n[submodule \"s\"]\n\tupdate = !evil\n\turl = /x\n",
     ["credential.helper", "gpg.program", "submodule.s.update"], ["submodule.s.url"]),
    ("[http]\n\tproxy = http://evil\n[protocol \"ext\"]\n\tallow = always\n[uploadpack]\n\tpackObjectsHook = evil\n",
     ["http.proxy", "protocol.ext.allow", "uploadpack.packobjectshook"], []),
    # odd but valid syntax: the parser must read it as git does
    ("[CORE]\n  Bare=false ; comment\n# c\n[core]\n\tfsmonitor = \"a\\\n b\"\n", ["core.fsmonitor"], ["core.bare"]),
    ('[remote.origin]\n\turl = "/tmp/with space"   # trailing\n', [], ["remote.origin.url"]),
    ("[user]\n\tname = A  B\t C \n\temail\n", [], ["user.name", "user.email"]),
    ('[branch "we\\"ird\\\\name"]\n\tremote = origin\n', [], ['branch.we"ird\\name.remote']),
    ("[extensions]\n\tobjectFormat = sha256\n\tworktreeConfig = true\n[core]\n\trepositoryFormatVersion = 1\n",
     [], ["extensions.objectformat", "extensions.worktreeconfig"]),
    ("[core]\n\tfilemode = true\r\n\tfsmonitor = evil\r\n", ["core.fsmonitor"], ["core.filemode"]),
    ("\ufeff[user]\n\tname = x\n", [], ["user.name"]),
    ("", [], []),
]

# Files this parser refuses (the whole file is quarantined): git may read some of them, in a
# way that is not worth imitating.
SUSPECT = [
    "key = value\n",  # before any section
    "[core] fsmonitor = evil\n",  # key on the header line (git accepts it)
    '[core]\n\tfsmonitor = "unterminated\n',
    "[core]\n\tx = a\\qb\n",  # bad escape
    '[sec "sub\n',
    "[core\n",
    "[core]\n\t=value\n",
    "[core]\n\tbare = fa\0lse\n",
    "[core]\n\t-bad = x\n",
    '[a "b\\c"]\n\tk = v\n',  # escape git versions disagree on
]


def _names(entries):
    return [gitmeta.entry_name(s, sub, k) for s, sub, k, _ in entries]


def git_list(text: str, tmp_path) -> list[tuple[str, str | None]]:
    f = tmp_path / "cfg"
    f.write_bytes(text.encode())
    p = subprocess.run([GIT, "config", "--file", str(f), "--list", "--null"], capture_output=True)
    assert p.returncode == 0, p.stderr
    out = []
    for rec in p.stdout.split(b"\0")[:-1]:
        name, nl, value = rec.decode().partition("\n")
        out.append((name, value if nl else None))
    return out


def _git_names(listing):
    # git prints section and key lower-cased, the subsection as written
    return [n for n, _ in listing]


@pytest.mark.parametrize("text,removed,kept", SANITISE)
def test_sanitise_config_table(text, removed, kept, tmp_path):
    new, gone = gitmeta.sanitise_config(text)
    assert [n for n, _ in gone] == removed
    names = _names(gitmeta.parse_config(new))
    for k in kept:
        assert k in names
    for r in removed:
        assert r not in names
    if GIT:
        # the parser reads the input as git does, and git reads the output as intended
        assert _git_names(git_list(text, tmp_path)) == _names(gitmeta.parse_config(text))
        assert [v for _, v in git_list(text, tmp_path)] == [v for *_, v in gitmeta.parse_config(text)]
        assert git_list(new, tmp_path) == [(gitmeta.entry_name(s, sub, k), v)
                                           for s, sub, k, v in gitmeta.parse_config(new)]


@pytest.mark.parametrize("text", SUSPECT)
def test_sanitise_config_refuses_what_it_does_not_understand(text):
    assert gitmeta.sanitise_config(text) is None


def test_removed_keys_say_why():
    _, gone = gitmeta.sanitise_config('[core]\n\tfsmonitor = x\n[url "y"]\n\tinsteadOf = z\n[foo]\n\tbar = 1\n')
    assert gone == [("core.fsmonitor", gitmeta.RUNS), ("url.y.insteadof", gitmeta.REDIRECTS), ("foo.bar", gitmeta.OTHER)]
    line = gitmeta.report_line("/w/.git/config", [f"{n} ({w})" for n, w in gone])
    assert line == ("corral: sanitised /w/.git/config: removed core.fsmonitor (runs commands); "
                    "url.y.insteadof (redirects git); foo.bar (not known to be inert)")
    assert gitmeta.report_line("/w/.git/config", []) is None


# (gitfile directory, target, ok?)
GITFILES = [
    ("/w/sub", "../.git/modules/sub", True),
    ("/w/a/b", "../../.git/modules/a/b", True),
    ("/w/sub/inner", "../../.git/modules/sub/modules/inner", True),
    ("/w/wt", "/w/.git/worktrees/wt", True),
    ("/w/x/wt", "/w/.git/worktrees/wt", True),
    ("/w/sub", "/tmp/evil", False),
    ("/w/sub", "../.git", False),
    ("/w/sub", "../.git/worktrees", False),
    ("/w/sub", "../.git/worktrees/a/b", False),
    ("/w/sub", "../other/.git/modules/x", False),  # another repository's, not an ancestor's
    ("/w/sub", "../.git/modules/../../evil/.git/modules/x", False),
    ("/w/sub", "../.git/modules/x/.git/modules/y", False),
]


@pytest.mark.parametrize("d,target,ok", GITFILES)
def test_gitfile_pointer_table(d, target, ok):
    assert gitmeta.gitfile_ok(d, target) is ok


def test_pointer_parsing():
    assert gitmeta.gitfile_target("gitdir: ../.git/modules/x\n") == "../.git/modules/x"
    assert gitmeta.gitfile_target("gitdir: a\ngitdir: b\n") is None
    assert gitmeta.gitfile_target("gitdir:a") is None
    assert gitmeta.commondir_ok("../..\n") and not gitmeta.commondir_ok("/tmp/evil\n")


# ------------------------------------------------------------------ real sandboxes

needs_git = pytest.mark.skipif(GIT is None, reason="git missing")


def host_git(ws, *args, cwd=None) -> subprocess.CompletedProcess:
    """git as the host runs it after the run: its own config only (no system/global one)."""
    home = ws.base / "hosthome"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
           "LANG": "C", "GIT_AUTHOR_NAME": "h", "GIT_AUTHOR_EMAIL": "h@h", "GIT_COMMITTER_NAME": "h",
           "GIT_COMMITTER_EMAIL": "h@h"}
    return subprocess.run([GIT, "-c", "safe.directory=*", "-c", "protocol.file.allow=always", *args],
                          cwd=str(cwd or ws.proj), env=env, capture_output=True, text=True, timeout=60)


def _source_repo(ws) -> Path:
    src = ws.base / "src"
    src.mkdir()
    (src / "f.txt").write_text("hello\n")
    for a in (["init", "-q", "-b", "main"], ["add", "f.txt"], ["commit", "-q", "-m", "first"]):
        assert host_git(ws, *a, cwd=src).returncode == 0
    return src


def _commit_workspace(ws) -> None:
    for a in (["add", "README.txt"], ["commit", "-q", "-m", "base"]):
        p = host_git(ws, *a)
        assert p.returncode == 0, p.stderr


def _setup_submodule(ws):
    src = _source_repo(ws)
    _commit_workspace(ws)
    p = host_git(ws, "submodule", "add", "-q", str(src), "sub")
    assert p.returncode == 0, p.stderr


def _setup_worktree(ws, worktree_config=False):
    _commit_workspace(ws)
    p = host_git(ws, "worktree", "add", "-q", "wt")
    assert p.returncode == 0, p.stderr
    if worktree_config:
        host_git(ws, "config", "core.repositoryformatversion", "1")
        host_git(ws, "config", "extensions.worktreeConfig", "true")


FSMON = "[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = touch {m}; false\\n"
HOOK = "#!/bin/sh\\ntouch {m}\\n"

# name: (host setup, script in the sandbox ({m}: marker, {src}: source repo), host git argv, cwd)
REDIRECTS = {
    "clone-hookspath": (_source_repo, "git clone -q {src} c && mkdir h && printf '" + HOOK + "' > h/post-checkout"
                        " && chmod +x h/post-checkout && git -C c config core.hooksPath \"$PWD/h\"",
                        ["checkout", "-q", "-b", "x"], "c"),
    "clone-fsmonitor": (_source_repo, "git clone -q {src} c && git -C c config core.fsmonitor 'touch {m}; false'",
                        ["status"], "c"),
    "init-include": (None, "git init -q n && printf '" + FSMON + "' > inc && git -C n config include.path \"$PWD/inc\"",
                     ["status"], "n"),
    "gitfile": (None, "mkdir -p evil/objects evil/refs && echo 'ref: refs/heads/main' > evil/HEAD && printf '"
                + FSMON + "' > evil/config && mkdir s && echo \"gitdir: $PWD/evil\" > s/.git", ["status"], "s"),
    "commondir": (None, "mkdir -p c/objects c/refs && printf '" + FSMON + "' > c/config && echo \"$PWD/c\" > "
                  ".git/commondir", ["status"], "."),
    "module-config": (_setup_submodule, "git -C sub config core.fsmonitor 'touch {m}; false'; printf '\\tfsmonitor"
                      " = touch {m}; false\\n' >> .git/modules/sub/config", ["status"], "sub"),
    "module-hook": (_setup_submodule, "printf '" + HOOK + "' > .git/modules/sub/hooks/post-checkout; "
                    "chmod +x .git/modules/sub/hooks/post-checkout", ["checkout", "-q", "-b", "y"], "sub"),
    "new-module-gitdir": (_source_repo, "mkdir -p .git/modules && git clone -q --separate-git-dir "
                          "\"$PWD/.git/modules/s2\" {src} s2 && git -C s2 config core.fsmonitor 'touch {m}; false'"
                          " && printf '" + HOOK + "' > .git/modules/s2/hooks/post-checkout && "
                          "chmod +x .git/modules/s2/hooks/post-checkout", ["checkout", "-q", "-b", "z"], "s2"),
    "worktree-config": (lambda ws: _setup_worktree(ws, True), "printf '" + FSMON + "' > .git/worktrees/wt/config.worktree",
                        ["status"], "wt"),
    "worktree-commondir": (_setup_worktree, "mkdir -p c/objects c/refs && printf '" + FSMON + "' > c/config && "
                           "echo \"$PWD/c\" > .git/worktrees/wt/commondir", ["status"], "wt"),
}


def _plant(launcher, name, sandboxed: bool, quarantine_cleanup=None):
    setup, script, argv, where = REDIRECTS[name]
    ws = helpers.make_workspace(launcher)
    try:
        src = setup(ws) if setup else None
        if not isinstance(src, Path):
            src = ws.base / "src"
        ws.chown()
        mark = ws.base / "MARK"
        # the sandbox runs as another uid than the owner of the source repository: trust it
        body = ('export GIT_CONFIG_GLOBAL="$TMPDIR/gitconfig" && git config --global safe.directory "*" && '
                "git config --global protocol.file.allow always && " + script.format(m=mark, src=src))
        if sandboxed:
            p = ws.sh(body)
            if quarantine_cleanup is not None:
                quarantine_cleanup.extend(quarantined(p.stderr).values())
            out = p.stderr
        else:  # the control: the same command run without corral, as the same user
            env = {**launcher.env, "TMPDIR": str(ws.base)}
            p = subprocess.run([*launcher.prefix, "bash", "-c", body], cwd=ws.proj, env=env,
                               capture_output=True, text=True, timeout=60)
            out = p.stderr
        host = host_git(ws, *argv, cwd=ws.proj / where)
        return mark.exists(), out + host.stderr
    finally:
        helpers.rmtree(ws.base)


@needs_git
@pytest.mark.parametrize("name", sorted(REDIRECTS))
def test_git_redirect_planted_in_sandbox_does_not_run_on_host(launcher, quarantine_cleanup, name):
    ran, out = _plant(launcher, name, sandboxed=True, quarantine_cleanup=quarantine_cleanup)
    assert not ran, f"the host's git ran the command planted by {name}: {out}"
    ran, out = _plant(launcher, name, sandboxed=False)
    assert ran, f"control: the plant {name} does not work even without corral: {out}"


@needs_git
def test_clone_init_and_worktree_made_in_sandbox_stay_usable(launcher, ws, quarantine_cleanup):
    src = _source_repo(ws)
    _commit_workspace(ws)
    ws.chown()
    script = ('export GIT_CONFIG_GLOBAL="$TMPDIR/gitconfig" && git config --global safe.directory "*" && '
              f"git clone -q {src} c && git -C c config core.fsmonitor 'touch /nonexistent' && "
              "git -C c config alias.x '!echo evil' && git -C c config user.name Agent && "
              "git init -q n && git -C n -c user.name=a -c user.email=a@a commit -q --allow-empty -m made-inside && "
              "git worktree add -q wt2 && mkdir -p .git/modules && "
              f"git clone -q --separate-git-dir \"$PWD/.git/modules/s2\" {src} s2")
    p = ws.sh(script)
    quarantine_cleanup.extend(quarantined(p.stderr).values())
    assert p.returncode == 0, p.stderr
    assert not quarantined(p.stderr), p.stderr  # nothing git made itself was moved away
    config = ws.proj / "c/.git/config"
    assert f"corral: sanitised {config}: removed core.fsmonitor, alias.x (runs commands)" in p.stderr
    listing = host_git(ws, "config", "--file", str(config), "--list").stdout
    assert "remote.origin.url=" in listing and "user.name=Agent" in listing
    assert "fsmonitor" not in listing and "alias" not in listing
    assert host_git(ws, "log", "--oneline", cwd=ws.proj / "c").stdout.strip().endswith("first")
    assert "made-inside" in host_git(ws, "log", "--oneline", cwd=ws.proj / "n").stdout
    assert host_git(ws, "status", cwd=ws.proj / "wt2").returncode == 0
    assert (ws.proj / "wt2/.git").is_file() and (ws.proj / ".git/worktrees/wt2/commondir").is_file()
    assert "first" in host_git(ws, "log", "--oneline", cwd=ws.proj / "s2").stdout


def test_alternates_cannot_be_planted_in_the_workspace_repository(launcher, ws):
    p = ws.sh("echo /tmp > .git/objects/info/alternates; echo rc=$?")
    assert "rc=0" not in p.stdout
    assert not (ws.proj / ".git/objects/info/alternates").exists()


AGENT_FILES = [".cursor/mcp.json", ".claude/skills/x/SKILL.md", ".claude/hooks/h.sh", ".devcontainer/devcontainer.json",
               "opencode.json", ".codex/config.toml", ".gemini/settings.json", ".github/hooks/h.json",
               ".zed/tasks.json", "sub/.roo/mcp.json", ".aider.conf.yml"]


def test_existing_agent_and_editor_files_are_read_only(launcher, ws):
    for rel in AGENT_FILES:
        ws.write(rel, "orig\n")
    script = "; ".join(f"echo evil > {rel}; echo evil >> {rel}; rm -f {rel}" for rel in AGENT_FILES)
    ws.sh(script)
    for rel in AGENT_FILES:
        assert (ws.proj / rel).read_text() == "orig\n", rel


CREATED = ["s/.cursor/hooks.json", "s/.claude/skills/x/SKILL.md", "s/.devcontainer/devcontainer.json",
           "s/opencode.json", "s/.codex/config.toml", "s/.gemini/settings.json", "s/.github/hooks/h.json",
           "s/.zed/tasks.json", "s/.clinerules/hooks/TaskStart", "s/.opencode/plugin/p.js"]


def test_created_agent_and_editor_files_are_quarantined(launcher, ws, quarantine_cleanup):
    script = "; ".join(f"mkdir -p $(dirname {rel}) && echo evil > {rel}" for rel in CREATED)
    p = ws.sh(script)
    quarantine_cleanup.extend(quarantined(p.stderr).values())
    assert p.returncode == 0, p.stderr
    for rel in CREATED:
        assert not (ws.proj / rel).exists(), (rel, p.stderr)
    # instructions are not commands: they stay
    p = ws.sh("mkdir -p s/.cursor/rules && echo x > s/.cursor/rules/r.md && echo x > AGENTS.md && echo x > s/CLAUDE.md")
    assert (ws.proj / "s/.cursor/rules/r.md").exists() and (ws.proj / "AGENTS.md").exists()
    assert not quarantined(p.stderr), p.stderr


def test_agent_dirs_cannot_be_created_in_the_workspace_root(launcher, ws):
    p = ws.sh("mkdir -p .devcontainer .zed .roo; echo x > .devcontainer/devcontainer.json; echo x > .zed/tasks.json;"
              " echo x > .aider.conf.yml; ls -A .devcontainer .zed")
    assert "devcontainer.json" not in p.stdout and "tasks.json" not in p.stdout
    for rel in (".devcontainer", ".zed", ".roo", ".aider.conf.yml"):
        assert not (ws.proj / rel).exists(), rel  # placeholders removed after the run
