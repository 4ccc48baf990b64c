"""Reading and writing profile files.

plop reads three kinds of file, recognised by their *content* (never by their
name, since users drop ``profile.out``, ``plop.out`` or ``x.plop`` files of any
kind into a data directory):

* ``"plop"``: the native JSON format, specified in docs/format.md;
* ``"legacy"``: the Python literal ``{stack: count}`` written by the original
  plop (0.4.0) and its Python 3 ports;
* ``"collapsed"``: ``frame;frame;... count`` lines, as written by the original
  plop's flamegraph output, ``py-spy record --format raw`` and the stackcollapse
  scripts for flamegraph.pl.

and writes the native format, collapsed stacks (``"flamegraph"``) and
speedscope JSON. Every input is treated as hostile: sizes are checked before
reading, non-regular files are refused, parsers are linear and bounded, and
every problem surfaces as one exception type, :class:`ProfileFormatError`, so
a viewer scanning thousands of unrelated files needs a single ``except``.
"""
from __future__ import annotations

import gc
import json
import math
import os
import re
import stat
import sys
import tempfile
from array import array
from collections import defaultdict
from contextlib import contextmanager
from itertools import chain, count
from operator import itemgetter
from typing import Any, Iterator

from plop.profile import Frame, Profile, StackKey, from_stack_counts

__all__ = [
    "DEFAULT_MAX_BYTES", "EXTENSIONS", "FORMATS", "NATIVE_VERSION", "ProfileFormatError",
    "dump", "dumps", "format_for_path", "load", "loads", "sniff", "write_atomic",
]

#: Files larger than this are refused by :func:`load` before any byte is read.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
#: Major version of the native format this module reads and writes.
NATIVE_VERSION = 1
#: Writer formats accepted by :func:`dumps` / :func:`dump` ("collapsed" is an alias of "flamegraph").
FORMATS = ("plop", "flamegraph", "speedscope")
#: The usual file extension (without dot) for each writer format.
EXTENSIONS = {"plop": "plop", "flamegraph": "flame", "speedscope": "speedscope.json"}

SNIFF_BYTES = 4096
MAX_LINE_CHARS = 1 << 20  # one collapsed line (a 4096-frame py-spy stack fits easily)
MAX_COUNT = (1 << 63) - 1  # counts beyond int64 are corrupt, not real samples
MAX_NESTING = 32  # legacy literals nest 4 deep; anything far deeper is hostile
_MAX_INT_DIGITS = 19
_LITTLE_ENDIAN = sys.byteorder == "little"


class ProfileFormatError(ValueError):
    """The input is not a profile plop can read: what is wrong and where.

    Raised for every unreadable input (bad syntax, wrong types, out-of-range
    indices, unknown format, too large, not a regular file, I/O failure), so
    callers that list many candidate files need to catch only this. ``source``
    is the file name, ``line`` the 1-based line when known.
    """

    def __init__(self, message: str, source: str | None = None, line: int | None = None) -> None:
        where = source or ""
        if line is not None:
            where = f"{where}:{line}" if where else f"line {line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.line = line


# --------------------------------------------------------------------------- detection

_NATIVE_HEAD = re.compile(rb'\{"plop":')
_BOM = b"\xef\xbb\xbf"
_LEGACY_HEAD = re.compile(
    rb"""[ \t\r\n]*\{[ \t\r\n]*\([ \t\r\n]*(?:[(\[][ \t\r\n]*[bBuUrR]{0,2}['"]|\)[ \t\r\n]*:)"""
)
_LEGACY_EMPTY = re.compile(rb"[ \t\r\n]*\{[ \t\r\n]*\}[ \t\r\n]*\Z")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # tab aside: not in any text profile
_STACK_BAD = re.compile(r"[\x00-\x1f\x7f]")


