"""The mandatory protections: files that would let a sandboxed command persist or escalate.

Everything about *which* names are dangerous lives in the table below; the scanner, the plan
and `corral apply` only ask `classify()` / `classify_entry()`. A dangerous file that exists is
made read-only wherever it sits in a writable area; a missing one cannot be created in the
workspace root (or a writable HOME) when the table says so ("placeholder"); one created
anywhere else during the run is sanitised (git config, see `gitmeta`) or quarantined when the
command ends.

The rule of the table: a file is protected when a program other than the sandboxed command
(a shell, git, an editor, an agent harness) *starts a command* because of it, or is
*redirected* by it to config or hooks that start commands. Files an agent only reads as
instructions (AGENTS.md, CLAUDE.md, GEMINI.md, .cursorrules, .windsurfrules, .cursor/rules)
are prompts, not code, and stay writable: the sandboxed agent could write the same words into
any source file. Workflows run by a CI service (`.github/workflows`) run on its machines, not
on this host.

Five kinds of patterns:

* `NAME`: anywhere (in any directory of a writable area);
* `PARENT/NAME`: inside a directory called PARENT, at any depth;
* `GITDIR/REL`: inside any git directory: a directory called `.git`, or one git itself would
  take for a repository: it holds `HEAD` and either `commondir` or both `objects` and `refs`
  (a submodule's `.git/modules/<name>` at any depth of nesting, whatever `/` the name holds; a
  worktree's `.git/worktrees/<name>`; a bare repository). Detecting git directories by what
  they hold, not by where they sit, is what git does, so a submodule named `a/b` or a bare
  clone anywhere is covered;
* `~/REL`: that path under HOME only (`~/.local/bin`, `~/.config/systemd`): persistence
  outside the project, dangerous at that place only (`bin/` in a project is the project's
  own). The plan also protects every directory on the launcher's PATH (outside the working
  directory) the same way; `home_entries` lists these as paths;
* `/ABS`: one absolute path (cron and at spools), protected when a policy makes it writable.

What git reads inside a git directory, and the decisions taken:

* `config` (and `config.worktree` with `extensions.worktreeConfig`): keys such as
  core.fsmonitor, core.hooksPath, core.sshCommand, core.pager, filter/diff drivers, aliases
  run commands; include/includeIf pull in other files. Protected; a new one is sanitised.
* `hooks/`: run on git operations. Protected (a new one holding only `*.sample` is kept).
* `commondir`: moves config, hooks, refs and objects to another directory. Protected; a new
  one is quarantined unless it is git's own `../..` of a worktree.
* `gitdir` (in a worktree's admin directory): the back-pointer to the worktree's `.git` file;
  `git worktree prune/repair` act on it. Protected.
* `objects/info/alternates`: makes git read objects from other directories. Protected.
* `info/` is *not* protected: `info/exclude` and `info/sparse-checkout` only select files,
  `info/attributes` can only name filter/diff/merge drivers that a config must define (and
  repository configs are protected), exactly like the worktree's own `.gitattributes`, which
  the sandbox may write anyway. `refs/`, `logs/`, `HEAD`, `packed-refs` are data.
"""

from __future__ import annotations

import os

GITDIR = "GITDIR"
HOME = "~"

