"""The viewer in a real browser: headless Chromium (Debian's) driven by Playwright.

Starts ``python -m plop.viewer`` on a free port over a data directory holding
a realistic native profile, a profile with a hostile function name, the
fixtures written by the original plop and py-spy and a real profile of
``examples/busy.py`` taken by the collector, then clicks through it.

Screenshots go to ``test-artifacts/``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from plop import formats
from plop.profile import Frame, Profile

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
HOSTILE = "<img src=x onerror=alert(1)>"
LAYOUT_DONE = "svg#graph[data-layout=done]"

_PATHS = {"$S": "/srv/shop/venv/lib/python3.11/site-packages", "$L": "/usr/local/lib/python3.11",
          "$A": "/srv/shop/shop"}


def call(spec: str, own: int = 0, cpu: float = 1.0, *callees: tuple) -> tuple:
    """One function in a call tree: ``"name $A/file.py first line"``, its own wall
    samples, the share of them spent on a CPU, and the functions it calls."""
    name, path, first, line = spec.rsplit(" ", 3)
    prefix, _, rest = path.partition("/")
    frame = Frame("%s/%s" % (_PATHS[prefix], rest), name, int(first), int(line))
    return (frame, own, cpu, callees)


def sql(line: int) -> tuple:
    return call(f"Connection.execute $S/sqlalchemy/engine/base.py 1370 {line}", 6, 1.0,
                call("Connection._execute_context $S/sqlalchemy/engine/base.py 1790 1846", 9, 1.0,
                     call("DefaultDialect.do_execute $S/sqlalchemy/engine/default.py 733 736", 3, 1.0,
                          call("Cursor.execute $S/psycopg/cursor.py 717 732", 14, 1.0,
                               call("Cursor._execute_gen $S/psycopg/cursor.py 190 204", 22),
                               call("wait $S/psycopg/waiting.py 40 58", 0, 1.0,
                                    call("EpollSelector.select $L/selectors.py 451 468", 310, 0.02))))),
                call("CursorResult.all $S/sqlalchemy/engine/result.py 1220 1234", 8, 1.0,
                     call("ResultMetaData._row_getter $S/sqlalchemy/engine/result.py 180 199", 41)))


def web_service_profile() -> Profile:
    """A minute of a Tornado web shop: handlers, SQL, templates, caching, a worker pool."""
    render = call("render_template $A/templating.py 24 31", 2, 1.0,
                  call("Environment.get_template $S/jinja2/environment.py 977 1010", 3),
                  call("Template.render $S/jinja2/environment.py 1269 1301", 4, 1.0,
                       call("root $A/templates/product_list.html 1 12", 38, 1.0,
                            call("block_content $A/templates/product_list.html 5 27", 61, 1.0,
                                 call("escape $S/markupsafe/__init__.py 202 205", 44),
                                 call("format_price $A/filters.py 18 22", 12, 1.0,
                                      call("Decimal.__format__ $L/_pydecimal.py 3778 3811", 29)),
                                 call("url_for $A/urls.py 40 47", 18)))))
    pricing = call("PriceCalculator.apply $A/pricing.py 51 66", 6, 1.0,
                   call("PriceCalculator._apply_rule $A/pricing.py 80 91", 21, 1.0,
                        call("PriceCalculator._apply_rule $A/pricing.py 80 94", 17, 1.0,
                             call("PriceCalculator._apply_rule $A/pricing.py 80 94", 9, 1.0,
                                  call("Rule.matches $A/pricing.py 22 30", 16)),
                             call("Rule.matches $A/pricing.py 22 30", 12)),
                        call("Rule.matches $A/pricing.py 22 29", 15)))
    cache = call("Cache.get $A/cache.py 33 41", 3, 1.0,
                 call("Redis.get $S/redis/commands/core.py 1820 1826", 2, 1.0,
                      call("Redis.execute_command $S/redis/client.py 530 545", 7, 1.0,
                           call("Connection.read_response $S/redis/connection.py 820 831", 5, 1.0,
                                call("socket.recv_into $L/socket.py 0 0", 96, 0.03)))))
    dumps = call("dumps $L/json/__init__.py 183 231", 2, 1.0,
                 call("JSONEncoder.encode $L/json/encoder.py 183 200", 4, 1.0,
                      call("JSONEncoder.iterencode $L/json/encoder.py 205 258", 57)))
    log = call("Logger.info $L/logging/__init__.py 1467 1479", 3, 1.0,
               call("Logger._log $L/logging/__init__.py 1600 1634", 6, 1.0,
                    call("Logger.handle $L/logging/__init__.py 1636 1646", 2, 1.0,
                         call("StreamHandler.emit $L/logging/__init__.py 1098 1113", 24, 0.5))))
    products = call("ProductListHandler.get $A/handlers/products.py 41 58", 11, 1.0,
                    call("ProductRepository.search $A/models/products.py 77 93", 7, 1.0,
                         call("Query.all $S/sqlalchemy/orm/query.py 2660 2673", 4, 1.0, sql(1412))),
                    cache, pricing, render, log)
    api = call("ProductApiHandler.get $A/handlers/api.py 19 33", 5, 1.0,
               call("ProductRepository.get $A/models/products.py 60 71", 3, 1.0,
                    call("Session.get $S/sqlalchemy/orm/session.py 3480 3522", 5, 1.0, sql(1415))),
               dumps, call("RequestHandler.write $S/tornado/web.py 830 871", 9))
    execute = call("RequestHandler._execute $S/tornado/web.py 1705 1786", 12, 1.0, products, api,
                   call("RequestHandler.finish $S/tornado/web.py 1151 1215", 8, 1.0,
                        call("HTTP1Connection.write $S/tornado/http1connection.py 490 512", 17, 0.9)))
    main = call("<module> $A/server.py 1 88", 0, 1.0,
                call("main $A/server.py 70 84", 0, 1.0,
                     call("run $L/asyncio/runners.py 160 190", 0, 1.0,
                          call("BaseEventLoop.run_forever $L/asyncio/base_events.py 593 607", 2, 1.0,
                               call("BaseEventLoop._run_once $L/asyncio/base_events.py 1845 1922", 19, 1.0,
                                    call("EpollSelector.select $L/selectors.py 451 468", 520, 0.01),
                                    call("Handle._run $L/asyncio/events.py 78 80", 6, 1.0,
                                         call("_HandlerDelegate.execute $S/tornado/web.py 2430 2468", 3, 1.0,
                                              execute),
                                         call("HTTP1ServerConnection._server_request_loop "
                                              "$S/tornado/http1connection.py 821 836", 4, 1.0,
                                              call("HTTP1Connection._read_message "
                                                   "$S/tornado/http1connection.py 190 244", 23, 1.0,
                                                   call("parse_request_start_line $S/tornado/httputil.py 911 930",
                                                        11)))))))))

    def thread(*callees: tuple) -> tuple:
        return call("Thread._bootstrap $L/threading.py 982 1002", 0, 1.0,
                    call("Thread._bootstrap_inner $L/threading.py 1019 1045", 0, 1.0,
                         call("Thread.run $L/threading.py 975 982", 0, 1.0, *callees)))

    worker = thread(call("_worker $L/concurrent/futures/thread.py 69 83", 2, 1.0,
                         call("SimpleQueue.get $L/queue.py 0 0", 140, 0.0),
                         call("_WorkItem.run $L/concurrent/futures/thread.py 53 58", 1, 1.0,
                              call("make_thumbnail $A/images.py 30 44", 5, 1.0,
                                   call("Image.resize $S/PIL/Image.py 2120 2200", 96),
                                   call("Image.save $S/PIL/Image.py 2350 2439", 12, 1.0,
                                        call("_save $S/PIL/JpegImagePlugin.py 640 789", 37))))))
    flusher = thread(call("MetricsFlusher.run $A/metrics.py 51 60", 1, 1.0,
                          call("sleep $A/metrics.py 0 0", 60, 0.0),
                          call("StatsClient.send $S/statsd/client/udp.py 35 41", 9)))
    samples: dict = {}
    cpu: dict = {}

    def walk(thread_name: str, node: tuple, prefix: tuple) -> None:
        frame, own, on_cpu, callees = node
        stack = prefix + (frame,)
        if own:
            key = (thread_name, stack)
            samples[key] = samples.get(key, 0) + own
            cpu[key] = cpu.get(key, 0) + round(own * on_cpu)
        for callee in callees:
            walk(thread_name, callee, stack)

    walk("MainThread", main, ())
    walk("ThreadPoolExecutor-0_0", worker, ())
    walk("metrics-flusher", flusher, ())
    # Every snapshot has a main thread's stack: its samples are the snapshots, 10 ms apart.
    snapshots = sum(n for (thread, _stack), n in samples.items() if thread == "MainThread")
    metadata = {
        "command": ["python", "-m", "shop.server", "--port=8000"], "start_time": 1767271380.0,
        "duration": round(snapshots * 0.01, 2), "mode": "real", "interval": 0.01, "pid": 48213,
        "hostname": "web-3.shop.internal", "python_version": "3.11.7", "samples_taken": snapshots, "sample_time": 0.41,
    }
    return Profile(samples, metadata, cpu)


def throttled_window() -> Profile:
    """The issue's rolling window: its overhead budget set the sampler to 153 ms, so it took 33 snapshots
    of the 500 that 10 ms would take in 5 s; each stands for about 15 intervals."""
    shop = web_service_profile()
    metadata = {"service": "web", "mode": "real", "interval": 0.01, "effective_interval": 0.153, "duration": 5.0,
                "start_time": 1767271380.0, "window_start": 1767271380.0, "window_end": 1767271385.0,
                "samples_taken": 33, "ticks": 500, "samples_asked": 32, "cpu_time": 0.19, "sampler_cpu_time": 0.004,
                "gil_wait": 0.002, "late": 0, "overhead_budget": 0.01, "pid": 4242, "hostname": "web-3",
                "rate_change": {"time": 1767271380.0, "from": 0.01, "to": 0.153, "cost": 0.1227}}
    return Profile(shop.samples, metadata, shop.cpu_samples)


def hostile_profile() -> Profile:
    evil = Frame("/srv/app/evil.py", HOSTILE, 3, 4)
    main = Frame("/srv/app/main.py", "main", 1, 2)
    return Profile({("", (main, evil)): 7, ("", (main,)): 2}, {"command": ["python", HOSTILE]})


def many_functions_profile() -> Profile:
    """1,200 functions called by one main: more rows than the top table lists at first."""
    main = Frame("/srv/app/main.py", "main", 1, 2)
    return Profile({("", (main, Frame("/srv/app/f%d.py" % (i % 40), "f_%d" % i, i + 1, i + 2))): 1 + i % 7
                    for i in range(1200)})


@pytest.fixture(scope="module")
def datadir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("browser") / "profiles"
    d.mkdir()
    for fixture in FIXTURES.glob("tmpl_work.*"):
        shutil.copy(fixture, d / fixture.name)
    formats.dump(hostile_profile(), d / "hostile.plop")
    formats.dump(web_service_profile(), d / "shop-web-3.plop")
    formats.dump(throttled_window(), d / "web-20260101T124300.000Z-4242.plop")
    formats.dump(many_functions_profile(), d / "many.plop")
    # A real profile: two threads, recursion, import-time frames, many packages.
    subprocess.run([sys.executable, "-m", "plop.collector", "--mode", "real", "--interval", "0.005",
                    "-o", str(d / "busy.plop"), str(ROOT / "examples" / "busy.py")],
                   cwd=d, check=True, capture_output=True, timeout=120)
    return d


@pytest.fixture(scope="module")
def server(datadir: Path) -> Iterator[str]:
    """The viewer as users run it, on a free port; yields its URL.

    Other browser test modules import it and define their own ``datadir``.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "plop.viewer", "--datadir=%s" % datadir, "--port=0", "--address=127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = process.stdout.readline()
        assert "http://127.0.0.1:" in line, process.stderr.read()
        yield line.split()[-1].rstrip("/")
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed at %s" % CHROMIUM)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_page(browser, width: int = 1400, height: int = 900):
    """A fresh page that records script errors and dialogs (e.g. an injected alert) in
    ``page.problems``, and the /data responses it receives in ``page.data_responses``."""
    context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
    page = context.new_page()
    page.problems = []
    page.data_responses = []
    page.on("pageerror", lambda error: page.problems.append("script error: %s" % error))
    page.on("dialog", lambda dialog: (page.problems.append("dialog: %s" % dialog.message), dialog.dismiss()))
    page.on("response", lambda r: page.data_responses.append(r) if "/data?" in r.url else None)
    return context, page


