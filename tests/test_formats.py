"""Tests for plop.formats: every reader, writer, the sniffer and the hostile-input defences."""
from __future__ import annotations

import gc
import json
import os
import re
import signal
import stat
import time
from pathlib import Path

import pytest

from plop import formats
from plop.formats import ProfileFormatError, dump, dumps, format_for_path, load, loads, sniff, write_atomic
from plop.profile import Frame, Profile

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LEGACY = FIXTURES / "tmpl_work.legacy-plop-0.4.0.plop"
LEGACY_FLAME = FIXTURES / "tmpl_work.legacy-plop-0.4.0.flame"
PYSPY = FIXTURES / "tmpl_work.py-spy-0.4.3.collapsed"

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "semi;colon;name",
    "new\nline\r\nname",
    "quotes ' \" and \\ backslash",
    "name (fake.py:1)",
    "thread (1): spoof",
    "unicode é 漢字 🔥",
    "",
]


def f(name: str, filename: str = "app.py", first: int = 1, line: int = 2) -> Frame:
    return Frame(filename, name, first, line)


def rich_profile(cpu: bool = True) -> Profile:
    a, b, c = f("main", "/srv/app/main.py", 10, 12), f("work", "/srv/app/w.py", 3, 7), f("<module>", "<string>", 0, 1)
    samples = {
        ("MainThread", (c, a, b)): 40,
        ("MainThread", (c, a)): 7,
        ("worker-1", (c, b)): 3,
        ("", ()): 2,  # a sample with no Python frames
    }
    for i, name in enumerate(HOSTILE):
        samples[(name or "t", (c, f(name, filename=name + ".py", line=i + 1)))] = i + 1
    cpu_samples = None
    if cpu:
        cpu_samples = {("MainThread", (c, a, b)): 30, ("worker-1", (c, b)): 0,
                       ("worker-1", (a,)): 1}  # a key with no wall count
    metadata = {
        "command": ["app.py", "--flag"], "start_time": 1700000000.25, "duration": 12.5, "mode": "real",
        "interval": 0.005, "pid": 4242, "hostname": "host", "python_version": "3.11.7",
        "samples_taken": 2500, "sample_time": 0.12, "errors": 0, "service": "api",
        "labels": {"region": "eu", "x": "<b>"}, "window_start": 1.0, "window_end": 2.0,
        "effective_interval": 0.0051, "max_stacks": 100, "truncated_stacks": 0,
        "custom key": {"nested": [1, 2, None, True]}, "start": None,
    }
    return Profile(samples, metadata, cpu_samples)


def native_doc(**overrides):
    doc = {"plop": 1, "cpu": False, "metadata": {}, "threads": ["T"],
           "frames": [["a.py", "f", 1, 2], ["b.py", "g", 3, 4]],
           "stacks": [[0, 5, None, 0, [0, 1]], [0, 2, None, 1, [0]]]}
    doc.update(overrides)
    return json.dumps(doc).encode()


# --------------------------------------------------------------------------- native

@pytest.mark.parametrize("cpu", [True, False])
def test_native_round_trip(cpu):
    profile = rich_profile(cpu)
    data = dumps(profile)
    assert data.startswith(b'{"plop": 2')
    loaded = loads(data)
    assert loaded == profile
    assert loaded.has_cpu is cpu
    assert loaded.metadata["labels"] == {"region": "eu", "x": "<b>"}
    assert loaded.samples[("", ())] == 2


def test_native_empty_cpu_table_differs_from_none():
    assert loads(dumps(Profile({}, {}, {}))).cpu_samples == {}
    assert loads(dumps(Profile({}, {}, None))).cpu_samples is None
    empty = loads(dumps(Profile()))
    assert empty.samples == {} and empty.metadata == {}


def test_native_hostile_names_survive_exactly():
    profile = rich_profile()
    loaded = loads(dumps(profile))
    names = {fr.funcname for _t, stack in loaded.samples for fr in stack}
    assert set(HOSTILE) <= names
    assert "thread (1): spoof" in loaded.threads()


def test_native_interns_frames():
    loaded = loads(dumps(rich_profile()))
    frames = [fr for _t, stack in loaded.samples for fr in stack]
    by_value = {}
    for fr in frames:
        assert by_value.setdefault(fr, fr) is fr  # equal frames are one object


def test_native_is_deterministic_and_shares_prefixes():
    profile = rich_profile()
    reordered = Profile(dict(reversed(list(profile.samples.items()))), profile.metadata, profile.cpu_samples)
    assert dumps(profile) == dumps(reordered)
    doc = json.loads(dumps(profile))
    assert list(doc)[:2] == ["plop", "cpu"]
    assert any(row[3] > 0 for row in doc["stacks"])  # prefix sharing in use
    # every row resolves to a full stack when the shared prefix is expanded
    prev = []
    for t, n, c, k, idx in doc["stacks"]:
        prev = prev[:k] + idx
        assert all(0 <= i < len(doc["frames"]) for i in prev)


