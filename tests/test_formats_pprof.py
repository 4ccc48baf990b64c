"""pprof (profile.proto): plop's writer, its reader on real files of Go and Datadog, go tool pprof agreement."""
from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import pytest

from plop import formats
from plop.formats import ProfileFormatError, dumps, load, loads, sniff
from plop.formats import pprof
from plop.profile import Frame, Profile
from tests.conftest import FIXTURES

GO_CPU = FIXTURES / "spin.go1.19.cpu.pb.gz"
DATADOG = FIXTURES / "small_work.ddtrace-4.16.0.pprof"

MAIN = Frame("/srv/app.py", "main", 1, 5)
WORK = Frame("/srv/app.py", "work", 10, 12)
HELPER = Frame("/srv/lib.py", "helper", 3, 4)


def wall_cpu_profile() -> Profile:
    meta = {"interval": 0.01, "mode": "real", "start_time": 1700000000.5, "duration": 2.0, "pid": 42,
            "labels": {"env": "test"}, "command": ["app.py"]}
    return Profile({("MainThread", (MAIN, WORK)): 5, ("MainThread", (MAIN, WORK, HELPER)): 3,
                    ("worker", (MAIN, HELPER)): 2},
                   meta, {("MainThread", (MAIN, WORK)): 4, ("worker", (MAIN, HELPER)): 1,
                          ("worker", (MAIN,)): 2})


# --------------------------------------------------------------------------- plop's own files

def test_round_trip_keeps_counts_threads_lines_cpu_and_metadata():
    profile = wall_cpu_profile()
    data = dumps(profile, "pprof")
    assert data.startswith(b"\x1f\x8b") and sniff(data[:4096]) == "pprof"
    back = loads(data)
    assert back.samples == profile.samples
    assert back.cpu_samples == profile.cpu_samples
    meta = back.metadata
    for key in ("interval", "mode", "start_time", "duration", "pid", "labels", "command"):
        assert meta[key] == profile.metadata[key], key
    assert meta["sample_types"] == [{"type": "samples", "unit": "count"}, {"type": "wall", "unit": "nanoseconds"},
                                    {"type": "cpu", "unit": "nanoseconds"}]
    assert meta["value_types"] == {"samples": "wall", "cpu": "cpu"}
    assert meta["value_units"] == {"samples": "samples", "cpu": "samples"}


def test_raw_protobuf_is_read_by_content_too():
    raw = gzip.decompress(dumps(wall_cpu_profile(), "pprof"))
    assert sniff(raw[:4096]) == "pprof"
    assert loads(raw).cpu_samples == wall_cpu_profile().cpu_samples


def test_on_cpu_profile_without_interval_or_cpu_table():
    profile = Profile({("", (MAIN, WORK)): 7}, {"mode": "prof"})
    back = loads(dumps(profile, "pprof"))
    assert back.samples == profile.samples and back.cpu_samples is None
    assert back.metadata["sample_types"] == [{"type": "samples", "unit": "count"}]
    with_interval = loads(dumps(Profile(profile.samples, {"mode": "prof", "interval": 0.005}), "pprof"))
    assert [t["type"] for t in with_interval.metadata["sample_types"]] == ["samples", "cpu"]
    assert with_interval.samples == profile.samples and with_interval.metadata["view"] == "cpu"


def test_empty_profile_and_empty_stack():
    assert loads(dumps(Profile({}), "pprof")).samples == {}
    back = loads(dumps(Profile({("t", ()): 3, ("t", (MAIN,)): 1}), "pprof"))
    assert back.samples == {("t", ()): 3, ("t", (MAIN,)): 1}


def test_hostile_names_survive():
    odd = Frame("/x;y\n(z).py", "f (g);\u2028h", 0, 9)
    profile = Profile({("thr\x00ead", (odd,)): 2})
    assert loads(dumps(profile, "pprof")).samples == profile.samples


