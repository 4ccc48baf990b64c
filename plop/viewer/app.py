"""The viewer's Tornado application: routes and thin handlers.

Routes (documented with their JSON shapes in docs/viewer.md):

* ``/``: the index of the data directory's profiles (HTML, works without JavaScript);
* ``/api/profiles``: the same index as JSON;
* ``/view?filename=NAME``: the page of one profile (graph, flame graph, top table, function details);
* ``/data?filename=NAME``: its call graph as JSON;
* ``/api/flame``, ``/api/top``, ``/api/function``: its call tree, its functions, one function's
  callers, callees and lines.

Every route of one profile takes the same parameters (``view``, ``thread``,
and the ``focus``, ``ignore`` and ``hide`` filters of :mod:`plop.analysis`).

File-system and CPU-heavy work (listing, loading, graph building) runs in a
thread pool so one large profile does not stall other requests.
"""
from __future__ import annotations

import concurrent.futures
from concurrent.futures.process import BrokenProcessPool
import hashlib
import json
import math
import os
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import quote, urlencode

import tornado.web
from tornado.ioloop import IOLoop

from plop import formats
from plop.analysis import FLAME_FRACTION, FilterError, Filters, apply_filters, flame_tree
from plop.callgraph import VIEWS, CallGraph, select
from plop.merge import (
    compare_details, compare_graph, compare_table, compare_tree, group_windows, merge, parse_time, select_windows,
    thread_prefixes, window_of,
)
from plop.profile import Profile
from plop.viewer.colors import package_colors
from plop.viewer.listing import DataDirectory, Entry, LRUCache, Unreadable, reason
from plop.viewer.pool import LoadPool, cores
from plop.viewer.rates import RATE_KEYS
from plop.viewer.source import SourceDirectories
from plop.viewer.templating import make_environment

_T = TypeVar("_T")

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
#: Nodes the graph page asks for when the URL does not say.
DEFAULT_MAX_NODES = 100
#: The parameters that choose the profiles of a request and the base it is compared with.
SOURCE_PARAMS = ("filename", "service", "since", "until", "base", "base_service", "base_since", "base_until",
                 "normalize")
#: Files from which a merge is loaded by worker processes (`plop.viewer.pool`) rather than in the
#: viewer's process: below it, starting the workers (once) and pickling would cost more than they save.
POOL_FILES = 64
#: The tabs of ``/view`` (its ``tab`` parameter).
TABS = ("graph", "flame", "top", "function")

# Pages load only their own scripts and styles, and nothing can frame them.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class Source:
    """The profiles one side of a request is about, summed: one file, ticked files or a service's windows.

    ``selection`` echoes a selection by service (``service``, ``since`` and
    ``until`` as given, ``without_metadata``: profiles left out because they
    record no service or time); ``None`` for files named one by one.
    """

    entries: tuple[Entry, ...]
    profile: Profile
    selection: dict[str, Any] | None = None

    @property
    def key(self) -> Any:
        """What the caches of the summed profile are keyed by: the files' versions (and the selection)."""
        if len(self.entries) == 1 and self.selection is None:
            return self.entries[0].key
        # (the unreadable files a selection left out are not among the entries: no need to key on them)
        selection = tuple(sorted((k, v) for k, v in (self.selection or {}).items() if k != "unreadable"))
        return ("merged", tuple(e.key for e in self.entries), selection)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    @property
    def name(self) -> str:
        """What the page calls it: the file's name, the service, or how many files."""
        if len(self.entries) == 1 and self.selection is None:
            return self.entries[0].name
        if self.selection is not None:
            return "%s · %d profile%s" % (self.selection["service"], len(self.entries),
                                          "" if len(self.entries) == 1 else "s")
        return "%d profiles merged" % len(self.entries)

    @property
    def format(self) -> str | None:
        """The files' format, ``"mixed"`` when they differ, ``None`` when there are none."""
        kinds = {e.format for e in self.entries}
        return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else None)

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)

    @property
    def mtime(self) -> float:
        return max((e.mtime for e in self.entries), default=0.0)

    @property
    def summary(self) -> dict[str, Any]:
        """The index's summary of the file, or of the sum."""
        if len(self.entries) == 1 and self.entries[0].summary:
            return self.entries[0].summary
        return {"samples": self.profile.total_samples}

    def message(self) -> str | None:
        """Why the answer is empty, when a selection by service found no profile."""
        if self.entries or self.selection is None:
            return None
        s = self.selection
        text = "no profiles of service %r" % s["service"]
        if s.get("since") or s.get("until"):
            text += " between %s and %s" % (s.get("since") or "the first", s.get("until") or "now")
        if s.get("without_metadata"):
            text += " (%d profile%s without a service or time left out)" % (
                s["without_metadata"], "" if s["without_metadata"] == 1 else "s")
        if s.get("unreadable"):
            text += " that could be read (%d unreadable: %s)" % (
                len(s["unreadable"]), ", ".join(u["name"] for u in s["unreadable"][:3]))
        return text

    def describe(self) -> dict[str, Any]:
        """What answers say about the profiles they are made from."""
        about: dict[str, Any] = {"profiles": self.names}
        if self.selection is not None:
            about["selection"] = self.selection
        message = self.message()
        if message:
            about["message"] = message
        return about


