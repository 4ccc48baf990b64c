"""The data directory: which of its files are profiles, and what they hold.

The viewer may be pointed at a directory such as ``/tmp`` that holds
thousands of unrelated files, FIFOs, sockets, sub-directories, symlinks and
huge logs. Listing it must never block or read whole files, so

* only the top level is scanned, and only regular files are looked at
  (``stat`` first; nothing else is ever opened);
* a symlink counts only when it resolves to a regular file inside the data
  directory; where it points is worked out with ``realpath`` (which opens
  nothing) before anything is stat'ed or opened;
* a file is recognised as a profile by its first 4 KiB
  (:func:`plop.formats.sniff`), or by a ``.plop`` name;
* what was learned about a file is cached by path, size, modification time
  and inode, so listing the same directory again costs one ``stat`` per file;
* summaries (samples, duration, ...) need a profile to be loaded; that is
  done within a time budget per listing, the rest in a background thread, so
  a directory full of large profiles lists at once and fills in later.
"""
from __future__ import annotations

import math
import os
import stat
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from plop import formats
from plop.formats import native
from plop.profile import Profile
from plop.viewer.rates import rates

#: Bytes read from a file to recognise its format.
SNIFF_BYTES = 4096
#: Files named like this are listed even when their content is not recognised.
PROFILE_SUFFIX = ".plop"

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


@dataclass(frozen=True)
class Entry:
    """One profile (or would-be profile) file of the data directory."""

    #: File name inside the data directory (what ``?filename=`` names).
    name: str
    #: Resolved path of the regular file (a symlink's target).
    path: str
    size: int
    mtime_ns: int
    #: ``"plop"``, ``"legacy"``, ``"collapsed"``, ``"speedscope"``, ``"pprof"``, or ``None``
    #: (``.plop`` name, unknown content).
    format: str | None
    #: Why the file cannot be read as a profile, or ``None``.
    error: str | None = None
    #: What the index shows (see `summarize`); ``None`` until the file was loaded.
    summary: dict[str, Any] | None = None
    #: ``(path, size, mtime_ns, inode)``: the key of every cache about this file.
    key: tuple[str, int, int, int] = field(default=("", 0, 0, 0), compare=False)
    #: A native file's metadata as read from its first bytes (see `plop.formats.native.head_metadata`).
    head: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def mtime(self) -> float:
        """Modification time, seconds since the epoch."""
        return self.mtime_ns / 1e9

    @property
    def is_profile(self) -> bool:
        """True when the content was recognised or the file is named like a profile."""
        return self.format is not None or self.name.endswith(PROFILE_SUFFIX)

    @property
    def facts(self) -> dict[str, Any]:
        """What is known of the profile without loading it again: its summary over its head's metadata.

        A service selection and the index's groups need only this, so a
        directory of rolling windows is grouped from the 4 KiB each file was
        recognised by.
        """
        return {**(self.head or {}), **(self.summary or {})}

    @property
    def pending(self) -> bool:
        """True while the file has not been loaded yet (summary still unknown)."""
        return self.error is None and self.summary is None


class Unreadable(Exception):
    """A profile of a request cannot be read: ``name`` (as listed) and why."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(name, why)
        self.name, self.why = name, why


class LRUCache:
    """A small thread-safe mapping that forgets its least recently used items."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        """The value stored under ``key``, or ``None``."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        """Store ``value`` (not ``None``) under ``key``, evicting the oldest items."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def reason(error: formats.ProfileFormatError) -> str:
    """The message of a load error without the file's path (the index already names the file)."""
    message = str(error)
    prefix = "%s: " % error.source if error.source else ""
    if error.line is not None:
        prefix = "%s:%d: " % (error.source, error.line) if error.source else ""
        message = message.replace(prefix, "line %d: " % error.line, 1) if prefix else message
    elif prefix and message.startswith(prefix):
        message = message[len(prefix) :]
    return message


def summarize(profile: Profile) -> dict[str, Any]:
    """The facts about a profile that the index shows before anyone clicks.

    Keys: ``samples``, ``stacks``, ``threads``, ``has_cpu``, and from the
    metadata when present (else ``None``): ``command``, ``start_time``,
    ``duration``, ``mode``, ``interval``, ``hostname``, ``pid``, ``service``;
    and the snapshots and real rate of :func:`plop.viewer.rates.rates`
    (its ``RATE_KEYS``), because ``samples`` are weighted and alone would hide
    a profile sampled below its asked rate.
    """
    meta = profile.metadata
    summary: dict[str, Any] = {
        "samples": profile.total_samples,
        "stacks": len(profile.samples),
        "threads": len(profile.threads()),
        "has_cpu": profile.has_cpu,
    }
    for key in ("command", "start_time", "duration", "mode", "interval", "hostname", "pid", "service"):
        summary[key] = meta.get(key)
    summary.update(rates(meta))
    return summary


