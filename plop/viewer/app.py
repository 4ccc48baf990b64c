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
import hashlib
import json
import os
import threading
import traceback
from typing import Any, Callable, TypeVar
from urllib.parse import quote

import tornado.web
from tornado.ioloop import IOLoop

from plop import formats
from plop.analysis import FLAME_FRACTION, FilterError, Filters, apply_filters, flame_tree
from plop.callgraph import VIEWS, CallGraph, select
from plop.profile import Profile
from plop.viewer.colors import package_colors
from plop.viewer.listing import DataDirectory, Entry, LRUCache, reason
from plop.viewer.rates import RATE_KEYS
from plop.viewer.source import SourceDirectories
from plop.viewer.templating import make_environment

_T = TypeVar("_T")

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
#: Nodes the graph page asks for when the URL does not say.
DEFAULT_MAX_NODES = 100
#: The tabs of ``/view`` (its ``tab`` parameter).
TABS = ("graph", "flame", "top", "function")

# Pages load only their own scripts and styles, and nothing can frame them.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class Viewer:
    """What the handlers share: the profiles, templates, source directories and caches.

    ``files`` is a data directory, or a :class:`plop.viewer.listing.DataDirectory`-like
    object (the files named on the command line); ``sources`` are the
    directories whose files the function view may show (``--source``).
    """

    def __init__(self, files: str | Any, sources: list[str] | tuple[str, ...] = ()) -> None:
        self.datadir = DataDirectory(files) if isinstance(files, str) else files
        self.sources = SourceDirectories(sources)
        self.templates = make_environment()
        self._profiles = LRUCache(4)
        self._graphs = LRUCache(4)
        self._threads = LRUCache(16)
        self._packages = LRUCache(16)
        self._bodies = LRUCache(64)
        self._lock = threading.Lock()
        self._building: dict[Any, concurrent.futures.Future] = {}

    def threads(self, entry: Entry, profile: Profile) -> list[dict[str, Any]]:
        """The threads of a profile with their sample counts, most sampled first."""
        threads = self._threads.get(entry.key)
        if threads is None:
            counts: dict[str, int] = {}
            for (thread, _stack), n in profile.samples.items():
                counts[thread] = counts.get(thread, 0) + n
            threads = [{"name": t, "samples": counts[t]} for t in sorted(counts, key=lambda t: (-counts[t], t))]
            self._threads.put(entry.key, threads)
        return threads

    def selected(self, entry: Entry, profile: Profile, view: str, thread: str | None, filters: Filters) -> Profile:
        """The view, thread and filters of a profile (cached per file version and parameters)."""
        key = (entry.key, view, thread, filters)
        selected = self._profiles.get(key)
        if selected is None:
            selected = apply_filters(select(profile, view, thread), filters)
            self._profiles.put(key, selected)
        return selected

    def graph(self, entry: Entry, profile: Profile, view: str, thread: str | None,
              filters: Filters = Filters()) -> CallGraph:
        """The complete call graph of one view of a profile (cached per file version and parameters)."""
        key = (entry.key, view, thread, filters)
        graph = self._graphs.get(key)
        if graph is None:
            whole = (view, thread, filters) == ("wall", None, Filters())
            root = None if whole else self.packages(entry, profile)["root"]
            graph = CallGraph.from_profile(self.selected(entry, profile, view, thread, filters), root)
            self._graphs.put(key, graph)
        return graph

    def packages(self, entry: Entry, profile: Profile) -> dict[str, Any]:
        """The whole profile's package naming and colours (cached per file version).

        ``{"root": ..., "colors": ...}``: the directory every view names
        packages from (`plop.callgraph.app_root` of the whole profile) and
        their colours (`plop.viewer.colors.package_colors`), so that a
        package has one name and one colour in every view, thread, filter and tab.
        """
        packages = self._packages.get(entry.key)
        if packages is None:
            whole = self.graph(entry, profile, "wall", None)
            packages = {"root": whole.root, "colors": package_colors(whole)}
            self._packages.put(entry.key, packages)
        return packages

    def data(self, entry: Entry, profile: Profile, view: str, thread: str | None, max_nodes: int | None,
             filters: Filters = Filters()) -> bytes:
        """The ``/data`` response body (JSON), cached per file version and parameters."""
        def build() -> dict[str, Any]:
            data = self.graph(entry, profile, view, thread, filters).data(max_nodes)
            data.update(self._context(entry, profile, view, thread, filters), max_nodes=max_nodes)
            return data
        return self._body(("data", entry.key, view, thread, filters, max_nodes), build)

    def flame(self, entry: Entry, profile: Profile, view: str, thread: str | None, filters: Filters,
              fraction: float) -> bytes:
        """The ``/api/flame`` response body: the pruned call tree (see `plop.analysis.flame_tree`)."""
        def build() -> dict[str, Any]:
            tree = flame_tree(self.selected(entry, profile, view, thread, filters), fraction,
                              self.packages(entry, profile)["root"])
            tree.update(self._context(entry, profile, view, thread, filters))
            return tree
        return self._body(("flame", entry.key, view, thread, filters, fraction), build)

    def top(self, entry: Entry, profile: Profile, view: str, thread: str | None, filters: Filters) -> bytes:
        """The ``/api/top`` response body: every function, heaviest self first."""
        def build() -> dict[str, Any]:
            graph = self.graph(entry, profile, view, thread, filters)
            answer: dict[str, Any] = {"total_samples": graph.total_samples,
                                      "samples_without_frames": graph.empty_samples}
            answer.update(self._context(entry, profile, view, thread, filters), functions=graph.table())
            return answer
        return self._body(("top", entry.key, view, thread, filters), build)

    def function(self, entry: Entry, profile: Profile, view: str, thread: str | None, filters: Filters,
                 function: tuple[str, str, int]) -> dict[str, Any] | None:
        """The ``/api/function`` answer for one function, or ``None`` when no sample kept has it."""
        graph = self.graph(entry, profile, view, thread, filters)
        i = graph.find(*function)
        if i is None:
            return None
        answer: dict[str, Any] = {"total_samples": graph.total_samples}
        answer.update(self._context(entry, profile, view, thread, filters), **graph.details(i))
        lines = [line["line"] for line in answer["lines"] if line["line"]]
        answer["source"] = self.sources.excerpt(function[0], function[2] or min(lines, default=1),
                                                max(lines, default=function[2] or 1))
        return answer

    def _context(self, entry: Entry, profile: Profile, view: str, thread: str | None,
                 filters: Filters) -> dict[str, Any]:
        """What every answer about one profile says about the selection it was made from."""
        return {
            "filename": entry.name,
            "format": entry.format,
            "view": view,
            "views": list(VIEWS) if profile.has_cpu else ["wall"],
            "thread": thread,
            "threads": self.threads(entry, profile),
            "filters": filters.as_dict(),
            "colors": self.packages(entry, profile)["colors"],
        }

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

    async def get_profile(self) -> tuple[Entry, Profile]:
        """The entry and profile named by ``?filename=``: 404 unless it is a profile
        in the data directory, 422 when it cannot be read."""
        name = self.get_argument("filename")
        entry = await self.run(self.viewer.datadir.lookup, name)
        if entry is None:
            raise tornado.web.HTTPError(404, "no profile named %r in the data directory", name)
        if entry.error:
            raise tornado.web.HTTPError(422, "%s cannot be read: %s", name, entry.error)
        try:
            profile = await self.run(self.viewer.datadir.load, entry)
        except formats.ProfileFormatError as e:
            raise tornado.web.HTTPError(422, "%s cannot be read: %s", name, reason(e)) from None
        return entry, profile

    def get_selection(self, profile: Profile) -> tuple[str, str | None]:
        """The ``view`` and ``thread`` parameters, checked against the profile (400 if bad)."""
        view = self.get_argument("view", "wall") or "wall"
        thread = self.get_argument("thread", None)
        if view not in VIEWS:
            raise tornado.web.HTTPError(400, "unknown view %r: use one of %s", view, ", ".join(VIEWS))
        if view == "cpu" and not profile.has_cpu:
            raise tornado.web.HTTPError(
                400, "this profile has no on-CPU counts, so it has no cpu view (only wall-clock "
                "profiles taken with CPU tracking have one)")
        return view, thread

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

    async def get_selection_of(self) -> tuple[Entry, Profile, str, str | None, Filters]:
        """The profile and every selection parameter of a request about one profile, checked."""
        entry, profile = await self.get_profile()
        view, thread = self.get_selection(profile)
        filters = self.get_filters()
        threads = await self.run(self.viewer.threads, entry, profile)
        if thread is not None and thread not in {t["name"] for t in threads}:
            raise tornado.web.HTTPError(400, "this profile has no thread named %r", thread)
        return entry, profile, view, thread, filters

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
            }
        )


