"""A trigger endpoint for servers, like Go's ``net/http/pprof``.

``GET <path>?seconds=10&mode=real&format=flamegraph`` profiles the live
process for that long and answers with the profile.

* :class:`ProfileHandler` is a Tornado ``RequestHandler``; mount it on a path
  of your choice: ``(r"/debug/plop", ProfileHandler)`` (optionally with
  ``dict(max_seconds=60)``).
* :func:`wsgi_app` is a WSGI application for other frameworks (mount it with
  your framework's dispatcher, e.g. werkzeug's ``DispatcherMiddleware``);
  :func:`make_wsgi_app` builds one with another ``max_seconds``.

Query parameters: ``seconds`` (default 10, at most ``max_seconds``, default
300; more is a 400), ``mode`` (``real``, ``prof`` or ``virtual``; default
``real``), ``interval`` (seconds between samples, default 0.01), ``format``
(``plop``, ``flamegraph`` (or ``collapsed``), ``speedscope``, ``pprof``;
default ``plop``) and ``view`` (``wall`` or ``cpu``; ``cpu`` needs a ``real`` profile).

When rolling profiles (:func:`plop.start`) are running, the answer is taken
from them (the samples of the requested period) instead of sampling twice;
a ``mode`` other than theirs is a ``409`` that says so. Otherwise a collector is started for the request,
from whichever thread serves it. Only one request profiles at a time: another
gets ``409``.

**Security**: this path lets anyone who can reach it make the process
profile itself and read its code's names and paths. Protect it like any
admin endpoint (authentication, an internal-only port or network).
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs

from plop import formats
from plop.collector import MODES, Collector
from plop.profile import Profile

DEFAULT_SECONDS = 10.0
MAX_SECONDS = 300.0
MIN_INTERVAL = 0.0005

_busy = threading.Lock()

_CONTENT_TYPES = {
    "plop": "application/json",
    "flamegraph": "text/plain; charset=utf-8",
    "speedscope": "application/json",
    "pprof": "application/octet-stream",
}


class RequestError(Exception):
    """An HTTP error answer: status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Request:
    def __init__(self, args: dict[str, str], max_seconds: float) -> None:
        try:
            self.seconds = float(args.get("seconds", DEFAULT_SECONDS))
        except ValueError:
            raise RequestError(400, "seconds must be a number") from None
        if not 0 < self.seconds <= max_seconds:
            raise RequestError(400, "seconds must be more than 0 and at most %g" % max_seconds)
        self.mode_given = "mode" in args
        self.mode = args.get("mode", "real")
        if self.mode not in MODES:
            raise RequestError(400, "mode must be one of %s" % ", ".join(sorted(MODES)))
        try:
            self.interval = float(args.get("interval", 0.01))
        except ValueError:
            raise RequestError(400, "interval must be a number") from None
        if not MIN_INTERVAL <= self.interval <= 1.0:
            raise RequestError(400, "interval must be between %g and 1 second" % MIN_INTERVAL)
        fmt = args.get("format", "plop")
        if fmt == "collapsed":
            fmt = "flamegraph"
        if fmt not in formats.FORMATS:
            raise RequestError(400, "format must be one of %s (or collapsed)" % ", ".join(formats.FORMATS))
        self.format = fmt
        self.view = args.get("view", "wall")
        if self.view not in ("wall", "cpu"):
            raise RequestError(400, "view must be wall or cpu")


class _Session:
    """One profiling request: either a period of the running rolling profiles, or its own collector.

    A context manager, so the Tornado and WSGI front ends share one life
    cycle: entering takes the one-request-at-a-time lock (409 when taken) and
    starts profiling; leaving stops any collector of its own, whatever
    happened, and releases the lock. Between the two the caller waits (each
    front end in its own way) and then calls :meth:`result`.
    """

    def __init__(self, request: _Request) -> None:
        from plop import live

        self.request = request
        self.live = live.current()
        self.collector: Collector | None = None
        self.before: Profile | None = None
        self.started = time.time()

    def __enter__(self) -> "_Session":
        if not _busy.acquire(blocking=False):
            raise RequestError(409, "another request is profiling this process; try again later")
        try:
            self._begin()
        except BaseException:
            _busy.release()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            if self.collector is not None:
                self.collector.stop()  # harmless when end() stopped it already
        finally:
            _busy.release()

    def result(self) -> tuple[bytes, str, str]:
        """The profile of the period since entering, encoded: ``(data, content type, file name)``."""
        return self.answer(self.end())

    def _begin(self) -> None:
        if self.live is not None:
            if self.request.mode_given and self.request.mode != self.live.mode:
                raise RequestError(409, "rolling profiles of this process run in mode %s, and the answer "
                                        "comes from them: ask for mode=%s (or no mode); view=cpu gives "
                                        "their CPU view" % (self.live.mode, self.live.mode))
            self.before = self.live.snapshot()
            return
        self.collector = Collector(interval=self.request.interval, mode=self.request.mode)
        self.collector.start()

    def end(self) -> Profile:
        if self.live is not None:
            assert self.before is not None
            profile = difference(self.live.snapshot(), self.before)
            profile.metadata.update(window_start=self.started, start_time=self.started,
                                    duration=round(time.time() - self.started, 6), window_end=time.time())
        else:
            assert self.collector is not None
            self.collector.stop()
            profile = self.collector.profile()
        profile.metadata["source"] = "rolling" if self.live is not None else "endpoint"
        return profile

    def answer(self, profile: Profile) -> tuple[bytes, str, str]:
        request = self.request
        if request.view == "cpu":
            if not profile.has_cpu:
                raise RequestError(400, "view=cpu needs a profile with CPU data")
            profile = profile.cpu()
        data = formats.dumps(profile, request.format)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.started))
        name = "profile-%d-%s.%s" % (os.getpid(), stamp, formats.EXTENSIONS[request.format])
        return data, _CONTENT_TYPES[request.format], name


