"""Every thread sampled at the asked rate whatever the main thread does, and CPU
charged to the code that spent it.

These are the shapes of program a timer signal could not profile: Python runs
signal handlers on the main thread only, so while it waited (``join()``,
``future.result()``, ``queue.get()``, ``Event.wait()``, a lock, ``sleep``,
``select``) nothing was sampled. Each test runs the workload long enough for a
few hundred snapshots and compares shares with binomial tolerances.

The pure sampler waits for the GIL like any Python thread: while another
thread computes, each of its snapshots waits up to the switch interval (5 ms),
so its rate is bounded lower than the compiled sampler's, which asks the GIL
holder to let go at once (see plop/_sampler.c).
"""
from __future__ import annotations

import math
import os
import queue
import select
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from plop.collector import Collector
from plop.profile import Profile
from tests.test_collector import share_counts

pytestmark = pytest.mark.usefixtures("sampler_class")

INTERVAL = 0.01  # 100 Hz, the rate the issue asks for


def min_rate(sampler_class) -> float:
    """The share of the asked snapshots each sampler must reach with a thread computing.

    The pure sampler waits for the GIL like any thread, a switch interval or two
    against two computing threads: it reached 0.52-0.90 of the asked rate on the
    thread pool, run after run on this 2-core VM. The old signal sampler took 6%.
    """
    return 0.9 if getattr(sampler_class, "prompt_gil", False) else 0.45


def tolerance(p: float, n: int, sigmas: float = 4.0) -> float:
    return sigmas * math.sqrt(p * (1 - p) / max(n, 1)) + 0.04


def burn(units: int) -> int:
    total = 0
    for i in range(units * 1000):
        total += i * i
    return total


def busy_a() -> None:
    end = time.thread_time() + 0.003
    while time.thread_time() < end:
        burn(1)


def busy_b() -> None:
    end = time.thread_time() + 0.001
    while time.thread_time() < end:
        burn(1)


