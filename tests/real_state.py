"""Does a test run leave the launcher's real corral state alone?

    .venv/bin/python tests/real_state.py snapshot /tmp/before.json
    .venv/bin/python -m pytest -q
    .venv/bin/python tests/real_state.py compare /tmp/before.json

Records every entry (type, size, mtime) under the real ~/.local/state/corral, ~/.cache/corral,
~/.local/share/corral and ~/.config/corral of the current user (HOME from the password
database, XDG_* ignored: those are what the suite must not touch) and reports any difference.
Exit status 1 when something changed.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import sys

DIRS = (".local/state/corral", ".cache/corral", ".local/share/corral", ".config/corral")


def snapshot() -> dict[str, list]:
    home = pwd.getpwuid(os.geteuid()).pw_dir
    out: dict[str, list] = {}
    for rel in DIRS:
        top = os.path.join(home, rel)
        if not os.path.lexists(top):
            out[top] = ["absent"]
            continue
        st = os.lstat(top)
        out[top] = ["dir", st.st_mtime_ns]
        for dirpath, dirs, files in os.walk(top):
            for name in dirs + files:
                full = os.path.join(dirpath, name)
                st = os.lstat(full)
                kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
                out[full] = [kind, st.st_mtime_ns] + ([] if kind == "dir" else [st.st_size])
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("snapshot", "compare"):
        sys.stderr.write(__doc__)
        return 2
    now = snapshot()
    if argv[0] == "snapshot":
        with open(argv[1], "w") as fh:
            json.dump(now, fh)
        print(f"{len(now)} entries recorded")
        return 0
    with open(argv[1]) as fh:
        before = json.load(fh)
    changed = sorted(p for p in set(before) | set(now) if before.get(p) != now.get(p))
    for p in changed:
        print(f"changed: {p}: {before.get(p)} -> {now.get(p)}")
    print(f"{len(now)} entries, {len(changed)} changed")
    return 1 if changed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
