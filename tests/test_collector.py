"""The Collector: starting and stopping, sampling accuracy, threads and results.

Sampling is statistical: tests run until enough samples have been taken (never
for a fixed time) and compare shares with tolerances of several standard
deviations of the binomial error for that many samples.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from typing import Callable

import pytest

from plop.collector import Collector
from plop.profile import Profile

pytestmark = pytest.mark.usefixtures("sampler_class")


def burn(units: int) -> int:
    """Pure-Python CPU work proportional to ``units``."""
    total = 0
    for i in range(units * 2000):
        total += i * i
    return total


def burn_a(units: int) -> int:
    return burn(units)


def burn_b(units: int) -> int:
    return burn(units)


def run_until(predicate, timeout: float = 30.0, work=lambda: burn(1)) -> None:
    """Do ``work`` until ``predicate()`` holds; fail (not hang) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in %s s" % timeout)
        work()


def share_counts(profile: Profile, names: list[str], keep: Callable[[str], bool]) -> tuple[dict[str, float], int]:
    """Fraction of the samples of the threads ``keep`` accepts whose stack contains each function name,
    and how many samples those threads have."""
    total = 0
    hits = dict.fromkeys(names, 0)
    for (t, stack), n in profile.samples.items():
        if not keep(t):
            continue
        total += n
        funcs = {f.funcname for f in stack}
        for name in names:
            if name in funcs:
                hits[name] += n
    assert total, "no samples of the threads asked for"
    return {name: hits[name] / total for name in names}, total


def shares(profile: Profile, names: list[str], thread: str | None = None) -> dict[str, float]:
    """Fraction of samples (of ``thread``, or of every thread) whose stack contains each function name."""
    return share_counts(profile, names, lambda t: thread is None or t == thread)[0]


def tolerance(p: float, n: int, sigmas: float = 5.0) -> float:
    """Half-width of a generous binomial confidence band, plus a small bias allowance."""
    return sigmas * math.sqrt(p * (1 - p) / n) + 0.03


# -- arguments and lifecycle -------------------------------------------------------


@pytest.mark.parametrize("mode", ["cpu", "", "PROF", None])
def test_unknown_mode_is_a_value_error(mode):
    with pytest.raises(ValueError, match="unknown mode"):
        Collector(mode=mode)


@pytest.mark.parametrize("interval", [0, -0.01, float("nan"), float("inf"), "x"])
def test_bad_interval_is_a_value_error(interval):
    with pytest.raises(ValueError, match="interval"):
        Collector(interval=interval)


def test_start_and_stop_from_any_thread():
    collector = Collector(interval=0.001, mode="real")
    t = threading.Thread(target=collector.start)
    t.start()
    t.join()
    assert collector.running
    run_until(lambda: collector.samples_taken >= 10)
    t = threading.Thread(target=collector.stop)
    t.start()
    t.join()
    assert not collector.running
    taken = collector.samples_taken
    burn(50)
    assert collector.samples_taken == taken


def test_start_stop_twice_and_stop_unstarted_are_harmless():
    Collector().stop()
    collector = Collector(interval=0.001, mode="real")
    collector.start()
    collector.start()
    run_until(lambda: collector.samples_taken >= 10)
    collector.stop()
    collector.stop()
    taken = collector.samples_taken
    burn(50)
    assert collector.samples_taken == taken


@pytest.mark.parametrize("mode", ["prof", "virtual", "real"])
def test_uses_no_signal_and_leaves_the_programs_own_alone(mode):
    """The program keeps every signal and timer: plop's ticks never reach its handlers."""
    seen = []
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGALRM, signal.SIGPROF, signal.SIGVTALRM)}
    old = signal.signal(signal.SIGALRM, lambda signum, frame: seen.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        with Collector(interval=0.001, mode=mode) as collector:
            run_until(lambda: collector.samples_taken >= 50 and len(seen) >= 3)
            assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)
            assert signal.getitimer(signal.ITIMER_VIRTUAL) == (0.0, 0.0)
            assert signal.getitimer(signal.ITIMER_REAL)[1] == pytest.approx(0.05)
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
    assert set(seen) == {signal.SIGALRM}
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers


def test_context_manager():
    with Collector(interval=0.001, mode="real") as collector:
        assert collector.running
        run_until(lambda: collector.samples_taken >= 10)
    assert not collector.running
    # One thread, in every sample: its counts add up to the samples' weights.
    assert collector.profile().total_samples == collector.ticks > 0


