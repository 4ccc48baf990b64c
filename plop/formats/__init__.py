"""Reading and writing profile files.

plop reads these kinds of file, recognised by their *content* (never by their
name, since users drop ``profile.out``, ``plop.out`` or ``x.plop`` files of any
kind into a data directory):

* ``"plop"``: the native JSON format, specified in docs/format.md
  (:mod:`plop.formats.native`);
* ``"legacy"``: the Python literal ``{stack: count}`` written by the original
  plop (0.4.0) and its Python 3 ports (:mod:`plop.formats.legacy`);
* ``"collapsed"``: ``frame;frame;... count`` lines, as written by the original
  plop's flamegraph output, ``py-spy record --format raw`` and the stackcollapse
  scripts for flamegraph.pl (:mod:`plop.formats.collapsed`);
* ``"speedscope"``: speedscope's JSON, sampled (py-spy, plop) or evented
  (pyinstrument) (:mod:`plop.formats.speedscope`);
* ``"pprof"``: pprof's ``profile.proto``, gzip- or zstd-compressed or raw, from
  Go, Datadog, Pyroscope or plop (:mod:`plop.formats.pprof`);

and writes the native format, collapsed stacks (``"flamegraph"``), speedscope
and pprof. Each format lives in its own
module; this package is the one API in front of them. Every input is treated
as hostile: sizes are checked before reading, non-regular files are refused,
parsers are linear and bounded, and every problem surfaces as one exception
type, :class:`ProfileFormatError`, so a viewer scanning thousands of unrelated
files needs a single ``except``.
"""
from __future__ import annotations

import os
from typing import Callable

from plop.formats import collapsed, legacy, native, pprof, speedscope
from plop.formats._common import (
    DEFAULT_MAX_BYTES, MAX_COUNT, MAX_LINE_CHARS, SNIFF_BYTES, ProfileFormatError, _gc_paused,
)
from plop.formats._io import read_bounded, write_atomic
from plop.formats.legacy import MAX_NESTING
from plop.formats.native import NATIVE_VERSION
from plop.profile import Frame, Profile, StackKey, from_stack_counts

__all__ = [
    "DEFAULT_MAX_BYTES", "EXTENSIONS", "FORMATS", "MAX_COUNT", "MAX_LINE_CHARS", "MAX_NESTING",
    "NATIVE_VERSION", "SNIFF_BYTES", "Frame", "Profile", "ProfileFormatError", "StackKey", "from_stack_counts",
    "dump", "dumps", "format_for_path", "load", "loads", "sniff", "write_atomic",
]

#: Writer formats accepted by :func:`dumps` / :func:`dump` ("collapsed" is an alias of "flamegraph").
FORMATS = ("plop", "flamegraph", "speedscope", "pprof")
#: The usual file extension (without dot) for each writer format.
EXTENSIONS = {"plop": "plop", "flamegraph": "flame", "speedscope": "speedscope.json", "pprof": "pb.gz"}

_BOM = b"\xef\xbb\xbf"

_WRITERS: dict[str, Callable[[Profile], bytes]] = {
    "plop": native.dump,
    "flamegraph": collapsed.dump,
    "collapsed": collapsed.dump,
    "speedscope": speedscope.dump,
    "pprof": pprof.dump,
}


def sniff(head: bytes) -> str | None:
    """Name the format of a file from its first bytes, or ``None``.

    Returns ``"plop"``, ``"legacy"``, ``"collapsed"``, ``"speedscope"`` or ``"pprof"``. The viewer calls this
    on every file of a directory to pick out profiles, so it looks at no more
    than 4 KiB, is a few regular-expression matches, and errs towards ``None``:
    JSON, Python source, logs, images and empty files are not profiles. An
    empty legacy profile (``{}``) is indistinguishable from an empty JSON
    object and says ``None`` too (:func:`loads` still accepts it).
    """
    head = bytes(head[:SNIFF_BYTES])
    if native.sniff(head):
        return "plop"
    if head.startswith(_BOM):  # some Windows tools write one before text
        head = head[len(_BOM):]
    if native.sniff(head):
        return "plop"
    if legacy.sniff(head):
        return "legacy"
    if collapsed.sniff(head):
        return "collapsed"
    if speedscope.sniff(head):
        return "speedscope"
    if pprof.sniff(head):  # binary: last, after every text format has said no
        return "pprof"
    return None


def load(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> Profile:
    """Read a profile file of any supported format, detected by content.

    The size is checked with ``stat`` before reading, so a huge file is
    refused at once; anything but a regular file (FIFO, socket, device) is
    refused without being read, so a scan of ``/tmp`` can never block. I/O
    errors are reported as :class:`ProfileFormatError` too (chained).
    """
    name, data = read_bounded(path, max_bytes)
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
        return native.load(data, name)
    if kind == "speedscope":
        return speedscope.load(data, name)
    if kind == "pprof" or data.startswith((pprof.GZIP_MAGIC, pprof.ZSTD_MAGIC)):
        return pprof.load(data, name)
    if kind == "legacy" or legacy.is_empty(data):
        return legacy.load(data, name)
    if kind == "collapsed" or collapsed.first_line_collapsed(data):
        # The sniffer wants every line of its window to be well formed; a file
        # asked for by name only needs a good first line, so that a bad line
        # further on is reported with its number instead of "not a profile".
        return collapsed.load(data, name)
    if not data.strip():
        raise ProfileFormatError("empty file", name)
    raise ProfileFormatError(
        "not a profile (not plop JSON, a legacy plop dict, collapsed stacks, speedscope or pprof)", name)


def format_for_path(path: str | os.PathLike[str]) -> str:
    """The writer format a file name asks for: ``.flame``/``.collapsed``/``.txt``
    are collapsed stacks, ``.json`` is speedscope, ``.pb.gz``/``.pprof``/``.pb``
    pprof, anything else native plop."""
    lower = os.fspath(path).lower()
    if lower.endswith((".pb.gz", ".pprof", ".pb")):
        return "pprof"
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
