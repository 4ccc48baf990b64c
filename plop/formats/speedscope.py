"""speedscope's JSON file format (https://www.speedscope.app/file-format-schema.json)."""
from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from plop.formats._common import _count, _frame_table
from plop.profile import Profile

def dump(profile: Profile) -> bytes:
    """A speedscope file: one sampled profile per thread over a shared frame table."""
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
