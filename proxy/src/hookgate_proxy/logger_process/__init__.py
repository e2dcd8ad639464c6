"""The logger process: run the logger plugins outside the proxy's process.

- `protocol`: the frames both sides exchange over a Unix socket pair;
- `worker`: the process itself (`python -m hookgate_proxy.logger_process`);
- `client`: the proxy's side, which starts it and feeds it events;
- `dispatch`: `SplitDispatcher`, one dispatcher interface over both places.
"""

from hookgate import Dispatcher
from hookgate_proxy.logger_process.client import LoggerProcess, LoggerProcessError, PluginSpec
from hookgate_proxy.logger_process.dispatch import SplitDispatcher

EventDispatcher = Dispatcher | SplitDispatcher
"""The dispatcher type the proxy's routes submit events to, with or without a logger process."""

__all__ = ["EventDispatcher", "LoggerProcess", "LoggerProcessError", "PluginSpec",
           "SplitDispatcher"]
