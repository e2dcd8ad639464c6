"""hookgate-datadog: a logger plugin that sends each LLM call to Datadog Logs.

Enable it as `datadog` in the proxy config. `callback_settings.datadog` takes
`api_key`, `site`, `service` and `url`, falling back to DD_API_KEY and DD_SITE (see
README.md).
"""

from hookgate_datadog.logger import DatadogLogger
from hookgate_datadog.payload import encode_log, log_entry
from hookgate_datadog.settings import DatadogSettings, parse_settings

__all__ = ["DatadogLogger", "DatadogSettings", "encode_log", "log_entry", "parse_settings"]
