"""pprof's ``profile.proto``: gzip-compressed protocol buffers, read and written.

The format every continuous profiler exchanges (``go tool pprof``, Pyroscope,
Parca, Datadog, Cloud Profiler). Field numbers are those of
github.com/google/pprof's proto/profile.proto. The codec is written here
rather than generated with ``protoc``: the schema is five flat messages, the
reader must be bounded and checked at every reference anyway, and on
benchmarks/pprof_codec.py this decoder loads faster than the ``protobuf``
runtime does once its messages are walked into plop's model (see the README).

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

WALL_TYPES = ("wall", "wall-time", "wall_time", "walltime")
CPU_TYPES = ("cpu", "cpu-time", "cpu_time", "cpu-samples", "cpu_samples")
_TIME_UNITS = {"nanoseconds": 1e-9, "microseconds": 1e-6, "milliseconds": 1e-3, "seconds": 1.0}
_THREAD_LABELS = ("thread_name", "thread name")
#: A comment starting with this holds the plop metadata that pprof has no field for, as JSON.
METADATA_COMMENT = "plop metadata: "
#: Metadata keys that travel in pprof's own fields (or are made by the reader).
_MAPPED_METADATA = frozenset({"interval", "start_time", "duration", "pid", "sample_types", "value_types",
                              "value_units"})

# Wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
# Fields of Profile that plop reads, and the wire type each must have.
_PROFILE_FIELDS = {1: _LEN, 2: _LEN, 3: _LEN, 4: _LEN, 5: _LEN, 6: _LEN, 7: _VARINT, 8: _VARINT,
                   9: _VARINT, 10: _VARINT, 11: _LEN, 12: _VARINT, 13: _VARINT, 14: _VARINT,
                   15: _VARINT, 16: _LEN}


class _Bad(Exception):
    """Internal: malformed protobuf; turned into ProfileFormatError with the file name."""


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
        return inner is None or not inner or _sniff_raw(inner)
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
            if _PROFILE_FIELDS.get(field) != wire:
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


def _signed(v: int) -> int:
    """int64 fields travel as their two's complement in a 64-bit varint."""
    return v - (1 << 64) if v >= 1 << 63 else v


def _fields(buf: bytes, pos: int, end: int):  # -> Iterator[tuple[int, int, int, int]]
    """(field, wire type, value or start, end) for each field of one message."""
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _Bad("field number 0")
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield field, wire, value, pos
        elif wire == _LEN:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise _Bad("length-delimited field runs past the end of its message")
            yield field, wire, pos, pos + size
            pos += size
        elif wire == _I64:
            pos += 8
            yield field, wire, 0, pos
        elif wire == _I32:
            pos += 4
            yield field, wire, 0, pos
        else:  # groups (3, 4) are not in profile.proto; 6 and 7 do not exist
            raise _Bad(f"wire type {wire} (field {field}) is not in profile.proto")
    if pos != end:
        raise _Bad("message runs past its end")


def _packed(buf: bytes, start: int, end: int, out: list[int]) -> None:
    pos = start
    append = out.append
    while pos < end:
        b = buf[pos]
        if b < 0x80:
            append(b)
            pos += 1
        else:
            v, pos = _varint(buf, pos)
            append(v)
    if pos != end:
        raise _Bad("packed varints run past their field")


def _ints(buf: bytes, wire: int, a: int, b: int, out: list[int]) -> None:
    """A repeated integer field: packed (LEN) or one varint per occurrence."""
    if wire == _LEN:
        _packed(buf, a, b, out)
    elif wire == _VARINT:
        out.append(a)
    else:
        raise _Bad("repeated integer field with a wrong wire type")


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
    try:
        return _build(raw, name, value)
    except _Bad as e:
        raise ProfileFormatError(f"malformed pprof protobuf: {e}", name) from None
    except RecursionError:  # pragma: no cover (nothing here recurses)
        raise ProfileFormatError("malformed pprof protobuf", name) from None


