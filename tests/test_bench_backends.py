"""bench/backends' pure parts: reading corral's timing line and the download figures, and the
budget verdicts that decide its exit status (no timing is asserted here)."""

import importlib.machinery
import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parent.parent / "bench" / "backends"


@pytest.fixture(scope="module")
def bench():
    loader = importlib.machinery.SourceFileLoader("bench_backends", str(PATH))
    spec = importlib.util.spec_from_loader("bench_backends", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_timing_line_is_read_phase_by_phase(bench):
    err = ("corral: on the gvisor backend, ...\n"
           "corral: timing (ms since corral.cli was imported, pid 7): policy 1.5, prepare 13.2, command 154.1; "
           "total 170.0\n")
    assert bench.parse_timing(err) == {"policy": 1.5, "prepare": 13.2, "command": 154.1, "total": 170.0}
    assert bench.parse_timing("no such line\n") is None


@pytest.mark.parametrize("stdout, expected", [
    ("104857600 1258291200", (104857600, 1200.0)),                       # curl -w, bytes/s
    ("104857600.000 1258291200.000\n", (104857600, 1200.0)),
    ('{"mode": "connect", "bytes": 104857600, "mib_s": 900.5, "ok": true}\n', (104857600, 900.5)),
    ('{"mode": "connect", "ok": false, "error": "x"}', None),
    ("", None),
    ("curl: (7) Failed to connect", None),
])
def test_download_figures(bench, stdout, expected):
    assert bench.parse_download(stdout) == expected


def _results(start, dl, errors=None):
    return {"startup_ms": {k: {"median": v} for k, v in start.items()},
            "download_mib_s": {k: {"median": v} for k, v in dl.items()}, "errors": errors or {}}


@pytest.mark.parametrize("start, dl, expected", [
    # runc, crun, gvisor, then the downloads of runc, crun, gvisor
    ({"corral/runc": 70, "corral/crun": 50, "corral/gvisor": 200, "podman-hardened": 120, "podman-runsc": 230},
     {"corral/bwrap": 1000, "corral/runc": 800, "corral/crun": 1200, "corral/gvisor": 200},
     [True, True, True, True, True, False]),
    ({"corral/runc": 130, "corral/crun": 120, "corral/gvisor": 230, "podman-hardened": 120, "podman-runsc": 230},
     {"corral/bwrap": 1000, "corral/runc": 799, "corral/crun": 1000, "corral/gvisor": 1000},
     [False, False, False, False, True, True]),
    ({"corral/runc": 70},  # peers and downloads missing: SKIP, which does not fail the run
     {},
     [None, None, None, None, None, None]),
])
def test_budgets(bench, start, dl, expected):
    verdict = bench.budgets(_results(start, dl), ["bwrap", "runc", "crun", "gvisor"], True)
    assert [v["pass"] for v in verdict] == expected


def test_a_skipped_budget_says_why(bench):
    res = _results({"corral/gvisor": 200}, {}, {"podman-runsc": "exit 125: runsc not found"})
    verdict = bench.budgets(res, ["gvisor"], True)
    assert verdict[0]["pass"] is None and "runsc not found" in verdict[0]["value"]
