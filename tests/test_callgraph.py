"""The call-graph shaping behind the viewer's /data, tested without a server."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import defaultdict

import pytest

import plop.callgraph
from plop import formats
from plop.callgraph import CallGraph, app_root, group_of, label_of, select
from plop.profile import Frame, Profile
from tests.conftest import FIXTURES, ROOT, pure_and_compiled


@pytest.fixture(autouse=True, params=pure_and_compiled(None, "plop._speedups"))
def speedups(request, monkeypatch):
    """Every test in turn with the pure-Python passes and with plop._speedups (None for pure)."""
    monkeypatch.setattr(plop.callgraph, "_speedups", request.param)
    return request.param


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
        "id": node["id"], "funcname": "b", "label": "b", "filename": "app/b.py", "firstlineno": 20, "lineno": 20,
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


# --- The fast paths against the obvious computation -------------------------------------------


def reference_data(profile: Profile, max_nodes: int | None = None) -> dict:
    """``/data`` computed the obvious way, one sample at a time, with a set per sample.

    Follows docs/viewer.md and shares nothing with plop.callgraph but
    `group_of`, `label_of` and `app_root`.
    """
    ids: dict[tuple, int] = {}  # function -> node id, in first-seen order
    self_counts: dict[int, int] = defaultdict(int)
    totals: dict[int, int] = defaultdict(int)
    line_self: dict[tuple[int, int], int] = defaultdict(int)
    line_totals: dict[tuple[int, int], int] = defaultdict(int)
    calls: dict[tuple[int, int], int] = defaultdict(int)
    stacks = []
    total = empty = 0
    for (_thread, stack), n in profile.samples.items():
        if not stack:
            empty += max(n, 0)
            continue
        if n <= 0:
            continue
        total += n
        fids = [ids.setdefault(frame.function, len(ids)) for frame in stack]
        stacks.append((fids, n))
        self_counts[fids[-1]] += n
        line_self[fids[-1], stack[-1].lineno] += n
        for fid in set(fids):
            totals[fid] += n
        for fid, frame in {(fid, frame.lineno) for fid, frame in zip(fids, stack)}:
            line_totals[fid, frame] += n
        for call in set(zip(fids, fids[1:])):
            calls[call] += n
    functions = list(ids)
    order = sorted(range(len(functions)), key=lambda i: (
        -totals[i], -self_counts[i], functions[i][1], functions[i][0], functions[i][2]))
    shown = order if max_nodes is None else order[:max_nodes]
    hidden = order[len(shown):]

    if hidden:
        keep = set(shown)
        bridged: dict[tuple[int, int], int] = defaultdict(int)
        for fids, n in stacks:
            kept = [fid for fid in fids if fid in keep]
            for call in set(zip(kept, kept[1:])):
                bridged[call] += n
        edges = sorted(((a, b, w, w > calls.get((a, b), 0)) for (a, b), w in bridged.items()),
                       key=lambda e: (-e[2], e[0], e[1]))
        main_caller = {}
        for edge in edges:
            if edge[0] != edge[1] and edge[1] not in main_caller:
                main_caller[edge[1]] = edge
        kept_edges = []
        for edge in edges:
            heavy = edge[2] >= 0.001 * total and len(kept_edges) < 3 * len(shown)
            if heavy or main_caller.get(edge[1]) is edge:
                kept_edges.append(edge)
        hidden_edges = len(edges) - len(kept_edges)
        edges = kept_edges
    else:
        edges = sorted(((a, b, w, False) for (a, b), w in calls.items()), key=lambda e: (-e[2], e[0], e[1]))
        hidden_edges = 0

    root = app_root(sorted({f for f, _n, _l in functions}))
    nodes = []
    for i in shown:
        filename, funcname, firstlineno = functions[i]
        lines = sorted(line for (fid, line) in line_totals if fid == i)
        nodes.append({
            "id": i,
            "funcname": funcname,
            "label": label_of(funcname, filename, root),
            "filename": filename,
            "firstlineno": firstlineno,
            "lineno": firstlineno or min([line for line in lines if line] or [0]),
            "self": self_counts[i],
            "total": totals[i],
            "group": group_of(filename, root),
            "lines": [{"lineno": line, "self": line_self[i, line], "total": line_totals[i, line]}
                      for line in lines],
        })
    return {
        "total_samples": total,
        "samples_without_frames": empty,
        "node_count": len(order),
        "hidden_nodes": len(hidden),
        "hidden_samples": sum(self_counts[i] for i in hidden),
        "hidden_edges": hidden_edges,
        "nodes": nodes,
        "edges": [{"source": a, "target": b, "weight": w, "inferred": inferred} for a, b, w, inferred in edges],
    }


def random_profile(seed: int, stacks: int = 300, functions: int = 25, interned: bool = True) -> Profile:
    """Random stacks over a few functions, with recursion, call cycles, several lines per
    function, threads, empty stacks and zero counts. ``interned=False`` builds every frame
    as a new object (equal frames that are not the same object)."""
    rng = random.Random(seed)
    funcs = [("/srv/app/pkg%d/m%d.py" % (i % 3, i % 5) if i % 4 else "lib/x%d.py" % (i % 2),
              "f%d" % (i % 11), 0 if i % 7 == 0 else 10 * i + 1) for i in range(functions)]
    cache: dict[Frame, Frame] = {}

    def frame(fid: int) -> Frame:
        filename, name, first = funcs[fid]
        made = Frame(filename, name, first, (first or 100) + rng.choice([0, 1, 2, 5]))
        return cache.setdefault(made, made) if interned else made

    samples: dict = {}
    for _ in range(stacks):
        fids = [rng.randrange(functions)]
        for _ in range(rng.randrange(12)):
            r = rng.random()
            if r < 0.15:
                fids.append(fids[-1])  # direct recursion
            elif r < 0.3 and len(fids) > 2:
                fids.extend(fids[-3:-1])  # a cycle through earlier callers
            else:
                fids.append(rng.randrange(functions))
        stack = tuple(frame(fid) for fid in fids) if rng.random() > 0.03 else ()
        key = (rng.choice(["MainThread", "worker", ""]), stack)
        samples[key] = samples.get(key, 0) + rng.choice([0, 1, 1, 2, 3, 7, 40])
    return Profile(samples)


@pytest.mark.parametrize("seed", range(12))
def test_matches_reference_on_random_profiles(seed, speedups):
    profile = random_profile(seed, interned=seed % 3 != 2)
    graph = CallGraph.from_profile(profile)
    expected_kind = "_PyStacks" if speedups is None else "_CompiledStacks"
    assert type(graph._stacks).__name__ == expected_kind
    node_count = len(graph.order)
    for max_nodes in (None, 1, 2, 3, 5, 8, node_count - 1, node_count, node_count + 5):
        if max_nodes is not None and max_nodes < 1:
            continue
        assert graph.data(max_nodes) == reference_data(profile, max_nodes), max_nodes


def test_matches_reference_with_light_calls_trimmed():
    """Enough samples that the edge fraction and the per-node limit both drop calls."""
    profile = random_profile(99, stacks=3000, functions=120)
    graph = CallGraph.from_profile(profile)
    for max_nodes in (10, 40, 100):
        data = graph.data(max_nodes)
        assert data["hidden_edges"] > 0
        assert data == reference_data(profile, max_nodes)


def test_equal_frames_that_are_distinct_objects():
    """Frames are compared by value: equal strings in distinct objects are one line and one node."""
    def new(text: str) -> str:
        return "".join(list(text))  # an equal string, not the same object

    a1 = Frame("app/a.py", "a", 10, 12)
    a2 = Frame(new("app/a.py"), new("a"), 10, 12)
    a3 = Frame(new("app/a.py"), new("a"), 10, 15)
    assert a1 == a2 and a1 is not a2 and a1.filename is not a2.filename
    profile = Profile({("t1", (a1, B)): 2, ("t2", (a2, B)): 3, ("t1", (a3,)): 1, ("t1", (a2, a3)): 4})
    data = CallGraph.from_profile(profile).data()
    assert data["nodes"][0]["funcname"] == "a" and len(data["nodes"]) == 2
    assert data["nodes"][0]["lines"] == [{"lineno": 12, "self": 0, "total": 9}, {"lineno": 15, "self": 5, "total": 5}]
    assert data["edges"][0]["weight"] == 5 and data["edges"][1]["source"] == data["edges"][1]["target"]


def test_unusual_counts_and_stacks_fall_back_to_python(speedups):
    """Counts beyond 64 bits, or that are not ints, take the pure path with the same answer."""
    a, b = Frame("a.py", "a", 1, 2), Frame("b.py", "b", 5, 6)
    huge = Profile({("", (a, b)): 2**70, ("", (a,)): 3, ("", ()): 2**65})
    graph = CallGraph.from_profile(huge)
    assert type(graph._stacks).__name__ == "_PyStacks"
    assert graph.data() == reference_data(huge)
    floats = Profile({("", (a, b, b)): 2.5, ("", (a,)): 3.0})
    graph = CallGraph.from_profile(floats)
    assert type(graph._stacks).__name__ == "_PyStacks"
    assert graph.data(1) == reference_data(floats, 1)
    assert graph.data() == reference_data(floats)


def test_compiled_passes_check_their_arrays(speedups):
    if speedups is None:
        pytest.skip("compiled passes only")
    from array import array

    ints = lambda *v: array("i", v).tobytes()  # noqa: E731
    counts = array("q", [1]).tobytes()
    assert speedups.count_stacks(ints(0, 1), ints(2), counts, ints(0, 1), 2)[3] == {0 * 2 + 1: 1}
    with pytest.raises(ValueError):
        speedups.count_stacks(ints(0, 2), ints(2), counts, ints(0, 1), 2)  # line id out of range
    with pytest.raises(ValueError):
        speedups.count_stacks(ints(0, 1), ints(2), counts, ints(0, 2), 2)  # function id out of range
    with pytest.raises(ValueError):
        speedups.count_stacks(ints(0, 1), ints(3), counts, ints(0, 1), 2)  # lengths past the frames
    with pytest.raises(ValueError):
        speedups.call_weights(ints(0, 1), ints(2), counts, ints(0, 1), b"\x01")  # keep too short
    with pytest.raises(TypeError):
        speedups.index_stacks([])


def test_pure_python_forced_by_environment():
    env = dict(os.environ, PLOP_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", "import plop.callgraph as c; print(c._speedups)"],
                         env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "None"