@pytest.fixture
def page(browser):
    """A fresh 1400x900 page that fails the test on any script error or dialog."""
    context, page = new_page(browser)
    yield page
    context.close()
    assert not page.problems


def drawn_data(page) -> dict:
    """Wait for the graph to be drawn; returns the /data response it drew (the page's
    "auto" choice of functions may have asked for more than one)."""
    page.wait_for_selector(LAYOUT_DONE, state="attached", timeout=20000)
    drawn = page.get_attribute("#app", "data-drawn")
    matching = [r for r in page.data_responses if r.url.endswith(drawn)]
    assert matching, (drawn, [r.url for r in page.data_responses])
    return matching[-1].json()


def open_graph(page, url: str) -> dict:
    """Go to a graph page, wait for its layout; returns the /data response it drew."""
    page.goto(url)
    return drawn_data(page)


def node(page, data: dict, funcname: str):
    ids = [n["id"] for n in data["nodes"] if n["funcname"] == funcname]
    assert ids, funcname
    return page.locator('g.node[data-id="%d"] circle' % ids[0])


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def test_index_to_graph_hover_search_select(page, server):
    page.goto(server + "/")
    links = page.locator("table.profiles a")
    assert {"shop-web-3.plop", "hostile.plop", "tmpl_work.legacy-plop-0.4.0.plop",
            "tmpl_work.py-spy-0.4.3.collapsed", "tmpl_work.legacy-plop-0.4.0.flame"} <= set(links.all_inner_texts())
    screenshot(page, "index.png")

    page.click("text=shop-web-3.plop")
    data = drawn_data(page)
    # By default ("auto") the functions with at least 0.5% of samples, trimmed by the server.
    assert page.locator("circle").count() == len(data["nodes"]) == data["max_nodes"] < data["node_count"]
    assert all(n["total"] >= 0.005 * data["total_samples"] for n in data["nodes"])
    assert data["hidden_nodes"] == data["node_count"] - len(data["nodes"])
    assert "at least 0.5% of samples" in page.inner_text("#status")
    assert page.input_value("#max-nodes") == ""
    assert "max_nodes" not in page.url
    assert "python -m shop.server" in page.inner_text("header")

    # Hover: an HTML tooltip with function, file:line, self and total.
    target = node(page, data, "ProductListHandler.get")
    target.hover(force=True)
    tooltip = page.locator("#tooltip")
    tooltip.wait_for(state="visible")
    text = tooltip.inner_text()
    listing = next(n for n in data["nodes"] if n["funcname"] == "ProductListHandler.get")
    assert "ProductListHandler.get" in text
    assert "/srv/shop/shop/handlers/products.py:41" in text
    assert "Self" in text and "Total" in text
    assert "%d samples" % listing["total"] in text and "%.1f%%" % (100 * listing["total"] / data["total_samples"]) in text
    screenshot(page, "graph-hover.png")

    # Search highlights every function whose name or file matches.
    page.fill("#search", "execute")
    expected = {n["id"] for n in data["nodes"] if "execute" in (n["funcname"] + n["filename"]).lower()}
    page.wait_for_function("n => document.querySelectorAll('g.node.match').length === n", arg=len(expected))
    found = set(map(int, page.eval_on_selector_all("g.node.match", "els => els.map(e => e.dataset.id)")))
    assert found == expected
    assert page.inner_text("#search-count") == "%d found" % len(expected)
    screenshot(page, "graph-search.png")
    page.fill("#search", "")

    # Click: the details panel with lines, callers and callees.
    node(page, data, "ProductListHandler.get").click(force=True)
    panel = page.locator("#details")
    panel.wait_for(state="visible")
    assert panel.locator("h2").inner_text() == "ProductListHandler.get"
    body = panel.inner_text()  # headings are upper-cased by CSS
    assert "CALLED BY (1)" in body and "RequestHandler._execute" in body
    assert "CALLS (5)" in body and "ProductRepository.search" in body and "render_template" in body
    assert "LINES" in body and "58" in body
    assert page.locator("g.node.selected").count() == 1
    assert page.locator("g.node.lit").count() == 7  # itself, 1 caller, 5 callees
    screenshot(page, "graph-selected.png")
    page.keyboard.press("Escape")
    panel.wait_for(state="hidden")

    page.mouse.move(5, 5)
    tooltip.wait_for(state="hidden")
    page.click("#fit")
    page.wait_for_timeout(600)  # the zoom transition
    screenshot(page, "graph.png")


