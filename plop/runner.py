"""``python -m plop.collector``: run a program under a collector and save its profile.

The program must not be able to tell it is being profiled: ``sys.argv``,
``__name__``, ``__file__``, ``sys.path[0]``, its stdout, its exit status and
its tracebacks are what ``python script.py`` (or ``python -m module``) would
give it. plop speaks only on stderr, and only after the program is done.

The profile is written from an ``atexit`` hook registered before the program
starts, so it runs after the program's own exit hooks and after non-daemon
threads are joined (their work is in the profile), whatever way the program
ends: normal return, ``sys.exit``, an uncaught exception or ``KeyboardInterrupt``.
"""
from __future__ import annotations

import argparse
import atexit
import os
import runpy
import sys
import time
from types import CodeType, TracebackType
from typing import Any, Callable, NoReturn

from plop import formats
from plop.collector import MODES, Collector
from plop.profile import Profile

DEFAULT_DATADIR = "profiles"

USAGE = (
    "python -m plop.collector [--mode prof|virtual|real] [--interval S] [--duration S]\n"
    "       [--datadir DIR | -o FILE] [--format plop|flamegraph|speedscope|pprof] [--max-stacks N]\n"
    "       [--window S [--service NAME] [--max-files N] [--max-bytes N] [--label K=V]...]\n"
    "       (script.py | -m module) [args...]"
)


