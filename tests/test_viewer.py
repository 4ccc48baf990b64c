"""The viewer's HTTP handlers (pytest-tornado): pages, JSON, errors, path safety, escaping."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import tornado.web

from plop import formats
from plop.profile import Frame, Profile
from plop.viewer import make_app
from plop.viewer.listing import DataDirectory

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
HOSTILE = "<img src=x onerror=alert(1)>"

MAIN = Frame("/srv/app/server.py", "main", 10, 12)
HANDLE = Frame("/srv/app/handlers.py", "handle", 20, 25)
QUERY = Frame("/srv/venv/lib/python3.11/site-packages/db/core.py", "query", 30, 31)
EVIL = Frame("/srv/app/evil.py", HOSTILE, 1, 2)
WORK = Frame("/srv/app/worker.py", "work", 5, 6)


def native_profile() -> Profile:
    """Two threads, CPU counts, full metadata and a function named like markup."""
    samples = {
        ("MainThread", (MAIN, HANDLE, QUERY)): 30,
        ("MainThread", (MAIN, HANDLE)): 10,
        ("MainThread", (MAIN, EVIL)): 5,
        ("worker-1", (WORK,)): 15,
    }
    cpu = {key: n // 2 for key, n in samples.items()}
    metadata = {
        "command": ["python", "server.py", "--name=" + HOSTILE], "start_time": 1767271380.0, "duration": 12.5,
        "mode": "real", "interval": 0.01, "pid": 4242, "hostname": "web-1", "python_version": "3.11.7",
    }
    return Profile(samples, metadata, cpu)


@pytest.fixture
def datadir(tmp_path: Path) -> Path:
    """A data directory with profiles of every kind, a corrupt one and unrelated files."""
    d = tmp_path / "profiles"
    d.mkdir()
    for fixture in FIXTURES.glob("tmpl_work.*"):
        shutil.copy(fixture, d / fixture.name)
    formats.dump(native_profile(), d / "web.plop")
    formats.dump(Profile({("", (MAIN, HANDLE)): 3}), d / "small.plop")
    (d / "broken.plop").write_bytes(b'{"plop": 1, "metadata": {}, "threads": [], "frames": [["a", "f", 1, 1]]')
    (d / "notes.txt").write_text("not a profile\n")
    (d / "data.json").write_text('{"a": 1}')
    (d / "subdir").mkdir()
    (d / "subdir" / "inner.plop").write_bytes(formats.dumps(native_profile()))
    now = time.time()
    os.utime(d / "web.plop", (now, now))  # the newest
    os.utime(d / "small.plop", (now - 100, now - 100))
    return d


@pytest.fixture
def app(datadir: Path) -> tornado.web.Application:
    return make_app(str(datadir))


async def get(http_client, base_url: str, path: str):
    return await http_client.fetch(base_url + path, raise_error=False)


def error_message(response) -> str:
    body = json.loads(response.body)
    assert set(body) == {"error"}
    assert body["error"]["status"] == response.code
    return body["error"]["message"]


# ---------------------------------------------------------------- index

@pytest.mark.gen_test
async def test_index_lists_profiles_newest_first(http_client, base_url):
    response = await get(http_client, base_url, "/")
    assert response.code == 200
    html = response.body.decode()
    for name in ("web.plop", "small.plop", "tmpl_work.legacy-plop-0.4.0.plop",
                 "tmpl_work.legacy-plop-0.4.0.flame", "tmpl_work.py-spy-0.4.3.collapsed"):
        assert 'href="/view?filename=%s"' % quote(name, safe="") in html
    assert "notes.txt" not in html and "data.json" not in html and "tmpl_work.py<" not in html
    assert "subdir" not in html and "inner.plop" not in html
    assert html.index("web.plop") < html.index("small.plop")
    # What a person wants before clicking: command, duration, samples, mode.
    assert "python server.py" in html and "12.5 s" in html and ">60<" in html and "real" in html


@pytest.mark.gen_test
async def test_index_lists_corrupt_profile_with_reason_and_no_link(http_client, base_url):
    html = (await get(http_client, base_url, "/")).body.decode()
    assert "broken.plop" in html
    assert "/view?filename=broken.plop" not in html
    row = html[html.index("broken.plop"):]
    row = row[: row.index("</tr>")]
    assert "Cannot be read" in row and "invalid JSON" in row


@pytest.mark.gen_test
async def test_profiles_are_recognised_by_content_whatever_their_name(http_client, base_url, datadir):
    shutil.copy(FIXTURES / "tmpl_work.legacy-plop-0.4.0.plop", datadir / "plop.out")
    (datadir / "cut.out").write_bytes(b'{"plop": 1, "metadata": {"command": ["x"]}, "threads": [')
    profiles = {p["name"]: p for p in json.loads((await get(http_client, base_url, "/api/profiles")).body)["profiles"]}
    assert profiles["plop.out"]["format"] == "legacy" and profiles["plop.out"]["samples"] == 175
    assert profiles["cut.out"]["status"] == "error" and profiles["cut.out"]["format"] == "plop"
    response = await get(http_client, base_url, "/data?filename=plop.out")
    assert response.code == 200 and json.loads(response.body)["total_samples"] == 175


@pytest.mark.gen_test
async def test_index_escapes_profile_strings(http_client, base_url, datadir):
    formats.dump(native_profile(), datadir / (HOSTILE.replace("/", "") + ".plop"))
    html = (await get(http_client, base_url, "/")).body.decode()
    assert "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


@pytest.mark.gen_test
async def test_new_file_appears_without_restart(http_client, base_url, datadir):
    assert "later.plop" not in (await get(http_client, base_url, "/")).body.decode()
    formats.dump(Profile({("", (MAIN,)): 1}), datadir / "later.plop")
    assert "/view?filename=later.plop" in (await get(http_client, base_url, "/")).body.decode()


@pytest.mark.gen_test
async def test_index_of_empty_directory(http_client, base_url, datadir):
    for p in datadir.iterdir():
        if p.is_file():
            p.unlink()
    response = await get(http_client, base_url, "/")
    assert response.code == 200
    assert "No profiles here yet" in response.body.decode()


@pytest.mark.gen_test
async def test_index_survives_special_files(http_client, base_url, datadir, tmp_path):
    os.mkfifo(datadir / "fifo.plop")
    outside_fifo = tmp_path / "outside-fifo"
    os.mkfifo(outside_fifo)
    (datadir / "link-to-fifo.plop").symlink_to(outside_fifo)
    (datadir / "dangling.plop").symlink_to(tmp_path / "missing")
    (datadir / "loop.plop").symlink_to(datadir / "loop.plop")
    (datadir / "dir.plop").mkdir()
    unreadable = datadir / "secret.plop"
    unreadable.write_bytes(formats.dumps(native_profile()))
    unreadable.chmod(0)
    import socket
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(datadir / "s.sock"))
        started = time.monotonic()
        response = await get(http_client, base_url, "/")
        assert time.monotonic() - started < 5
    finally:
        sock.close()
    assert response.code == 200
    html = response.body.decode()
    for name in ("fifo.plop", "link-to-fifo.plop", "dangling.plop", "loop.plop", "dir.plop", "s.sock"):
        assert name not in html
    assert "web.plop" in html


@pytest.mark.gen_test
async def test_huge_non_profile_is_not_read(http_client, base_url, datadir):
    with open(datadir / "huge.log", "wb") as f:
        f.truncate(3 << 30)  # 3 GiB, sparse
    with open(datadir / "huge.plop", "wb") as f:
        f.write(b'{"plop": 1,')
        f.truncate(300 << 20)  # named and starting like a profile, but over the size limit
    started = time.monotonic()
    html = (await get(http_client, base_url, "/")).body.decode()
    assert time.monotonic() - started < 5
    assert "huge.log" not in html
    row = html[html.index("huge.plop"):]
    assert "Cannot be read" in row[: row.index("</tr>")]
    assert "/view?filename=huge.plop" not in html


@pytest.mark.gen_test
async def test_api_profiles(http_client, base_url, datadir):
    response = await get(http_client, base_url, "/api/profiles")
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = json.loads(response.body)
    assert body["datadir"] == str(datadir.resolve())
    assert body["ignored"] == 4  # tmpl_work.py, notes.txt, data.json, subdir
    profiles = {p["name"]: p for p in body["profiles"]}
    assert list(profiles)[0] == "web.plop"
    web = profiles["web.plop"]
    assert web["status"] == "ok" and web["error"] is None
    assert web["format"] == "plop"
    assert web["samples"] == 60 and web["threads"] == 2 and web["has_cpu"] is True
    assert web["command"] == ["python", "server.py", "--name=" + HOSTILE]
    assert web["duration"] == 12.5 and web["mode"] == "real"
    assert web["view_url"] == "/view?filename=web.plop"
    assert web["data_url"] == "/data?filename=web.plop"
    assert profiles["tmpl_work.legacy-plop-0.4.0.plop"]["format"] == "legacy"
    assert profiles["tmpl_work.py-spy-0.4.3.collapsed"]["format"] == "collapsed"
    broken = profiles["broken.plop"]
    assert broken["status"] == "error" and "invalid JSON" in broken["error"] and broken["view_url"] is None


@pytest.mark.gen_test(timeout=60)
async def test_listing_5000_files(http_client, base_url, datadir):
    for i in range(4990):
        (datadir / ("file%05d.txt" % i)).write_text("line %d\n" % i)
    profile_bytes = formats.dumps(Profile({("", (MAIN, HANDLE)): 1}))
    for i in range(10):
        (datadir / ("p%02d.plop" % i)).write_bytes(profile_bytes)
    for _ in range(2):  # cold, then from the cache
        body = json.loads((await get(http_client, base_url, "/api/profiles")).body)
        names = {p["name"] for p in body["profiles"]}
        assert {"p%02d.plop" % i for i in range(10)} <= names
        assert not any(n.startswith("file") for n in names)
        assert body["ignored"] == 4990 + 4


def test_slow_summaries_finish_in_the_background(datadir):
    directory = DataDirectory(str(datadir), budget=0)
    try:
        first = {e.name: e for e in directory.scan()}
        assert first["web.plop"].pending
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            entries = {e.name: e for e in directory.scan()}
            if not any(e.pending for e in entries.values()):
                break
            time.sleep(0.05)
        assert entries["web.plop"].summary["samples"] == 60
        assert entries["broken.plop"].error
    finally:
        directory.close()


# ---------------------------------------------------------------- honest rates

def window_profile(**metadata) -> Profile:
    """A rolling window of a web service: 60 weighted samples, and ``metadata`` over a 5 s window at 10 ms."""
    meta = {"service": "web", "mode": "real", "interval": 0.01, "effective_interval": 0.01, "duration": 5.0,
            "start_time": 1767271380.0, "window_start": 1767271380.0, "window_end": 1767271385.0,
            "ticks": 500, "overhead_budget": 0.01}
    meta.update(metadata)
    return Profile({("MainThread", (MAIN, HANDLE)): 60}, meta)


#: The issue's window: the budget set the sampler to 153 ms, so it took 33 snapshots of 500.
THROTTLED = dict(effective_interval=0.153, samples_taken=33, samples_asked=32, cpu_time=0.19,
                 sampler_cpu_time=0.004, gil_wait=0.002, late=0,
                 rate_change={"time": 1767271380.0, "from": 0.01, "to": 0.153, "cost": 0.1227})
#: A window whose snapshots a thread holding the GIL delayed.
LATE = dict(samples_taken=300, samples_asked=500, cpu_time=4.8, sampler_cpu_time=0.05, gil_wait=1.9, late=180)
#: A window sampled at its asked rate.
FULL = dict(samples_taken=497, samples_asked=500, cpu_time=4.9, sampler_cpu_time=0.05, gil_wait=0.01, late=2)


@pytest.fixture
def windows(datadir: Path) -> Path:
    """Three windows in the data directory: throttled by the budget, late, and at the asked rate."""
    for name, meta in (("throttled", THROTTLED), ("late", LATE), ("full", FULL)):
        formats.dump(window_profile(**meta), datadir / ("web-%s.plop" % name))
    return datadir


@pytest.mark.gen_test
async def test_api_profiles_says_snapshots_rate_and_below_rate(http_client, base_url, windows):
    profiles = {p["name"]: p for p in json.loads((await get(http_client, base_url, "/api/profiles")).body)["profiles"]}
    throttled, late, full = (profiles["web-%s.plop" % n] for n in ("throttled", "late", "full"))
    assert throttled["samples"] == 60 and throttled["samples_taken"] == 33
    assert throttled["effective_rate"] == pytest.approx(6.6)
    assert throttled["effective_interval"] == 0.153 and throttled["expected_snapshots"] == pytest.approx(500)
    assert throttled["cpu_time"] == 0.19 and throttled["sampler_cpu_time"] == 0.004
    assert throttled["rate_change"] == {"time": 1767271380.0, "from": 0.01, "to": 0.153, "cost": 0.1227}
    assert throttled["below_rate"] is True
    assert "overhead budget (1% of CPU) set the sampler to every 153 ms" in throttled["below_rate_reason"]
    assert "from every 10 ms to every 153 ms" in throttled["below_rate_reason"]
    assert "GIL" not in throttled["below_rate_reason"]
    assert late["below_rate"] is True and late["effective_rate"] == 60
    assert "180 snapshots came late" in late["below_rate_reason"] and "GIL" in late["below_rate_reason"]
    assert "budget" not in late["below_rate_reason"]
    assert full["below_rate"] is False and full["below_rate_reason"] is None and full["samples_taken"] == 497


@pytest.mark.gen_test
async def test_profiles_without_rate_keys_claim_nothing(http_client, base_url, datadir):
    """Old plop files, py-spy's, a native profile without the keys: no snapshots, no rate, no verdict."""
    shutil.copy(FIXTURES / "small_work.py-spy-0.4.3.speedscope.json", datadir / "spy.speedscope.json")
    shutil.copy(FIXTURES / "small_work.ddtrace-4.16.0.pprof", datadir / "dd.pprof")
    body = json.loads((await get(http_client, base_url, "/api/profiles")).body)
    profiles = {p["name"]: p for p in body["profiles"]}
    for name in ("web.plop", "small.plop", "tmpl_work.legacy-plop-0.4.0.plop", "tmpl_work.py-spy-0.4.3.collapsed",
                 "spy.speedscope.json", "dd.pprof"):
        p = profiles[name]
        assert p["status"] == "ok", name
        assert p["samples_taken"] is None and p["effective_rate"] is None and p["below_rate"] is None, name
    assert profiles["web.plop"]["expected_snapshots"] == pytest.approx(1250)  # known, but nothing to hold it to
    html = (await get(http_client, base_url, "/")).body.decode()
    assert "below asked rate" not in html and 'class="snapshots"' not in html
    for name in ("web.plop", "tmpl_work.legacy-plop-0.4.0.plop", "spy.speedscope.json", "dd.pprof"):
        page = (await get(http_client, base_url, "/view?filename=" + quote(name))).body.decode()
        assert "Snapshots</dt>" not in page and "below asked rate" not in page and "Sampler</dt>" not in page, name
        assert "CPU</dt>" not in page, name


