"""speedscope's JSON file format (https://www.speedscope.app/file-format-schema.json), read and written.

A file holds a shared frame table and a list of profiles; plop maps each
profile to a thread (its ``name``). Two kinds are read:

* ``sampled`` (py-spy's ``--format speedscope``, plop's own): stacks of frame
  indices, root first, each with a weight. Integer weights are counts as
  they are; weights in a time unit that are whole multiples of the smallest
  one (py-spy writes 1/rate seconds per sample) become sample counts, and
  that smallest weight is the ``interval``; other weights become integer
  microseconds (``metadata["value_units"]``).
* ``evented`` (pyinstrument's speedscope renderer): open/close events of
  frames at times; the time between two events is charged to the stack open
  then, in integer microseconds (or the unit's own integers when it is not a
  time). A close must match the innermost open frame.

plop writes one ``sampled`` profile per thread, weights in samples (unit
``none``); a profile with CPU counts gets a second profile per thread named
``<thread> (on CPU)``, which plop's reader turns back into ``cpu_samples``
(only in files whose exporter is plop). An empty profile is still one empty
sampled profile: speedscope refuses a file without any.
"""
from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from typing import Any

from plop.formats._common import MAX_COUNT, ProfileFormatError, _count, _frame_table
from plop.profile import Frame, Profile, StackKey

SCHEMA = "https://www.speedscope.app/file-format-schema.json"
#: Suffix of the profile holding a thread's on-CPU weights in plop's files.
CPU_SUFFIX = " (on CPU)"
#: Name of the profile of samples whose thread plop did not know.
UNNAMED = "(unnamed thread)"
#: Deepest stack accepted (sampled stacks, or frames open at once).
MAX_DEPTH = 65536

_HEAD = re.compile(rb'[ \t\r\n]*\{')
_SCHEMA_KEY = re.compile(rb'"\$schema"[ \t\r\n]*:[ \t\r\n]*"https://www\.speedscope\.app/file-format-schema\.json"')
_TIME_UNITS = {"nanoseconds": 1e-9, "microseconds": 1e-6, "milliseconds": 1e-3, "seconds": 1.0}


def sniff(head: bytes) -> bool:
    """A JSON object naming speedscope's schema in its first 4 KiB (every known exporter writes it first)."""
    return _HEAD.match(head) is not None and _SCHEMA_KEY.search(head) is not None


# --------------------------------------------------------------------------- reading

