"""The audit log stays bounded whatever the sandbox does (issue 10): identical events are
aggregated, each run is rate-limited, the file is capped and rotated, and names the sandbox
chose are shown escaped by `corral audit`.

The pure Limiter is tested table by table with a fake clock; AuditLog against real files, also
from several processes at once; and a real sandbox floods the proxy's DNS with refused names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import helpers
from corral.proxy import audit
from corral.proxy.audit import AuditLog, Limiter
from test_network import PY, audit_path, net_run, out_of

# ---------------------------------------------------------------------------------------------
# Limiter: aggregation and rate, with a fake clock
# ---------------------------------------------------------------------------------------------


def dns(host, run="r1", decision="block"):
    return {"run": run, "command": "cmd", "proto": "dns", "host": host, "decision": decision}


def conn(host, up, run="r1"):
    return {"run": run, "proto": "connect", "host": host, "port": 443, "decision": "allow", "up": up, "down": 1}


def brief(records):
    """(host or proto, count) of each written record, in order."""
    return [(r.get("host") or r["proto"], r.get("count")) for r in records]


LIMITER = [
    # (name, [(record, time)], then `due` at time, written by admit, written by due, written by drain)
    ("identical events: the first at once, the repeats as one count when the window ends",
     [(dns("a"), 0.0), (dns("a"), 1.0), (dns("a"), 2.0)], 5.0,
     [("a", None)], [("a", 2)], []),
    ("the window has not ended: the count waits for the end of the run",
     [(dns("a"), 0.0), (dns("a"), 1.0)], 4.0,
     [("a", None)], [], [("a", 1)]),
    ("a lone event leaves no count line",
     [(dns("a"), 0.0)], 9.0,
     [("a", None)], [], []),
    ("after the window, the same event starts a new one",
     [(dns("a"), 0.0), (dns("a"), 1.0), (dns("a"), 6.0)], 6.5,
     [("a", None), ("a", 1), ("a", None)], [], []),
    ("different hosts, decisions or runs are different events",
     [(dns("a"), 0.0), (dns("b"), 0.1), (dns("a", decision="allow"), 0.2), (dns("a", run="r2"), 0.3),
      (dns("a"), 0.4)], 5.0,
     [("a", None), ("b", None), ("a", None), ("a", None)], [("a", 1)], []),
    ("events with their own measurements are never merged",
     [(conn("h", 10), 0.0), (conn("h", 10), 0.1), (conn("h", 10), 0.2)], 9.0,
     [("h", None), ("h", None), ("h", None)], [], []),
]


@pytest.mark.parametrize("name,events,at,admitted,due,drained", LIMITER, ids=[row[0][:40] for row in LIMITER])
def test_limiter_aggregates_identical_events(name, events, at, admitted, due, drained):
    lim = Limiter(window=5.0, rate=1000, burst=1000)
    written = []
    for record, t in events:
        written += lim.admit(dict(record), t)
    assert brief(written) == admitted
    assert brief(lim.due(at)) == due
    assert brief(lim.drain(at + 100)) == drained
    assert not lim.holding


def test_limiter_rate_caps_each_run_and_says_how_many_it_dropped():
    lim = Limiter(window=5.0, rate=10, burst=20)
    written = []
    for i in range(100):  # 100 distinct names in 0.1 s: the burst passes, the rest is counted
        written += lim.admit(dns(f"n{i}"), i * 0.001)
    written += lim.admit(dns("other", run="r2"), 0.1)  # another run has its own budget
    assert len(written) == 21 and written[-1]["run"] == "r2"
    assert [r["host"] for r in written[:20]] == [f"n{i}" for i in range(20)]
    assert lim.due(1.0) == []  # the summary waits for a window after the first dropped event
    [summary] = lim.due(5.1)
    assert (summary["run"], summary["proto"], summary["decision"], summary["count"]) == ("r1", "audit", "suppressed", 80)
    assert summary["command"] == "cmd" and "80 events" in summary["reason"]
    # refilled: the run may write again
    assert brief(lim.admit(dns("late"), 10.0)) == [("late", None)]


def test_limiter_drain_reports_suppressed_events_at_the_end_of_the_run():
    lim = Limiter(window=5.0, rate=1, burst=1)
    lim.admit(dns("a"), 0.0)
    lim.admit(dns("b"), 0.1)
    lim.admit(dns("c"), 0.2)
    assert [(r["decision"], r["count"]) for r in lim.drain(0.3)] == [("suppressed", 2)]


def test_limiter_flood_of_one_name_is_a_handful_of_lines():
    lim = Limiter()
    written = []
    for i in range(100_000):  # 10 s at 10000 queries a second
        written += lim.admit(dns("flood.example"), i / 10_000)
    written += lim.drain(10.0)
    assert len(written) <= 2 * (10 / audit.WINDOW + 1)
    assert sum(r.get("count", 1) for r in written) == 100_000


# ---------------------------------------------------------------------------------------------
# AuditLog: cap and rotation on real files
# ---------------------------------------------------------------------------------------------


def unlimited():
    return Limiter(rate=1e9, burst=10**9)


def all_records(path) -> list[dict]:
    return list(audit.read_records(str(path)))


def test_log_is_rotated_at_the_cap_and_keeps_a_few_files(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), max_bytes=2048, keep=3, limiter=unlimited())
    for i in range(400):
        log.write(dns(f"name-{i:04d}.example"))
    log.close()
    sizes = {p.name: p.stat().st_size for p in tmp_path.iterdir() if p.name.startswith("audit.jsonl")}
    assert set(sizes) == {"audit.jsonl", "audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.3", "audit.jsonl.lock"}
    assert all(n <= 2048 for name, n in sizes.items()), sizes
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # corral audit reads the rotated files, oldest first, then the current one: the newest events, in order
    hosts = [r["host"] for r in all_records(path)]
    assert hosts == sorted(hosts) and hosts[-1] == "name-0399.example"
    assert len(hosts) < 400  # the oldest rotated file was dropped
    assert [r["host"] for r in audit.read_records(str(path), rotated=False)] == hosts[-len(path.read_text().splitlines()):]


def test_log_written_by_several_processes_at_once_keeps_whole_lines(tmp_path):
    path = tmp_path / "audit.jsonl"
    code = textwrap.dedent(f"""
        import sys
        from corral.proxy.audit import AuditLog, Limiter
        log = AuditLog({str(path)!r}, max_bytes=8192, keep=1000, limiter=Limiter(rate=1e9, burst=10**9))
        for i in range(1500):
            log.write({{"run": sys.argv[1], "proto": "dns", "host": f"{{sys.argv[1]}}-{{i}}.example", "decision": "block"}})
        log.close()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, f"p{n}"]) for n in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    files = [p for p in tmp_path.iterdir() if p.name.startswith("audit.jsonl") and not p.name.endswith(".lock")]
    assert len(files) > 10  # rotated many times, by all three
    lines = [line for p in files for line in p.read_text().splitlines()]
    records = [json.loads(line) for line in lines]  # every line whole
    assert sorted(r["host"] for r in records) == sorted(f"p{n}-{i}.example" for n in range(3) for i in range(1500))
    # each writer checks the size before its own write: racing writers may pass the cap by a line each
    longest = max(len(line) + 1 for line in lines)
    assert all(p.stat().st_size <= 8192 + 3 * longest for p in files)


