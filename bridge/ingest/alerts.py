"""Alertmanager notifications (webhook version 4) -> alarms: routed by the rules, one per route and target."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge import rules
from bridge.config import AlertmanagerSettings
from bridge.ingest import payload
from bridge.ingest.payload import Alert, Notification
from bridge.matchers import Matcher
from bridge.model import ALERT_LEVELS, Alarm
from bridge.schema import ConfigError

_SPLIT = re.compile(r"[\s,;]+")


def alarms(notification: Notification, ruleset: rules.Ruleset, settings: AlertmanagerSettings) -> list[Alarm]:
    """The alarms a notification becomes: per route and target, one with all its alerts (or one per alert)."""
    buckets: dict[tuple[object, ...], tuple[rules.Route, list[Alert]]] = {}
    for n, alert in enumerate(notification.alerts):
        for route in ruleset.match(alert.labels):
            target = tuple(rules.resolve(route.target.get(k, ()), [_pair(alert)]) for k in rules.TARGET_KEYS)
            key = (id(route), *target, n if settings.per_alert else -1)
            buckets.setdefault(key, (route, []))[1].append(alert)
    zone = ZoneInfo(settings.timezone)
    per_alert = settings.per_alert
    return [_alarm(notification, ruleset, route, alerts, zone, per_alert) for route, alerts in buckets.values()]


def _pair(alert: Alert) -> tuple[Mapping[str, str], Mapping[str, str]]:
    return alert.labels, alert.annotations


def _alarm(
    notification: Notification,
    ruleset: rules.Ruleset,
    route: rules.Route,
    alerts: list[Alert],
    zone: ZoneInfo,
    per_alert: bool,
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
    group_labels = notification.group_labels or _common(alerts)
    extra = {
        "receiver": notification.receiver,
        "status": status,
        "group_key": notification.group_key,
        "group_labels": dict(notification.group_labels),
        "common_labels": dict(notification.common_labels),
        "common_annotations": dict(notification.common_annotations),
        "external_url": notification.external_url,
        "alertmanager_url": _alertmanager_url(notification),
        "silence_url": _silence_url(notification.external_url, group_labels),
        # what a silence link silences: the alert, or the group (bridge.actions)
        "silence_labels": dict(alerts[0].labels) if per_alert else dict(group_labels),
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
    try:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
    except OverflowError:  # within a day of year 9999 the zone's offset leaves datetime's range: shown as given
        return moment.strftime("%Y-%m-%d %H:%M:%S%z")


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
    matchers = ", ".join(str(Matcher(k, "=", v)) for k, v in sorted(labels.items()))
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
        sorted((a.fingerprint, a.starts_at, a.ends_at, a.status) for a in alerts),
    ]
    return _digest(content)


def _digest(content: object) -> str:
    return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()


def episodes(alarm: Alarm) -> tuple[list[str], list[str]]:
    """The store keys of an Alertmanager alarm's firing alerts and of its resolved ones, each alert by its group
    key, fingerprint and start: an alert resolved once stays resolved, so a copy whose every firing alert was
    resolved since (an HA peer's late copy) is stale."""
    group_key = alarm.extra.get("group_key", "")

    def keys(status: str) -> list[str]:
        alerts = alarm.extra.get(status, ())
        return [f"resolved:{_digest([group_key, a['fingerprint'], a['starts_at']])}" for a in alerts]

    return keys("firing"), keys("resolved")


def explain(
    ruleset: rules.Ruleset, labels: Mapping[str, str], annotations: Mapping[str, str], resolved: bool, timezone: str
) -> str:
    """What ``alarm-bridge rules test`` prints: the routes an alert with these labels takes, and each alarm."""
    zone = time_zone(timezone, "--timezone")
    now = datetime.now(zone).isoformat()
    status = "resolved" if resolved else "firing"
    alert = Alert(status, labels, annotations, now, now if resolved else "0001-01-01T00:00:00Z", "", "rules-test")
    notification = Notification("rules-test", status, (alert,), {}, dict(labels), dict(annotations), "", "{}:{}", 0)
    matchers = ", ".join(str(Matcher(k, "=", v)) for k, v in sorted(labels.items()))
    produced = alarms(notification, ruleset, replace(_EXPLAIN, timezone=zone.key))
    lines = [f"{{{matchers}}} takes {len(produced)} route(s) of {ruleset.file}"]
    for alarm in produced:
        lines += ["", f"route {alarm.extra['route']!r} -> group {alarm.id}/{alarm.level}"]
        names = [f.name for f in fields(Alarm) if f.name not in ("source", "extra", "identity")]
        lines += [f"  {name}: {getattr(alarm, name)}" for name in names if getattr(alarm, name)]
        lines += [f"  mention {kind}: {', '.join(who)}" for kind, who in alarm.extra["mentions"].items() if who]
    return "\n".join(lines)


_EXPLAIN = AlertmanagerSettings("", "", "", False, Path("rules"), "UTC", False, 0, 0.0)


def time_zone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}: unknown time zone {name!r} (e.g. Asia/Shanghai, UTC)") from None