def test_value_choice_by_name_or_index():
    data = dumps(wall_cpu_profile(), "pprof")
    cpu = pprof.load(data, "x", value="cpu")
    assert cpu.samples == {k: v for k, v in wall_cpu_profile().cpu_samples.items()}
    assert cpu.cpu_samples is None
    # samples/count: the same counts, but no CPU table beside a column that is not wall time
    by_count = pprof.load(data, "x", value=0)
    assert by_count.samples == wall_cpu_profile().samples and by_count.cpu_samples is None
    assert pprof.load(data, "x", value="wall").samples == pprof.load(data, "x").samples
    with pytest.raises(ValueError, match="no sample type 'bytes'"):
        pprof.load(data, "x", value="bytes")


def test_pid_labels_of_several_processes_prefix_threads():
    strings = ("", "samples", "count", "f", "a.py", "pid", "thread_name", "main")

    def labelled(pid: int, n: int) -> bytes:
        return sample(1, value=n) + message((3, message((1, 5), (3, pid)))) + message((3, message((1, 6), (2, 7))))

    merged = loads(minimal([labelled(1, 2), labelled(2, 3)], [LOC], [FUNC], strings))
    frame = Frame("a.py", "f", 0, 7)
    assert merged.samples == {("pid 1 main", (frame,)): 2, ("pid 2 main", (frame,)): 3}
    assert "pid" not in merged.metadata
    one = loads(minimal([labelled(7, 2), labelled(7, 3)], [LOC], [FUNC], strings))
    assert one.samples == {("main", (frame,)): 5} and one.metadata["pid"] == 7


def test_merged_profile_of_several_processes_round_trips_with_pid_labels(tmp_path):
    merged = Profile({("pid 1 main", (MAIN,)): 2, ("pid 2 main", (WORK,)): 3, ("pid 2", (HELPER,)): 1})
    data = dumps(merged, "pprof")
    assert loads(data).samples == merged.samples
    path = tmp_path / "m.pb.gz"
    path.write_bytes(data)
    text = go_pprof("-raw", str(path))
    assert text.count("pid:[1]") == 1 and text.count("pid:[2]") == 2
    assert text.count("thread_name:[main]") == 2


def test_format_for_path_and_extension():
    assert formats.format_for_path("x.pb.gz") == formats.format_for_path("x.pprof") == "pprof"
    assert formats.EXTENSIONS["pprof"] == "pb.gz" and "pprof" in formats.FORMATS


# --------------------------------------------------------------------------- go tool pprof

