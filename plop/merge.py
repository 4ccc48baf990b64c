"""Merging profiles and comparing two of them: pure functions for the viewer's merge and compare views.

plop writes one profile per window per process, so the questions people ask
("what did the web service do in the last hour, all workers together", "what
changed since the deploy") are about sums of many files and differences of
two such sums. Everything here is a function of profiles and of the
summaries the index keeps, so the handlers stay thin and the numbers can be
checked on hand-counted profiles:

* :func:`merge` sums profiles exactly; threads keep their names, and gain
  their process's pid when the files come from different processes, so a
  merged view can still be split by worker;
* :func:`parse_time`, :func:`window_of`, :func:`select_windows` and
  :func:`group_windows` choose a service's rolling windows over a time
  range, from the files' metadata;
* :func:`compare_graph`, :func:`compare_table`, :func:`compare_tree` and
  :func:`compare_details` put a base profile's counts beside the new one's
  (``base_self``, ``base_total``, ``base_weight``, ``base_value``) with the
  change, ``delta``: by default the change of *share* of all samples
  (normalised, so a longer run is not "slower"), or of the counts themselves.
"""
from __future__ import annotations

import datetime
import math
import re
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from plop.callgraph import CallGraph
from plop.formats._common import _gc_paused
from plop.profile import Frame, Profile

Function = tuple[str, str, int]

#: Seconds per unit of a relative time (``-90s``, ``-5m``, ``-1h``, ``-2d``, ``-1w``).
_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_RELATIVE = re.compile(r"-\s*(\d+(?:\.\d+)?)\s*(s|min|m|h|d|w)")
_EPOCH = re.compile(r"\d+(?:\.\d+)?")
#: What a bad time's message suggests instead.
TIME_FORMS = "ISO 8601 (2026-01-01T12:00:00, 2026-01-01T12:00Z), epoch seconds, 'now', or a relative time such as -5m, -1h, -24h, -7d"


def parse_time(text: str, now: float) -> float:
    """Epoch seconds of a time parameter: ISO 8601, epoch seconds, ``now`` or relative to ``now`` (``-1h``).

    An ISO time without a zone is local time, as the index shows times.
    Raises ``ValueError`` with the accepted forms for anything else.
    """
    value = text.strip()
    if value == "now":
        return now
    relative = _RELATIVE.fullmatch(value)
    if relative:
        return now - float(relative.group(1)) * _UNITS[relative.group(2)]
    if _EPOCH.fullmatch(value):
        return float(value)
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("%r is not a time: use %s" % (text, TIME_FORMS)) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def window_of(metadata: Mapping[str, Any]) -> tuple[float, float] | None:
    """``(start, end)`` in epoch seconds of the period a profile covers, or ``None`` when not recorded.

    Rolling windows record ``window_start`` and ``window_end``; other
    profiles ``start_time`` and ``duration`` (an unknown duration is an
    instant).
    """
    start = metadata.get("window_start")
    if start is None:
        start = metadata.get("start_time")
    if not isinstance(start, (int, float)) or isinstance(start, bool):
        return None
    end = metadata.get("window_end")
    if not isinstance(end, (int, float)) or isinstance(end, bool):
        duration = metadata.get("duration")
        end = start + duration if isinstance(duration, (int, float)) and not isinstance(duration, bool) else start
    return float(start), float(max(start, end))


def select_windows(profiles: Iterable[tuple[str, Mapping[str, Any]]], service: str, since: float = -math.inf,
                   until: float = math.inf) -> tuple[list[str], int]:
    """The names of the profiles of ``service`` whose windows overlap ``[since, until]``.

    ``profiles`` are ``(name, metadata or summary)`` pairs. Returns the
    names (in the order given) and how many profiles were left out because
    they record no service or no time: a service selection cannot say
    whether they belong, and the answer says how many there were.
    """
    names, without_metadata = [], 0
    for name, meta in profiles:
        window = window_of(meta)
        owner = meta.get("service")
        if window is None or not isinstance(owner, str) or not owner:
            without_metadata += 1
            continue
        start, end = window
        if owner == service and start <= until and (end > since or start >= since):
            names.append(name)
    return names, without_metadata