def test_stop_from_another_thread_returns_at_once():
    collector = Collector(interval=0.001, mode="real")
    collector.start()
    run_until(lambda: collector.samples_taken >= 10)
    took = []

    def stopper():
        t0 = time.monotonic()
        collector.stop()
        took.append(time.monotonic() - t0)

    t = threading.Thread(target=stopper)
    t.start()
    t.join(10)
    assert took and took[0] < 1.0, "stop() blocked"
    assert not collector.running
    taken = collector.samples_taken
    burn(50)
    assert collector.samples_taken == taken


@pytest.mark.parametrize("mode,clock", [("real", time.monotonic), ("prof", time.process_time)])
def test_duration_stops_on_the_timers_clock(mode, clock):
    collector = Collector(interval=0.002, mode=mode)
    t0 = clock()
    collector.start(duration=0.3)
    run_until(lambda: not collector.running, timeout=30)
    spent = clock() - t0
    # Stopped no earlier than asked, on the mode's own clock, and not long after
    # (the check runs on the sampler thread, so it overshoots by a few samples).
    assert spent >= 0.3
    assert spent < 2.0
    taken = collector.samples_taken
    assert taken > 0
    burn(50)
    assert collector.samples_taken == taken


def test_bad_duration_is_a_value_error():
    with pytest.raises(ValueError, match="duration"):
        Collector(mode="real").start(duration=0)


# -- what is sampled ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["prof", "virtual", "real"])
def test_cpu_shares_are_accurate(mode):
    """Two functions busy for 3/4 and 1/4 of the time come out in those shares."""
    collector = Collector(interval=0.001, mode=mode)
    collector.start()

    def work():
        burn_a(3)
        burn_b(1)

    run_until(lambda: collector.samples_taken >= 400, work=work)
    collector.stop()
    profile = collector.profile()
    n = profile.for_thread("MainThread").total_samples
    got = shares(profile, ["burn_a", "burn_b"], thread="MainThread")
    assert got["burn_a"] == pytest.approx(0.75, abs=tolerance(0.75, n))
    assert got["burn_b"] == pytest.approx(0.25, abs=tolerance(0.25, n))


def test_every_thread_is_sampled_with_its_name():
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            burn(1)

    threads = [threading.Thread(target=worker, name="worker-%d" % i) for i in range(3)]
    for t in threads:
        t.start()
    try:
        with Collector(interval=0.001, mode="real") as collector:
            run_until(lambda: collector.samples_taken >= 100)
    finally:
        stop.set()
        for t in threads:
            t.join()
    profile = collector.profile()
    names = set(profile.threads())
    assert {"MainThread", "worker-0", "worker-1", "worker-2"} <= names
    # One stack per thread per sample, so every thread running for the whole
    # collection has the same total.
    main_total = profile.for_thread("MainThread").total_samples
    for t in threads:
        assert profile.for_thread(t.name).total_samples == pytest.approx(main_total, rel=0.05)
    for (thread, stack), _n in profile.samples.items():
        if thread.startswith("worker"):
            assert stack[-1].funcname in ("burn", "worker", "Event.is_set")


def sleep_phase(seconds: float) -> None:
    time.sleep(seconds)