# No regular expression with two variable-length parts is used on collapsed
# lines: a hostile megabyte line must cost linear time, not quadratic.
def _split_collapsed(line: str) -> tuple[str, int] | None:
    """``"stack count"`` (stripped) as (stack, count), or None if malformed.

    py-spy writes a bare ``" count"`` for a sample with no Python frames: its
    stack is "".
    """
    parts = line.rsplit(None, 1)
    if not parts:
        return None
    count = parts[-1]
    if not (count.isascii() and count.isdigit() and len(count) <= 18):
        return None
    if len(parts) == 1:
        return "", int(count)
    stack = parts[0]
    if line[len(stack):-len(count)].strip(" \t") or _STACK_BAD.search(stack):
        return None
    return stack, int(count)


def _located(frame: str) -> bool:
    """True for a ``name (file:line)`` frame, the shape plop and py-spy write."""
    if not frame.endswith(")"):
        return False
    i = frame.find(" (")
    if i <= 0:
        return False
    _file, sep, line = frame[i + 2:-1].rpartition(":")
    return bool(sep) and line.isascii() and line.isdigit()


def _stack_evidence(stack: str) -> bool:
    """A stack that could only be a profile: several frames, or a located one."""
    return stack != "None" and (";" in stack or _located(stack))


def sniff(head: bytes) -> str | None:
    """Name the format of a file from its first bytes, or ``None``.

    Returns ``"plop"``, ``"legacy"`` or ``"collapsed"``. The viewer calls this
    on every file of a directory to pick out profiles, so it looks at no more
    than 4 KiB, is a few regular-expression matches, and errs towards ``None``:
    JSON, Python source, logs, images and empty files are not profiles. An
    empty legacy profile (``{}``) is indistinguishable from an empty JSON
    object and says ``None`` too (:func:`loads` still accepts it).
    """
    head = bytes(head[:SNIFF_BYTES])
    if _NATIVE_HEAD.match(head):
        return "plop"
    if head.startswith(_BOM):  # some Windows tools write one before text
        head = head[len(_BOM):]
    if _NATIVE_HEAD.match(head):
        return "plop"
    if _LEGACY_HEAD.match(head):
        return "legacy"
    if _looks_collapsed(head):
        return "collapsed"
    return None


def _looks_collapsed(head: bytes) -> bool:
    """Every complete line is ``stack count`` and one has real stack evidence."""
    if not head or b"\0" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # not just a character cut by the 4 KiB window
            return False
        text = head[: e.start].decode("utf-8", "replace")
    lines = text.split("\n")
    partial = lines.pop().strip()  # possibly cut short by the window
    evidence = False
    for line in lines:
        line = line.strip()
        if not line:
            continue
        split = _split_collapsed(line)
        if split is None:
            return False
        evidence = evidence or _stack_evidence(split[0])
    if partial:
        split = _split_collapsed(partial)
        if split is not None:
            evidence = evidence or _stack_evidence(split[0])
        elif _CONTROL.search(partial):
            return False
        elif any(map(_located, partial.split(";")[:-1])):
            evidence = True  # one very deep stack longer than the window
    return evidence


def _first_line_collapsed(data: bytes) -> bool:
    for raw in data[:MAX_LINE_CHARS].split(b"\n"):
        if raw.strip():
            try:
                split = _split_collapsed(raw.decode("utf-8").strip())
            except UnicodeDecodeError:
                return False
            if split is None:
                return False
            if split[0] != "None":  # plop 0.4.0's bogus first line
                return _stack_evidence(split[0])
    return False


# --------------------------------------------------------------------------- loading

