"""Always-on profiling of a live program: rolling profiles written into a data directory.

``plop.start()`` arms one collector for the whole process and returns a
:class:`LiveProfiler`; with a ``window`` it cuts the samples into consecutive
windows and writes one native profile per window, named so that a week of
windows sorts and groups naturally::

    <service>-<YYYYmmddTHHMMSS.mmm>Z-<pid>.plop      (window start, UTC)

What happens where:

* the collector's sampler thread only counts stacks;
* a background thread (``plop-live``) cuts each window with
  ``Collector.profile(reset=True)`` (the counts are taken and emptied in one
  step, so no sample is lost or counted twice), encodes it and writes it
  atomically, applies retention and checks the overhead budget;
* the last window is written at normal exit (``atexit``), on ``SIGTERM`` and
  by ``stop()``;
* after ``fork()`` the child (which has no sampler thread: fork keeps only
  the forking thread) throws away the parent's samples and starts its own
  collector and writer thread, writing files under its own pid.

Nothing plop's machinery does may crash the program: errors are reported once
each on stderr, prefixed ``plop:``, and profiling goes on when it can.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import sys
import threading
import time
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

from plop import formats
from plop.collector import MODES, Collector
from plop.profile import Profile

__all__ = ["start", "stop", "record", "current", "LiveProfiler"]

#: name of plop's own background thread, left out of the profiles it writes
THREAD_NAME = "plop-live"

#: how often the background thread looks whether a window is due (seconds)
CHECK_PERIOD = 0.5

#: the overhead budget never slows sampling below this many snapshots a second
FLOOR_RATE = 10.0
#: windows the overhead budget looks back over
BUDGET_HORIZON = 5
#: at most one message about rate changes per this many seconds
RATE_LOG_PERIOD = 60.0

#: The collector's cumulative counters that a window reports as their growth over the window.
WINDOW_COUNTERS = ("samples_taken", "ticks", "sample_time", "sampler_cpu_time", "gil_wait", "late", "errors")

_module_lock = threading.RLock()
_active: "LiveProfiler | None" = None
_hooks_installed = False


def _say(message: str) -> None:
    try:
        sys.stderr.write("plop: %s\n" % message)
        sys.stderr.flush()
    except Exception:  # a closed stderr must not turn into the program's error
        pass


class _LiveCollector(Collector):
    """A collector whose rate can change while it runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timer_interval = self.interval

    def set_rate(self, interval: float) -> None:
        """Take snapshots every ``interval`` seconds from now on (any thread may call this).

        The counts keep their unit (the collector's ``interval``): a slower
        rate gives each snapshot a larger weight, so windows stay comparable.
        """
        with self._lock:
            self._sampler.pace = interval
            self.timer_interval = interval


class WindowCost(NamedTuple):
    """What one window cost (CPU seconds) and what the process did meanwhile."""

    sampler_cpu: float  # plop's sampler thread
    write_cpu: float    # cutting, encoding and writing the window
    snapshots: int
    cpu: float          # the process's CPU seconds
    wall: float         # the window's wall seconds


def budget_interval(history: Sequence[WindowCost], budget: float, asked: float, current: float,
                    mode: str) -> float:
    """The interval to sample at next, so that plop costs at most ``budget``.

    "plop may cost 1% of this process" is read as 1% of what the process could
    use of the machine: its CPU time plus one core's wall time, over the last
    few windows. Against CPU time alone an idle server makes any cost look
    huge, and the budget throttled the busy window that followed. A snapshot
    costs about the same at any rate, so the interval that fits is computed
    directly (with a 20% margin), never shorter than asked (back to the asked
    rate as soon as the cost allows) nor longer than ``1 / FLOOR_RATE``.
    """
    snapshots = sum(w.snapshots for w in history)
    wall = sum(w.wall for w in history)
    if not snapshots or wall <= 0:
        return current
    cpu = sum(w.cpu for w in history)
    per_snapshot = sum(w.sampler_cpu for w in history) / snapshots
    allowed = budget * (cpu + wall) / wall - sum(w.write_cpu for w in history) / wall  # CPU s per s
    floor = max(asked, 1.0 / FLOOR_RATE)
    if allowed <= 0:
        return floor
    # Snapshots per second at interval i: 1/i on the wall clock, cpu_rate/i on the CPU clock.
    clock_rate = 1.0 if mode == "real" else cpu / wall
    needed = per_snapshot * clock_rate / allowed
    if needed <= asked:
        return asked
    return round(min(floor, max(asked, needed * 1.25)), 6)


def _stamp(t: float) -> str:
    ms = int((t - int(t)) * 1000)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(int(t))) + ".%03dZ" % ms


