"""The sampler protocol (see plop/_pysampler.py), checked against both samplers.

Every protocol test runs twice: against the pure-Python reference
``plop._pysampler.Sampler`` and the compiled ``plop._sampler.Sampler``. The
compiled one is skipped, with the reason, only when the extension was not
built. Snapshots are mostly taken by hand (``sample(frame)``), so the expected
stacks are known exactly; the sampler thread's own loop is tested at the end.
"""
from __future__ import annotations

import _thread
import contextlib
import gc
import os
import signal
import sys
import threading
import time
import weakref
from types import CodeType

import pytest

from plop._pysampler import Sampler as PySampler

try:
    from plop._sampler import Sampler as CSampler
except ImportError as exc:  # pragma: no cover - depends on the build
    CSampler = None
    _C_MISSING = f"plop._sampler was not built ({exc}); run `pip install -e .` with a C compiler"
else:
    _C_MISSING = ""

needs_c = pytest.mark.skipif(CSampler is None, reason=_C_MISSING or "n/a")

IMPLEMENTATIONS = [
    pytest.param(PySampler, id="pure"),
    pytest.param(CSampler, id="c", marks=needs_c),
]


@pytest.fixture(params=IMPLEMENTATIONS)
def Sampler(request):
    return request.param




@contextlib.contextmanager
def running(sampler):
    """The sampler's own thread, sampling until the block exits."""
    generation = sampler.arm()
    _thread.start_new_thread(sampler.run, (generation,))
    try:
        yield sampler
    finally:
        sampler.stop()


# --------------------------------------------------------------------------
# helpers


def stack_of(frame) -> tuple:
    """(code, f_lasti) pairs of frame and its callers, outermost first."""
    out = []
    while frame is not None:
        out.append((frame.f_code, frame.f_lasti))
        frame = frame.f_back
    return tuple(reversed(out))


def probe(sampler, n: int = 1):
    """Sample the caller's stack n times; return that stack as expected.

    The caller is parked on the call to probe() meanwhile, so its f_lasti and
    those of its callers cannot move between the samples and stack_of().
    """
    frame = sys._getframe(1)
    for _ in range(n):
        sampler.sample(frame)
    return stack_of(frame)


def outer(sampler, n=1):
    return middle(sampler, n)


def middle(sampler, n):
    return inner(sampler, n)


def inner(sampler, n):
    return probe(sampler, n)


def counts(sampler, reset=False) -> dict:
    """take() as {(thread, frames): (wall, cpu)}, checking the shapes on the way."""
    result = {}
    figures, taken = sampler.take(reset)
    assert figures["samples_taken"] == sampler.samples_taken  # nothing sampled in between here
    assert figures["ticks"] == sampler.ticks
    assert isinstance(taken, list)
    for item in taken:
        assert isinstance(item, tuple) and len(item) == 4
        thread, frames, wall, cpu = item
        assert isinstance(frames, tuple)
        for pair in frames:
            assert isinstance(pair, tuple) and len(pair) == 2
            assert isinstance(pair[0], CodeType) and isinstance(pair[1], int)
        assert (thread, frames) not in result
        result[(thread, frames)] = (wall, cpu)
    return result


def for_thread(table: dict, thread) -> dict:
    return {frames: wc for (t, frames), wc in table.items() if t is thread or t == thread}


def _settled_stack(ident: int, innermost: str) -> tuple:
    """Wait until thread ident is blocked with innermost on top; return its stack."""
    deadline = time.monotonic() + 10
    previous = None
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(ident)
        stack = stack_of(frame) if frame is not None else None
        if stack and stack[-1][0].co_name == innermost and stack == previous:
            return stack
        previous = stack
        time.sleep(0.02)
    raise AssertionError(f"thread {ident} did not settle in {innermost}()")