def load(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> Profile:
    """Read a profile file of any supported format, detected by content.

    The size is checked with ``stat`` before reading, so a huge file is
    refused at once; anything but a regular file (FIFO, socket, device) is
    refused without being read, so a scan of ``/tmp`` can never block. I/O
    errors are reported as :class:`ProfileFormatError` too (chained).
    """
    name = os.fspath(path)
    try:
        st = os.stat(name)
        if not stat.S_ISREG(st.st_mode):
            raise ProfileFormatError("not a regular file", name)
        if st.st_size > max_bytes:
            raise ProfileFormatError(f"file is {st.st_size} bytes, more than the limit of {max_bytes}", name)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(name, flags)
        try:
            st = os.fstat(fd)  # the file may have been swapped since the stat above
            if not stat.S_ISREG(st.st_mode):
                raise ProfileFormatError("not a regular file", name)
            # One read of the whole file in the usual case (and so no copy in
            # the join); more only if it is growing or lies about its size.
            chunks = []
            remaining = max_bytes + 1
            want = min(st.st_size + 1, remaining)
            while remaining > 0:
                chunk = os.read(fd, want)
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
                want = min(remaining, 1 << 20)
        finally:
            os.close(fd)
    except OSError as e:
        raise ProfileFormatError(f"cannot read: {e.strerror or e}", name) from e
    data = b"".join(chunks)
    del chunks
    if len(data) > max_bytes:
        raise ProfileFormatError(f"file grew past the limit of {max_bytes} bytes", name)
    return loads(data, name=name)


def loads(data: bytes, *, name: str = "<data>") -> Profile:
    """Parse profile bytes of any supported format, detected by content.

    For bytes that did not come from a file (an HTTP body, a test). ``name``
    only labels error messages. Raises :class:`ProfileFormatError`.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"loads() needs bytes, not {type(data).__name__}")
    data = bytes(data)
    kind = sniff(data[:SNIFF_BYTES])
    if kind != "plop" and data.startswith(_BOM):
        data = data[len(_BOM):]
    if kind == "plop":
        return _load_native(data, name)
    if kind == "legacy" or _LEGACY_EMPTY.match(data):
        return _load_legacy(data, name)
    if kind == "collapsed" or _first_line_collapsed(data):
        # The sniffer wants every line of its window to be well formed; a file
        # asked for by name only needs a good first line, so that a bad line
        # further on is reported with its number instead of "not a profile".
        return _load_collapsed(data, name)
    if not data.strip():
        raise ProfileFormatError("empty file", name)
    raise ProfileFormatError("not a profile (not plop JSON, a legacy plop dict or collapsed stacks)", name)


# ----- native

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


def _is_num(v: Any) -> bool:
    return (type(v) is int or type(v) is float) and math.isfinite(v)


def _check_metadata(meta: Any, name: str) -> dict[str, Any]:
    if type(meta) is not dict:
        raise ProfileFormatError("'metadata' must be an object", name)
    for key, (what, check) in _META_TYPES.items():
        value = meta.get(key)
        if value is not None and not check(value):
            raise ProfileFormatError(f"metadata {key!r} must be {what}, not {value!r:.80}", name)
    return meta


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building or walking millions of acyclic objects.

    Every few hundred allocations the collector would rescan the growing heap;
    for a large profile that doubles the time of loading or writing it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load_native(data: bytes, name: str) -> Profile:
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


# ----- legacy

_LIT_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r\n\f]*)(?:(?P<p>[{}()\[\],:])|(?P<s>(?P<pre>[bBuUrR]{0,2})(?P<q>['"]))"""
    r"""|(?P<i>[-+]?[0-9]+)[lL]?|(?P<n>None|True|False)\b|(?P<end>\Z))"""
)
_STR_PREFIXES = {"", "r", "u", "b", "br", "rb", "ur"}
# The common case, a frame tuple of escape-free strings, parsed in one step
# (7 tokens at once: legacy files load several times faster).
_FAST_FRAME = re.compile(
    r"""\([ \t\r\n\f]*[uU]?(?:'([^'\\\n]*)'|"([^"\\\n]*)")[ \t\r\n\f]*,[ \t\r\n\f]*([0-9]{1,19}|None)"""
    r"""[ \t\r\n\f]*,[ \t\r\n\f]*[uU]?(?:'([^'\\\n]*)'|"([^"\\\n]*)")[ \t\r\n\f]*\)""")
