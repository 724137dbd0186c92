"""The mandatory protections: files that would let a sandboxed command persist or escalate.

Everything about *which* names are dangerous lives in this table; the scanner and the plan
only ask `classify()`. A dangerous file that exists is made read-only wherever it sits in a
writable area; a missing one cannot be created in the workspace root (or a writable HOME);
one created anywhere else during the run is quarantined when the command ends.
"""

from __future__ import annotations

# Sourced by shells, or read by git and tools on start: planting one runs code later, outside.
RC_FILES = frozenset(
    {
        ".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".profile",
        ".zshrc", ".zprofile", ".zshenv", ".zlogin", ".zlogout",
        ".kshrc", ".cshrc", ".tcshrc", ".login", ".envrc",
    }
)
CONFIG_FILES = frozenset({".gitconfig", ".gitmodules", ".ripgreprc", ".mcp.json"})
# Editor project settings can run tasks and extensions when the folder is opened.
CONFIG_DIRS = frozenset({".vscode", ".idea"})
# Entries inside a parent of the given name: (parent, name) -> "file" | "dir".
NESTED = {
    (".git", "hooks"): "dir",
    (".git", "config"): "file",
    (".claude", "commands"): "dir",
    (".claude", "agents"): "dir",
    (".claude", "settings.json"): "file",
    (".claude", "settings.local.json"): "file",
}
GIT_CONFIG = (".git", "config")


_ANYWHERE = RC_FILES | CONFIG_FILES | CONFIG_DIRS | {".git"}
_BY_PARENT = {
    parent: frozenset(_ANYWHERE | {n for (p, n) in NESTED if p == parent}) for parent, _ in NESTED
}


def candidate_names(parent_name: str) -> frozenset[str]:
    """Every name that could be protected inside a directory called `parent_name`."""
    return _BY_PARENT.get(parent_name, _ANYWHERE)


def classify(parent_name: str, name: str, is_dir: bool, allow_git_config: bool = False) -> bool:
    """Is the entry `name` (inside a directory called `parent_name`) a protected file?"""
    if name in RC_FILES or name in CONFIG_FILES:
        return True
    if name in CONFIG_DIRS:
        return True
    if name == ".git" and not is_dir:
        # A gitfile ("gitdir: ...") can point git at a directory full of hooks.
        return True
    key = (parent_name, name)
    if key in NESTED:
        return not (allow_git_config and key == GIT_CONFIG)
    return False


def root_placeholders(lexists, isdir, allow_git_config: bool) -> list[tuple[str, str]]:
    """Relative paths (and kinds) to block in a writable workspace root or HOME.

    `lexists(rel)` / `isdir(rel)` answer for paths relative to that directory. Only missing
    names need a placeholder; a missing `.claude` is blocked as a whole.
    Returns [(relative_path, "file" | "dir")].
    """
    out: list[tuple[str, str]] = []
    for name in sorted(RC_FILES | CONFIG_FILES):
        if not lexists(name):
            out.append((name, "file"))
    for name in sorted(CONFIG_DIRS):
        if not lexists(name):
            out.append((name, "dir"))
    if not lexists(".claude"):
        out.append((".claude", "dir"))
    for (parent, name), kind in sorted(NESTED.items()):
        if (parent, name) == GIT_CONFIG and allow_git_config:
            continue
        rel = f"{parent}/{name}"
        if isdir(parent) and not lexists(rel):
            out.append((rel, kind))
    return out
