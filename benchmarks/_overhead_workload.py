"""One measurement for benchmarks/overhead.py, in a fresh process.

    python -S _overhead_workload.py CONFIG WORKLOAD RATE ITERATIONS

CONFIG is one of
  baseline  no profiler
  floor     a Python signal handler that only counts its calls, at RATE
  plop040   plop 0.4.0's Collector in "real" mode (its own handler); the parent
            puts plop 0.4.0 first on PYTHONPATH, and it is the only plop here
  pure      plop's pure-Python Sampler installed as the SIGALRM handler
  c         plop's compiled Sampler installed as the SIGALRM handler
  c_cpu     the compiled Sampler with track_cpu=True
WORKLOAD is depth30, depth150 (CPU-bound pure Python with that many frames on
the stack) or threads4 (the main thread and three others each running a
quarter of the depth-30 work). ITERATIONS is the total amount of work.

Prints one JSON object: CPU seconds (user + sys, all threads) and wall seconds
spent in the workload, the samples taken during it and, for the plop rows, the
time the handler measured inside itself.
"""
from __future__ import annotations

import json
import resource
import signal
import sys
import threading
import time

SIG = signal.SIGALRM
TIMER = signal.ITIMER_REAL


def leaf(i: int) -> int:
    x = i
    for _ in range(6):
        x = (x * 31 + 7) % 1000003
    return x


def work(iterations: int) -> int:
    acc = 0
    for i in range(iterations):
        acc += leaf(i)
    return acc


def stack_depth() -> int:
    f, n = sys._getframe(1), 0
    while f is not None:
        n += 1
        f = f.f_back
    return n


def descend(levels: int, fn, *args):
    """Call fn(*args) with `levels` more frames on the stack."""
    if levels <= 0:
        return fn(*args)
    return descend(levels - 1, fn, *args)


def at_depth(depth: int, iterations: int, report: list) -> None:
    """Run work() so that leaf() executes with `depth` frames on the stack."""
    # frames below leaf(): this one's callers, this one, descend()s, work()
    base = stack_depth() + 1  # counting this frame
    levels = max(0, depth - base - 2)  # leaves room for work() and leaf()
    report.append(base + levels + 2)
    descend(levels, work, iterations)


def run_workload(workload: str, iterations: int) -> int:
    depths: list[int] = []
    if workload == "depth30":
        at_depth(30, iterations, depths)
    elif workload == "depth150":
        at_depth(150, iterations, depths)
    elif workload == "threads4":
        # The main thread is one of the four: Python runs signal handlers in
        # the main thread only, and one blocked in join() with SA_RESTART
        # (set by plop 0.4.0) would not run them until the join returned.
        threads = [threading.Thread(target=at_depth, args=(30, iterations // 4, depths))
                   for _ in range(3)]
        for t in threads:
            t.start()
        at_depth(30, iterations // 4, depths)
        for t in threads:
            t.join()
    else:
        raise SystemExit(f"unknown workload {workload!r}")
    return max(depths)


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    config, workload, rate, iterations = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    interval = 1.0 / rate if rate else 0.0
    samples = lambda: 0  # noqa: E731
    inside = lambda: None  # noqa: E731
    stop = lambda: None  # noqa: E731
    where = None

    def stop_timer() -> None:
        signal.setitimer(TIMER, 0, 0)
        signal.signal(SIG, signal.SIG_DFL)

    if config == "baseline":
        pass
    elif config == "floor":
        calls = [0]

        def handler(signum, frame, calls=calls):
            calls[0] += 1

        signal.signal(SIG, handler)
        signal.siginterrupt(SIG, False)  # as plop 0.4.0 does
        signal.setitimer(TIMER, interval, interval)
        samples = lambda: calls[0]  # noqa: E731
        stop = stop_timer
    elif config == "plop040":
        import plop.collector

        where = plop.collector.__file__
        # Driven the way its own main() does: start(duration), run, stop().
        collector = plop.collector.Collector(interval=interval, mode="real")
        collector.start(duration=3600)
        samples = lambda: collector.samples_taken  # noqa: E731
        inside = lambda: collector.sample_time  # noqa: E731
        stop = collector.stop  # busy-waits for the next signal
    elif config in ("pure", "c", "c_cpu"):
        if config == "pure":
            from plop._pysampler import Sampler
        else:
            from plop._sampler import Sampler
        import plop

        where = plop.__file__
        sampler = Sampler(track_cpu=config == "c_cpu")
        signal.signal(SIG, sampler)
        signal.siginterrupt(SIG, False)
        signal.setitimer(TIMER, interval, interval)
        samples = lambda: sampler.samples_taken  # noqa: E731
        inside = lambda: sampler.sample_time  # noqa: E731
        stop = stop_timer
    else:
        raise SystemExit(f"unknown config {config!r}")

    wall0, cpu0 = time.perf_counter(), cpu_seconds()
    depth = run_workload(workload, iterations)
    cpu1, wall1 = cpu_seconds(), time.perf_counter()
    n, t_in = samples(), inside()
    stop()
    json.dump({"config": config, "workload": workload, "rate": rate,
               "cpu": cpu1 - cpu0, "wall": wall1 - wall0, "samples": n,
               "inside": t_in, "depth": depth, "module": where}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
