"""The overhead benchmark runs end to end (a smoke test: no timing assertions)."""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_overhead_benchmark_quick_run():
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "overhead.py"),
         "--quick", "--no-reference", "--rounds", "1", "--seconds", "0.03"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "| workload | profiler |" in out
    for label in ("no profiler", "floor: no-op Python handler", "plop pure-Python sampler"):
        assert label in out
    assert "plop 0.4.0 left out" in out
    assert "**Verdict:**" in out


def test_viewer_routes_benchmark_quick_run():
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "viewer_routes.py"), "--runs", "1", "--stacks", "300"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    for row in ("/api/flame cold", "/api/top warm", "/api/flame hide=", "/api/top focus="):
        assert "| " + row in proc.stdout
