"""Bounded reading and atomic writing of profile files."""
from __future__ import annotations

import os
import stat
import tempfile

from plop.formats._common import ProfileFormatError


def read_bounded(path: str | os.PathLike[str], max_bytes: int) -> tuple[str, bytes]:
    """The file's name and bytes, refusing anything that is not a small regular file.

    The size is checked with ``stat`` before reading, so a huge file is
    refused at once; anything but a regular file (FIFO, socket, device) is
    refused without being read, so a scan of ``/tmp`` can never block. I/O
    errors are reported as :class:`ProfileFormatError` too (chained).
    """
    name = os.fspath(path)
    try:
        st = os.stat(name)
        if not stat.S_ISREG(st.st_mode):
            raise ProfileFormatError("not a regular file", name)
        if st.st_size > max_bytes:
            raise ProfileFormatError(f"file is {st.st_size} bytes, more than the limit of {max_bytes}", name)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(name, flags)
        try:
            st = os.fstat(fd)  # the file may have been swapped since the stat above
            if not stat.S_ISREG(st.st_mode):
                raise ProfileFormatError("not a regular file", name)
            # One read of the whole file in the usual case (and so no copy in
            # the join); more only if it is growing or lies about its size.
            chunks = []
            remaining = max_bytes + 1
            want = min(st.st_size + 1, remaining)
            while remaining > 0:
                chunk = os.read(fd, want)
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
                want = min(remaining, 1 << 20)
        finally:
            os.close(fd)
    except OSError as e:
        raise ProfileFormatError(f"cannot read: {e.strerror or e}", name) from e
    data = b"".join(chunks)
    del chunks
    if len(data) > max_bytes:
        raise ProfileFormatError(f"file grew past the limit of {max_bytes} bytes", name)
    return name, data


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    The bytes go to a temporary file in the same directory (so the rename is
    atomic on one file system), are fsynced, then renamed over ``path``; the
    temporary file is removed on any failure. A collector that dies mid-write
    therefore never leaves a truncated profile for the viewer to trip on. The
    new file gets ordinary permissions (those of the file it replaces, or
    0666 less the umask), not mkstemp's 0600.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        try:
            try:
                mode = stat.S_IMODE(os.stat(path).st_mode)
            except OSError:
                mode = 0o666 & ~_umask()
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable; not possible everywhere
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _umask() -> int:
    """The process umask, read without os.umask's set-and-restore race where possible."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022