class UsageError(Exception):
    """A bad command line: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser() -> _Parser:
    parser = _Parser(
        prog="python -m plop.collector",
        usage=USAGE,
        description="Run a Python program under plop's sampling profiler and save its profile.",
    )
    parser.add_argument("--mode", default=None, choices=sorted(MODES),
                        help="clock that paces sampling and view the profile opens in: prof = CPU time "
                             "(default), virtual = the same, real = wall clock (default with --window)")
    parser.add_argument("--interval", type=float, default=0.01,
                        help="seconds between samples (default 0.01)")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop sampling after this many seconds of the mode's clock")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--datadir", default=None,
                     help="directory for the profile, created if missing (default %s)" % DEFAULT_DATADIR)
    out.add_argument("-o", "--output", default=None, metavar="FILE", help="write the profile to FILE")
    parser.add_argument("--format", "-f", choices=formats.FORMATS, default=None,
                        help="file format (default plop, or what -o FILE's extension names)")
    parser.add_argument("--max-stacks", type=int, default=None, metavar="N",
                        help="keep only the N most frequent stacks (default: all)")
    live = parser.add_argument_group("rolling profiles (docs/live.md)")
    live.add_argument("--window", type=float, default=None, metavar="S",
                      help="write one profile per S seconds into --datadir, for programs left running")
    live.add_argument("--service", default=None, metavar="NAME",
                      help="service name in the window files' names and metadata (default: the program's)")
    live.add_argument("--max-files", type=int, default=None, metavar="N",
                      help="keep at most N window files of this service in --datadir")
    live.add_argument("--max-bytes", type=int, default=None, metavar="N",
                      help="keep at most N bytes of this service's window files in --datadir")
    live.add_argument("--label", action="append", default=[], metavar="K=V",
                      help="a label stored in every window's metadata (repeatable)")
    live.add_argument("--overhead-budget", type=float, default=0.01, metavar="F",
                      help="lower the rate when sampling costs more than this share of CPU (default 0.01; 0 = never)")
    return parser


def split_argv(argv: list[str]) -> tuple[list[str], str | None, str | None, list[str]]:
    """Split plop's options from the program and its arguments.

    Everything after the script name (or ``-m module``) belongs to the
    program, even when it looks like one of plop's options.
    Returns ``(plop_options, script, module, program_args)``.
    """
    takes_value = {"--mode", "--interval", "--duration", "--datadir", "-o", "--output",
                   "--format", "-f", "--max-stacks", "--window", "--service", "--max-files",
                   "--max-bytes", "--label", "--overhead-budget"}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-m":
            if i + 1 >= len(argv):
                raise UsageError("-m needs a module name")
            return argv[:i], None, argv[i + 1], argv[i + 2 :]
        if arg.startswith("-m") and not arg.startswith("--") and len(arg) > 2:
            return argv[:i], None, arg[2:], argv[i + 1 :]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        if arg in takes_value:
            i += 2
        else:
            i += 1
    if i >= len(argv):
        return argv, None, None, []
    return argv[:i], argv[i], None, argv[i + 1 :]


def _output_path(args: argparse.Namespace, target: str, fmt: str) -> str:
    """Where the profile goes: ``-o FILE``, or a new name in the data directory."""
    if args.output:
        return args.output
    datadir = args.datadir or DEFAULT_DATADIR
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime())
    base = "%s-%s-%d" % (target, stamp, os.getpid())
    ext = formats.EXTENSIONS[fmt]
    path = os.path.join(datadir, "%s.%s" % (base, ext))
    n = 1
    while os.path.lexists(path):
        path = os.path.join(datadir, "%s-%d.%s" % (base, n, ext))
        n += 1
    return path


def _say(message: str) -> None:
    sys.stderr.write("plop: %s\n" % message)
    sys.stderr.flush()


def report(collector: Collector, path: str, profile: Profile) -> list[str]:
    """The lines plop prints on stderr after a run: where, how many, at what cost."""
    lines = []
    taken = collector.samples_taken
    duration = collector.duration
    if not taken:
        lines.append("wrote an empty profile to %s: the program ended before the first sample "
                     "(%.3g s; sampling every %g s of %s time)" % (path, duration, collector.interval,
                                                                   _clock_name(collector.mode)))
        return lines
    lines.append("wrote %s" % path)
    asked = 1.0 / collector.interval
    clock_seconds = _clock_seconds(collector, profile)
    rate = taken / clock_seconds if clock_seconds > 0 else 0.0
    lines.append("%d snapshots of every thread over %.3g s of %s time: %.0f/s (asked %.0f/s), "
                 "%d distinct stacks" % (taken, clock_seconds, _clock_name(collector.mode), rate, asked,
                                         len(profile.samples)))
    cost = collector.sampler_cpu_time
    cpu = profile.metadata.get("cpu_time") or 0.0
    share = ", %.2f%% of the program's CPU time" % (100.0 * cost / cpu) if cpu > 0 else ""
    lines.append("overhead: %.1f us of CPU per snapshot in plop's sampler thread%s"
                 % (cost / taken * 1e6, share))
    late = collector.late
    if late > 0.1 * taken and clock_seconds > 20 * collector.interval:
        lines.append("%d snapshots came more than an interval late: the program held the interpreter "
                     "(the GIL) in long C calls, or the machine is overloaded; the samples are weighted "
                     "by the time they stand for" % late)
    if collector.errors:
        lines.append("%d snapshots failed and were skipped" % collector.errors)
    return lines


def _clock_name(mode: str) -> str:
    return {"prof": "CPU", "virtual": "CPU", "real": "wall-clock"}[mode]


def _clock_seconds(collector: Collector, profile: Profile) -> float:
    if collector.mode == "real":
        return collector.duration
    return float(profile.metadata.get("cpu_time") or 0.0)


class _Run:
    """One profiled run: the collector, where its profile goes, and saving it at exit."""

    def __init__(self, args: argparse.Namespace, target: str, command: list[str]) -> None:
        self.args = args
        self.fmt = args.format or (formats.format_for_path(args.output) if args.output else "plop")
        self.path = _output_path(args, target, self.fmt)
        self.command = command
        self.collector = Collector(interval=args.interval, mode=args.mode)
        self.saved = False
        self._times0 = os.times()

    def save(self) -> None:
        """Stop sampling and write the profile; never raises (the program's exit status stands)."""
        if self.saved:
            return
        self.saved = True
        collector = self.collector
        collector.stop()
        times = os.times()
        try:
            profile = collector.profile()
            profile.metadata["command"] = self.command
            profile.metadata["cpu_time"] = round(
                (times.user - self._times0.user) + (times.system - self._times0.system), 6)
            profile.metadata["user_time"] = round(times.user - self._times0.user, 6)
            if self.args.max_stacks is not None:
                profile = profile.top_stacks(self.args.max_stacks)
            parent = os.path.dirname(self.path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            formats.dump(profile, self.path, self.fmt)
        except Exception as exc:  # a full disk must not turn into the program's traceback
            _say("could not write the profile to %s: %s" % (self.path, exc))
            return
        for line in report(collector, self.path, profile):
            _say(line)


def _check_live_options(args: argparse.Namespace) -> dict[str, str]:
    """Check the rolling-profile options; returns the labels."""
    if args.window is None:
        for option, value in (("--service", args.service), ("--max-files", args.max_files),
                              ("--max-bytes", args.max_bytes), ("--label", args.label or None)):
            if value is not None:
                raise UsageError("%s only applies to rolling profiles (--window S)" % option)
        return {}
    if not 0 < args.window < float("inf"):
        raise UsageError("--window must be a positive number of seconds, not %g" % args.window)
    if args.output:
        raise UsageError("--window writes one file per window into --datadir, not -o FILE")
    if args.duration is not None or args.max_stacks is not None or args.format not in (None, "plop"):
        raise UsageError("--window writes native profiles for as long as the program runs: "
                         "--duration, --max-stacks and --format do not apply")
    for option, value in (("--max-files", args.max_files), ("--max-bytes", args.max_bytes)):
        if value is not None and value < 1:
            raise UsageError("%s must be at least 1" % option)
    if not args.overhead_budget >= 0:
        raise UsageError("--overhead-budget must be a fraction >= 0")
    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError("--label takes KEY=VALUE, not %r" % item)
        labels[key] = value
    return labels


def _run_rolling(args: argparse.Namespace, target: str, labels: dict[str, str], script: str | None,
                 module: str | None, program_args: list[str]) -> None:
    """Run the program with rolling profiles (plop.live), written until it exits."""
    from plop import live

    service = args.service or (target[:-3] if target.endswith(".py") else target)
    try:
        handle = live.LiveProfiler(
            datadir=args.datadir or DEFAULT_DATADIR, mode=args.mode or "real", interval=args.interval,
            window=args.window, service=service, labels=labels, max_files=args.max_files,
            max_bytes=args.max_bytes, overhead_budget=args.overhead_budget or None)
    except ValueError as exc:
        sys.stderr.write("plop: error: %s\n" % exc)
        sys.exit(2)
    pid = os.getpid()

    def summary() -> None:  # after plop's own exit hook (registered later) wrote the last window
        if os.getpid() == pid and handle.files:
            _say("wrote %d profile window(s) of service %s to %s" % (handle.files and len(handle.files),
                                                                     handle.service, handle.datadir))

    atexit.register(summary)
    handle.set_root(_exec_program.__code__)
    live.activate(handle)
    try:
        _exec_program(script, module, program_args)
    except BaseException:
        sys.excepthook = _trimming_excepthook(sys.excepthook, _exec_program.__code__)
        raise


def _trimming_excepthook(hook: Callable[..., Any], root: CodeType) -> Callable[..., Any]:
    """Wrap ``hook`` so tracebacks start at the program's frames, not plop's."""

    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        t = tb
        while t is not None:
            if t.tb_frame.f_code is root:
                tb = t.tb_next
                break
            t = t.tb_next
        if exc is not None and exc.__traceback__ is not None:
            exc.__traceback__ = tb
        hook(exc_type, exc, tb)

    return excepthook


def _exec_program(script: str | None, module: str | None, args: list[str]) -> None:
    """Run the program as ``python`` would; its frames start right below this one."""
    if module is not None:
        sys.argv = ["-m"] + args  # runpy puts the module's path in argv[0]
        runpy._run_module_as_main(module, alter_argv=True)  # type: ignore[attr-defined]
        return
    assert script is not None
    import types

    main = types.ModuleType("__main__")
    main.__file__ = os.path.abspath(script)  # as python does since 3.9
    main.__builtins__ = __builtins__  # type: ignore[attr-defined]
    main.__cached__ = None  # type: ignore[attr-defined]
    sys.modules["__main__"] = main
    sys.argv = [script] + args
    sys.path[0] = os.path.dirname(os.path.realpath(script))
    with open(script, "rb") as f:
        source = f.read()
    code = compile(source, main.__file__, "exec", dont_inherit=True)
    exec(code, main.__dict__)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m plop.collector``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        options, script, module, program_args = split_argv(argv)
        args = _parser().parse_args(options)
        if script is None and module is None:
            raise UsageError("no program to run: give a script or -m module (see --help)")
        if not args.interval > 0:
            raise UsageError("--interval must be a positive number of seconds, not %g" % args.interval)
        if args.duration is not None and not args.duration > 0:
            raise UsageError("--duration must be a positive number of seconds, not %g" % args.duration)
        if args.max_stacks is not None and args.max_stacks < 1:
            raise UsageError("--max-stacks must be at least 1")
        labels = _check_live_options(args)
        if script is not None and not os.path.isfile(script):
            raise UsageError("can't open file %r: no such file" % script)
        if module is not None:
            import importlib.util

            try:
                found = importlib.util.find_spec(module)
            except (ImportError, ValueError) as exc:
                raise UsageError("cannot find module %r: %s" % (module, exc)) from None
            if found is None:
                raise UsageError("no module named %r" % module)
    except UsageError as exc:
        sys.stderr.write("plop: error: %s\n" % exc)
        sys.exit(2)

    target = module if module is not None else os.path.basename(script)  # type: ignore[arg-type]
    command = (["-m", module] if module is not None else [script]) + program_args  # type: ignore[list-item]
    if args.window is not None:
        _run_rolling(args, target, labels, script, module, program_args)
        return
    if args.mode is None:
        args.mode = "prof"
    run = _Run(args, target, command)
    atexit.register(run.save)
    run.collector.set_root(_exec_program.__code__)
    run.collector.start(duration=args.duration)
    try:
        _exec_program(script, module, program_args)
    except BaseException:
        # Leave the exception to the interpreter, which prints it (through a
        # hook that hides plop's frames) and exits with the status plain
        # Python would give; the profile is saved by the atexit hook.
        sys.excepthook = _trimming_excepthook(sys.excepthook, _exec_program.__code__)
        raise
