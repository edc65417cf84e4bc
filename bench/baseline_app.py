"""The ceiling for B1: a bare Starlette + uvicorn endpoint that parses the alarm JSON and answers {"code": 0}.

Same route, same request, same reply bytes and the same uvicorn (uvloop, httptools) as the gateway; nothing else.
Usage: python -m bench.baseline_app --port N
"""

from __future__ import annotations

import argparse
import json

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

OK = json.dumps({"code": 0})


async def alarm_v2(request: Request) -> Response:
    if request.method == "POST":
        json.loads(await request.body())
    return Response(OK, media_type="application/json; charset=utf-8")


app = Starlette(routes=[Route("/alarm_v2", alarm_v2, methods=["GET", "POST"])])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args(argv)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
