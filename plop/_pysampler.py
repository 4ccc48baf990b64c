"""The pure-Python sampler: a thread of plop's own that counts every thread's stack.

This is the reference implementation of the sampler protocol, and the one used
where the compiled ``plop._sampler`` could not be built. Both expose the same
class, ``Sampler``; :mod:`plop.collector` picks one and tests run against both.

Why a thread, not a signal
--------------------------
Python runs signal handlers on the main thread only, between bytecodes. A
timer signal therefore samples nothing while the main thread waits (``join()``,
``future.result()``, ``queue.get()``, a lock, ``select``): the commonest shape
of threaded Python. A sampler thread takes the GIL at each tick and walks
every thread state, whatever the main thread does, and it needs no signal, so
the program keeps all of them.

The protocol
------------
``Sampler(track_cpu=False, interval=0.0, clock=time.CLOCK_MONOTONIC)``.
``interval`` is the unit of the counts, in seconds of ``clock`` (0 counts
every snapshot once, for tests that take snapshots by hand); ``clock`` (a
``time.CLOCK_*`` id) paces the ticks and weighs the snapshots:
``CLOCK_MONOTONIC`` for wall-clock profiles, ``CLOCK_PROCESS_CPUTIME_ID`` for
profiles of the process's CPU time (the sampler then wakes only as the process
spends CPU, so an idle process costs almost nothing).

``gen = sampler.arm()`` then ``_thread.start_new_thread(sampler.run, (gen,))``
starts sampling on a new thread; ``stop()`` ends it from any thread (also
from a countdown callback on the sampler thread): no snapshot starts after it
returns. ``running`` says whether a run is armed, ``looping`` whether a
``run()`` has started its loop. ``pace`` is the seconds of
``clock`` between ticks (``interval`` by default, else 0.01; the live profiler lowers the
rate by raising it); the ticks are jittered by +-25% at random so that a
program running in step with the interval is not always seen at one phase.

``sample(frame=None)`` takes one snapshot at once from the calling thread:
every other thread at its current frame, the caller at ``frame`` (or not at
all). Tests use it to know the expected stacks exactly.

Each snapshot is weighted by the number of intervals of ``clock`` that passed
since the previous one (rounded with error diffusion, so the weights add up to
the elapsed time): a snapshot delayed because a C call held the GIL stands for
every tick it covers. The first snapshot of a run has weight 1; one due within
half an interval of the previous counts nothing.

``track_cpu``: each thread's sample also gets a CPU count, an estimate of the
CPU time it spent, in intervals. The compiled sampler reads each thread's
scheduler state at the tick, before it takes the GIL, so the CPU goes to the
code that was running (see plop/_sampler.c). This pure sampler cannot run
before it holds the GIL, and by then a computing thread is waiting for the
GIL like a blocked one: it credits each thread with the CPU time it used since
its previous snapshot divided by ``interval``, and counts the credit, rounded
and carried over, on the stack the thread has now. That is right for threads
that compute steadily, and charges a short burst of CPU to the wait that
follows it; the compiled sampler has no such bias.

Figures (read-only): ``samples_taken`` (snapshots), ``ticks`` (the sum of the
weights), ``sample_time`` (wall seconds inside snapshots), ``gil_wait`` (wall
seconds from the ticks to holding the GIL, summed), ``thread_cpu_time`` (CPU
seconds of the sampler thread: what sampling costs the process), ``late``
(snapshots more than an interval after their tick), ``errors`` (exceptions
raised and swallowed while sampling), ``prompt_gil`` (whether the sampler asks
the GIL holder to let go at once).

``set_countdown(n, callback)``: after ``n`` more snapshots, call
``callback()`` once, on the sampler thread. ``set_countdown(0, None)`` cancels.

``take(reset)`` returns ``(figures, counts)``. ``figures`` is a dict of the
counters named in :data:`FIGURES`, read at the same instant as the counts, so
that a window cut from a running sampler has figures that agree with its
stacks. ``counts`` is ``[(thread, frames, wall, cpu), ...]`` where ``thread``
is the ``threading.Thread`` object that was running (or the thread ident when
the thread is unknown to :mod:`threading`), ``frames`` a tuple of
``(code, lasti)`` pairs **outermost first**, ``wall`` the sum of the weights
and ``cpu`` the CPU count. With ``reset`` the table is emptied atomically with
respect to the snapshots.
"""
from __future__ import annotations

import _thread
import os
import random
import sys
import threading
import time
import weakref
from types import CodeType, FrameType
from typing import Any, Callable

_current_frames = sys._current_frames
_perf_counter = time.perf_counter
_monotonic = time.monotonic

