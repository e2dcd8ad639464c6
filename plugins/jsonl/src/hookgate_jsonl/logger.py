"""The jsonl logger: one JSON object per finished call, appended to a rotating file."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from hookgate import CallEvent, hookimpl
from hookgate_jsonl.rotating import RotatingJsonlFile
from hookgate_jsonl.settings import JsonlSettings, parse_settings

__all__ = ["JsonlLogger"]

logger = logging.getLogger(__name__)

# JSON allows these three characters raw inside strings, but Python's
# `str.splitlines`, older JavaScript parsers and some log shippers treat them as line
# ends and would cut a record in two, so they are written as escapes.
LINE_BREAK_ESCAPES = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028",
                                    "\u2029": "\\u2029"})


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

        if self.file is not None:
            self.file.close()
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
        # pydantic's own encoder is about twice as fast as model_dump plus json.dumps,
        # and the line is the same: `hook` first, then every event field in order.
        # `fallback=str` keeps the line valid JSON even if the response contains an
        # object that JSON cannot encode. A string in its place is better than no line.
        body = event.model_dump_json(fallback=str)
        text = f'{{"hook":"{hook_name}",{body[1:]}' if body != "{}" else f'{{"hook":"{hook_name}"}}'
        text = text.translate(LINE_BREAK_ESCAPES)
        self.file.write_line(text.encode("utf-8") + b"\n")
