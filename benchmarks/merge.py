"""Benchmark: merging a day of a service's rolling windows into one ``/data`` answer.

Writes 1,440 one-minute windows of a service (four workers over six hours, each window a
few hundred distinct stacks of one call tree, with counts that vary from window to window, as
``plop.start()`` writes them), then, on a fresh viewer for every run,

* ``/data?service=NAME`` cold: the first request, listing the directory, choosing the windows
  from their first 4 KiB, starting the viewer's merge workers (one per core) and loading and
  summing every one (issue 10's goal: under 3 s);
* the same again (warm: the encoded answer is cached);
* ``/api/top`` and ``/api/flame`` on the merge just built (the merged profile is cached);
* ``/data`` of the last hour only (240 windows), cold on its own fresh viewer;
* ``/data`` comparing the last hour with the hour before, cold;
* one window's ``/data``, cold, for scale.

Prints medians over runs (and the cold merge as a multiple of one window's cold answer). Run as
``python benchmarks/merge.py [--runs=5] [--windows=1440]``.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plop import formats  # noqa: E402
from plop.profile import Frame, Profile  # noqa: E402

SERVICE = "shop"
GOAL = 3.0


def call_tree(rng: random.Random, functions: int = 600) -> list[tuple[Frame, ...]]:
    """The distinct stacks a worker runs: paths of a random call tree, 6 to 30 frames deep."""
    packages = ["shop/handlers", "shop/models", "shop/pricing", "site-packages/tornado", "site-packages/sqlalchemy",
                "site-packages/jinja2", "python3.11/json", "python3.11/asyncio", "site-packages/redis"]
    frames = [Frame("/srv/shop/%s/mod%d.py" % (packages[i % len(packages)], i % 23), "func_%d" % i, 10 + i, 12 + i)
              for i in range(functions)]
    stacks = []
    for _ in range(400):
        depth = rng.randint(6, 30)
        stack = [frames[0], frames[1 + rng.randrange(4)]]
        while len(stack) < depth:
            stack.append(frames[rng.randrange(functions)])
        stacks.append(tuple(stack))
    return stacks


def write_windows(directory: Path, count: int, workers: int = 4) -> float:
    """Write ``count`` one-minute windows, ``workers`` at a time, ending now; returns the bytes written."""
    rng = random.Random(10)
    stacks = call_tree(rng)
    now = time.time()
    minutes = count // workers
    size = 0
    for minute in range(minutes):
        for worker in range(workers):
            pid = 4000 + worker
            start = now - 60 * (minutes - minute)
            chosen = rng.sample(stacks, 300)
            samples = {(("MainThread" if i % 5 else "worker-1"), stack): rng.randint(1, 40)
                       for i, stack in enumerate(chosen)}
            meta = {"service": SERVICE, "pid": pid, "hostname": "web-%d" % (worker % 2), "mode": "real",
                    "interval": 0.01, "start_time": start, "window_start": start, "window_end": start + 60,
                    "duration": 60.0, "command": ["python", "-m", "shop.server"], "python_version": "3.11.7"}
            profile = Profile(samples, meta, {k: n // 3 for k, n in samples.items()})
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(start))
            path = directory / ("%s-%s.000Z-%d.plop" % (SERVICE, stamp, pid))
            formats.dump(profile, path)
            size += path.stat().st_size
    return size


class Viewer:
    """``python -m plop.viewer`` on a free port over a directory, as users run it."""

    def __init__(self, directory: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "plop.viewer", "--datadir=%s" % directory, "--port=0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)))
        line = self.process.stdout.readline()
        if "http://" not in line:
            raise RuntimeError(self.process.stderr.read())
        self.url = line.split()[-1].rstrip("/")

    def time(self, path: str) -> float:
        started = time.perf_counter()
        with urllib.request.urlopen(self.url + path, timeout=300) as response:
            response.read()
            assert response.status == 200
        return time.perf_counter() - started

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--windows", type=int, default=1440)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        started = time.perf_counter()
        size = write_windows(directory, args.windows)
        print("wrote %d windows of %s (%.1f MiB) in %.1f s" % (
            args.windows, SERVICE, size / 2**20, time.perf_counter() - started))
        one = sorted(p.name for p in directory.iterdir())[-1]
        day = "/data?service=%s" % SERVICE
        hour = "/data?service=%s&since=-1h" % SERVICE
        compare = "/data?service=%s&since=-1h&base_since=-2h&base_until=-1h" % SERVICE
        results: dict[str, list[float]] = {}

        def record(name: str, seconds: float) -> None:
            results.setdefault(name, []).append(seconds)

        for _ in range(args.runs):
            viewer = Viewer(directory)
            try:
                record("/data, all windows, cold", viewer.time(day))
                record("/data, all windows, warm", viewer.time(day))
                record("/api/top, all windows (merge cached)", viewer.time(day.replace("/data", "/api/top")))
                record("/api/flame, all windows (merge cached)", viewer.time(day.replace("/data", "/api/flame")))
            finally:
                viewer.close()
            for name, path in (("/data, last hour (240 windows), cold", hour),
                               ("/data, last hour vs the hour before, cold", compare),
                               ("/data, one window, cold", "/data?filename=" + one)):
                viewer = Viewer(directory)
                try:
                    record(name, viewer.time(path))
                finally:
                    viewer.close()
        print("\nmedians of %d runs (fresh viewer for every cold figure):" % args.runs)
        width = max(map(len, results))
        for name, times in results.items():
            print("  %-*s  %8.3f s   (min %.3f, max %.3f)" % (width, name, statistics.median(times), min(times), max(times)))
        cold = statistics.median(results["/data, all windows, cold"])
        single = statistics.median(results["/data, one window, cold"])
        print("\ncold merge of %d windows = %.1f x one window's cold /data; %.2f ms per window" % (
            args.windows, cold / single, 1000 * cold / args.windows))
        print("%s: cold merge %.2f s against the %.0f s goal" % ("PASS" if cold < GOAL else "FAIL", cold, GOAL))


if __name__ == "__main__":
    main()