# (pattern, kind, placeholder, what reads it and what it starts). kind is the type a
# placeholder gets ("file" or "dir"); classification ignores the type (a directory named
# `.bashrc` is as suspicious as a file), except for `.git` (only a *file* is a gitfile).
# placeholder: block the name in the workspace root / a writable HOME when missing. Not for
# files whose empty content breaks the program that reads them (an empty `commondir` makes
# git fail; an empty JSON file is a parse error): those are quarantined after the run instead.
TABLE: tuple[tuple[str, str, bool, str], ...] = (
    # --- shells and per-directory environments: sourced on start, or on `cd`
    (".bashrc", "file", True, "bash: sourced by every interactive shell"),
    (".bash_profile", "file", True, "bash: sourced by login shells"),
    (".bash_login", "file", True, "bash: sourced by login shells"),
    (".bash_logout", "file", True, "bash: sourced when a login shell exits"),
    (".profile", "file", True, "sh/dash/bash: sourced by login shells"),
    (".zshrc", "file", True, "zsh: sourced by interactive shells"),
    (".zprofile", "file", True, "zsh: sourced by login shells"),
    (".zshenv", "file", True, "zsh: sourced by every zsh, scripts included"),
    (".zlogin", "file", True, "zsh: sourced by login shells"),
    (".zlogout", "file", True, "zsh: sourced when a login shell exits"),
    (".kshrc", "file", True, "ksh: sourced by interactive shells"),
    (".cshrc", "file", True, "csh/tcsh: sourced by every shell"),
    (".tcshrc", "file", True, "tcsh: sourced by every shell"),
    (".login", "file", True, "csh/tcsh: sourced by login shells"),
    (".envrc", "file", True, "direnv: runs when you enter the directory"),
    # --- git outside the git directory
    (".gitconfig", "file", True, "git: user config, can run commands (fsmonitor, pager, aliases...)"),
    (".gitmodules", "file", True, "git: submodules, point git at other repositories"),
    # a `.git` *file* ("gitdir: PATH") makes git use PATH, its config and its hooks
    (".git", "file", False, "git: gitfile, points git at another git directory (and its hooks)"),
    # --- git directories (see the module docstring)
    (f"{GITDIR}/config", "file", True, "git: repository config, can run commands on git operations"),
    (f"{GITDIR}/config.worktree", "file", True, "git: per-worktree config, can run commands"),
    (f"{GITDIR}/hooks", "dir", True, "git: hooks, run on git operations"),
    (f"{GITDIR}/commondir", "file", False, "git: moves config and hooks to another directory"),
    (f"{GITDIR}/gitdir", "file", False, "git: a worktree's pointer back to its checkout"),
    (f"{GITDIR}/objects/info/alternates", "file", True, "git: reads objects from other directories"),
    # --- search tools
    (".ripgreprc", "file", True, "ripgrep: config, changes what searches run (--pre) and see"),
    # --- editors: opening the folder runs tasks, debuggers, language servers, extensions
    (".vscode", "dir", True, "VS Code/Cursor/Windsurf: tasks, launch configs, extension settings, MCP servers"),
    (".idea", "dir", True, "JetBrains IDEs: run configurations and startup tasks"),
    (".zed", "dir", True, "Zed: project settings (language servers, context servers) and tasks"),
    ("zed/settings.json", "file", False, "Zed (~/.config/zed): language servers, context servers"),
    ("zed/tasks.json", "file", False, "Zed (~/.config/zed): tasks it runs"),
    (".devcontainer", "dir", True, "Dev Containers: initializeCommand runs on the host, postCreateCommand..."),
    (".devcontainer.json", "file", False, "Dev Containers: the same, as one file"),
    # --- agent harnesses: hooks, MCP servers, commands and plugins they start
    (".mcp.json", "file", True, "Claude Code and others: project MCP servers (commands)"),
    (".claude/settings.json", "file", True, "Claude Code: hooks, permissions, apiKeyHelper, statusLine"),
    (".claude/settings.local.json", "file", True, "Claude Code: hooks, permissions"),
    (".claude/commands", "dir", True, "Claude Code: slash commands (can run shell with !`cmd`)"),
    (".claude/agents", "dir", True, "Claude Code: subagent definitions (tools, hooks)"),
    (".claude/skills", "dir", True, "Claude Code: skills (scripts the agent runs, hooks in frontmatter)"),
    (".claude/hooks", "dir", True, "Claude Code: where settings.json hooks keep their scripts"),
    (".claude/plugins", "dir", True, "Claude Code (~/.claude): installed plugins (hooks, MCP servers)"),
    (".codex/config.toml", "file", True, "Codex: MCP servers, notify command, [hooks], profiles"),
    (".codex/hooks.json", "file", False, "Codex: lifecycle hooks"),
    (".codex/hooks", "dir", True, "Codex: where hooks keep their scripts"),
    (".codex/rules", "dir", True, "Codex: exec policy rules (commands allowed without asking)"),
    (".codex/skills", "dir", True, "Codex: skills (scripts the agent runs)"),
    (".gemini/settings.json", "file", False, "Gemini CLI: MCP servers, hooks, tool discovery/call commands"),
    (".gemini/.env", "file", True, "Gemini CLI: environment of the CLI and the commands it starts"),
    (".gemini/commands", "dir", True, "Gemini CLI: custom commands (!{shell} runs commands)"),
    (".gemini/extensions", "dir", True, "Gemini CLI: extensions (MCP servers, hooks)"),
    (".gemini/hooks", "dir", True, "Gemini CLI: where hooks keep their scripts"),
    (".qwen/settings.json", "file", False, "Qwen Code (Gemini CLI fork): MCP servers, hooks"),
    (".qwen/.env", "file", True, "Qwen Code: environment"),
    (".qwen/commands", "dir", True, "Qwen Code: custom commands"),
    (".qwen/extensions", "dir", True, "Qwen Code: extensions"),
    (".cursor/mcp.json", "file", False, "Cursor: MCP servers"),
    (".cursor/hooks.json", "file", False, "Cursor: agent hooks"),
    (".cursor/hooks", "dir", True, "Cursor: where hooks keep their scripts"),
    (".cursor/environment.json", "file", False, "Cursor background agents: install/start commands"),
    (".cursor/cli.json", "file", False, "Cursor CLI: project permissions (commands allowed)"),
    (".cursor/cli-config.json", "file", False, "Cursor CLI (~/.cursor): permissions"),
    (".cursor/extensions", "dir", True, "Cursor (~/.cursor): installed extensions"),
    (".windsurf", "dir", True, "Windsurf: hooks, workflows, MCP config"),
    ("windsurf/mcp_config.json", "file", False, "Windsurf (~/.codeium/windsurf): MCP servers"),
    ("windsurf/hooks.json", "file", False, "Windsurf (~/.codeium/windsurf): Cascade hooks"),
    (".roo", "dir", True, "Roo Code: project MCP servers (mcp.json), commands"),
    (".kilocode", "dir", True, "Kilo Code: project MCP servers, workflows"),
    (".clinerules/hooks", "dir", True, "Cline: hook scripts"),
    (".continue", "dir", True, "Continue: config (MCP servers, context providers)"),
    (".opencode", "dir", True, "OpenCode: plugins (JavaScript it loads), commands, agents"),
    ("opencode.json", "file", False, "OpenCode: MCP servers, plugins, formatters, LSP commands"),
    ("opencode.jsonc", "file", False, "OpenCode: the same"),
    ("opencode/plugin", "dir", True, "OpenCode (~/.config/opencode): plugins"),
    ("opencode/plugins", "dir", True, "OpenCode (~/.config/opencode): plugins"),
    (".crush.json", "file", False, "Crush: MCP servers, LSP commands"),
    ("crush.json", "file", False, "Crush: the same"),
    (".aider.conf.yml", "file", True, "Aider: lint-cmd, test-cmd (run after every edit)"),
    (".kiro", "dir", True, "Kiro: agent hooks, MCP servers (settings/mcp.json)"),
    (".amazonq", "dir", True, "Amazon Q: MCP servers, CLI agents (hooks)"),
    (".junie", "dir", True, "JetBrains Junie: MCP servers"),
    (".github/hooks", "dir", True, "GitHub Copilot CLI/agent: hooks (*.json)"),
    # --- home-relative entries (`~/REL`): dangerous only at this place under HOME (`bin` is
    # harmless in a project, `~/.local/bin` is on the user's PATH). Entries under `.config/`
    # and `.local/share/` are also looked for under $XDG_CONFIG_HOME / $XDG_DATA_HOME. A
    # placeholder goes at the first missing component (`~/.config/systemd` when only
    # `~/.config` exists). Rule: the user's next login, shell, editor or tool start runs it.
    # PATH and autostart
    (f"{HOME}/bin", "dir", True, "PATH: ~/bin is put on PATH by the default ~/.profile"),
    (f"{HOME}/.local/bin", "dir", True, "PATH: ~/.local/bin is put on PATH by the default ~/.profile"),
    (f"{HOME}/.config/systemd", "dir", True, "systemd: user units and timers, started at login"),
    (f"{HOME}/.local/share/systemd", "dir", True, "systemd: user units, started at login"),
    (f"{HOME}/.config/environment.d", "dir", True, "systemd: environment (PATH, LD_PRELOAD) of user services"),
    (f"{HOME}/.config/autostart", "dir", True, "XDG autostart: desktop entries run at login"),
    (f"{HOME}/.config/autostart-scripts", "dir", True, "KDE: scripts run at login"),
    (f"{HOME}/.config/plasma-workspace/env", "dir", True, "KDE: scripts sourced at login"),
    (f"{HOME}/.local/share/applications", "dir", True, "desktop entries: commands run when a file type is opened"),
    (f"{HOME}/.config/mimeapps.list", "file", True, "desktop: which entry opens a file type"),
    (f"{HOME}/.local/share/dbus-1", "dir", True, "D-Bus: services started on demand"),
    (f"{HOME}/.pam_environment", "file", True, "PAM: environment of every login (LD_PRELOAD, PATH)"),
    (f"{HOME}/.xprofile", "file", True, "X session: sourced at graphical login"),
    (f"{HOME}/.xsessionrc", "file", True, "X session: sourced at graphical login"),
    (f"{HOME}/.xsession", "file", True, "X session: run at graphical login"),
    (f"{HOME}/.xinitrc", "file", True, "X session: run by startx"),
    # shells: files the rc files source, completions, prompts
    (f"{HOME}/.bash_aliases", "file", True, "bash: sourced by the default ~/.bashrc"),
    (f"{HOME}/.bashrc.d", "dir", True, "bash: sourced by the default ~/.bashrc (Fedora)"),
    (f"{HOME}/.bash_completion", "file", True, "bash-completion: sourced by every interactive shell"),
    (f"{HOME}/.bash_completion.d", "dir", True, "bash-completion: sourced by interactive shells"),
    (f"{HOME}/.local/share/bash-completion", "dir", True, "bash-completion: loaded on the first <Tab>"),
    (f"{HOME}/.inputrc", "file", True, "readline: key bindings can type and run commands in every shell"),
    (f"{HOME}/.zfunc", "dir", True, "zsh: autoloaded functions (fpath)"),
    (f"{HOME}/.oh-my-zsh", "dir", True, "oh-my-zsh: plugins and themes sourced by every zsh"),
    (f"{HOME}/.config/zsh", "dir", True, "zsh: the usual ZDOTDIR (rc files)"),
    (f"{HOME}/.config/fish", "dir", True, "fish: config.fish, conf.d and functions, run by every fish"),
    (f"{HOME}/.config/nushell", "dir", True, "nushell: config run by every nu"),
    (f"{HOME}/.config/powershell", "dir", True, "PowerShell: profile run by every pwsh"),
    (f"{HOME}/.config/starship.toml", "file", True, "starship: custom modules run commands at every prompt"),
    (f"{HOME}/.config/direnv", "dir", True, "direnv: direnvrc sourced, direnv.toml can auto-allow .envrc"),
    (f"{HOME}/.local/share/direnv", "dir", True, "direnv: the list of allowed .envrc files"),
    (f"{HOME}/.tmux.conf", "file", True, "tmux: run-shell and hooks run commands"),
    (f"{HOME}/.config/tmux", "dir", True, "tmux: the same"),
    (f"{HOME}/.screenrc", "file", True, "screen: can run commands"),
    # ssh: logins into this account, and what ssh runs
    (f"{HOME}/.ssh/authorized_keys", "file", True, "sshd: who logs in, and command= options"),
    (f"{HOME}/.ssh/authorized_keys2", "file", True, "sshd: the same (older name)"),
    (f"{HOME}/.ssh/rc", "file", True, "sshd: run at every ssh login"),
    (f"{HOME}/.ssh/environment", "file", True, "sshd: environment of ssh logins"),
    (f"{HOME}/.ssh/config", "file", True, "ssh: ProxyCommand, LocalCommand, Match exec run commands"),
    # corral itself, version control
    (f"{HOME}/.config/corral", "dir", True, "corral: its default policy, read at its next start"),
    (f"{HOME}/.config/git", "dir", True, "git: user config (commands, hooksPath), attributes (drivers)"),
    (f"{HOME}/.hgrc", "file", True, "Mercurial: hooks and extensions"),
    # editors: their rc files and plugin directories are code run at every start (the line:
    # a file the editor *executes* is protected; state it only reads back, such as viminfo or
    # undo history, is not)
    (f"{HOME}/.vimrc", "file", True, "vim: vimscript run at every start"),
    (f"{HOME}/.gvimrc", "file", True, "gvim: the same"),
    (f"{HOME}/.exrc", "file", True, "vi/ex: commands run at every start"),
    (f"{HOME}/.vim", "dir", True, "vim: plugins run at every start"),
    (f"{HOME}/.config/nvim", "dir", True, "neovim: init.lua/init.vim and plugins"),
    (f"{HOME}/.local/share/nvim/site", "dir", True, "neovim: packages loaded at every start"),
    (f"{HOME}/.emacs", "file", True, "emacs: init file (elisp)"),
    (f"{HOME}/.emacs.el", "file", True, "emacs: init file (elisp)"),
    (f"{HOME}/.emacs.d", "dir", True, "emacs: init.el and packages"),
    (f"{HOME}/.config/emacs", "dir", True, "emacs: init.el and packages"),
    (f"{HOME}/.config/Code/User", "dir", True, "VS Code: user settings (terminal profiles, tasks), MCP"),
    (f"{HOME}/.config/Cursor/User", "dir", True, "Cursor: user settings, the same"),
    (f"{HOME}/.config/VSCodium/User", "dir", True, "VSCodium: user settings, the same"),
    # interpreters and package managers: code run at their next start
    (f"{HOME}/.local/lib", "dir", True, "Python: user site-packages (.pth, usercustomize) run at every start"),
    (f"{HOME}/.pythonrc", "file", True, "Python: the usual PYTHONSTARTUP file"),
    (f"{HOME}/.pythonrc.py", "file", True, "Python: the usual PYTHONSTARTUP file"),
    (f"{HOME}/.ipython", "dir", True, "IPython: startup scripts and config (Python)"),
    (f"{HOME}/.jupyter", "dir", True, "Jupyter: config files (Python)"),
    (f"{HOME}/.config/pip", "dir", True, "pip: index-url decides whose packages (and setup.py) run"),
    (f"{HOME}/.pip", "dir", True, "pip: the same (older place)"),
    (f"{HOME}/.npmrc", "file", True, "npm: node-options, script-shell, prefix run code at every npm"),
    (f"{HOME}/.yarnrc", "file", True, "yarn 1: yarn-path runs a script"),
    (f"{HOME}/.yarnrc.yml", "file", True, "yarn: yarnPath runs a script, plugins"),
    (f"{HOME}/.irbrc", "file", True, "Ruby irb: run at every start"),
    (f"{HOME}/.pryrc", "file", True, "Ruby pry: run at every start"),
    (f"{HOME}/.Rprofile", "file", True, "R: run at every start"),
    (f"{HOME}/.cargo/config", "file", True, "cargo: rustc-wrapper, runners run commands"),
    (f"{HOME}/.cargo/config.toml", "file", True, "cargo: rustc-wrapper, runners run commands"),
    (f"{HOME}/.gradle/init.d", "dir", True, "Gradle: init scripts run by every build"),
    (f"{HOME}/.gradle/init.gradle", "file", True, "Gradle: init script run by every build"),
    (f"{HOME}/.gradle/init.gradle.kts", "file", True, "Gradle: init script run by every build"),
    (f"{HOME}/.gradle/gradle.properties", "file", True, "Gradle: org.gradle.jvmargs (-javaagent) for every build"),
    (f"{HOME}/.mavenrc", "file", True, "Maven: sourced by mvn"),
    (f"{HOME}/.docker/cli-plugins", "dir", True, "docker: CLI plugins run as docker subcommands"),
    (f"{HOME}/.aws/config", "file", True, "AWS CLI/SDKs: credential_process runs a command"),
    (f"{HOME}/.kube/config", "file", True, "kubectl: exec credential plugins run commands"),
    (f"{HOME}/.config/gh/config.yml", "file", True, "gh: aliases starting with ! run shell commands"),
    (f"{HOME}/.forward", "file", True, "mail delivery: a |command line runs for every message"),
    (f"{HOME}/.psqlrc", "file", True, "psql: \\! runs shell commands at every start"),
    (f"{HOME}/.sqliterc", "file", True, "sqlite3: .shell/.system run commands at every start"),
    (f"{HOME}/.mailcap", "file", True, "mail readers and xdg tools: the viewers it names are run"),
    (f"{HOME}/.curlrc", "file", True, "curl: every host-side curl takes its options (proxy, headers, output)"),
    (f"{HOME}/.wgetrc", "file", True, "wget: every host-side wget takes its options (proxy, headers, output)"),
    (f"{HOME}/.k5login", "file", True, "Kerberos: principals allowed to log in as you"),
    (f"{HOME}/.rhosts", "file", True, "rsh/rlogin: hosts and users allowed to log in as you"),
    (f"{HOME}/.shosts", "file", True, "ssh host-based auth: hosts and users allowed to log in as you"),
    # --- system spools (absolute): only when a policy makes them writable, which it normally
    # does not (crontab and at are setgid helpers; the spools are root's)
    ("/var/spool/cron", "dir", False, "cron: user crontabs, run on schedule"),
    ("/var/spool/at", "dir", False, "at: queued jobs"),
    # --- system-wide start-up files (absolute): only when a policy makes /etc writable; a
    # missing one is kept from being created (placeholder) for the run
    ("/etc/profile", "file", True, "login shells: sourced at every login"),
    ("/etc/profile.d", "dir", True, "login shells: every script sourced at login"),
    ("/etc/bash.bashrc", "file", True, "bash: sourced by every interactive shell"),
    ("/etc/zsh", "dir", True, "zsh: system zshenv/zshrc sourced by every shell"),
    ("/etc/environment", "file", True, "pam_env: variables of every login (LD_PRELOAD, PATH)"),
    ("/etc/ld.so.preload", "file", True, "the dynamic linker: loaded into every program"),
    ("/etc/ld.so.conf", "file", True, "the dynamic linker: library search path of every program"),
    ("/etc/ld.so.conf.d", "dir", True, "the dynamic linker: library search path of every program"),
    ("/etc/crontab", "file", True, "cron: system jobs, run on schedule"),
    ("/etc/cron.d", "dir", True, "cron: system jobs, run on schedule"),
    ("/etc/cron.hourly", "dir", True, "cron: run every hour"),
    ("/etc/cron.daily", "dir", True, "cron: run every day"),
    ("/etc/sudoers", "file", True, "sudo: who may run what as root"),
    ("/etc/sudoers.d", "dir", True, "sudo: who may run what as root"),
    ("/etc/systemd/system", "dir", True, "systemd: system units started at boot"),
    ("/etc/rc.local", "file", True, "init: run at every boot"),
    ("/etc/init.d", "dir", True, "init: scripts run at every boot"),
    ("/etc/pam.d", "dir", True, "PAM: modules run at every login"),
    ("/etc/ssh/sshd_config", "file", True, "sshd: ForceCommand, authorized keys commands"),
    ("/etc/gitconfig", "file", True, "git: system config of every repository (hooksPath, fsmonitor)"),
    ("/etc/apt/apt.conf.d", "dir", True, "apt: hooks run by every apt operation"),
    # Not protected, on purpose: `~/.claude.json` (Claude Code writes its state there on every
    # start, so an agent running inside corral with a writable HOME needs it; its project MCP
    # servers need the user's approval), `.github/workflows` (run by GitHub, not here).
)

