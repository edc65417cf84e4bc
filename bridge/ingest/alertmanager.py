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
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute

from bridge import metrics, rules
from bridge.codes import Code
from bridge.config import AlertmanagerSettings, Settings
from bridge.gateway import Gateway, Result
from bridge.ingest import payload
from bridge.ingest.native import read_body
from bridge.ingest.payload import Alert, Notification, parse
from bridge.model import ALERT_LEVELS, Alarm
from bridge.schema import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_RULESET = "default"
PARALLEL = 16  # alarms of one notification accepted at a time
_SPLIT = re.compile(r"[\s,;]+")


# -- alarms --


def alarms(notification: Notification, ruleset: rules.Ruleset, settings: AlertmanagerSettings) -> list[Alarm]:
    """The alarms a notification becomes: per route and target, one with all its alerts (or one per alert)."""
    buckets: dict[tuple[object, ...], tuple[rules.Route, list[Alert]]] = {}
    for n, alert in enumerate(notification.alerts):
        for route in ruleset.match(alert.labels):
            target = tuple(rules.resolve(route.target.get(k, ()), [_pair(alert)]) for k in rules.TARGET_KEYS)
            key = (id(route), *target, n if settings.per_alert else -1)
            buckets.setdefault(key, (route, []))[1].append(alert)
    zone = ZoneInfo(settings.timezone)
    return [_alarm(notification, ruleset, route, alerts, zone) for route, alerts in buckets.values()]


def _pair(alert: Alert) -> tuple[Mapping[str, str], Mapping[str, str]]:
    return alert.labels, alert.annotations


def _alarm(
    notification: Notification, ruleset: rules.Ruleset, route: rules.Route, alerts: list[Alert], zone: ZoneInfo
) -> Alarm:
    def field(name: str, among: Sequence[Alert]) -> str:
        return rules.resolve(route.fields.get(name, ()), [_pair(a) for a in among])

    rank = {level: i for i, level in enumerate(ALERT_LEVELS)}
    levels = [route.level(field("severity", [a])) for a in alerts]
    order = sorted(range(len(alerts)), key=lambda i: (alerts[i].status != "firing", rank[levels[i]]))
    firing = [i for i in order if alerts[i].status == "firing"]
    resolved = [i for i in order if alerts[i].status == "resolved"]
    leading = [alerts[i] for i in (firing or resolved)]
    status = "firing" if firing else "resolved"
    target = {k: rules.resolve(route.target.get(k, ()), [_pair(alerts[0])]) for k in rules.TARGET_KEYS}
    views = [_view(notification, route, alerts[i], levels[i], zone, field) for i in range(len(alerts))]
    starts = [t for a in leading if (t := payload.time(a.starts_at)) is not None]
    extra = {
        "receiver": notification.receiver,
        "status": status,
        "group_key": notification.group_key,
        "group_labels": dict(notification.group_labels),
        "common_labels": dict(notification.common_labels),
        "common_annotations": dict(notification.common_annotations),
        "external_url": notification.external_url,
        "alertmanager_url": _alertmanager_url(notification),
        "silence_url": _silence_url(notification.external_url, notification.group_labels or _common(alerts)),
        "truncated": notification.truncated,
        "ruleset": ruleset.name,
        "route": route.name,
        "firing": [views[i] for i in firing],
        "resolved": [views[i] for i in resolved],
        "counts": {"firing": len(firing), "resolved": len(resolved)},
        "timezone": zone.key,
        "mentions": {kind: _mentions(sources, leading) for kind, sources in route.mentions.items()},
    }
    return Alarm(
        id=target["id"],
        level=target["level"],
        dep=target["dep"],
        env=target["env"],
        alert_level=min((levels[i] for i in (firing or resolved)), key=rank.__getitem__),
        alert_time=_show(min(starts), zone) if starts else "",
        alert_business=field("alert_business", leading) or "Alertmanager",
        alert_host=field("alert_host", leading),
        alert_ip=field("alert_ip", leading),
        alert_function=field("alert_function", leading),
        exception_spec=field("exception_spec", leading),
        status=route.statuses.get(status, status),
        notes=field("notes", leading),
        others=field("others", leading),
        source="alertmanager",
        extra=extra,
        identity=_identity(notification, ruleset, route, target, status, alerts),
    )


def _view(
    notification: Notification, route: rules.Route, alert: Alert, level: str, zone: ZoneInfo, field: Any
) -> dict[str, Any]:
    """One alert as the templates see it: its own fields, display times and links."""
    starts, ends = payload.time(alert.starts_at), payload.time(alert.ends_at)
    return {
        "status": alert.status,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "level": level,
        "business": field("alert_business", [alert]) or "Alertmanager",
        "host": field("alert_host", [alert]),
        "spec": field("exception_spec", [alert]),
        "starts": _show(starts, zone) if starts else "",
        "ends": _show(ends, zone) if ends and alert.status == "resolved" else "",
        "duration": _duration(ends - starts) if starts and ends and alert.status == "resolved" else "",
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        "generator_url": alert.generator_url,
        "silence_url": _silence_url(notification.external_url, alert.labels),
        "fingerprint": alert.fingerprint,
    }