def group_windows(profiles: Iterable[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The index's groups: the profiles that record a service and a time, by service.

    Each group: ``service``, ``count``, ``start`` and ``end`` (the span of
    its windows), ``hosts`` and ``pids`` (sorted), ``samples`` (summed; a
    profile whose summary is not known yet adds nothing) and ``names``.
    Groups come by service name.
    """
    groups: dict[str, dict[str, Any]] = {}
    for name, meta in profiles:
        window = window_of(meta)
        service = meta.get("service")
        if window is None or not isinstance(service, str) or not service:
            continue
        group = groups.get(service)
        if group is None:
            group = groups[service] = {"service": service, "count": 0, "start": window[0], "end": window[1],
                                       "hosts": set(), "pids": set(), "samples": 0, "names": []}
        group["count"] += 1
        group["start"] = min(group["start"], window[0])
        group["end"] = max(group["end"], window[1])
        if isinstance(meta.get("hostname"), str):
            group["hosts"].add(meta["hostname"])
        if isinstance(meta.get("pid"), int):
            group["pids"].add(meta["pid"])
        group["samples"] += meta.get("samples") or 0
        group["names"].append(name)
    result = []
    for service in sorted(groups):
        group = groups[service]
        group["hosts"] = sorted(group["hosts"])
        group["pids"] = sorted(group["pids"])
        result.append(group)
    return result


def merge(profiles: Iterable[Profile], processes: Iterable[tuple[Any, Any]] | None = None) -> Profile:
    """The sum of ``profiles``: every count added, exactly.

    Threads keep their names; when the profiles come from more than one
    process (their metadata's ``pid``, and ``hostname``), each thread's name
    gains its process as ``pid 123 MainThread`` (``web-2 pid 123
    MainThread`` when one pid was seen on several hosts), the convention of
    py-spy's ``--subprocesses`` files, so a merged view can still be split
    by worker. A profile that records no pid keeps its thread names.

    The on-CPU table is kept only when every profile has one (a partial
    table would understate the CPU view). The metadata keeps the keys on
    which every profile agrees, spans the profiles' windows (``start_time``,
    ``window_start``, ``window_end``, ``duration`` of the span) and adds
    ``merged`` (how many profiles), ``hostnames`` and ``pids``.

    Equal frames of different files become one object, as a single file's
    loader shares them, so the merged profile is as compact as one file.

    ``processes``, the ``(hostname, pid)`` of every profile when they are
    known beforehand (the viewer reads them from the files' first bytes),
    lets ``profiles`` be an iterator that loads one file at a time, so that
    a day of windows is never in memory at once.
    """
    if processes is None:
        profiles = list(profiles)
        processes = [(p.metadata.get("hostname"), p.metadata.get("pid")) for p in profiles]
    total = MergeSum(thread_prefixes(processes))
    with _gc_paused():  # many acyclic tuples: the cyclic GC would rescan every profile loaded so far
        for profile in profiles:
            total.add(profile)
        return total.profile()


def thread_prefixes(processes: Iterable[tuple[Any, Any]]) -> dict[tuple[Any, Any], str]:
    """What each process's thread names gain in a merge of ``processes`` (see :func:`merge`).

    Empty when they are one process (or none records a pid): names stay as
    they are. Decided from *all* the merged profiles' processes, so that the
    parts of a merge summed apart (:class:`MergeSum`) rename alike.
    """
    known = {(host, pid) for host, pid in processes if isinstance(pid, int) and not isinstance(pid, bool)}
    if len(known) < 2:
        return {}
    hosts_of_pid: dict[int, set] = {}
    for host, pid in known:
        hosts_of_pid.setdefault(pid, set()).add(host)
    return {(host, pid): "%s pid %d" % (host, pid) if len(hosts_of_pid[pid]) > 1 and host else "pid %d" % pid
            for host, pid in known}


class Partial(NamedTuple):
    """A part of a merge summed elsewhere (a worker process), compact to pickle: numbers, not frames.

    ``frames`` are the distinct frames as plain tuples, ``stacks`` tuples of
    indices into them; ``wall`` and ``cpu`` map ``(thread, stack index)`` to
    counts in the order the keys were first seen (``cpu`` is ``None`` when
    a profile had no on-CPU table); ``metadata`` is each profile's, in order.
    """

    frames: list[tuple[str, str, int, int]]
    stacks: list[tuple[int, ...]]
    wall: dict[tuple[str, int], int]
    cpu: dict[tuple[str, int], int] | None
    metadata: list[Mapping[str, Any]]


class MergeSum:
    """A merge in progress (see :func:`merge`): profiles, or partial sums of consecutive ones, added in order.

    Counts are summed under ``(thread, stack number)`` keys: a stack tuple is
    hashed once per profile and table (hashing a deep tuple of frames is most
    of a merge's cost), and the merged profile's keys are built once per
    distinct key at the end. Adding the :meth:`partial` sums of consecutive
    runs of profiles, in order, gives the very profile (same keys, counts,
    key order and metadata) as adding the profiles themselves, when every
    part was made with the same ``prefixes`` (:func:`thread_prefixes` of the
    whole merge). Callers pause the cyclic GC around their additions.
    """

    def __init__(self, prefixes: Mapping[tuple[Any, Any], str]) -> None:
        self.prefixes = prefixes
        self.wall: dict[tuple[str, int], int] = {}
        self.cpu: dict[tuple[str, int], int] | None = {}
        self.metadata: list[Mapping[str, Any]] = []
        self.frames: dict[Frame, Frame] = {}
        self.numbers: dict[tuple[Frame, ...], int] = {}
        self.stacks: list[tuple[Frame, ...]] = []

    def _number(self, stack: tuple[Frame, ...]) -> int:
        """The number of a stack not seen yet, its frames shared with the stacks seen before."""
        frames = self.frames
        self.numbers[stack] = len(self.stacks)
        self.stacks.append(tuple([frames.setdefault(f, f) for f in stack]))
        return len(self.stacks) - 1

    def add(self, profile: Profile) -> None:
        """Add one profile's counts, its threads renamed by its process."""
        meta = profile.metadata
        self.metadata.append(meta)
        prefix = self.prefixes.get((meta.get("hostname"), meta.get("pid")), "") if self.prefixes else ""
        names: dict[str, str] = {}
        if profile.cpu_samples is None:
            self.cpu = None
        tables = [(profile.samples, self.wall)]
        if self.cpu is not None and profile.cpu_samples is not None:
            tables.append((profile.cpu_samples, self.cpu))
        # A profile's two tables share their stack objects: numbered by identity after the first hash.
        seen: dict[int, int] = {}
        number = self._number
        for table, into in tables:
            get, known_stack, seen_stack = into.get, self.numbers.get, seen.get
            for (thread, stack), n in table.items():
                name = names.get(thread)
                if name is None:
                    name = names[thread] = ("%s %s" % (prefix, thread) if thread else prefix) if prefix else thread
                i = seen_stack(id(stack))
                if i is None:
                    i = known_stack(stack)
                    seen[id(stack)] = i = number(stack) if i is None else i
                key = (name, i)
                into[key] = get(key, 0) + n

    def partial(self) -> Partial:
        """What was added so far, as numbers (for :meth:`add_partial` in another process)."""
        index = {f: i for i, f in enumerate(self.frames)}
        return Partial([tuple(f) for f in self.frames], [tuple(map(index.__getitem__, s)) for s in self.stacks],
                       self.wall, self.cpu, self.metadata)

    def add_partial(self, part: Partial) -> None:
        """Add a part summed apart (by a :class:`MergeSum` with the same prefixes), after what was added."""
        self.metadata.extend(part.metadata)
        frames = [self.frames.setdefault(f, f) for f in map(Frame._make, part.frames)]
        known_stack, stacks = self.numbers.get, self.stacks
        renumber = []
        for indices in part.stacks:
            stack = tuple([frames[j] for j in indices])
            i = known_stack(stack)
            if i is None:
                i = self.numbers[stack] = len(stacks)
                stacks.append(stack)
            renumber.append(i)
        if part.cpu is None:
            self.cpu = None
        tables = [(part.wall, self.wall)]
        if self.cpu is not None and part.cpu is not None:
            tables.append((part.cpu, self.cpu))
        for table, into in tables:
            get = into.get
            for (name, j), n in table.items():
                key = (name, renumber[j])
                into[key] = get(key, 0) + n

    def profile(self) -> Profile:
        """The merged profile of everything added."""
        stacks, cpu = self.stacks, self.cpu
        samples = {(name, stacks[i]): n for (name, i), n in self.wall.items()}
        on_cpu = None if cpu is None or not self.metadata else {(name, stacks[i]): n for (name, i), n in cpu.items()}
        return Profile(samples, merged_metadata(self.metadata), on_cpu)


#: Metadata of one window that a merge cannot keep as it is (the span is recomputed).
_PER_WINDOW = ("start_time", "window_start", "window_end", "duration", "samples_taken", "ticks", "cpu_time",
               "user_time", "sample_time", "sampler_cpu_time", "errors", "samples_asked", "rate_change")


def merged_metadata(metadata: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The metadata of a merge (see :func:`merge`): what all agree on, the span, the processes."""
    if not metadata:
        return {"merged": 0}
    common = dict(metadata[0])
    for meta in metadata[1:]:
        for key in [k for k, v in common.items() if meta.get(k) != v]:
            del common[key]
    for key in _PER_WINDOW:
        common.pop(key, None)
    windows = [w for w in map(window_of, metadata) if w is not None]
    if windows:
        start, end = min(w[0] for w in windows), max(w[1] for w in windows)
        common.update(start_time=start, window_start=start, window_end=end, duration=round(end - start, 6))
    common["merged"] = len(metadata)
    common["hostnames"] = sorted({m["hostname"] for m in metadata if isinstance(m.get("hostname"), str)})
    common["pids"] = sorted({m["pid"] for m in metadata if isinstance(m.get("pid"), int)})
    return common


# ---------------------------------------------------------------- comparing

def change(new: int, base: int, new_total: int, base_total: int, normalize: bool = True) -> float:
    """How much a count changed from the base to the new profile.

    Normalised (the default): the change of its share of all samples,
    ``new / new_total - base / base_total`` (0.05 is 5 percentage points
    more), so that a profile twice as long is not twice as slow; a side
    without samples counts as a share of 0. Otherwise the difference of the
    counts.
    """
    if not normalize:
        return float(new - base)
    return (new / new_total if new_total else 0.0) - (base / base_total if base_total else 0.0)


def _function_index(graph: CallGraph) -> dict[Function, int]:
    """A graph's node ids by function (file, name, first line)."""
    return {function: i for i, function in enumerate(graph.functions)}


def _counts_of(graph: CallGraph, j: int | None) -> tuple[int, int]:
    """Self and total samples of ``graph``'s function ``j`` (0, 0 when that side never ran it)."""
    return (graph.self_counts[j], graph.total_counts[j]) if j is not None else (0, 0)


def compare_graph(data: dict[str, Any], new: CallGraph, base: CallGraph, normalize: bool = True,
                  base_only_limit: int = 20) -> dict[str, Any]:
    """``/data``'s answer for ``new`` (``data``, from :meth:`CallGraph.data`) with ``base`` beside it.

    Each node gains ``base_self``, ``base_total``, ``delta`` (the change of
    its total, see :func:`change`), ``delta_self`` and ``side`` (``"new"``
    when the base never ran it, else ``"both"``); each call ``base_weight``
    and ``delta``. The base's weight of a call is counted like the drawn
    one: between the drawn functions, bridging the others, when the graph
    was trimmed. Functions only the base ran cannot be drawn where the new
    profile has no place for them: the answer lists the heaviest
    ``base_only_limit`` of them in ``base_only`` (as :meth:`CallGraph.table`
    rows with their base counts) and counts them all in
    ``base_only_count`` and ``base_only_samples`` (their own samples).
    ``data`` is changed in place and returned.
    """
    T, B = new.total_samples, base.total_samples
    in_base = _function_index(base)
    functions = new.functions
    for node in data["nodes"]:
        j = in_base.get(functions[node["id"]])
        base_self, base_total = _counts_of(base, j)
        node.update(base_self=base_self, base_total=base_total,
                    delta=change(node["total"], base_total, T, B, normalize),
                    delta_self=change(node["self"], base_self, T, B, normalize),
                    side="both" if j is not None else "new")
    trimmed = data["hidden_nodes"] > 0
    shown = [functions[node["id"]] for node in data["nodes"]]
    base_calls = base.calls_between(shown if trimmed else None)
    for edge in data["edges"]:
        weight = base_calls.get((functions[edge["source"]], functions[edge["target"]]), 0)
        edge.update(base_weight=weight, delta=change(edge["weight"], weight, T, B, normalize))
    in_new = set(functions)
    only = [j for j in base.order if base.functions[j] not in in_new] if base.order else []
    data["base_only_count"] = len(only)
    data["base_only_samples"] = sum(base.self_counts[j] for j in only)
    data["base_only"] = [_base_only_row(base, j, T, B, normalize) for j in only[:base_only_limit]]
    data.update(_base_summary(base, normalize))
    return data


def _base_only_row(base: CallGraph, j: int, T: int, B: int, normalize: bool) -> dict[str, Any]:
    """A function only the base ran, as a table row: no samples in the new profile."""
    row = base.function_json(j)
    row.update(self=0, total=0, base_self=row["self"], base_total=row["total"],
               delta=change(0, row["total"], T, B, normalize), delta_self=change(0, row["self"], T, B, normalize),
               delta_total=change(0, row["total"], T, B, normalize), side="base")
    return row


def _base_summary(base: CallGraph, normalize: bool) -> dict[str, Any]:
    """What every compared answer says about its base's totals."""
    return {"base_total_samples": base.total_samples, "base_samples_without_frames": base.empty_samples,
            "normalize": normalize}


def compare_table(rows: list[dict[str, Any]], new: CallGraph, base: CallGraph,
                  normalize: bool = True) -> list[dict[str, Any]]:
    """``/api/top``'s rows (from :meth:`CallGraph.table`) with the base's counts, plus the base-only functions.

    Each row gains ``base_self``, ``base_total``, ``delta_self``,
    ``delta_total`` (see :func:`change`) and ``side`` (``"new"``, ``"base"``
    or ``"both"``). Functions only the base ran are appended with ``self``
    and ``total`` 0, heaviest base ``self`` first, so the table lists every
    function of either side and sorts by any column. ``rows`` are changed
    in place.
    """
    T, B = new.total_samples, base.total_samples
    in_base = _function_index(base)
    for row in rows:
        j = in_base.get((row["filename"], row["name"], row["firstlineno"]))
        base_self, base_total = _counts_of(base, j)
        row.update(base_self=base_self, base_total=base_total,
                   delta_self=change(row["self"], base_self, T, B, normalize),
                   delta_total=change(row["total"], base_total, T, B, normalize),
                   side="both" if j is not None else "new")
    in_new = set(new.functions)
    only = sorted((j for j in range(len(base.functions)) if base.functions[j] not in in_new),
                  key=lambda j: (-base.self_counts[j], -base.total_counts[j], base.labels[j]))
    for j in only:
        row = _base_only_row(base, j, T, B, normalize)
        del row["delta"]
        rows.append(row)
    return rows


def compare_tree(root: dict[str, Any], base_root: dict[str, Any], normalize: bool = True) -> dict[str, Any]:
    """The flame graph's tree (from :func:`plop.analysis.flame_tree`) with the base's value of every frame.

    A frame is matched to the base's frame reached by the same path of
    functions (name, file, first line); it gains ``base_value``,
    ``base_self`` and ``delta`` (the change of its value, see
    :func:`change`), and ``side``: ``"new"`` when the base never reached
    that path. The root's values are the totals. ``base_root`` should be
    unpruned (``fraction=0``), so that every frame drawn finds its base
    counts. ``root`` is changed in place and returned.
    """
    T, B = root["value"], base_root["value"]
    work: list[tuple[dict[str, Any], dict[str, Any] | None]] = [(root, base_root)]
    while work:
        node, other = work.pop()
        base_value = other["value"] if other is not None else 0
        node.update(base_value=base_value, base_self=other["self"] if other is not None else 0,
                    delta=change(node["value"], base_value, T, B, normalize),
                    side="both" if other is not None else "new")
        children = node.pop("children")
        node["children"] = children  # still last in the JSON
        by_function = {} if other is None else {
            (c["filename"], c["name"], c["firstlineno"]): c for c in other["children"]}
        for child in children:
            work.append((child, by_function.get((child["filename"], child["name"], child["firstlineno"]))))
    return root


def compare_details(details: dict[str, Any], new: CallGraph, base: CallGraph,
                    normalize: bool = True) -> dict[str, Any]:
    """``/api/function``'s details (from :meth:`CallGraph.details`) with the base's counts.

    The function gains ``base_self`` and ``base_total`` (and their deltas),
    each caller and callee ``base_calls`` and ``delta``; callers and
    callees only the base had are appended with ``calls`` 0 (``side`` ``"base"``, their own
    counts in the new profile as ``self`` and ``total``, the base's as ``base_self`` and
    ``base_total``); ``base_recursive``
    is the base's count of recursive calls. ``details`` is changed in place.
    """
    T, B = new.total_samples, base.total_samples
    fn = details["function"]
    key = (fn["filename"], fn["name"], fn["firstlineno"])
    j = _function_index(base).get(key)
    base_details = base.details(j) if j is not None else {"function": {"self": 0, "total": 0},
                                                            "callers": [], "callees": [], "recursive": 0}
    fn.update(base_self=base_details["function"]["self"], base_total=base_details["function"]["total"],
              delta_self=change(fn["self"], base_details["function"]["self"], T, B, normalize),
              delta_total=change(fn["total"], base_details["function"]["total"], T, B, normalize),
              side="both" if j is not None else "new")
    details["base_recursive"] = base_details["recursive"]
    in_new = _function_index(new)
    for side in ("callers", "callees"):
        theirs = {(o["filename"], o["name"], o["firstlineno"]): o for o in base_details[side]}
        for other in details[side]:
            match = theirs.pop((other["filename"], other["name"], other["firstlineno"]), None)
            calls = match["calls"] if match else 0
            other.update(base_calls=calls, delta=change(other["calls"], calls, T, B, normalize),
                         side="both" if match else "new")
        for other in theirs.values():
            new_self, new_total = _counts_of(new, in_new.get((other["filename"], other["name"], other["firstlineno"])))
            other.update(base_self=other["self"], base_total=other["total"], base_calls=other["calls"],
                         self=new_self, total=new_total,
                         calls=0, delta=change(0, other["calls"], T, B, normalize), side="base")
            details[side].append(other)
    details.update(_base_summary(base, normalize))
    return details
