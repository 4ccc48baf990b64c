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


UNIT = 50  # iterations between progress updates


def leaf(i: int) -> int:
    x = i
    for _ in range(6):
        x = (x * 31 + 7) % 1000003
    return x


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


class Meter:
    """Slices of the run, as seen by the main thread.

    Every `slice_s` seconds of wall time the main thread records the process
    CPU time, the work done by all threads and the samples taken so far, and,
    when it has a `toggle`, switches the sampling timer on or off for the next
    slice in the pattern on, off, off, on, on, off, ... so that slices 2k and
    2k+1 form an on/off pair taken under the same machine conditions.
    """

    def __init__(self, threads: int, samples, slice_s: float, toggle=None) -> None:
        self.progress = [0] * threads
        self.samples = samples
        self.slice_s = slice_s
        self.toggle = toggle
        self.marks: list[tuple] = []
        self.next = 0.0

    def mark(self) -> None:
        on = self.toggle is not None and ((len(self.marks) + 1) // 2) % 2 == 0
        if self.toggle is not None:
            self.toggle(on)
        now = time.perf_counter()
        self.marks.append((now, cpu_seconds(), sum(self.progress), self.samples(), on))
        self.next = now + self.slice_s

    def slices(self) -> list[tuple]:
        """(wall, cpu, work, samples, timer on) of each complete slice."""
        return [(b[0] - a[0], b[1] - a[1], b[2] - a[2], b[3] - a[3], a[4])
                for a, b in zip(self.marks, self.marks[1:])]


def work(iterations: int, meter: Meter, index: int) -> int:
    acc = 0
    progress = meter.progress
    main = index == 0
    perf_counter = time.perf_counter
    for _ in range(iterations // UNIT):
        for i in range(UNIT):
            acc += leaf(i)
        progress[index] += UNIT
        if main and perf_counter() >= meter.next:
            meter.mark()
    return acc


def at_depth(depth: int, iterations: int, meter: Meter, index: int, report: list) -> None:
    """Run work() so that leaf() executes with `depth` frames on the stack."""
    # frames below leaf(): this one's callers, this one, descend()s, work()
    base = stack_depth() + 1  # counting this frame
    levels = max(0, depth - base - 2)  # leaves room for work() and leaf()
    report.append(base + levels + 2)
    descend(levels, work, iterations, meter, index)


def run_workload(workload: str, iterations: int, meter: Meter) -> int:
    depths: list[int] = []
    if workload == "depth30":
        at_depth(30, iterations, meter, 0, depths)
    elif workload == "depth150":
        at_depth(150, iterations, meter, 0, depths)
    elif workload == "threads4":
        # The main thread is one of the four: Python runs signal handlers in
        # the main thread only, and one blocked in join() with SA_RESTART
        # (set by plop 0.4.0) would not run them until the join returned.
        threads = [threading.Thread(target=at_depth, args=(30, iterations // 4, meter, i, depths))
                   for i in (1, 2, 3)]
        for t in threads:
            t.start()
        at_depth(30, iterations // 4, meter, 0, depths)
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
    where = None

    def toggle(on: bool) -> None:
        signal.setitimer(TIMER, interval if on else 0, interval if on else 0)

    def stop() -> None:
        toggle(False)
        # not SIG_DFL: a signal already generated may still be delivered
        # (valgrind delays delivery), and SIGALRM's default action is to exit
        signal.signal(SIG, signal.SIG_IGN)

    if config == "baseline":
        toggle = None  # noqa: F811
        stop = lambda: None  # noqa: E731
    elif config == "floor":
        calls = [0]

        def handler(signum, frame, calls=calls):
            calls[0] += 1

        signal.signal(SIG, handler)
        signal.siginterrupt(SIG, False)  # as plop 0.4.0 does
        samples = lambda: calls[0]  # noqa: E731
    elif config == "plop040":
        import plop.collector
        import plop.platform

        where = plop.collector.__file__
        # Driven the way its own main() does: Collector(...), start(duration),
        # run, stop(); in between, its timer is paused in the "off" slices
        # (its handler stays installed).
        collector = plop.collector.Collector(interval=interval, mode="real")
        collector.start(duration=3600)

        def toggle(on: bool) -> None:  # noqa: F811
            plop.platform.setitimer(plop.platform.ITIMER_REAL, interval if on else 0,
                                    interval if on else 0)

        def stop() -> None:  # noqa: F811
            toggle(True)
            collector.stop()  # busy-waits for the next signal

        samples = lambda: collector.samples_taken  # noqa: E731
        inside = lambda: collector.sample_time  # noqa: E731
    elif config in ("pure", "c", "c_cpu"):
        if config == "pure":
            from plop._pysampler import Sampler
        else:
            from plop._sampler import Sampler
        import plop

        where = plop.__file__
        sampler = Sampler(track_cpu=config == "c_cpu")
        signal.signal(SIG, sampler)  # what plop.collector does
        signal.siginterrupt(SIG, False)
        samples = lambda: sampler.samples_taken  # noqa: E731
        inside = lambda: sampler.sample_time  # noqa: E731
    else:
        raise SystemExit(f"unknown config {config!r}")

    threads = 4 if workload == "threads4" else 1
    if len(sys.argv) > 5 and sys.argv[5] == "phases":
        return phases(config, workload, iterations, threads, samples, toggle, stop, where)
    # at least ~5 samples per "on" slice; with threads, the main thread only
    # runs (and marks, and samples) when it holds the GIL
    slice_s = max(0.1 if threads > 1 else 0.01, 5 * interval)
    meter = Meter(threads, samples, slice_s, toggle)
    samples0 = samples()
    wall0, cpu0 = time.perf_counter(), cpu_seconds()
    meter.mark()
    depth = run_workload(workload, iterations, meter)
    cpu1, wall1 = cpu_seconds(), time.perf_counter()
    n, t_in = samples(), inside()
    stop()
    json.dump({"config": config, "workload": workload, "rate": rate,
               "cpu": cpu1 - cpu0, "wall": wall1 - wall0, "samples": n - samples0,
               "inside": t_in, "depth": depth, "module": where, "slices": meter.slices()},
              sys.stdout)
    sys.stdout.write("\n")


def phases(config, workload, iterations, threads, samples, toggle, stop, where) -> None:
    """Instruction counting under callgrind --dump-before=getppid.

    A short warm-up with the timer on, then the same work twice: phase A with
    the timer off, phase B with it on. os.getppid() marks the phase
    boundaries, so callgrind's dumps 2 and 3 count exactly phases A and B.
    """
    import os

    if threads > 1:
        # Few GIL hand-offs: their number depends on timing, and each costs
        # thousands of instructions, which would drown the samples' cost.
        sys.setswitchinterval(0.2)
    meter = Meter(threads, samples, float("inf"))
    meter.next = float("inf")
    if toggle is not None:
        toggle(True)
    run_workload(workload, max(UNIT, iterations // 4), meter)
    if toggle is not None:
        toggle(False)
    os.getppid()  # dump 1: start-up, set-up and warm-up
    run_workload(workload, iterations, meter)
    os.getppid()  # dump 2: phase A
    n0 = samples()
    if toggle is not None:
        toggle(True)
    run_workload(workload, iterations, meter)
    if toggle is not None:
        toggle(False)
    n = samples() - n0
    os.getppid()  # dump 3: phase B
    stop()
    json.dump({"config": config, "workload": workload, "samples": n, "module": where}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
