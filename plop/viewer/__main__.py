"""``python -m plop.viewer``: serve a data directory's profiles, or the named files, over HTTP.

::

    python -m plop.viewer [--datadir=DIR] [--port=8888] [--address=127.0.0.1] [--source=DIR ...] [--debug]
    python -m plop.viewer FILE [FILE ...] [--no-browser] [--source=DIR ...]

Prints the URL to open. ``--port=0`` picks a free port. With files, only
they are served and a browser is opened on the first one (like ``snakeviz
FILE``) unless ``--no-browser``; ``--source`` names directories whose files
the function view may show.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import webbrowser
from urllib.parse import quote

import tornado.httpserver
import tornado.log
import tornado.netutil

from plop import formats
from plop.viewer.app import make_app
from plop.viewer.listing import PROFILE_SUFFIX, SNIFF_BYTES, NamedFiles


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line options (``--name=value`` or ``--name value``)."""
    parser = argparse.ArgumentParser(
        prog="python -m plop.viewer",
        description="Serve the profiles of a directory, or the named files, in the browser.",
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help="profiles to serve (instead of a data directory)")
    parser.add_argument("--datadir", default="profiles", help="directory of profiles to list (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8888, help="TCP port, 0 for any free one (default: %(default)s)")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--source", action="append", default=[], metavar="DIR",
                        help="show source text of files under DIR in the function view (repeatable)")
    parser.add_argument("--no-browser", action="store_true", help="with FILE: do not open a web browser")
    parser.add_argument("--debug", action="store_true", help="autoreload, and tracebacks in error pages")
    return parser.parse_args(argv)


def check_file(path: str) -> str | None:
    """Why ``path`` cannot be served as a profile, or ``None`` when it can (reads its first bytes)."""
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError as e:
        return "cannot read %s: %s" % (path, e.strerror or e)
    if formats.sniff(head) is None and not path.endswith(PROFILE_SUFFIX):
        return "%s is not a profile plop can read (plop, original plop or collapsed stacks)" % path
    return None


def can_open_browser() -> bool:
    """Whether a graphical browser can be expected: never start a text browser in the server's terminal."""
    if sys.platform in ("darwin", "win32") or os.environ.get("BROWSER"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_browser(url: str) -> None:
    """Open ``url`` in the background; a missing or failing browser is not an error."""
    def work() -> None:
        try:
            webbrowser.open(url)
        except Exception:  # webbrowser.Error, or a broken browser command: the URL was printed
            pass
    threading.Thread(target=work, name="plop-open-browser", daemon=True).start()


def check_datadir(path: str) -> str | None:
    """Why ``path`` cannot serve as the data directory, or ``None`` when it can."""
    if not os.path.exists(path):
        return "data directory %s does not exist (create it, or pass --datadir=DIR)" % path
    if not os.path.isdir(path):
        return "data directory %s is not a directory" % path
    try:
        with os.scandir(path):
            pass
    except OSError as e:
        return "cannot read data directory %s: %s" % (path, e.strerror or e)
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the viewer until interrupted; returns the exit status."""
    args = parse_args(argv)
    problems = [p for p in map(check_file, args.files) if p] if args.files else [check_datadir(args.datadir)]
    problems += ["source directory %s is not a directory" % d for d in args.source if not os.path.isdir(d)]
    problems = [p for p in problems if p]
    if problems:
        print("plop.viewer: error: %s" % problems[0], file=sys.stderr)
        return 2
    tornado.log.enable_pretty_logging()
    logging.getLogger().setLevel(logging.INFO if args.debug else logging.WARNING)
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0


async def _serve(args: argparse.Namespace) -> int:
    files = NamedFiles(args.files) if args.files else None
    app = make_app(files or args.datadir, debug=args.debug, sources=args.source)
    try:
        sockets = tornado.netutil.bind_sockets(args.port, args.address)
    except OSError as e:
        print("plop.viewer: error: cannot listen on %s:%d: %s" % (args.address, args.port, e.strerror or e),
              file=sys.stderr)
        return 2
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    host = args.address or "localhost"
    if ":" in host:
        host = "[%s]" % host
    base = "http://%s:%d/" % (host, port)
    if files is None:
        print("plop viewer: serving %s at %s" % (os.path.abspath(args.datadir), base), flush=True)
    else:
        url = base + "view?filename=" + quote(files.names[0], safe="")
        count = len(files.names)
        print("plop viewer: serving %d profile%s at %s" % (count, "s" if count > 1 else "", url), flush=True)
        if not args.no_browser and can_open_browser():
            open_browser(url)
    # SIGTERM (a service manager stopping the viewer) ends it like Ctrl-C: the merge workers are stopped
    # too, where dying at once would leave them behind.
    stop = asyncio.Event()
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    except NotImplementedError:  # Windows' event loops
        pass
    try:
        await stop.wait()  # until interrupted
    finally:
        server.stop()
        app.settings["viewer"].close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
