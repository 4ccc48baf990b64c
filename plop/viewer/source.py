"""Source text for the function view, only from the directories the user named.

A profile's file names are attacker-controlled: a profile may name
``/etc/shadow`` or ``../../home/me/.ssh/id_rsa`` as the file of a function.
So the viewer shows source only for files that resolve (``realpath``, so
symlinks and ``..`` are followed before the check) to a regular file under
one of the ``--source`` directories, reads at most `MAX_SOURCE_BYTES` of it,
and never opens anything else. Relative names (py-spy writes
``tornado/web.py``) are looked up under each directory in turn.
"""
from __future__ import annotations

import os
import stat
from typing import Any, Iterable

#: Larger files are not shown (a source file this big is generated, or no source at all).
MAX_SOURCE_BYTES = 4 * 1024 * 1024
#: At most this many lines of a function are sent.
MAX_LINES = 2000
#: Lines shown after the last sampled line (the rest of a statement, a return).
CONTEXT_LINES = 3

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


class SourceDirectories:
    """The directories named with ``--source``; answers which lines of a file may be shown."""

    def __init__(self, directories: Iterable[str] = ()) -> None:
        self.roots = [os.path.realpath(d) for d in directories]

    def resolve(self, filename: str) -> str | None:
        """The real path of ``filename`` when it is a regular file under a source directory, else ``None``."""
        if not filename or "\0" in filename or (filename.startswith("<") and filename.endswith(">")):
            return None
        candidates = [filename] if os.path.isabs(filename) else [os.path.join(r, filename) for r in self.roots]
        for candidate in candidates:
            try:
                path = os.path.realpath(candidate)
            except (OSError, ValueError):
                continue
            if not any(path != root and os.path.commonpath([root, path]) == root for root in self.roots):
                continue
            try:
                if stat.S_ISREG(os.stat(path).st_mode):
                    return path
            except (OSError, ValueError):
                continue
        return None

    def excerpt(self, filename: str, first: int, last: int) -> dict[str, Any]:
        """Lines ``first`` to ``last`` (plus a little context) of a source file, or why there are none.

        The answer is ``{"shown": true, "path", "first_line", "lines": [text, ...]}``
        or ``{"shown": false, "reason": ...}``.
        """
        if not self.roots:
            return {"shown": False, "reason": "no source directories: start the viewer with --source DIR to see source"}
        path = self.resolve(filename)
        if path is None:
            return {"shown": False, "reason": "the file is not under a --source directory"}
        try:
            fd = os.open(path, _OPEN_FLAGS)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    return {"shown": False, "reason": "not a regular file"}
                if st.st_size > MAX_SOURCE_BYTES:
                    return {"shown": False, "reason": "the file is larger than %d MiB" % (MAX_SOURCE_BYTES >> 20)}
                data = os.read(fd, MAX_SOURCE_BYTES + 1)
            finally:
                os.close(fd)
        except OSError as e:
            return {"shown": False, "reason": "cannot read the file: %s" % (e.strerror or e)}
        text = data.decode("utf-8", "replace").splitlines()
        first = max(1, first)
        last = min(len(text), max(first, last) + CONTEXT_LINES, first + MAX_LINES - 1)
        if first > len(text):
            return {"shown": False, "reason": "the file has only %d lines: it changed since it was profiled" % len(text)}
        return {"shown": True, "path": path, "first_line": first, "lines": text[first - 1 : last]}
