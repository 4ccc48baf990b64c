"""A small program with real work in it, for trying plop.

    python -m plop.collector --mode real examples/busy.py

It renders Tornado templates, round-trips JSON, diffs text, walks a recursive
structure and keeps a worker thread waiting on a queue, so its profile has
several packages, recursion, and a thread that is idle most of the time (which
the wall view shows and the CPU view does not).
"""
import difflib
import json
import queue
import threading
import time

import tornado.template

PAGE = tornado.template.Template(
    "<ul>{% for row in rows %}<li>{{ row['name'] }}: {{ row['value'] }}</li>{% end %}</ul>"
)


def render(rows):
    return PAGE.generate(rows=rows)


def round_trip(rows):
    return json.loads(json.dumps(rows))


def diff(a, b):
    return list(difflib.unified_diff(a, b))


def tree_sum(node):
    """Recursion: plop draws the cycle instead of unrolling it."""
    return node["value"] + sum(tree_sum(child) for child in node["children"])


def make_tree(depth):
    if depth == 0:
        return {"value": 1, "children": []}
    return {"value": depth, "children": [make_tree(depth - 1), make_tree(depth - 1)]}


def logger(jobs):
    """A thread that mostly waits: wall time in queue.get, almost no CPU."""
    while True:
        item = jobs.get()
        if item is None:
            return
        time.sleep(0.001)


def main(seconds=3.0):
    rows = [{"name": "item%d" % i, "value": i * 3.5} for i in range(300)]
    a = [str(i) for i in range(1500)]
    b = [str(i) for i in range(0, 1500, 3)] + a[::7]
    tree = make_tree(12)
    jobs = queue.Queue()
    thread = threading.Thread(target=logger, args=(jobs,), name="logger")
    thread.start()
    end = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < end:
        render(rows)
        round_trip(rows)
        if rounds % 5 == 0:
            diff(a, b)
        tree_sum(tree)
        jobs.put(rounds)
        rounds += 1
    jobs.put(None)
    thread.join()
    print("rounds:", rounds)


if __name__ == "__main__":
    main()