class ViewHandler(BaseHandler):
    """``/view?filename=NAME``: the page of one profile, its tabs chosen by ``tab``."""

    async def get(self) -> None:
        entry, profile, view, thread, filters = await self.get_selection_of()
        threads = await self.run(self.viewer.threads, entry, profile)
        max_nodes = self.get_max_nodes() if "max_nodes" in self.request.arguments else DEFAULT_MAX_NODES
        tab = self.get_argument("tab", "graph") or "graph"
        if tab not in TABS:
            raise tornado.web.HTTPError(400, "unknown tab %r: use one of %s", tab, ", ".join(TABS))
        # Start on the page's first answer now; its request will wait for this instead of starting over
        # (and report any error: here it is only retrieved, so that it is not logged twice).
        if tab == "graph":
            prefetch = IOLoop.current().run_in_executor(
                None, self.viewer.data, entry, profile, view, thread, max_nodes, filters)
        elif tab == "flame":
            prefetch = IOLoop.current().run_in_executor(
                None, self.viewer.flame, entry, profile, view, thread, filters, FLAME_FRACTION)
        else:
            prefetch = IOLoop.current().run_in_executor(None, self.viewer.top, entry, profile, view, thread, filters)
        prefetch.add_done_callback(lambda done: done.exception())
        self.render_page(
            "view.html",
            entry=entry,
            metadata=profile.metadata,
            summary=entry.summary or {},
            view=view,
            thread=thread,
            threads=threads,
            has_cpu=profile.has_cpu,
            max_nodes=max_nodes,
            node_choices=(25, 50, 100, 200, 400),
            data_url=data_url(entry.name),
            filters=filters,
            tab=tab,
            tabs=TABS,
        )


