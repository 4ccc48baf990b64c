"""Package colours: one per package for a whole profile, shared by every view and tab.

A colour that depends on what one view shows (a package's rank among the
functions of the wall view, say) changes when the user switches to the CPU
view, picks a thread or sets a filter, so the same package looks like
another one. Here a profile's colours are decided once, from the whole
profile (every thread, every sample, no filter):

* packages are ranked by their own samples in the whole profile (then by the
  samples of their functions' totals, then by name), and the `PALETTE`'s
  size heaviest get a colour; the others share `OTHER`;
* each coloured package, in rank order, takes the palette slot its name
  hashes to (CRC-32 of its UTF-8 name), or when that slot is taken the next
  free one, so a package tends to keep its colour across profiles, and two
  packages of one profile never share one.
"""
from __future__ import annotations

import zlib
from typing import Any

from plop.callgraph import CallGraph

#: The colours packages get (Tableau 10 without its grey, and three of Tableau 20).
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
    "#b07aa1", "#ff9da7", "#9c755f", "#499894", "#a0cbe8", "#8cd17d",
)
#: The colour of every package beyond the palette's size.
OTHER = "#b8bfca"


def slot_of(package: str) -> int:
    """The palette slot a package's name asks for: stable across runs, machines and profiles."""
    return zlib.crc32(package.encode("utf-8", "surrogatepass")) % len(PALETTE)


def package_colors(graph: CallGraph) -> dict[str, Any]:
    """The colours of a profile's packages, from the call graph of the whole profile.

    ``{"packages": [{"package": name, "color": "#rrggbb"}, ...], "other": OTHER}``,
    the packages heaviest first; a list, not an object, so that no package
    name (``__proto__``) can collide with a JavaScript object's own keys.
    """
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    for group, self_count, total_count in zip(graph.groups, graph.self_counts, graph.total_counts):
        own[group] = own.get(group, 0) + self_count
        total[group] = total.get(group, 0) + total_count
    ranked = sorted(own, key=lambda g: (-own[g], -total[g], g))[: len(PALETTE)]
    taken: set[int] = set()
    packages = []
    for group in ranked:
        slot = slot_of(group)
        while slot in taken:
            slot = (slot + 1) % len(PALETTE)
        taken.add(slot)
        packages.append({"package": group, "color": PALETTE[slot]})
    return {"packages": packages, "other": OTHER}
