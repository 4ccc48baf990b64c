"""Benchmark: the analysis routes and tabs on benchmarks/viewer_data.py's 100,000-stack profile.

Times, against a running ``python -m plop.viewer``:

* ``/api/flame`` and ``/api/top``: **cold** on a fresh server (the first
  request loads the file, then builds the answer), **built** (the file is
  loaded, this answer was never asked for) and **warm** (the same request
  again, served from the cache);
* each filter (``focus``, ``ignore``, ``hide``) on both routes, built;
* with ``--browser``, in headless Chromium (Debian's): each tab from
  navigation until drawn and interactive (a frame's tooltip, a table row,
  the butterfly), and a flame graph zoom (click to redrawn).

Every figure is the median of ``--runs`` runs, side by side in one run on
one machine, against the goals of issue 9 (1 s cold, 0.1 s warm, 1 s per
filter and tab, 0.1 s per zoom). Run as
``python benchmarks/viewer_routes.py [--runs=5] [--browser] [--stacks=100000]``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from plop import formats  # noqa: E402
from viewer_data import make_profile, serve  # noqa: E402

NAME = "big.plop"
#: Filters over the synthetic profile's functions: one function, a package, every 10th module.
FILTERS = {"focus": "func_7$", "ignore": "^lib/db/", "hide": "mod[0-9]*0\\.py:"}


def fetch(url: str) -> tuple[float, dict]:
    """Seconds to fetch and decode one JSON answer, and the answer."""
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=300) as response:
        body = json.load(response)
    return time.perf_counter() - start, body


def route(base: str, path: str, **params: str) -> str:
    return "%s%s?%s" % (base, path, urllib.parse.urlencode(dict(filename=NAME, **params)))


def time_routes(datadir: str, runs: int) -> list[tuple[str, float, str]]:
    """Rows ``(what, median seconds, note)`` for the HTTP routes."""
    rows = []
    for path in ("/api/flame", "/api/top"):
        other = "/api/top" if path == "/api/flame" else "/api/flame"
        cold, built, warm = [], [], []
        note = ""
        for _ in range(runs):
            process, base = serve(datadir)
            try:
                seconds, body = fetch(route(base, path))
                cold.append(seconds)
                warm.append(statistics.median(fetch(route(base, path))[0] for _ in range(5)))
            finally:
                process.terminate()
                process.wait(timeout=30)
            process, base = serve(datadir)
            try:
                fetch(route(base, other))  # loads the file (and builds only the other answer)
                built.append(fetch(route(base, path))[0])
            finally:
                process.terminate()
                process.wait(timeout=30)
            if path == "/api/flame":
                note = "%d frames sent, %d pruned (%.0f%% of samples)" % (
                    body["frames"], body["pruned_frames"], 100 * body["pruned_samples"] / body["total_samples"])
            else:
                note = "%d functions" % len(body["functions"])
        rows.append(("%s cold (fresh server: file load + build)" % path, statistics.median(cold), note))
        rows.append(("%s built (file already loaded)" % path, statistics.median(built), ""))
        rows.append(("%s warm (cached)" % path, statistics.median(warm), ""))
    process, base = serve(datadir)
    try:
        fetch(route(base, "/api/top"))  # load the file
        for name, expression in FILTERS.items():
            for path in ("/api/flame", "/api/top"):
                times = []
                body = {}
                for run in range(runs):
                    # A new expression each run and route (same meaning), so nothing is cached:
                    # each figure includes the filter's pass over every stack.
                    seconds, body = fetch(route(base, path, **{name: "%s|^never%d%s$" % (expression, run, path)}))
                    times.append(seconds)
                rows.append(("%s %s=%s" % (path, name, expression), statistics.median(times),
                             "%d samples kept" % body["total_samples"]))
    finally:
        process.terminate()
        process.wait(timeout=30)
    return rows


def time_browser(datadir: str, runs: int) -> list[tuple[str, float, str]]:
    """Rows for each tab in headless Chromium, and a flame graph zoom."""
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"]
    process, base = serve(datadir)
    rows = []
    try:
        top = fetch(route(base, "/api/top"))[1]
        fetch(route(base, "/api/flame"))
        heaviest = top["functions"][0]
        function = dict(function=heaviest["name"], file=heaviest["filename"], firstlineno=str(heaviest["firstlineno"]))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            tabs = {
                "flame": ("#flame-canvas[data-query]", lambda: hover_frame(page)),
                "top": ("#top-table[data-query]", lambda: page.hover("#top-table tbody tr >> nth=0")),
                "function": ("#function[data-query]", lambda: page.hover(".butterfly-center")),
            }
            for tab, (ready, interact) in tabs.items():
                url = route(base, "/view", tab=tab, **(function if tab == "function" else {}))
                page.goto(url)  # warm the server's cache and the browser's
                page.wait_for_selector(ready, state="attached", timeout=120000)
                times = []
                for _ in range(runs):
                    start = time.perf_counter()
                    page.goto(url)
                    page.wait_for_selector(ready, state="attached", timeout=120000)
                    interact()
                    times.append(time.perf_counter() - start)
                note = ""
                if tab == "flame":
                    note = "canvas draw %s ms, %s frames drawn" % (
                        page.get_attribute("#flame-canvas", "data-draw-ms"), page.get_attribute("#flame-canvas", "data-drawn"))
                if tab == "top":
                    note = "first %s of %s rows rendered in %s ms" % (
                        page.get_attribute("#top-table", "data-shown"), page.get_attribute("#top-table", "data-rows"),
                        page.get_attribute("#top-table", "data-render-ms"))
                rows.append(("tab %s: navigation to drawn and interactive" % tab, statistics.median(times), note))
            # A denser flame graph: frames down to 0.005% of the samples (over 10,000 of them).
            dense = route(base, "/view", tab="flame", fraction="0.00005")
            page.goto(dense)
            page.wait_for_selector("#flame-canvas[data-query]", state="attached", timeout=120000)
            times, draws = [], []
            for _ in range(runs):
                start = time.perf_counter()
                page.goto(dense)
                page.wait_for_selector("#flame-canvas[data-query]", state="attached", timeout=120000)
                hover_frame(page)
                times.append(time.perf_counter() - start)
                draws.append(float(page.get_attribute("#flame-canvas", "data-draw-ms")))
            rows.append(("tab flame, fraction=0.00005: navigation to interactive", statistics.median(times),
                         "%s frames sent; a full redraw (hover) %.1f ms" % (
                             page.get_attribute("#flame-canvas", "data-frames"), statistics.median(draws))))
            page.goto(route(base, "/view", tab="flame"))
            page.wait_for_selector("#flame-canvas[data-query]", state="attached", timeout=120000)
            zooms = []
            for _ in range(runs):
                zooms.append(page.evaluate("""() => {
                    const boxes = window.plopViewer.tabs.flame.boxes().filter((b) => b.depth === 1);
                    const box = boxes[0];
                    const canvas = document.getElementById('flame-canvas');
                    const start = performance.now();
                    const at = { clientX: box.x + box.width / 2, clientY: box.y + box.height / 2, bubbles: true };
                    canvas.dispatchEvent(new MouseEvent('click', at));
                    const zoomed = performance.now() - start;
                    const crumb = document.querySelector('#crumbs .crumb');
                    crumb.click();  // back out for the next run
                    return zoomed / 1000;
                }"""))
            rows.append(("flame zoom: click to redrawn (in the page)", statistics.median(zooms), ""))
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    return rows


def hover_frame(page) -> None:
    """Hover the heaviest frame under the root and wait for its tooltip."""
    box = page.evaluate("window.plopViewer.tabs.flame.boxes().find((b) => b.depth === 1)")
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#flame-tooltip:not([hidden])")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--browser", action="store_true", help="also time the tabs in headless Chromium")
    parser.add_argument("--stacks", type=int, default=100_000, help="distinct stacks of the profile (smaller: a quick check)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as datadir:
        profile = make_profile(args.stacks, min(5_000, args.stacks))
        formats.dump(profile, Path(datadir) / NAME)
        print("profile: %d stacks, %d samples, %.1f MB on disk; median of %d runs\n" % (
            len(profile.samples), profile.total_samples, (Path(datadir) / NAME).stat().st_size / 1e6, args.runs))
        rows = time_routes(datadir, args.runs)
        if args.browser:
            rows += time_browser(datadir, args.runs)
    print("| what | median | goal | note |")
    print("| --- | ---: | ---: | --- |")
    for what, seconds, note in rows:
        goal = "0.1 s" if "warm" in what or "zoom" in what else "1 s"
        print("| %s | %.3f s | %s | %s |" % (what, seconds, goal, note))


if __name__ == "__main__":
    main()