@contextlib.contextmanager
def parked_thread():
    """A threading.Thread blocked in Event.wait() until the block exits."""
    release = threading.Event()

    def parked_leaf():
        release.wait()

    def parked_root():
        parked_leaf()

    t = threading.Thread(target=parked_root, name="parked", daemon=True)
    t.start()
    try:
        # Event.wait -> Condition.wait, blocked acquiring a lock in C.
        t.expected = _settled_stack(t.ident, "wait")
        assert any(code is parked_leaf.__code__ for code, _ in t.expected)
        yield t
    finally:
        release.set()
        t.join()


# --------------------------------------------------------------------------
# counting


def test_known_stack_counted_outermost_first(Sampler):
    s = Sampler()
    expected = outer(s, 3)
    mine = for_thread(counts(s), threading.current_thread())
    assert mine == {expected: (3, 0)}
    # outermost first: the innermost pair is the function that called probe(),
    # preceded by its callers.
    names = [code.co_name for code, _ in expected]
    assert names[-3:] == ["outer", "middle", "inner"]
    assert expected[-1][0] is inner.__code__
    assert s.samples_taken == 3
    assert s.errors == 0


def test_lasti_is_f_lasti_in_bytes():
    # stack_of() reads frame.f_lasti; this just pins that f_lasti is the
    # byte offset of the current instruction (what both samplers record).
    frame = sys._getframe()
    assert frame.f_lasti % 2 == 0
    assert frame.f_lasti < len(frame.f_code.co_code)


def test_lasti_matches_each_frame(Sampler):
    s = Sampler()
    frame = sys._getframe()
    s.sample(frame)
    expected = stack_of(frame)  # this frame has moved on: compare the callers
    [(frames, _)] = for_thread(counts(s), threading.current_thread()).items()
    assert frames[:-1] == expected[:-1]
    assert frames[-1][0] is expected[-1][0]
    assert frames[-1][1] < expected[-1][1]


def test_distinct_call_sites_are_distinct_keys(Sampler):
    s = Sampler()
    a = outer(s)
    b = outer(s)  # a different f_lasti in this function
    c = outer(s)
    mine = for_thread(counts(s), threading.current_thread())
    assert len({a, b, c}) == 3
    assert mine == {a: (1, 0), b: (1, 0), c: (1, 0)}


def test_same_site_in_loop_is_one_key(Sampler):
    s = Sampler()
    stacks = {outer(s) for _ in range(50)}
    assert len(stacks) == 1
    mine = for_thread(counts(s), threading.current_thread())
    assert mine == {stacks.pop(): (50, 0)}


def test_other_thread_counted_under_its_thread_object(Sampler):
    s = Sampler()
    with parked_thread() as t:
        outer(s, 4)
        table = counts(s)
        theirs = for_thread(table, t)
        assert theirs == {t.expected: (4, 0)}
        # the key holds the Thread object itself, not its ident
        assert any(thread is t for thread, _ in table)
        assert t.expected[0][0].co_name == "_bootstrap"


def test_thread_unknown_to_threading_is_its_ident(Sampler):
    s = Sampler()
    started = _thread.allocate_lock()
    release = _thread.allocate_lock()
    started.acquire()
    release.acquire()
    done = _thread.allocate_lock()
    done.acquire()

    def raw_thread():
        started.release()
        release.acquire()
        done.release()

    ident = _thread.start_new_thread(raw_thread, ())
    try:
        started.acquire()
        assert ident not in threading._active
        expected = _settled_stack(ident, "raw_thread")
        outer(s, 2)
        table = counts(s)
        assert for_thread(table, ident) == {expected: (2, 0)}
        (key_thread,) = [t for t, frames in table if frames == expected]
        assert type(key_thread) is int and key_thread == ident
    finally:
        release.release()
        done.acquire()


def test_none_frame_leaves_the_caller_out(Sampler):
    s = Sampler()
    with parked_thread() as t:
        s.sample(None)
        table = counts(s)
    assert for_thread(table, threading.current_thread()) == {}
    assert for_thread(table, t) == {t.expected: (1, 0)}


