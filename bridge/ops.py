"""What operators and orchestrators call: health, readiness, metrics, and reloading the config."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bridge import config, config_file, metrics
from bridge.gateway import Gateway
from bridge.ingest import alertmanager
from bridge.schema import ConfigError
from bridge.store import FailingOver, StoreError
from bridge.web import auth

logger = logging.getLogger(__name__)


async def healthy(request: Request) -> Response:
    return PlainTextResponse("OK")


async def ready(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    try:
        async with asyncio.timeout(gateway.settings.store.timeout):
            await gateway.store.ping()
    except FailingOver as exc:
        metrics.STORE_ERRORS.inc()
        return PlainTextResponse(f"store failing over: {exc}", status_code=503)
    except (StoreError, TimeoutError):
        metrics.STORE_ERRORS.inc()
        return PlainTextResponse("store unreachable", status_code=503)
    return PlainTextResponse("OK")


async def scrape(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    try:
        async with asyncio.timeout(gateway.settings.store.timeout):
            metrics.OUTBOX_DEPTH.set(await gateway.store.depth())
    except (StoreError, TimeoutError):
        metrics.STORE_ERRORS.inc()
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


async def reload_endpoint(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    if not gateway.settings.reload_enabled:
        return PlainTextResponse("reloading over HTTP is off (reload_enabled: false); send SIGHUP", status_code=403)
    if _from_a_browser(request):  # no page of ours posts here: a browser that does was sent by another site
        return PlainTextResponse("a reload is not taken from a web page", status_code=403)
    if auth.api_caller(request, gateway.settings.web) is None:
        return PlainTextResponse("a reload needs Authorization: Bearer <a web.api_tokens token>", status_code=401)
    error = await request.app.state.reload()
    return PlainTextResponse(error or "OK", status_code=500 if error else 200)


def _from_a_browser(request: Request) -> bool:
    """Browsers name the page a request comes from (orchestrators and curl do not)."""
    return "origin" in request.headers or request.headers.get("sec-fetch-site", "none") != "none"


async def reload(current: config.Settings, apply: Callable[[config.Settings], None]) -> str:
    """Read the config file again and apply it; an invalid one is refused, the old one stays. The error, or ''."""
    try:
        settings = await asyncio.to_thread(config_file.load, current.path)
        if settings.store != current.store:
            raise ConfigError(f"{current.path}: store: changing the store needs a restart")
        await asyncio.to_thread(alertmanager.check, settings)  # broken rules refuse the reload too
        apply(settings)
    except ConfigError as exc:
        metrics.CONFIG_RELOADS.labels(result="failure").inc()
        metrics.CONFIG_LAST_RELOAD_SUCCESSFUL.set(0)
        logger.error("config reload refused, the running config stays: %s", exc)
        return str(exc)
    metrics.CONFIG_RELOADS.labels(result="success").inc()
    metrics.CONFIG_LAST_RELOAD_SUCCESSFUL.set(1)
    metrics.CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP.set(time.time())
    logger.info("config reloaded from %s", current.path)
    return ""


routes = [
    Route("/-/healthy", healthy, methods=["GET", "HEAD"]),
    Route("/-/ready", ready, methods=["GET", "HEAD"]),
    Route("/metrics", scrape),
    Route("/-/reload", reload_endpoint, methods=["POST", "PUT"]),
]