_STR_BODY = {
    "'": re.compile(r"([^'\\\n]*(?:\\[\s\S][^'\\\n]*)*)'"),
    '"': re.compile(r'([^"\\\n]*(?:\\[\s\S][^"\\\n]*)*)"'),
}
_SPACE = re.compile(r"[ \t\r\n\f]*")
_CONSTS = {"None": None, "True": True, "False": False}
_CLOSERS = {"(": ")", "[": "]", "{": "}"}


def _parse_literal(text: str, name: str) -> Any:
    """Parse one Python literal of dicts, tuples, lists, strings, ints and constants.

    A hand-written, iterative, linear-time parser: no eval, no ast (whose
    recursion and allocation are unbounded), nesting limited to MAX_NESTING.
    """
    def fail(msg: str, at: int) -> ProfileFormatError:
        return ProfileFormatError(msg, name, text.count("\n", 0, at) + 1)

    interned: dict[str, str] = {}
    stack: list[list[Any]] = []  # open containers: [opener, items, saw_comma, start_pos]
    pos = 0
    expect = "value"  # or "comma" (",", or a closer) or "colon" (after a dict key)
    value: Any
    while True:
        m = _LIT_TOKEN.match(text, pos)
        if m is None:
            at = _SPACE.match(text, pos).end()
            raise fail(f"unexpected character {text[at:at + 1]!r} in Python literal", at)
        at, pos = m.end("ws"), m.end()
        if m.group("end") is not None:
            raise fail("unexpected end of file (truncated literal?)", at)
        punct = m.group("p")
        if punct is None or punct in "([{":
            if expect != "value":
                raise fail("missing ':' after dict key" if expect == "colon" else "missing ',' between items", at)
            fast = _FAST_FRAME.match(text, at) if punct == "(" else None
            if fast is not None:  # a whole plain (filename, lineno, funcname) in one match
                a, b, line, c, d = fast.groups()
                filename, funcname = a if b is None else b, c if d is None else d
                value = (interned.setdefault(filename, filename), None if line == "None" else int(line),
                         interned.setdefault(funcname, funcname))
                pos = fast.end()
            elif punct is not None:
                if len(stack) >= MAX_NESTING:
                    raise fail(f"nested more than {MAX_NESTING} levels deep", at)
                stack.append([punct, [], False, at])
                continue
            elif m.group("s") is not None:
                prefix = m.group("pre").lower()
                if prefix not in _STR_PREFIXES:
                    raise fail(f"invalid string prefix {prefix!r}", at)
                body = _STR_BODY[m.group("q")].match(text, pos)
                if body is None:
                    raise fail("unterminated string", at)
                pos = body.end()
                value = _decode_str(body.group(1), prefix, lambda msg: fail(msg, at))
                value = interned.setdefault(value, value)
            elif m.group("i") is not None:
                digits = m.group("i")
                if len(digits.lstrip("+-")) > _MAX_INT_DIGITS:
                    raise fail("integer too large", at)
                value = int(digits)
            else:
                value = _CONSTS[m.group("n")]
        elif punct == ",":
            if expect != "comma":
                raise fail("unexpected ','", at)
            stack[-1][2] = True
            expect = "value"
            continue
        elif punct == ":":
            if expect != "colon":
                raise fail("unexpected ':'", at)
            expect = "value"
            continue
        else:  # a closer
            if not stack or _CLOSERS[stack[-1][0]] != punct:
                raise fail(f"unbalanced {punct!r}", at)
            opener, items, saw_comma, start = stack.pop()
            if expect == "colon" or opener == "{" and len(items) % 2:
                raise fail("dict key without a value", at)
            if opener == "(":
                if expect == "value" and items and not saw_comma:
                    raise fail("unexpected ')'", at)
                value = items[0] if len(items) == 1 and not saw_comma else tuple(items)
            elif opener == "[":
                value = items
            else:
                try:
                    value = dict(zip(items[::2], items[1::2]))
                except TypeError:
                    raise fail("unhashable dict key", start) from None
        # a complete value: store it in the open container, or it is the result
        if not stack:
            end = _SPACE.match(text, pos).end()
            if end != len(text):
                raise fail("unexpected data after the literal", end)
            return value
        top = stack[-1]
        top[1].append(value)
        expect = "colon" if top[0] == "{" and len(top[1]) % 2 else "comma"


