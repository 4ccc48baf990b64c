"""plop's native JSON format (specified in docs/format.md): the lossless one.

Frames are stored once in a table, stacks as rows of indices sharing the
previous row's prefix, wall and CPU counts side by side; loading validates
column by column with C-speed builtins and only walks rows to name an error.
"""
from __future__ import annotations

import json
import math
import re
from itertools import chain
from operator import itemgetter
from typing import Any

from plop.formats._common import (
    MAX_COUNT, ProfileFormatError, _count, _frame_table, _gc_paused, _is_num, _sort_key,
)
from plop.profile import Frame, Profile, StackKey

#: Major version of the native format this module writes; it reads every version up to it.
#: Version 2: a frame's funcname is the qualified name (``co_qualname``); in version 1
#: files it is the plain ``co_name``. The rows are the same shape, so both load alike.
NATIVE_VERSION = 2

_NATIVE_HEAD = re.compile(rb'\{"plop":')



_META_TYPES: dict[str, tuple[str, Any]] = {
    # key: (description, check) -- None is accepted for every key ("not known")
    "command": ("a list of strings", lambda v: type(v) is list and all(type(s) is str for s in v)),
    "start_time": ("a number", lambda v: _is_num(v)),
    "duration": ("a number >= 0", lambda v: _is_num(v) and v >= 0),
    "mode": ("a string", lambda v: type(v) is str),
    "interval": ("a number >= 0", lambda v: _is_num(v) and v >= 0),
    "pid": ("an integer", lambda v: type(v) is int),
    "hostname": ("a string", lambda v: type(v) is str),
    "python_version": ("a string", lambda v: type(v) is str),
    "samples_taken": ("an integer >= 0", lambda v: type(v) is int and v >= 0),
    "sample_time": ("a number >= 0", lambda v: _is_num(v) and v >= 0),
    "errors": ("an integer >= 0", lambda v: type(v) is int and v >= 0),
    "service": ("a string", lambda v: type(v) is str),
    "labels": ("an object of strings", lambda v: type(v) is dict and all(type(s) is str for s in v.values())),
    "window_start": ("a number", lambda v: _is_num(v)),
    "window_end": ("a number", lambda v: _is_num(v)),
    "effective_interval": ("a number >= 0", lambda v: _is_num(v) and v >= 0),
    "max_stacks": ("an integer >= 0", lambda v: type(v) is int and v >= 0),
    "truncated_stacks": ("an integer >= 0", lambda v: type(v) is int and v >= 0),
    "view": ("a string", lambda v: type(v) is str),
}


def _check_metadata(meta: Any, name: str) -> dict[str, Any]:
    if type(meta) is not dict:
        raise ProfileFormatError("'metadata' must be an object", name)
    for key, (what, check) in _META_TYPES.items():
        value = meta.get(key)
        if value is not None and not check(value):
            raise ProfileFormatError(f"metadata {key!r} must be {what}, not {value!r:.80}", name)
    return meta


def sniff(head: bytes) -> bool:
    """True when ``head`` starts a native plop file."""
    return _NATIVE_HEAD.match(head) is not None


_METADATA_KEY = re.compile(rb'\n"metadata": ')


def head_metadata(head: bytes) -> dict[str, Any] | None:
    """The metadata of a native file from its first bytes, or ``None`` when they do not hold all of it.

    plop writes the metadata on the file's third line, so the 4 KiB the
    viewer reads to recognise a file usually hold it: a directory of
    rolling windows can then be selected by service and time without
    loading a single profile. Metadata the reader would refuse is ``None``
    too (loading the file will say why).
    """
    found = _METADATA_KEY.search(head, 0, 200)
    if found is None or not sniff(head):
        return None
    try:
        text = head[found.end():].decode("utf-8", "strict")
    except UnicodeDecodeError as e:
        text = head[found.end():found.end() + e.start].decode("utf-8")
    try:
        meta, _end = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float).raw_decode(text)
        return _check_metadata(meta, "metadata")
    except (ValueError, ProfileFormatError):
        return None


def load(data: bytes, name: str) -> Profile:
    """Parse a native file's bytes (``name`` labels errors)."""
    with _gc_paused():
        return _parse_native(data, name)


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a number plop accepts")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows a float")
    return value