def difference(after: Profile, before: Profile) -> Profile:
    """The samples in ``after`` that were not yet in ``before`` (cumulative snapshots)."""
    samples = {}
    for key, n in after.samples.items():
        d = n - before.samples.get(key, 0)
        if d > 0:
            samples[key] = d
    cpu = None
    if after.cpu_samples is not None:
        old = before.cpu_samples or {}
        cpu = {}
        for key, n in after.cpu_samples.items():
            d = n - old.get(key, 0)
            if d > 0:
                cpu[key] = d
    meta = dict(after.metadata)
    for key in ("samples_taken", "ticks", "errors"):
        if isinstance(after.metadata.get(key), int) and isinstance(before.metadata.get(key), int):
            meta[key] = max(0, after.metadata[key] - before.metadata[key])
    if isinstance(after.metadata.get("sample_time"), float) and isinstance(before.metadata.get("sample_time"), float):
        meta["sample_time"] = round(max(0.0, after.metadata["sample_time"] - before.metadata["sample_time"]), 6)
    return Profile(samples, meta, cpu)


# -- Tornado -------------------------------------------------------------------

try:
    import tornado.web as _web
except ImportError:  # pragma: no cover - tornado is a dependency of plop
    _web = None  # type: ignore[assignment]

if _web is not None:

    class ProfileHandler(_web.RequestHandler):
        """``GET ?seconds=&mode=&format=&interval=&view=``: profile the live process and answer with the profile.

        Mount on a protected path: ``(r"/debug/plop", ProfileHandler, dict(max_seconds=60))``.
        """

        def initialize(self, max_seconds: float = MAX_SECONDS) -> None:
            self.max_seconds = float(max_seconds)

        async def get(self) -> None:
            args = {k: self.get_query_argument(k) for k in self.request.query_arguments}
            try:
                request = _Request(args, self.max_seconds)
            except RequestError as exc:
                return self._fail(exc)
            try:
                with _Session(request) as session:
                    await asyncio.sleep(request.seconds)
                    data, content_type, name = session.result()
            except RequestError as exc:
                return self._fail(exc)
            self.set_header("Content-Type", content_type)
            self.set_header("Content-Disposition", 'attachment; filename="%s"' % name)
            self.set_header("Cache-Control", "no-store")
            self.finish(data)

        def _fail(self, exc: RequestError) -> None:
            self.set_status(exc.status)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish("%s\n" % exc.message)


# -- WSGI ----------------------------------------------------------------------


def make_wsgi_app(max_seconds: float = MAX_SECONDS) -> Callable[..., Iterable[bytes]]:
    """A WSGI application answering ``GET ?seconds=&mode=&format=&interval=&view=``."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def fail(status: int, message: str) -> list[bytes]:
            reason = {400: "Bad Request", 405: "Method Not Allowed", 409: "Conflict",
                      500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Error")
            body = (message + "\n").encode("utf-8")
            start_response("%d %s" % (status, reason), [("Content-Type", "text/plain; charset=utf-8"),
                                                         ("Content-Length", str(len(body)))])
            return [body]

        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return fail(405, "only GET")
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        args = {k: v[-1] for k, v in query.items()}
        try:
            request = _Request(args, max_seconds)
        except RequestError as exc:
            return fail(exc.status, exc.message)
        try:
            with _Session(request) as session:
                time.sleep(request.seconds)
                data, content_type, name = session.result()
        except RequestError as exc:
            return fail(exc.status, exc.message)
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(data))),
                                  ("Content-Disposition", 'attachment; filename="%s"' % name),
                                  ("Cache-Control", "no-store")])
        return [data]

    return app


#: The WSGI application with the default bounds (``seconds`` at most 300).
wsgi_app = make_wsgi_app()
