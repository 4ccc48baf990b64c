"""pprof's ``profile.proto``: gzip-compressed protocol buffers, read and written.

The format every continuous profiler exchanges (``go tool pprof``, Pyroscope,
Parca, Datadog, Cloud Profiler). Field numbers are those of
github.com/google/pprof's proto/profile.proto; plop's trimmed copy of the
schema is profile.proto beside this module, compiled to profile_pb2.py (see
tools/gen_pprof_pb2.sh for the generator and its version). Parsing and
serialising are the ``protobuf`` runtime's (upb, in C): on
benchmarks/pprof_codec.py a hand-written pure-Python decoder loaded the same
files about 5 times slower (see the README). Only detection, which must judge
a 4 KiB window that no protobuf parser accepts, reads varints itself.

Reading (by content: gzip magic, zstd magic, or a raw Profile message):

* each sample's ``location_id`` list is leaf first; a location's ``line`` list
  is inlined callee first, caller last. Both are reversed into plop's
  outermost-first stacks, every line its own :class:`~plop.profile.Frame`;
* several sample types are kept as a list in ``metadata["sample_types"]``;
  ``samples`` gets the first wall-clock type (or, without one, the first CPU
  type, then ``samples/count``, then pprof's default), ``cpu_samples`` the
  first CPU type when that is a different column. A time column whose values
  are all whole multiples of ``period`` is divided by it, so counts are sample
  counts like every other plop profile; ``metadata["value_units"]`` says what
  the counts are;
* the ``thread_name`` (or Datadog's ``thread name``) string label is the
  thread; a ``pid`` number label is kept in ``metadata["pid"]``, or prefixes
  the thread (``pid 12 main``) when the samples come from several processes.

Every input is hostile: decompression stops at a size limit, every index and
id is checked, stacks are bounded in depth, and all errors are
:class:`~plop.formats.ProfileFormatError`.
"""
from __future__ import annotations

import gzip
import json
import re
import zlib
from typing import Any

from plop.formats._common import DEFAULT_MAX_BYTES, MAX_COUNT, ProfileFormatError, _count
from plop.profile import Frame, Profile, StackKey

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: Decompressed pprof larger than this is refused (a gzip bomb stops here).
MAX_DECOMPRESSED = DEFAULT_MAX_BYTES
#: Deepest stack accepted, counting inlined frames.
MAX_DEPTH = 65536

WALL_TYPES = ("wall", "wall-time", "wall_time", "walltime", "wall-samples")
CPU_TYPES = ("cpu", "cpu-time", "cpu_time", "cpu-samples", "cpu_samples")
_TIME_UNITS = {"nanoseconds": 1e-9, "microseconds": 1e-6, "milliseconds": 1e-3, "seconds": 1.0}
_THREAD_LABELS = ("thread_name", "thread name")
#: How plop names the threads of a profile merged from several processes (as py-spy's collapsed files do).
_PID_THREAD = re.compile(r"pid ([0-9]{1,18})(?: (.*))?", re.S)
#: A comment starting with this holds the plop metadata that pprof has no field for, as JSON.
METADATA_COMMENT = "plop metadata: "
#: Metadata keys that travel in pprof's own fields (or are made by the reader).
_MAPPED_METADATA = frozenset({"interval", "start_time", "duration", "pid", "sample_types", "value_types",
                              "value_units"})

# Wire types.
_VARINT, _LEN = 0, 2
# The fields of pprof's Profile message, and the wire types each may have
# (repeated integers are packed, LEN, or one varint each).
_PROFILE_FIELDS = {1: {_LEN}, 2: {_LEN}, 3: {_LEN}, 4: {_LEN}, 5: {_LEN}, 6: {_LEN}, 7: {_VARINT},
                   8: {_VARINT}, 9: {_VARINT}, 10: {_VARINT}, 11: {_LEN}, 12: {_VARINT},
                   13: {_VARINT, _LEN}, 14: {_VARINT}, 15: {_VARINT}, 16: {_LEN}}