@dataclass(frozen=True)
class Query:
    """Everything a view is a function of: the profiles, the view, thread, filters and the base to compare with."""

    source: Source
    view: str = "wall"
    thread: str | None = None
    filters: Filters = Filters()
    base: Source | None = None
    normalize: bool = True

    @property
    def key(self) -> tuple:
        base = (self.base.key, self.normalize) if self.base is not None else None
        return (self.source.key, self.view, self.thread, self.filters, base)


class Viewer:
    """What the handlers share: the profiles, templates, source directories and caches.

    ``files`` is a data directory, or a :class:`plop.viewer.listing.DataDirectory`-like
    object (the files named on the command line); ``sources`` are the
    directories whose files the function view may show (``--source``).
    A merge of ``pool_files`` files or more is loaded by ``workers``
    processes (default: one per core; fewer than two, never), started on the
    first such merge and stopped by :meth:`close`.
    """

    def __init__(self, files: str | Any, sources: list[str] | tuple[str, ...] = (), *,
                 pool_files: int = POOL_FILES, workers: int | None = None) -> None:
        self.datadir = DataDirectory(files) if isinstance(files, str) else files
        workers = cores() if workers is None else workers
        self.pool = LoadPool(workers) if workers > 1 else None
        self.pool_files = max(2, pool_files)  # one file is never worth a worker
        self.sources = SourceDirectories(sources)
        self.templates = make_environment()
        self._profiles = LRUCache(8)
        self._graphs = LRUCache(8)
        self._threads = LRUCache(16)
        self._merged = LRUCache(4)
        self._packages = LRUCache(16)
        self._bodies = LRUCache(64)
        self._lock = threading.Lock()
        self._building: dict[Any, concurrent.futures.Future] = {}

    def merged(self, entries: list[Entry]) -> Profile:
        """The sum of the profiles of ``entries`` (cached per file versions); each file is loaded once.

        A big merge is loaded and summed by the worker processes (`plop.viewer.pool`), its parts
        added here in order: the same profile as loading every file here. Raises
        :class:`Unreadable` naming the (first) file that cannot be read.
        """
        return self._merge(entries, skip=False)[0]

    def merged_skipping(self, entries: list[Entry]) -> tuple[Profile, list[Unreadable]]:
        """The sum of the profiles of ``entries`` that can be read, and the files that cannot.

        For a service's windows: one window cut short by a crash must not hide
        the day's others, but the answer names it.
        """
        return self._merge(entries, skip=True)

    def _merge(self, entries: list[Entry], skip: bool) -> tuple[Profile, list[Unreadable]]:
        if not entries:
            return Profile(), []
        if len(entries) == 1:
            try:
                return self._load(entries[0]), []
            except Unreadable as e:
                if not skip:
                    raise
                return Profile(), [e]
        key = (tuple(e.key for e in entries), skip)
        cached = self._merged.get(key)
        if cached is None:
            processes = [(e.facts.get("hostname"), e.facts.get("pid")) for e in entries]
            unreadable: list[Unreadable] = []
            profile = None
            if self.pool is not None and len(entries) >= self.pool_files:
                try:
                    profile = self.pool.merge(entries, thread_prefixes(processes), self.datadir.record,
                                              unreadable if skip else None)
                except BrokenProcessPool:
                    unreadable.clear()  # a worker was killed (out of memory?): this merge is done here,
                    # the next gets new workers
            if profile is None:
                profile = merge(self._loaded(entries, unreadable if skip else None), processes)
            cached = (profile, unreadable)
            self._merged.put(key, cached)
        return cached

    def _loaded(self, entries: list[Entry], unreadable: list[Unreadable] | None) -> Iterator[Profile]:
        """The profiles of ``entries``, one at a time; the unreadable ones go to ``unreadable`` (or raise)."""
        for entry in entries:
            try:
                yield self._load(entry)
            except Unreadable as e:
                if unreadable is None:
                    raise
                unreadable.append(e)

    def close(self) -> None:
        """Stop the merge workers and the listing's background loader (the app shuts down)."""
        if self.pool is not None:
            self.pool.close()
        self.datadir.close()

    def _load(self, entry: Entry) -> Profile:
        """One profile; a load error names the file as the directory lists it."""
        try:
            return self.datadir.load(entry)
        except formats.ProfileFormatError as e:
            raise Unreadable(entry.name, reason(e)) from None

    def windows(self, service: str, since: float, until: float) -> tuple[list[Entry], int]:
        """The profiles of ``service`` whose windows overlap ``[since, until]``, oldest first, and how many
        profiles were left out for recording no service or time (see `plop.merge.select_windows`).

        Native files are chosen by the metadata in their first bytes, without loading them; other
        files not summarised yet are summarised first.
        """
        entries = []
        for entry in self.datadir.scan(summarize=False):
            if entry.error:
                continue
            if entry.pending and entry.head is None:
                entry = self.datadir.lookup(entry.name) or entry
            entries.append(entry)
        by_name = {e.name: e for e in entries}
        names, without = select_windows(((e.name, e.facts) for e in entries), service, since, until)
        chosen = [by_name[name] for name in names]
        chosen.sort(key=lambda e: (window_of(e.facts) or (0.0, 0.0), e.name))
        return chosen, without

    def threads(self, source: Source) -> list[dict[str, Any]]:
        """The threads of a profile with their sample counts, most sampled first."""
        threads = self._threads.get(source.key)
        if threads is None:
            counts: dict[str, int] = {}
            for (thread, _stack), n in source.profile.samples.items():
                counts[thread] = counts.get(thread, 0) + n
            threads = [{"name": t, "samples": counts[t]} for t in sorted(counts, key=lambda t: (-counts[t], t))]
            self._threads.put(source.key, threads)
        return threads

    def selected(self, source: Source, view: str, thread: str | None, filters: Filters) -> Profile:
        """The view, thread and filters of a profile (cached per file version and parameters).

        A thread the profile never saw selects nothing (a base may lack the new side's thread).
        """
        key = (source.key, view, thread, filters)
        selected = self._profiles.get(key)
        if selected is None:
            profile = source.profile
            if thread is not None:
                profile = profile.for_thread(thread)
            selected = apply_filters(select(profile, view), filters)
            self._profiles.put(key, selected)
        return selected

    def graph(self, source: Source, view: str, thread: str | None, filters: Filters = Filters()) -> CallGraph:
        """The complete call graph of one view of a profile (cached per file version and parameters)."""
        key = (source.key, view, thread, filters)
        graph = self._graphs.get(key)
        if graph is None:
            whole = (view, thread, filters) == ("wall", None, Filters())
            root = None if whole else self.packages(source)["root"]
            graph = CallGraph.from_profile(self.selected(source, view, thread, filters), root)
            self._graphs.put(key, graph)
        return graph

    def packages(self, source: Source) -> dict[str, Any]:
        """The whole profile's package naming and colours (cached per file versions).

        ``{"root": ..., "colors": ...}``: the directory every view names
        packages from (`plop.callgraph.app_root` of the whole profile) and
        their colours (`plop.viewer.colors.package_colors`), so that a
        package has one name and one colour in every view, thread, filter and tab.
        """
        packages = self._packages.get(source.key)
        if packages is None:
            whole = self.graph(source, "wall", None)
            packages = {"root": whole.root, "colors": package_colors(whole)}
            self._packages.put(source.key, packages)
        return packages

    def _graphs_of(self, q: Query) -> tuple[CallGraph, CallGraph | None]:
        """The new side's graph and the base's (``None`` without a base)."""
        new = self.graph(q.source, q.view, q.thread, q.filters)
        base = self.graph(q.base, q.view, q.thread, q.filters) if q.base is not None else None
        return new, base

    def data(self, q: Query, max_nodes: int | None) -> bytes:
        """The ``/data`` response body (JSON), cached per file version and parameters."""
        def build() -> dict[str, Any]:
            new, base = self._graphs_of(q)
            data = new.data(max_nodes)
            if base is not None:
                compare_graph(data, new, base, q.normalize)
            data.update(self._context(q), max_nodes=max_nodes)
            return data
        return self._body(("data", q.key, max_nodes), build)

    def flame(self, q: Query, fraction: float) -> bytes:
        """The ``/api/flame`` response body: the pruned call tree (see `plop.analysis.flame_tree`)."""
        def build() -> dict[str, Any]:
            root = self.packages(q.source)["root"]
            tree = flame_tree(self.selected(q.source, q.view, q.thread, q.filters), fraction, root)
            if q.base is not None:
                base = flame_tree(self.selected(q.base, q.view, q.thread, q.filters), 0.0, root)
                compare_tree(tree["root"], base["root"], q.normalize)
                tree.update(base_total_samples=base["total_samples"],
                            base_samples_without_frames=base["samples_without_frames"], normalize=q.normalize)
            tree.update(self._context(q))
            return tree
        return self._body(("flame", q.key, fraction), build)

    def top(self, q: Query) -> bytes:
        """The ``/api/top`` response body: every function, heaviest self first."""
        def build() -> dict[str, Any]:
            new, base = self._graphs_of(q)
            answer: dict[str, Any] = {"total_samples": new.total_samples,
                                      "samples_without_frames": new.empty_samples}
            rows = new.table()
            if base is not None:
                compare_table(rows, new, base, q.normalize)
                answer.update(base_total_samples=base.total_samples,
                              base_samples_without_frames=base.empty_samples, normalize=q.normalize)
            answer.update(self._context(q), functions=rows)
            return answer
        return self._body(("top", q.key), build)

    def function(self, q: Query, function: tuple[str, str, int]) -> dict[str, Any] | None:
        """The ``/api/function`` answer for one function, or ``None`` when no sample kept has it."""
        new, base = self._graphs_of(q)
        i = new.find(*function)
        if i is None:
            return None
        answer: dict[str, Any] = {"total_samples": new.total_samples}
        details = new.details(i)
        if base is not None:
            compare_details(details, new, base, q.normalize)
        answer.update(self._context(q), **details)
        lines = [line["line"] for line in answer["lines"] if line["line"]]
        answer["source"] = self.sources.excerpt(function[0], function[2] or min(lines, default=1),
                                                max(lines, default=function[2] or 1))
        return answer

    def _context(self, q: Query) -> dict[str, Any]:
        """What every answer about one profile says about the selection it was made from."""
        source = q.source
        single = len(source.entries) == 1 and source.selection is None
        context = {
            "filename": source.entries[0].name if single else None,
            "format": source.format,
            "view": q.view,
            "views": list(VIEWS) if source.profile.has_cpu else ["wall"],
            "thread": q.thread,
            "threads": self.threads(source),
            "filters": q.filters.as_dict(),
            "colors": self.packages(source)["colors"],
        }
        context.update(source.describe())
        if q.base is not None:
            context["base"] = q.base.describe()
        return context

    def _body(self, key: Any, build: Callable[[], dict[str, Any]]) -> bytes:
        """A JSON body from its cache, or built once by ``build()``.

        A request for a body that another thread is building waits for it
        instead of building it again (``/view`` starts building its page's
        first answer while the browser is still loading the page).
        """
        body = self._bodies.get(key)
        if body is not None:
            return body
        with self._lock:
            building = self._building.get(key)
            if building is None:
                future = self._building[key] = concurrent.futures.Future()
        if building is not None:
            return building.result()
        try:
            body = json.dumps(build(), separators=(",", ":"), allow_nan=False).encode()
            self._bodies.put(key, body)
            future.set_result(body)
            return body
        except BaseException as error:
            future.set_exception(error)
            raise
        finally:
            with self._lock:
                del self._building[key]


