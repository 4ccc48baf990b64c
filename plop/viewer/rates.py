"""How fast a profile was really sampled, read from its metadata.

A profile's ``samples`` are weighted: each snapshot counts the intervals it
stands for, so a window that took 33 snapshots at a budget-lowered rate still
adds up to about as many samples as one that took 500. The header and the
index must therefore say, beside the weighted samples, how many snapshots
were taken and at what rate, and mark a profile sampled well below the rate
that was asked for, with the reason the metadata gives.

Profile metadata is attacker-controlled and keys other than the native
format's own are carried unchecked (``late``, ``gil_wait``,
``sampler_cpu_time``, ``samples_asked``, ``rate_change``), so every value is
checked here: anything of the wrong type counts as absent.
"""
from __future__ import annotations

import math
from typing import Any

#: A profile is "below its asked rate" when it took fewer snapshots than this share of
#: those the asked interval would have taken over the same clock...
BELOW_RATE = 0.9
#: ...and the asked interval would have taken at least this many (fewer say nothing:
#: ticks come 0.75 to 1.25 intervals apart at random).
MIN_EXPECTED = 10

#: The keys `rates` adds to a profile's summary (and ``/api/profiles`` serves).
RATE_KEYS = (
    "samples_taken", "effective_rate", "effective_interval", "expected_snapshots", "samples_asked",
    "cpu_time", "sampler_cpu_time", "gil_wait", "late", "overhead_budget", "rate_change",
    "below_rate", "below_rate_reason",
)


def _number(value: Any) -> float | None:
    """``value`` when it is a finite number >= 0 (not a boolean), else ``None``."""
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        return None
    return value


def _count(value: Any) -> int | None:
    """``value`` when it is an integer >= 0 (not a boolean), else ``None``."""
    return value if type(value) is int and value >= 0 else None


def seconds(value: float) -> str:
    """A short interval or CPU time for a sentence: ``"153 ms"``, ``"2.5 s"``, ``"400 µs"``."""
    if value < 0.001:
        return "%.0f µs" % (value * 1e6)
    if value < 1:
        return "%.3g ms" % (value * 1000)
    return "%.3g s" % value


def _rate_change(value: Any) -> dict[str, float] | None:
    """The ``rate_change`` record (``from``, ``to`` intervals, ``cost`` share, ``time``), checked."""
    if not isinstance(value, dict):
        return None
    checked = {key: _number(value.get(key)) for key in ("time", "from", "to", "cost")}
    if checked["from"] is None or checked["to"] is None:
        return None
    return {key: v for key, v in checked.items() if v is not None}


def rates(metadata: dict[str, Any]) -> dict[str, Any]:
    """The `RATE_KEYS` of a profile: its snapshots, real rate, costs and below-rate verdict.

    ``effective_rate`` is ``samples_taken / duration`` (snapshots per wall
    second). ``expected_snapshots`` is what the asked ``interval`` would have
    taken over the mode's clock: ``duration`` for ``real``, ``cpu_time`` for
    ``prof`` and ``virtual``; ``None`` when that clock is not recorded.
    ``below_rate`` is ``None`` when there is nothing to judge by (no
    ``samples_taken``, no clock, or fewer than `MIN_EXPECTED` expected),
    else whether fewer than `BELOW_RATE` of ``expected_snapshots`` were
    taken; ``below_rate_reason`` then says why, as far as the metadata tells.
    """
    taken = _count(metadata.get("samples_taken"))
    duration = _number(metadata.get("duration"))
    interval = _number(metadata.get("interval"))
    cpu_time = _number(metadata.get("cpu_time"))
    out: dict[str, Any] = {
        "samples_taken": taken,
        "effective_rate": taken / duration if taken is not None and duration else None,
        "effective_interval": _number(metadata.get("effective_interval")),
        "samples_asked": _count(metadata.get("samples_asked")),
        "cpu_time": cpu_time,
        "sampler_cpu_time": _number(metadata.get("sampler_cpu_time")),
        "gil_wait": _number(metadata.get("gil_wait")),
        "late": _count(metadata.get("late")),
        "overhead_budget": _number(metadata.get("overhead_budget")),
        "rate_change": _rate_change(metadata.get("rate_change")),
    }
    mode = metadata.get("mode")
    clock = duration if mode == "real" else cpu_time if mode in ("prof", "virtual") else None
    expected = clock / interval if clock is not None and interval else None
    out["expected_snapshots"] = expected
    below = None
    if taken is not None and expected is not None and expected >= MIN_EXPECTED:
        below = taken < BELOW_RATE * expected
    out["below_rate"] = below
    out["below_rate_reason"] = _reason(out, interval, expected) if below else None
    return out


def _reason(out: dict[str, Any], interval: float, expected: float) -> str:
    """Why a profile took fewer snapshots than asked: the budget, late snapshots, or unknown."""
    taken = out["samples_taken"]
    reasons = ["%d snapshots taken of the %d that one every %s would take" % (taken, round(expected), seconds(interval))]
    effective = out["effective_interval"]
    if effective is not None and effective > interval * 1.001:
        budget = out["overhead_budget"]
        text = "the overhead budget%s set the sampler to every %s" % (
            " (%.3g%% of CPU)" % (100 * budget) if budget else "", seconds(effective))
        change = out["rate_change"]
        if change is not None:
            text += " (changed from every %s to every %s" % (seconds(change["from"]), seconds(change["to"]))
            if "cost" in change:
                text += " when plop cost %.3g%% of the process's CPU plus one core's wall time" % (100 * change["cost"])
            text += ")"
        reasons.append(text)
    asked = out["samples_asked"]
    late = out["late"]
    if late or (asked and taken < BELOW_RATE * asked):
        text = "snapshots came late: a thread held the GIL, or the machine had no core free"
        if late:
            text = ("%d snapshot%s came late (over an interval after its tick): a thread held the GIL, "
                    "or the machine had no core free" % (late, "s" if late != 1 else ""))
        if out["gil_wait"]:
            text += "; the sampler waited %s for it in all" % seconds(out["gil_wait"])
        reasons.append(text)
    if len(reasons) == 1:
        reasons.append("the profile does not record why")
    return "; ".join(reasons) + "."
