"""The collector: a sampler thread that counts every thread's stack.

A thread of plop's own (:mod:`plop._sampler`, compiled where possible, or its
pure twin :mod:`plop._pysampler`) wakes every ``interval``, takes the GIL,
walks every thread's stack and counts identical stacks. All expensive work
(resolving line numbers, naming threads, building a :class:`~plop.profile.Profile`)
is done once per *distinct* stack when the profile is read, never per sample.

Earlier versions sampled from a timer signal. Python runs signal handlers on
the main thread only, so while the main thread waited (``join()``,
``future.result()``, a queue, a lock, ``select``) nothing was sampled: a
thread pool's profile came from a handful of snapshots. The sampler thread
samples every thread at the asked rate whatever the main thread does, and it
uses no signal, so the program keeps all of them.

Modes say which clock paces the snapshots and which view a profile opens in:

``prof``
    process CPU time (user + system): the sampler wakes as the process spends
    CPU, and the profile opens in its CPU view: where the CPU goes.
``virtual``
    the same clock (Linux has no clock of user time alone to wait on), kept
    for the original plop's users.
``real``
    wall-clock time: sleeping and blocked threads are seen too, which is what
    a server waiting on I/O needs; the profile opens in its wall view.

Every mode records both views in one pass: each sample counts its weight
(wall) and, where the thread was on a CPU at the tick, its CPU count.

Usage::

    with Collector(interval=0.005, mode="real") as collector:
        work()
    profile = collector.profile()

``python -m plop.collector script.py`` runs a program under a collector; see
:mod:`plop.runner`.
"""
from __future__ import annotations

import _thread
import bisect
import os
import platform
import socket
import sys
import threading
import time
from types import CodeType
from typing import Any, Callable

from plop.profile import Frame, Profile, StackKey

if os.environ.get("PLOP_PURE_PYTHON"):
    from plop._pysampler import Sampler
else:
    try:
        from plop._sampler import Sampler  # type: ignore[no-redef]
    except ImportError:  # no compiler where plop was installed
        from plop._pysampler import Sampler  # type: ignore[no-redef]

#: mode -> the clock_gettime() clock that paces and weighs its snapshots
MODES: dict[str, int] = {
    "prof": time.CLOCK_PROCESS_CPUTIME_ID,
    "virtual": time.CLOCK_PROCESS_CPUTIME_ID,
    "real": time.CLOCK_MONOTONIC,
}

#: mode -> its clock in seconds, for ``start(duration=...)``
_CLOCKS: dict[str, Callable[[], float]] = {
    "prof": time.process_time,
    "virtual": time.process_time,
    "real": time.monotonic,
}