def view_url(name: str) -> str:
    """``/view?filename=NAME`` with the name URL-encoded."""
    return "/view?filename=" + quote(name, safe="")


def data_url(name: str) -> str:
    """``/data?filename=NAME`` with the name URL-encoded."""
    return "/data?filename=" + quote(name, safe="")


def entry_json(entry: Entry) -> dict[str, Any]:
    """One profile of the index as ``/api/profiles`` serves it (docs/viewer.md)."""
    status = "error" if entry.error else "pending" if entry.pending else "ok"
    item: dict[str, Any] = {
        "name": entry.name,
        "status": status,
        "error": entry.error,
        "format": entry.format,
        "size": entry.size,
        "mtime": entry.mtime,
        "view_url": view_url(entry.name) if status != "error" else None,
        "data_url": data_url(entry.name) if status != "error" else None,
    }
    summary = entry.summary or {}
    for key in ("samples", "stacks", "threads", "has_cpu", "command", "start_time", "duration", "mode",
                "interval", "hostname", "pid", "service"):
        item[key] = summary.get(key)
    for key in RATE_KEYS:
        item[key] = summary.get(key)
    return item


def listing_signature(entries: list[Entry]) -> str:
    """A short hash that changes whenever the index would look different."""
    digest = hashlib.sha1()
    for e in entries:
        digest.update(repr((e.name, e.size, e.mtime_ns, e.error, e.pending)).encode("utf-8", "replace"))
    return digest.hexdigest()[:16]