@pytest.mark.gen_test
async def test_index_shows_snapshots_rate_and_marks_below_rate(http_client, base_url, windows):
    html = (await get(http_client, base_url, "/")).body.decode()

    def row(name: str) -> str:
        part = html[html.index('href="/view?filename=%s"' % name):]
        return part[: part.index("</tr>")]

    throttled = row("web-throttled.plop")
    assert ">60<" in throttled and ">33 · 6.6/s<" in throttled
    assert 'class="below-rate"' in throttled and "below asked rate" in throttled
    assert "set the sampler to every 153 ms" in throttled  # the marker's tooltip
    assert "below asked rate" in row("web-late.plop") and "came late" in row("web-late.plop")
    full = row("web-full.plop")
    assert ">497 · 99/s<" in full and "below asked rate" not in full


@pytest.mark.gen_test
async def test_header_shows_snapshots_rate_cpu_and_sampler_cost(http_client, base_url, windows):
    html = (await get(http_client, base_url, "/view?filename=web-throttled.plop")).body.decode()
    assert "<dt>Samples</dt><dd title=\"Weighted" in html and ">60</dd>" in html
    assert "<dt>Snapshots</dt>" in html and ">33 · 6.6/s</span>" in html
    assert "real · every 10 ms asked" in html and "153 ms set by the budget" in html
    assert "<dt>CPU</dt><dd title=\"CPU time the process used while sampled\">190 ms</dd>" in html
    assert ">4 ms CPU · 2.1% of the process's</dd>" in html
    marker = html[html.index('class="below-rate"'):]
    marker = marker[: marker.index("</span>")]
    assert "below asked rate" in marker and "33 snapshots taken of the 500 that one every 10 ms would take" in marker
    full = (await get(http_client, base_url, "/view?filename=web-full.plop")).body.decode()
    assert ">497 · 99/s</span>" in full and "below asked rate" not in full and "set by the budget" not in full