def go_pprof(*args: str) -> str:
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not installed (bash tools/test.sh installs Debian's golang-go)")
    env = dict(os.environ, GOFLAGS="-mod=mod", GOPROXY="off", HOME=os.environ.get("HOME", "/tmp"))
    env.setdefault("GOCACHE", "/tmp/plop-test-gocache")
    out = subprocess.run([go, "tool", "pprof", *args], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def written(tmp_path) -> tuple[Path, Profile]:
    profile = wall_cpu_profile()
    path = tmp_path / "p.pb.gz"
    formats.dump(profile, path, "pprof")
    return path, profile


def test_go_tool_pprof_top_agrees(written):
    path, profile = written
    flat: Counter[str] = Counter()
    cum: Counter[str] = Counter()
    for (_t, stack), n in profile.samples.items():
        flat[stack[-1].funcname] += n
        for name in {f.funcname for f in stack}:
            cum[name] += n
    text = go_pprof("-top", "-sample_index=samples", str(path))
    rows = {m.group(5): (int(m.group(1)), int(m.group(3))) for m in re.finditer(
        r"^\s*(\d+)\s+([\d.]+)%\s+[\d.]+%\s+(\d+)\s+([\d.]+)%\s+(\S+)\s*$", text, re.M)}
    assert rows == {name: (flat[name], cum[name]) for name in cum}
    cpu = go_pprof("-top", "-sample_index=cpu", "-unit=ms", str(path))
    assert "Total samples = %dms" % (sum(profile.cpu_samples.values()) * 10) in cpu


def test_go_tool_pprof_traces_agree(written):
    path, profile = written
    text = go_pprof("-traces", "-sample_index=samples", str(path))
    traces = Counter()
    for block in text.split("-----------+-")[1:]:
        lines = [ln for ln in block.splitlines()[1:] if ln.strip()]
        if not lines:
            continue
        thread = next(ln.split(":", 1)[1].strip() for ln in lines if ln.strip().startswith("thread_name:"))
        frames = [ln for ln in lines if not re.match(r"\s*(thread_name|pid):", ln)]
        if not frames:
            continue
        count, leaf = frames[0].split()
        names = [leaf] + [ln.strip() for ln in frames[1:]]
        traces[(thread, tuple(reversed(names)))] += int(count)
    expected = Counter()
    for (t, stack), n in profile.samples.items():
        expected[(t, tuple(f.funcname for f in stack))] += n
    assert traces == expected


def test_go_tool_pprof_raw_agrees(written):
    path, profile = written
    text = go_pprof("-raw", str(path))
    assert "samples/count wall/nanoseconds" in text and "cpu/nanoseconds" in text
    assert "PeriodType: wall nanoseconds" in text and "Period: 10000000" in text
    locations = {int(m.group(1)): (m.group(2), m.group(3), int(m.group(4)), int(m.group(5))) for m in re.finditer(
        r"^\s+(\d+): 0x0 M=\d+ (\S+) (\S+):(\d+) s=(\d+)$", text, re.M)}
    assert sorted(locations.values()) == sorted((f.funcname, f.filename, f.lineno, f.firstlineno)
                                                for f in (MAIN, WORK, HELPER))
    seen = Counter()
    for m in re.finditer(r"^\s+(\d+)\s+(\d+)\s+(\d+): ([\d ]+)\n\s+thread_name:\[(.*?)\]", text, re.M):
        n, wall, cpu = map(int, m.group(1, 2, 3))
        names = tuple(locations[int(i)][0] for i in reversed(m.group(4).split()))
        assert wall == n * 10_000_000 and cpu % 10_000_000 == 0
        seen[(m.group(5), names, "wall")] += n
        seen[(m.group(5), names, "cpu")] += cpu // 10_000_000
    expected = Counter()
    for (t, stack), n in profile.samples.items():
        expected[(t, tuple(f.funcname for f in stack), "wall")] += n
    for (t, stack), c in profile.cpu_samples.items():
        expected[(t, tuple(f.funcname for f in stack), "cpu")] += c
    assert +seen == +expected


# --------------------------------------------------------------------------- other producers

def test_go_cpu_profile_fixture():
    """Go 1.19's runtime/pprof (see fixtures/README.md): what go tool pprof -top said of it."""
    profile = load(GO_CPU)
    assert profile.total_samples == 58 and profile.cpu_samples is None
    assert profile.metadata["view"] == "cpu" and profile.metadata["interval"] == 0.01
    assert [t["type"] for t in profile.metadata["sample_types"]] == ["samples", "cpu"]
    flat: Counter[str] = Counter()
    for (_t, stack), n in profile.samples.items():
        flat[stack[-1].funcname] += n
        assert stack[0].funcname == "runtime.main"
    # go tool pprof -top: crypto/sha256.block 380ms, sort.partition 120ms, ... (10 ms a sample)
    assert flat["crypto/sha256.block"] == 38 and flat["sort.partition"] == 12
    # sort.Ints is inlined into main.sorting: it is a frame of its own, between the two
    inlined = [s for (_t, s), _n in profile.samples.items() if any(f.funcname == "sort.Ints" for f in s)]
    assert inlined
    for stack in inlined:
        names = [f.funcname for f in stack]
        i = names.index("sort.Ints")
        assert names[i - 1] == "main.sorting" and names[i + 1] == "sort.Sort"
        assert stack[i].filename.endswith("sort/sort.go") and stack[i].lineno > 0


def test_go_cpu_fixture_agrees_with_go_tool_pprof():
    text = go_pprof("-top", "-sample_index=samples", str(GO_CPU))
    assert "Total samples = 58" in text or re.search(r"of 58 total", text)


def test_datadog_fixture():
    """ddtrace 4.16's profiler, DD_PROFILING_OUTPUT_PPROF (zstd-compressed, 19 sample types)."""
    pytest.importorskip("zstandard")
    assert DATADOG.read_bytes().startswith(pprof.ZSTD_MAGIC)
    assert sniff(DATADOG.read_bytes()[:4096]) == "pprof"
    profile = load(DATADOG)
    meta = profile.metadata
    assert len(meta["sample_types"]) == 19
    assert meta["value_types"] == {"samples": "wall-time", "cpu": "cpu-time"}
    assert meta["value_units"] == {"samples": "nanoseconds", "cpu": "nanoseconds"}
    assert set(profile.threads()) == {"MainThread", "differ"}
    funcs = {f.funcname for (_t, s) in profile.samples for f in s}
    assert {"encode_decode", "diff_lines", "SequenceMatcher.find_longest_match"} <= funcs
    differ = sum(n for (t, s), n in profile.cpu_samples.items() if t == "differ")
    assert differ > 0
    # the workload runs about two seconds in each thread: wall time adds up to about four
    assert 3.0e9 < profile.total_samples < 5.0e9


# --------------------------------------------------------------------------- hostile inputs

def varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def message(*fields: tuple[int, int | bytes]) -> bytes:
    """A protobuf message written by hand from (field, varint or bytes) pairs: hostile ones too."""
    out = b""
    for field, value in fields:
        if isinstance(value, bytes):
            out += varint(field << 3 | 2) + varint(len(value)) + value
        else:
            out += varint(field << 3) + varint(value)
    return out


def minimal(samples=(), locations=(), functions=(), strings=("", "samples", "count", "f", "a.py")) -> bytes:
    vt = message((1, 1), (2, 2))
    return (message((1, vt)) + b"".join(message((2, s)) for s in samples)
            + b"".join(message((4, loc)) for loc in locations) + b"".join(message((5, f)) for f in functions)
            + b"".join(message((6, s.encode())) for s in strings))


FUNC = message((1, 1), (2, 3), (4, 4))
LOC = message((1, 1), (4, message((1, 1), (2, 7))))


def sample(*loc_ids: int, value: int = 1) -> bytes:
    return message((1, b"".join(map(varint, loc_ids))), (2, varint(value)))


def test_minimal_handmade_profile_reads():
    profile = loads(minimal([sample(1, value=3)], [LOC], [FUNC]))
    assert profile.samples == {("", (Frame("a.py", "f", 0, 7),)): 3}


@pytest.mark.parametrize("data,match", [
    (minimal([sample(1)], [LOC], [message((1, 1), (2, 99))]), "string index 99 out of range"),
    (minimal([sample(2)], [LOC], [FUNC]), "unknown location id 2"),
    (minimal([sample(1)], [message((1, 1), (4, message((1, 5))))], [FUNC]), "unknown function id 5"),
    (minimal([sample(1)], [LOC, LOC], [FUNC]), "location id 1 is zero or repeated"),
    (minimal([sample(1)], [LOC], [FUNC, FUNC]), "function id 1 is zero or repeated"),
    (minimal([sample(1)], [LOC], [FUNC], strings=("x", "samples")), r"string_table\[0\]"),
    (minimal([sample(*[1] * (pprof.MAX_DEPTH + 1))], [LOC], [FUNC]), "deep"),
    (minimal([message((2, b"\x01\x02"))], [LOC], [FUNC]), "2 values for 1 sample types"),
    (minimal([sample(1)], [LOC], [FUNC]) + b"\x12\x05\x0a", "malformed pprof protobuf"),
    (minimal() + b"\x08" + b"\xff" * 11, "malformed pprof protobuf"),
    (minimal() + b"\x0b", "malformed pprof protobuf"),
    (minimal() + b"\x12\x03\x0a\x05\x08", "malformed pprof protobuf"),
])
def test_malformed_protobuf(data, match):
    with pytest.raises(ProfileFormatError, match=match):
        loads(data, name="bad.pb")
    with pytest.raises(ProfileFormatError, match=match):
        loads(gzip.compress(data), name="bad.pb.gz")


def test_cyclic_looking_references_are_flat():
    """pprof references only go sample -> location -> function: a location naming itself
    as its function is just an id that must exist among functions."""
    loc = message((1, 1), (4, message((1, 1)))), message((1, 2), (4, message((1, 2))))
    with pytest.raises(ProfileFormatError, match="unknown function id 2"):
        loads(minimal([sample(1, 2)], loc, [FUNC]))
    # a recursive stack (the same location again and again) is just a deep stack
    profile = loads(minimal([sample(*[1] * 1000)], [LOC], [FUNC]))
    ((_t, stack),) = profile.samples
    assert len(stack) == 1000


def test_gzip_bomb_stops_at_the_limit():
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    data = b"".join(bomb.compress(chunk) for _ in range(pprof.MAX_DECOMPRESSED // len(chunk) + 8)) + bomb.flush()
    assert len(data) < 1 << 20  # under a megabyte on disk
    with pytest.raises(ProfileFormatError, match="decompresses to more than"):
        loads(data, name="bomb.pb.gz")


def test_zstd_bomb_stops_at_the_limit(monkeypatch):
    zstandard = pytest.importorskip("zstandard")
    monkeypatch.setattr(pprof, "MAX_DECOMPRESSED", 1 << 20)
    data = zstandard.ZstdCompressor().compress(bytes(4 << 20))
    with pytest.raises(ProfileFormatError, match="decompresses to more than"):
        pprof.decompress(data, "bomb", pprof.MAX_DECOMPRESSED)


def test_truncated_and_corrupt_gzip():
    data = dumps(wall_cpu_profile(), "pprof")
    with pytest.raises(ProfileFormatError, match="truncated gzip"):
        loads(data[: len(data) // 2])
    with pytest.raises(ProfileFormatError, match="corrupt gzip"):
        loads(data[:10] + b"\xff" * 40 + data[50:])


def test_one_gigabyte_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.pb.gz"
    with open(path, "wb") as f:
        f.write(b"\x1f\x8b\x08\x00")
        f.truncate(1 << 30)
    with pytest.raises(ProfileFormatError, match="more than the limit"):
        load(path)


@pytest.mark.parametrize("head", [
    b"", b"hello world\n", b'{"a": 1}', b"# comment\n", b"\n\n\n", b"main 3\n", bytes(range(256)),
    gzip.compress(b"just a gzipped log line\n" * 20), b"\x1f\x8b\x08\x00garbage",
    b"\x28\xb5\x2f\xfd" + b"\xff" * 64,  # zstd magic, corrupt frame header
])
def test_sniff_says_no_to_non_pprof(head):
    assert sniff(head) != "pprof"


def test_viewer_lists_pprof_and_keeps_listing_beside_a_hostile_one(tmp_path):
    from plop.viewer.listing import DataDirectory

    shutil.copy(GO_CPU, tmp_path / "go.pb.gz")
    formats.dump(wall_cpu_profile(), tmp_path / "plop.pb.gz", "pprof")
    (tmp_path / "bad.pb.gz").write_bytes(gzip.compress(minimal([sample(9)], [LOC], [FUNC])))
    (tmp_path / "log.gz").write_bytes(gzip.compress(b"not a profile\n"))
    directory = DataDirectory(str(tmp_path), budget=30)
    try:
        entries = {e.name: e for e in directory.scan()}
        assert sorted(entries) == ["bad.pb.gz", "go.pb.gz", "plop.pb.gz"] and directory.ignored == 1
        assert {e.format for e in entries.values()} == {"pprof"}
        assert "unknown location id 9" in entries["bad.pb.gz"].error
        assert entries["go.pb.gz"].summary["samples"] == 58 and entries["go.pb.gz"].error is None
        assert entries["plop.pb.gz"].summary["has_cpu"] and entries["plop.pb.gz"].summary["pid"] == 42
        assert directory.load(entries["plop.pb.gz"]).cpu_samples == wall_cpu_profile().cpu_samples
    finally:
        directory.close()


def test_codec_benchmark_runs():
    """benchmarks/pprof_codec.py end to end on a small profile (a smoke test: no timing assertions)."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "pprof_codec.py"
    out = subprocess.run([sys.executable, str(script), "--stacks", "300", "--functions", "50", "--runs", "1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "plop loads (parse+check+build)" in out.stdout and "ratio plop loads / bare walk" in out.stdout
