"""The viewer's merge and compare parameters (pytest-tornado): repeated files, service ranges, bases, errors."""
from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path
from urllib.parse import quote

import pytest

import plop.viewer.app
import plop.viewer.listing
from plop import formats
from plop.profile import Frame, Profile
from plop.merge import merge
from plop.viewer import make_app
from plop.viewer.app import Viewer
from plop.viewer.listing import Unreadable, reason, summarize
from tests.test_viewer import app  # noqa: F401 (the fixture, over this module's datadir)
from tests.test_viewer import get as fetch

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HOSTILE = "<img src=x onerror=alert(1)>"
MAIN = Frame("/srv/app/server.py", "main", 10, 12)
HANDLE = Frame("/srv/app/handlers.py", "handle", 20, 25)
QUERY = Frame("/srv/app/db.py", "query", 30, 31)
RENDER = Frame("/srv/app/views.py", HOSTILE, 40, 41)
NOW = time.time()


def window(pid: int, minutes_ago: float, samples: dict, service: str = "web") -> Profile:
    start = NOW - 60 * minutes_ago
    metadata = {"service": service, "pid": pid, "hostname": "web-1", "mode": "real", "interval": 0.01,
                "start_time": start, "window_start": start, "window_end": start + 60, "duration": 60.0}
    return Profile(samples, metadata, {k: n // 2 for k, n in samples.items()})


OLD = {("MainThread", (MAIN, HANDLE, QUERY)): 30, ("MainThread", (MAIN, HANDLE)): 10}
NEW = {("MainThread", (MAIN, HANDLE, QUERY)): 60, ("MainThread", (MAIN, HANDLE, RENDER)): 20,
       ("MainThread", (MAIN, HANDLE)): 20}


@pytest.fixture
def datadir(tmp_path: Path) -> Path:
    d = tmp_path / "profiles"
    d.mkdir()
    formats.dump(window(11, 90, OLD), d / "web-old-11.plop")   # 90 minutes ago
    formats.dump(window(11, 30, NEW), d / "web-new-11.plop")   # 30 minutes ago
    formats.dump(window(12, 20, NEW), d / "web-new-12.plop")   # 20 minutes ago, another worker
    formats.dump(window(13, 20, OLD, service="db"), d / "db-13.plop")
    formats.dump(window(14, 10, NEW, service=HOSTILE), d / "evil.plop")
    formats.dump(Profile(OLD), d / "bare.plop")  # no metadata at all
    (d / "broken.plop").write_bytes(b'{"plop": 1, "metadata": {}, "threads": []')
    return d


async def answer(http_client, base_url: str, path: str) -> dict:
    response = await fetch(http_client, base_url, path)
    assert response.code == 200, response.body
    return json.loads(response.body)


def message(response) -> str:
    return json.loads(response.body)["error"]["message"]


def nodes(data: dict) -> dict:
    return {n["funcname"]: n for n in data["nodes"]}


# ---------------------------------------------------------------- merge

@pytest.mark.gen_test
@pytest.mark.parametrize("route", ["/data", "/api/top", "/api/flame"])
async def test_repeated_filename_sums_the_profiles(http_client, base_url, route):
    one = await answer(http_client, base_url, route + "?filename=web-new-11.plop")
    both = await answer(http_client, base_url, route + "?filename=web-new-11.plop&filename=web-old-11.plop")
    assert both["total_samples"] == one["total_samples"] + 40 == 140
    assert both["profiles"] == ["web-new-11.plop", "web-old-11.plop"] and both["filename"] is None
    assert one["filename"] == "web-new-11.plop" and one["profiles"] == ["web-new-11.plop"]
    # One process: the thread keeps its name.
    assert [t["name"] for t in both["threads"]] == ["MainThread"]


@pytest.mark.gen_test
async def test_merged_graph_and_threads_of_several_processes(http_client, base_url):
    data = await answer(http_client, base_url, "/data?filename=web-new-11.plop&filename=web-new-12.plop")
    assert nodes(data)["query"]["total"] == 120 and nodes(data)["handle"]["self"] == 40
    assert {t["name"]: t["samples"] for t in data["threads"]} == {"pid 11 MainThread": 100, "pid 12 MainThread": 100}
    worker = await answer(http_client, base_url,
                          "/data?filename=web-new-11.plop&filename=web-new-12.plop&thread=pid+12+MainThread")
    assert worker["total_samples"] == 100
    assert (await answer(http_client, base_url, "/data?filename=web-new-11.plop&filename=web-new-11.plop"))[
        "total_samples"] == 100  # a name given twice counts once


@pytest.mark.gen_test
async def test_merged_function_and_cpu_view(http_client, base_url):
    query = "filename=web-new-11.plop&filename=web-old-11.plop"
    fn = await answer(http_client, base_url, "/api/function?%s&function=query&file=/srv/app/db.py&firstlineno=30" % query)
    assert fn["function"]["total"] == 90
    cpu = await answer(http_client, base_url, "/data?%s&view=cpu" % query)
    assert cpu["total_samples"] == 70 and cpu["views"] == ["wall", "cpu"]


@pytest.mark.gen_test
async def test_unknown_file_among_several_is_404_naming_it(http_client, base_url):
    response = await fetch(http_client, base_url, "/data?filename=web-new-11.plop&filename=nope.plop")
    assert response.code == 404 and "'nope.plop'" in message(response)
    response = await fetch(http_client, base_url, "/view?filename=web-new-11.plop&filename=nope.plop")
    assert response.code == 404 and "nope.plop" in response.body.decode()
    response = await fetch(http_client, base_url, "/data?filename=web-new-11.plop&filename=broken.plop")
    assert response.code == 422 and "broken.plop" in message(response)


@pytest.mark.gen_test
async def test_service_selection_over_time(http_client, base_url):
    everything = await answer(http_client, base_url, "/data?service=web")
    assert sorted(everything["profiles"]) == ["web-new-11.plop", "web-new-12.plop", "web-old-11.plop"]
    assert everything["profiles"][0] == "web-old-11.plop"  # oldest first
    assert everything["total_samples"] == 240
    # bare.plop and broken.plop (whose first bytes hold its empty metadata) record no service and no time.
    assert everything["selection"] == {"service": "web", "since": None, "until": None, "without_metadata": 2}
    hour = await answer(http_client, base_url, "/data?service=web&since=-1h")
    assert sorted(hour["profiles"]) == ["web-new-11.plop", "web-new-12.plop"] and hour["total_samples"] == 200
    assert hour["selection"]["since"] == "-1h"
    earlier = await answer(http_client, base_url, "/api/top?service=web&since=-2h&until=-1h")
    assert earlier["profiles"] == ["web-old-11.plop"] and earlier["total_samples"] == 40
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(NOW - 25 * 60))
    late = await answer(http_client, base_url, "/api/flame?service=web&since=" + quote(iso))
    assert late["profiles"] == ["web-new-12.plop"]
    evil = await answer(http_client, base_url, "/data?service=" + quote(HOSTILE))
    assert evil["profiles"] == ["evil.plop"]


@pytest.mark.gen_test
@pytest.mark.parametrize("route", ["/data", "/api/top", "/api/flame"])
async def test_range_without_profiles_is_an_empty_answer_saying_so(http_client, base_url, route):
    empty = await answer(http_client, base_url, route + "?service=web&since=-5m")
    assert empty["profiles"] == [] and empty["total_samples"] == 0
    assert empty["message"] == "no profiles of service 'web' between -5m and now (2 profiles without a service or time left out)"
    nobody = await answer(http_client, base_url, route + "?service=nobody")
    assert nobody["profiles"] == [] and "no profiles of service 'nobody'" in nobody["message"]


@pytest.mark.gen_test
async def test_empty_range_page_says_so(http_client, base_url):
    response = await fetch(http_client, base_url, "/view?service=web&since=-5m")
    assert response.code == 200
    assert "no profiles of service &#39;web&#39; between -5m and now" in response.body.decode()


@pytest.mark.gen_test
@pytest.mark.parametrize("query, status, text", [
    ("service=web&since=yesterday", 400, "bad since time: 'yesterday' is not a time: use ISO 8601"),
    ("service=web&until=-1y", 400, "bad until time"),
    ("filename=web-new-11.plop&base_service=web&base_since=soon", 400, "bad base_since time"),
    ("since=-1h", 400, "give service too"),
    ("filename=web-new-11.plop&service=web", 400, "give filename or service, not both"),
    ("filename=web-new-11.plop&base=web-old-11.plop&base_service=web", 400, "give base or base_service, not both"),
    ("filename=web-new-11.plop&base=nope.plop", 404, "no profile named 'nope.plop'"),
    ("filename=web-new-11.plop&base=web-old-11.plop&normalize=maybe", 400, "normalize must be"),
    ("filename=web-new-11.plop&base=bare.plop&view=cpu", 400, "the base has no on-CPU counts"),
    ("", 400, "missing filename"),
])
async def test_bad_merge_and_compare_parameters(http_client, base_url, query, status, text):
    for route in ("/data", "/api/top", "/api/flame"):
        response = await fetch(http_client, base_url, "%s?%s" % (route, query))
        assert response.code == status, (route, response.body)
        assert text in message(response), message(response)
    page = await fetch(http_client, base_url, "/view?" + query)
    assert page.code == status


@pytest.mark.gen_test
async def test_service_selection_loads_only_the_files_it_merges_once(http_client, base_url, monkeypatch):
    loads = []
    real = plop.viewer.listing.formats.load

    def counting(path, **kw):
        loads.append(Path(path).name)
        return real(path, **kw)

    monkeypatch.setattr(plop.viewer.listing.formats, "load", counting)
    await answer(http_client, base_url, "/data?service=web&since=-1h")
    # The other services' windows are chosen from their first bytes, never loaded; broken.plop's
    # first bytes are not laid out as plop writes them, so it is summarised (and fails) first.
    assert sorted(loads) == ["broken.plop", "web-new-11.plop", "web-new-12.plop"]
    # Their summaries were kept: the index lists them without loading them again.
    profiles = {p["name"]: p for p in (await answer(http_client, base_url, "/api/profiles"))["profiles"]}
    assert profiles["web-new-11.plop"]["samples"] == 100
    assert loads.count("web-new-11.plop") == 1
    await answer(http_client, base_url, "/api/top?service=web&since=-1h")
    assert loads.count("web-new-11.plop") == 1  # the merge is cached


# ---------------------------------------------------------------- compare

@pytest.mark.gen_test
async def test_compared_with_itself_is_zero_everywhere(http_client, base_url):
    query = "filename=web-new-11.plop&base=web-new-11.plop"
    data = await answer(http_client, base_url, "/data?" + query)
    assert data["base"] == {"profiles": ["web-new-11.plop"]} and data["normalize"] is True
    for node in data["nodes"]:
        assert (node["base_self"], node["base_total"], node["delta"]) == (node["self"], node["total"], 0)
    for edge in data["edges"]:
        assert edge["base_weight"] == edge["weight"] and edge["delta"] == 0
    top = await answer(http_client, base_url, "/api/top?" + query)
    assert all(r["base_self"] == r["self"] and r["base_total"] == r["total"] and r["delta_total"] == 0
               for r in top["functions"])
    flame = await answer(http_client, base_url, "/api/flame?" + query)
    assert flame["root"]["base_value"] == flame["root"]["value"] and flame["root"]["delta"] == 0


@pytest.mark.gen_test
async def test_compare_new_against_base(http_client, base_url):
    query = "filename=web-new-11.plop&base=web-old-11.plop"
    data = await answer(http_client, base_url, "/data?" + query)
    query_node = nodes(data)["query"]
    assert (query_node["total"], query_node["base_total"]) == (60, 30)
    assert query_node["delta"] == pytest.approx(0.6 - 0.75)  # a smaller share of a longer profile
    assert nodes(data)[HOSTILE]["side"] == "new" and data["base_total_samples"] == 40
    absolute = await answer(http_client, base_url, "/data?%s&normalize=0" % query)
    assert nodes(absolute)["query"]["delta"] == 30 and absolute["normalize"] is False
    top = {r["name"]: r for r in (await answer(http_client, base_url, "/api/top?" + query))["functions"]}
    assert top["handle"]["base_self"] == 10 and top["handle"]["base_total"] == 40 and top["handle"]["self"] == 20
    flame = await answer(http_client, base_url, "/api/flame?" + query)
    handle = flame["root"]["children"][0]["children"][0]
    assert handle["name"] == "handle" and handle["base_value"] == 40 and handle["value"] == 100
    fn = await answer(http_client, base_url,
                      "/api/function?%s&function=handle&file=/srv/app/handlers.py&firstlineno=20" % query)
    callees = {c["name"]: c for c in fn["callees"]}
    assert fn["function"]["base_total"] == 40 and callees["query"]["base_calls"] == 30


@pytest.mark.gen_test
async def test_compare_ranges_of_a_service(http_client, base_url):
    # The last hour against the hour before: base_since alone means the same service.
    data = await answer(http_client, base_url, "/data?service=web&since=-1h&base_since=-2h&base_until=-1h")
    assert data["base"]["profiles"] == ["web-old-11.plop"]
    assert data["base"]["selection"]["service"] == "web"
    assert nodes(data)["query"]["base_total"] == 30 and nodes(data)["query"]["total"] == 120
    against_db = await answer(http_client, base_url, "/api/top?service=web&since=-1h&base_service=db")
    assert against_db["base"]["profiles"] == ["db-13.plop"]
    empty_base = await answer(http_client, base_url, "/data?filename=web-new-11.plop&base_service=web&base_since=-1m")
    assert empty_base["base"]["profiles"] == [] and "no profiles" in empty_base["base"]["message"]
    assert all(n["side"] == "new" and n["base_total"] == 0 for n in empty_base["nodes"])


@pytest.mark.gen_test
async def test_compared_page(http_client, base_url):
    response = await fetch(http_client, base_url, "/view?service=web&since=-1h&base=web-old-11.plop&tab=top")
    html = response.body.decode()
    assert response.code == 200
    assert 'name="service" value="web"' in html and 'name="base" value="web-old-11.plop"' in html
    assert 'id="normalize"' in html and "Compared with" in html and "web-old-11.plop" in html
    assert "web · 2 profiles" in html
    evil = (await fetch(http_client, base_url, "/view?service=" + quote(HOSTILE) + "&base=evil.plop")).body.decode()
    assert "<img" not in evil and "&lt;img src=x onerror=alert(1)&gt;" in evil


# ---------------------------------------------------------------- index

@pytest.mark.gen_test
async def test_index_groups_windows_by_service(http_client, base_url):
    api = await answer(http_client, base_url, "/api/profiles")
    groups = {g["service"]: g for g in api["groups"]}
    assert set(groups) == {"web", "db", HOSTILE}
    web = groups["web"]
    assert web["count"] == 3 and web["pids"] == [11, 12] and web["hosts"] == ["web-1"] and web["samples"] == 240
    assert web["start"] == pytest.approx(NOW - 90 * 60) and web["end"] == pytest.approx(NOW - 19 * 60)
    assert web["view_url"] == "/view?service=web"
    html = (await fetch(http_client, base_url, "/")).body.decode()
    groups_html = html[html.index('id="groups"'):html.index("</table>")]
    assert 'href="/view?service=web&amp;since=-1h"' in groups_html
    assert 'href="/view?service=web&amp;since=-5m"' in groups_html and "since=-24h" in groups_html
    assert "base_since=-2h&amp;base_until=-1h" in groups_html
    assert 'name="base_service" value="web"' in groups_html
    # Tick boxes: every readable profile can be merged or be the base; the form opens /view.
    assert '<form class="pick" id="pick" method="get" action="/view">' in html
    assert 'name="filename" value="web-new-12.plop"' in html and 'name="base" value="bare.plop"' in html
    assert 'value="broken.plop"' not in html
    assert "<img" not in html and "%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E" in groups_html


# ---------------------------------------------------------------- merges loaded by worker processes

def unreadable_window(datadir: Path) -> str:
    """A window whose first bytes (and so its selection by service) are fine, but not its stacks."""
    good = formats.dumps(window(15, 25, NEW))
    (datadir / "web-bad-15.plop").write_bytes(good[:good.index(b'"stacks"')] + b'"stacks": [[0, 1, null, 9, [0]]]}')
    return "web-bad-15.plop"


def pooled(datadir: Path) -> Viewer:
    """A viewer whose every merge of two files or more goes through two worker processes."""
    return Viewer(str(datadir), pool_files=2, workers=2)


def never_in_process(*args, **kwargs):
    raise AssertionError("this merge was to be loaded by the worker processes")


def test_pooled_merge_is_the_in_process_merge_key_for_key(datadir, monkeypatch):
    here, there = Viewer(str(datadir), workers=1), pooled(datadir)
    try:
        selections = [here.windows("web", -math.inf, math.inf)[0],
                      [here.datadir.lookup(n) for n in ("db-13.plop", "web-new-12.plop", "evil.plop", "bare.plop",
                                                        "web-old-11.plop", "web-new-11.plop")]]
        expected = [here.merged(entries) for entries in selections]
        monkeypatch.setattr(plop.viewer.app, "merge", never_in_process)
        for entries, want in zip(selections, expected):
            got = there.merged(entries)
            assert there.pool.running
            assert list(got.samples.items()) == list(want.samples.items())
            assert (got.cpu_samples is None) == (want.cpu_samples is None)  # bare.plop has no CPU counts
            assert list((got.cpu_samples or {}).items()) == list((want.cpu_samples or {}).items())
            assert got.metadata == want.metadata
        # Threads renamed across processes by all the files' processes (bare.plop records none).
        assert set(got.threads()) == {"pid 13 MainThread", "pid 12 MainThread", "pid 14 MainThread",
                                      "MainThread", "pid 11 MainThread"}
        # The merged frames are shared as in one process.
        assert len({id(f) for _t, stack in got.samples for f in stack}) == 4
    finally:
        here.close()
        there.close()


def test_pooled_merge_keeps_each_files_summary(datadir, monkeypatch):
    viewer = pooled(datadir)
    try:
        entries, _ = viewer.windows("web", -math.inf, math.inf)
        loads = []
        monkeypatch.setattr(plop.viewer.listing.formats, "load", lambda path, **kw: loads.append(path))
        assert all(e.pending for e in entries)
        viewer.merged(entries)
        assert loads == []  # nothing loaded in the viewer's process
        monkeypatch.undo()
        facts = {e.name: e for e in viewer.datadir.scan(summarize=False)}
        for entry in entries:
            assert facts[entry.name].summary == summarize(formats.load(entry.path))
    finally:
        viewer.close()


def test_small_merges_and_single_files_stay_in_process(datadir):
    viewer = Viewer(str(datadir), pool_files=3, workers=2)
    try:
        a, b = (viewer.datadir.lookup(n) for n in ("web-new-11.plop", "web-new-12.plop"))
        viewer.merged([a])
        viewer.merged([a, b])
        assert not viewer.pool.running
        assert Viewer(str(datadir), pool_files=1, workers=2).pool_files == 2  # never one file
        assert Viewer(str(datadir), workers=1).pool is None
    finally:
        viewer.close()


def test_pool_is_shut_down_when_the_viewer_closes(datadir):
    viewer = pooled(datadir)
    entries, _ = viewer.windows("web", -math.inf, math.inf)
    viewer.merged(entries)
    workers = list(viewer.pool._executor._processes.values())
    assert len(workers) == 2 and all(w.is_alive() for w in workers)
    viewer.close()
    assert not viewer.pool.running and not any(w.is_alive() for w in workers)
    with pytest.raises(RuntimeError, match="closed"):
        viewer.merged(entries[:2])


def test_killed_worker_merge_is_done_in_process_and_the_next_gets_new_workers(datadir):
    viewer = pooled(datadir)
    try:
        entries, _ = viewer.windows("web", -math.inf, math.inf)
        want = merge([formats.load(e.path) for e in entries])
        viewer.merged(entries[:2])
        for worker in list(viewer.pool._executor._processes.values()):
            os.kill(worker.pid, signal.SIGKILL)
            worker.join(10)
        assert viewer.merged(entries).samples == want.samples  # BrokenProcessPool: merged here instead
        assert not viewer.pool.running
        assert viewer.merged(entries[1:]).samples == merge([formats.load(e.path) for e in entries[1:]]).samples
        assert viewer.pool.running
    finally:
        viewer.close()


class TestPooledMergeRoutes:
    """The routes over merges loaded by worker processes."""

    @pytest.fixture
    def app(self, datadir: Path, monkeypatch):
        monkeypatch.setattr(plop.viewer.app, "merge", never_in_process)
        app = make_app(str(datadir), pool_files=2, workers=2)
        yield app
        app.settings["viewer"].close()

    @pytest.mark.gen_test
    async def test_threads_renamed_across_processes(self, http_client, base_url):
        data = await answer(http_client, base_url, "/data?service=web")
        assert data["total_samples"] == 240
        assert {t["name"]: t["samples"] for t in data["threads"]} == {"pid 11 MainThread": 140,
                                                                      "pid 12 MainThread": 100}
        cpu = await answer(http_client, base_url, "/data?service=web&view=cpu&thread=pid+12+MainThread")
        assert cpu["total_samples"] == 50

    @pytest.mark.gen_test
    async def test_unreadable_window_is_left_out_of_a_service_and_named(self, http_client, base_url, datadir):
        """One window cut short must not hide a service's others: they are merged, it is named."""
        name = unreadable_window(datadir)
        with pytest.raises(formats.ProfileFormatError) as failure:
            formats.load(datadir / name)
        data = await answer(http_client, base_url, "/data?service=web")
        assert data["total_samples"] == 240  # every other window, as without it
        assert data["selection"]["unreadable"] == [{"name": name, "why": reason(failure.value)}]
        assert name not in data["profiles"]
        page = await fetch(http_client, base_url, "/view?service=web")
        assert page.code == 200 and "1 unreadable profile left out (%s)" % name in page.body.decode()
        # The index shows the one that failed as failing, the others summarised.
        profiles = {p["name"]: p for p in (await answer(http_client, base_url, "/api/profiles"))["profiles"]}
        assert profiles["web-old-11.plop"]["samples"] == 40 and profiles[name]["error"]

    @pytest.mark.gen_test
    async def test_unreadable_file_named_among_several_is_422_naming_it(self, http_client, base_url, datadir):
        name = unreadable_window(datadir)
        with pytest.raises(formats.ProfileFormatError) as failure:
            formats.load(datadir / name)
        response = await fetch(http_client, base_url, "/data?filename=web-old-11.plop&filename=%s" % name)
        assert response.code == 422
        assert message(response) == "%s cannot be read: %s" % (name, reason(failure.value))


def test_in_process_merge_skips_unreadable_windows_like_the_pool(datadir):
    name = unreadable_window(datadir)
    here, there = Viewer(str(datadir), workers=1), pooled(datadir)
    try:
        entries = here.windows("web", -math.inf, math.inf)[0]
        assert name in [e.name for e in entries]
        profile, unreadable = here.merged_skipping(entries)
        pooled_profile, pooled_unreadable = there.merged_skipping(entries)
        assert [(u.name, u.why) for u in unreadable] == [(u.name, u.why) for u in pooled_unreadable]
        assert [u.name for u in unreadable] == [name]
        assert profile.samples == pooled_profile.samples
        readable = [e for e in entries if e.name != name]
        assert profile.samples == here.merged(readable).samples
        with pytest.raises(Unreadable):
            here.merged(entries)
        assert here.merged_skipping([here.datadir.lookup(name)])[0].total_samples == 0
    finally:
        here.close()
        there.close()
