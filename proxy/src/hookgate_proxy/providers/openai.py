"""The `openai/` provider: any server that speaks the OpenAI HTTP API.

The request body goes upstream as the client sent it (with `model` set to the
upstream name), so fields hookgate does not know pass through unchanged. Only the
deployment's own key is sent; no client header is forwarded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson

from hookgate_proxy.providers.base import (
    Deployment,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)

__all__ = ["DEFAULT_API_BASE", "OpenAIProvider"]

logger = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.openai.com/v1"
# An upstream error body longer than this is cut in the message passed to the client.
MAX_ERROR_MESSAGE = 2000


class OpenAIProvider:
    """Calls an OpenAI-compatible API through the proxy's shared aiohttp session."""

    name = "openai"

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    def _url(self, deployment: Deployment, path: str) -> str:
        return (deployment.api_base or DEFAULT_API_BASE) + path

    def _headers(self, deployment: Deployment) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if deployment.api_key:
            headers["authorization"] = f"Bearer {deployment.api_key}"
        organization = deployment.extra.get("organization")
        if organization:
            headers["openai-organization"] = str(organization)
        extra_headers = deployment.extra.get("extra_headers")
        if isinstance(extra_headers, Mapping):
            headers.update({str(key): str(value) for key, value in extra_headers.items()})
        return headers

    async def chat(self, deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        return await self._post(deployment, "/chat/completions", body)

    async def embed(self, deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        return await self._post(deployment, "/embeddings", body)

    async def _post(self, deployment: Deployment, path: str,
                    body: dict[str, Any]) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=deployment.timeout)
        try:
            async with self.session.post(self._url(deployment, path), data=orjson.dumps(body),
                                         headers=self._headers(deployment),
                                         timeout=timeout) as response:
                data = await response.read()
                if response.status >= 400:
                    raise self._upstream_error(deployment, response.status, data)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            raise ProviderTimeout(f"upstream timed out after {deployment.timeout:g} s",
                                  provider=self.name) from None
        except aiohttp.ClientError as error:
            raise self._connection_error(deployment, error) from None

        try:
            result = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ProviderError("upstream returned a body that is not JSON",
                                provider=self.name) from None
        if not isinstance(result, dict):
            raise ProviderError("upstream returned JSON that is not an object", provider=self.name)
        return result

    async def stream_chat(self, deployment: Deployment,
                          body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        # `timeout` bounds the connection and each wait for data, not the whole
        # stream, so a long response that keeps arriving is never cut.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=deployment.timeout,
                                        sock_read=deployment.timeout)
        try:
            response = await self.session.post(
                self._url(deployment, "/chat/completions"), data=orjson.dumps(body),
                headers=self._headers(deployment), timeout=timeout)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            raise ProviderTimeout(f"upstream timed out after {deployment.timeout:g} s",
                                  provider=self.name) from None
        except aiohttp.ClientError as error:
            raise self._connection_error(deployment, error) from None

        try:
            if response.status >= 400:
                raise self._upstream_error(deployment, response.status, await response.read())
            finished = False
            async for payload in _server_sent_events(response):
                if payload == b"[DONE]":
                    return
                try:
                    chunk = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    raise ProviderError("upstream sent a stream event that is not JSON",
                                        provider=self.name) from None
                if isinstance(chunk, dict) and "error" in chunk and not chunk.get("choices"):
                    raise self._stream_error(deployment, chunk["error"])
                for choice in chunk.get("choices") or ():
                    finished = finished or bool(choice.get("finish_reason"))
                yield chunk
            if not finished:
                raise ProviderError("upstream closed the stream before it finished",
                                    provider=self.name)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            raise ProviderTimeout(f"upstream timed out: no data for {deployment.timeout:g} s",
                                  provider=self.name) from None
        except aiohttp.ClientError as error:
            raise self._connection_error(deployment, error) from None
        finally:
            response.release()

    async def aclose(self) -> None:
        return None  # The session belongs to the application, which closes it.

    def _upstream_error(self, deployment: Deployment, status: int, data: bytes) -> ProviderError:
        message = data.decode("utf-8", "replace")
        error_type = "api_error" if status >= 500 else "invalid_request_error"
        param = code = None
        try:
            detail = orjson.loads(data).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            detail = None
        if isinstance(detail, dict):
            message = str(detail.get("message") or message)
            error_type = str(detail.get("type") or error_type)
            param = detail.get("param")
            code = detail.get("code")
        elif isinstance(detail, str):
            message = detail
        return ProviderError(
            f"upstream returned {status}: {_scrub(message, deployment)}",
            status_code=status, error_type=error_type, provider=self.name,
            param=param if isinstance(param, str) else None,
            code=str(code) if code is not None else None,
        )

    def _stream_error(self, deployment: Deployment, detail: Any) -> ProviderError:
        if isinstance(detail, dict):
            message = str(detail.get("message") or detail)
            error_type = str(detail.get("type") or "api_error")
        else:
            message, error_type = str(detail), "api_error"
        return ProviderError(f"upstream failed mid-stream: {_scrub(message, deployment)}",
                             error_type=error_type, provider=self.name)

    def _connection_error(self, deployment: Deployment, error: Exception) -> ProviderError:
        base = deployment.api_base or DEFAULT_API_BASE
        return ProviderUnavailable(
            f"cannot reach upstream {base}: {type(error).__name__}: "
            f"{_scrub(str(error), deployment)}", provider=self.name)


async def _server_sent_events(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Yield the `data:` payload of each server-sent event in the response body.

    Reads raw chunks rather than lines because aiohttp's line reader raises
    LineTooLong past a fixed size (twice the read buffer: 512 KiB in aiohttp 3.14),
    and a chunk with large tool-call arguments has no such bound.
    """
    buffer = b""
    async for data in response.content.iter_any():
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            if line.startswith(b"data:"):
                yield line[5:].strip()
    if buffer.startswith(b"data:"):
        yield buffer[5:].strip()


def _scrub(message: str, deployment: Deployment) -> str:
    """Remove the deployment's key from an upstream message and cut it to length."""
    if deployment.api_key and deployment.api_key in message:
        message = message.replace(deployment.api_key, "<api key>")
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[:MAX_ERROR_MESSAGE] + "..."
    return message
