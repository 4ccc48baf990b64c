"""``python -m plop.collector`` end to end, in subprocesses.

The profiled program must see and produce exactly what plain ``python`` gives
it, so most tests run the same program both ways and compare.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from plop import formats
from tests.conftest import ROOT

PROGRAM = textwrap.dedent(
    """
    import os, sys, threading

    def burn(n):
        total = 0
        for i in range(n):
            total += i * i
        return total

    def worker():
        burn(300_000)

    print("argv", sys.argv)
    print("name", __name__)
    print("file", __file__)
    print("path0", sys.path[0])
    print("main", sys.modules["__main__"].__dict__ is globals())
    sys.stdout.write("bytes \\xe9\\u2603\\n")
    burn(200_000)
    t = threading.Thread(target=worker, name="late-worker")
    t.start()  # still running when the main code ends: joined before exit
    action = sys.argv[1] if len(sys.argv) > 1 else ""
    if action == "raise":
        def inner():
            raise ValueError("boom")
        inner()
    elif action == "exit":
        sys.exit(int(sys.argv[2]))
    elif action == "exit-msg":
        sys.exit("a message")
    elif action == "kbd":
        raise KeyboardInterrupt
    """
)


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def run(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env(), capture_output=True,
                          timeout=120, **kw)


def plop_lines(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode().splitlines() if line.startswith("plop:")]


def without_plop(stderr: bytes) -> bytes:
    return b"".join(line for line in stderr.splitlines(keepends=True) if not line.startswith(b"plop:"))


@pytest.fixture
def program(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "prog.py"
    path.write_text(PROGRAM)
    return path


@pytest.mark.parametrize("action", [[], ["raise"], ["exit", "7"], ["exit-msg"], ["kbd"]])
def test_program_sees_and_gives_what_plain_python_does(tmp_path, program, action):
    plain = run(["sub/prog.py", *action], cwd=tmp_path)
    profiled = run(["-m", "plop.collector", "--mode", "real", "--interval", "0.005", "sub/prog.py", *action],
                   cwd=tmp_path)
    assert profiled.stdout == plain.stdout  # byte for byte
    assert profiled.returncode == plain.returncode
    # Tracebacks and sys.exit messages are identical: no plop frames.
    assert without_plop(profiled.stderr) == plain.stderr
    assert "collector" not in without_plop(profiled.stderr).decode()
    written = list((tmp_path / "profiles").iterdir())
    assert len(written) == 1, profiled.stderr
    profile = formats.load(written[0])
    assert profile.total_samples > 0
    # The thread still running after the main code was profiled until it ended.
    assert "late-worker" in profile.threads()
    if action == ["kbd"]:
        assert plain.returncode == -signal.SIGINT


def test_module_mode_matches_plain_python(tmp_path):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tool.py").write_text(PROGRAM)
    for action in ([], ["raise"], ["exit", "3"]):
        plain = run(["-m", "mypkg.tool", *action], cwd=tmp_path)
        profiled = run(["-m", "plop.collector", "-m", "mypkg.tool", *action], cwd=tmp_path)
        assert profiled.stdout == plain.stdout
        assert profiled.returncode == plain.returncode
        assert without_plop(profiled.stderr) == plain.stderr
    names = sorted(p.name for p in (tmp_path / "profiles").iterdir())
    assert len(names) == 3
    assert all(re.fullmatch(r"mypkg\.tool-\d{8}-\d{6}-\d+\.plop", n) for n in names), names


def test_program_options_after_the_script_belong_to_it(tmp_path, program):
    out = run(["-m", "plop.collector", "sub/prog.py", "--mode", "-o", "x"], cwd=tmp_path)
    assert b"argv ['sub/prog.py', '--mode', '-o', 'x']" in out.stdout


def test_file_name_report_and_profile_contents(tmp_path, program):
    out = run(["-m", "plop.collector", "--mode", "prof", "--interval", "0.002", "sub/prog.py"], cwd=tmp_path)
    assert out.returncode == 0
    (path,) = (tmp_path / "profiles").iterdir()
    assert re.fullmatch(r"prog\.py-\d{8}-\d{6}-\d+\.plop", path.name)
    lines = plop_lines(out.stderr)
    assert any(str(Path("profiles") / path.name) in line for line in lines)
    assert any(re.search(r"\d+ snapshots of every thread over .* of CPU time: \d+/s \(asked 500/s\)", line) for line in lines), lines
    assert any(re.search(r"overhead: [\d.]+ us of CPU per snapshot in plop's sampler thread, .*% of the program's CPU time", line) for line in lines)
    profile = formats.load(path)
    meta = profile.metadata
    assert meta["command"] == ["sub/prog.py"]
    assert meta["mode"] == "prof" and meta["interval"] == 0.002
    assert meta["samples_taken"] > 0
    # Stacks start at the program's own module frame: no runner machinery
    # (or, after the main code, at the interpreter joining the late thread).
    main_stacks = [s for (t, s) in profile.samples if t == "MainThread" and s]
    assert main_stacks and all((s[0].funcname == "<module>" and s[0].filename == str(program))
                               or s[0].funcname == "_shutdown" for s in main_stacks), main_stacks
    assert any(f.funcname == "burn" for s in main_stacks for f in s)
    # Written atomically: nothing but the profile in the directory.
    assert [p.name for p in (tmp_path / "profiles").iterdir()] == [path.name]


@pytest.mark.parametrize("fmt,ext", [("plop", ".plop"), ("flamegraph", ".flame"),
                                     ("speedscope", ".speedscope.json"), ("pprof", ".pb.gz")])
def test_formats_and_datadir(tmp_path, program, fmt, ext):
    out = run(["-m", "plop.collector", "--format", fmt, "--datadir", "deep/er", "sub/prog.py"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (path,) = (tmp_path / "deep" / "er").iterdir()
    assert path.name.endswith(ext)
    data = path.read_bytes()
    if fmt == "speedscope":
        assert "$schema" in json.loads(data)
    else:
        assert formats.load(path).total_samples > 0


def test_output_file_parents_created_and_format_from_extension(tmp_path, program):
    out = run(["-m", "plop.collector", "-o", "a/b/out.flame", "sub/prog.py"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    path = tmp_path / "a" / "b" / "out.flame"
    assert formats.sniff(path.read_bytes()[:4096]) == "collapsed"
    assert os.listdir(path.parent) == ["out.flame"]


def test_max_stacks(tmp_path):
    script = tmp_path / "many.py"
    script.write_text(textwrap.dedent("""
        def f(n):
            return f(n - 1) if n else sum(i * i for i in range(3000))
        for _ in range(200):
            for d in range(40):
                f(d)
    """))
    out = run(["-m", "plop.collector", "--mode", "real", "--interval", "0.0005", "--max-stacks", "3",
               "-o", "p.plop", "many.py"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    profile = formats.load(tmp_path / "p.plop")
    assert len(profile.samples) == 3
    assert profile.metadata["max_stacks"] == 3
    assert profile.metadata["truncated_stacks"] > 0


def test_too_short_program_gets_an_empty_valid_profile(tmp_path):
    (tmp_path / "quick.py").write_text("print('hi')\n")
    out = run(["-m", "plop.collector", "--interval", "10", "quick.py"], cwd=tmp_path)
    assert out.returncode == 0
    assert out.stdout == b"hi\n"
    (path,) = (tmp_path / "profiles").iterdir()
    assert formats.load(path).total_samples == 0
    assert any("empty profile" in line for line in plop_lines(out.stderr))


@pytest.mark.parametrize("args,message", [
    (["--mode", "cpu", "x.py"], "--mode"),
    (["--interval", "0", "x.py"], "interval"),
    (["--interval", "-1", "x.py"], "interval"),
    (["--interval", "abc", "x.py"], "interval"),
    (["--duration", "0", "x.py"], "duration"),
    (["missing.py"], "missing.py"),
    (["-m", "no_such_module_xyz"], "no_such_module_xyz"),
    ([], "no program"),
    (["-m"], "-m"),
])
def test_bad_arguments_one_line_no_traceback(tmp_path, args, message):
    out = run(["-m", "plop.collector", *args], cwd=tmp_path)
    assert out.returncode == 2
    err = out.stderr.decode()
    assert err.count("\n") == 1, err
    assert err.startswith("plop: error:") and message in err
    assert "Traceback" not in err
    assert not (tmp_path / "profiles").exists()


def test_duration_stops_sampling_but_not_the_program(tmp_path):
    script = tmp_path / "long.py"
    script.write_text(textwrap.dedent("""
        import time
        def first():
            end = time.process_time() + 0.3
            while time.process_time() < end:
                pass
        def second():
            end = time.process_time() + 0.6
            while time.process_time() < end:
                pass
        first()
        second()
        print("done")
    """))
    out = run(["-m", "plop.collector", "--duration", "0.2", "--interval", "0.005", "-o", "d.plop", "long.py"],
              cwd=tmp_path)
    assert out.stdout == b"done\n"
    profile = formats.load(tmp_path / "d.plop")
    funcs = {f.funcname for (_t, s) in profile.samples for f in s}
    assert "first" in funcs and "second" not in funcs


def test_unwritable_output_is_reported_and_exit_status_kept(tmp_path):
    (tmp_path / "ok.py").write_text("import sys; sys.exit(4)\n")
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = run(["-m", "plop.collector", "-o", "file/sub/x.plop", "ok.py"], cwd=tmp_path)
    assert out.returncode == 4
    assert any("could not write the profile" in line for line in plop_lines(out.stderr))
    assert "Traceback" not in out.stderr.decode()
