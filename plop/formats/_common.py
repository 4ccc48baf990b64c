"""What every format module shares: the one error type, limits, and writer helpers.

Kept apart from the package's ``__init__`` so that each format module can
import it without importing the others.
"""
from __future__ import annotations

import gc
import math
import sys
from array import array
from collections import defaultdict
from contextlib import contextmanager
from itertools import count
from typing import Any, Iterator

from plop.profile import Frame, StackKey

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
#: Major version of the native format this module reads and writes.
SNIFF_BYTES = 4096
MAX_LINE_CHARS = 1 << 20  # one collapsed line (a 4096-frame py-spy stack fits easily)
MAX_COUNT = (1 << 63) - 1  # counts beyond int64 are corrupt, not real samples
LITTLE_ENDIAN = sys.byteorder == "little"


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
    if LITTLE_ENDIAN:
        arr.byteswap()
    return arr.tobytes()


def _is_num(v: Any) -> bool:
    return (type(v) is int or type(v) is float) and math.isfinite(v)