@pytest.mark.gen_test
async def test_rate_keys_of_the_wrong_type_are_ignored_and_escaped(http_client, base_url, datadir):
    formats.dump(window_profile(samples_taken=33, late=HOSTILE, gil_wait=[1], sampler_cpu_time="x",
                                rate_change={"from": HOSTILE, "to": 0.1}, samples_asked=-4),
                 datadir / "odd.plop")
    profiles = {p["name"]: p for p in json.loads((await get(http_client, base_url, "/api/profiles")).body)["profiles"]}
    odd = profiles["odd.plop"]
    assert odd["late"] is None and odd["gil_wait"] is None and odd["sampler_cpu_time"] is None
    assert odd["rate_change"] is None and odd["samples_asked"] is None
    assert odd["below_rate"] is True and "does not record why" in odd["below_rate_reason"]
    page = (await get(http_client, base_url, "/view?filename=odd.plop")).body.decode()
    assert "<img" not in page and "Sampler</dt>" not in page and "below asked rate" in page


def test_prof_mode_is_judged_against_cpu_time_or_not_at_all():
    from plop.viewer.rates import rates
    # 2 CPU seconds at 10 ms of CPU: 200 asked, 190 taken, over 60 wall seconds.
    judged = rates({"mode": "prof", "interval": 0.01, "duration": 60.0, "cpu_time": 2.0, "samples_taken": 190})
    assert judged["expected_snapshots"] == pytest.approx(200) and judged["below_rate"] is False
    # A collector run in prof mode records no cpu_time: its wall duration says nothing of its CPU clock.
    unknown = rates({"mode": "prof", "interval": 0.01, "duration": 60.0, "samples_taken": 190})
    assert unknown["expected_snapshots"] is None and unknown["below_rate"] is None
    # Too short to judge: 8 expected.
    assert rates({"mode": "real", "interval": 0.01, "duration": 0.08, "samples_taken": 2})["below_rate"] is None


