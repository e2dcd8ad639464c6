"""The jsonl logger: one JSON object per finished call, appended to a rotating file."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hookgate import CallEvent, hookimpl

from hookgate_jsonl.settings import JsonlSettings, parse_settings

__all__ = ["JsonlLogger", "RotatingJsonlFile"]

logger = logging.getLogger(__name__)

# The file contains prompts and answers unless content logging is off, so a file
# created here is readable by its owner only. An existing file keeps its mode.
FILE_MODE = 0o600

# JSON allows these three characters raw inside strings, but Python's
# `str.splitlines`, older JavaScript parsers and some log shippers treat them as line
# ends and would cut a record in two, so they are written as escapes.
LINE_BREAK_ESCAPES = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028",
                                    "\u2029": "\\u2029"})


class RotatingJsonlFile:
    """An append-only file of complete lines, rotated by size.

    Each line goes to the kernel in one `write` on a descriptor opened with O_APPEND
    and no user-space buffer, so a reader sees it at once, and lines from other
    threads or processes never land inside it. Before each write the file at `path`
    is compared with the open one, so rotation by another process or by logrotate is
    followed instead of writing into a renamed or deleted file.

    Thread-safe. Rotation renames `<path>.1` to `<path>.2` and so on, dropping the
    oldest, and `<path>` to `<path>.1`.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.bytes = 0
        """Size of the current file as last seen by this writer."""
        self.lines_written = 0
        self.rotations = 0
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        """Open (or create) the file for appending. Raises OSError if that fails."""
        with self._lock:
            self._open()

    def write_line(self, line: bytes) -> None:
        """Append one line, which must end with a newline, rotating first if it is due."""
        with self._lock:
            if self._fd is None or self._replaced():
                self._open()
            if self.max_bytes and self.bytes and self.bytes + len(line) > self.max_bytes:
                self._rotate()

            assert self._fd is not None
            written = 0
            while written < len(line):
                written += os.write(self._fd, line[written:])
            self.bytes += written
            self.lines_written += 1

    def close(self) -> None:
        """Write the file to disk and close it. A later `write_line` reopens it."""
        with self._lock:
            if self._fd is None:
                return
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None
                self._inode = None

    def _open(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     FILE_MODE)
        status = os.fstat(fd)
        self._fd = fd
        self._inode = (status.st_dev, status.st_ino)
        self.bytes = status.st_size

    def _replaced(self) -> bool:
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (status.st_dev, status.st_ino) != self._inode

    def _rotate(self) -> None:
        # NOTE: two processes that share one file can both rotate it at the same moment.
        # No line is lost, but one rotated file then ends up smaller than max_bytes.
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        if self.backups:
            for number in range(self.backups - 1, 0, -1):
                older = self._backup(number)
                if older.exists():
                    os.replace(older, self._backup(number + 1))
            os.replace(self.path, self._backup(1))
        else:
            self.path.unlink(missing_ok=True)
        self.rotations += 1
        logger.info("jsonl: rotated %s after %d bytes (%d backups kept)", self.path,
                    self.bytes, self.backups)
        self._open()

    def _backup(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{number}")


class JsonlLogger:
    """The `jsonl` logger plugin: appends each event as one JSON line to a file.

    A line is the event as JSON (`CallEvent.model_dump(mode="json")`) with one more
    field, `hook`: `log_success` or `log_failure`. The event never carries an API
    key or an auth header, so neither can reach the file.

    The hooks are sync on purpose, because hookgate-core runs a sync hook in the
    plugin's own worker thread and the file I/O then stays off the event loop.
    """

    def __init__(self) -> None:
        self.name = "jsonl"
        self.settings: JsonlSettings | None = None
        self.file: RotatingJsonlFile | None = None

    @hookimpl
    def logger_setup(self, name: str, settings: Mapping[str, Any]) -> None:
        """Validate the settings and open the file, so that a bad path fails at startup."""
        parsed = parse_settings(name, settings)
        file = RotatingJsonlFile(parsed.path, parsed.max_bytes, parsed.backups)
        try:
            file.open()
        except OSError as error:
            raise ValueError(
                f"callback_settings.{name}.path: failed to open {str(parsed.path)!r} for "
                f"appending: {error.strerror or error}; set a file in an existing, "
                "writable directory"
            ) from error

        self.name = name
        self.settings = parsed
        self.file = file
        logger.info("%s: writing events to %s (rotation at %s, %d backups)", name, parsed.path,
                    f"{parsed.max_bytes} bytes" if parsed.max_bytes else "never",
                    parsed.backups)

    @hookimpl
    def log_success(self, event: CallEvent) -> None:
        self._write("log_success", event)

    @hookimpl
    def log_failure(self, event: CallEvent) -> None:
        self._write("log_failure", event)

    @hookimpl
    def logger_flush(self, timeout: float) -> None:
        if self.file is not None:
            self.file.close()
            logger.info("%s: closed %s after %d lines", self.name, self.file.path,
                        self.file.lines_written)

    @hookimpl
    def logger_health(self) -> Mapping[str, Any] | None:
        if self.file is None:
            return None
        return {
            "path": str(self.file.path),
            "bytes": self.file.bytes,
            "lines_written": self.file.lines_written,
            "rotations": self.file.rotations,
        }

    def _write(self, hook_name: str, event: CallEvent) -> None:
        if self.file is None:
            raise RuntimeError(f"{self.name}: event {event.call_id} arrived before logger_setup")
        record = {"hook": hook_name, **event.model_dump(mode="json")}

        # `default=str` keeps the line valid JSON even if the response contains an
        # object that JSON cannot encode. A string in its place is better than no line.
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
        text = text.translate(LINE_BREAK_ESCAPES)
        self.file.write_line(text.encode("utf-8") + b"\n")
