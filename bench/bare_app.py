"""The ceiling: a bare Starlette endpoint (POST, read the body, 204) under the uvicorn settings
eventhub runs with (eventhub/server.py: uvloop, httptools, no access log, backlog 4096), but
with uvicorn's own protocol, so that the cost of eventhub's connection limits shows in its ratio.

Whatever eventhub does beyond this (parse, validate, authorize, commit) is what the ingest
benchmark's ratio measures.

    .venv/bin/python bench/bare_app.py --port 8099
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def post_events(request: Request) -> Response:
    await request.body()
    return Response(status_code=204)


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[
        Route("/events", post_events, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    # eventhub/server.py's options, but on uvicorn's stock httptools protocol: the ceiling is
    # the machine's, so eventhub's ratio to it includes the cost of its connection limits
    # (api/_protocol.py).
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=30,
        backlog=4096,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
