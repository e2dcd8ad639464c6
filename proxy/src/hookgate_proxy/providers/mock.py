"""The built-in mock provider: deterministic responses with no network.

The upstream model name chooses the behaviour, so that every path of the proxy can
be tried offline:

- `error-<status>` (e.g. `mock/error-503`): fails with that HTTP status before any
  output;
- `timeout`: fails as an upstream timeout (504);
- `stream-error`: streams two chunks, then fails (a non-streaming call fails at once
  with 502);
- anything else responds "You said: <last user message>" (or the request's
  `mock_response` field, as the LiteLLM mock does), streamed one word per chunk.

Token counts are word counts.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from hookgate_proxy.providers.base import Deployment, ProviderError, ProviderTimeout

__all__ = ["MockProvider"]

_ERROR_MODEL = re.compile(r"^error-(\d{3})$")
EMBEDDING_SIZE = 8


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


class MockProvider:
    """Builds responses from the request itself, as the module docstring describes."""

    name = "mock"

    def _check(self, deployment: Deployment) -> None:
        model = deployment.upstream_model
        match = _ERROR_MODEL.match(model)
        if match:
            status = int(match.group(1))
            raise ProviderError(f"mock provider: {model} fails with status {status}",
                                status_code=status, provider=self.name,
                                error_type="api_error" if status >= 500
                                else "invalid_request_error")
        if model == "timeout":
            raise ProviderTimeout("mock provider: simulated upstream timeout", provider=self.name)

    def _reply(self, body: dict[str, Any]) -> str:
        if isinstance(body.get("mock_response"), str):
            return str(body["mock_response"])
        messages = [message for message in body.get("messages", []) if isinstance(message, dict)]
        users = [message for message in messages if message.get("role") == "user"]
        return "You said: " + (_text(users[-1].get("content")) if users else "")

    def _usage(self, body: dict[str, Any], reply: str) -> dict[str, int]:
        prompt = sum(len(_text(message.get("content")).split())
                     for message in body.get("messages", []) if isinstance(message, dict))
        completion = len(reply.split())
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    async def chat(self, deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        self._check(deployment)
        if deployment.upstream_model == "stream-error":
            raise ProviderError("mock provider: stream-error fails", provider=self.name)
        reply = self._reply(body)
        return {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": deployment.upstream_model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": reply}}],
            "usage": self._usage(body, reply),
        }

    async def stream_chat(self, deployment: Deployment,
                          body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        self._check(deployment)
        reply = self._reply(body)
        base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": deployment.upstream_model}
        words = reply.split(" ")
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        deltas += [{"content": word if index == 0 else " " + word}
                   for index, word in enumerate(words)]

        for index, delta in enumerate(deltas):
            if deployment.upstream_model == "stream-error" and index == 2:
                raise ProviderError("mock provider: stream-error breaks the stream",
                                    provider=self.name)
            yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        if (body.get("stream_options") or {}).get("include_usage"):
            yield {**base, "choices": [], "usage": self._usage(body, reply)}

    async def embed(self, deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        self._check(deployment)
        inputs = body.get("input", [])
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        data = []
        for index, text in enumerate(inputs):
            digest = hashlib.sha256(str(text).encode()).digest()
            vector = [round(byte / 255, 4) for byte in digest[:EMBEDDING_SIZE]]
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(str(text).split()) for text in inputs)
        return {"object": "list", "model": deployment.upstream_model, "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    async def aclose(self) -> None:
        return None