def _decode_str(body: str, prefix: str, fail: Any) -> str:
    """Turn a string literal's body into text; bytes literals are decoded as UTF-8."""
    if "\\" in body and "r" not in prefix:
        try:
            value = body.encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError as e:
            raise fail(f"invalid escape in string: {e.reason}") from None
    else:
        value = body
    if ("b" in prefix or (not prefix and body.isascii())) and not value.isascii():
        # Python 2 reprs byte strings as ASCII with \xNN escapes of UTF-8 bytes.
        try:
            value = value.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            if "b" in prefix:
                value = value.encode("latin-1", "replace").decode("utf-8", "replace")
    return value


def _load_legacy(data: bytes, name: str) -> Profile:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProfileFormatError(f"not UTF-8 at byte {e.start}", name) from None
    doc = _parse_literal(text, name)
    if type(doc) is not dict:
        raise ProfileFormatError("legacy plop file must be a dict {stack: count}", name)
    counts = []
    for stack, n in doc.items():
        if type(stack) is not tuple:
            raise ProfileFormatError(f"legacy stack must be a tuple of frames, not {stack!r:.80}", name)
        for fr in stack:
            if (type(fr) not in (tuple, list) or len(fr) != 3 or type(fr[0]) is not str
                    or type(fr[2]) is not str or not (fr[1] is None or type(fr[1]) is int and fr[1] >= 0)):
                raise ProfileFormatError(f"legacy frame must be (filename, lineno, funcname), not {fr!r:.80}", name)
        if type(n) is not int or not 0 <= n <= MAX_COUNT:
            raise ProfileFormatError(f"legacy count must be an integer >= 0, not {n!r:.40}", name)
        if n:
            # Python 3.11+ sometimes has no f_lineno (None): plop 0.4.0 wrote it as is.
            counts.append((tuple((f, 0 if ln is None else ln, fn) for f, ln, fn in stack), n))
    return from_stack_counts(counts)


# ----- collapsed

_THREAD_FRAME = re.compile(r"thread \((0[xX][0-9a-fA-F]+|[0-9]+)\)(?:: (.*))?", re.S)
_PROCESS_FRAME = re.compile(r'process [0-9]+:".*"', re.S)


def _parse_frame(text: str) -> Frame:
    """``funcname (filename:lineno)``, py-spy's ``funcname (filename)``, or a bare name.

    Function names never contain " (" while file names may contain anything, so
    the name ends at the first " (" and the line number is read from the right.
    """
    if text.endswith(")"):
        i = text.find(" (")
        if i > 0:
            inner = text[i + 2:-1]
            filename, sep, line = inner.rpartition(":")
            if sep and line.isascii() and line.isdigit() and len(line) <= 9:
                return Frame(filename, text[:i], 0, int(line))
            return Frame(inner, text[:i], 0, 0)
    return Frame("", text, 0, 0)