# ---------------------------------------------------------------- view and data

@pytest.mark.gen_test
async def test_view_page(http_client, base_url):
    response = await get(http_client, base_url, "/view?filename=web.plop")
    assert response.code == 200
    html = response.body.decode()
    assert 'data-data-url="/data?filename=web.plop"' in html
    assert "vendor/d3/d3.min.js" in html and 'type="module"' in html
    assert "web-1" in html and "4242" in html and "12.5 s" in html
    assert "<img" not in html and "--name=&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'value="cpu"' in html  # the profile has CPU counts: the view toggle is offered
    assert '<option value="worker-1"' in html  # and several threads: the selector too
    assert "https://" not in html and "http://" not in html  # no CDN


@pytest.mark.gen_test
async def test_view_page_of_fixtures(http_client, base_url):
    for fixture in FIXTURES.glob("tmpl_work.*"):
        if fixture.suffix == ".py":
            continue
        response = await get(http_client, base_url, "/view?filename=" + quote(fixture.name))
        assert response.code == 200, fixture.name
        assert 'value="cpu"' not in response.body.decode()


@pytest.mark.gen_test
async def test_data_complete_graph(http_client, base_url):
    response = await get(http_client, base_url, "/data?filename=web.plop")
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    data = json.loads(response.body)
    assert data["total_samples"] == 60
    assert sum(n["self"] for n in data["nodes"]) == 60
    assert data["hidden_nodes"] == 0 and data["node_count"] == len(data["nodes"]) == 5
    assert data["filename"] == "web.plop" and data["format"] == "plop"
    assert data["view"] == "wall" and data["views"] == ["wall", "cpu"]
    assert data["thread"] is None and data["max_nodes"] is None
    assert data["threads"] == [{"name": "MainThread", "samples": 45}, {"name": "worker-1", "samples": 15}]
    names = {n["funcname"]: n for n in data["nodes"]}
    assert names[HOSTILE]["self"] == 5  # a string like any other
    assert names["main"]["total"] == 45 and names["main"]["lineno"] == 10
    for key in ("id", "funcname", "filename", "lineno", "self", "total", "group", "lines"):
        assert key in names["handle"]
    ids = {n["id"]: n["funcname"] for n in data["nodes"]}
    edges = {(ids[e["source"]], ids[e["target"]]): e["weight"] for e in data["edges"]}
    assert edges == {("main", "handle"): 40, ("handle", "query"): 30, ("main", HOSTILE): 5}


@pytest.mark.gen_test
async def test_data_trimmed(http_client, base_url):
    data = json.loads((await get(http_client, base_url, "/data?filename=web.plop&max_nodes=2")).body)
    assert [n["funcname"] for n in data["nodes"]] == ["main", "handle"]
    assert data["max_nodes"] == 2 and data["node_count"] == 5
    assert data["hidden_nodes"] == 3 and data["hidden_samples"] == 50
    everything = json.loads((await get(http_client, base_url, "/data?filename=web.plop&max_nodes=all")).body)
    assert len(everything["nodes"]) == 5


@pytest.mark.gen_test
async def test_data_cpu_view_and_thread(http_client, base_url):
    cpu = json.loads((await get(http_client, base_url, "/data?filename=web.plop&view=cpu")).body)
    assert cpu["view"] == "cpu" and cpu["total_samples"] == 15 + 5 + 2 + 7
    worker = json.loads((await get(http_client, base_url, "/data?filename=web.plop&thread=worker-1")).body)
    assert worker["thread"] == "worker-1" and worker["total_samples"] == 15
    assert [n["funcname"] for n in worker["nodes"]] == ["work"]
    both = json.loads((await get(http_client, base_url, "/data?filename=web.plop&thread=worker-1&view=cpu")).body)
    assert both["total_samples"] == 7


@pytest.mark.gen_test
async def test_data_of_every_fixture(http_client, base_url):
    for fixture in FIXTURES.glob("tmpl_work.*"):
        if fixture.suffix == ".py":
            continue
        response = await get(http_client, base_url, "/data?filename=" + quote(fixture.name))
        assert response.code == 200, fixture.name
        data = json.loads(response.body)
        assert data["nodes"] and sum(n["self"] for n in data["nodes"]) == data["total_samples"]


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "query, status, text",
    [
        ("filename=small.plop&view=cpu", 400, "no on-CPU counts"),
        ("filename=web.plop&view=flame", 400, "unknown view"),
        ("filename=web.plop&thread=nope", 400, "no thread named"),
        ("filename=web.plop&max_nodes=0", 400, "max_nodes"),
        ("filename=web.plop&max_nodes=ten", 400, "max_nodes"),
        ("", 400, "filename"),
        ("filename=broken.plop", 422, "invalid JSON"),
        ("filename=missing.plop", 404, "no profile named"),
        ("filename=notes.txt", 404, "no profile named"),
        ("filename=tmpl_work.py", 404, "no profile named"),
    ],
)
async def test_data_errors_are_json(http_client, base_url, query, status, text):
    response = await get(http_client, base_url, "/data?" + query)
    assert response.code == status
    assert text in error_message(response)
    assert "Traceback" not in response.body.decode()


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "query, status, text",
    [
        ("filename=small.plop&view=cpu", 400, "no on-CPU counts"),
        ("filename=broken.plop", 422, "invalid JSON"),
        ("filename=missing.plop", 404, "no profile named"),
    ],
)
async def test_view_errors_are_pages(http_client, base_url, query, status, text):
    response = await get(http_client, base_url, "/view?" + query)
    assert response.code == status
    html = response.body.decode()
    assert response.headers["Content-Type"].startswith("text/html")
    assert text in html and "Back to the list of profiles" in html
    assert "Traceback" not in html