# Derived views (kept for callers that predate the table).
_PLACED = (HOME + "/", "/")  # home-relative and absolute entries: not matched by name
ANYWHERE = {p: kind for p, kind, _, _ in TABLE if "/" not in p}
NESTED = {tuple(p.split("/", 1)): kind for p, kind, _, _ in TABLE
          if "/" in p and not p.startswith(GITDIR + "/") and not p.startswith(_PLACED)}
IN_HOME = {p[2:]: kind for p, kind, _, _ in TABLE if p.startswith(HOME + "/")}
ABSOLUTE = {p: kind for p, kind, _, _ in TABLE if p.startswith("/")}
IN_GITDIR = {p.split("/", 1)[1]: kind for p, kind, _, _ in TABLE if p.startswith(GITDIR + "/")}
REASONS = {p: why for p, _, _, why in TABLE}
PLACEHOLDER = {p for p, _, ph, _ in TABLE if ph}

_SHELLS = ("bash", "sh/dash/bash", "zsh", "ksh", "csh/tcsh", "tcsh", "direnv")  # reasons' first word
RC_FILES = frozenset(p for p, _, _, why in TABLE if "/" not in p and why.split(":")[0] in _SHELLS)
CONFIG_FILES = frozenset(p for p, kind in ANYWHERE.items() if kind == "file" and p not in RC_FILES and p != ".git")
CONFIG_DIRS = frozenset(p for p, kind in ANYWHERE.items() if kind == "dir")
GIT_CONFIG = (".git", "config")
# Git directory entries that are git config files (sanitised rather than quarantined).
GIT_CONFIG_NAMES = frozenset({"config", "config.worktree"})

