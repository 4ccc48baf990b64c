"""``python -m plop.viewer``: serve a data directory's profiles over HTTP.

::

    python -m plop.viewer [--datadir=DIR] [--port=8888] [--address=127.0.0.1] [--debug]

Prints the URL to open. ``--port=0`` picks a free port.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

import tornado.httpserver
import tornado.log
import tornado.netutil

from plop.viewer.app import make_app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line options (``--name=value`` or ``--name value``)."""
    parser = argparse.ArgumentParser(
        prog="python -m plop.viewer",
        description="Serve the profiles of a directory as call graphs in the browser.",
    )
    parser.add_argument("--datadir", default="profiles", help="directory of profiles to list (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8888, help="TCP port, 0 for any free one (default: %(default)s)")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--debug", action="store_true", help="autoreload, and tracebacks in error pages")
    return parser.parse_args(argv)


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
    problem = check_datadir(args.datadir)
    if problem:
        print("plop.viewer: error: %s" % problem, file=sys.stderr)
        return 2
    tornado.log.enable_pretty_logging()
    logging.getLogger().setLevel(logging.INFO if args.debug else logging.WARNING)
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0


async def _serve(args: argparse.Namespace) -> int:
    app = make_app(args.datadir, debug=args.debug)
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
    print("plop viewer: serving %s at http://%s:%d/" % (os.path.abspath(args.datadir), host, port), flush=True)
    await asyncio.Event().wait()  # until interrupted
    return 0


if __name__ == "__main__":
    sys.exit(main())