def load(data: bytes, name: str) -> Profile:
    """Parse a speedscope file (``name`` labels errors)."""
    def fail(msg: str) -> ProfileFormatError:
        return ProfileFormatError(msg, name)

    try:
        doc = json.loads(data, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise ProfileFormatError(f"invalid JSON: {e.msg} (column {e.colno}, byte {e.pos})", name, e.lineno) from None
    except UnicodeDecodeError as e:
        raise fail(f"not UTF-8 at byte {e.start}") from None
    except RecursionError:
        raise fail("JSON nested too deeply") from None
    except ValueError as e:
        raise fail(f"invalid JSON: {e}") from None
    if type(doc) is not dict:
        raise fail("speedscope file must be a JSON object")
    shared = doc.get("shared")
    raw_frames = shared.get("frames") if type(shared) is dict else None
    if type(raw_frames) is not list:
        raise fail("speedscope file needs shared.frames, a list")
    profiles = doc.get("profiles")
    if type(profiles) is not list:
        raise fail("speedscope file needs 'profiles', a list")
    frames = [_frame(f, i, fail) for i, f in enumerate(raw_frames)]
    exporter = doc.get("exporter")
    from_plop = type(exporter) is str and exporter.startswith("plop ")

    parsed = []
    for i, prof in enumerate(profiles):
        if type(prof) is not dict:
            raise fail(f"profiles[{i}] must be an object")
        thread = prof.get("name", "")
        if type(thread) is not str:
            raise fail(f"profiles[{i}].name must be a string")
        unit = prof.get("unit", "none")
        if type(unit) is not str:
            raise fail(f"profiles[{i}].unit must be a string")
        kind = prof.get("type")
        if kind == "sampled":
            weights = _sampled(prof, i, frames, fail)
        elif kind == "evented":
            weights = _evented(prof, i, frames, fail)
        else:
            raise fail(f"profiles[{i}].type must be 'sampled' or 'evented', not {kind!r:.40}")
        parsed.append((thread, unit, kind, weights))

    samples: dict[StackKey, int] = {}
    cpu: dict[StackKey, int] | None = None
    names = {thread for thread, _u, _k, _w in parsed}
    units: set[str] = set()
    intervals: set[float] = set()
    for thread, unit, kind, weights in parsed:
        counts, value_unit, interval = _to_counts(weights, unit, kind)
        units.add(value_unit)
        if interval is not None:
            intervals.add(interval)
        target = samples
        if from_plop and thread.endswith(CPU_SUFFIX) and thread[:-len(CPU_SUFFIX)] in names:
            thread = thread[:-len(CPU_SUFFIX)]
            if cpu is None:
                cpu = {}
            target = cpu
        if from_plop and thread == UNNAMED:
            thread = ""
        for stack, n in counts.items():
            if n:
                key = (thread, stack)
                target[key] = min(target.get(key, 0) + n, MAX_COUNT)
    metadata: dict[str, Any] = {"value_units": {"samples": units.pop() if len(units) == 1 else "mixed"}}
    if len(intervals) == 1:
        metadata["interval"] = intervals.pop()
    if type(exporter) is str:
        metadata["exporter"] = exporter
    return Profile(samples, metadata, cpu)


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a number plop accepts")


def _frame(f: Any, i: int, fail: Any) -> Frame:
    if type(f) is not dict or type(f.get("name")) is not str:
        raise fail(f"shared.frames[{i}] must be an object with a string 'name'")
    file = f.get("file")
    line = f.get("line")
    if file is not None and type(file) is not str:
        raise fail(f"shared.frames[{i}].file must be a string")
    if line is not None and (type(line) is not int or line < 0):
        raise fail(f"shared.frames[{i}].line must be an integer >= 0")
    return Frame(file or "", f["name"], 0, line or 0)


def _number(v: Any) -> bool:
    return (type(v) is int or type(v) is float) and math.isfinite(v) and v >= 0


def _sampled(prof: dict, i: int, frames: list[Frame], fail: Any) -> dict[tuple[Frame, ...], float]:
    stacks, weights = prof.get("samples"), prof.get("weights")
    if type(stacks) is not list or type(weights) is not list or len(stacks) != len(weights):
        raise fail(f"profiles[{i}]: 'samples' and 'weights' must be lists of one length")
    nframes = len(frames)
    out: dict[tuple[Frame, ...], float] = defaultdict(int)
    cache: dict[tuple[int, ...], tuple[Frame, ...]] = {}
    for j, (idx, w) in enumerate(zip(stacks, weights)):
        if type(idx) is not list:
            raise fail(f"profiles[{i}].samples[{j}] must be a list of frame indices")
        if not _number(w):
            raise fail(f"profiles[{i}].weights[{j}] must be a number >= 0, not {w!r:.40}")
        key = tuple(idx)
        stack = cache.get(key)
        if stack is None:
            if len(idx) > MAX_DEPTH:
                raise fail(f"profiles[{i}].samples[{j}] is more than {MAX_DEPTH} frames deep")
            for x in idx:
                if type(x) is not int or not 0 <= x < nframes:
                    raise fail(f"profiles[{i}].samples[{j}]: frame index {x!r:.40} out of range ({nframes} frames)")
            stack = cache[key] = tuple(frames[x] for x in idx)
        out[stack] += w
    return out


def _evented(prof: dict, i: int, frames: list[Frame], fail: Any) -> dict[tuple[Frame, ...], float]:
    events = prof.get("events")
    if type(events) is not list:
        raise fail(f"profiles[{i}]: 'events' must be a list")
    nframes = len(frames)
    out: dict[tuple[Frame, ...], float] = defaultdict(int)
    open_idx: list[int] = []
    stack: tuple[Frame, ...] = ()
    last = None
    for j, ev in enumerate(events):
        if type(ev) is not dict:
            raise fail(f"profiles[{i}].events[{j}] must be an object")
        kind, at, x = ev.get("type"), ev.get("at"), ev.get("frame")
        if kind not in ("O", "C"):
            raise fail(f"profiles[{i}].events[{j}].type must be 'O' or 'C'")
        if not (type(at) is int or type(at) is float) or not math.isfinite(at):
            raise fail(f"profiles[{i}].events[{j}].at must be a number")
        if type(x) is not int or not 0 <= x < nframes:
            raise fail(f"profiles[{i}].events[{j}]: frame index {x!r:.40} out of range ({nframes} frames)")
        if last is not None:
            if at < last:
                raise fail(f"profiles[{i}].events[{j}] goes back in time ({at} < {last})")
            if stack and at > last:
                out[stack] += at - last
        last = at
        if kind == "O":
            if len(open_idx) >= MAX_DEPTH:
                raise fail(f"profiles[{i}]: more than {MAX_DEPTH} frames open at once")
            open_idx.append(x)
            stack = stack + (frames[x],)
        else:
            if not open_idx or open_idx[-1] != x:
                raise fail(f"profiles[{i}].events[{j}] closes frame {x}, which is not the innermost open one")
            open_idx.pop()
            stack = stack[:-1]
    if open_idx:
        raise fail(f"profiles[{i}]: {len(open_idx)} frames still open at the end")
    return out


def _to_counts(weights: dict[tuple[Frame, ...], float], unit: str,
               kind: str) -> tuple[dict[tuple[Frame, ...], int], str, float | None]:
    """Integer counts for one profile's weights: (counts, what they count, interval or None)."""
    values = [w for w in weights.values() if w]
    scale = _TIME_UNITS.get(unit)
    if all(type(w) is int for w in weights.values()) and (kind == "sampled" or scale is None):
        return dict(weights), ("samples" if kind == "sampled" else unit), None  # type: ignore[arg-type]
    if kind == "sampled" and scale is not None and values:
        quantum = min(values)
        ratios = [w / quantum for w in values]
        if all(abs(r - round(r)) < 1e-6 * max(r, 1) for r in ratios):
            return ({s: round(w / quantum) for s, w in weights.items()}, "samples", quantum * scale)
    if scale is not None:
        return {s: round(w * scale * 1e6) for s, w in weights.items()}, "microseconds", None
    return {s: round(w) for s, w in weights.items()}, unit, None


# --------------------------------------------------------------------------- writing

def dump(profile: Profile) -> bytes:
    """A speedscope file: one sampled profile per thread over a shared frame table.

    Weights are samples (unit ``none``). With CPU counts, each thread has a
    second profile, ``<thread> (on CPU)``. An empty profile is one empty
    sampled profile, so that speedscope opens it.
    """
    from plop import __version__

    cpu = profile.cpu_samples
    keys = list(profile.samples)
    if cpu is not None:
        keys += [k for k in cpu if k not in profile.samples]
    frames, stacks = _frame_table([stack for _t, stack in keys])
    per_thread: dict[str, list[tuple[list[int], int]]] = defaultdict(list)
    per_thread_cpu: dict[str, list[tuple[list[int], int]]] = defaultdict(list)
    for key, idx in zip(keys, stacks):
        n = _count(profile.samples.get(key, 0), key)
        if n:
            per_thread[key[0]].append((idx, n))
        if cpu is not None:
            c = _count(cpu.get(key, 0), key)
            if c:
                per_thread_cpu[key[0]].append((idx, c))
    threads = profile.threads()
    for t in sorted({k[0] for k in keys}):
        if t not in threads:
            threads.append(t)  # threads seen only on CPU tables
    if not all(type(t) is str for t in threads):
        raise ValueError("thread names must be strings")

    def sampled(name: str, rows: list[tuple[list[int], int]]) -> dict[str, Any]:
        rows = sorted(rows)
        return {
            "type": "sampled",
            "name": name,
            "unit": "none",
            "startValue": 0,
            "endValue": sum(n for _, n in rows),
            "samples": [idx for idx, _ in rows],
            "weights": [n for _, n in rows],
        }

    profiles = []
    for thread in threads or [""]:
        name = thread or UNNAMED
        profiles.append(sampled(name, per_thread.get(thread, [])))
        if cpu is not None:
            profiles.append(sampled(name + CPU_SUFFIX, per_thread_cpu.get(thread, [])))
    shared = []
    for f in frames:
        entry: dict[str, Any] = {"name": f.funcname or "?", "file": f.filename}
        if f.lineno:
            entry["line"] = f.lineno
        shared.append(entry)
    command = profile.metadata.get("command")
    title = " ".join(map(str, command)) if isinstance(command, list) and command else "plop profile"
    doc = {
        "$schema": SCHEMA,
        "shared": {"frames": shared},
        "profiles": profiles,
        "name": title,
        "activeProfileIndex": 0,
        "exporter": f"plop {__version__}",
    }
    return json.dumps(doc, separators=(",", ":")).encode("ascii")
