"""POST /alertmanager[/{ruleset}]: Alertmanager webhook payloads (version 4) -> alarms for the routed alert groups.

Replies: 2xx once every alarm is accepted into delivery (or was already: Alertmanager retries and HA peers send
the same notification again); 5xx when the bridge cannot accept it now (store down, no such group), so that
Alertmanager retries; 4xx only for what a retry cannot fix (credentials, the payload, the URL).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
from collections.abc import Mapping, Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute

from bridge import metrics, rules
from bridge.codes import Code
from bridge.config import AlertmanagerSettings, Settings
from bridge.gateway import Gateway, Result
from bridge.ingest import alerts
from bridge.ingest.native import read_body
from bridge.ingest.payload import parse
from bridge.model import Alarm
from bridge.schema import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_RULESET = "default"
PARALLEL = 16  # alarms of one notification accepted at a time


class Receiver:
    """The webhook endpoint; it keeps the rulesets of the settings in force, read again when they are reloaded."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._rulesets = check(settings)
        am = settings.alertmanager
        if am.auth_disabled:
            logger.warning("alertmanager: authentication is disabled (alertmanager.auth_disabled): anyone who can "
                           "reach /alertmanager can post alerts")  # fmt: skip
        elif self._rulesets and not (am.bearer_token or am.username):
            logger.warning("alertmanager: no credentials configured (alertmanager.bearer_token, or username and "
                           "password): /alertmanager answers 401 to every request")  # fmt: skip

    async def rulesets(self, settings: Settings) -> dict[str, rules.Ruleset]:
        if settings is not self._settings:
            try:
                self._rulesets = await asyncio.to_thread(check, settings)
            except ConfigError as exc:
                logger.error("alertmanager: the rules stay as they were: %s", exc)
            self._settings = settings
        return self._rulesets

    async def handle(self, request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        settings = gateway.settings.alertmanager
        if (denied := _authorize(request, settings)) is not None:
            return _reject(denied, 401, {"WWW-Authenticate": 'Bearer realm="alarm-bridge"'})
        body = await read_body(request, settings.max_body_bytes)
        if body is None:
            return _reject(f"the body is over {settings.max_body_bytes} bytes (set max_alerts in Alertmanager)", 413)
        notification = parse(body)
        if isinstance(notification, str):
            return _reject(notification, 400)
        name = request.path_params.get("ruleset", DEFAULT_RULESET)
        ruleset = (await self.rulesets(gateway.settings)).get(name)
        if ruleset is None:
            return _reject(f"no rules file {name}.yaml in the rules folder", 404)
        produced = alerts.alarms(notification, ruleset, settings)
        limit = asyncio.Semaphore(PARALLEL)

        async def accept(alarm: Alarm) -> Result:
            async with limit:
                stale, marks = alerts.episodes(alarm)
                result = await gateway.accept(alarm, wait=0, stale=stale, marks=marks)  # delivery goes on behind
            metrics.ALARMS_RECEIVED.labels(source="alertmanager", code=str(int(result.code))).inc()
            return result

        results = await asyncio.gather(*(accept(a) for a in produced))
        if any(r.code is Code.NO_GROUP for r in results):  # answered 500: the retry must not deliver the rest again
            await asyncio.gather(*(gateway.renew(a) for a, r in zip(produced, results, strict=True)
                                   if r.code in (Code.OK, Code.DUPLICATE)))  # fmt: skip
        return _reply(produced, results)


def _reject(message: str, status: int, headers: Mapping[str, str] | None = None) -> Response:
    metrics.ALARMS_RECEIVED.labels(source="alertmanager", code=str(status)).inc()
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _reply(produced: Sequence[Alarm], results: Sequence[Result]) -> Response:
    codes = [r.code for r in results]
    if Code.STORE_DOWN in codes:
        return JSONResponse({"error": "the store is unavailable; retry"}, status_code=503)
    missing = sorted({f"{a.id}/{a.level} ({a.extra['route']})" for a, r in zip(produced, results, strict=True)
                      if r.code is Code.NO_GROUP})  # fmt: skip
    if missing:
        logger.error("alertmanager: no alert group for %s; answering 500 so that Alertmanager retries until it "
                     "exists", ", ".join(missing))  # fmt: skip
        return JSONResponse({"error": f"no alert group {', '.join(missing)[:300]}; retry"}, status_code=500)
    duplicates = codes.count(Code.DUPLICATE)
    return JSONResponse({"accepted": len(codes) - duplicates, "duplicates": duplicates})


def _authorize(request: Request, settings: AlertmanagerSettings) -> str | None:
    """Why the request is refused, or None; secrets are compared in constant time (as digests: any length)."""
    if settings.auth_disabled:
        return None
    if not (settings.bearer_token or settings.username):
        return "no credentials are configured on alarm-bridge (alertmanager.bearer_token or username/password)"
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and settings.bearer_token:
        if _same(value, settings.bearer_token):
            return None
    elif scheme.lower() == "basic" and settings.username:
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, sep, password = "", "", ""
        if sep and _same(user, settings.username) & _same(password, settings.password):
            return None
    elif not scheme:
        return "credentials required (bearer token or basic auth, as http_config sends them)"
    return "wrong credentials"


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest())


def check(settings: Settings) -> dict[str, rules.Ruleset]:
    """The rulesets, and the display time zone checked; ConfigError names what is wrong."""
    alerts.time_zone(settings.alertmanager.timezone, f"{settings.path}: alertmanager.timezone")
    return rules.load(settings.alertmanager.rules)


def routes(settings: Settings) -> list[HttpRoute]:
    """The webhook's routes; the rules are read now, and ConfigError stops the start if they are broken."""
    receiver = Receiver(settings)
    return [HttpRoute(path, receiver.handle, methods=["POST"]) for path in ("/alertmanager", "/alertmanager/{ruleset}")]
