"""One measurement for benchmarks/overhead.py, in a fresh process.

    python -S _overhead_workload.py CONFIG WORKLOAD RATE ITERATIONS

CONFIG is one of
  baseline  no profiler
  floor     a Python signal handler that only counts its calls, at RATE
  plop040   plop 0.4.0's Collector in "real" mode (its own handler); the parent
            puts plop 0.4.0 first on PYTHONPATH, and it is the only plop here
  pure      plop's pure-Python Sampler, its own thread sampling at RATE
  c         plop's compiled Sampler, its own thread sampling at RATE
  c_cpu     the compiled Sampler with track_cpu=True (as plop.collector runs it)
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
    CPU time, the work done by all threads and the samples taken so far by
    the profiler and by the floor handler, then calls switch(state) to run
    the next slice in another state. The states cycle in groups, each group
    a rotation of `states` (e.g. on, floor, off / floor, off, on / off, on,
    floor / ...), so that every group measures all states under the same
    machine conditions.
    """

    def __init__(self, threads: int, counters, slice_s: float, states=("off",), switch=None):
        self.progress = [0] * threads
        self.counters = counters  # () -> (profiler samples, floor samples)
        self.slice_s = slice_s
        self.states = list(states)
        self.switch = switch
        self.marks: list[tuple] = []
        self.next = 0.0

    def mark(self) -> None:
        n = len(self.states)
        i = len(self.marks)
        group, k = divmod(i, n)
        state = self.states[(k + group) % n]
        if self.switch is not None:
            self.switch(state)
        now = time.perf_counter()
        self.marks.append((now, cpu_seconds(), sum(self.progress), *self.counters(), state))
        self.next = now + self.slice_s

    def slices(self) -> list[tuple]:
        """(wall, cpu, work, profiler samples, floor samples, state) per complete slice."""
        return [(b[0] - a[0], b[1] - a[1], b[2] - a[2], b[3] - a[3], b[4] - a[4], a[5])
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
        # Done with its share, the main thread keeps slicing (and running
        # signal handlers) until the others are done too.
        while any(t.is_alive() for t in threads):
            time.sleep(0.002)
            if time.perf_counter() >= meter.next:
                meter.mark()
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
    handler = None  # the profiler's signal handler

    floor_calls = [0]

    def floor(signum, frame, calls=floor_calls):
        calls[0] += 1

    def timer(on: bool) -> None:
        signal.setitimer(TIMER, interval if on else 0, interval if on else 0)

    if config == "baseline":
        pass
    elif config == "floor":
        pass
    elif config == "plop040":
        import plop.collector
        import plop.platform

        where = plop.collector.__file__
        # Driven the way its own main() does: Collector(...), start(duration),
        # run, stop(). Collector() installs its handler, start() its timer.
        collector = plop.collector.Collector(interval=interval, mode="real")
        collector.start(duration=3600)
        handler = collector.handler

        def timer(on: bool) -> None:  # noqa: F811
            plop.platform.setitimer(plop.platform.ITIMER_REAL, interval if on else 0,
                                    interval if on else 0)

        samples = lambda: collector.samples_taken  # noqa: E731
        inside = lambda: collector.sample_time  # noqa: E731
    elif config in ("pure", "c", "c_cpu"):
        if config == "pure":
            from plop._pysampler import Sampler
        else:
            from plop._sampler import Sampler
        import plop

        where = plop.__file__
        import _thread

        # constructed as plop.collector does for mode="real"; no signal: a thread of its own
        sampler = Sampler(track_cpu=config == "c_cpu", interval=interval, clock=time.CLOCK_MONOTONIC)

        def sampler_on() -> None:
            generation = sampler.arm()
            _thread.start_new_thread(sampler.run, (generation,))
            while not sampler.looping:
                time.sleep(0.0001)

        samples = lambda: sampler.samples_taken  # noqa: E731
        inside = lambda: sampler.sample_time  # noqa: E731
    else:
        raise SystemExit(f"unknown config {config!r}")
    signal.siginterrupt(SIG, False)  # as plop 0.4.0 does

    thread_sampler = config in ("pure", "c", "c_cpu")

    def switch(state: str) -> None:
        timer(False)
        if thread_sampler and sampler.running:
            sampler.stop()
        if state == "on":
            if thread_sampler:
                sampler_on()
                return
            signal.signal(SIG, handler)
        elif state == "floor":
            signal.signal(SIG, floor)
        if state != "off":
            timer(True)

    def stop() -> None:
        if thread_sampler:
            sampler.stop()
        if config == "plop040":
            switch("on")
            collector.stop()  # busy-waits for its handler to see the next signal
        else:
            timer(False)
        # not SIG_DFL: a signal already generated may still be delivered
        # (valgrind delays delivery), and SIGALRM's default action is to exit
        signal.signal(SIG, signal.SIG_IGN)

    threads = 4 if workload == "threads4" else 1
    if len(sys.argv) > 5 and sys.argv[5] == "phases":
        if config == "floor":
            handler = floor
            samples = lambda: floor_calls[0]  # noqa: E731
        return phases(config, workload, iterations, threads, samples,
                      None if config == "baseline" else lambda on: switch("on" if on else "off"),
                      stop, where)

    if config == "baseline":
        states = ["off"]
    elif config == "floor":
        states = ["floor", "off"]
    else:
        states = ["on", "floor", "off"]
    # at least ~5 samples per sampled slice; with threads, the main thread
    # only runs (and marks, and samples) when it holds the GIL
    slice_s = max(0.05 if threads > 1 else 0.01, 5 * interval)
    meter = Meter(threads, lambda: (samples(), floor_calls[0]), slice_s, states,
                  None if config == "baseline" else switch)
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

    With threads, the three other threads are parked at depth 30 (blocked
    in Event.wait()) while the main thread works: the sampler walks the same
    four stacks as with four busy threads, without the GIL hand-offs, whose
    number depends on timing and whose cost would drown the samples'.
    """
    import os

    meter = Meter(1, lambda: (0, 0), float("inf"))
    meter.next = float("inf")
    release = threading.Event()
    parked = []
    if threads > 1:
        def park(depths: list) -> None:
            at_depth_call(30, release.wait, depths)

        parked = [threading.Thread(target=park, args=([],)) for _ in range(threads - 1)]
        for t in parked:
            t.start()
        time.sleep(0.5)  # let them reach Event.wait()

    def main_work(n: int) -> None:
        run_workload("depth30" if threads > 1 else workload, n, meter)

    if toggle is not None:
        toggle(True)
    main_work(max(UNIT, iterations // 4))
    if toggle is not None:
        toggle(False)
    os.getppid()  # dump 1: start-up, set-up and warm-up
    main_work(iterations)
    os.getppid()  # dump 2: phase A
    n0 = samples()
    if toggle is not None:
        toggle(True)
    main_work(iterations)
    if toggle is not None:
        toggle(False)
    n = samples() - n0
    os.getppid()  # dump 3: phase B
    release.set()
    for t in parked:
        t.join()
    stop()
    json.dump({"config": config, "workload": workload, "samples": n, "module": where}, sys.stdout)
    sys.stdout.write("\n")


def at_depth_call(depth: int, fn, report: list) -> None:
    """Call fn() with `depth` frames on the stack."""
    base = stack_depth() + 1
    levels = max(0, depth - base - 1)
    report.append(base + levels + 1)
    descend(levels, fn)


if __name__ == "__main__":
    main()
