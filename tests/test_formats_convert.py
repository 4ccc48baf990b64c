"""Round trips between every pair of formats, and ``python -m plop convert``."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest

from plop import formats
from plop.formats import loads
from plop.profile import Frame, Profile
from tests.conftest import FIXTURES, ROOT

WRITERS = ("plop", "flamegraph", "speedscope", "pprof")

MOD = Frame("/srv/app.py", "<module>", 0, 30)
MAIN = Frame("/srv/app.py", "main", 10, 14)
WORK = Frame("/srv/app.py", "work", 20, 23)
WORK_OTHER_LINE = Frame("/srv/app.py", "work", 20, 25)
LIB = Frame("/usr/lib/python3.11/json/encoder.py", "JSONEncoder.encode", 183, 200)


def sample_profile() -> Profile:
    samples = {("MainThread", (MOD, MAIN, WORK)): 40, ("MainThread", (MOD, MAIN, WORK_OTHER_LINE)): 9,
               ("MainThread", (MOD, MAIN)): 5, ("worker", (MOD, LIB)): 7, ("worker", ()): 2}
    cpu = {("MainThread", (MOD, MAIN, WORK)): 30, ("worker", (MOD, LIB)): 7}
    return Profile(samples, {"interval": 0.01, "mode": "real", "command": ["app.py"]}, cpu)


def held(profile: Profile, fmt: str) -> Profile:
    """What ``fmt`` can hold of ``profile``: the losses each format documents, applied by hand."""
    samples, cpu = dict(profile.samples), profile.cpu_samples
    if fmt in ("flamegraph", "speedscope"):  # no function first lines
        def strip(table):
            out = {}
            for (t, stack), n in table.items():
                key = (t, tuple(fr._replace(firstlineno=0) for fr in stack))
                out[key] = out.get(key, 0) + n
            return out
        samples = strip(samples)
        cpu = None if cpu is None else strip(cpu)
    if fmt == "flamegraph":  # no threads, no CPU, no empty stacks
        merged: dict = {}
        for (_t, stack), n in samples.items():
            if stack:
                merged[("", stack)] = merged.get(("", stack), 0) + n
        samples, cpu = merged, None
    return Profile(samples, {}, cpu)


def counts(profile: Profile) -> tuple[dict, dict | None]:
    return profile.samples, profile.cpu_samples


@pytest.mark.parametrize("first,second", list(itertools.product(WRITERS, WRITERS)))
def test_round_trip_between_every_pair(first, second):
    original = sample_profile()
    via_first = loads(formats.dumps(original, first))
    assert counts(via_first) == counts(held(original, first))
    via_both = loads(formats.dumps(via_first, second))
    assert counts(via_both) == counts(held(held(original, first), second))
    assert via_both.total_samples == original.total_samples - (2 if "flamegraph" in (first, second) else 0)


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.iterdir()
                                           if p.is_file() and formats.sniff(p.read_bytes()[:4096])))
@pytest.mark.parametrize("fmt", WRITERS)
def test_every_fixture_converts_to_every_format(fixture, fmt):
    if fixture.endswith("ddtrace-4.16.0.pprof"):
        pytest.importorskip("zstandard")
    profile = formats.load(FIXTURES / fixture)
    back = loads(formats.dumps(profile, fmt))
    expected = held(profile, fmt)
    assert back.samples == expected.samples
    if fmt != "flamegraph":
        assert back.cpu_samples == expected.cpu_samples
        assert sorted(back.threads()) == sorted(profile.threads())


# --------------------------------------------------------------------------- the command

def plop_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "plop", *args], cwd=cwd, env=env, capture_output=True,
                          timeout=120)


@pytest.mark.parametrize("out,fmt", [("p.pb.gz", "pprof"), ("p.speedscope.json", "speedscope"),
                                     ("p.flame", "collapsed"), ("p.plop", "plop")])
def test_convert_picks_the_format_from_the_extension(tmp_path, out, fmt):
    src = tmp_path / "in.plop"
    formats.dump(sample_profile(), src)
    proc = plop_cli("convert", str(src), out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert formats.sniff((tmp_path / out).read_bytes()[:4096]) == fmt
    back = formats.load(tmp_path / out)
    expected = held(sample_profile(), "flamegraph" if fmt == "collapsed" else fmt)
    assert back.samples == expected.samples
    assert b"57 samples" in proc.stderr or b"63 samples" in proc.stderr


def test_convert_format_option_wins_and_stdout(tmp_path):
    src = tmp_path / "in.pb.gz"
    formats.dump(sample_profile(), src, "pprof")
    proc = plop_cli("convert", str(src), "out.txt", "--format", "speedscope", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert formats.sniff((tmp_path / "out.txt").read_bytes()[:4096]) == "speedscope"
    proc = plop_cli("convert", "in.pb.gz", "-", "-f", "flamegraph", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith(b"<module> (/srv/app.py:30);")


@pytest.mark.parametrize("content", [b"", b"not a profile\n", b"\x1f\x8b\x08\x00broken",
                                     b'{"plop": 1, "metadata": {}}', None])
def test_convert_bad_input_is_one_line_and_status_2(tmp_path, content):
    src = tmp_path / "in.plop"
    if content is not None:
        src.write_bytes(content)
    proc = plop_cli("convert", str(src), "out.pb.gz", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == b""
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plop convert: ") and "Traceback" not in lines[0]
    assert not (tmp_path / "out.pb.gz").exists()


def test_convert_hostile_error_text_stays_on_one_line(tmp_path):
    src = tmp_path / "evil\nname.plop"
    src.write_bytes(b"garbage\n")
    proc = plop_cli("convert", str(src), "out.plop", cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.decode().splitlines()) == 1


def test_convert_unwritable_output_is_status_1(tmp_path):
    src = tmp_path / "in.plop"
    formats.dump(sample_profile(), src)
    proc = plop_cli("convert", str(src), str(tmp_path / "no" / "such" / "dir" / "x.plop"), cwd=tmp_path)
    assert proc.returncode == 1 and len(proc.stderr.decode().splitlines()) == 1


def test_usage_errors_are_status_2(tmp_path):
    assert plop_cli(cwd=tmp_path).returncode == 2
    assert plop_cli("convert", "only-one", cwd=tmp_path).returncode == 2
    assert plop_cli("convert", "a", "b", "--format", "pdf", cwd=tmp_path).returncode == 2
