"""Workspace mode "copy": a filtered staging copy of the working directory.

Patterns come from `.corralignore` (else `.dockerignore`), in gitignore syntax; secret files
(`corral scan`) are never copied. Data is copied, never hard-linked: the command's writes
must not reach the originals.
"""

from __future__ import annotations

import os
import shutil

IGNORE_FILES = (".corralignore", ".dockerignore")


def ignore_spec(root: str):
    """The pathspec of the first ignore file found in `root`, or None."""
    for name in IGNORE_FILES:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            import pathspec

            with open(path, encoding="utf-8", errors="replace") as fh:
                return name, pathspec.PathSpec.from_lines("gitwildmatch", fh)
    return None, None


def build_copy(src: str, dst: str, exclude: set[str]) -> dict:
    """Copy `src` to `dst` (created, 0700), skipping ignored paths and `exclude` (absolute
    paths). Returns counts for the report."""
    _, spec = ignore_spec(src)
    os.mkdir(dst, 0o700)
    copied = skipped = 0
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        rel_dir = os.path.relpath(dirpath, src)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        keep = []
        for d in dirnames:
            full = os.path.join(dirpath, d)
            rel = rel_dir + d
            if full in exclude or (spec is not None and spec.match_file(rel + "/")):
                skipped += 1
                continue
            if os.path.islink(full):
                os.symlink(os.readlink(full), os.path.join(dst, rel))
                continue
            os.mkdir(os.path.join(dst, rel), 0o755)
            keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            full = os.path.join(dirpath, f)
            rel = rel_dir + f
            if full in exclude or (spec is not None and spec.match_file(rel)):
                skipped += 1
                continue
            target = os.path.join(dst, rel)
            if os.path.islink(full):
                os.symlink(os.readlink(full), target)
            elif os.path.isfile(full):
                shutil.copy2(full, target, follow_symlinks=False)
            copied += 1
    return {"copied": copied, "skipped": skipped}


def remove_copy(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