def _clean_service(service: str | None) -> str:
    if service is None:
        argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
        service = os.path.basename(argv0)
        if service.endswith(".py"):
            service = service[:-3]
        if not service or service in ("-c", "-m", "__main__.py", "__main__"):
            service = "python"
    if not isinstance(service, str) or not service:
        raise ValueError("service must be a non-empty string, not %r" % (service,))
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", service).lstrip(".") or "python"


def window_pattern(service: str) -> re.Pattern[str]:
    """Matches the file names of the windows ``service`` writes (native or pprof); groups: stamp, pid."""
    return re.compile(r"%s-(\d{8}T\d{6}\.\d{3}Z)-(\d+)\.(?:plop|pb\.gz)\Z" % re.escape(_clean_service(service)))


class LiveProfiler:
    """A running whole-process profile: the handle :func:`start` returns.

    ``stop()`` writes what was collected and stops; ``snapshot()`` returns
    the profile since ``start`` without disturbing it. ``files`` lists the
    windows written so far.
    """

    def __init__(
        self,
        datadir: str | os.PathLike[str] = "profiles",
        mode: str = "real",
        interval: float = 0.01,
        window: float | None = 60.0,
        service: str | None = None,
        labels: Mapping[str, str] | None = None,
        max_files: int | None = None,
        max_bytes: int | None = None,
        overhead_budget: float | None = 0.01,
        format: str = "plop",
    ) -> None:
        if format not in ("plop", "pprof"):
            raise ValueError("windows are written as format 'plop' or 'pprof', not %r" % (format,))
        if mode not in MODES:
            raise ValueError("unknown mode %r: choose one of %s" % (mode, ", ".join(sorted(MODES))))
        try:
            interval = float(interval)
        except (TypeError, ValueError):
            raise ValueError("interval must be a number of seconds, not %r" % (interval,)) from None
        if not 0 < interval < float("inf"):
            raise ValueError("interval must be a positive number of seconds, not %r" % interval)
        if window is not None:
            window = float(window)
            if not 0 < window < float("inf"):
                raise ValueError("window must be a positive number of seconds (or None), not %r" % window)
        for name, value in (("max_files", max_files), ("max_bytes", max_bytes)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError("%s must be a positive integer (or None), not %r" % (name, value))
        if overhead_budget is not None:
            overhead_budget = float(overhead_budget)
            if not overhead_budget >= 0:
                raise ValueError("overhead_budget must be a fraction >= 0 (or None), not %r" % overhead_budget)
        labels = dict(labels or {})
        for k, v in labels.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError("labels must map strings to strings, not %r: %r" % (k, v))
        self.datadir = os.fspath(datadir)
        self.mode = mode
        self.interval = interval
        self.window = window
        self.service = _clean_service(service)
        self.labels = labels
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.overhead_budget = overhead_budget or None
        self._budget_history: list[WindowCost] = []
        self._rate_change: dict[str, float] | None = None
        self._last_rate_log = -RATE_LOG_PERIOD
        self.format = format
        self.files: list[str] = []
        #: windows cut so far (written or not)
        self.windows_cut = 0
        self.running = False
        self.start_time: float | None = None
        self._root: Any = None
        self._collector: _LiveCollector | None = None
        self._lock = threading.RLock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._past: Profile | None = None
        self._warned: set[str] = set()
        self._prev_sigterm: Any = None
        self._sigterm_installed = False
        self._pid = os.getpid()
        self._reset_window_figures()

    # -- life cycle --------------------------------------------------------------

    def start(self) -> "LiveProfiler":
        """Start sampling and writing windows (from any thread)."""
        with self._lock:
            if self.running:
                raise RuntimeError("this profiler is already running")
            try:
                os.makedirs(self.datadir, exist_ok=True)
            except OSError as exc:
                self._warn_once("write", "cannot create the data directory %s: %s; profiling goes on, "
                                "further write errors are not reported" % (self.datadir, exc))
            self._start_collector()
            self._install_sigterm()
            _install_process_hooks()
        return self

    def _start_collector(self) -> None:
        collector = _LiveCollector(self.interval, self.mode)
        if self._root is not None:
            collector.set_root(self._root)
        collector.start()
        self._budget_history = []
        self._rate_change = None
        self._collector = collector
        self._past = None
        self._pid = os.getpid()
        self.start_time = time.time()
        self.running = True
        self._reset_window_figures()
        self._stop_event = threading.Event()
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def set_root(self, code: Any) -> None:
        """Drop frames above ``code`` from the stacks (the runner hides its own frames)."""
        self._root = code
        if self._collector is not None:
            self._collector.set_root(code)

    def stop(self) -> None:
        """Write what was collected since the last window and stop; any thread may call it."""
        global _active
        with self._lock:
            if not self.running:
                return
            self.running = False
            self._stop_event.set()
            collector = self._collector
            assert collector is not None
            collector.stop()
            self._cut(final=True)
            if threading.current_thread() is threading.main_thread():
                self._uninstall_sigterm()
        with _module_lock:
            if _active is self:
                _active = None
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            thread.join(5.0)

    def __enter__(self) -> "LiveProfiler":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def effective_interval(self) -> float:
        c = self._collector
        return c.timer_interval if c is not None else self.interval

    @property
    def collector(self) -> Collector | None:
        return self._collector

    # -- reading -----------------------------------------------------------------

    def snapshot(self) -> Profile:
        """Everything sampled since ``start`` (all windows so far plus the current one).

        Neither stops sampling nor disturbs the windows: the current counts are
        copied, not taken.
        """
        with self._lock:
            collector = self._collector
            if collector is None:
                return Profile()
            current = _without_plop(collector.profile())
            profile = current if self._past is None else self._past.merged(current)
            now = time.time()
            meta = dict(current.metadata)
            meta.update(self._common_metadata())
            meta.update(start_time=self.start_time, window_start=self.start_time, window_end=now,
                        duration=round(now - (self.start_time or now), 6))
            profile.metadata = meta
            return profile

    def _common_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"service": self.service, "effective_interval": self.effective_interval}
        if self.labels:
            meta["labels"] = dict(self.labels)
        if self.overhead_budget is not None:
            meta["overhead_budget"] = self.overhead_budget
        return meta

    # -- windows -----------------------------------------------------------------

    def _reset_window_figures(self, counters: dict[str, Any] | None = None) -> None:
        """Start a window; ``counters`` are the collector's cumulative counters at the cut."""
        self._window_start = time.time()
        self._window_mono = time.monotonic()
        self._window_cpu = time.process_time()
        self._window_counters = dict.fromkeys(WINDOW_COUNTERS, 0) if counters is None else counters
        self._window_write_time = 0.0

    def _run(self) -> None:
        """The writer thread: cut windows when due."""
        stop_event = self._stop_event
        while True:
            if self.window is not None:
                wait = self._window_mono + self.window - time.monotonic()
                wait = min(CHECK_PERIOD, max(0.0, wait))
            else:
                wait = CHECK_PERIOD
            if stop_event.wait(wait):
                return
            try:
                with self._lock:
                    if not self.running or stop_event.is_set():
                        return
                    if self.window is not None and time.monotonic() >= self._window_mono + self.window:
                        self._cut(final=False)
            except Exception as exc:  # never into the program
                self._warn_once("internal", "internal error in the profile writer (%s: %s); "
                                "profiling goes on" % (type(exc).__name__, exc))

    def _cut(self, final: bool) -> str | None:
        """Take the current window's samples, write them, apply retention and the budget.

        Called with ``self._lock`` held. Returns the path written, if any.
        """
        collector = self._collector
        if collector is None:
            return None
        t0 = time.thread_time()
        self.windows_cut += 1
        profile = collector.profile(reset=True)
        # The collector's counters are cumulative, read when the counts were taken (so they
        # agree with the stacks): the window's are their growth since the previous cut.
        counters = {name: profile.metadata[name] for name in WINDOW_COUNTERS}
        window = {name: round(counters[name] - self._window_counters[name], 6) for name in WINDOW_COUNTERS}
        end = time.time()
        cpu = time.process_time() - self._window_cpu
        profile = _without_plop(profile)
        start = self._window_start
        write_time_before = self._window_write_time
        meta = profile.metadata
        meta.update(self._common_metadata())
        meta.update(window)
        meta.update(
            start_time=start, window_start=start, window_end=end, duration=round(end - start, 6),
            cpu_time=round(cpu, 6), pid=os.getpid(),
            samples_asked=int((cpu if self.mode != "real" else end - start) / self.effective_interval),
        )
        if self._rate_change is not None:
            meta["rate_change"] = self._rate_change
            self._rate_change = None
        effective = self.effective_interval
        self._reset_window_figures(counters)
        self._window_start = end
        self._past = profile if self._past is None else self._past.merged(profile)
        path = None
        if window["samples_taken"] or self.window is None:
            path = self._write(profile, start)
        write_time = time.thread_time() - t0
        if not final:
            self._budget_window(window["sampler_cpu_time"], write_time + write_time_before,
                                window["samples_taken"], cpu, end - start, effective)
        else:
            self._window_write_time += write_time
        return path

    def _write(self, profile: Profile, start: float) -> str | None:
        name = "%s-%s-%d.%s" % (self.service, _stamp(start), os.getpid(), formats.EXTENSIONS[self.format])
        path = os.path.join(self.datadir, name)
        try:
            os.makedirs(self.datadir, exist_ok=True)
            formats.dump(profile, path, self.format)
        except Exception as exc:
            self._warn_once("write", "cannot write profiles to %s (%s); profiling goes on, further "
                            "write errors are not reported" % (self.datadir, exc))
            return None
        self.files.append(path)
        if len(self.files) > 1000:
            del self.files[:-1000]
        try:
            self._retain(path)
        except Exception as exc:
            self._warn_once("retention", "cannot apply retention in %s (%s)" % (self.datadir, exc))
        return path

    def _retain(self, newest: str) -> None:
        if self.max_files is None and self.max_bytes is None:
            return
        pattern = window_pattern(self.service)
        entries = []
        with os.scandir(self.datadir) as it:
            for entry in it:
                m = pattern.match(entry.name)
                if m is None:
                    continue
                try:
                    size = entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
                entries.append((m.group(1), int(m.group(2)), entry.path, size))
        entries.sort()
        count = len(entries)
        total = sum(e[3] for e in entries)
        newest = os.path.abspath(newest)
        for _stamp_, _pid, path, size in entries:
            over = (self.max_files is not None and count > self.max_files) or (
                self.max_bytes is not None and total > self.max_bytes)
            if not over or count <= 1:
                break
            if os.path.abspath(path) == newest:
                continue
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            count -= 1
            total -= size

    def _budget_window(self, sampler_cpu: float, write_cpu: float, snapshots: int, cpu: float,
                       wall: float, effective: float) -> None:
        """Feed one window's figures to the overhead budget; change the rate if it says so."""
        collector = self._collector
        if self.overhead_budget is None or collector is None or not self.running:
            return
        self._budget_history.append(WindowCost(sampler_cpu, write_cpu, snapshots, cpu, wall))
        del self._budget_history[:-BUDGET_HORIZON]
        new = budget_interval(self._budget_history, self.overhead_budget, self.interval, effective,
                              self.mode)
        if abs(new - effective) < 1e-6:
            return
        collector.set_rate(new)
        cost = sum(w.sampler_cpu + w.write_cpu for w in self._budget_history)
        allowance = sum(w.cpu + w.wall for w in self._budget_history)
        share = 100.0 * cost / allowance if allowance > 0 else 0.0
        self._rate_change = {"time": round(time.time(), 3), "from": effective, "to": new,
                             "cost": round(share / 100, 6)}
        now = time.monotonic()
        if now - self._last_rate_log >= RATE_LOG_PERIOD:
            self._last_rate_log = now
            _say("sampling every %g s instead of every %g s: plop cost %.2f%% of the process's CPU "
                 "plus one core's wall time over the last %d window(s), budget %.2f%% (asked: every %g s; "
                 "files say effective_interval and rate_change)"
                 % (new, effective, share, len(self._budget_history), 100 * self.overhead_budget,
                    self.interval))

    def _warn_once(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        _say(message)

    # -- SIGTERM -----------------------------------------------------------------

    def _install_sigterm(self) -> None:
        if self._sigterm_installed:
            return
        previous = signal.getsignal(signal.SIGTERM)
        if previous is signal.SIG_IGN or previous is None:
            return  # ignored, or handled outside Python: leave it alone
        self._prev_sigterm = previous
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self._sigterm_installed = True

    def _uninstall_sigterm(self) -> None:
        if self._sigterm_installed and signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            signal.signal(signal.SIGTERM, self._prev_sigterm)
            self._sigterm_installed = False

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        previous = self._prev_sigterm
        if callable(previous):
            # The program's own handler decides whether to exit: write the
            # window so far, keep sampling, then run it.
            try:
                with self._lock:
                    if self.running and self._pid == os.getpid():
                        self._cut(final=True)
            except Exception as exc:
                self._warn_once("internal", "could not write the profile on SIGTERM (%s)" % exc)
            previous(signum, frame)
            return
        try:
            if self._pid == os.getpid():
                self.stop()
        except Exception as exc:
            self._warn_once("internal", "could not write the profile on SIGTERM (%s)" % exc)
        # Die of SIGTERM, as the program would have without plop.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    # -- fork --------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        """Start over in a forked child: own collector, own thread, own pid; none of the parent's samples."""
        self._lock = threading.RLock()
        old = self._collector
        self._collector = None
        self.running = False
        self.files = []
        if old is None:
            return
        old._lock = threading.RLock()
        old._running = False
        try:
            with self._lock:
                self._start_collector()
        except Exception as exc:
            self._warn_once("fork", "could not start profiling in the forked process %d (%s)"
                            % (os.getpid(), exc))
            return
        # multiprocessing children leave through os._exit, skipping atexit:
        # its finalizers run before that.
        util = sys.modules.get("multiprocessing.util")
        if util is not None:
            try:
                util.register_after_fork(self, _register_mp_finalizer)
            except Exception:
                pass


def _register_mp_finalizer(handle: LiveProfiler) -> None:
    import multiprocessing.util as util

    util.Finalize(None, _at_exit, exitpriority=-100)


def _is_plop(key: Any) -> bool:
    """plop's writer thread, or a stack that starts in this module (its exit hook)."""
    thread, stack = key
    return thread == THREAD_NAME or bool(stack) and stack[0].filename == __file__


def _without_plop(profile: Profile) -> Profile:
    """Leave plop's own writer thread and exit hook out of a profile."""
    if not any(_is_plop(key) for key in profile.samples):
        return profile
    samples = {k: n for k, n in profile.samples.items() if not _is_plop(k)}
    cpu = None
    if profile.cpu_samples is not None:
        cpu = {k: n for k, n in profile.cpu_samples.items() if not _is_plop(k)}
    return Profile(samples, profile.metadata, cpu)


def _at_exit() -> None:
    handle = _active
    if handle is not None and handle._pid == os.getpid():
        try:
            handle.stop()
        except Exception as exc:
            _say("could not write the last profile at exit (%s)" % exc)


def _after_fork_in_child() -> None:
    global _module_lock
    _module_lock = threading.RLock()
    handle = _active
    if handle is not None and handle.running:
        handle._after_fork_in_child()


def _install_process_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_at_exit)
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- the public API ----------------------------------------------------------------