class _Bad(Exception):
    """Internal to detection: a varint cut short or too long."""


# --------------------------------------------------------------------------- detection

def sniff(head: bytes) -> bool:
    """True when ``head`` starts a Profile message, raw or gzip/zstd-compressed.

    A raw message is recognised by its first fields: each tag must be a
    Profile field with that field's wire type, until a ``sample_type`` or
    ``period_type`` that is a well-formed ValueType (a few bytes, wholly
    inside the window) or an empty first string (``string_table[0]``) has
    been seen. Text, JSON and Python source fail at their first byte or two
    ('{', '#', letters are tags of the wrong wire type). Gzip data must hold
    such a message in its first bytes, so that ``.gz`` logs are not taken for
    profiles; zstd decompresses only in whole blocks (128 KiB), so its magic
    is taken alone when the window holds no complete block.
    """
    if head.startswith(GZIP_MAGIC):
        inner = _decompress_head(head)
        return inner is not None and _sniff_raw(inner)
    if head.startswith(ZSTD_MAGIC):
        inner = _decompress_head(head)
        return inner is not None and (not inner or _sniff_raw(inner))
    return _sniff_raw(head)


def _decompress_head(head: bytes) -> bytes | None:
    """The first bytes inside compressed ``head``: b"" if none could be had yet, None if corrupt."""
    try:
        if head.startswith(GZIP_MAGIC):
            return zlib.decompressobj(wbits=31).decompress(head, 512)
        import zstandard
        return zstandard.ZstdDecompressor().decompressobj().decompress(head)[:512]
    except ImportError:
        return b""
    except Exception:  # corrupt data: zlib.error, zstandard.ZstdError
        return None


def _sniff_raw(head: bytes) -> bool:
    pos, n = 0, len(head)
    try:
        for _ in range(32):
            if pos >= n:
                return False
            key, pos = _varint(head, pos)
            field, wire = key >> 3, key & 7
            if wire not in _PROFILE_FIELDS.get(field, ()):
                return False
            if wire == _VARINT:
                _value, pos = _varint(head, pos)
                continue
            size, pos = _varint(head, pos)
            if field in (1, 11):
                return pos + size <= n and _is_value_type(head, pos, pos + size)
            if field == 6:
                return size == 0  # string_table[0] must be ""
            if pos + size > n:
                return False
            pos += size
    except _Bad:
        return False
    return False


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """One base-128 varint at ``pos``: (value, next position)."""
    try:
        b = buf[pos]
        if b < 0x80:
            return b, pos + 1
        result, shift = b & 0x7F, 7
        while True:
            pos += 1
            b = buf[pos]
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result, pos + 1
            shift += 7
            if shift > 63:
                raise _Bad("varint longer than 10 bytes")
    except IndexError:
        raise _Bad("truncated varint") from None


def _is_value_type(buf: bytes, pos: int, end: int) -> bool:
    if end - pos > 22:  # two 10-byte varints and their tags
        return False
    try:
        while pos < end:
            key, pos = _varint(buf, pos)
            if key not in (0x08, 0x10):
                return False
            _v, pos = _varint(buf, pos)
    except _Bad:
        return False
    return pos == end


# --------------------------------------------------------------------------- decoding