def test_take_without_reset_keeps_counting(Sampler):
    s = Sampler()
    expected = outer(s, 2)
    me = threading.current_thread()
    assert counts(s)[(me, expected)] == (2, 0)
    assert counts(s)[(me, expected)] == (2, 0)
    expected2 = outer(s, 1)
    assert expected2 != expected
    table = counts(s)
    assert table[(me, expected)] == (2, 0)
    assert table[(me, expected2)] == (1, 0)


def test_take_with_reset_starts_again(Sampler):
    s = Sampler()
    me = threading.current_thread()
    for _ in range(3):
        expected = outer(s, 5)
    first = counts(s, reset=True)
    assert first[(me, expected)] == (15, 0)
    assert counts(s) == {}
    assert s.take(False)[1] == []
    assert s.samples_taken == 15  # the totals are not reset
    again = outer(s, 2)
    assert for_thread(counts(s, reset=True), me) == {again: (2, 0)}
    assert s.take(True)[1] == []


def test_take_returns_the_figures_of_the_counts_it_takes(Sampler):
    """Cut while the sampler thread runs fast: each cut's ticks are exactly its stacks' weights.

    take() reads the counters at the same instant as the counts; read after it, a
    snapshot taken in between went into the next window's stacks but this window's
    figures.
    """
    s = Sampler(interval=0.0005, clock=time.CLOCK_MONOTONIC)
    me = threading.current_thread()
    before = s.take(True)[0]["ticks"]
    cuts = 0
    with running(s):
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            sum(i * i for i in range(2000))  # let the sampler in between cuts
            figures, table = s.take(True)
            weights = sum(w for thread, _frames, w, _cpu in table if thread is me)
            assert weights == figures["ticks"] - before, cuts
            assert set(figures) >= {"samples_taken", "sample_time", "gil_wait", "thread_cpu_time",
                                    "late", "errors", "truncated"}
            before = figures["ticks"]
            cuts += bool(weights)
    assert cuts >= 20  # the sampler did run between cuts


def test_many_distinct_stacks(Sampler):
    # enough keys to grow the compiled table several times
    s = Sampler()
    me = threading.current_thread()

    def recurse(n):
        if n == 0:
            return probe(s, 2)
        return recurse(n - 1)

    expected = {recurse(n) for n in range(300)}
    assert len(expected) == 300
    mine = for_thread(counts(s), me)
    assert mine == {stack: (2, 0) for stack in expected}


# --------------------------------------------------------------------------
# attributes, countdown, enable/disable


def test_attributes(Sampler):
    s = Sampler()
    assert s.samples_taken == 0
    assert s.sample_time == 0.0
    assert s.errors == 0
    assert s.late == 0 and s.gil_wait == 0.0 and s.thread_cpu_time == 0.0
    assert s.running is False
    assert s.track_cpu is False
    assert Sampler(track_cpu=True).track_cpu is True
    assert Sampler(True).track_cpu is True
    outer(s, 10)
    assert s.samples_taken == 10
    assert isinstance(s.sample_time, float)
    assert 0.0 < s.sample_time < 10.0


def test_wrong_arguments_raise(Sampler):
    s = Sampler()
    with pytest.raises(TypeError):
        s.sample(None, None)
    with pytest.raises(TypeError):
        s.sample("not a frame")
    assert s.samples_taken == 0
    with pytest.raises(ValueError):
        Sampler(interval=-1)


def test_countdown_fires_once_after_n_samples(Sampler):
    s = Sampler()
    calls = []
    s.set_countdown(3, lambda *args: calls.append(args))
    outer(s, 2)
    assert calls == []
    outer(s, 1)
    assert calls == [()]
    outer(s, 10)
    assert calls == [()]
    assert s.samples_taken == 13


def test_countdown_cancel_and_rearm(Sampler):
    s = Sampler()
    calls = []
    s.set_countdown(2, lambda: calls.append("cancelled"))
    s.set_countdown(0, None)
    outer(s, 5)
    assert calls == []

    def rearm():
        calls.append("first")
        s.set_countdown(2, lambda: calls.append("second"))

    s.set_countdown(1, rearm)
    outer(s, 1)
    assert calls == ["first"]
    outer(s, 1)
    assert calls == ["first"]
    outer(s, 1)
    assert calls == ["first", "second"]
    outer(s, 5)
    assert calls == ["first", "second"]


