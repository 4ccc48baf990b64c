"""The original plop's files: a Python literal ``{stack: count}``.

plop 0.4.0 and its Python 3 ports wrote ``repr`` of a dict whose keys are
tuples of ``(filename, lineno, funcname)`` frames, innermost first. They are
read by a small iterative literal parser, never ``eval`` or ``ast``.
"""
from __future__ import annotations

import re
from typing import Any

from plop.formats._common import MAX_COUNT, ProfileFormatError
from plop.profile import Profile, from_stack_counts

MAX_NESTING = 32  # legacy literals nest 4 deep; anything far deeper is hostile
_MAX_INT_DIGITS = 19

_LEGACY_HEAD = re.compile(
    rb"""[ \t\r\n]*\{[ \t\r\n]*\([ \t\r\n]*(?:[(\[][ \t\r\n]*[bBuUrR]{0,2}['"]|\)[ \t\r\n]*:)"""
)
_LEGACY_EMPTY = re.compile(rb"[ \t\r\n]*\{[ \t\r\n]*\}[ \t\r\n]*\Z")


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


def sniff(head: bytes) -> bool:
    """True when ``head`` starts a dict whose first key is a stack tuple."""
    return _LEGACY_HEAD.match(head) is not None


def is_empty(data: bytes) -> bool:
    """``{}``: an empty legacy profile, which only a file asked for by name is taken to be."""
    return _LEGACY_EMPTY.match(data) is not None


def load(data: bytes, name: str) -> Profile:
    """Parse a legacy file's bytes (``name`` labels errors)."""
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
