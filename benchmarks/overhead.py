"""Benchmark: snapshots, slowdown and CPU per snapshot of plop's sampler thread vs other profilers.

    python benchmarks/overhead.py                  # full run, about 5 minutes
    python benchmarks/overhead.py --quick          # smoke run, seconds, numbers meaningless
    python benchmarks/overhead.py --no-reference   # leave out plop 0.4.0 (no download)
    python benchmarks/overhead.py --no-pyspy       # leave out py-spy (no download)

Why this shape. The question issue 11 asks is what users get: does a thread
pool whose main thread waits get sampled at the asked rate, what does
sampling slow down, and what does a snapshot cost the machine. So each
measurement is a whole profiled program in its own fresh ``python -S``
process, profiled the way each profiler is normally used, and every figure
is a ratio against an unprofiled run of the same work in the same round: on
a shared 2-vCPU VM the same work drifts by percents from one minute to the
next, far more than 100 samples a second cost.

Workloads (benchmarks/_overhead_workload.py): ``pool``, the issue's program
(``ThreadPoolExecutor(2)`` mapping a pure-Python ``burn(3_000_000)`` over 8
items while the main thread waits); ``main``, pure-Python work on the main
thread 30 frames deep, ~1.5 s.

Profilers, all sampling wall-clock time at 100 Hz and 1000 Hz:
plop's new sampler thread, compiled and pure-Python (``PLOP_PURE_PYTHON=1``),
``Collector(1/rate, mode="real")``; today's signal sampler, the same call
into commit 062fc34 (the release before the sampler thread), extracted with
``git archive`` into benchmarks/.cache/ and built there; plop 0.4.0 from PyPI
(its Collector, mode "real"); py-spy (``py-spy record -r RATE --format raw
--threads --idle``: ``--idle`` so that the waiting main thread's samples are
kept and can be counted).

Rounds: every configuration once per round (the baseline twice: the second
run is a control showing the machine's own noise), in a shuffled order;
figures are medians over rounds, ± half the interquartile range over rounds.

* snapshots/s: plop's ``samples_taken`` (and 0.4.0's) over the time the
  collector ran; for py-spy, the samples of the main thread inside the
  measured work (one per snapshot, thanks to ``--idle``) over its wall time.
* slowdown: wall time of the work / the mean of the round's two baseline runs.
* CPU/snapshot, outside: (user + sys CPU of the whole run from ``os.wait4``,
  minus the round's baseline mean) / snapshots. For py-spy the process waited
  for is py-spy itself, so this includes py-spy's own CPU and its child's.
  It includes fixed costs (imports, py-spy attaching), which dominate at 100 Hz.
* marginal CPU/snapshot (on the 1000 Hz rows): (CPU at 1000 Hz - CPU at
  100 Hz) / (snapshots at 1000 Hz - at 100 Hz), per round: fixed costs cancel.
* own figure: what the profiler says about itself: the new sampler's
  ``sampler_cpu_time / samples_taken`` (CPU of its own thread only, not what
  it costs the threads it interrupts); the signal samplers' ``sample_time``
  per sample (wall time inside the handler); py-spy's own process CPU per
  snapshot (wait4 of py-spy minus the CPU its child reported at exit).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CHILD = os.path.join(HERE, "_overhead_workload.py")
CACHE = os.path.join(HERE, ".cache")
REFERENCE = os.path.join(CACHE, "plop-0.4.0")
SIGNAL_COMMIT = "062fc34"
SIGNAL_TREE = os.path.join(CACHE, f"plop-{SIGNAL_COMMIT}")
PYSPY_TARGET = os.path.join(CACHE, "py-spy")

WORKLOADS = ["pool", "main"]
WORKLOAD_LABELS = {"pool": "thread pool, main waits", "main": "main thread busy, depth 30"}
PROFILERS = ["new", "pure", "signal", "plop040", "pyspy"]
LABELS = {
    "baseline": "no profiler",
    "control": "no profiler, 2nd run (noise control)",
    "new": "plop sampler thread (C)",
    "pure": "plop sampler thread (pure Python)",
    "signal": f"today's signal sampler ({SIGNAL_COMMIT})",
    "plop040": "plop 0.4.0",
    "pyspy": "py-spy record",
}
RATES = [100.0, 1000.0]


# --------------------------------------------------------------------------
# set-up: the profilers compared


def pip(*cmd: str) -> str | None:
    """Run pip; None, or why it failed."""
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *cmd],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return f"`pip {' '.join(cmd)}` failed: {proc.stderr.strip()[-500:]}"
    return None


def fetch_reference() -> str | None:
    """Install plop 0.4.0 (and six) into the cache once; return an error or None."""
    if os.path.exists(os.path.join(REFERENCE, "plop", "collector.py")):
        return None
    download = os.path.join(CACHE, "download")
    os.makedirs(download, exist_ok=True)
    print("fetching plop 0.4.0 from PyPI into", os.path.relpath(REFERENCE), file=sys.stderr)
    error = pip("download", "--no-deps", "plop==0.4.0", "-d", download)
    if error:
        return error
    archives = [os.path.join(download, name) for name in os.listdir(download)
                if name.lower().startswith("plop-0.4.0")]
    if not archives:
        return "pip download left no plop-0.4.0 archive"
    error = pip("install", "--no-deps", "--target", REFERENCE, "--upgrade", archives[0], "six")
    if error:
        return error
    if not os.path.exists(os.path.join(REFERENCE, "plop", "collector.py")):
        return "plop 0.4.0 did not install where expected"
    return None


def prepare_signal_sampler() -> str | None:
    """Extract commit 062fc34's plop into the cache and build its extension; an error or None.

    The release before the sampler thread is measured from its own source, not
    kept runnable in plop/: its timer signal is exactly what the new design removed.
    """
    built = os.path.join(SIGNAL_TREE, "plop")
    if os.path.isdir(built) and any(n.startswith("_sampler.") and n.endswith(".so") for n in os.listdir(built)):
        return None
    shutil.rmtree(SIGNAL_TREE, ignore_errors=True)
    os.makedirs(SIGNAL_TREE)
    archive = subprocess.run(["git", "-C", REPO, "archive", SIGNAL_COMMIT, "plop", "setup.py", "pyproject.toml",
                              "README.md", "MANIFEST.in"], capture_output=True)
    if archive.returncode != 0:
        shutil.rmtree(SIGNAL_TREE, ignore_errors=True)
        why = archive.stderr.decode(errors="replace").strip().splitlines()
        return f"git history unavailable ({why[-1] if why else 'git archive failed'})"
    subprocess.run(["tar", "-x", "-C", SIGNAL_TREE], input=archive.stdout, check=True)
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=SIGNAL_TREE,
                           capture_output=True, text=True)
    if build.returncode != 0 or not any(n.startswith("_sampler.") for n in os.listdir(built)):
        return f"its extension did not build: {build.stderr.strip()[-300:]}"
    return None


def find_pyspy(install: bool) -> tuple[str | None, str | None]:
    """(path of py-spy, None) or (None, why not): on PATH, in the cache, or installed there with pip."""
    cached = os.path.join(PYSPY_TARGET, "bin", "py-spy")
    for path in (shutil.which("py-spy"), cached):
        if path and os.access(path, os.X_OK):
            return path, None
    if not install:
        return None, "not installed"
    print("installing py-spy from PyPI into", os.path.relpath(PYSPY_TARGET), file=sys.stderr)
    error = pip("install", "--target", PYSPY_TARGET, "--upgrade", "py-spy")
    if error:
        return None, error
    if not os.access(cached, os.X_OK):
        return None, "pip installed no py-spy binary"
    return cached, None


def child_env(profiler: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = {"plop040": REFERENCE, "signal": SIGNAL_TREE}.get(profiler, REPO)
    env["PYTHONHASHSEED"] = "0"
    env.pop("PLOP_PURE_PYTHON", None)
    if profiler == "pure":
        env["PLOP_PURE_PYTHON"] = "1"
    return env


def check_module(profiler: str, result: dict) -> None:
    """Every run must have profiled with the plop it was meant to."""
    where = result.get("module")
    home = {"plop040": REFERENCE, "signal": SIGNAL_TREE}.get(profiler, REPO)
    if profiler in ("new", "pure", "signal", "plop040"):
        assert where and where.startswith(home + os.sep), f"{profiler}: plop imported from {where}"
    want = {"new": "plop._sampler", "pure": "plop._pysampler"}.get(profiler)
    if want:
        assert result.get("sampler") == want, f"{profiler} ran with {result.get('sampler')}"


# --------------------------------------------------------------------------
# one run


def pyspy_snapshots(raw: str) -> int:
    """Samples of the main thread inside the measured work, in py-spy's raw (collapsed) output.

    With --threads each line starts with the thread; with --idle a waiting
    thread is kept, so the main thread has exactly one sample per snapshot.
    """
    total = 0
    with open(raw) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if "MainThread" in stack and "run_measured (" in stack:
                total += int(count)
    return total


def run_one(profiler: str, workload: str, rate: float, scale: float, pyspy: str | None, tmp: str) -> dict:
    """One fresh process; its JSON record plus the CPU os.wait4 saw, or {"error": why}."""
    kind = {"baseline": "none", "control": "none", "pyspy": "none", "pure": "new"}.get(profiler, profiler)
    cmd = [sys.executable, "-S", CHILD, kind, workload, repr(rate), repr(scale)]
    raw = os.path.join(tmp, "pyspy.txt")
    if profiler == "pyspy":
        cmd = [pyspy, "record", "-r", str(int(rate)), "--format", "raw", "--threads", "--idle",
               "-o", raw, "--"] + cmd
    load = os.getloadavg()[0]
    with open(os.path.join(tmp, "out"), "w+") as out, open(os.path.join(tmp, "err"), "w+") as err:
        proc = subprocess.Popen(cmd, env=child_env(profiler), stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        lines = [line for line in out.read().splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = err.read().strip().splitlines() or ["no output"]
            return {"profiler": profiler, "workload": workload, "rate": rate, "error": tail[-1][:200]}
    result = json.loads(lines[-1])
    result.update(profiler=profiler, load=load, cpu_total=usage.ru_utime + usage.ru_stime)
    check_module(profiler, result)
    if profiler == "pyspy":
        result["samples"] = pyspy_snapshots(raw)
        result["span"] = result["wall"]
        result["pyspy_cpu"] = result["cpu_total"] - result["cpu_exit"]
    return result


def run_rounds(profilers: list[str], rounds: int, scale: float, pyspy: str | None, started: float) -> list[dict]:
    jobs = [(w, p, 0.0) for w in WORKLOADS for p in ("baseline", "control")]
    jobs += [(w, p, r) for w in WORKLOADS for p in profilers for r in RATES]
    print(f"{len(jobs)} runs per round x {rounds} rounds", file=sys.stderr)
    rng = random.Random(2012)
    runs = []
    with tempfile.TemporaryDirectory(prefix="plop-overhead-") as tmp:
        for r in range(rounds):
            order = list(jobs)
            rng.shuffle(order)
            loads = []
            for w, p, rate in order:
                res = run_one(p, w, rate, scale, pyspy, tmp)
                res["round"] = r
                runs.append(res)
                loads.append(os.getloadavg()[0])
            print(f"  round {r + 1}/{rounds} done ({time.monotonic() - started:.0f} s, "
                  f"load average {min(loads):.2f}-{max(loads):.2f})", file=sys.stderr)
    return runs


# --------------------------------------------------------------------------
# statistics


def median_noise(values: list[float]) -> tuple[float | None, float | None]:
    """Median and half the interquartile range (None with fewer than 4 values)."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    noise = None
    if len(values) >= 4:
        q1, _, q3 = statistics.quantiles(values, n=4)
        noise = (q3 - q1) / 2
    return statistics.median(values), noise