class BaseHandler(tornado.web.RequestHandler):
    """Shared plumbing: templates, JSON, the thread pool, error pages."""

    #: Answer errors with JSON instead of an HTML page.
    json_errors = False

    @property
    def viewer(self) -> Viewer:
        return self.settings["viewer"]

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", _CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a blocking function in the IOLoop's thread pool."""
        return await IOLoop.current().run_in_executor(None, fn, *args)

    def render_page(self, template: str, **context: Any) -> None:
        """Render a Jinja2 template (autoescaped) and finish the request."""
        page = self.viewer.templates.get_template(template)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(page.render(static_url=self.static_url, view_url=view_url, **context))

    def finish_json(self, value: Any) -> None:
        """Finish the request with ``value`` as compact JSON."""
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(value, separators=(",", ":"), allow_nan=False))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """An error page (or JSON) with a message for a person; tracebacks only with ``--debug``."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        elif status_code >= 500:
            message = "internal error: the server's log has the details"
        else:
            message = self._reason
        trace = None
        if self.settings.get("serve_traceback") and "exc_info" in kwargs:
            trace = "".join(traceback.format_exception(*kwargs["exc_info"]))
        if self.json_errors:
            error: dict[str, Any] = {"status": status_code, "message": message}
            if trace:
                error["traceback"] = trace
            self.finish_json({"error": error})
        else:
            self.render_page("error.html", status=status_code, reason=self._reason, message=message, trace=trace)

    async def scan(self) -> list[Entry]:
        """The profiles of the data directory (500 with the reason when it cannot be listed)."""
        try:
            return await self.run(self.viewer.datadir.scan)
        except OSError as e:
            raise tornado.web.HTTPError(
                500, "cannot list the data directory %s: %s", self.viewer.datadir.root, e.strerror or e
            ) from None

    async def get_source(self, base: bool = False) -> Source | None:
        """The profiles named by the request's ``filename`` (repeated) or ``service``/``since``/``until``.

        With ``base``, those of ``base`` or ``base_service``/``base_since``/``base_until``
        (``base_since`` or ``base_until`` alone compare with the same service at
        another time), or ``None`` when the request compares with nothing.
        404 for a file that is not a profile in the data directory (naming it),
        422 for one that cannot be read, 400 for bad times and mixed selections.
        """
        prefix = "base_" if base else ""
        names = list(dict.fromkeys(self.get_arguments("base" if base else "filename", strip=False)))
        service = self.get_argument(prefix + "service", "") or None
        since = self.get_argument(prefix + "since", "") or None
        until = self.get_argument(prefix + "until", "") or None
        if base and service is None and (since or until):
            service = self.get_argument("service", "") or None
        what = "base" if base else "filename"
        if names and service:
            raise tornado.web.HTTPError(400, "give %s or %sservice, not both", what, prefix)
        if (since or until) and not service:
            raise tornado.web.HTTPError(400, "%ssince and %suntil choose a service's windows: give %sservice too",
                                        prefix, prefix, prefix)
        if service:
            now = time.time()
            bounds = []
            for name, text, default in (("since", since, -math.inf), ("until", until, math.inf)):
                try:
                    bounds.append(parse_time(text, now) if text else default)
                except ValueError as e:
                    raise tornado.web.HTTPError(400, "bad %s%s time: %s", prefix, name, str(e)) from None
            entries, without = await self.run(self.viewer.windows, service, *bounds)
            selection = {"service": service, "since": since, "until": until, "without_metadata": without}
        elif names:
            entries, selection = [], None
            for name in names:
                entry = await self.run(self.viewer.datadir.lookup, name)
                if entry is None:
                    raise tornado.web.HTTPError(404, "no profile named %r in the data directory", name)
                if entry.error:
                    raise tornado.web.HTTPError(422, "%s cannot be read: %s", name, entry.error)
                entries.append(entry)
        elif base:
            return None
        else:
            raise tornado.web.HTTPError(400, "missing filename: name a profile (filename=NAME, repeatable) "
                                        "or a service (service=NAME&since=-1h)")
        if selection is not None:
            # A service's windows: the unreadable ones are left out and named, the rest merged.
            profile, unreadable = await self.run(self.viewer.merged_skipping, entries)
            if unreadable:
                bad = {e.name for e in unreadable}
                entries = [e for e in entries if e.name not in bad]
                selection["unreadable"] = [{"name": e.name, "why": e.why} for e in unreadable]
            return Source(tuple(entries), profile, selection)
        try:
            profile = await self.run(self.viewer.merged, entries)
        except Unreadable as e:
            raise tornado.web.HTTPError(422, "%s cannot be read: %s", e.name, e.why) from None
        return Source(tuple(entries), profile, selection)

    def get_view(self, source: Source, base: Source | None) -> str:
        """The ``view`` parameter, checked against both sides (400 if bad)."""
        view = self.get_argument("view", "wall") or "wall"
        if view not in VIEWS:
            raise tornado.web.HTTPError(400, "unknown view %r: use one of %s", view, ", ".join(VIEWS))
        if view == "cpu":
            for side, what in ((source, "this profile"), (base, "the base")):
                if side is not None and side.entries and not side.profile.has_cpu:
                    raise tornado.web.HTTPError(
                        400, "%s has no on-CPU counts, so it has no cpu view (only wall-clock profiles taken "
                        "with CPU tracking have one; a merge has one only when each of its profiles has)", what)
        return view

    def sources_fields(self) -> list[tuple[str, str]]:
        """The request's parameters that choose the profiles and the base, as ``(name, value)`` pairs."""
        return [(name, value) for name in SOURCE_PARAMS for value in self.get_arguments(name, strip=False) if value]

    def sources_query(self) -> str:
        """`sources_fields` as a URL query."""
        return urlencode(self.sources_fields())

    def get_max_nodes(self) -> int | None:
        """The ``max_nodes`` parameter: a positive integer, or ``None`` for all (400 if bad)."""
        value = self.get_argument("max_nodes", None)
        if value in (None, "", "all"):
            return None
        if not value.isdigit() or int(value) < 1:
            raise tornado.web.HTTPError(400, "max_nodes must be a positive integer or 'all', not %r", value)
        return int(value)


    def get_filters(self) -> Filters:
        """The ``focus``, ``ignore`` and ``hide`` parameters (400 with ``re``'s message for a bad one)."""
        filters = Filters(*(self.get_argument(name, "") or "" for name in ("focus", "ignore", "hide")))
        try:
            filters.compiled()
        except FilterError as e:
            raise tornado.web.HTTPError(400, "%s", str(e)) from None
        return filters

    async def get_query(self) -> Query:
        """The profiles and every selection parameter of a request about them, checked."""
        source = await self.get_source()
        assert source is not None
        base = await self.get_source(base=True)
        view = self.get_view(source, base)
        thread = self.get_argument("thread", None)
        filters = self.get_filters()
        threads = await self.run(self.viewer.threads, source)
        if thread is not None and thread not in {t["name"] for t in threads}:
            raise tornado.web.HTTPError(400, "this profile has no thread named %r", thread)
        normalize = self.get_argument("normalize", "1")
        if normalize not in ("", "0", "1", "true", "false"):
            raise tornado.web.HTTPError(400, "normalize must be 1 (shares, the default) or 0 (counts), not %r",
                                        normalize)
        return Query(source, view, thread, filters, base, normalize not in ("0", "false"))

    def finish_body(self, body: bytes) -> None:
        """Finish the request with an already encoded JSON body."""
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(body)