def test_follow_goes_on_in_the_new_file_after_a_rotation(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), max_bytes=1 << 20, limiter=unlimited())
    log.write(dns("before.example"))
    follow = audit.read_records(str(path), follow=True, poll=0.01, rotated=False)
    assert next(follow)["host"] == "before.example"
    os.replace(path, str(path) + ".1")  # another process rotated the file
    log.write(dns("old-fd.example"))  # a writer still holding the old file
    other = AuditLog(str(path), max_bytes=1 << 20, limiter=unlimited())
    other.write(dns("after.example"))
    assert next(follow)["host"] == "old-fd.example"
    assert next(follow)["host"] == "after.example"
    follow.close()
    log.close()
    other.close()


def test_counts_are_flushed_by_the_timer_and_at_close(tmp_path):
    path = tmp_path / "audit.jsonl"
    now = [0.0]
    log = AuditLog(str(path), limiter=Limiter(window=5.0), clock=lambda: now[0])
    for _ in range(10):
        log.write(dns("same.example"))
    assert len(all_records(path)) == 1
    now[0] = 6.0
    log.flush()  # what the timer calls
    assert [r.get("count") for r in all_records(path)] == [None, 9]
    log.write(dns("same.example"))
    log.write(dns("same.example"))
    log.close()
    assert [r.get("count") for r in all_records(path)] == [None, 9, None, 1]


def test_bad_max_bytes_variable_warns_and_uses_the_default(monkeypatch, capsys):
    monkeypatch.setenv(audit.MAX_BYTES_ENV, "lots")
    assert AuditLog(None).max_bytes == audit.MAX_BYTES
    assert f"{audit.MAX_BYTES_ENV}='lots'" in capsys.readouterr().err
    monkeypatch.setenv(audit.MAX_BYTES_ENV, "65536")
    assert AuditLog(None).max_bytes == 65536


# ---------------------------------------------------------------------------------------------
# corral audit shows names the sandbox chose escaped
# ---------------------------------------------------------------------------------------------