class Collector:
    """Samples every thread's stack from a sampler thread of its own.

    ``interval`` is in seconds of the mode's clock. ``track_cpu`` (default
    on) also records, for each sample, whether the thread was on a CPU at the
    tick, so every profile has a CPU view (:meth:`Profile.cpu`).

    Any thread may start and stop a collector.
    """

    def __init__(
        self,
        interval: float = 0.01,
        mode: str = "prof",
        *,
        track_cpu: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(
                "unknown mode %r: choose one of %s" % (mode, ", ".join(sorted(MODES)))
            )
        try:
            interval = float(interval)
        except (TypeError, ValueError):
            raise ValueError("interval must be a number of seconds, not %r" % (interval,)) from None
        if not interval > 0 or interval == float("inf"):
            raise ValueError("interval must be a positive number of seconds, not %r" % interval)
        self.interval = interval
        self.mode = mode
        self.track_cpu = bool(track_cpu)
        self._lock = threading.RLock()
        self._sampler = Sampler(track_cpu=self.track_cpu, interval=interval, clock=MODES[mode])
        self._running = False
        self._start_clock = 0.0
        self._deadline: float | None = None
        self._samples_at_start = 0
        self.start_time: float | None = None
        self.end_time: float | None = None
        self._elapsed = 0.0
        self._run_started = 0.0
        self._root_code: CodeType | None = None
        self._lines: dict[CodeType, tuple[list[int], list[int]]] = {}

    # -- sampling control ------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    def start(self, duration: float | None = None) -> None:
        """Start the sampler thread; with ``duration``, stop after that many seconds of the mode's clock.

        Starting a running collector does nothing. A stopped collector starts
        again and keeps adding to the counts it has (see :meth:`reset`).
        """
        if duration is not None and not float(duration) > 0:
            raise ValueError("duration must be a positive number of seconds, not %r" % (duration,))
        with self._lock:
            if self._running and self._sampler.running:
                return
            sampler = self._sampler
            if duration is not None:
                self._deadline = _CLOCKS[self.mode]() + float(duration)
                self._start_clock = _CLOCKS[self.mode]()
                self._samples_at_start = sampler.samples_taken
                sampler.set_countdown(self._estimate_countdown(), self._check_deadline)
            else:
                self._deadline = None
                sampler.set_countdown(0, None)
            generation = sampler.arm()
            _thread.start_new_thread(sampler.run, (generation,))
            # A new thread needs the GIL to start: while this thread computes
            # it would wait a switch interval. Sampling begins when start() returns.
            deadline = time.monotonic() + 1.0
            while not sampler.looping and time.monotonic() < deadline:
                time.sleep(0.0001)
            self._running = True
            if self.start_time is None:
                self.start_time = time.time()
            self._run_started = time.monotonic()

    def stop(self) -> None:
        """Stop sampling; no snapshot starts after this returns. Stopping a stopped collector does nothing."""
        with self._lock:
            if not self._running:
                return
            self._sampler.stop()
            self._running = False
            self._sampler.set_countdown(0, None)
            self.end_time = time.time()
            self._elapsed += time.monotonic() - self._run_started

    def _estimate_countdown(self) -> int:
        """Samples until the deadline is worth checking again.

        Uses the rate seen so far, aiming a little short so the deadline is
        overshot by at most about one interval.
        """
        assert self._deadline is not None
        clock = _CLOCKS[self.mode]
        now = clock()
        remaining = self._deadline - now
        elapsed = now - self._start_clock
        taken = self._sampler.samples_taken - self._samples_at_start
        rate = taken / elapsed if taken and elapsed > 0 else 1.0 / self.interval
        return max(1, int(remaining * rate * 0.8))

    def _check_deadline(self) -> None:
        """Countdown callback, run on the sampler thread."""
        if self._deadline is None or not self._running:
            return
        if _CLOCKS[self.mode]() >= self._deadline:
            self.stop()
        else:
            self._sampler.set_countdown(self._estimate_countdown(), self._check_deadline)

    def __enter__(self) -> "Collector":
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every sample taken so far (the collector may keep running)."""
        self._sampler.take(True)
        self.start_time = time.time() if self._running else None
        self._elapsed = 0.0
        self._run_started = time.monotonic()

    # -- figures ---------------------------------------------------------------

    @property
    def samples_taken(self) -> int:
        """Snapshots taken (each counts one stack per thread)."""
        return self._sampler.samples_taken

    @property
    def ticks(self) -> int:
        """Intervals the samples stand for: each snapshot is weighted by the intervals
        of the mode's clock since the previous one, so one delayed by a C call
        that held the GIL stands for every tick it covers."""
        return self._sampler.ticks

    @property
    def sample_time(self) -> float:
        """Wall seconds spent inside snapshots, holding the GIL."""
        return self._sampler.sample_time

    @property
    def sampler_cpu_time(self) -> float:
        """CPU seconds the sampler thread used: what sampling costs the process."""
        return self._sampler.thread_cpu_time

    @property
    def gil_wait(self) -> float:
        """Wall seconds from the ticks to the sampler holding the GIL, summed."""
        return self._sampler.gil_wait

    @property
    def late(self) -> int:
        """Snapshots taken more than an interval after their tick (a C call held the GIL)."""
        return self._sampler.late

    @property
    def errors(self) -> int:
        """Exceptions raised while sampling, counted and swallowed."""
        return self._sampler.errors

    @property
    def duration(self) -> float:
        """Wall-clock seconds the collector has been sampling."""
        if self._running:
            return self._elapsed + time.monotonic() - self._run_started
        return self._elapsed

    # -- results ---------------------------------------------------------------

    def set_root(self, code: CodeType | None) -> None:
        """Drop stack frames above (and including) ``code`` from the profile.

        The runner uses this so a profiled script's stacks start at its own
        ``<module>`` frame instead of at plop's machinery.
        """
        self._root_code = code

    def metadata(self, figures: dict[str, Any] | None = None) -> dict[str, Any]:
        """What a profile's reader needs to know about how it was taken.

        ``figures`` are the sampler's counters as :meth:`profile` took them
        together with the counts; without them the counters are read now.
        """
        if figures is None:
            figures = {"samples_taken": self.samples_taken, "ticks": self.ticks,
                       "sample_time": self.sample_time, "thread_cpu_time": self.sampler_cpu_time,
                       "gil_wait": self.gil_wait, "late": self.late, "errors": self.errors}
        return {
            "mode": self.mode,
            "interval": self.interval,
            "start_time": self.start_time,
            "duration": round(self.duration, 6),
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "python_version": platform.python_version(),
            "python_implementation": platform.python_implementation(),
            "command": list(sys.argv),
            "samples_taken": figures["samples_taken"],
            "ticks": figures["ticks"],
            "sample_time": round(figures["sample_time"], 6),
            "sampler_cpu_time": round(figures["thread_cpu_time"], 6),
            "gil_wait": round(figures["gil_wait"], 6),
            "late": figures["late"],
            "errors": figures["errors"],
            "track_cpu": self.track_cpu,
            "sampler": Sampler.__module__,
        }

    def profile(self, *, reset: bool = False) -> Profile:
        """The samples so far as a :class:`Profile`, without disturbing sampling.

        With ``reset``, the counts are taken and emptied in one step, so a
        caller can cut a running collection into consecutive windows with no
        sample counted twice or lost.
        """
        figures, entries = self._sampler.take(reset)
        metadata = self.metadata(figures)
        samples: dict[StackKey, int] = {}
        cpu: dict[StackKey, int] | None = {} if self.track_cpu else None
        frames: dict[tuple[CodeType, int], Frame] = {}
        names: dict[Any, str] = {}
        root = self._root_code
        for thread, raw, wall, on_cpu in entries:
            if root is not None:
                raw = _below_root(raw, root)
            stack = []
            for pair in raw:
                frame = frames.get(pair)
                if frame is None:
                    frame = frames[pair] = self._frame(*pair)
                stack.append(frame)
            name = names.get(thread)
            if name is None:
                name = names[thread] = _thread_name(thread)
            key = (name, tuple(stack))
            samples[key] = samples.get(key, 0) + wall
            if cpu is not None and on_cpu:
                cpu[key] = cpu.get(key, 0) + on_cpu
        return Profile(samples, metadata, cpu)

    def _frame(self, code: CodeType, lasti: int) -> Frame:
        # The qualified name (``ProductListHandler.get``, ``outer.<locals>.inner``): three
        # handlers' ``get`` are three functions, and a reader should see which is which.
        return Frame(code.co_filename, code.co_qualname, code.co_firstlineno, self._line(code, lasti))

    def _line(self, code: CodeType, lasti: int) -> int:
        """The source line of bytecode offset ``lasti`` (what ``frame.f_lineno`` would say)."""
        table = self._lines.get(code)
        if table is None:
            starts, lines = [], []
            for start, _end, line in code.co_lines():
                starts.append(start)
                lines.append(line if line is not None else -1)
            table = self._lines[code] = (starts, lines)
        starts, lines = table
        i = bisect.bisect_right(starts, lasti) - 1
        if lasti < 0 or i < 0:
            return code.co_firstlineno
        # Offsets without a line of their own (None in co_lines) belong to the
        # line before them, as in tracebacks.
        while i > 0 and lines[i] < 0:
            i -= 1
        return lines[i] if lines[i] >= 0 else code.co_firstlineno

    @property
    def stack_counts(self) -> dict[tuple[tuple[str, int, str], ...], int]:
        """The original plop's view: ``{((filename, lineno, funcname), ...): count}``, innermost first."""
        return self.profile().stack_counts()


def _below_root(raw: tuple[tuple[CodeType, int], ...], root: CodeType) -> tuple[tuple[CodeType, int], ...]:
    for i, (code, _lasti) in enumerate(raw):
        if code is root:
            return raw[i + 1 :]
    return raw


def _thread_name(thread: Any) -> str:
    if isinstance(thread, threading.Thread):
        return thread.name
    return "thread-%d" % thread


class CollectorFormatter:
    """Writes a collector's profile in one file format (the original plop's API)."""

    format_name = "plop"

    def format(self, collector: Collector) -> str:
        from plop import formats

        return formats.dumps(self._profile(collector), self.format_name).decode("utf-8")

    def store(self, collector: Collector, filename: str) -> None:
        from plop import formats

        formats.dump(self._profile(collector), filename, self.format_name)

    def _profile(self, collector: Collector) -> Profile:
        return collector.profile()


class PlopFormatter(CollectorFormatter):
    """plop's native format; ``max_stacks`` keeps only the most frequent stacks (default: all)."""

    format_name = "plop"

    def __init__(self, max_stacks: int | None = None) -> None:
        self.max_stacks = max_stacks

    def _profile(self, collector: Collector) -> Profile:
        profile = collector.profile()
        if self.max_stacks is not None:
            return profile.top_stacks(self.max_stacks)
        return profile


class FlamegraphFormatter(CollectorFormatter):
    """Collapsed stacks for flamegraph.pl and speedscope."""

    format_name = "flamegraph"


def main(argv: list[str] | None = None) -> None:
    """``python -m plop.collector``: run a program under the collector."""
    from plop.runner import main as run_main

    run_main(argv)


if __name__ == "__main__":
    main()
