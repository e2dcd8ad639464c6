"""The minimal FastAPI proxy: the Python floor that hookgate is measured against.

It does what any OpenAI-compatible proxy must do and nothing else. It checks the
bearer key, parses the JSON body, looks the model up in the config's `model_list`,
forwards the body upstream and returns the upstream response, passing streams
through chunk by chunk. No logging, no callbacks, no response parsing.

Run as a script: `python bench/minimal_proxy.py --config CONFIG --port PORT
[--client aiohttp|httpx]`. The upstream client sits behind `UpstreamClient` so
the two can be measured against each other; the report records which one ran.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import uvicorn
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """The upstream target of one model name."""

    url: str
    upstream_model: str
    api_key: str


class UpstreamClient(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """Send one request and return the status and the whole body."""
        ...

    def stream(self, url: str, body: bytes, headers: dict[str, str]) -> AsyncIterator[bytes]:
        """Send one request and yield the body as it arrives."""
        ...

    async def close(self) -> None: ...


class AiohttpUpstream:
    def __init__(self) -> None:
        import aiohttp

        # No pool limit: every concurrent request gets its own kept-alive connection.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                              timeout=aiohttp.ClientTimeout(total=600))

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        async with self._session.post(url, data=body, headers=headers) as response:
            return response.status, await response.read()

    async def stream(self, url: str, body: bytes, headers: dict[str, str]) -> AsyncIterator[bytes]:
        async with self._session.post(url, data=body, headers=headers) as response:
            async for data in response.content.iter_any():
                yield data

    async def close(self) -> None:
        await self._session.close()


class HttpxUpstream:
    def __init__(self) -> None:
        import httpx

        self._client = httpx.AsyncClient(timeout=600, limits=httpx.Limits(
            max_connections=None, max_keepalive_connections=None))

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        response = await self._client.post(url, content=body, headers=headers)
        return response.status_code, response.content

    async def stream(self, url: str, body: bytes, headers: dict[str, str]) -> AsyncIterator[bytes]:
        async with self._client.stream("POST", url, content=body, headers=headers) as response:
            async for data in response.aiter_raw():
                yield data

    async def close(self) -> None:
        await self._client.aclose()


CLIENTS = {"aiohttp": AiohttpUpstream, "httpx": HttpxUpstream}


def load_routes(config_path: str) -> tuple[dict[str, Route], str | None]:
    """Read `model_list` and `general_settings.master_key` from a LiteLLM-format config."""
    with open(config_path, encoding="utf-8") as file:
        config = yaml.safe_load(file)
    routes = {}
    for entry in config["model_list"]:
        params = entry["litellm_params"]
        # `openai/<name>` in LiteLLM's format: the part after the prefix goes upstream.
        upstream_model = params["model"].split("/", 1)[-1]
        routes[entry["model_name"]] = Route(
            url=params["api_base"].rstrip("/") + "/chat/completions",
            upstream_model=upstream_model, api_key=params.get("api_key", ""))
    master_key = (config.get("general_settings") or {}).get("master_key")
    return routes, master_key


def create_app(config_path: str, client_name: str) -> FastAPI:
    routes, master_key = load_routes(config_path)
    state: dict[str, UpstreamClient] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["client"] = CLIENTS[client_name]()
        yield
        await state["client"].close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    async def chat_completions(request: Request) -> Response:
        if master_key is not None:
            presented = request.headers.get("authorization", "").removeprefix("Bearer ")
            if presented != master_key and request.headers.get("x-litellm-api-key") != master_key:
                return JSONResponse({"error": {"message": "invalid API key"}}, status_code=401)
        payload = json.loads(await request.body())
        route = routes.get(payload.get("model"))
        if route is None:
            return JSONResponse({"error": {"message": f"model {payload.get('model')!r} not "
                                           f"found; served: {sorted(routes)}"}},
                                status_code=404)
        payload["model"] = route.upstream_model
        body = json.dumps(payload).encode()
        headers = {"Authorization": f"Bearer {route.api_key}",
                   "Content-Type": "application/json"}
        client = state["client"]
        if payload.get("stream"):
            return StreamingResponse(client.stream(route.url, body, headers),
                                     media_type="text/event-stream")
        status, data = await client.post(route.url, body, headers)
        return Response(data, status_code=status, media_type="application/json")

    app.add_api_route("/chat/completions", chat_completions, methods=["POST"])
    app.add_api_route("/v1/chat/completions", chat_completions, methods=["POST"])
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Minimal FastAPI proxy (benchmark floor).")
    parser.add_argument("--config", required=True, help="LiteLLM-format YAML config file")
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="aiohttp",
                        help="upstream HTTP client library (default: aiohttp)")
    parser.add_argument("--loop", default="auto", help="uvicorn --loop value (default: auto)")
    parser.add_argument("--http", default="auto", help="uvicorn --http value (default: auto)")
    arguments = parser.parse_args()
    uvicorn.run(create_app(arguments.config, arguments.client), host="127.0.0.1",
                port=arguments.port, loop=arguments.loop, http=arguments.http,
                access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