class IndexHandler(BaseHandler):
    """``/``: the profiles of the data directory, newest first."""

    async def get(self) -> None:
        entries = await self.scan()
        self.render_page(
            "index.html",
            entries=entries,
            groups=group_windows((e.name, e.facts) for e in entries if not e.error),
            datadir=self.viewer.datadir.root,
            ignored=self.viewer.datadir.ignored,
            signature=listing_signature(entries),
        )


class ProfilesHandler(BaseHandler):
    """``/api/profiles``: the index as JSON."""

    json_errors = True

    async def get(self) -> None:
        entries = await self.scan()
        self.finish_json(
            {
                "datadir": self.viewer.datadir.root,
                "signature": listing_signature(entries),
                "ignored": self.viewer.datadir.ignored,
                "profiles": [entry_json(e) for e in entries],
                "groups": [dict(g, view_url="/view?" + urlencode({"service": g["service"]}))
                           for g in group_windows((e.name, e.facts) for e in entries if not e.error)],
            }
        )


class ViewHandler(BaseHandler):
    """``/view?filename=NAME``: the page of one profile, its tabs chosen by ``tab``."""

    async def get(self) -> None:
        q = await self.get_query()
        threads = await self.run(self.viewer.threads, q.source)
        max_nodes = self.get_max_nodes() if "max_nodes" in self.request.arguments else DEFAULT_MAX_NODES
        tab = self.get_argument("tab", "graph") or "graph"
        if tab not in TABS:
            raise tornado.web.HTTPError(400, "unknown tab %r: use one of %s", tab, ", ".join(TABS))
        # Start on the page's first answer now; its request will wait for this instead of starting over
        # (and report any error: here it is only retrieved, so that it is not logged twice).
        if tab == "graph":
            prefetch = IOLoop.current().run_in_executor(None, self.viewer.data, q, max_nodes)
        elif tab == "flame":
            prefetch = IOLoop.current().run_in_executor(None, self.viewer.flame, q, FLAME_FRACTION)
        else:
            prefetch = IOLoop.current().run_in_executor(None, self.viewer.top, q)
        prefetch.add_done_callback(lambda done: done.exception())
        self.render_page(
            "view.html",
            entry=q.source,
            metadata=q.source.profile.metadata,
            summary=q.source.summary,
            view=q.view,
            thread=q.thread,
            threads=threads,
            has_cpu=q.source.profile.has_cpu,
            max_nodes=max_nodes,
            node_choices=(25, 50, 100, 200, 400),
            data_url="/data?" + self.sources_query(),
            filters=q.filters,
            query=q,
            sources_query=self.sources_query(),
            sources_fields=self.sources_fields(),
            tab=tab,
            tabs=TABS,
        )


