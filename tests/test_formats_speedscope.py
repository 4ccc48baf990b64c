"""speedscope JSON: plop's writer, and the reader on plop's, py-spy's and pyinstrument's files."""
from __future__ import annotations

import json

import pytest

from plop.formats import ProfileFormatError, dumps, load, loads, sniff
from plop.formats import speedscope
from plop.profile import Frame, Profile
from tests.conftest import FIXTURES
from tests.test_formats import rich_profile

PYSPY = FIXTURES / "small_work.py-spy-0.4.3.speedscope.json"
PYINSTRUMENT = FIXTURES / "small_work.pyinstrument-5.1.3.speedscope.json"


def no_firstlineno(profile_samples: dict) -> dict:
    """What speedscope holds of a stack: no function first line; a nameless function is "?"."""
    out: dict = {}
    for (t, stack), n in profile_samples.items():
        key = (t, tuple(fr._replace(firstlineno=0, funcname=fr.funcname or "?") for fr in stack))
        out[key] = out.get(key, 0) + n
    return out


# --------------------------------------------------------------------------- writer

def test_structure():
    profile = rich_profile(cpu=False)
    doc = json.loads(dumps(profile, "speedscope"))
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert doc["exporter"].startswith("plop ")
    assert doc["name"] == "app.py --flag"
    frames = doc["shared"]["frames"]
    assert all(isinstance(fr["name"], str) and isinstance(fr["file"], str) for fr in frames)
    assert {"name": "work", "file": "/srv/app/w.py", "line": 7} in frames
    names = [p["name"] for p in doc["profiles"]]
    assert names[0] == "MainThread" and len(names) == len(set(names)) == len(profile.threads())
    total = 0
    for p in doc["profiles"]:
        assert p["type"] == "sampled" and p["unit"] == "none" and p["startValue"] == 0
        assert len(p["samples"]) == len(p["weights"])
        assert sum(p["weights"]) == p["endValue"]
        assert all(0 <= i < len(frames) for sample in p["samples"] for i in sample)
        total += p["endValue"]
    assert total == profile.total_samples
    main = doc["profiles"][0]
    stacks = [[frames[i]["name"] for i in s] for s in main["samples"]]
    assert ["<module>", "main", "work"] in stacks  # outermost first


def test_cpu_weights_are_a_second_profile_per_thread():
    profile = rich_profile(cpu=True)
    doc = json.loads(dumps(profile, "speedscope"))
    by_name = {p["name"]: p for p in doc["profiles"]}
    threads = profile.threads() + ["worker-1"]
    for thread in set(threads):
        name = thread or "(unnamed thread)"
        assert name in by_name and name + " (on CPU)" in by_name
    assert by_name["MainThread (on CPU)"]["endValue"] == 30
    assert by_name["worker-1 (on CPU)"]["endValue"] == 1
    assert sum(p["endValue"] for n, p in by_name.items() if n.endswith(" (on CPU)")) == 31


@pytest.mark.parametrize("profile", [Profile(), Profile({}, {}, {})], ids=["empty", "empty-with-cpu"])
def test_empty_profile_is_one_valid_empty_sampled_profile(profile):
    doc = json.loads(dumps(profile, "speedscope"))
    assert doc["profiles"] and doc["shared"]["frames"] == []
    for p in doc["profiles"]:
        assert p == {"type": "sampled", "name": p["name"], "unit": "none", "startValue": 0, "endValue": 0,
                     "samples": [], "weights": []}
    assert loads(dumps(profile, "speedscope")).samples == {}


# --------------------------------------------------------------------------- round trip

def test_round_trip_keeps_threads_counts_lines_and_cpu():
    profile = rich_profile(cpu=True)
    data = dumps(profile, "speedscope")
    assert sniff(data[:4096]) == "speedscope"
    back = loads(data)
    assert back.samples == no_firstlineno({k: n for k, n in profile.samples.items()})
    assert back.cpu_samples == no_firstlineno({k: n for k, n in profile.cpu_samples.items() if n})
    assert sorted(back.threads()) == sorted(profile.threads())


# --------------------------------------------------------------------------- other producers

def test_pyspy_fixture():
    """py-spy 0.4.3 --format speedscope at 100 Hz: one sampled profile per thread, 0.01 s a sample."""
    assert sniff(PYSPY.read_bytes()[:4096]) == "speedscope"
    profile = load(PYSPY)
    assert profile.threads() == ['Thread 12344 "MainThread"', 'Thread 12346 "differ"']
    assert profile.total_samples == 263  # "Samples: 263" said py-spy
    assert profile.metadata["interval"] == 0.01 and profile.metadata["value_units"] == {"samples": "samples"}
    assert profile.metadata["exporter"] == "py-spy@0.4.3"
    main = profile.for_thread('Thread 12344 "MainThread"')
    assert main.total_samples == 133
    assert main.samples[('Thread 12344 "MainThread"', ())] == 2  # sampled with no Python frame
    for (_t, stack), _n in main.samples.items():
        assert not stack or stack[0].funcname == "<module>" and stack[0].filename.endswith("small_work.py")
    differ = profile.for_thread('Thread 12346 "differ"')
    assert any(fr == Frame("/root/.pyenv/versions/3.11.7/lib/python3.11/difflib.py",
                           "SequenceMatcher.find_longest_match", 0, 385)
               for (_t, stack) in differ.samples for fr in stack)


