"""One measured run for benchmarks/overhead.py, in a fresh process.

    python -S _overhead_workload.py PROFILER WORKLOAD RATE SCALE

PROFILER says what this process does to profile itself:
  none     nothing: the baseline, and the process py-spy records from outside
  new      plop's Collector(1/RATE, mode="real") from this checkout (its
           sampler thread; the parent sets PLOP_PURE_PYTHON=1 for the pure one)
  signal   the same call into the signal sampler of commit 062fc34 (the
           parent puts its extracted, built copy first on PYTHONPATH)
  plop040  plop 0.4.0's Collector(1/RATE, mode="real"), start(), stop(), as
           its own main() drives it
WORKLOAD is
  pool     the issue's program: ThreadPoolExecutor(2) maps burn(3_000_000)
           over 8 items while the main thread waits for the results
  main     the main thread computes in pure Python ~30 frames deep, ~1.5 s
SCALE multiplies the work (1 for a real run; --quick passes less).

Prints one JSON line: wall seconds of the work alone ("wall", for slowdowns),
wall seconds from starting to stopping the profiler ("span"), the process's
CPU (user + sys, every thread) at exit, the profiler's own counters, and
where plop was imported from, so the parent can check it ran the right one.
"""
from __future__ import annotations

import json
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def burn(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def pool(scale: float) -> int:
    with ThreadPoolExecutor(2) as ex:
        return sum(ex.map(burn, [int(3_000_000 * scale)] * 8))


def step(x: int) -> int:
    for _ in range(4):
        x = (x * 31 + 7) % 1000003
    return x


def leaf_loop(n: int) -> int:
    x = 1
    for i in range(n):
        x = step(x ^ i)
    return x


def descend(levels: int, n: int) -> int:
    """Run the loop `levels` frames further down: a real program's stack is not 3 deep."""
    if levels <= 0:
        return leaf_loop(n)
    return descend(levels - 1, n)


def main_busy(scale: float) -> int:
    # ~1.5 s on the benchmark machine (Python 3.11, one vCPU)
    return sum(descend(26, int(500_000 * scale)) for _ in range(10))


WORKLOADS = {"pool": pool, "main": main_busy}


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_measured(work, scale: float) -> float:
    """The work py-spy's samples are counted in (by this function's name)."""
    t0 = time.perf_counter()
    work(scale)
    return time.perf_counter() - t0


def main() -> None:
    profiler, workload, rate, scale = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    work = WORKLOADS[workload]
    out: dict = {"profiler": profiler, "workload": workload, "rate": rate}
    if profiler == "none":
        t0 = time.perf_counter()
        out["wall"] = run_measured(work, scale)
        out["span"] = time.perf_counter() - t0
    elif profiler in ("new", "signal", "plop040"):
        import plop.collector

        out["module"] = plop.collector.__file__
        collector = plop.collector.Collector(interval=1.0 / rate, mode="real")
        if profiler == "new":
            out["sampler"] = plop.collector.Sampler.__module__
        t0 = time.perf_counter()
        if profiler == "plop040":
            collector.start(duration=3600)
        else:
            collector.start()
        out["wall"] = run_measured(work, scale)
        collector.stop()
        out["span"] = time.perf_counter() - t0
        out["samples"] = collector.samples_taken
        if profiler == "new":
            out["sampler_cpu_time"] = collector.sampler_cpu_time
            out["gil_wait"] = collector.gil_wait
            out["late"] = collector.late
            # snapshots the main thread took itself (the compiled sampler on 3.11)
            out["inline"] = getattr(collector._sampler, "inline", 0)
        else:
            out["sample_time"] = collector.sample_time
    else:
        raise SystemExit(f"unknown profiler {profiler!r}")
    out["cpu_exit"] = cpu_now()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
