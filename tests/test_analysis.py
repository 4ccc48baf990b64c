"""Filters, the flame graph's call tree, the top table and function details, on hand-counted profiles."""
from __future__ import annotations

import pytest

import plop.callgraph
from plop.analysis import FilterError, Filters, apply_filters, flame_tree
from plop.callgraph import CallGraph, label_of, module_of
from plop.profile import Frame, Profile
from tests.conftest import pure_and_compiled

MAIN = Frame("/srv/app/app/main.py", "main", 1, 3)
WORK = Frame("/srv/app/app/work.py", "work", 10, 12)
WORK_14 = Frame("/srv/app/app/work.py", "work", 10, 14)
HELPER = Frame("/srv/app/app/lib.py", "helper", 20, 21)
REC = Frame("/srv/app/app/lib.py", "rec", 30, 31)
REC_33 = Frame("/srv/app/app/lib.py", "rec", 30, 33)


def hand_profile() -> Profile:
    """14 samples with frames (and 1 without); counted by hand in each test.

    ===========================  =======  ==
    stack (outermost first)      thread   n
    ===========================  =======  ==
    main work helper             T1        5
    main work(line 14)           T1        3
    main rec rec(33) rec         T1        4
    main helper                  T2        2
    (empty)                      T2        1
    ===========================  =======  ==
    """
    samples = {
        ("T1", (MAIN, WORK, HELPER)): 5,
        ("T1", (MAIN, WORK_14)): 3,
        ("T1", (MAIN, REC, REC_33, REC)): 4,
        ("T2", (MAIN, HELPER)): 2,
        ("T2", ()): 1,
    }
    cpu = {("T1", (MAIN, WORK, HELPER)): 4, ("T2", (MAIN, HELPER)): 1}
    return Profile(samples, {"mode": "real"}, cpu)


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {row["name"]: row for row in rows}


def total(profile: Profile) -> int:
    return sum(n for (_t, stack), n in profile.samples.items() if stack)


# Filters -----------------------------------------------------------------

def test_no_filters_is_the_same_profile():
    profile = hand_profile()
    assert apply_filters(profile, Filters()) is profile
    assert not Filters() and Filters(hide="x")


def test_focus_keeps_samples_with_a_matching_frame():
    filtered = apply_filters(hand_profile(), Filters(focus="helper"))
    assert filtered.samples == {("T1", (MAIN, WORK, HELPER)): 5, ("T2", (MAIN, HELPER)): 2}
    assert total(filtered) == 7
    assert filtered.cpu_samples == {("T1", (MAIN, WORK, HELPER)): 4, ("T2", (MAIN, HELPER)): 1}
    assert filtered.metadata == {"mode": "real"}


def test_ignore_drops_samples_with_a_matching_frame():
    filtered = apply_filters(hand_profile(), Filters(ignore="^helper$"))
    assert total(filtered) == 3 + 4
    assert all(HELPER not in stack for _t, stack in filtered.samples)
    assert filtered.cpu_samples == {}


def test_hide_gives_the_time_of_hidden_frames_to_their_caller():
    filtered = apply_filters(hand_profile(), Filters(hide="^work$"))
    assert filtered.samples[("T1", (MAIN, HELPER))] == 5
    assert filtered.samples[("T1", (MAIN,))] == 3
    assert total(filtered) == 14
    graph = by_name(CallGraph.from_profile(filtered).table())
    assert graph["main"]["self"] == 3 and graph["main"]["total"] == 14
    assert graph["helper"]["self"] == 7 and "work" not in graph
    # Hiding every frame leaves samples without frames, which no longer count.
    assert total(apply_filters(hand_profile(), Filters(hide="."))) == 0


def test_hide_merges_stacks_that_become_equal():
    filtered = apply_filters(hand_profile(), Filters(hide="rec"))
    assert filtered.samples[("T1", (MAIN,))] == 4
    both = apply_filters(hand_profile(), Filters(hide="rec|work"))
    assert both.samples[("T1", (MAIN,))] == 3 + 4


