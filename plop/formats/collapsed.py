"""Collapsed stacks: ``frame;frame;... count`` lines.

Written by the original plop's flamegraph output, ``py-spy record --format
raw`` and the stackcollapse scripts for flamegraph.pl; plop writes them as
``"flamegraph"`` (alias ``"collapsed"``).
"""
from __future__ import annotations

import re
from collections import defaultdict

from plop.formats._common import MAX_LINE_CHARS, ProfileFormatError, _count
from plop.profile import Frame, Profile, StackKey

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
    """True for a ``name (file:line)`` frame, the shape plop and py-spy write
    (``line`` may be the original plop's ``None``)."""
    if not frame.endswith(")"):
        return False
    i = frame.find(" (")
    if i <= 0:
        return False
    _file, sep, line = frame[i + 2:-1].rpartition(":")
    return bool(sep) and (line == "None" or line.isascii() and line.isdigit())


def _stack_evidence(stack: str) -> bool:
    """A stack that could only be a profile: several frames, or a located one."""
    return stack != "None" and (";" in stack or _located(stack))


def sniff(head: bytes) -> bool:
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


def first_line_collapsed(data: bytes) -> bool:
    """The first non-blank line is a good collapsed line with real stack evidence."""
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


_THREAD_FRAME = re.compile(r"thread \((0[xX][0-9a-fA-F]+|[0-9]+)\)(?:: (.*))?", re.S)
_PROCESS_FRAME = re.compile(r'process [0-9]+:".*"', re.S)


def _parse_frame(text: str) -> Frame:
    """``funcname (filename:lineno)``, py-spy's ``funcname (filename)``, or a bare name.

    Function names never contain " (" while file names may contain anything, so
    the name ends at the first " (" and the line number is read from the right.
    The original plop wrote ``(filename:None)`` for a frame whose line Python
    did not know: that is line 0 ("unknown") of ``filename``, not a file named
    ``filename:None`` beside it.
    """
    if text.endswith(")"):
        i = text.find(" (")
        if i > 0:
            inner = text[i + 2:-1]
            filename, sep, line = inner.rpartition(":")
            if sep and line.isascii() and line.isdigit() and len(line) <= 9:
                return Frame(filename, text[:i], 0, int(line))
            if sep and line == "None":
                return Frame(filename, text[:i], 0, 0)
            return Frame(inner, text[:i], 0, 0)
    return Frame("", text, 0, 0)


def load(data: bytes, name: str) -> Profile:
    """Parse collapsed stacks (``name`` labels errors)."""
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


# ";" separates frames and line breaks separate stacks: neither may survive in a name.
_SANITIZE = str.maketrans({";": ",", "\n": " ", "\r": " ", "\x0b": " ", "\x0c": " ", "\x1c": " ",
                           "\x1d": " ", "\x1e": " ", "\x85": " ", "\u2028": " ", "\u2029": " "})


def _frame_text(f: Frame) -> str:
    func = f.funcname.translate(_SANITIZE).replace(" (", " [") or "?"
    if not f.filename and not f.lineno:
        return func
    return f"{func} ({f.filename.translate(_SANITIZE)}:{f.lineno})"


def dump(profile: Profile) -> bytes:
    """Collapsed stacks merged over threads, sorted; empty stacks have no line."""
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