def worker_loop(seconds: float) -> None:
    """Spend CPU in busy_a and busy_b in the ratio 3:1 for ``seconds`` of wall time."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        busy_a()
        busy_b()


def shares_in(profile: Profile, thread_prefix: str, names: list[str]) -> tuple[dict[str, float], int]:
    """`share_counts` over the threads whose names start with ``thread_prefix``."""
    return share_counts(profile, names, lambda thread: thread.startswith(thread_prefix))


def check_rate(collector: Collector, sampler_class, seconds: float) -> None:
    asked = seconds / collector.interval
    assert collector.samples_taken >= min_rate(sampler_class) * asked, (
        "%d snapshots of %.0f asked (%d late, %.2f ms waiting for the GIL per snapshot)"
        % (collector.samples_taken, asked, collector.late, 1e3 * collector.gil_wait / max(1, collector.samples_taken)))


# -- the main thread waits, a worker computes -------------------------------------------


def wait_join(seconds):
    t = threading.Thread(target=worker_loop, args=(seconds,), name="worker")
    t.start()
    t.join()


def wait_future(seconds):
    with ThreadPoolExecutor(1, thread_name_prefix="worker") as ex:
        ex.submit(worker_loop, seconds).result()


def wait_queue(seconds):
    q: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: (worker_loop(seconds), q.put(1)), name="worker").start()
    q.get()


def wait_event(seconds):
    ev = threading.Event()
    threading.Thread(target=lambda: (worker_loop(seconds), ev.set()), name="worker").start()
    ev.wait()


def wait_lock(seconds):
    lock = threading.Lock()
    held = threading.Event()

    def work():
        with lock:
            held.set()
            worker_loop(seconds)

    threading.Thread(target=work, name="worker").start()
    held.wait()
    lock.acquire()
    lock.release()


def wait_sleep(seconds):
    t = threading.Thread(target=worker_loop, args=(seconds,), name="worker")
    t.start()
    time.sleep(seconds)
    t.join()


def wait_select(seconds):
    r, w = os.pipe()
    try:
        threading.Thread(target=lambda: (worker_loop(seconds), os.write(w, b"x")), name="worker").start()
        select.select([r], [], [])
    finally:
        os.close(r)
        os.close(w)


WAITS = [wait_join, wait_future, wait_queue, wait_event, wait_lock, wait_sleep, wait_select]


@pytest.mark.parametrize("wait", WAITS, ids=[w.__name__[5:] for w in WAITS])
def test_every_wait_of_the_main_thread_is_sampled_through(wait, sampler_class):
    seconds = 2.0
    with Collector(interval=INTERVAL, mode="real") as collector:
        t0 = time.monotonic()
        wait(seconds)
        elapsed = time.monotonic() - t0
    check_rate(collector, sampler_class, elapsed)
    profile = collector.profile()
    # The main thread is seen waiting all along, the worker working.
    main, n_main = shares_in(profile, "MainThread", [wait.__name__])
    assert main[wait.__name__] > 0.95
    cpu, n_cpu = shares_in(profile.cpu(), "worker", ["busy_a", "busy_b"])
    assert cpu["busy_a"] == pytest.approx(0.75, abs=tolerance(0.75, n_cpu))
    assert cpu["busy_b"] == pytest.approx(0.25, abs=tolerance(0.25, n_cpu))


# -- the thread pool ------------------------------------------------------------


def pool_burn(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


@pytest.mark.parametrize("mode", ["prof", "real"])
def test_thread_pool_is_sampled_at_the_asked_rate(mode, sampler_class):
    cpu0, t0 = time.process_time(), time.monotonic()
    with Collector(interval=INTERVAL, mode=mode) as collector:
        with ThreadPoolExecutor(2, thread_name_prefix="pool") as ex:
            sum(ex.map(pool_burn, [3_000_000] * 8))
    spent = (time.process_time() - cpu0) if mode == "prof" else (time.monotonic() - t0)
    check_rate(collector, sampler_class, spent)
    profile = collector.profile()
    cpu, n = shares_in(profile.cpu(), "pool", ["pool_burn"])
    assert cpu["pool_burn"] > 0.9
    # Two threads taking turns on the GIL: CPU counts add up to about the CPU spent.
    cpu_seconds = profile.cpu().total_samples * INTERVAL
    used = time.process_time() - cpu0
    assert cpu_seconds == pytest.approx(used, rel=0.35), (cpu_seconds, used)


# -- real mode: sleeping workers --------------------------------------------------------


def nap_a():
    time.sleep(0.02)


def nap_b():
    time.sleep(0.01)


def napper(stop):
    while not stop.is_set():
        nap_a()
        nap_b()


def test_wall_shares_of_sleeping_workers(sampler_class):
    stop = threading.Event()
    threads = [threading.Thread(target=napper, args=(stop,), name="napper-%d" % i) for i in range(3)]
    with Collector(interval=INTERVAL, mode="real") as collector:
        for t in threads:
            t.start()
        threads[0].join(2.0)
        stop.set()
        for t in threads:
            t.join()
    # Nothing computes, so the GIL is always free: every sampler keeps up.
    assert collector.samples_taken >= 0.9 * collector.duration / INTERVAL
    wall, n = shares_in(collector.profile(), "napper", ["nap_a", "nap_b"])
    assert wall["nap_a"] == pytest.approx(2 / 3, abs=tolerance(2 / 3, n))
    assert wall["nap_b"] == pytest.approx(1 / 3, abs=tolerance(1 / 3, n))


# -- CPU charged to the code that spent it ---------------------------------------------


BURST_TIME = [0.0]


def short_burst():
    t0 = time.monotonic()
    end = time.thread_time() + 0.002
    while time.thread_time() < end:
        pass
    BURST_TIME[0] += time.monotonic() - t0


def burst_then_select(stop, r):
    while not stop.is_set():
        short_burst()
        select.select([r], [], [], 0.008)


def skip_pure(sampler_class) -> None:
    if not getattr(sampler_class, "prompt_gil", False):
        pytest.skip("the pure sampler charges a thread's CPU since its previous snapshot to the "
                    "stack it has at the snapshot (documented in plop/_pysampler.py)")


def test_short_cpu_bursts_before_a_wait_are_charged_to_the_burst(sampler_class):
    """2 ms of CPU in short_burst(), then 8 ms blocked in select: the CPU view shows the burst.

    Charging a thread's CPU since its previous snapshot to the stack it has at
    the snapshot would put most of it on the select; the compiled sampler
    reads each thread's state at the tick, before it takes the GIL.
    """
    skip_pure(sampler_class)
    stop = threading.Event()
    r, w = os.pipe()
    t = threading.Thread(target=burst_then_select, args=(stop, r), name="bursty")
    BURST_TIME[0] = 0.0
    try:
        with Collector(interval=INTERVAL, mode="real") as collector:
            t0 = time.monotonic()
            t.start()
            t.join(4.0)
            stop.set()
            t.join()
            elapsed = time.monotonic() - t0
    finally:
        os.close(r)
        os.close(w)
    cpu, n = shares_in(collector.profile().cpu(), "bursty", ["short_burst"])
    assert n >= 40
    assert cpu["short_burst"] >= 0.9, cpu
    # and the wall view still sees the thread waiting most of the time
    wall, n_wall = shares_in(collector.profile(), "bursty", ["short_burst"])
    expected = BURST_TIME[0] / elapsed
    assert wall["short_burst"] == pytest.approx(expected, abs=tolerance(expected, n_wall))


def test_a_tornado_servers_cpu_view_puts_its_handlers_on_top(sampler_class):
    """A Tornado app under a bounded local load: the handlers' work, not the event loop's wait."""
    skip_pure(sampler_class)
    import asyncio
    import urllib.request

    import tornado.web

    class Handler(tornado.web.RequestHandler):
        def get(self):
            self.write(str(handler_work()))

    async def serve_and_load() -> None:
        app = tornado.web.Application([(r"/", Handler)])
        server = app.listen(0, "127.0.0.1")
        port = next(iter(server._sockets.values())).getsockname()[1]  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()

        def client():
            for _ in range(150):
                with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=10) as response:
                    response.read()
                time.sleep(0.004)  # a client with think time: the server also idles

        await loop.run_in_executor(None, client)
        server.stop()

    with Collector(interval=INTERVAL, mode="real") as collector:
        asyncio.run(serve_and_load())
    cpu = collector.profile().cpu()
    shares, n = shares_in(cpu, "MainThread", ["handler_work", "select", "poll"])
    assert n >= 30
    assert shares["handler_work"] >= 0.5, shares
    assert shares["select"] + shares["poll"] <= 0.2, shares


def handler_work() -> int:
    end = time.thread_time() + 0.003
    total = 0
    while time.thread_time() < end:
        total += burn(1)
    return total

