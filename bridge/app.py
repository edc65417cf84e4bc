"""The Starlette application: routes, and one store and one delivery per process, made in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge import metrics, ops, web
from bridge.channels import Sender, dingtalk, email, feishu, wecom
from bridge.codes import Code
from bridge.config import Settings
from bridge.dispatch import Dispatcher, DryRun
from bridge.gateway import Gateway
from bridge.ingest import alertmanager, native
from bridge.logs import RequestIdMiddleware, with_headers
from bridge.model import Channel
from bridge.mutes import Mutes
from bridge.outbox import Outbox
from bridge.server import Drained
from bridge.store import Store, StoreError, StoreSettings, open_store

logger = logging.getLogger(__name__)


class AnyMethod:
    """An ASGI route endpoint that every HTTP method reaches (a plain function would get 405 for the others)."""

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._handler(Request(scope, receive))
        await response(scope, receive, send)


class SecurityHeaders:
    """nosniff on every reply (a JSON reply is never run as a script), and HSTS on those that came over https."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = [(b"x-content-type-options", b"nosniff")]
        if scope.get("scheme") == "https":  # set by uvicorn from a trusted proxy's X-Forwarded-Proto, or TLS
            added.append((b"strict-transport-security", HSTS))
        await self.app(scope, receive, with_headers(send, added))


HSTS = b"max-age=31536000"  # a year; no includeSubDomains: the gateway does not speak for its domain's other hosts


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
        metrics.ALARMS_RECEIVED.labels(source="native", code=str(int(parsed.code))).inc()
        return native.reply(parsed.code, parsed.detail)
    result = await gateway.accept(parsed)
    metrics.ALARMS_RECEIVED.labels(source="native", code=str(int(result.code))).inc()
    return native.reply(result.code, result.detail)


async def client_gone(request: Request, exc: Exception) -> Response:
    """A client that went away before its body was read: nobody reads the answer, and nothing is logged as failed."""
    return Response(status_code=400)


async def _warn_of_risks(store: Store, settings: StoreSettings) -> None:
    """Log what in the store's setup can lose accepted alarms (a Redis that may evict them, say), at start."""
    try:
        async with asyncio.timeout(settings.timeout):
            risks = await store.risks()
    except (StoreError, TimeoutError) as exc:
        logger.warning("store: could not check its setup: %s", exc or "timed out")
        return
    for risk in risks:
        logger.warning("store: %s", risk)


def senders(
    settings: Settings, session: aiohttp.ClientSession, connections: email.Connections, store: Store
) -> dict[Channel, Sender]:
    if settings.delivery.dry_run:
        return dict.fromkeys(Channel, DryRun())
    return {
        Channel.DINGTALK: dingtalk.Sender(settings.dingtalk, settings.delivery, session, store),
        Channel.WECOM: wecom.Sender(settings.wecom, settings.delivery, session, store),
        Channel.EMAIL: email.Sender(settings.email, settings.delivery, connections),
        Channel.FEISHU: feishu.Sender(settings.feishu, settings.delivery, session, store),
    }


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = open_store(settings.store)
        tls = ssl.create_default_context()
        if settings.delivery.ca_file:
            tls.load_verify_locations(settings.delivery.ca_file)
        connections = email.Connections()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls, limit=200)) as session:

            def dispatcher(current: Settings) -> Dispatcher:
                return Dispatcher(senders(current, session, connections, store), current.delivery.deadline)

            outbox = Outbox(store, dispatcher(settings), settings.renderer, settings.delivery, settings.store.timeout)

            mutes = Mutes(store)

            def apply(new: Settings) -> None:
                outbox.reconfigure(dispatcher(new), new.renderer, new.delivery)
                app.state.gateway = Gateway(new, store, outbox, mutes)

            app.state.gateway = Gateway(settings, store, outbox, mutes)
            app.state.http = session  # the confirmation page's calls to Alertmanager
            checked = asyncio.create_task(_warn_of_risks(store, settings.store))
            app.state.reload = lambda: ops.reload(app.state.gateway.settings, apply)
            metrics.CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP.set(time.time())
            worker = asyncio.create_task(outbox.run())
            with contextlib.suppress(ValueError, RuntimeError):  # signals reach only the main thread's loop
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, lambda: spawn(app.state.reload()))
            try:
                yield
            finally:
                checked.cancel()
                await outbox.stop()
                await worker
                await connections.close()
                await store.close()

    background: set[asyncio.Task[str]] = set()

    def spawn(work: Coroutine[Any, Any, str]) -> None:
        task = asyncio.create_task(work)
        background.add(task)
        task.add_done_callback(background.discard)

    routes = [Route(path, AnyMethod(alarm_v2)) for path in ("/alarm_v2", "/alarm_v2/")] + ops.routes
    routes += alertmanager.routes(settings)
    routes += web.routes()
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(RequestIdMiddleware), Middleware(SecurityHeaders), Middleware(Drained)],
        exception_handlers={ClientDisconnect: client_gone},
    )
