"""Shared test fixtures."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from plop import _pysampler

ROOT = Path(__file__).resolve().parents[1]
#: Real files written by other tools (the original plop, py-spy), beside the project.
FIXTURES = ROOT.parent / "shared" / "fixtures"


def _samplers() -> list:
    params = [pytest.param(_pysampler.Sampler, id="pure")]
    try:
        compiled = importlib.import_module("plop._sampler").Sampler
    except ImportError as exc:
        params.append(pytest.param(None, id="compiled", marks=pytest.mark.skip(
            reason="plop._sampler was not built: %s" % exc)))
    else:
        params.append(pytest.param(compiled, id="compiled"))
    return params


@pytest.fixture(params=_samplers())
def sampler_class(request, monkeypatch):
    """Each sampler implementation in turn, also installed as the collector's."""
    import plop.collector

    monkeypatch.setattr(plop.collector, "Sampler", request.param)
    return request.param