def test_native_sums_repeated_stacks():
    data = native_doc(stacks=[[0, 5, None, 0, [0]], [0, 2, None, 0, [0]]])
    assert loads(data).samples == {("T", (Frame("a.py", "f", 1, 2),)): 7}
    data = native_doc(cpu=True, stacks=[[0, 5, 1, 0, [0]], [0, 2, 2, 0, [0]], [0, 0, 4, 0, [1]], [0, 1, None, 0, [1]]])
    profile = loads(data)
    a, b = Frame("a.py", "f", 1, 2), Frame("b.py", "g", 3, 4)
    assert profile.samples == {("T", (a,)): 7, ("T", (b,)): 1}
    assert profile.cpu_samples == {("T", (a,)): 3, ("T", (b,)): 4}


def test_native_keeps_unknown_metadata_and_top_level_keys():
    data = native_doc(metadata={"future": {"a": 1}}, extra_section=[1, 2])
    assert loads(data).metadata == {"future": {"a": 1}}


def test_native_known_metadata_may_be_null():
    meta = {"start_time": None, "command": None, "pid": None}
    assert loads(dumps(Profile({}, meta))).metadata == meta


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_state_is_restored(enabled):
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        data = dumps(rich_profile())
        loads(data)
        with pytest.raises(ProfileFormatError):
            loads(data[:-30])
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_native_newer_major_version_rejected():
    with pytest.raises(ProfileFormatError, match="version 3 is newer"):
        loads(native_doc(plop=3))


def test_native_version_1_files_still_load():
    """Version 1 (plain co_name) and version 2 (qualified names) have the same rows."""
    for version in (1, 2):
        profile = loads(native_doc(plop=version))
        assert {f.funcname for _t, stack in profile.samples for f in stack} == {"f", "g"}


BAD_NATIVE = [
    ({"plop": 0}, "positive integer version"),
    ({"plop": "1"}, "version"),
    ({"metadata": []}, "'metadata' must be an object"),
    ({"metadata": {"command": "app.py"}}, "metadata 'command'"),
    ({"metadata": {"pid": 1.5}}, "metadata 'pid'"),
    ({"metadata": {"duration": -1}}, "metadata 'duration'"),
    ({"cpu": 1}, "'cpu' must be true or false"),
    ({"threads": [1]}, "'threads'"),
    ({"frames": [["a.py", "f", 1]]}, r"frames\[0\]"),
    ({"frames": [["a.py", 5, 1, 2]]}, r"frames\[0\]"),
    ({"frames": [["a.py", "f", -1, 2]]}, r"frames\[0\]"),
    ({"frames": {}}, "'frames' must be a list"),
    ({"stacks": {}}, "'stacks' must be a list"),
    ({"stacks": [[0, 5, None, [0]]]}, r"stacks\[0\] must be"),
    ({"stacks": [[1, 5, None, 0, [0]]]}, "thread index 1 out of range"),
    ({"stacks": [[True, 5, None, 0, [0]]]}, "thread index"),
    ({"stacks": [[0, 5, None, 0, [2]]]}, "frame index 2 out of range"),
    ({"stacks": [[0, 5, None, 0, [-1]]]}, "frame index -1"),
    ({"stacks": [[0, 5, None, 0, [True]]]}, "frame index True"),
    ({"stacks": [[0, 5, None, 0, [0.0]]]}, "frame index 0.0"),
    ({"stacks": [[0, 5, None, 0, ["0"]]]}, "frame index '0'"),
    ({"stacks": [[0, 5, None, 0, 0]]}, "frames must be a list"),
    ({"stacks": [[0, -5, None, 0, [0]]]}, "count must be an integer"),
    ({"stacks": [[0, 0, None, 0, [0]]]}, "count must be positive"),
    ({"stacks": [[0, 1.5, None, 0, [0]]]}, "count must be an integer"),
    ({"stacks": [[0, 2 ** 63, None, 0, [0]]]}, "count must be an integer"),
    ({"stacks": [[0, 10 ** 30, None, 0, [0]]]}, "count must be an integer"),
    ({"stacks": [[0, 5, 3, 0, [0]]]}, "no cpu table"),
    ({"cpu": True, "stacks": [[0, 5, -3, 0, [0]]]}, "cpu count"),
    ({"stacks": [[0, 5, None, 1, [0]]]}, "shared prefix 1"),
    ({"stacks": [[0, 5, None, 0, [0]], [0, 5, None, 2, [0]]]}, r"stacks\[1\]: shared prefix 2"),
    ({"stacks": [[0, 5, None, -1, [0]]]}, "shared prefix"),
]