def test_arm_twice_is_an_error_and_a_stale_run_samples_nothing(Sampler):
    s = Sampler()
    g = s.arm()
    assert s.running
    with pytest.raises(RuntimeError):
        s.arm()
    s.stop()
    assert not s.running
    s.run(g)  # stopped before it began: returns at once, samples nothing
    assert s.samples_taken == 0
    g2 = s.arm()
    assert g2 != g
    s.run(g)  # an old generation never samples
    assert s.samples_taken == 0
    s.stop()


# --------------------------------------------------------------------------
# weights: interval and clock


def test_without_interval_every_sample_weighs_one(Sampler):
    s = Sampler()
    assert s.interval == 0.0
    assert s.clock == time.CLOCK_MONOTONIC
    expected = outer(s, 4)
    assert s.ticks == 4
    assert counts(s)[(threading.current_thread(), expected)] == (4, 0)


def test_samples_weighted_by_elapsed_intervals(Sampler):
    s = Sampler(interval=0.01, clock=time.CLOCK_MONOTONIC)
    assert s.interval == 0.01
    me = threading.current_thread()

    def sample_then_sleep(seconds):
        stack = outer(s, 1)
        time.sleep(seconds)
        return stack

    first = sample_then_sleep(0.1)  # the first sample weighs 1
    assert s.ticks == 1
    second = sample_then_sleep(0.0)  # ~10 intervals after the first
    weight = s.ticks - 1
    assert 9 <= weight <= 30, weight
    table = counts(s)
    assert table[(me, first)] == (1, 0)
    assert table[(me, second)] == (weight, 0)
    assert s.samples_taken == 2


def test_sample_within_half_an_interval_weighs_nothing(Sampler):
    s = Sampler(interval=60.0)
    me = threading.current_thread()
    first = outer(s, 1)
    second = outer(s, 1)  # microseconds later: weight 0, nothing counted
    assert s.samples_taken == 2
    assert s.ticks == 1
    assert for_thread(counts(s), me) == {first: (1, 0)}
    assert second != first


def test_arming_restarts_the_weights(Sampler):
    s = Sampler(interval=0.01)
    outer(s, 1)
    time.sleep(0.1)
    s.arm()  # a pause is not time: the next snapshot weighs 1 again
    outer(s, 1)
    s.stop()
    assert s.ticks == 2


def test_bad_clock_is_an_error_not_an_exception(Sampler):
    s = Sampler(interval=0.01, clock=-12345)
    outer(s, 2)
    assert s.errors == 2
    assert s.samples_taken == 2
    assert s.ticks == 0
    assert s.take(False)[1] == []


# --------------------------------------------------------------------------
# track_cpu


def test_track_cpu_tells_spinning_from_sleeping(Sampler):
    s = Sampler(track_cpu=True, interval=0.005)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin, name="spinner", daemon=True)
    with parked_thread() as sleeper:
        spinner.start()
        try:
            with running(s):
                deadline = time.monotonic() + 30
                # (ticks, not snapshots: a jittered early tick may weigh 0)
                while s.ticks < 60 and time.monotonic() < deadline:
                    time.sleep(0.01)
        finally:
            stop.set()
            spinner.join()
        table = counts(s)
    spin_wall = sum(w for w, _ in for_thread(table, spinner).values())
    spin_cpu = sum(c for _, c in for_thread(table, spinner).values())
    sleep_wall, sleep_cpu = for_thread(table, sleeper)[sleeper.expected]
    assert spin_wall == sleep_wall >= 60
    assert sleep_cpu == 0
    # (not all: on a loaded machine the spinner gets only part of a CPU)
    assert spin_cpu >= 0.3 * spin_wall, f"spinner on CPU in {spin_cpu} of {spin_wall} samples"