def decompress(data: bytes, name: str, limit: int = MAX_DECOMPRESSED) -> bytes:
    """The raw protobuf inside gzip or zstd ``data`` (or ``data`` itself), at most ``limit`` bytes."""
    if data.startswith(GZIP_MAGIC):
        out = []
        size = 0
        d = zlib.decompressobj(wbits=31)
        chunk = data
        try:
            while True:
                piece = d.decompress(chunk, limit + 1 - size)
                out.append(piece)
                size += len(piece)
                if size > limit:
                    raise ProfileFormatError(f"gzip data decompresses to more than {limit} bytes", name)
                chunk = d.unconsumed_tail
                if d.eof:
                    if d.unused_data.startswith(GZIP_MAGIC):  # concatenated members
                        rest = d.unused_data
                        d = zlib.decompressobj(wbits=31)
                        chunk = rest
                        continue
                    break
                if not chunk:
                    raise ProfileFormatError("truncated gzip data", name)
        except zlib.error as e:
            raise ProfileFormatError(f"corrupt gzip data: {e}", name) from None
        return b"".join(out)
    if data.startswith(ZSTD_MAGIC):
        try:
            import zstandard
        except ImportError:
            raise ProfileFormatError(
                "zstd-compressed pprof (as Datadog writes) needs the 'zstandard' package: "
                "pip install 'plop[zstd]'", name) from None
        try:
            reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
            raw = reader.read(limit + 1)
            while len(raw) <= limit:
                more = reader.read(limit + 1 - len(raw))
                if not more:
                    break
                raw += more
        except zstandard.ZstdError as e:
            raise ProfileFormatError(f"corrupt zstd data: {e}", name) from None
        if len(raw) > limit:
            raise ProfileFormatError(f"zstd data decompresses to more than {limit} bytes", name)
        return raw
    return data


def load(data: bytes, name: str, *, value: int | str | None = None) -> Profile:
    """Parse pprof bytes (compressed or raw) into a Profile.

    ``value`` picks the sample type that becomes ``samples`` (its index, or
    its type name as in ``go tool pprof -sample_index``); by default the
    first wall-clock type, as described in the module's docstring.
    """
    raw = decompress(data, name)
    from google.protobuf.message import DecodeError

    from plop.formats import profile_pb2  # imported when needed: 10 ms that most processes never spend
    msg = profile_pb2.Profile()
    try:
        msg.ParseFromString(raw)
    except DecodeError as e:
        raise ProfileFormatError(f"malformed pprof protobuf: {e}", name) from None
    return _build(msg, name, value)


