"""hookgate-prometheus: request, token, latency and logger metrics at `/metrics`."""

from hookgate_prometheus.logger import PrometheusLogger

__all__ = ["PrometheusLogger"]