#: The counters take() returns beside the counts (the compiled sampler's too).
FIGURES = ("samples_taken", "ticks", "sample_time", "gil_wait", "thread_cpu_time", "late", "errors",
           "truncated")


class Sampler:
    """Counts ``(thread, stack)`` keys; see the module docstring for the protocol."""

    prompt_gil = False

    def __init__(self, track_cpu: bool = False, interval: float = 0.0,
                 clock: int = time.CLOCK_MONOTONIC) -> None:
        interval = float(interval)
        if not 0 <= interval <= 1e6:
            raise ValueError("interval must be a number of seconds >= 0, not %r" % interval)
        self.track_cpu = bool(track_cpu)
        self.interval = interval
        self.pace = interval or 0.01
        self.clock = clock
        self._last_tick: float | None = None
        self._tick_credit = 0.0
        self.samples_taken = 0
        self.ticks = 0
        self.sample_time = 0.0
        self.gil_wait = 0.0
        self.thread_cpu_time = 0.0
        self.late = 0
        self.errors = 0
        self.truncated = 0  # the pure sampler walks any depth
        # (thread, id(code), lasti, id(code), lasti, ...) innermost first ->
        # [wall, cpu, codes]. Hashing a code object hashes its contents, so the
        # key holds id()s; the entry keeps the codes alive so the ids stay unique.
        self._counts: dict[tuple, list] = {}
        self._countdown = 0
        self._countdown_cb: Callable[[], Any] | None = None
        # thread ident -> [cpu clock, wall clock, credit] at its previous snapshot
        self._last_cpu: dict[int, list[float]] = {}
        self._busy = False
        self._init_locks()
        _instances.add(self)

    def _init_locks(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        # Held while a snapshot counts and while take() reads: re-entrant, as
        # a finalizer run inside a snapshot may call take().
        self._counting = threading.RLock()
        self._generation = 0
        self._running = False
        self._looping = False
        self._own_ident: int | None = None

    @property
    def running(self) -> bool:
        return self._running

    @property
    def looping(self) -> bool:
        return self._looping

    def set_countdown(self, n: int, callback: Callable[[], Any] | None) -> None:
        self._countdown = int(n) if callback is not None else 0
        self._countdown_cb = callback

    # -- the sampler thread ------------------------------------------------------

    def arm(self) -> int:
        with self._cond:
            if self._running:
                raise RuntimeError("the sampler is already running")
            self._generation += 1
            self._running = True
            self._last_tick = None  # a pause is not time to weight the next snapshot with
            return self._generation

    def stop(self) -> None:
        with self._cond:
            self._generation += 1
            self._running = False
            self._cond.notify_all()
            if self._looping and _thread.get_ident() != self._own_ident:
                # Let the loop finish, so that the figures are final.
                self._cond.wait_for(lambda: not self._looping)

    def run(self, generation: int) -> None:
        with self._cond:
            if self._generation != generation or self._looping:
                return  # stopped before it began, or another run is looping
            self._looping = True
            self._own_ident = _thread.get_ident()
        clock = self.clock
        wall = clock == time.CLOCK_MONOTONIC
        ncpu = os.cpu_count() or 1
        jitter = random.Random()
        cpu0 = time.thread_time()
        deadline = time.clock_gettime(clock) + self.pace
        # Waking costs a wait for the GIL (up to the switch interval while a
        # thread computes): wake that much early, learnt as a running average.
        lead = 0.0
        try:
            while True:
                with self._cond:
                    while self._generation == generation:
                        now = time.clock_gettime(clock)
                        if now >= deadline - lead:
                            break
                        wait = deadline - lead - now
                        if not wall:  # CPU time: spread over the cores, then look again
                            wait = min(self.pace, max(2e-4, wait / ncpu))
                        self._cond.wait(wait)
                    else:
                        return
                woke = time.clock_gettime(clock)
                if self._generation != generation:
                    return
                if wall:
                    self.gil_wait += max(0.0, woke - deadline + lead)
                    lead += 0.2 * (min(0.5 * self.pace, max(0.0, woke - deadline + lead)) - lead)
                self.sample(None)
                now = time.clock_gettime(clock)
                deadline += self.pace * (0.75 + 0.5 * jitter.random())
                if deadline <= now:
                    self.late += 1
                    deadline = now + self.pace
                cpu1 = time.thread_time()
                self.thread_cpu_time += cpu1 - cpu0
                cpu0 = cpu1
        finally:
            self.thread_cpu_time += time.thread_time() - cpu0
            with self._cond:
                self._looping = False
                self._cond.notify_all()

    # -- snapshots ---------------------------------------------------------------

    def sample(self, frame: Any = None) -> None:
        if frame is not None and not isinstance(frame, FrameType):
            raise TypeError("frame must be a frame or None, not %s" % type(frame).__name__)
        if self._busy:
            # Re-entered from a callback: the outer snapshot stands for both.
            return
        self._busy = True
        t0 = _perf_counter()
        with self._counting:
            try:
                self._sample(frame)
            except Exception:
                self.errors += 1
            finally:
                self._busy = False
            self.samples_taken += 1
            self.sample_time += _perf_counter() - t0
        if self._countdown:
            self._countdown -= 1
            if not self._countdown:
                callback, self._countdown_cb = self._countdown_cb, None
                if callback is not None:
                    self._run(callback)

    def _run(self, callback: Callable[[], Any]) -> None:
        """Run a countdown callback: its exception is reported, never raised."""
        try:
            callback()
        except Exception as exc:
            self.errors += 1
            sys.unraisablehook(_Unraisable(exc, callback))

    def _weight(self) -> int:
        """How many intervals this snapshot stands for (see the module docstring)."""
        if self.interval <= 0:
            return 1
        now = time.clock_gettime(self.clock)
        last, self._last_tick = self._last_tick, now
        if last is None:
            return 1
        credit = self._tick_credit + (now - last) / self.interval
        weight = int(credit + 0.5)
        self._tick_credit = credit - weight
        return weight

    def _sample(self, given: Any) -> None:
        weight = self._weight()
        if weight <= 0:
            return
        self.ticks += weight
        counts = self._counts
        active = threading._active  # type: ignore[attr-defined]
        me = _thread.get_ident()
        for ident, top in _current_frames().items():
            if ident == me:
                if given is None:
                    continue
                top = given
            f = top
            thread = active.get(ident, ident)
            key = [thread]
            append = key.append
            while f is not None:
                append(id(f.f_code))
                append(f.f_lasti)
                f = f.f_back
            key_t = tuple(key)
            entry = counts.get(key_t)
            if entry is None:
                entry = counts[key_t] = [0, 0, _codes(top)]
            entry[0] += weight
            if self.track_cpu:
                entry[1] += self._on_cpu(ident, weight)

    def _on_cpu(self, ident: int, weight: int) -> int:
        try:
            cpu = time.clock_gettime(time.pthread_getcpuclockid(ident))
        except (OSError, OverflowError):
            return 0
        wall = _monotonic()
        last = self._last_cpu.get(ident)
        if last is None:
            self._last_cpu[ident] = [cpu, wall, 0.0]
            return 0
        last_cpu, last_wall, credit = last
        if self.interval > 0:
            credit += (cpu - last_cpu) / self.interval
        elif wall > last_wall:  # without an interval: the share of the time spent on CPU
            credit += (cpu - last_cpu) / (wall - last_wall)
        on_cpu = min(weight, max(0, int(credit + 0.5)))
        last[:] = cpu, wall, credit - on_cpu
        return on_cpu

    def take(self, reset: bool) -> tuple[dict[str, Any], list[tuple[Any, tuple[tuple[CodeType, int], ...], int, int]]]:
        with self._counting:
            # Under the lock a snapshot lands in both the figures and the counts, or in neither.
            figures = {name: getattr(self, name) for name in FIGURES}
            counts = self._counts
            if reset:
                self._counts = {}
                items = list(counts.items())
            else:  # the entries are live lists: copy their counts
                items = [(key, (wall, cpu, codes)) for key, (wall, cpu, codes) in counts.items()]
        result = []
        for key, (wall, cpu, codes) in items:
            frames = tuple(zip(codes, key[2::2]))[::-1]
            result.append((key[0], frames, wall, cpu))
        return figures, result


class _Unraisable:
    """What ``sys.unraisablehook`` expects to be told about a swallowed exception."""

    def __init__(self, exc: BaseException, obj: object) -> None:
        self.exc_type = type(exc)
        self.exc_value = exc
        self.exc_traceback = exc.__traceback__
        self.err_msg = "Exception ignored in plop's sampler callback"
        self.object = obj


#: Live samplers, so a forked child can start them afresh.
_instances: "weakref.WeakSet[Sampler]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """The child has no sampler thread, and its threads have CPU clocks of their own.

    Its locks may have been held by the parent's sampler thread at fork time;
    keeping the parent's CPU readings would charge the child's first samples
    with (child clock - parent clock), a large negative credit.
    """
    for sampler in list(_instances):
        sampler._init_locks()
        sampler._last_cpu.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _codes(f: Any) -> tuple[CodeType, ...]:
    """The code objects of a stack, innermost first: the slow path taken once per new key."""
    codes = []
    while f is not None:
        codes.append(f.f_code)
        f = f.f_back
    return tuple(codes)
