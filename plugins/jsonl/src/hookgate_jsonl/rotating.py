"""An append-only file of complete lines, rotated by size, that several processes can share."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["FILE_MODE", "RotatingJsonlFile"]

logger = logging.getLogger(__name__)

# The file contains prompts and answers unless content logging is off, so a file
# created here is readable by its owner only. An existing file keeps its mode.
FILE_MODE = 0o600

# Maximum attempts to write one line when the file keeps being replaced between the
# check and the write. One retry covers a rotation by another process or logrotate.
MAX_ATTEMPTS = 10


class RotatingJsonlFile:
    """An append-only file of complete lines, rotated by size.

    Each line goes to the kernel in one `write` on a descriptor opened with O_APPEND
    and no user-space buffer, so a reader sees it at once, and lines written by
    other threads or processes never land inside it.

    Several processes (proxy workers) may append to one path. Each size check and
    the write or rotation after it hold an exclusive `flock` on the file, so the
    file never grows past `max_bytes` and only one process rotates it. Before each
    write the file at `path` is compared with the open one, so a rotation by
    another process or by logrotate is followed instead of writing into a renamed
    or deleted file.

    Thread-safe. Rotation renames `<path>.1` to `<path>.2` and so on, dropping the
    oldest, and `<path>` to `<path>.1`.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.bytes = 0
        """Size of the current file after this writer's last write."""
        self.lines_written = 0
        self.rotations = 0
        """Rotations done by this writer (not by other processes)."""
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def open(self) -> None:
        """Open (or create) the file for appending. Raises OSError if that fails."""
        with self._lock:
            self._open()

    def write_line(self, line: bytes) -> None:
        """Append one line, which must end with a newline, rotating first if it is due.

        Raises OSError if the write fails, and leaves no part of the line in the file.
        """
        with self._lock:
            for _ in range(MAX_ATTEMPTS):
                if self._try_write(line):
                    return
        raise OSError(f"{self.path} was replaced {MAX_ATTEMPTS} times while one line was "
                      "being written; check which other program renames or deletes it")

    def close(self) -> None:
        """Write the file to disk and close it. A later `write_line` reopens it."""
        with self._lock:
            if self._fd is None:
                return
            try:
                os.fsync(self._fd)
            finally:
                self._close()

    def _try_write(self, line: bytes) -> bool:
        """Append `line`, or rotate or reopen the file and return False to try again."""
        if self._fd is None:
            self._open()
        fd = self._fd
        assert fd is not None

        _lock_file(fd)
        try:
            size = self._current_size()
            if size is None:
                pass  # Another process or logrotate replaced the file: reopen below.
            elif self._rotation_due(size, len(line)):
                self._rotate(size)
            else:
                self._append(fd, line, size)
                return True
        finally:
            _unlock_file(fd)

        self._open()
        return False

    def _current_size(self) -> int | None:
        """Return the size of the file at `path`, or None if it is not the open file."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return None
        if (status.st_dev, status.st_ino) != self._inode:
            return None
        return status.st_size

    def _rotation_due(self, size: int, line_size: int) -> bool:
        # An empty file takes any line, so a line longer than max_bytes is written
        # alone instead of rotating forever.
        return bool(self.max_bytes) and size > 0 and size + line_size > self.max_bytes

    def _append(self, fd: int, line: bytes, size: int) -> None:
        written = 0
        try:
            while written < len(line):
                written += os.write(fd, line[written:])
        except OSError:
            # A full disk or a file size limit can stop a write part way. Every writer
            # holds the flock while it writes (where fcntl exists), so cutting the file
            # back to the size seen under the lock removes only this partial line.
            if written:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
            raise
        self.bytes = size + written
        self.lines_written += 1

    def _rotate(self, size: int) -> None:
        if self.backups:
            for number in range(self.backups - 1, 0, -1):
                older = self._backup(number)
                if older.exists():
                    os.replace(older, self._backup(number + 1))
            os.replace(self.path, self._backup(1))
        else:
            self.path.unlink(missing_ok=True)
        self.rotations += 1
        logger.info("rotated %s at %d bytes (%d backups kept)", self.path, size,
                    self.backups)

    def _backup(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{number}")

    def _open(self) -> None:
        self._close()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     FILE_MODE)
        status = os.fstat(fd)
        self._fd = fd
        self._inode = (status.st_dev, status.st_ino)
        self.bytes = status.st_size

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._inode = None


# NOTE: without fcntl (Windows) these do nothing, so processes that share one file
# there can rotate it twice or write a line into a file being renamed.
def _lock_file(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)


def _unlock_file(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
