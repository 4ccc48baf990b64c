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

Attributes (read-only from Python): ``samples_taken``, ``sample_time`` (seconds
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

``track_cpu``: when true (wall-clock sampling), each thread's CPU clock is read
at every sample and a stack also counts as *on CPU* when the thread used CPU
time since its previous sample.

``take(reset)`` returns ``[(thread, frames, wall, cpu), ...]`` where ``thread``
is the ``threading.Thread`` object that was running (or the thread ident when
the thread is unknown to :mod:`threading`), ``frames`` a tuple of
``(code, lasti)`` pairs **outermost first**, ``wall`` the number of samples and
``cpu`` how many of them were on CPU. With ``reset`` the table is emptied
atomically with respect to the handler.
"""
from __future__ import annotations

import sys
import threading
import time
from types import CodeType
from typing import Any, Callable

_current_frames = sys._current_frames
_perf_counter = time.perf_counter


class Sampler:
    """Counts ``(thread, stack)`` keys; see the module docstring for the protocol."""

    def __init__(self, track_cpu: bool = False) -> None:
        self.track_cpu = bool(track_cpu)
        self.enabled = True
        self.on_disabled: Callable[[], Any] | None = None
        self.samples_taken = 0
        self.sample_time = 0.0
        self.errors = 0
        # (thread, id(code), lasti, id(code), lasti, ...) innermost first ->
        # [wall, cpu, codes]. Hashing a code object hashes its contents, so the
        # key holds id()s; the entry keeps the codes alive so the ids stay unique.
        self._counts: dict[tuple, list] = {}
        self._countdown = 0
        self._countdown_cb: Callable[[], Any] | None = None
        self._last_cpu: dict[int, float] = {}
        self._busy = False

    def set_countdown(self, n: int, callback: Callable[[], Any] | None) -> None:
        self._countdown = int(n) if callback is not None else 0
        self._countdown_cb = callback

    def __call__(self, signum: int, frame: Any) -> None:
        if not self.enabled:
            callback, self.on_disabled = self.on_disabled, None
            if callback is not None:
                callback()
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
                    callback()

    def _sample(self, interrupted: Any) -> None:
        counts = self._counts
        active = threading._active  # type: ignore[attr-defined]
        handler_ident = threading.get_ident()
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
            entry[0] += 1
            if self.track_cpu and self._on_cpu(ident):
                entry[1] += 1

    def _on_cpu(self, ident: int) -> bool:
        try:
            now = time.clock_gettime(time.pthread_getcpuclockid(ident))
        except (OSError, OverflowError):
            return False
        last = self._last_cpu.get(ident)
        self._last_cpu[ident] = now
        # A thread seen for the first time has no previous reading; count it as
        # running only if it has used CPU at all, so a blocked thread started
        # long ago does not show up as busy on its first sample.
        return now > (last if last is not None else 0.0)

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


def _codes(f: Any) -> tuple[CodeType, ...]:
    """The code objects of a stack, innermost first: the slow path taken once per new key."""
    codes = []
    while f is not None:
        codes.append(f.f_code)
        f = f.f_back
    return tuple(codes)