def test_controls_ask_for_new_data(page, server):
    data = open_graph(page, server + "/view?filename=shop-web-3.plop&max_nodes=100")
    assert data["max_nodes"] == 100 and len(data["nodes"]) == data["node_count"]
    assert page.locator("circle").count() == data["node_count"]
    assert page.input_value("#max-nodes") == "100"

    with page.expect_response(lambda r: "/data?" in r.url and "max_nodes=25" in r.url) as response:
        page.select_option("#max-nodes", "25")
    page.wait_for_selector(LAYOUT_DONE, state="attached")
    trimmed = response.value.json()
    assert len(trimmed["nodes"]) == 25 and trimmed["hidden_nodes"] == data["node_count"] - 25
    page.wait_for_function("() => document.querySelectorAll('circle').length === 25")
    assert "hidden" in page.inner_text("#status")
    assert "max_nodes=25" in page.url

    with page.expect_response(lambda r: "/data?" in r.url and "view=cpu" in r.url) as response:
        page.click("text=On CPU")
    cpu = response.value.json()
    assert cpu["view"] == "cpu" and cpu["total_samples"] < data["total_samples"]
    page.wait_for_function("n => document.querySelectorAll('circle').length === n", arg=len(cpu["nodes"]))

    with page.expect_response(lambda r: "/data?" in r.url and "thread=" in r.url) as response:
        page.select_option("select[name=thread]", "ThreadPoolExecutor-0_0")
    worker = response.value.json()
    assert worker["thread"] == "ThreadPoolExecutor-0_0"
    page.wait_for_function("n => document.querySelectorAll('circle').length === n", arg=len(worker["nodes"]))
    assert "make_thumbnail" in {n["funcname"] for n in worker["nodes"]}

    # Back to "auto": the URL leaves max_nodes out, the page picks the count.
    page.select_option("#max-nodes", "")
    page.wait_for_function("() => !location.search.includes('max_nodes')")
    page.wait_for_function("() => document.getElementById('app').dataset.drawn.includes('thread=')")
    auto = drawn_data(page)
    assert page.locator("circle").count() == len(auto["nodes"])
    assert all(n["total"] >= 0.005 * auto["total_samples"] for n in auto["nodes"]) or len(auto["nodes"]) == 20


def test_hostile_function_name_is_text(page, server):
    data = open_graph(page, server + "/view?filename=hostile.plop")
    assert page.locator("circle").count() == len(data["nodes"])
    assert page.eval_on_selector_all("img", "els => els.length") == 0
    labels = page.eval_on_selector_all("g.node tspan.name", "els => els.map(e => e.textContent)")
    assert HOSTILE in labels
    node(page, data, HOSTILE).hover(force=True)
    page.locator("#tooltip").wait_for(state="visible")
    assert HOSTILE in page.inner_text("#tooltip")
    node(page, data, HOSTILE).click(force=True)
    page.locator("#details").wait_for(state="visible")
    assert page.locator("#details h2").inner_text() == HOSTILE
    assert HOSTILE in page.inner_text("header")  # the command
    assert page.eval_on_selector_all("img", "els => els.length") == 0
    page.goto(server + "/")
    assert page.eval_on_selector_all("img", "els => els.length") == 0


