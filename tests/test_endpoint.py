"""The trigger endpoint: Tornado ProfileHandler and wsgi_app, against a server doing real work."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import tornado.escape
import tornado.template
import tornado.web

from plop import endpoint, formats

ROOT = Path(__file__).resolve().parents[1]

PAGE = tornado.template.Template("""
<ul>{% for item in items %}<li>{{ item["name"] }}: {{ item["value"] }}</li>{% end %}</ul>
""")


def render_page(n: int) -> bytes:
    items = [{"name": "item%d" % i, "value": i * i} for i in range(n)]
    return PAGE.generate(items=items) + tornado.escape.json_encode(items).encode()


class WorkHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(render_page(300))


@pytest.fixture
def app():
    return tornado.web.Application([
        (r"/work", WorkHandler),
        (r"/debug/plop", endpoint.ProfileHandler),
        (r"/debug/short", endpoint.ProfileHandler, dict(max_seconds=2)),
    ])


async def profile_under_load(http_client, base_url, query: str):
    """Request a profile while other requests keep the server busy."""
    import asyncio

    task = asyncio.ensure_future(http_client.fetch(base_url + "/debug/plop?" + query, raise_error=False))
    n = 0
    while not task.done():
        await http_client.fetch(base_url + "/work")
        n += 1
    response = await task
    assert n > 5
    return response


@pytest.mark.gen_test(timeout=30)
async def test_flamegraph_of_a_busy_server(http_client, base_url):
    response = await profile_under_load(http_client, base_url, "seconds=1&mode=real&format=flamegraph")
    assert response.code == 200, response.body
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.body.decode()
    assert "render_page" in text
    assert "profile-%d-" % os.getpid() in response.headers["Content-Disposition"]
    # the timer is gone and the handler restored
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@pytest.mark.gen_test(timeout=30)
async def test_native_and_cpu_view(http_client, base_url):
    response = await profile_under_load(http_client, base_url, "seconds=1&interval=0.005")
    assert response.code == 200
    assert response.headers["Content-Type"] == "application/json"
    profile = formats.loads(response.body)
    assert profile.metadata["mode"] == "real" and profile.metadata["source"] == "endpoint"
    assert profile.has_cpu and profile.total_samples > 50
    assert any(f.funcname == "render_page" for (_t, stack) in profile.samples for f in stack)
    response = await profile_under_load(http_client, base_url, "seconds=0.5&view=cpu&format=collapsed")
    assert response.code == 200 and b"render_page" in response.body


@pytest.mark.gen_test(timeout=30)
async def test_speedscope(http_client, base_url):
    response = await profile_under_load(http_client, base_url, "seconds=0.5&format=speedscope&mode=prof")
    assert response.code == 200
    doc = json.loads(response.body)
    assert doc["$schema"].startswith("https://www.speedscope.app")


@pytest.mark.gen_test(timeout=30)
async def test_pprof(http_client, base_url):
    response = await profile_under_load(http_client, base_url, "seconds=0.5&format=pprof&mode=real")
    assert response.code == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert ".pb.gz" in response.headers.get("Content-Disposition", "")
    profile = formats.loads(response.body)
    assert response.body.startswith(b"\x1f\x8b") and profile.total_samples > 0 and profile.has_cpu


@pytest.mark.gen_test(timeout=30)
async def test_second_request_gets_409(http_client, base_url):
    import asyncio

    first = asyncio.ensure_future(http_client.fetch(base_url + "/debug/plop?seconds=1", raise_error=False))
    await asyncio.sleep(0.2)
    second = await http_client.fetch(base_url + "/debug/plop?seconds=1", raise_error=False)
    assert second.code == 409
    assert (await first).code == 200
    third = await http_client.fetch(base_url + "/debug/plop?seconds=0.1", raise_error=False)
    assert third.code == 200  # free again


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("query,path", [
    ("seconds=301", "/debug/plop"),
    ("seconds=0", "/debug/plop"),
    ("seconds=-1", "/debug/plop"),
    ("seconds=abc", "/debug/plop"),
    ("seconds=3", "/debug/short"),
    ("mode=wall", "/debug/plop"),
    ("format=pdf", "/debug/plop"),
    ("interval=0", "/debug/plop"),
    ("view=gpu", "/debug/plop"),
])
async def test_bad_parameters_are_400(http_client, base_url, query, path):
    response = await http_client.fetch(base_url + path + "?" + query, raise_error=False)
    assert response.code == 400
    assert response.body.strip()


@pytest.mark.gen_test(timeout=30)
async def test_the_programs_own_signal_handler_is_left_alone(http_client, base_url):
    mine = lambda *a: None  # noqa: E731
    previous = signal.signal(signal.SIGPROF, mine)
    try:
        response = await http_client.fetch(base_url + "/debug/plop?seconds=0.2&mode=prof", raise_error=False)
        assert signal.getsignal(signal.SIGPROF) is mine
    finally:
        signal.signal(signal.SIGPROF, previous)
    assert response.code == 200, response.body
    assert formats.loads(response.body).metadata["mode"] == "prof"


def test_rolling_profiles_answer_the_endpoint_without_a_second_timer(tmp_path):
    script = tmp_path / "server.py"
    script.write_text(textwrap.dedent('''
        import asyncio, json, signal, sys
        sys.path.insert(0, %r)
        import tornado.web
        from tornado.httpclient import AsyncHTTPClient
        import plop
        from plop import endpoint, formats
        from test_endpoint import WorkHandler

        async def main():
            h = plop.start(datadir="d", window=0.5, service="srv", overhead_budget=None)
            sampler = h.collector._sampler
            app = tornado.web.Application([(r"/work", WorkHandler), (r"/p", endpoint.ProfileHandler)])
            server = app.listen(0, "127.0.0.1")
            port = next(iter(server._sockets.values())).getsockname()[1]
            client = AsyncHTTPClient()
            task = asyncio.ensure_future(client.fetch("http://127.0.0.1:%%d/p?seconds=1.2&format=plop" %% port))
            stolen = False
            while not task.done():
                await client.fetch("http://127.0.0.1:%%d/work" %% port)
                stolen |= not sampler.running
            profile = formats.loads((await task).body)
            other = await client.fetch("http://127.0.0.1:%%d/p?seconds=0.1&mode=prof" %% port,
                                       raise_error=False)
            same = await client.fetch("http://127.0.0.1:%%d/p?seconds=0.1&mode=real" %% port,
                                      raise_error=False)
            h.stop()
            print(json.dumps({"source": profile.metadata["source"], "service": profile.metadata["service"],
                              "samples": profile.total_samples, "stolen": stolen,
                              "render": sum(n for (t, s), n in profile.samples.items()
                                            if any(f.funcname == "render_page" for f in s)),
                              "windows": len(h.files), "other": [other.code, other.body.decode()],
                              "same": same.code}))
        asyncio.run(main())
    ''' % str(Path(__file__).parent)))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["source"] == "rolling" and out["service"] == "srv" and not out["stolen"]
    # about 1.2 s of samples at 100/s for the main thread (windows were cut meanwhile)
    assert 40 < out["samples"] < 400 and out["render"] > 0
    assert out["windows"] >= 2
    # a mode the rolling profiles do not run in is refused, and says why
    assert out["other"][0] == 409 and "mode real" in out["other"][1]
    assert out["same"] == 200


# -- WSGI -------------------------------------------------------------------------


def call_wsgi(app, query: str, method: str = "GET"):
    result = {}

    def start_response(status, headers):
        result["status"] = int(status.split()[0])
        result["headers"] = dict(headers)

    body = b"".join(app({"REQUEST_METHOD": method, "QUERY_STRING": query}, start_response))
    return result["status"], result["headers"], body


def busy_thread(stop: threading.Event) -> None:
    while not stop.is_set():
        render_page(100)


def test_wsgi_app_profiles_and_answers():
    stop = threading.Event()
    worker = threading.Thread(target=busy_thread, args=(stop,), name="busy")
    worker.start()
    try:
        status, headers, body = call_wsgi(endpoint.wsgi_app, "seconds=0.5&format=flamegraph&interval=0.005")
    finally:
        stop.set()
        worker.join()
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain")
    assert b"render_page" in body
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL


def test_wsgi_app_bounds_409_and_threads():
    assert call_wsgi(endpoint.wsgi_app, "seconds=301")[0] == 400
    assert call_wsgi(endpoint.make_wsgi_app(max_seconds=1), "seconds=2")[0] == 400
    assert call_wsgi(endpoint.wsgi_app, "seconds=1", method="POST")[0] == 405
    assert endpoint._busy.acquire(blocking=False)
    try:
        assert call_wsgi(endpoint.wsgi_app, "seconds=0.1")[0] == 409
    finally:
        endpoint._busy.release()
    # from a worker thread (a WSGI server's), without rolling profiles
    out = {}
    t = threading.Thread(target=lambda: out.update(r=call_wsgi(endpoint.wsgi_app, "seconds=0.2")))
    t.start()
    t.join()
    assert out["r"][0] == 200 and formats.loads(out["r"][2]).metadata["source"] == "endpoint"
