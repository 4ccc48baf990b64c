"""Filters and the flame graph's call tree: pure functions over a :class:`~plop.profile.Profile`.

The viewer's handlers parse parameters and cache results; what a view shows
is decided here, so that it can be tested on hand-counted profiles and
combined (a later merge of several profiles only needs to hand these
functions the summed profile).

Filters have pprof's meaning, and each takes a regular expression that is
searched for in a frame's function name and in ``file:function``:

* ``focus``: keep only the samples whose stack has a matching frame;
* ``ignore``: drop the samples whose stack has a matching frame;
* ``hide``: remove matching frames from every stack, so their time is
  charged to their caller (a sample whose every frame is hidden is left
  with an empty stack and no longer counts towards ``total_samples``).

They apply in that order, to the wall-clock samples and the on-CPU table
alike. The call tree (:func:`flame_tree`) and the tables of functions
(:class:`plop.callgraph.CallGraph`) are then built from the filtered
profile, so every view and every number agrees on what was kept.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import filterfalse
from typing import Any, Iterable

from plop.callgraph import app_root, group_of, label_of
from plop.profile import Frame, Profile, StackKey

#: The flame graph leaves out frames under this share of all samples (0.02%, a tenth of a pixel
#: on a wide screen; pprof's node fraction). At most ``1 / FLAME_FRACTION`` frames per depth can
#: remain, so even a profile of 100,000 distinct stacks stays drawable.
FLAME_FRACTION = 0.0002
#: The name of the flame graph's root, which stands for every sample.
ROOT_NAME = "all"


class FilterError(ValueError):
    """A filter's regular expression does not compile; the message says which and why."""


@dataclass(frozen=True)
class Filters:
    """The ``focus``, ``ignore`` and ``hide`` regular expressions; empty means unused."""

    focus: str = ""
    ignore: str = ""
    hide: str = ""

    def __bool__(self) -> bool:
        return bool(self.focus or self.ignore or self.hide)

    def as_dict(self) -> dict[str, str]:
        """The filters in use, as the JSON answers echo them."""
        return {name: value for name, value in (("focus", self.focus), ("ignore", self.ignore),
                                                 ("hide", self.hide)) if value}

    def compiled(self) -> list[tuple[str, re.Pattern[str]]]:
        """``(name, pattern)`` of each filter in use, in the order they apply.

        Raises `FilterError` naming the filter, the expression and ``re``'s own
        message when one does not compile.
        """
        patterns = []
        for name in ("focus", "ignore", "hide"):
            expression = getattr(self, name)
            if expression:
                try:
                    patterns.append((name, re.compile(expression)))
                except re.error as e:
                    raise FilterError("bad %s regular expression %r: %s" % (name, expression, e)) from None
        return patterns


def matching_frames(frames: Iterable[Frame], pattern: re.Pattern[str]) -> set[Frame]:
    """The frames whose function name or ``file:function`` matches ``pattern`` (``re.search``)."""
    verdict: dict[tuple[str, str], bool] = {}
    matched = set()
    for frame in frames:
        function = (frame[0], frame[1])
        hit = verdict.get(function)
        if hit is None:
            hit = verdict[function] = bool(
                pattern.search(frame[1]) or pattern.search("%s:%s" % (frame[0], frame[1])))
        if hit:
            matched.add(frame)
    return matched


def apply_filters(profile: Profile, filters: Filters) -> Profile:
    """``profile`` with ``filters`` applied (see the module's docstring); the same object when none.

    Raises `FilterError` for an expression that does not compile.
    """
    patterns = filters.compiled()
    if not patterns:
        return profile
    frames: set[Frame] = set()
    for _thread, stack in profile.samples:
        frames.update(stack)
    samples: dict[StackKey, int] = profile.samples
    cpu = profile.cpu_samples
    for name, pattern in patterns:
        matched = matching_frames(frames, pattern)
        samples = _filtered(samples, name, matched)
        if cpu is not None:
            cpu = _filtered(cpu, name, matched)
    return Profile(samples, profile.metadata, cpu)


def _filtered(samples: dict[StackKey, int], name: str, matched: set[Frame]) -> dict[StackKey, int]:
    """One filter over a table of counts (``matched``: the frames its expression matches)."""
    if name == "focus":
        return {key: n for key, n in samples.items() if not matched.isdisjoint(key[1])}
    if name == "ignore":
        return {key: n for key, n in samples.items() if matched.isdisjoint(key[1])}
    hidden: dict[StackKey, int] = {}
    is_hidden = matched.__contains__
    for key, n in samples.items():
        stack = key[1]
        if not matched.isdisjoint(stack):
            key = (key[0], tuple(filterfalse(is_hidden, stack)))
        hidden[key] = hidden.get(key, 0) + n
    return hidden


