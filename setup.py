"""Build hook for the optional compiled sampler.

Everything else lives in pyproject.toml. The extension is ``optional``: when no
compiler or Python headers are available the build carries on and plop falls
back to its pure-Python sampler (see plop/_pysampler.py).
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("plop._sampler", ["plop/_sampler.c"], optional=True),
    ]
)