def test_pyinstrument_fixture():
    """pyinstrument 5.1.3's speedscope renderer: one evented profile, open/close events in seconds."""
    doc = json.loads(PYINSTRUMENT.read_text())
    assert [p["type"] for p in doc["profiles"]] == ["evented"]
    assert sniff(PYINSTRUMENT.read_bytes()[:4096]) == "speedscope"
    profile = load(PYINSTRUMENT)
    assert profile.metadata["value_units"] == {"samples": "microseconds"}
    assert profile.threads() == [doc["profiles"][0]["name"]]
    # every microsecond between the first and the last event is charged to some stack
    events = doc["profiles"][0]["events"]
    span = events[-1]["at"] - events[0]["at"]
    assert abs(profile.total_samples - span * 1e6) <= len(profile.samples)
    shares = {}
    for (_t, stack), n in profile.samples.items():
        names = {fr.funcname for fr in stack}
        for fn in ("encode_decode", "main"):
            if fn in names:
                shares[fn] = shares.get(fn, 0) + n
    assert shares["main"] == pytest.approx(profile.total_samples, rel=0.01)
    assert 0.5 < shares["encode_decode"] / profile.total_samples < 1.0


# --------------------------------------------------------------------------- hostile inputs

def doc(profiles, frames=({"name": "f", "file": "a.py", "line": 3},), exporter="someone") -> bytes:
    return json.dumps({"$schema": speedscope.SCHEMA, "shared": {"frames": list(frames)},
                       "profiles": profiles, "exporter": exporter}).encode()


def evented(*events) -> dict:
    return {"type": "evented", "name": "t", "unit": "milliseconds", "startValue": 0, "endValue": 10,
            "events": [{"type": k, "at": at, "frame": fr} for k, at, fr in events]}


def test_evented_handmade():
    two = ({"name": "f", "file": "a.py", "line": 3}, {"name": "g", "file": "a.py", "line": 9})
    profile = loads(doc([evented(("O", 0, 0), ("O", 2, 1), ("C", 5, 1), ("C", 10, 0))], frames=two))
    fr, gr = Frame("a.py", "f", 0, 3), Frame("a.py", "g", 0, 9)
    assert profile.samples == {("t", (fr,)): 7000, ("t", (fr, gr)): 3000}  # microseconds


@pytest.mark.parametrize("data,match", [
    (b'{"$schema": "https://www.speedscope.app/file-format-schema.json", "profiles": [', "invalid JSON"),
    (doc("x"), "'profiles', a list"),
    (doc([]) .replace(b'"frames": [', b'"frames": 1, "x": ['), "shared.frames"),
    (doc([{"type": "sampled", "name": "t", "samples": [[5]], "weights": [1]}]), "frame index 5 out of range"),
    (doc([{"type": "sampled", "name": "t", "samples": [[0]], "weights": [-1]}]), "number >= 0"),
    (doc([{"type": "sampled", "name": "t", "samples": [[0]], "weights": []}]), "one length"),
    (doc([{"type": "sampled", "name": "t", "samples": [[0] * 70000], "weights": [1]}]), "deep"),
    (doc([{"type": "flame", "name": "t"}]), "'sampled' or 'evented'"),
    (doc([evented(("O", 0, 0), ("C", 1, 1))], frames=({"name": "f"}, {"name": "g"})), "not the innermost"),
    (doc([evented(("O", 0, 0))]), "still open"),
    (doc([evented(("O", 5, 0), ("C", 1, 0))]), "back in time"),
    (doc([evented(("C", 0, 0))]), "not the innermost"),
    (doc([], frames=[{"name": 3}]), "string 'name'"),
    (doc([], frames=[{"name": "f", "line": "7"}]), "line must be"),
    (b'{"$schema": "https://www.speedscope.app/file-format-schema.json", "x": ' + b"[" * 100000
     + b"]" * 100000 + b"}", "nested too deeply|invalid JSON"),
])
def test_hostile(data, match):
    assert sniff(data[:4096]) == "speedscope"
    with pytest.raises(ProfileFormatError, match=match):
        loads(data, name="bad.json")


def test_sniff_says_no_to_other_json():
    assert sniff(b'{"profiles": [], "shared": {}}') is None
    assert sniff(b'["https://www.speedscope.app/file-format-schema.json"]') is None