def test_track_cpu_with_interval_counts_cpu_time_in_intervals(Sampler):
    # With an interval, a thread's credit is its CPU time in intervals: a
    # thread spinning through a 5-interval gap is on CPU for all 5.
    s = Sampler(track_cpu=True, interval=0.01, clock=time.CLOCK_MONOTONIC)
    me = threading.current_thread()

    def sample_then_spin():
        stack = outer(s, 1)
        spin(0.05)
        return stack

    for _ in range(4):
        stack = sample_then_spin()
    wall, cpu = counts(s)[(me, stack)]
    assert wall == s.ticks
    # the first sample only takes the readings; then ~5 of every ~5+ intervals
    assert cpu >= (wall - 1) * 0.3, (wall, cpu)
    assert cpu <= wall


def spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("Sampler", [
    pytest.param(PySampler, id="pure"),
    pytest.param(CSampler, id="c", marks=needs_c),
])
def test_track_cpu_after_fork(Sampler):
    # Thread CPU clocks name kernel threads: a forked child must not keep
    # reading its parent's clock for the thread that forked.
    s = Sampler(track_cpu=True)
    for _ in range(3):
        outer(s, 1)
        spin(0.01)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            s.take(True)
            for _ in range(6):
                outer(s, 1)
                spin(0.02)
            mine = for_thread(counts(s), threading.current_thread())
            cpu = sum(c for _, c in mine.values())
            # 5 if the child had a CPU to itself, 0 when reading the parent's clock
            code = 0 if cpu >= 2 and s.errors == 0 else 10 + cpu
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "child saw its thread on CPU in too few samples"


def test_without_track_cpu_nothing_is_on_cpu(Sampler):
    s = Sampler()
    for _ in range(5):
        outer(s, 1)
    assert all(cpu == 0 for _, cpu in counts(s).values())


# --------------------------------------------------------------------------
# the real thing: the sampler's own thread


def spin_until_sampled(s, n, timeout=20.0):
    deadline = time.monotonic() + timeout
    while s.samples_taken < n and time.monotonic() < deadline:
        pass


def test_runs_on_a_thread_of_its_own(Sampler):
    s = Sampler(interval=0.001)
    before = threading.enumerate()
    with running(s):
        assert s.running
        spin_until_sampled(s, 20)
        assert threading.enumerate() == before  # invisible to the program's threading
    assert not s.running
    assert s.samples_taken >= 20 and s.errors == 0
    taken = s.samples_taken
    time.sleep(0.05)
    assert s.samples_taken == taken  # nothing after stop()
    table = counts(s)
    mine = for_thread(table, threading.current_thread())
    assert sum(w for w, _ in mine.values()) == s.ticks
    assert all(frames and frames[-1][0] is spin_until_sampled.__code__ for frames in mine)
    # the sampler thread never samples itself
    assert all(t is threading.current_thread() for t, _ in table)
    assert s.thread_cpu_time > 0


def test_samples_while_the_main_thread_waits(Sampler):
    """The reason for the thread: a main thread blocked in join() used to stop the sampling."""
    s = Sampler(interval=0.01)
    worker = threading.Thread(target=descend_and_spin, args=(3, 0.6), name="w")
    with running(s):
        worker.start()
        worker.join()
    table = counts(s)
    # 60 asked; a timer signal would have been handled about twice (start, end)
    assert s.samples_taken >= 30, s.samples_taken
    assert any(frames and frames[-1][0] is descend_and_spin.__code__ for frames in for_thread(table, worker))


