"""The overhead benchmark runs end to end (a smoke test of --quick: no timing assertions).

It checks the table's shape and rows, so that a profiler silently dropping
out of the comparison, or a row losing a column, fails here rather than in
the README.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = ("| workload | profiler | Hz | snapshots/s | of asked | slowdown | CPU/snapshot, outside "
          "| marginal CPU/snapshot | profiler's own figure |")


def test_overhead_benchmark_quick_run(tmp_path):
    raw = tmp_path / "raw.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "overhead.py"),
         "--quick", "--no-reference", "--no-pyspy", "--json", str(raw)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    lines = out.splitlines()
    assert HEADER in lines
    rows = [line for line in lines if line.startswith("| ") and line != HEADER]
    assert all(row.count("|") == HEADER.count("|") for row in rows), rows
    labels = [(row.split(" | ")[0][2:], row.split(" | ")[1], row.split(" | ")[2]) for row in rows]
    profilers = ["plop sampler thread (C)", "plop sampler thread (pure Python)"]
    if "today's signal sampler (062fc34) left out" not in out:  # a clone without git history
        profilers.append("today's signal sampler (062fc34)")
    for workload in ("thread pool, main waits", "main thread busy, depth 30"):
        assert (workload, "no profiler", "—") in labels
        assert (workload, "no profiler, 2nd run (noise control)", "—") in labels
        for profiler in profilers:
            for rate in ("100", "1000"):
                assert (workload, profiler, rate) in labels
    assert not any("0.4.0" in row or "py-spy" in row for row in rows)
    assert "plop 0.4.0 left out (--no-reference)." in out
    assert "py-spy left out (--no-pyspy)." in out
    verdicts = [line for line in lines if line.startswith("* ") and ": " in line
                and line[2:].split(":")[0] in ("PASS", "FAIL", "PASS within noise", "FAIL within noise",
                                              "REPORT", "NO VERDICT")]
    # 2 snapshot shares, 4 slowdowns, the 1000 Hz report, 2 cost comparisons (or one NO VERDICT)
    assert len(verdicts) in (8, 9), verdicts
    runs = json.loads(raw.read_text())["runs"]
    assert len(runs) == 2 * (2 + 2 * len(profilers))
    assert all("error" not in run for run in runs), [run for run in runs if "error" in run]


def test_merge_benchmark_small_run():
    """benchmarks/merge.py end to end on a few windows: every figure printed (no timing assertions)."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "merge.py"), "--runs=1", "--windows=16"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    for figure in ("/data, all windows, cold", "/data, all windows, warm", "/api/top, all windows (merge cached)",
                   "/data, last hour vs the hour before, cold", "/data, one window, cold"):
        assert figure in proc.stdout
    assert "cold merge of 16 windows" in proc.stdout