# ---------------------------------------------------------------- safety

ESCAPES = [
    "..", ".", "", "../profiles/web.plop", "subdir/inner.plop", "subdir%2Finner.plop", "%2E%2E%2Fetc%2Fpasswd",
    "/etc/passwd", "%2Fetc%2Fpasswd", "..%2F..%2Fetc%2Fpasswd", "..\\web.plop", "subdir%5Cinner.plop",
    "web.plop/", "./web.plop", "%00", "%2e%2e",
]


@pytest.mark.gen_test
@pytest.mark.parametrize("name", ESCAPES)
async def test_path_escapes_are_404(http_client, base_url, name):
    for route in ("/view", "/data"):
        response = await get(http_client, base_url, "%s?filename=%s" % (route, name))
        assert response.code in (400, 404), (route, name)  # "" is a missing argument: 400
        assert response.code == 404 or name == ""


@pytest.mark.gen_test
async def test_symlink_out_of_datadir_is_404(http_client, base_url, datadir, tmp_path):
    outside = tmp_path / "outside.plop"
    formats.dump(native_profile(), outside)
    (datadir / "escape.plop").symlink_to(outside)
    (datadir / "escape-rel.plop").symlink_to(Path("..") / "outside.plop")
    for name in ("escape.plop", "escape-rel.plop"):
        for route in ("/view", "/data"):
            assert (await get(http_client, base_url, "%s?filename=%s" % (route, name))).code == 404
    assert "escape" not in (await get(http_client, base_url, "/")).body.decode()


@pytest.mark.gen_test
async def test_symlink_to_fifo_outside_is_never_opened(http_client, base_url, datadir, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (datadir / "fifo-link.plop").symlink_to(fifo)
    started = time.monotonic()
    for path in ("/", "/api/profiles", "/view?filename=fifo-link.plop", "/data?filename=fifo-link.plop"):
        response = await get(http_client, base_url, path)
        assert response.code in (200, 404)
    assert time.monotonic() - started < 5
    # Nobody holds the FIFO open for reading: opening it to write without a reader fails.
    with pytest.raises(OSError):
        os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)


@pytest.mark.gen_test
async def test_symlink_inside_datadir_works(http_client, base_url, datadir):
    (datadir / "alias.plop").symlink_to("web.plop")
    assert (await get(http_client, base_url, "/data?filename=alias.plop")).code == 200


@pytest.mark.gen_test
async def test_unknown_route_is_404_page(http_client, base_url):
    response = await get(http_client, base_url, "/nothing/here")
    assert response.code == 404
    assert "there is no page at /nothing/here" in response.body.decode()


@pytest.mark.gen_test
async def test_security_headers(http_client, base_url):
    response = await get(http_client, base_url, "/view?filename=web.plop")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.gen_test
async def test_static_assets(http_client, base_url):
    for path in ("/static/graph.js", "/static/draw.js", "/static/panels.js", "/static/util.js",
                 "/static/index.js", "/static/style.css", "/static/vendor/d3/d3.min.js"):
        response = await get(http_client, base_url, path)
        assert response.code == 200, path
    js = (await get(http_client, base_url, "/static/graph.js")).headers["Content-Type"]
    assert "javascript" in js


# ---------------------------------------------------------------- internal errors

@pytest.mark.gen_test
async def test_internal_error_has_no_traceback(http_client, base_url, app):
    def explode(*args):
        raise RuntimeError("secret internals")

    app.settings["viewer"].data = explode
    response = await get(http_client, base_url, "/data?filename=web.plop")
    assert response.code == 500
    assert "internal error" in error_message(response)
    body = response.body.decode()
    assert "Traceback" not in body and "secret internals" not in body
    page = await get(http_client, base_url, "/nothing")
    assert "Traceback" not in page.body.decode()


@pytest.mark.gen_test
async def test_vanished_datadir_is_explained(http_client, base_url, datadir):
    shutil.rmtree(datadir)
    page = await get(http_client, base_url, "/")
    assert page.code == 500 and "cannot list the data directory" in page.body.decode()
    api = await get(http_client, base_url, "/api/profiles")
    assert api.code == 500 and "cannot list the data directory" in error_message(api)


def test_debug_mode_serves_tracebacks(datadir):
    app = make_app(str(datadir), debug=True)
    assert app.settings["serve_traceback"] is True
    assert not make_app(str(datadir)).settings.get("serve_traceback")


# ---------------------------------------------------------------- command line

def run_viewer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plop.viewer", *args], capture_output=True, text=True,
                          timeout=30, cwd=ROOT)


@pytest.mark.parametrize("make", ["missing", "file"])
def test_cli_bad_datadir_is_one_line_error(tmp_path, make):
    target = tmp_path / "nope"
    if make == "file":
        target.write_text("x")
    result = run_viewer("--datadir=%s" % target, "--port=0")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(target) in result.stderr