@pytest.mark.parametrize("name", ["tmpl_work.legacy-plop-0.4.0.plop", "tmpl_work.legacy-plop-0.4.0.flame",
                                  "tmpl_work.py-spy-0.4.3.collapsed"])
def test_fixture_graphs(page, server, name):
    data = open_graph(page, server + "/view?filename=" + name)
    assert page.locator("circle").count() == len(data["nodes"]) > 0
    radii = page.eval_on_selector_all("circle", "els => els.map(e => e.r.baseVal.value)")
    assert min(radii) >= 4  # functions without self samples are still visible
    screenshot(page, "fixture-%s.png" % name.replace(".", "-"))


GEOMETRY = """() => {
  const box = (r) => [r.left, r.top, r.right, r.bottom];
  const legend = document.getElementById('legend');
  return {
    svg: box(document.getElementById('graph').getBoundingClientRect()),
    legend: legend.hidden || !legend.offsetWidth ? null : box(legend.getBoundingClientRect()),
    nodes: [...document.querySelectorAll('g.node')].map((g) => ({
      id: Number(g.dataset.id),
      circle: box(g.querySelector('circle').getBoundingClientRect()),
      label: g.classList.contains('label-hidden') ? null : box(g.querySelector('text').getBoundingClientRect()),
    })),
  };
}"""


def overlap(a, b, slack: float = 0.5) -> bool:
    return a[0] + slack < b[2] and b[0] + slack < a[2] and a[1] + slack < b[3] and b[1] + slack < a[3]


def in_cycle(data: dict) -> set:
    """The edges (source, target) on a cycle of calls: the target reaches the source."""
    callees: dict = {}
    for e in data["edges"]:
        callees.setdefault(e["target"], set())
        callees.setdefault(e["source"], set()).add(e["target"])
    cyclic = set()
    for e in data["edges"]:
        seen, todo = set(), [e["target"]]
        while todo:
            n = todo.pop()
            if n == e["source"]:
                cyclic.add((e["source"], e["target"]))
                break
            if n not in seen:
                seen.add(n)
                todo.extend(callees.get(n, ()))
    return cyclic


@pytest.mark.parametrize("size", [(1400, 900), (1000, 700)], ids=["1400x900", "1000x700"])
@pytest.mark.parametrize("name", ["busy.plop", "shop-web-3.plop", "tmpl_work.legacy-plop-0.4.0.plop",
                                  "tmpl_work.legacy-plop-0.4.0.flame", "tmpl_work.py-spy-0.4.3.collapsed"])
def test_layout_reads_well(browser, server, name, size):
    """Callers above callees, the window used, heavy functions labelled, nothing under the legend."""
    context, page = new_page(browser, *size)
    try:
        data = open_graph(page, server + "/view?filename=" + name)
        screenshot(page, "layout-%s-%dx%d.png" % (name.replace(".", "-"), *size))
        geometry = page.evaluate(GEOMETRY)
    finally:
        context.close()
    assert not page.problems
    svg, legend = geometry["svg"], geometry["legend"]
    nodes = {n["id"]: n for n in geometry["nodes"]}
    assert len(nodes) == len(data["nodes"])
    centre = {i: ((n["circle"][0] + n["circle"][2]) / 2, (n["circle"][1] + n["circle"][3]) / 2) for i, n in nodes.items()}

    # Top-down: every call that is not part of a cycle (recursion) goes down a layer or more.
    cyclic = in_cycle(data)
    for e in data["edges"]:
        if e["source"] != e["target"] and (e["source"], e["target"]) not in cyclic:
            assert centre[e["source"]][1] + 5 < centre[e["target"]][1], e

    # The whole graph is in view, clear of the legend, and fills most of the window.
    labels = [n["label"] for n in nodes.values() if n["label"]]
    for n in nodes.values():
        assert svg[0] - 1 <= n["circle"][0] and n["circle"][2] <= svg[2] + 1, n
        assert svg[1] - 1 <= n["circle"][1] and n["circle"][3] <= svg[3] + 1, n
        if legend:
            assert not overlap(n["circle"], legend), n
    for label in labels:
        assert svg[0] <= label[0] and label[2] <= svg[2] and svg[1] <= label[1] and label[3] <= svg[3], label
        if legend:
            assert not overlap(label, legend), label
    boxes = [n["circle"] for n in nodes.values()] + labels
    width = max(b[2] for b in boxes) - min(b[0] for b in boxes)
    height = max(b[3] for b in boxes) - min(b[1] for b in boxes)
    assert width > 0.6 * (svg[2] - svg[0]) and height > 0.6 * (svg[3] - svg[1]), (width, height, svg)

    # Labels never overlap each other, and the heavy functions all have one.
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            assert not overlap(a, b, slack=1), (a, b)
    # (In the smaller window, with half the room, the heaviest of them.)
    total, small = data["total_samples"], size[0] < 1400
    heavy = {n["id"] for n in data["nodes"] if n["total"] >= (0.1 if small else 0.05) * total}
    heavy |= {n["id"] for n in sorted(data["nodes"], key=lambda n: -n["self"])[:3 if small else 5] if n["self"]}
    unlabelled = {n["funcname"] for n in data["nodes"] if n["id"] in heavy and not nodes[n["id"]]["label"]}
    assert not unlabelled
    if name == "busy.plop":
        assert {"tree_sum", "<genexpr>", "find_longest_match", "wait"} <= {  # qualified names' last part
            n["funcname"].rsplit(".", 1)[-1] for n in data["nodes"] if nodes[n["id"]]["label"]}


def test_legend_folds(page, server):
    """The legend folds and unfolds; the page may fold it to make room, unless the user unfolded it."""
    open_graph(page, server + "/view?filename=hostile.plop")  # a small graph: room for the legend
    entries = page.locator("#legend li").first
    assert entries.is_visible() and page.get_attribute("#legend .fold", "aria-expanded") == "true"
    page.click("#legend .fold")
    assert not entries.is_visible() and page.get_attribute("#legend .fold", "aria-expanded") == "false"
    page.reload()
    drawn_data(page)
    assert not entries.is_visible()  # remembered
    page.click("#legend .fold")
    assert entries.is_visible()
    page.goto(server + "/view?filename=shop-web-3.plop")
    drawn_data(page)
    assert entries.is_visible()  # the user's choice wins over making room
    assert not page.locator("#legend .key div").first.is_visible()
    page.click("#legend .key summary")
    assert page.locator("#legend .key div").first.is_visible()


def test_index_updates_live(page, server, datadir):
    page.goto(server + "/")
    page.wait_for_selector("table.profiles")
    formats.dump(hostile_profile(), datadir / "dropped-later.plop")
    try:
        page.wait_for_selector("text=dropped-later.plop", timeout=15000)
    finally:
        (datadir / "dropped-later.plop").unlink()


