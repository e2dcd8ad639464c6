"""hookgate-jsonl: a logger plugin that appends one JSON line per LLM call to a file.

Enable it as `jsonl` in the proxy config; `callback_settings.jsonl` takes `path`,
`max_bytes` and `backups` (see README.md).
"""

from hookgate_jsonl.logger import JsonlLogger
from hookgate_jsonl.rotating import RotatingJsonlFile
from hookgate_jsonl.settings import JsonlSettings, parse_settings

__all__ = ["JsonlLogger", "JsonlSettings", "RotatingJsonlFile", "parse_settings"]