def test_regex_matches_name_or_file_and_function():
    assert total(apply_filters(hand_profile(), Filters(focus="lib.py:rec$"))) == 4
    assert total(apply_filters(hand_profile(), Filters(focus="/app/work.py:"))) == 8
    # A file name alone does not match: the expression sees the name or "file:function".
    assert total(apply_filters(hand_profile(), Filters(focus="^/srv/app/app/lib.py$"))) == 0
    assert total(apply_filters(hand_profile(), Filters(focus="^/srv/app/app/lib.py:helper$"))) == 7


def test_filters_apply_in_order_focus_ignore_hide():
    filtered = apply_filters(hand_profile(), Filters(focus="main", ignore="rec", hide="work"))
    assert filtered.samples == {("T1", (MAIN, HELPER)): 5, ("T1", (MAIN,)): 3, ("T2", (MAIN, HELPER)): 2}


@pytest.mark.parametrize("name", ["focus", "ignore", "hide"])
def test_bad_regex_is_a_filter_error_with_re_message(name):
    with pytest.raises(FilterError) as info:
        apply_filters(hand_profile(), Filters(**{name: "a(b"}))
    message = str(info.value)
    assert name in message and "'a(b'" in message and "missing ), unterminated subpattern" in message


# Top table and function details -------------------------------------------

@pytest.fixture(params=pure_and_compiled(None, "plop._speedups"))
def speedups(request, monkeypatch):
    """The call graph's pure-Python passes, then plop._speedups (None for pure)."""
    monkeypatch.setattr(plop.callgraph, "_speedups", request.param)
    return request.param


def test_top_table_counts_self_and_total_once_per_sample(speedups):
    rows = CallGraph.from_profile(hand_profile()).table()
    assert [(r["name"], r["self"], r["total"]) for r in rows] == [
        ("helper", 7, 7), ("rec", 4, 4), ("work", 3, 8), ("main", 0, 14)]
    assert sum(r["self"] for r in rows) == 14
    assert rows[0]["filename"] == HELPER.filename and rows[0]["firstlineno"] == 20


def test_function_details_callers_callees_lines(speedups):
    graph = CallGraph.from_profile(hand_profile())
    helper = graph.details(graph.find(*HELPER.function))
    assert helper["function"]["total"] == 7
    assert [(c["name"], c["calls"]) for c in helper["callers"]] == [("work", 5), ("main", 2)]
    assert helper["callees"] == [] and helper["recursive"] == 0
    work = graph.details(graph.find(*WORK.function))
    assert [(c["name"], c["calls"]) for c in work["callees"]] == [("helper", 5)]
    assert work["lines"] == [{"line": 12, "self": 0, "total": 5}, {"line": 14, "self": 3, "total": 3}]
    rec = graph.details(graph.find(*REC.function))
    assert rec["recursive"] == 4 and rec["function"]["total"] == 4
    assert [(c["name"], c["calls"]) for c in rec["callers"]] == [("main", 4)] and rec["callees"] == []
    # Line 31 is in every recursive sample twice, counted once; line 33 only in the middle.
    assert rec["lines"] == [{"line": 31, "self": 4, "total": 4}, {"line": 33, "self": 0, "total": 4}]
    assert graph.find("/srv/app/app/lib.py", "helper", 99) is None


# Flame tree -------------------------------------------------------------------

def shape(node: dict) -> tuple:
    return (node["name"], node["value"], node["self"], [shape(c) for c in node["children"]])


def check_values(node: dict) -> None:
    """Every node: value = self + pruned + children's values, children heaviest first."""
    assert node["value"] == node["self"] + node["pruned"] + sum(c["value"] for c in node["children"])
    values = [c["value"] for c in node["children"]]
    assert values == sorted(values, reverse=True)
    for child in node["children"]:
        assert child["value"] <= node["value"]
        check_values(child)