_ALTERNATES = "objects/info/alternates"
_GITDIR_NAMES = frozenset(n for n in IN_GITDIR if "/" not in n)
# Names whose presence makes a directory a git directory (with HEAD).
_GITDIR_MARKERS = frozenset({"HEAD", "commondir", "objects", "refs"})
_ANYWHERE_NAMES = frozenset(ANYWHERE)
_BY_PARENT: dict[str, frozenset[str]] = {}
for _parent, _name in NESTED:
    _BY_PARENT[_parent] = _BY_PARENT.get(_parent, frozenset()) | {_name}
# Every name worth a look in any directory: the scan intersects a listing with this.
_CANDIDATES = _ANYWHERE_NAMES | _GITDIR_NAMES | _GITDIR_MARKERS | {"alternates"}
_CANDIDATES_BY_PARENT = {parent: _CANDIDATES | names for parent, names in _BY_PARENT.items()}


def candidate_names(parent_name: str) -> frozenset[str]:
    """Every name worth a look inside a directory called `parent_name`: the names that could
    be protected there, and those that make it a git directory (see `is_git_dir`)."""
    return _CANDIDATES_BY_PARENT.get(parent_name, _CANDIDATES)


def is_git_dir(dir_name: str, names) -> bool:
    """Would git take the directory called `dir_name`, holding `names` (any container of the
    entry names, or only those of them in `candidate_names`), for a git directory?"""
    if dir_name == ".git":
        return True
    return "HEAD" in names and ("commondir" in names or ("objects" in names and "refs" in names))


