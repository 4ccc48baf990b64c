"""Shared test fixtures."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from plop import _pysampler

ROOT = Path(__file__).resolve().parents[1]
#: Real files written by other tools (the original plop, py-spy, ...): see fixtures/README.md.
FIXTURES = ROOT / "tests" / "fixtures"


def pure_and_compiled(pure: object, module: str, attr: str | None = None) -> list:
    """Parameters for a test run on a pure-Python implementation and on its compiled twin.

    The compiled one is ``module`` (or its attribute ``attr``); when it was not
    built the test is skipped with the import error as the reason, rather than
    silently run on the pure one twice.
    """
    params = [pytest.param(pure, id="pure")]
    try:
        compiled = importlib.import_module(module)
    except ImportError as exc:
        params.append(pytest.param(None, id="compiled", marks=pytest.mark.skip(
            reason="%s was not built: %s" % (module, exc))))
    else:
        params.append(pytest.param(getattr(compiled, attr) if attr else compiled, id="compiled"))
    return params


@pytest.fixture(params=pure_and_compiled(_pysampler.Sampler, "plop._sampler", "Sampler"))
def sampler_class(request, monkeypatch):
    """Each sampler implementation in turn, also installed as the collector's."""
    import plop.collector

    monkeypatch.setattr(plop.collector, "Sampler", request.param)
    return request.param
