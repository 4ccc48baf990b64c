"""The call-graph shaping behind the viewer's /data, tested without a server."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from plop import formats
from plop.callgraph import CallGraph, app_root, group_of, select
from plop.profile import Frame, Profile

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"

A = Frame("app/a.py", "a", 10, 12)
A2 = Frame("app/a.py", "a", 10, 15)  # same function, another line
B = Frame("app/b.py", "b", 20, 21)
C = Frame("lib/c.py", "c", 30, 33)
D = Frame("lib/d.py", "d", 40, 41)


def graph_of(samples: dict, **kwargs) -> dict:
    """``/data`` of a profile built from ``{stack: count}`` (thread "main")."""
    profile = Profile({("main", stack): n for stack, n in samples.items()})
    return CallGraph.from_profile(profile).data(**kwargs)


def by_name(data: dict) -> dict[str, dict]:
    return {n["funcname"]: n for n in data["nodes"]}


def edges_by_name(data: dict) -> dict[tuple[str, str], dict]:
    names = {n["id"]: n["funcname"] for n in data["nodes"]}
    return {(names[e["source"]], names[e["target"]]): e for e in data["edges"]}


def check_invariants(data: dict) -> None:
    """What holds for every complete graph."""
    assert sum(n["self"] for n in data["nodes"]) == data["total_samples"]
    ids = [n["id"] for n in data["nodes"]]
    assert len(ids) == len(set(ids))
    for n in data["nodes"]:
        assert 0 <= n["self"] <= n["total"] <= data["total_samples"]
        assert sum(line["self"] for line in n["lines"]) == n["self"]
        assert all(line["total"] <= n["total"] for line in n["lines"])
    totals = {n["id"]: n["total"] for n in data["nodes"]}
    for e in data["edges"]:
        assert e["source"] in totals and e["target"] in totals
        assert 0 < e["weight"] <= min(totals[e["source"]], totals[e["target"]])
    json.dumps(data)


def test_self_total_and_edges():
    data = graph_of({(A, B, C): 5, (A, B): 3, (A, D): 2})
    check_invariants(data)
    nodes = by_name(data)
    assert data["total_samples"] == 10
    assert {k: (v["self"], v["total"]) for k, v in nodes.items()} == {
        "a": (0, 10), "b": (3, 8), "c": (5, 5), "d": (2, 2)}
    weights = {k: e["weight"] for k, e in edges_by_name(data).items()}
    assert weights == {("a", "b"): 8, ("b", "c"): 5, ("a", "d"): 2}
    assert data["hidden_nodes"] == 0 and data["hidden_samples"] == 0
    assert not any(e["inferred"] for e in data["edges"])
    # Heaviest first.
    assert [n["funcname"] for n in data["nodes"]] == ["a", "b", "c", "d"]


def test_node_fields():
    data = graph_of({(A, B): 1})
    node = by_name(data)["b"]
    assert node == {
        "id": node["id"], "funcname": "b", "filename": "app/b.py", "lineno": 20,
        "self": 1, "total": 1, "group": "app", "lines": [{"lineno": 21, "self": 1, "total": 1}],
    }


def test_one_node_per_function_aggregating_lines():
    data = graph_of({(A, B): 4, (A2, B): 1, (A2,): 2})
    check_invariants(data)
    a = by_name(data)["a"]
    assert (a["self"], a["total"], a["lineno"]) == (2, 7, 10)
    assert a["lines"] == [{"lineno": 12, "self": 0, "total": 4}, {"lineno": 15, "self": 2, "total": 3}]
    assert edges_by_name(data)[("a", "b")]["weight"] == 5


def test_same_name_in_other_file_is_another_node():
    other = Frame("other/a.py", "a", 10, 12)
    data = graph_of({(A,): 1, (other,): 1})
    assert sorted(n["filename"] for n in data["nodes"]) == ["app/a.py", "other/a.py"]


def test_unknown_first_line_uses_smallest_line():
    f1, f2 = Frame("x.py", "f", 0, 30), Frame("x.py", "f", 0, 7)
    data = graph_of({(f1,): 1, (f2,): 1})
    assert [(n["lineno"], n["total"]) for n in data["nodes"]] == [(7, 2)]


def test_direct_recursion_counts_once_per_sample():
    data = graph_of({(A, B, B, B, C): 4, (A, B): 1})
    check_invariants(data)
    nodes = by_name(data)
    assert nodes["b"]["total"] == 5
    edges = edges_by_name(data)
    assert edges[("b", "b")]["weight"] == 4
    assert edges[("a", "b")]["weight"] == 5
    assert edges[("b", "c")]["weight"] == 4


def test_mutual_recursion_cycle():
    data = graph_of({(A, B, C, B, C, D): 3, (A, B, C): 2})
    check_invariants(data)
    nodes = by_name(data)
    assert (nodes["b"]["total"], nodes["c"]["total"], nodes["d"]["total"]) == (5, 5, 3)
    edges = edges_by_name(data)
    assert edges[("b", "c")]["weight"] == 5
    assert edges[("c", "b")]["weight"] == 3
    assert edges[("c", "d")]["weight"] == 3


def test_same_line_recursion_counts_line_once():
    data = graph_of({(A, A, A): 2})
    a = by_name(data)["a"]
    assert a["lines"] == [{"lineno": 12, "self": 2, "total": 2}]
    assert edges_by_name(data)[("a", "a")]["weight"] == 2


def test_threads_are_merged_and_empty_stacks_skipped():
    profile = Profile({("t1", (A, B)): 2, ("t2", (A, B)): 3, ("t2", ()): 4})
    data = CallGraph.from_profile(profile).data()
    check_invariants(data)
    assert data["total_samples"] == 5
    assert data["samples_without_frames"] == 4


def test_trimming_keeps_heaviest_and_reports_hidden():
    # a -> b -> c -> d: trimming to 3 hides d (lightest by total).
    samples = {(A, B, C, D): 1, (A, B, C): 2, (A, B): 4, (A,): 3}
    data = graph_of(samples)
    assert [n["funcname"] for n in data["nodes"]] == ["a", "b", "c", "d"]
    trimmed = graph_of(samples, max_nodes=3)
    assert [n["funcname"] for n in trimmed["nodes"]] == ["a", "b", "c"]
    assert trimmed["node_count"] == 4
    assert trimmed["hidden_nodes"] == 1
    assert trimmed["hidden_samples"] == 1  # d's self samples
    assert trimmed["total_samples"] == 10
    shown = {n["id"] for n in trimmed["nodes"]}
    assert all(e["source"] in shown and e["target"] in shown for e in trimmed["edges"])


def test_trimming_bridges_hidden_functions_with_inferred_edges():
    # b is light but sits between a and the heavy c in some stacks.
    data = graph_of({(A, B, C): 1, (A, C): 8, (A, D): 2, (A,): 1}, max_nodes=3)
    names = [n["funcname"] for n in data["nodes"]]
    assert names == ["a", "c", "d"]
    edges = edges_by_name(data)
    assert edges[("a", "c")]["weight"] == 9
    assert edges[("a", "c")]["inferred"] is True  # one sample went through hidden b
    assert edges[("a", "d")]["inferred"] is False
    assert data["hidden_samples"] == 0


def test_trimming_everything_but_one():
    data = graph_of({(A, B): 2, (C,): 1}, max_nodes=1)
    assert [n["funcname"] for n in data["nodes"]] == ["b"]  # ties on total go to more self samples
    assert data["edges"] == []
    assert data["hidden_nodes"] == 2


def test_max_nodes_larger_than_graph_is_complete():
    full = graph_of({(A, B): 2})
    assert graph_of({(A, B): 2}, max_nodes=50) == full


def test_max_nodes_must_be_positive():
    graph = CallGraph.from_profile(Profile({("", (A,)): 1}))
    with pytest.raises(ValueError):
        graph.data(0)


def test_empty_profile():
    data = CallGraph.from_profile(Profile()).data()
    assert data["nodes"] == [] and data["edges"] == [] and data["total_samples"] == 0


def test_select_views_and_threads():
    key1, key2 = ("main", (A, B)), ("worker", (A, C))
    profile = Profile({key1: 10, key2: 5}, {"mode": "real"}, {key1: 4, key2: 5})
    assert select(profile) is profile
    assert select(profile, "cpu").total_samples == 9
    assert select(profile, "wall", "worker").total_samples == 5
    assert select(profile, "cpu", "main").total_samples == 4
    with pytest.raises(ValueError, match="no thread named"):
        select(profile, "wall", "nope")
    with pytest.raises(ValueError, match="unknown view"):
        select(profile, "flame")
    with pytest.raises(ValueError, match="on-CPU"):
        select(Profile({key1: 1}), "cpu")


@pytest.mark.parametrize(
    "filename, root, group",
    [
        ("/usr/local/lib/python3.11/json/encoder.py", "", "json"),
        ("/usr/local/lib/python3.11/difflib.py", "", "difflib"),
        ("/srv/venv/lib/python3.11/site-packages/tornado/web.py", "", "tornado"),
        ("/usr/lib/python3/dist-packages/six.py", "", "six"),
        ("tornado/template.py", "", "tornado"),
        ("difflib.py", "", "difflib"),
        ("<frozen importlib._bootstrap>", "", "importlib"),
        ("<string>", "", "<string>"),
        ("", "", "(no file)"),
        ("/srv/app/shop/handlers/api.py", "/srv/app", "shop"),
        ("/srv/app/tool.py", "/srv/app", "tool"),
        ("/elsewhere/pkg/mod.py", "/srv/app", "pkg"),
    ],
)
def test_group_of(filename, root, group):
    assert group_of(filename, root) == group


def test_app_root():
    assert app_root(["/srv/shop/shop/a.py", "/srv/shop/shop/h/b.py", "/usr/lib/python3.11/json/x.py"]) == "/srv/shop"
    assert app_root(["/srv/app/one/a.py", "/srv/app/two/b.py"]) == "/srv/app"
    assert app_root(["/home/me/script.py"]) == "/home/me"
    assert app_root(["rel/a.py", "<string>"]) == ""


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("tmpl_work.*") if p.suffix != ".py"))
def test_fixture_files(name):
    profile = formats.load(FIXTURES / name)
    graph = CallGraph.from_profile(profile)
    data = graph.data()
    check_invariants(data)
    assert data["total_samples"] + data["samples_without_frames"] == profile.total_samples
    functions = {n["funcname"] for n in data["nodes"]}
    assert any("find_longest_match" in f for f in functions)
    assert not any(f.startswith("thread (") for f in functions)  # py-spy thread frames are threads
    trimmed = graph.data(10)
    assert len(trimmed["nodes"]) == 10
    assert trimmed["hidden_nodes"] == len(data["nodes"]) - 10
    assert trimmed["hidden_samples"] == data["total_samples"] - sum(n["self"] for n in trimmed["nodes"])


def test_large_profile_shape():
    """Many stacks over many functions: structure only (timing is in benchmarks/)."""
    frames = [Frame("pkg%d/m.py" % (i % 7), "f%d" % i, i + 1, i + 2) for i in range(300)]
    samples = {}
    for i in range(5000):
        stack = tuple(frames[(i * k) % 300] for k in range(1, 2 + i % 9))
        samples[("t%d" % (i % 3), stack)] = 1 + i % 5
    profile = Profile(samples)
    data = CallGraph.from_profile(profile).data()
    check_invariants(data)
    trimmed = CallGraph.from_profile(profile).data(100)
    assert len(trimmed["nodes"]) == 100
    assert trimmed["hidden_nodes"] == len(data["nodes"]) - 100
    assert len(trimmed["edges"]) <= 3 * 100 + 100  # the heaviest, plus each node's main caller


def test_trimmed_graph_drops_light_calls_but_keeps_each_main_caller():
    root = Frame("app/main.py", "root", 1, 1)
    hubs = [Frame("app/hub.py", "hub%d" % i, i, i) for i in range(10)]
    leaves = [Frame("lib/leaf.py", "leaf%d" % i, i, i) for i in range(10)]
    samples = {(root, hub): 1000 for hub in hubs}
    for i, hub in enumerate(hubs):
        for j, leaf in enumerate(leaves):
            samples[(root, hub, leaf)] = 1 + (i == j) * 50  # every hub calls every leaf, one call is heavy
    samples[(root, Frame("x.py", "tiny", 1, 1))] = 1  # hidden, so the graph is trimmed
    profile = Profile({("", stack): n for stack, n in samples.items()})
    graph = CallGraph.from_profile(profile)
    complete = graph.data()
    assert complete["hidden_edges"] == 0 and len(complete["edges"]) == 10 + 100 + 1
    data = graph.data(21)
    shown = {n["id"] for n in data["nodes"]}
    assert all(e["source"] in shown and e["target"] in shown for e in data["edges"])
    assert data["hidden_nodes"] == 1
    assert len(data["edges"]) == 20  # root -> hubs, and each hub's heavy call; light calls are under 0.1%
    assert data["hidden_edges"] == 10 + 100 - 20
    names = {n["id"]: n["funcname"] for n in data["nodes"]}
    callers = {}
    for e in data["edges"]:
        callers.setdefault(names[e["target"]], []).append(names[e["source"]])
    for i in range(10):
        assert "hub%d" % i in callers["leaf%d" % i]  # the heavy call survives
        assert callers["hub%d" % i] == ["root"]