ROWS = [
    ({"host": "evil\x1b[2K\x1b[1Gcorral: all good", "decision": "block", "proto": "dns"}, "evil\\x1b[2K\\x1b[1Gcorral"),
    ({"host": "a\u202egnp.exe", "decision": "block", "proto": "dns"}, "a\\u202egnp.exe"),
    ({"host": "h", "method": "GET", "path": "/x\ny", "decision": "allow", "proto": "http"}, "h GET /x\\ny"),
    ({"host": "h", "reason": "r\rforged", "decision": "block", "proto": "dns"}, "r\\rforged"),
    ({"host": "h", "decision": "block", "proto": "dns", "count": 41}, "and 41 more like it"),
]


@pytest.mark.parametrize("rec,expected", ROWS)
def test_audit_rows_escape_names(rec, expected):
    row = audit.format_row(rec)
    assert expected in row
    assert row.isprintable()


def test_corral_audit_reads_rotated_files_and_escapes(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), max_bytes=1024, limiter=unlimited())
    for i in range(30):
        log.write(dns(f"n{i}.example"))
    log.write(dns("bad\x1b]0;pwned\x07.example"))
    log.close()
    assert (tmp_path / "audit.jsonl.1").exists()
    p = subprocess.run([sys.executable, "-m", "corral", "audit", "--file", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert "\x1b" not in p.stdout and "\x07" not in p.stdout
    assert "bad\\x1b]0;pwned\\x07.example" in p.stdout
    shown = [line.split()[4] for line in p.stdout.splitlines()[1:]]  # time run proto decision HOST
    assert len(shown) > 5 and shown[-1].startswith("bad")


# ---------------------------------------------------------------------------------------------
# End to end: a sandbox floods the proxy's DNS
# ---------------------------------------------------------------------------------------------

DNS_FLOOD = r"""
import random, socket, struct, sys
n, pattern = int(sys.argv[1]), sys.argv[2]
server = next(l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver"))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
answered = 0
for i in range(n):
    name = pattern.replace("N", str(i))
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    s.sendto(q, (server, 53))
    while True:
        reply = s.recv(4096)
        if reply[:2] == q[:2]:
            break
    answered += (reply[3] & 0x0F) == 3  # NXDOMAIN
print(f"answered={answered}")
"""


def flood(ws, n: int, pattern: str, env_extra=None):
    ws.write("flood.py", DNS_FLOOD)
    return net_run(ws, f"{PY} flood.py {n} {pattern}", allowed=["example.com"], timeout=300, env_extra=env_extra)


def test_dns_flood_of_a_refused_name_leaves_a_bounded_aggregated_log(launcher, ws):
    n = 20000
    p = flood(ws, n, "flood-ct.example.org")
    assert f"answered={n}" in p.stdout, out_of(p)
    path = audit_path(ws)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    mine = [r for r in records if r.get("host") == "flood-ct.example.org"]
    # every query is accounted for, in a handful of lines
    assert sum(r.get("count", 1) for r in mine) == n, mine
    assert 1 <= len(mine) <= 20, len(mine)
    assert all(r["decision"] == "block" and r["proto"] == "dns" for r in mine)
    assert path.stat().st_size < 20_000
    # the end-of-run summary names the host and every attempt
    assert f"flood-ct.example.org (not allowed, {n} attempts)" in p.stderr, p.stderr


def test_dns_flood_of_distinct_names_is_rate_limited_and_rotated_at_the_cap(launcher, ws):
    n, cap = 3000, 16384
    p = flood(ws, n, "nN.flood-ct.example.org", env_extra={audit.MAX_BYTES_ENV: str(cap)})
    assert f"answered={n}" in p.stdout, out_of(p)
    path = audit_path(ws)
    files = sorted(p.name for p in path.parent.iterdir() if p.name.startswith("audit.jsonl"))
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.3", "audit.jsonl.lock"], files
    total = 0
    records = []
    for name in files[:-1]:
        size = (path.parent / name).stat().st_size
        assert 0 < size <= cap, (name, size)
        total += size
        records += [json.loads(line) for line in (path.parent / name).read_text().splitlines()]
    assert total <= 4 * cap
    # the rate limit: what it dropped is counted in a summary line, at the end of the run at the latest
    suppressed = [r for r in records if r.get("decision") == "suppressed"]
    assert suppressed and all(r["proto"] == "audit" and r["count"] > 0 for r in suppressed), records[-5:]
    assert sum(r["count"] for r in suppressed) >= n - audit.BURST - audit.RATE * 60
    # the end-of-run summary still names hosts, and counts the rest
    assert "n0.flood-ct.example.org" in p.stderr and "more" in p.stderr, p.stderr