def summarise(runs: list[dict], profilers: list[str]) -> tuple[dict, list[str]]:
    """Figures per (workload, profiler, rate), paired with each round's baseline."""
    notes = []
    ok = [run for run in runs if "error" not in run]
    for run in runs:
        if "error" in run:
            notes.append(f"{LABELS[run['profiler']]}, {run['workload']} at {run['rate']:g} Hz, round "
                         f"{run['round'] + 1} failed and is left out: {run['error']}")
    index = {(run["workload"], run["profiler"], run["rate"], run["round"]): run for run in ok}
    rounds = sorted({run["round"] for run in runs})
    out: dict = {}
    for w in WORKLOADS:
        base = {}
        for r in rounds:
            pair = [index.get((w, p, 0.0, r)) for p in ("baseline", "control")]
            pair = [run for run in pair if run]
            if pair:
                base[r] = (statistics.fmean(run["wall"] for run in pair),
                           statistics.fmean(run["cpu_total"] for run in pair))
        controls = [index[(w, "control", 0.0, r)]["wall"] / index[(w, "baseline", 0.0, r)]["wall"]
                    for r in rounds if (w, "control", 0.0, r) in index and (w, "baseline", 0.0, r) in index]
        out[(w, "baseline", 0.0)] = {
            "wall": median_noise([b[0] for b in base.values()]),
            "cpu": median_noise([b[1] for b in base.values()]),
            "control": median_noise(controls),
        }
        for p in profilers:
            for rate in RATES:
                mine = {r: index[(w, p, rate, r)] for r in rounds if (w, p, rate, r) in index}
                paired = {r: run for r, run in mine.items() if r in base}
                per_s = [run["samples"] / run["span"] for run in mine.values() if run["span"] > 0]
                s = {
                    "rounds": len(mine),
                    "rate": median_noise(per_s),
                    "share_min": min(per_s) / rate if per_s else None,
                    "slowdown": median_noise([run["wall"] / base[r][0] for r, run in paired.items()]),
                    "cpu_per": median_noise([(run["cpu_total"] - base[r][1]) / run["samples"]
                                             for r, run in paired.items() if run["samples"]]),
                }
                if p in ("new", "pure"):
                    s["own"] = median_noise([run["sampler_cpu_time"] / run["samples"]
                                             for run in mine.values() if run["samples"]])
                    s["gil_wait"] = median_noise([run["gil_wait"] / run["samples"]
                                                  for run in mine.values() if run["samples"]])
                    s["late"] = median_noise([run["late"] / run["samples"]
                                              for run in mine.values() if run["samples"]])
                    s["inline"] = median_noise([run.get("inline", 0) / run["samples"]
                                                for run in mine.values() if run["samples"]])
                elif p in ("signal", "plop040"):
                    s["own"] = median_noise([run["sample_time"] / run["samples"]
                                             for run in mine.values() if run["samples"]])
                else:
                    s["own"] = median_noise([run["pyspy_cpu"] / run["samples"]
                                             for run in mine.values() if run["samples"]])
                if rate == RATES[-1]:
                    low = {r: index[(w, p, RATES[0], r)] for r in rounds if (w, p, RATES[0], r) in index}
                    s["marginal"] = median_noise([
                        (run["cpu_total"] - low[r]["cpu_total"]) / (run["samples"] - low[r]["samples"])
                        for r, run in mine.items() if r in low and run["samples"] > low[r]["samples"]])
                out[(w, p, rate)] = s
    return out, notes