def test_cli_serves_and_prints_url(datadir):
    process = subprocess.Popen([sys.executable, "-m", "plop.viewer", "--datadir=%s" % datadir, "--port=0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = process.stdout.readline()
        assert "http://127.0.0.1:" in line
        url = line.split()[-1]
        import urllib.request
        with urllib.request.urlopen(url + "api/profiles", timeout=10) as response:
            assert json.load(response)["profiles"]
    finally:
        process.terminate()
        process.wait(timeout=10)


# ---------------------------------------------------------------- filters and analysis routes
# native_profile(): main>handle>query 30, main>handle 10, main>evil 5, work 15 (thread worker-1): 60 samples.

async def get_json(http_client, base_url: str, path: str) -> dict:
    response = await get(http_client, base_url, path)
    assert response.code == 200, response.body
    return json.loads(response.body)


@pytest.mark.gen_test
@pytest.mark.parametrize("query, total", [
    ("", 60), ("&focus=handle", 40), ("&ignore=query", 30), ("&hide=handle", 60), ("&focus=%5Ehandle%24", 40),
    ("&focus=handlers.py:handle", 40), ("&focus=main&ignore=worker.py:", 45), ("&hide=.", 0),
    ("&focus=handle&view=cpu", 20), ("&ignore=query&thread=MainThread", 15),
])
async def test_every_route_applies_the_filters(http_client, base_url, query, total):
    for route in ("/data", "/api/top", "/api/flame"):
        body = await get_json(http_client, base_url, route + "?filename=web.plop" + query)
        assert body["total_samples"] == total, (route, query)
        if route == "/api/top":
            assert sum(f["self"] for f in body["functions"]) == total
        if route == "/api/flame":
            assert body["root"]["value"] == total
    assert ("focus" in body["filters"]) == ("focus=" in query)


@pytest.mark.gen_test
async def test_hide_moves_time_to_the_caller(http_client, base_url):
    body = await get_json(http_client, base_url, "/data?filename=web.plop&hide=handle")
    nodes = {n["funcname"]: n for n in body["nodes"]}
    assert "handle" not in nodes and nodes["main"]["self"] == 10
    assert {(e["source"], e["target"]) for e in body["edges"]} >= {(nodes["main"]["id"], nodes["query"]["id"])}


@pytest.mark.gen_test
@pytest.mark.parametrize("route", ["/data", "/api/top", "/api/flame", "/view",
                                   "/api/function?function=main&file=%2Fsrv%2Fapp%2Fserver.py&firstlineno=10&x=1"])
@pytest.mark.parametrize("name", ["focus", "ignore", "hide"])
async def test_bad_regex_is_400_with_its_message(http_client, base_url, route, name):
    sep = "&" if "?" in route else "?"
    response = await get(http_client, base_url, route + sep + "filename=web.plop&%s=%s" % (name, quote("(a")))
    assert response.code == 400
    message = error_message(response) if route != "/view" else response.body.decode()
    assert "missing ), unterminated subpattern at position 0" in message and name in message


@pytest.mark.gen_test
async def test_api_top(http_client, base_url):
    body = await get_json(http_client, base_url, "/api/top?filename=web.plop")
    rows = [(f["name"], f["self"], f["total"]) for f in body["functions"]]
    assert rows == [("query", 30, 30), ("work", 15, 15), ("handle", 10, 40), (HOSTILE, 5, 5), ("main", 0, 45)]
    first = body["functions"][0]
    assert set(first) == {"name", "label", "filename", "firstlineno", "line", "group", "self", "total"}
    assert (first["filename"], first["firstlineno"], first["group"]) == (QUERY.filename, 30, "db")
    assert body["filename"] == "web.plop" and body["views"] == ["wall", "cpu"]


@pytest.mark.gen_test
async def test_api_flame(http_client, base_url):
    body = await get_json(http_client, base_url, "/api/flame?filename=web.plop&fraction=0")
    root = body["root"]
    assert (root["name"], root["value"], root["self"]) == ("all", 60, 0)
    assert [(c["name"], c["value"]) for c in root["children"]] == [("main", 45), ("work", 15)]
    main = root["children"][0]
    assert [(c["name"], c["value"], c["self"]) for c in main["children"]] == [("handle", 40, 10), (HOSTILE, 5, 5)]
    assert main["children"][0]["children"][0]["value"] == 30
    assert body["pruned_frames"] == 0 and body["fraction"] == 0
    pruned = await get_json(http_client, base_url, "/api/flame?filename=web.plop&fraction=0.1")
    assert [c["name"] for c in pruned["root"]["children"][0]["children"]] == ["handle"]
    assert pruned["pruned_frames"] == 1 and pruned["pruned_samples"] == 5 and pruned["min_value"] == 6
    default = await get_json(http_client, base_url, "/api/flame?filename=web.plop")
    assert default["fraction"] == 0.0002


@pytest.mark.gen_test
@pytest.mark.parametrize("value", ["1", "-0.1", "x", "nan"])
async def test_api_flame_bad_fraction(http_client, base_url, value):
    response = await get(http_client, base_url, "/api/flame?filename=web.plop&fraction=" + value)
    assert response.code == 400 and "fraction" in error_message(response)


def function_url(frame: Frame, extra: str = "") -> str:
    return "/api/function?filename=web.plop&function=%s&file=%s&firstlineno=%d%s" % (
        quote(frame.funcname, safe=""), quote(frame.filename, safe=""), frame.firstlineno, extra)


@pytest.mark.gen_test
async def test_api_function(http_client, base_url):
    body = await get_json(http_client, base_url, function_url(HANDLE))
    assert body["function"]["self"] == 10 and body["function"]["total"] == 40 and body["total_samples"] == 60
    assert [(c["name"], c["calls"]) for c in body["callers"]] == [("main", 40)]
    assert [(c["name"], c["calls"]) for c in body["callees"]] == [("query", 30)]
    assert body["lines"] == [{"line": 25, "self": 10, "total": 40}]
    assert body["recursive"] == 0
    assert body["source"]["shown"] is False and "--source" in body["source"]["reason"]
    focused = await get_json(http_client, base_url, function_url(HANDLE, "&ignore=query"))
    assert focused["function"]["total"] == 10 and focused["callees"] == [] and focused["total_samples"] == 30


@pytest.mark.gen_test
@pytest.mark.parametrize("query, code", [
    ("&function=nope&file=x.py&firstlineno=1", 404),
    ("&function=handle&file=%2Fsrv%2Fapp%2Fhandlers.py&firstlineno=21", 404),
    ("&function=handle&file=%2Fsrv%2Fapp%2Fhandlers.py&firstlineno=x", 400),
    ("&file=%2Fsrv%2Fapp%2Fhandlers.py&firstlineno=20", 400),
])
async def test_api_function_errors(http_client, base_url, query, code):
    response = await get(http_client, base_url, "/api/function?filename=web.plop" + query)
    assert response.code == code
    assert error_message(response)
    # A function filtered out of the samples is not found either.
    response = await get(http_client, base_url, function_url(HANDLE, "&ignore=handle"))
    assert response.code == 404 and "handle" in error_message(response)


@pytest.mark.gen_test
@pytest.mark.parametrize("route", ["/api/top", "/api/flame", "/api/function?function=a&file=b&x=1"])
async def test_analysis_routes_refuse_what_data_refuses(http_client, base_url, route):
    sep = "&" if "?" in route else "?"
    assert (await get(http_client, base_url, route + sep + "filename=nope.plop")).code == 404
    assert (await get(http_client, base_url, route + sep + "filename=..%2Fprofiles%2Fweb.plop")).code == 404
    assert (await get(http_client, base_url, route + sep + "filename=broken.plop")).code == 422
    assert (await get(http_client, base_url, route + sep + "filename=small.plop&view=cpu")).code == 400
    assert (await get(http_client, base_url, route + sep + "filename=web.plop&thread=nope")).code == 400


@pytest.mark.gen_test
@pytest.mark.parametrize("tab", ["graph", "flame", "top", "function"])
async def test_view_page_tabs(http_client, base_url, tab):
    response = await get(http_client, base_url, "/view?filename=web.plop&tab=%s&focus=%s" % (tab, quote(HOSTILE)))
    assert response.code == 200
    html = response.body.decode()
    assert 'data-tab="%s"' % tab in html and "<img" not in html
    assert 'value="&lt;img src=x onerror=alert(1)&gt;"' in html  # the filter box keeps the filter, escaped
    assert (await get(http_client, base_url, "/view?filename=web.plop&tab=nope")).code == 400


# ---------------------------------------------------------------- package colours

def test_package_colors_are_distinct_deterministic_and_by_whole_profile_rank():
    from plop.callgraph import CallGraph
    from plop.viewer.colors import OTHER, PALETTE, package_colors, slot_of
    main = Frame("/srv/app/main.py", "main", 1, 2)
    samples = {("", (main, Frame("/srv/venv/lib/python3.11/site-packages/pkg%02d/m.py" % i, "f", 1, 2))): 100 - i
               for i in range(20)}
    colors = package_colors(CallGraph.from_profile(Profile(samples)))
    assert colors["other"] == OTHER
    names = [p["package"] for p in colors["packages"]]
    assert names == ["pkg%02d" % i for i in range(len(PALETTE))]  # the heaviest get the palette
    assigned = [p["color"] for p in colors["packages"]]
    assert len(set(assigned)) == len(PALETTE) and set(assigned) == set(PALETTE)
    # The heaviest package always gets the slot its name hashes to; a later one the next free slot.
    assert assigned[0] == PALETTE[slot_of("pkg00")]
    assert colors == package_colors(CallGraph.from_profile(Profile(dict(reversed(list(samples.items()))))))


def split_profile() -> Profile:
    """Own code in /srv/app and /srv/app/jobs; only the jobs run on a CPU, so the CPU view alone
    would name the packages from /srv/app/jobs."""
    server = Frame("/srv/app/server.py", "serve", 1, 3)
    handler = Frame("/srv/app/handlers.py", "get", 5, 8)
    job = Frame("/srv/app/jobs/resize.py", "resize", 2, 9)
    wait = Frame("/usr/lib/python3.11/selectors.py", "select", 450, 468)
    samples = {("MainThread", (server, wait)): 50, ("MainThread", (server, handler)): 20,
               ("pool", (job,)): 10}
    cpu = {("MainThread", (server, wait)): 0, ("MainThread", (server, handler)): 0, ("pool", (job,)): 10}
    return Profile(samples, {"mode": "real", "interval": 0.01}, cpu)


@pytest.mark.gen_test
async def test_every_view_and_tab_names_and_colours_packages_as_the_whole_profile(http_client, base_url, datadir):
    formats.dump(split_profile(), datadir / "split.plop")
    answers = {}
    for view in ("wall", "cpu"):
        for route in ("/data", "/api/flame", "/api/top"):
            answers[view, route] = await get_json(http_client, base_url, "%s?filename=split.plop&view=%s" % (route, view))
    answers["thread", "/data"] = await get_json(http_client, base_url, "/data?filename=split.plop&thread=pool")
    answers["filter", "/data"] = await get_json(http_client, base_url, "/data?filename=split.plop&focus=resize")
    colors = {json.dumps(a["colors"]) for a in answers.values()}
    assert len(colors) == 1  # one set of colours for the profile, whatever the view, thread or filter
    packages = [p["package"] for p in answers["wall", "/data"]["colors"]["packages"]]
    assert packages == ["selectors", "app"]  # ranked by own samples in the whole profile
    assert {n["group"] for n in answers["cpu", "/data"]["nodes"] if n["funcname"] == "resize"} == {"app"}
    assert {n["group"] for n in answers["thread", "/data"]["nodes"]} == {"app"}
    assert {f["group"] for f in answers["cpu", "/api/top"]["functions"] if f["name"] == "resize"} == {"app"}
    flame = answers["cpu", "/api/flame"]["root"]
    assert flame["group"] == "" and flame["children"][0]["group"] == "app"


@pytest.mark.gen_test
async def test_qualified_names_are_served_whole(http_client, base_url, datadir):
    """The server never shortens a name: short names are the pages' choice where space is tight."""
    outer = Frame("/srv/app/jobs.py", "outer", 1, 9)
    inner = Frame("/srv/app/jobs.py", "outer.<locals>.inner", 3, 5)
    get = Frame("/srv/app/handlers.py", "ProductListHandler.get", 40, 44)
    formats.dump(Profile({("", (outer, inner)): 4, ("", (get,)): 2}), datadir / "qual.plop")
    top = await get_json(http_client, base_url, "/api/top?filename=qual.plop")
    assert {(f["name"], f["label"]) for f in top["functions"]} >= {
        ("outer.<locals>.inner", "outer.<locals>.inner"), ("ProductListHandler.get", "ProductListHandler.get")}
    flame = await get_json(http_client, base_url, "/api/flame?filename=qual.plop&fraction=0")
    assert [c["label"] for c in flame["root"]["children"][0]["children"]] == ["outer.<locals>.inner"]
    data = await get_json(http_client, base_url, "/data?filename=qual.plop")
    assert "ProductListHandler.get" in {n["label"] for n in data["nodes"]}


def source_tree(tmp_path: Path) -> tuple[Path, Path]:
    """A --source directory with one module, a symlink out of it, and a secret file beside it."""
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "mod.py").write_text("".join("line %d\n" % i for i in range(1, 31)))
    secret = tmp_path / "secret.py"
    secret.write_text("SECRET = 1\n" * 30)
    (src / "link.py").symlink_to(secret)
    return src, secret


@pytest.mark.parametrize("filename, shown", [
    ("{src}/pkg/mod.py", True), ("pkg/mod.py", True), ("{src}/pkg/../pkg/mod.py", True),
    ("{secret}", False), ("{src}/link.py", False), ("{src}/../secret.py", False), ("../secret.py", False),
    ("/etc/passwd", False), ("{src}", False), ("<string>", False), ("{src}/pkg/missing.py", False),
])
def test_source_only_under_source_directories(tmp_path, filename, shown):
    from plop.viewer.source import SourceDirectories
    src, secret = source_tree(tmp_path)
    name = filename.format(src=src, secret=secret)
    excerpt = SourceDirectories([str(src)]).excerpt(name, 5, 7)
    assert excerpt["shown"] is shown, excerpt
    if shown:
        assert excerpt["first_line"] == 5 and excerpt["lines"] == ["line %d" % i for i in range(5, 11)]
    else:
        assert "SECRET" not in json.dumps(excerpt) and excerpt["reason"]


def test_source_shown_through_the_route(tmp_path):
    src, secret = source_tree(tmp_path)
    data = tmp_path / "profiles"
    data.mkdir()
    mine, theirs = Frame(str(src / "pkg" / "mod.py"), "f", 3, 5), Frame(str(secret), "g", 1, 2)
    formats.dump(Profile({("", (mine, theirs)): 4}), data / "p.plop")

    async def fetch(http_client, base_url, frame):
        url = "/api/function?filename=p.plop&function=%s&file=%s&firstlineno=%d" % (
            frame.funcname, quote(frame.filename, safe=""), frame.firstlineno)
        return await get_json(http_client, base_url, url)

    import tornado.testing

    class Case(tornado.testing.AsyncHTTPTestCase):
        def get_app(self):
            return make_app(str(data), sources=[str(src)])

        @tornado.testing.gen_test
        async def runTest(self):
            body = await fetch(self.http_client, self.get_url(""), mine)
            assert body["source"]["shown"] and body["source"]["lines"][0] == "line 3"
            body = await fetch(self.http_client, self.get_url(""), theirs)
            assert not body["source"]["shown"]

    result = Case().run()
    assert result.wasSuccessful(), result.errors + result.failures


# ---------------------------------------------------------------- python -m plop.viewer FILE...

@pytest.mark.parametrize("make", ["missing", "directory", "unreadable", "not a profile"])
def test_cli_bad_file_is_one_line_error_exit_2(tmp_path, make):
    good = tmp_path / "good.plop"
    formats.dump(native_profile(), good)
    target = tmp_path / "bad.plop"
    if make == "directory":
        target.mkdir()
    elif make == "unreadable":
        target.write_bytes(formats.dumps(native_profile()))
        target.chmod(0)
        if os.access(target, os.R_OK):
            pytest.skip("running as root: every file is readable")
    elif make == "not a profile":
        target = tmp_path / "notes.txt"
        target.write_text("hello\n")
    result = run_viewer(str(good), str(target), "--port=0", "--no-browser")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and str(target) in result.stderr
    assert "Traceback" not in result.stderr


def test_named_files_serves_only_them(tmp_path):
    from plop.viewer.listing import NamedFiles
    one, two = tmp_path / "a", tmp_path / "b"
    one.mkdir()
    two.mkdir()
    formats.dump(native_profile(), one / "p.plop")
    formats.dump(Profile({("", (MAIN,)): 2}), two / "p.plop")
    formats.dump(Profile({("", (MAIN,)): 9}), one / "other.plop")
    files = NamedFiles([str(one / "p.plop"), str(two / "p.plop"), str(one / "p.plop")])
    try:
        assert files.names == ["p.plop", "p.plop (2)"]
        assert sorted(e.name for e in files.scan()) == ["p.plop", "p.plop (2)"]
        assert files.lookup("other.plop") is None and files.lookup("../a/other.plop") is None
        entry = files.lookup("p.plop (2)")
        assert files.load(entry).total_samples == 2
        assert files.load(files.lookup("p.plop")).total_samples == 60
    finally:
        files.close()


def test_cli_serves_named_files_without_a_browser(datadir, tmp_path):
    env = dict(os.environ, DISPLAY="", WAYLAND_DISPLAY="", BROWSER="")
    process = subprocess.Popen([sys.executable, "-m", "plop.viewer", str(datadir / "web.plop"),
                                str(datadir / "small.plop"), "--port=0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        line = process.stdout.readline()
        assert "serving 2 profiles at http://127.0.0.1:" in line
        url = line.split()[-1]
        assert url.endswith("/view?filename=web.plop")
        import urllib.error
        import urllib.request
        base = url[: url.index("/view")]
        with urllib.request.urlopen(base + "/api/profiles", timeout=10) as response:
            assert sorted(p["name"] for p in json.load(response)["profiles"]) == ["small.plop", "web.plop"]
        with urllib.request.urlopen(base + "/api/top?filename=small.plop", timeout=10) as response:
            assert json.load(response)["total_samples"] == 3
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(base + "/data?filename=notes.txt", timeout=10)
        assert info.value.code == 404
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(base + "/data?filename=tmpl_work.legacy-plop-0.4.0.plop", timeout=10)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_browser_is_opened_only_where_one_can_be(monkeypatch):
    from plop.viewer import __main__ as cli
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli.sys, "platform", "linux")
    assert not cli.can_open_browser()
    monkeypatch.setenv("DISPLAY", ":0")
    assert cli.can_open_browser()
    opened = []

    def fail(url):
        opened.append(url)
        raise cli.webbrowser.Error("no runnable browser")

    monkeypatch.setattr(cli.webbrowser, "open", fail)
    cli.open_browser("http://127.0.0.1:1/")  # must not raise, in this thread or its own
    for thread in [t for t in __import__("threading").enumerate() if t.name == "plop-open-browser"]:
        thread.join(5)
    assert opened == ["http://127.0.0.1:1/"]
