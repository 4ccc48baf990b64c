"""Loading a big merge's files in worker processes, one per core.

Parsing a profile is pure Python holding the GIL, so a merge of a day of
rolling windows (1,440 files) loads at one core's pace in the viewer's
threads. :class:`LoadPool` spreads the files over worker processes: each
loads a run of consecutive files (by the paths the listing resolved inside
the data directory, with the loader's usual size limits) and sums them
into a :class:`plop.merge.Partial`, numbers rather than frames so that
little is pickled back. The viewer's process adds the parts in order, which
gives the very profile the in-process merge gives, and keeps each file's
summary as loading it in process would.

The workers are started with ``spawn``: the viewer is a threaded Tornado
server, and forking it could copy a lock held by another thread. They are
started on the first big merge and live until :meth:`LoadPool.close`.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import threading
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Mapping, Sequence

from plop import formats
from plop.formats._common import _gc_paused
from plop.merge import MergeSum, Partial
from plop.profile import Profile
from plop.viewer.listing import Entry, Unreadable, reason, summarize

#: Files per task: enough that a task's pickling is small beside its loading, few enough to
#: keep every worker busy until the end (a 1,440-file merge is 24 tasks on two cores).
CHUNK_FILES = 60


def cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: What a task returns: the part's sum, the summaries of the files it loaded, and the positions
#: in its run and reasons of the files it could not read (without ``skip``, at most one: the
#: files after it are not loaded).
ChunkResult = tuple[Partial, list[dict[str, Any]], list[tuple[int, str]]]


def load_chunk(paths: Sequence[str], prefixes: Mapping[tuple[Any, Any], str], skip: bool = False) -> ChunkResult:
    """A worker's task: load ``paths`` and sum them, threads renamed by the whole merge's ``prefixes``.

    With ``skip`` a file that cannot be read is left out and the others are
    summed; without, the task stops at it.
    """
    total = MergeSum(prefixes)
    summaries = []
    failed = []
    with _gc_paused():
        for i, path in enumerate(paths):
            try:
                profile = formats.load(path)
            except formats.ProfileFormatError as e:
                failed.append((i, reason(e)))
                if not skip:
                    break
                continue
            total.add(profile)
            summaries.append(summarize(profile))
        return total.partial(), summaries, failed


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the viewer, which shuts them down (no traceback from each)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LoadPool:
    """Worker processes that load and pre-sum the files of big merges (see the module's docstring)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _start(self) -> concurrent.futures.ProcessPoolExecutor:
        """The running workers, started on first use (or again, after one died)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the load pool is closed")
            if self._executor is None:
                self._executor = concurrent.futures.ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_interrupts)
            return self._executor

    def merge(self, entries: Sequence[Entry], prefixes: Mapping[tuple[Any, Any], str],
              record: Callable[[Entry, dict[str, Any]], None],
              unreadable: list[Unreadable] | None = None) -> Profile:
        """The sum of the profiles of ``entries``, as :func:`plop.merge.merge` in one process gives it.

        ``prefixes`` are :func:`plop.merge.thread_prefixes` of all the
        entries; ``record`` keeps a loaded file's summary. A file that cannot
        be read goes to ``unreadable`` and is left out of the sum; without
        that list it raises :class:`Unreadable` naming the first such file
        (in order). Raises ``BrokenProcessPool`` when a worker died (the pool
        then starts new workers for the next merge).
        """
        skip = unreadable is not None
        executor = self._start()
        size = min(CHUNK_FILES, -(-len(entries) // self.workers))  # a small merge keeps every worker busy too
        chunks = [entries[i:i + size] for i in range(0, len(entries), size)]
        futures = []
        try:
            for chunk in chunks:
                futures.append(executor.submit(load_chunk, [e.path for e in chunk], prefixes, skip))
            total = MergeSum(prefixes)
            with _gc_paused():
                for chunk, future in zip(chunks, futures):
                    part, summaries, failed = future.result()
                    bad = {i for i, _why in failed}
                    for entry, summary in zip((e for i, e in enumerate(chunk) if i not in bad), summaries):
                        record(entry, summary)
                    if failed and not skip:
                        raise Unreadable(chunk[failed[0][0]].name, failed[0][1])
                    if unreadable is not None:
                        unreadable.extend(Unreadable(chunk[i].name, why) for i, why in failed)
                    total.add_partial(part)
                return total.profile()
        except BrokenProcessPool:
            self._discard(executor)
            raise
        finally:
            for future in futures:
                future.cancel()

    def _discard(self, executor: concurrent.futures.ProcessPoolExecutor) -> None:
        """Forget a pool whose worker died, so that the next merge starts new workers."""
        with self._lock:
            if self._executor is executor:
                self._executor = None
        executor.shutdown(wait=False, cancel_futures=True)

    @property
    def running(self) -> bool:
        """True while worker processes are up."""
        return self._executor is not None

    def close(self) -> None:
        """Stop the workers (waiting for them to exit); later merges are refused."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
