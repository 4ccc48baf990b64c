"""Benchmark: how fast the viewer answers ``/data`` for a large profile.

Builds a synthetic profile of 100,000 distinct stacks over 5,000 functions
(a random call graph with recursion, about 20 frames deep), then times

* building the call graph (:meth:`plop.callgraph.CallGraph.from_profile`);
* shaping and JSON-encoding the default page's request (``max_nodes=100``)
  and the complete graph;
* the same with the pure-Python counting passes, when the compiled ones
  (``plop._speedups``) are built: what a plop installed without a compiler
  does;
* ``/data`` over HTTP from a running viewer: the first request (loading the
  file and building the graph) and later ones (served from its cache);
* listing a data directory of 5,000 files, cold and cached;
* with ``--browser``, the graph page in headless Chromium until the layout is
  drawn and interactive.

Prints the median of several runs of each. Run as
``python benchmarks/viewer_data.py [--runs=5] [--browser]``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import plop.callgraph  # noqa: E402
from plop import formats  # noqa: E402
from plop.callgraph import CallGraph  # noqa: E402
from plop.profile import Frame, Profile  # noqa: E402


def make_profile(stacks: int = 100_000, functions: int = 5_000, seed: int = 1) -> Profile:
    """A deterministic profile with ``stacks`` distinct stacks over ``functions`` functions."""
    rng = random.Random(seed)
    packages = ["app", "app/handlers", "app/models", "lib/db", "lib/cache", "tornado", "json", "re", "jinja2", "sqlalchemy"]
    funcs = []
    for i in range(functions):
        package = packages[i % len(packages)]
        module = "%s/mod%d.py" % (package, i % 97)
        first = 10 + (i * 37) % 2000
        funcs.append((module, "func_%d" % i, first))
    # Each function calls a few others, mostly "deeper" ones, sometimes itself or an ancestor.
    callees = []
    for i in range(functions):
        options = [min(functions - 1, i + rng.randint(1, 400)) for _ in range(rng.randint(1, 6))]
        if rng.random() < 0.03:
            options.append(i)  # direct recursion
        if rng.random() < 0.02 and i > 0:
            options.append(rng.randrange(0, i))  # a call cycle
        callees.append(options)
    samples: dict = {}
    interned: dict = {}  # one object per distinct frame, as the file formats load them
    while len(samples) < stacks:
        # The first stacks start at every function in turn, so all of them are sampled.
        fid = len(samples) if len(samples) < functions else rng.randrange(0, min(50, functions))
        depth = rng.randint(4, 36)
        frames = []
        for _ in range(depth):
            filename, name, first = funcs[fid]
            frame = Frame(filename, name, first, first + rng.randint(1, 6))
            frames.append(interned.setdefault(frame, frame))
            fid = rng.choice(callees[fid])
        key = ("MainThread" if rng.random() < 0.8 else "worker-%d" % rng.randint(1, 3), tuple(frames))
        samples[key] = samples.get(key, 0) + rng.randint(1, 20)
    return Profile(samples, {"mode": "real", "interval": 0.005, "command": ["synthetic.py"], "duration": 60.0})


def median_time(fn, runs: int) -> float:
    """Median wall time of ``fn()`` over ``runs`` calls, in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def serve(datadir: str) -> tuple[subprocess.Popen, str]:
    """Start ``python -m plop.viewer`` on a free port; returns the process and its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "plop.viewer", "--datadir=%s" % datadir, "--port=0"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    url = process.stdout.readline().split()[-1].rstrip("/")
    return process, url


def time_http(url: str, runs: int) -> tuple[float, float]:
    """``/data`` over HTTP: the first request (file load + graph build) and the median of later ones."""
    def fetch() -> None:
        with urllib.request.urlopen(url, timeout=120) as response:
            response.read()

    start = time.perf_counter()
    fetch()
    cold = time.perf_counter() - start
    return cold, median_time(fetch, runs)


def time_browser(url: str, runs: int) -> tuple[float, float]:
    """Median seconds from navigation to the graph page being drawn and interactive
    (a node's tooltip shows), and to its labels being placed (its force simulation
    starts at its equilibrium, the layered layout, and settles within a few ticks)."""
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"]
    interactive, settled = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url)  # warm the server's caches and the browser's
        page.wait_for_selector("svg#graph[data-layout=done]", state="attached", timeout=120000)
        for _ in range(runs):
            start = time.perf_counter()
            page.goto(url)
            page.wait_for_selector("svg#graph[data-layout=ready], svg#graph[data-layout=done]",
                                   state="attached", timeout=120000)
            page.locator("g.node circle").first.hover(force=True)
            page.wait_for_selector("#tooltip:not([hidden])")
            interactive.append(time.perf_counter() - start)
            page.wait_for_selector("svg#graph[data-layout=done]", state="attached", timeout=120000)
            settled.append(time.perf_counter() - start)
        browser.close()
    return statistics.median(interactive), statistics.median(settled)


def time_listing(runs: int) -> tuple[float, float]:
    """Listing a data directory of 5,000 files (4,990 unrelated, 10 small profiles): cold, then cached."""
    from plop.viewer.listing import DataDirectory

    with tempfile.TemporaryDirectory() as datadir:
        for i in range(4990):
            with open(os.path.join(datadir, "file%05d.log" % i), "w") as f:
                f.write("2024-05-01 12:00:%02d INFO request %d served\n" % (i % 60, i))
        small = formats.dumps(make_profile(stacks=50, functions=40, seed=2))
        for i in range(10):
            with open(os.path.join(datadir, "p%02d.plop" % i), "wb") as f:
                f.write(small)
        directory = DataDirectory(datadir)
        try:
            start = time.perf_counter()
            assert len(directory.scan()) == 10
            cold = time.perf_counter() - start
            warm = median_time(directory.scan, runs)
        finally:
            directory.close()
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--browser", action="store_true", help="also time the page in headless Chromium")
    args = parser.parse_args()

    start = time.perf_counter()
    profile = make_profile()
    frames = {f for _t, s in profile.samples for f in s}
    print("profile: %d distinct stacks, %d functions, %d frames, %d samples (built in %.1f s)" % (
        len(profile.samples), len({f.function for f in frames}), sum(len(s) for _t, s in profile.samples),
        profile.total_samples, time.perf_counter() - start))

    calibration = median_time(lambda: sum(range(10**7)), 3)
    print("machine: sum(range(10**7)) takes %.0f ms (about 100 ms on a typical 2020s laptop)" % (
        calibration * 1000))
    compiled = plop.callgraph._speedups
    print("call graph passes: %s" % ("compiled (plop._speedups)" if compiled else
                                     "pure Python (plop._speedups not built, or PLOP_PURE_PYTHON set)"))
    graph = CallGraph.from_profile(profile)
    build = median_time(lambda: CallGraph.from_profile(profile), args.runs)
    trimmed = median_time(lambda: json.dumps(graph.data(100)), args.runs)
    full = median_time(lambda: json.dumps(graph.data()), args.runs)
    cold = median_time(lambda: json.dumps(CallGraph.from_profile(profile).data(100)), args.runs)
    print("build call graph:                   %6.0f ms" % (build * 1000))
    print("trim + encode, max_nodes=100:       %6.0f ms" % (trimmed * 1000))
    print("trim + encode, complete graph:      %6.0f ms  (%d nodes, %.1f MB)" % (
        full * 1000, len(graph.order), len(json.dumps(graph.data())) / 1e6))
    print("/data shaping (build+trim+encode):  %6.0f ms  (median of %d)" % (cold * 1000, args.runs))
    if compiled is not None:
        plop.callgraph._speedups = None
        try:
            graph = CallGraph.from_profile(profile)
            build = median_time(lambda: CallGraph.from_profile(profile), args.runs)
            trimmed = median_time(lambda: json.dumps(graph.data(100)), args.runs)
            print("pure Python: build %.0f ms, trim + encode max_nodes=100 %.0f ms" % (
                build * 1000, trimmed * 1000))
        finally:
            plop.callgraph._speedups = compiled

    cold_list, warm_list = time_listing(args.runs)
    print("listing 5,000 files (10 profiles): first %.0f ms, then %.0f ms" % (cold_list * 1000, warm_list * 1000))

    with tempfile.TemporaryDirectory() as datadir:
        formats.dump(profile, os.path.join(datadir, "big.plop"))
        process, url = serve(datadir)
        try:
            first, warm = time_http(url + "/data?filename=big.plop&max_nodes=100", args.runs)
            print("HTTP /data?max_nodes=100: first %.0f ms (load file + build), then %.0f ms" % (
                first * 1000, warm * 1000))
            if args.browser:
                interactive, settled = time_browser(url + "/view?filename=big.plop", args.runs)
                print("graph page in Chromium: drawn and interactive (tooltip shown) %.0f ms, "
                      "layout settled %.0f ms (medians of %d)" % (interactive * 1000, settled * 1000, args.runs))
        finally:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