def _build(msg: Any, name: str, value: int | str | None) -> Profile:
    def fail(text: str) -> ProfileFormatError:
        return ProfileFormatError(text, name)

    strings = list(msg.string_table)
    if strings and strings[0] != "":
        raise fail("string_table[0] must be the empty string")
    if not strings:
        strings = [""]
    nstrings = len(strings)

    def string(i: int, what: str) -> str:
        if not 0 <= i < nstrings:
            raise fail(f"{what}: string index {i} out of range ({nstrings} strings)")
        return strings[i]

    types = [(string(vt.type, "sample_type"), string(vt.unit, "sample_type")) for vt in msg.sample_type]
    if not types:
        if len(msg.sample):
            raise fail("samples but no sample_type")
        types = [("samples", "count")]

    # Functions and locations: id -> object, checked before any sample uses them.
    functions: dict[int, tuple[str, str, int]] = {}
    for fn in msg.function:
        fid = fn.id
        if fid == 0 or fid in functions:
            raise fail(f"function id {fid} is zero or repeated")
        funcname = string(fn.name, "function name") or string(fn.system_name, "function system_name")
        functions[fid] = (string(fn.filename, "function filename"), funcname, max(fn.start_line, 0))

    interned: dict[tuple[str, str, int, int], Frame] = {}
    locations: dict[int, tuple[Frame, ...]] = {}
    for loc in msg.location:
        lid = loc.id
        if lid == 0 or lid in locations:
            raise fail(f"location id {lid} is zero or repeated")
        lines: list[Frame] = []
        for line in reversed(loc.line):  # line[0] is the innermost inlined function
            fn = functions.get(line.function_id)
            if fn is None:
                raise fail(f"location {lid}: unknown function id {line.function_id}")
            key = (fn[0], fn[1], fn[2], max(line.line, 0))
            frame = interned.get(key)
            if frame is None:
                frame = interned[key] = Frame(*key)
            lines.append(frame)
        if not lines:  # not symbolised: all that is known is the address
            key = ("", f"0x{loc.address:x}", 0, 0)
            frame = interned.get(key)
            if frame is None:
                frame = interned[key] = Frame(*key)
            lines.append(frame)
        locations[lid] = tuple(lines)

    nvalues = len(types)
    chosen, cpu_col = _choose_columns(types, msg.default_sample_type, strings, value)
    period = msg.period
    pt = None
    if msg.HasField("period_type"):
        pt = (string(msg.period_type.type, "period_type"), string(msg.period_type.unit, "period_type"))

    # The label keys plop reads, as string indices (a key never in the table matches nothing).
    thread_keys = {i for i, text in enumerate(strings) if text in _THREAD_LABELS}
    pid_keys = {i for i, text in enumerate(strings) if text == "pid"}

    # Samples: (thread, pid, stack tuple, values).
    rows: list[tuple[str, int | None, tuple[Frame, ...], Any]] = []
    stack_cache: dict[tuple[int, ...], tuple[Frame, ...]] = {}
    for sample in msg.sample:
        ids = tuple(sample.location_id)
        values = sample.value
        if len(values) != nvalues:
            raise fail(f"a sample has {len(values)} values for {nvalues} sample types")
        stack = stack_cache.get(ids)
        if stack is None:
            if len(ids) > MAX_DEPTH:
                raise fail(f"a sample is more than {MAX_DEPTH} locations deep")
            parts: list[Frame] = []
            for lid in reversed(ids):
                loc = locations.get(lid)
                if loc is None:
                    raise fail(f"sample refers to unknown location id {lid}")
                parts.extend(loc)
            if len(parts) > MAX_DEPTH:
                raise fail(f"a sample is more than {MAX_DEPTH} frames deep")
            stack = stack_cache[ids] = tuple(parts)
        thread = ""
        pid: int | None = None
        for label in sample.label:
            if label.key in thread_keys:
                thread = string(label.str, "label")
            elif label.key in pid_keys:
                pid = label.num
        rows.append((thread, pid, stack, values))

    pids = {pid for _t, pid, _s, _v in rows}
    several = len(pids - {None}) > 1

    divisor = {col: _period_divisor(types[col], pt, period, rows, col) for col in {chosen, cpu_col} - {None}}
    samples: dict[StackKey, int] = {}
    cpu: dict[StackKey, int] | None = {} if cpu_col is not None else None
    wall_div = divisor[chosen]
    for thread, pid, stack, values in rows:
        if several and pid is not None:
            thread = f"pid {pid} {thread}".rstrip()
        key = (thread, stack)
        n = values[chosen]
        if n < 0:
            raise fail(f"negative sample value {n}")
        n //= wall_div
        if n:
            samples[key] = min(samples.get(key, 0) + n, MAX_COUNT)
        if cpu is not None:
            c = values[cpu_col]
            if c < 0:
                raise fail(f"negative sample value {c}")
            c //= divisor[cpu_col]
            if c:
                cpu[key] = min(cpu.get(key, 0) + c, MAX_COUNT)

    def unit(col: int) -> str:
        return "samples" if divisor[col] > 1 or types[col][1] == "count" else types[col][1]

    metadata: dict[str, Any] = _comment_metadata([string(i, "comment") for i in msg.comment])
    metadata["sample_types"] = [{"type": t, "unit": u} for t, u in types]
    metadata["value_types"] = {"samples": types[chosen][0]}
    metadata["value_units"] = {"samples": unit(chosen)}
    if cpu_col is not None:
        metadata["value_types"]["cpu"] = types[cpu_col][0]
        metadata["value_units"]["cpu"] = unit(cpu_col)
    if pt is not None and pt[1] in _TIME_UNITS and period > 1:
        metadata["interval"] = period * _TIME_UNITS[pt[1]]
    if msg.time_nanos:
        metadata["start_time"] = msg.time_nanos / 1e9
    if msg.duration_nanos > 0:
        metadata["duration"] = msg.duration_nanos / 1e9
    if len(pids - {None}) == 1:
        metadata["pid"] = next(iter(pids - {None}))
    if cpu_col is None and types[chosen][0] in CPU_TYPES:
        metadata["view"] = "cpu"
    return Profile(samples, metadata, cpu)


