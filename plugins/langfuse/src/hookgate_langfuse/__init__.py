"""hookgate-langfuse: a logger plugin that sends each LLM call to Langfuse.

Enable it as `langfuse` in the proxy config. `callback_settings.langfuse` takes
`host`, `public_key` and `secret_key`, falling back to LANGFUSE_HOST,
LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY (see README.md).
"""

from hookgate_langfuse.logger import LangfuseLogger
from hookgate_langfuse.payload import encode_call, trace_and_generation
from hookgate_langfuse.settings import LangfuseSettings, parse_settings

__all__ = [
    "LangfuseLogger",
    "LangfuseSettings",
    "encode_call",
    "parse_settings",
    "trace_and_generation",
]