SIMULATION = """() => {
  const svg = document.getElementById('graph');
  const sim = svg.simulation;
  return {
    state: svg.dataset.simulation,
    forces: ['x', 'y', 'collide', 'link'].filter((name) => sim && sim.force(name)),
    nodes: sim ? sim.nodes().map((n) => ({id: n.id, x: n.x, y: n.y, homeX: n.homeX, homeY: n.homeY,
                                          fx: n.fx, fy: n.fy})) : [],
    circles: document.querySelectorAll('g.node circle').length,
  };
}"""
SETTLED = "svg#graph[data-simulation=settled]"


def test_force_simulation(page, server):
    """A d3 force simulation drives the drawing: settled at the layered layout, a dragged
    node stays where it is dropped and pushes or pulls its neighbours, "Unpin all" sends
    everything home."""
    data = open_graph(page, server + "/view?filename=busy.plop")
    page.wait_for_selector(SETTLED, state="attached", timeout=10000)
    before = page.evaluate(SIMULATION)
    assert before["forces"] == ["x", "y", "collide", "link"]
    assert len(before["nodes"]) == before["circles"] == len(data["nodes"])
    for n in before["nodes"]:  # the equilibrium is the layered layout
        assert abs(n["x"] - n["homeX"]) < 1 and abs(n["y"] - n["homeY"]) < 1, n
        assert n["fx"] is None and n["fy"] is None
    # Drag a function that calls and is called, across the window.
    callers = {e["target"] for e in data["edges"] if e["source"] != e["target"]}
    callees = {e["source"] for e in data["edges"] if e["source"] != e["target"]}
    middle = max((n for n in data["nodes"] if n["id"] in callers & callees), key=lambda n: n["total"])
    neighbours = ({e["target"] for e in data["edges"] if e["source"] == middle["id"]}
                  | {e["source"] for e in data["edges"] if e["target"] == middle["id"]}) - {middle["id"]}
    circle = page.locator('g.node[data-id="%d"] circle' % middle["id"])
    box = circle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(x + 8 * step, y + 6 * step)
        page.wait_for_timeout(15)
    assert page.get_attribute("#graph", "data-simulation") == "running"
    page.mouse.up()
    page.wait_for_selector(SETTLED, state="attached", timeout=10000)
    after = page.evaluate(SIMULATION)
    moved = {n["id"]: n for n in after["nodes"]}
    dragged = moved[middle["id"]]
    assert dragged["fx"] is not None and abs(dragged["x"] - dragged["fx"]) < 0.01
    dropped = circle.bounding_box()
    assert abs(dropped["x"] + dropped["width"] / 2 - (x + 160)) < 2
    assert abs(dropped["y"] + dropped["height"] / 2 - (y + 120)) < 2
    assert page.locator("g.node.pinned").count() == 1
    shift = max(abs(moved[i]["x"] - moved[i]["homeX"]) + abs(moved[i]["y"] - moved[i]["homeY"]) for i in neighbours)
    assert shift > 2, shift  # the neighbours followed
    screenshot(page, "graph-dragged.png")

    page.click("#unpin")
    page.wait_for_selector(SETTLED, state="attached", timeout=10000)
    home = page.evaluate(SIMULATION)
    assert page.locator("g.node.pinned").count() == 0
    for n in home["nodes"]:
        assert n["fx"] is None and abs(n["x"] - n["homeX"]) < 3 and abs(n["y"] - n["homeY"]) < 3, n


# ---------------------------------------------------------------- the other tabs

def api(server: str, path: str) -> dict:
    """An /api answer of the server, to check the page's numbers against."""
    import json
    import urllib.request
    with urllib.request.urlopen(server + path, timeout=30) as response:
        return json.load(response)


def pct(part: int, whole: int) -> str:
    """util.js's fmtPct for shares of at least 1%."""
    p = 100 * part / whole
    return ("%.0f%%" if p >= 99.95 else "%.1f%%") % p


def flame_boxes(page) -> list[dict]:
    return page.evaluate("window.plopViewer.tabs.flame.boxes()")


