"""Shaping a profile into the call graph the viewer draws.

Everything here is a pure function of a :class:`~plop.profile.Profile`; the
viewer's handlers only choose the view, the thread and the number of nodes,
and serialise the result.

The graph has **one node per function**, identified by
:attr:`Frame.function <plop.profile.Frame.function>` (file, name and first
line when the source format recorded it, so two methods called ``get`` in one
module stay apart; formats that only kept the executing line merge a
function's frames by file and name). Its counts are

* ``self``: samples in which the function was the innermost frame (the time
  spent in the function's own code), so the ``self`` counts of all nodes add
  up to ``total_samples``;
* ``total``: samples in which the function appears at least once (recursion
  is counted once per sample, so ``total`` never exceeds ``total_samples``);
* per executing line, the same two counts, for the details panel.

An edge ``caller -> callee`` weighs the samples in which that call appears,
again once per sample. Recursion gives self-loops and mutual recursion gives
cycles; neither needs special treatment.

Large profiles are trimmed like pprof's node fraction: :meth:`CallGraph.data`
keeps the ``max_nodes`` heaviest functions by ``total`` and reports what it
left out. Calls that went through hidden functions are kept as *inferred*
edges between the nearest shown caller and callee, so the shown part of the
graph stays connected, and light calls are left out like pprof's edge
fraction, so a hundred functions do not come with thousands of arrows.

Speed: the passes that look at every frame of every stack (numbering the
distinct frames and their functions, counting each function, line and call
once per sample, and the calls of a trimmed graph) are done by the compiled
helper ``plop._speedups`` when it was built, with "last stack seen" stamps
instead of a set per stack; `_PyStacks` is the equivalent pure-Python path, used when
the helper is missing or the environment variable ``PLOP_PURE_PYTHON`` is
set. Everything per function or per line is done here, in Python, by both.
"""
from __future__ import annotations

import os
import os.path
import re
from array import array
from collections import Counter, defaultdict
from itertools import accumulate, chain, repeat
from operator import add, itemgetter
from typing import Any, Callable, Iterable, Iterator, TypeVar

from plop.profile import Frame, Profile

if os.environ.get("PLOP_PURE_PYTHON"):
    _speedups = None
else:
    try:
        from plop import _speedups  # type: ignore[attr-defined]
    except ImportError:  # not built (no compiler where plop was installed)
        _speedups = None

_T = TypeVar("_T")
_K = TypeVar("_K")

#: The values of the ``view`` parameter: every sample, or only those taken on a CPU.
VIEWS = ("wall", "cpu")
#: In a trimmed graph, calls under this share of all samples are hidden too (pprof's edge fraction)...
EDGE_FRACTION = 0.001
#: ...and at most this many calls per shown function are kept, the heaviest.
EDGES_PER_NODE = 3

#: A frame's fields (``Frame.function`` is the first three), without a Python call per frame.
_FUNCTION = itemgetter(0, 1, 2)
_FILENAME, _FUNCNAME, _FIRSTLINENO, _LINENO = itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(3)

#: Path components under which the next component names an installed package or stdlib module.
_LIBRARY_DIR = re.compile(r"^(?:site-packages|dist-packages|python\d+(?:\.\d+)*)$")


def select(profile: Profile, view: str = "wall", thread: str | None = None) -> Profile:
    """The part of ``profile`` to draw: one of `VIEWS`, all threads or one.

    Raises ``ValueError`` with a message for a person when the view is not
    one of `VIEWS`, when ``view="cpu"`` is asked of a profile that has no
    on-CPU counts, or when no thread of that name was sampled.
    """
    if view not in VIEWS:
        raise ValueError("unknown view %r: use one of %s" % (view, ", ".join(VIEWS)))
    if thread is not None:
        if thread not in profile.threads():
            raise ValueError("this profile has no thread named %r" % thread)
        profile = profile.for_thread(thread)
    if view == "cpu":
        profile = profile.cpu()
    return profile


