"""``python -m plop`` (console script ``plop``): tools for profile files.

::

    python -m plop convert IN OUT [--format F]

``convert`` reads any profile plop reads (native, legacy plop, collapsed
stacks, speedscope, pprof; recognised by content) and writes it in the format
``--format`` names, or else the one OUT's extension names (``.plop``,
``.flame``/``.collapsed``/``.txt``, ``.json``/``.speedscope.json``,
``.pb.gz``/``.pprof``). OUT ``-`` is standard output. The output file is
written atomically. A bad input is one line on standard error and exit
status 2, so scripts converting many files can tell it from a failed write
(status 1).
"""
from __future__ import annotations

import argparse
import os
import sys

from plop import formats


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="plop", description="Tools for plop's profile files.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    convert = commands.add_parser(
        "convert", help="convert a profile to another format",
        description="Convert a profile between plop, collapsed stacks (flamegraph), speedscope and pprof. "
                    "The input format is recognised by content; the output format is --format, or what "
                    "OUT's extension names.")
    convert.add_argument("input", metavar="IN", help="profile file to read")
    convert.add_argument("output", metavar="OUT", help="file to write (- for standard output)")
    convert.add_argument("--format", "-f", choices=formats.FORMATS + ("collapsed",),
                         help="output format (default: from OUT's extension; native plop if it names none)")
    return parser.parse_args(argv)


def convert(src: str, dst: str, fmt: str | None) -> int:
    """Convert one file; the exit status (0, 1 for a failed write, 2 for a bad input)."""
    try:
        profile = formats.load(src)
    except formats.ProfileFormatError as e:
        print(f"plop convert: {_one_line(str(e))}", file=sys.stderr)
        return 2
    fmt = fmt or ("plop" if dst == "-" else formats.format_for_path(dst))
    try:
        data = formats.dumps(profile, fmt)
        if dst == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            formats.write_atomic(dst, data)
    except (OSError, ValueError, TypeError) as e:
        print(f"plop convert: cannot write {dst} as {fmt}: {_one_line(str(e))}", file=sys.stderr)
        return 1
    if dst != "-":
        print(f"plop convert: {src} -> {dst} ({fmt}): {profile.total_samples} samples, "
              f"{len(profile.threads())} threads", file=sys.stderr)
    return 0


def _one_line(text: str) -> str:
    """Error text from a hostile file may hold line breaks or control characters: never print them raw."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)[:500]


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m plop`` and the ``plop`` console script."""
    args = parse_args(argv)
    if args.command == "convert":
        sys.exit(convert(os.fspath(args.input), os.fspath(args.output), args.format))


if __name__ == "__main__":
    main()
