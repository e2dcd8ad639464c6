"""Settings of the jsonl logger: where to write and when to rotate."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_BACKUPS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_PATH",
    "PATH_ENV",
    "JsonlSettings",
    "parse_settings",
]

DEFAULT_PATH = "hookgate-events.jsonl"
PATH_ENV = "HOOKGATE_JSONL_PATH"
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_BACKUPS = 5

OWN_KEYS = frozenset({"path", "max_bytes", "backups"})

# The proxy passes these keys on with every callback's settings, but it and
# hookgate-core act on them: no request may disable a required plugin, and content
# is removed before the event reaches the plugin. So the plugin ignores them.
CORE_KEYS = frozenset({"required", "log_content"})


@dataclasses.dataclass(frozen=True)
class JsonlSettings:
    """Validated settings of one jsonl logger."""

    path: Path
    """Absolute path of the file that receives events."""
    max_bytes: int
    """Maximum file size in bytes before rotation; 0 turns rotation off."""
    backups: int
    """Number of rotated files kept (`<path>.1` is the newest); 0 keeps none."""


def parse_settings(name: str, settings: Mapping[str, Any]) -> JsonlSettings:
    """Validate `callback_settings.<name>` and fill in the defaults.

    Raises ValueError naming the key and the invalid value. A missing `path` falls
    back to the HOOKGATE_JSONL_PATH environment variable, then to
    `hookgate-events.jsonl` in the current directory. A relative path is made
    absolute against the current directory now, so a later `chdir` cannot move it.
    """
    prefix = f"callback_settings.{name}"

    unknown = sorted(set(settings) - OWN_KEYS - CORE_KEYS)
    if unknown:
        known = ", ".join(sorted(OWN_KEYS | CORE_KEYS))
        raise ValueError(f"{prefix}: unknown keys {', '.join(map(repr, unknown))}; "
                         f"the jsonl logger accepts {known}")

    raw_path = settings.get("path")
    source = f"{prefix}.path"
    if raw_path is None:
        raw_path = os.environ.get(PATH_ENV) or DEFAULT_PATH
        source = PATH_ENV if os.environ.get(PATH_ENV) else f"{prefix}.path (default)"
    if not isinstance(raw_path, (str, os.PathLike)) or not str(raw_path).strip():
        raise ValueError(f"{source}: invalid value {raw_path!r}: expected a file path")
    path = Path(raw_path).expanduser().absolute()
    if path.is_dir():
        raise ValueError(f"{source}: invalid value {str(raw_path)!r}: {path} is a directory, "
                         "expected a file path")

    max_bytes = _whole_number(settings, "max_bytes", DEFAULT_MAX_BYTES, prefix,
                              "bytes (0 turns rotation off)")
    backups = _whole_number(settings, "backups", DEFAULT_BACKUPS, prefix,
                            "rotated files to keep")
    return JsonlSettings(path=path, max_bytes=max_bytes, backups=backups)


def _whole_number(settings: Mapping[str, Any], key: str, default: int, prefix: str,
                  unit: str) -> int:
    value = settings.get(key, default)

    # bool is a subclass of int, but `max_bytes: true` is a mistake, not the number 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{prefix}.{key}: invalid value {value!r}: expected a whole number "
                         f"of {unit}, 0 or more")
    return value