class DataDirectory:
    """The profiles of one directory, with the caches that keep listing it cheap.

    Methods that touch the file system block, so the viewer calls them from
    a thread pool. They are safe to call from several threads at once.
    """

    def __init__(self, root: str, *, budget: float = 1.0, keep_profiles: int = 4) -> None:
        self.root = os.path.realpath(root)
        #: Seconds a listing may spend loading new profiles before leaving the rest pending.
        self.budget = budget
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}  # name -> entry (last seen version)
        self._loading: set[tuple[str, int, int, int]] = set()
        self._background = ThreadPoolExecutor(1, thread_name_prefix="plop-listing")
        self._profiles = LRUCache(keep_profiles)
        self.ignored = 0

    def close(self) -> None:
        """Stop the background loader (pending loads are abandoned)."""
        self._background.shutdown(wait=False, cancel_futures=True)

    def scan(self, summarize: bool = True) -> list[Entry]:
        """The profiles of the directory, newest first (by modification time).

        Files that are not profiles are left out; their number is kept in
        `ignored`. With ``summarize=False`` no profile is loaded (new files
        stay pending, not even queued for the background thread): what a
        selection by service needs, which then loads only the files it merges.
        Raises ``OSError`` when the directory cannot be listed.
        """
        deadline = time.monotonic() + self.budget if summarize else -math.inf
        profiles = []
        names = set()
        with os.scandir(self.root) as it:
            for dirent in it:
                names.add(dirent.name)
                entry = self._probe(dirent.name, dirent.is_symlink(), deadline)
                if entry is not None and entry.is_profile:
                    profiles.append(entry)
        with self._lock:
            for name in self._entries.keys() - names:
                del self._entries[name]
            self.ignored = len(names) - len(profiles)
        return sorted(profiles, key=lambda e: (-e.mtime_ns, e.name))

    def lookup(self, name: str) -> Entry | None:
        """The profile called ``name`` in the directory, or ``None``.

        ``None`` unless ``name`` is a plain file name (no separators, not
        ``.`` or ``..``) of a regular file inside the directory (a symlink
        may point elsewhere inside it) that is, or is named like, a profile.
        The file is loaded to summarise it if that was not done yet.
        """
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            return None
        if os.sep in name or (os.altsep and os.altsep in name):
            return None
        try:
            is_link = stat.S_ISLNK(os.lstat(os.path.join(self.root, name)).st_mode)
        except (OSError, ValueError):
            return None
        entry = self._probe(name, is_link, deadline=None)
        return entry if entry is not None and entry.is_profile else None

    def load(self, entry: Entry) -> Profile:
        """The profile of ``entry``, from a small cache of recently loaded ones.

        Raises :class:`plop.formats.ProfileFormatError` when it cannot be read.
        """
        profile = self._profiles.get(entry.key)
        if profile is None:
            profile = formats.load(entry.path)
            self._profiles.put(entry.key, profile)
            self.record(entry, summarize(profile))
        return profile

    def record(self, entry: Entry, summary: dict[str, Any]) -> None:
        """Keep the summary of a file that was loaded for a merge (here or in a worker process).

        A merge loads files the listing has not summarised yet: keeping their
        summary spares the index (or the background loader) loading them again.
        """
        with self._lock:
            current = self._entries.get(entry.name)
            if current is not None and current.key == entry.key and current.pending:
                self._entries[entry.name] = replace(current, summary=summary)

    def _probe(self, name: str, is_link: bool, deadline: float | None) -> Entry | None:
        """What the file ``name`` is, or ``None`` when it is no regular file inside the directory.

        A profile is loaded to summarise it unless ``deadline`` has passed;
        then it is returned pending and loaded in the background.
        """
        path = os.path.join(self.root, name)
        if is_link:
            path = os.path.realpath(path)
            if path == self.root or os.path.commonpath([self.root, path]) != self.root:
                return None
        try:
            st = os.stat(path) if is_link else os.lstat(path)
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        key = (path, st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            entry = self._entries.get(name)
        if entry is None or entry.key != key:
            entry = self._sniff(name, path, st, key)
        if entry.is_profile and entry.pending:
            if deadline is None or time.monotonic() < deadline:
                entry = self._summarize(entry)
            elif deadline > -math.inf:
                self._load_later(entry)
        with self._lock:
            self._entries[name] = entry
        return entry

    def _sniff(self, name: str, path: str, st: os.stat_result, key: tuple[str, int, int, int]) -> Entry:
        """Read the first bytes of a regular file and recognise its format."""
        entry = Entry(name, path, st.st_size, st.st_mtime_ns, None, key=key)
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as e:
            return replace(entry, error="cannot open: %s" % (e.strerror or e))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return replace(entry, error="not a regular file")
            head = os.read(fd, SNIFF_BYTES)
        except OSError as e:
            return replace(entry, error="cannot read: %s" % (e.strerror or e))
        finally:
            os.close(fd)
        kind = formats.sniff(head)
        if kind is None and name.endswith(PROFILE_SUFFIX):
            return replace(entry, error="not a profile: unrecognised content")
        return replace(entry, format=kind, head=native.head_metadata(head) if kind == "plop" else None)

    def _summarize(self, entry: Entry) -> Entry:
        """Load the profile of ``entry`` and return the entry with its summary or error."""
        try:
            profile = self.load(entry)
        except formats.ProfileFormatError as e:
            return replace(entry, error=reason(e))
        return replace(entry, summary=summarize(profile))

    def _load_later(self, entry: Entry) -> None:
        """Summarise ``entry`` in the background thread (once per file version)."""
        with self._lock:
            if entry.key in self._loading:
                return
            self._loading.add(entry.key)

        def work() -> None:
            try:
                with self._lock:
                    current = self._entries.get(entry.name)
                if current is not None and current.key == entry.key and not current.pending:
                    return  # summarised meanwhile (a merge loaded it)
                done = self._summarize(entry)
                with self._lock:
                    current = self._entries.get(entry.name)
                    if current is None or current.key == done.key:
                        self._entries[entry.name] = done
            finally:
                with self._lock:
                    self._loading.discard(entry.key)

        self._background.submit(work)


class NamedFiles:
    """Just the profiles named on the command line (``python -m plop.viewer FILE...``).

    The same interface as :class:`DataDirectory` (``scan``, ``lookup``,
    ``load``, ``root``, ``ignored``, ``close``), over one
    :class:`DataDirectory` per directory holding a named file, each asked only
    about those names: nothing else in those directories is listed or
    served. A file is listed under its base name; a second file of the same
    base name gets `` (2)`` after it, and so on.
    """

    def __init__(self, paths: list[str]) -> None:
        self._directories: dict[str, DataDirectory] = {}
        #: Listed name -> the directory and the file's name in it.
        self._names: dict[str, tuple[DataDirectory, str]] = {}
        for path in paths:
            real = os.path.realpath(path)
            directory, base = os.path.split(real)
            if directory not in self._directories:
                self._directories[directory] = DataDirectory(directory)
            name, n = base, 2
            while name in self._names:
                if self._names[name] == (self._directories[directory], base):
                    break  # the same file named twice
                name, n = "%s (%d)" % (base, n), n + 1
            self._names[name] = (self._directories[directory], base)
        dirs = list(self._directories)
        self.root = os.path.commonpath(dirs) if dirs else ""
        self.ignored = 0

    @property
    def names(self) -> list[str]:
        """The listed names, in the order the files were named."""
        return list(self._names)

    def close(self) -> None:
        for directory in self._directories.values():
            directory.close()

    def scan(self, summarize: bool = True) -> list[Entry]:
        """The named files that are profiles, newest first (one ``stat`` each once summarised).

        They are few and always summarised (``summarize`` is accepted for
        :meth:`DataDirectory.scan`'s sake).
        """
        entries = [e for e in map(self.lookup, self._names) if e is not None]
        return sorted(entries, key=lambda e: (-e.mtime_ns, e.name))

    def lookup(self, name: str) -> Entry | None:
        """The named file listed as ``name``, or ``None`` (any other name, or not a profile)."""
        named = self._names.get(name)
        if named is None:
            return None
        directory, base = named
        entry = directory.lookup(base)
        return None if entry is None else replace(entry, name=name)

    def load(self, entry: Entry) -> Profile:
        """The profile of ``entry`` (see :meth:`DataDirectory.load`)."""
        return self._names[entry.name][0].load(entry)

    def record(self, entry: Entry, summary: dict[str, Any]) -> None:
        """Keep the summary of a file loaded for a merge (see :meth:`DataDirectory.record`)."""
        directory, base = self._names[entry.name]
        directory.record(replace(entry, name=base), summary)
