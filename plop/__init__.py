"""plop: the Python Low-Overhead Profiler.

A stack sampler cheap enough to leave on in production (:mod:`plop.collector`),
a profile model and file formats (:mod:`plop.profile`, :mod:`plop.formats`) and
a call-graph viewer (:mod:`plop.viewer`).

Always-on profiling of a live program (:mod:`plop.live`, docs/live.md)::

    handle = plop.start(datadir="profiles", window=60, service="web")
    ...
    plop.stop()

    with plop.record("out.plop", mode="prof"):
        work()
"""

__version__ = "1.0.0.dev0"

__all__ = ["start", "stop", "record", "__version__"]


def __getattr__(name: str):  # imported lazily: "import plop" stays cheap
    if name in ("start", "stop", "record", "current"):
        from plop import live

        return getattr(live, name)
    raise AttributeError("module 'plop' has no attribute %r" % name)