def group_of(filename: str, app_root: str = "") -> str:
    """The colour group of a source file: its package, module or top directory.

    Installed packages and the standard library are grouped by top-level
    package (``.../site-packages/tornado/web.py`` and the relative
    ``tornado/web.py`` that py-spy writes are both ``tornado``); files under
    ``app_root`` (the common directory of a profile's own code, see
    `app_root`) by their first directory or module below it; pseudo-files
    such as ``<frozen importlib._bootstrap>`` by their module.
    """
    if filename.startswith("<") and filename.endswith(">"):
        inner = filename[1:-1].split()
        if len(inner) == 2 and inner[0] == "frozen":
            return inner[1].split(".")[0].lstrip("_") or filename
        return filename
    parts = [p for p in re.split(r"[\\/]+", filename) if p not in ("", ".")]
    if not parts:
        return filename or "(no file)"
    for i in range(len(parts) - 2, -1, -1):
        if _LIBRARY_DIR.match(parts[i]):
            return _module(parts[i + 1])
    if not os.path.isabs(filename):
        return _module(parts[0])
    if app_root and filename.startswith(app_root + "/"):
        rest = filename[len(app_root) + 1 :].split("/")
        return _module(rest[0])
    return _module(parts[-2] if len(parts) > 1 else parts[-1])


def _module(component: str) -> str:
    """A path component as a module name (``difflib.py`` -> ``difflib``)."""
    return component[:-3] if component.endswith(".py") and len(component) > 3 else component


def module_of(filename: str, app_root: str = "") -> str:
    """The dotted module a source file holds, as well as its path tells.

    ``.../site-packages/tornado/web.py`` and py-spy's relative
    ``tornado/web.py`` are ``tornado.web``; a file under ``app_root`` is
    named from there (``/srv/shop/shop/cart.py`` below ``/srv/shop`` is
    ``shop.cart``); ``<frozen importlib._bootstrap>`` is
    ``importlib._bootstrap``; any other file is its base name without
    ``.py``. A package's ``__init__.py`` is the package. Nothing is read from
    disk: the profile's own paths are all there is to go on.
    """
    if filename.startswith("<") and filename.endswith(">"):
        inner = filename[1:-1].split()
        return inner[1] if len(inner) == 2 and inner[0] == "frozen" else filename
    parts = [p for p in re.split(r"[\\/]+", filename) if p not in ("", ".")]
    if not parts:
        return filename or "(no file)"
    rest = parts[-1:]
    for i in range(len(parts) - 2, -1, -1):
        if _LIBRARY_DIR.match(parts[i]):
            rest = parts[i + 1 :]
            break
    else:
        if not os.path.isabs(filename) and ".." not in parts:
            rest = parts
        elif app_root and filename.startswith(app_root + "/"):
            rest = filename[len(app_root) + 1 :].split("/")
    names = [_module(p) for p in rest]
    if len(names) > 1 and names[-1] == "__init__":
        names.pop()
    return ".".join(names)


def label_of(funcname: str, filename: str, app_root: str = "") -> str:
    """The name a view shows for a function: ``<module>`` gains its module.

    Every module's top-level code is called ``<module>``, so a profile of an
    import-heavy program has many functions of that name; ``<module>
    plop.formats`` tells them apart. Other names are shown as they are.
    """
    if funcname == "<module>":
        return "<module> " + module_of(filename, app_root)
    return funcname


def app_root(filenames: list[str]) -> str:
    """The directory below which `group_of` names a profile's own packages.

    Starts from the deepest directory holding every absolute, non-library
    file; when some files lie directly in it and others deeper, it is a
    package and its parent is returned, so the package gets its name. Empty
    when there are no such files.
    """
    dirs = []
    for name in filenames:
        if not name.startswith("/"):
            continue
        parts = name.split("/")[:-1]
        if any(_LIBRARY_DIR.match(p) for p in parts):
            continue
        dirs.append(parts)
    if not dirs:
        return ""
    common = os.path.commonprefix(dirs)
    depths = {len(d) == len(common) for d in dirs}
    if depths == {True, False}:
        common = common[:-1]
    return "/".join(common)