def open_flame(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("(q) => document.getElementById('flame-canvas').dataset.query !== undefined", arg=None)


def walk(node: dict, path: str = ""):
    yield path, node
    for i, child in enumerate(node["children"]):
        yield from walk(child, "%s.%d" % (path, i) if path else str(i))


def test_flame_graph_hover_zoom_search(page, server):
    flame = api(server, "/api/flame?filename=shop-web-3.plop")
    open_flame(page, server + "/view?filename=shop-web-3.plop&tab=flame")
    canvas = page.locator("#flame-canvas")
    assert int(canvas.get_attribute("data-frames")) == flame["frames"]
    boxes = flame_boxes(page)
    width = canvas.bounding_box()["width"]
    nodes = dict(walk(flame["root"]))
    root = next(b for b in boxes if b["depth"] == 0)
    assert root["label"] == "all" and abs(root["width"] - width) < 1
    # Every frame is as wide as its share of the samples, children heaviest first from the left.
    for box in boxes:
        node = nodes[box["path"]] if box["path"] else flame["root"]
        assert box["value"] == node["value"]
        assert abs(box["width"] - width * node["value"] / flame["total_samples"]) < 0.01
    screenshot(page, "flame.png")

    # Hover: name, file:line, samples, share of total and of the parent.
    path, target = next((p, n) for p, n in walk(flame["root"]) if n["name"] == "Cursor.execute")
    parent = nodes[path.rsplit(".", 1)[0]]
    box = next(b for b in flame_boxes(page) if b["path"] == path)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tooltip = page.locator("#flame-tooltip")
    tooltip.wait_for(state="visible")
    text = tooltip.inner_text()
    assert "Cursor.execute" in text and "/srv/shop/venv/lib/python3.11/site-packages/psycopg/cursor.py:717" in text
    assert "{:,}".format(target["value"]) in text
    assert pct(target["value"], flame["total_samples"]) + " of total" in text
    assert pct(target["value"], parent["value"]) + " of " + parent["label"] in text
    screenshot(page, "flame-hover.png")

    # Click: zoom in; the frame fills the width, breadcrumbs lead back, the URL keeps it.
    started = page.evaluate("performance.now()")
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("() => document.getElementById('flame-canvas').dataset.zoom === 'Cursor.execute'")
    assert page.evaluate("performance.now()") - started < 2000  # a generous bound; the benchmark measures it
    zoomed = next(b for b in flame_boxes(page) if b["path"] == path)
    assert abs(zoomed["width"] - width) < 1
    crumbs = page.locator("#crumbs .crumb").all_inner_texts()
    assert crumbs[0] == "all" and crumbs[-1] == "Cursor.execute" and len(crumbs) == path.count(".") + 2
    assert "zoom=" + path.replace(".", "%2E") in page.url or "zoom=" + path in page.url
    screenshot(page, "flame-zoomed.png")
    page.reload()
    page.wait_for_function("() => document.getElementById('flame-canvas').dataset.zoom === 'Cursor.execute'")
    page.click("#crumbs .crumb >> text=all")
    page.wait_for_function("() => document.getElementById('flame-canvas').dataset.zoom === 'all'")

    # Search: matches highlighted, their share counted once per sample (nested matches are not added twice).
    page.fill("#search", "execute")
    matched = [(p, n) for p, n in walk(flame["root"]) if p and ("execute" in (n["label"] + n["filename"]).lower())]
    top_level = [n for p, n in matched if not any(p.startswith(q + ".") for q, _ in matched)]
    share = sum(n["value"] for n in top_level)
    assert page.inner_text("#flame-match-share") == pct(share, flame["total_samples"])
    assert page.inner_text("#search-count") == "%d found" % len(matched)
    assert canvas.get_attribute("data-matched-samples") == str(share)
    screenshot(page, "flame-search.png")


def test_top_table_sort_filter_open(page, server):
    top = api(server, "/api/top?filename=shop-web-3.plop")
    page.goto(server + "/view?filename=shop-web-3.plop&tab=top")
    table = page.locator("#top-table")
    page.wait_for_function("() => document.getElementById('top-table').dataset.rows")
    assert int(table.get_attribute("data-rows")) == len(top["functions"])
    first = page.locator("#top-table tbody tr").first.locator("td").all_inner_texts()
    heaviest = top["functions"][0]
    assert first[0] == "{:,}".format(heaviest["self"]) and first[4] == heaviest["label"]
    assert first[1] == pct(heaviest["self"], top["total_samples"])
    screenshot(page, "top.png")

    # Sort by total (heaviest first), then reversed; the URL keeps it through a reload.
    page.click("#top-table button[data-sort=total]")
    totals = [int(t.replace(",", "")) for t in page.locator("#top-table tbody tr td:nth-child(3)").all_inner_texts()]
    assert totals == sorted((f["total"] for f in top["functions"]), reverse=True)
    assert "sort=total" in page.url
    page.click("#top-table button[data-sort=total]")
    assert "sort=-total" in page.url
    page.reload()
    page.wait_for_function("() => document.getElementById('top-table').dataset.rows")
    totals = [int(t.replace(",", "")) for t in page.locator("#top-table tbody tr td:nth-child(3)").all_inner_texts()]
    assert totals == sorted(f["total"] for f in top["functions"])
    page.click("#top-table button[data-sort=name]")
    names = page.locator("#top-table tbody tr td:nth-child(5)").all_inner_texts()
    assert names == sorted(names, key=lambda s: s.lower()) or names[0] <= names[-1]

    # The text box filters rows by function or file.
    page.fill("#search", "sqlalchemy")
    expected = [f for f in top["functions"] if "sqlalchemy" in (f["label"] + f["filename"]).lower()]
    page.wait_for_function("n => document.getElementById('top-table').dataset.rows === String(n)", arg=len(expected))
    assert "%d of %d functions match" % (len(expected), len(top["functions"])) in page.inner_text("#top-status")

    # A row opens the function.
    page.click("#top-table tbody tr >> text=Connection.execute")
    page.wait_for_selector("#function-name")
    assert page.inner_text("#function-name") == "Connection.execute"
    assert "tab=function" in page.url and "function=Connection.execute" in page.url


def test_function_details_butterfly(page, server):
    fn = [f for f in api(server, "/api/top?filename=shop-web-3.plop")["functions"] if f["name"] == "Connection.execute"][0]
    from urllib.parse import quote
    query = "filename=shop-web-3.plop&function=%s&file=%s&firstlineno=%d" % (
        quote(fn["name"]), quote(fn["filename"], safe=""), fn["firstlineno"])
    details = api(server, "/api/function?" + query)
    page.goto(server + "/view?tab=function&" + query)
    page.wait_for_selector("#function-name")
    callers = page.locator(".butterfly-side.callers tbody tr")
    callees = page.locator(".butterfly-side.callees tbody tr")
    assert callers.count() == len(details["callers"]) and callees.count() == len(details["callees"])
    for row, expected in zip(callees.all(), details["callees"]):
        cells = row.locator("td").all_inner_texts()
        assert cells[0] == expected["label"] and cells[1] == "{:,}".format(expected["calls"])
    lines = page.locator(".lines tbody tr").all()
    assert len(lines) == len([line for line in details["lines"] if line["line"]])
    assert "Source not shown" in page.inner_text(".lines")
    screenshot(page, "function.png")
    # A callee opens its own details; Back returns.
    name = details["callees"][0]["label"]
    callees.first.click()
    page.wait_for_function("n => document.getElementById('function-name').textContent === n", arg=name)
    page.go_back()
    page.wait_for_function("() => document.getElementById('function-name').textContent === 'Connection.execute'")


def test_filters_apply_to_every_tab_and_survive_reload(page, server):
    page.goto(server + "/view?filename=shop-web-3.plop&tab=top")
    page.wait_for_function("() => document.getElementById('top-table').dataset.rows")
    page.click("#filters-toggle")
    page.fill("#focus", "Cursor\\.execute")
    page.fill("#hide", "^wait$")
    page.press("#hide", "Enter")
    page.wait_for_function("() => (document.getElementById('top-table').dataset.query || '').includes('hide=')")
    focused = api(server, "/api/top?filename=shop-web-3.plop&focus=Cursor%5C.execute&hide=%5Ewait%24")
    assert int(page.get_attribute("#top-table", "data-rows")) == len(focused["functions"])
    assert "{:,}".format(focused["total_samples"]) in page.inner_text("#top-status")
    assert "wait" not in page.locator("#top-table tbody td:nth-child(5)").all_inner_texts()
    assert page.inner_text("#filters-toggle") == "Filters (2)"
    page.reload()
    assert page.input_value("#focus") == "Cursor\\.execute" and page.input_value("#hide") == "^wait$"
    page.wait_for_function("() => document.getElementById('top-table').dataset.rows")
    assert int(page.get_attribute("#top-table", "data-rows")) == len(focused["functions"])
    # The other tabs draw the same samples.
    page.click("[data-tab-link=flame]")
    page.wait_for_function("() => (document.getElementById('flame-canvas').dataset.query || '').includes('focus=')")
    assert flame_boxes(page)[0]["value"] == focused["total_samples"]
    page.click("[data-tab-link=graph]")
    data = drawn_data(page)
    assert data["total_samples"] == focused["total_samples"] and data["filters"] == {"focus": "Cursor\\.execute", "hide": "^wait$"}
    screenshot(page, "graph-filtered.png")
    # A bad expression: the server's message, in the page.
    page.fill("#focus", "Cursor(")
    page.press("#focus", "Enter")
    page.locator("#message.error").wait_for(state="visible")
    assert "missing ), unterminated subpattern" in page.inner_text("#message")
    page.click("[data-tab-link=flame]")
    page.locator("#flame-message.error").wait_for(state="visible")
    assert "bad focus regular expression" in page.inner_text("#flame-message")


def test_hostile_names_are_text_in_every_tab(page, server):
    page.goto(server + "/view?filename=hostile.plop&tab=top")
    page.wait_for_function("() => document.getElementById('top-table').dataset.rows")
    assert HOSTILE in page.locator("#top-table tbody td:nth-child(5)").all_inner_texts()
    page.click("[data-tab-link=flame]")
    page.wait_for_function("() => document.getElementById('flame-canvas').dataset.query !== undefined")
    box = next(b for b in flame_boxes(page) if b["label"] == HOSTILE)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.locator("#flame-tooltip").wait_for(state="visible")
    assert HOSTILE in page.inner_text("#flame-tooltip")
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert HOSTILE in page.locator("#crumbs").all_inner_texts()[0]
    page.click("#crumbs .open-function")
    page.wait_for_selector("#function-name")
    assert page.inner_text("#function-name") == HOSTILE
    page.fill("#search", HOSTILE)
    page.click("[data-tab-link=graph]")
    drawn_data(page)
    assert page.eval_on_selector_all("img", "els => els.length") == 0
    assert page.eval_on_selector_all("[onerror]", "els => els.length") == 0


def test_module_frames_named_by_module_in_a_real_profile(page, server):
    top = api(server, "/api/top?filename=busy.plop")
    modules = [f["label"] for f in top["functions"] if f["name"] == "<module>"]
    assert modules and all(label.startswith("<module> ") and len(label) > len("<module> ") for label in modules)
    page.goto(server + "/view?filename=busy.plop&tab=top")
    page.wait_for_function("() => document.getElementById('top-table').dataset.rows")
    shown = page.locator("#top-table tbody td:nth-child(5)").all_inner_texts()
    assert set(modules) <= set(shown) and "<module>" not in shown
    page.click("[data-tab-link=flame]")
    page.wait_for_function("() => document.getElementById('flame-canvas').dataset.query !== undefined")
    labels = {b["label"] for b in flame_boxes(page)}
    assert "<module>" not in labels and any(label.startswith("<module> ") for label in labels)
    screenshot(page, "flame-busy.png")


def test_top_table_lists_the_heaviest_first_then_all(page, server):
    top = api(server, "/api/top?filename=many.plop")
    assert len(top["functions"]) == 1201
    page.goto(server + "/view?filename=many.plop&tab=top")
    page.wait_for_function("() => document.getElementById('top-table').dataset.rows")
    assert page.get_attribute("#top-table", "data-shown") == "1000"
    assert page.locator("#top-table tbody tr:not(.more)").count() == 1000
    assert "201 lighter functions not listed" in page.inner_text("#top-table tr.more")
    page.click("#top-table .show-all")
    page.wait_for_function("() => document.getElementById('top-table').dataset.shown === '1201'")
    assert page.locator("#top-table tbody tr").count() == 1201
    # Filtering sees every function, not only the rows listed.
    page.fill("#search", "f_1199")
    page.wait_for_function("() => document.getElementById('top-table').dataset.rows === '1'")


def test_graph_details_open_the_function_tab(page, server):
    data = open_graph(page, server + "/view?filename=shop-web-3.plop")
    node(page, data, "Cursor.execute").click(force=True)
    page.locator("#details").wait_for(state="visible")
    page.click("#details .open-function")
    page.wait_for_selector("#function-name")
    assert page.inner_text("#function-name") == "Cursor.execute"
    assert not page.locator("#app").is_visible() and page.locator("#function").is_visible()
    assert "tab=function" in page.url
    page.go_back()
    page.wait_for_function("() => !document.getElementById('app').hidden")


# ---------------------------------------------------------------- package colours

def rgb(color: str) -> tuple[int, int, int]:
    """``"#4e79a7"`` or ``"rgb(78, 121, 167)"`` as a tuple."""
    if color.startswith("#"):
        return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))
    return tuple(int(c) for c in color[color.index("(") + 1:color.index(")")].split(",")[:3])