def rule_for(dir_path: str, name: str, is_dir: bool, in_git_dir: bool, allow_git_config: bool = False) -> str | None:
    """The table pattern that protects the entry `name` of the directory `dir_path` (a path,
    or only its last components), or None. `in_git_dir`: is that directory a git directory?"""
    if name in _ANYWHERE_NAMES:
        if name == ".git" and is_dir:
            return None  # a git directory itself: its contents are checked one by one
        return name
    if in_git_dir and name in _GITDIR_NAMES:
        if allow_git_config and name == "config":
            return None
        return f"{GITDIR}/{name}"
    parent = dir_path.rpartition("/")[2]
    if name in _BY_PARENT.get(parent, ()):
        return f"{parent}/{name}"
    if name == "alternates" and parent == "info" and dir_path.endswith("objects/info"):
        return f"{GITDIR}/{_ALTERNATES}"
    return None


def classify_entry(dir_path: str, name: str, is_dir: bool, in_git_dir: bool, allow_git_config: bool = False) -> bool:
    """Is the entry `name` of the directory `dir_path` a protected file? (see `rule_for`)"""
    return rule_for(dir_path, name, is_dir, in_git_dir, allow_git_config) is not None


def classify(parent_name: str, name: str, is_dir: bool, allow_git_config: bool = False) -> bool:
    """Is the entry `name` (inside a directory called `parent_name`) a protected file?
    Knows git directories by name only (`.git`); `classify_entry` also by their contents."""
    return classify_entry(parent_name, name, is_dir, parent_name == ".git", allow_git_config)


