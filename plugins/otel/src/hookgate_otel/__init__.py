"""hookgate-otel: one OpenTelemetry GenAI span per LLM call, exported over OTLP/HTTP."""

from hookgate_otel.logger import OtelLogger

__all__ = ["OtelLogger"]
