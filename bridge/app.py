"""The Starlette application: routes, and one store and one delivery per process, made in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bridge.codes import Code
from bridge.config import Settings
from bridge.dispatch import DryRun
from bridge.gateway import Gateway
from bridge.ingest import native
from bridge.render import Renderer
from bridge.store import open_store

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class AnyMethod:
    """An ASGI route endpoint that every HTTP method reaches (a plain function would get 405 for the others)."""

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._handler(Request(scope, receive))
        await response(scope, receive, send)


async def alarm_v2(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    if request.method != "POST":
        return native.reply(Code.BAD_METHOD, f"got {request.method}")
    limit = gateway.settings.native.max_body_bytes
    body = await native.read_body(request, limit)
    if body is None:
        return native.reply(Code.BAD_PARAMS, f"body over {limit} bytes")
    parsed = native.parse(body, gateway.settings.native)
    if isinstance(parsed, native.Rejection):
        return native.reply(parsed.code, parsed.detail)
    result = await gateway.accept(parsed)
    return native.reply(result.code, result.detail)


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = open_store(settings.store)
        app.state.gateway = Gateway(settings, store, DryRun(Renderer(TEMPLATES)))
        try:
            yield
        finally:
            await store.close()

    routes = [Route(path, AnyMethod(alarm_v2)) for path in ("/alarm_v2", "/alarm_v2/")]
    return Starlette(routes=routes, lifespan=lifespan)