def reason(rule: str) -> str:
    """What reads the file a table pattern names, and what it starts."""
    return REASONS.get(rule, "protected file")


def root_placeholders(lexists, isdir, allow_git_config: bool) -> list[tuple[str, str]]:
    """Relative paths (and kinds) to block in a writable workspace root or HOME.

    `lexists(rel)` / `isdir(rel)` answer for paths relative to that directory. Only missing
    names need a placeholder, and only those the table marks; a nested name only when its
    parent directory exists (`.git/...` in the root's own `.git` directory), except that a
    missing `.claude` is blocked as a whole.
    Returns [(relative_path, "file" | "dir")].
    """
    out: list[tuple[str, str]] = []
    for name, kind in sorted(ANYWHERE.items()):
        if name in PLACEHOLDER and not lexists(name):
            out.append((name, kind))
    if not lexists(".claude"):
        out.append((".claude", "dir"))
    nested = [((parent, name), kind) for (parent, name), kind in NESTED.items()]
    nested += [((".git", rel), kind) for rel, kind in IN_GITDIR.items()]
    for (parent, rel), kind in sorted(nested):
        pattern = f"{GITDIR}/{rel}" if parent == ".git" else f"{parent}/{rel}"
        if pattern not in PLACEHOLDER:
            continue
        if parent == ".git" and rel == "config" and allow_git_config:
            continue
        full = f"{parent}/{rel}"
        if isdir(full.rpartition("/")[0]) and not lexists(full):
            out.append((full, kind))
    return out


