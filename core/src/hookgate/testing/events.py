"""Realistic events for tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from hookgate.events import CallEvent, ErrorInfo, RequestMetadata, Usage


def make_event(status: Literal["success", "failure"] = "success", **fields: Any) -> CallEvent:
    """Build a chat-completion event like the proxy makes, with `fields` overriding any field.

    A success carries a two-message conversation, a response and usage; a failure
    carries the same request and a provider error with HTTP status 502.
    """
    start = datetime.now(timezone.utc) - timedelta(milliseconds=420)
    end = start + timedelta(milliseconds=420)
    values: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "upstream_model": "gpt-4o-mini",
        "provider": "openai",
        "route": "/v1/chat/completions",
        "status": status,
        "start_time": start,
        "end_time": end,
        "latency_ms": 420.0,
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "what llm are you"},
        ],
        "params": {"temperature": 0.2, "max_tokens": 64},
        "metadata": RequestMetadata(
            key_alias="team-a-key", key_hash="3f2a9c0d4b1e8f76", team="team-a",
            user="user-17", tags=("test",), client_ip="127.0.0.1", user_agent="pytest",
        ),
    }
    if status == "success":
        values["usage"] = Usage(prompt_tokens=21, completion_tokens=9, total_tokens=30)
        values["response"] = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(start.timestamp()),
            "model": "gpt-4o-mini",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "A test model."},
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30},
        }
    else:
        values["error"] = ErrorInfo(
            type="ProviderError", message="upstream returned 502 Bad Gateway",
            status_code=502, provider="openai",
        )
    values.update(fields)
    return CallEvent(**values)
