"""`corral changes | apply | discard | sessions`: the command line of overlay sessions.

A thin client of `sessions`, `changes` and `apply`. Exit status: 0 on success, 1 when apply
refused (each conflict or dangerous path on its own line, with the reason), 2 for usage
errors, 125 with one line `corral: ...` when corral itself failed (`--debug` re-raises for a traceback).
"""

from __future__ import annotations

import json
import os
import sys
import time

from ..display import shown
from ..errors import CommandLineError, CorralError, UsageError

CHANGES_USAGE = """\
usage: corral changes NAME [--diff] [--json] [--include-git]
  What the overlay session NAME changed, compared with the workspace as it is now:
  added, modified, deleted, renamed (old -> new) and mode changes, one per line.
  Paths inside git directories (.git/objects, refs, index, ...) are counted, not listed;
  new commits are named (`corral apply NAME` fetches them).
  --diff          a unified diff (binary files are named, not shown)
  --json          a JSON array (with --diff, each change carries its "diff")
  --include-git   list the paths inside git directories too
"""

APPLY_USAGE = """\
usage: corral apply NAME [PATHS...] [--force] [--allow-dangerous] [--dry-run]
                    [--no-commits | --commits | --include-git] [--ff]
  Copy the session's changes (all, or those under PATHS, relative to the workspace root)
  into the real workspace, one file at a time, atomically and resumably. Applied changes
  leave the session; the session stays until `corral discard NAME`.
  Git directories are not copied: the session's new commits are fetched into the real
  repository as refs/corral/NAME/heads/BRANCH (git's own fetch, no hook or config of the
  session), and the files they carry come with `git merge` (printed) or --ff. A repository
  created in the session is applied whole, its config sanitised.
  --force            overwrite paths changed in the workspace since the session began
  --allow-dangerous  also apply shell rc files, git hooks/config, editor and agent config
  --dry-run          print the operations, change nothing
  --ff               fast-forward the checked-out branch to the session's commits
  --no-commits       do not fetch commits; apply every working-tree file as a file
  --commits          fetch commits even when PATHS are given
  --include-git      copy the raw files inside git directories too (as before: index, refs,
                     objects; the host's own git changes since the session began conflict)
"""

DISCARD_USAGE = """\
usage: corral discard NAME
  Delete the overlay session NAME and every change it holds.
"""

SESSIONS_USAGE = """\
usage: corral sessions [--json]
  List the overlay sessions ($XDG_STATE_HOME/corral/sessions).
"""


def _parse(args: list[str], flags: set[str], usage: str, min_pos: int, max_pos: int | None):
    opts: set[str] = set()
    pos: list[str] = []
    only_pos = False
    for arg in args:
        if not only_pos and arg == "--":
            only_pos = True
        elif not only_pos and arg in ("-h", "--help"):
            sys.stdout.write(usage)
            raise SystemExit(0)
        elif not only_pos and arg.startswith("-") and arg != "-":
            if arg not in flags:
                raise CommandLineError(f"unknown option {arg!r} (usage: {usage.splitlines()[0][7:]})")
            opts.add(arg)
        else:
            pos.append(arg)
    if len(pos) < min_pos or (max_pos is not None and len(pos) > max_pos):
        raise CommandLineError(usage.splitlines()[0])
    return opts, pos


def _guard(func):
    def run(args: list[str]) -> int:
        args = list(args)
        cut = args.index("--") if "--" in args else len(args)
        debug = any(a in ("--debug", "-d") for a in args[:cut])
        args = [a for a in args[:cut] if a not in ("--debug", "-d")] + args[cut:]
        try:
            return func(args)
        except CommandLineError as exc:
            if debug:
                raise
            sys.stderr.write(f"corral: {exc}\n")
            return 2  # a malformed command line exits 2, as everywhere in corral's command line
        except CorralError as exc:
            if debug:
                raise
            sys.stderr.write(f"corral: {exc}\n")
            return 125

    run.__name__ = func.__name__
    run.__doc__ = func.__doc__
    return run


def _describe(c) -> str:
    slash = "/" if c.type_new == "dir" or (c.kind == "deleted" and c.type_old == "dir") else ""
    if c.kind == "renamed":
        text = f"{shown(c.old_path)}{slash} -> {shown(c.path)}{slash}"
    else:
        text = shown(c.path) + slash
    notes = []
    if c.kind == "mode":
        notes.append(f"mode {c.mode_old:04o} -> {c.mode_new:04o}")
    elif c.kind == "modified" and c.type_old != c.type_new:
        notes.append(f"{c.type_old} -> {c.type_new}")
    elif c.kind == "modified" and c.mode_old is not None and c.mode_new is not None and c.mode_old != c.mode_new:
        notes.append(f"mode {c.mode_old:04o} -> {c.mode_new:04o}")
    if c.type_new == "symlink" or (c.kind == "deleted" and c.type_old == "symlink"):
        notes.append("symlink")
    elif c.kind == "added" and c.type_new not in ("file", "dir"):
        notes.append(c.type_new)
    if c.binary:
        notes.append("binary")
    return f"{c.kind:<9} {text}" + (f" ({', '.join(notes)})" if notes else "")


