"""Merging and comparing profiles (plop.merge): pure functions on hand-counted profiles."""
from __future__ import annotations

import datetime
import math
import pickle

import pytest

from plop.analysis import flame_tree
from plop.callgraph import CallGraph
from plop.merge import (
    MergeSum, thread_prefixes,
    change, compare_details, compare_graph, compare_table, compare_tree, group_windows, merge, parse_time,
    select_windows, window_of,
)
from plop.profile import Frame, Profile

MAIN = Frame("/srv/app/server.py", "main", 10, 12)
HANDLE = Frame("/srv/app/handlers.py", "handle", 20, 25)
QUERY = Frame("/srv/app/db.py", "query", 30, 31)
RENDER = Frame("/srv/app/views.py", "render", 40, 41)
CACHE = Frame("/srv/app/cache.py", "lookup", 50, 52)


def window(pid: int, start: float, samples: dict, host: str = "web-1", cpu: bool = True, **meta) -> Profile:
    metadata = {"service": "web", "pid": pid, "hostname": host, "mode": "real", "interval": 0.01,
                "start_time": start, "window_start": start, "window_end": start + 60, "duration": 60.0, **meta}
    return Profile(samples, metadata, {k: n // 2 for k, n in samples.items()} if cpu else None)


BEFORE = {("MainThread", (MAIN, HANDLE, QUERY)): 30, ("MainThread", (MAIN, HANDLE)): 10,
          ("worker", (MAIN, CACHE)): 20}
AFTER = {("MainThread", (MAIN, HANDLE, QUERY)): 60, ("MainThread", (MAIN, HANDLE, RENDER)): 20,
         ("MainThread", (MAIN, HANDLE)): 20}


# ---------------------------------------------------------------- merge

def test_merge_sums_every_count_exactly():
    a = window(1, 0, BEFORE)
    b = window(1, 60, AFTER)
    merged = merge([a, b])
    assert merged.samples == {("MainThread", (MAIN, HANDLE, QUERY)): 90, ("MainThread", (MAIN, HANDLE)): 30,
                              ("worker", (MAIN, CACHE)): 20, ("MainThread", (MAIN, HANDLE, RENDER)): 20}
    assert merged.total_samples == a.total_samples + b.total_samples
    assert merged.cpu_samples == {("MainThread", (MAIN, HANDLE, QUERY)): 45, ("MainThread", (MAIN, HANDLE)): 15,
                                  ("worker", (MAIN, CACHE)): 10, ("MainThread", (MAIN, HANDLE, RENDER)): 10}
    # One process: thread names as they were.
    assert merged.threads() == ["MainThread", "worker"]


def test_merge_of_processes_names_threads_by_pid():
    merged = merge([window(11, 0, BEFORE), window(12, 0, AFTER), window(11, 60, BEFORE)])
    assert merged.samples[("pid 11 MainThread", (MAIN, HANDLE, QUERY))] == 60
    assert merged.samples[("pid 12 MainThread", (MAIN, HANDLE, QUERY))] == 60
    assert merged.samples[("pid 11 worker", (MAIN, CACHE))] == 40
    assert set(merged.threads()) == {"pid 11 MainThread", "pid 11 worker", "pid 12 MainThread"}


def test_merge_names_hosts_when_a_pid_is_on_several():
    merged = merge([window(7, 0, {("", (MAIN,)): 1}, host="a"), window(7, 0, {("", (MAIN,)): 2}, host="b"),
                    window(8, 0, {("T", (MAIN,)): 3}, host="a")])
    assert merged.samples == {("a pid 7", (MAIN,)): 1, ("b pid 7", (MAIN,)): 2, ("pid 8 T", (MAIN,)): 3}


def test_merge_shares_equal_frames_between_files():
    copy = Frame(*MAIN)
    assert copy is not MAIN
    merged = merge([window(1, 0, {("", (MAIN, HANDLE)): 1}), window(1, 60, {("", (copy, QUERY)): 1})])
    first, second = (stack for _thread, stack in merged.samples)
    assert first[0] is second[0]


def test_merge_keeps_cpu_only_when_every_profile_has_it():
    assert merge([window(1, 0, BEFORE), window(1, 60, AFTER, cpu=False)]).cpu_samples is None
    assert merge([window(1, 0, BEFORE, cpu=False), window(1, 60, AFTER)]).cpu_samples is None
    assert merge([]).cpu_samples is None and merge([]).samples == {}


def test_merged_metadata_spans_the_windows_and_keeps_what_all_agree_on():
    meta = merge([window(11, 120, BEFORE, command=["a"]), window(12, 0, AFTER, command=["b"])]).metadata
    assert meta["start_time"] == meta["window_start"] == 0 and meta["window_end"] == 180
    assert meta["duration"] == 180
    assert meta["service"] == "web" and meta["mode"] == "real" and meta["interval"] == 0.01
    assert "command" not in meta and "pid" not in meta
    assert meta["merged"] == 2 and meta["pids"] == [11, 12] and meta["hostnames"] == ["web-1"]


def test_merge_of_an_iterator_with_processes_given():
    profiles = [window(11, 0, BEFORE), window(12, 0, AFTER)]
    processes = [("web-1", 11), ("web-1", 12)]
    assert merge(iter(profiles), processes).samples == merge(profiles).samples


def summed_in_parts(profiles: list[Profile], sizes: list[int]) -> Profile:
    """``profiles`` summed as the viewer's worker processes do: runs of ``sizes`` summed apart, then added."""
    prefixes = thread_prefixes((p.metadata.get("hostname"), p.metadata.get("pid")) for p in profiles)
    total, start = MergeSum(prefixes), 0
    for size in sizes:
        part = MergeSum(prefixes)
        for profile in profiles[start:start + size]:
            part.add(profile)
        total.add_partial(pickle.loads(pickle.dumps(part.partial())))
        start += size
    assert start == len(profiles)
    return total.profile()


@pytest.mark.parametrize("sizes", [[5], [1, 1, 1, 1, 1], [2, 3], [1, 4], [3, 0, 2]])
@pytest.mark.parametrize("cpu_missing", [None, 0, 4])
def test_merge_summed_in_parts_is_the_same_profile_key_for_key(sizes, cpu_missing):
    profiles = [window(11, 0, BEFORE), window(12, 0, AFTER, host="web-2"), window(11, 60, AFTER),
                window(12, 60, {("", (MAIN, RENDER)): 3, **BEFORE}, host="web-1"), window(13, 0, BEFORE)]
    if cpu_missing is not None:
        profiles[cpu_missing].cpu_samples = None
    whole, parts = merge(profiles), summed_in_parts(profiles, sizes)
    # Same keys in the same order (so every view built from them is the same), counts, metadata.
    assert list(parts.samples.items()) == list(whole.samples.items())
    assert whole.cpu_samples is None if cpu_missing is not None else whole.cpu_samples
    assert (parts.cpu_samples is None) == (whole.cpu_samples is None)
    assert list((parts.cpu_samples or {}).items()) == list((whole.cpu_samples or {}).items())
    assert parts.metadata == whole.metadata
    # Renamed by the whole merge's processes: pid 12 ran on two hosts, pid 13 is in the last part only.
    assert {"web-1 pid 12", "web-2 pid 12 MainThread", "pid 11 MainThread", "pid 13 worker"} <= set(parts.threads())
    # Equal frames are one object across parts, as in one process.
    assert len({id(f) for _t, stack in parts.samples for f in stack}) == 5


def test_thread_prefixes_of_one_process_rename_nothing():
    assert thread_prefixes([("a", 1), ("a", 1), (None, None)]) == {}
    assert thread_prefixes([("a", 1), ("b", 1), ("a", 2), ("a", True)]) == {
        ("a", 1): "a pid 1", ("b", 1): "b pid 1", ("a", 2): "pid 2"}


# ---------------------------------------------------------------- times and windows

def test_parse_time_forms():
    now = 1_000_000.0
    assert parse_time("-1h", now) == now - 3600
    assert parse_time("-5m", now) == now - 300 and parse_time("-5min", now) == now - 300
    assert parse_time("-24h", now) == now - 86400 and parse_time("-2d", now) == now - 172800
    assert parse_time("-90s", now) == now - 90 and parse_time("-1.5h", now) == now - 5400
    assert parse_time("now", now) == now
    assert parse_time("1767271380", now) == 1767271380.0
    assert parse_time("2026-01-01T12:00:00Z", now) == datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.timezone.utc).timestamp()
    assert parse_time("2026-01-01T12:00:00+02:00", now) == parse_time("2026-01-01T10:00:00Z", now)
    local = datetime.datetime(2026, 1, 1, 12).astimezone().timestamp()
    assert parse_time("2026-01-01T12:00", now) == local


@pytest.mark.parametrize("text", ["yesterday", "-1y", "1h", "", "2026-13-01", "--1h"])
def test_parse_time_refuses_with_the_forms_it_takes(text):
    with pytest.raises(ValueError, match="ISO 8601.*-1h"):
        parse_time(text, 0.0)


def test_window_of():
    assert window_of({"window_start": 5, "window_end": 65, "start_time": 1}) == (5.0, 65.0)
    assert window_of({"start_time": 5, "duration": 10}) == (5.0, 15.0)
    assert window_of({"start_time": 5}) == (5.0, 5.0)
    assert window_of({"duration": 10}) is None
    assert window_of({"start_time": True}) is None


def test_select_windows_by_service_and_overlap():
    profiles = [
        ("a", {"service": "web", "start_time": 0, "duration": 60}),
        ("b", {"service": "web", "start_time": 60, "duration": 60}),
        ("c", {"service": "web", "start_time": 120, "duration": 60}),
        ("other", {"service": "db", "start_time": 60, "duration": 60}),
        ("bare", {"samples": 3}),
        ("timeless", {"service": "web"}),
    ]
    assert select_windows(profiles, "web") == (["a", "b", "c"], 2)
    assert select_windows(profiles, "web", 70, 100) == (["b"], 2)
    assert select_windows(profiles, "web", 60, 130) == (["b", "c"], 2)  # a ends where the range starts
    assert select_windows(profiles, "db", 0, 10) == ([], 2)
    assert select_windows(profiles, "web", 500, math.inf) == ([], 2)


def test_group_windows():
    profiles = [
        ("w1", {"service": "web", "start_time": 60, "duration": 60, "hostname": "h1", "pid": 2, "samples": 5}),
        ("w2", {"service": "web", "start_time": 0, "duration": 60, "hostname": "h2", "pid": 1, "samples": 7}),
        ("d1", {"service": "db", "start_time": 0, "duration": 30, "samples": None}),
        ("x", {"samples": 3}),
    ]
    db, web = group_windows(profiles)
    assert web == {"service": "web", "count": 2, "start": 0.0, "end": 120.0, "hosts": ["h1", "h2"],
                   "pids": [1, 2], "samples": 12, "names": ["w1", "w2"]}
    assert db["service"] == "db" and db["count"] == 1 and db["samples"] == 0 and db["hosts"] == []


# ---------------------------------------------------------------- compare

def graphs(new: dict, base: dict) -> tuple[CallGraph, CallGraph]:
    return CallGraph.from_profile(Profile(new)), CallGraph.from_profile(Profile(base))


def by_name(items: list[dict], key: str = "funcname") -> dict:
    return {item[key]: item for item in items}


def test_change_normalised_and_absolute():
    assert change(50, 10, 100, 40) == pytest.approx(0.25)
    assert change(50, 10, 100, 40, normalize=False) == 40
    assert change(0, 10, 0, 40) == pytest.approx(-0.25)  # an empty side has shares of 0
    assert change(5, 0, 10, 0) == 0.5


def test_graph_compared_with_itself_changes_nothing():
    new, base = graphs(BEFORE, BEFORE)
    data = compare_graph(new.data(), new, base)
    for node in data["nodes"]:
        assert node["base_self"] == node["self"] and node["base_total"] == node["total"]
        assert node["delta"] == node["delta_self"] == 0 and node["side"] == "both"
    for edge in data["edges"]:
        assert edge["base_weight"] == edge["weight"] and edge["delta"] == 0
    assert data["base_only"] == [] and data["base_only_count"] == 0
    assert data["base_total_samples"] == data["total_samples"] == 60


def test_graph_compared_counts_shares_and_one_side_only():
    new, base = graphs(AFTER, BEFORE)  # new: 100 samples, base: 60
    data = compare_graph(new.data(), new, base)
    nodes = by_name(data["nodes"])
    assert nodes["query"]["base_total"] == 30 and nodes["query"]["total"] == 60
    assert nodes["query"]["delta"] == pytest.approx(60 / 100 - 30 / 60)
    assert nodes["handle"]["delta_self"] == pytest.approx(20 / 100 - 10 / 60)
    assert nodes["render"]["side"] == "new" and nodes["render"]["base_total"] == 0
    assert nodes["render"]["delta"] == pytest.approx(0.2)
    assert nodes["main"]["delta"] == pytest.approx(0)  # in every sample on both sides
    names = {n["id"]: n["funcname"] for n in data["nodes"]}
    edges = {(names[e["source"]], names[e["target"]]): e for e in data["edges"]}
    assert edges[("main", "handle")]["base_weight"] == 40
    assert edges[("main", "handle")]["delta"] == pytest.approx(1 - 40 / 60)
    assert edges[("handle", "render")]["base_weight"] == 0
    # The cache lookup ran only before: listed apart, counted.
    assert [f["name"] for f in data["base_only"]] == ["lookup"]
    assert data["base_only"][0]["base_self"] == 20 and data["base_only"][0]["side"] == "base"
    assert data["base_only_count"] == 1 and data["base_only_samples"] == 20

    absolute = compare_graph(new.data(), new, base, normalize=False)
    assert by_name(absolute["nodes"])["query"]["delta"] == 30
    assert absolute["normalize"] is False


def test_trimmed_graph_compares_bridged_calls_alike():
    new, base = graphs({("", (MAIN, HANDLE, QUERY)): 10, ("", (MAIN, QUERY)): 50, ("", (MAIN, RENDER)): 30},
                       {("", (MAIN, HANDLE, QUERY)): 20, ("", (MAIN, QUERY)): 5})
    data = compare_graph(new.data(max_nodes=3), new, base)  # handle, the lightest, is hidden
    assert {n["funcname"] for n in data["nodes"]} == {"main", "query", "render"}
    names = {n["id"]: n["funcname"] for n in data["nodes"]}
    edges = {(names[e["source"]], names[e["target"]]): e for e in data["edges"]}
    # Through the hidden handle on both sides: 50 + 10 new, 5 + 20 in the base.
    assert edges[("main", "query")]["weight"] == 60 and edges[("main", "query")]["inferred"]
    assert edges[("main", "query")]["base_weight"] == 25
    assert edges[("main", "render")]["base_weight"] == 0
    # In the complete graph, direct calls only, on both sides.
    complete = {(e["source"], e["target"]): e for e in compare_graph(new.data(), new, base)["edges"]}
    ids = {n["funcname"]: n["id"] for n in new.data()["nodes"]}
    assert complete[(ids["main"], ids["query"])]["base_weight"] == 5


def test_table_compared_lists_both_sides():
    new, base = graphs(AFTER, BEFORE)
    rows = by_name(compare_table(new.table(), new, base), "name")
    assert rows["query"]["base_self"] == 30 and rows["query"]["base_total"] == 30
    assert rows["query"]["delta_self"] == pytest.approx(0.6 - 0.5)
    assert rows["render"]["side"] == "new" and rows["render"]["base_total"] == 0
    assert rows["lookup"]["side"] == "base" and rows["lookup"]["self"] == rows["lookup"]["total"] == 0
    assert rows["lookup"]["base_self"] == 20 and rows["lookup"]["delta_total"] == pytest.approx(-20 / 60)
    same = compare_table(new.table(), new, CallGraph.from_profile(Profile(AFTER)))
    assert all(r["delta_self"] == r["delta_total"] == 0 for r in same)


def test_tree_compared_by_path():
    new = flame_tree(Profile(AFTER))
    base = flame_tree(Profile(BEFORE), 0.0)
    root = compare_tree(new["root"], base["root"])
    assert root["base_value"] == 60 and root["delta"] == 0
    main = root["children"][0]
    handle = main["children"][0]
    frames = {c["name"]: c for c in handle["children"]}
    assert handle["base_value"] == 40 and handle["delta"] == pytest.approx(1 - 40 / 60)
    assert frames["query"]["base_value"] == 30 and frames["render"]["side"] == "new"
    assert frames["render"]["base_value"] == 0
    itself = compare_tree(flame_tree(Profile(BEFORE))["root"], flame_tree(Profile(BEFORE), 0.0)["root"])
    work = [itself]
    while work:
        node = work.pop()
        assert node["delta"] == 0 and node["base_value"] == node["value"]
        work.extend(node["children"])


def test_details_compared():
    new, base = graphs(AFTER, BEFORE)
    details = compare_details(new.details(new.find(*HANDLE.function)), new, base)
    assert details["function"]["base_total"] == 40 and details["function"]["total"] == 100
    callees = by_name(details["callees"], "name")
    assert callees["query"]["base_calls"] == 30 and callees["query"]["calls"] == 60
    assert callees["render"]["side"] == "new"
    main = compare_details(new.details(new.find(*MAIN.function)), new, base)
    gone = by_name(main["callees"], "name")["lookup"]
    assert gone["side"] == "base" and gone["calls"] == 0 and gone["base_calls"] == 20 and gone["total"] == 0
