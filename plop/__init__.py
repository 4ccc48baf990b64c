"""plop: the Python Low-Overhead Profiler.

A stack sampler cheap enough to leave on in production (:mod:`plop.collector`),
a profile model and file formats (:mod:`plop.profile`, :mod:`plop.formats`) and
a call-graph viewer (:mod:`plop.viewer`).
"""

__version__ = "1.0.0.dev0"
