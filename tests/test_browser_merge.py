"""Merged and compared views in headless Chromium: the index's groups and ticks, Graph, Flame graph and Top.

A data directory of rolling windows of a web shop: two workers, six one-minute windows each in the
last hour (after a deploy that made pricing slower, added a discount check and dropped the cache),
and as many two hours ago (before it). Screenshots go to ``test-artifacts/``.
"""
from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import pytest

from plop import formats
from plop.profile import Frame, Profile
from tests.test_browser import (  # noqa: F401 (fixtures)
    HOSTILE, LAYOUT_DONE, browser, drawn_data, new_page, page, screenshot, server, web_service_profile,
)

pytestmark = pytest.mark.browser

NOW = time.time()
DISCOUNT = Frame("/srv/shop/shop/pricing.py", "Discount.check", 120, 126)
EVIL = Frame("/srv/shop/shop/evil.py", HOSTILE, 1, 2)


def deployed(profile: Profile) -> Profile:
    """The shop after the deploy: pricing four times as heavy, a discount check below it, no cache."""
    samples: dict = {}
    for (thread, stack), n in profile.samples.items():
        names = [f.funcname for f in stack]
        if "Cache.get" in names:
            continue
        if "PriceCalculator._apply_rule" in names:
            n *= 4
            if stack[-1].funcname == "Rule.matches":
                samples[(thread, stack[:-1] + (DISCOUNT,))] = n
                samples[(thread, stack[:-1] + (DISCOUNT, EVIL))] = 3
        samples[(thread, stack)] = samples.get((thread, stack), 0) + n
    return Profile(samples, profile.metadata, {k: n // 2 for k, n in samples.items()})


@pytest.fixture(scope="module")
def datadir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("merge") / "profiles"
    d.mkdir()
    shop = web_service_profile()
    for pid in (48213, 48214):
        for minute in range(6):
            for name, ago, profile in (("shop", 10 + minute, deployed(shop)), ("shop", 130 + minute, shop)):
                start = NOW - 60 * ago
                meta = dict(profile.metadata, service="shop", pid=pid, start_time=start, window_start=start,
                            window_end=start + 60, duration=60.0)
                stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(start))
                formats.dump(Profile(profile.samples, meta, profile.cpu_samples),
                             d / ("%s-%s.000Z-%d.plop" % (name, stamp, pid)))
    return d


COMPARE = "/view?service=shop&since=-1h&base_since=-3h&base_until=-1h"


def test_index_groups_and_ticks_open_merged(page, server):
    page.goto(server + "/")
    row = page.locator("#groups tr[data-service=shop]")
    assert "24" in row.inner_text() and "2" in row.inner_text()
    screenshot(page, "merge-index.png")
    names = page.eval_on_selector_all("input[name=filename]", "els => els.map(e => e.value)")
    page.check("input[name=filename][value='%s']" % names[0])
    page.check("input[name=filename][value='%s']" % names[1])
    page.check("input[name=base][value='%s']" % names[-1])
    page.click("#open-ticked")
    data = drawn_data(page)
    assert data["profiles"] == names[:2] and data["base"]["profiles"] == [names[-1]]
    listed = {p["name"]: p["samples"] for p in page.request.get(server + "/api/profiles").json()["profiles"]}
    assert data["total_samples"] == listed[names[0]] + listed[names[1]]
    assert data["base_total_samples"] == listed[names[-1]]
    header = page.inner_text("header").lower()
    assert "2 profiles merged" in header and "compared with" in header


def test_merged_graph_splits_by_worker(page, server):
    page.goto(server + "/view?service=shop&since=-1h")
    data = drawn_data(page)
    assert len(data["profiles"]) == 12
    threads = page.eval_on_selector_all("select[name=thread] option", "els => els.map(e => e.value)")
    assert "pid 48213 MainThread" in threads and "pid 48214 MainThread" in threads
    assert "12 profiles" in page.inner_text("header")
    # Not comparing: coloured by package as ever.
    assert page.locator("svg#graph.compare").count() == 0
    screenshot(page, "merge-graph.png")


def test_compared_graph_colours_by_change(page, server):
    page.goto(server + COMPARE)
    data = drawn_data(page)
    by_name = {n["funcname"]: n for n in data["nodes"]}
    slower = by_name["PriceCalculator._apply_rule"]
    assert slower["delta"] > 0 and slower["base_total"] > 0
    fill = page.get_attribute('g.node[data-id="%d"] circle' % slower["id"], "fill")
    red, green, blue = map(int, fill[fill.index("(") + 1:-1].split(","))
    assert red > blue + 40, fill  # slower: red
    faster = min(data["nodes"], key=lambda n: n["delta"])
    fill = page.get_attribute('g.node[data-id="%d"] circle' % faster["id"], "fill")
    red, green, blue = map(int, fill[fill.index("(") + 1:-1].split(","))
    assert blue > red + 40, (faster["funcname"], fill)  # faster: blue
    new_only = by_name["Discount.check"]
    assert new_only["side"] == "new"
    assert page.locator('g.node.new-only[data-id="%d"]' % new_only["id"]).count() == 1
    assert page.locator("svg#graph.compare").count() == 1
    legend = page.inner_text("#legend")
    assert "Compared with the base" in legend and "slower" in legend and "faster" in legend
    assert "only in the base" in legend and "Cache.get" in legend
    page.locator('g.node[data-id="%d"] circle' % slower["id"]).hover(force=True)
    tooltip = page.locator("#tooltip")
    tooltip.wait_for(state="visible")
    assert "Base" in tooltip.inner_text() and "pp" in tooltip.inner_text()
    page.mouse.move(5, 5)
    # Click: the details panel gives the base's count and the change too.
    page.locator('g.node[data-id="%d"] circle' % slower["id"]).click(force=True)
    panel = page.locator("#details")
    panel.wait_for(state="visible")
    assert "%s samples" % "{:,}".format(slower["base_total"]) in panel.locator("table.compare").inner_text()
    assert "slower" in panel.locator("table.compare td.slower").get_attribute("class")
    screenshot(page, "compare-graph-details.png")
    page.keyboard.press("Escape")
    screenshot(page, "compare-graph.png")
    # Counts instead of shares.
    page.select_option("#normalize", "0")
    page.wait_for_function("() => document.querySelector('#app').dataset.drawn.includes('normalize=0')")
    page.wait_for_selector(LAYOUT_DONE, state="attached")
    assert "normalize=0" in page.url and "Change of samples" in page.inner_text("#legend")


def test_compared_flame_graph(page, server):
    page.goto(server + COMPARE + "&tab=flame")
    page.wait_for_selector("#flame-canvas[data-query]", state="attached")
    boxes = page.evaluate("window.plopViewer.tabs.flame.boxes()")
    rule = next(b for b in boxes if b["name"] == "PriceCalculator._apply_rule")
    pixel = page.evaluate("""([x, y]) => {
        const c = document.getElementById('flame-canvas'); const r = c.getBoundingClientRect();
        return Array.from(c.getContext('2d').getImageData(x - r.left, y - r.top, 1, 1).data); }""",
                          [rule["x"] + 2, rule["y"] + 4])
    assert pixel[0] > pixel[2] + 40, pixel  # slower: red
    assert not page.locator("#flame-diff").is_hidden()
    assert "slower" in page.inner_text("#flame-diff")
    assert "compared with" in page.inner_text("#flame-status")
    page.mouse.move(rule["x"] + 3, rule["y"] + 5)
    page.locator("#flame-tooltip").wait_for(state="visible")
    assert "Change" in page.inner_text("#flame-tooltip")
    screenshot(page, "compare-flame.png")


def test_compared_top_sorts_by_change(page, server):
    page.goto(server + COMPARE + "&tab=top")
    page.wait_for_selector("#top-table[data-query]", state="attached")
    heads = page.locator("#top-table thead").inner_text()
    assert "Base self" in heads and "Δ total" in heads
    page.click("button[data-sort=delta_total]")
    assert "sort=delta_total" in page.url
    rows_api = page.request.get(server + COMPARE.replace("/view", "/api/top")).json()["functions"]
    most = max(rows_api, key=lambda r: r["delta_total"])
    least = min(rows_api, key=lambda r: r["delta_total"])
    assert most["delta_total"] > 0 > least["delta_total"]
    first = page.locator("#top-table tbody tr").first
    assert first.locator("td.fn").inner_text() == most["label"] and "slower" in first.locator("td.delta").last.get_attribute("class")
    rows = page.locator("#top-table tbody tr")
    assert page.locator("#top-table tbody tr.side-base").count() >= 1  # Cache.get and its callees
    assert page.locator("#top-table tbody tr.side-new").count() >= 2  # Discount.check and the hostile one
    assert rows.count() > 10
    hostile = page.locator("#top-table tbody td.fn", has_text=HOSTILE)
    assert hostile.count() == 1  # text, not markup
    screenshot(page, "compare-top.png")
    page.click("button[data-sort=delta_total]")
    assert "sort=-delta_total" in page.url
    first = page.locator("#top-table tbody tr").first
    assert first.locator("td.fn").inner_text() == least["label"] and "faster" in first.locator("td.delta").last.get_attribute("class")


def test_empty_range_says_so_in_the_page(page, server):
    page.goto(server + "/view?service=shop&since=-1m")
    page.wait_for_selector("#message:not([hidden])")
    assert "no profiles of service 'shop'" in page.inner_text("header")
    page.wait_for_function("() => document.getElementById('message').textContent.includes('no profiles')")


def test_compared_function_details(page, server):
    """The Function tab of a comparison: the base's counts and the change, a callee only the new side has."""
    top = page.request.get(server + COMPARE.replace("/view", "/api/top")).json()["functions"]
    fn = next(f for f in top if f["name"] == "PriceCalculator._apply_rule")
    query = "&tab=function&function=%s&file=%s&firstlineno=%d" % (
        quote(fn["name"]), quote(fn["filename"], safe=""), fn["firstlineno"])
    details = page.request.get(server + COMPARE.replace("/view", "/api/function") + query).json()
    assert details["function"]["base_total"] < details["function"]["total"]
    page.goto(server + COMPARE + query)
    page.wait_for_selector("#function-name")
    stats = page.locator(".stats .stat").all_inner_texts()
    assert "base {:,} of {:,}".format(details["function"]["base_total"], details["base_total_samples"]) in stats[1]
    assert "slower" in page.locator(".stats .stat .sub").last.get_attribute("class")
    callee = page.locator(".butterfly-side.callees tbody tr", has_text="Discount.check")
    assert callee.count() == 1 and " new" in callee.locator("td.fn").inner_text()  # the deploy added it
    assert "slower" in callee.locator("td.delta").get_attribute("class")
    screenshot(page, "compare-function.png")
