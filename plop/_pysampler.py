"""The pure-Python sampler: the signal handler that counts stacks.

This is the reference implementation of the sampler protocol, and the one used
where the compiled ``plop._sampler`` could not be built. Both expose the same
class, ``Sampler``; :mod:`plop.collector` picks one and tests run against both.

The protocol
------------
``Sampler(track_cpu=False)`` is a callable installed directly as the signal
handler (``signal.signal(sig, sampler)``): the compiled one then costs one C
call per sample and no Python frame at all. Each call walks every thread's stack and counts it under a
key of raw ``(code object, f_lasti)`` pairs: line numbers, file names and
thread names are resolved later, once per distinct stack, by ``take()`` rather
than once per sample.

Attributes (read-only from Python): ``samples_taken``, ``ticks`` (the sum of
the samples' weights, see ``interval``), ``sample_time`` (seconds
spent inside the handler on the monotonic clock), ``errors`` (exceptions
raised and swallowed inside the handler).

``enabled``: when false, a call counts nothing and, if ``on_disabled`` is set,
calls it once with no arguments and clears it. The collector uses this to
restore the previous signal handler from the main thread after ``stop()`` was
called from another thread.

``set_countdown(n, callback)``: after ``n`` more samples, call ``callback()``
(no arguments) from inside the handler, once. The collector uses it to check
its ``duration`` deadline on the timer's own clock without reading a clock on
every sample. ``set_countdown(0, None)`` cancels.

``interval`` and ``clock`` (a ``time.CLOCK_*`` id): when ``interval`` is
positive, each sample is weighted by the number of intervals of ``clock`` that
passed since the previous one (rounded with error diffusion, so the weights
add up to the elapsed time). Timer signals that arrive while the main thread
waits for the GIL, or sits in a long C call, coalesce into one; without the
weight those moments would be undercounted, biasing the profile towards the
moments when the GIL is free. The first sample after ``enabled`` is set has
weight 1. ``interval=0`` (the default) counts every sample once.

``track_cpu``: when true (wall-clock sampling), each thread's CPU clock is read
at every sample. The thread earns a credit of the CPU seconds it used divided
by ``interval`` (or, without one, by the wall seconds since its previous
sample); the sample's on-CPU count is that credit rounded, at most its wall
weight, and the rest is carried to the next sample. This error
diffusion makes the on-CPU counts an unbiased estimate of CPU time in units of
samples: a thread busy all the time is on CPU in every sample, one busy a
third of the time in a third of them, and a thread that wakes briefly from
sleep does not look busy. A thread's first sample only takes the readings.

``take(reset)`` returns ``[(thread, frames, wall, cpu), ...]`` where ``thread``
is the ``threading.Thread`` object that was running (or the thread ident when
the thread is unknown to :mod:`threading`), ``frames`` a tuple of
``(code, lasti)`` pairs **outermost first**, ``wall`` the number of samples and
``cpu`` how many of them were on CPU. With ``reset`` the table is emptied
atomically with respect to the handler.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from types import CodeType
from typing import Any, Callable

_current_frames = sys._current_frames
_perf_counter = time.perf_counter
_monotonic = time.monotonic


class Sampler:
    """Counts ``(thread, stack)`` keys; see the module docstring for the protocol."""

    def __init__(self, track_cpu: bool = False, interval: float = 0.0,
                 clock: int = time.CLOCK_MONOTONIC) -> None:
        self.track_cpu = bool(track_cpu)
        self.interval = float(interval)
        self.clock = clock
        self._enabled = True
        self._last_tick: float | None = None
        self._tick_credit = 0.0
        self.on_disabled: Callable[[], Any] | None = None
        self.samples_taken = 0
        self.ticks = 0
        self.sample_time = 0.0
        self.errors = 0
        # (thread, id(code), lasti, id(code), lasti, ...) innermost first ->
        # [wall, cpu, codes]. Hashing a code object hashes its contents, so the
        # key holds id()s; the entry keeps the codes alive so the ids stay unique.
        self._counts: dict[tuple, list] = {}
        self._countdown = 0
        self._countdown_cb: Callable[[], Any] | None = None
        # thread ident -> [cpu clock, wall clock, credit] at its previous sample
        self._last_cpu: dict[int, list[float]] = {}
        _instances.add(self)
        self._busy = False

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)
        self._last_tick = None  # a pause is not time to weight the next sample with

    def set_countdown(self, n: int, callback: Callable[[], Any] | None) -> None:
        self._countdown = int(n) if callback is not None else 0
        self._countdown_cb = callback

    def __call__(self, signum: int, frame: Any) -> None:
        if not self._enabled:
            callback, self.on_disabled = self.on_disabled, None
            if callback is not None:
                self._run(callback)
            return
        if self._busy:
            # A signal that arrives while this handler runs would run a nested
            # handler here (Python checks for signals between bytecodes) and
            # sample the sampler; the interrupted sample stands for both.
            return
        self._busy = True
        t0 = _perf_counter()
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
        """Run a callback from the handler: its exception must not land in the interrupted code."""
        try:
            callback()
        except Exception as exc:
            self.errors += 1
            sys.unraisablehook(_Unraisable(exc, callback))

    def _weight(self) -> int:
        """How many intervals this sample stands for (see the module docstring)."""
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

    def _sample(self, interrupted: Any) -> None:
        weight = self._weight()
        if weight <= 0:
            return
        self.ticks += weight
        counts = self._counts
        active = threading._active  # type: ignore[attr-defined]
        handler_ident = threading.get_ident()
        wall = _monotonic() if self.track_cpu else 0.0
        for ident, top in _current_frames().items():
            # The thread running this handler would show the handler itself;
            # it is sampled at the frame the signal interrupted instead.
            f = top = interrupted if ident == handler_ident else top
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
                entry[1] += self._on_cpu(ident, wall, weight)

    def _on_cpu(self, ident: int, wall: float, weight: int) -> int:
        try:
            cpu = time.clock_gettime(time.pthread_getcpuclockid(ident))
        except (OSError, OverflowError):
            return 0
        last = self._last_cpu.get(ident)
        if last is None:
            self._last_cpu[ident] = [cpu, wall, 0.0]
            return 0
        last_cpu, last_wall, credit = last
        if self.interval > 0:
            credit += (cpu - last_cpu) / self.interval
        elif wall > last_wall:
            credit += (cpu - last_cpu) / (wall - last_wall)
        on_cpu = min(weight, max(0, int(credit + 0.5)))
        last[:] = cpu, wall, credit - on_cpu
        return on_cpu

    def take(self, reset: bool) -> list[tuple[Any, tuple[tuple[CodeType, int], ...], int, int]]:
        counts = self._counts
        if reset:
            # Swap in a new table in one assignment: a signal arriving while
            # we build the result counts into the new table, not the old one.
            self._counts = {}
        result = []
        for key, (wall, cpu, codes) in list(counts.items()):
            frames = tuple(zip(codes, key[2::2]))[::-1]
            result.append((key[0], frames, wall, cpu))
        return result


class _Unraisable:
    """What ``sys.unraisablehook`` expects to be told about a swallowed exception."""

    def __init__(self, exc: BaseException, obj: object) -> None:
        self.exc_type = type(exc)
        self.exc_value = exc
        self.exc_traceback = exc.__traceback__
        self.err_msg = "Exception ignored in plop's sampler callback"
        self.object = obj


#: Live samplers, so a forked child can forget its parent's CPU clock readings.
_instances: "weakref.WeakSet[Sampler]" = weakref.WeakSet()


def _forget_cpu_readings() -> None:
    """After fork: the child's threads have CPU clocks of their own, starting afresh.

    Keeping the parent's last readings would charge the child's first samples
    with (child clock - parent clock): a large negative credit.
    """
    for sampler in list(_instances):
        sampler._last_cpu.clear()


os.register_at_fork(after_in_child=_forget_cpu_readings)


def _codes(f: Any) -> tuple[CodeType, ...]:
    """The code objects of a stack, innermost first: the slow path taken once per new key."""
    codes = []
    while f is not None:
        codes.append(f.f_code)
        f = f.f_back
    return tuple(codes)
