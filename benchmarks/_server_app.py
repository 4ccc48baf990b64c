"""The benchmark's server: a Tornado app doing real work (templates, JSON, an executor).

``python benchmarks/_server_app.py CONFIG DATADIR`` listens on a free loopback
port, prints it, and serves until SIGTERM. CONFIG is ``off``, or samples per
second for rolling profiles (``real`` mode, 1 s windows) started with
``plop.start`` without an overhead budget, or that rate followed by ``b`` for
the default budget (1%).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tornado.template  # noqa: E402
import tornado.web  # noqa: E402

import plop  # noqa: E402

PAGE = tornado.template.Template("""<html><body><h1>{{ title }}</h1>
<table>{% for row in rows %}<tr><td>{{ row["id"] }}</td><td>{{ row["name"] }}</td>
<td>{{ "%.2f" % row["score"] }}</td></tr>{% end %}</table></body></html>""")

POOL = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="worker")


def compute(n: int) -> list[dict]:
    rows = [{"id": i, "name": "user%d" % i, "score": (i * 7919 % 1000) / 10.0} for i in range(n)]
    rows.sort(key=lambda r: -r["score"])
    return rows


class PageHandler(tornado.web.RequestHandler):
    async def get(self) -> None:
        rows = await asyncio.get_running_loop().run_in_executor(POOL, compute, 150)
        html = PAGE.generate(title="report", rows=rows)
        payload = json.dumps({"rows": rows[:50], "size": len(html)})
        self.set_header("Content-Type", "application/json")
        self.write(payload)


async def main() -> None:
    config, datadir = sys.argv[1], sys.argv[2]
    if config != "off":
        budget = config.endswith("b")
        rate = float(config.rstrip("b"))
        plop.start(datadir=datadir, mode="real", interval=1.0 / rate, window=1.0, service="bench",
                   **({} if budget else {"overhead_budget": None}))
    app = tornado.web.Application([(r"/", PageHandler)])
    server = app.listen(0, "127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    print(port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.stop()
    plop.stop()


if __name__ == "__main__":
    asyncio.run(main())
