"""The provider interface: how the proxy talks to one upstream LLM API.

A provider takes an OpenAI-format request body and returns OpenAI-format results,
whatever the upstream speaks. Errors are raised as `ProviderError` (and its
subclasses) with the HTTP status the client should get.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Deployment:
    """One `model_list` entry, resolved: where and how to call the upstream model."""

    model_name: str
    """Name clients request (may be a wildcard pattern such as `openai/*`)."""
    provider: str
    """Provider prefix of `litellm_params.model`: `openai`, `anthropic` or `mock`."""
    upstream_model: str
    """The model name sent upstream (the part after the provider prefix)."""
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 600.0
    """Seconds to wait for the upstream (whole response, or between stream chunks)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Other `litellm_params` keys, passed to the provider as they are."""


class ProviderError(Exception):
    """An upstream call failed; `status_code` is what the client gets."""

    status_code = 502
    error_type = "api_error"

    def __init__(self, message: str, *, status_code: int | None = None,
                 error_type: str | None = None, provider: str | None = None,
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        if error_type is not None:
            self.error_type = error_type
        self.provider = provider
        self.param = param
        self.code = code


class ProviderTimeout(ProviderError):
    """The upstream did not answer within the deployment's timeout."""

    status_code = 504
    error_type = "timeout"


class ProviderUnavailable(ProviderError):
    """The upstream could not be reached (connection refused, reset, DNS)."""

    status_code = 502
    error_type = "api_connection_error"


class Provider(Protocol):
    """What the proxy needs from a provider. One instance serves every deployment of it."""

    name: str

    async def chat(self, deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        """Send one chat completion and return an OpenAI `chat.completion` object.

        `body` is the client's request with `model` already set to the upstream model
        and `stream` absent. Raise ProviderError on failure.
        """
        ...

    def stream_chat(self, deployment: Deployment,
                    body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Stream one chat completion as OpenAI `chat.completion.chunk` objects.

        `body` has `stream: true` (and `stream_options` if the client sent them).
        Errors before the first chunk and in the middle of the stream are raised as
        ProviderError from the iterator.
        """
        ...

    async def embed(self, deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        """Create embeddings and return an OpenAI `list` of `embedding` objects."""
        ...

    async def aclose(self) -> None:
        """Release connections at shutdown."""
        ...