def _load_collapsed(data: bytes, name: str) -> Profile:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProfileFormatError(f"not UTF-8 at byte {e.start}", name) from None
    samples: dict[StackKey, int] = {}
    frame_cache: dict[str, Frame] = {}
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        if len(line) > MAX_LINE_CHARS:
            raise ProfileFormatError(f"line longer than {MAX_LINE_CHARS} characters", name, lineno)
        split = _split_collapsed(line)
        if split is None:
            raise ProfileFormatError(f"expected 'frame;frame;... count', got {line!r:.80}", name, lineno)
        stack_text, count = split
        if stack_text == "None" or not count:
            continue  # plop 0.4.0's bogus first line "None 1" (see docs/format.md)
        if not stack_text:
            samples[("", ())] = samples.get(("", ()), 0) + count
            continue
        parts = stack_text.split(";")
        thread = process = ""
        first = 0  # py-spy puts process frames, then a thread frame, before the code
        while first < len(parts) and _PROCESS_FRAME.fullmatch(parts[first]):
            process = parts[first].split(":", 1)[0].replace("process ", "pid ")
            first += 1
        tm = _THREAD_FRAME.fullmatch(parts[first]) if first < len(parts) else None
        if tm is not None:
            first += 1
            thread = tm.group(2) if tm.group(2) is not None else "thread " + tm.group(1)
        if process:
            thread = f"{process} {thread}".rstrip()
        frames = []
        for part in parts[first:] if first else parts:
            if not part:
                raise ProfileFormatError("empty frame name", name, lineno)
            fr = frame_cache.get(part)
            if fr is None:
                fr = frame_cache[part] = _parse_frame(part)
            frames.append(fr)
        key = (thread, tuple(frames))
        samples[key] = samples.get(key, 0) + count
    return Profile(samples)


# --------------------------------------------------------------------------- writing

def format_for_path(path: str | os.PathLike[str]) -> str:
    """The writer format a file name asks for: ``.flame``/``.collapsed``/``.txt``
    are collapsed stacks, ``.json`` is speedscope, anything else native plop."""
    lower = os.fspath(path).lower()
    if lower.endswith((".flame", ".collapsed", ".txt")):
        return "flamegraph"
    if lower.endswith(".json"):
        return "speedscope"
    return "plop"


def dumps(profile: Profile, format: str = "plop") -> bytes:
    """Serialise a profile to ``format``: one of FORMATS, or "collapsed" (= "flamegraph").

    Raises ValueError (or TypeError) for a profile the format cannot
    represent faithfully, e.g. negative counts or metadata that is not JSON,
    rather than writing a file that plop itself would refuse to read.
    """
    writer = _WRITERS.get(format)
    if writer is None:
        raise ValueError(f"unknown profile format {format!r}; expected one of {', '.join(FORMATS)}")
    with _gc_paused():
        return writer(profile)


