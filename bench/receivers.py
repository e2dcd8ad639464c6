"""Loopback receivers that stand in for the logging backends and count what arrives.

Run as a script, one process per backend:
`python bench/receivers.py --port PORT --kind langfuse|otlp [--delay SECONDS]`.
`GET /_bench/stats` returns `{"batches": N, "events": N, "rejected": N}` where
`events` counts LLM calls (one Langfuse trace, or one OTLP root span, per call) and
`rejected` the requests refused for bad credentials or a bad body.
`--delay` holds every batch that long before answering, like a slow backend.

Each receiver checks what its service checks: Langfuse wants basic auth and a
JSON `batch` array and answers 207 with per-event results; an OTLP/HTTP
collector wants a protobuf `ExportTraceServiceRequest`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging

from aiohttp import web

logger = logging.getLogger(__name__)

LANGFUSE_PUBLIC_KEY = "pk-lf-bench"
LANGFUSE_SECRET_KEY = "sk-lf-bench"


class Counter:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.batches = 0
        self.events = 0
        self.rejected = 0


async def _langfuse(request: web.Request) -> web.Response:
    counter: Counter = request.app["counter"]
    expected = "Basic " + base64.b64encode(
        f"{LANGFUSE_PUBLIC_KEY}:{LANGFUSE_SECRET_KEY}".encode()).decode()
    if request.headers.get("Authorization") != expected:
        counter.rejected += 1
        return web.json_response({"message": "invalid credentials"}, status=401)
    try:
        payload = json.loads(await request.read())
        batch = payload["batch"]
        if not isinstance(batch, list):
            raise TypeError("batch is not a list")
    except (ValueError, KeyError, TypeError) as error:
        counter.rejected += 1
        return web.json_response({"message": f"invalid body: {error}"}, status=400)
    if counter.delay:
        await asyncio.sleep(counter.delay)
    counter.batches += 1
    counter.events += sum(1 for item in batch if item.get("type") == "trace-create")
    successes = [{"id": item.get("id"), "status": 201} for item in batch]
    return web.json_response({"successes": successes, "errors": []}, status=207)


async def _otlp(request: web.Request) -> web.Response:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    counter: Counter = request.app["counter"]
    if request.content_type != "application/x-protobuf":
        counter.rejected += 1
        return web.Response(status=415, text="expected application/x-protobuf")
    export = ExportTraceServiceRequest()
    try:
        export.ParseFromString(await request.read())
    except Exception as error:
        counter.rejected += 1
        return web.Response(status=400, text=f"invalid protobuf: {error}")
    if counter.delay:
        await asyncio.sleep(counter.delay)
    counter.batches += 1
    for resource_spans in export.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            # A root span (no parent) stands for one LLM call.
            counter.events += sum(1 for span in scope_spans.spans if not span.parent_span_id)
    return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                        content_type="application/x-protobuf")


async def _stats(request: web.Request) -> web.Response:
    counter: Counter = request.app["counter"]
    return web.json_response({"batches": counter.batches, "events": counter.events,
                              "rejected": counter.rejected})


def main() -> None:
    parser = argparse.ArgumentParser(description="Counting loopback logging backend.")
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--kind", choices=["langfuse", "otlp"], required=True,
                        help="which backend API to accept")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds to hold every batch before answering (default: 0)")
    arguments = parser.parse_args()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app["counter"] = Counter(arguments.delay)
    if arguments.kind == "langfuse":
        app.router.add_post("/api/public/ingestion", _langfuse)
    else:
        app.router.add_post("/v1/traces", _otlp)
    app.router.add_get("/_bench/stats", _stats)
    web.run_app(app, host="127.0.0.1", port=arguments.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
