"""The in-memory profile model shared by the collector, the file formats and the viewer.

A profile is a multiset of *stacks*: for each distinct (thread, call stack) the
number of samples in which that thread was seen executing it. Everything plop
shows is derived from these counts, so the model keeps them exact and small:

* a :class:`Frame` is a plain named tuple, hashed and compared in C, so that
  profiles with hundreds of thousands of stacks load and aggregate quickly;
* stacks are tuples of frames, **outermost frame first** (the order of
  collapsed-stack files and speedscope); formats that store innermost-first
  stacks reverse them at the boundary;
* an optional second table holds the *on-CPU* counts of a wall-clock profile,
  so one file answers both "where does wall time go" and "where does CPU go".
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Iterator, Mapping, NamedTuple


class Frame(NamedTuple):
    """One frame of a sampled stack.

    ``filename``, ``funcname`` and ``firstlineno`` identify the function;
    ``lineno`` is the line that was executing when the sample was taken.
    Either line number is 0 when the source format did not record it (the
    original plop kept only one line number per frame).
    """

    filename: str
    funcname: str
    firstlineno: int
    lineno: int

    @property
    def function(self) -> tuple[str, str, int]:
        """The function this frame belongs to, independent of the executing line."""
        return (self.filename, self.funcname, self.firstlineno)


Stack = tuple[Frame, ...]
#: A sample key: the thread's name ("" when unknown) and its stack, outermost first.
StackKey = tuple[str, Stack]


class Profile:
    """Aggregated samples plus the metadata describing how they were taken.

    ``samples`` maps ``(thread_name, stack)`` to a positive count. In a
    wall-clock profile that tracked CPU use, ``cpu_samples`` maps the same kind
    of keys to the number of those samples in which the thread had been running
    on a CPU; it is ``None`` when the profile did not record that.

    ``metadata`` is a JSON-compatible dict; the keys plop itself writes are
    listed in docs/format.md (``mode``, ``interval``, ``start_time``,
    ``duration``, ``command``, ``pid``, ``hostname``, ``python_version``,
    ``samples_taken``, ``sample_time``, ...). Readers must tolerate any of them
    being absent: profiles from other tools carry almost none.
    """

    __slots__ = ("samples", "cpu_samples", "metadata")

    def __init__(
        self,
        samples: Mapping[StackKey, int] | None = None,
        metadata: Mapping[str, Any] | None = None,
        cpu_samples: Mapping[StackKey, int] | None = None,
    ) -> None:
        self.samples: dict[StackKey, int] = dict(samples or {})
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.cpu_samples: dict[StackKey, int] | None = (
            None if cpu_samples is None else dict(cpu_samples)
        )

    def __repr__(self) -> str:
        return "<Profile %d stacks, %d samples, view=%s>" % (
            len(self.samples),
            self.total_samples,
            self.metadata.get("view", "wall"),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Profile):
            return NotImplemented
        return (
            self.samples == other.samples
            and self.cpu_samples == other.cpu_samples
            and self.metadata == other.metadata
        )

    @property
    def total_samples(self) -> int:
        """Number of (thread, stack) observations: the sum of all counts."""
        return sum(self.samples.values())

    @property
    def has_cpu(self) -> bool:
        """True when this profile recorded on-CPU counts beside its wall counts."""
        return self.cpu_samples is not None

    def threads(self) -> list[str]:
        """Thread names present in the profile, most sampled first."""
        per_thread: dict[str, int] = defaultdict(int)
        for (thread, _stack), count in self.samples.items():
            per_thread[thread] += count
        return sorted(per_thread, key=lambda t: (-per_thread[t], t))

    def cpu(self) -> "Profile":
        """The on-CPU view: same type, keeping only samples taken while running.

        Raises ``ValueError`` when the profile did not record CPU use (``prof``
        and ``virtual`` profiles are on-CPU views already and have no table).
        """
        if self.cpu_samples is None:
            raise ValueError(
                "this profile has no on-CPU counts (only real-mode profiles "
                "taken with CPU tracking record them)"
            )
        metadata = dict(self.metadata)
        metadata["view"] = "cpu"
        return Profile(
            {key: n for key, n in self.cpu_samples.items() if n > 0}, metadata
        )

    def for_thread(self, thread: str) -> "Profile":
        """The samples of one thread only (same metadata, cpu table filtered too)."""
        cpu = None
        if self.cpu_samples is not None:
            cpu = {k: n for k, n in self.cpu_samples.items() if k[0] == thread}
        return Profile(
            {k: n for k, n in self.samples.items() if k[0] == thread},
            self.metadata,
            cpu,
        )

    def merged(self, other: "Profile") -> "Profile":
        """Sum of two profiles' counts, keeping this profile's metadata.

        Used to join rolling windows into one longer period.
        """
        samples = dict(self.samples)
        for key, n in other.samples.items():
            samples[key] = samples.get(key, 0) + n
        cpu = None
        if self.cpu_samples is not None or other.cpu_samples is not None:
            cpu = dict(self.cpu_samples or {})
            for key, n in (other.cpu_samples or {}).items():
                cpu[key] = cpu.get(key, 0) + n
        return Profile(samples, self.metadata, cpu)

    def stack_counts(self) -> dict[tuple[tuple[str, int, str], ...], int]:
        """Counts in the original plop's shape, for code written against it.

        Keys are stacks of ``(filename, lineno, funcname)`` tuples, innermost
        frame first, merged over threads.
        """
        counts: dict[tuple[tuple[str, int, str], ...], int] = defaultdict(int)
        for (_thread, stack), n in self.samples.items():
            key = tuple((f.filename, f.lineno, f.funcname) for f in reversed(stack))
            counts[key] += n
        return dict(counts)

    def top_stacks(self, n: int) -> "Profile":
        """Only the ``n`` most frequent stacks (for ``--max-stacks``).

        The result's metadata says how many were kept and dropped, so a reader
        knows the profile is partial. A profile with ``n`` stacks or fewer is
        returned as it is.
        """
        if len(self.samples) <= n:
            return self
        keep = sorted(self.samples.items(), key=lambda kv: -kv[1])[:n]
        cpu = None
        if self.cpu_samples is not None:
            kept = {k for k, _ in keep}
            cpu = {k: v for k, v in self.cpu_samples.items() if k in kept}
        metadata = dict(self.metadata, max_stacks=n, truncated_stacks=len(self.samples) - n)
        return Profile(dict(keep), metadata, cpu)


def iter_frames(profile: Profile) -> Iterator[Frame]:
    """Every distinct frame of a profile, in first-seen order."""
    seen: dict[Frame, None] = {}
    for _thread, stack in profile.samples:
        for frame in stack:
            seen.setdefault(frame, None)
    return iter(seen)


def from_stack_counts(
    counts: Iterable[tuple[Iterable[tuple[str, int, str]], int]],
    metadata: Mapping[str, Any] | None = None,
) -> Profile:
    """Build a profile from ``((filename, lineno, funcname), ...)`` stacks, innermost first.

    The original plop's shape: the one line number it kept is taken as the
    executing line; the function's first line is unknown (0).
    """
    samples: dict[StackKey, int] = defaultdict(int)
    # One Frame object per distinct frame: stacks share them, which keeps big
    # profiles small and lets the call-graph passes number frames by identity.
    interned: dict[tuple[str, int, str], Frame] = {}
    for stack, n in counts:
        frames = []
        for raw in stack:
            frame = interned.get(raw)
            if frame is None:
                filename, lineno, funcname = raw
                frame = interned[raw] = Frame(str(filename), str(funcname), 0, int(lineno))
            frames.append(frame)
        samples[("", tuple(reversed(frames)))] += int(n)
    return Profile(samples, metadata)
