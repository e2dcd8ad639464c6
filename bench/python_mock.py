"""The fallback mock provider: the same fixed bodies as the nginx mock, from aiohttp.

Run as a script: `python bench/python_mock.py --port PORT`. Used only when nginx is
missing and cannot be installed (the smoke test on a machine without it).
"""

from __future__ import annotations

import argparse

from aiohttp import web
from mock_provider import completion_body, stream_body

COMPLETION = completion_body()
STREAM = stream_body()


async def _completion(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=COMPLETION, content_type="application/json")


async def _stream(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=STREAM, content_type="text/event-stream",
                        headers={"Cache-Control": "no-cache"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    arguments = parser.parse_args()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _completion)
    app.router.add_post("/chat/completions", _completion)
    app.router.add_post("/stream/v1/chat/completions", _stream)
    web.run_app(app, host="127.0.0.1", port=arguments.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