def _common(alerts: Sequence[Alert]) -> dict[str, str]:
    first = alerts[0].labels
    return {k: v for k, v in first.items() if all(a.labels.get(k) == v for a in alerts)}


def _mentions(sources: Sequence[rules.Source], alerts: Sequence[Alert]) -> list[str]:
    found: dict[str, None] = {}
    for alert in alerts:
        for token in _SPLIT.split(rules.resolve(sources, [_pair(alert)])):
            if token:
                found[token] = None
    return list(found)


def _show(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _duration(delta: Any) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


def _alertmanager_url(notification: Notification) -> str:
    if not notification.external_url:
        return ""
    return f"{notification.external_url}/#/alerts?receiver={quote(notification.receiver, safe='')}"


def _silence_url(external_url: str, labels: Mapping[str, str]) -> str:
    """Alertmanager's "new silence" form, filled with matchers for these labels."""
    if not external_url or not labels:
        return ""
    matchers = ", ".join(str(rules.Matcher(k, "=", v)) for k, v in sorted(labels.items()))
    return f"{external_url}/#/silences/new?filter={quote('{' + matchers + '}', safe='')}"


def _identity(
    notification: Notification,
    ruleset: rules.Ruleset,
    route: rules.Route,
    target: Mapping[str, str],
    status: str,
    alerts: Sequence[Alert],
) -> str:
    """The same for Alertmanager's retries and an HA peer's copy (so not the externalURL), else different."""
    content = [
        notification.group_key,
        notification.receiver,
        ruleset.name,
        route.where,
        sorted(target.items()),
        status,
        sorted((a.fingerprint, a.starts_at, a.status) for a in alerts),
    ]
    return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()


def explain(
    ruleset: rules.Ruleset, labels: Mapping[str, str], annotations: Mapping[str, str], resolved: bool, timezone: str
) -> str:
    """What ``alarm-bridge rules test`` prints: the routes an alert with these labels takes, and each alarm."""
    zone = _zone(timezone, "--timezone")
    now = datetime.now(zone).isoformat()
    status = "resolved" if resolved else "firing"
    alert = Alert(status, labels, annotations, now, now if resolved else "0001-01-01T00:00:00Z", "", "rules-test")
    notification = Notification("rules-test", status, (alert,), {}, dict(labels), dict(annotations), "", "{}:{}", 0)
    matchers = ", ".join(str(rules.Matcher(k, "=", v)) for k, v in sorted(labels.items()))
    produced = alarms(notification, ruleset, replace(_EXPLAIN, timezone=zone.key))
    lines = [f"{{{matchers}}} takes {len(produced)} route(s) of {ruleset.file}"]
    for alarm in produced:
        lines += ["", f"route {alarm.extra['route']!r} -> group {alarm.id}/{alarm.level}"]
        names = [f.name for f in fields(Alarm) if f.name not in ("source", "extra", "identity")]
        lines += [f"  {name}: {getattr(alarm, name)}" for name in names if getattr(alarm, name)]
        lines += [f"  mention {kind}: {', '.join(who)}" for kind, who in alarm.extra["mentions"].items() if who]
    return "\n".join(lines)


_EXPLAIN = AlertmanagerSettings("", "", "", False, Path("rules"), "UTC", False, 0)


def _zone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}: unknown time zone {name!r} (e.g. Asia/Shanghai, UTC)") from None


# -- HTTP --


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
        produced = alarms(notification, ruleset, settings)
        limit = asyncio.Semaphore(PARALLEL)

        async def accept(alarm: Alarm) -> Result:
            async with limit:
                result = await gateway.accept(alarm, wait=0)  # delivery goes on in the background
            metrics.ALARMS_RECEIVED.labels(source="alertmanager", code=str(int(result.code))).inc()
            return result

        results = await asyncio.gather(*(accept(a) for a in produced))
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
    _zone(settings.alertmanager.timezone, f"{settings.path}: alertmanager.timezone")
    return rules.load(settings.alertmanager.rules)


def routes(settings: Settings) -> list[HttpRoute]:
    """The webhook's routes; the rules are read now, and ConfigError stops the start if they are broken."""
    receiver = Receiver(settings)
    return [HttpRoute(path, receiver.handle, methods=["POST"]) for path in ("/alertmanager", "/alertmanager/{ruleset}")]
