"""The LLM routes: chat completions and embeddings.

Each handler authenticates, then opens a `Call`. From there every outcome, including
an invalid body or an unknown model, ends in exactly one event. The event is submitted
after the response is sent, by a Starlette background task or at the end of the stream.
The body is parsed once with orjson and not validated beyond what routing needs:
unknown fields go to the provider unchanged.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from hookgate_proxy.calls import CREDENTIAL_FIELDS, Call, CallType
from hookgate_proxy.errors import ProxyError, error_response
from hookgate_proxy.providers.base import ProviderError
from hookgate_proxy.streaming import ChatStream

if TYPE_CHECKING:
    from hookgate_proxy.app import HookgateState

__all__ = ["chat_completions", "embeddings"]

logger = logging.getLogger(__name__)


async def chat_completions(request: Request) -> Response:
    """Serve `POST /chat/completions` and `/v1/chat/completions`."""
    return await _handle(request, "chat_completion")


async def embeddings(request: Request) -> Response:
    """Serve `POST /embeddings` and `/v1/embeddings`."""
    return await _handle(request, "embedding")


async def _handle(request: Request, call_type: CallType) -> Response:
    started = time.perf_counter()
    state: HookgateState = request.app.state.hookgate

    try:
        key_hash = state.auth.check(request.headers)
    except ProxyError as error:
        return error_response(error)

    call = Call(request, state.dispatcher, state.receivers, key_hash, call_type, started)
    try:
        body = await _read_body(request, call, call_type)
        deployment = state.router.resolve(call.model)
        if deployment is None:
            raise ProxyError(
                f"model {call.model!r} not found; this proxy serves: "
                f"{', '.join(state.router.names) or 'no models'}",
                status_code=404, param="model", code="model_not_found", kind="ModelNotFound")
        call.deployment = deployment
        provider = state.providers[deployment.provider]
        upstream_body = {**body, "model": deployment.upstream_model}

        if call_type == "embedding":
            result = await _timed(call, provider.embed(deployment, upstream_body))
        elif body.get("stream") is True:
            return await _start_stream(call, provider, upstream_body)
        else:
            upstream_body.pop("stream", None)
            upstream_body.pop("stream_options", None)
            # NOTE: uvicorn does not cancel a handler whose client disconnected, so a
            # non-streaming call still waits for the upstream and is logged as a
            # success; only streams detect the disconnect.
            result = await _timed(call, provider.chat(deployment, upstream_body))
    except (ProxyError, ProviderError) as error:
        return error_response(error, call.headers(), background=BackgroundTask(_fail, call, error))
    except Exception as error:
        # A bug in hookgate or a provider: respond with 500 and still log the call once.
        logger.exception("call %s: unexpected error", call.call_id)
        internal = ProxyError(f"internal error: {type(error).__name__}", status_code=500,
                              error_type="internal_error", kind=type(error).__name__)
        return error_response(internal, call.headers(),
                              background=BackgroundTask(_fail, call, internal))

    return Response(orjson.dumps(result), media_type="application/json",
                    headers=call.headers(), background=BackgroundTask(_succeed, call, result))


# Background tasks are coroutines so that Starlette runs them on the event loop:
# `Dispatcher.submit` must be called from the loop, and a thread hop per request
# would cost more than the submit itself.


async def _succeed(call: Call, result: dict[str, Any]) -> None:
    call.succeed(result)


async def _fail(call: Call, error: ProxyError | ProviderError) -> None:
    call.fail(error)


async def _timed(call: Call, awaitable: Any) -> Any:
    upstream_started = time.perf_counter()
    try:
        return await awaitable
    finally:
        call.upstream_seconds += time.perf_counter() - upstream_started


async def _read_body(request: Request, call: Call, call_type: str) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ProxyError(f"request body is not valid JSON: {error}", kind="InvalidJSON") from None
    if not isinstance(body, dict):
        raise ProxyError("request body must be a JSON object", kind="InvalidRequest")

    for field in CREDENTIAL_FIELDS.intersection(body):
        del body[field]
    call.body = body

    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ProxyError("missing required field 'model' (a non-empty string)", param="model",
                         code="missing_required_parameter")
    call.model = model
    call.stream = body.get("stream") is True

    content_field = "input" if call_type == "embedding" else "messages"
    content = body.get(content_field)
    if call_type == "embedding":
        valid = isinstance(content, (str, list)) and bool(content)
        expected = "a string or a non-empty list"
    else:
        valid = isinstance(content, list) and bool(content)
        expected = "a non-empty list of messages"
    if not valid:
        raise ProxyError(f"missing required field {content_field!r} ({expected})",
                         param=content_field, code="missing_required_parameter")
    return body


async def _start_stream(call: Call, provider: Any, body: dict[str, Any]) -> Response:
    options = body.get("stream_options")
    client_usage = isinstance(options, dict) and options.get("include_usage") is True
    # Ask for usage even when the client did not, so that the event has token counts;
    # ChatStream removes it from what such a client receives.
    body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                              "include_usage": True}

    chunks = provider.stream_chat(call.deployment, body)
    upstream_started = time.perf_counter()
    try:
        first = await chunks.__anext__()
    except StopAsyncIteration:
        first = None
    except BaseException:
        await _close(chunks)
        raise
    finally:
        call.upstream_seconds += time.perf_counter() - upstream_started

    return ChatStream(call, chunks, first, call.headers(),  # type: ignore[return-value]
                      client_usage=client_usage)


async def _close(chunks: Any) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()
