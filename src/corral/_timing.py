"""Per-phase timing of corral's own start and finish: `CORRAL_TIMING=1 corral run -- true`.

corral wraps every command an agent runs, so each change to the start path must be seen:
this prints one stderr line at exit with the milliseconds spent in each phase, measured from
the moment `corral.cli` was imported. Off (one global check per mark) unless the variable is set.
"""

from __future__ import annotations

import os
import time

ENABLED = os.environ.get("CORRAL_TIMING", "") not in ("", "0")
_marks: list[tuple[str, float]] = [("start", time.perf_counter())]


def mark(label: str) -> None:
    if ENABLED:
        _marks.append((label, time.perf_counter()))


def report() -> None:
    if not ENABLED or len(_marks) < 2:
        return
    import sys

    parts = [f"{label} {(t - prev) * 1000:.1f}" for (_, prev), (label, t) in zip(_marks, _marks[1:])]
    total = (_marks[-1][1] - _marks[0][1]) * 1000
    sys.stderr.write(f"corral: timing (ms since corral.cli was imported, pid {os.getpid()}): "
                     + ", ".join(parts) + f"; total {total:.1f}\n")