class CallGraph:
    """The complete call graph of a profile, ready to be trimmed and serialised.

    Build it once per profile view with :meth:`from_profile` (the expensive
    pass over every stack); :meth:`data` then shapes any number of trimmed
    views of it.

    Building a graph creates almost no objects that the cyclic GC tracks:
    per function, line and call it keeps ints in a few lists and dicts, and
    a function is represented by its first frame (which the profile holds
    already), not by a new tuple. Thousands of new tuples or lists would set
    off collections over the whole profile that was just loaded, and cost
    more than building the graph.
    """

    __slots__ = (
        "self_counts",
        "total_counts",
        "linenos",
        "groups",
        "labels",
        "root",
        "total_samples",
        "empty_samples",
        "order",
        "_node_frames",
        "_calls",
        "_line_numbers",
        "_line_self",
        "_line_total",
        "_lines_of",
        "_lines_start",
        "_stacks",
    )

    def __init__(self) -> None:
        self.self_counts: list[int] = []
        self.total_counts: list[int] = []
        #: Per node: the function's first line (smallest executing line when unknown).
        self.linenos: list[int] = []
        self.groups: list[str] = []
        #: Per node: the name views show (see `label_of`).
        self.labels: list[str] = []
        #: The directory module names are derived from (see `app_root`).
        self.root = ""
        #: Samples with at least one frame (the sum of all ``self`` counts).
        self.total_samples = 0
        #: Samples whose stack was empty (py-spy's samples with no Python frame).
        self.empty_samples = 0
        #: Node ids, heaviest first (by total, then self, then name).
        self.order: list[int] = []
        #: Per node: the first frame seen of its function.
        self._node_frames: list[Frame] = []
        #: ``caller id * node count + callee id`` -> samples containing that call.
        self._calls: dict[int, int] = {}
        # Per line id (a distinct frame): its executing line, self and total samples.
        self._line_numbers: list[int] = []
        self._line_self: list[int] = []
        self._line_total: list[int] = []
        #: Line ids by node, then line: node i's are ``_lines_of[_lines_start[i]:_lines_start[i + 1]]``.
        self._lines_of: list[int] = []
        self._lines_start: list[int] = [0]
        #: The stacks, kept for the calls of trimmed graphs.
        self._stacks: _PyStacks | _CompiledStacks = _PyStacks({})

    @property
    def functions(self) -> list[tuple[str, str, int]]:
        """``Frame.function`` of each node, indexed by node id."""
        return [(frame[0], frame[1], frame[2]) for frame in self._node_frames]

    @property
    def edges(self) -> dict[tuple[int, int], int]:
        """``(caller id, callee id)`` -> samples containing that call."""
        count = len(self._node_frames)
        return {divmod(code, count): w for code, w in self._calls.items()}

    @classmethod
    def from_profile(cls, profile: Profile, root: str | None = None) -> "CallGraph":
        """Aggregate every stack of ``profile`` (all its threads) into one graph.

        Samples with an empty stack have no function to charge: they are
        counted apart, in ``empty_samples``, and left out of ``total_samples``.
        ``root`` is the directory packages and modules are named from (see
        `app_root`); by default ``profile``'s own. A view of a larger profile
        (one thread, the CPU samples, a filter) passes the whole profile's, so
        that its packages keep their names, and so their colours.
        """
        graph = cls()
        stacks = _index_stacks(profile.samples)
        graph._stacks = stacks
        graph.total_samples = stacks.total
        graph.empty_samples = stacks.empty
        # Node ids in first-seen order of the functions, as the frames (line ids) are.
        frames, node_of_line = stacks.frames, stacks.node_of_line
        graph._node_frames = node_frames = stacks.node_frames
        count = len(node_frames)
        line_total, line_self, graph.total_counts, graph._calls = stacks.count()
        graph._line_self, graph._line_total = line_self, line_total
        graph._line_numbers = numbers = list(map(_LINENO, frames))
        # Frames of one function differ in their line: firstlineno is part of the function.
        # (Sorting by one int key at a time: (node, line) tuples would be one new tuple per line.)
        by_number = sorted(range(len(frames)), key=numbers.__getitem__)
        graph._lines_of = lines_of = sorted(by_number, key=node_of_line.__getitem__)
        per_node = [0] * count
        for fid in node_of_line:
            per_node[fid] += 1
        graph._lines_start = starts = [0, *accumulate(per_node)]
        graph.self_counts = self_counts = [0] * count
        for fid, own in zip(node_of_line, line_self):
            self_counts[fid] += own
        graph.linenos = [
            frame[2] or min(filter(None, map(numbers.__getitem__, lines_of[starts[i] : starts[i + 1]])), default=0)
            for i, frame in enumerate(node_frames)
        ]
        filenames = list(map(_FILENAME, node_frames))
        if root is None:
            root = app_root(sorted(set(filenames)))
        group_cache: dict[str, str] = {}
        for filename in filenames:
            if filename not in group_cache:
                group_cache[filename] = group_of(filename, root)
        graph.groups = list(map(group_cache.__getitem__, filenames))
        graph.root = root
        graph.labels = [label_of(frame[1], frame[0], root) for frame in node_frames]
        # Heaviest first: by total, self, name, file and first line, one stable sort per key.
        order = list(range(count))
        firstlinenos = list(map(_FIRSTLINENO, node_frames))
        order.sort(key=firstlinenos.__getitem__)
        order.sort(key=filenames.__getitem__)
        order.sort(key=list(map(_FUNCNAME, node_frames)).__getitem__)
        order.sort(key=self_counts.__getitem__, reverse=True)
        order.sort(key=graph.total_counts.__getitem__, reverse=True)
        graph.order = order
        return graph

    def data(self, max_nodes: int | None = None) -> dict[str, Any]:
        """The graph as the JSON-ready dict served by ``/data`` (see docs/viewer.md).

        With ``max_nodes`` (a positive int) only that many of the heaviest
        functions by ``total`` are kept; the result then also says how many
        functions (``hidden_nodes``) and how many of their own samples
        (``hidden_samples``, the ``self`` counts of the hidden functions)
        were left out, and calls through hidden functions become edges with
        ``"inferred": true`` between the nearest shown functions. Light calls
        are then left out too (``hidden_edges``): those under `EDGE_FRACTION`
        of the samples, and beyond the `EDGES_PER_NODE` heaviest per shown
        function, except each function's heaviest call from another.
        """
        if max_nodes is not None and max_nodes < 1:
            raise ValueError("max_nodes must be a positive number")
        shown = self.order if max_nodes is None else self.order[:max_nodes]
        count = len(self.order)
        if len(shown) < count:
            weights = self._inferred_calls(shown)
            calls = _heaviest(weights)
            kept = self._trim_calls(calls, weights, len(shown))
            hidden_edges = len(calls) - len(kept)
            direct = self._calls.get
            edges = [
                {"source": code // count, "target": code % count, "weight": weights[code],
                 "inferred": weights[code] > direct(code, 0)}
                for code in kept
            ]
        else:
            weights = self._calls
            hidden_edges = 0
            edges = [
                {"source": code // count, "target": code % count, "weight": weights[code], "inferred": False}
                for code in _heaviest(weights)
            ]
        hidden = self.order[len(shown) :]
        numbers, line_self, line_total = self._line_numbers, self._line_self, self._line_total
        lines_of, starts = self._lines_of, self._lines_start
        nodes = []
        for i in shown:
            frame = self._node_frames[i]
            nodes.append(
                {
                    "id": i,
                    "funcname": frame[1],
                    "label": self.labels[i],
                    "filename": frame[0],
                    "firstlineno": frame[2],
                    "lineno": self.linenos[i],
                    "self": self.self_counts[i],
                    "total": self.total_counts[i],
                    "group": self.groups[i],
                    "lines": [
                        {"lineno": numbers[lid], "self": line_self[lid], "total": line_total[lid]}
                        for lid in lines_of[starts[i] : starts[i + 1]]
                    ],
                }
            )
        return {
            "total_samples": self.total_samples,
            "samples_without_frames": self.empty_samples,
            "node_count": count,
            "hidden_nodes": len(hidden),
            "hidden_samples": sum(self.self_counts[i] for i in hidden),
            "hidden_edges": hidden_edges,
            "nodes": nodes,
            "edges": edges,
        }

    def calls_between(self, functions: Iterable[tuple[str, str, int]] | None = None
                      ) -> dict[tuple[tuple[str, str, int], tuple[str, str, int]], int]:
        """Samples of each call, keyed by ``(caller, callee)`` functions (`Frame.function`).

        Without ``functions``, every direct call (as the complete graph's
        edges). With them, only calls between those functions, bridging the
        others as a trimmed graph's inferred edges do: what another
        profile's trimmed graph needs to compare its edges with this one.
        Functions this graph never saw are ignored.
        """
        count = len(self._node_frames)
        names = self.functions
        if functions is None:
            weights = self._calls
        else:
            index = {function: i for i, function in enumerate(names)}
            keep = bytearray(count)
            for function in functions:
                i = index.get(function)
                if i is not None:
                    keep[i] = 1
            weights = self._stacks.call_weights(keep)
        return {(names[code // count], names[code % count]): w for code, w in weights.items()}

    def find(self, filename: str, funcname: str, firstlineno: int) -> int | None:
        """The node id of a function (its `Frame.function`), or ``None`` when not sampled."""
        for i, frame in enumerate(self._node_frames):
            if frame[1] == funcname and frame[0] == filename and frame[2] == firstlineno:
                return i
        return None

    def function_json(self, i: int) -> dict[str, Any]:
        """One function as the views name it: ids, label, place and counts."""
        frame = self._node_frames[i]
        return {
            "name": frame[1],
            "label": self.labels[i],
            "filename": frame[0],
            "firstlineno": frame[2],
            "line": self.linenos[i],
            "group": self.groups[i],
            "self": self.self_counts[i],
            "total": self.total_counts[i],
        }

    def table(self) -> list[dict[str, Any]]:
        """Every function, heaviest ``self`` first (then ``total``, name, file, line): ``pprof -top``."""
        order = sorted(self.order, key=self.self_counts.__getitem__, reverse=True)
        return [self.function_json(i) for i in order]

    def details(self, i: int) -> dict[str, Any]:
        """Function ``i``'s callers, callees and lines, for the details view (docs/viewer.md).

        Each caller and callee carries ``calls``: the samples in which that
        call appears, once per sample. A recursive call (the function calling
        itself) is not listed as its own caller or callee but counted in
        ``recursive``. Lines are the profile's executing lines with their own
        ``self`` and ``total`` samples, in line order.
        """
        count = len(self._node_frames)
        callers, callees, recursive = [], [], 0
        for code, weight in self._calls.items():
            caller, callee = divmod(code, count)
            if caller == i and callee == i:
                recursive = weight
            elif callee == i:
                callers.append((weight, caller))
            elif caller == i:
                callees.append((weight, callee))
        numbers, line_self, line_total = self._line_numbers, self._line_self, self._line_total
        lids = sorted(self._lines_of[self._lines_start[i] : self._lines_start[i + 1]], key=numbers.__getitem__)
        return {
            "function": self.function_json(i),
            "recursive": recursive,
            "callers": [dict(self.function_json(j), calls=w) for w, j in sorted(callers, key=lambda c: (-c[0], c[1]))],
            "callees": [dict(self.function_json(j), calls=w) for w, j in sorted(callees, key=lambda c: (-c[0], c[1]))],
            "lines": [{"line": numbers[lid], "self": line_self[lid], "total": line_total[lid]} for lid in lids],
        }

    def _trim_calls(self, calls: list[int], weights: dict[int, int], shown: int) -> list[int]:
        """The calls worth drawing among ``calls`` (heaviest first) between ``shown`` functions."""
        threshold = EDGE_FRACTION * self.total_samples
        limit = EDGES_PER_NODE * shown
        count = len(self.order)
        main_caller: dict[int, int] = {}  # callee -> its heaviest call from another function
        for code in calls:
            caller, callee = divmod(code, count)
            if caller != callee and callee not in main_caller:
                main_caller[callee] = code
        kept = []
        for code in calls:
            if (len(kept) < limit and weights[code] >= threshold) or main_caller.get(code % count) == code:
                kept.append(code)
        return kept

    def _inferred_calls(self, shown: list[int]) -> dict[int, int]:
        """Calls between the ``shown`` nodes, bridging hidden ones, once per sample.

        Keyed like ``_calls``. A call's weight is larger than its weight in
        ``_calls`` when some of its samples pass through hidden functions.
        """
        keep = bytearray(len(self.order))
        for i in shown:
            keep[i] = 1
        return self._stacks.call_weights(keep)


def _heaviest(weights: dict[int, int]) -> list[int]:
    """The calls of ``weights``, heaviest first, then by caller and callee (the codes' order)."""
    return sorted(sorted(weights), key=weights.__getitem__, reverse=True)


def _index_stacks(samples: dict) -> "_PyStacks | _CompiledStacks":
    """The stacks of ``samples`` ready to count, by the compiled helper when there is one."""
    if _speedups is not None:
        try:
            return _CompiledStacks(samples)
        except (TypeError, OverflowError):
            pass  # keys, stacks, frames or counts of unusual types, or counts beyond 64 bits
    return _PyStacks(samples)


class _PyStacks:
    """The distinct stacks of a profile and the counts of their frames, in pure Python.

    ``frames`` are the distinct frames in first-seen order (a frame's index
    is its *line id*), ``node_of_line`` their functions' node ids (also in
    first-seen order), ``node_frames`` the first frame of each function,
    ``total`` the samples with at least one frame and ``empty`` those
    without; :meth:`count` and :meth:`call_weights` are the passes over
    every frame. `_CompiledStacks` is the same in C.
    """

    __slots__ = ("frames", "node_of_line", "node_frames", "total", "empty", "_by_lines", "_by_nodes")

    def __init__(self, samples: dict) -> None:
        # Aggregate the stacks over threads as tuples of line ids: every later pass works on ints.
        line_of_frame: dict[Frame, int] = {}
        lookup = line_of_frame.get
        by_lines: dict[tuple[int, ...], int] = {}
        empty = 0
        for (_thread, stack), n in samples.items():
            if not stack:
                empty += max(n, 0)
                continue
            if n <= 0:
                continue
            lids = tuple(map(lookup, stack))
            if None in lids:
                for frame in stack:
                    line_of_frame.setdefault(frame, len(line_of_frame))
                lids = tuple(map(lookup, stack))
            by_lines[lids] = by_lines.get(lids, 0) + n
        self.frames = list(line_of_frame)
        node_of: dict[tuple[str, str, int], int] = {}
        self.node_of_line: list[int] = []
        self.node_frames: list[Frame] = []
        for frame in self.frames:
            function = _FUNCTION(frame)
            fid = node_of.get(function)
            if fid is None:
                fid = node_of[function] = len(self.node_frames)
                self.node_frames.append(frame)
            self.node_of_line.append(fid)
        self.total = sum(by_lines.values())
        self.empty = empty
        self._by_lines = by_lines
        #: Distinct stacks as tuples of node ids (outermost first) -> samples, once counted.
        self._by_nodes: dict[tuple[int, ...], int] = {}

    def count(self) -> tuple[list[int], list[int], list[int], dict[int, int]]:
        """``(line_total, line_self, func_total, calls)``: each line, function and call once per sample.

        The first three are lists by line id or node id; ``calls`` maps
        ``caller * number of nodes + callee`` to its samples.
        """
        functions = len(self.node_frames)
        to_node = self.node_of_line.__getitem__
        stacks = self._by_nodes = {}
        for lids, n in self._by_lines.items():
            fids = tuple(map(to_node, lids))
            stacks[fids] = stacks.get(fids, 0) + n
        node_groups = _by_count(stacks)
        func_total = [0] * functions
        for fid, n in _weighted_count(node_groups, _distinct_items).items():
            func_total[fid] = n
        calls = _weighted_count(node_groups, _distinct_calls(functions))
        line_groups = _by_count(self._by_lines)
        line_total = [0] * len(self.frames)
        for lid, n in _weighted_count(line_groups, _distinct_items).items():
            line_total[lid] = n
        line_self = [0] * len(self.frames)
        for lid, n in _weighted_count(line_groups, _innermost).items():
            line_self[lid] = n
        return line_total, line_self, func_total, calls

    def call_weights(self, keep: bytearray) -> dict[int, int]:
        """Calls between consecutive functions of a stack marked in ``keep``, once per sample.

        Keyed like ``calls`` of :meth:`count`, with ``len(keep)`` functions.
        """
        is_kept = keep.__getitem__
        reduced: dict[tuple[int, ...], int] = {}
        for fids, n in self._by_nodes.items():
            kept = tuple(filter(is_kept, fids))
            if len(kept) > 1:
                reduced[kept] = reduced.get(kept, 0) + n
        return _weighted_count(_by_count(reduced), _distinct_calls(len(keep)))


class _CompiledStacks:
    """`_PyStacks` by ``plop._speedups``: the stacks as flat arrays of line ids."""

    __slots__ = ("frames", "node_of_line", "node_frames", "total", "empty", "_module", "_arrays", "_nodes")

    def __init__(self, samples: dict) -> None:
        assert _speedups is not None
        self._module = _speedups
        (self.frames, self.node_of_line, self.node_frames, lids, lengths, counts,
         self.total, self.empty) = _speedups.index_stacks(samples)
        self._arrays = (lids, lengths, counts)
        self._nodes = array("i", self.node_of_line).tobytes()

    def count(self) -> tuple[list[int], list[int], list[int], dict[int, int]]:
        return self._module.count_stacks(*self._arrays, self._nodes, len(self.node_frames))

    def call_weights(self, keep: bytearray) -> dict[int, int]:
        return self._module.call_weights(*self._arrays, self._nodes, bytes(keep))


def _by_count(counts: dict[_T, int]) -> dict[int, list[_T]]:
    """Invert a ``{key: count}`` dict into ``{count: [keys]}``."""
    inverted: dict[int, list[_T]] = defaultdict(list)
    for key, n in counts.items():
        inverted[n].append(key)
    return inverted


def _weighted_count(
    by_count: dict[int, list[_T]], elements: Callable[[list[_T]], Iterable[_K]]
) -> dict[_K, int]:
    """``sum(n * occurrences of e in elements([item]))`` for every element ``e``.

    ``by_count`` maps each count ``n`` to the items that have it. The items of
    one count are counted together by ``collections.Counter``, in C, so the
    Python-level work is per distinct element of each group rather than per
    frame of every stack: most stacks of a profile share a few small counts.
    """
    result: dict[_K, int] = {}
    get = result.get
    for n, items in by_count.items():
        for key, c in Counter(elements(items)).items():
            result[key] = get(key, 0) + c * n
    return result


def _distinct_items(stacks: list[tuple[_K, ...]]) -> Iterator[_K]:
    """Each stack's distinct entries (recursion counted once per stack)."""
    return chain.from_iterable(map(set, stacks))


def _innermost(stacks: list[tuple[_K, ...]]) -> Iterator[_K]:
    """Each stack's innermost (last) entry."""
    return map(itemgetter(-1), stacks)


def _distinct_calls(functions: int) -> Callable[[list[tuple[int, ...]]], Iterator[int]]:
    """Each stack's distinct calls as ``caller * functions + callee`` (ints hash faster than pairs)."""
    scaled = [fid * functions for fid in range(functions)].__getitem__

    def calls(stacks: list[tuple[int, ...]]) -> Iterator[int]:
        callers = map(map, repeat(scaled), stacks)
        return chain.from_iterable(map(set, map(map, repeat(add), callers, map(_TAIL, stacks))))

    return calls


_TAIL = itemgetter(slice(1, None))