def burn_phase(seconds: float) -> None:
    """Burn ``seconds`` of this thread's own CPU time (longer in wall time on a busy machine)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        burn(1)


def test_wall_view_shows_sleep_and_cpu_view_only_burning():
    """A thread that sleeps half the time and burns the other half (the issue's test)."""
    stop = threading.Event()

    def half_busy():
        while not stop.is_set():
            burn_phase(0.05)
            sleep_phase(0.05)

    t = threading.Thread(target=half_busy, name="half")
    t.start()
    try:
        with Collector(interval=0.002, mode="real") as collector:
            run_until(lambda: collector.samples_taken >= 400, work=lambda: time.sleep(0.005))
    finally:
        stop.set()
        t.join()
    wall = collector.profile().for_thread("half")
    cpu = collector.profile().cpu().for_thread("half")
    n_wall, n_cpu = wall.total_samples, cpu.total_samples
    wall_shares = shares(wall, ["burn_phase", "sleep_phase"])
    cpu_shares = shares(cpu, ["burn_phase", "sleep_phase"])
    # Wall time: both halves (burning takes longer than 20 ms of wall time when
    # the machine is busy, so the split is not exactly even).
    assert wall_shares["sleep_phase"] > 0.1
    assert wall_shares["burn_phase"] > 0.25
    assert wall_shares["sleep_phase"] + wall_shares["burn_phase"] > 0.95
    # CPU time: only the burning half (the pure sampler charges the end of
    # each burn to the first sample of the sleep after it: about one in 25).
    assert cpu_shares["burn_phase"] >= 0.85
    assert cpu_shares["sleep_phase"] <= 0.15
    assert n_cpu < n_wall


def test_cpu_counts_estimate_each_threads_cpu_time():
    """On-CPU counts x interval match the CPU time each thread really used."""
    stop = threading.Event()
    used = {}

    def sleeper():
        t0 = time.thread_time()
        while not stop.is_set():
            time.sleep(0.001)
        used["sleeper"] = time.thread_time() - t0

    t = threading.Thread(target=sleeper, name="sleeper")
    t.start()
    collector = Collector(interval=0.002, mode="real")
    collector.start()
    main0, wall0 = time.thread_time(), time.monotonic()
    run_until(lambda: collector.samples_taken >= 300)
    main_cpu, wall = time.thread_time() - main0, time.monotonic() - wall0
    collector.stop()
    stop.set()
    t.join()
    profile = collector.profile()
    n = profile.for_thread("MainThread").total_samples
    assert profile.for_thread("sleeper").total_samples >= 0.9 * n  # wall: always there
    cpu = profile.cpu()
    expected_main = main_cpu / wall  # below 1 when other processes share the cores
    got_main = cpu.for_thread("MainThread").total_samples / n
    assert got_main == pytest.approx(expected_main, abs=tolerance(expected_main, n))
    assert cpu.for_thread("sleeper").total_samples / n <= used["sleeper"] / wall + 0.05
    assert cpu.metadata["view"] == "cpu"


@pytest.mark.parametrize("mode", ["prof", "virtual", "real"])
def test_every_mode_has_a_cpu_view(mode):
    with Collector(interval=0.001, mode=mode) as collector:
        run_until(lambda: collector.samples_taken >= 100)
    cpu = collector.profile().cpu()
    assert cpu.metadata["view"] == "cpu"
    # The main thread burned all along: (nearly) every sample of it was on CPU.
    assert cpu.for_thread("MainThread").total_samples >= 0.7 * collector.profile().for_thread(
        "MainThread").total_samples


def test_without_track_cpu_there_is_no_cpu_table():
    with Collector(interval=0.001, mode="real", track_cpu=False) as collector:
        run_until(lambda: collector.samples_taken >= 5)
    with pytest.raises(ValueError):
        collector.profile().cpu()


def test_frames_carry_function_and_executing_line():
    def outer():
        return inner()

    def inner():
        target = collector.samples_taken + 20
        while collector.samples_taken < target:  # the line being sampled
            pass

    collector = Collector(interval=0.001, mode="real")
    with collector:
        outer()
    profile = collector.profile()
    inner_line = inner.__code__.co_firstlineno + 2
    stacks = [(n, stack) for (_t, stack), n in profile.samples.items()
              if any(f.funcname == inner.__qualname__ for f in stack)]
    assert stacks
    _n, stack = max(stacks, key=lambda item: item[0])
    names = [f.funcname for f in stack]
    top = stack[names.index(inner.__qualname__)]  # qualified: "test_frames_...<locals>.inner"
    assert top.filename == __file__
    assert top.firstlineno == inner.__code__.co_firstlineno
    assert top.lineno in (inner_line, inner_line + 1)
    caller = stack[names.index(inner.__qualname__) - 1]
    assert caller.funcname == outer.__qualname__
    assert caller.lineno == outer.__code__.co_firstlineno + 1
    # Outermost first: the test runner's frames come before ours.
    assert names.index(outer.__qualname__) > names.index("test_frames_carry_function_and_executing_line")


def test_keeps_all_stacks_and_legacy_stack_counts():
    def make(depth):
        if depth:
            return make(depth - 1)
        burn(1)

    with Collector(interval=0.0005, mode="real") as collector:
        run_until(lambda: collector.samples_taken >= 300, work=lambda: [make(d) for d in range(60)])
    profile = collector.profile()
    assert len(profile.samples) > 50  # the original kept only the top 50
    legacy = collector.stack_counts
    assert sum(legacy.values()) == profile.for_thread("MainThread").total_samples + sum(
        n for (t, _), n in profile.samples.items() if t != "MainThread")
    stack = next(iter(legacy))
    filename, lineno, funcname = stack[0]  # innermost first, (file, line, name)
    assert isinstance(filename, str) and isinstance(lineno, int) and isinstance(funcname, str)


def test_profile_reset_cuts_windows_without_losing_samples():
    collector = Collector(interval=0.001, mode="real")
    windows = []
    with collector:
        for _ in range(5):
            target = collector.samples_taken + 30
            run_until(lambda: collector.samples_taken >= target)
            windows.append(collector.profile(reset=True))
    windows.append(collector.profile(reset=True))
    # One thread, present in every sample: the windows add up to every tick.
    assert sum(w.total_samples for w in windows) == collector.ticks
    assert collector.profile().total_samples == 0


def test_metadata():
    with Collector(interval=0.001, mode="real") as collector:
        run_until(lambda: collector.samples_taken >= 5)
    meta = collector.profile().metadata
    assert meta["mode"] == "real"
    assert meta["interval"] == 0.001
    assert meta["pid"] == os.getpid()
    assert meta["samples_taken"] == collector.samples_taken
    assert meta["sample_time"] > 0
    assert meta["duration"] > 0
    assert meta["start_time"] == pytest.approx(time.time(), abs=60)
    assert meta["python_version"] == "%d.%d.%d" % sys.version_info[:3]
    assert meta["hostname"]
    assert meta["command"] == sys.argv


def test_restart_accumulates_and_reset_clears():
    collector = Collector(interval=0.001, mode="real")
    with collector:
        run_until(lambda: collector.samples_taken >= 10)
    first, taken = collector.profile().total_samples, collector.samples_taken
    with collector:
        run_until(lambda: collector.samples_taken >= taken + 10)
    assert collector.profile().total_samples > first
    assert collector.profile().total_samples == collector.ticks
    collector.reset()
    assert collector.profile().total_samples == 0


class ProductListHandler:
    def get(self, collector, n):
        spin_until(collector, n)


class ReportHandler:
    def get(self, collector, n):
        spin_until(collector, n)


def spin_until(collector, n):
    target = collector.samples_taken + n
    while collector.samples_taken < target:
        pass


def test_methods_of_the_same_name_are_told_apart_by_qualified_name():
    """Three handlers' ``get`` are three functions: frames carry ``co_qualname``."""
    collector = Collector(interval=0.001, mode="real")
    with collector:
        ProductListHandler().get(collector, 10)
        ReportHandler().get(collector, 10)
    names = {f.funcname for (_t, stack) in collector.profile().samples for f in stack}
    assert {"ProductListHandler.get", "ReportHandler.get"} <= names
    assert "get" not in names


def test_root_code_strips_outer_frames():
    def harness():
        return program()

    def program():
        target = collector.samples_taken + 10
        while collector.samples_taken < target:
            pass

    collector = Collector(interval=0.001, mode="real")
    collector.set_root(harness.__code__)
    with collector:
        harness()
    stacks = [s for (t, s) in collector.profile().samples if s and s[0].funcname == program.__qualname__]
    assert stacks, "no stack starts at the program's frame"


def test_original_formatters(tmp_path):
    """The original plop's PlopFormatter/FlamegraphFormatter API writes files plop loads."""
    from plop import formats
    from plop.collector import FlamegraphFormatter, PlopFormatter

    def deep(n):
        return deep(n - 1) if n else burn(1)

    with Collector(interval=0.0005, mode="real") as collector:
        run_until(lambda: collector.samples_taken >= 100, work=lambda: [deep(d) for d in range(10)])
    native = tmp_path / "out.plop"
    PlopFormatter().store(collector, str(native))
    assert formats.load(native) == formats.loads(PlopFormatter().format(collector).encode())
    assert formats.load(native).total_samples == collector.profile().total_samples

    flame = tmp_path / "out.flame"
    FlamegraphFormatter().store(collector, str(flame))
    text = FlamegraphFormatter().format(collector)
    assert flame.read_text() == text
    assert formats.sniff(text.encode()) == "collapsed"
    assert sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines()) == collector.profile().total_samples

    top = PlopFormatter(max_stacks=2).format(collector)
    kept = formats.loads(top.encode())
    assert len(kept.samples) == 2 and kept.metadata["max_stacks"] == 2