@pytest.mark.parametrize("change,message", BAD_NATIVE)
def test_native_validation(change, message):
    with pytest.raises(ProfileFormatError, match=message):
        loads(native_doc(**change), name="bad.plop")


def test_native_errors_name_the_file():
    with pytest.raises(ProfileFormatError, match=r"^bad\.plop: .*thread index"):
        loads(native_doc(stacks=[[9, 1, None, 0, []]]), name="bad.plop")


def test_native_missing_key():
    doc = json.loads(native_doc())
    del doc["frames"]
    with pytest.raises(ProfileFormatError, match="missing key 'frames'"):
        loads(json.dumps(doc).encode())


def test_native_truncated_anywhere():
    data = dumps(rich_profile())
    for cut in range(10, len(data) - 2, max(1, len(data) // 60)):
        with pytest.raises(ProfileFormatError):
            loads(data[:cut])


def test_native_invalid_json_reports_line():
    with pytest.raises(ProfileFormatError, match=r"x\.plop:3: invalid JSON"):
        loads(b'{"plop": 1,\n"cpu": false,\n"metadata": {,}}', name="x.plop")


def test_native_giant_integer_and_deep_nesting():
    with pytest.raises(ProfileFormatError):
        loads(b'{"plop": 1, "x": ' + b"9" * 100_000 + b"}")
    start = time.perf_counter()
    with pytest.raises(ProfileFormatError, match="nested too deeply"):
        loads(b'{"plop": 1, "metadata": ' + b"[" * 1_000_000)
    assert time.perf_counter() - start < 2


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_native_rejects_non_finite_numbers(value):
    with pytest.raises(ProfileFormatError, match="invalid JSON"):
        loads(b'{"plop": 1, "metadata": {"custom": ' + value + b'}, "threads": [], "frames": [], "stacks": []}')


def test_native_not_utf8():
    with pytest.raises(ProfileFormatError):
        loads(b'{"plop": 1, "metadata": {"a": "\xff\xfe"}}')


def test_dumps_refuses_what_the_reader_would_refuse():
    with pytest.raises(ValueError):
        dumps(Profile({("t", (f("a"),)): -1}))
    with pytest.raises(ValueError):
        dumps(Profile({("t", (f("a"),)): 1.5}))
    with pytest.raises(ValueError):
        dumps(Profile({("t", (Frame("a.py", "f", None, 1),)): 1}))
    with pytest.raises(ValueError):
        dumps(Profile({}, {"command": "not a list"}))
    with pytest.raises(ValueError):
        dumps(Profile({}, {"x": float("nan")}))
    with pytest.raises(TypeError):
        dumps(Profile({}, {"x": object()}))


# --------------------------------------------------------------------------- legacy

def test_legacy_fixture():
    profile = load(LEGACY)
    assert len(profile.samples) == 26
    assert profile.total_samples == 175
    assert profile.threads() == [""]
    assert profile.cpu_samples is None
    stacks = [stack for _t, stack in profile.samples]
    assert all(stack[0] == Frame("<frozen runpy>", "_run_module_as_main", 0, 198) for stack in stacks)
    top = max(profile.samples.items(), key=lambda kv: kv[1])
    assert top[1] == 95
    assert top[0][1][-1] == Frame("/usr/local/lib/python3.11/difflib.py", "find_longest_match", 0, 379)
    # plop 0.4.0 wrote f_lineno None for one frame: kept as "line unknown"
    assert Frame("/usr/local/lib/python3.11/difflib.py", "find_longest_match", 0, 0) in {
        fr for stack in stacks for fr in stack}


def test_legacy_matches_from_stack_counts_semantics():
    text = "{(('a.py', 3, 'inner'), ('a.py', 9, 'outer')): 4, (('b.py', 1, 'x'),): 1}"
    profile = loads(text.encode())
    assert profile.samples == {
        ("", (Frame("a.py", "outer", 0, 9), Frame("a.py", "inner", 0, 3))): 4,
        ("", (Frame("b.py", "x", 0, 1),)): 1,
    }


def test_legacy_any_file_name(tmp_path):
    for name in ("plop.out", "profile.out", "x.json", "y.flame"):
        path = tmp_path / name
        path.write_bytes(b"{(('m.py', 1, 'f'),): 3}\n")
        assert load(path).total_samples == 3


def test_legacy_python2_and_port_spellings():
    # Python 2 reprs: str as UTF-8 bytes in \\x escapes, unicode with u'', longs with L
    text = (b"{(('caf\\xc3\\xa9.py', 10L, u'f'), (b'/x\\\\y', 2, \"g\\\"q\")): 5L,\n"
            b" ((r'C:\\raw', 0, 'h\\u00e9'), (u'\\xfc.py', 1, 'frame as list')): 1,}")
    profile = loads(text)
    frames = {fr for _t, stack in profile.samples for fr in stack}
    assert Frame("café.py", "f", 0, 10) in frames
    assert Frame("/x\\y", 'g"q', 0, 2) in frames
    assert Frame("C:\\raw", "hé", 0, 0) in frames
    assert Frame("ü.py", "frame as list", 0, 1) in frames
    assert profile.total_samples == 6


def test_legacy_fast_and_general_paths_agree():
    fast = loads(b"{(('a.py', 1, 'f'), (\"b.py\", None, u'g')): 2}")
    general = loads(b"{(('a.py' , 1L , 'f' ,), ('b.py', None, u'g', )): 2}")
    assert fast == general
    assert fast.samples == {("", (Frame("b.py", "g", 0, 0), Frame("a.py", "f", 0, 1))): 2}


def test_legacy_empty_dict_is_empty_profile():
    assert loads(b"{}").samples == {}
    assert loads(b"  {\n}\n").total_samples == 0


@pytest.mark.parametrize("text,message", [
    (b"{(('a', 1, 'f'),): 1", "truncated"),
    (b"{(('a', 1, 'f'),): 1} extra", "after the literal"),
    (b"{(('a', 1, 'f'),): -1}", "count"),
    (b"{(('a', 1, 'f'),): 1.5}", "unexpected character"),
    (b"{(('a', 1, 'f'),): 99999999999999999999999}", "too large"),
    (b"{(('a', 1, 'f'),) 1}", "missing ':'"),
    (b"{(('a', 1, 'f'),): 1, (('a', 1, __import__('os').system('x')),): 1}", "unexpected character"),
    (b"{(('a', 1, 'f'),): 1, ((1, 'a', 'f'),): 1}", "legacy frame"),
    (b"{(('a', 1, 'f', 4),): 1}", "legacy frame"),
    (b"{(('a', 1, 'f'),): [1]}", "count"),
    (b"{(('a', 1, 'f'), ['x']): 1}", "unhashable"),
    (b"{(('a', 1, 'f'),): }", "dict key without a value"),
    (b"{(('a', 1, 'f'),):: 1}", "unexpected ':'"),
    (b"{(('a', 1, 'f'),): 1,,}", "unexpected ','"),
    (b"{(('a', 1, 'f'),): 1, (('a', 1, 'f' 'g'),): 1}", "missing ','"),
    (b"{(('a', 1, 'f'),): 1, (('a', 1, xb'f'),): 1}", "unexpected character 'x'"),
    (b"{(('a\n', 1, 'f'),): 1}", "unterminated string"),
    (b"{(('a', 1, f'x'),): 1}", "unexpected character"),
    (b"{(('a', 1, 'f'),): 1,\n\n (('a', 1 'f'),): 2}", r":3: missing ','"),
    (b"{(('a', 1, 'f'),): 1]", "unbalanced"),
])
def test_legacy_malformed(text, message):
    with pytest.raises(ProfileFormatError, match=message):
        loads(text)


def test_legacy_million_nested_parentheses_refused_fast():
    start = time.perf_counter()
    for data in (b"{(" + b"(" * 1_000_000, b"{((" + b"[" * 1_000_000 + b"'a'"):
        with pytest.raises(ProfileFormatError, match="nested more than 32"):
            formats.legacy.load(data, "deep")
    with pytest.raises(ProfileFormatError):
        loads(b"{" + b"(" * 1_000_000)
    assert time.perf_counter() - start < 2


def test_legacy_parser_is_linear():
    row = b"(('/srv/app/module%d.py', %d, 'function_%d'), ('/srv/app/main.py', 1, '<module>')): %d, "
    data = b"{" + b"".join(row % (i, i, i, i + 1) for i in range(20_000)) + b"}"
    start = time.perf_counter()
    profile = loads(data)
    assert time.perf_counter() - start < 3
    assert len(profile.samples) == 20_000


# --------------------------------------------------------------------------- collapsed

def test_plop_040_flamegraph_fixture_skips_none_line():
    assert LEGACY_FLAME.read_bytes().startswith(b"None 1\n")
    profile = load(LEGACY_FLAME)
    raw_total = sum(int(line.rsplit(None, 1)[1]) for line in LEGACY_FLAME.read_text().splitlines() if line)
    assert profile.total_samples == raw_total - 1 == 178
    frames = {fr for _t, stack in profile.samples for fr in stack}
    assert Frame("", "None", 0, 0) not in frames
    assert Frame("/usr/local/lib/python3.11/difflib.py", "find_longest_match", 0, 379) in frames
    assert Frame("<frozen importlib._bootstrap>", "_find_and_load", 0, 1176) in frames
    assert all(stack[0].funcname == "_run_module_as_main" for _t, stack in profile.samples)


def test_plop_040_flamegraph_none_line_is_line_unknown():
    """plop 0.4.0 wrote ``(difflib.py:None)`` when Python had no line: same file, line 0."""
    assert b"find_longest_match (/usr/local/lib/python3.11/difflib.py:None)" in LEGACY_FLAME.read_bytes()
    profile = load(LEGACY_FLAME)
    frames = {fr for _t, stack in profile.samples for fr in stack}
    assert not any(fr.filename.endswith(":None") for fr in frames)
    difflib = "/usr/local/lib/python3.11/difflib.py"
    assert Frame(difflib, "find_longest_match", 0, 0) in frames
    assert {fr.filename for fr in frames if fr.funcname == "find_longest_match"} == {difflib}
    parsed = loads(b"f (a.py:None);g (a.py:3) 2\n")
    assert parsed.samples == {("", (Frame("a.py", "f", 0, 0), Frame("a.py", "g", 0, 3))): 2}
    # "None" is a line only after the last colon: a file name may hold ":None" elsewhere.
    assert loads(b"f (a:None.py:4);g (b.py:1) 1\n").samples == {
        ("", (Frame("a:None.py", "f", 0, 4), Frame("b.py", "g", 0, 1))): 1}


def test_pyspy_fixture():
    profile = load(PYSPY)
    assert profile.total_samples == 337
    assert profile.threads() == [""]
    frames = {fr for _t, stack in profile.samples for fr in stack}
    assert Frame("tornado/template.py", "Template.generate", 0, 372) in frames
    assert Frame("tmpl_work.py", "<module>", 0, 8) in frames
    assert Frame("difflib.py", "SequenceMatcher.__chain_b", 0, 281) in frames
    assert profile.samples[("", ())] == 2  # py-spy's " 2" line: samples without Python frames


def test_pyspy_thread_and_process_frames():
    text = (
        "thread (0x7F12AB): MainThread;<module> (app.py:3);work (app.py:9) 5\n"
        "thread (0x7F12AC);<module> (app.py:3) 2\n"
        "thread (4242): worker;run (w.py:1) 1\n"
        'process 10:"python app.py";process 11:"python -c x";thread (0x1): MainThread;f (c.py:2) 4\n'
        'process 10:"python app.py";g (d.py:3) 1\n'
    )
    profile = loads(text.encode())
    assert profile.samples == {
        ("MainThread", (Frame("app.py", "<module>", 0, 3), Frame("app.py", "work", 0, 9))): 5,
        ("thread 0x7F12AC", (Frame("app.py", "<module>", 0, 3),)): 2,
        ("worker", (Frame("w.py", "run", 0, 1),)): 1,
        ("pid 11 MainThread", (Frame("c.py", "f", 0, 2),)): 4,
        ("pid 10", (Frame("d.py", "g", 0, 3),)): 1,
    }


def test_collapsed_frame_shapes():
    text = (
        "<module> (/home/me/My Project (copy)/a:b.py:12);Template.generate (t.py:3) 2\n"
        "main;foo;bar 3\r\n"
        "\n"
        "native_fn (libpython3.11.so);f (x.py:1) 1\n"
        "std::vector<int>::push_back(int const&) 1\n"
    )
    profile = loads(text.encode())
    assert profile.samples == {
        ("", (Frame("/home/me/My Project (copy)/a:b.py", "<module>", 0, 12), Frame("t.py", "Template.generate", 0, 3))): 2,
        ("", (Frame("", "main", 0, 0), Frame("", "foo", 0, 0), Frame("", "bar", 0, 0))): 3,
        ("", (Frame("libpython3.11.so", "native_fn", 0, 0), Frame("x.py", "f", 0, 1))): 1,
        ("", (Frame("", "std::vector<int>::push_back(int const&)", 0, 0),)): 1,
    }


@pytest.mark.parametrize("line,message", [
    (b"a (x.py:1);b (y.py:2)", ":2: expected"),
    (b"a (x.py:1);b (y.py:2) 1.5", ":2: expected"),
    (b"a (x.py:1);;b (y.py:2) 3", ":2: empty frame"),
    (b"a (x.py:1);b\x01 (y.py:2) 3", ":2: expected"),
    (b"a (x.py:1);b (y.py:2) 1234567890123456789012", ":2: expected"),
    (b"a (x.py:1);b (y.py:2) -4", ":2: expected"),
])
def test_collapsed_malformed_lines_report_line_number(line, message):
    data = b"f (z.py:1);g (z.py:2) 1\n" + line + b"\n"
    with pytest.raises(ProfileFormatError, match=message):
        loads(data, name="p.collapsed")


def test_collapsed_bad_line_after_plop_040_none_line():
    with pytest.raises(ProfileFormatError, match=":3: expected"):
        loads(b"None 1\nf (z.py:1);g (z.py:2) 1\nbroken\n")


@pytest.mark.parametrize("line", [
    "a" + " " * 500_000 + "x",          # a long run of blanks before junk
    "x" + " (a:" * 200_000,             # nested-looking frame openings
    "f (" + "1:" * 300_000 + ") 1",
    ";".join(["f (a.py:1"] * 50_000) + " 1",
    'process 1:"' + "x" * 500_000,
], ids=["blanks", "openings", "colons", "unclosed-frames", "process"])
def test_hostile_lines_cost_linear_time(line):
    data = ("f (z.py:1);g (z.py:2) 1\n" + line + "\n").encode()
    start = time.perf_counter()
    sniff(data[:4096])
    sniff(line.encode()[:4096])
    try:
        loads(data)
    except ProfileFormatError:
        pass
    assert time.perf_counter() - start < 1


def test_collapsed_line_length_limit():
    data = b"f (z.py:1);g (z.py:2) 1\n" + b"a;" * (formats.MAX_LINE_CHARS // 2 + 10) + b"a 1\n"
    with pytest.raises(ProfileFormatError, match="longer than"):
        loads(data)


def test_collapsed_not_utf8():
    with pytest.raises(ProfileFormatError, match="not UTF-8"):
        loads(b"f (z.py:1);g (z.py:2) 1\n\xff\xfe (a.py:1);b 2\n")


def test_collapsed_round_trip():
    profile = Profile({
        ("MainThread", (f("<module>", "app.py", 0, 1), f("run", "/srv/my app/x (1).py", 5, 9))): 3,
        ("worker", (f("<module>", "app.py", 0, 1), f("run", "/srv/my app/x (1).py", 5, 9))): 2,
        ("worker", (f("Cls.meth", "c.py", 1, 4),)): 1,
        ("worker", ()): 9,  # no line for an empty stack
    }, {"mode": "prof"}, {("worker", (f("Cls.meth", "c.py", 1, 4),)): 1})
    data = dumps(profile, "flamegraph")
    assert data == dumps(profile, "collapsed")
    assert data == (b"<module> (app.py:1);run (/srv/my app/x (1).py:9) 5\n"
                    b"Cls.meth (c.py:4) 1\n")
    back = loads(data)
    # Threads merge, first lines and metadata are lost, executing lines survive.
    assert back.samples == {
        ("", (Frame("app.py", "<module>", 0, 1), Frame("/srv/my app/x (1).py", "run", 0, 9))): 5,
        ("", (Frame("c.py", "Cls.meth", 0, 4),)): 1,
    }
    assert back.cpu_samples is None and back.metadata == {}


def test_collapsed_writer_sanitises_hostile_names():
    profile = rich_profile(cpu=False)
    data = dumps(profile, "flamegraph")
    lines = data.decode().split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    for line in lines:
        assert re.fullmatch(r"[^\n\r;]+(;[^\n\r;]+)* \d+", line)
    merged = {}
    for (_t, stack), n in profile.samples.items():
        if stack:
            merged[tuple(stack)] = merged.get(tuple(stack), 0) + n
    assert len(lines) == len(merged)  # no forged lines
    back = loads(data)
    assert back.total_samples == profile.total_samples - profile.samples[("", ())]
    assert all(len(stack) in (2, 3) for _t, stack in back.samples)  # no forged frames
    assert back.threads() == [""]
    assert lines == sorted(lines)


def test_collapsed_writer_handles_frames_without_location():
    profile = Profile({("", (Frame("", "main", 0, 0), Frame("", "", 0, 0))): 2})
    assert dumps(profile, "flamegraph") == b"main;? 2\n"


# --------------------------------------------------------------------------- sniffing

def test_sniff_positive():
    assert sniff(dumps(rich_profile())[:4096]) == "plop"
    assert sniff(b'{"plop": 7, ') == "plop"
    assert sniff(LEGACY.read_bytes()[:4096]) == "legacy"
    assert sniff(b"{(('a', 1, 'f'),): 1}") == "legacy"
    assert sniff(b"{\n  ((u'a', 1, u'f'),): 1}") == "legacy"
    assert sniff(LEGACY_FLAME.read_bytes()[:4096]) == "collapsed"
    assert sniff(PYSPY.read_bytes()[:4096]) == "collapsed"
    assert sniff(b"main;foo;bar 3\nmain;baz 1\n") == "collapsed"
    assert sniff(b"<module> (a.py:1) 3\n") == "collapsed"
    deep = ";".join(f"f{i} (/srv/app/m{i}.py:{i})" for i in range(400)) + " 1\n"
    assert sniff(deep.encode()[:4096]) == "collapsed"  # one line longer than the window
    assert sniff("é (é.py:1);ü (ü.py:2) 1\n".encode()[:30]) == "collapsed"  # cut mid-character


@pytest.mark.parametrize("head", [
    b"",
    b"\n\n",
    b"{}",
    b'{"name": "plop", "version": "1.0.0", "dependencies": {}}\n',
    b"[1, 2, 3]\n",
    b"import os\nimport sys\n\ndef main():\n    return 1\n",
    b"#!/usr/bin/env python\nprint('hello')\n",
    b"2024-01-01 12:00:00 INFO server started on port 8080\n2024-01-01 12:00:01 INFO ok\n",
    b"server started on port 8080\nworkers 4\n",
    b"1 2\n3 4\n5 6\n",
    b"name;age;score\nalice;30;5\n",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00",
    bytes(range(256)) * 4,
    b"\xff\xfe\xfd garbage a;b 1\n",
    b"a;b 1\x00\n",
    b"# Title\n\nSome text (file.py:12) here.\n",
])
def test_sniff_negative(head):
    assert sniff(head) is None


def test_byte_order_mark_is_ignored_in_text_formats():
    bom = b"\xef\xbb\xbf"
    assert sniff(bom + b"a (x.py:1);b (y.py:2) 3\n") == "collapsed"
    assert sniff(bom + b"{(('a', 1, 'f'),): 1}") == "legacy"
    assert loads(bom + b"a (x.py:1);b (y.py:2) 3\n").samples == {
        ("", (Frame("x.py", "a", 0, 1), Frame("y.py", "b", 0, 2))): 3}
    assert loads(bom + b"{(('a', 1, 'f'),): 1}").total_samples == 1


def test_sniff_fixture_non_profiles():
    assert sniff((FIXTURES / "README.md").read_bytes()[:4096]) is None
    assert sniff((FIXTURES / "tmpl_work.py").read_bytes()[:4096]) is None
    assert sniff(Path(__file__).read_bytes()[:4096]) is None
    for source in Path(formats.__file__).parent.iterdir():  # every module, the .proto and its gencode
        if source.is_file():
            assert sniff(source.read_bytes()[:4096]) is None, source.name
    for go in (FIXTURES / "go-spin").iterdir():
        assert sniff(go.read_bytes()[:4096]) is None, go.name


def test_sniff_is_cheap_on_large_input():
    data = b"a;b 1\n" * 2_000_000
    start = time.perf_counter()
    assert sniff(data) == "collapsed"
    assert time.perf_counter() - start < 0.1


# --------------------------------------------------------------------------- load()

def test_load_detects_by_content_not_name(tmp_path):
    native = tmp_path / "profile.txt"
    native.write_bytes(dumps(rich_profile()))
    assert load(native) == rich_profile()
    collapsed = tmp_path / "x.plop"
    collapsed.write_bytes(b"a (x.py:1);b (y.py:2) 4\n")
    assert load(collapsed).total_samples == 4


def test_load_refuses_huge_file_before_reading(tmp_path):
    path = tmp_path / "huge.plop"
    with open(path, "wb") as fh:
        fh.truncate(1 << 30)  # sparse: no disk used
    start = time.perf_counter()
    with pytest.raises(ProfileFormatError, match="more than the limit"):
        load(path)
    assert time.perf_counter() - start < 0.5


def test_load_max_bytes(tmp_path):
    path = tmp_path / "p.flame"
    path.write_bytes(b"a;b 1\n" * 100)
    assert load(path, max_bytes=600).total_samples == 100
    with pytest.raises(ProfileFormatError, match="limit of 599"):
        load(path, max_bytes=599)


def test_load_refuses_fifo_without_hanging(tmp_path):
    fifo = tmp_path / "fifo.plop"
    os.mkfifo(fifo)
    old = signal.signal(signal.SIGALRM, lambda *a: pytest.fail("load() blocked on a FIFO"))
    signal.alarm(5)
    try:
        with pytest.raises(ProfileFormatError, match="not a regular file"):
            load(fifo)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_load_refuses_directory_and_missing(tmp_path):
    with pytest.raises(ProfileFormatError, match="not a regular file"):
        load(tmp_path)
    with pytest.raises(ProfileFormatError, match="cannot read") as info:
        load(tmp_path / "missing.plop")
    assert isinstance(info.value.__cause__, FileNotFoundError)


@pytest.mark.parametrize("data", [
    b"", b"   \n", os.urandom(4096), b"\x00" * 100, b"hello world\n", b'{"plop"', b"None 1\n",
])
def test_load_garbage(tmp_path, data):
    path = tmp_path / "junk.plop"
    path.write_bytes(data)
    with pytest.raises(ProfileFormatError):
        load(path)


def test_loads_requires_bytes():
    with pytest.raises(TypeError):
        loads("{}")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- writing

def test_format_names():
    assert formats.FORMATS == ("plop", "flamegraph", "speedscope", "pprof")
    assert formats.EXTENSIONS == {"plop": "plop", "flamegraph": "flame", "speedscope": "speedscope.json",
                                  "pprof": "pb.gz"}
    for ext, expected in [("a.flame", "flamegraph"), ("a.COLLAPSED", "flamegraph"), ("a.txt", "flamegraph"),
                          ("a.json", "speedscope"), ("a.speedscope.json", "speedscope"),
                          ("a.pb.gz", "pprof"), ("a.PPROF", "pprof"), ("cpu.pb", "pprof"),
                          ("a.plop", "plop"), ("plop.out", "plop"), ("noext", "plop")]:
        assert format_for_path(ext) == expected
    for fmt, ext in formats.EXTENSIONS.items():
        assert format_for_path("x." + ext) == fmt
    with pytest.raises(ValueError, match="unknown profile format"):
        dumps(Profile(), "pdf")


@pytest.mark.parametrize("fmt", ["plop", "flamegraph", "speedscope", "collapsed"])
def test_dump_writes_atomically(tmp_path, fmt):
    path = tmp_path / ("out." + fmt)
    dump(rich_profile(), path, fmt)
    assert path.read_bytes() == dumps(rich_profile(), fmt)
    assert os.listdir(tmp_path) == [path.name]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_write_atomic_replaces_and_keeps_mode(tmp_path):
    path = tmp_path / "p.plop"
    path.write_bytes(b"old")
    path.chmod(0o640)
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["p.plop"]


def test_write_atomic_cleans_up_when_rename_fails(tmp_path):
    target = tmp_path / "is_a_dir"
    target.mkdir()
    (target / "keep").write_bytes(b"x")
    with pytest.raises(OSError):
        write_atomic(target, b"data")
    assert sorted(os.listdir(tmp_path)) == ["is_a_dir"]


def test_write_atomic_cleans_up_when_fsync_fails(tmp_path, monkeypatch):
    path = tmp_path / "p.plop"
    path.write_bytes(b"old")

    def broken_fsync(fd):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["p.plop"]


def test_dump_failures_leave_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        dump(rich_profile(), tmp_path / "no such dir" / "p.plop")
    path = tmp_path / "p.plop"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        dump(Profile({}, {"bad": object()}), path)  # serialisation error
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["p.plop"]


def test_native_load_is_fast_enough_for_big_profiles():
    """A smoke check of scale (the real number comes from benchmarks/load_native.py)."""
    frames = [Frame(f"/srv/m{i % 40}.py", f"fn{i}", i, i + 1) for i in range(2000)]
    samples = {}
    for i in range(10_000):
        stack = tuple(frames[(i * 7 + d * 13 + (i >> d)) % 2000] for d in range(30))
        samples[("T%d" % (i % 3), stack)] = i % 50 + 1
    profile = Profile(samples, {"mode": "real"}, {k: 1 for k in list(samples)[::2]})
    data = dumps(profile)
    start = time.perf_counter()
    assert loads(data) == profile
    assert time.perf_counter() - start < 3  # ~0.1 s; generous for a shared machine


# --------------------------------------------------------------------------- fixtures

def test_fixtures_live_in_the_repository_and_are_described():
    """Every fixture file is in tests/fixtures and named in its README (what made it, how)."""
    root = Path(__file__).resolve().parents[1]
    assert FIXTURES.is_dir() and root in FIXTURES.resolve().parents
    readme = (FIXTURES / "README.md").read_text()
    files = sorted(p.name for p in FIXTURES.iterdir() if p.name != "README.md" and p.is_file())
    assert files
    missing = [name for name in files if f"`{name}`" not in readme]
    assert not missing, missing



@pytest.mark.parametrize("format", formats.FORMATS)
def test_qualified_names_survive_every_format(format):
    """Method, nested and lambda names as co_qualname gives them come back whole from each writer."""
    names = ["ProductListHandler.get", "ReportHandler.get", "outer.<locals>.inner",
             "Shop.search.<locals>.<lambda>", "<module>"]
    frames = [f(name, "/srv/app/shop.py", 10 * i + 1, 10 * i + 2) for i, name in enumerate(names)]
    samples = {("MainThread", (frames[4], frames[0], frames[2])): 5,
               ("MainThread", (frames[4], frames[1], frames[3])): 3}
    loaded = loads(dumps(Profile(samples, {"mode": "real", "interval": 0.01}), format))
    got = {frame.funcname for _t, stack in loaded.samples for frame in stack}
    assert got == set(names)
    by_leaf = {stack[-1].funcname: n for (_t, stack), n in loaded.samples.items()}
    assert by_leaf == {"outer.<locals>.inner": 5, "Shop.search.<locals>.<lambda>": 3}