def _journal_note(session) -> None:
    if os.path.exists(session.journal):
        sys.stderr.write(f"corral: an apply of session {session.name!r} was interrupted; "
                         f"`corral apply {session.name}` finishes it\n")


def _git_notes(session, split) -> None:
    """stderr lines: what `changes` left out of git directories, and the session's new commits."""
    from . import gitcommits

    err = sys.stderr
    for gd in sorted(split.new_repos):
        n = len(split.internal[gd])
        err.write(f"corral: new git repository {shown(gd)}/ ({n} path{'s' if n != 1 else ''}, not listed; "
                  "`corral apply` applies it whole, its config sanitised)\n")
    existing = sorted(gd for gd in split.internal if gd not in split.new_repos)
    if not existing:
        return
    n = sum(len(split.internal[gd]) for gd in existing)
    where = ", ".join(shown(gd) + "/" for gd in existing)
    err.write(f"corral: {n} change{'s' if n != 1 else ''} inside {where} not shown (git internals: "
              f"`corral changes {session.name} --include-git` lists them)\n")
    for repo in gitcommits.repos_with_new_refs(session, existing):
        if set(repo.new_refs) <= repo.fetched:
            refs = ", ".join(shown(gitcommits.corral_ref(session.name, r)) for r in repo.new_refs)
            err.write(f"corral: the session's commits in {shown(repo.rel)}/ are fetched as {refs}\n")
            continue
        refs = ", ".join(f"{shown(r)} (as {shown(gitcommits.corral_ref(session.name, r))})" for r in repo.new_refs)
        err.write(f"corral: the session committed in {shown(repo.rel)}/: `corral apply {session.name}` fetches "
                  f"{refs}; --ff also fast-forwards the checked-out branch\n")


@_guard
def changes_main(args: list[str]) -> int:
    """corral changes NAME [--diff] [--json] [--include-git]"""
    from .changes import list_changes, split_git, unified_diff
    from .sessions import load_session

    opts, pos = _parse(args, {"--diff", "--json", "--include-git"}, CHANGES_USAGE, 1, 1)
    session = load_session(pos[0])
    _journal_note(session)
    found = list_changes(session)
    split = None
    if "--include-git" not in opts:
        split = split_git(session, found)
        found = split.plain
        _git_notes(session, split)
    out = sys.stdout
    if "--json" in opts:
        items = []
        for c in found:
            item = c.to_json()
            if "--diff" in opts:
                item["diff"] = unified_diff(session, c)
            items.append(item)
        out.write(json.dumps(items, indent=2) + "\n")
        return 0
    if not found:
        if split is None or not split.internal:
            sys.stderr.write(f"corral: session {session.name!r} has no changes (workspace {shown(session.workspace)})\n")
        return 0
    for c in found:
        if "--diff" in opts:
            out.write(unified_diff(session, c))
        else:
            out.write(_describe(c) + "\n")
    return 0


@_guard
def apply_main(args: list[str]) -> int:
    """corral apply NAME [PATHS...] [--force] [--allow-dangerous] [--dry-run]"""
    from .apply import ApplyRefused, apply, describe
    from . import gitmeta
    from .sessions import load_session

    opts, pos = _parse(args, {"--force", "--allow-dangerous", "--dry-run", "--include-git", "--commits",
                              "--no-commits", "--ff"}, APPLY_USAGE, 1, None)
    if len(opts & {"--include-git", "--commits", "--no-commits"}) > 1:
        raise CommandLineError("choose one of --include-git, --commits and --no-commits")
    if "--ff" in opts and opts & {"--include-git", "--no-commits"}:
        raise CommandLineError("--ff fast-forwards to fetched commits: it cannot go with --include-git or --no-commits")
    session = load_session(pos[0])
    commits = True if "--commits" in opts or "--ff" in opts else False if "--no-commits" in opts else None
    try:
        result = apply(session, pos[1:] or None, force="--force" in opts,
                       allow_dangerous="--allow-dangerous" in opts, dry_run="--dry-run" in opts,
                       include_git="--include-git" in opts, commits=commits, ff="--ff" in opts)
    except ApplyRefused as exc:
        err = sys.stderr
        err.write(f"corral: {exc}\n")
        for path, why in exc.conflicts:
            err.write(f"  conflict   {shown(path)}: {why}\n")
        for path, why in exc.dangerous:
            err.write(f"  dangerous  {shown(path)}: {why}\n")
        return 1
    out = sys.stdout
    for path, why in result.skipped:
        sys.stderr.write(f"corral: skipped {shown(path)}: {why}\n")
    for path, removed in result.sanitised:  # new git configs, applied with only their inert keys
        sys.stderr.write(gitmeta.report_line(shown(path), removed) + "\n")
    if result.dry_run:
        if result.resumed:
            out.write(f"# would finish an interrupted apply ({result.resumed} operations left):\n")
        for info in result.commits:
            for ref, oid in info.refs:
                out.write(f"fetch   {shown(info.gitdir)}/ {shown(ref)} {oid[:12]}\n")
        for op in result.ops:
            out.write(describe(op) + "\n")
        _commit_notes(session, result, dry_run=True)
        return 0
    if result.resumed:
        sys.stderr.write(f"corral: finished an interrupted apply ({result.resumed} operations were left)\n")
    for c in result.applied:
        out.write(_describe(c) + "\n")
    _commit_notes(session, result)
    fetched = any(info.refs for info in result.commits)
    if result.applied:
        n = len(result.applied)
        sys.stderr.write(f"corral: applied {n} change{'s' if n != 1 else ''} to {shown(session.workspace)}; "
                         f"`corral discard {session.name}` when you are done with the session\n")
    elif not result.resumed and not result.skipped and not fetched and not result.git_left_out:
        sys.stderr.write(f"corral: session {session.name!r} has no changes to apply\n")
    return 1 if any(info.ff_error or info.dangerous for info in result.commits) else 0