class DataHandler(BaseHandler):
    """``/data?filename=NAME``: the call graph as JSON."""

    json_errors = True

    async def get(self) -> None:
        entry, profile, view, thread, filters = await self.get_selection_of()
        max_nodes = self.get_max_nodes()
        self.finish_body(await self.run(self.viewer.data, entry, profile, view, thread, max_nodes, filters))


class FlameHandler(BaseHandler):
    """``/api/flame?filename=NAME``: the call tree for the flame graph, pruned to ``fraction``."""

    json_errors = True

    async def get(self) -> None:
        entry, profile, view, thread, filters = await self.get_selection_of()
        value = self.get_argument("fraction", "") or str(FLAME_FRACTION)
        try:
            fraction = float(value)
        except ValueError:
            fraction = -1.0
        if not 0 <= fraction < 1:
            raise tornado.web.HTTPError(400, "fraction must be a number from 0 to less than 1, not %r", value)
        self.finish_body(await self.run(self.viewer.flame, entry, profile, view, thread, filters, fraction))


class TopHandler(BaseHandler):
    """``/api/top?filename=NAME``: every function with its self and total samples."""

    json_errors = True

    async def get(self) -> None:
        entry, profile, view, thread, filters = await self.get_selection_of()
        self.finish_body(await self.run(self.viewer.top, entry, profile, view, thread, filters))


class FunctionHandler(BaseHandler):
    """``/api/function?filename=NAME&function=F&file=PATH&firstlineno=N``: one function's details."""

    json_errors = True

    async def get(self) -> None:
        entry, profile, view, thread, filters = await self.get_selection_of()
        name = self.get_argument("function")
        file = self.get_argument("file")
        first = self.get_argument("firstlineno", "0") or "0"
        if not first.isdigit():
            raise tornado.web.HTTPError(400, "firstlineno must be a line number, not %r", first)
        function = (file, name, int(first))
        answer = await self.run(self.viewer.function, entry, profile, view, thread, filters, function)
        if answer is None:
            raise tornado.web.HTTPError(
                404, "no function %r of %s (first line %s) in the samples shown", name, file, first)
        self.finish_json(answer)


class NotFoundHandler(BaseHandler):
    """Every other URL: a 404 page."""

    def prepare(self) -> None:
        raise tornado.web.HTTPError(404, "there is no page at %s", self.request.path)


def make_app(datadir: str | Any, debug: bool = False, sources: list[str] | tuple[str, ...] = ()) -> tornado.web.Application:
    """The viewer application serving the profiles in ``datadir``.

    ``datadir`` is a directory, or a set of named files
    (:class:`plop.viewer.listing.NamedFiles`). ``sources`` are the
    directories whose files the function view may show. ``debug`` turns on
    Tornado's debug mode: autoreload, and tracebacks in error pages.
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
        viewer=Viewer(datadir, sources),
        static_path=STATIC_DIR,
        default_handler_class=NotFoundHandler,
        debug=debug,
    )
