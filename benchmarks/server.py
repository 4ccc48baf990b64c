"""Benchmark: a Tornado server doing real work, unprofiled vs rolling profiles at 1 (a control), 100 and 1000 Hz.

A closed-loop loopback load generator (a fixed number of keep-alive
connections, each sending its next request when the previous answer is in)
measures requests per second and p99 latency. The configurations are
measured interleaved, round after round, each on a fresh server process, so
a slow moment of the machine hits them all alike; the table shows medians
over the rounds and the ratios to the unprofiled server.

Beside them, from the 1 s windows each server wrote: the snapshots taken
against those asked (``samples_taken`` / ``samples_asked`` summed over the
windows) and the slowest effective interval the budget set. "100 Hz, budget"
runs with ``plop.start``'s default 1% overhead budget; the others without one.

    python benchmarks/server.py [--rounds 4] [--seconds 3] [--connections 8]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from plop import formats  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
#: "1" is a control: plop's whole machinery (writer thread, windows, handler)
#: at one sample a second, whose distance from "off" shows how much of a
#: difference this machine's noise makes on its own.
CONFIGS = ["off", "1", "100", "100b", "1000"]
NAMES = {"off": "unprofiled", "1": "rolling real 1 Hz", "100": "rolling real 100 Hz",
         "100b": "100 Hz, budget 1%", "1000": "rolling real 1000 Hz"}


async def _client(port: int, deadline: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
    finally:
        writer.close()


async def load(port: int, seconds: float, connections: int) -> tuple[float, float]:
    latencies: list[float] = []
    start = time.perf_counter()
    await asyncio.gather(*(_client(port, start + seconds, latencies) for _ in range(connections)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return len(latencies) / elapsed, p99


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc (clock ticks)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(config: str, datadir: str, seconds: float, connections: int,
            warmup: float) -> tuple[float, float, float]:
    """One fresh server under load: (requests/s, p99 latency, server CPU seconds per request)."""
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "_server_app.py"), config, datadir],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        asyncio.run(load(port, warmup, connections))
        cpu0 = _cpu_seconds(proc.pid)
        rps, p99 = asyncio.run(load(port, seconds, connections))
        cpu = _cpu_seconds(proc.pid) - cpu0
        return rps, p99, cpu / max(1.0, rps * seconds)
    finally:
        proc.terminate()
        proc.wait(30)


def window_rates(datadir: str) -> tuple[int, int, float]:
    """(snapshots taken, snapshots asked, slowest effective interval) over the windows in ``datadir``."""
    taken = asked = 0
    slowest = 0.0
    for name in os.listdir(datadir):
        meta = formats.load(os.path.join(datadir, name)).metadata
        taken += meta.get("samples_taken", 0)
        asked += meta.get("samples_asked", 0)
        slowest = max(slowest, meta.get("effective_interval", 0.0))
    return taken, asked, slowest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args()
    from plop.collector import Sampler

    results: dict[str, list[tuple[float, float, float]]] = {c: [] for c in CONFIGS}
    rates: dict[str, list[tuple[int, int, float]]] = {c: [] for c in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = CONFIGS[r % len(CONFIGS):] + CONFIGS[:r % len(CONFIGS)]  # rotate who goes first
            for config in order:
                datadir = os.path.join(tmp, "%s-%d" % (config, r))
                os.mkdir(datadir)
                results[config].append(measure(config, datadir, args.seconds, args.connections, args.warmup))
                rates[config].append(window_rates(datadir))
        windows = sum(len(files) for _d, _s, files in os.walk(tmp))
    print("plop server benchmark: %d rounds x %g s, %d connections, sampler %s, %d CPUs, %d window files"
          % (args.rounds, args.seconds, args.connections, Sampler.__module__, os.cpu_count() or 0, windows))
    print("ratios are medians of each round's ratio to the unprofiled server measured in the same round;")
    print("snapshots: taken / asked over every window of every round; slowest: the longest interval the budget set")
    print("%-22s %8s %8s %12s %9s %8s %10s %17s %9s" % (
        "configuration", "req/s", "p99 ms", "CPU ms/req", "req/s x", "p99 x", "CPU/req x", "snapshots", "slowest"))
    base = results["off"]
    for config in CONFIGS:
        rows = results[config]

        def ratio(i: int) -> float:
            return statistics.median(row[i] / b[i] for row, b in zip(rows, base))

        taken = sum(t for t, _a, _s in rates[config])
        asked = sum(a for _t, a, _s in rates[config])
        slowest = max(s for _t, _a, s in rates[config])
        snapshots = "%d/%d %3.0f%%" % (taken, asked, 100.0 * taken / asked) if asked else "-"
        print("%-22s %8.0f %8.2f %12.3f %9.3f %8.3f %10.3f %17s %9s" % (
            NAMES[config],
            statistics.median(x[0] for x in rows),
            statistics.median(x[1] for x in rows) * 1000,
            statistics.median(x[2] for x in rows) * 1000,
            ratio(0), ratio(1), ratio(2), snapshots, "%.1f ms" % (slowest * 1000) if asked else "-"))


if __name__ == "__main__":
    main()