def _build(buf: bytes, name: str, value: int | str | None) -> Profile:
    def fail(msg: str) -> ProfileFormatError:
        return ProfileFormatError(msg, name)

    strings: list[str] = []
    sample_spans: list[tuple[int, int]] = []
    location_spans: list[tuple[int, int]] = []
    function_spans: list[tuple[int, int]] = []
    type_spans: list[tuple[int, int]] = []
    scalars: dict[int, int] = {}
    comment_ids: list[int] = []
    period_type: tuple[int, int] | None = None
    for field, wire, a, b in _fields(buf, 0, len(buf)):
        expected = _PROFILE_FIELDS.get(field)
        if expected is None:
            continue  # a newer field: skipped, as protobuf readers do
        if wire != expected and not (field == 13 and wire == _LEN):
            raise _Bad(f"Profile field {field} has wire type {wire}")
        if field == 6:
            try:
                strings.append(buf[a:b].decode("utf-8"))
            except UnicodeDecodeError:
                strings.append(buf[a:b].decode("utf-8", "replace"))
        elif field == 2:
            sample_spans.append((a, b))
        elif field == 4:
            location_spans.append((a, b))
        elif field == 5:
            function_spans.append((a, b))
        elif field == 1:
            type_spans.append((a, b))
        elif field == 11:
            period_type = _value_type(buf, a, b)
        elif field == 13:
            _ints(buf, wire, a, b, comment_ids)
        elif wire == _VARINT:
            scalars[field] = a
    if strings and strings[0] != "":
        raise fail("string_table[0] must be the empty string")
    if not strings:
        strings = [""]
    nstrings = len(strings)

    def string(i: int, what: str) -> str:
        if not 0 <= i < nstrings:
            raise fail(f"{what}: string index {_signed(i)} out of range ({nstrings} strings)")
        return strings[i]

    types = [(string(t, "sample_type"), string(u, "sample_type")) for t, u in
             (_value_type(buf, a, b) for a, b in type_spans)]
    if not types:
        if sample_spans:
            raise fail("samples but no sample_type")
        types = [("samples", "count")]

    # Functions and locations: id -> object, checked before any sample uses them.
    functions: dict[int, tuple[str, str, int]] = {}
    for a, b in function_spans:
        fid = fname = sysname = fname_file = start = 0
        for field, wire, v, _end in _fields(buf, a, b):
            if wire != _VARINT:
                continue
            if field == 1:
                fid = v
            elif field == 2:
                fname = v
            elif field == 3:
                sysname = v
            elif field == 4:
                fname_file = v
            elif field == 5:
                start = _signed(v)
        if fid == 0 or fid in functions:
            raise fail(f"function id {fid} is zero or repeated")
        funcname = string(fname, "function name") or string(sysname, "function system_name")
        functions[fid] = (string(fname_file, "function filename"), funcname, max(start, 0))

    interned: dict[tuple[str, str, int, int], Frame] = {}
    locations: dict[int, tuple[Frame, ...]] = {}
    for a, b in location_spans:
        lid = 0
        lines: list[Frame] = []
        address = 0
        for field, wire, v, end in _fields(buf, a, b):
            if field == 1 and wire == _VARINT:
                lid = v
            elif field == 3 and wire == _VARINT:
                address = v
            elif field == 4 and wire == _LEN:
                fnid = line = 0
                for f2, w2, v2, _e2 in _fields(buf, v, end):
                    if w2 == _VARINT:
                        if f2 == 1:
                            fnid = v2
                        elif f2 == 2:
                            line = _signed(v2)
                fn = functions.get(fnid)
                if fn is None:
                    raise fail(f"location {lid}: unknown function id {fnid}")
                key = (fn[0], fn[1], fn[2], max(line, 0))
                frame = interned.get(key)
                if frame is None:
                    frame = interned[key] = Frame(*key)
                lines.append(frame)
        if lid == 0 or lid in locations:
            raise fail(f"location id {lid} is zero or repeated")
        if not lines:  # not symbolised: all that is known is the address
            key = ("", f"0x{address:x}", 0, 0)
            frame = interned.get(key)
            if frame is None:
                frame = interned[key] = Frame(*key)
            lines.append(frame)
        lines.reverse()  # line[0] is the innermost inlined function
        locations[lid] = tuple(lines)

    nvalues = len(types)
    chosen, cpu_col = _choose_columns(types, scalars, strings, value, fail)
    period = _signed(scalars.get(12, 0))
    pt = (string(period_type[0], "period_type"), string(period_type[1], "period_type")) if period_type else None

    # Samples: (thread, pid, stack tuple, values).
    rows: list[tuple[str, int | None, tuple[Frame, ...], list[int]]] = []
    stack_cache: dict[tuple[int, ...], tuple[Frame, ...]] = {}
    for a, b in sample_spans:
        loc_ids: list[int] = []
        values: list[int] = []
        thread = ""
        pid: int | None = None
        for field, wire, v, end in _fields(buf, a, b):
            if field == 1:
                _ints(buf, wire, v, end, loc_ids)
                if len(loc_ids) > MAX_DEPTH:
                    raise fail(f"a sample is more than {MAX_DEPTH} locations deep")
            elif field == 2:
                _ints(buf, wire, v, end, values)
            elif field == 3 and wire == _LEN:
                key = s = num = 0
                for f2, w2, v2, _e2 in _fields(buf, v, end):
                    if w2 == _VARINT:
                        if f2 == 1:
                            key = v2
                        elif f2 == 2:
                            s = v2
                        elif f2 == 3:
                            num = _signed(v2)
                label = string(key, "label key")
                if label in _THREAD_LABELS:
                    thread = string(s, "label")
                elif label == "pid":
                    pid = num
        if len(values) != nvalues:
            raise fail(f"a sample has {len(values)} values for {nvalues} sample types")
        ids = tuple(loc_ids)
        stack = stack_cache.get(ids)
        if stack is None:
            parts = []
            for lid in reversed(loc_ids):
                loc = locations.get(lid)
                if loc is None:
                    raise fail(f"sample refers to unknown location id {lid}")
                parts.extend(loc)
            if len(parts) > MAX_DEPTH:
                raise fail(f"a sample is more than {MAX_DEPTH} frames deep")
            stack = stack_cache[ids] = tuple(parts)
        rows.append((thread, pid, stack, [_signed(x) for x in values]))

    pids = {pid for _t, pid, _s, _v in rows}
    several = len(pids - {None}) > 1

    def key_of(thread: str, pid: int | None) -> str:
        if several and pid is not None:
            return f"pid {pid} {thread}".rstrip()
        return thread

    divisor = {col: _period_divisor(types[col], pt, period, rows, col) for col in {chosen, cpu_col} - {None}}
    samples: dict[StackKey, int] = {}
    cpu: dict[StackKey, int] | None = {} if cpu_col is not None else None
    for thread, pid, stack, values in rows:
        key = (key_of(thread, pid), stack)
        n = values[chosen]
        if n < 0:
            raise fail(f"negative sample value {n}")
        n //= divisor[chosen]
        if n:
            samples[key] = min(samples.get(key, 0) + n, MAX_COUNT)
        if cpu is not None:
            c = values[cpu_col] // divisor[cpu_col]
            if c < 0:
                raise fail(f"negative sample value {c}")
            if c:
                cpu[key] = min(cpu.get(key, 0) + c, MAX_COUNT)
                samples.setdefault(key, 0)
    if cpu is not None and 0 in samples.values():
        # cpu-only rows need a wall row of 0 in the model; drop those with neither
        samples = {k: n for k, n in samples.items() if n or k in cpu}

    metadata: dict[str, Any] = _comment_metadata([string(i, "comment") for i in comment_ids])
    metadata.update({
        "sample_types": [{"type": t, "unit": u} for t, u in types],
        "value_types": {"samples": types[chosen][0], **({"cpu": types[cpu_col][0]} if cpu_col is not None else {})},
        "value_units": {"samples": "samples" if divisor[chosen] > 1 or types[chosen][1] == "count"
                        else types[chosen][1],
                        **({"cpu": "samples" if divisor[cpu_col] > 1 or types[cpu_col][1] == "count"
                            else types[cpu_col][1]} if cpu_col is not None else {})},
    })
    if pt is not None and pt[1] in _TIME_UNITS and period > 1:
        metadata["interval"] = period * _TIME_UNITS[pt[1]]
    if scalars.get(9):
        metadata["start_time"] = _signed(scalars[9]) / 1e9
    if scalars.get(10) and _signed(scalars[10]) >= 0:
        metadata["duration"] = _signed(scalars[10]) / 1e9
    if len(pids - {None}) == 1:
        metadata["pid"] = next(iter(pids - {None}))
    if cpu_col is None and types[chosen][0] in CPU_TYPES:
        metadata["view"] = "cpu"
    if any(n == 0 for n in samples.values()) and cpu is None:  # pragma: no cover (filtered above)
        samples = {k: n for k, n in samples.items() if n}
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