class DataHandler(BaseHandler):
    """``/data?filename=NAME``: the call graph as JSON."""

    json_errors = True

    async def get(self) -> None:
        q = await self.get_query()
        max_nodes = self.get_max_nodes()
        self.finish_body(await self.run(self.viewer.data, q, max_nodes))


class FlameHandler(BaseHandler):
    """``/api/flame?filename=NAME``: the call tree for the flame graph, pruned to ``fraction``."""

    json_errors = True

    async def get(self) -> None:
        q = await self.get_query()
        value = self.get_argument("fraction", "") or str(FLAME_FRACTION)
        try:
            fraction = float(value)
        except ValueError:
            fraction = -1.0
        if not 0 <= fraction < 1:
            raise tornado.web.HTTPError(400, "fraction must be a number from 0 to less than 1, not %r", value)
        self.finish_body(await self.run(self.viewer.flame, q, fraction))


class TopHandler(BaseHandler):
    """``/api/top?filename=NAME``: every function with its self and total samples."""

    json_errors = True

    async def get(self) -> None:
        self.finish_body(await self.run(self.viewer.top, await self.get_query()))


class FunctionHandler(BaseHandler):
    """``/api/function?filename=NAME&function=F&file=PATH&firstlineno=N``: one function's details."""

    json_errors = True

    async def get(self) -> None:
        q = await self.get_query()
        name = self.get_argument("function")
        file = self.get_argument("file")
        first = self.get_argument("firstlineno", "0") or "0"
        if not first.isdigit():
            raise tornado.web.HTTPError(400, "firstlineno must be a line number, not %r", first)
        function = (file, name, int(first))
        answer = await self.run(self.viewer.function, q, function)
        if answer is None:
            raise tornado.web.HTTPError(
                404, "no function %r of %s (first line %s) in the samples shown", name, file, first)
        self.finish_json(answer)