def test_threads_coming_and_going_while_sampled(Sampler):
    # Thread states appear and disappear between samples: the compiled
    # sampler's per-thread cache must follow without errors or stale objects.
    s = Sampler(track_cpu=True)
    stop = threading.Event()

    def short_lived():
        descend_and_spin(5, 0.012)

    def spawner():
        while not stop.is_set():
            batch = [threading.Thread(target=short_lived) for _ in range(4)]
            for t in batch:
                t.start()
            for t in batch:
                t.join()

    spawners = [threading.Thread(target=spawner) for _ in range(2)]
    s.pace = 0.0005
    for t in spawners:
        t.start()
    try:
        with running(s):
            deadline = time.monotonic() + 20.0
            while s.samples_taken < 120 and time.monotonic() < deadline:
                time.sleep(0.001)
    finally:
        stop.set()
        for t in spawners:
            t.join()
    assert s.errors == 0
    assert s.samples_taken >= 120
    table = counts(s, reset=True)
    threads = {t for t, _ in table}
    assert all(isinstance(t, (threading.Thread, int)) for t in threads)
    assert any(frames and frames[-1][0] is descend_and_spin.__code__
               for t, frames in table if t is not threading.current_thread())


def descend_and_spin(n, seconds):
    if n:
        return descend_and_spin(n - 1, seconds)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


# --------------------------------------------------------------------------
# references


def test_no_reference_leaks(Sampler):
    s = Sampler()
    me = threading.current_thread()
    outer(s, 1)  # warm up: caches may keep one reference to the thread
    s.take(True)
    frame = sys._getframe()
    watched = (inner.__code__, probe.__code__, me, frame)

    def refcounts():
        return [sys.getrefcount(o) for o in watched]

    gc.collect()  # garbage left by earlier tests may hold frames, so codes
    refs_before = refcounts()
    for _ in range(200):
        outer(s, 5)
    held = refcounts()
    assert held[0] > refs_before[0]  # the table keeps the codes of its keys alive
    assert held[3] == refs_before[3]  # and no frames
    _, table = s.take(True)
    assert sum(w for t, f, w, c in table if t is me) == 1000
    del table
    gc.collect()
    assert refcounts() == refs_before


def test_cycles_through_sampler_are_collected(Sampler):
    class Holder:
        def callback(self):
            pass

    s = Sampler()
    h = Holder()
    h.sampler = s
    s.set_countdown(5, h.callback)

    class SamplingThread(threading.Thread):
        def run(self):
            self.sampler.sample(sys._getframe())

    t = SamplingThread()
    t.sampler = s  # the table keeps t alive: s -> t -> s
    t.start()
    t.join()
    assert any(thread is t for thread, *_ in s.take(False)[1])
    refs = [weakref.ref(h), weakref.ref(t)]
    del h, t, s
    gc.collect()
    assert [r() for r in refs] == [None, None]


# --------------------------------------------------------------------------
# both implementations agree


@needs_c
def test_pure_and_compiled_agree():
    pure, compiled = PySampler(), CSampler()
    with parked_thread() as t:

        def sample_caller():
            frame = sys._getframe(1)  # parked on this call meanwhile
            for _ in range(3):
                pure.sample(frame)
                compiled.sample(frame)

        def both():
            sample_caller()
            sample_caller()

        both()
        mine = {threading.current_thread(), t}
        pure_counts = {k: v for k, v in counts(pure).items() if k[0] in mine}
        c_counts = {k: v for k, v in counts(compiled).items() if k[0] in mine}
    assert len(pure_counts) == 3  # two call sites in the main thread, one parked stack
    assert pure_counts == c_counts


# --------------------------------------------------------------------------
# compiled sampler only


def test_callback_errors_are_swallowed(Sampler, monkeypatch):
    # A callback's exception never raises into the sampler's caller: the
    # sampler counts the error and reports it through sys.unraisablehook.
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_type))

    def boom():
        raise ValueError("boom")

    s = Sampler()
    s.set_countdown(1, boom)
    outer(s, 2)
    assert s.errors == 1
    assert seen == [ValueError]
    assert s.samples_taken == 2


@needs_c
def test_compiled_truncates_pathological_depth():
    from plop._sampler import MAX_DEPTH

    s = CSampler()

    def recurse(n):
        if n == 0:
            return probe(s, 1)
        return recurse(n - 1)

    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(MAX_DEPTH + 500)
    try:
        expected = recurse(MAX_DEPTH + 100)
    finally:
        sys.setrecursionlimit(old_limit)
    assert len(expected) > MAX_DEPTH
    [(frames, (wall, _))] = for_thread(counts(s), threading.current_thread()).items()
    assert wall == 1
    assert s.truncated == 1
    assert s.errors == 0
    # the innermost MAX_DEPTH frames are kept
    assert frames == expected[-MAX_DEPTH:]


