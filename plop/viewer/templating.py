"""Jinja2 templates for the viewer: the environment and the display filters.

Autoescaping is on for every template, so any string that comes from a
profile (function names, commands, file names) is rendered as text.
"""
from __future__ import annotations

import datetime
import os
import shlex
from typing import Any

import jinja2

from plop.viewer.rates import seconds

TEMPLATE_DIR = os.path.join(os.path.dirname(__file__), "templates")


def make_environment() -> jinja2.Environment:
    """The viewer's Jinja2 environment (autoescape on, undefined names are errors)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        filesize=filesize,
        duration=duration,
        timestamp=timestamp,
        number=number,
        command=command,
        seconds=seconds,
        per_second=per_second,
    )
    return env


def filesize(size: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    if size < 1024:
        return "%d B" % size
    value = size / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    return "%.1f %s" % (value, unit)


def duration(seconds: float | None) -> str:
    """``75.5`` -> ``"1 min 15.5 s"``; empty for an unknown duration."""
    if seconds is None:
        return ""
    if seconds < 1:
        return "%.0f ms" % (seconds * 1000)
    if seconds < 60:
        return "%.1f s" % seconds
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return "%d min %.0f s" % (minutes, rest)
    hours, minutes = divmod(minutes, 60)
    return "%d h %d min" % (hours, minutes)


def timestamp(epoch: float | None) -> str:
    """Local date and time of an epoch timestamp, ``"2024-05-01 14:03:07"``."""
    if epoch is None:
        return ""
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def number(value: int | None) -> str:
    """``1234567`` -> ``"1,234,567"``."""
    return "" if value is None else "{:,}".format(value)


def per_second(rate: float) -> str:
    """Snapshots per second with two or three significant digits: ``"6.6/s"``, ``"98/s"``, ``"0.25/s"``."""
    return "%.2g/s" % rate if rate < 10 else "%.0f/s" % rate


def command(argv: Any) -> str:
    """A profiled command line as a shell would show it."""
    if not argv:
        return ""
    if isinstance(argv, str):
        return argv
    return shlex.join(str(arg) for arg in argv)
