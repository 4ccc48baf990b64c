"""The viewer lists and draws every format plop reads, in headless Chromium (see tests/test_browser.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from plop import formats
from tests.conftest import FIXTURES
from tests.test_browser import browser, drawn_data, new_page, page, screenshot, server  # noqa: F401 (fixtures)
from tests.test_formats_pprof import wall_cpu_profile

pytestmark = pytest.mark.browser

NEW_FORMATS = {
    "spin.go1.19.cpu.pb.gz": "pprof",
    "small_work.ddtrace-4.16.0.pprof": "pprof",
    "plop.pb.gz": "pprof",
    "small_work.py-spy-0.4.3.speedscope.json": "speedscope",
    "small_work.pyinstrument-5.1.3.speedscope.json": "speedscope",
    "plop.speedscope.json": "speedscope",
}


@pytest.fixture(scope="module")
def datadir(tmp_path_factory) -> Path:
    pytest.importorskip("zstandard")
    d = tmp_path_factory.mktemp("formats-viewer") / "profiles"
    d.mkdir()
    for name in NEW_FORMATS:
        if (FIXTURES / name).exists():
            shutil.copy(FIXTURES / name, d / name)
    formats.dump(wall_cpu_profile(), d / "plop.pb.gz", "pprof")
    formats.dump(wall_cpu_profile(), d / "plop.speedscope.json", "speedscope")
    (d / "corrupt.pb.gz").write_bytes(formats.dumps(wall_cpu_profile(), "pprof")[:-6])  # cut in the trailer
    return d


def test_index_lists_each_new_format(page, server):  # noqa: F811
    page.goto(server + "/")
    links = set(page.locator("table.profiles a").all_inner_texts())
    assert set(NEW_FORMATS) <= links
    assert "corrupt.pb.gz" in page.inner_text("table.profiles")  # listed with its reason, not a link
    assert "corrupt.pb.gz" not in links
    screenshot(page, "formats-index.png")


@pytest.mark.parametrize("name", sorted(NEW_FORMATS))
def test_each_new_format_draws(page, server, name):  # noqa: F811
    page.goto(server + "/view?filename=" + name)
    data = drawn_data(page)
    assert data["format"] == NEW_FORMATS[name]
    assert page.locator("circle").count() == len(data["nodes"]) > 0
    assert data["total_samples"] > 0
    if name in ("plop.pb.gz", "plop.speedscope.json", "small_work.ddtrace-4.16.0.pprof"):
        assert data["views"] == ["wall", "cpu"]
    screenshot(page, "formats-%s.png" % name.replace(".", "-"))
