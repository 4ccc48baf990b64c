"""Benchmark: what one sample costs, plop vs the original plop 0.4.0.

    python benchmarks/overhead.py            # full run, a few minutes
    python benchmarks/overhead.py --quick    # smoke run, seconds
    python benchmarks/overhead.py --no-reference   # skip plop 0.4.0 (no network)

Rows (each measurement in its own fresh ``python -S`` process, configurations
shuffled within each round, medians over the rounds):

* no profiler (the baseline);
* the floor: a Python signal handler that only counts its calls, on the same
  ITIMER_REAL/SIGALRM timer: what any Python-level signal sampler pays before
  doing anything (kernel delivery, the eval-loop check, one Python call);
* plop 0.4.0's Collector from PyPI (its handler: sys._current_frames(), one
  (filename, lineno, name) tuple per frame, a list per sample), driven like its
  own main(): Collector(interval, mode="real"), start(duration), run, stop();
* plop's pure-Python sampler and plop's compiled sampler, installed directly
  as the signal handler (what plop.collector does), and the compiled one with
  track_cpu=True (as used for wall-clock profiles).

Measurements:

* cost per sample, from outside: (CPU time of the profiled run - CPU time of
  the baseline run of the same round) / samples taken, at a high rate so the
  difference is measurable; CPU time is getrusage(RUSAGE_SELF) user + sys in
  the child around the workload, so it includes signal delivery and any
  garbage the handler leaves behind;
* the same above the floor, and its ratio to plop 0.4.0's above-floor cost;
* the time the plop handlers measure inside themselves (sample_time/samples);
* the slowdown (profiled wall time / baseline wall time) at 100 and 1000 Hz;
* the implied overhead at 100 Hz: cost per sample x 100/s.

Workloads: CPU-bound pure Python with 30 and with 150 frames on the stack, and
four busy threads (the main thread and three others) at depth 30.

plop 0.4.0 is fetched with pip into benchmarks/.cache/ on first use (its
package is also called ``plop``: it only ever runs in its own processes).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CHILD = os.path.join(HERE, "_overhead_workload.py")
CACHE = os.path.join(HERE, ".cache")
REFERENCE = os.path.join(CACHE, "plop-0.4.0")

WORKLOADS = ["depth30", "depth150", "threads4"]
PROFILERS = ["floor", "plop040", "pure", "c", "c_cpu"]
LABELS = {
    "baseline": "no profiler",
    "floor": "floor: no-op Python handler",
    "plop040": "plop 0.4.0 Collector",
    "pure": "plop pure-Python sampler",
    "c": "plop C sampler",
    "c_cpu": "plop C sampler, track_cpu",
}
SLOW_RATES = [100.0, 1000.0]


# --------------------------------------------------------------------------
# setup


def fetch_reference() -> str | None:
    """Install plop 0.4.0 (and six) into the cache once; return an error or None."""
    if os.path.exists(os.path.join(REFERENCE, "plop", "collector.py")):
        return None
    download = os.path.join(CACHE, "download")
    os.makedirs(download, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    print("fetching plop 0.4.0 from PyPI into", os.path.relpath(REFERENCE), file=sys.stderr)
    def pip_run(*cmd: str) -> str | None:
        proc = subprocess.run(pip + list(cmd), capture_output=True, text=True)
        if proc.returncode != 0:
            return f"`pip {' '.join(cmd)}` failed: {proc.stderr.strip()[-500:]}"
        return None

    error = pip_run("download", "--no-deps", "plop==0.4.0", "-d", download)
    if error:
        return error
    archives = [os.path.join(download, name) for name in os.listdir(download)
                if name.lower().startswith("plop-0.4.0")]
    if not archives:
        return "pip download left no plop-0.4.0 archive"
    error = pip_run("install", "--no-deps", "--target", REFERENCE, "--upgrade", archives[0], "six")
    if error:
        return error
    if not os.path.exists(os.path.join(REFERENCE, "plop", "collector.py")):
        return "plop 0.4.0 did not install where expected"
    return None


def child_env(config: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REFERENCE if config == "plop040" else REPO
    env.pop("PLOP_PURE_PYTHON", None)
    return env


def probe_import(config: str, module: str) -> str | None:
    """Can a child of this configuration import module? None, or why not."""
    proc = subprocess.run([sys.executable, "-S", "-c", f"import {module}"],
                          env=child_env(config), capture_output=True, text=True)
    if proc.returncode != 0:
        return proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "import failed"
    return None


def run_child(config: str, workload: str, rate: float, iterations: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-S", CHILD, config, workload, repr(rate), str(iterations)],
        env=child_env(config), capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{config}/{workload}@{rate:g}Hz failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    where = result.get("module")
    if config == "plop040":
        assert where and where.startswith(REFERENCE), f"plop 0.4.0 not imported from the cache: {where}"
    elif config != "baseline" and config != "floor":
        assert where and where.startswith(REPO), f"plop not imported from this checkout: {where}"
    return result


def calibrate(seconds: float) -> int:
    """Iterations for a baseline depth-30 run of about `seconds` CPU seconds."""
    probe_n = 100_000
    cpu = statistics.median(run_child("baseline", "depth30", 0.0, probe_n)["cpu"] for _ in range(3))
    return max(10_000, int(probe_n * seconds / max(cpu, 1e-3)))


# --------------------------------------------------------------------------
# statistics


def med(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values: list[float]) -> float | None:
    """Half the interquartile range, as a noise indicator (needs 4+ values)."""
    values = [v for v in values if v is not None]
    if len(values) < 4:
        return None
    q1, _, q3 = statistics.quantiles(values, n=4)
    return (q3 - q1) / 2


def fmt_us(value: float | None, noise: float | None = None) -> str:
    if value is None:
        return "—"
    text = f"{value * 1e6:.2f} µs"
    if noise is not None:
        text += f" ±{noise * 1e6:.2f}"
    return text


def fmt_x(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}×"


# --------------------------------------------------------------------------
# main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (numbers are noise)")
    parser.add_argument("--no-reference", action="store_true",
                        help="leave out plop 0.4.0 (no download)")
    parser.add_argument("--rounds", type=int, help="rounds of interleaved runs (default 7, quick 2)")
    parser.add_argument("--seconds", type=float,
                        help="CPU seconds of work per run (default 0.5, quick 0.08)")
    parser.add_argument("--rate", type=float, default=4000.0,
                        help="sampling rate for the cost-per-sample runs, Hz (default 4000)")
    parser.add_argument("--json", metavar="PATH", help="also write every raw measurement here")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 7)
    seconds = args.seconds or (0.08 if args.quick else 0.5)
    high = args.rate
    started = time.monotonic()

    notes = []
    profilers = list(PROFILERS)
    if args.no_reference:
        profilers.remove("plop040")
        notes.append("plop 0.4.0 left out (--no-reference).")
    else:
        error = fetch_reference() or probe_import("plop040", "plop.collector")
        if error:
            profilers.remove("plop040")
            notes.append(f"plop 0.4.0 unavailable, row left out: {error}")
    error = probe_import("c", "plop._sampler")
    if error:
        profilers.remove("c")
        profilers.remove("c_cpu")
        notes.append(f"plop C sampler not built, rows left out ({error}); "
                     "build it with `pip install -e .`")

    iterations = calibrate(seconds)
    rates = [high] + [r for r in SLOW_RATES if r != high]
    jobs = [(w, "baseline", 0.0) for w in WORKLOADS]
    jobs += [(w, p, r) for w in WORKLOADS for p in profilers for r in rates]
    print(f"{len(jobs)} runs per round x {rounds} rounds, {iterations} iterations per run",
          file=sys.stderr)

    # results[(workload, config, rate)] = [result of round 0, round 1, ...]
    results: dict[tuple, list[dict]] = {job: [] for job in jobs}
    rng = random.Random(2012)
    for r in range(rounds):
        order = list(jobs)
        rng.shuffle(order)
        for job in order:
            results[job].append(run_child(job[1], job[0], job[2], iterations))
        print(f"round {r + 1}/{rounds} done ({time.monotonic() - started:.0f} s)", file=sys.stderr)

    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"round": i, **res} for runs in results.values() for i, res in enumerate(runs)],
                      f, indent=1)

    # per-round derived numbers
    def cost(w: str, p: str, rate: float) -> list[float | None]:
        out = []
        for base, run in zip(results[(w, "baseline", 0.0)], results[(w, p, rate)]):
            out.append((run["cpu"] - base["cpu"]) / run["samples"] if run["samples"] else None)
        return out

    def slowdown(w: str, p: str, rate: float) -> float | None:
        return med([run["wall"] / base["wall"]
                    for base, run in zip(results[(w, "baseline", 0.0)], results[(w, p, rate)])])

    header = ["workload", "profiler", "samples/s", "cost/sample (outside)", "above floor",
              "in handler", "above floor vs 0.4.0", "slowdown @100 Hz", "slowdown @1000 Hz",
              "overhead @100 Hz"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    summary: dict[tuple, dict] = {}
    for w in WORKLOADS:
        base_runs = results[(w, "baseline", 0.0)]
        depth = base_runs[0]["depth"]
        label_w = {"depth30": f"depth {depth}", "depth150": f"depth {depth}",
                   "threads4": f"4 threads, depth {depth}"}[w]
        lines.append(f"| {label_w} | {LABELS['baseline']} | — | CPU {med([b['cpu'] for b in base_runs]):.3f} s"
                     f" | — | — | — | 1.000× | 1.000× | — |")
        floor_cost = cost(w, "floor", high) if "floor" in profilers else None
        per = {}
        for p in profilers:
            c = cost(w, p, high)
            above = [a - f if a is not None and f is not None else None
                     for a, f in zip(c, floor_cost)]
            runs = results[(w, p, high)]
            inside = med([run["inside"] / run["samples"] for run in runs
                          if run["inside"] is not None and run["samples"]])
            rate_achieved = med([run["samples"] / run["wall"] for run in runs])
            per[p] = {"cost": med(c), "cost_noise": spread(c), "above": med(above),
                      "above_noise": spread(above), "inside": inside, "rate": rate_achieved,
                      "slow100": slowdown(w, p, 100.0), "slow1000": slowdown(w, p, 1000.0)}
        for p in profilers:
            s = per[p]
            ref = per.get("plop040", {}).get("above")
            ratio = "—"
            if p not in ("floor", "plop040") and ref and s["above"] is not None:
                ratio = f"{s['above'] / ref:.3f} (1/{ref / s['above']:.0f})" if s["above"] > 0 else \
                    f"{s['above'] / ref:.3f}"
            elif p == "plop040" and ref:
                ratio = "1"
            overhead = "—" if s["cost"] is None else f"{s['cost'] * 100 * 100:.3f} %"
            lines.append(
                f"| {label_w} | {LABELS[p]} | {s['rate']:.0f} | {fmt_us(s['cost'], s['cost_noise'])}"
                f" | {'—' if p == 'floor' else fmt_us(s['above'], s['above_noise'])}"
                f" | {fmt_us(s['inside'])} | {ratio} | {fmt_x(s['slow100'])} | {fmt_x(s['slow1000'])}"
                f" | {overhead} |")
            summary[(w, p)] = s

    elapsed = time.monotonic() - started
    print()
    print(f"## plop sampling overhead — Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{platform.machine()}")
    print()
    print(f"{rounds} rounds; every run a fresh process; cost/sample measured at {high:g} Hz "
          f"(ITIMER_REAL/SIGALRM); {iterations} iterations of work per run; medians over rounds, "
          f"± half the interquartile range; total {elapsed:.0f} s.")
    print()
    print("\n".join(lines))
    print()
    for note in notes:
        print(f"* {note}")
    if args.quick:
        print("* --quick: too few and too short runs for the numbers to mean anything.")
    print()
    print(verdict(summary, profilers))
    return 0


def verdict(summary: dict, profilers: list[str]) -> str:
    parts = []
    if "c" in profilers:
        c30 = summary[("depth30", "c")]
        if "plop040" in profilers:
            ref = summary[("depth30", "plop040")]["above"]
            if ref and ref > 0 and c30["above"] is not None:
                ratio = c30["above"] / ref
                ok = ratio <= 1 / 3
                parts.append(f"{'PASS' if ok else 'FAIL'}: at depth 30 the C sampler costs "
                             f"{c30['above'] * 1e6:.2f} µs above the floor, {ratio:.3f}× plop 0.4.0's "
                             f"{ref * 1e6:.2f} µs (target ≤ 1/3)")
            else:
                parts.append("no verdict on the 1/3 target: plop 0.4.0's cost above the floor "
                             "was not measurable")
        worst = max((summary[(w, "c")]["cost"] or 0.0) for w in WORKLOADS)
        ok = worst * 100 < 0.005
        parts.append(f"{'PASS' if ok else 'FAIL'}: the C sampler's implied overhead at 100 Hz is at most "
                     f"{worst * 100 * 100:.3f} % (target < 0.5 %)")
    else:
        parts.append("no verdict: the C sampler was not built")
    return "**Verdict:** " + "; ".join(parts) + "."


if __name__ == "__main__":
    sys.exit(main())