def graph_colours(page) -> dict[str, tuple]:
    """Package -> colour of the drawn graph's circles (one colour per package, checked)."""
    pairs = page.eval_on_selector_all(
        "g.node", "gs => gs.map(g => [g.__data__.group, g.querySelector('circle').getAttribute('fill')])")
    colours: dict[str, tuple] = {}
    for group, fill in pairs:
        assert colours.setdefault(group, rgb(fill)) == rgb(fill), group
    return colours


def legend_colours(page) -> dict[str, tuple]:
    return {name: rgb(color) for name, color in page.eval_on_selector_all(
        "#legend li", "lis => lis.map(li => [li.querySelector('.name').textContent, li.querySelector('.swatch').style.background])")}


def flame_colours(page) -> dict[str, tuple]:
    """Package -> colour of the flame graph's frames, read from the canvas's pixels."""
    return page.evaluate("""() => {
        const canvas = document.getElementById("flame-canvas");
        const box = canvas.getBoundingClientRect();
        const ctx = canvas.getContext("2d");
        const dpr = window.devicePixelRatio || 1;
        const out = {};
        for (const b of window.plopViewer.tabs.flame.boxes()) {
          if (!b.group || b.width < 6) continue;
          const [r, g, bl] = ctx.getImageData(Math.round((b.x - box.left + 2) * dpr), Math.round((b.y - box.top + 2) * dpr), 1, 1).data;
          (out[b.group] ||= []).push([r, g, bl]);
        }
        return out;
      }""")