def start(
    datadir: str | os.PathLike[str] = "profiles",
    mode: str = "real",
    interval: float = 0.01,
    window: float | None = 60.0,
    service: str | None = None,
    labels: Mapping[str, str] | None = None,
    max_files: int | None = None,
    max_bytes: int | None = None,
    overhead_budget: float | None = 0.01,
    format: str = "plop",
) -> LiveProfiler:
    """Start profiling the whole process; returns the handle (see :class:`LiveProfiler`).

    Raises ``RuntimeError`` if plop is already running in this process.
    """
    with _module_lock:
        if _active is not None and _active.running:
            raise RuntimeError(
                "plop is already running in this process (mode %s, writing to %s); "
                "call plop.stop() before starting it again" % (_active.mode, _active.datadir))
        handle = LiveProfiler(datadir=datadir, mode=mode, interval=interval, window=window,
                              service=service, labels=labels, max_files=max_files,
                              max_bytes=max_bytes, overhead_budget=overhead_budget, format=format)
        return activate(handle)


def activate(handle: LiveProfiler) -> LiveProfiler:
    """Start a :class:`LiveProfiler` built by the caller as the process's one profiler."""
    global _active
    with _module_lock:
        if _active is not None and _active.running:
            raise RuntimeError(
                "plop is already running in this process (mode %s, writing to %s); "
                "call plop.stop() before starting it again" % (_active.mode, _active.datadir))
        handle.start()
        _active = handle
        return handle


def stop() -> None:
    """Write what plop collected and stop it; does nothing when plop is not running."""
    handle = _active
    if handle is not None:
        handle.stop()


def current() -> LiveProfiler | None:
    """The running profiler started by :func:`start`, if any."""
    handle = _active
    return handle if handle is not None and handle.running else None


@contextlib.contextmanager
def record(path: str | os.PathLike[str], mode: str = "prof", interval: float = 0.01,
           format: str | None = None) -> Iterator[Collector]:
    """Profile a block and write one file (native, or the format its extension names)::

        with plop.record("out.plop", mode="prof", interval=0.01):
            work()
    """
    fmt = format or formats.format_for_path(path)
    if fmt not in formats.FORMATS and fmt != "collapsed":
        raise ValueError("unknown format %r: choose one of %s" % (fmt, ", ".join(formats.FORMATS)))
    collector = Collector(interval=interval, mode=mode)
    collector.start()
    try:
        yield collector
    finally:
        collector.stop()
        profile = collector.profile()
        parent = os.path.dirname(os.fspath(path))
        if parent:
            os.makedirs(parent, exist_ok=True)
        formats.dump(profile, path, fmt)