def dump(profile: Profile, path: str | os.PathLike[str], format: str = "plop") -> None:
    """Write a profile file atomically: readers see the old file or the new one, never half."""
    write_atomic(path, dumps(profile, format))


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    The bytes go to a temporary file in the same directory (so the rename is
    atomic on one file system), are fsynced, then renamed over ``path``; the
    temporary file is removed on any failure. A collector that dies mid-write
    therefore never leaves a truncated profile for the viewer to trip on. The
    new file gets ordinary permissions (those of the file it replaces, or
    0666 less the umask), not mkstemp's 0600.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        try:
            try:
                mode = stat.S_IMODE(os.stat(path).st_mode)
            except OSError:
                mode = 0o666 & ~_umask()
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable; not possible everywhere
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _umask() -> int:
    """The process umask, read without os.umask's set-and-restore race where possible."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _frame_table(stacks: list[tuple[Frame, ...]]) -> tuple[list[Frame], list[list[int]]]:
    """The distinct frames, sorted so output does not depend on insertion
    order, and every stack as a list of indices into them.

    One C-level pass numbers frames as first seen (a defaultdict whose
    factory is a counter), then the numbers are remapped to sorted order by
    list indexing: each frame of each stack is hashed once.
    """
    first_seen: defaultdict[Frame, int] = defaultdict(count().__next__)
    number = first_seen.__getitem__
    raw = [list(map(number, stack)) for stack in stacks]
    seen = list(first_seen)
    for f in seen:
        if (type(f.filename) is not str or type(f.funcname) is not str or type(f.firstlineno) is not int
                or type(f.lineno) is not int or f.firstlineno < 0 or f.lineno < 0):
            raise ValueError(f"cannot write frame {f!r}: need str names and line numbers >= 0")
    order = sorted(range(len(seen)), key=seen.__getitem__)
    remap = [0] * len(seen)
    for new, old in enumerate(order):
        remap[old] = new
    renumber = remap.__getitem__
    return [seen[i] for i in order], [list(map(renumber, idx)) for idx in raw]


def _count(n: Any, key: StackKey) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_COUNT:
        raise ValueError(f"cannot write count {n!r} for thread {key[0]!r}: need an integer in 0..2**63-1")
    return int(n)


def _sort_key(idx: list[int]) -> bytes:
    """Big-endian bytes of the indices: sorts like the list, compared by memcmp."""
    arr = array("I", idx)
    if _LITTLE_ENDIAN:
        arr.byteswap()
    return arr.tobytes()


def _dump_native(profile: Profile) -> bytes:
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


# ";" separates frames and line breaks separate stacks: neither may survive in a name.
_SANITIZE = str.maketrans({";": ",", "\n": " ", "\r": " ", "\x0b": " ", "\x0c": " ", "\x1c": " ",
                           "\x1d": " ", "\x1e": " ", "\x85": " ", "\u2028": " ", "\u2029": " "})


def _frame_text(f: Frame) -> str:
    func = f.funcname.translate(_SANITIZE).replace(" (", " [") or "?"
    if not f.filename and not f.lineno:
        return func
    return f"{func} ({f.filename.translate(_SANITIZE)}:{f.lineno})"


def _dump_collapsed(profile: Profile) -> bytes:
    texts: dict[Frame, str] = {}
    merged: dict[str, int] = defaultdict(int)
    for key, n in profile.samples.items():
        n = _count(n, key)
        if not key[1] or not n:
            continue  # an empty stack has no line in this format
        parts = []
        for f in key[1]:
            t = texts.get(f)
            if t is None:
                t = texts[f] = _frame_text(f)
            parts.append(t)
        merged[";".join(parts)] += n
    return "".join(f"{s} {n}\n" for s, n in sorted(merged.items())).encode("utf-8", "backslashreplace")


def _dump_speedscope(profile: Profile) -> bytes:
    from plop import __version__

    frames, stacks = _frame_table([stack for _t, stack in profile.samples])
    per_thread: dict[str, list[tuple[list[int], int]]] = defaultdict(list)
    for (key, n), idx in zip(profile.samples.items(), stacks):
        n = _count(n, key)
        if n:
            per_thread[key[0]].append((idx, n))
    profiles = []
    for thread in profile.threads():
        rows = sorted(per_thread.get(thread, ()))
        total = sum(n for _, n in rows)
        profiles.append({
            "type": "sampled",
            "name": thread or "(unnamed thread)",
            "unit": "none",
            "startValue": 0,
            "endValue": total,
            "samples": [idx for idx, _ in rows],
            "weights": [n for _, n in rows],
        })
    shared = []
    for f in frames:
        entry: dict[str, Any] = {"name": f.funcname or "?", "file": f.filename}
        if f.lineno:
            entry["line"] = f.lineno
        shared.append(entry)
    command = profile.metadata.get("command")
    title = " ".join(map(str, command)) if isinstance(command, list) and command else "plop profile"
    doc = {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": shared},
        "profiles": profiles,
        "name": title,
        "activeProfileIndex": 0,
        "exporter": f"plop {__version__}",
    }
    return json.dumps(doc, separators=(",", ":")).encode("ascii")


_WRITERS = {
    "plop": _dump_native,
    "flamegraph": _dump_collapsed,
    "collapsed": _dump_collapsed,
    "speedscope": _dump_speedscope,
}
