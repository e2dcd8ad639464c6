"""Turn a hookgate call into Langfuse ingestion events: one trace and one generation.

The ingestion API takes a batch of event envelopes, each with an `id`, a
`timestamp`, a `type` and a `body`. Langfuse uses the envelope id to drop an event
it has already processed, so the ids here are derived from the call id: a batch
that is sent again after a lost response creates nothing twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from hookgate import CallEvent

__all__ = ["PARAMETER_TYPES", "call_id_of", "encode_call", "trace_and_generation"]

TRACE_SUFFIX = "-trace"
GENERATION_SUFFIX = "-generation"

PARAMETER_TYPES = (str, int, float, bool)
"""Request parameters of these types go to `modelParameters`; the others (tools,
response formats) to the generation's metadata."""


def _timestamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _output(event: CallEvent) -> Any:
    """Return the assistant message of a one-choice response, else all choices."""
    if event.response is None:
        return None
    choices = event.response.get("choices")
    if not choices:
        return None
    if len(choices) == 1 and isinstance(choices[0], dict):
        return choices[0].get("message", choices[0])
    return choices


def _metadata(event: CallEvent) -> dict[str, Any]:
    request = event.metadata
    metadata: dict[str, Any] = {
        "call_id": event.call_id,
        "route": event.route,
        "provider": event.provider,
        "upstream_model": event.upstream_model,
        "stream": event.stream,
        "status": event.status,
        "latency_ms": event.latency_ms,
        "key_alias": request.key_alias,
        "key_hash": request.key_hash,
        "team": request.team,
        "client_trace_id": request.trace_id,
        "disabled_callbacks": list(event.disabled_callbacks),
    }
    if event.error is not None:
        metadata["error"] = event.error.model_dump()
    return {key: value for key, value in metadata.items() if value not in (None, [])}


def trace_and_generation(event: CallEvent, *, environment: str | None = None,
                         release: str | None = None) -> list[dict[str, Any]]:
    """Build the `trace-create` and `generation-create` envelopes for one call.

    The trace id is the call id. With `log_content: false` the event arrives without
    messages or choices, so input and output are left out.
    """
    timestamp = _timestamp(event.end_time)
    metadata = _metadata(event)
    user_input = list(event.messages) or None
    output = _output(event)

    trace: dict[str, Any] = {
        "id": event.call_id,
        "timestamp": _timestamp(event.start_time),
        "name": event.call_type,
        "userId": event.metadata.user,
        "input": user_input,
        "output": output,
        "metadata": metadata,
        "tags": list(event.metadata.tags),
        "release": release,
        "environment": environment,
    }

    parameters = {key: value for key, value in event.params.items()
                  if isinstance(value, PARAMETER_TYPES)}
    other_parameters = {key: value for key, value in event.params.items()
                        if key not in parameters}
    generation: dict[str, Any] = {
        "id": event.call_id + GENERATION_SUFFIX,
        "traceId": event.call_id,
        "name": event.call_type,
        "startTime": _timestamp(event.start_time),
        "endTime": _timestamp(event.end_time),
        "completionStartTime": (_timestamp(event.first_token_time)
                                if event.first_token_time else None),
        "model": event.upstream_model or event.model,
        "modelParameters": parameters or None,
        "input": user_input,
        "output": output,
        "level": "DEFAULT" if event.status == "success" else "ERROR",
        "statusMessage": event.error.message if event.error is not None else None,
        "metadata": {**metadata, "request_parameters": other_parameters}
        if other_parameters else metadata,
        "environment": environment,
    }
    if event.error is not None and event.error.cancelled:
        generation["level"] = "WARNING"
    if event.usage is not None:
        counts = {
            "input": event.usage.prompt_tokens,
            "output": event.usage.completion_tokens,
            "total": event.usage.total_tokens,
        }
        generation["usage"] = {**counts, "unit": "TOKENS"}
        generation["usageDetails"] = counts

    return [
        {
            "id": event.call_id + TRACE_SUFFIX,
            "timestamp": timestamp,
            "type": "trace-create",
            "body": _without_none(trace),
        },
        {
            "id": event.call_id + GENERATION_SUFFIX,
            "timestamp": timestamp,
            "type": "generation-create",
            "body": _without_none(generation),
        },
    ]


def _without_none(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


def encode_call(event: CallEvent, *, environment: str | None = None,
                release: str | None = None, max_bytes: int | None = None) -> tuple[bytes, bool]:
    """Encode one call as two comma-separated JSON envelopes, one batch entry.

    Keeping a trace and its generation in one entry means a split batch never sends
    a generation without its trace. An entry over `max_bytes` is encoded again
    without input and output, with `truncated` in the metadata. If it is still too
    large, it is returned as it is, and the sender drops and counts it. Returns the
    bytes and whether content was removed.
    """
    data = _encode(event, environment, release, None)
    if max_bytes is None or len(data) <= max_bytes:
        return data, False
    note = (f"input and output removed: the call encoded to {len(data)} bytes, the limit "
            f"is {max_bytes}")
    return _encode(event.without_content(), environment, release, note), True


def _encode(event: CallEvent, environment: str | None, release: str | None,
            truncated: str | None) -> bytes:
    envelopes = trace_and_generation(event, environment=environment, release=release)
    if truncated is not None:
        for envelope in envelopes:
            envelope["body"]["metadata"] = {**envelope["body"]["metadata"],
                                            "truncated": truncated}
    return b",".join(_dumps(envelope) for envelope in envelopes)


def _dumps(value: Any) -> bytes:
    # orjson: about ten times faster than json.dumps for these payloads, which
    # matters because the encoding runs in the proxy's process for every call.
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)


def call_id_of(envelope_id: str) -> str:
    """Return the call id that an envelope id built here was derived from."""
    for suffix in (TRACE_SUFFIX, GENERATION_SUFFIX):
        if envelope_id.endswith(suffix):
            return envelope_id[: -len(suffix)]
    return envelope_id
