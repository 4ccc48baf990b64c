"""Always-on profiling (plop.start/stop/record): windows, retention, disk errors,
exit and SIGTERM, wall and CPU views, fork, signal conflicts, the overhead budget.

Every scenario runs in a subprocess so no timer or handler leaks into pytest.
The scenarios wait for conditions (windows written, samples taken) rather than
sleeping, and compare shares with statistical tolerances.
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
from plop.live import LiveProfiler, window_pattern

ROOT = Path(__file__).resolve().parents[1]

PRELUDE = '''
import os, sys, time, json, signal, threading
import plop
from plop import formats

def burn_for(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n

def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            print("TIMEOUT", flush=True)
            sys.exit(99)
        burn_for(0.01)
'''


def run_script(tmp_path: Path, body: str, *, timeout: float = 60, args: list[str] | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
    script = tmp_path / "scenario.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, str(script)] + (args or []), cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail("scenario failed (%d)\nstdout:\n%s\nstderr:\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    return proc


def windows(datadir: Path, service: str) -> list[tuple[Path, "formats.Profile"]]:
    pattern = window_pattern(service)
    names = sorted(p for p in os.listdir(datadir) if pattern.match(p))
    return [(datadir / n, formats.load(datadir / n)) for n in names]


def share(profile, funcname: str, thread: str | None = None) -> float:
    total = hits = 0
    for (t, stack), n in profile.samples.items():
        if thread is not None and t != thread:
            continue
        total += n
        if any(f.funcname == funcname for f in stack):
            hits += n
    return hits / total if total else 0.0


def test_windows_are_written_complete_and_named(tmp_path):
    proc = run_script(tmp_path, '''
        h = plop.start(datadir="d", window=0.2, service="web", labels={"env": "test"},
                       overhead_budget=None)
        wait_for(lambda: len(h.files) >= 4)
        snap = h.snapshot()
        assert snap.total_samples > 0
        h.stop()
        h.stop()  # twice is harmless
        print(json.dumps({"ticks": h.collector.ticks, "pid": os.getpid(), "files": h.files,
                          "snap": snap.total_samples}))
    ''')
    out = json.loads(proc.stdout)
    wins = windows(tmp_path / "d", "web")
    assert len(wins) >= 5  # four while running, the last one at stop
    assert sorted(str(tmp_path / "d" / os.path.basename(f)) for f in out["files"]) == [str(p) for p, _ in wins]
    name_re = re.compile(r"web-\d{8}T\d{6}\.\d{3}Z-%d\.plop" % out["pid"])
    previous_end = None
    for path, prof in wins:
        assert name_re.fullmatch(path.name)
        meta = prof.metadata
        assert meta["service"] == "web" and meta["labels"] == {"env": "test"}
        assert meta["pid"] == out["pid"] and meta["hostname"]
        assert meta["mode"] == "real" and meta["effective_interval"] == 0.01
        assert meta["window_start"] < meta["window_end"]
        if previous_end is not None:
            assert meta["window_start"] == pytest.approx(previous_end, abs=1e-6)  # contiguous
        previous_end = meta["window_end"]
        # only the main thread: plop's writer thread is left out
        assert prof.threads() == ["MainThread"]
        assert prof.total_samples == meta["ticks"]
    # no sample lost or counted twice: the windows add up to the run
    assert sum(p.metadata["ticks"] for _, p in wins) == out["ticks"]
    assert sum(p.total_samples for _, p in wins) == out["ticks"]
    assert out["snap"] <= out["ticks"]


def test_start_twice_is_an_error_and_restart_after_stop_works(tmp_path):
    proc = run_script(tmp_path, '''
        h = plop.start(datadir="d", window=None, service="twice")
        try:
            plop.start(datadir="d2")
        except RuntimeError as exc:
            print("ERROR:", exc)
        else:
            print("no error")
        assert signal.getsignal(signal.SIGALRM) is h.collector._sampler
        wait_for(lambda: h.collector.samples_taken > 5)
        plop.stop()
        assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        h2 = plop.start(datadir="d", window=None, service="again")
        wait_for(lambda: h2.collector.samples_taken > 5)
        h2.stop()
    ''')
    assert "ERROR: plop is already running" in proc.stdout
    assert len(windows(tmp_path / "d", "twice")) == 1
    assert len(windows(tmp_path / "d", "again")) == 1
    assert not (tmp_path / "d2").exists()


def test_windows_in_pprof_format(tmp_path):
    run_script(tmp_path, '''
        h = plop.start(datadir="d", window=0.2, service="web", mode="prof", interval=0.005,
                       overhead_budget=None, format="pprof")
        wait_for(lambda: len(h.files) >= 2)
        burn_for(0.3)
        h.stop()
    ''')
    wins = windows(tmp_path / "d", "web")
    assert len(wins) >= 3 and all(p.name.endswith(".pb.gz") for p, _ in wins)
    assert all(formats.sniff(p.read_bytes()[:4096]) == "pprof" for p, _ in wins)
    merged = wins[0][1]
    for _p, prof in wins[1:]:
        merged = merged.merged(prof)
    assert merged.metadata["service"] == "web" and merged.metadata["mode"] == "prof"
    assert share(merged, "burn_for") > 0.5
    with pytest.raises(ValueError, match="'plop' or 'pprof'"):
        LiveProfiler(format="flamegraph")


def test_record_writes_one_file_in_the_format_its_extension_names(tmp_path):
    run_script(tmp_path, '''
        for name in ("out.plop", "out.flame", "out.json"):
            with plop.record(name, mode="prof", interval=0.005) as c:
                wait_for(lambda: c.samples_taken >= 20)
        with plop.record("sub/x.txt", mode="real", interval=0.005, format="speedscope") as c:
            wait_for(lambda: c.samples_taken >= 20)
    ''')
    native = formats.load(tmp_path / "out.plop")
    assert native.metadata["mode"] == "prof" and share(native, "burn_for") > 0.5
    assert formats.sniff((tmp_path / "out.flame").read_bytes()[:4096]) == "collapsed"
    assert "burn_for" in (tmp_path / "out.flame").read_text()
    assert json.loads((tmp_path / "out.json").read_text())["$schema"].startswith("https://www.speedscope.app")
    assert json.loads((tmp_path / "sub" / "x.txt").read_text())["$schema"].startswith("https://www.speedscope.app")


def test_retention_by_count_and_bytes_only_touches_this_service(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    old = d / "web-20000101T000000.000Z-1.plop"  # an old window of this service
    old.write_text("{}")
    other = d / "web-v2-20000101T000000.000Z-1.plop"  # another service whose name starts alike
    other.write_text("{}")
    mine_not = d / "web-notes.txt"
    mine_not.write_text("keep me")
    proc = run_script(tmp_path, '''
        h = plop.start(datadir="d", window=0.15, service="web", max_files=3, overhead_budget=None)
        wait_for(lambda: len(h.files) >= 6)
        h.stop()
        print(json.dumps(h.files))
    ''')
    wins = windows(d, "web")
    assert len(wins) == 3
    assert not old.exists()
    assert other.exists() and mine_not.exists()
    # the newest were kept
    written = sorted(os.path.basename(f) for f in json.loads(proc.stdout))
    assert [p.name for p, _ in wins] == written[-3:]

    d2 = tmp_path / "d2"
    proc = run_script(tmp_path, '''
        h = plop.start(datadir="d2", window=0.15, service="api", max_bytes=1, overhead_budget=None)
        wait_for(lambda: len(h.files) >= 3)
        h.stop()
        print(json.dumps(h.files))
    ''')
    files = json.loads(proc.stdout)
    left = [p.name for p, _ in windows(d2, "api")]
    # max_bytes smaller than one file keeps only the newest
    assert left == [os.path.basename(files[-1])]


def test_unwritable_data_directory_is_reported_once_and_profiling_goes_on(tmp_path):
    proc = run_script(tmp_path, '''
        h = plop.start(datadir="d", window=0.15, service="disk", overhead_budget=None)
        wait_for(lambda: len(h.files) >= 1)
        os.rename("d", "d.saved")
        open("d", "w").close()          # the directory is now a file: every write fails
        n = h.windows_cut
        wait_for(lambda: h.windows_cut >= n + 3)
        os.unlink("d")
        os.rename("d.saved", "d")       # back: writing resumes
        n = len(h.files)
        wait_for(lambda: len(h.files) >= n + 1)
        h.stop()
        print("still running", h.collector.samples_taken > 0)
    ''')
    assert "still running True" in proc.stdout
    assert proc.stderr.count("cannot write profiles") == 1, proc.stderr
    assert len(windows(tmp_path / "d", "disk")) >= 2
    # a data directory that cannot even be created
    (tmp_path / "file").write_text("")
    proc = run_script(tmp_path, '''
        h = plop.start(datadir="file/sub", window=0.1, service="x", overhead_budget=None)
        wait_for(lambda: h.windows_cut >= 3)
        h.stop()
        print("ok")
    ''')
    assert proc.stdout.strip() == "ok"
    assert proc.stderr.count("plop:") == 1, proc.stderr


def test_last_window_written_at_normal_exit(tmp_path):
    proc = run_script(tmp_path, '''
        h = plop.start(datadir="d", window=60, service="exit")
        wait_for(lambda: h.collector.samples_taken >= 20)
        sys.exit(3)
    ''', check=False)
    assert proc.returncode == 3, proc.stderr
    (path, prof), = windows(tmp_path / "d", "exit")
    assert prof.metadata["samples_taken"] >= 20 and share(prof, "burn_for") > 0.5


def _start_and_wait(tmp_path, body: str) -> subprocess.Popen:
    script = tmp_path / "scenario.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_sigterm_without_handler_writes_then_dies_of_sigterm(tmp_path):
    proc = _start_and_wait(tmp_path, '''
        h = plop.start(datadir="d", window=60, service="term")
        wait_for(lambda: h.collector.samples_taken >= 20)
        print("ready", flush=True)
        while True:
            burn_for(0.05)
    ''')
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM, err
    (path, prof), = windows(tmp_path / "d", "term")
    assert prof.metadata["samples_taken"] >= 20


def test_sigterm_with_the_programs_handler_writes_then_runs_it(tmp_path):
    proc = _start_and_wait(tmp_path, '''
        def on_term(signum, frame):
            print("handler saw", len(os.listdir("d")), "files", flush=True)
            sys.exit(7)
        signal.signal(signal.SIGTERM, on_term)
        h = plop.start(datadir="d", window=60, service="term2")
        wait_for(lambda: h.collector.samples_taken >= 20)
        print("ready", flush=True)
        while True:
            burn_for(0.05)
    ''')
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 7, err
    assert "handler saw 1 files" in out
    wins = windows(tmp_path / "d", "term2")
    assert 1 <= len(wins) <= 2  # the SIGTERM window, and what ran after it at exit
    assert sum(p.metadata["samples_taken"] for _, p in wins) >= 20


def test_wall_and_cpu_views_of_a_half_sleeping_thread(tmp_path):
    run_script(tmp_path, '''
        # Phases of 0.1 s: a sample counts as on CPU when its thread ran since
        # the previous sample, so the first sample of each sleep carries the
        # end of the burn before it (one 5 ms interval in 20, about 5%).
        def burn_phase():
            t = time.thread_time()
            while time.thread_time() - t < 0.1:
                pass
        def sleep_phase():
            time.sleep(0.1)
        def worker():
            end = time.monotonic() + 3
            while time.monotonic() < end:
                burn_phase()
                sleep_phase()
        h = plop.start(datadir="d", window=60, service="halves", interval=0.005, overhead_budget=None)
        t = threading.Thread(target=worker, name="worker")
        t.start()
        # The main thread waits as a server's event loop does (interruptibly);
        # an untimed join() is restarted under the timer's SA_RESTART and would
        # hold the signals off until the worker ends.
        while t.is_alive():
            time.sleep(0.01)
        h.stop()
    ''')
    (path, prof), = windows(tmp_path / "d", "halves")
    assert prof.has_cpu
    wall = prof.for_thread("worker")
    cpu = prof.cpu().for_thread("worker")
    assert cpu.metadata["view"] == "cpu"
    assert wall.total_samples > 200
    # wall: both halves (the burn half is at least half of the wall time on a busy machine)
    assert 0.3 < share(wall, "burn_phase") < 0.85
    assert 0.15 < share(wall, "sleep_phase") < 0.7
    # CPU: only the burning half
    assert share(cpu, "burn_phase") > 0.85
    assert share(cpu, "sleep_phase") < 0.15
    ratio = cpu.total_samples / wall.total_samples
    assert 0.2 < ratio < 0.85


def test_fork_child_profiles_itself_under_its_own_pid(tmp_path):
    proc = run_script(tmp_path, '''
        def parent_work():
            burn_for(0.3)
        def child_work():
            burn_for(0.4)
        h = plop.start(datadir="d", window=60, service="fork", overhead_budget=None)
        parent_work()
        pid = os.fork()
        if pid == 0:
            child_work()
            sys.exit(0)   # atexit writes the child's window
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        h.stop()
        print(json.dumps({"parent": os.getpid(), "child": pid}))
    ''')
    pids = json.loads(proc.stdout)
    wins = {p.metadata["pid"]: p for _, p in windows(tmp_path / "d", "fork")}
    assert set(wins) == {pids["parent"], pids["child"]}
    parent, child = wins[pids["parent"]], wins[pids["child"]]
    assert share(parent, "parent_work") > 0.2 and share(parent, "child_work") == 0
    assert share(child, "child_work") > 0.5
    assert share(child, "parent_work") == 0  # the parent's samples are not written twice


def test_multiprocessing_fork_workers_each_write_their_own(tmp_path):
    proc = run_script(tmp_path, '''
        import multiprocessing
        def parent_work():
            burn_for(0.3)
        def mp_work(_):
            burn_for(0.4)
            return os.getpid()
        if __name__ == "__main__":
            h = plop.start(datadir="d", window=60, service="mp", overhead_budget=None)
            parent_work()
            ctx = multiprocessing.get_context("fork")
            procs = [ctx.Process(target=mp_work, args=(i,)) for i in range(2)]
            for p in procs: p.start()
            for p in procs: p.join()
            assert all(p.exitcode == 0 for p in procs)
            h.stop()
            print(json.dumps({"parent": os.getpid(), "children": [p.pid for p in procs]}))
    ''')
    pids = json.loads(proc.stdout)
    wins = {p.metadata["pid"]: p for _, p in windows(tmp_path / "d", "mp")}
    assert set(wins) == {pids["parent"], *pids["children"]}
    for pid in pids["children"]:
        assert share(wins[pid], "mp_work") > 0.5
        assert share(wins[pid], "parent_work") == 0
    assert share(wins[pids["parent"]], "mp_work") == 0


@pytest.mark.parametrize("mode,signame", [("real", "SIGALRM"), ("prof", "SIGPROF"), ("virtual", "SIGVTALRM")])
def test_start_refuses_a_signal_the_program_handles(tmp_path, mode, signame):
    proc = run_script(tmp_path, '''
        signal.signal(signal.%s, lambda *a: None)
        try:
            plop.start(datadir="d", mode=%r)
        except plop.live.SignalConflictError as exc:
            print(exc)
        assert plop.live.current() is None
    ''' % (signame, mode))
    assert signame in proc.stdout
    for other in {"real", "prof", "virtual"} - {mode}:
        assert other in proc.stdout
    assert not (tmp_path / "d").exists() or not os.listdir(tmp_path / "d")


def test_start_refuses_a_timer_the_program_armed(tmp_path):
    proc = run_script(tmp_path, '''
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.setitimer(signal.ITIMER_REAL, 100)
        try:
            plop.start(datadir="d")
        except plop.live.SignalConflictError as exc:
            print(exc)
        signal.setitimer(signal.ITIMER_REAL, 0)
    ''')
    assert "ITIMER_REAL" in proc.stdout and "prof" in proc.stdout


def test_program_taking_the_signal_later_gets_it_and_plop_steps_back(tmp_path):
    proc = run_script(tmp_path, '''
        h = plop.start(datadir="d", window=60, service="taken", overhead_budget=None)
        wait_for(lambda: h.collector.samples_taken >= 20)
        hits = []
        signal.signal(signal.SIGALRM, lambda s, f: hits.append(1))
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        wait_for(lambda: plop.live.current() is None)   # plop noticed
        wait_for(lambda: len(hits) >= 10)
        assert signal.getitimer(signal.ITIMER_REAL)[1] == 0.05
        signal.setitimer(signal.ITIMER_REAL, 0)
        # a later alarm() with the program's handler also works
        signal.signal(signal.SIGALRM, lambda s, f: hits.append("alarm"))
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        wait_for(lambda: "alarm" in hits)
        print("ok", len(hits))
    ''')
    assert proc.stdout.startswith("ok")
    assert proc.stderr.count("installed its own SIGALRM handler") == 1, proc.stderr
    assert len(windows(tmp_path / "d", "taken")) == 1  # what was sampled before is kept

    # a handler alone (no timer of its own): plop's timer stops hitting it
    proc = run_script(tmp_path, '''
        h = plop.start(datadir="d", window=60, service="taken2", overhead_budget=None)
        wait_for(lambda: h.collector.samples_taken >= 20)
        hits = []
        signal.signal(signal.SIGALRM, lambda s, f: hits.append(1))
        wait_for(lambda: plop.live.current() is None)
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        n = len(hits)
        signal.alarm(1)
        wait_for(lambda: len(hits) == n + 1)
        print("ok")
    ''')
    assert proc.stdout.strip() == "ok"
    assert proc.stderr.count("plop:") == 1, proc.stderr


def test_system_calls_interrupted_by_1000hz_sampling_behave_as_without_plop(tmp_path):
    proc = run_script(tmp_path, '''
        import socket
        h = plop.start(datadir="d", window=60, interval=0.001, service="eintr", overhead_budget=None)
        t0 = time.monotonic()
        time.sleep(0.3)
        slept = time.monotonic() - t0
        r, w = os.pipe()
        threading.Timer(0.3, lambda: os.write(w, b"hello")).start()
        data = os.read(r, 5)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        threading.Timer(0.3, lambda: socket.create_connection(srv.getsockname()).close()).start()
        conn, _ = srv.accept()
        conn.close()
        srv.close()
        h.stop()
        print(json.dumps({"slept": slept, "data": data.decode(), "samples": h.collector.samples_taken}))
    ''')
    out = json.loads(proc.stdout)
    assert out["slept"] >= 0.3 and out["data"] == "hello"
    assert out["samples"] >= 50  # the timer really was firing during the calls
    assert "plop:" not in proc.stderr


def test_overhead_budget_lowers_the_rate_and_says_so_once(tmp_path):
    proc = run_script(tmp_path, '''
        h = plop.start(datadir="d", window=0.15, interval=0.002, service="budget",
                       overhead_budget=0.00001)
        wait_for(lambda: h.effective_interval > 0.002 and len(h.files) >= 3)
        h.stop()
    ''')
    assert proc.stderr.count("budget") == 1, proc.stderr
    wins = [p for _, p in windows(tmp_path / "d", "budget")]
    assert wins[0].metadata["effective_interval"] == 0.002
    assert any(p.metadata["effective_interval"] > 0.002 for p in wins)
    assert all(p.metadata["interval"] == 0.002 and p.metadata["overhead_budget"] == 0.00001 for p in wins)


def test_command_line_rolling_profiles_of_a_prefork_program(tmp_path):
    (tmp_path / "server.py").write_text(textwrap.dedent('''
        import os, sys, time
        def serve(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                sum(i * i for i in range(1000))
        children = []
        for _ in range(2):
            pid = os.fork()
            if pid == 0:
                serve(0.8)
                sys.exit(0)
            children.append(pid)
        serve(0.8)
        for pid in children:
            os.waitpid(pid, 0)
        print("served", sys.argv[1:])
    '''))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "plop.collector", "--window", "0.25", "--service", "api",
                           "--max-files", "50", "--label", "env=test", "--datadir", "d", "server.py", "--x"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "served ['--x']\n"
    wins = windows(tmp_path / "d", "api")
    pids = {p.metadata["pid"] for _, p in wins}
    assert len(pids) == 3  # the parent and its two workers
    for _, prof in wins:
        assert prof.metadata["labels"] == {"env": "test"} and prof.metadata["mode"] == "real"
        for (_thread, stack) in prof.samples:
            assert stack[0].funcname == "<module>"  # the runner's frames are hidden
    assert "wrote" in proc.stderr and "api" in proc.stderr
    bad = subprocess.run([sys.executable, "-m", "plop.collector", "--window", "1", "-o", "x.plop", "server.py"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--window" in bad.stderr