# --------------------------------------------------------------------------
# the compiled sampler on 3.11: a busy main thread snapshots itself
#
# When the main thread holds the GIL at a tick, the sampler thread offers it
# the snapshot through a pending call (no GIL handoff); when it does not, or
# does not answer within a millisecond, the sampler thread takes the GIL as
# before and the late call does nothing.  ``inline`` counts the first path.

needs_inline = pytest.mark.skipif(
    CSampler is None or sys.version_info[:2] != (3, 11) or threading.current_thread() is not threading.main_thread(),
    reason=_C_MISSING or "inline snapshots are a 3.11 mechanism, taken by the main thread")


def busy_main(s, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        burn_a_little()


def burn_a_little() -> int:
    total = 0
    for i in range(200):
        total += i
    return total


def max_ticks(seconds: float, pace: float) -> int:
    """The most ticks a run of this length can have: they come 0.75 to 1.25 paces apart."""
    return int(seconds / (0.75 * pace)) + 2


@needs_inline
def test_busy_main_thread_takes_its_own_snapshots():
    s = CSampler(track_cpu=True, interval=0.001)
    me = threading.current_thread()
    with running(s):
        busy_main(s, 0.5)
    figures, table = s.take(False)
    assert figures["inline"] == s.inline
    assert s.errors == 0 and s.samples_taken >= 100
    # (nearly) all by the main thread itself: the first one, before the sampler
    # has seen the main thread, and an odd one when the main thread was in the
    # middle of something, go the old way
    assert s.inline >= 0.9 * s.samples_taken, (s.inline, s.samples_taken)
    mine = [(frames, w, c) for t, frames, w, c in table if t is me]
    assert sum(w for _, w, _ in mine) == s.ticks
    assert all(t is me for t, _, _, _ in table)  # the sampler thread is never sampled
    # counted at its current frame, busy in burn_a_little() or busy_main()
    assert all(frames[-1][0] in (burn_a_little.__code__, busy_main.__code__) for frames, _, _ in mine)
    # and on CPU, as the GIL-handoff snapshots showed it
    assert sum(c for _, _, c in mine) >= 0.8 * s.ticks
    assert s.thread_cpu_time > 0 and s.gil_wait > 0


@needs_inline
@pytest.mark.parametrize("wait", ["sleep", "event"])
@pytest.mark.parametrize("pace", [0.002, 0.001], ids=["waits", "next-tick"])
def test_blocked_main_thread_falls_back_and_counts_each_tick_once(wait, pace):
    # The main thread waits with the GIL released: the sampler thread takes the
    # GIL itself, and the worker is sampled at every tick.  The main thread then
    # alternates computing and waiting, so ticks go both ways: each is counted
    # once (the weights add up to the ticks, and there are no more snapshots than
    # ticks: a tick taken by both paths would be a second snapshot).  At 2 ms
    # the sampler thread waits for each offer's answer; at 1 ms it looks at the
    # next tick, an offer not taken by then folded into that tick's weight.
    s = CSampler(track_cpu=True)  # every snapshot weighs 1: ticks == snapshots
    s.pace = pace
    done = threading.Event()
    me = threading.current_thread()

    def worker():
        while not done.is_set():
            burn_a_little()

    w = threading.Thread(target=worker, name="worker")
    w.start()
    try:
        time.sleep(0.05)  # the worker is running before the first tick
        block = (lambda t: time.sleep(t)) if wait == "sleep" else threading.Event().wait
        t0 = time.monotonic()
        with running(s):
            block(0.4)
            blocked_inline = s.inline
            blocked_samples = s.samples_taken
            for _ in range(40):
                busy_main(s, 0.005)
                block(0.005)
        elapsed = time.monotonic() - t0
    finally:
        done.set()
        w.join()
    assert s.errors == 0
    # while the main thread waited, the sampler thread took the snapshots
    assert blocked_samples >= 50, blocked_samples
    assert blocked_inline <= 2, blocked_inline
    _, table = s.take(False)
    weights = {}
    for t, _, wt, _ in table:
        weights[t] = weights.get(t, 0) + wt
    assert weights[me] == s.ticks == s.samples_taken
    assert weights[w] == s.ticks
    assert s.samples_taken <= max_ticks(elapsed, pace), (s.samples_taken, elapsed)
    assert 0 < s.inline < s.samples_taken  # both ways


@needs_inline
def test_stop_from_another_thread_while_inline_snapshots_are_pending():
    for _ in range(20):
        s = CSampler(interval=0.0005)
        stopped = threading.Event()
        after_stop = []

        def stopper():
            time.sleep(0.03)
            s.stop()
            after_stop.append(s.samples_taken)
            stopped.set()

        g = s.arm()
        _thread.start_new_thread(s.run, (g,))
        t = threading.Thread(target=stopper)
        t.start()
        while not stopped.is_set():
            burn_a_little()
        busy_main(s, 0.01)  # a pending call still queued must not snapshot now
        t.join()
        assert not s.looping and not s.running
        assert s.samples_taken == after_stop[0]  # none after stop() returned
        assert s.errors == 0 and s.inline > 0
        _, table = s.take(False)
        me = threading.current_thread()
        assert sum(w for t, _, w, _ in table if t is me) == s.ticks


@needs_inline
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_in_the_middle_of_inline_snapshots():
    s = CSampler(track_cpu=True, interval=0.001)
    me = threading.current_thread()
    with running(s):
        busy_main(s, 0.1)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code
            code = 1
            try:
                # no sampler thread here: nothing is sampled, a pending call
                # queued by the parent does nothing
                figures, _ = s.take(True)
                busy_main(s, 0.05)
                assert s.samples_taken == figures["samples_taken"]
                with running(s):  # a fresh run in the child, inline again
                    busy_main(s, 0.3)
                _, table = s.take(True)
                mine = sum(w for t, _, w, _ in table if t is threading.current_thread())
                assert s.errors == 0
                assert s.inline - figures["inline"] >= 0.5 * (s.samples_taken - figures["samples_taken"]) > 20
                code = 0 if mine == s.ticks - figures["ticks"] else 3
            except AssertionError:
                import traceback
                traceback.print_exc()
                code = 2
            finally:
                os._exit(code)
        before = s.inline
        busy_main(s, 0.2)
        _, status = os.waitpid(pid, 0)
        assert s.inline > before + 50  # the parent goes on
    assert os.waitstatus_to_exitcode(status) == 0
    _, table = s.take(False)
    assert s.errors == 0
    assert sum(w for t, _, w, _ in table if t is me) == s.ticks


@needs_inline
def test_allow_inline_false_keeps_every_snapshot_on_the_sampler_thread():
    s = CSampler(interval=0.001)
    assert s.allow_inline
    s.allow_inline = False
    with running(s):
        busy_main(s, 0.1)
    assert s.samples_taken >= 20 and s.inline == 0 and s.errors == 0


@needs_inline
def test_exit_with_inline_snapshots_running_is_clean():
    # The sampler thread is not stopped before the interpreter finalizes: it
    # must stop offering pending calls (the interpreter that runs them is being
    # torn down) and end as it always did, blocked on the GIL.
    import subprocess
    import textwrap
    code = textwrap.dedent('''
        import _thread, time
        from plop._sampler import Sampler
        s = Sampler(interval=0.0005)
        _thread.start_new_thread(s.run, (s.arm(),))
        end = time.monotonic() + 0.1
        while time.monotonic() < end:
            sum(range(50))
        assert s.inline > 0, (s.inline, s.samples_taken)
        print("ok")
    ''')
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for _ in range(10):
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr
