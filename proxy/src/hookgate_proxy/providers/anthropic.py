"""The `anthropic/` provider: chat completions served by the Anthropic Messages API.

The translation rules live in `anthropic_translate` (requests, responses and errors) and in
`anthropic_stream` (server-sent events). This module only makes the HTTP calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from hookgate_proxy.providers.anthropic_stream import SSEParser, StreamTranslator
from hookgate_proxy.providers.anthropic_translate import (
    DEFAULT_MAX_TOKENS,
    PROVIDER,
    error_from_response,
    to_anthropic_request,
    to_openai_response,
)
from hookgate_proxy.providers.base import (
    Deployment,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)

logger = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
API_KEY_ENV = "ANTHROPIC_API_KEY"


class AnthropicProvider:
    """Serve chat completions from the Anthropic Messages API.

    One provider serves every `anthropic/` deployment. `session` belongs to the caller, who
    closes it. Each deployment sets:
    - `api_base`: default https://api.anthropic.com. A base ending in `/v1` or `/v1/messages`
      is accepted too.
    - `api_key`: default is the ANTHROPIC_API_KEY environment variable.
    - `timeout`: seconds for the whole response, or between two pieces of a stream.
    - `max_tokens` in the other `litellm_params`: used for requests that set none.
    - `api_version` in the other `litellm_params`: the `anthropic-version` header, default
      2023-06-01.
    - `extra_headers` in the other `litellm_params`: more headers to send, such as
      `anthropic-beta`. They cannot replace `x-api-key`, `anthropic-version` or
      `content-type`.
    """

    def __init__(self, session: aiohttp.ClientSession, name: str = PROVIDER) -> None:
        self.name = name
        self._session = session

    async def chat(self, deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        """Send one chat completion and return an OpenAI `chat.completion` object."""
        request = self._build_request(deployment, body, stream=False)
        created = int(time.time())
        timeout = aiohttp.ClientTimeout(total=deployment.timeout)

        try:
            async with self._session.post(**request, timeout=timeout) as response:
                payload = await response.read()
                if response.status >= 300:
                    raise self._upstream_error(deployment, response, payload)
        except aiohttp.ClientError as error:
            raise self._transport_error(deployment, error) from error
        except asyncio.TimeoutError as error:
            raise self._timeout_error(deployment) from error

        try:
            message = json.loads(payload)
        except ValueError:
            raise ProviderError("the Anthropic API returned a response that is not JSON",
                                status_code=502, provider=PROVIDER) from None
        return to_openai_response(message, created=created, model=body.get("model"))

    async def stream_chat(self, deployment: Deployment,
                          body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Stream one chat completion as OpenAI `chat.completion.chunk` objects."""
        request = self._build_request(deployment, body, stream=True)
        stream_options = body.get("stream_options") or {}
        translator = StreamTranslator(created=int(time.time()), model=str(body.get("model")),
                                      include_usage=bool(stream_options.get("include_usage")))
        parser = SSEParser()
        # `sock_read` bounds the wait for each piece of the stream rather than the whole
        # response, because a long response may take longer than the timeout in total.
        # `connect` also bounds the wait for a free connection of the session's pool.
        timeout = aiohttp.ClientTimeout(total=None, connect=deployment.timeout,
                                        sock_read=deployment.timeout)

        try:
            async with self._session.post(**request, timeout=timeout) as response:
                if response.status >= 300:
                    raise self._upstream_error(deployment, response, await response.read())
                async for piece in response.content.iter_any():
                    for event in parser.feed(piece):
                        for chunk in translator.feed(event):
                            yield chunk
                        if translator.finished:
                            return
                for event in parser.close():
                    for chunk in translator.feed(event):
                        yield chunk
        except aiohttp.ClientError as error:
            raise self._transport_error(deployment, error) from error
        except asyncio.TimeoutError as error:
            raise self._timeout_error(deployment) from error

        if not translator.finished:
            logger.warning("anthropic deployment %s: stream ended before message_stop",
                           deployment.model_name)
            raise ProviderUnavailable("the Anthropic API closed the stream before message_stop",
                                      provider=PROVIDER)

    async def embed(self, deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        """Raise ProviderError (400): the Anthropic API has no embeddings endpoint."""
        raise ProviderError(f"model {deployment.model_name!r} is served by the anthropic "
                            "provider, which has no embeddings API", status_code=400,
                            error_type="invalid_request_error", provider=PROVIDER, param="model")

    async def aclose(self) -> None:
        """Do nothing, because the only resource the provider uses is the caller's session."""

    def _build_request(self, deployment: Deployment, body: dict[str, Any], *,
                       stream: bool) -> dict[str, Any]:
        default_max_tokens = deployment.extra.get("max_tokens", DEFAULT_MAX_TOKENS)
        payload, ignored = to_anthropic_request(body, default_max_tokens=default_max_tokens,
                                                stream=stream)
        if ignored:
            logger.debug("anthropic deployment %s: dropped request fields without an Anthropic "
                         "equivalent: %s", deployment.model_name, ", ".join(ignored))

        api_key = deployment.api_key or os.environ.get(API_KEY_ENV)
        if not api_key:
            raise ProviderError(f"no API key for anthropic deployment {deployment.model_name!r}: "
                                f"set litellm_params.api_key or {API_KEY_ENV}", status_code=500,
                                error_type="configuration_error", provider=PROVIDER)
        headers = {str(name).lower(): str(value)
                   for name, value in (deployment.extra.get("extra_headers") or {}).items()}
        headers.update({
            "x-api-key": api_key,
            "anthropic-version": str(deployment.extra.get("api_version") or API_VERSION),
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
        })
        return {
            "url": messages_url(deployment.api_base),
            "data": json.dumps(payload, ensure_ascii=False).encode(),
            "headers": headers,
        }

    def _upstream_error(self, deployment: Deployment, response: aiohttp.ClientResponse,
                        payload: bytes) -> ProviderError:
        request_id = response.headers.get("request-id")
        error = error_from_response(response.status, payload, request_id=request_id)
        logger.warning("anthropic deployment %s: HTTP %d %s (request-id %s)",
                       deployment.model_name, response.status, error.error_type, request_id)
        return error

    def _transport_error(self, deployment: Deployment, error: aiohttp.ClientError) -> ProviderError:
        # aiohttp reports a read timeout as ServerTimeoutError, which is both a ClientError
        # and an asyncio.TimeoutError; it is a timeout for the client.
        if isinstance(error, asyncio.TimeoutError):
            return self._timeout_error(deployment)
        logger.warning("anthropic deployment %s: connection failed: %s",
                       deployment.model_name, error)
        return ProviderUnavailable(f"could not reach the Anthropic API: {error}",
                                   provider=PROVIDER)

    def _timeout_error(self, deployment: Deployment) -> ProviderTimeout:
        logger.warning("anthropic deployment %s: no response within %s s",
                       deployment.model_name, deployment.timeout)
        return ProviderTimeout(f"the Anthropic API did not respond within "
                               f"{deployment.timeout} s", provider=PROVIDER)


def messages_url(api_base: str | None) -> str:
    """Return the Messages endpoint URL for an `api_base` (None means the public API)."""
    base = (api_base or DEFAULT_API_BASE).rstrip("/")
    if base.endswith("/v1/messages"):
        return base
    if base.endswith("/v1"):
        return f"{base}/messages"
    return f"{base}/v1/messages"