def flame_tree(profile: Profile, fraction: float = FLAME_FRACTION, root: str | None = None) -> dict[str, Any]:
    """The call tree of ``profile`` (all its threads), as ``/api/flame`` serves it.

    A node is one function reached by one path of calls from the root (a
    frame's executing line does not split it); its ``value`` is the samples
    whose stack starts with that path (its own ``self`` plus its children's),
    so the root's value is the samples with at least one frame and a child's
    value never exceeds its parent's. Children come heaviest first.

    Frames whose ``value`` is under ``fraction`` of the total are left out
    with everything under them: a node's ``pruned`` is the samples of its
    children left out, so ``value == self + pruned + sum(children's values)``
    everywhere, and the answer's ``pruned_frames`` and ``pruned_samples``
    sum that up (counting each left-out subtree once, by its topmost frame).
    The light subtrees are never walked, which keeps a profile of 100,000
    stacks quick to shape. A node's ``group`` is its package (see
    `plop.callgraph.group_of`), named from ``root`` (by default the profile's
    own `plop.callgraph.app_root`; a view of a larger profile passes that
    one's, so that packages keep their names, as in the call graph).
    """
    if not 0 <= fraction < 1:
        raise ValueError("fraction must be at least 0 and less than 1")
    items: list[tuple[tuple[Frame, ...], int]] = []
    empty = 0
    for (_thread, stack), n in profile.samples.items():
        if n <= 0:
            continue
        if stack:
            items.append((stack, n))
        else:
            empty += n
    total = sum(n for _stack, n in items)
    function_of: dict[Frame, int] = {}  # frame -> function id, filled as frames are met
    functions: dict[tuple[str, str, int], int] = {}
    shown: list[Frame] = []  # function id -> its first frame
    lines: list[int] = []  # function id -> its first line, else its smallest executing line

    def function(frame: Frame) -> int:
        key = (frame[0], frame[1], frame[2])
        fid = functions.get(key)
        if fid is None:
            fid = functions[key] = len(shown)
            shown.append(frame)
            lines.append(frame[2] or frame[3])
        elif not frame[2] and frame[3] and (not lines[fid] or frame[3] < lines[fid]):
            lines[fid] = frame[3]
        function_of[frame] = fid
        return fid

    threshold = fraction * total
    tree: dict[str, Any] = {"fid": -1, "value": total, "self": 0, "pruned": 0, "children": []}
    pruned_frames = pruned_samples = 0
    work = [(tree, items, 0)]
    while work:
        node, members, depth = work.pop()
        groups: dict[int, list] = {}
        own = 0
        lookup = function_of.get
        for item in members:
            stack = item[0]
            if len(stack) == depth:
                own += item[1]
                continue
            frame = stack[depth]
            fid = lookup(frame)
            if fid is None:
                fid = function(frame)
            group = groups.get(fid)
            if group is None:
                groups[fid] = [item[1], [item]]
            else:
                group[0] += item[1]
                group[1].append(item)
        node["self"] = own
        children = node["children"]
        for fid, (value, group_items) in groups.items():
            if value < threshold or value == 0:
                node["pruned"] += value
                pruned_frames += 1
                pruned_samples += value
                continue
            child = {"fid": fid, "value": value, "self": 0, "pruned": 0, "children": []}
            children.append(child)
            work.append((child, group_items, depth + 1))
    root_dir = app_root(sorted({frame[0] for frame in shown})) if root is None else root
    labels = [label_of(frame[1], frame[0], root_dir) for frame in shown]
    group_of_file: dict[str, str] = {}
    for frame in shown:
        if frame[0] not in group_of_file:
            group_of_file[frame[0]] = group_of(frame[0], root_dir)
    groups = [group_of_file[frame[0]] for frame in shown]
    frames = _finish(tree, shown, labels, groups, lines)
    return {
        "total_samples": total,
        "samples_without_frames": empty,
        "fraction": fraction,
        "min_value": threshold,
        "frames": frames,
        "pruned_frames": pruned_frames,
        "pruned_samples": pruned_samples,
        "root": tree,
    }


def _finish(root: dict[str, Any], shown: list[Frame], labels: list[str], groups: list[str], lines: list[int]) -> int:
    """Name every node of the tree, order children heaviest first; returns the number of frames."""
    count = 0
    work = [root]
    while work:
        node = work.pop()
        fid = node.pop("fid")
        if fid < 0:
            node.update(name=ROOT_NAME, label=ROOT_NAME, filename="", firstlineno=0, line=0, group="")
        else:
            frame = shown[fid]
            node.update(name=frame[1], label=labels[fid], filename=frame[0], firstlineno=frame[2], line=lines[fid],
                        group=groups[fid])
            count += 1
        children = node.pop("children")
        children.sort(key=lambda c: (-c["value"], labels[c["fid"]], shown[c["fid"]][0]))
        node["children"] = children  # last, so that a node's own fields come first in the JSON
        work.extend(children)
    return count
