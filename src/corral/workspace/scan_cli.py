"""`corral scan [PATH...]`: list the files a sandboxed command should not read.

A thin client of `secretscan`: it parses options, prints a table (or `--json`) and sets the
exit status for CI and pre-commit: 0 when no secret was found (env templates alone count as
none), 1 when one was, 2 for usage errors and paths that cannot be scanned (one line
`corral: ...` on stderr, no traceback). It never prints a secret value: details hold line
numbers and redacted previews only.
"""

from __future__ import annotations

import os
import sys

USAGE = """\
usage: corral scan [PATH...] [--json] [--no-content] [--no-cache] [--home]

Lists files that the sandbox should not read: credential files by name (.env, *.pem,
id_rsa, .aws/credentials, *.tfstate, ...) and files holding private keys or API tokens
(AWS, GitHub, GitLab, Slack, Stripe, OpenAI, Anthropic, Google, npm, PyPI, ...), at any
depth, hidden and git-ignored ones included. PATH (default .) is a directory to walk or a
file to check (pre-commit passes files). Env templates (.env.example, ...) whose values are
all placeholders are listed as "template", not as secrets.

options:
  --json        one JSON document instead of the table
  --no-content  match names only; do not read contents
  --no-cache    neither use nor update the content cache (~/.cache/corral/scan)
  --home        also list the credential locations in your home directory
  -h, --help    this help

exit status: 0 no secret found, 1 secrets found, 2 usage error
"""

FLAGS = {"--json": "json", "--no-content": "no_content", "--no-cache": "no_cache", "--home": "home"}


def _parse(args: list[str]) -> tuple[dict, list[str]]:
    from ..errors import UsageError

    opts = dict.fromkeys(FLAGS.values(), False)
    paths: list[str] = []
    only_paths = False
    for arg in args:
        if only_paths or arg == "-" or not arg.startswith("-"):
            paths.append(arg)
        elif arg == "--":
            only_paths = True
        elif arg in ("-h", "--help"):
            opts["help"] = True
        elif arg in FLAGS:
            opts[FLAGS[arg]] = True
        else:
            raise UsageError(f"scan: unknown option {arg!r} (see `corral scan --help`)")
    return opts, paths or ["."]


def _shown(text: str) -> str:
    """Printable on any terminal: control characters (a newline in a file name could forge
    table rows), bidi controls and undecodable bytes escaped (`display.shown`)."""
    from ..display import shown

    return shown(text)


def _display(path: str, root: str, home: str) -> str:
    if root and (path == root or path.startswith(root.rstrip("/") + "/")):
        return os.path.relpath(path, root)
    if home and home != "/" and path.startswith(home + "/"):
        return "~" + path[len(home):]
    return path


def main(args: list[str]) -> int:
    from ..errors import CorralError

    try:
        return _main(args)
    except CorralError as exc:
        print(f"corral: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _main(args: list[str]) -> int:
    import time

    from ..errors import UsageError
    from .secretscan import home_findings, scan_files, scan_tree

    opts, paths = _parse(args)
    if opts.get("help"):
        sys.stdout.write(USAGE)
        return 0
    t0 = time.perf_counter()
    content, cache = not opts["no_content"], not opts["no_cache"]
    dirs, files = [], []
    for p in paths:
        if os.path.isdir(p):
            dirs.append(p)
        elif os.path.lexists(p):
            files.append(p)
        else:
            raise UsageError(f"scan: {p}: no such file or directory")
    root = os.path.realpath(dirs[0]) if len(paths) == 1 and dirs else os.path.realpath(".")
    findings = []
    seen = 0
    unreadable: list[str] = []
    for d in dirs:
        result = scan_tree(d, content=content, cache=cache)
        findings.extend(result.findings)
        seen += result.files_seen
        unreadable.extend(os.path.join(result.root, u) for u in result.unreadable)
    if files:
        findings.extend(scan_files(files, content=content))
        seen += len(files)
    home = os.path.realpath(os.path.expanduser("~"))
    if opts["home"]:
        findings.extend(home_findings(home))
    seen_paths = set()
    unique = []
    for f in findings:
        if (f.path, f.kind) not in seen_paths:
            seen_paths.add((f.path, f.kind))
            unique.append(f)
    seconds = time.perf_counter() - t0
    n_secrets = sum(1 for f in unique if f.secret)
    n_templates = len(unique) - n_secrets
    if unreadable:
        print(f"corral: warning: could not list {len(unreadable)} directories (first: "
              f"{_shown(unreadable[0])}); files in them were not checked", file=sys.stderr)
    if opts["json"]:
        import json

        doc = {
            "root": root,
            "findings": [
                {"path": _display(f.path, root, home), "abspath": f.path, "kind": f.kind,
                 "source": f.source, "why": f.why, "details": f.details, "secret": f.secret}
                for f in unique
            ],
            "files": seen,
            "secrets": n_secrets,
            "templates": n_templates,
            "seconds": round(seconds, 3),
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        rows = [("KIND", "SOURCE", "PATH", "WHY")]
        for f in unique:
            why = f.why + (f": {f.details}" if f.details else "")
            if not f.secret:
                why += " (not a secret)"
            rows.append((f.kind, f.source, _shown(_display(f.path, root, home)), _shown(why)))
        out = []
        if unique:
            widths = [max(len(r[i]) for r in rows) for i in range(3)]
            for r in rows:
                out.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[3])
        summary = f"{n_secrets} secret{'s' if n_secrets != 1 else ''}"
        if n_templates:
            summary += f", {n_templates} template{'s' if n_templates != 1 else ''}"
        out.append(f"{summary} in {seen} files ({seconds:.2f} s)")
        sys.stdout.write("\n".join(out) + "\n")
    return 1 if n_secrets else 0