class NotFoundHandler(BaseHandler):
    """Every other URL: a 404 page."""

    def prepare(self) -> None:
        raise tornado.web.HTTPError(404, "there is no page at %s", self.request.path)


def make_app(datadir: str | Any, debug: bool = False, sources: list[str] | tuple[str, ...] = (), *,
             pool_files: int = POOL_FILES, workers: int | None = None) -> tornado.web.Application:
    """The viewer application serving the profiles in ``datadir``.

    ``datadir`` is a directory, or a set of named files
    (:class:`plop.viewer.listing.NamedFiles`). ``sources`` are the
    directories whose files the function view may show. ``debug`` turns on
    Tornado's debug mode: autoreload, and tracebacks in error pages.
    Merges of ``pool_files`` files or more are loaded by ``workers``
    processes (see :class:`Viewer`; ``workers=1``: never): a program that
    embeds the viewer then needs the ``if __name__ == "__main__":`` guard
    that ``multiprocessing`` asks for, and calls
    ``app.settings["viewer"].close()`` when it is done with the app.
    """
    return tornado.web.Application(
        [
            (r"/", IndexHandler),
            (r"/api/profiles", ProfilesHandler),
            (r"/view", ViewHandler),
            (r"/data", DataHandler),
            (r"/api/flame", FlameHandler),
            (r"/api/top", TopHandler),
            (r"/api/function", FunctionHandler),
        ],
        viewer=Viewer(datadir, sources, pool_files=pool_files, workers=workers),
        static_path=STATIC_DIR,
        default_handler_class=NotFoundHandler,
        debug=debug,
    )
