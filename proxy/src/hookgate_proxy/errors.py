"""Errors as the OpenAI API returns them: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response

from hookgate_proxy.providers.base import ProviderError

__all__ = ["ProxyError", "error_body", "error_response"]


class ProxyError(Exception):
    """A request failed in hookgate itself (before or instead of a provider call)."""

    def __init__(self, message: str, *, status_code: int = 400,
                 error_type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, kind: str = "InvalidRequest") -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.error_type = error_type
        self.param = param
        self.code = code
        self.kind = kind
        """The error kind recorded in the event (`ErrorInfo.type`)."""


def error_body(error: ProxyError | ProviderError) -> dict[str, Any]:
    return {"error": {"message": error.message, "type": error.error_type,
                      "param": error.param, "code": error.code}}


def error_response(error: ProxyError | ProviderError, headers: dict[str, str] | None = None,
                   background: BackgroundTask | None = None) -> Response:
    return Response(orjson.dumps(error_body(error)), status_code=error.status_code,
                    media_type="application/json", headers=headers, background=background)