# Where the `.config/` and `.local/share/` entries are also looked for.
_XDG_BASES = ((".config/", "XDG_CONFIG_HOME"), (".local/share/", "XDG_DATA_HOME"))


def home_entries(home: str, environ) -> list[tuple[str, str, str, str]]:
    """The home-relative and absolute entries as paths: [(path, kind, base, rule)].

    `base` is the directory below which a missing entry gets its placeholder (HOME, or the
    XDG base directory it sits in; for absolute entries their own directory when the table
    says so, else "": none). An entry
    under `.config/` is also listed under $XDG_CONFIG_HOME when that is set elsewhere (the
    same for `.local/share/` and $XDG_DATA_HOME): programs read the XDG place."""
    home = home.rstrip("/") or "/"
    out: list[tuple[str, str, str, str]] = []
    seen: set[str] = set()

    def add(path, kind, base, rule):
        if path not in seen:
            seen.add(path)
            out.append((path, kind, base, rule))

    for p, kind, ph, _why in TABLE:
        if p.startswith("/"):
            # placeholder flag set: a missing entry is kept from being created in its directory
            add(p, kind, os.path.dirname(p) if ph else "", p)
        elif p.startswith(HOME + "/"):
            rel = p[2:]
            add(f"{home}/{rel}" if home != "/" else f"/{rel}", kind, home, p)
            for prefix, var in _XDG_BASES:
                xdg = (environ.get(var) or "").rstrip("/")
                if rel.startswith(prefix) and xdg.startswith("/") and xdg != f"{home}/{prefix[:-1]}":
                    add(f"{xdg}/{rel[len(prefix):]}", kind, xdg, p)
    return out


def first_missing(path: str, base: str, kind: str, kind_of) -> tuple[str, str] | None:
    """Where the placeholder of the missing entry `path` (of type `kind`) goes: the first
    missing component below `base` (a directory placeholder when it is not `path` itself),
    or None when `base` itself is missing or something on the way is not a directory.
    `kind_of(p)` answers "dir", "file" or None."""
    if kind_of(base) != "dir" or not path.startswith(base.rstrip("/") + "/"):
        return None
    cur = base.rstrip("/")
    for part in path[len(cur) + 1:].split("/"):
        cur = f"{cur}/{part}"
        k = kind_of(cur)
        if k is None:
            return cur, (kind if cur == path else "dir")
        if k != "dir":
            return None
    return None