def test_flame_tree_hand_counted():
    tree = flame_tree(hand_profile(), fraction=0)
    assert tree["total_samples"] == 14 and tree["samples_without_frames"] == 1
    assert tree["pruned_frames"] == 0 and tree["pruned_samples"] == 0
    assert shape(tree["root"]) == (
        "all", 14, 0, [
            ("main", 14, 0, [
                ("work", 8, 3, [("helper", 5, 5, [])]),
                ("rec", 4, 0, [("rec", 4, 0, [("rec", 4, 4, [])])]),
                ("helper", 2, 2, []),
            ]),
        ])
    assert tree["frames"] == 7  # main, work, helper, rec x3, helper
    check_values(tree["root"])
    work = tree["root"]["children"][0]["children"][0]
    assert (work["filename"], work["firstlineno"], work["line"]) == (WORK.filename, 10, 10)


def test_flame_tree_prunes_light_frames_and_says_so():
    tree = flame_tree(hand_profile(), fraction=0.2)  # frames under 2.8 samples are left out
    main = tree["root"]["children"][0]
    assert [c["name"] for c in main["children"]] == ["work", "rec"]
    assert main["pruned"] == 2
    assert tree["pruned_frames"] == 1 and tree["pruned_samples"] == 2
    assert tree["min_value"] == pytest.approx(2.8)
    check_values(tree["root"])


def test_flame_tree_after_filters():
    tree = flame_tree(apply_filters(hand_profile(), Filters(hide="work")), fraction=0)
    main = tree["root"]["children"][0]
    assert (main["self"], [(c["name"], c["value"]) for c in main["children"]]) == (3, [("helper", 7), ("rec", 4)])


def test_flame_tree_of_empty_profile():
    tree = flame_tree(Profile({}))
    assert tree["total_samples"] == 0 and tree["root"]["children"] == [] and tree["frames"] == 0
    with pytest.raises(ValueError):
        flame_tree(Profile({}), fraction=1)


def test_flame_tree_line_when_first_line_unknown():
    frames = (Frame("a.py", "f", 0, 9), Frame("a.py", "g", 0, 4))
    other = (Frame("a.py", "f", 0, 7),)
    tree = flame_tree(Profile({("", frames): 1, ("", other): 1}), fraction=0)
    f = tree["root"]["children"][0]
    assert (f["name"], f["value"], f["line"]) == ("f", 2, 7)


# <module> labels ----------------------------------------------------------------

@pytest.mark.parametrize("filename, root, module", [
    ("/srv/venv/lib/python3.11/site-packages/tornado/web.py", "", "tornado.web"),
    ("tornado/web.py", "", "tornado.web"),
    ("/work/main/plop/formats.py", "/work/main", "plop.formats"),
    ("/usr/lib/python3.11/json/__init__.py", "", "json"),
    ("<frozen importlib._bootstrap>", "", "importlib._bootstrap"),
    ("/home/me/script.py", "/home/me", "script"),
    ("/opt/elsewhere/tool.py", "/work/main", "tool"),
    ("../up/x.py", "", "x"),
    ("<string>", "", "<string>"),
])
def test_module_of(filename, root, module):
    assert module_of(filename, root) == module


def test_module_frames_are_labelled_in_every_table(speedups):
    frames = (Frame("/work/main/tests/test_x.py", "<module>", 1, 2),
              Frame("/work/main/plop/formats.py", "<module>", 1, 5), Frame("/work/main/plop/profile.py", "<module>", 1, 9))
    profile = Profile({("", frames): 3})
    assert label_of("main", "x.py") == "main"
    labels = ["<module> plop.formats", "<module> plop.profile", "<module> tests.test_x"]
    table = CallGraph.from_profile(profile).table()
    assert sorted(r["label"] for r in table) == labels
    data = CallGraph.from_profile(profile).data()
    assert sorted(n["label"] for n in data["nodes"]) == labels
    tree = flame_tree(profile, fraction=0)
    assert tree["root"]["children"][0]["label"] == "<module> tests.test_x"
    # Files all in one directory: nothing says it is a package, so the base name.
    alone = Profile({("", (Frame("/home/me/tool.py", "<module>", 1, 2),)): 1})
    assert CallGraph.from_profile(alone).table()[0]["label"] == "<module> tool"
    assert tree["root"]["children"][0]["name"] == "<module>"