def test_a_package_has_one_colour_in_every_view_and_tab(page, server):
    colors = api(server, "/data?filename=shop-web-3.plop")["colors"]
    assigned = {p["package"]: rgb(p["color"]) for p in colors["packages"]}
    other = rgb(colors["other"])
    open_graph(page, server + "/view?filename=shop-web-3.plop&max_nodes=all")
    wall = graph_colours(page)
    wall_legend = legend_colours(page)
    screenshot(page, "colours-wall.png")
    page.click("text=On CPU")
    page.wait_for_function("() => document.getElementById('app').dataset.drawn.includes('view=cpu')")
    drawn_data(page)
    cpu = graph_colours(page)
    cpu_legend = legend_colours(page)
    screenshot(page, "colours-cpu.png")
    # The wall view's heaviest package (selectors: the event loop waiting) is light on the CPU: a
    # colour by rank within one view would move; this one is the profile's.
    for group, colour in {**wall, **cpu}.items():
        assert colour == assigned.get(group, other), group
    assert set(wall) & set(cpu) >= {"shop", "sqlalchemy", "selectors", "tornado"}
    for name, colour in {**wall_legend, **cpu_legend}.items():
        if name in assigned:
            assert colour == assigned[name], name
    assert [n for n in wall_legend if n in assigned] != [n for n in cpu_legend if n in assigned]  # the views differ...
    assert {n: wall_legend[n] for n in cpu_legend if n in wall_legend and n in assigned} == \
        {n: cpu_legend[n] for n in cpu_legend if n in wall_legend and n in assigned}  # ...their colours do not

    # The flame graph of both views paints each package's frames in the same colour as the graph.
    for view in ("wall", "cpu"):
        open_flame(page, server + "/view?filename=shop-web-3.plop&tab=flame&view=%s" % view)
        frames = flame_colours(page)
        assert {"shop", "sqlalchemy", "tornado"} <= set(frames)
        for group, pixels in frames.items():
            assert {tuple(p) for p in pixels} == {assigned.get(group, other)}, (view, group)
    screenshot(page, "colours-flame-cpu.png")

    # The top table's dots, too.
    page.goto(server + "/view?filename=shop-web-3.plop&tab=top")
    page.wait_for_function("() => document.getElementById('top-table').dataset.rows")
    dots = page.eval_on_selector_all("#top-table tbody td.fn .swatch", "ss => ss.map(s => [s.title, s.style.background])")
    assert len(dots) > 20
    for group, colour in dots:
        assert rgb(colour) == assigned.get(group, other), group


# ---------------------------------------------------------------- honest rates

THROTTLED = "web-20260101T124300.000Z-4242.plop"


def test_header_and_index_say_snapshots_rate_and_mark_below_rate(page, server):
    page.goto(server + "/view?filename=" + THROTTLED)
    drawn_data(page)
    header = page.locator("header .meta")
    text = header.inner_text()
    assert "SAMPLES\n2,376" in text or "SAMPLES 2,376" in text.replace("\n", " ")
    flat = " ".join(text.split())
    assert "SNAPSHOTS 33 · 6.6/s below asked rate" in flat
    assert "every 10 ms asked · 153 ms set by the budget" in flat
    assert "CPU 190 ms" in flat and "SAMPLER 4 ms CPU · 2.1% of the process's" in flat
    marker = page.locator("header .below-rate")
    assert marker.is_visible()
    color = marker.evaluate("m => getComputedStyle(m).color")
    assert color == "rgb(180, 35, 24)"  # --danger: it stands out
    reason = marker.get_attribute("title")
    assert "33 snapshots taken of the 500 that one every 10 ms would take" in reason
    assert "overhead budget (1% of CPU) set the sampler to every 153 ms" in reason
    assert "from every 10 ms to every 153 ms when plop cost 12.3%" in reason
    marker.hover()
    screenshot(page, "header-below-rate.png")

    page.goto(server + "/")
    rows = {row.locator("td.name a").inner_text(): row for row in page.locator("table.profiles tbody tr:not(.broken)").all()}
    throttled = rows[THROTTLED].locator("td.rate")
    assert " ".join(throttled.inner_text().split()) == "33 · 6.6/s below asked rate"
    assert "153 ms" in throttled.locator(".below-rate").get_attribute("title")
    shop = " ".join(rows["shop-web-3.plop"].locator("td.rate").inner_text().split())
    assert shop.endswith("· 100/s") and "below" not in shop
    for old in ("tmpl_work.legacy-plop-0.4.0.plop", "tmpl_work.py-spy-0.4.3.collapsed", "hostile.plop"):
        assert rows[old].locator("td.rate").inner_text().strip() == "", old
    screenshot(page, "index-rates.png")


# ---------------------------------------------------------------- short names where space is tight

def short_name(label: str) -> str:
    """What util.js's shortName makes of a label: its last dotted component (``<module> x.y`` stays)."""
    if label.startswith("<module>"):
        return label
    head, dot, tail = label.rpartition(".")
    return tail if dot and tail else label


def test_graph_labels_fall_back_to_short_names_when_crowded(browser, server):
    for width, height in ((1400, 900), (640, 480)):
        context, page = new_page(browser, width, height)
        try:
            data = open_graph(page, server + "/view?filename=shop-web-3.plop&max_nodes=all")
            labels = {n["id"]: n["label"] for n in data["nodes"]}
            shown = page.eval_on_selector_all(
                "g.node:not(.label-hidden)",
                "gs => gs.map(g => [+g.dataset.id, g.classList.contains('label-short'), g.querySelector('tspan.name').textContent])")
            short = [(i, text) for i, is_short, text in shown if is_short]
            full = [(i, text) for i, is_short, text in shown if not is_short]
            for i, text in short:
                assert text == short_name(labels[i]) != labels[i], labels[i]
            for i, text in full:
                assert text == labels[i] or (text.startswith("…") and labels[i].endswith(text[1:])), labels[i]
            screenshot(page, "graph-names-%dx%d.png" % (width, height))
            if width == 1400:
                assert ("ProductListHandler.get" in [t for _i, t in full])  # room: the qualified name
            else:
                assert short, "a crowded graph shows some short names"
                # The tooltip of a node labelled by its short name still says its full name.
                i, text = next((i, t) for i, t in short if "." in labels[i])
                page.locator('g.node[data-id="%d"] circle' % i).hover(force=True)
                page.locator("#tooltip").wait_for(state="visible")
                assert labels[i] in page.inner_text("#tooltip")
        finally:
            context.close()
        assert not page.problems


def test_flame_frames_too_narrow_for_the_full_name_show_the_short_one(browser, server):
    for width in (1400, 480):
        context, page = new_page(browser, width, 800)
        try:
            open_flame(page, server + "/view?filename=shop-web-3.plop&tab=flame")
            boxes = {b["label"]: b for b in flame_boxes(page)}
            api_box = boxes["ProductApiHandler.get"]
            if width == 1400:
                assert boxes["ProductListHandler.get"]["text"] == "ProductListHandler.get"
                assert api_box["text"] == "ProductApiHandler.get"
            else:
                assert api_box["text"] == "get"  # ~100 px: "ProductApiHandler.get" does not fit
                page.mouse.move(api_box["x"] + api_box["width"] / 2, api_box["y"] + api_box["height"] / 2)
                page.locator("#flame-tooltip").wait_for(state="visible")
                assert "ProductApiHandler.get" in page.inner_text("#flame-tooltip .fn")
                screenshot(page, "flame-short-names.png")
            for b in boxes.values():
                text = b["text"]
                assert text is None or text in (b["label"], short_name(b["label"])) or (
                    text.endswith("…") and short_name(b["label"]).startswith(text[:-1])), b
        finally:
            context.close()
        assert not page.problems
