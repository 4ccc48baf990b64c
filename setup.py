"""Build hook for the optional compiled sampler and call-graph counting.

Everything else lives in pyproject.toml. The extensions are ``optional``: when
no compiler or Python headers are available the build carries on and plop
falls back to its pure-Python sampler (see plop/_pysampler.py) and call-graph
passes (see plop/callgraph.py).
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("plop._sampler", ["plop/_sampler.c"], depends=["plop/_mix64.h"], optional=True),
        Extension("plop._speedups", ["plop/_speedups.c"], depends=["plop/_mix64.h"], optional=True),
    ]
)