def _comment_metadata(comments: list[str]) -> dict[str, Any]:
    """The metadata plop put in a comment, if it is there and valid; else nothing.

    A comment is free text that any tool may write: one that does not parse,
    or holds metadata plop's native reader would refuse, is ignored rather
    than failing the whole profile.
    """
    from plop.formats.native import _check_metadata

    for text in comments:
        if text.startswith(METADATA_COMMENT):
            try:
                meta = json.loads(text[len(METADATA_COMMENT):], parse_constant=_reject)
                if type(meta) is dict:
                    return _check_metadata({k: v for k, v in meta.items() if k not in _MAPPED_METADATA}, "")
            except (ValueError, ProfileFormatError, RecursionError):
                pass
    return {}


def _reject(text: str) -> Any:
    raise ValueError(text)


def _choose_columns(types: list[tuple[str, str]], default: int, strings: list[str],
                    value: int | str | None) -> tuple[int, int | None]:
    """(column for ``samples``, column for ``cpu_samples`` or None)."""
    names = [t for t, _u in types]
    wall = next((i for i, t in enumerate(names) if t in WALL_TYPES), None)
    cpu = next((i for i, t in enumerate(names) if t in CPU_TYPES), None)
    if value is not None:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < len(types):
                raise ValueError(f"no sample type {value}: the profile has {len(types)}")
            chosen = value
        elif value in names:
            chosen = names.index(value)
        else:
            raise ValueError(f"no sample type {value!r}: the profile has {', '.join(names)}")
    elif wall is not None:
        chosen = wall
    elif cpu is not None:
        chosen = cpu
    elif ("samples", "count") in types:
        chosen = types.index(("samples", "count"))
    else:
        default_name = strings[default] if 0 < default < len(strings) else ""
        chosen = names.index(default_name) if default_name in names else len(types) - 1
    return chosen, (cpu if cpu is not None and cpu != chosen and chosen == wall else None)


def _period_divisor(vtype: tuple[str, str], period_type: tuple[str, str] | None, period: int,
                    rows: list[Any], col: int) -> int:
    """``period`` when every value of a time column is a whole multiple of it, else 1.

    Go's and plop's time columns are sample counts times the period: dividing
    gives counts back exactly. Datadog's wall time is measured, not counted,
    and stays in its unit.
    """
    if (vtype[1] == "count" or period <= 1 or period_type is None or period_type[1] != vtype[1]
            or vtype[1] not in _TIME_UNITS):
        return 1
    for _t, _p, _s, values in rows:
        if values[col] % period:
            return 1
    return period


# --------------------------------------------------------------------------- encoding

