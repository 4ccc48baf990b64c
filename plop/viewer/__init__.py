"""The plop viewer: a web page per profile showing its call graph.

Run ``python -m plop.viewer --datadir=DIR`` and open the URL it prints; see
docs/viewer.md for the routes. :func:`make_app` builds the Tornado
application for embedding or tests.
"""
from plop.viewer.app import make_app

__all__ = ["make_app"]