def fmt_us(pair: tuple[float | None, float | None] | None) -> str:
    if not pair or pair[0] is None:
        return "—"
    value, noise = pair
    text = f"{value * 1e6:,.0f} µs" if abs(value) >= 1e-4 else f"{value * 1e6:.1f} µs"
    if noise is not None:
        text += f" ±{noise * 1e6:,.0f}" if noise >= 1e-4 else f" ±{noise * 1e6:.1f}"
    return text


def fmt_x(pair: tuple[float | None, float | None] | None) -> str:
    if not pair or pair[0] is None:
        return "—"
    value, noise = pair
    return f"{value:.3f}×" + (f" ±{noise:.3f}" if noise is not None else "")


OWN_LABELS = {"new": "sampler thread CPU", "pure": "sampler thread CPU", "signal": "in handler (wall)",
              "plop040": "in handler (wall)", "pyspy": "py-spy process CPU"}


def table(summary: dict, profilers: list[str]) -> list[str]:
    header = ["workload", "profiler", "Hz", "snapshots/s", "of asked", "slowdown", "CPU/snapshot, outside",
              "marginal CPU/snapshot", "profiler's own figure"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for w in WORKLOADS:
        b = summary[(w, "baseline", 0.0)]
        wall, cpu = b["wall"][0], b["cpu"][0]
        lines.append(f"| {WORKLOAD_LABELS[w]} | {LABELS['baseline']} | — | — | — | 1 (wall {wall:.2f} s, "
                     f"CPU {cpu:.2f} s) | — | — | — |")
        lines.append(f"| {WORKLOAD_LABELS[w]} | {LABELS['control']} | — | — | — | {fmt_x(b['control'])} "
                     f"(vs 1st run) | — | — | — |")
        for p in profilers:
            for rate in RATES:
                s = summary[(w, p, rate)]
                if not s["rounds"]:
                    lines.append(f"| {WORKLOAD_LABELS[w]} | {LABELS[p]} | {rate:g} | every run failed | | | | | |")
                    continue
                per_s = s["rate"][0]
                own = fmt_us(s["own"])
                if own != "—":
                    own += f" ({OWN_LABELS[p]})"
                if "gil_wait" in s and s["gil_wait"][0] is not None:
                    own += f"; GIL wait {s['gil_wait'][0] * 1e3:.2f} ms/snapshot"
                if s.get("inline") and s["inline"][0]:
                    own += f"; {s['inline'][0]:.0%} taken by the main thread itself"
                lines.append(
                    f"| {WORKLOAD_LABELS[w]} | {LABELS[p]} | {rate:g} | {per_s:.0f} | {per_s / rate:.0%} "
                    f"| {fmt_x(s['slowdown'])} | {fmt_us(s['cpu_per'])} | {fmt_us(s.get('marginal'))} | {own} |")
    return lines


# --------------------------------------------------------------------------
# verdicts


def judge(value: float, noise: float | None, limit: float) -> str:
    """PASS/FAIL when the median is on one side of the limit by more than the noise."""
    noise = noise or 0.0
    if value + noise <= limit:
        return "PASS"
    if value - noise > limit:
        return "FAIL"
    return "PASS within noise" if value <= limit else "FAIL within noise"


def verdicts(summary: dict, profilers: list[str]) -> list[str]:
    if "new" not in profilers:
        return ["No verdicts: the compiled sampler was not built (`python3 setup.py build_ext --inplace`)."]
    out = []
    low, high = RATES
    for w in WORKLOADS:
        s = summary[(w, "new", low)]
        share, share_min = s["rate"][0] / low, s["share_min"]
        out.append(f"{'PASS' if share >= 0.95 else 'FAIL'}: {w}, {low:g} Hz: snapshots {share:.1%} of asked "
                   f"(median; worst round {share_min:.1%}); target >= 95%")
    for rate, limit in ((low, 1.01), (high, 1.10)):
        for w in WORKLOADS:
            value, noise = summary[(w, "new", rate)]["slowdown"]
            control = summary[(w, "baseline", 0.0)]["control"]
            ctl = f"; baseline-vs-baseline control {control[0]:.3f}×" if control[0] is not None else ""
            out.append(f"{judge(value, noise, limit)}: {w}, {rate:g} Hz: slowdown {value:.3f}× "
                       f"±{noise or 0:.3f} (target <= {limit:.2f}{ctl})")
    parts = []
    for w in WORKLOADS:
        s = summary[(w, "new", high)]
        text = f"{w} {s['rate'][0]:.0f}/s ({s['rate'][0] / high:.0%} of asked"
        if s.get("gil_wait") and s["gil_wait"][0] is not None:
            text += f", GIL wait {s['gil_wait'][0] * 1e3:.2f} ms per snapshot"
        if "pyspy" in profilers and summary[(w, "pyspy", high)]["rounds"]:
            text += f"; py-spy, which needs no GIL, {summary[(w, 'pyspy', high)]['rate'][0]:.0f}/s"
        parts.append(text + ")")
    out.append(f"REPORT: {high:g} Hz, snapshots the GIL allows: " + "; ".join(parts))
    if "signal" in profilers:
        for rate in (high, low):
            new, old = summary[("main", "new", rate)], summary[("main", "signal", rate)]
            if new["cpu_per"][0] is None or old["cpu_per"][0] is None:
                continue
            value = new["cpu_per"][0] - old["cpu_per"][0]
            noise = ((new["cpu_per"][1] or 0) ** 2 + (old["cpu_per"][1] or 0) ** 2) ** 0.5
            extra = ""
            if rate == high and new.get("marginal") and old.get("marginal") and \
                    new["marginal"][0] is not None and old["marginal"][0] is not None:
                extra = (f"; marginal {fmt_us(new['marginal'])} vs {fmt_us(old['marginal'])}")
            out.append(f"{judge(value, noise, 0.0)}: main, {rate:g} Hz: CPU per snapshot, outside "
                       f"{fmt_us(new['cpu_per'])} vs today's signal sampler {fmt_us(old['cpu_per'])} "
                       f"(target: no worse){extra}")
    else:
        out.append("NO VERDICT: per-snapshot cost vs today's signal sampler: it could not be run (see notes)")
    return out


# --------------------------------------------------------------------------
# main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a fast smoke run: 1 round of tiny runs (numbers are noise)")
    parser.add_argument("--no-reference", action="store_true", help="leave out plop 0.4.0 (no download)")
    parser.add_argument("--no-pyspy", action="store_true", help="leave out py-spy (no download)")
    parser.add_argument("--rounds", type=int, help="rounds of interleaved runs (default 7, quick 1)")
    parser.add_argument("--json", metavar="PATH", help="also write every raw measurement here")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 7)
    scale = 0.03 if args.quick else 1.0
    started = time.monotonic()
    load_start = os.getloadavg()

    notes = []
    profilers = list(PROFILERS)
    probe = subprocess.run([sys.executable, "-S", "-c", "import plop._sampler"], env=child_env("new"),
                           capture_output=True, text=True)
    if probe.returncode != 0:
        profilers.remove("new")
        notes.append("plop's compiled sampler is not built, its rows are left out: build it with "
                     "`python3 setup.py -q build_ext --inplace`")
    error = prepare_signal_sampler()
    if error:
        profilers.remove("signal")
        notes.append(f"today's signal sampler ({SIGNAL_COMMIT}) left out: {error}")
    if args.no_reference:
        profilers.remove("plop040")
        notes.append("plop 0.4.0 left out (--no-reference).")
    else:
        error = fetch_reference()
        if error:
            profilers.remove("plop040")
            notes.append(f"plop 0.4.0 unavailable, its rows are left out: {error}")
    pyspy = None
    if args.no_pyspy:
        profilers.remove("pyspy")
        notes.append("py-spy left out (--no-pyspy).")
    else:
        pyspy, error = find_pyspy(install=True)
        if error:
            profilers.remove("pyspy")
            notes.append(f"py-spy unavailable, its rows are left out: {error}")

    runs = run_rounds(profilers, rounds, scale, pyspy, started)
    load_end = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": platform.python_version(), "cpus": os.cpu_count(), "rounds": rounds,
                       "scale": scale, "load_start": load_start, "load_end": load_end, "runs": runs}, f, indent=1)
    summary, run_notes = summarise(runs, profilers)
    notes += run_notes
    loads = [run["load"] for run in runs if "load" in run]

    print(f"## plop sampling overhead — Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{platform.machine()}, {time.strftime('%Y-%m-%d')}")
    print()
    print(f"{rounds} rounds, every run a fresh process, configurations shuffled within each round; "
          "medians over rounds ± half the interquartile range. Wall-clock sampling (plop mode \"real\"). "
          "Slowdown and CPU are against the mean of the round's two baseline runs. py-spy's CPU "
          "includes py-spy's own process. Load average (1 min) during the runs: "
          f"{min(loads):.2f}-{max(loads):.2f} (at start {load_start[0]:.2f}, at end {load_end[0]:.2f}); "
          "highest per round: " + ", ".join(
              f"{max(run['load'] for run in runs if run['round'] == r and 'load' in run):.1f}"
              for r in sorted({run['round'] for run in runs if 'load' in run})) + ".")
    print()
    print("\n".join(table(summary, profilers)))
    print()
    for note in notes:
        print(f"* {note}")
    if args.quick:
        print("* --quick: tiny runs, one round: the numbers mean nothing.")
    print(f"* total time {time.monotonic() - started:.0f} s.")
    print()
    print("### Verdicts (issue 11 targets, plop's compiled sampler thread)")
    print()
    for line in verdicts(summary, profilers):
        print(f"* {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
