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
usage: corral changes NAME [--diff] [--json]
  What the overlay session NAME changed, compared with the workspace as it is now:
  added, modified, deleted, renamed (old -> new) and mode changes, one per line.
  --diff   a unified diff (binary files are named, not shown)
  --json   a JSON array (with --diff, each change carries its "diff")
"""

APPLY_USAGE = """\
usage: corral apply NAME [PATHS...] [--force] [--allow-dangerous] [--dry-run]
  Copy the session's changes (all, or those under PATHS, relative to the workspace root)
  into the real workspace, one file at a time, atomically and resumably. Applied changes
  leave the session; the session stays until `corral discard NAME`.
  --force            overwrite paths changed in the workspace since the session began
  --allow-dangerous  also apply shell rc files, git hooks/config, editor and agent config
  --dry-run          print the operations, change nothing
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


@_guard
def changes_main(args: list[str]) -> int:
    """corral changes NAME [--diff] [--json]"""
    from .changes import list_changes, unified_diff
    from .sessions import load_session

    opts, pos = _parse(args, {"--diff", "--json"}, CHANGES_USAGE, 1, 1)
    session = load_session(pos[0])
    _journal_note(session)
    found = list_changes(session)
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

    opts, pos = _parse(args, {"--force", "--allow-dangerous", "--dry-run"}, APPLY_USAGE, 1, None)
    session = load_session(pos[0])
    try:
        result = apply(session, pos[1:] or None, force="--force" in opts,
                       allow_dangerous="--allow-dangerous" in opts, dry_run="--dry-run" in opts)
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
        for op in result.ops:
            out.write(describe(op) + "\n")
        return 0
    if result.resumed:
        sys.stderr.write(f"corral: finished an interrupted apply ({result.resumed} operations were left)\n")
    for c in result.applied:
        out.write(_describe(c) + "\n")
    if result.applied:
        n = len(result.applied)
        sys.stderr.write(f"corral: applied {n} change{'s' if n != 1 else ''} to {shown(session.workspace)}; "
                         f"`corral discard {session.name}` when you are done with the session\n")
    elif not result.resumed and not result.skipped:
        sys.stderr.write(f"corral: session {session.name!r} has no changes to apply\n")
    return 0


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