def _parse_native(data: bytes, name: str) -> Profile:
    try:
        # NaN and infinities are not JSON and break every consumer downstream.
        doc = json.loads(data, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as e:
        raise ProfileFormatError(f"invalid JSON: {e.msg} (column {e.colno}, byte {e.pos})", name, e.lineno) from None
    except UnicodeDecodeError as e:
        raise ProfileFormatError(f"not UTF-8 at byte {e.start}", name) from None
    except RecursionError:
        raise ProfileFormatError("JSON nested too deeply", name) from None
    except ValueError as e:  # e.g. integers with thousands of digits
        raise ProfileFormatError(f"invalid JSON: {e}", name) from None
    if type(doc) is not dict:
        raise ProfileFormatError("top level must be an object", name)
    version = doc.get("plop")
    if type(version) is not int or version < 1:
        raise ProfileFormatError(f"'plop' must be a positive integer version, not {version!r:.40}", name)
    if version > NATIVE_VERSION:
        raise ProfileFormatError(
            f"native format version {version} is newer than this plop supports "
            f"(version {NATIVE_VERSION}); upgrade plop to read it", name)
    for key in ("metadata", "threads", "frames", "stacks"):
        if key not in doc:
            raise ProfileFormatError(f"missing key {key!r}", name)
    metadata = _check_metadata(doc["metadata"], name)
    has_cpu = doc.get("cpu", False)
    if type(has_cpu) is not bool:
        raise ProfileFormatError("'cpu' must be true or false", name)

    threads = doc["threads"]
    if type(threads) is not list or not all(type(t) is str for t in threads):
        raise ProfileFormatError("'threads' must be a list of strings", name)

    raw_frames = doc["frames"]
    if type(raw_frames) is not list:
        raise ProfileFormatError("'frames' must be a list", name)
    frames: list[Frame] = []
    memo: dict[Any, Any] = {}  # share equal strings and ints: less memory, faster hashing
    share = memo.setdefault
    for i, fr in enumerate(raw_frames):
        if (type(fr) is not list or len(fr) != 4 or type(fr[0]) is not str or type(fr[1]) is not str
                or type(fr[2]) is not int or type(fr[3]) is not int or fr[2] < 0 or fr[3] < 0):
            raise ProfileFormatError(
                f"frames[{i}] must be [filename, funcname, firstlineno, lineno] with line numbers >= 0, "
                f"not {fr!r:.80}", name)
        frames.append(Frame(share(fr[0], fr[0]), share(fr[1], fr[1]), share(fr[2], fr[2]), share(fr[3], fr[3])))

    rows = doc["stacks"]
    if type(rows) is not list:
        raise ProfileFormatError("'stacks' must be a list", name)
    if not rows:
        return Profile({}, metadata, {} if has_cpu else None)
    nthreads, nframes = len(threads), len(frames)

    def bad() -> None:
        _find_bad_stack(rows, nthreads, nframes, has_cpu, name)

    # Validate column by column with C-speed builtins; only when something is
    # wrong does _find_bad_stack walk the rows to name the first bad one.
    if set(map(type, rows)) != {list} or set(map(len, rows)) != {5}:
        bad()
    ts, ns, cs, ks, idxs = zip(*rows)
    if (set(map(type, ts)) != {int} or min(ts) < 0 or max(ts) >= nthreads
            or set(map(type, ns)) != {int} or min(ns) < 0 or max(ns) > MAX_COUNT
            or set(map(type, ks)) != {int} or min(ks) < 0 or set(map(type, idxs)) != {list}):
        bad()
    if any(idxs) and (set(map(type, chain.from_iterable(idxs))) != {int} or min(chain.from_iterable(idxs)) < 0):
        bad()
    if has_cpu:
        cpu_values = [c for c in cs if c is not None]
        if cpu_values and (set(map(type, cpu_values)) != {int} or min(cpu_values) < 0
                           or max(cpu_values) > MAX_COUNT):
            bad()
    elif cs.count(None) != len(cs):
        bad()
    if 0 in ns and any(n == 0 and c is None for n, c in zip(ns, cs)):
        bad()

    # Stacks share the Frame objects of the frames table, and the leading
    # frames of the previous stack: building one is a slice and one C-level
    # itemgetter call.
    # Each key goes into the dicts as soon as it is built, while its frames
    # are still in the CPU cache for hashing.
    getf = frames.__getitem__
    keys: list[StackKey] = []
    append = keys.append
    samples: dict[StackKey, int] = {}
    cpu: dict[StackKey, int] | None = {} if has_cpu else None
    on_cpu = cpu if cpu is not None else {}  # stays empty without a cpu table (cs all None)
    prev: tuple[Frame, ...] = ()
    try:
        for t, k, idx, n, c in zip(ts, ks, idxs, ns, cs):
            stack = itemgetter(*idx)(frames) if len(idx) > 1 else tuple(map(getf, idx))
            if k:
                if k > len(prev):
                    bad()
                stack = prev[:k] + stack
            key = (threads[t], stack)
            samples[key] = n
            if c is not None:
                on_cpu[key] = c
            append(key)
            prev = stack
    except (IndexError, TypeError):
        bad()
    if len(samples) != len(keys) or 0 in ns or len(on_cpu) != len(cs) - cs.count(None):
        # Rare: repeated stacks (they add up) or cpu-only rows (count 0).
        samples = {}
        for key, n in zip(keys, ns):
            if n:
                samples[key] = samples.get(key, 0) + n
        if cpu is not None:
            cpu.clear()
            for key, c in zip(keys, cs):
                if c is not None:
                    cpu[key] = cpu.get(key, 0) + c
    return Profile(samples, metadata, cpu)


def _find_bad_stack(rows: list[Any], nthreads: int, nframes: int, has_cpu: bool, name: str) -> None:
    """Raise the ProfileFormatError naming the first malformed row of ``stacks``."""
    prev_len = 0
    for i, row in enumerate(rows):
        where = f"stacks[{i}]"
        if type(row) is not list or len(row) != 5:
            raise ProfileFormatError(f"{where} must be [thread, count, cpu_count, shared, [frames]]", name)
        t, n, c, k, idx = row
        if type(t) is not int or not 0 <= t < nthreads:
            raise ProfileFormatError(f"{where}: thread index {t!r:.40} out of range ({nthreads} threads)", name)
        if type(n) is not int or not 0 <= n <= MAX_COUNT:
            raise ProfileFormatError(f"{where}: count must be an integer in 0..2**63-1, not {n!r:.40}", name)
        if c is not None and not has_cpu:
            raise ProfileFormatError(f"{where}: cpu count given but the file has no cpu table (\"cpu\": false)", name)
        if c is not None and (type(c) is not int or not 0 <= c <= MAX_COUNT):
            raise ProfileFormatError(f"{where}: cpu count must be null or an integer >= 0, not {c!r:.40}", name)
        if n == 0 and c is None:
            raise ProfileFormatError(f"{where}: count must be positive", name)
        if type(k) is not int or not 0 <= k <= prev_len:
            raise ProfileFormatError(
                f"{where}: shared prefix {k!r:.40} must be an integer in 0..{prev_len} "
                f"(the previous stack's depth)", name)
        if type(idx) is not list:
            raise ProfileFormatError(f"{where}: frames must be a list of frame indices", name)
        for x in idx:
            if type(x) is not int or not 0 <= x < nframes:
                raise ProfileFormatError(f"{where}: frame index {x!r:.40} out of range ({nframes} frames)", name)
        prev_len = k + len(idx)
    raise ProfileFormatError("malformed 'stacks'", name)  # pragma: no cover (checks agree)


def dump(profile: Profile) -> bytes:
    """The native file's bytes; refuses metadata the reader would refuse."""
    meta = dict(profile.metadata)
    _check_metadata(meta, "metadata")  # never write a file the reader would refuse
    samples, cpu = profile.samples, profile.cpu_samples
    # Align wall and cpu counts without hashing a single stack: dict.fromkeys
    # and update reuse the hashes the dicts already store.
    wall = dict.fromkeys(samples, 0)
    if cpu is not None:
        wall.update(dict.fromkeys(cpu, 0))
    cpu_of: dict[StackKey, int | None] = dict.fromkeys(wall)
    wall.update(samples)
    if cpu is not None:
        cpu_of.update(cpu)
    frames, stacks = _frame_table([stack for _t, stack in wall])
    threads = sorted({t for t, _ in wall})
    if not all(type(t) is str for t in threads):
        raise ValueError("thread names must be strings")
    tindex = {t: i for i, t in enumerate(threads)}
    rows = []
    for (key, n), c, idx in zip(wall.items(), cpu_of.values(), stacks):
        n = _count(n, key)
        if c is not None:
            c = _count(c, key)
        elif not n:
            continue
        rows.append((_sort_key(idx), tindex[key[0]], idx, n, c))
    rows.sort(key=itemgetter(0, 1))  # by stack, then thread: neighbours share long prefixes
    lines = []
    prev: list[int] = []
    for _sk, t, idx, n, c in rows:
        k = _common_prefix(prev, idx)
        lines.append("[%d,%d,%s,%d,[%s]]" % (t, n, "null" if c is None else c, k, ",".join(map(str, idx[k:]))))
        prev = idx
    dump = json.dumps
    out = [
        '{"plop": %d,\n"cpu": %s,\n"metadata": %s,\n"threads": %s,\n"frames": [\n'
        % (NATIVE_VERSION, "true" if cpu is not None else "false",
           dump(meta, allow_nan=False, sort_keys=True), dump(threads)),
        ",\n".join(dump(list(f), separators=(",", ":")) for f in frames),
        '\n],\n"stacks": [\n',
        ",\n".join(lines),
        "\n]}\n",
    ]
    return "".join(out).encode("ascii")


def _common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of two lists, by binary search on C-level slice compares."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while lo < hi:  # invariant: a[:lo] == b[:lo] and a[:hi+1] != b[:hi+1]
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