def dump(profile: Profile) -> bytes:
    """A gzip-compressed ``profile.proto`` for ``go tool pprof`` and the engines that ingest it.

    Sample types are ``samples/count``, then ``wall/nanoseconds`` (``cpu/`` for
    an on-CPU profile: modes ``prof``/``virtual``, or a CPU view), then
    ``cpu/nanoseconds`` when the profile has CPU counts; the nanosecond
    columns need the sampling interval: without one, a profile with CPU
    counts has ``wall-samples/count`` and ``cpu-samples/count`` instead. Each
    sample carries its thread as the ``thread_name`` label, and the
    metadata's pid as a ``pid`` label (a thread named ``pid 12 main``, from
    a profile merged over processes, is ``thread_name`` main and ``pid`` 12); metadata pprof has no field for goes
    in a comment (``plop metadata: {...}``) that plop reads back.
    """
    from plop import __version__
    from plop.formats import profile_pb2

    meta = profile.metadata
    strings: dict[str, int] = {"": 0}

    def s(text: str) -> int:
        i = strings.get(text)
        if i is None:
            i = strings[text] = len(strings)
        return i

    interval = meta.get("interval")
    period = int(round(interval * 1e9)) if _is_number(interval) and interval > 0 else 0
    on_cpu = meta.get("mode") in ("prof", "virtual") or meta.get("view") == "cpu"
    cpu = profile.cpu_samples
    types = [("samples", "count")]
    if period:
        types.append(("cpu" if on_cpu else "wall", "nanoseconds"))
    if cpu is not None:
        if period:
            types.append(("cpu", "nanoseconds"))
        else:  # counts only, but a reader must still tell wall from CPU
            types += [("wall-samples", "count"), ("cpu-samples", "count")]

    msg = profile_pb2.Profile()
    for t, u in types:
        msg.sample_type.add(type=s(t), unit=s(u))
    functions: dict[tuple[str, str, int], int] = {}
    locations: dict[Frame, int] = {}
    add_location, add_function, add_sample = msg.location.add, msg.function.add, msg.sample.add
    thread_key, pid_key = s("thread_name"), s("pid")
    pid = meta.get("pid")
    has_pid = type(pid) is int and -(1 << 63) <= pid < 1 << 63
    keys = list(profile.samples)
    if cpu is not None:
        keys += [k for k in cpu if k not in profile.samples]
    for key in keys:
        thread, stack = key
        if type(thread) is not str:
            raise ValueError("thread names must be strings")
        n = _count(profile.samples.get(key, 0), key)
        c = _count(cpu.get(key, 0), key) if cpu is not None else 0
        if not n and not c:
            continue
        ids = []
        for frame in reversed(stack):  # leaf first
            lid = locations.get(frame)
            if lid is None:
                if (type(frame.filename) is not str or type(frame.funcname) is not str
                        or type(frame.firstlineno) is not int or type(frame.lineno) is not int
                        or frame.firstlineno < 0 or frame.lineno < 0):
                    raise ValueError(f"cannot write frame {frame!r}: need str names and line numbers >= 0")
                fkey = frame.function
                fid = functions.get(fkey)
                if fid is None:
                    fid = functions[fkey] = len(functions) + 1
                    name = s(frame.funcname)
                    add_function(id=fid, name=name, system_name=name, filename=s(frame.filename),
                                 start_line=frame.firstlineno)
                lid = locations[frame] = len(locations) + 1
                add_location(id=lid).line.add(function_id=fid, line=frame.lineno)
            ids.append(lid)
        values = [n]
        if period:
            values.append(n * period)
        if cpu is not None:
            values += [c * period] if period else [n, c]
        sample = add_sample(location_id=ids, value=values)
        m = _PID_THREAD.fullmatch(thread)
        if m is not None:  # a merged profile of several processes: "pid 12 MainThread"
            sample.label.add(key=thread_key, str=s(m.group(2) or ""))
            sample.label.add(key=pid_key, num=int(m.group(1)))
        else:
            sample.label.add(key=thread_key, str=s(thread))
            if has_pid:
                sample.label.add(key=pid_key, num=pid)
    start, duration = meta.get("start_time"), meta.get("duration")
    if _is_number(start) and start > 0:
        msg.time_nanos = int(start * 1e9)
    if _is_number(duration) and duration > 0:
        msg.duration_nanos = int(duration * 1e9)
    if period:
        msg.period_type.type = s(types[1][0])
        msg.period_type.unit = s("nanoseconds")
        msg.period = period
    msg.default_sample_type = s(types[1][0]) if period else s("samples")
    msg.comment.append(s(f"plop {__version__}"))
    rest = {k: v for k, v in meta.items() if k not in _MAPPED_METADATA}
    if rest:
        msg.comment.append(s(METADATA_COMMENT + json.dumps(rest, sort_keys=True, allow_nan=False)))
    msg.string_table.extend(text.encode("utf-8", "backslashreplace").decode("utf-8") for text in strings)
    return gzip.compress(msg.SerializeToString(), compresslevel=6, mtime=0)


def _is_number(v: Any) -> bool:
    return (type(v) is int or type(v) is float) and v == v and v not in (float("inf"), float("-inf"))
