"""hookgate-core: the framework behind hookgate's logger plugins.

Plugin authors need only what this module exports:

    from hookgate import CallEvent, NotConfigured, hookimpl

    class AuditLog:
        @hookimpl
        def log_success(self, event: CallEvent) -> None:
            ...
"""

from hookgate.dispatch import DisableResult, Dispatcher, LaneSettings, PluginStats, ShutdownReport
from hookgate.events import CallEvent, ErrorInfo, FrozenDict, RequestMetadata, Usage
from hookgate.hookspecs import hookimpl
from hookgate.plugins import (
    ENTRY_POINT_GROUP,
    NotConfigured,
    PluginLoadError,
    PluginRecord,
    PluginRegistry,
    PluginStatus,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "CallEvent",
    "DisableResult",
    "Dispatcher",
    "ErrorInfo",
    "FrozenDict",
    "LaneSettings",
    "NotConfigured",
    "PluginLoadError",
    "PluginRecord",
    "PluginRegistry",
    "PluginStats",
    "PluginStatus",
    "RequestMetadata",
    "ShutdownReport",
    "Usage",
    "hookimpl",
]
