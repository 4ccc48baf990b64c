"""The plop viewer: a web page per profile showing its call graph.

Run ``python -m plop.viewer --datadir=DIR`` and open the URL it prints; see
docs/viewer.md for the routes. :func:`make_app` builds the Tornado
application for embedding or tests.
"""
from __future__ import annotations

from typing import Any

__all__ = ["make_app"]


def __getattr__(name: str) -> Any:
    """``make_app``, imported on first use: the worker processes that load a big merge's files
    (:mod:`plop.viewer.pool`) import this package's listing, and need not import Tornado for it."""
    if name == "make_app":
        from plop.viewer.app import make_app
        return make_app
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