def _commit_notes(session, result, dry_run: bool = False) -> None:
    """stderr lines: fetched commits, what to run next, git internals left out."""
    err = sys.stderr
    would = "would fetch" if dry_run else "fetched"
    for info in result.commits:
        where = shown(info.gitdir) + "/"
        if info.note:
            err.write(f"corral: the session's commits in {where} were not fetched: {info.note}\n")
            continue
        refs = ", ".join(shown(r) for r, _ in info.refs)
        if info.already:
            err.write(f"corral: the session's commits in {where} are fetched as {refs} (unchanged)\n")
        else:
            err.write(f"corral: {would} {info.count} commit{'s' if info.count != 1 else ''} of session "
                      f"{session.name!r} into {where} as {refs}\n")
        n = len(info.covered)
        carried = f" ({n} file{'s' if n != 1 else ''} of the workspace come with them)" if n else ""
        if info.ff_done:
            err.write(f"corral: fast-forwarded {shown(info.real_branch.removeprefix('refs/heads/'))} to "
                      f"{shown(info.head_ref)}{carried}\n")
        elif info.up_to_date:
            err.write(f"corral: the session's HEAD commit is already in {where}'s checked-out branch\n")
        elif info.dangerous:
            n = len(info.dangerous)
            err.write(f"corral: warning: the session's commits bring {n} dangerous path{'s' if n != 1 else ''} into the "
                      "working tree, which would run code on your machine:\n")
            for path, why in info.dangerous[:10]:
                err.write(f"corral:   {shown(path)}: {why}\n")
            err.write(f"corral: not merged; review them with `git diff HEAD {shown(info.head_ref)}` before you merge "
                      "anything (or delete the ref)\n")
        elif (cmd := info.merge_command(session.workspace)) is not None:
            if info.ff_error:
                err.write(f"corral: could not fast-forward: {info.ff_error}\n")
            hint = "" if info.ff_error or not info.can_ff or dry_run else f", or `corral apply {session.name} --ff`"
            err.write(f"corral: to bring them into the checked-out branch{carried}: `{shown(cmd)}`{hint}\n")
    for gd, n in sorted(result.git_left_out.items()):
        err.write(f"corral: left out {n} change{'s' if n != 1 else ''} inside {shown(gd)}/ (git internals; "
                  "--include-git copies them raw)\n")


@_guard
def discard_main(args: list[str]) -> int:
    """corral discard NAME"""
    from .sessions import Session, discard, load_session, session_dir

    _opts, pos = _parse(args, set(), DISCARD_USAGE, 1, 1)
    name = pos[0]
    try:
        session = load_session(name)
    except UsageError:
        path = session_dir(name)
        if not os.path.isdir(path) or os.path.islink(path):
            raise
        session = Session(name, path, "", 0)  # damaged: remove what is there
    discard(session)
    sys.stderr.write(f"corral: discarded session {name!r}\n")
    return 0


@_guard
def sessions_main(args: list[str]) -> int:
    """corral sessions [--json]"""
    from .sessions import list_sessions

    opts, _pos = _parse(args, {"--json"}, SESSIONS_USAGE, 0, 0)
    found = list_sessions()
    out = sys.stdout
    if "--json" in opts:
        out.write(json.dumps([{"name": s.name, "workspace": s.workspace, "started_ns": s.started_ns,
                               "dir": s.dir, "interrupted_apply": os.path.exists(s.journal)} for s in found],
                             indent=2) + "\n")
        return 0
    if not found:
        sys.stderr.write("corral: no overlay sessions\n")
        return 0
    width = max(len(s.name) for s in found)
    for s in found:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.started_ns / 1e9))
        note = "  (interrupted apply)" if os.path.exists(s.journal) else ""
        out.write(f"{s.name:<{width}}  {started}  {shown(s.workspace)}{note}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m corral.workspace.session_cli SUBCOMMAND ...` (the same as `corral SUBCOMMAND`)."""
    args = sys.argv[1:] if argv is None else list(argv)
    table = {"changes": changes_main, "apply": apply_main, "discard": discard_main, "sessions": sessions_main}
    if not args or args[0] not in table:
        sys.stderr.write("usage: corral {changes|apply|discard|sessions} ...\n")
        return 2
    return table[args[0]](args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