def _value_type(buf: bytes, a: int, b: int) -> tuple[int, int]:
    t = u = 0
    for field, wire, v, _end in _fields(buf, a, b):
        if wire == _VARINT:
            if field == 1:
                t = v
            elif field == 2:
                u = v
    return t, u


def _choose_columns(types: list[tuple[str, str]], scalars: dict[int, int], strings: list[str],
                    value: int | str | None, fail: Any) -> tuple[int, int | None]:
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
        default = scalars.get(14, 0)
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

def _put_varint(out: bytearray, v: int) -> None:
    if v < 0:
        v += 1 << 64
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _put_len(out: bytearray, field: int, payload: bytes | bytearray) -> None:
    _put_varint(out, (field << 3) | _LEN)
    _put_varint(out, len(payload))
    out += payload


def _put_int(out: bytearray, field: int, v: int) -> None:
    if v:
        _put_varint(out, field << 3)
        _put_varint(out, v)


def _packed_bytes(values: list[int]) -> bytearray:
    buf = bytearray()
    for v in values:
        _put_varint(buf, v)
    return buf


def dump(profile: Profile) -> bytes:
    """A gzip-compressed ``profile.proto`` for ``go tool pprof`` and the engines that ingest it.

    Sample types are ``samples/count``, then ``wall/nanoseconds`` (``cpu/`` for
    an on-CPU profile: modes ``prof``/``virtual``, or a CPU view), then
    ``cpu/nanoseconds`` when the profile has CPU counts; the nanosecond
    columns need the sampling interval and are left out without one. Each
    sample carries its thread as the ``thread_name`` label, and the
    metadata's pid as a ``pid`` label.
    """
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
        types.append(("cpu", "nanoseconds") if period else ("cpu-samples", "count"))

    out = bytearray()
    for t, u in types:
        vt = bytearray()
        _put_int(vt, 1, s(t))
        _put_int(vt, 2, s(u))
        _put_len(out, 1, vt)

    functions: dict[tuple[str, str, int], int] = {}
    locations: dict[Frame, int] = {}
    loc_msgs = bytearray()
    fn_msgs = bytearray()
    thread_key, pid_key = s("thread_name"), s("pid")
    pid = meta.get("pid")
    pid_label = bytearray()
    if type(pid) is int:
        _put_int(pid_label, 1, pid_key)
        _put_int(pid_label, 3, pid)
    labels: dict[str, bytes] = {}
    keys = list(profile.samples)
    if cpu is not None:
        keys += [k for k in cpu if k not in profile.samples]
    for key in sorted(keys, key=lambda k: (k[0], [tuple(f) for f in k[1]])):
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
                    fn = bytearray()
                    _put_int(fn, 1, fid)
                    _put_int(fn, 2, s(frame.funcname))
                    _put_int(fn, 3, s(frame.funcname))
                    _put_int(fn, 4, s(frame.filename))
                    _put_int(fn, 5, frame.firstlineno)
                    _put_len(fn_msgs, 5, fn)
                lid = locations[frame] = len(locations) + 1
                line = bytearray()
                _put_int(line, 1, fid)
                _put_int(line, 2, frame.lineno)
                loc = bytearray()
                _put_int(loc, 1, lid)
                _put_len(loc, 4, line)
                _put_len(loc_msgs, 4, loc)
            ids.append(lid)
        values = [n]
        if period:
            values.append(n * period)
        if cpu is not None:
            values.append(c * period if period else c)
        sample = bytearray()
        if ids:
            _put_len(sample, 1, _packed_bytes(ids))
        _put_len(sample, 2, _packed_bytes(values))
        label = labels.get(thread)
        if label is None:
            lb = bytearray()
            _put_int(lb, 1, thread_key)
            _put_int(lb, 2, s(thread))
            label = labels[thread] = bytes(lb)
        _put_len(sample, 3, label)
        if pid_label:
            _put_len(sample, 3, pid_label)
        _put_len(out, 2, sample)
    out += loc_msgs
    out += fn_msgs
    start, duration = meta.get("start_time"), meta.get("duration")
    time_nanos = int(start * 1e9) if _is_number(start) and start > 0 else 0
    duration_nanos = int(duration * 1e9) if _is_number(duration) and duration > 0 else 0
    period_vt = bytearray()
    if period:
        _put_int(period_vt, 1, s(types[1][0]))
        _put_int(period_vt, 2, s("nanoseconds"))
    default = s(types[1][0]) if period else s("samples")
    from plop import __version__
    comments = [s(f"plop {__version__}")]
    rest = {k: v for k, v in meta.items() if k not in _MAPPED_METADATA}
    if rest:
        comments.append(s(METADATA_COMMENT + json.dumps(rest, sort_keys=True, allow_nan=False)))
    for text in strings:  # string_table (field 6): every string, in index order
        _put_len(out, 6, text.encode("utf-8", "backslashreplace"))
    _put_int(out, 9, time_nanos)
    _put_int(out, 10, duration_nanos)
    if period:
        _put_len(out, 11, period_vt)
        _put_int(out, 12, period)
    for comment in comments:
        _put_int(out, 13, comment)
    _put_int(out, 14, default)
    return gzip.compress(bytes(out), compresslevel=6, mtime=0)


def _is_number(v: Any) -> bool:
    return (type(v) is int or type(v) is float) and v == v and v not in (float("inf"), float("-inf"))
